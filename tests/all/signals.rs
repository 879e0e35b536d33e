//! Issue 20 (item 3): a signal stops `deploy` before its next mutating AWS call, whatever it is doing then; the run
//! exits 130 with the state now, only the intended cleanup follows the signal, and a rerun finishes the deploy.
//!
//! Each test holds one call of the deploy in the local AWS (a latency fault) and sends SIGINT while it is held, so
//! the signal lands at a known step boundary. "After the signal" is read from the call log's sequence numbers: a
//! call already sent when the signal came is recorded when it ends, so a held call may follow the signal there.

use serde_json::json;

use crate::support::sigint::{calls, clear_faults, held, mutating_after, sigint_when};
use crate::support::{finish, RunResult, TestContext, REGION};

fn deploy_cli(ctx: &TestContext, version: &str, extra: &[&str]) -> tokio::process::Child {
    let mut cmd = ctx.base_command();
    cmd.args([
        "deploy",
        "--env",
        "stage",
        "-c",
        "deploy.toml",
        "--version",
        version,
    ]);
    cmd.args(extra);
    cmd.spawn().expect("spawn deploy-action")
}

async fn service_td(ctx: &TestContext, name: &str) -> String {
    let out = ctx
        .ecs()
        .await
        .describe_services()
        .cluster("app-stage")
        .services(name)
        .send()
        .await
        .unwrap();
    let arn = out.services()[0].task_definition().unwrap();
    arn.rsplit('/').next().unwrap().to_string()
}

async fn rerun_succeeds(ctx: &TestContext, version: &str) {
    let r = ctx
        .cli(&[
            "deploy",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--version",
            version,
        ])
        .await;
    r.assert_code(0);
    let s = ctx
        .cli(&[
            "status",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--output",
            "json",
        ])
        .await;
    s.assert_code(0);
    let v = s.json()["outcome"].clone();
    for svc in v["services"].as_array().unwrap() {
        assert_eq!(svc["version"], version, "{v}");
    }
}

#[track_caller]
fn assert_cancelled(r: &RunResult, says: &str) {
    assert_eq!(r.code, 130, "exit 130 after SIGINT:\n{}", r.stderr);
    assert!(r.stderr.contains(says), "{says:?} not in:\n{}", r.stderr);
    assert!(
        r.stdout.contains("state now: "),
        "no state-now block:\n{}",
        r.stdout
    );
}

/// SIGINT right after the deploy's first mutating call (one service's new revision registered, the other's held):
/// no UpdateService follows; the revisions this run registered are deregistered again (the environment is as it
/// was found), the run exits 130, and the rerun deploys.
#[tokio::test]
async fn sigint_after_the_first_new_revision_stops_before_any_service_changes() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/faults",
        json!({"service": "ecs", "operation": "RegisterTaskDefinition", "kind": "latency", "latencyMs": 2000, "after": 1, "count": 1}),
    )
    .await;
    ctx.clear_calls().await;
    let child = deploy_cli(&ctx, "v1.1.0", &[]);
    let at = sigint_when(&ctx, &child, "the first RegisterTaskDefinition", |c, _| {
        c.iter().any(|(_, _, op)| op == "RegisterTaskDefinition")
    })
    .await;
    let r = finish(child).await;
    assert_cancelled(
        &r,
        "deploy of v1.1.0 cancelled before any service changed; its new revisions were deregistered again (stage-core:2, stage-workers:2)",
    );
    let seen = calls(&ctx).await;
    let all: Vec<&str> = seen
        .iter()
        .filter(|(_, _, op)| crate::support::is_mutating(op))
        .map(|(_, _, op)| op.as_str())
        .collect();
    assert_eq!(
        all,
        [
            "RegisterTaskDefinition",
            "RegisterTaskDefinition",
            "DeregisterTaskDefinition",
            "DeregisterTaskDefinition"
        ],
        "only the held registration and the cleanup after the signal"
    );
    assert_eq!(
        mutating_after(&seen, at),
        [
            "ecs:RegisterTaskDefinition",
            "ecs:DeregisterTaskDefinition",
            "ecs:DeregisterTaskDefinition"
        ]
    );
    assert_eq!(service_td(&ctx, "core").await, "stage-core:1");
    assert_eq!(service_td(&ctx, "workers").await, "stage-workers:1");
    clear_faults(&ctx).await;
    rerun_succeeds(&ctx, "v1.1.0").await;
}

