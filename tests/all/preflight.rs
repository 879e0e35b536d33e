//! Issue 15: the preflight (images, deployment controllers, maintenance rule room, one-off task), the snapshot rule,
//! the database settle wait and Application Auto Scaling around scaling to 0, against the local AWS. Each refusal
//! ends before any mutating AWS call and names what is wrong.

use std::time::Duration;

use serde_json::json;

use crate::support::{RunResult, TestContext, REGION};

const STAGE: &[(&str, &str)] = &[("environment", "stage"), ("config", "deploy.toml")];

async fn phase(ctx: &TestContext, phase: &str, extra: &[(&str, &str)]) -> RunResult {
    let mut inputs = vec![("phase", phase)];
    inputs.extend_from_slice(STAGE);
    inputs.extend_from_slice(extra);
    ctx.action(&inputs).await
}

#[track_caller]
fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "{needle:?} not found in:\n{haystack}"
    );
}

async fn assert_nothing_changed(ctx: &TestContext) {
    let m = ctx.mutating_calls().await;
    assert!(m.is_empty(), "mutating AWS calls were made: {m:?}");
}

async fn push(ctx: &TestContext, tags: &[&str]) {
    ctx.post(
        "/_test/ecr/images",
        json!({"repository": "app", "tags": tags, "region": REGION}),
    )
    .await;
}

#[tokio::test]
async fn deploy_of_a_version_not_in_ecr_stops_before_any_change_naming_the_image() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    push(&ctx, &["core-v9.0.0"]).await; // workers-v9.0.0 was never pushed
    ctx.clear_calls().await;
    let r = phase(&ctx, "deploy", &[("version", "v9.0.0")]).await;
    r.assert_code(1);
    assert_contains(
        &r.stderr,
        "123456789012.dkr.ecr.eu-central-1.amazonaws.com/app:workers-v9.0.0 is not in ECR (ImageNotFound",
    );
    assert!(
        !r.stderr.contains("app:core-v9.0.0 is not in ECR"),
        "{}",
        r.stderr
    );
    // The table: on stdout and in the step summary.
    assert_contains(&r.stdout, "preflight (deploy):");
    assert_contains(
        &r.stdout,
        "image of service workers, container workers  FAILED",
    );
    assert_contains(&r.stdout, "image of service core, container core        ok");
    assert_contains(&r.stdout, "deployment controller of core");
    assert_contains(
        &r.summary,
        "| image of service workers, container workers | FAILED |",
    );
    assert_nothing_changed(&ctx).await;
    let calls = ctx.calls().await;
    assert!(
        calls
            .iter()
            .any(|(s, o)| s == "ecr" && o == "BatchGetImage"),
        "{calls:?}"
    );
}

#[tokio::test]
async fn a_dry_run_shows_the_preflight_table_too() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let r = phase(
        &ctx,
        "deploy",
        &[("version", "v2.0.0"), ("dry-run", "true")],
    )
    .await;
    r.assert_code(0);
    assert_contains(&r.stdout, "preflight (deploy):");
    assert_contains(&r.summary, "### Preflight: deploy");
    assert_contains(&r.summary, "app:core-v2.0.0 exists");
    assert_nothing_changed(&ctx).await;
}

#[tokio::test]
async fn wait_for_images_waits_for_a_build_still_pushing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let url = ctx.url.clone();
    // The build pushes the images 3 s after the deploy started.
    let pusher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        reqwest::Client::new()
            .post(format!("{url}/_test/ecr/images"))
            .json(&json!({"repository": "app", "tags": ["core-v3.0.0", "workers-v3.0.0"], "region": REGION}))
            .send()
            .await
            .unwrap();
    });
    let r = phase(
        &ctx,
        "deploy",
        &[("version", "v3.0.0"), ("wait-for-images", "2m")],
    )
    .await;
    pusher.await.unwrap();
    r.assert_code(0);
    assert_contains(&r.stderr, "waiting for 2 of 2 image(s) to be pushed");
    assert_eq!(r.outputs["version"], "v3.0.0");
}

