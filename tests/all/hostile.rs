//! Issue 20: hostile output. A task (one-off or a service's) prints workflow commands, HTML and markdown, and stops
//! with a reason made of the same; nothing of it reaches the runner as a command or the step summary as markup.

use serde_json::json;

use crate::support::sigint::{hold_next_call, sigint_when_held};
use crate::support::{finish, RunResult, TestContext};

/// What a container could print: every workflow command form, HTML, markdown, a line that closes a code fence.
const HOSTILE_LINES: &[&str] = &[
    "::set-output name=result::pwned",
    "  ::add-mask::hunter2",
    "\t::stop-commands::evil",
    "::error title=forged::from the task",
    "::set-env name=LD_PRELOAD::/tmp/x.so",
    "progress ##[set-output name=x;]pwned",
    "##[error]legacy form",
    "```",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "<details><summary>pwned</summary>",
    "<!-- everything after this is hidden",
];

const HOSTILE_REASON: &str =
    "::warning::forged reason <b>bold</b> ##[error]x ``` [x](javascript:1)";

/// The payload markers that must never reach the runner as a command.
const FORGED: &[&str] = &[
    "set-output",
    "add-mask::hunter2",
    "stop-commands::evil",
    "error title=forged",
    "set-env",
    "warning::forged",
];

/// Reads a job log as the runner does (actions/runner `ActionCommandManager`): a line is a command when it starts
/// with `::` after trimming whitespace, or when it holds `##[`; between `::stop-commands::T` and `::T::` nothing is.
/// Returns the command lines seen outside a fence.
fn commands_the_runner_sees(log: &str) -> Vec<String> {
    let mut fence: Option<String> = None;
    let mut seen = vec![];
    for line in log.lines() {
        let t = line.trim();
        if let Some(token) = &fence {
            if t == format!("::{token}::") {
                fence = None;
            }
            continue;
        }
        if let Some(token) = t.strip_prefix("::stop-commands::") {
            fence = Some(token.to_string());
            seen.push(t.to_string());
            continue;
        }
        if t.starts_with("::") || t.contains("##[") {
            seen.push(t.to_string());
        }
    }
    seen
}

fn assert_nothing_forged(r: &RunResult) {
    const OURS: &[&str] = &[
        "::group::",
        "::endgroup::",
        "::error title=deploy-action::",
        "::warning title=deploy-action::",
        "::warning::",
        "::error::",
        "::debug::",
        "::add-mask::",
        "::stop-commands::deploy-action-",
    ];
    for (stream, text) in [("stderr", &r.stderr), ("stdout", &r.stdout)] {
        for cmd in commands_the_runner_sees(text) {
            // Our own commands only (a stop-commands token is ours: random, deploy-action-…), and their data is
            // text: no legacy `##[` form inside, nothing forged at its start.
            let Some(ours) = OURS.iter().find(|o| cmd.starts_with(**o)) else {
                panic!("{stream}: the runner would act on {cmd:?}\n{text}");
            };
            let data = &cmd[ours.len()..];
            assert!(
                !data.contains("##[") && !data.trim_start().starts_with("::"),
                "{stream}: {cmd:?}"
            );
            if *ours == "::add-mask::" {
                assert!(!FORGED.iter().any(|f| data.contains(f)), "{cmd:?}");
            }
        }
    }
    // The text is still there for a person to read (zero-width spaces aside).
    let shown = r.stdout.replace('\u{200B}', "") + &r.stderr.replace('\u{200B}', "");
    assert!(shown.contains("set-output name=result::pwned"), "{shown}");
}

/// Walks the markdown as a renderer does: fenced code blocks (closed only by a backtick run at least as long as the
/// opening one, alone on its line) and everything else. Returns the lines outside code blocks.
fn outside_code_blocks(md: &str) -> Vec<&str> {
    let mut open: Option<usize> = None;
    let mut out = vec![];
    for line in md.lines() {
        let t = line.trim_start();
        let run = t.chars().take_while(|c| *c == '`').count();
        match open {
            Some(n) if run >= n && t.trim_end().chars().all(|c| c == '`') => open = None,
            Some(_) => {}
            None if run >= 3 => open = Some(run),
            None => out.push(line),
        }
    }
    assert_eq!(open, None, "a code block is left open:\n{md}");
    out
}

