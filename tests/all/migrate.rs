//! Issue 4, phase `migrate` and the one-off task runner (`src/domain/task.rs`), end to end against the local AWS.

use std::time::Duration;

use serde_json::{json, Value};

use crate::snapshot::lib_ctx;
use crate::support::sigint::send_sigint;
use crate::support::{finish, TestContext};

const MIGRATE: &[(&str, &str)] = &[
    ("phase", "migrate"),
    ("environment", "stage"),
    ("config", "deploy.toml"),
    ("version", "v2.0.0"),
    ("skip-drain", "true"),
];

const SNAPSHOT: &[(&str, &str)] = &[
    ("phase", "snapshot"),
    ("environment", "stage"),
    ("config", "deploy.toml"),
    ("version", "v2.0.0"),
];

const GROUP: &str = "deploy-action:stage:migration";

fn count(calls: &[(String, String)], op: &str) -> usize {
    calls.iter().filter(|(_, o)| o == op).count()
}

/// Seeds `stage` and takes the snapshot the migration needs.
async fn ready(ctx: &TestContext) {
    ctx.seed("stage", &[]);
    ctx.action(SNAPSHOT).await.assert_code(0);
    ctx.clear_calls().await;
}

/// The emulator's view of the migration tasks (those started in the migration group).
pub(crate) async fn migration_tasks(ctx: &TestContext) -> Vec<Value> {
    let all = ctx.get("/_test/ecs/tasks").await;
    all.as_array()
        .unwrap()
        .iter()
        .filter(|t| t["group"] == GROUP)
        .cloned()
        .collect()
}

