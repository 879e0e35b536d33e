//! Issue 7, invariants as tests: each test is named after what it guards, across phases, against the local AWS.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{RunResult, TestContext};

const GROUP: &str = "deploy-action:stage:migration";
const HEADER: [(&str, &str); 2] = [
    ("maintenance-header-name", "x-bypass"),
    ("maintenance-header-value", "s3cret-bypass"),
];

fn inputs<'a>(phase: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("phase", phase),
        ("environment", "stage"),
        ("config", "deploy.toml"),
        ("skip-drain", "true"),
    ];
    if phase == "state" || phase == "snapshot" || phase == "rollback" || phase == "status" {
        v.retain(|(k, _)| *k != "skip-drain");
    }
    if phase == "state" {
        v.push(("skip-drain", "true"));
    }
    for (k, val) in extra {
        v.retain(|(kk, _)| kk != k);
        v.push((k, val));
    }
    v
}

fn position(calls: &[(String, String)], op: &str) -> Option<usize> {
    calls.iter().position(|(_, o)| o == op)
}

fn count(calls: &[(String, String)], op: &str) -> usize {
    calls.iter().filter(|(_, o)| o == op).count()
}

async fn status(ctx: &TestContext) -> Value {
    let r = ctx
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
    r.assert_code(0);
    r.json()["outcome"].clone()
}

/// The emulator's view of the migration tasks of `stage`.
async fn migration_tasks(ctx: &TestContext) -> Vec<Value> {
    let all = ctx.get("/_test/ecs/tasks").await;
    all.as_array()
        .unwrap()
        .iter()
        .filter(|t| t["group"] == GROUP)
        .cloned()
        .collect()
}

async fn wait_for_running_migration(ctx: &TestContext) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(t) = migration_tasks(ctx)
            .await
            .into_iter()
            .find(|t| t["lastStatus"] == "RUNNING")
        {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no migration task reached RUNNING"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Spawns the Action front end without waiting for it (for runs that overlap).
fn spawn_action(ctx: &TestContext, inputs: &[(&str, &str)]) -> tokio::process::Child {
    let mut cmd = ctx.base_command();
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REPOSITORY", "acme/backend")
        .env("GITHUB_RUN_ID", "5151")
        .env("GITHUB_RUN_ATTEMPT", "1");
    for (k, v) in inputs {
        cmd.env(format!("INPUT_{}", k.to_uppercase()), v);
    }
    cmd.spawn().expect("spawn deploy-action")
}

async fn finish(child: tokio::process::Child) -> RunResult {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("deploy-action did not finish within 120 s")
        .unwrap();
    RunResult {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        outputs: Default::default(),
        summary: String::new(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Never migrate without a fresh snapshot.
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn never_migrate_without_a_fresh_snapshot() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 0, "describes": 1}),
    )
    .await;
    let migrate = inputs("migrate", &[("version", "v2.0.0")]);

    // No snapshot at all, then one made by hand (not by this action): refused before any change.
    let rds = ctx.rds().await;
    rds.create_db_snapshot()
        .db_instance_identifier("app-stage")
        .db_snapshot_identifier("by-hand")
        .send()
        .await
        .unwrap();
    ctx.clear_calls().await;
    let r = ctx.action(&migrate).await;
    r.assert_code(1);
    assert!(
        r.stderr.contains("refusing to migrate stage")
            && r.stderr.contains("run the snapshot phase first"),
        "{}",
        r.stderr
    );
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());

    // A snapshot of ours still being made: refused, nothing changed.
    ctx.post("/_test/rds/snapshot-rules", json!({"neverAvailable": true}))
        .await;
    let mut timeout = inputs("snapshot", &[("version", "v2.0.0")]);
    timeout.push(("timeout-minutes", "1"));
    let snap = spawn_action(&ctx, &timeout);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !ctx
        .calls()
        .await
        .iter()
        .any(|(_, o)| o == "CreateDBSnapshot")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctx.clear_calls().await;
    let r = ctx.action(&migrate).await;
    r.assert_code(1);
    assert!(
        r.stderr.contains("is creating (not available yet)"),
        "{}",
        r.stderr
    );
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
    drop(snap);

    // A fresh, available snapshot of ours: the migration runs, and the call log shows the snapshot first.
    ctx.post(
        "/_test/rds/snapshot-rules",
        json!({"neverAvailable": false}),
    )
    .await;
    ctx.clear_calls().await;
    ctx.action(&inputs("snapshot", &[("version", "v2.0.0")]))
        .await
        .assert_code(0);
    let r = ctx.action(&migrate).await;
    r.assert_code(0);
    let calls = ctx.calls().await;
    let created = position(&calls, "CreateDBSnapshot").expect("a snapshot");
    let run = position(&calls, "RunTask").expect("a migration");
    let checked = calls[created..run]
        .iter()
        .position(|(_, o)| o == "DescribeDBSnapshots")
        .map(|i| i + created)
        .expect("the precondition read the snapshots before the migration");
    let first_change_of_migrate = calls[checked..]
        .iter()
        .position(|(_, o)| {
            !(o.starts_with("Describe") || o.starts_with("List") || o.starts_with("Get"))
        })
        .map(|i| i + checked)
        .unwrap();
    assert!(
        created < checked && checked < first_change_of_migrate && first_change_of_migrate <= run,
        "snapshot, then the check, then changes: {calls:?}"
    );
    assert!(r.outputs["snapshot-id"].starts_with("deploy-stage-v2-0-0-"));
}