fn assert_summary_inert(summary: &str) {
    for line in outside_code_blocks(summary) {
        // What markdown would still read as markup: backslash escapes taken out first.
        let mut live = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                chars.next();
                live.push('_');
            } else {
                live.push(c);
            }
        }
        for bad in [
            "<img",
            "<b>",
            "<!--",
            "<details><summary>pwned",
            "](javascript:",
            "```",
        ] {
            assert!(
                !live.contains(bad),
                "markup from outside in the summary: {line:?}\n{summary}"
            );
        }
    }
    assert!(
        summary.contains("&lt;b&gt;bold&lt;/b&gt;") || summary.contains("<b>bold</b>"),
        "the reason is shown, escaped or in a code block:\n{summary}"
    );
}

#[tokio::test]
async fn hostile_output_from_a_failed_one_off_task_reaches_neither_runner_nor_summary() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-seed", "exitCode": 1, "describes": 2, "logs": HOSTILE_LINES,
               "stoppedReason": HOSTILE_REASON}),
    )
    .await;
    let r = ctx
        .action(&[
            ("phase", "run"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("task", "seed"),
            ("version", "v1.0.0"),
        ])
        .await;
    r.assert_code(1);
    assert_nothing_forged(&r);
    assert_summary_inert(&r.summary);
    assert!(
        !r.outputs.contains_key("x")
            && r.outputs.get("result").map(String::as_str) == Some("failure"),
        "{:?}",
        r.outputs
    );
}

#[tokio::test]
async fn hostile_output_from_a_failed_roll_out_reaches_neither_runner_nor_summary() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "core", "outcome": "FAILED", "times": 1, "failedTasks": 1, "taskExitCode": 3,
               "taskLogs": HOSTILE_LINES, "taskStoppedReason": HOSTILE_REASON}),
    )
    .await;
    let r = ctx
        .action(&[
            ("phase", "deploy"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("version", "v1.1.0"),
        ])
        .await;
    r.assert_code(1);
    assert_nothing_forged(&r);
    assert_summary_inert(&r.summary);
}

#[tokio::test]
async fn hostile_inputs_are_neither_commands_nor_markup() {
    // A command echoed back and a freeze override reason: both are anyone's text in a workflow.
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-seed", "exitCode": 1, "describes": 2, "logs": ["x"]}),
    )
    .await;
    let r = ctx
        .action(&[
            ("phase", "run"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("task", "seed"),
            ("version", "v1.0.0"),
            (
                "command",
                "[\"sh\", \"-c\", \"echo\\n::set-output name=x::y <img src=x onerror=alert(1)> ##[error]z\"]",
            ),
        ])
        .await;
    assert_ne!(r.code, 0, "{}", r.stderr);
    for cmd in commands_the_runner_sees(&r.stderr)
        .into_iter()
        .chain(commands_the_runner_sees(&r.stdout))
    {
        assert!(!cmd.contains("set-output") && !cmd.contains("##["), "{cmd}");
    }
    for line in outside_code_blocks(&r.summary) {
        assert!(!line.contains("<img"), "{line}\n{}", r.summary);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Cancellation: a signal stops the phase before its next change.
// ---------------------------------------------------------------------------------------------------------------

/// "Just started": SIGINT while migrate still checks its preconditions (a read held by the local AWS). Before, the
/// phase went on to maintenance on and scaling to 0 (14 mutating calls); now not one change, exit 130.
#[tokio::test]
async fn sigint_while_migrate_checks_its_preconditions_changes_nothing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.action(&[
        ("phase", "snapshot"),
        ("environment", "stage"),
        ("config", "deploy.toml"),
        ("version", "v2.0.0"),
    ])
    .await
    .assert_code(0);
    ctx.clear_calls().await;
    hold_next_call(&ctx, "DescribeDBSnapshots", 3000).await;
    let mut cmd = ctx.base_command();
    cmd.args([
        "migrate",
        "--env",
        "stage",
        "-c",
        "deploy.toml",
        "--version",
        "v2.0.0",
        "--skip-drain",
    ]);
    let child = cmd.spawn().unwrap();
    sigint_when_held(&ctx, &child, "DescribeDBSnapshots").await;
    let r = finish(child).await;
    r.assert_code(130);
    assert!(
        r.stderr
            .contains("stopped before bringing the environment to db-only"),
        "{}",
        r.stderr
    );
    assert_eq!(
        ctx.mutating_calls().await,
        Vec::<String>::new(),
        "nothing changes after the signal"
    );
}

/// "Between steps": SIGINT while `state db-only` turns maintenance on (its first change held). The step finishes
/// (the listener is left in a state the rerun knows), nothing after it starts, exit 130; the rerun converges.
#[tokio::test]
async fn sigint_between_state_steps_stops_before_the_next_step_and_the_rerun_converges() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    hold_next_call(&ctx, "AddTags", 3000).await;
    let args = [
        "state",
        "--env",
        "stage",
        "-c",
        "deploy.toml",
        "--state",
        "db-only",
        "--skip-drain",
        "--maintenance-header-name",
        "x-bypass",
        "--maintenance-header-value",
        "s3cret-value",
    ];
    let mut cmd = ctx.base_command();
    cmd.args(args);
    let child = cmd.spawn().unwrap();
    sigint_when_held(&ctx, &child, "AddTags").await;
    let r = finish(child).await;
    r.assert_code(130);
    assert!(r.stderr.contains("stopped by a signal"), "{}", r.stderr);
    // The signal came while maintenance's first change (recording the listener) was in flight: nothing after it,
    // not even the rest of the maintenance step (each of its changes is recorded; the rerun converges).
    let changed = ctx.mutating_calls().await;
    assert_eq!(
        changed,
        ["elbv2:AddTags"],
        "only the change in flight when the signal came"
    );
    // The rerun the message suggests finishes the job.
    let again = ctx.cli(&args).await;
    again.assert_code(0);
    assert!(again.stdout.contains("db-only"), "{}", again.stdout);
}