#[tokio::test]
async fn wait_for_images_is_bounded() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    // The images never come: a wait that ignored its bound would run to the phase's timeout (its default is far
    // longer than the harness's hang guard, which then fails the test naming the hang). Bounded means: it waited
    // (looked again), gave up, and failed the preflight on what it saw last.
    let r = phase(
        &ctx,
        "deploy",
        &[("version", "v3.0.0"), ("wait-for-images", "5s")],
    )
    .await;
    r.assert_code(1);
    assert_contains(&r.stderr, "waiting for 2 of 2 image(s) to be pushed");
    assert_contains(&r.stderr, "app:core-v3.0.0 is not in ECR");
    let looks = ctx
        .calls()
        .await
        .iter()
        .filter(|(s, o)| s == "ecr" && o == "BatchGetImage")
        .count();
    // Without the wait: one look (or, with a bound of 0 given to the wait, the wait's one look and the last one).
    assert!(
        looks >= 3,
        "looked again while it waited, then once more: {looks} BatchGetImage"
    );
    assert_nothing_changed(&ctx).await;
}

#[tokio::test]
async fn a_code_deploy_service_is_refused_naming_its_controller() {
    let ctx = TestContext::new().await;
    let config = ctx.seed("stage", &[]);
    let ecs = ctx.ecs().await;
    let core = ecs
        .describe_services()
        .cluster("app-stage")
        .services("core")
        .send()
        .await
        .unwrap()
        .services()[0]
        .clone();
    ecs.create_service()
        .cluster("app-stage")
        .service_name("blue")
        .task_definition(core.task_definition().unwrap())
        .desired_count(1)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .set_network_configuration(core.network_configuration().cloned())
        .deployment_controller(
            aws_sdk_ecs::types::DeploymentController::builder()
                .r#type(aws_sdk_ecs::types::DeploymentControllerType::CodeDeploy)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[environments.stage.services.blue]\ncontainers = [\"core\"]\nimage-tag = \"core-{version}\"\n",
    );
    std::fs::write(&config, text).unwrap();
    ctx.clear_calls().await;
    let r = phase(&ctx, "deploy", &[("version", "v2.0.0")]).await;
    r.assert_code(1);
    assert_contains(
        &r.stderr,
        "ECS service app-stage/blue uses the CODE_DEPLOY deployment controller",
    );
    assert_contains(
        &r.stderr,
        "switch the service to the ECS deployment controller",
    );
    assert_contains(&r.stdout, "deployment controller of blue");
    assert_nothing_changed(&ctx).await;
}