/// The first migration task the emulator runs, once it is RUNNING (a guard of a minute: "no migration task reached
/// RUNNING").
pub(crate) async fn wait_for_running_migration(ctx: &TestContext) -> Value {
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

#[tokio::test]
async fn migrate_exit_0_registers_an_image_only_revision_and_runs_one_task() {
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 0, "describes": 2, "logs": ["applying 0001_init", "[✓] migrations applied successfully!"]}),
    )
    .await;
    let r = ctx.action(MIGRATE).await;
    r.assert_code(0);
    assert_eq!(r.outputs["exit-code"], "0");
    assert_eq!(r.outputs["log-lines"], "2");
    assert_eq!(r.outputs["result"], "success");
    assert!(
        r.outputs["snapshot-id"].starts_with("deploy-stage-v2-0-0-"),
        "{:?}",
        r.outputs
    );
    let arn = r.outputs["task-arn"].clone();
    assert!(arn.contains(":task/app-stage/"), "{arn}");
    assert!(
        r.summary
            .starts_with("### ✅ Migration v2.0.0 on `stage`: succeeded"),
        "{}",
        r.summary
    );
    assert!(r.summary.contains("| took |"), "{}", r.summary);
    assert!(r.summary.contains("running → db-only"), "{}", r.summary);
    assert!(
        !r.summary.contains("<details>"),
        "no log block on success: {}",
        r.summary
    );
    // The lines were printed into the job log, inside a group that does not interpret workflow commands.
    let group_at = r
        .stderr
        .find("::group::migration logs: migrate")
        .expect("a log group");
    let stop_at = r.stderr.find("::stop-commands::").unwrap();
    let line_at = r
        .stderr
        .find("[✓] migrations applied successfully!")
        .unwrap();
    assert!(group_at < stop_at && stop_at < line_at, "{}", r.stderr);

    let calls = ctx.calls().await;
    assert_eq!(count(&calls, "RunTask"), 1, "{calls:?}");
    assert_eq!(count(&calls, "RegisterTaskDefinition"), 1);
    let pos = |op: &str| calls.iter().position(|(_, o)| o == op).unwrap();
    assert!(
        pos("UpdateService") < pos("RunTask"),
        "db-only before the migration: {calls:?}"
    );
    assert!(pos("RegisterTaskDefinition") < pos("RunTask"));

    // The new revision is the old one with only the image changed, tagged with the version.
    let ecs = ctx.ecs().await;
    let old = ecs
        .describe_task_definition()
        .task_definition("stage-migrate:1")
        .send()
        .await
        .unwrap();
    let new = ecs
        .describe_task_definition()
        .task_definition("stage-migrate:2")
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let (old_td, new_td) = (
        old.task_definition().unwrap(),
        new.task_definition().unwrap(),
    );
    let mut expected = old_td.container_definitions()[0].clone();
    expected.image =
        Some("123456789012.dkr.ecr.eu-central-1.amazonaws.com/app:migrate-v2.0.0".into());
    assert_eq!(new_td.container_definitions(), &[expected]);
    assert_eq!(new_td.cpu(), old_td.cpu());
    assert_eq!(new_td.memory(), old_td.memory());
    assert_eq!(new_td.execution_role_arn(), old_td.execution_role_arn());
    assert_eq!(new_td.task_role_arn(), old_td.task_role_arn());
    assert_eq!(new_td.network_mode(), old_td.network_mode());
    assert_eq!(new_td.runtime_platform(), old_td.runtime_platform());
    assert_eq!(new_td.ephemeral_storage(), old_td.ephemeral_storage());
    assert_eq!(
        new_td.requires_compatibilities(),
        old_td.requires_compatibilities()
    );
    let tags: Vec<(&str, &str)> = new
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert!(
        tags.contains(&("deploy-action:version", "v2.0.0")),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("environment", "stage")),
        "existing tags are kept: {tags:?}"
    );

    // The task: started by this action, in the group, tagged, on the core service's network.
    let task = ecs
        .describe_tasks()
        .cluster("app-stage")
        .tasks(&arn)
        .include(aws_sdk_ecs::types::TaskField::Tags)
        .send()
        .await
        .unwrap();
    let task = &task.tasks()[0];
    assert_eq!(task.started_by(), Some("deploy-action"));
    assert_eq!(task.group(), Some(GROUP));
    let tags: Vec<(&str, &str)> = task
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    for want in [
        ("deploy-action:version", "v2.0.0"),
        ("deploy-action:run", "acme/backend/4242"),
        ("deploy-action:environment", "stage"),
        ("deploy-action:task", "migration"),
    ] {
        assert!(tags.contains(&want), "{want:?} missing: {tags:?}");
    }
    let svc = ecs
        .describe_services()
        .cluster("app-stage")
        .services("core")
        .send()
        .await
        .unwrap();
    let core_subnets = svc.services()[0]
        .network_configuration()
        .unwrap()
        .awsvpc_configuration()
        .unwrap()
        .subnets()
        .to_vec();
    let attached_subnet = task.attachments()[0]
        .details()
        .iter()
        .find(|d| d.name() == Some("subnetId"))
        .and_then(|d| d.value())
        .unwrap()
        .to_string();
    assert!(
        core_subnets.contains(&attached_subnet),
        "{attached_subnet} not in {core_subnets:?}"
    );
}

