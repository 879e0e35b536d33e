//! Issue 10: phase `run` (one-off tasks, watched like a migration) and promotion by reference (`from:<env>`),
//! end to end against the local AWS.

use serde_json::{json, Value};

use crate::support::sigint::send_sigint;
use crate::support::{finish, RunResult, TestContext, REGION};

const GROUP: &str = "deploy-action:stage:seed";
/// Where the second environment of the promotion tests lives: another region than the one the phase runs in.
const STAGE_REGION: &str = "eu-west-1";

fn count(calls: &[(String, String)], op: &str) -> usize {
    calls.iter().filter(|(_, o)| o == op).count()
}

fn inputs<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("phase", "run"),
        ("environment", "stage"),
        ("config", "deploy.toml"),
        ("task", "seed"),
        ("version", "v1.0.0"),
    ];
    for (k, val) in extra {
        v.retain(|(kk, _)| kk != k);
        v.push((k, val));
    }
    v
}

async fn run(ctx: &TestContext, extra: &[(&str, &str)]) -> RunResult {
    ctx.action(&inputs(extra)).await
}

/// The emulator's view of the tasks started in a group.
async fn tasks_in(ctx: &TestContext, group: &str) -> Vec<Value> {
    let all = ctx.get("/_test/ecs/tasks").await;
    all.as_array()
        .unwrap()
        .iter()
        .filter(|t| t["group"] == group)
        .cloned()
        .collect()
}

#[tokio::test]
async fn run_a_seed_task_that_succeeds_without_snapshot_or_db_only() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-seed", "exitCode": 0, "describes": 2, "logs": ["seeding users", "seeded 42 rows"]}),
    )
    .await;
    let r = run(&ctx, &[]).await;
    r.assert_code(0);
    assert_eq!(r.outputs["exit-code"], "0");
    assert_eq!(r.outputs["log-lines"], "2");
    assert_eq!(r.outputs["version"], "v1.0.0");
    assert_eq!(r.outputs["resolved-from"], "");
    assert_eq!(r.outputs["result"], "success");
    let arn = &r.outputs["task-arn"];
    assert!(arn.contains(":task/app-stage/"), "{arn}");
    assert!(
        r.summary
            .starts_with("### ✅ Task seed v1.0.0 on `stage`: succeeded\n"),
        "verdict first: {}",
        r.summary
    );
    assert!(r.summary.contains("| took |"), "{}", r.summary);
    assert!(!r.summary.contains("<details>"), "{}", r.summary);
    assert!(
        r.stderr.contains("::group::task seed logs: seed") && r.stderr.contains("seeded 42 rows"),
        "{}",
        r.stderr
    );
    // No precondition of migrate: no snapshot looked for, the environment left running.
    let calls = ctx.calls().await;
    assert_eq!(
        ctx.mutating_calls().await,
        // The launch lock (a cluster tag) around the last look at the group and RunTask.
        vec![
            "ecs:TagResource",
            "ecs:RegisterTaskDefinition",
            "ecs:RunTask",
            "ecs:UntagResource"
        ],
        "{calls:?}"
    );
    assert_eq!(count(&calls, "DescribeDBSnapshots"), 0, "{calls:?}");
    // The image at the version through the task's image-tag template, the group, the core service's network.
    let ecs = ctx.ecs().await;
    let task = ecs
        .describe_tasks()
        .cluster("app-stage")
        .tasks(arn)
        .send()
        .await
        .unwrap();
    let task = &task.tasks()[0];
    assert_eq!(task.group(), Some(GROUP));
    assert_eq!(task.started_by(), Some("deploy-action"));
    let td = ecs
        .describe_task_definition()
        .task_definition(task.task_definition_arn().unwrap())
        .send()
        .await
        .unwrap();
    let td = td.task_definition().unwrap();
    assert_eq!(td.family(), Some("stage-seed"));
    assert_eq!(
        td.container_definitions()[0].image(),
        Some("123456789012.dkr.ecr.eu-central-1.amazonaws.com/app:core-v1.0.0")
    );
    let subnet = task.attachments()[0]
        .details()
        .iter()
        .find(|d| d.name() == Some("subnetId"))
        .and_then(|d| d.value())
        .unwrap()
        .to_string();
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
    assert!(
        core_subnets.contains(&subnet),
        "{subnet} not in {core_subnets:?}"
    );
    // Still running: run does not touch the services or maintenance.
    assert_eq!(svc.services()[0].desired_count(), 2);
}

