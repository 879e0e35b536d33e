//! Issue 22: every secret and every version shape, end to end against the local AWS: SSM secrets on the one-off
//! revisions (migration, `run`).

use serde_json::json;

use crate::support::TestContext;

const ARN: &str = "arn:aws:ssm:eu-central-1:123456789012:parameter";

fn inputs<'a>(phase: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("phase", phase),
        ("environment", "stage"),
        ("config", "deploy.toml"),
    ];
    v.extend_from_slice(extra);
    v
}

fn secret(name: &str, param: &str) -> (String, String) {
    (name.to_string(), format!("{ARN}{param}"))
}

/// The migration's and a `run` task's registered revisions take the `ssm-path` secrets as references; a parameter
/// deleted from the path leaves the next one-off revision, and the plan says so.
#[tokio::test]
async fn one_off_revisions_take_the_ssm_secrets_and_lose_a_deleted_one() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.ssm_secrets(
        "url = \"https://stage.example.org\"",
        "/app/stage/",
        &[
            ("/app/stage/DATABASE_URL", "postgres://m1gr4te-s3cret"),
            ("/app/stage/OLD_KEY", "0ld-k3y-value"),
            ("/app/other/X", "not-ours"),
        ],
    )
    .await;
    for family in ["stage-migrate", "stage-seed"] {
        ctx.post(
            "/_test/ecs/task-rules",
            json!({"match": family, "exitCode": 0, "describes": 2, "logs": ["done"]}),
        )
        .await;
    }
    let v = [("version", "v2.0.0")];
    ctx.action(&inputs("snapshot", &v)).await.assert_code(0);
    let r = ctx
        .action(&inputs(
            "migrate",
            &[("version", "v2.0.0"), ("skip-drain", "true")],
        ))
        .await;
    r.assert_code(0);
    let both = vec![
        secret("DATABASE_URL", "/app/stage/DATABASE_URL"),
        secret("OLD_KEY", "/app/stage/OLD_KEY"),
    ];
    assert_eq!(
        ctx.container_secrets("stage-migrate:2", "migrate").await,
        both
    );
    let r = ctx
        .action(&inputs("run", &[("version", "v2.0.0"), ("task", "seed")]))
        .await;
    r.assert_code(0);
    assert_eq!(ctx.container_secrets("stage-seed:2", "seed").await, both);
    for r in [&r] {
        for value in ["m1gr4te-s3cret", "0ld-k3y-value"] {
            assert!(!r.stderr.contains(value) && !r.stdout.contains(value));
        }
    }

    // OLD_KEY is deleted from the path: the next one-off revision goes without it, and the plan says so.
    let ssm = aws_sdk_ssm::Client::new(&ctx.sdk().await);
    ssm.delete_parameter()
        .name("/app/stage/OLD_KEY")
        .send()
        .await
        .unwrap();
    let dry = ctx
        .action(&inputs(
            "run",
            &[("version", "v2.0.0"), ("task", "seed"), ("dry-run", "true")],
        ))
        .await;
    dry.assert_code(0);
    let line = "task seed: secret(s) removed from the next revision, their parameters are no longer under ssm-path /app/stage/: OLD_KEY (/app/stage/OLD_KEY)";
    assert!(dry.stderr.contains(line), "{}", dry.stderr);
    let r = ctx
        .action(&inputs("run", &[("version", "v2.0.0"), ("task", "seed")]))
        .await;
    r.assert_code(0);
    assert!(r.stderr.contains(line), "{}", r.stderr);
    assert_eq!(
        ctx.container_secrets("stage-seed:3", "seed").await,
        vec![secret("DATABASE_URL", "/app/stage/DATABASE_URL")]
    );
    // The migration's revision keeps its secrets until the migration runs again.
    assert_eq!(
        ctx.container_secrets("stage-migrate:2", "migrate").await,
        both
    );
}