#[tokio::test]
async fn a_forwarding_rule_without_room_for_the_bypass_condition_is_named_before_maintenance_goes_on(
) {
    let ctx = TestContext::new().await;
    let config = ctx.seed("stage", &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    let listener = text
        .lines()
        .find_map(|l| l.strip_prefix("listener-arn = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let elb = ctx.elb().await;
    let tg = elb
        .describe_target_groups()
        .names("stage-core")
        .send()
        .await
        .unwrap()
        .target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string();
    use aws_sdk_elasticloadbalancingv2::types::{
        Action, ActionTypeEnum, HostHeaderConditionConfig, PathPatternConditionConfig,
        RuleCondition,
    };
    let full = elb
        .create_rule()
        .listener_arn(&listener)
        .priority(40)
        .conditions(
            RuleCondition::builder()
                .field("path-pattern")
                .path_pattern_config(
                    PathPatternConditionConfig::builder()
                        .values("/a/*")
                        .values("/b/*")
                        .values("/c/*")
                        .build(),
                )
                .build(),
        )
        .conditions(
            RuleCondition::builder()
                .field("host-header")
                .host_header_config(
                    HostHeaderConditionConfig::builder()
                        .values("a.example.org")
                        .values("b.example.org")
                        .build(),
                )
                .build(),
        )
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(&tg)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let rule_id = full.rules()[0]
        .rule_arn()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    ctx.clear_calls().await;
    let r = phase(
        &ctx,
        "state",
        &[
            ("state", "restricted"),
            ("maintenance-header-name", "x-preview"),
            ("maintenance-header-value", "s3cret"),
        ],
    )
    .await;
    r.assert_code(1);
    assert_contains(
        &r.stderr,
        &format!("rule 40 ({rule_id}) has 5 condition values"),
    );
    assert_contains(&r.stderr, "ALB allows 5 per rule");
    assert_contains(&r.stdout, "maintenance can go on  FAILED");
    assert_nothing_changed(&ctx).await;
}

const MIGRATION_OK: &str =
    r#"{"match": "stage-migrate", "exitCode": 0, "describes": 2, "logs": ["ok"]}"#;

#[tokio::test]
async fn a_snapshot_from_before_the_last_migration_does_not_count() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let rule: serde_json::Value = serde_json::from_str(MIGRATION_OK).unwrap();
    phase(&ctx, "snapshot", &[("version", "v1.1.0")])
        .await
        .assert_code(0);
    ctx.post("/_test/ecs/task-rules", rule.clone()).await;
    phase(
        &ctx,
        "migrate",
        &[("version", "v1.1.0"), ("skip-drain", "true")],
    )
    .await
    .assert_code(0);
    // The second migration would run on the snapshot taken before the first one.
    ctx.clear_calls().await;
    let r = phase(
        &ctx,
        "migrate",
        &[("version", "v1.2.0"), ("skip-drain", "true")],
    )
    .await;
    r.assert_code(1);
    assert_contains(&r.stderr, "refusing to migrate stage: the newest snapshot of app-stage made by deploy-action for stage, deploy-stage-v1-1-0-");
    assert_contains(
        &r.stderr,
        "before the end of the last migration there (v1.1.0 ended at",
    );
    assert_contains(
        &r.stderr,
        "deploy-action snapshot --env stage --version v1.2.0",
    );
    assert_nothing_changed(&ctx).await;
    // A fresh snapshot, and the migration goes ahead.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    phase(&ctx, "snapshot", &[("version", "v1.2.0")])
        .await
        .assert_code(0);
    ctx.post("/_test/ecs/task-rules", rule).await;
    phase(
        &ctx,
        "migrate",
        &[("version", "v1.2.0"), ("skip-drain", "true")],
    )
    .await
    .assert_code(0);
}

#[tokio::test]
async fn a_migration_whose_task_family_is_gone_stops_before_db_only() {
    let ctx = TestContext::new().await;
    let config = ctx.seed("stage", &[]);
    phase(&ctx, "snapshot", &[("version", "v2.0.0")])
        .await
        .assert_code(0);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "family = \"stage-migrate\"",
        "family = \"stage-migrations\"",
    );
    std::fs::write(&config, text).unwrap();
    ctx.clear_calls().await;
    let r = phase(
        &ctx,
        "migrate",
        &[("version", "v2.0.0"), ("skip-drain", "true")],
    )
    .await;
    r.assert_code(2);
    assert_contains(
        &r.stderr,
        "task definition family stage-migrations has no ACTIVE revision; register one, or correct environments.stage.migration.family in the config",
    );
    assert_nothing_changed(&ctx).await;
}

fn with_settle(ctx: &TestContext, settle: &str) {
    let path = ctx.config_path();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "instance = \"app-stage\"",
        &format!("instance = \"app-stage\"\nsettle = {settle}"),
    );
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn after_a_migration_the_database_settles_before_the_phase_ends() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    with_settle(
        &ctx,
        "{ cpu-threshold = 30, window-seconds = 60, timeout-minutes = 1 }",
    );
    phase(&ctx, "snapshot", &[("version", "v2.0.0")])
        .await
        .assert_code(0);
    ctx.post(
        "/_test/cloudwatch/metric",
        json!({"namespace": "AWS/RDS", "metric": "CPUUtilization", "dimensions": {"DBInstanceIdentifier": "app-stage"},
               "values": [{"secondsAgo": 5, "value": 12.0}], "region": REGION}),
    )
    .await;
    ctx.post(
        "/_test/ecs/task-rules",
        serde_json::from_str(MIGRATION_OK).unwrap(),
    )
    .await;
    let r = phase(
        &ctx,
        "migrate",
        &[("version", "v2.0.0"), ("skip-drain", "true")],
    )
    .await;
    r.assert_code(0);
    assert_contains(
        &r.stderr,
        "waiting for database app-stage to settle: CPU at or under 30%",
    );
    assert_contains(
        &r.summary,
        "| database settle | CPUUtilization at or under 30",
    );
    let calls = ctx.calls().await;
    let pos = |op: &str| calls.iter().rposition(|(_, o)| o == op).unwrap();
    assert!(pos("GetMetricStatistics") > pos("RunTask"), "{calls:?}");
}

