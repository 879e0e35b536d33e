//! Issue 7, least privilege: every AWS call each phase makes in its end-to-end runs (happy paths and failure paths)
//! is allowed by the policy `deploy-action iam-policy --phase <phase>` prints for the config, resources included for
//! the calls that name one; `iam-policy` itself makes no AWS call.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use deploy_action::phases::iam_policy::{allows, wildcard_match};

use crate::support::sigint::send_sigint;
use crate::support::{finish, TestContext};

fn inputs<'a>(phase: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("phase", phase),
        ("environment", "stage"),
        ("config", "deploy.toml"),
    ];
    for (k, val) in extra {
        v.retain(|(kk, _)| kk != k);
        v.push((k, val));
    }
    v
}

/// The IAM action of a call-log entry (`elbv2` is `elasticloadbalancing` in IAM).
fn action(service: &str, op: &str) -> String {
    let prefix = match service {
        "elbv2" => "elasticloadbalancing",
        other => other,
    };
    format!("{prefix}:{op}")
}

/// Permissions AWS checks besides the operation's own: tags given at creation, roles handed to ECS.
fn implied(action: &str) -> &'static [&'static str] {
    match action {
        "ecs:RunTask" => &["ecs:TagResource"],
        "ecs:RegisterTaskDefinition" => &["ecs:TagResource", "iam:PassRole"],
        "ecs:CreateService" => &["ecs:TagResource"],
        "elasticloadbalancing:CreateTargetGroup" => &["elasticloadbalancing:AddTags"],
        "rds:CreateDBSnapshot" | "rds:CreateDBClusterSnapshot" => &["rds:AddTagsToResource"],
        "elasticloadbalancing:CreateRule" => &["elasticloadbalancing:AddTags"],
        "rds:RestoreDBInstanceFromDBSnapshot"
        | "rds:RestoreDBClusterFromSnapshot"
        | "rds:CreateDBInstance" => &["rds:AddTagsToResource"],
        _ => &[],
    }
}

/// The policy the binary prints for one phase (and proof that printing it called nothing).
async fn policy_of(
    ctx: &TestContext,
    phase: &str,
) -> deploy_action::phases::iam_policy::PolicyDocument {
    policy_for(ctx, "stage", phase).await
}

async fn policy_for(
    ctx: &TestContext,
    env_name: &str,
    phase: &str,
) -> deploy_action::phases::iam_policy::PolicyDocument {
    let before = ctx.calls().await.len();
    let r = ctx
        .cli(&[
            "iam-policy",
            "--env",
            env_name,
            "-c",
            "deploy.toml",
            "--phase",
            phase,
        ])
        .await;
    r.assert_code(0);
    assert_eq!(
        ctx.calls().await.len(),
        before,
        "iam-policy makes no AWS call"
    );
    let printed: Value = serde_json::from_str(&r.stdout).expect("the policy is JSON");
    let env = deploy_action::config::Config::load(&ctx.config_path()).unwrap();
    let env = env.environment(env_name).unwrap();
    let phase = deploy_action::inputs::Phase::parse(phase).unwrap();
    let doc = deploy_action::phases::iam_policy::policy(&[env], &[phase]);
    assert_eq!(
        printed,
        serde_json::to_value(&doc).unwrap(),
        "what is printed is what is checked"
    );
    doc
}

/// Every distinct action the call log holds since `from`.
async fn actions_since(ctx: &TestContext, from: usize) -> BTreeSet<String> {
    ctx.calls().await[from..]
        .iter()
        .map(|(s, o)| action(s, o))
        .collect()
}

