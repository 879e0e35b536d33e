//! Issue 18: the plan shows every change. A dry run of deploy shows per service the field diff of the new revision
//! against the current one (each container's old → new image, SSM secrets added or removed) and says that nothing
//! else changes; migrate and run show the same for their one-off revision.

use crate::support::TestContext;

const REPO: &str = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/app";

#[tokio::test]
async fn deploy_dry_run_shows_old_and_new_image_per_container_and_the_secrets() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.ssm_secrets(
        "url = \"https://stage.example.org\"",
        "/app/stage/",
        &[
            ("/app/stage/DATABASE_URL", "postgres://secret"),
            ("/app/stage/API_KEY", "k3y"),
        ],
    )
    .await;
    ctx.clear_calls().await;
    let r = ctx
        .action(&[
            ("phase", "deploy"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("version", "v1.1.0"),
            ("dry-run", "true"),
        ])
        .await;
    r.assert_code(0);
    let nothing_else =
        "nothing else changes: the other containers, and every other field of the task definition";
    let expected = [
        "core: stage-core:1 → new revision".to_string(),
        format!("  container core: image {REPO}:core-v1.0.0 → {REPO}:core-v1.1.0"),
        "  container core: secrets added: API_KEY, DATABASE_URL".to_string(),
        "workers: stage-workers:1 → new revision".to_string(),
        format!("  container workers: image {REPO}:workers-v1.0.0 → {REPO}:workers-v1.1.0"),
        "  container workers: secrets added: API_KEY, DATABASE_URL".to_string(),
    ];
    for line in &expected {
        assert!(
            r.stdout.contains(line.as_str()),
            "stdout lacks {line:?}:\n{}",
            r.stdout
        );
        assert!(
            r.summary.contains(line.as_str()),
            "summary lacks {line:?}:\n{}",
            r.summary
        );
        assert!(
            r.stderr
                .contains(line.trim_start().split(" → new revision").next().unwrap()),
            "{}",
            r.stderr
        );
    }
    assert_eq!(
        r.stdout.matches(nothing_else).count(),
        2,
        "said once per service:\n{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("container nudenet"),
        "the sidecar does not change:\n{}",
        r.stdout
    );
    assert!(
        r.stderr.contains(&format!(
            "container core: image {REPO}:core-v1.0.0 → {REPO}:core-v1.1.0"
        )),
        "the plan group of the log:\n{}",
        r.stderr
    );
    assert!(
        r.summary.contains("**Plan: every field that changes**"),
        "{}",
        r.summary
    );
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());

    // The version running now: only the secrets change, and the plan says exactly that (no image line).
    let r = ctx
        .cli(&[
            "deploy",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--version",
            "v1.0.0",
            "--dry-run",
        ])
        .await;
    r.assert_code(0);
    assert!(
        r.stdout.contains("core: stage-core:1 → new revision"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("  container core: secrets added: API_KEY, DATABASE_URL"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(": image "), "{}", r.stdout);
}

#[tokio::test]
async fn run_and_migrate_dry_runs_show_the_one_off_revision_diff() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    let r = ctx
        .action(&[
            ("phase", "run"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("task", "seed"),
            ("version", "v1.1.0"),
            ("dry-run", "true"),
        ])
        .await;
    r.assert_code(0);
    let image = format!("container seed: image {REPO}:core-v1.0.0 → {REPO}:core-v1.1.0");
    assert!(r.stderr.contains(&image), "{}", r.stderr);
    assert!(
        r.stdout.contains(&image) && r.stdout.contains("nothing else changes"),
        "{}",
        r.stdout
    );
    assert!(r.summary.contains(&image), "{}", r.summary);

    let r = ctx
        .action(&[
            ("phase", "migrate"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("version", "v2.0.0"),
            ("allow-without-snapshot", "true"),
            ("dry-run", "true"),
        ])
        .await;
    r.assert_code(0);
    let image = format!("container migrate: image {REPO}:migrate-v1.0.0 → {REPO}:migrate-v2.0.0");
    assert!(r.stderr.contains(&image), "{}", r.stderr);
    assert!(
        r.stdout.contains(&image) && r.stdout.contains("nothing else changes"),
        "{}",
        r.stdout
    );
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
}