#[tokio::test]
async fn migrate_exit_1_fails_with_the_exit_code_and_the_last_50_lines() {
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    let lines: Vec<String> = (1..=60)
        .map(|i| format!("migration step {i}"))
        .chain(["ERROR: relation \"users\" already exists".to_string()])
        .collect();
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 1, "describes": 2, "logs": lines}),
    )
    .await;
    let r = ctx.action(MIGRATE).await;
    r.assert_code(1);
    assert_eq!(r.outputs["exit-code"], "1");
    assert_eq!(r.outputs["log-lines"], "61");
    assert_eq!(r.outputs["result"], "failure");
    let s = &r.summary;
    assert!(s.starts_with("### ❌ Migration v2.0.0 on `stage`: failed\n\n**migration failed: exit code 1 (stop code EssentialContainerExited"), "verdict first: {s}");
    assert!(
        s.contains("<details><summary>Last 50 of 61 log lines</summary>"),
        "{s}"
    );
    assert!(
        s.contains("migration step 12\n") && !s.contains("migration step 11\n"),
        "exactly the last 50: {s}"
    );
    assert!(
        s.contains("ERROR: relation \"users\" already exists"),
        "{s}"
    );
    assert!(
        r.stderr.contains("::error::migration failed: exit code 1"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn migrate_task_failed_to_start_reports_the_stop_code_and_reason() {
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "stopCode": "TaskFailedToStart"}),
    )
    .await;
    let r = ctx
        .cli(&[
            "migrate",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--version",
            "v2.0.0",
            "--skip-drain",
            "--output",
            "json",
        ])
        .await;
    r.assert_code(1);
    let o = &r.json()["outcome"];
    assert_eq!(o["task"]["verdict"], "failed-to-start");
    assert_eq!(o["task"]["stop_code"], "TaskFailedToStart");
    assert!(
        o["task"]["stopped_reason"]
            .as_str()
            .unwrap()
            .contains("CannotPullContainerError"),
        "{o}"
    );
    assert!(o["task"]["exit_code"].is_null());
    assert_eq!(o["task"]["log_lines"], 0);
}

/// Timeout, through the library with a short deadline: the task is stopped with a reason and the report says so.
#[tokio::test]
async fn a_task_still_running_at_the_deadline_is_stopped_with_a_reason() {
    use deploy_action::domain::task;
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "neverStop": true, "logs": ["long migration..."]}),
    )
    .await;
    let config = deploy_action::config::Config::load(&ctx.config_path()).unwrap();
    let env = config.environment("stage").unwrap();
    let version = deploy_action::version::Version::parse("v2.0.0").unwrap();
    let launch = task::Launch {
        environment: env,
        task: env.migration.as_ref().unwrap(),
        version: &version,
        command: None,
        revision_tags: &[],
    };
    let clients = task::Clients::new(&ctx.sdk().await);
    let report = task::run(&launch, &clients, &lib_ctx(Duration::from_secs(4)))
        .await
        .unwrap();
    assert_eq!(report.verdict, task::TaskVerdict::TimedOut);
    assert!(!report.ok());
    assert_eq!(report.stop_code.as_deref(), Some("UserInitiated"));
    assert!(
        report
            .stopped_reason
            .as_deref()
            .unwrap()
            .starts_with("deploy-action: timeout-minutes reached"),
        "{report:?}"
    );
    assert_eq!(report.last_lines, vec!["long migration..."]);
    assert!(report
        .explanation()
        .contains("did not finish within timeout-minutes and was stopped"));
    let tasks = migration_tasks(&ctx).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["lastStatus"], "STOPPED");
    assert_eq!(count(&ctx.calls().await, "StopTask"), 1);
}

/// Cancel: the runner sends SIGINT; the task is stopped ("cancelled by workflow"), the log says so, exit 130.
#[tokio::test]
async fn sigint_stops_the_migration_task_and_exits_130() {
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "neverStop": true}),
    )
    .await;
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
    let task = wait_for_running_migration(&ctx).await;
    send_sigint(&child);
    let r = finish(child).await;
    r.assert_code(130);
    let stderr = &r.stderr;
    assert!(stderr.contains("SIGINT received"), "{stderr}");
    assert!(
        stderr.contains("cancelled by workflow: migration task") && stderr.contains("stopped"),
        "{stderr}"
    );
    let after: Vec<Value> = migration_tasks(&ctx).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["taskArn"], task["taskArn"]);
    assert_eq!(after[0]["lastStatus"], "STOPPED");
    assert_eq!(after[0]["stopCode"], "UserInitiated");
    assert_eq!(after[0]["stoppedReason"], "cancelled by workflow");
    assert_eq!(count(&ctx.calls().await, "StopTask"), 1);
}