#[tokio::test]
async fn no_datapoint_is_not_a_settled_database() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    // No datapoint ever comes: the wait runs to its bound, a few seconds here (`timeout`, not a minute).
    with_settle(
        &ctx,
        "{ cpu-threshold = 30, window-seconds = 60, timeout = \"6s\" }",
    );
    phase(&ctx, "snapshot", &[("version", "v2.0.0")])
        .await
        .assert_code(0);
    ctx.post(
        "/_test/ecs/task-rules",
        serde_json::from_str(MIGRATION_OK).unwrap(),
    )
    .await;
    let r = phase(
        &ctx,
        "migrate",
        &[("version", "v2.0.0"), ("skip-drain", "true")],
    )
    .await;
    r.assert_code(1);
    assert_contains(&r.stderr, "no CPUUtilization datapoint since");
    assert_contains(&r.stderr, "no data is not quiet");
    assert_contains(&r.stderr, "database app-stage did not settle");
}

async fn target(ctx: &TestContext) -> (bool, bool, bool) {
    let aas = aws_sdk_applicationautoscaling::Client::new(&ctx.sdk().await);
    let out = aas
        .describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .resource_ids("service/app-stage/core")
        .send()
        .await
        .unwrap();
    let s = out.scalable_targets()[0].suspended_state();
    (
        s.and_then(|s| s.dynamic_scaling_in_suspended()) == Some(true),
        s.and_then(|s| s.dynamic_scaling_out_suspended()) == Some(true),
        s.and_then(|s| s.scheduled_scaling_suspended()) == Some(true),
    )
}

async fn core_tags(ctx: &TestContext) -> Vec<(String, String)> {
    let ecs = ctx.ecs().await;
    let arn = ecs
        .describe_services()
        .cluster("app-stage")
        .services("core")
        .send()
        .await
        .unwrap()
        .services()[0]
        .service_arn()
        .unwrap()
        .to_string();
    ecs.list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn autoscaling_is_suspended_while_at_zero_and_restored_as_found() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &["--autoscaling"]);
    assert_eq!(target(&ctx).await, (false, false, false));
    ctx.clear_calls().await;
    let r = phase(
        &ctx,
        "state",
        &[("state", "db-only"), ("skip-drain", "true")],
    )
    .await;
    r.assert_code(0);
    assert_eq!(target(&ctx).await, (true, true, true));
    assert!(core_tags(&ctx).await.contains(&(
        "deploy-action:autoscaling".into(),
        "dynamic-in=false dynamic-out=false scheduled=false".into()
    )));
    // Suspended before the service went to 0.
    let calls = ctx.calls().await;
    let register = calls
        .iter()
        .position(|(_, o)| o == "RegisterScalableTarget")
        .expect("RegisterScalableTarget");
    let to_zero = calls
        .iter()
        .position(|(_, o)| o == "UpdateService")
        .unwrap();
    assert!(register < to_zero, "{calls:?}");
    let s = ctx
        .action(&[
            ("phase", "status"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
        ])
        .await;
    assert_contains(
        &s.stdout,
        "core: suspended by deploy-action (found active; min 1, max 4)",
    );
    let r = phase(&ctx, "state", &[("state", "running")]).await;
    r.assert_code(0);
    assert_eq!(target(&ctx).await, (false, false, false));
    assert!(!core_tags(&ctx)
        .await
        .iter()
        .any(|(k, _)| k == "deploy-action:autoscaling"));
}

