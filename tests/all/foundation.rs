//! Issue 2: inputs, config, runner I/O, `status`, bad input, against the local AWS.

use serde_json::json;

use crate::support::TestContext;

#[tokio::test]
async fn status_reports_the_seeded_environment_as_json_and_text() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let r = ctx
        .cli(&[
            "status",
            "--env",
            "stage",
            "--config",
            "deploy.toml",
            "--output",
            "json",
        ])
        .await;
    r.assert_code(0);
    let v = r.json();
    assert_eq!(v["phase"], "status");
    let o = &v["outcome"];
    assert_eq!(o["state"], "running", "{o}");
    assert_eq!(o["maintenance"], "off");
    let services = o["services"].as_array().unwrap();
    assert_eq!(services.len(), 2);
    let core = services.iter().find(|s| s["name"] == "core").unwrap();
    assert_eq!(core["version"], "v1.0.0");
    assert_eq!(core["desired"], 2);
    assert_eq!(core["running"], 2);
    assert_eq!(core["rollout"], "COMPLETED");
    assert_eq!(core["revision"], 1);
    assert_eq!(o["database"]["status"], "available");
    assert!(o["database"]["newest_snapshot"].is_null());
    assert_eq!(o["migration_tasks"], json!([]));

    let text = ctx
        .cli(&["status", "--env", "stage", "--config", "deploy.toml"])
        .await;
    text.assert_code(0);
    assert!(
        text.stdout
            .starts_with("environment stage (app-stage in eu-central-1): running"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("core")
            && text.stdout.contains("v1.0.0")
            && text.stdout.contains("COMPLETED"),
        "{}",
        text.stdout
    );
    assert!(
        ctx.mutating_calls().await.is_empty(),
        "status must be read-only"
    );
}

#[tokio::test]
async fn status_as_an_action_writes_outputs_and_a_summary() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &["--aurora"]);
    let r = ctx
        .action(&[
            ("phase", "status"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("dry-run", ""),
        ])
        .await;
    r.assert_code(0);
    assert_eq!(r.outputs["state"], "running");
    assert_eq!(r.outputs["version"], "v1.0.0");
    assert_eq!(r.outputs["database-status"], "available");
    assert_eq!(r.outputs["result"], "success");
    assert!(
        r.summary.contains("### Environment `stage`: **running**"),
        "{}",
        r.summary
    );
    assert!(
        r.summary
            .contains("| core | stage-core:1 | v1.0.0 | 2 | 2 | 0 | COMPLETED |"),
        "{}",
        r.summary
    );
    assert!(r.summary.contains("app-stage (available)"), "{}", r.summary);
}

#[tokio::test]
async fn status_sees_snapshots_migrations_in_flight_and_maintenance() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let rds = ctx.rds().await;
    rds.create_db_snapshot()
        .db_instance_identifier("app-stage")
        .db_snapshot_identifier("before-v2")
        .send()
        .await
        .unwrap();
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "neverStop": true}),
    )
    .await;
    let ecs = ctx.ecs().await;
    let svc = ecs
        .describe_services()
        .cluster("app-stage")
        .services("core")
        .send()
        .await
        .unwrap();
    let net = svc.services()[0].network_configuration().cloned().unwrap();
    let task = ecs
        .run_task()
        .cluster("app-stage")
        .task_definition("stage-migrate")
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(net)
        .send()
        .await
        .unwrap();
    let arn = task.tasks()[0].task_arn().unwrap().to_string();
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
    let o = &r.json()["outcome"];
    assert_eq!(o["database"]["newest_snapshot"], "before-v2");
    // Taken moments ago: its age to the second (issue 21), well under a minute.
    let age = o["database"]["newest_snapshot_age_seconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("no snapshot age in {o}"));
    assert!(age < 60, "{age}");
    assert_eq!(o["migration_tasks"], json!([arn]));
}

#[tokio::test]
async fn status_polls_through_throttling() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/faults",
        json!({"operation": "DescribeServices", "kind": "throttle", "count": 2}),
    )
    .await;
    ctx.post(
        "/_test/faults",
        json!({"operation": "DescribeDBInstances", "kind": "503", "count": 1}),
    )
    .await;
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
    assert_eq!(r.json()["outcome"]["state"], "running");
}

/// `status` is read-only, so it is not in the fault matrix (RELIABILITY.md): every fault the SDK cannot retry through
/// ends in exit 1 with one error naming the call and the resource, and never a write.
#[tokio::test]
async fn status_under_persistent_faults_exits_1_naming_the_call_and_changes_nothing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    for kind in ["throttle", "500", "503", "reset"] {
        ctx.http
            .delete(format!("{}/_test/faults", ctx.url))
            .send()
            .await
            .unwrap();
        ctx.post(
            "/_test/faults",
            json!({"operation": "DescribeServices", "kind": kind, "count": 20}),
        )
        .await;
        ctx.clear_calls().await;
        let r = ctx
            .cli(&["status", "--env", "stage", "-c", "deploy.toml"])
            .await;
        r.assert_code(1);
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .collect();
        assert_eq!(errors.len(), 1, "{kind}: {}", r.stderr);
        assert!(
            errors[0].contains("ECS DescribeServices") && errors[0].contains("app-stage"),
            "{kind}: {}",
            errors[0]
        );
        assert!(ctx.mutating_calls().await.is_empty(), "{kind}");
    }
    // Latency alone is waited through.
    ctx.http
        .delete(format!("{}/_test/faults", ctx.url))
        .send()
        .await
        .unwrap();
    ctx.post(
        "/_test/faults",
        json!({"operation": "DescribeServices", "kind": "latency", "count": 1, "latencyMs": 2000}),
    )
    .await;
    ctx.cli(&["status", "--env", "stage", "-c", "deploy.toml"])
        .await
        .assert_code(0);
}