#[track_caller]
fn assert_allowed(
    phase: &str,
    policy: &deploy_action::phases::iam_policy::PolicyDocument,
    called: &BTreeSet<String>,
) {
    let mut missing = vec![];
    for a in called {
        if !allows(policy, a, None) {
            missing.push(a.clone());
        }
        for extra in implied(a) {
            if !allows(policy, extra, None) {
                missing.push(format!("{extra} (for {a})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "phase {phase} called what its policy does not allow: {missing:?}\npolicy: {}",
        serde_json::to_string_pretty(policy).unwrap()
    );
}

/// ARNs of what the environment holds, read back from the local AWS.
struct Arns {
    cluster: String,
    services: Vec<String>,
    listener: String,
    rules: Vec<String>,
    db: String,
    snapshots: Vec<String>,
    tasks: Vec<String>,
    migration_revisions: Vec<String>,
}

async fn arns(ctx: &TestContext) -> Arns {
    let ecs = ctx.ecs().await;
    let svcs = ecs
        .describe_services()
        .cluster("app-stage")
        .services("core")
        .services("workers")
        .send()
        .await
        .unwrap();
    let cluster = svcs.services()[0].cluster_arn().unwrap().to_string();
    let services = svcs
        .services()
        .iter()
        .map(|s| s.service_arn().unwrap().to_string())
        .collect();
    let text = std::fs::read_to_string(ctx.config_path()).unwrap();
    let listener = text
        .lines()
        .find_map(|l| l.strip_prefix("listener-arn = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let elb = ctx.elb().await;
    let rules = elb
        .describe_rules()
        .listener_arn(&listener)
        .send()
        .await
        .unwrap()
        .rules()
        .iter()
        .filter(|r| !r.is_default().unwrap_or(false))
        .map(|r| r.rule_arn().unwrap().to_string())
        .collect();
    let rds = ctx.rds().await;
    let db = rds
        .describe_db_instances()
        .db_instance_identifier("app-stage")
        .send()
        .await
        .unwrap()
        .db_instances()[0]
        .db_instance_arn()
        .unwrap()
        .to_string();
    let snapshots = rds
        .describe_db_snapshots()
        .db_instance_identifier("app-stage")
        .snapshot_type("manual")
        .send()
        .await
        .unwrap()
        .db_snapshots()
        .iter()
        .map(|s| s.db_snapshot_arn().unwrap().to_string())
        .collect();
    let all = ctx.get("/_test/ecs/tasks").await;
    let tasks = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["group"] == "deploy-action:stage:migration")
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect();
    let migration_revisions = ecs
        .list_task_definitions()
        .family_prefix("stage-migrate")
        .send()
        .await
        .unwrap()
        .task_definition_arns()
        .to_vec();
    Arns {
        cluster,
        services,
        listener,
        rules,
        db,
        snapshots,
        tasks,
        migration_revisions,
    }
}

#[track_caller]
fn assert_on(
    phase: &str,
    policy: &deploy_action::phases::iam_policy::PolicyDocument,
    action: &str,
    resources: &[String],
) {
    assert!(
        !resources.is_empty(),
        "{phase}: no {action} resource to check"
    );
    for r in resources {
        assert!(
            allows(policy, action, Some(r)),
            "{phase}: {action} on {r} is not allowed by its policy"
        );
    }
}

#[tokio::test]
async fn every_call_of_every_phase_is_allowed_by_its_policy() {
    let ctx = TestContext::new().await;
    let path = ctx.seed("stage", &["--drain-window", "1"]);
    // Secrets from SSM and snapshot retention: the calls those make are part of what is checked.
    ctx.ssm_secrets(
        "url = \"https://stage.example.org\"",
        "/app/stage/",
        &[("/app/stage/DATABASE_URL", "postgres://x")],
    )
    .await;
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "instance = \"app-stage\"",
        "instance = \"app-stage\"\nsnapshot-retention = 1",
    );
    std::fs::write(&path, text).unwrap();
    let header = [
        ("maintenance-header-name", "x-bypass"),
        ("maintenance-header-value", "s3cret"),
    ];

    // What the phases called, all together (not the test's own set-up and read-back calls).
    let mut every: BTreeSet<String> = BTreeSet::new();

    // status
    let from = ctx.calls().await.len();
    ctx.action(&inputs("status", &[])).await.assert_code(0);
    let policy = policy_of(&ctx, "status").await;
    let called = actions_since(&ctx, from).await;
    assert_allowed("status", &policy, &called);
    every.extend(called);

    // state: restricted (drain watched), db-only, stopped, running again.
    let from = ctx.calls().await.len();
    let mut restricted = inputs("state", &[("state", "restricted")]);
    restricted.extend_from_slice(&header);
    ctx.action(&restricted).await.assert_code(0);
    for target in ["db-only", "stopped", "running"] {
        ctx.action(&inputs(
            "state",
            &[("state", target), ("skip-drain", "true")],
        ))
        .await
        .assert_code(0);
    }
    let called = actions_since(&ctx, from).await;
    assert!(
        called.contains("cloudwatch:GetMetricStatistics"),
        "the drain wait was watched: {called:?}"
    );
    let policy = policy_of(&ctx, "state").await;
    assert_allowed("state", &policy, &called);
    every.extend(called.iter().cloned());
    // (read after the calls were collected: reading them is not the phase's doing)
    let a = arns(&ctx).await;
    assert_on("state", &policy, "ecs:UpdateService", &a.services);
    assert_on("state", &policy, "ecs:TagResource", &a.services);
    assert_on(
        "state",
        &policy,
        "elasticloadbalancing:ModifyListener",
        std::slice::from_ref(&a.listener),
    );
    assert_on(
        "state",
        &policy,
        "elasticloadbalancing:ModifyRule",
        &a.rules,
    );
    assert_on("state", &policy, "elasticloadbalancing:AddTags", &a.rules);
    assert_on(
        "state",
        &policy,
        "rds:StopDBInstance",
        std::slice::from_ref(&a.db),
    );

    // snapshot: twice (retention deletes the older one), and a rerun that waits for one still being made.
    let from = ctx.calls().await.len();
    let snap = inputs("snapshot", &[("version", "v2.0.0")]);
    ctx.cli(&[
        "snapshot",
        "--env",
        "stage",
        "-c",
        "deploy.toml",
        "--version",
        "v1.9.0",
    ])
    .await
    .assert_code(0);
    ctx.post("/_test/rds/snapshot-rules", json!({"creatingDescribes": 1}))
        .await;
    ctx.action(&snap).await.assert_code(0);
    let called = actions_since(&ctx, from).await;
    assert!(called.contains("rds:DeleteDBSnapshot"), "{called:?}");
    let policy = policy_of(&ctx, "snapshot").await;
    assert_allowed("snapshot", &policy, &called);
    every.extend(called.iter().cloned());
    let a = arns(&ctx).await;
    assert_on("snapshot", &policy, "rds:CreateDBSnapshot", &a.snapshots);
    assert_on(
        "snapshot",
        &policy,
        "rds:CreateDBSnapshot",
        std::slice::from_ref(&a.db),
    );
    assert_on("snapshot", &policy, "rds:AddTagsToResource", &a.snapshots);

    // migrate: one that fails, one that is cancelled (StopTask), one that succeeds.
    let from = ctx.calls().await.len();
    let migrate = inputs("migrate", &[("version", "v2.0.0"), ("skip-drain", "true")]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 1, "times": 1, "logs": ["boom"]}),
    )
    .await;
    ctx.action(&migrate).await.assert_code(1);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "neverStop": true, "times": 1}),
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = ctx.get("/_test/ecs/tasks").await;
        if tasks
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["lastStatus"] == "RUNNING" && t["group"] == "deploy-action:stage:migration")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    send_sigint(&child);
    finish(child).await.assert_code(130);
    ctx.action(&migrate).await.assert_code(0);
    let called = actions_since(&ctx, from).await;
    assert!(
        called.contains("ecs:StopTask") && called.contains("ecs:RunTask"),
        "{called:?}"
    );
    let policy = policy_of(&ctx, "migrate").await;
    assert_allowed("migrate", &policy, &called);
    every.extend(called.iter().cloned());
    let a = arns(&ctx).await;
    assert_on("migrate", &policy, "ecs:RunTask", &a.migration_revisions);
    assert_on("migrate", &policy, "ecs:StopTask", &a.tasks);
    assert_on("migrate", &policy, "ecs:DescribeTasks", &a.tasks);
    assert_on("migrate", &policy, "ecs:TagResource", &a.tasks);
    assert_on(
        "migrate",
        &policy,
        "ecs:TagResource",
        std::slice::from_ref(&a.cluster),
    );
    assert_on(
        "migrate",
        &policy,
        "ecs:UntagResource",
        std::slice::from_ref(&a.cluster),
    );
    assert!(!allows(
        &policy,
        "ecs:RunTask",
        Some("arn:aws:ecs:eu-central-1:123456789012:task-definition/stage-seed:1")
    ));

    // deploy: from db-only (scale up, lift maintenance), a circuit breaker (rollback, reasons, deregistration), and a
    // good one.
    let from = ctx.calls().await.len();
    ctx.action(&inputs("deploy", &[("version", "v2.0.0")]))
        .await
        .assert_code(0);
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "core", "outcome": "FAILED", "times": 1, "taskLogs": ["panic"]}),
    )
    .await;
    ctx.action(&inputs("deploy", &[("version", "v2.1.0")]))
        .await
        .assert_code(1);
    ctx.action(&inputs("deploy", &[("version", "v2.2.0")]))
        .await
        .assert_code(0);
    let called = actions_since(&ctx, from).await;
    for a in [
        "ecs:DeregisterTaskDefinition",
        "ssm:GetParametersByPath",
        "logs:GetLogEvents",
        "elasticloadbalancing:DeleteRule",
    ] {
        assert!(called.contains(a), "{a} was exercised: {called:?}");
    }
    let policy = policy_of(&ctx, "deploy").await;
    assert_allowed("deploy", &policy, &called);
    every.extend(called.iter().cloned());
    let a = arns(&ctx).await;
    assert_on("deploy", &policy, "ecs:UpdateService", &a.services);
    assert_on(
        "deploy",
        &policy,
        "ssm:GetParametersByPath",
        &["arn:aws:ssm:eu-central-1:123456789012:parameter/app/stage".to_string()],
    );

    // rollback: a good one, one whose roll-out fails, the rerun, and a fast one.
    let from = ctx.calls().await.len();
    ctx.action(&inputs("rollback", &[("version", "v2.0.0")]))
        .await
        .assert_code(0);
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "core", "outcome": "FAILED", "times": 1}),
    )
    .await;
    ctx.action(&inputs("rollback", &[("version", "v2.2.0")]))
        .await
        .assert_code(1);
    ctx.action(&inputs("rollback", &[("version", "v2.2.0")]))
        .await
        .assert_code(0);
    ctx.action(&inputs(
        "rollback",
        &[("version", "v2.0.0"), ("fast", "true")],
    ))
    .await
    .assert_code(0);
    let called = actions_since(&ctx, from).await;
    let policy = policy_of(&ctx, "rollback").await;
    assert_allowed("rollback", &policy, &called);
    every.extend(called.iter().cloned());
    assert_on("rollback", &policy, "ecs:UpdateService", &a.services);

    // The union (no --phase) allows everything any phase did, and nothing outside this environment.
    let r = ctx
        .cli(&[
            "iam-policy",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--output",
            "json",
        ])
        .await;
    r.assert_code(0);
    let all: deploy_action::phases::iam_policy::PolicyDocument = {
        let env = deploy_action::config::Config::load(&ctx.config_path()).unwrap();
        deploy_action::phases::iam_policy::policy(
            &[env.environment("stage").unwrap()],
            &deploy_action::phases::iam_policy::PHASES,
        )
    };
    assert_eq!(
        r.json()["outcome"]["policy"],
        serde_json::to_value(&all).unwrap()
    );
    assert_allowed("(all)", &all, &every);
    assert!(!allows(
        &all,
        "ecs:UpdateService",
        Some("arn:aws:ecs:eu-central-1:123456789012:service/app-prod/core")
    ));
    assert!(!allows(
        &all,
        "rds:DeleteDBSnapshot",
        Some("arn:aws:rds:eu-central-1:123456789012:snapshot:by-hand")
    ));
    assert!(wildcard_match("arn:aws:ecs:*", &a.cluster));
}