#[tokio::test]
async fn a_rerun_attaches_to_the_migration_already_running() {
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    ctx.post("/_test/ecs/task-rules", json!({"match": "earlier-run", "exitCode": 0, "describes": 3, "logs": ["started by the killed job", "done"]})).await;
    let arn = ctx
        .start_like_an_earlier_run("stage-migrate", GROUP, "v2.0.0")
        .await;
    ctx.clear_calls().await;
    let r = ctx.action(MIGRATE).await;
    r.assert_code(0);
    assert_eq!(r.outputs["task-arn"], arn);
    assert_eq!(
        r.outputs["log-lines"], "2",
        "the attached task's log is followed from its start"
    );
    assert!(
        r.stderr
            .contains("attaching to it instead of starting another"),
        "{}",
        r.stderr
    );
    assert!(
        r.summary.contains("attached: it was already running"),
        "{}",
        r.summary
    );
    let calls = ctx.calls().await;
    assert_eq!(
        count(&calls, "RunTask"),
        0,
        "no second migration: {calls:?}"
    );
    assert_eq!(count(&calls, "RegisterTaskDefinition"), 0);
    assert_eq!(migration_tasks(&ctx).await.len(), 1);
}

#[tokio::test]
async fn a_migration_of_another_version_still_running_is_refused_before_any_change() {
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "earlier-run", "neverStop": true}),
    )
    .await;
    let arn = ctx
        .start_like_an_earlier_run("stage-migrate", GROUP, "v1.9.0")
        .await;
    ctx.clear_calls().await;
    let r = ctx.action(MIGRATE).await;
    r.assert_code(1);
    assert!(
        r.stderr
            .contains("a migration task for version v1.9.0 is still running"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&arn), "{}", r.stderr);
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
}

#[tokio::test]
async fn without_a_snapshot_migrate_refuses_and_changes_nothing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    // A snapshot made by hand does not count: only this action's are known to be complete and fresh.
    let rds = ctx.rds().await;
    rds.create_db_snapshot()
        .db_instance_identifier("app-stage")
        .db_snapshot_identifier("by-hand")
        .send()
        .await
        .unwrap();
    ctx.clear_calls().await;
    let r = ctx.action(MIGRATE).await;
    r.assert_code(1);
    assert!(r.stderr.contains("refusing to migrate stage: no available snapshot of app-stage made by deploy-action for stage exists"), "{}", r.stderr);
    assert!(
        r.stderr.contains("run the snapshot phase first"),
        "{}",
        r.stderr
    );
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_stale_snapshot_is_refused() {
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    // Two second boundaries after the snapshot was made, it is two seconds old by RDS's clock (one-second resolution).
    crate::support::next_second().await;
    crate::support::next_second().await;
    let mut inputs = MIGRATE.to_vec();
    inputs.push(("max-snapshot-age", "1s"));
    let r = ctx.action(&inputs).await;
    r.assert_code(1);
    assert!(
        r.stderr.contains("old; max-snapshot-age is 1.0s"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("run the snapshot phase first"),
        "{}",
        r.stderr
    );
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
    // The same snapshot is fresh enough for the default of 2 hours.
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 0}),
    )
    .await;
    ctx.action(MIGRATE).await.assert_code(0);
}

#[tokio::test]
async fn allow_without_snapshot_migrates_and_says_so_loudly() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 0}),
    )
    .await;
    let mut inputs = MIGRATE.to_vec();
    inputs.push(("allow-without-snapshot", "true"));
    let r = ctx.action(&inputs).await;
    r.assert_code(0);
    assert!(
        r.stderr
            .contains("::warning title=deploy-action::migrating stage WITHOUT a fresh snapshot"),
        "{}",
        r.stderr
    );
    assert!(
        r.summary
            .contains("> [!WARNING]\n> **Migrated without a fresh snapshot**"),
        "{}",
        r.summary
    );
    assert_eq!(r.outputs["snapshot-id"], "");
}

