//! The fault matrix (issue 7): every phase (state, snapshot, migrate, deploy, rollback) against every fault the local
//! AWS can inject or a run can suffer (throttling, 500, 503, latency, connection reset, a migration task that fails to
//! start or exits non-zero, a circuit breaker, a snapshot stuck in `creating`, the deadline, SIGINT, SIGTERM, and
//! SIGKILL followed by a rerun). Each case ends in `success` or in a safe state, read back from AWS afterwards:
//!
//! - every service is on an ACTIVE revision (its primary deployment too), settled or rolling to it;
//! - maintenance is on, off, or half-way with the original listener recorded, and the original rules and default
//!   action come back exactly (checked by putting the environment back to running and comparing the listener);
//! - no migration task is left running, unless the rerun attaches to it;
//! - the database is available;
//! - the same run again without the fault succeeds (a rerun converges).
//!
//! Run by `scripts/faults`, which writes RELIABILITY.md: `cargo test --test faults -- --ignored --nocapture`
//! (`FAULTS_REPORT=<path>` to write the table, `FAULTS_WORKERS=N` emulators in parallel, `FAULTS_ONLY=<phase>` or
//! `<phase>/<case>` to run a subset).

#[path = "all/support/mod.rs"]
mod support;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use support::{parse_outputs, RunResult, REGION};

// ------------------------------------------------------------------------------------------------------------------
// The matrix
// ------------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    State,
    Snapshot,
    Migrate,
    Deploy,
    Rollback,
}