#[tokio::test]
async fn run_a_task_that_fails_reports_its_exit_code_and_the_last_50_lines() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let lines: Vec<String> = (1..=55)
        .map(|i| format!("seed step {i}"))
        .chain(["ERROR: duplicate key value violates unique constraint".to_string()])
        .collect();
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-seed", "exitCode": 3, "describes": 2, "logs": lines}),
    )
    .await;
    let r = run(&ctx, &[]).await;
    r.assert_code(1);
    assert_eq!(r.outputs["exit-code"], "3");
    assert_eq!(r.outputs["log-lines"], "56");
    assert_eq!(r.outputs["result"], "failure");
    let s = &r.summary;
    assert!(
        s.starts_with("### ❌ Task seed v1.0.0 on `stage`: failed\n\n**task seed failed: exit code 3 (stop code EssentialContainerExited"),
        "verdict first: {s}"
    );
    assert!(
        s.contains("<details><summary>Last 50 of 56 log lines</summary>"),
        "{s}"
    );
    assert!(
        s.contains("seed step 7\n") && !s.contains("seed step 6\n"),
        "exactly the last 50: {s}"
    );
    assert!(
        r.stderr.contains("::error::task seed failed: exit code 3"),
        "{}",
        r.stderr
    );
    // The CLI front end says the same, and its JSON has the report.
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-seed", "exitCode": 3, "logs": ["boom"]}),
    )
    .await;
    let r = ctx
        .cli(&[
            "run",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--task",
            "seed",
            "--version",
            "v1.0.0",
            "--output",
            "json",
        ])
        .await;
    r.assert_code(1);
    let o = &r.json()["outcome"];
    assert_eq!(o["task"]["verdict"], "failed");
    assert_eq!(o["task"]["exit_code"], 3);
    assert_eq!(o["task"]["last_lines"], json!(["boom"]));
}

#[tokio::test]
async fn a_rerun_of_run_attaches_to_the_task_already_running() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "earlier-run", "exitCode": 0, "describes": 3, "logs": ["started by the killed job", "done"]}),
    )
    .await;
    let arn = ctx
        .start_like_an_earlier_run("stage-seed", GROUP, "v1.0.0")
        .await;
    ctx.clear_calls().await;
    let r = run(&ctx, &[]).await;
    r.assert_code(0);
    assert_eq!(r.outputs["task-arn"], arn);
    assert_eq!(r.outputs["log-lines"], "2");
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
    assert_eq!(count(&calls, "RunTask"), 0, "no second task: {calls:?}");
    assert_eq!(count(&calls, "RegisterTaskDefinition"), 0, "{calls:?}");
    assert_eq!(tasks_in(&ctx, GROUP).await.len(), 1);

    // One for another version still running is refused, and nothing is started.
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "earlier-run", "neverStop": true}),
    )
    .await;
    let other = ctx
        .start_like_an_earlier_run("stage-seed", GROUP, "v0.9.0")
        .await;
    ctx.clear_calls().await;
    let r = run(&ctx, &[]).await;
    r.assert_code(1);
    assert!(
        r.stderr
            .contains("a task seed task for version v0.9.0 is still running")
            && r.stderr.contains(&other),
        "{}",
        r.stderr
    );
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
}

#[tokio::test]
async fn run_passes_the_command_override_to_the_task() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    // The rule matches only a RunTask that carries the override, so its log line proves the command reached ECS.
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "db:seed:fresh", "exitCode": 0, "logs": ["seeding from scratch"]}),
    )
    .await;
    let command = r#"["npm", "run", "db:seed:fresh", "--", "--count=10"]"#;
    let r = run(&ctx, &[("command", command)]).await;
    r.assert_code(0);
    assert_eq!(r.outputs["log-lines"], "1");
    assert!(r.stderr.contains("seeding from scratch"), "{}", r.stderr);
    assert!(
        r.summary
            // Escaped as text (issue 20): renders as ["npm",…], never as a link.
            .contains(r#"| command | \["npm","run","db:seed:fresh","--","--count=10"\] |"#),
        "{}",
        r.summary
    );
    let ecs = ctx.ecs().await;
    let task = ecs
        .describe_tasks()
        .cluster("app-stage")
        .tasks(&r.outputs["task-arn"])
        .send()
        .await
        .unwrap();
    let overrides = task.tasks()[0].overrides().unwrap().container_overrides();
    assert_eq!(overrides.len(), 1, "{overrides:?}");
    assert_eq!(overrides[0].name(), Some("seed"));
    assert_eq!(
        overrides[0].command(),
        &["npm", "run", "db:seed:fresh", "--", "--count=10"]
    );
}

