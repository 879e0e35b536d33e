//! Issue 16, phase `restore`: a failed migration undone by bringing the database back from its snapshot, under the
//! same name and endpoint address, the original kept, a rerun changing nothing; the same for an Aurora cluster.

use serde_json::json;

use crate::support::{RunResult, TestContext};

fn inputs<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![
        ("phase", "restore"),
        ("environment", "stage"),
        ("config", "deploy.toml"),
    ];
    v.extend_from_slice(extra);
    v
}

const SNAPSHOT: &[(&str, &str)] = &[
    ("phase", "snapshot"),
    ("environment", "stage"),
    ("config", "deploy.toml"),
    ("version", "v2.0.0"),
];

const DB_ONLY: &[(&str, &str)] = &[
    ("phase", "state"),
    ("environment", "stage"),
    ("config", "deploy.toml"),
    ("state", "db-only"),
    ("skip-drain", "true"),
];

fn tag<'a>(tags: &'a [aws_sdk_rds::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

async fn instance(ctx: &TestContext, id: &str) -> Option<aws_sdk_rds::types::DbInstance> {
    ctx.rds()
        .await
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .ok()
        .and_then(|o| o.db_instances().first().cloned())
}

async fn all_instances(ctx: &TestContext) -> Vec<aws_sdk_rds::types::DbInstance> {
    ctx.rds()
        .await
        .describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
        .to_vec()
}

fn no_deletes(calls: &[String]) {
    assert!(
        !calls.iter().any(|c| c.contains(":Delete")),
        "nothing is deleted: {calls:?}"
    );
}

/// snapshot → failing migration (exit 1, `restore-command` output) → restore.
async fn failed_migration(ctx: &TestContext) -> (String, RunResult) {
    ctx.seed("stage", &[]);
    let snap = ctx.action(SNAPSHOT).await;
    snap.assert_code(0);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 1, "describes": 1, "logs": ["ERROR: column \"email\" contains null values"]}),
    )
    .await;
    let m = ctx
        .action(&[
            ("phase", "migrate"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("version", "v2.0.0"),
            ("skip-drain", "true"),
        ])
        .await;
    m.assert_code(1);
    (snap.outputs["snapshot-id"].clone(), m)
}

#[tokio::test]
async fn a_failed_migration_is_undone_under_the_same_name_and_address_and_a_rerun_changes_nothing()
{
    let ctx = TestContext::new().await;
    let (snap, migrate) = failed_migration(&ctx).await;
    let cmd = format!("deploy-action restore --env stage --snapshot-id {snap}");
    assert_eq!(migrate.outputs["restore-command"], cmd);
    assert!(
        migrate.summary.contains(&cmd),
        "the summary says how to restore: {}",
        migrate.summary
    );
    let before = instance(&ctx, "app-stage").await.unwrap();
    let address = before.endpoint().unwrap().address().unwrap().to_string();
    // Restores and renames take a few describes, as in AWS.
    ctx.post(
        "/_test/rds/instance-rules",
        json!({"createDescribes": 2, "renameDescribes": 1}),
    )
    .await;
    ctx.clear_calls().await;

    let r = ctx.action(&inputs(&[("snapshot-id", &snap)])).await;
    r.assert_code(0);
    assert_eq!(r.outputs["restore-result"], "restored");
    let kept = r.outputs["kept-id"].clone();
    assert!(kept.starts_with("app-stage-before-restore-"), "{kept}");
    assert!(
        r.stderr
            .contains("DB instance app-stage-restoring: creating"),
        "progress lines while it is restored: {}",
        r.stderr
    );
    let calls = ctx.mutating_calls().await;
    no_deletes(&calls);
    let renames: Vec<&String> = calls
        .iter()
        .filter(|c| c.ends_with("ModifyDBInstance"))
        .collect();
    assert_eq!(renames.len(), 2, "{calls:?}");
    assert!(r.outputs["delete-command"].contains(&format!("--db-instance-identifier {kept} ")));
    assert!(
        r.summary.contains(&r.outputs["delete-command"]),
        "{}",
        r.summary
    );
    assert!(r.summary.contains("(unchanged)"), "{}", r.summary);

    let now = instance(&ctx, "app-stage").await.unwrap();
    assert_eq!(now.endpoint().unwrap().address(), Some(address.as_str()));
    assert_eq!(now.db_instance_class(), before.db_instance_class());
    assert_eq!(
        now.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
        before
            .db_subnet_group()
            .and_then(|g| g.db_subnet_group_name())
    );
    assert_eq!(now.db_instance_status(), Some("available"));
    assert_ne!(
        now.dbi_resource_id(),
        before.dbi_resource_id(),
        "a new instance"
    );
    assert_eq!(
        tag(now.tag_list(), "deploy-action:restore"),
        Some("restored")
    );
    assert_eq!(
        tag(now.tag_list(), "deploy-action:restore-snapshot"),
        Some(snap.as_str())
    );
    assert_eq!(
        tag(now.tag_list(), "environment"),
        Some("stage"),
        "the original's tags"
    );
    let old = instance(&ctx, &kept).await.expect("the original is kept");
    assert_eq!(old.dbi_resource_id(), before.dbi_resource_id());
    assert_eq!(
        tag(old.tag_list(), "deploy-action:restore"),
        Some("original")
    );
    assert_eq!(
        all_instances(&ctx).await.len(),
        2,
        "the restored one and the kept one"
    );

    ctx.clear_calls().await;
    let again = ctx.action(&inputs(&[("snapshot-id", &snap)])).await;
    again.assert_code(0);
    assert_eq!(again.outputs["restore-result"], "already-restored");
    assert!(
        again.stdout.contains("already restored"),
        "{}",
        again.stdout
    );
    assert_eq!(
        ctx.mutating_calls().await,
        Vec::<String>::new(),
        "a rerun changes nothing"
    );
}

