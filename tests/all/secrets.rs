//! Issue 7, secrets: the bypass header (name and value), the GitHub token and SSM SecureString values never appear in
//! stdout, stderr, the step summary or any output, on success, failure, dry-run and bad-input paths; `::add-mask::`
//! comes before every other line of both streams.

use serde_json::json;

use crate::support::{RunResult, TestContext};

const HEADER_NAME: &str = "x-bypass-7f3a9c";
const HEADER_VALUE: &str = "hunter2-Bypass-Value-91c";
const TOKEN: &str = "ghs_SecretToken1234567890abcdef";
/// SecureString parameters under the environment's `ssm-path`: deploy reads their ARNs only.
const SSM: [(&str, &str); 2] = [
    (
        "/app/stage/DATABASE_URL",
        "postgres://app:pa55w0rd-8d1e@db/app",
    ),
    ("/app/stage/nested/API_KEY", "k3y-5ecret-e21b"),
];

/// A run: what it is, its inputs, its exit code (and, for failures, what its log must show).
type Run<'a> = (&'a str, Vec<(&'a str, &'a str)>, i32);
type FailingRun<'a> = (&'a str, Vec<(&'a str, &'a str)>, i32, &'a str);

/// Inputs every run gets: the environment, the config, the token and the header pair.
fn inputs<'a>(phase: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("phase", phase),
        ("environment", "stage"),
        ("config", "deploy.toml"),
        ("github-token", TOKEN),
        // The token must be masked even when GitHub is not used: no GitHub API in these tests.
        ("github-deployments", "false"),
        ("maintenance-header-name", HEADER_NAME),
        ("maintenance-header-value", HEADER_VALUE),
    ];
    for (k, val) in extra {
        v.retain(|(kk, _)| kk != k);
        v.push((k, val));
    }
    v
}

/// Every secret value anywhere in what a run left: only `::add-mask::` lines may hold the masked ones, nothing may
/// hold an SSM value, and both streams start with the masks.
#[track_caller]
fn assert_no_leak(what: &str, r: &RunResult) {
    let masked = [HEADER_NAME, HEADER_VALUE, TOKEN];
    let never: Vec<&str> = SSM.iter().map(|(_, v)| *v).collect();
    for (name, stream) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        let lines: Vec<&str> = stream.lines().collect();
        let first_other = lines
            .iter()
            .position(|l| !l.starts_with("::add-mask::"))
            .unwrap_or(lines.len());
        for secret in masked {
            let mask = format!("::add-mask::{secret}");
            let at = lines.iter().position(|l| *l == mask);
            assert!(
                at.is_some_and(|i| i < first_other),
                "{what}: {name} must register {secret} with ::add-mask:: before any other line:\n{stream}"
            );
        }
        for (i, l) in lines.iter().enumerate() {
            if i < first_other {
                continue;
            }
            for secret in masked.iter().chain(&never) {
                assert!(
                    !l.contains(secret),
                    "{what}: {secret} leaked on {name} line {}: {l}",
                    i + 1
                );
            }
        }
        for secret in &never {
            assert!(!stream.contains(secret), "{what}: {secret} on {name}");
        }
    }
    for secret in masked.iter().chain(&never) {
        assert!(
            !r.summary.contains(secret),
            "{what}: {secret} in the step summary:\n{}",
            r.summary
        );
        for (k, v) in &r.outputs {
            assert!(!v.contains(secret), "{what}: {secret} in output {k}: {v}");
            assert!(!k.contains(secret), "{what}: {secret} in an output name");
        }
    }
}

/// Seeds `stage`, puts the SecureStrings under `/app/stage/` and sets `ssm-path` in the config.
async fn seed_with_secrets(ctx: &TestContext) {
    ctx.seed("stage", &[]);
    ctx.ssm_secrets("url = \"https://stage.example.org\"", "/app/stage/", &SSM)
        .await;
}