/// Review apps: up (seed task, service, target group, rule), a second push, a failed roll-out, down (teardown task,
/// everything deleted): every call is allowed by `iam-policy --phase preview`, on the review app's own resources.
#[tokio::test]
async fn every_call_of_a_review_app_is_allowed_by_the_preview_policy() {
    use crate::preview::{github, preview, seed_template, BY_HOST};
    let ctx = TestContext::new().await;
    let path = seed_template(&ctx, BY_HOST).await;
    ctx.ssm_secrets(
        "cluster = \"app-review\"",
        "/app/review/",
        &[("/app/review/DATABASE_URL", "postgres://x")],
    )
    .await;
    let (server, _gh) = github().await;
    let from = ctx.calls().await.len();
    preview(&ctx, &server, &[("version", "pr-12-a")])
        .await
        .assert_code(0);
    preview(&ctx, &server, &[("version", "pr-12-b")])
        .await
        .assert_code(0);
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "core-pr-12", "outcome": "FAILED", "times": 1, "taskLogs": ["panic"]}),
    )
    .await;
    preview(&ctx, &server, &[("version", "pr-12-c")])
        .await
        .assert_code(1);
    // Read back before the teardown deletes them.
    let ecs = ctx.ecs().await;
    let svc = ecs
        .describe_services()
        .cluster("app-review")
        .services("core-pr-12")
        .send()
        .await
        .unwrap()
        .services()[0]
        .service_arn()
        .unwrap()
        .to_string();
    let elb = ctx.elb().await;
    let tg = elb
        .describe_target_groups()
        .names("core-pr-12")
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string();
    let listener = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("listener-arn = \""))
        .next_back()
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let rule = elb
        .describe_rules()
        .listener_arn(&listener)
        .send()
        .await
        .unwrap()
        .rules()
        .iter()
        .find(|r| r.priority() == Some("1000"))
        .unwrap()
        .rule_arn()
        .unwrap()
        .to_string();
    let seed_td = ecs
        .list_task_definitions()
        .family_prefix("review-seed")
        .send()
        .await
        .unwrap()
        .task_definition_arns()
        .to_vec();
    preview(&ctx, &server, &[("state", "stopped")])
        .await
        .assert_code(0);
    let called = actions_since(&ctx, from).await;
    for a in [
        "ecs:RunTask",
        "ecs:CreateService",
        "ecs:UpdateService",
        "ecs:DeleteService",
        "ecs:DeregisterTaskDefinition",
        "elasticloadbalancing:CreateRule",
        "elasticloadbalancing:DeleteRule",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteTargetGroup",
        "ssm:GetParametersByPath",
        "logs:GetLogEvents",
    ] {
        assert!(called.contains(a), "{a} was exercised: {called:?}");
    }
    let policy = policy_for(&ctx, "review", "preview").await;
    assert_allowed("preview", &policy, &called);
    for a in [
        "ecs:CreateService",
        "ecs:UpdateService",
        "ecs:DeleteService",
    ] {
        assert_on("preview", &policy, a, std::slice::from_ref(&svc));
    }
    for a in [
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteTargetGroup",
    ] {
        assert_on("preview", &policy, a, std::slice::from_ref(&tg));
    }
    assert_on(
        "preview",
        &policy,
        "elasticloadbalancing:CreateRule",
        std::slice::from_ref(&listener),
    );
    assert_on(
        "preview",
        &policy,
        "elasticloadbalancing:DeleteRule",
        std::slice::from_ref(&rule),
    );
    assert_on("preview", &policy, "ecs:RunTask", &seed_td);
    // Nothing of the template environment's own: its services are never changed.
    assert!(!allows(
        &policy,
        "ecs:UpdateService",
        Some("arn:aws:ecs:eu-central-1:123456789012:service/app-review/core")
    ));
}