#[tokio::test]
async fn ten_thousand_log_lines_arrive_in_order_with_none_lost() {
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 0, "generateLines": {"count": 10000, "overSeconds": 4, "template": "migration line {i}"}}),
    )
    .await;
    let mut inputs = MIGRATE.to_vec();
    inputs.push(("output", "json"));
    let r = ctx.action(&inputs).await;
    r.assert_code(0);
    assert_eq!(r.outputs["log-lines"], "10000");
    // Figures for BENCHMARKS.md (not asserted: they depend on the machine).
    let lag = &r.json()["outcome"]["task"]["log_lag"];
    eprintln!(
        "10,000 lines over 4 s: log lag max {} ms, mean {} ms",
        lag["max_ms"], lag["mean_ms"]
    );
    let seen: Vec<u32> = r
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("migration line "))
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        seen,
        (1..=10000).collect::<Vec<u32>>(),
        "every line once, in order"
    );
}

#[tokio::test]
async fn throttling_and_5xx_while_running_neither_fail_nor_duplicate_the_migration() {
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 0, "describes": 3, "logs": ["a", "b", "c"]}),
    )
    .await;
    // RunTask fails once with a 500: the runner looks for the task by its group before trying again.
    ctx.post(
        "/_test/faults",
        json!({"operation": "RunTask", "kind": "500", "count": 1}),
    )
    .await;
    ctx.post(
        "/_test/faults",
        json!({"operation": "DescribeTasks", "kind": "throttle", "count": 6}),
    )
    .await;
    ctx.post(
        "/_test/faults",
        json!({"operation": "GetLogEvents", "kind": "503", "count": 6}),
    )
    .await;
    let r = ctx.action(MIGRATE).await;
    r.assert_code(0);
    assert_eq!(r.outputs["log-lines"], "3");
    assert_eq!(
        migration_tasks(&ctx).await.len(),
        1,
        "exactly one migration task"
    );
    let calls = ctx.calls().await;
    assert_eq!(
        count(&calls, "RunTask"),
        2,
        "one failed attempt, one that started the task: {calls:?}"
    );
    let run_at: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, (_, o))| o == "RunTask")
        .map(|(i, _)| i)
        .collect();
    assert!(
        calls[run_at[0] + 1..run_at[1]]
            .iter()
            .any(|(_, o)| o == "ListTasks"),
        "looked for the task before trying again: {calls:?}"
    );
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| ["a", "b", "c"].contains(l))
        .collect();
    assert_eq!(lines, vec!["a", "b", "c"], "no line twice, none lost");
}

#[tokio::test]
async fn dry_run_checks_and_plans_but_changes_nothing() {
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    let mut inputs = MIGRATE.to_vec();
    inputs.push(("dry-run", "true"));
    let r = ctx.action(&inputs).await;
    r.assert_code(0);
    assert!(r.stderr.contains("dry run: would register a revision of stage-migrate with migrate = 123456789012.dkr.ecr.eu-central-1.amazonaws.com/app:migrate-v2.0.0"), "{}", r.stderr);
    assert!(r.summary.contains("planned (dry run)"), "{}", r.summary);
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
}