#[tokio::test]
async fn run_a_core_service_task_uses_its_family_container_and_network() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "deploy-action:stage:core", "exitCode": 0, "logs": ["console: ok"]}),
    )
    .await;
    let r = run(
        &ctx,
        &[
            ("task", "core"),
            ("command", r#"["node","scripts/reindex.js"]"#),
        ],
    )
    .await;
    r.assert_code(0);
    assert_eq!(r.outputs["log-lines"], "1");
    let tasks = tasks_in(&ctx, "deploy-action:stage:core").await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let td = tasks[0]["taskDefinitionArn"].as_str().unwrap();
    assert!(td.contains(":task-definition/stage-core:"), "{td}");
    // The service already runs v1.0.0: its revision is reused (only the tag is new), the service is not touched.
    let calls = ctx.calls().await;
    assert_eq!(count(&calls, "UpdateService"), 0, "{calls:?}");
    let svc = ctx
        .ecs()
        .await
        .describe_services()
        .cluster("app-stage")
        .services("core")
        .send()
        .await
        .unwrap();
    assert_eq!(
        svc.services()[0].task_definition(),
        Some("arn:aws:ecs:eu-central-1:123456789012:task-definition/stage-core:1")
    );
}

/// Cancel, as for a migration: SIGINT stops the task ("cancelled by workflow") and the phase exits 130.
#[tokio::test]
async fn sigint_stops_the_run_task_and_exits_130() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-seed", "neverStop": true}),
    )
    .await;
    let mut cmd = ctx.base_command();
    cmd.args([
        "run",
        "--env",
        "stage",
        "-c",
        "deploy.toml",
        "--task",
        "seed",
        "--version",
        "v1.0.0",
    ]);
    let child = cmd.spawn().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !tasks_in(&ctx, GROUP)
        .await
        .iter()
        .any(|t| t["lastStatus"] == "RUNNING")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no task reached RUNNING"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    send_sigint(&child);
    let r = finish(child).await;
    r.assert_code(130);
    let stderr = &r.stderr;
    assert!(
        stderr.contains("cancelled by workflow: task seed task") && stderr.contains("stopped"),
        "{stderr}"
    );
    let tasks = tasks_in(&ctx, GROUP).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["lastStatus"], "STOPPED");
    assert_eq!(tasks[0]["stoppedReason"], "cancelled by workflow");
}

#[tokio::test]
async fn run_dry_run_plans_and_changes_nothing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let r = run(&ctx, &[("dry-run", "true"), ("version", "v1.1.0")]).await;
    r.assert_code(0);
    assert!(
        r.stderr.contains("dry run: would register a revision of stage-seed with seed = 123456789012.dkr.ecr.eu-central-1.amazonaws.com/app:core-v1.1.0"),
        "{}",
        r.stderr
    );
    assert!(r.summary.contains("planned (dry run)"), "{}", r.summary);
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
}