/// The listener's tags (the drain's start is one of them while a drain is unfinished).
async fn listener_tags(ctx: &TestContext) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(ctx.config_path()).unwrap();
    let arn = text
        .lines()
        .find(|l| l.starts_with("listener-arn"))
        .and_then(|l| l.split('"').nth(1))
        .expect("listener-arn in the seeded config")
        .to_string();
    let out = ctx
        .elb()
        .await
        .describe_tags()
        .resource_arns(&arn)
        .send()
        .await
        .unwrap();
    out.tag_descriptions()[0]
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// "During the drain": SIGINT while `state restricted` waits for traffic to drain (its metric read held). Exit 130
/// with maintenance on and the drain's start recorded on the listener; the rerun the message suggests finishes the
/// drain (before, it said "restricted already; nothing to do" and skipped it), then forgets the start, so a third
/// run has nothing to do.
#[tokio::test]
async fn a_rerun_after_a_cancelled_drain_finishes_the_drain() {
    const DRAIN_TAG: &str = "deploy-action:drain-from";
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    crate::state::with_drain(
        &ctx,
        "{ threshold = 5, window-seconds = 6, timeout = \"1m\" }",
    );
    let args = [
        "state",
        "--env",
        "stage",
        "-c",
        "deploy.toml",
        "--state",
        "restricted",
        "--maintenance-header-name",
        "x-bypass",
        "--maintenance-header-value",
        "s3cret-value",
        "--output",
        "json",
    ];
    hold_next_call(&ctx, "GetMetricStatistics", 3000).await;
    let mut cmd = ctx.base_command();
    cmd.args(args);
    let child = cmd.spawn().unwrap();
    sigint_when_held(&ctx, &child, "GetMetricStatistics").await;
    let r = finish(child).await;
    r.assert_code(130);
    assert!(
        r.stderr
            .contains("(wait for traffic to drain) stopped by a signal"),
        "{}",
        r.stderr
    );
    let tags = listener_tags(&ctx).await;
    assert_eq!(
        tags.get("deploy-action:maintenance").map(String::as_str),
        Some("on")
    );
    let from: i64 = tags
        .get(DRAIN_TAG)
        .unwrap_or_else(|| panic!("the drain's start is recorded: {tags:?}"))
        .parse()
        .unwrap();

    ctx.clear_calls().await;
    let again = ctx.cli(&args).await;
    again.assert_code(0);
    let out = again.json();
    let steps: Vec<&str> = out["outcome"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(steps, vec!["drain-wait"], "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("finishing the drain a stopped run left"),
        "{}",
        again.stderr
    );
    let reads = ctx
        .calls()
        .await
        .iter()
        .filter(|(_, op)| op == "GetMetricStatistics")
        .count();
    assert!(reads >= 1, "the rerun watched the traffic");
    // The window counts from when maintenance went on in the first run (the start it recorded), not from the rerun:
    // the rerun reports the quiet time from that moment.
    let since = format!("quiet since {}", crate::support::utc_clock(from));
    assert!(
        again.stdout.contains(&since),
        "{since:?} not in:\n{}\n{}",
        again.stdout,
        again.stderr
    );
    assert!(
        !listener_tags(&ctx).await.contains_key(DRAIN_TAG),
        "a finished drain is forgotten"
    );

    let third = ctx.cli(&args).await;
    third.assert_code(0);
    assert_eq!(
        third.json()["outcome"]["steps"].as_array().map(Vec::len),
        Some(0),
        "{}",
        third.stderr
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The webhook and the logs: outside text never becomes Slack markup, secrets never reach a log line.
// ---------------------------------------------------------------------------------------------------------------

/// A GitHub server whose deployment of stage is in progress, with a version and a log URL made of Slack markup; it
/// also takes the webhook's message at `/hooks/T1/B2`.
async fn github_with_hostile_deployment() -> wiremock::MockServer {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let payload = json!({"tool": "deploy-action", "phase": "deploy", "version": SLACK_HOSTILE,
                         "run_id": "99", "run_attempt": "1"});
    Mock::given(method("GET"))
        .and(path("/repos/acme/backend/deployments"))
        .and(query_param("environment", "stage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{
            "id": 12, "ref": "v1.2.2", "sha": "0123abc", "task": "deploy:deploy", "environment": "stage",
            "payload": payload, "created_at": "2026-07-01T10:00:00Z", "creator": {"login": "github-actions[bot]"}
        }])))
        .mount(&server)
        .await;
    let url = "https://github.com/acme/backend/actions/runs/99?<!here>";
    Mock::given(method("GET"))
        .and(path("/repos/acme/backend/deployments/12/statuses"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 1, "state": "in_progress", "log_url": url, "target_url": url}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hooks/T1/B2"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

/// What a Slack message must never carry from outside: a broadcast, a link with a label of its choosing.
const SLACK_HOSTILE: &str = "v1.2.2 <!channel> & <https://evil.example|click here>";

/// The webhook's message about a refusal carries the GitHub server's text (another run's version and log URL):
/// Slack gets it with `&`, `<` and `>` escaped, so it is shown as typed and is no mention, broadcast or link.
#[tokio::test]
async fn the_webhook_message_shows_outside_text_literally_in_slack() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let server = github_with_hostile_deployment().await;
    let uri = server.uri();
    let hook = format!("{uri}/hooks/T1/B2");
    let r = ctx
        .action_with_env(
            &[
                ("phase", "snapshot"),
                ("environment", "stage"),
                ("config", "deploy.toml"),
                ("version", "v1.2.3"),
                ("github-token", "ghs_test_token"),
                ("webhook-url", hook.as_str()),
            ],
            &[("GITHUB_API_URL", uri.as_str()), ("GITHUB_SHA", "0123abc")],
        )
        .await;
    assert_eq!(r.code, 1, "{}", r.stderr);
    let hooks: Vec<serde_json::Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|q| q.url.path() == "/hooks/T1/B2")
        .map(|q| q.body_json().unwrap())
        .collect();
    assert_eq!(hooks.len(), 1, "one message: {hooks:?}");
    let text = hooks[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("🚫 snapshot v1.2.3 to stage refused: one-at-a-time gate"),
        "{text}"
    );
    assert!(
        text.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;"),
        "the version from GitHub is shown, escaped: {text}"
    );
    assert!(text.contains("runs/99?&lt;!here&gt;"), "{text}");
    assert!(
        !text.contains(['<', '>']),
        "no Slack markup from outside: {text}"
    );
}