const PHASES: [Phase; 5] = [
    Phase::State,
    Phase::Snapshot,
    Phase::Migrate,
    Phase::Deploy,
    Phase::Rollback,
];

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::State => "state",
            Phase::Snapshot => "snapshot",
            Phase::Migrate => "migrate",
            Phase::Deploy => "deploy",
            Phase::Rollback => "rollback",
        }
    }

    /// What the phase is asked to do in every case.
    fn what(self) -> &'static str {
        match self {
            Phase::State => {
                "`state: db-only` from running (maintenance on, drain skipped, services to 0)"
            }
            Phase::Snapshot => "`snapshot` of the RDS instance for v2.0.0",
            Phase::Migrate => "`migrate` v2.0.0 from running, after a fresh snapshot",
            Phase::Deploy => "`deploy` v2.0.0 on core and workers (state running)",
            Phase::Rollback => {
                "`rollback` to the last known-good revision (core runs an untracked bad revision)"
            }
        }
    }

    fn inputs(self) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![
            ("phase", self.name()),
            ("environment", "stage"),
            ("config", "deploy.toml"),
        ];
        match self {
            Phase::State => v.extend([("state", "db-only"), ("skip-drain", "true")]),
            Phase::Snapshot => v.push(("version", "v2.0.0")),
            Phase::Migrate => v.extend([("version", "v2.0.0"), ("skip-drain", "true")]),
            Phase::Deploy => v.push(("version", "v2.0.0")),
            Phase::Rollback => {}
        }
        v
    }

    /// The mutating call the transport faults hit, and how many matching calls pass first.
    fn key_call(self) -> (&'static str, u32) {
        match self {
            // Half-way through turning maintenance on: one rule changed, the next one refused.
            Phase::State => ("ModifyRule", 1),
            Phase::Snapshot => ("CreateDBSnapshot", 0),
            // RunTask is never retried blindly: the runner looks for the task before it tries again.
            Phase::Migrate => ("RunTask", 0),
            // The second service's update: the first one has to go back.
            Phase::Deploy => ("UpdateService", 1),
            Phase::Rollback => ("UpdateService", 0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Throttle,
    E500,
    E503,
    Latency,
    Reset,
    TaskFailsToStart,
    MigrationExit,
    CircuitBreaker,
    SnapshotStuck,
    Timeout,
    Sigint,
    Sigterm,
    Kill9,
}

const KINDS: [Kind; 13] = [
    Kind::Throttle,
    Kind::E500,
    Kind::E503,
    Kind::Latency,
    Kind::Reset,
    Kind::TaskFailsToStart,
    Kind::MigrationExit,
    Kind::CircuitBreaker,
    Kind::SnapshotStuck,
    Kind::Timeout,
    Kind::Sigint,
    Kind::Sigterm,
    Kind::Kill9,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Throttle => "throttling",
            Kind::E500 => "500",
            Kind::E503 => "503",
            Kind::Latency => "latency",
            Kind::Reset => "connection reset",
            Kind::TaskFailsToStart => "task fails to start",
            Kind::MigrationExit => "migration exit ≠ 0",
            Kind::CircuitBreaker => "circuit breaker FAILED",
            Kind::SnapshotStuck => "snapshot stuck in creating",
            Kind::Timeout => "timeout",
            Kind::Sigint => "SIGINT mid-phase",
            Kind::Sigterm => "SIGTERM mid-phase",
            Kind::Kill9 => "kill -9, then rerun",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Kind::Throttle => "throttle",
            Kind::E500 => "500",
            Kind::E503 => "503",
            Kind::Latency => "latency",
            Kind::Reset => "reset",
            Kind::TaskFailsToStart => "task-fails-to-start",
            Kind::MigrationExit => "migration-exit",
            Kind::CircuitBreaker => "circuit-breaker",
            Kind::SnapshotStuck => "snapshot-stuck",
            Kind::Timeout => "timeout",
            Kind::Sigint => "sigint",
            Kind::Sigterm => "sigterm",
            Kind::Kill9 => "kill9",
        }
    }

    /// Why a case does not apply to a phase (the phase never meets that fault), or `None` when it does.
    fn not_applicable(self, phase: Phase) -> Option<&'static str> {
        use Kind::*;
        use Phase::*;
        match (self, phase) {
            (TaskFailsToStart | MigrationExit, State | Snapshot | Deploy | Rollback) => {
                Some("no one-off task in this phase (deploy's failing tasks: circuit breaker)")
            }
            (CircuitBreaker, State) => Some("state only scales: no new deployment to fail"),
            (CircuitBreaker, Snapshot | Migrate) => Some("no ECS deployment in this phase"),
            (SnapshotStuck, State | Deploy | Rollback) => Some("no snapshot in this phase"),
            (
                Throttle | E500 | E503 | Latency | Reset | TaskFailsToStart | MigrationExit
                | CircuitBreaker | SnapshotStuck | Timeout | Sigint | Sigterm | Kill9,
                State | Snapshot | Migrate | Deploy | Rollback,
            ) => None,
        }
    }

    /// How long a case roughly takes (longest first keeps the workers busy to the end).
    fn weight(self) -> u32 {
        match self {
            Kind::Timeout | Kind::SnapshotStuck => 10,
            Kind::Throttle | Kind::E500 | Kind::E503 | Kind::Reset => 3,
            Kind::Latency
            | Kind::TaskFailsToStart
            | Kind::MigrationExit
            | Kind::CircuitBreaker
            | Kind::Sigint
            | Kind::Sigterm
            | Kind::Kill9 => 2,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Row {
    phase: Phase,
    kind: Kind,
    outcome: String,
    exit: String,
    message: String,
    left: String,
    rerun: String,
    /// Why the case is not safe (empty when it is).
    unsafe_because: Vec<String>,
    seconds: f64,
}

// ------------------------------------------------------------------------------------------------------------------
// One local AWS per worker
// ------------------------------------------------------------------------------------------------------------------

fn python() -> PathBuf {
    let venv = std::env::var_os("LOCAL_AWS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo().join(".venv"));
    venv.join("bin/python")
}

fn emulator_dir() -> PathBuf {
    std::env::var_os("LOCAL_AWS_EMULATOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo().join("emulator"))
}

struct Emulator {
    url: String,
    /// Closing its stdin (on drop) stops it (`--exit-on-stdin-eof`).
    _child: Child,
}

impl Emulator {
    fn start() -> Emulator {
        let mut child = Command::new(python())
            .arg(emulator_dir().join("local_aws.py"))
            .args(["--host", "127.0.0.1", "--port", "0", "--exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start emulator/local_aws.py (run scripts/local-aws-setup)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("emulator exited")
                .expect("read emulator");
            if let Some(url) = line.strip_prefix("LOCAL_AWS_READY ") {
                break url.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Emulator { url, _child: child }
    }
}

/// One worker's universe: its emulator, a directory, clients.
struct World {
    emu: Emulator,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    sdk: aws_config::SdkConfig,
}

/// The workflow run id every run of a case uses (a rerun is a rerun of the same workflow run), except where a case
/// says a new run starts.
const RUN_ID: &str = "7001";

impl World {
    async fn new() -> World {
        let emu = Emulator::start();
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&emu.url)
            .credentials_provider(aws_sdk_ecs::config::Credentials::new(
                "test", "test", None, None, "faults",
            ))
            .load()
            .await;
        World {
            emu,
            dir: tempfile::tempdir().unwrap(),
            http: reqwest::Client::new(),
            sdk,
        }
    }

    async fn post(&self, path: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.emu.url))
            .json(&body)
            .send()
            .await
            .expect("control API");
        assert!(r.status().is_success(), "POST {path}: {}", r.status());
    }

    async fn delete(&self, path: &str) {
        let r = self
            .http
            .delete(format!("{}{path}", self.emu.url))
            .send()
            .await
            .expect("control API");
        assert!(r.status().is_success(), "DELETE {path}: {}", r.status());
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.emu.url))
            .send()
            .await
            .expect("control API")
            .json()
            .await
            .unwrap()
    }

    async fn calls(&self) -> Vec<String> {
        self.get("/_test/calls")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["operation"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Everything back to nothing, then `stage` seeded and its config written.
    async fn fresh(&self) {
        self.post("/_test/reset", json!({})).await;
        let res = Command::new(python())
            .arg(emulator_dir().join("seed.py"))
            .args([
                "--endpoint",
                &self.emu.url,
                "--env",
                "stage",
                "--region",
                REGION,
                "--out",
            ])
            .arg(self.dir.path().join("deploy.toml"))
            .output()
            .expect("run seed.py");
        assert!(
            res.status.success(),
            "seed: {}",
            String::from_utf8_lossy(&res.stderr)
        );
    }

    /// Removes every fault and rule (the rerun runs without them).
    async fn clear(&self) {
        for path in [
            "/_test/faults",
            "/_test/ecs/service-rules",
            "/_test/ecs/task-rules",
        ] {
            self.delete(path).await;
        }
        self.post(
            "/_test/rds/snapshot-rules",
            json!({"creatingDescribes": 0, "neverAvailable": false}),
        )
        .await;
    }

    fn command(
        &self,
        inputs: &[(&str, &str)],
        run_id: &str,
    ) -> (tokio::process::Command, PathBuf, PathBuf) {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_deploy-action"));
        for (k, _) in std::env::vars() {
            if k.starts_with("INPUT_")
                || k.starts_with("GITHUB_")
                || k.starts_with("AWS_")
                || k == "RUNNER_DEBUG"
            {
                cmd.env_remove(k);
            }
        }
        let n = rand::random::<u32>();
        let out = self.dir.path().join(format!("out-{n}"));
        let summary = self.dir.path().join(format!("summary-{n}"));
        std::fs::write(&out, "").unwrap();
        std::fs::write(&summary, "").unwrap();
        cmd.current_dir(self.dir.path())
            .env("AWS_ENDPOINT_URL", &self.emu.url)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            )
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &out)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("GITHUB_REPOSITORY", "acme/backend")
            .env("GITHUB_RUN_ID", run_id)
            .env("GITHUB_RUN_ATTEMPT", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in inputs {
            cmd.env(format!("INPUT_{}", k.to_uppercase()), v);
        }
        (cmd, out, summary)
    }

    /// Runs the Action front end; with a signal, sends it once `trigger` holds.
    async fn run(
        &self,
        inputs: &[(&str, &str)],
        run_id: &str,
        signal: Option<(Trigger, &str)>,
    ) -> RunResult {
        let (mut cmd, out, summary) = self.command(inputs, run_id);
        let child = cmd.spawn().expect("spawn deploy-action");
        let pid = child.id().unwrap_or(0);
        let waiting = child.wait_with_output();
        tokio::pin!(waiting);
        if let Some((trigger, sig)) = signal {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                tokio::select! {
                    res = &mut waiting => {
                        let res = res.expect("wait for deploy-action");
                        return result(res, &out, &summary, Some(format!("finished before the {sig} trigger")));
                    }
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                if self.triggered(trigger).await {
                    break;
                }
                assert!(Instant::now() < deadline, "trigger {trigger:?} never held");
            }
            let sent = Command::new("kill")
                .args([format!("-{sig}"), pid.to_string()])
                .status()
                .expect("kill");
            assert!(sent.success(), "kill -{sig} {pid}");
        }
        let res = tokio::time::timeout(Duration::from_secs(300), &mut waiting)
            .await
            .expect("deploy-action did not finish within 300 s")
            .expect("wait for deploy-action");
        result(res, &out, &summary, None)
    }

    async fn triggered(&self, trigger: Trigger) -> bool {
        match trigger {
            Trigger::Call(op) => self.calls().await.iter().any(|c| c == op),
            Trigger::MigrationRunning => self
                .get("/_test/ecs/tasks")
                .await
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["group"] == GROUP && t["lastStatus"] == "RUNNING"),
        }
    }
}

fn result(
    res: std::process::Output,
    out: &Path,
    summary: &Path,
    note: Option<String>,
) -> RunResult {
    let mut stderr = String::from_utf8_lossy(&res.stderr).into_owned();
    if let Some(n) = note {
        stderr.push_str(&format!("\n[faults] {n}"));
    }
    RunResult {
        code: res.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&res.stdout).into_owned(),
        stderr,
        outputs: parse_outputs(&std::fs::read_to_string(out).unwrap_or_default()),
        summary: std::fs::read_to_string(summary).unwrap_or_default(),
    }
}

const GROUP: &str = "deploy-action:stage:migration";

#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// The operation appears in the call log.
    Call(&'static str),
    /// A migration task is RUNNING.
    MigrationRunning,
}

// ------------------------------------------------------------------------------------------------------------------
// Reading the state back
// ------------------------------------------------------------------------------------------------------------------

/// What the environment looks like, read from AWS (and through `status`).
#[derive(Debug, Clone)]
struct Seen {
    state: String,
    maintenance: String,
    db: String,
    services: Vec<String>,
    /// Problems with services (a revision not ACTIVE).
    problems: Vec<String>,
    migrations_running: Vec<String>,
    last_migration: Option<String>,
    snapshots: Vec<String>,
    /// Each service's version, as `status` reads it back from its image.
    versions: Vec<String>,
}

impl Seen {
    fn line(&self) -> String {
        let mut parts = vec![
            format!("{}; maintenance {}", self.state, self.maintenance),
            self.services.join(", "),
            format!("db {}", self.db),
        ];
        if !self.migrations_running.is_empty() {
            parts.push(format!(
                "migration task {} RUNNING",
                self.migrations_running.join(",")
            ));
        } else if let Some(m) = &self.last_migration {
            parts.push(format!("migration task {m}"));
        }
        if !self.snapshots.is_empty() {
            parts.push(format!("snapshots {}", self.snapshots.join(", ")));
        }
        parts.join("; ")
    }
}

async fn inspect(w: &World) -> Seen {
    let ecs = aws_sdk_ecs::Client::new(&w.sdk);
    let rds = aws_sdk_rds::Client::new(&w.sdk);
    let (cmd, _, _) = w.command(
        &[
            ("phase", "status"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("output", "json"),
        ],
        RUN_ID,
    );
    let mut cmd = cmd;
    let out = cmd.output().await.expect("status");
    let status: Value = serde_json::from_slice(&out.stdout)
        .ok()
        .and_then(|v: Value| v.get("outcome").cloned())
        .unwrap_or(Value::Null);
    let mut problems = vec![];
    let mut services = vec![];
    let described = ecs
        .describe_services()
        .cluster("app-stage")
        .services("core")
        .services("workers")
        .send()
        .await
        .expect("DescribeServices");
    for svc in described.services() {
        let name = svc.service_name().unwrap_or("?");
        let td = svc.task_definition().unwrap_or_default();
        if td_status(&ecs, td).await != "ACTIVE" {
            problems.push(format!("service {name} is on {} (not ACTIVE)", short(td)));
        }
        let mut rollout = String::from("?");
        for d in svc.deployments() {
            let dtd = d.task_definition().unwrap_or_default();
            if d.status() == Some("PRIMARY") {
                rollout = d
                    .rollout_state()
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_else(|| "-".into());
                if td_status(&ecs, dtd).await != "ACTIVE" {
                    problems.push(format!(
                        "{name}'s primary deployment runs {} (not ACTIVE)",
                        short(dtd)
                    ));
                }
            }
        }
        let others = svc.deployments().len().saturating_sub(1);
        services.push(format!(
            "{name} {} {rollout}, {} running of {}{}",
            short(td),
            svc.running_count(),
            svc.desired_count(),
            if others > 0 {
                format!(" (+{others} draining)")
            } else {
                String::new()
            }
        ));
    }
    let tasks = w.get("/_test/ecs/tasks").await;
    let mig: Vec<&Value> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["group"] == GROUP)
        .collect();
    let migrations_running = mig
        .iter()
        .filter(|t| t["lastStatus"] != "STOPPED")
        .map(|t| id(t["taskArn"].as_str().unwrap_or("")))
        .collect();
    let last_migration = mig.last().map(|t| {
        let code = t["exitCodes"]["migrate"]
            .as_i64()
            .map_or("none".to_string(), |c| c.to_string());
        format!(
            "{} {} ({}, exit {code})",
            id(t["taskArn"].as_str().unwrap_or("")),
            t["lastStatus"].as_str().unwrap_or("?"),
            t["stopCode"].as_str().unwrap_or("no stop code")
        )
    });
    let snaps = rds
        .describe_db_snapshots()
        .db_instance_identifier("app-stage")
        .snapshot_type("manual")
        .send()
        .await
        .expect("DescribeDBSnapshots");
    let snapshots = snaps
        .db_snapshots()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s.db_snapshot_identifier().unwrap_or("?"),
                s.status().unwrap_or("?")
            )
        })
        .collect();
    Seen {
        state: status["state"].as_str().unwrap_or("unknown").to_string(),
        maintenance: status["maintenance"]
            .as_str()
            .unwrap_or("unknown")
            .to_string(),
        db: status["database"]["status"]
            .as_str()
            .unwrap_or("unknown")
            .to_string(),
        services,
        problems,
        migrations_running,
        last_migration,
        snapshots,
        versions: status["services"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["version"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn short(td: &str) -> &str {
    td.rsplit('/').next().unwrap_or(td)
}

fn id(arn: &str) -> String {
    arn.rsplit('/')
        .next()
        .unwrap_or(arn)
        .chars()
        .take(8)
        .collect()
}

async fn td_status(ecs: &aws_sdk_ecs::Client, td: &str) -> String {
    match ecs
        .describe_task_definition()
        .task_definition(td)
        .send()
        .await
    {
        Ok(out) => out
            .task_definition()
            .and_then(|t| t.status())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        Err(_) => "MISSING".into(),
    }
}

/// The listener as it routes: default actions and every rule's priority, conditions and actions (and no
/// deploy-action tag left on it when maintenance is off).
async fn listener(w: &World) -> String {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&w.sdk);
    let lbs = elb
        .describe_load_balancers()
        .send()
        .await
        .expect("DescribeLoadBalancers");
    let lb = lbs.load_balancers()[0]
        .load_balancer_arn()
        .unwrap()
        .to_string();
    let ls = elb
        .describe_listeners()
        .load_balancer_arn(&lb)
        .send()
        .await
        .expect("DescribeListeners");
    let l = &ls.listeners()[0];
    let arn = l.listener_arn().unwrap().to_string();
    let rules = elb
        .describe_rules()
        .listener_arn(&arn)
        .send()
        .await
        .expect("DescribeRules");
    let mut lines: Vec<String> = rules
        .rules()
        .iter()
        .map(|r| {
            format!(
                "{} {:?} {:?}",
                r.priority().unwrap_or("?"),
                r.conditions(),
                r.actions()
            )
        })
        .collect();
    lines.sort();
    let tags = elb
        .describe_tags()
        .resource_arns(&arn)
        .send()
        .await
        .expect("DescribeTags");
    let ours: Vec<String> = tags
        .tag_descriptions()
        .iter()
        .flat_map(|d| d.tags())
        .filter_map(|t| t.key())
        .filter(|k| k.starts_with("deploy-action:"))
        .map(str::to_string)
        .collect();
    format!(
        "default {:?}\n{}\ntags {ours:?}",
        l.default_actions(),
        lines.join("\n")
    )
}

// ------------------------------------------------------------------------------------------------------------------
// One case
// ------------------------------------------------------------------------------------------------------------------

/// Registers a revision of core's like the current one with another image and points the service at it (an
/// untracked manual deploy: the revision the rollback cases roll back from).
async fn manual_bad_revision(w: &World) {
    let ecs = aws_sdk_ecs::Client::new(&w.sdk);
    let svc = ecs
        .describe_services()
        .cluster("app-stage")
        .services("core")
        .send()
        .await
        .unwrap();
    let from = svc.services()[0].task_definition().unwrap().to_string();
    let mut td = ecs
        .describe_task_definition()
        .task_definition(&from)
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .clone();
    let containers = td.container_definitions.take().unwrap();
    td.container_definitions = Some(
        containers
            .into_iter()
            .map(|mut c| {
                if c.name() == Some("core") {
                    let repo = c.image().unwrap().rsplit_once(':').unwrap().0.to_string();
                    c.image = Some(format!("{repo}:core-v6.6.6"));
                }
                c
            })
            .collect(),
    );
    let out = deploy_action::aws::ecs::register_input_from(td, vec![])
        .send_with(&ecs)
        .await
        .unwrap();
    let arn = out
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string();
    ecs.update_service()
        .cluster("app-stage")
        .service("core")
        .task_definition(&arn)
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        ecs.describe_services()
            .cluster("app-stage")
            .services("core")
            .send()
            .await
            .unwrap();
    }
}

/// What a case sets up before the phase runs, and how the phase is run.
struct Setup {
    inputs: Vec<(&'static str, &'static str)>,
    signal: Option<(Trigger, &'static str)>,
    /// The rerun starts a new workflow run (the stuck snapshot belongs to the old one).
    rerun_new_run: bool,
    /// Runs before the rerun (besides clearing the faults).
    rerun_first: Vec<Vec<(&'static str, &'static str)>>,
}

async fn apply(w: &World, phase: Phase, kind: Kind) -> Setup {
    let mut s = Setup {
        inputs: phase.inputs(),
        signal: None,
        rerun_new_run: false,
        rerun_first: vec![],
    };
    let (op, after) = phase.key_call();
    let fault = |k: &str| json!({"operation": op, "kind": k, "count": 5, "after": after});
    match kind {
        Kind::Throttle => w.post("/_test/faults", fault("throttle")).await,
        Kind::E500 => w.post("/_test/faults", fault("500")).await,
        Kind::E503 => w.post("/_test/faults", fault("503")).await,
        Kind::Reset => w.post("/_test/faults", fault("reset")).await,
        Kind::Latency => {
            w.post(
                "/_test/faults",
                json!({"operation": op, "kind": "latency", "latencyMs": 4000, "count": 2, "after": after}),
            )
            .await
        }
        Kind::TaskFailsToStart => {
            w.post(
                "/_test/ecs/task-rules",
                json!({"match": "stage-migrate", "stopCode": "TaskFailedToStart", "times": 1}),
            )
            .await
        }
        Kind::MigrationExit => {
            w.post(
                "/_test/ecs/task-rules",
                json!({"match": "stage-migrate", "exitCode": 3, "describes": 1, "times": 1,
                       "logs": ["applying 0002_users", "ERROR: column \"email\" contains null values"]}),
            )
            .await
        }
        Kind::CircuitBreaker => {
            w.post(
                "/_test/ecs/service-rules",
                json!({"service": "core", "outcome": "FAILED", "times": 1, "failedTasks": 2,
                       "taskLogs": ["boot", "panic: config missing"]}),
            )
            .await
        }
        Kind::SnapshotStuck => {
            w.post("/_test/rds/snapshot-rules", json!({"neverAvailable": true}))
                .await;
            match phase {
                Phase::Snapshot => s.inputs.push(("timeout-minutes", "1")),
                Phase::Migrate => {
                    // A snapshot of ours that never becomes available (the one the precondition finds).
                    let rds = aws_sdk_rds::Client::new(&w.sdk);
                    let tag = |k: &str, v: &str| aws_sdk_rds::types::Tag::builder().key(k).value(v).build();
                    rds.create_db_snapshot()
                        .db_instance_identifier("app-stage")
                        .db_snapshot_identifier("deploy-stage-v2-0-0-stuck")
                        .tags(tag("deploy-action:created-by", "deploy-action"))
                        .tags(tag("deploy-action:version", "v2.0.0"))
                        .send()
                        .await
                        .unwrap();
                    s.rerun_first.push(Phase::Snapshot.inputs());
                }
                Phase::State | Phase::Deploy | Phase::Rollback => {}
            }
            s.rerun_new_run = true;
        }
        Kind::Timeout => {
            s.inputs.push(("timeout-minutes", "1"));
            match phase {
                // Slower than the deadline, but they do finish: the rerun follows them to the end.
                Phase::State => {
                    w.post("/_test/ecs/service-rules", json!({"service": "*", "settleAfterSeconds": 75}))
                        .await
                }
                Phase::Snapshot => {
                    w.post("/_test/rds/snapshot-rules", json!({"creatingDescribes": 12}))
                        .await
                }
                Phase::Migrate => {
                    w.post(
                        "/_test/ecs/task-rules",
                        json!({"match": "stage-migrate", "neverStop": true, "times": 1}),
                    )
                    .await
                }
                Phase::Deploy | Phase::Rollback => {
                    w.post(
                        "/_test/ecs/service-rules",
                        json!({"service": "core", "settleAfterSeconds": 75, "times": 1}),
                    )
                    .await
                }
            }
        }
        Kind::Sigint | Kind::Sigterm | Kind::Kill9 => {
            let sig = match kind {
                Kind::Sigint => "INT",
                Kind::Sigterm => "TERM",
                Kind::Kill9 => "KILL",
                Kind::Throttle
                | Kind::E500
                | Kind::E503
                | Kind::Latency
                | Kind::Reset
                | Kind::TaskFailsToStart
                | Kind::MigrationExit
                | Kind::CircuitBreaker
                | Kind::SnapshotStuck
                | Kind::Timeout => unreachable!("signals only"),
            };
            let trigger = match phase {
                Phase::State => {
                    w.post("/_test/ecs/service-rules", json!({"service": "*", "settleAfterSeconds": 5}))
                        .await;
                    Trigger::Call("UpdateService")
                }
                Phase::Snapshot => {
                    w.post("/_test/rds/snapshot-rules", json!({"creatingDescribes": 3}))
                        .await;
                    Trigger::Call("CreateDBSnapshot")
                }
                Phase::Migrate => {
                    // Killed: the task runs on and the rerun attaches to it; signalled: the run stops it.
                    let rule = if kind == Kind::Kill9 {
                        json!({"match": "stage-migrate", "runningSeconds": 8, "times": 1, "logs": ["migrating"]})
                    } else {
                        json!({"match": "stage-migrate", "neverStop": true, "times": 1})
                    };
                    w.post("/_test/ecs/task-rules", rule).await;
                    Trigger::MigrationRunning
                }
                Phase::Deploy | Phase::Rollback => {
                    w.post(
                        "/_test/ecs/service-rules",
                        json!({"service": "core", "settleAfterSeconds": 5, "times": 1}),
                    )
                    .await;
                    Trigger::Call("UpdateService")
                }
            };
            s.signal = Some((trigger, sig));
        }
    }
    s
}

/// Brings the environment to where the phase starts from (migrate with a stuck snapshot: none of its own).
async fn precondition(w: &World, phase: Phase, kind: Kind) -> Result<(), String> {
    let ok = |r: RunResult, what: &str| {
        if r.code == 0 {
            Ok(())
        } else {
            Err(format!("{what} failed: {}", last_error(&r)))
        }
    };
    match phase {
        Phase::State | Phase::Snapshot | Phase::Deploy => Ok(()),
        Phase::Migrate if kind == Kind::SnapshotStuck => Ok(()),
        Phase::Migrate => ok(
            w.run(&Phase::Snapshot.inputs(), "6001", None).await,
            "snapshot",
        ),
        Phase::Rollback => {
            let mut d = Phase::Deploy.inputs();
            d.retain(|(k, _)| *k != "version");
            d.push(("version", "v1.1.0"));
            ok(w.run(&d, "6002", None).await, "deploy v1.1.0")?;
            manual_bad_revision(w).await;
            Ok(())
        }
    }
}

/// What the run said went wrong: its final error annotation, else its first logged error, else its result line.
fn last_error(r: &RunResult) -> String {
    let clean = |l: &str| {
        l.trim_start_matches("::error title=deploy-action::")
            .trim_start_matches("::error::")
            .trim_start_matches("error: ")
            .replace("%0A", " ")
            .replace("%0D", "")
            .replace("%25", "%")
    };
    let stderr: Vec<&str> = r.stderr.lines().collect();
    let line = stderr
        .iter()
        .rev()
        .find(|l| l.starts_with("::error title=deploy-action::") || l.starts_with("error: "))
        .or_else(|| stderr.iter().find(|l| l.starts_with("::error::")))
        .map(|l| clean(l))
        .or_else(|| {
            let text: Vec<&str> = r
                .stdout
                .lines()
                .filter(|l| !l.starts_with("::") && !l.trim().is_empty())
                .take(2)
                .map(str::trim)
                .collect();
            (!text.is_empty()).then(|| text.join(": "))
        })
        .unwrap_or_default();
    excerpt(&line, 260)
}

fn excerpt(s: &str, n: usize) -> String {
    let s = s.replace('|', "\\|").replace('\n', " ");
    if s.chars().count() <= n {
        s
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

async fn run_case(w: &World, phase: Phase, kind: Kind) -> Row {
    let started = Instant::now();
    let mut row = Row {
        phase,
        kind,
        outcome: String::new(),
        exit: String::new(),
        message: String::new(),
        left: String::new(),
        rerun: String::new(),
        unsafe_because: vec![],
        seconds: 0.0,
    };
    w.fresh().await;
    let original = listener(w).await;
    if let Err(e) = precondition(w, phase, kind).await {
        row.unsafe_because.push(format!("precondition: {e}"));
        return row;
    }
    let setup = apply(w, phase, kind).await;
    let r = w.run(&setup.inputs, RUN_ID, setup.signal).await;
    row.exit = match (r.code, setup.signal) {
        (-1, Some((_, "KILL"))) => "killed".into(),
        (c, _) => c.to_string(),
    };
    let seen = inspect(w).await;
    row.left = seen.line();
    row.message = match r.code {
        0 => excerpt(
            r.stdout
                .lines()
                .find(|l| !l.starts_with("::"))
                .unwrap_or_default(),
            260,
        ),
        -1 => "(killed: nothing printed after the signal)".into(),
        _ => last_error(&r),
    };
    let expected_codes: &[i32] = match kind {
        Kind::Sigint | Kind::Sigterm => &[130, 0],
        Kind::Kill9 => &[-1, 0],
        _ => &[0, 1],
    };
    if !expected_codes.contains(&r.code) {
        row.unsafe_because.push(format!(
            "exit {} (expected one of {expected_codes:?})",
            r.code
        ));
    }
    if r.stderr.contains("panicked") {
        row.unsafe_because.push("panicked".into());
    }
    row.unsafe_because.extend(seen.problems.iter().cloned());
    if !["available"].contains(&seen.db.as_str()) {
        row.unsafe_because.push(format!("database {}", seen.db));
    }
    if r.code == 0 {
        row.outcome = "success".into();
    } else {
        row.outcome = format!("safe state: {}", describe_left(phase, &seen, &r));
        if row.message.is_empty() && r.code != -1 {
            row.unsafe_because
                .push("no message says what happened".into());
        }
    }

    // The rerun, without the fault.
    w.clear().await;
    let run_id = if setup.rerun_new_run { "7002" } else { RUN_ID };
    for first in &setup.rerun_first {
        let f = w.run(first, run_id, None).await;
        if f.code != 0 {
            row.unsafe_because
                .push(format!("before the rerun: {}", last_error(&f)));
        }
    }
    let again = w.run(&phase.inputs(), run_id, None).await;
    let after = inspect(w).await;
    let attached = again.stderr.contains("instead of starting another")
        || again.stderr.contains("started meanwhile by another run");
    if !seen.migrations_running.is_empty() && !attached {
        row.unsafe_because.push(format!(
            "migration task {} was left running and the rerun did not attach to it",
            seen.migrations_running.join(",")
        ));
    }
    if !after.migrations_running.is_empty() {
        row.unsafe_because.push(format!(
            "migration task {} still running after the rerun",
            after.migrations_running.join(",")
        ));
    }
    row.unsafe_because.extend(after.problems.iter().cloned());
    let converged = match phase {
        Phase::State => after.state == "db-only",
        Phase::Snapshot => again.outputs.get("result").map(String::as_str) == Some("success"),
        Phase::Migrate => {
            after.state == "db-only"
                && again.outputs.get("exit-code").map(String::as_str) == Some("0")
        }
        Phase::Deploy => after.state == "running" && after.versions.iter().all(|v| v == "v2.0.0"),
        Phase::Rollback => after.state == "running" && after.versions.iter().all(|v| v == "v1.1.0"),
    };
    row.rerun = if again.code == 0 && converged {
        format!(
            "success{}: {}",
            if attached {
                " (attached to the running task)"
            } else {
                ""
            },
            after.state
        )
    } else {
        row.unsafe_because.push(format!(
            "the rerun did not converge (exit {}, {}): {}",
            again.code,
            after.line(),
            last_error(&again)
        ));
        format!("FAILED (exit {})", again.code)
    };

    // The original listener comes back exactly.
    if after.maintenance != "off" {
        let back = w
            .run(
                &[
                    ("phase", "state"),
                    ("environment", "stage"),
                    ("config", "deploy.toml"),
                    ("state", "running"),
                ],
                RUN_ID,
                None,
            )
            .await;
        if back.code != 0 {
            row.unsafe_because.push(format!(
                "state running afterwards failed: {}",
                last_error(&back)
            ));
        }
    }
    if listener(w).await != original {
        row.unsafe_because
            .push("the listener's original rules and default action did not come back".into());
    } else if after.maintenance != "off" || seen.maintenance != "off" {
        row.rerun
            .push_str("; original listener restored by `state running`");
    }
    row.seconds = started.elapsed().as_secs_f64();
    row
}

/// One line: what a failed or interrupted run left, in the words of the phase.
fn describe_left(phase: Phase, seen: &Seen, r: &RunResult) -> String {
    let rolled_back = r.outputs.get("rolled-back").map(String::as_str) == Some("true");
    match phase {
        Phase::State => format!(
            "{} (maintenance {}), nothing lost; rerun converges",
            seen.state, seen.maintenance
        ),
        Phase::Snapshot => match seen.snapshots.iter().find(|s| !s.ends_with("available")) {
            Some(s) => format!("snapshot {s} still being made; database untouched"),
            None => "no snapshot made; database untouched".into(),
        },
        Phase::Migrate => match (&seen.migrations_running[..], &seen.last_migration) {
            ([], Some(m)) => format!("{}; migration task {m}", seen.state),
            ([], None) => format!("{}; no migration task started", seen.state),
            (running, _) => format!(
                "{}; migration task {} still running (the rerun attaches)",
                seen.state,
                running.join(",")
            ),
        },
        Phase::Deploy | Phase::Rollback => format!(
            "{}services on ACTIVE revisions ({})",
            if rolled_back { "rolled back: " } else { "" },
            seen.services.join(", ")
        ),
    }
}

// ------------------------------------------------------------------------------------------------------------------
// The runner and the report
// ------------------------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the fault matrix takes minutes: run it with scripts/faults"]
async fn fault_matrix() {
    let only = std::env::var("FAULTS_ONLY").ok();
    let mut cases: Vec<(Phase, Kind)> = vec![];
    let mut skipped: Vec<(Phase, Kind, &'static str)> = vec![];
    for phase in PHASES {
        for kind in KINDS {
            let name = format!("{}/{}", phase.name(), kind.slug());
            if only
                .as_deref()
                .is_some_and(|o| !(name == o || phase.name() == o || kind.slug() == o))
            {
                continue;
            }
            match kind.not_applicable(phase) {
                Some(why) => skipped.push((phase, kind, why)),
                None => cases.push((phase, kind)),
            }
        }
    }
    cases.sort_by_key(|(p, k)| (std::cmp::Reverse(k.weight()), *p, *k));
    let total = cases.len();
    let queue = Arc::new(Mutex::new(VecDeque::from(cases)));
    let rows = Arc::new(Mutex::new(Vec::<Row>::new()));
    let workers: usize = std::env::var("FAULTS_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let started = Instant::now();
    let mut handles = vec![];
    for n in 0..workers.min(total.max(1)) {
        let queue = queue.clone();
        let rows = rows.clone();
        handles.push(tokio::spawn(async move {
            let w = World::new().await;
            loop {
                let next = queue.lock().unwrap().pop_front();
                let Some((phase, kind)) = next else { break };
                let row = run_case(&w, phase, kind).await;
                eprintln!(
                    "[faults w{n}] {}/{}: {} (exit {}, {:.0}s){}",
                    phase.name(),
                    kind.slug(),
                    row.outcome,
                    row.exit,
                    row.seconds,
                    if row.unsafe_because.is_empty() {
                        String::new()
                    } else {
                        format!(" NOT SAFE: {}", row.unsafe_because.join("; "))
                    }
                );
                rows.lock().unwrap().push(row);
            }
        }));
    }
    for h in handles {
        h.await.expect("worker");
    }
    let mut rows = Arc::try_unwrap(rows).unwrap().into_inner().unwrap();
    rows.sort_by_key(|r| (r.phase, r.kind));
    let elapsed = started.elapsed();
    let report = render(&rows, &skipped, elapsed, workers);
    if let Ok(path) = std::env::var("FAULTS_REPORT") {
        std::fs::write(&path, &report).expect("write the report");
        eprintln!("[faults] wrote {path}");
    } else {
        println!("{report}");
    }
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| !r.unsafe_because.is_empty())
        .map(|r| {
            format!(
                "{}/{}: {}",
                r.phase.name(),
                r.kind.slug(),
                r.unsafe_because.join("; ")
            )
        })
        .collect();
    assert_eq!(rows.len(), total, "every case ran");
    assert!(
        bad.is_empty(),
        "{} case(s) not safe:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

fn machine() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into());
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    format!("{host}, {os}, {cpus} CPU(s) {cpu}")
}

fn render(
    rows: &[Row],
    skipped: &[(Phase, Kind, &str)],
    elapsed: Duration,
    workers: usize,
) -> String {
    let now = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default();
    let safe = rows.iter().filter(|r| r.unsafe_because.is_empty()).count();
    let successes = rows.iter().filter(|r| r.outcome == "success").count();
    let mut s = String::new();
    s.push_str("# Reliability: the fault matrix\n\n");
    s.push_str("Generated by `scripts/faults` (the `fault_matrix` test in `tests/faults.rs`); do not edit by hand.\n\n");
    s.push_str(&format!(
        "- Generated: {now} on {}; {} case(s) in {:.0} s with {workers} local AWS emulator(s) in parallel.\n",
        machine(),
        rows.len(),
        elapsed.as_secs_f64()
    ));
    s.push_str(&format!(
        "- **{safe} of {} cases safe**: {successes} succeeded despite the fault, {} ended in a documented safe state; every rerun without the fault succeeded{}.\n",
        rows.len(),
        rows.len() - successes,
        if safe == rows.len() { "" } else { " except where marked NOT SAFE" }
    ));
    s.push_str("- Against the local AWS (moto 5.2.5 and the emulator in `emulator/`); the Rust SDK's standard retries (5 attempts) are on, as in production.\n\n");
    s.push_str("## What each case does\n\n");
    s.push_str("| case | fault |\n|---|---|\n");
    for (kind, what) in [
        (Kind::Throttle, "the phase's key call (below) answers `ThrottlingException`/`Throttling` 5 times in a row: every attempt the SDK makes"),
        (Kind::E500, "the key call answers HTTP 500 `InternalFailure` 5 times in a row"),
        (Kind::E503, "the key call answers HTTP 503 `ServiceUnavailable` 5 times in a row"),
        (Kind::Latency, "the key call takes 4 s, twice"),
        (Kind::Reset, "the key call's TCP connection is reset with no response, 5 times in a row"),
        (Kind::TaskFailsToStart, "the migration task stops with `TaskFailedToStart` (CannotPullContainerError)"),
        (Kind::MigrationExit, "the migration container exits 3"),
        (Kind::CircuitBreaker, "core's new deployment is stopped by the circuit breaker (roll-out FAILED, 2 failed tasks)"),
        (Kind::SnapshotStuck, "new snapshots never leave `creating` (`timeout-minutes: 1`); migrate finds its snapshot still `creating`; the rerun is a new workflow run"),
        (Kind::Timeout, "`timeout-minutes: 1` and the thing waited for takes longer (services settle after 75 s, a snapshot after 13 describes, the migration never stops); the rerun follows the same thing to the end"),
        (Kind::Sigint, "SIGINT (the runner's cancel) while the phase waits"),
        (Kind::Sigterm, "SIGTERM while the phase waits"),
        (Kind::Kill9, "SIGKILL while the phase waits (nothing runs after it), then the rerun"),
    ] {
        s.push_str(&format!("| {} | {what} |\n", kind.name()));
    }
    s.push_str("\nKey calls: ");
    s.push_str(
        &PHASES
            .iter()
            .map(|p| {
                let (op, after) = p.key_call();
                format!(
                    "{} `{op}`{}",
                    p.name(),
                    if after > 0 {
                        format!(" (after {after})")
                    } else {
                        String::new()
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push_str(".\n\nSafe means, read back from AWS after the case: every service on an ACTIVE revision (its primary deployment too), settled or rolling to it; maintenance on or off, or half-way with the original listener recorded; the original rules and default action back exactly after `state running`; no migration task left running unless the rerun attaches to it; the database available; and the same phase run again without the fault succeeds. **Rerun** is that run.\n");
    for phase in PHASES {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.phase == phase).collect();
        if mine.is_empty() {
            continue;
        }
        s.push_str(&format!("\n## {}\n\n{}.\n\n", phase.name(), phase.what()));
        s.push_str("| case | outcome | exit | message (excerpt) | state left (read from AWS) | rerun without the fault |\n|---|---|---|---|---|---|\n");
        for r in mine {
            let outcome = if r.unsafe_because.is_empty() {
                excerpt(&r.outcome, 200)
            } else {
                format!(
                    "**NOT SAFE**: {}",
                    excerpt(&r.unsafe_because.join("; "), 300)
                )
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.kind.name(),
                outcome,
                r.exit,
                excerpt(&r.message, 260),
                excerpt(&r.left, 260),
                excerpt(&r.rerun, 160)
            ));
        }
        let na: Vec<String> = skipped
            .iter()
            .filter(|(p, _, _)| *p == phase)
            .map(|(_, k, why)| format!("{} ({why})", k.name()))
            .collect();
        if !na.is_empty() {
            s.push_str(&format!("\nNot applicable: {}.\n", na.join("; ")));
        }
    }
    s
}