/// The Aurora variant: cluster actions and cluster snapshots.
#[tokio::test]
async fn aurora_calls_are_allowed_by_the_policy() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &["--aurora"]);
    for (phase, runs) in [
        (
            "snapshot",
            vec![inputs("snapshot", &[("version", "v2.0.0")])],
        ),
        (
            "state",
            vec![
                inputs("state", &[("state", "stopped"), ("skip-drain", "true")]),
                inputs("state", &[("state", "running")]),
            ],
        ),
    ] {
        let from = ctx.calls().await.len();
        for r in runs {
            ctx.action(&r).await.assert_code(0);
        }
        let called = actions_since(&ctx, from).await;
        let policy = policy_of(&ctx, phase).await;
        assert_allowed(phase, &policy, &called);
    }
}

/// Issue 16: `restore` of an RDS instance (stopped, so it is started before the rename) and of an Aurora cluster,
/// bad input included: every call allowed, the renames and tags only on the database's own names.
#[tokio::test]
async fn every_call_of_restore_is_allowed_by_its_policy() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.action(&inputs("snapshot", &[("version", "v2.0.0")]))
        .await
        .assert_code(0);
    ctx.action(&inputs(
        "state",
        &[("state", "stopped"), ("skip-drain", "true")],
    ))
    .await
    .assert_code(0);
    let from = ctx.calls().await.len();
    ctx.action(&inputs("restore", &[("snapshot-id", "nope")]))
        .await
        .assert_code(2);
    ctx.action(&inputs("restore", &[("version", "v2.0.0")]))
        .await
        .assert_code(0);
    ctx.action(&inputs("restore", &[("version", "v2.0.0")]))
        .await
        .assert_code(0);
    let called = actions_since(&ctx, from).await;
    for a in [
        "rds:RestoreDBInstanceFromDBSnapshot",
        "rds:ModifyDBInstance",
        "rds:StartDBInstance",
        "rds:AddTagsToResource",
        "ecs:ListTasks",
    ] {
        assert!(called.contains(a), "{a} was called: {called:?}");
    }
    let policy = policy_of(&ctx, "restore").await;
    assert_allowed("restore", &policy, &called);
    let db = |name: &str| format!("arn:aws:rds:eu-central-1:123456789012:db:{name}");
    assert_on(
        "restore",
        &policy,
        "rds:ModifyDBInstance",
        &[db("app-stage"), db("app-stage-restoring")],
    );
    assert_on(
        "restore",
        &policy,
        "rds:DescribeDBInstances",
        &[db("app-stage-before-restore-20261202-104500")],
    );
    for (action, resource) in [
        ("rds:ModifyDBInstance", db("app-prod")),
        (
            "rds:ModifyDBInstance",
            db("app-stage-before-restore-20261202-104500"),
        ),
        ("rds:DeleteDBInstance", db("app-stage")),
        ("rds:RestoreDBInstanceFromDBSnapshot", db("app-stage")),
    ] {
        assert!(
            !allows(&policy, action, Some(&resource)),
            "{action} on {resource} is not granted"
        );
    }
    drop(ctx);

    let ctx = TestContext::new().await;
    ctx.seed("stage", &["--aurora"]);
    ctx.action(&inputs("snapshot", &[("version", "v2.0.0")]))
        .await
        .assert_code(0);
    ctx.action(&inputs(
        "state",
        &[("state", "db-only"), ("skip-drain", "true")],
    ))
    .await
    .assert_code(0);
    let from = ctx.calls().await.len();
    ctx.action(&inputs("restore", &[("version", "v2.0.0")]))
        .await
        .assert_code(0);
    let called = actions_since(&ctx, from).await;
    assert!(
        called.contains("rds:RestoreDBClusterFromSnapshot")
            && called.contains("rds:ModifyDBCluster")
    );
    let policy = policy_of(&ctx, "restore").await;
    assert_allowed("restore", &policy, &called);
    assert!(!allows(&policy, "rds:DeleteDBCluster", None));
}