/// Issue 20, secrets: with every log line on (`DEPLOY_ACTION_LOG=trace`: the AWS SDK's, hyper's and octocrab's),
/// a `state restricted` that puts the bypass header's value into listener rules (and reads it back) and talks to a
/// GitHub server that repeats the token in an error body prints neither the value nor the token, in any encoding a
/// log line could carry them (as is, URL-encoded as in an AWS query body, XML-escaped as in its answer, escaped as
/// `Debug` and JSON print them). The only place they appear is the `::add-mask::` command that hides them.
#[tokio::test]
async fn trace_logging_never_prints_the_bypass_header_value_or_the_token() {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    // Base64-like (`+`, `/`, `=` change when URL-encoded) with a quote, `&` and `<` (changed by XML, JSON, Debug).
    const VALUE: &str = "Zm9v+YmFy/b4z=\"q\"&<x>";
    const TOKEN: &str = "ghs_Tr4ceT0kenNeverPrinted";
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/backend/deployments"))
        .and(query_param("environment", "stage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/backend/deployments"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 77, "ref": "v1.2.3", "sha": "0123abc", "task": "deploy:state", "environment": "stage",
            "payload": {}, "created_at": "2026-07-01T10:00:00Z", "creator": {"login": "github-actions[bot]"}
        })))
        .mount(&server)
        .await;
    // The record's first status is taken; the final one is refused by a server that repeats the credentials it got
    // in its error (as some proxies do): a warning at the end, the run itself goes on.
    Mock::given(method("POST"))
        .and(path("/repos/acme/backend/deployments/77/statuses"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": 5, "state": "in_progress"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/backend/deployments/77/statuses"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": format!("Validation failed for token {TOKEN} (Authorization: Bearer {TOKEN})")
        })))
        .mount(&server)
        .await;
    let uri = server.uri();
    let r = ctx
        .action_with_env(
            &[
                ("phase", "state"),
                ("environment", "stage"),
                ("config", "deploy.toml"),
                ("state", "restricted"),
                ("skip-drain", "true"),
                ("maintenance-header-name", "x-bypass"),
                ("maintenance-header-value", VALUE),
                ("github-token", TOKEN),
            ],
            &[
                ("GITHUB_API_URL", uri.as_str()),
                ("GITHUB_SHA", "0123abc"),
                ("DEPLOY_ACTION_LOG", "trace"),
            ],
        )
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Not vacuous: trace lines were printed, the value went to AWS, the token to GitHub.
    let trace_lines = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("::debug::"))
        .count();
    assert!(
        trace_lines > 100,
        "trace logging is on: {trace_lines} debug lines"
    );
    assert!(
        r.stderr.contains("aws_smithy")
            || r.stderr.contains("send_operation")
            || r.stderr.contains("dispatch"),
        "the SDK's own trace lines are there:\n{}",
        &r.stderr[..r.stderr.len().min(4000)]
    );
    let rules = ctx
        .elb()
        .await
        .describe_rules()
        .listener_arn(listener_arn(&ctx))
        .send()
        .await
        .unwrap();
    assert!(
        rules
            .rules()
            .iter()
            .any(|rule| rule.conditions().iter().any(|c| c
                .http_header_config()
                .is_some_and(|h| h.values() == [VALUE.to_string()]))),
        "the bypass rule holds the value"
    );
    let posted = server.received_requests().await.unwrap();
    assert!(
        posted.iter().any(|q| q
            .headers
            .get("authorization")
            .is_some_and(|a| a.to_str().unwrap_or_default().contains(TOKEN))),
        "the token was sent to GitHub"
    );
    let masks = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("::add-mask::"))
            .count()
    };
    assert!(
        masks(&r.stdout) + masks(&r.stderr) >= 2,
        "both secrets are masked first"
    );
    assert!(
        r.stderr.contains("Validation failed for token ***"),
        "the GitHub error is shown, redacted"
    );
    for (stream, text) in [
        ("stdout", &r.stdout),
        ("stderr", &r.stderr),
        ("summary", &r.summary),
    ] {
        for (i, line) in text.lines().enumerate() {
            if line.starts_with("::add-mask::") {
                continue;
            }
            // As the runner shows it: a command's data unescaped.
            let shown = line
                .replace("%0A", "\n")
                .replace("%0D", "\r")
                .replace("%3A", ":")
                .replace("%2C", ",")
                .replace("%25", "%");
            for secret in [VALUE, TOKEN] {
                for form in encodings(secret) {
                    assert!(
                        !shown.contains(&form),
                        "{stream} line {i} prints a secret ({form:?}): {line}"
                    );
                }
            }
        }
    }
}

/// The forms a secret can take in a log line (written here independently of `text::secret_forms`, which the log
/// redacts with): as is, URL-encoded, XML-escaped, and escaped as Rust's `Debug` and JSON print strings.
fn encodings(secret: &str) -> Vec<String> {
    let url = |upper: bool| -> String {
        secret
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ if upper => format!("%{b:02X}"),
                _ => format!("%{b:02x}"),
            })
            .collect()
    };
    let xml_text = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let xml = xml_text.replace('"', "&quot;");
    let debug = format!("{secret:?}").trim_matches('"').to_string();
    let json = serde_json::to_string(secret)
        .unwrap()
        .trim_matches('"')
        .to_string();
    let mut forms = vec![
        secret.to_string(),
        url(true),
        url(false),
        xml_text,
        xml,
        debug,
        json,
    ];
    forms.sort();
    forms.dedup();
    forms
}

/// The seeded listener's ARN (from the config the seed wrote).
fn listener_arn(ctx: &TestContext) -> String {
    std::fs::read_to_string(ctx.config_path())
        .unwrap()
        .lines()
        .find(|l| l.starts_with("listener-arn"))
        .and_then(|l| l.split('"').nth(1))
        .expect("listener-arn in the seeded config")
        .to_string()
}