#[tokio::test]
async fn run_bad_input_exits_2_with_one_line_and_no_aws_call() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    let without = |key: &str| -> Vec<(&str, &str)> {
        inputs(&[]).into_iter().filter(|(k, _)| *k != key).collect()
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            inputs(&[("task", "sede")]),
            "input `task`: unknown task \"sede\"; tasks of stage: seed; core services: core, workers",
        ),
        (without("task"), "input `task`: missing"),
        (
            inputs(&[("task", "migration")]),
            "input `task`: the migration runs through phase migrate",
        ),
        (
            inputs(&[("command", "npm run seed")]),
            "input `command`: \"npm run seed\" is not a JSON list of strings",
        ),
        (
            inputs(&[("command", r#"["npm", 3]"#)]),
            "is not a JSON list of strings; give the command and its arguments as one, e.g. [\"npm\",\"run\",\"seed\"]",
        ),
        (inputs(&[("command", "[]")]), "input `command`: an empty list"),
        (without("version"), "input `version`: missing"),
        (inputs(&[("version", "v1 0")]), "input `version`"),
        (
            inputs(&[("version", "from:unknown")]),
            "input `version`: from:unknown names no environment of deploy.toml; it defines: stage",
        ),
        (inputs(&[("version", "from:")]), "input `version`: \"from:\" names no environment"),
    ];
    for (inputs, needle) in cases {
        let r = ctx.action(&inputs).await;
        assert_eq!(r.code, 2, "{inputs:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(needle),
            "{inputs:?}: should say {needle:?}: {}",
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

/// Seeds `prod` in the test's region and `stage` (running `stage_version`) in another one, into one config file.
pub(crate) fn seed_two(ctx: &TestContext, stage_version: &str, stage_extra: &[&str]) {
    let prod: toml::Table =
        toml::from_str(&std::fs::read_to_string(ctx.seed("prod", &[])).unwrap()).unwrap();
    let mut args = vec!["--region", STAGE_REGION, "--version", stage_version];
    args.extend_from_slice(stage_extra);
    let stage: toml::Table =
        toml::from_str(&std::fs::read_to_string(ctx.seed("stage", &args)).unwrap()).unwrap();
    // Each environment keeps its own region and image repository; [defaults] goes.
    let with_defaults = |mut file: toml::Table, name: &str| -> toml::Value {
        let defaults = file.remove("defaults").unwrap();
        let mut env = file["environments"][name].as_table().unwrap().clone();
        for (k, v) in defaults.as_table().unwrap() {
            env.entry(k.clone()).or_insert(v.clone());
        }
        toml::Value::Table(env)
    };
    let mut envs = toml::Table::new();
    envs.insert("prod".into(), with_defaults(prod, "prod"));
    envs.insert("stage".into(), with_defaults(stage, "stage"));
    let mut file = toml::Table::new();
    file.insert("environments".into(), toml::Value::Table(envs));
    ctx.write_config(&toml::to_string(&file).unwrap());
}

async fn deploy_prod(ctx: &TestContext, version: &str) -> RunResult {
    ctx.action(&[
        ("phase", "deploy"),
        ("environment", "prod"),
        ("config", "deploy.toml"),
        ("version", version),
    ])
    .await
}

async fn prod_images(ctx: &TestContext) -> Vec<String> {
    let ecs = ctx.ecs().await;
    let svc = ecs
        .describe_services()
        .cluster("app-prod")
        .services("core")
        .services("workers")
        .send()
        .await
        .unwrap();
    let mut images = vec![];
    for s in svc.services() {
        let td = ecs
            .describe_task_definition()
            .task_definition(s.task_definition().unwrap())
            .send()
            .await
            .unwrap();
        images.push(
            td.task_definition().unwrap().container_definitions()[0]
                .image()
                .unwrap()
                .to_string(),
        );
    }
    images
}

#[tokio::test]
async fn deploy_from_stage_promotes_the_version_stage_runs_from_another_region() {
    let ctx = TestContext::new().await;
    seed_two(&ctx, "v1.4.0", &[]);
    ctx.clear_calls().await;
    let r = deploy_prod(&ctx, "from:stage").await;
    r.assert_code(0);
    assert_eq!(r.outputs["version"], "v1.4.0");
    assert_eq!(r.outputs["resolved-from"], "stage");
    assert_eq!(r.outputs["previous-version"], "v1.0.0");
    assert!(
        r.stderr.contains(
            "version from:stage resolves to v1.4.0: stage is running and core, workers run v1.4.0"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.summary
            .contains("version: v1.4.0 from stage (running: core v1.4.0, workers v1.4.0)"),
        "{}",
        r.summary
    );
    let repo = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/app";
    assert_eq!(
        prod_images(&ctx).await,
        vec![
            format!("{repo}:core-v1.4.0"),
            format!("{repo}:workers-v1.4.0")
        ]
    );
    // Stage was read in its own region, read-only, before prod changed.
    let log = ctx.get("/_test/calls").await;
    let log = log.as_array().unwrap();
    let first_change = log
        .iter()
        .position(|c| c["operation"] == "RegisterTaskDefinition")
        .unwrap();
    let stage_reads: Vec<&Value> = log.iter().filter(|c| c["region"] == STAGE_REGION).collect();
    assert!(!stage_reads.is_empty(), "stage was read in {STAGE_REGION}");
    for c in &stage_reads {
        let op = c["operation"].as_str().unwrap();
        assert!(
            op.starts_with("Describe") || op.starts_with("List") || op.starts_with("Get"),
            "only reads in stage: {c}"
        );
    }
    let last_stage_read = log
        .iter()
        .rposition(|c| c["region"] == STAGE_REGION)
        .unwrap();
    assert!(
        last_stage_read < first_change,
        "resolved before anything changed"
    );
    assert!(log
        .iter()
        .all(|c| c["region"] == STAGE_REGION || c["region"] == REGION));

    // Run and migrate take a reference too; run may name its own environment.
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "prod-seed", "exitCode": 0}),
    )
    .await;
    let r = ctx
        .action(&[
            ("phase", "run"),
            ("environment", "prod"),
            ("config", "deploy.toml"),
            ("task", "seed"),
            ("version", "from:prod"),
        ])
        .await;
    r.assert_code(0);
    assert_eq!(r.outputs["version"], "v1.4.0");
    assert_eq!(r.outputs["resolved-from"], "prod");
    assert!(
        r.summary
            .contains("| version | v1.4.0 from prod (running: core v1.4.0, workers v1.4.0) |"),
        "{}",
        r.summary
    );
}

#[tokio::test]
async fn promotion_refuses_a_stage_on_mixed_versions_and_changes_nothing() {
    let ctx = TestContext::new().await;
    seed_two(&ctx, "v1.4.0", &[]);
    // One stage service on another version: deploy it alone through a config that names only it.
    let mut workers_only: toml::Table =
        toml::from_str(&std::fs::read_to_string(ctx.config_path()).unwrap()).unwrap();
    workers_only["environments"]["stage"]["services"]
        .as_table_mut()
        .unwrap()
        .remove("core");
    workers_only["environments"]["stage"]
        .as_table_mut()
        .unwrap()
        .remove("migration");
    std::fs::write(
        ctx.path().join("workers-only.toml"),
        toml::to_string(&workers_only).unwrap(),
    )
    .unwrap();
    ctx.cli(&[
        "deploy",
        "--env",
        "stage",
        "-c",
        "workers-only.toml",
        "--version",
        "v1.5.0",
    ])
    .await
    .assert_code(0);
    ctx.clear_calls().await;
    let r = deploy_prod(&ctx, "from:stage").await;
    r.assert_code(2);
    assert!(
        r.stderr.contains("input `version`: refusing from:stage: its core services run different versions (core v1.4.0, workers v1.5.0); deploy one version to stage first"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr
            .lines()
            .filter(|l| l.starts_with("::error"))
            .count(),
        1,
        "{}",
        r.stderr
    );
    assert!(!ctx.calls().await.is_empty(), "stage was read");
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
    assert_eq!(prod_images(&ctx).await.len(), 2);
    assert!(prod_images(&ctx).await[0].ends_with(":core-v1.0.0"));
}

#[tokio::test]
async fn promotion_refuses_a_stage_whose_roll_out_is_not_completed() {
    let ctx = TestContext::new().await;
    seed_two(&ctx, "v1.4.0", &[]);
    // A roll-out on stage that does not settle: stage is mixed.
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "workers", "outcome": "NEVER"}),
    )
    .await;
    let sdk = ctx
        .sdk()
        .await
        .into_builder()
        .region(aws_config::Region::new(STAGE_REGION))
        .build();
    aws_sdk_ecs::Client::new(&sdk)
        .update_service()
        .cluster("app-stage")
        .service("workers")
        .force_new_deployment(true)
        .send()
        .await
        .unwrap();
    ctx.clear_calls().await;
    for (phase, extra) in [
        ("deploy", None),
        ("run", Some(("task", "seed"))),
        ("migrate", Some(("allow-without-snapshot", "true"))),
    ] {
        let mut inputs = vec![
            ("phase", phase),
            ("environment", "prod"),
            ("config", "deploy.toml"),
            ("version", "from:stage"),
        ];
        inputs.extend(extra);
        let r = ctx.action(&inputs).await;
        r.assert_code(2);
        assert!(
            r.stderr.contains("input `version`: refusing from:stage: stage is mixed (1 service(s) neither settled up nor scaled to 0"),
            "{phase}: {}",
            r.stderr
        );
    }
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
}

#[tokio::test]
async fn promotion_naming_an_unknown_or_the_same_environment_exits_2_without_aws_calls() {
    let ctx = TestContext::new().await;
    seed_two(&ctx, "v1.4.0", &[]);
    ctx.clear_calls().await;
    let r = deploy_prod(&ctx, "from:staging").await;
    r.assert_code(2);
    assert!(
        r.stderr.contains("input `version`: from:staging names no environment of deploy.toml; it defines: prod, stage"),
        "{}",
        r.stderr
    );
    let r = deploy_prod(&ctx, "from:prod").await;
    r.assert_code(2);
    assert!(
        r.stderr
            .contains("input `version`: from:prod names the environment phase deploy works on"),
        "{}",
        r.stderr
    );
    assert_eq!(ctx.calls().await, vec![], "no AWS call");
}