#[tokio::test]
async fn restore_by_version_in_a_dry_run_lists_the_steps_and_changes_nothing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.action(SNAPSHOT).await.assert_code(0);
    ctx.action(DB_ONLY).await.assert_code(0);
    ctx.clear_calls().await;
    let r = ctx
        .action(&inputs(&[("version", "v2.0.0"), ("dry-run", "true")]))
        .await;
    r.assert_code(0);
    assert_eq!(r.outputs["restore-result"], "planned");
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
    for step in [
        "would restore DB instance app-stage-restoring from snapshot deploy-stage-v2-0-0-",
        "would rename DB instance app-stage to app-stage-before-restore-",
        "would rename DB instance app-stage-restoring to app-stage",
    ] {
        assert!(r.stderr.contains(step), "{step}: {}", r.stderr);
    }
    // The real run by version, through the CLI.
    let cli = ctx
        .cli(&[
            "restore",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--version",
            "v2.0.0",
        ])
        .await;
    cli.assert_code(0);
    assert!(
        cli.stdout
            .contains("app-stage restored from snapshot deploy-stage-v2-0-0-"),
        "{}",
        cli.stdout
    );
}

#[tokio::test]
async fn bad_input_exits_2_naming_the_snapshots_that_would_fit_and_changes_nothing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let snap = ctx.action(SNAPSHOT).await;
    snap.assert_code(0);
    let ours = snap.outputs["snapshot-id"].clone();
    ctx.action(DB_ONLY).await.assert_code(0);
    let rds = ctx.rds().await;
    rds.create_db_snapshot()
        .db_instance_identifier("app-stage")
        .db_snapshot_identifier("by-hand")
        .send()
        .await
        .unwrap();
    rds.create_db_instance()
        .db_instance_identifier("app-other")
        .engine("postgres")
        .db_instance_class("db.t4g.micro")
        .allocated_storage(20)
        .master_username("app")
        .master_user_password("not-a-secret-123")
        .send()
        .await
        .unwrap();
    rds.create_db_snapshot()
        .db_instance_identifier("app-other")
        .db_snapshot_identifier("other-db")
        .send()
        .await
        .unwrap();
    ctx.clear_calls().await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("snapshot-id", "nope")], "input `snapshot-id`: snapshot nope does not exist"),
        (vec![("snapshot-id", "other-db")], "snapshot other-db is of database app-other, not app-stage"),
        (vec![("snapshot-id", "by-hand")], "was not made by deploy-action; set allow-foreign-snapshot: true"),
        (vec![("version", "v9.9.9")], "input `version`: no available snapshot of app-stage made by deploy-action for version v9.9.9"),
        (vec![("version", "v2.0.0"), ("snapshot-id", "nope")], "both set"),
        (vec![], "input `snapshot-id` or `version`: missing"),
    ];
    for (extra, want) in cases {
        let r = ctx.action(&inputs(&extra)).await;
        r.assert_code(2);
        assert!(r.stderr.contains(want), "{extra:?}: {}", r.stderr);
        if !extra.is_empty() && !want.contains("both") {
            assert!(
                r.stderr
                    .contains(&format!("snapshots that would fit: {ours} (v2.0.0)")),
                "{extra:?} lists the snapshots that fit: {}",
                r.stderr
            );
        }
    }
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
    // A foreign snapshot, allowed: it is restored.
    let r = ctx
        .action(&inputs(&[
            ("snapshot-id", "by-hand"),
            ("allow-foreign-snapshot", "true"),
        ]))
        .await;
    r.assert_code(0);
    assert_eq!(r.outputs["restore-result"], "restored");
}

