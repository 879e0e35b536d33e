//! Issue 4, phase `snapshot`: a manual snapshot, waited for, reused by a rerun, with retention that spares
//! everything this action did not make.

use std::time::Duration;

use serde_json::json;

use crate::support::TestContext;

const SNAPSHOT: &[(&str, &str)] = &[
    ("phase", "snapshot"),
    ("environment", "stage"),
    ("config", "deploy.toml"),
    ("version", "v2.0.0"),
];

fn tags_of(list: &[aws_sdk_rds::types::Tag]) -> Vec<(String, String)> {
    list.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn count(calls: &[(String, String)], op: &str) -> usize {
    calls.iter().filter(|(_, o)| o == op).count()
}

#[tokio::test]
async fn snapshot_of_an_rds_instance_is_tagged_and_available() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let r = ctx.action(SNAPSHOT).await;
    r.assert_code(0);
    let id = &r.outputs["snapshot-id"];
    assert!(id.starts_with("deploy-stage-v2-0-0-"), "{id}");
    assert_eq!(id.len(), "deploy-stage-v2-0-0-".len() + 15, "{id}");
    assert!(
        r.outputs["snapshot-arn"].contains(id.as_str()),
        "{:?}",
        r.outputs
    );
    assert_eq!(r.outputs["result"], "success");
    assert!(
        r.summary.contains(&format!(
            "### Snapshot `{id}` of `app-stage`: **available**"
        )),
        "{}",
        r.summary
    );

    let rds = ctx.rds().await;
    let out = rds
        .describe_db_snapshots()
        .db_snapshot_identifier(id)
        .send()
        .await
        .unwrap();
    let snap = &out.db_snapshots()[0];
    assert_eq!(snap.status(), Some("available"));
    assert_eq!(snap.db_instance_identifier(), Some("app-stage"));
    let tags = tags_of(snap.tag_list());
    for (k, v) in [
        ("deploy-action:created-by", "deploy-action"),
        ("deploy-action:version", "v2.0.0"),
        ("deploy-action:environment", "stage"),
        ("deploy-action:run", "acme/backend/4242"),
    ] {
        assert!(
            tags.contains(&(k.to_string(), v.to_string())),
            "{k}={v} missing: {tags:?}"
        );
    }
    assert_eq!(ctx.mutating_calls().await, vec!["rds:CreateDBSnapshot"]);
}

#[tokio::test]
async fn snapshot_of_an_aurora_cluster_is_a_cluster_snapshot() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &["--aurora"]);
    let r = ctx
        .cli(&[
            "snapshot",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--version",
            "v2.0.0",
            "--output",
            "json",
        ])
        .await;
    r.assert_code(0);
    let o = &r.json()["outcome"];
    assert_eq!(o["kind"], "cluster");
    assert_eq!(o["status"], "available");
    let id = o["snapshot_id"].as_str().unwrap();
    let rds = ctx.rds().await;
    let out = rds
        .describe_db_cluster_snapshots()
        .db_cluster_snapshot_identifier(id)
        .send()
        .await
        .unwrap();
    let snap = &out.db_cluster_snapshots()[0];
    assert_eq!(snap.db_cluster_identifier(), Some("app-stage"));
    assert!(tags_of(snap.tag_list()).contains(&("deploy-action:version".into(), "v2.0.0".into())));
    // Off a runner there is no workflow run to tag.
    assert!(!tags_of(snap.tag_list())
        .iter()
        .any(|(k, _)| k == "deploy-action:run"));
    assert_eq!(
        ctx.mutating_calls().await,
        vec!["rds:CreateDBClusterSnapshot"]
    );
}

#[tokio::test]
async fn snapshot_still_creating_is_waited_for_and_progress_printed_when_it_moves() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post("/_test/rds/snapshot-rules", json!({"creatingDescribes": 2}))
        .await;
    let r = ctx.action(SNAPSHOT).await;
    r.assert_code(0);
    let calls = ctx.calls().await;
    assert_eq!(count(&calls, "CreateDBSnapshot"), 1);
    // Two describes see `creating`, the third `available`.
    assert_eq!(count(&calls, "DescribeDBSnapshots"), 1 + 3, "{calls:?}");
    let progress: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains(": creating"))
        .collect();
    assert_eq!(progress.len(), 2, "one line per change: {}", r.stderr);
    assert!(
        progress[0].ends_with("creating 33%") && progress[1].ends_with("creating 66%"),
        "{progress:?}"
    );
}