#[tokio::test]
async fn a_service_missing_in_ecs_is_named_with_the_fix() {
    let ctx = TestContext::new().await;
    let path = ctx.seed("stage", &[]);
    let text = std::fs::read_to_string(&path).unwrap()
        + "\n[environments.stage.services.library]\ncontainers = [\"library\"]\n";
    std::fs::write(&path, text).unwrap();
    let r = ctx
        .cli(&["status", "--env", "stage", "-c", "deploy.toml"])
        .await;
    r.assert_code(1);
    assert!(
        r.stderr
            .contains("ECS service app-stage/library does not exist"),
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn check_config_validates_and_names_keys() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let r = ctx.cli(&["check-config", "-c", "deploy.toml"]).await;
    r.assert_code(0);
    assert!(r.stdout.contains("deploy.toml is valid"), "{}", r.stdout);
    assert!(
        r.stdout.contains("stage") && r.stdout.contains("core, workers"),
        "{}",
        r.stdout
    );
    let path = ctx.config_path();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("desired-count = 2", "desired-cont = 2");
    std::fs::write(&path, text).unwrap();
    let r = ctx.cli(&["check-config", "-c", "deploy.toml"]).await;
    r.assert_code(2);
    assert!(
        r.stderr
            .contains("environments.stage.services.core.desired-cont"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
}

/// Bad input: exit 2, one line naming the input or key, and not a single AWS call.
#[tokio::test]
async fn bad_input_exits_2_with_one_line_and_makes_no_aws_call() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    let cli_cases: &[(&[&str], &str)] = &[
        (
            &["status", "--env", "qa", "-c", "deploy.toml"],
            "unknown environment \"qa\"",
        ),
        (&["status", "-c", "deploy.toml"], "input `environment`"),
        (
            &["status", "--env", "stage", "-c", "missing.toml"],
            "missing.toml",
        ),
        (
            &[
                "status",
                "--env",
                "stage",
                "-c",
                "deploy.toml",
                "--timeout-minutes",
                "0",
            ],
            "`timeout-minutes`",
        ),
        (&["launch", "--env", "stage"], "launch"),
        (&["status", "--env", "stage", "--bogus"], "--bogus"),
    ];
    for (args, needle) in cli_cases {
        let r = ctx.cli(args).await;
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(needle),
            "{args:?}: stderr should name {needle:?}: {}",
            r.stderr
        );
        assert_eq!(
            r.stderr.trim().lines().count(),
            1,
            "{args:?}: one line: {}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
    let action_cases: &[(&[(&str, &str)], &str)] = &[
        (&[("environment", "stage")], "input `phase`"),
        (
            &[("phase", "deplyo"), ("environment", "stage")],
            "unknown phase \"deplyo\"",
        ),
        (
            &[
                ("phase", "status"),
                ("environment", "stage"),
                ("config", "deploy.toml"),
                ("dry-run", "perhaps"),
            ],
            "`dry-run`",
        ),
        (
            &[
                ("phase", "status"),
                ("environment", "stage"),
                ("config", "deploy.toml"),
                ("output", "yaml"),
            ],
            "`output`",
        ),
    ];
    for (inputs, needle) in action_cases {
        let r = ctx.action(inputs).await;
        assert_eq!(r.code, 2, "{inputs:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{inputs:?}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("::error"),
            "{inputs:?}: an annotation on a runner: {}",
            r.stderr
        );
        assert_eq!(
            r.stderr.trim().lines().count(),
            1,
            "{inputs:?}: {}",
            r.stderr
        );
    }
    assert_eq!(ctx.calls().await, vec![], "bad input must not reach AWS");
}

#[tokio::test]
async fn secrets_are_masked_before_anything_else_is_printed() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let r = ctx
        .action(&[
            ("phase", "status"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("maintenance-header-value", "hunter2-bypass"),
            ("github-token", "ghs_secret_token"),
        ])
        .await;
    r.assert_code(0);
    for secret in ["hunter2-bypass", "ghs_secret_token"] {
        for (name, stream) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            let mut lines = stream.lines();
            let first_other = lines.position(|l| !l.starts_with("::add-mask::"));
            let leaks: Vec<&str> = stream
                .lines()
                .filter(|l| l.contains(secret) && !l.starts_with("::add-mask::"))
                .collect();
            assert!(leaks.is_empty(), "{secret} leaked on {name}: {leaks:?}");
            let mask_line = stream
                .lines()
                .position(|l| l == format!("::add-mask::{secret}"));
            assert!(
                mask_line.is_some_and(|m| first_other.is_none_or(|o| m < o)),
                "{name} must mask {secret} first:\n{stream}"
            );
        }
        assert!(!r.summary.contains(secret));
        assert!(r.outputs.values().all(|v| !v.contains(secret)));
    }
}
