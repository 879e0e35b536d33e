//! Issue 18: `deploy-action init` writes the config of the seeded environment from what runs in AWS; check-config
//! accepts it, status reads the environment through it as running; read-only, and bad input writes nothing.

use std::collections::BTreeSet;
use std::path::Path;

use deploy_action::config::{Config, DatabaseKind};
use deploy_action::inputs::Phase;
use deploy_action::phases::iam_policy::{allows, policy};

use crate::support::{RunResult, TestContext, REGION};

/// `init --env stage --cluster app-stage -c init.toml --region eu-central-1` with `extra` (which may replace any of
/// those flags).
async fn init(ctx: &TestContext, extra: &[&str]) -> RunResult {
    let mut args = vec!["init"];
    for (flag, value) in [
        ("--env", "stage"),
        ("--cluster", "app-stage"),
        ("-c", "init.toml"),
        ("--region", REGION),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    ctx.cli(&args).await
}

fn listener_of(seeded: &Path) -> String {
    let c = Config::load(seeded).unwrap();
    c.environment("stage")
        .unwrap()
        .maintenance
        .as_ref()
        .unwrap()
        .listener_arn
        .clone()
}

#[tokio::test]
async fn init_writes_the_seeded_environment_and_status_reads_it_as_running() {
    let ctx = TestContext::new().await;
    let seeded = ctx.seed("stage", &[]);
    let listener = listener_of(&seeded);
    ctx.clear_calls().await;
    let r = init(
        &ctx,
        &[
            "--listener-arn",
            &listener,
            "--db-instance",
            "app-stage",
            "--migration-family",
            "stage-migrate",
        ],
    )
    .await;
    r.assert_code(0);
    assert!(r.stdout.contains("wrote init.toml: environment stage (cluster app-stage, eu-central-1), services core, workers on v1.0.0"), "{}", r.stdout);

    // Read-only, and every call is allowed by what `iam-policy --phase init` prints for the written config.
    let calls = ctx.calls().await;
    assert!(!calls.is_empty());
    assert_eq!(
        ctx.mutating_calls().await,
        Vec::<String>::new(),
        "init only reads"
    );
    let written = ctx.path().join("init.toml");
    let config = Config::load(&written).unwrap();
    let env = config.environment("stage").unwrap();
    let doc = policy(&[env], &[Phase::Init]);
    let r = ctx
        .cli(&[
            "iam-policy",
            "--env",
            "stage",
            "-c",
            "init.toml",
            "--phase",
            "init",
        ])
        .await;
    r.assert_code(0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap(),
        serde_json::to_value(&doc).unwrap()
    );
    let actions: BTreeSet<String> = calls
        .iter()
        .map(|(s, o)| {
            format!(
                "{}:{o}",
                if s == "elbv2" {
                    "elasticloadbalancing"
                } else {
                    s.as_str()
                }
            )
        })
        .collect();
    for a in &actions {
        assert!(
            allows(&doc, a, None),
            "init called {a}, which iam-policy --phase init does not allow"
        );
        let op = a.split(':').nth(1).unwrap();
        assert!(op.starts_with("Describe") || op.starts_with("List"), "{a}");
    }
    assert!(
        actions.contains("ecs:ListServices") && actions.contains("rds:DescribeDBInstances"),
        "{actions:?}"
    );
    let svc_arn = "arn:aws:ecs:eu-central-1:123456789012:service/app-stage/core";
    assert!(allows(&doc, "ecs:DescribeServices", Some(svc_arn)));
    assert!(
        !allows(&doc, "ecs:UpdateService", None),
        "nothing that writes"
    );

    // What it inferred is what the seed wrote by hand.
    let seeded_env = Config::load(&seeded)
        .unwrap()
        .environment("stage")
        .unwrap()
        .clone();
    assert_eq!(env.cluster, seeded_env.cluster);
    assert_eq!(env.region, REGION);
    for (got, want) in env.services.iter().zip(&seeded_env.services) {
        assert_eq!(got.name, want.name);
        assert_eq!(
            got.containers, want.containers,
            "the nudenet sidecar keeps its own image"
        );
        assert_eq!(got.desired_count, want.desired_count);
        assert_eq!(got.image.tag, want.image.tag);
    }
    assert_eq!(env.services.len(), seeded_env.services.len());
    let (m, want) = (
        env.migration.as_ref().unwrap(),
        seeded_env.migration.as_ref().unwrap(),
    );
    assert_eq!(
        (&m.family, &m.container, &m.image.tag),
        (&want.family, &want.container, &want.image.tag)
    );
    let db = env.database.as_ref().unwrap();
    assert_eq!(
        (db.kind, db.identifier.as_str()),
        (DatabaseKind::Instance, "app-stage")
    );
    assert_eq!(env.maintenance.as_ref().unwrap().listener_arn, listener);
    let text = std::fs::read_to_string(&written).unwrap();
    assert!(
        text.contains("# TODO: url = "),
        "what it could not infer is a commented TODO:\n{text}"
    );
    assert!(
        text.contains("#   10: path-pattern /api/* → forward stage-core"),
        "the listener's rules:\n{text}"
    );

    ctx.cli(&["check-config", "-c", "init.toml"])
        .await
        .assert_code(0);
    let r = ctx
        .cli(&[
            "status",
            "--env",
            "stage",
            "-c",
            "init.toml",
            "--output",
            "json",
        ])
        .await;
    r.assert_code(0);
    let o = &r.json()["outcome"];
    assert_eq!(o["state"], "running", "{}", r.stdout);
    let names: Vec<&str> = o["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["core", "workers"]);
    assert_eq!(o["services"][0]["version"], "v1.0.0");
    assert_eq!(o["maintenance"], "off");

    // Never over an existing file without --force.
    let before = std::fs::read_to_string(&written).unwrap();
    ctx.clear_calls().await;
    let r = init(&ctx, &[]).await;
    r.assert_code(2);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("init.toml exists") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    assert!(ctx.calls().await.is_empty(), "refused before any AWS call");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), before);
    init(&ctx, &["--force"]).await.assert_code(0);
    let replaced = std::fs::read_to_string(&written).unwrap();
    assert!(
        replaced.contains("# TODO: the database") && replaced.contains("# TODO: maintenance"),
        "{replaced}"
    );
    ctx.cli(&["check-config", "-c", "init.toml"])
        .await
        .assert_code(0);
}