#[tokio::test]
async fn a_rerun_of_the_same_workflow_run_reuses_its_snapshot() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let first = ctx.action(SNAPSHOT).await;
    first.assert_code(0);
    ctx.clear_calls().await;
    let again = ctx.action(SNAPSHOT).await;
    again.assert_code(0);
    assert_eq!(again.outputs["snapshot-id"], first.outputs["snapshot-id"]);
    assert!(
        again.summary.contains("made earlier by this workflow run"),
        "{}",
        again.summary
    );
    assert!(ctx.mutating_calls().await.is_empty(), "no second snapshot");

    // Another workflow run (or another version) makes its own.
    let other = ctx
        .action_with_env(SNAPSHOT, &[("GITHUB_RUN_ID", "4343")])
        .await;
    other.assert_code(0);
    assert_ne!(other.outputs["snapshot-id"], first.outputs["snapshot-id"]);
    // Within the same second the first name is taken and the next one is tried.
    let creates = ctx.mutating_calls().await;
    assert!(
        (1..=2).contains(&creates.len()) && creates.iter().all(|c| c == "rds:CreateDBSnapshot"),
        "{creates:?}"
    );
}

/// Regression: two workflow runs whose template gives the same name (same second, or no {time}) both get a
/// snapshot; the second one's name gets a suffix.
#[tokio::test]
async fn a_name_already_taken_gets_a_suffix() {
    let ctx = TestContext::new().await;
    let path = ctx.seed("stage", &[]);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[environments.stage.database]\n",
        "[environments.stage.database]\nsnapshot-name = \"pre-{version}\"\n",
    );
    std::fs::write(&path, text).unwrap();
    let first = ctx.action(SNAPSHOT).await;
    first.assert_code(0);
    assert_eq!(first.outputs["snapshot-id"], "pre-v2-0-0");
    let second = ctx
        .action_with_env(SNAPSHOT, &[("GITHUB_RUN_ID", "4343")])
        .await;
    second.assert_code(0);
    assert_eq!(second.outputs["snapshot-id"], "pre-v2-0-0-2");
}

#[tokio::test]
async fn a_rerun_waits_for_its_snapshot_still_being_made() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post("/_test/rds/snapshot-rules", json!({"creatingDescribes": 2}))
        .await;
    let rds = ctx.rds().await;
    let tag = |k: &str, v: &str| aws_sdk_rds::types::Tag::builder().key(k).value(v).build();
    // What the killed first attempt left behind: a snapshot of this run, still `creating`.
    rds.create_db_snapshot()
        .db_instance_identifier("app-stage")
        .db_snapshot_identifier("deploy-stage-v2-0-0-killed-run")
        .tags(tag("deploy-action:created-by", "deploy-action"))
        .tags(tag("deploy-action:version", "v2.0.0"))
        .tags(tag("deploy-action:run", "acme/backend/4242"))
        .send()
        .await
        .unwrap();
    ctx.clear_calls().await;
    let r = ctx.action(SNAPSHOT).await;
    r.assert_code(0);
    assert_eq!(r.outputs["snapshot-id"], "deploy-stage-v2-0-0-killed-run");
    assert!(
        ctx.mutating_calls().await.is_empty(),
        "{:?}",
        ctx.calls().await
    );
    assert!(r.stderr.contains("reusing it"), "{}", r.stderr);
}

#[tokio::test]
async fn retention_keeps_the_newest_of_its_own_and_spares_a_hand_made_snapshot() {
    let ctx = TestContext::new().await;
    let path = ctx.seed("stage", &[]);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[environments.stage.database]\n",
        "[environments.stage.database]\nsnapshot-retention = 2\n",
    );
    std::fs::write(&path, text).unwrap();
    let rds = ctx.rds().await;
    rds.create_db_snapshot()
        .db_instance_identifier("app-stage")
        .db_snapshot_identifier("before-the-big-migration")
        .send()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (run, version) in [
        ("1", "v1.0.0"),
        ("2", "v1.1.0"),
        ("3", "v1.2.0"),
        ("4", "v1.3.0"),
    ] {
        let inputs = [
            ("phase", "snapshot"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("version", version),
        ];
        let r = ctx
            .action_with_env(&inputs, &[("GITHUB_RUN_ID", run)])
            .await;
        r.assert_code(0);
        ids.push(r.outputs["snapshot-id"].clone());
        // RDS creation times have a one-second resolution: keep the order unambiguous.
        crate::support::next_second().await;
    }
    let out = rds
        .describe_db_snapshots()
        .db_instance_identifier("app-stage")
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    let mut left: Vec<String> = out
        .db_snapshots()
        .iter()
        .map(|s| s.db_snapshot_identifier().unwrap().to_string())
        .collect();
    left.sort();
    let mut want = vec![
        "before-the-big-migration".to_string(),
        ids[2].clone(),
        ids[3].clone(),
    ];
    want.sort();
    assert_eq!(left, want);
    let calls = ctx.calls().await;
    assert_eq!(count(&calls, "DeleteDBSnapshot"), 2, "{calls:?}");
}

