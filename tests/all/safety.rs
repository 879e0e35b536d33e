//! Issue 7, invariants as tests: each test is named after what it guards, across phases, against the local AWS.

use std::time::Duration;

use serde_json::{json, Value};

use crate::migrate::{migration_tasks, wait_for_running_migration};
use crate::support::{finish, TestContext};

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

// ---------------------------------------------------------------------------------------------------------------
// Maintenance is never lifted while a migration task runs.
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn maintenance_is_never_lifted_while_a_migration_task_runs() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.action(&inputs("snapshot", &[("version", "v2.0.0")]))
        .await
        .assert_code(0);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "neverStop": true}),
    )
    .await;
    let migrate = spawn_action(&ctx, &inputs("migrate", &[("version", "v2.0.0")]));
    let task = wait_for_running_migration(&ctx).await;
    assert_eq!(status(&ctx).await["state"], "db-only");

    // Every way maintenance could come off, or services come up, is refused while the task runs; nothing changes.
    let mut with_header = inputs("state", &[("state", "restricted")]);
    with_header.extend_from_slice(&HEADER);
    let attempts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("state running", inputs("state", &[("state", "running")])),
        ("state restricted", with_header),
        ("state stopped", inputs("state", &[("state", "stopped")])),
        (
            "state running (dry run)",
            inputs("state", &[("state", "running"), ("dry-run", "true")]),
        ),
        ("deploy running", inputs("deploy", &[("version", "v2.0.0")])),
        (
            "deploy restricted",
            inputs("deploy", &[("version", "v2.0.0"), ("state", "restricted")]),
        ),
    ];
    for (what, inputs) in attempts {
        ctx.clear_calls().await;
        let r = ctx.action(&inputs).await;
        assert_eq!(r.code, 1, "{what}: {}", r.stderr);
        assert!(
            r.stderr.contains("a migration task is still running")
                && r.stderr.contains(
                    task["taskArn"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                ),
            "{what}: {}",
            r.stderr
        );
        assert_eq!(ctx.mutating_calls().await, Vec::<String>::new(), "{what}");
        let s = status(&ctx).await;
        assert_eq!(s["state"], "db-only", "{what}: {s}");
        assert_eq!(s["maintenance"], "on", "{what}");
    }

    // Once the migration stopped, the same request goes through.
    ctx.post(
        "/_test/ecs/task-exit",
        json!({"task": task["taskArn"], "exitCode": 0}),
    )
    .await;
    let m = finish(migrate).await;
    assert_eq!(m.code, 0, "{}", m.stderr);
    ctx.action(&inputs("state", &[("state", "running")]))
        .await
        .assert_code(0);
    assert_eq!(status(&ctx).await["state"], "running");
}

// ---------------------------------------------------------------------------------------------------------------
// Never a service left on a deregistered revision.
// ---------------------------------------------------------------------------------------------------------------

const SERVICES: [&str; 2] = ["core", "workers"];

async fn td_status(ctx: &TestContext, arn: &str) -> String {
    let out = ctx
        .ecs()
        .await
        .describe_task_definition()
        .task_definition(arn)
        .send()
        .await
        .unwrap();
    out.task_definition()
        .unwrap()
        .status()
        .unwrap()
        .as_str()
        .to_string()
}

/// Every service's task definition and its PRIMARY deployment's are ACTIVE; returns the revisions that deployments
/// other than the primary still run (`service`, `revision`).
async fn assert_services_on_active_revisions(
    ctx: &TestContext,
    what: &str,
) -> Vec<(String, String)> {
    let out = ctx
        .ecs()
        .await
        .describe_services()
        .cluster("app-stage")
        .set_services(Some(SERVICES.iter().map(|s| s.to_string()).collect()))
        .send()
        .await
        .unwrap();
    let mut others = vec![];
    for svc in out.services() {
        let name = svc.service_name().unwrap();
        let td = svc.task_definition().unwrap();
        assert_eq!(
            td_status(ctx, td).await,
            "ACTIVE",
            "{what}: service {name} is on {td}"
        );
        for d in svc.deployments() {
            let dtd = d.task_definition().unwrap();
            if d.status() == Some("PRIMARY") {
                assert_eq!(
                    td_status(ctx, dtd).await,
                    "ACTIVE",
                    "{what}: {name}'s primary deployment runs {dtd}"
                );
            } else if d.running_count() > 0 {
                others.push((name.to_string(), dtd.to_string()));
            }
        }
    }
    others
}