#[tokio::test]
async fn migrate_bad_input_exits_2_with_one_line_and_no_aws_call() {
    let ctx = TestContext::new().await;
    let path = ctx.seed("stage", &[]);
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = |from: &str, to: &str| {
        let start = text.find(from).unwrap();
        let end = start + text[start..].find(to).unwrap();
        format!("{}{}", &text[..start], &text[end..])
    };
    std::fs::write(
        ctx.path().join("nodb.toml"),
        cut(
            "[environments.stage.database]",
            "[environments.stage.maintenance]",
        ),
    )
    .unwrap();
    std::fs::write(
        ctx.path().join("nomig.toml"),
        cut(
            "[environments.stage.migration]",
            "[environments.stage.tasks.",
        ),
    )
    .unwrap();
    ctx.clear_calls().await;
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, &str)> = MIGRATE.to_vec();
        for (k, val) in extra {
            v.retain(|(kk, _)| kk != k);
            v.push((k, val));
        }
        v
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            with(&[("config", "nodb.toml")]),
            "environments.stage.database: missing",
        ),
        (
            with(&[("config", "nomig.toml")]),
            "environments.stage.migration: missing",
        ),
        (with(&[("version", "v2 0")]), "input `version`"),
        (
            MIGRATE
                .iter()
                .filter(|(k, _)| *k != "version")
                .cloned()
                .collect(),
            "input `version`: missing",
        ),
        (
            with(&[("max-snapshot-age", "soon")]),
            "input `max-snapshot-age`",
        ),
        (
            with(&[("max-snapshot-age", "0")]),
            "input `max-snapshot-age`: 0",
        ),
        (
            with(&[("allow-without-snapshot", "perhaps")]),
            "input `allow-without-snapshot`",
        ),
        (
            with(&[("maintenance-header-name", "x-bypass")]),
            "maintenance-header-value",
        ),
    ];
    for (inputs, needle) in cases {
        let r = ctx.action(&inputs).await;
        assert_eq!(r.code, 2, "{inputs:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(needle),
            "{inputs:?}: should name {needle:?}: {}",
            r.stderr
        );
        let lines = r
            .stderr
            .lines()
            .filter(|l| !l.starts_with("::add-mask::"))
            .count();
        assert_eq!(lines, 1, "{inputs:?}: {}", r.stderr);
    }
    assert_eq!(ctx.calls().await, vec![], "bad input must not reach AWS");
}

/// An ambiguous RunTask: the client gives up (timeout) while ECS starts the task anyway. The runner must find the
/// task by its launch tag before trying again, and follow it: one task, one RunTask.
#[tokio::test]
async fn after_an_ambiguous_run_task_the_runner_finds_the_task_instead_of_starting_another() {
    use deploy_action::domain::task;
    let ctx = TestContext::new().await;
    ready(&ctx).await;
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 0, "describes": 2, "logs": ["once"]}),
    )
    .await;
    // The server sleeps 1 s before it runs the task; the client waits 0.3 s.
    ctx.post(
        "/_test/faults",
        json!({"operation": "RunTask", "kind": "latency", "latencyMs": 1000, "count": 1}),
    )
    .await;
    let sdk = ctx
        .sdk()
        .await
        .into_builder()
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(300))
                .build(),
        )
        .build();
    let config = deploy_action::config::Config::load(&ctx.config_path()).unwrap();
    let env = config.environment("stage").unwrap();
    let version = deploy_action::version::Version::parse("v2.0.0").unwrap();
    let launch = task::Launch {
        environment: env,
        task: env.migration.as_ref().unwrap(),
        version: &version,
        command: None,
        revision_tags: &[],
    };
    // At AWS's pace: the runner looks again a second later, after the late task exists (at the tests' pace it would
    // look before the server answered).
    let mut run_ctx = lib_ctx(Duration::from_secs(60));
    run_ctx.pace = deploy_action::wait::Pace::AWS;
    let report = task::run(&launch, &task::Clients::new(&sdk), &run_ctx)
        .await
        .unwrap();
    assert_eq!(report.verdict, task::TaskVerdict::Succeeded, "{report:?}");
    assert!(!report.attached, "this run started it");
    assert_eq!(report.last_lines, vec!["once"]);
    let calls = ctx.calls().await;
    assert_eq!(
        count(&calls, "RunTask"),
        1,
        "never a second RunTask: {calls:?}"
    );
    let tasks = migration_tasks(&ctx).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["taskArn"].as_str(), report.task_arn.as_deref());
}