// ---------------------------------------------------------------------------------------------------------------
// Never two migration tasks for one environment.
// ---------------------------------------------------------------------------------------------------------------

/// Two `migrate` runs started at the same moment (a re-run while the first is still going, two workflows): exactly
/// one RunTask, the other run follows that task or stops without having changed anything; the environment is
/// consistent afterwards. From running (both runs race through db-only too) and from db-only (both reach the task
/// runner together).
#[tokio::test]
async fn never_two_migration_tasks_for_one_environment() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.action(&inputs("snapshot", &[("version", "v2.0.0")]))
        .await
        .assert_code(0);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 0, "runningSeconds": 2}),
    )
    .await;
    let migrate = inputs("migrate", &[("version", "v2.0.0")]);
    for round in 0..4 {
        if round == 1 {
            ctx.action(&inputs("state", &[("state", "db-only")]))
                .await
                .assert_code(0);
        }
        ctx.clear_calls().await;
        let a = spawn_action(&ctx, &migrate);
        let b = spawn_action(&ctx, &migrate);
        let (a, b) = tokio::join!(finish(a), finish(b));
        let both = format!("A:\n{}\nB:\n{}", a.stderr, b.stderr);
        let calls = ctx.calls().await;
        assert_eq!(
            count(&calls, "RunTask"),
            1,
            "round {round}: two concurrent migrate runs, one RunTask\n{both}"
        );
        assert!(
            [a.code, b.code].iter().all(|c| *c == 0 || *c == 1) && (a.code == 0 || b.code == 0),
            "round {round}: one run succeeds, the other succeeds too or fails cleanly\n{both}"
        );
        if a.code == 0 && b.code == 0 {
            assert!(
                [&a, &b]
                    .iter()
                    .any(|r| r.stderr.contains("instead of starting another")
                        || r.stderr.contains("started meanwhile by another run")),
                "round {round}: one run followed the other's task\n{both}"
            );
        }
        let s = status(&ctx).await;
        assert_eq!(s["state"], "db-only", "round {round}: {s}\n{both}");
        assert_eq!(s["migration_tasks"], json!([]), "round {round}");
    }
    let tasks = migration_tasks(&ctx).await;
    assert_eq!(tasks.len(), 4, "one task per round: {tasks:?}");
    assert!(
        tasks
            .iter()
            .all(|t| t["lastStatus"] == "STOPPED" && t["exitCodes"]["migrate"] == 0),
        "{tasks:?}"
    );
}
