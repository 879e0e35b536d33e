//! The test universe: a pool of local AWS servers (moto + our extension), one per test running at a time, reset
//! when a test takes one and seeded with a realistic environment; the real `deploy-action` binary run against it
//! through `AWS_ENDPOINT_URL`. Tests run in parallel (cargo test's threads), each on its own server.

#![allow(dead_code)]

pub mod sigint;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

pub const REGION: &str = "eu-central-1";

/// The poll pace of every run in the tests (`DEPLOY_ACTION_POLL_SCALE`): a tenth of AWS's, since the local AWS
/// settles in moments. Waits still end on what they wait for, never on a fixed sleep.
pub const POLL_SCALE: &str = "0.1";

/// [`POLL_SCALE`] for runs through the library.
pub fn pace() -> deploy_action::wait::Pace {
    deploy_action::wait::Pace::parse(POLL_SCALE).unwrap()
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let venv = std::env::var_os("LOCAL_AWS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "the local AWS is not installed ({} missing): run scripts/local-aws-setup (scripts/test does it)",
        py.display()
    );
    py
}

/// `emulator/` of this checkout, or `LOCAL_AWS_EMULATOR_DIR`.
fn emulator_dir() -> PathBuf {
    std::env::var_os("LOCAL_AWS_EMULATOR_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("emulator"))
}

/// One emulator: a fork of the [`ForkServer`], on a port of its own, with a state of its own. It exits when the fork
/// server does (when this process exits, however it exits).
pub struct LocalAws {
    pub url: String,
}

/// `local_aws.py --fork-server`: one Python process that imports and warms up the emulator once (about 3 s of CPU)
/// and then forks a ready emulator per line we write to its stdin (a few milliseconds each), so a test binary with a
/// dozen emulators pays the start-up once. It exits when our end of its stdin closes, and its emulators with it.
struct ForkServer {
    stdin: std::process::ChildStdin,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
    _child: Child,
}

static FORK_SERVER: Mutex<Option<ForkServer>> = Mutex::new(None);

impl ForkServer {
    fn spawn(stderr: Stdio) -> ForkServer {
        let mut child = Command::new(python())
            .arg(emulator_dir().join("local_aws.py"))
            .args(["--host", "127.0.0.1", "--port", "0", "--fork-server"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start emulator/local_aws.py --fork-server");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        ForkServer {
            stdin,
            lines,
            _child: child,
        }
    }
}

impl LocalAws {
    /// Starts one: the first call of a process starts the fork server (about 2 s; its log and every emulator's go to
    /// `stderr`, so the first caller's choice holds for all), later ones take milliseconds.
    pub fn start(stderr: Stdio) -> LocalAws {
        use std::io::Write;
        let mut server = FORK_SERVER.lock().unwrap_or_else(|e| e.into_inner());
        let server = server.get_or_insert_with(|| ForkServer::spawn(stderr));
        writeln!(server.stdin, "start")
            .and_then(|()| server.stdin.flush())
            .expect("ask the emulator fork server for an emulator");
        let url = loop {
            let line = server
                .lines
                .next()
                .expect("the emulator fork server exited before the emulator was ready")
                .expect("read the emulator fork server's stdout");
            if let Some(url) = line.strip_prefix("LOCAL_AWS_READY ") {
                break url.trim().to_string();
            }
            if let Some(why) = line.strip_prefix("LOCAL_AWS_FAILED ") {
                panic!("the local AWS did not start: {why} (its traceback is on stderr)");
            }
        };
        LocalAws { url }
    }
}

/// The pool: emulators no test holds. A test takes one (or starts one when none is idle) and gives it back when it
/// ends, so there are as many emulators as tests ever ran at once (the test threads), each test alone on its own.
static IDLE: Mutex<Vec<LocalAws>> = Mutex::new(Vec::new());

fn take_local_aws() -> LocalAws {
    let idle = IDLE.lock().unwrap_or_else(|e| e.into_inner()).pop();
    idle.unwrap_or_else(|| LocalAws::start(Stdio::inherit()))
}

/// One test's view of the universe: an emulator of its own (reset when taken), a directory, an HTTP client.
pub struct TestContext {
    aws: Option<LocalAws>,
    pub url: String,
    pub dir: TempDir,
    pub http: reqwest::Client,
}

impl Drop for TestContext {
    /// Back to the pool, also after a failed test: the next test resets it.
    fn drop(&mut self) {
        if let Some(aws) = self.aws.take() {
            IDLE.lock().unwrap_or_else(|e| e.into_inner()).push(aws);
        }
    }
}

/// What a run of the binary left behind.
#[derive(Debug)]
pub struct RunResult {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// `$GITHUB_OUTPUT` parsed (Action runs only).
    pub outputs: BTreeMap<String, String>,
    /// `$GITHUB_STEP_SUMMARY` (Action runs only).
    pub summary: String,
}

impl RunResult {
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl TestContext {
    pub async fn new() -> TestContext {
        let aws = tokio::task::spawn_blocking(take_local_aws)
            .await
            .expect("start the local AWS");
        let ctx = TestContext {
            url: aws.url.clone(),
            aws: Some(aws),
            dir: tempfile::tempdir().unwrap(),
            http: reqwest::Client::new(),
        };
        // Empty AWS config and credentials files: nothing of the machine's own, and no warning about missing files.
        for f in ["no-aws-config", "no-aws-credentials"] {
            std::fs::write(ctx.dir.path().join(f), "").unwrap();
        }
        ctx.post("/_test/reset", serde_json::json!({})).await;
        ctx
    }

    /// Seeds an environment (see emulator/seed.py for the flags) and writes its config to `<dir>/deploy.toml`.
    pub fn seed(&self, env: &str, extra: &[&str]) -> PathBuf {
        let out = self.config_path();
        std::fs::write(&out, seed(&self.url, env, extra)).unwrap();
        out
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("deploy.toml")
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let p = self.config_path();
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn base_command(&self) -> tokio::process::Command {
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
        cmd.current_dir(self.dir.path())
            .env("AWS_ENDPOINT_URL", &self.url)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env(deploy_action::wait::Pace::VAR, POLL_SCALE)
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs the CLI front end: `deploy-action <args...>` with the config in this test's directory.
    pub async fn cli(&self, args: &[&str]) -> RunResult {
        let mut cmd = self.base_command();
        cmd.args(args);
        self.finish(cmd, None).await
    }

    /// Runs the Action front end: `INPUT_*` variables, `GITHUB_ACTIONS=true`, output and summary files.
    pub async fn action(&self, inputs: &[(&str, &str)]) -> RunResult {
        self.action_with_env(inputs, &[]).await
    }

    pub async fn action_with_env(
        &self,
        inputs: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> RunResult {
        let mut cmd = self.base_command();
        let out = self
            .dir
            .path()
            .join(format!("github_output_{}", rand_suffix()));
        let summary = self
            .dir
            .path()
            .join(format!("step_summary_{}", rand_suffix()));
        std::fs::write(&out, "").unwrap();
        std::fs::write(&summary, "").unwrap();
        cmd.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &out)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("GITHUB_REPOSITORY", "acme/backend")
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_RUN_ATTEMPT", "1")
            .env("GITHUB_SERVER_URL", "https://github.com");
        for (k, v) in inputs {
            cmd.env(format!("INPUT_{}", k.to_uppercase()), v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.finish(cmd, Some((out, summary))).await
    }

    async fn finish(
        &self,
        mut cmd: tokio::process::Command,
        files: Option<(PathBuf, PathBuf)>,
    ) -> RunResult {
        let args: Vec<String> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let child = cmd.spawn().expect("spawn deploy-action");
        wait_for_exit(child, files, &args.join(" ")).await
    }

    /// POST to the emulator's control API.
    pub async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("control API");
        assert!(r.status().is_success(), "POST {path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("control API");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Every AWS call the emulator received since the last reset, as (service, operation).
    pub async fn calls(&self) -> Vec<(String, String)> {
        let v = self.get("/_test/calls").await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["service"].as_str().unwrap_or("").to_string(),
                    c["operation"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    pub async fn clear_calls(&self) {
        let r = self
            .http
            .delete(format!("{}/_test/calls", self.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Calls that change something (anything but Describe*, List*, Get*).
    pub async fn mutating_calls(&self) -> Vec<String> {
        self.calls()
            .await
            .into_iter()
            .filter(|(_, op)| is_mutating(op))
            .map(|(s, op)| format!("{s}:{op}"))
            .collect()
    }

    pub async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&self.url)
            .credentials_provider(aws_sdk_ecs::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await
    }

    pub async fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk().await)
    }
    pub async fn rds(&self) -> aws_sdk_rds::Client {
        aws_sdk_rds::Client::new(&self.sdk().await)
    }
    pub async fn elb(&self) -> aws_sdk_elasticloadbalancingv2::Client {
        aws_sdk_elasticloadbalancingv2::Client::new(&self.sdk().await)
    }
    pub async fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::new(&self.sdk().await)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a task of `family` in `group` on `app-stage` as an earlier (killed) run of this action would have left
    /// it (started by deploy-action, tagged with the version and the run `earlier-run`); returns its ARN.
    pub async fn start_like_an_earlier_run(
        &self,
        family: &str,
        group: &str,
        version: &str,
    ) -> String {
        let ecs = self.ecs().await;
        let svc = ecs
            .describe_services()
            .cluster("app-stage")
            .services("core")
            .send()
            .await
            .unwrap();
        let net = svc.services()[0].network_configuration().cloned().unwrap();
        let tag = |k: &str, v: &str| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build();
        let out = ecs
            .run_task()
            .cluster("app-stage")
            .task_definition(family)
            .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
            .network_configuration(net)
            .started_by("deploy-action")
            .group(group)
            .tags(tag("deploy-action:version", version))
            .tags(tag("deploy-action:run", "earlier-run"))
            .send()
            .await
            .unwrap();
        out.tasks()[0].task_arn().unwrap().to_string()
    }

    /// See [`manual_revision`].
    pub async fn manual_revision(&self, service: &str, from: Option<&str>, tag: &str) -> String {
        manual_revision(&self.ecs().await, service, from, tag).await
    }

    /// (name, valueFrom) of the secrets of one container of a task definition.
    pub async fn container_secrets(&self, td: &str, container: &str) -> Vec<(String, String)> {
        let def = self
            .ecs()
            .await
            .describe_task_definition()
            .task_definition(td)
            .send()
            .await
            .unwrap()
            .task_definition
            .unwrap();
        let c = def
            .container_definitions()
            .iter()
            .find(|c| c.name() == Some(container))
            .unwrap_or_else(|| panic!("{td} has a container {container}"));
        c.secrets()
            .iter()
            .map(|s| (s.name().to_string(), s.value_from().to_string()))
            .collect()
    }

    /// Puts SecureString parameters and gives the environment `ssm-path = "<path>"`, inserted after the first line
    /// `after` of the config (a line of the environment's table, e.g. its `url` or `cluster`).
    pub async fn ssm_secrets(&self, after: &str, path: &str, params: &[(&str, &str)]) {
        let ssm = aws_sdk_ssm::Client::new(&self.sdk().await);
        for (name, value) in params {
            ssm.put_parameter()
                .name(*name)
                .value(*value)
                .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                .send()
                .await
                .unwrap();
        }
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        assert!(text.contains(after), "{after:?} is in the config");
        let text = text.replacen(after, &format!("{after}\nssm-path = \"{path}\""), 1);
        std::fs::write(self.config_path(), text).unwrap();
    }
}

/// The harness's guard against a run that hangs: a run (or a library call, [`guarded`]) still going after this is
/// killed and fails its test with a message saying so. A guard, not a measure of speed: no test asserts on how long
/// something took (the benchmarks measure that); a test asserts on what the run printed, output and called.
pub const HANG_GUARD: Duration = Duration::from_secs(180);

/// Waits for a spawned run of the binary (`args`, for the message) to exit (at most [`HANG_GUARD`]) and collects what
/// it left; `files` are its `$GITHUB_OUTPUT` and `$GITHUB_STEP_SUMMARY` (Action runs).
pub async fn wait_for_exit(
    child: tokio::process::Child,
    files: Option<(PathBuf, PathBuf)>,
    args: &str,
) -> RunResult {
    let res = tokio::time::timeout(HANG_GUARD, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "deploy-action {args} did not exit within {} s (the harness's hang guard): it hangs",
                HANG_GUARD.as_secs()
            )
        })
        .expect("wait for deploy-action");
    let (outputs, summary) = match files {
        Some((o, s)) => (
            parse_outputs(&std::fs::read_to_string(o).unwrap()),
            std::fs::read_to_string(s).unwrap(),
        ),
        None => (BTreeMap::new(), String::new()),
    };
    RunResult {
        code: res.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&res.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&res.stderr).into_owned(),
        outputs,
        summary,
    }
}

/// Waits for a run spawned with [`TestContext::base_command`] to exit (at most [`HANG_GUARD`]): its exit code, stdout
/// and stderr.
pub async fn finish(child: tokio::process::Child) -> RunResult {
    wait_for_exit(child, None, "(spawned by the test)").await
}

/// [`HANG_GUARD`] for a run through the library: `what` that has not ended by then fails the test, saying it hangs.
pub async fn guarded<F: std::future::Future>(what: &str, run: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, run)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what} did not end within {} s (the harness's hang guard): it hangs",
                HANG_GUARD.as_secs()
            )
        })
}

/// An untracked, manual deploy on `app-stage`: registers a revision like `from` (default: the service's current
/// one) with the service's own container's image tag replaced by `tag`, points the service at it and lets it
/// settle. Returns the new revision's ARN.
pub async fn manual_revision(
    ecs: &aws_sdk_ecs::Client,
    service: &str,
    from: Option<&str>,
    tag: &str,
) -> String {
    let from = match from {
        Some(f) => f.to_string(),
        None => ecs
            .describe_services()
            .cluster("app-stage")
            .services(service)
            .send()
            .await
            .unwrap()
            .services()[0]
            .task_definition()
            .unwrap()
            .to_string(),
    };
    let mut td = ecs
        .describe_task_definition()
        .task_definition(&from)
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    for c in td.container_definitions.iter_mut().flatten() {
        if c.name() == Some(service) {
            let image = c.image().unwrap();
            let repo = image.rsplit_once(':').unwrap().0;
            c.image = Some(format!("{repo}:{tag}"));
        }
    }
    let arn = deploy_action::aws::ecs::register_input_from(td, vec![])
        .send_with(ecs)
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string();
    ecs.update_service()
        .cluster("app-stage")
        .service(service)
        .task_definition(&arn)
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        ecs.describe_services()
            .cluster("app-stage")
            .services(service)
            .send()
            .await
            .unwrap();
    }
    arn
}

/// Seeds an environment into the local AWS at `url` (`POST /_test/seed`: emulator/seed.py run inside the emulator, so
/// no Python process per seed) and returns its config. Blocking, so that a test seeds without `.await`.
pub fn seed(url: &str, env: &str, extra: &[&str]) -> String {
    let mut args = vec!["--env", env, "--region", REGION];
    args.extend_from_slice(extra);
    let (status, body) = post_blocking(url, "/_test/seed", &serde_json::json!({ "args": args }));
    assert_eq!(status, 200, "seed {env} {extra:?}: {body}");
    let v: Value = serde_json::from_str(&body).expect("seed answers JSON");
    v["config"]
        .as_str()
        .expect("seed answers a config")
        .to_string()
}

/// A plain HTTP/1.1 POST of JSON to the emulator (`http://127.0.0.1:PORT`), read to the end; (status, body).
fn post_blocking(url: &str, path: &str, body: &Value) -> (u16, String) {
    use std::io::{Read, Write};
    let host = url.strip_prefix("http://").expect("an http:// URL");
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the local AWS");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the answer");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// Waits until the next wall-clock second has begun (watching the clock, not sleeping a fixed time): what AWS
/// timestamps of one-second resolution need to tell two moments apart.
pub async fn next_second() {
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let start = second();
    while second() == start {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `HH:MM:SS UTC` of a time in seconds since the epoch, as the action prints a moment of the day.
pub fn utc_clock(secs: i64) -> String {
    let day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", day / 3600, day / 60 % 60, day % 60)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Parses `$GITHUB_OUTPUT` (both `k=v` and `k<<DELIM` forms).
pub fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            for l in lines.by_ref() {
                if l == delim {
                    break;
                }
                value.push(l);
            }
            out.insert(name.to_string(), value.join("\n"));
        } else if let Some((k, v)) = line.split_once('=') {
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// Whether an operation of the call log changes something: anything but Describe*, List*, Get*, BatchGet*.
pub fn is_mutating(op: &str) -> bool {
    !(op.starts_with("Describe")
        || op.starts_with("List")
        || op.starts_with("Get")
        || op.starts_with("BatchGet"))
}
