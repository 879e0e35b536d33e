//! Issue 21: every failure ends with a "state now" block (stdout, summary, outputs `state` and `next-steps`), and a
//! rollback with nothing to do says so with the earlier known-good versions.

use serde_json::json;

use crate::state::{requests_metric, with_drain};
use crate::support::sigint::sigint_when;
use crate::support::{finish, RunResult, TestContext};

const HEADER: [(&str, &str); 2] = [
    ("maintenance-header-name", "X-Bypass-Token"),
    ("maintenance-header-value", "let-me-in-7f3a9c"),
];

fn inputs<'a>(phase: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut i = vec![
        ("phase", phase),
        ("environment", "stage"),
        ("config", "deploy.toml"),
    ];
    i.extend_from_slice(extra);
    i
}

/// The block is the last thing on stdout and in the summary.
#[track_caller]
fn state_now_block(r: &RunResult) -> (&str, &str) {
    let at = r
        .stdout
        .rfind("\nstate now: ")
        .unwrap_or_else(|| panic!("no state-now block on stdout:\n{}", r.stdout));
    let md = r
        .summary
        .rfind("### State now: ")
        .unwrap_or_else(|| panic!("no state-now block in the summary:\n{}", r.summary));
    (&r.stdout[at + 1..], &r.summary[md..])
}

/// Runbook: maintenance on, then `deploy --state running`; the roll-out fails and every service goes back. The block
/// says plainly that maintenance is still on, which version each service runs, and what to do next.
#[tokio::test]
async fn a_failed_deploy_ends_with_the_state_now_and_what_to_do_next() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let mut restricted = vec![("state", "restricted"), ("skip-drain", "true")];
    restricted.extend_from_slice(&HEADER);
    ctx.action(&inputs("state", &restricted))
        .await
        .assert_code(0);
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "workers", "outcome": "FAILED", "times": 1, "failedTasks": 1}),
    )
    .await;
    let mut deploy = vec![("version", "v1.1.0"), ("state", "running")];
    deploy.extend_from_slice(&HEADER);
    let r = ctx.action(&inputs("deploy", &deploy)).await;
    r.assert_code(1);
    assert_eq!(r.outputs["rolled-back"], "true");
    let (text, md) = state_now_block(&r);
    assert!(
        text.starts_with("state now: environment stage is restricted, maintenance on\n"),
        "{text}"
    );
    for s in ["core", "workers"] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(s))
            .unwrap_or_else(|| panic!("{s} in {text}"));
        assert!(
            line.contains(&format!("stage-{s}:1")) && line.contains("v1.0.0"),
            "{line}"
        );
    }
    assert!(
        text.contains("known-good versions, newest first: v1.0.0"),
        "{text}"
    );
    let next = &r.outputs["next-steps"];
    assert_eq!(
        next.lines().collect::<Vec<_>>(),
        vec![
            "deploy-action deploy --env stage -c deploy.toml --version v1.1.0 --state running",
            "deploy-action state --env stage -c deploy.toml --state running",
        ],
        "{text}"
    );
    assert!(
        text.contains("reopen on v1.0.0, only if it works with the database as it is now"),
        "{text}"
    );
    assert_eq!(r.outputs["state"], "restricted");
    assert!(
        md.starts_with("### State now: environment stage is restricted, maintenance on"),
        "{md}"
    );
    assert!(
        md.contains("| workers | stage-workers:1 | v1.0.0 |"),
        "{md}"
    );
    assert!(
        md.contains("- `deploy-action state --env stage -c deploy.toml --state running`"),
        "{md}"
    );
    assert!(
        r.summary.find("FAILED, rolled back").unwrap() < r.summary.find("### State now").unwrap(),
        "the block comes last: {}",
        r.summary
    );
}

/// A migration that exits 1: the block after the migration's own report, with the restore command.
#[tokio::test]
async fn a_failed_migration_ends_with_the_state_now_and_the_snapshot() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let snap = ctx
        .action(&inputs("snapshot", &[("version", "v2.0.0")]))
        .await;
    snap.assert_code(0);
    let snapshot_id = snap.outputs["snapshot-id"].clone();
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 1, "describes": 2, "logs": ["ERROR: boom"]}),
    )
    .await;
    let r = ctx
        .action(&inputs(
            "migrate",
            &[("version", "v2.0.0"), ("skip-drain", "true")],
        ))
        .await;
    r.assert_code(1);
    let (text, md) = state_now_block(&r);
    // migrate brought the environment to db-only first: maintenance on, services at 0, on their old version.
    assert!(
        text.starts_with("state now: environment stage is db-only, maintenance on\n"),
        "{text}"
    );
    assert!(
        text.contains("stage-core:1") && text.contains("v1.0.0"),
        "{text}"
    );
    assert!(text.contains("database app-stage (available)"), "{text}");
    assert_eq!(
        r.outputs["next-steps"],
        "deploy-action migrate --env stage -c deploy.toml --version v2.0.0\ndeploy-action restore --env stage -c deploy.toml --version v2.0.0"
    );
    assert_eq!(r.outputs["state"], "db-only");
    assert!(
        md.contains("run the migration again once it is fixed"),
        "{md}"
    );
    assert!(
        r.stdout
            .trim_end()
            .ends_with("bring it back from the snapshot taken for v2.0.0"),
        "last: {}",
        r.stdout
    );
    assert!(!snapshot_id.is_empty());
}