/// `iam-policy` on bad input: exit 2, one line naming the input, no AWS call.
#[tokio::test]
async fn iam_policy_bad_input_exits_2_without_aws_calls() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    for (args, needle) in [
        (
            vec!["iam-policy", "-c", "deploy.toml", "--phase", "deplyo"],
            "input `policy-phase`",
        ),
        (
            vec!["iam-policy", "-c", "deploy.toml", "--env", "qa"],
            "input `environment`",
        ),
        (vec!["iam-policy", "-c", "missing.toml"], "missing.toml"),
        (
            vec!["iam-policy", "-c", "deploy.toml", "--bogus"],
            "--bogus",
        ),
        (
            vec![
                "iam-policy",
                "-c",
                "deploy.toml",
                "--env",
                "stage",
                "--phase",
                "preview",
            ],
            "environment stage has no [environments.stage.preview] table",
        ),
    ] {
        let r = ctx.cli(&args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{args:?}: {}", r.stderr);
    }
    let r = ctx.cli(&["iam-policy", "-c", "deploy.toml"]).await;
    r.assert_code(0);
    assert!(
        r.stdout.starts_with("{\n  \"Version\": \"2012-10-17\""),
        "{}",
        r.stdout
    );
    assert_eq!(ctx.calls().await, vec![], "iam-policy makes no AWS call");
}
