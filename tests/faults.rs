//! The fault matrix (issue 7): every phase (state, snapshot, migrate, deploy, rollback, run, preview, restore) against every
//! fault the local AWS can inject or a run can suffer (throttling, 500, 503, latency, connection reset, a one-off task
//! that fails to start or exits non-zero, a circuit breaker, a snapshot stuck in `creating`, the deadline, SIGINT
//! while the phase waits, as it starts and between its steps, SIGTERM, and SIGKILL followed by a rerun). Each case
//! ends in `success` or in a safe state, read back from AWS afterwards:
//!
//! - every service is on an ACTIVE revision (its primary deployment too), settled or rolling to it;
//! - maintenance is on, off, or half-way with the original listener recorded, and the original rules and default
//!   action come back exactly (checked by putting the environment back to running and comparing the listener);
//! - no one-off task (migration, `run`'s task, a review app's seed) is left running, unless the rerun attaches to it;
//!   never two tasks of one group at once; a task the phase stopped says why;
//! - core's Application Auto Scaling target (seeded active, min 1) cannot scale out while core is at 0, and is
//!   active again, as found, once the environment is back to running;
//! - the database is available (restore: after the rerun; half-way, the original is kept, the restored instance is
//!   `app-stage-restoring` or `app-stage`, never two, nothing deleted);
//! - review apps (`preview`): the template's services and listener untouched, whatever the review app has is tagged
//!   as this pull request's, no rule of it forwards to a missing target group, and after the rerun a teardown
//!   removes all of it;
//! - the same run again without the fault succeeds (a rerun converges);
//! - SIGINT as the phase starts or between its steps (a call held in flight while the signal comes): nothing
//!   changes after the signal, read from the call log, besides the deliberate cleanup (stopping a one-off task,
//!   releasing its lock, pointing a changed service back).
//!
//! Run by `scripts/faults`, which writes RELIABILITY.md: `cargo test --test faults -- --ignored --nocapture`
//! (`FAULTS_REPORT=<path>` to write the table, `FAULTS_WORKERS=N` emulators in parallel, `FAULTS_ONLY=<phase>`,
//! `<case>` or `<phase>/<case>`, or several of them separated by commas, to run a subset).

#[path = "all/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    Run,
    Preview,
    Restore,
}

const PHASES: [Phase; 8] = [
    Phase::State,
    Phase::Snapshot,
    Phase::Migrate,
    Phase::Deploy,
    Phase::Rollback,
    Phase::Run,
    Phase::Preview,
    Phase::Restore,
];

/// The pull request of the review app the preview cases bring up.
const PR: &str = "7";
/// Its version (the image tag of core's container is `core-<version>`).
const PR_VERSION: &str = "pr-7-abc1234";
/// The review app's service (and target group: the name prefix defaults to the service's name).
const PR_SERVICE: &str = "core-pr-7";
/// The family of the review app's revisions.
const PR_FAMILY: &str = "stage-core-pr-7";
/// The host its listener rule routes.
const PR_HOST: &str = "pr-7.stage.example.org";

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::State => "state",
            Phase::Snapshot => "snapshot",
            Phase::Migrate => "migrate",
            Phase::Deploy => "deploy",
            Phase::Rollback => "rollback",
            Phase::Run => "run",
            Phase::Preview => "preview",
            Phase::Restore => "restore",
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
            Phase::Run => {
                "`run` the one-off task `seed` (`[environments.stage.tasks.seed]`) at v2.0.0, environment running"
            }
            Phase::Restore => {
                "`restore` of the RDS instance from the snapshot of v2.0.0, environment db-only (restore into `app-stage-restoring`, rename the original to `app-stage-before-restore-<time>`, rename the restored one to `app-stage`)"
            }
            Phase::Preview => {
                "`preview` up of pull request 7 at `pr-7-abc1234` from the template `stage` (its seed task, a revision of `stage-core-pr-7`, target group `core-pr-7`, a listener rule for `pr-7.stage.example.org`, service `core-pr-7`), without a GitHub token (no comment, no deployment record); after the rerun, `preview` with `state: stopped` tears it down"
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
            Phase::Run => v.extend([("task", "seed"), ("version", "v2.0.0")]),
            Phase::Preview => v.extend([("pr-number", PR), ("version", PR_VERSION)]),
            Phase::Restore => v.push(("version", "v2.0.0")),
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
            Phase::Migrate | Phase::Run => ("RunTask", 0),
            // The second service's update: the first one has to go back.
            Phase::Deploy => ("UpdateService", 1),
            Phase::Rollback => ("UpdateService", 0),
            // The last creation: the seed ran, the revision, target group and rule exist, the service does not.
            Phase::Preview => ("CreateService", 0),
            // The first rename (the original's): the restore exists, nothing is named back yet.
            Phase::Restore => ("ModifyDBInstance", 0),
        }
    }

    /// The "SIGINT between steps" case: the phase's first change, held in flight while the signal comes (the
    /// change is made, its answer arrives after the signal; nothing after it may change).
    fn first_change(self) -> &'static str {
        match self {
            // Maintenance on: the first rule moved.
            Phase::State | Phase::Migrate => "ModifyRule",
            Phase::Snapshot => "CreateDBSnapshot",
            Phase::Deploy | Phase::Rollback => "UpdateService",
            // The seed's revision of v2.0.0 (then RunTask would start it).
            Phase::Run => "RegisterTaskDefinition",
            // The seed ran and the revision exists: then the target group, the rule, the service.
            Phase::Preview => "CreateTargetGroup",
            Phase::Restore => "RestoreDBInstanceFromDBSnapshot",
        }
    }

    /// The task group of the phase's one-off task (`deploy-action:<environment>:<task>`), if it has one.
    fn task_group(self) -> Option<&'static str> {
        match self {
            Phase::Migrate => Some("deploy-action:stage:migration"),
            Phase::Run => Some("deploy-action:stage:seed"),
            // The review app's seed task runs in the environment `<template>-pr-N`.
            Phase::Preview => Some("deploy-action:stage-pr-7:seed"),
            Phase::State | Phase::Snapshot | Phase::Deploy | Phase::Rollback | Phase::Restore => {
                None
            }
        }
    }

    /// The one-off task's name in the words of the report.
    fn task_label(self) -> &'static str {
        match self {
            Phase::Migrate => "migration",
            Phase::Run => "seed",
            Phase::Preview => "review app seed",
            Phase::State | Phase::Snapshot | Phase::Deploy | Phase::Rollback | Phase::Restore => {
                "one-off"
            }
        }
    }

    /// The service a roll-out fault (circuit breaker, slow roll-out, signal while it rolls) is put on.
    fn rolling_service(self) -> &'static str {
        match self {
            Phase::Preview => PR_SERVICE,
            Phase::State
            | Phase::Snapshot
            | Phase::Migrate
            | Phase::Deploy
            | Phase::Rollback
            | Phase::Run
            | Phase::Restore => "core",
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
    TaskExit,
    CircuitBreaker,
    SnapshotStuck,
    Timeout,
    Sigint,
    SigintStart,
    SigintBetween,
    Sigterm,
    Kill9,
}