/// The RELIABILITY.md case "SIGINT mid-phase" of deploy ended `success | 0`: a signal after the roll-out completed
/// was not looked at (known-good tags, keep-revisions, maintenance), so the run finished as a success. Now the
/// deploy stops at the next step (here: after the known-good tags it was writing, before keep-revisions), leaves
/// the services on the new version, and exits 130; the rerun changes no service and finishes.
#[tokio::test]
async fn sigint_after_the_roll_out_completed_ends_cancelled_never_as_a_success() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/faults",
        json!({"service": "ecs", "operation": "TagResource", "kind": "latency", "latencyMs": 1500, "count": 2}),
    )
    .await;
    ctx.clear_calls().await;
    let child = deploy_cli(&ctx, "v1.1.0", &[]);
    let at = sigint_when(&ctx, &child, "the known-good TagResource", |_, faults| {
        faults
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["operation"] == "TagResource" && f["hits"].as_u64() > Some(0))
    })
    .await;
    let r = finish(child).await;
    assert_cancelled(
        &r,
        "deploy of v1.1.0 cancelled after every service completed on it; re-run the deploy to finish (it changes no service): stopped before keep-revisions",
    );
    let after = mutating_after(&calls(&ctx).await, at);
    assert!(
        after.iter().all(|c| c == "ecs:TagResource"),
        "only the held known-good tags follow the signal: {after:?}"
    );
    assert_eq!(service_td(&ctx, "core").await, "stage-core:2");
    assert_eq!(service_td(&ctx, "workers").await, "stage-workers:2");
    clear_faults(&ctx).await;
    ctx.clear_calls().await;
    rerun_succeeds(&ctx, "v1.1.0").await;
    let changed: Vec<String> = calls(&ctx)
        .await
        .into_iter()
        .filter(|(_, _, op)| op == "RegisterTaskDefinition" || op == "UpdateService")
        .map(|(_, _, op)| op)
        .collect();
    assert_eq!(
        changed,
        Vec::<String>::new(),
        "the rerun changes no service"
    );
}

/// A signal while the preflight waits for images (`wait-for-images`) ends the wait and the run at once: exit 130,
/// no mutating call at all (before, the preflight looked once more and went on, or failed on the images it had
/// not waited for).
#[tokio::test]
async fn sigint_during_the_image_wait_changes_nothing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    let child = deploy_cli(&ctx, "v3.0.0", &["--wait-for-images", "2m"]);
    let at = sigint_when(&ctx, &child, "the image wait", |c, _| {
        c.iter()
            .filter(|(_, s, op)| s == "ecr" && op == "BatchGetImage")
            .count()
            >= 2
    })
    .await;
    let r = finish(child).await;
    assert_cancelled(
        &r,
        "deploy of v3.0.0 cancelled before any change: stopped before registering the new revisions",
    );
    let seen = calls(&ctx).await;
    assert!(at > 0);
    let all = mutating_after(&seen, 0);
    assert_eq!(all, Vec::<String>::new(), "nothing changed");
    ctx.post(
        "/_test/ecr/images",
        json!({"repository": "app", "tags": ["core-v3.0.0", "workers-v3.0.0"], "region": REGION}),
    )
    .await;
    rerun_succeeds(&ctx, "v3.0.0").await;
}

fn cli(ctx: &TestContext, args: &[&str]) -> tokio::process::Child {
    let mut cmd = ctx.base_command();
    cmd.args(args);
    cmd.spawn().expect("spawn deploy-action")
}

const MIGRATE: &[&str] = &[
    "migrate",
    "--env",
    "stage",
    "-c",
    "deploy.toml",
    "--version",
    "v2.0.0",
    "--skip-drain",
];

/// migrate: SIGINT while it records the migration's start on the database (after db-only): the migration task is
/// never started (no RunTask), exit 130; the rerun runs it.
#[tokio::test]
async fn sigint_while_migrate_records_its_start_stops_before_run_task() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.cli(&[
        "snapshot",
        "--env",
        "stage",
        "-c",
        "deploy.toml",
        "--version",
        "v2.0.0",
    ])
    .await
    .assert_code(0);
    ctx.post(
        "/_test/faults",
        json!({"service": "rds", "operation": "AddTagsToResource", "kind": "latency", "latencyMs": 2000, "count": 1}),
    )
    .await;
    ctx.clear_calls().await;
    let child = cli(&ctx, MIGRATE);
    let at = sigint_when(&ctx, &child, "the migration's record", |_, f| {
        held(f, "AddTagsToResource")
    })
    .await;
    let r = finish(child).await;
    assert_cancelled(&r, "stopped before RunTask (the migration task)");
    let seen = calls(&ctx).await;
    assert_eq!(mutating_after(&seen, at), ["rds:AddTagsToResource"]);
    assert!(
        !seen.iter().any(|(_, _, op)| op == "RunTask"),
        "no migration task started"
    );
    clear_faults(&ctx).await;
    cli_succeeds(&ctx, MIGRATE).await;
}

/// snapshot: SIGINT while it lists the database's snapshots: no CreateDBSnapshot, exit 130; the rerun makes it.
#[tokio::test]
async fn sigint_before_create_db_snapshot_makes_no_snapshot() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/faults",
        json!({"service": "rds", "operation": "DescribeDBSnapshots", "kind": "latency", "latencyMs": 2000, "count": 1}),
    )
    .await;
    ctx.clear_calls().await;
    let snapshot = [
        "snapshot",
        "--env",
        "stage",
        "-c",
        "deploy.toml",
        "--version",
        "v2.0.0",
    ];
    let child = cli(&ctx, &snapshot);
    sigint_when(&ctx, &child, "the snapshot listing", |_, f| {
        held(f, "DescribeDBSnapshots")
    })
    .await;
    let r = finish(child).await;
    assert_cancelled(&r, "stopped before creating snapshot deploy-stage-v2-0-0-");
    assert_eq!(mutating_after(&calls(&ctx).await, 0), Vec::<String>::new());
    clear_faults(&ctx).await;
    cli_succeeds(&ctx, &snapshot).await;
}

async fn cli_succeeds(ctx: &TestContext, args: &[&str]) {
    let r = ctx.cli(args).await;
    r.assert_code(0);
}