#[tokio::test]
async fn a_target_its_owner_suspended_stays_suspended() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &["--autoscaling"]);
    let aas = aws_sdk_applicationautoscaling::Client::new(&ctx.sdk().await);
    aas.register_scalable_target()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .resource_id("service/app-stage/core")
        .scalable_dimension(
            aws_sdk_applicationautoscaling::types::ScalableDimension::EcsServiceDesiredCount,
        )
        .suspended_state(
            aws_sdk_applicationautoscaling::types::SuspendedState::builder()
                .dynamic_scaling_in_suspended(true)
                .dynamic_scaling_out_suspended(false)
                .scheduled_scaling_suspended(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    phase(
        &ctx,
        "state",
        &[("state", "db-only"), ("skip-drain", "true")],
    )
    .await
    .assert_code(0);
    assert_eq!(target(&ctx).await, (true, true, true));
    // The way back: a deploy that scales the services up from 0.
    let r = phase(&ctx, "deploy", &[("version", "v2.0.0")]).await;
    r.assert_code(0);
    assert_eq!(target(&ctx).await, (true, false, false));
}

#[tokio::test]
async fn new_inputs_and_keys_are_validated_without_an_aws_call() {
    let ctx = TestContext::new().await;
    let config = ctx.seed("stage", &[]);
    let base = std::fs::read_to_string(&config).unwrap();
    ctx.clear_calls().await;
    let r = phase(
        &ctx,
        "deploy",
        &[("version", "v2.0.0"), ("wait-for-images", "soon")],
    )
    .await;
    r.assert_code(2);
    assert_contains(
        &r.stderr,
        "input `wait-for-images`: \"soon\" is not a duration",
    );
    let r = phase(
        &ctx,
        "deploy",
        &[
            ("version", "v2.0.0"),
            ("wait-for-images", "2h"),
            ("timeout-minutes", "30"),
        ],
    )
    .await;
    r.assert_code(2);
    assert_contains(
        &r.stderr,
        "input `wait-for-images`: 2h 0m is longer than the phase's timeout (30m 0s)",
    );
    for (settle, key) in [
        (
            "{ cpu-threshold = 130 }",
            "settle.cpu-threshold: 130 is not a CPU percentage",
        ),
        (
            "{ window-seconds = 5 }",
            "settle.window-seconds: 5 is outside 60..3600",
        ),
        (
            "{ timeout-minutes = 0 }",
            "settle.timeout-minutes: 0; use at least 1",
        ),
        ("{ cpu-treshold = 30 }", "cpu-treshold"),
    ] {
        std::fs::write(&config, &base).unwrap();
        with_settle(&ctx, settle);
        ctx.clear_calls().await;
        let r = phase(&ctx, "migrate", &[("version", "v2.0.0")]).await;
        r.assert_code(2);
        assert_contains(&r.stderr, key);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(ctx.calls().await.is_empty());
    }
}

/// Rollback's preflight: the images of the revisions it goes back to must still be in ECR (a lifecycle policy may
/// have expired them), else exit 1 naming the image before any service changes; once pushed again, it rolls back.
#[tokio::test]
async fn rollback_to_a_version_whose_image_is_gone_stops_before_any_change() {
    let ctx = TestContext::new().await;
    // Only v1.1.0's images are in ECR: v1.0.0 (what the services run now) expired.
    ctx.seed("stage", &["--images", "v1.1.0"]);
    phase(&ctx, "deploy", &[("version", "v1.1.0")])
        .await
        .assert_code(0);
    ctx.clear_calls().await;
    let r = phase(&ctx, "rollback", &[("version", "v1.0.0")]).await;
    r.assert_code(1);
    assert_contains(&r.stdout, "preflight (rollback):");
    assert_contains(
        &r.stderr,
        "123456789012.dkr.ecr.eu-central-1.amazonaws.com/app:core-v1.0.0 is not in ECR (ImageNotFound",
    );
    assert_contains(&r.stderr, "push it again, or roll back to another version");
    assert_nothing_changed(&ctx).await;
    push(&ctx, &["core-v1.0.0", "workers-v1.0.0"]).await;
    let r = phase(&ctx, "rollback", &[("version", "v1.0.0")]).await;
    r.assert_code(0);
    assert_contains(
        &r.stdout,
        "image of service core, container core (stage-core:1)",
    );
}

#[tokio::test]
async fn a_check_the_role_may_not_read_fails_naming_the_permission_and_changes_nothing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    push(&ctx, &["core-v9.0.0", "workers-v9.0.0"]).await;
    // IAM refuses ecr:BatchGetImage (the emulator answers AccessDeniedException, as ECR does).
    ctx.post(
        "/_test/faults",
        json!({"operation": "BatchGetImage", "service": "ecr", "kind": "denied", "count": -1}),
    )
    .await;
    ctx.clear_calls().await;
    let r = phase(&ctx, "deploy", &[("version", "v9.0.0")]).await;
    r.assert_code(1);
    assert_contains(
        &r.stderr,
        "access denied: the role needs ecr:BatchGetImage (see `deploy-action iam-policy`)",
    );
    assert_contains(&r.stdout, "image of service core, container core");
    assert_nothing_changed(&ctx).await;
}