const KINDS: [Kind; 15] = [
    Kind::Throttle,
    Kind::E500,
    Kind::E503,
    Kind::Latency,
    Kind::Reset,
    Kind::TaskFailsToStart,
    Kind::TaskExit,
    Kind::CircuitBreaker,
    Kind::SnapshotStuck,
    Kind::Timeout,
    Kind::Sigint,
    Kind::SigintStart,
    Kind::SigintBetween,
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
            Kind::TaskExit => "migration or task exit ≠ 0",
            Kind::CircuitBreaker => "circuit breaker FAILED",
            Kind::SnapshotStuck => "snapshot stuck in creating",
            Kind::Timeout => "timeout",
            Kind::Sigint => "SIGINT mid-phase",
            Kind::SigintStart => "SIGINT just started",
            Kind::SigintBetween => "SIGINT between steps",
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
            Kind::TaskExit => "task-exit",
            Kind::CircuitBreaker => "circuit-breaker",
            Kind::SnapshotStuck => "snapshot-stuck",
            Kind::Timeout => "timeout",
            Kind::Sigint => "sigint",
            Kind::SigintStart => "sigint-start",
            Kind::SigintBetween => "sigint-between",
            Kind::Sigterm => "sigterm",
            Kind::Kill9 => "kill9",
        }
    }

    /// Why a case does not apply to a phase (the phase never meets that fault), or `None` when it does.
    fn not_applicable(self, phase: Phase) -> Option<&'static str> {
        use Kind::*;
        use Phase::*;
        match (self, phase) {
            (TaskFailsToStart | TaskExit, State | Snapshot | Deploy | Rollback) => {
                Some("no one-off task in this phase (deploy's failing tasks: circuit breaker)")
            }
            (CircuitBreaker, State) => Some("state only scales: no new deployment to fail"),
            (CircuitBreaker, Snapshot | Migrate | Run) => Some("no ECS deployment in this phase"),
            (SnapshotStuck, State | Deploy | Rollback | Run | Preview) => {
                Some("no snapshot in this phase")
            }
            (TaskFailsToStart | TaskExit | CircuitBreaker, Restore) => {
                Some("no task and no ECS deployment in this phase")
            }
            (SnapshotStuck, Restore) => Some(
                "a snapshot that is not available is refused before any change (tests/all/restore.rs)",
            ),
            (
                Throttle | E500 | E503 | Latency | Reset | TaskFailsToStart | TaskExit
                | CircuitBreaker | SnapshotStuck | Timeout | Sigint | SigintStart
                | SigintBetween | Sigterm | Kill9,
                State | Snapshot | Migrate | Deploy | Rollback | Run | Preview | Restore,
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
            | Kind::TaskExit
            | Kind::CircuitBreaker
            | Kind::Sigint
            | Kind::Sigterm
            | Kind::Kill9 => 2,
            // No wait for anything but the held call: the signal lands at a change, the phase stops at once.
            Kind::SigintStart | Kind::SigintBetween => 1,
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
    /// The cancellation cases: what changed after the signal (`changes after the signal: 0`).
    after_signal: Option<String>,
    seconds: f64,
}

// ------------------------------------------------------------------------------------------------------------------
// One local AWS per worker
// ------------------------------------------------------------------------------------------------------------------

/// One worker's universe: its emulator, a directory, clients.
struct World {
    emu: support::LocalAws,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    sdk: aws_config::SdkConfig,
}

/// The deadline of the timeout cases (the `timeout` input; runs poll at the tests' pace, `support::POLL_SCALE`).
const TIMEOUT: &str = "6s";
/// When what those cases wait for settles (seconds after it started): well past [`TIMEOUT`], so the faulted run
/// hits its deadline and the rerun follows it to the end.
const SLOWER_THAN_TIMEOUT: u64 = 15;

/// The workflow run id every run of a case uses (a rerun is a rerun of the same workflow run), except where a case
/// says a new run starts.
const RUN_ID: &str = "7001";

impl World {
    async fn new() -> World {
        // Quiet: the injected connection resets are logged as tracebacks.
        let emu = support::LocalAws::start(Stdio::null());
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

    /// The call log: (time the request arrived, `service:operation`).
    async fn calls_timed(&self) -> Vec<(f64, String)> {
        self.get("/_test/calls")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["t"].as_f64().unwrap_or(0.0),
                    format!(
                        "{}:{}",
                        c["service"].as_str().unwrap_or(""),
                        c["operation"].as_str().unwrap_or("")
                    ),
                )
            })
            .collect()
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

    /// Everything back to nothing, then `stage` seeded and its config written (a review-app template for preview);
    /// core has an Application Auto Scaling target (min 1, active), which a scale to 0 must suspend and the way back
    /// restore.
    async fn fresh(&self, phase: Phase) {
        self.post("/_test/reset", json!({})).await;
        let preview: &[&str] = if phase == Phase::Preview {
            &["--preview"]
        } else {
            &["--autoscaling"]
        };
        let config = support::seed(&self.emu.url, "stage", preview);
        std::fs::write(self.dir.path().join("deploy.toml"), config).unwrap();
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
        self.post("/_test/rds/instance-rules", json!({})).await;
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
                || k == deploy_action::wait::Pace::VAR
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
            .env(deploy_action::wait::Pace::VAR, support::POLL_SCALE)
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
        self.run_signalled(inputs, run_id, signal).await.0
    }

    /// [`World::run`], and when the signal was sent (epoch seconds, the clock of the local AWS's call log).
    async fn run_signalled(
        &self,
        inputs: &[(&str, &str)],
        run_id: &str,
        signal: Option<(Trigger, &str)>,
    ) -> (RunResult, Option<f64>) {
        let mut sent_at = None;
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
                        return (result(res, &out, &summary, Some(format!("finished before the {sig} trigger"))), None);
                    }
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                if self.triggered(trigger).await {
                    break;
                }
                assert!(Instant::now() < deadline, "trigger {trigger:?} never held");
            }
            sent_at = Some(epoch_now());
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
        (result(res, &out, &summary, None), sent_at)
    }

    async fn triggered(&self, trigger: Trigger) -> bool {
        match trigger {
            Trigger::Call(op) => self.calls().await.iter().any(|c| c == op),
            Trigger::Held => self
                .get("/_test/faults")
                .await
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["hits"].as_u64().is_some_and(|h| h > 0)),
            Trigger::TaskRunning(group) => self
                .get("/_test/ecs/tasks")
                .await
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["group"] == group && t["lastStatus"] == "RUNNING"),
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