#[tokio::test]
async fn init_bad_input_exits_with_one_line_and_writes_nothing() {
    let ctx = TestContext::new().await;
    let seeded = ctx.seed("stage", &[]);
    let listener = listener_of(&seeded);
    let written = ctx.path().join("init.toml");
    let elsewhere = listener.replace(":eu-central-1:", ":us-east-1:");
    let missing_listener = format!("{}/0000000000000000", listener.rsplit_once('/').unwrap().0);
    let cases: Vec<(Vec<&str>, i32, &str, bool)> = vec![
        (
            vec!["--cluster", "app-nope"],
            2,
            "--cluster: ECS cluster app-nope does not exist",
            true,
        ),
        (
            vec!["--listener-arn", &elsewhere],
            2,
            "--listener-arn: the listener is in us-east-1, the environment in eu-central-1",
            false,
        ),
        (
            vec!["--listener-arn", &missing_listener],
            2,
            "--listener-arn: listener",
            true,
        ),
        (
            vec!["--db-instance", "app-nope"],
            2,
            "--db-instance: RDS DB instance app-nope does not exist in eu-central-1",
            true,
        ),
        (
            vec!["--db-cluster", "app-nope"],
            2,
            "--db-cluster: Aurora DB cluster app-nope does not exist",
            true,
        ),
        (
            vec!["--migration-family", "nope"],
            2,
            "--migration-family: no ACTIVE task definition of family nope",
            true,
        ),
        (
            vec!["--env", "no such env"],
            2,
            "--env: invalid environment name",
            false,
        ),
    ];
    for (extra, code, line, calls_aws) in cases {
        ctx.clear_calls().await;
        let r = init(&ctx, &extra).await;
        r.assert_code(code);
        let err = r.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{extra:?}: one line:\n{err}");
        assert!(err.contains(line), "{extra:?}: {err}");
        assert!(!written.exists(), "{extra:?}: nothing written");
        assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
        if !calls_aws {
            assert!(
                ctx.calls().await.is_empty(),
                "{extra:?}: refused before any AWS call"
            );
        }
    }
    // init is a CLI command: from the Action it is bad input.
    let r = ctx
        .action(&[("phase", "init"), ("environment", "stage")])
        .await;
    r.assert_code(2);
    assert!(r.stderr.contains("init is a CLI command"), "{}", r.stderr);
}

#[tokio::test]
async fn init_fails_on_a_service_without_containers_and_writes_nothing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let ecs = ctx.ecs().await;
    let empty = ecs
        .register_task_definition()
        .family("stage-empty")
        .set_container_definitions(Some(vec![]))
        .send()
        .await;
    let Ok(empty) = empty else {
        panic!("the local AWS refused a task definition without containers: {empty:?}");
    };
    let arn = empty
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string();
    ecs.update_service()
        .cluster("app-stage")
        .service("workers")
        .task_definition(&arn)
        .send()
        .await
        .unwrap();
    ctx.clear_calls().await;
    let r = init(&ctx, &[]).await;
    r.assert_code(1);
    let err = r.stderr.trim();
    assert!(err.lines().count() == 1 && err.contains("ECS service app-stage/workers: its task definition stage-empty:1 has no containers"), "{err}");
    assert!(!ctx.path().join("init.toml").exists());
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
}