/// `state db-only` cancelled (SIGINT) while it waits for traffic to drain: exit 130, and the block says maintenance is
/// on with every service still up, and how to resume or go back.
#[tokio::test]
async fn a_cancelled_state_change_ends_with_the_state_now() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    with_drain(
        &ctx,
        "{ threshold = 5, window-seconds = 60, timeout-minutes = 5 }",
    );
    let body = requests_metric(&ctx, 120.0, 0).await;
    ctx.post("/_test/cloudwatch/metric", body.clone()).await;
    let mut cmd = ctx.base_command();
    cmd.args([
        "state",
        "--env",
        "stage",
        "-c",
        "deploy.toml",
        "--state",
        "db-only",
        "--maintenance-header-name",
        HEADER[0].1,
        "--maintenance-header-value",
        HEADER[1].1,
    ]);
    let child = cmd.spawn().unwrap();
    sigint_when(&ctx, &child, "the drain wait", |calls, _| {
        calls.iter().any(|(_, _, op)| op == "GetMetricStatistics")
    })
    .await;
    let r = finish(child).await;
    r.assert_code(130);
    let (stdout, stderr) = (&r.stdout, &r.stderr);
    let at = stdout
        .rfind("state now: ")
        .unwrap_or_else(|| panic!("{stdout}\n{stderr}"));
    let text = &stdout[at..];
    assert!(
        text.starts_with("state now: environment stage is restricted, maintenance on\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  deploy-action state --env stage -c deploy.toml --state db-only\n      resume: the run picks up what is already done\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  deploy-action state --env stage -c deploy.toml --state running\n      back to running instead\n"),
        "{text}"
    );
    assert!(text.contains("note: cancelled"), "{text}");
}

/// Rollback right after a release that completed: the release is the last known good, so nothing changes, and it
/// says so, with each earlier known-good version and the command that goes back to it.
#[tokio::test]
async fn rollback_with_nothing_to_do_says_so_and_lists_the_earlier_versions() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    for v in ["v1.1.0", "v1.2.0"] {
        ctx.action(&inputs("deploy", &[("version", v)]))
            .await
            .assert_code(0);
    }
    ctx.clear_calls().await;
    let r = ctx.action(&inputs("rollback", &[])).await;
    r.assert_code(0);
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
    assert_eq!(r.outputs["changed"], "false");
    assert_eq!(r.outputs["rolled-back"], "false");
    assert!(
        r.stdout.starts_with(
            "Rollback of stage to known-good: nothing to roll back: v1.2.0 is the last known-good revision on every service\n"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "earlier known-good versions, most recently good first:\n  v1.1.0: deploy-action rollback --env stage -c deploy.toml --version v1.1.0\n"
        ),
        "{}",
        r.stdout
    );
    // The seeded v1.0.0 was never seen COMPLETED by this action, so it is not offered.
    assert_eq!(r.outputs["earlier-versions"], "v1.1.0");
    assert!(
        r.summary.contains(
            "- v1.1.0: `deploy-action rollback --env stage -c deploy.toml --version v1.1.0`"
        ),
        "{}",
        r.summary
    );
    assert!(
        r.stderr
            .contains("Checking that 2 service(s) already on their target are settled"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("Roll-out of the rollback on 0"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("roll-out to"), "{}", r.stderr);

    // The command it names works: back to v1.1.0, a real rollback (changed=true).
    let r = ctx
        .action(&inputs("rollback", &[("version", "v1.1.0")]))
        .await;
    r.assert_code(0);
    assert_eq!(r.outputs["changed"], "true");
    assert_eq!(r.outputs["version"], "v1.1.0");
    assert!(
        r.stderr
            .contains("Roll-out of the rollback on 2 service(s)"),
        "{}",
        r.stderr
    );
}