#[derive(Debug, Clone, Copy)]
enum Trigger {
    /// The operation appears in the call log.
    Call(&'static str),
    /// A one-off task of this group is RUNNING.
    TaskRunning(&'static str),
    /// The call a `latency` fault holds is in flight (the fault has been hit).
    Held,
}

/// How long the cancellation cases hold a call (far longer than the 100 ms the trigger is polled at).
const HOLD_MS: u64 = 1500;

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
    /// Problems: a revision not ACTIVE, two one-off tasks of a group at once, a stopped task with no reason, a
    /// review app resource not tagged as the pull request's or a rule forwarding to a missing target group.
    problems: Vec<String>,
    /// The phase's one-off tasks (its group) not STOPPED yet.
    tasks_running: Vec<String>,
    /// The latest of them: id, status, stop code (and reason), exit code.
    last_task: Option<String>,
    /// What the phase's one-off task is called in the report.
    task_label: &'static str,
    snapshots: Vec<String>,
    /// Each service's version, as `status` reads it back from its image.
    versions: Vec<String>,
    /// The review app of the preview cases.
    review: Option<ReviewApp>,
    /// The restore cases: every DB instance with its status and restore role.
    restore: Option<String>,
}

impl Seen {
    fn line(&self) -> String {
        let mut parts = vec![
            format!("{}; maintenance {}", self.state, self.maintenance),
            self.services.join(", "),
            format!("db {}", self.db),
        ];
        if !self.tasks_running.is_empty() {
            parts.push(format!(
                "{} task {} RUNNING",
                self.task_label,
                self.tasks_running.join(",")
            ));
        } else if let Some(m) = &self.last_task {
            parts.push(format!("{} task {m}", self.task_label));
        }
        if !self.snapshots.is_empty() {
            parts.push(format!("snapshots {}", self.snapshots.join(", ")));
        }
        if let Some(r) = &self.review {
            parts.push(format!("review app: {}", r.line));
        }
        if let Some(r) = &self.restore {
            parts.push(format!("instances: {r}"));
        }
        parts.join("; ")
    }
}

async fn inspect(w: &World, phase: Phase) -> Seen {
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
    if let Some(p) = autoscaling_problem(w, &described).await {
        problems.push(p);
    }
    let tasks = w.get("/_test/ecs/tasks").await;
    let label = phase.task_label();
    let mine: Vec<&Value> = match phase.task_group() {
        Some(group) => tasks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["group"] == group)
            .collect(),
        None => vec![],
    };
    problems.extend(task_problems(&mine, label));
    let tasks_running = mine
        .iter()
        .filter(|t| t["lastStatus"] != "STOPPED")
        .map(|t| id(t["taskArn"].as_str().unwrap_or("")))
        .collect();
    let last_task = mine.last().map(|t| {
        let code = t["exitCodes"]
            .as_object()
            .and_then(|codes| codes.values().find_map(Value::as_i64))
            .map_or("none".to_string(), |c| c.to_string());
        let stop = match (t["stopCode"].as_str(), t["stoppedReason"].as_str()) {
            (Some(c @ "UserInitiated"), Some(why)) => format!("{c}: {why}"),
            (Some(c), _) => c.to_string(),
            (None, _) => "no stop code".to_string(),
        };
        format!(
            "{} {} ({stop}, exit {code})",
            id(t["taskArn"].as_str().unwrap_or("")),
            t["lastStatus"].as_str().unwrap_or("?"),
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
    let review = match phase {
        Phase::Preview => {
            let r = review_app(w).await;
            problems.extend(r.problems.iter().cloned());
            Some(r)
        }
        Phase::State
        | Phase::Snapshot
        | Phase::Migrate
        | Phase::Deploy
        | Phase::Rollback
        | Phase::Run
        | Phase::Restore => None,
    };
    let restore = match phase {
        Phase::Restore => {
            let (line, p) = restore_view(w).await;
            problems.extend(p);
            Some(line)
        }
        _ => None,
    };
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
        tasks_running,
        last_task,
        task_label: label,
        snapshots,
        versions: status["services"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["version"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default(),
        review,
        restore,
    }
}

/// Core's scalable target (seeded active, min 1): `(dynamic-in, dynamic-out, scheduled)` suspended, or `None`
/// when core has none (the preview cases).
async fn core_scaling(w: &World) -> Option<(bool, bool, bool)> {
    let aas = aws_sdk_applicationautoscaling::Client::new(&w.sdk);
    let out = aas
        .describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .resource_ids("service/app-stage/core")
        .send()
        .await
        .expect("DescribeScalableTargets");
    out.scalable_targets().first().map(|t| {
        let s = t.suspended_state();
        (
            s.and_then(|s| s.dynamic_scaling_in_suspended()) == Some(true),
            s.and_then(|s| s.dynamic_scaling_out_suspended()) == Some(true),
            s.and_then(|s| s.scheduled_scaling_suspended()) == Some(true),
        )
    })
}

/// Unsafe: core meant to be at 0 while Application Auto Scaling may still scale it out (dynamic or scheduled), which
/// would bring tasks back on the old code during a migration.
async fn autoscaling_problem(
    w: &World,
    described: &aws_sdk_ecs::operation::describe_services::DescribeServicesOutput,
) -> Option<String> {
    let core = described
        .services()
        .iter()
        .find(|s| s.service_name() == Some("core"))?;
    let (_, out, scheduled) = core_scaling(w).await?;
    (core.desired_count() == 0 && !(out && scheduled)).then(|| {
        "core is at 0 but its Application Auto Scaling target may scale it out (dynamic-out or scheduled scaling not suspended)".to_string()
    })
}

/// Unsafe: the environment is back up (after the rerun and `state running`) but core's scalable target is not as it
/// was found (active).
async fn autoscaling_not_restored(w: &World) -> Option<String> {
    let scaling = core_scaling(w).await?;
    (scaling != (false, false, false)).then(|| {
        format!("core's Application Auto Scaling target was not restored as found (active) once the environment was running again: suspended (in, out, scheduled) = {scaling:?}")
    })
}

/// The restore cases: every DB instance (`id status role`), and what would be unsafe: the original gone (neither
/// `app-stage` unrestored nor an instance tagged as the original), a restored instance under a third name, two
/// restored ones, or anything deleted.
async fn restore_view(w: &World) -> (String, Vec<String>) {
    let rds = aws_sdk_rds::Client::new(&w.sdk);
    let all = rds
        .describe_db_instances()
        .send()
        .await
        .expect("DescribeDBInstances");
    let role = |i: &aws_sdk_rds::types::DbInstance| {
        i.tag_list()
            .iter()
            .find(|t| t.key() == Some("deploy-action:restore"))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    let mut parts = vec![];
    let mut problems = vec![];
    let (mut originals, mut restored) = (0, 0);
    for i in all.db_instances() {
        let id = i.db_instance_identifier().unwrap_or("?");
        let r = role(i);
        parts.push(format!(
            "{id} {} {}",
            i.db_instance_status().unwrap_or("?"),
            r.as_deref().unwrap_or("untagged")
        ));
        match r.as_deref() {
            Some("restored") => {
                restored += 1;
                if id != "app-stage" && id != "app-stage-restoring" {
                    problems.push(format!("the restored instance is named {id}"));
                }
            }
            Some("original") => originals += 1,
            _ if id == "app-stage" => originals += 1,
            _ => {}
        }
    }
    if originals != 1 {
        problems.push(format!(
            "{originals} originals (expected exactly one, kept)"
        ));
    }
    if restored > 1 {
        problems.push(format!("{restored} restored instances"));
    }
    if w.calls().await.iter().any(|c| c.starts_with("Delete")) {
        problems.push("something was deleted".into());
    }
    (parts.join(", "), problems)
}

/// The invariants of one task group, from the emulator's record of every task (reading it advances none): never
/// two tasks at once (created before the other stopped), and a task stopped on request says why.
fn task_problems(tasks: &[&Value], label: &str) -> Vec<String> {
    let span = |t: &Value| {
        (
            t["createdAt"].as_f64().unwrap_or(0.0),
            t["stoppedAt"].as_f64().unwrap_or(f64::INFINITY),
        )
    };
    let mut problems = vec![];
    for (i, a) in tasks.iter().enumerate() {
        for b in &tasks[i + 1..] {
            let ((a0, a1), (b0, b1)) = (span(a), span(b));
            if a0 < b1 && b0 < a1 {
                problems.push(format!(
                    "two {label} tasks ran at once: {} and {}",
                    id(a["taskArn"].as_str().unwrap_or("")),
                    id(b["taskArn"].as_str().unwrap_or(""))
                ));
            }
        }
        let reason = a["stoppedReason"].as_str().unwrap_or("").trim();
        if a["stopCode"] == "UserInitiated" && reason.is_empty() {
            problems.push(format!(
                "{label} task {} was stopped with no reason",
                id(a["taskArn"].as_str().unwrap_or(""))
            ));
        }
    }
    problems
}

/// A review app as AWS has it: every service, target group, listener rule and revision that is not the template's.
#[derive(Debug, Clone)]
struct ReviewApp {
    /// What exists, in one line.
    line: String,
    /// What exists, in a few words (`service (IN_PROGRESS), target group, rule, 1 revision`).
    summary: String,
    /// A resource not tagged as pull request 7's, a rule forwarding to a missing target group.
    problems: Vec<String>,
    /// Up: the service runs the PR's version, rolled out, and a rule routes the PR's host to its target group.
    up: bool,
    /// Nothing of it is left (no service but INACTIVE ones, no target group, rule or ACTIVE revision).
    gone: bool,
}

/// Whether tags mark a resource as the review app's of pull request 7 from the template `stage`.
fn tagged_ours<'a>(tags: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    let tags: Vec<(&str, &str)> = tags.collect();
    tags.contains(&("deploy-action:preview", PR))
        && tags.contains(&("deploy-action:environment", "stage"))
}

async fn elb_tags(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    arn: &str,
) -> Vec<(String, String)> {
    let out = elb
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .expect("DescribeTags");
    out.tag_descriptions()
        .iter()
        .flat_map(|d| d.tags())
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn review_app(w: &World) -> ReviewApp {
    let ecs = aws_sdk_ecs::Client::new(&w.sdk);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&w.sdk);
    let mut parts = vec![];
    let mut summary = vec![];
    let mut problems = vec![];
    let pr_tag =
        |tags: &[(String, String)]| tagged_ours(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));

    // Services other than the template's.
    let listed = ecs
        .list_services()
        .cluster("app-stage")
        .send()
        .await
        .expect("ListServices");
    let others: Vec<String> = listed
        .service_arns()
        .iter()
        .map(|a| short(a).to_string())
        .filter(|n| n != "core" && n != "workers")
        .collect();
    let mut service_up = false;
    if !others.is_empty() {
        let described = ecs
            .describe_services()
            .cluster("app-stage")
            .set_services(Some(others))
            .include(aws_sdk_ecs::types::ServiceField::Tags)
            .send()
            .await
            .expect("DescribeServices");
        for svc in described.services() {
            if svc.status() == Some("INACTIVE") {
                continue;
            }
            let name = svc.service_name().unwrap_or("?");
            let tags: Vec<(String, String)> = svc
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            if !pr_tag(&tags) {
                problems.push(format!(
                    "service {name} is not tagged as pull request {PR}'s"
                ));
            }
            let td = svc.task_definition().unwrap_or_default();
            if td_status(&ecs, td).await != "ACTIVE" {
                problems.push(format!("service {name} is on {} (not ACTIVE)", short(td)));
            }
            let rollout = svc
                .deployments()
                .iter()
                .find(|d| d.status() == Some("PRIMARY"))
                .and_then(|d| d.rollout_state())
                .map_or("-", |r| r.as_str());
            parts.push(format!(
                "service {name} {} {} {rollout}, {} running of {}",
                svc.status().unwrap_or("?"),
                short(td),
                svc.running_count(),
                svc.desired_count()
            ));
            summary.push(format!("service ({rollout})"));
            if name == PR_SERVICE {
                let image = ecs
                    .describe_task_definition()
                    .task_definition(td)
                    .send()
                    .await
                    .ok()
                    .and_then(|o| o.task_definition().cloned())
                    .and_then(|t| {
                        t.container_definitions()
                            .iter()
                            .find(|c| c.name() == Some("core"))
                            .and_then(|c| c.image().map(str::to_string))
                    })
                    .unwrap_or_default();
                service_up = svc.status() == Some("ACTIVE")
                    && rollout == "COMPLETED"
                    && svc.deployments().len() == 1
                    && svc.running_count() == svc.desired_count()
                    && image.ends_with(&format!(":core-{PR_VERSION}"));
            }
        }
    }

    // Target groups other than the template's.
    let groups = elb
        .describe_target_groups()
        .send()
        .await
        .expect("DescribeTargetGroups");
    let existing: Vec<String> = groups
        .target_groups()
        .iter()
        .filter_map(|g| g.target_group_arn().map(str::to_string))
        .collect();
    let mut pr_group = None;
    for g in groups.target_groups() {
        let name = g.target_group_name().unwrap_or("?");
        if name == "stage-core" || name == "stage-workers" {
            continue;
        }
        let arn = g.target_group_arn().unwrap_or_default();
        if !pr_tag(&elb_tags(&elb, arn).await) {
            problems.push(format!(
                "target group {name} is not tagged as pull request {PR}'s"
            ));
        }
        parts.push(format!("target group {name}"));
        summary.push("target group".to_string());
        if name == PR_SERVICE {
            pr_group = Some(arn.to_string());
        }
    }

    // Rules of the review app (an untagged new rule shows as a change of the template's listener).
    let listener = listener_arn(w).await;
    let rules = elb
        .describe_rules()
        .listener_arn(&listener)
        .send()
        .await
        .expect("DescribeRules");
    let mut rule_up = false;
    for r in rules.rules() {
        if r.is_default() == Some(true) {
            continue;
        }
        let arn = r.rule_arn().unwrap_or_default();
        let tags = elb_tags(&elb, arn).await;
        if !tags.iter().any(|(k, _)| k == "deploy-action:preview") {
            continue;
        }
        if !pr_tag(&tags) {
            problems.push(format!(
                "rule {} is tagged as another review app's ({tags:?})",
                r.priority().unwrap_or("?")
            ));
        }
        let forwards: Vec<String> = r
            .actions()
            .iter()
            .flat_map(|a| {
                let mut arns: Vec<String> = a
                    .target_group_arn()
                    .map(str::to_string)
                    .into_iter()
                    .collect();
                if let Some(f) = a.forward_config() {
                    arns.extend(
                        f.target_groups()
                            .iter()
                            .filter_map(|t| t.target_group_arn().map(str::to_string)),
                    );
                }
                arns
            })
            .collect();
        for f in &forwards {
            if !existing.contains(f) {
                problems.push(format!(
                    "rule {} of the review app forwards to a missing target group {f}",
                    r.priority().unwrap_or("?")
                ));
            }
        }
        let hosts: Vec<String> = r
            .conditions()
            .iter()
            .filter_map(|c| c.host_header_config())
            .flat_map(|h| h.values().iter().cloned())
            .collect();
        parts.push(format!(
            "rule {} {} → {}",
            r.priority().unwrap_or("?"),
            hosts.join(","),
            forwards
                .iter()
                .map(|f| tg_name(f))
                .collect::<Vec<_>>()
                .join(",")
        ));
        summary.push("rule".to_string());
        rule_up |= hosts == [PR_HOST] && pr_group.as_ref().is_some_and(|g| forwards == [g.clone()]);
    }

    // Revisions of the PR's family.
    let revisions = ecs
        .list_task_definitions()
        .family_prefix(PR_FAMILY)
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .expect("ListTaskDefinitions");
    for arn in revisions.task_definition_arns() {
        let out = ecs
            .describe_task_definition()
            .task_definition(arn)
            .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
            .send()
            .await
            .expect("DescribeTaskDefinition");
        let ours = tagged_ours(
            out.tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        );
        if !ours {
            problems.push(format!(
                "revision {} is not tagged as pull request {PR}'s",
                short(arn)
            ));
        }
        parts.push(format!("revision {}", short(arn)));
    }

    let n = revisions.task_definition_arns().len();
    if n > 0 {
        summary.push(format!("{n} revision{}", if n == 1 { "" } else { "s" }));
    }
    ReviewApp {
        summary: if summary.is_empty() {
            "nothing".into()
        } else {
            summary.join(", ")
        },
        line: if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        },
        problems,
        up: service_up && rule_up,
        gone: parts.is_empty(),
    }
}

/// A target group's name from its ARN (`…:targetgroup/<name>/<id>`).
fn tg_name(arn: &str) -> &str {
    arn.rsplit('/').nth(1).unwrap_or(arn)
}

/// The template's services (`core`, `workers` of `app-stage`) as DescribeServices returns them.
async fn describe_template(w: &World) -> Vec<aws_sdk_ecs::types::Service> {
    aws_sdk_ecs::Client::new(&w.sdk)
        .describe_services()
        .cluster("app-stage")
        .services("core")
        .services("workers")
        .send()
        .await
        .expect("DescribeServices")
        .services()
        .to_vec()
}

/// The template's services as they are configured: revision and desired count.
async fn template_services(w: &World) -> String {
    describe_template(w)
        .await
        .iter()
        .map(|s| {
            format!(
                "{} {} ×{}",
                s.service_name().unwrap_or("?"),
                short(s.task_definition().unwrap_or_default()),
                s.desired_count()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
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

/// The seeded load balancer's one listener.
async fn listener_arn(w: &World) -> String {
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
    ls.listeners()[0].listener_arn().unwrap().to_string()
}

/// The listener as it routes: default actions and every rule's priority, conditions and actions (and no
/// deploy-action tag left on it when maintenance is off). Rules tagged as a review app's are left out: they are
/// the review app's, read by [`review_app`]; any other new or changed rule shows.
async fn listener(w: &World) -> String {
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&w.sdk);
    let arn = listener_arn(w).await;
    let ls = elb
        .describe_listeners()
        .listener_arns(&arn)
        .send()
        .await
        .expect("DescribeListeners");
    let l = &ls.listeners()[0];
    let rules = elb
        .describe_rules()
        .listener_arn(&arn)
        .send()
        .await
        .expect("DescribeRules");
    let mut lines = vec![];
    for r in rules.rules() {
        if r.is_default() != Some(true) {
            let tags = elb_tags(&elb, r.rule_arn().unwrap_or_default()).await;
            if tags.iter().any(|(k, _)| k == "deploy-action:preview") {
                continue;
            }
        }
        lines.push(format!(
            "{} {:?} {:?}",
            r.priority().unwrap_or("?"),
            r.conditions(),
            r.actions()
        ));
    }
    lines.sort();
    let ours: Vec<String> = elb_tags(&elb, &arn)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("deploy-action:"))
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
    support::manual_revision(&ecs, "core", None, "core-v6.6.6").await;
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
    // Task rules match the phase's task group (in the RunTask request).
    let group = phase.task_group().unwrap_or("no one-off task");
    let rolling = phase.rolling_service();
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
                json!({"match": group, "stopCode": "TaskFailedToStart", "times": 1}),
            )
            .await
        }
        Kind::TaskExit => {
            let logs = match phase {
                Phase::Migrate => json!(["applying 0002_users", "ERROR: column \"email\" contains null values"]),
                Phase::State
                | Phase::Snapshot
                | Phase::Deploy
                | Phase::Rollback
                | Phase::Run
                | Phase::Preview
                | Phase::Restore => json!(["seeding users", "ERROR: duplicate key value violates unique constraint \"users_email_key\""]),
            };
            w.post(
                "/_test/ecs/task-rules",
                json!({"match": group, "exitCode": 3, "describes": 1, "times": 1, "logs": logs}),
            )
            .await
        }
        Kind::CircuitBreaker => {
            w.post(
                "/_test/ecs/service-rules",
                json!({"service": rolling, "outcome": "FAILED", "times": 1, "failedTasks": 2,
                       "taskLogs": ["boot", "panic: config missing"]}),
            )
            .await
        }
        Kind::SnapshotStuck => {
            w.post("/_test/rds/snapshot-rules", json!({"neverAvailable": true}))
                .await;
            match phase {
                Phase::Snapshot => s.inputs.push(("timeout", TIMEOUT)),
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
                Phase::State
                | Phase::Deploy
                | Phase::Rollback
                | Phase::Run
                | Phase::Preview
                | Phase::Restore => {}
            }
            s.rerun_new_run = true;
        }
        Kind::Timeout => {
            s.inputs.push(("timeout", TIMEOUT));
            match phase {
                // Slower than the deadline, but they do finish: the rerun follows them to the end.
                Phase::State => {
                    w.post("/_test/ecs/service-rules", json!({"service": "*", "settleAfterSeconds": SLOWER_THAN_TIMEOUT}))
                        .await
                }
                Phase::Snapshot => {
                    w.post("/_test/rds/snapshot-rules", json!({"creatingDescribes": 12}))
                        .await
                }
                // A task that never stops: the phase stops it at the deadline; the rerun starts a new one.
                Phase::Migrate | Phase::Run => {
                    w.post(
                        "/_test/ecs/task-rules",
                        json!({"match": group, "neverStop": true, "times": 1}),
                    )
                    .await
                }
                Phase::Deploy | Phase::Rollback | Phase::Preview => {
                    w.post(
                        "/_test/ecs/service-rules",
                        json!({"service": rolling, "settleAfterSeconds": SLOWER_THAN_TIMEOUT, "times": 1}),
                    )
                    .await
                }
                // Timeout while restoring: the restored instance is still `creating` at the deadline (10 describes
                // of the 1-minute wait are not enough); the rerun waits for it and finishes.
                Phase::Restore => {
                    w.post("/_test/rds/instance-rules", json!({"createDescribes": 9}))
                        .await
                }
            }
        }
        Kind::SigintStart | Kind::SigintBetween => {
            // Held (the local AWS answers it HOLD_MS late): the phase's very first AWS call, or its first change.
            let mut hold = json!({"kind": "latency", "latencyMs": HOLD_MS, "count": 1});
            if kind == Kind::SigintBetween {
                hold["operation"] = json!(phase.first_change());
            }
            w.post("/_test/faults", hold).await;
            s.signal = Some((Trigger::Held, "INT"));
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
                | Kind::TaskExit
                | Kind::CircuitBreaker
                | Kind::SnapshotStuck
                | Kind::Timeout
                | Kind::SigintStart
                | Kind::SigintBetween => unreachable!("signals while the phase waits only"),
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
                Phase::Migrate | Phase::Run => {
                    // Killed: the task runs on and the rerun attaches to it; signalled: the run stops it.
                    let rule = if kind == Kind::Kill9 {
                        json!({"match": group, "runningSeconds": 8, "times": 1, "logs": ["working"]})
                    } else {
                        json!({"match": group, "neverStop": true, "times": 1})
                    };
                    w.post("/_test/ecs/task-rules", rule).await;
                    Trigger::TaskRunning(group)
                }
                // Between the two renames: the original renamed, the rename still settling.
                Phase::Restore => {
                    w.post("/_test/rds/instance-rules", json!({"renameDescribes": 3}))
                        .await;
                    Trigger::Call("ModifyDBInstance")
                }
                // While the roll-out is watched (the review app's: every resource made, the service rolling).
                Phase::Deploy | Phase::Rollback | Phase::Preview => {
                    w.post(
                        "/_test/ecs/service-rules",
                        json!({"service": rolling, "settleAfterSeconds": 5, "times": 1}),
                    )
                    .await;
                    Trigger::Call(if phase == Phase::Preview {
                        "CreateService"
                    } else {
                        "UpdateService"
                    })
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
        Phase::State | Phase::Snapshot | Phase::Deploy | Phase::Run | Phase::Preview => Ok(()),
        Phase::Restore => {
            ok(
                w.run(&Phase::Snapshot.inputs(), "6001", None).await,
                "snapshot",
            )?;
            ok(
                w.run(&Phase::State.inputs(), "6003", None).await,
                "state db-only",
            )
        }
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
    elide_middle(&line, 320)
}

/// Long messages keep their head (what was being done, what exists) and their tail (the AWS error it ended on).
fn elide_middle(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= n {
        return s.to_string();
    }
    let head = n * 3 / 5;
    let tail = n - head;
    format!(
        "{} … {}",
        chars[..head].iter().collect::<String>(),
        chars[chars.len() - tail..].iter().collect::<String>()
    )
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
        after_signal: None,
        seconds: 0.0,
    };
    w.fresh(phase).await;
    let original = listener(w).await;
    let template = template_services(w).await;
    if let Err(e) = precondition(w, phase, kind).await {
        row.unsafe_because.push(format!("precondition: {e}"));
        return row;
    }
    // Read before the fault is set (the "just started" case holds the next AWS call, whoever makes it).
    let before = service_revisions(w).await;
    let setup = apply(w, phase, kind).await;
    // A signal's trigger is a call of the faulted run, not one of the precondition's (rollback's deploy of v1.1.0
    // calls UpdateService): else the signal can come before the run has its signal handlers.
    w.delete("/_test/calls").await;
    let (r, signalled) = w.run_signalled(&setup.inputs, RUN_ID, setup.signal).await;
    if matches!(kind, Kind::SigintStart | Kind::SigintBetween) {
        // Read before anything else calls the local AWS (the inspection's `status` reads only, but still).
        let (note, problem) = signal_accounting(w, signalled, &before).await;
        row.after_signal = Some(note);
        row.unsafe_because.extend(problem);
    }
    row.exit = match (r.code, setup.signal) {
        (-1, Some((_, "KILL"))) => "killed".into(),
        (c, _) => c.to_string(),
    };
    let seen = inspect(w, phase).await;
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
        Kind::Sigint | Kind::Sigterm | Kind::SigintStart | Kind::SigintBetween => &[130, 0],
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
    // Between the two renames no database has the name: the restore's half-way state, finished by the rerun.
    if !["available"].contains(&seen.db.as_str()) && phase != Phase::Restore {
        row.unsafe_because.push(format!("database {}", seen.db));
    }
    if phase == Phase::Preview {
        row.unsafe_because
            .extend(template_untouched(w, &original, &template, "the faulted run").await);
    }
    if r.code == 0 {
        row.outcome = match row.after_signal {
            Some(_) => "success (the signal came after the last change)".into(),
            None => "success".into(),
        };
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
    let after = inspect(w, phase).await;
    let attached = again.stderr.contains("instead of starting another")
        || again.stderr.contains("started meanwhile by another run");
    let label = phase.task_label();
    if !seen.tasks_running.is_empty() && !attached {
        row.unsafe_because.push(format!(
            "{label} task {} was left running and the rerun did not attach to it",
            seen.tasks_running.join(",")
        ));
    }
    if !after.tasks_running.is_empty() {
        row.unsafe_because.push(format!(
            "{label} task {} still running after the rerun",
            after.tasks_running.join(",")
        ));
    }
    row.unsafe_because.extend(after.problems.iter().cloned());
    let exit_0 = again.outputs.get("exit-code").map(String::as_str) == Some("0");
    let converged = match phase {
        Phase::State => after.state == "db-only",
        Phase::Snapshot => again.outputs.get("result").map(String::as_str) == Some("success"),
        Phase::Migrate => after.state == "db-only" && exit_0,
        Phase::Deploy => after.state == "running" && after.versions.iter().all(|v| v == "v2.0.0"),
        Phase::Rollback => after.state == "running" && after.versions.iter().all(|v| v == "v1.1.0"),
        Phase::Run => after.state == "running" && exit_0,
        Phase::Preview => after.review.as_ref().is_some_and(|r| r.up),
        Phase::Restore => {
            after.db == "available"
                && matches!(
                    again.outputs.get("restore-result").map(String::as_str),
                    Some("restored" | "already-restored")
                )
        }
    };
    row.rerun = if again.code == 0 && converged {
        format!(
            "success{}: {}",
            if attached {
                " (attached to the running task)"
            } else {
                ""
            },
            match &after.review {
                Some(_) => format!(
                    "review app up ({PR_SERVICE} on {PR_VERSION}, rule {PR_HOST} → {PR_SERVICE})"
                ),
                None => after.state.clone(),
            }
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

    // A review app, up again, is torn down completely, and the template is as it was.
    if phase == Phase::Preview {
        row.unsafe_because
            .extend(template_untouched(w, &original, &template, "the rerun").await);
        let mut down = phase.inputs();
        down.push(("state", "stopped"));
        let d = w.run(&down, RUN_ID, None).await;
        let left = review_app(w).await;
        row.unsafe_because.extend(left.problems.iter().cloned());
        if d.code == 0 && left.gone {
            row.rerun
                .push_str("; `state: stopped` then removed all of it");
        } else {
            row.unsafe_because.push(format!(
                "the teardown after the rerun did not remove everything (exit {}, left: {}): {}",
                d.code,
                left.line,
                last_error(&d)
            ));
            row.rerun.push_str("; teardown FAILED");
        }
        let tasks = w.get("/_test/ecs/tasks").await;
        let teardowns: Vec<&Value> = tasks
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["group"] == "deploy-action:stage-pr-7:teardown")
            .collect();
        row.unsafe_because
            .extend(task_problems(&teardowns, "review app teardown"));
    }

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
    if let Some(p) = autoscaling_not_restored(w).await {
        row.unsafe_because.push(p);
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

fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Whether a call of the log (`service:Operation`) changes something: everything but reads.
fn is_change(call: &str) -> bool {
    let op = call.rsplit(':').next().unwrap_or(call);
    !["Describe", "List", "Get", "BatchGet", "Filter"]
        .iter()
        .any(|read| op.starts_with(read))
}

/// The template's services and the revision each is on (before a run: what "pointed back" means).
async fn service_revisions(w: &World) -> BTreeMap<String, String> {
    describe_template(w)
        .await
        .iter()
        .map(|s| {
            (
                s.service_name().unwrap_or_default().to_string(),
                s.task_definition().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Splits the changes of `calls` (time the request arrived, `service:Operation`) made after `at` into changes and
/// the deliberate cleanup of a cancelled phase: stopping its one-off task (`StopTask`), releasing the one-off
/// task's lock (ECS `UntagResource`, the only ECS untagging a phase does) and pointing a changed service back
/// (`UpdateService`, as many as `pointed_back` deployments went back to a service's revision from before the run).
fn split_after(
    calls: &[(f64, String)],
    at: f64,
    mut pointed_back: usize,
) -> (Vec<String>, Vec<String>) {
    let (mut changes, mut cleanup) = (vec![], vec![]);
    for (_, call) in calls.iter().filter(|(t, c)| *t > at && is_change(c)) {
        let deliberate = match call.as_str() {
            "ecs:StopTask" | "ecs:UntagResource" => true,
            "ecs:UpdateService" if pointed_back > 0 => {
                pointed_back -= 1;
                true
            }
            _ => false,
        };
        if deliberate {
            cleanup.push(call.clone());
        } else {
            changes.push(call.clone());
        }
    }
    (changes, cleanup)
}

/// The cancellation cases, from the call log: the row's note (`changes after the signal: 0`, and the cleanup) and
/// what is not safe: a change after the signal, or no signal at all (the run ended before its held call).
async fn signal_accounting(
    w: &World,
    signalled: Option<f64>,
    before: &BTreeMap<String, String>,
) -> (String, Option<String>) {
    let Some(at) = signalled else {
        return (
            "no signal sent".into(),
            Some("the signal was never sent: the run ended before its held call".into()),
        );
    };
    let rollouts = w.get("/_test/ecs/rollouts").await;
    let pointed_back = rollouts
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["kind"] == "deployment"
                && r["startedAt"].as_f64().is_some_and(|t| t > at)
                && before
                    .get(r["service"].as_str().unwrap_or_default())
                    .is_some_and(|td| r["taskDefinition"].as_str() == Some(td.as_str()))
        })
        .count();
    let (changes, cleanup) = split_after(&w.calls_timed().await, at, pointed_back);
    let mut note = format!("changes after the signal: {}", changes.len());
    if !changes.is_empty() {
        note.push_str(&format!(" ({})", changes.join(", ")));
    }
    if !cleanup.is_empty() {
        note.push_str(&format!("; cleanup: {}", cleanup.join(", ")));
    }
    let problem = (!changes.is_empty()).then(|| {
        format!(
            "{} change(s) after the signal: {}",
            changes.len(),
            changes.join(", ")
        )
    });
    (note, problem)
}

/// Why the template environment of a review app is not as it was before the case (nothing when it is): its
/// services' revisions and desired counts, its listener's default action and rules (review app rules aside).
async fn template_untouched(
    w: &World,
    listener_before: &str,
    services_before: &str,
    after: &str,
) -> Vec<String> {
    let mut problems = vec![];
    let services = template_services(w).await;
    if services != services_before {
        problems.push(format!(
            "the template's services changed after {after}: {services_before} → {services}"
        ));
    }
    if listener(w).await != listener_before {
        problems.push(format!(
            "the template's listener rules or default action changed after {after}"
        ));
    }
    problems
}

/// One line: what a failed or interrupted run left, in the words of the phase.
fn describe_left(phase: Phase, seen: &Seen, r: &RunResult) -> String {
    let rolled_back = r.outputs.get("rolled-back").map(String::as_str) == Some("true");
    let task = || match (&seen.tasks_running[..], &seen.last_task) {
        ([], Some(m)) => format!("{} task {m}", seen.task_label),
        ([], None) => format!("no {} task started", seen.task_label),
        (running, _) => format!(
            "{} task {} still running (the rerun attaches)",
            seen.task_label,
            running.join(",")
        ),
    };
    match phase {
        Phase::State => format!(
            "{} (maintenance {}), nothing lost; rerun converges",
            seen.state, seen.maintenance
        ),
        Phase::Snapshot => match seen.snapshots.iter().find(|s| !s.ends_with("available")) {
            Some(s) => format!("snapshot {s} still being made; database untouched"),
            None => "no snapshot made; database untouched".into(),
        },
        Phase::Migrate | Phase::Run => format!("{}; {}", seen.state, task()),
        Phase::Deploy | Phase::Rollback => format!(
            "{}services on ACTIVE revisions ({})",
            if rolled_back { "rolled back: " } else { "" },
            seen.services.join(", ")
        ),
        Phase::Restore => format!(
            "nothing deleted, the original kept (instances: {})",
            seen.restore.as_deref().unwrap_or("?")
        ),
        Phase::Preview => format!(
            "review app: {}; {}; template untouched",
            match &seen.review {
                Some(r) if r.gone => "nothing created".to_string(),
                Some(r) => format!("{}, all tagged as PR 7's", r.summary),
                None => "?".to_string(),
            },
            task()
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
            if only.as_deref().is_some_and(|only| {
                !only
                    .split(',')
                    .any(|o| name == o || phase.name() == o || kind.slug() == o)
            }) {
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
    s.push_str("- Against the local AWS (moto 5.2.5 and the emulator in `emulator/`); the Rust SDK's standard retries (5 attempts) are on, as in production.\n");
    s.push_str("- Not in the matrix: `status`, `check-config` and `iam-policy` change nothing (the last two make no AWS call); `status` under persistent throttling, 500, 503 and connection resets exits 1 naming the call with zero writes (`status_under_persistent_faults_exits_1_naming_the_call_and_changes_nothing` in `tests/all/foundation.rs`).\n\n");
    s.push_str("## What each case does\n\n");
    s.push_str("| case | fault |\n|---|---|\n");
    for (kind, what) in [
        (Kind::Throttle, "the phase's key call (below) answers `ThrottlingException`/`Throttling` 5 times in a row: every attempt the SDK makes"),
        (Kind::E500, "the key call answers HTTP 500 `InternalFailure` 5 times in a row"),
        (Kind::E503, "the key call answers HTTP 503 `ServiceUnavailable` 5 times in a row"),
        (Kind::Latency, "the key call takes 4 s, twice"),
        (Kind::Reset, "the key call's TCP connection is reset with no response, 5 times in a row"),
        (Kind::TaskFailsToStart, "the phase's one-off task (migrate: the migration; run: `seed`; preview: the review app's seed task) stops with `TaskFailedToStart` (CannotPullContainerError)"),
        (Kind::TaskExit, "the one-off task's container exits 3"),
        (Kind::CircuitBreaker, "the new deployment (deploy, rollback: core's; preview: the review app's service) is stopped by the circuit breaker (roll-out FAILED, 2 failed tasks)"),
        (Kind::SnapshotStuck, "new snapshots never leave `creating` (`timeout: 6s`); migrate finds its snapshot still `creating`; the rerun is a new workflow run"),
        (Kind::Timeout, "`timeout: 6s` and the thing waited for takes longer (services settle after 15 s, a snapshot after 13 describes; the migration or `run`'s task never stops, so the phase stops it); the rerun follows the same thing to the end (or starts the task again)"),
        (Kind::Sigint, "SIGINT (the runner's cancel) while the phase waits (for the one-off task while it runs; preview: while the review app's service rolls out)"),
        (Kind::SigintStart, "SIGINT as soon as the phase's first AWS call is in flight (the local AWS holds it 1.5 s): before its first change. **Changes after the signal** counts, from the call log, the mutating calls whose request came after the signal, besides the deliberate cleanup (stopping a one-off task, releasing its lock, pointing a changed service back); any is NOT SAFE"),
        (Kind::SigintBetween, "SIGINT while the phase's first change is in flight (held 1.5 s: made, answered after the signal): state, migrate the first `ModifyRule` (maintenance on); snapshot `CreateDBSnapshot`; deploy, rollback the first `UpdateService`; run `RegisterTaskDefinition` (before `RunTask`); preview `CreateTargetGroup` (after the seed and the revision); restore `RestoreDBInstanceFromDBSnapshot`. Changes after the signal counted as above"),
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
    s.push_str(".\n\nSafe means, read back from AWS after the case: every service on an ACTIVE revision (its primary deployment too), settled or rolling to it; maintenance on or off, or half-way with the original listener recorded; the original rules and default action back exactly after `state running`; no one-off task (migration, `run`'s task, a review app's seed) left running unless the rerun attaches to it, never two tasks of one group running at once, and every task the phase stopped has a stopped reason; the database available; core's Application Auto Scaling target (seeded active, min 1) suspended whenever core is at 0 and active again, as found, once the environment is running; and the same phase run again without the fault succeeds. **Rerun** is that run.\n\nFor `preview` also: after the case and after the rerun, the template's services (revision, desired count) and its listener's default action and rules are exactly as before; every service, target group, listener rule and task definition revision of the review app is tagged `deploy-action:preview = 7` and `deploy-action:environment = stage`; no rule of it forwards to a missing target group; the rerun brings it up (service on the PR's image, roll-out completed, the rule routing the PR's host to its target group); and `preview` with `state: stopped` then removes all of it (service, rule, target group, every revision of the PR's family).\n");
    for phase in PHASES {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.phase == phase).collect();
        if mine.is_empty() {
            continue;
        }
        s.push_str(&format!("\n## {}\n\n{}.\n\n", phase.name(), phase.what()));
        s.push_str("| case | outcome | exit | message (excerpt) | state left (read from AWS) | rerun without the fault |\n|---|---|---|---|---|---|\n");
        for r in mine {
            let outcome = if r.unsafe_because.is_empty() {
                match &r.after_signal {
                    Some(note) => format!("{}; {}", excerpt(&r.outcome, 200), excerpt(note, 200)),
                    None => excerpt(&r.outcome, 200),
                }
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
                excerpt(&r.message, 330),
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

/// The task-group invariants the matrix reads from the emulator can fail: two tasks at once, a stop with no reason.
#[test]
fn task_invariants_flag_overlaps_and_stops_without_a_reason() {
    let task = |arn: &str, created: f64, stopped: Option<f64>, code: &str, reason: &str| {
        json!({"taskArn": format!("arn:aws:ecs:eu-central-1:1:task/app-stage/{arn}"), "createdAt": created,
               "stoppedAt": stopped, "stopCode": code, "stoppedReason": reason})
    };
    let one_after_the_other = [
        task(
            "aaaaaaaa",
            1.0,
            Some(5.0),
            "UserInitiated",
            "cancelled by workflow",
        ),
        task("bbbbbbbb", 5.5, None, "", ""),
    ];
    assert_eq!(
        task_problems(&one_after_the_other.iter().collect::<Vec<_>>(), "seed"),
        Vec::<String>::new()
    );
    let at_once = [
        task("aaaaaaaa", 1.0, None, "", ""),
        task("bbbbbbbb", 3.0, Some(4.0), "UserInitiated", " "),
    ];
    assert_eq!(
        task_problems(&at_once.iter().collect::<Vec<_>>(), "seed"),
        vec![
            "two seed tasks ran at once: aaaaaaaa and bbbbbbbb".to_string(),
            "seed task bbbbbbbb was stopped with no reason".to_string()
        ]
    );
    let tags = |pairs: &[(&'static str, &'static str)]| tagged_ours(pairs.iter().copied());
    assert!(tags(&[
        ("deploy-action:environment", "stage"),
        ("deploy-action:preview", PR)
    ]));
    assert!(!tags(&[("deploy-action:preview", PR)]));
    assert!(!tags(&[
        ("deploy-action:environment", "stage"),
        ("deploy-action:preview", "70")
    ]));
}

/// The cancellation cases' count: only changes whose request came after the signal, the deliberate cleanup apart.
#[test]
fn changes_after_the_signal_leave_out_reads_earlier_calls_and_the_cleanup() {
    let calls: Vec<(f64, String)> = [
        (9.0, "elbv2:ModifyRule"),
        (10.5, "elbv2:DescribeRules"),
        (11.0, "ecs:UpdateService"),
        (11.5, "ecs:UpdateService"),
        (12.0, "ecs:StopTask"),
        (12.5, "ecs:UntagResource"),
        (13.0, "logs:FilterLogEvents"),
        (13.5, "elbv2:AddTags"),
    ]
    .into_iter()
    .map(|(t, c)| (t, c.to_string()))
    .collect();
    let s = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    for (pointed_back, changes, cleanup) in [
        (
            0,
            s(&["ecs:UpdateService", "ecs:UpdateService", "elbv2:AddTags"]),
            s(&["ecs:StopTask", "ecs:UntagResource"]),
        ),
        (
            1,
            s(&["ecs:UpdateService", "elbv2:AddTags"]),
            s(&["ecs:UpdateService", "ecs:StopTask", "ecs:UntagResource"]),
        ),
        (
            2,
            s(&["elbv2:AddTags"]),
            s(&[
                "ecs:UpdateService",
                "ecs:UpdateService",
                "ecs:StopTask",
                "ecs:UntagResource",
            ]),
        ),
    ] {
        assert_eq!(
            split_after(&calls, 10.0, pointed_back),
            (changes, cleanup),
            "{pointed_back} pointed back"
        );
    }
    assert_eq!(split_after(&calls, 20.0, 0), (vec![], vec![]));
}