/// The release flow with every secret given to every phase: restricted, snapshot, migrate, deploy (SSM secrets,
/// smoke check with the bypass header) behind maintenance, then running; nothing leaks anywhere.
#[tokio::test]
async fn secrets_never_leak_through_a_release() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let ctx = TestContext::new().await;
    seed_with_secrets(&ctx).await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .and(header(HEADER_NAME, HEADER_VALUE))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let smoke = format!("{}/health", server.uri());
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 0, "describes": 2, "logs": ["applying 0001", "done"]}),
    )
    .await;

    let runs: Vec<Run> = vec![
        (
            "state restricted (dry run)",
            inputs(
                "state",
                &[
                    ("state", "restricted"),
                    ("skip-drain", "true"),
                    ("dry-run", "true"),
                ],
            ),
            0,
        ),
        (
            "state restricted",
            inputs("state", &[("state", "restricted"), ("skip-drain", "true")]),
            0,
        ),
        ("snapshot", inputs("snapshot", &[("version", "v2.0.0")]), 0),
        (
            "migrate",
            inputs("migrate", &[("version", "v2.0.0"), ("skip-drain", "true")]),
            0,
        ),
        (
            "deploy restricted with a smoke check",
            inputs(
                "deploy",
                &[
                    ("version", "v2.0.0"),
                    ("state", "restricted"),
                    ("smoke-url", &smoke),
                ],
            ),
            0,
        ),
        (
            "deploy running",
            inputs("deploy", &[("version", "v2.0.0"), ("state", "running")]),
            0,
        ),
        ("status", inputs("status", &[]), 0),
    ];
    for (what, inputs, code) in runs {
        let r = ctx.action(&inputs).await;
        assert_eq!(r.code, code, "{what}: {}", r.stderr);
        assert_no_leak(what, &r);
    }
    // The secrets did reach where they belong: the task definitions hold the parameter ARNs, never the values.
    let td = ctx
        .ecs()
        .await
        .describe_task_definition()
        .task_definition("stage-core")
        .send()
        .await
        .unwrap();
    let doc = format!("{:?}", td.task_definition().unwrap());
    assert!(doc.contains("parameter/app/stage/DATABASE_URL"), "{doc}");
    for (_, value) in SSM {
        assert!(!doc.contains(value), "{value} in the task definition");
    }
}

/// The failure paths print the most (events, stopped tasks, log lines, the error chain): a migration that fails, a
/// deploy whose smoke check fails and rolls back, a rollback, and a bad input.
#[tokio::test]
async fn secrets_never_leak_on_failure_and_bad_input() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let ctx = TestContext::new().await;
    seed_with_secrets(&ctx).await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/health"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let smoke = format!("{}/health", server.uri());
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 3, "describes": 1,
               "logs": ["connecting", "ERROR: relation \"users\" does not exist"]}),
    )
    .await;
    ctx.action(&inputs("snapshot", &[("version", "v2.0.0")]))
        .await
        .assert_code(0);

    let runs: Vec<FailingRun> = vec![
        (
            "migrate that fails",
            inputs("migrate", &[("version", "v2.0.0"), ("skip-drain", "true")]),
            1,
            "relation \"users\" does not exist",
        ),
        (
            "deploy whose smoke check fails",
            inputs("deploy", &[("version", "v2.0.0"), ("smoke-url", &smoke)]),
            1,
            "smoke check failed",
        ),
        (
            "deploy stopped by the circuit breaker",
            inputs("deploy", &[("version", "v2.1.0")]),
            1,
            "panic: cannot read DATABASE_URL",
        ),
        ("rollback", inputs("rollback", &[]), 0, "rollback"),
        (
            "deploy with a bad version",
            inputs("deploy", &[("version", "v2 0")]),
            2,
            "input `version`",
        ),
        (
            "state with a bad state",
            inputs("state", &[("state", "sideways")]),
            2,
            "input `state`",
        ),
    ];
    for (what, inputs, code, shows) in runs {
        if what == "deploy stopped by the circuit breaker" {
            ctx.post(
                "/_test/ecs/service-rules",
                json!({"service": "core", "outcome": "FAILED", "times": 1, "failedTasks": 2,
                       "taskExitCode": 1, "taskLogs": ["boot", "panic: cannot read DATABASE_URL"]}),
            )
            .await;
        }
        let r = ctx.action(&inputs).await;
        assert_eq!(r.code, code, "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains(shows),
            "{what}: the path under test printed {shows:?}: {}",
            r.stderr
        );
        assert_no_leak(what, &r);
    }
}

/// A header value that is not usable is refused without repeating it (and still masked first).
#[tokio::test]
async fn a_refused_secret_is_not_repeated_in_the_error() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    let bad_value = "hunter2*wildcard-secret";
    let r = ctx
        .action(&[
            ("phase", "state"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("state", "restricted"),
            ("maintenance-header-name", HEADER_NAME),
            ("maintenance-header-value", bad_value),
        ])
        .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", r.stderr);
    assert!(
        errors[0].contains("maintenance-header-value"),
        "{}",
        errors[0]
    );
    assert!(!errors[0].contains(bad_value) && !errors[0].contains(HEADER_NAME));
    assert!(r
        .stderr
        .lines()
        .take(2)
        .all(|l| l.starts_with("::add-mask::")));
    assert_eq!(ctx.calls().await, vec![]);
}