#[tokio::test]
async fn dry_run_plans_and_changes_nothing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let mut inputs = SNAPSHOT.to_vec();
    inputs.push(("dry-run", "true"));
    let r = ctx.action(&inputs).await;
    r.assert_code(0);
    assert!(
        r.stderr
            .contains("dry run: would create snapshot deploy-stage-v2-0-0-"),
        "{}",
        r.stderr
    );
    assert!(ctx.mutating_calls().await.is_empty());
}

#[tokio::test]
async fn snapshot_bad_input_exits_2_without_aws_calls() {
    let ctx = TestContext::new().await;
    let path = ctx.seed("stage", &[]);
    let text = std::fs::read_to_string(&path).unwrap();
    let no_db = text.replace(
        "[environments.stage.database]\ninstance = \"app-stage\"\n",
        "",
    );
    assert_ne!(no_db, text);
    std::fs::write(ctx.path().join("nodb.toml"), no_db).unwrap();
    let mut inputs = SNAPSHOT.to_vec();
    inputs[2] = ("config", "nodb.toml");
    let r = ctx.action(&inputs).await;
    r.assert_code(2);
    assert!(
        r.stderr.contains("environments.stage.database: missing"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    let r = ctx
        .cli(&["snapshot", "--env", "stage", "-c", "deploy.toml"])
        .await;
    r.assert_code(2);
    assert!(
        r.stderr.contains("input `version`: missing"),
        "{}",
        r.stderr
    );
    let r = ctx
        .cli(&[
            "snapshot",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--version",
            "v 2",
        ])
        .await;
    r.assert_code(2);
    assert!(r.stderr.contains("input `version`"), "{}", r.stderr);
    assert_eq!(ctx.calls().await, vec![]);
}

/// The wait is bounded: a snapshot that never becomes available fails the phase with the next step.
#[tokio::test]
async fn a_snapshot_that_never_becomes_available_times_out_with_the_next_step() {
    use deploy_action::phases::snapshot;
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post("/_test/rds/snapshot-rules", json!({"neverAvailable": true}))
        .await;
    let config = deploy_action::config::Config::load(&ctx.config_path()).unwrap();
    let env = config.environment("stage").unwrap();
    let req = snapshot::Request {
        environment: "stage".into(),
        database: env.database.clone().unwrap(),
        version: deploy_action::version::Version::parse("v2.0.0").unwrap(),
        run_key: None,
        run_id: None,
    };
    let clients = snapshot::Clients::new(&ctx.sdk().await);
    let lib = lib_ctx(Duration::from_secs(3));
    let e = snapshot::run(&req, &clients, &lib).await.unwrap_err();
    let msg = format!("{e:#}");
    assert!(msg.contains("not available within"), "{msg}");
    assert!(msg.contains("run the snapshot phase again"), "{msg}");
}

/// A library-level phase context: text output, no workflow run, the given deadline, a fresh cancel token.
pub fn lib_ctx(deadline_in: Duration) -> deploy_action::phases::Ctx {
    deploy_action::phases::Ctx {
        runner: deploy_action::github::runner::Runner::new(
            &deploy_action::inputs::GithubEnv::default(),
            deploy_action::inputs::OutputFormat::Text,
        ),
        github: deploy_action::inputs::GithubEnv::default(),
        cancel: tokio_util::sync::CancellationToken::new(),
        deadline: tokio::time::Instant::now() + deadline_in,
        dry_run: false,
        pace: crate::support::pace(),
    }
}