#[tokio::test]
async fn restore_refuses_while_the_services_run_or_a_migration_runs() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.action(SNAPSHOT).await.assert_code(0);
    ctx.clear_calls().await;
    let r = ctx.action(&inputs(&[("version", "v2.0.0")])).await;
    r.assert_code(1);
    assert!(
        r.stderr
            .contains("environment stage is not db-only or stopped: core (desired"),
        "{}",
        r.stderr
    );
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
    ctx.action(DB_ONLY).await.assert_code(0);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "neverStop": true}),
    )
    .await;
    let task = ctx
        .start_like_an_earlier_run("stage-migrate", "deploy-action:stage:migration", "v2.0.0")
        .await;
    ctx.clear_calls().await;
    let r = ctx.action(&inputs(&[("version", "v2.0.0")])).await;
    r.assert_code(1);
    let id = task.rsplit('/').next().unwrap();
    assert!(
        r.stderr
            .contains("a migration or one-off task of deploy-action is still running")
            && r.stderr.contains(id),
        "{}",
        r.stderr
    );
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_run_killed_between_the_two_renames_is_finished_by_the_next_one() {
    let ctx = TestContext::new().await;
    let (snap, _) = failed_migration(&ctx).await;
    let address = instance(&ctx, "app-stage")
        .await
        .unwrap()
        .endpoint()
        .unwrap()
        .address()
        .unwrap()
        .to_string();
    ctx.post("/_test/rds/instance-rules", json!({"renameDescribes": 4}))
        .await;
    ctx.clear_calls().await;
    let mut cmd = ctx.base_command();
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_REPOSITORY", "acme/backend")
        .env("GITHUB_RUN_ID", "4242");
    for (k, v) in inputs(&[("snapshot-id", &snap)]) {
        cmd.env(format!("INPUT_{}", k.to_uppercase()), v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ctx
        .mutating_calls()
        .await
        .iter()
        .any(|c| c.ends_with("ModifyDBInstance"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first rename never came"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap(); // SIGKILL
    assert!(
        instance(&ctx, "app-stage").await.is_none(),
        "killed between the renames"
    );
    ctx.post("/_test/rds/instance-rules", json!({})).await;
    let r = ctx.action(&inputs(&[("snapshot-id", &snap)])).await;
    r.assert_code(0);
    assert_eq!(r.outputs["restore-result"], "restored");
    let now = instance(&ctx, "app-stage").await.unwrap();
    assert_eq!(now.endpoint().unwrap().address(), Some(address.as_str()));
    assert_eq!(
        tag(now.tag_list(), "deploy-action:restore"),
        Some("restored")
    );
    assert!(instance(&ctx, &r.outputs["kept-id"]).await.is_some());
    assert_eq!(all_instances(&ctx).await.len(), 2);
    no_deletes(&ctx.mutating_calls().await);
}

#[tokio::test]
async fn an_aurora_cluster_is_restored_with_its_instances_under_the_same_names() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &["--aurora"]);
    let snap = ctx.action(SNAPSHOT).await;
    snap.assert_code(0);
    let snap = snap.outputs["snapshot-id"].clone();
    ctx.action(DB_ONLY).await.assert_code(0);
    let rds = ctx.rds().await;
    let cluster = |rds: aws_sdk_rds::Client, id: String| async move {
        rds.describe_db_clusters()
            .db_cluster_identifier(id)
            .send()
            .await
            .ok()
            .and_then(|o| o.db_clusters().first().cloned())
    };
    let before = cluster(rds.clone(), "app-stage".into()).await.unwrap();
    ctx.post(
        "/_test/rds/instance-rules",
        json!({"createDescribes": 1, "renameDescribes": 1}),
    )
    .await;
    ctx.clear_calls().await;
    let r = ctx.action(&inputs(&[("snapshot-id", &snap)])).await;
    r.assert_code(0);
    assert_eq!(r.outputs["restore-result"], "restored");
    no_deletes(&ctx.mutating_calls().await);
    let now = cluster(rds.clone(), "app-stage".into()).await.unwrap();
    assert_eq!(now.endpoint(), before.endpoint(), "the same endpoint");
    assert_ne!(
        now.db_cluster_resource_id(),
        before.db_cluster_resource_id()
    );
    assert_eq!(
        tag(now.tag_list(), "deploy-action:restore-snapshot"),
        Some(snap.as_str())
    );
    let member = instance(&ctx, "app-stage-1")
        .await
        .expect("the instance's name is back");
    assert_eq!(member.db_cluster_identifier(), Some("app-stage"));
    assert_eq!(member.db_instance_class(), Some("db.r6g.large"));
    assert_eq!(
        tag(member.tag_list(), "deploy-action:restore"),
        Some("restored")
    );
    let kept = r.outputs["kept-id"].clone();
    let old = cluster(rds.clone(), kept.clone())
        .await
        .expect("the original cluster is kept");
    assert_eq!(
        old.db_cluster_resource_id(),
        before.db_cluster_resource_id()
    );
    let stamp = kept.trim_start_matches("app-stage-before-restore-");
    let old_member = instance(&ctx, &format!("app-stage-1-before-restore-{stamp}"))
        .await
        .expect("its instance too");
    assert_eq!(old_member.db_cluster_identifier(), Some(kept.as_str()));

    ctx.clear_calls().await;
    let again = ctx.action(&inputs(&[("snapshot-id", &snap)])).await;
    again.assert_code(0);
    assert_eq!(again.outputs["restore-result"], "already-restored");
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
}