#[tokio::test]
async fn no_service_is_left_on_a_deregistered_revision() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.action(&inputs("deploy", &[("version", "v1.1.0")]))
        .await
        .assert_code(0);
    assert_services_on_active_revisions(&ctx, "after a good deploy").await;

    // A deploy stopped by the circuit breaker on one service: every service back on its previous revision.
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "core", "outcome": "FAILED", "times": 1, "failedTasks": 2}),
    )
    .await;
    let r = ctx
        .action(&inputs("deploy", &[("version", "v1.2.0")]))
        .await;
    r.assert_code(1);
    assert_eq!(r.outputs["rolled-back"], "true");
    assert_services_on_active_revisions(&ctx, "deploy stopped by the circuit breaker").await;

    // One UpdateService refused: the other service goes back.
    ctx.post(
        "/_test/faults",
        json!({"operation": "UpdateService", "kind": "500", "count": 1}),
    )
    .await;
    let r = ctx
        .action_with_env(
            &inputs("deploy", &[("version", "v1.3.0")]),
            &[("AWS_MAX_ATTEMPTS", "1")],
        )
        .await;
    r.assert_code(1);
    assert_services_on_active_revisions(&ctx, "deploy with an UpdateService refused").await;

    // A rollback whose roll-out fails: ECS's circuit breaker returns the service to the revision it ran (the bad
    // one), so that revision must stay registered even though it is newer than the target and never known good.
    let bad = ours(&ctx, ctx.manual_revision("core", None, "core-v6.6.6").await).await;
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "core", "outcome": "FAILED", "times": 1, "failedTasks": 1}),
    )
    .await;
    let r = ctx.action(&inputs("rollback", &[])).await;
    r.assert_code(1);
    let running = assert_services_on_active_revisions(&ctx, "rollback whose roll-out failed").await;
    assert!(
        running.iter().any(|(s, td)| s == "core" && *td == bad),
        "{running:?}"
    );
    assert_eq!(
        td_status(&ctx, &bad).await,
        "ACTIVE",
        "the revision the failed rollback's circuit breaker returns core to is still registered"
    );
    // Once the rollback goes through, the bad revision is deregistered.
    let r = ctx.action(&inputs("rollback", &[])).await;
    r.assert_code(0);
    assert_services_on_active_revisions(&ctx, "rollback").await;
    assert_eq!(td_status(&ctx, &bad).await, "INACTIVE");

    // A deploy whose rollback fails too (the circuit breaker stops both): nothing points at a deregistered revision.
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "workers", "outcome": "FAILED", "times": 2, "failedTasks": 1}),
    )
    .await;
    let r = ctx
        .action(&inputs("deploy", &[("version", "v1.4.0")]))
        .await;
    r.assert_code(1);
    assert_services_on_active_revisions(&ctx, "deploy whose rollback failed").await;
    // workers is back on its revision with a FAILED roll-out: a rollback starts that roll-out again and settles.
    ctx.http
        .delete(format!("{}/_test/ecs/service-rules", ctx.url))
        .send()
        .await
        .unwrap();
    let r = ctx.action(&inputs("rollback", &[])).await;
    r.assert_code(0);
    assert!(
        r.stderr
            .contains("its last roll-out FAILED: starting it again"),
        "{}",
        r.stderr
    );
    let others = assert_services_on_active_revisions(&ctx, "rollback of a FAILED roll-out").await;
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(status(&ctx).await["state"], "running");

    // A fast rollback (not waited for) whose roll-out then fails: the circuit breaker returns core to the revision
    // it ran, which the fast rollback kept registered.
    let bad = ours(&ctx, ctx.manual_revision("core", None, "core-v6.6.7").await).await;
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "core", "outcome": "FAILED", "times": 1, "failedTasks": 1}),
    )
    .await;
    ctx.action(&inputs("rollback", &[("fast", "true")]))
        .await
        .assert_code(0);
    assert_eq!(td_status(&ctx, &bad).await, "ACTIVE");
    // The roll-out fails while the old deployment still runs tasks of the bad revision (the local AWS does not move
    // the service back by itself; ECS would, onto that same revision): it must still be registered.
    let mut failed = false;
    for _ in 0..50 {
        let running =
            assert_services_on_active_revisions(&ctx, "fast rollback whose roll-out failed").await;
        let svc = ctx
            .ecs()
            .await
            .describe_services()
            .cluster("app-stage")
            .services("core")
            .send()
            .await
            .unwrap();
        let primary_failed = svc.services()[0].deployments().iter().any(|d| {
            d.status() == Some("PRIMARY")
                && d.rollout_state() == Some(&aws_sdk_ecs::types::DeploymentRolloutState::Failed)
        });
        if primary_failed {
            assert!(
                running.iter().any(|(s, td)| s == "core" && *td == bad),
                "{running:?}"
            );
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(failed, "the fast rollback's roll-out of core failed");
    assert_eq!(td_status(&ctx, &bad).await, "ACTIVE");
    // The next rollback goes through and only then deregisters it.
    ctx.action(&inputs("rollback", &[])).await.assert_code(0);
    assert_services_on_active_revisions(&ctx, "rollback after the fast one").await;
    assert_eq!(td_status(&ctx, &bad).await, "INACTIVE");
}

// ---------------------------------------------------------------------------------------------------------------
// A rerun after a failure converges (the fault matrix, `scripts/faults`, covers every fault; these are one per phase).
// ---------------------------------------------------------------------------------------------------------------

async fn clear_faults(ctx: &TestContext) {
    for path in [
        "/_test/faults",
        "/_test/ecs/service-rules",
        "/_test/ecs/task-rules",
    ] {
        let r = ctx
            .http
            .delete(format!("{}{path}", ctx.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

#[tokio::test]
async fn a_rerun_after_a_failure_converges() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let one_try = [("AWS_MAX_ATTEMPTS", "1")];

    // state: the listener refuses a change half-way; the rerun converges on db-only.
    ctx.post(
        "/_test/faults",
        json!({"operation": "ModifyRule", "kind": "503", "after": 1, "count": -1}),
    )
    .await;
    let r = ctx
        .action_with_env(&inputs("state", &[("state", "db-only")]), &one_try)
        .await;
    r.assert_code(1);
    assert_eq!(status(&ctx).await["maintenance"], "partial");
    clear_faults(&ctx).await;
    ctx.action(&inputs("state", &[("state", "db-only")]))
        .await
        .assert_code(0);
    assert_eq!(status(&ctx).await["state"], "db-only");

    // snapshot: RDS throttles CreateDBSnapshot past the SDK's retries; the rerun makes it.
    ctx.post(
        "/_test/faults",
        json!({"operation": "CreateDBSnapshot", "kind": "throttle", "count": -1}),
    )
    .await;
    let snapshot = inputs("snapshot", &[("version", "v2.0.0")]);
    ctx.action_with_env(&snapshot, &one_try)
        .await
        .assert_code(1);
    clear_faults(&ctx).await;
    ctx.action(&snapshot).await.assert_code(0);

    // migrate: the migration exits 1; the rerun (fixed image) succeeds.
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 1, "times": 1}),
    )
    .await;
    let migrate = inputs("migrate", &[("version", "v2.0.0")]);
    ctx.action(&migrate).await.assert_code(1);
    clear_faults(&ctx).await;
    let r = ctx.action(&migrate).await;
    r.assert_code(0);
    assert_eq!(r.outputs["exit-code"], "0");

    // deploy: killed with SIGKILL in the middle of its roll-out; the rerun follows the roll-out to the end.
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "*", "outcome": "COMPLETED", "settleAfterSeconds": 4, "times": 2}),
    )
    .await;
    let deploy = inputs("deploy", &[("version", "v2.0.0")]);
    let child = spawn_action(&ctx, &deploy);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !ctx.calls().await.iter().any(|(_, o)| o == "UpdateService") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no roll-out started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let killed = finish(child).await;
    assert_eq!(killed.code, -1, "killed by a signal: {}", killed.stderr);
    let r = ctx.action(&deploy).await;
    r.assert_code(0);
    let s = status(&ctx).await;
    assert_eq!(s["state"], "running", "{s}");
    for svc in s["services"].as_array().unwrap() {
        assert_eq!(svc["version"], "v2.0.0", "{s}");
    }

    // rollback: its roll-out is stopped by the circuit breaker; the rerun settles.
    ctx.manual_revision("workers", None, "workers-v6.6.6").await;
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "workers", "outcome": "FAILED", "times": 1}),
    )
    .await;
    ctx.action(&inputs("rollback", &[])).await.assert_code(1);
    ctx.action(&inputs("rollback", &[])).await.assert_code(0);
    let others = assert_services_on_active_revisions(&ctx, "rollback rerun").await;
    assert!(others.is_empty(), "{others:?}");
    let s = status(&ctx).await;
    assert_eq!(s["state"], "running", "{s}");
    assert!(
        s["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["version"] == "v2.0.0"),
        "{s}"
    );
}

/// Tags a revision made by hand as this action's (rollback deregisters only its own revisions).
async fn ours(ctx: &TestContext, arn: String) -> String {
    ctx.ecs()
        .await
        .tag_resource()
        .resource_arn(&arn)
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("deploy-action:version")
                .value("v6.6.6")
                .build(),
        )
        .send()
        .await
        .unwrap();
    arn
}
