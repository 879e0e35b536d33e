//! Issue 22: every secret and every version shape, end to end against the local AWS: SSM secrets on the one-off
//! revisions (migration, `run`), versions that would collide in image tags.

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

/// Two versions that give the same image tag (`api/v1` and `api-v1`; `v1.0.0+a` and `v1.0.0-a`): the second is
/// refused with exit 2 naming both, before any AWS change, by every phase that takes a version.
#[tokio::test]
async fn a_version_colliding_with_a_known_one_is_refused_before_any_change() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-seed", "exitCode": 0, "describes": 2, "logs": ["done"]}),
    )
    .await;
    let known = [
        ("deploy", vec![("version", "api/v1")]),
        ("run", vec![("version", "api/v1"), ("task", "seed")]),
        ("snapshot", vec![("version", "v1.0.0+a")]),
    ];
    for (phase, extra) in &known {
        ctx.action(&inputs(phase, extra)).await.assert_code(0);
    }
    let refused = [
        ("deploy", vec![("version", "api-v1")], "api/v1"),
        (
            "run",
            vec![("version", "api-v1"), ("task", "seed")],
            "api/v1",
        ),
        ("rollback", vec![("version", "api-v1")], "api/v1"),
        ("snapshot", vec![("version", "v1.0.0-a")], "v1.0.0+a"),
        (
            "migrate",
            vec![("version", "v1.0.0-a"), ("skip-drain", "true")],
            "v1.0.0+a",
        ),
    ];
    for (phase, extra, other) in &refused {
        ctx.clear_calls().await;
        let r = ctx.action(&inputs(phase, extra)).await;
        let new = extra[0].1;
        r.assert_code(2);
        let want =
            format!("input `version`: {new} collides with the version {other} already known here");
        assert!(r.stderr.contains(&want), "{phase}: {}", r.stderr);
        assert!(
            r.stderr.contains("pass a version that stays distinct"),
            "{}",
            r.stderr
        );
        assert_eq!(
            ctx.mutating_calls().await,
            Vec::<String>::new(),
            "{phase} {new}: nothing changed"
        );
    }
    // The same version again is no collision.
    ctx.action(&inputs("deploy", &[("version", "api/v1")]))
        .await
        .assert_code(0);
}

/// The ACTIVE revisions of a family, newest first, by their short name (`stage-core:3`).
async fn active(ctx: &TestContext, family: &str) -> Vec<String> {
    let out = ctx
        .ecs()
        .await
        .list_task_definitions()
        .family_prefix(family)
        .status(aws_sdk_ecs::types::TaskDefinitionStatus::Active)
        .send()
        .await
        .unwrap();
    let mut short: Vec<String> = out
        .task_definition_arns()
        .iter()
        .filter_map(|a| a.rsplit('/').next())
        .filter(|s| s.starts_with(&format!("{family}:")))
        .map(str::to_string)
        .collect();
    short.sort_by_key(|s| std::cmp::Reverse(s.rsplit(':').next().unwrap().parse::<i32>().unwrap()));
    short
}

/// `keep-revisions` after a successful deploy: older revisions of this action that no service, deployment or running
/// task uses are deregistered and named in the summary; one a running task uses stays, and so does the seeded
/// revision this action did not register.
#[tokio::test]
async fn deploy_keeps_the_newest_revisions_and_never_one_in_use() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let deploy = |v: &'static str| inputs("deploy", &[("version", v), ("keep-revisions", "2")]);
    ctx.action(&deploy("v1.1.0")).await.assert_code(0);
    ctx.action(&deploy("v1.2.0")).await.assert_code(0);
    assert_eq!(
        active(&ctx, "stage-core").await,
        ["stage-core:3", "stage-core:2", "stage-core:1"]
    );
    // A task still runs stage-core:2 (started by hand, say): it is in use.
    ctx.start_like_an_earlier_run("stage-core:2", "by-hand", "v1.1.0")
        .await;
    let r = ctx.action(&deploy("v1.3.0")).await;
    r.assert_code(0);
    assert_eq!(
        active(&ctx, "stage-core").await,
        [
            "stage-core:4",
            "stage-core:3",
            "stage-core:2",
            "stage-core:1"
        ],
        "2 is in use, 1 is not this action's"
    );
    assert_eq!(
        active(&ctx, "stage-workers").await,
        ["stage-workers:4", "stage-workers:3", "stage-workers:1"],
        "no task runs workers:2"
    );
    let line = |n: usize, which: &str| {
        format!("keep-revisions 2: deregistered {n} of this action's older revision(s) that no service, deployment or running task uses: {which}")
    };
    assert!(
        r.summary.contains(&line(1, "stage-workers:2")),
        "{}",
        r.summary
    );
    let r = ctx.action(&deploy("v1.4.0")).await;
    r.assert_code(0);
    assert_eq!(
        active(&ctx, "stage-core").await,
        [
            "stage-core:5",
            "stage-core:4",
            "stage-core:2",
            "stage-core:1"
        ]
    );
    assert_eq!(
        active(&ctx, "stage-workers").await,
        ["stage-workers:5", "stage-workers:4", "stage-workers:1"]
    );
    assert!(
        r.summary
            .contains(&line(2, "stage-core:3, stage-workers:3")),
        "{}",
        r.summary
    );
    // What was judged is remembered on the newest revision: core's 2 (in use then) is read again, workers' 1 (not
    // this action's, judged before) is not. Read: core 4 and 2, workers 4; three tag reads where five were made
    // before the mark.
    assert_eq!(
        judged_mark(&ctx, "stage-core:5").await.as_deref(),
        Some("1")
    );
    assert_eq!(
        judged_mark(&ctx, "stage-workers:5").await.as_deref(),
        Some("3")
    );
    let ecs = ctx.ecs().await;
    for task in ecs
        .list_tasks()
        .cluster("app-stage")
        .started_by("deploy-action")
        .send()
        .await
        .unwrap()
        .task_arns()
    {
        ecs.stop_task()
            .cluster("app-stage")
            .task(task)
            .send()
            .await
            .unwrap();
    }
    ctx.clear_calls().await;
    ctx.action(&deploy("v1.5.0")).await.assert_code(0);
    let calls = ctx.calls().await;
    let retention = calls
        .iter()
        .skip_while(|(_, o)| o != "ListTaskDefinitions")
        .take_while(|(_, o)| o != "DeregisterTaskDefinition");
    let tag_reads = retention
        .filter(|(_, o)| o == "ListTagsForResource")
        .count();
    assert_eq!(tag_reads, 3, "{calls:?}");
    assert_eq!(
        active(&ctx, "stage-core").await,
        ["stage-core:6", "stage-core:5", "stage-core:1"]
    );
    assert_eq!(
        active(&ctx, "stage-workers").await,
        ["stage-workers:6", "stage-workers:5", "stage-workers:1"]
    );
    assert_eq!(
        judged_mark(&ctx, "stage-core:6").await.as_deref(),
        Some("4")
    );
    assert_eq!(
        judged_mark(&ctx, "stage-workers:6").await.as_deref(),
        Some("4")
    );
}

/// Retention's mark on a revision (`deploy-action:retention-judged`).
async fn judged_mark(ctx: &TestContext, td: &str) -> Option<String> {
    let out = ctx
        .ecs()
        .await
        .describe_task_definition()
        .task_definition(td)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    out.tags()
        .iter()
        .find(|t| t.key() == Some("deploy-action:retention-judged"))
        .and_then(|t| t.value().map(str::to_string))
}

/// The image of a service's own container (`core` of service `core`), and its revision's version tag.
async fn running(ctx: &TestContext, service: &str) -> (String, Option<String>) {
    let ecs = ctx.ecs().await;
    let svc = ecs
        .describe_services()
        .cluster("app-stage")
        .services(service)
        .send()
        .await
        .unwrap();
    let td = svc.services()[0].task_definition().unwrap().to_string();
    let out = ecs
        .describe_task_definition()
        .task_definition(&td)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let image = out
        .task_definition()
        .unwrap()
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(service))
        .and_then(|c| c.image())
        .unwrap()
        .to_string();
    let tag = out
        .tags()
        .iter()
        .find(|t| t.key() == Some("deploy-action:version"))
        .and_then(|t| t.value())
        .map(str::to_string);
    (image, tag)
}

/// The snapshots of `app-stage`: (identifier, its `deploy-action:version` tag).
async fn snapshots(ctx: &TestContext) -> Vec<(String, Option<String>)> {
    let rds = ctx.rds().await;
    let out = rds
        .describe_db_snapshots()
        .db_instance_identifier("app-stage")
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    let mut v = vec![];
    for s in out.db_snapshots() {
        let tags = rds
            .list_tags_for_resource()
            .resource_name(s.db_snapshot_arn().unwrap())
            .send()
            .await
            .unwrap();
        let version = tags
            .tag_list()
            .iter()
            .find(|t| t.key() == Some("deploy-action:version"))
            .and_then(|t| t.value())
            .map(str::to_string);
        v.push((s.db_snapshot_identifier().unwrap().to_string(), version));
    }
    v
}

/// An rc, a label and a calendar version with a path, each through snapshot → migrate → deploy, then rollback (to
/// the last known good, then to a named version): the image tags, snapshot names and tags each gives (README table).
#[tokio::test]
async fn an_rc_a_label_and_a_calver_go_through_the_release_flow_and_back() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-migrate", "exitCode": 0, "describes": 2, "logs": ["done"]}),
    )
    .await;
    let repo = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/app";
    let shapes = [
        ("v3.56.2-rc1", "v3.56.2-rc1", "deploy-stage-v3-56-2-rc1-"),
        ("drizzle-init", "drizzle-init", "deploy-stage-drizzle-init-"),
        (
            "api/v2024.10.02.1",
            "api-v2024.10.02.1",
            "deploy-stage-api-v2024-10-02-1-",
        ),
    ];
    for (i, (v, tag, snap)) in shapes.iter().enumerate() {
        let r = ctx.action(&inputs("snapshot", &[("version", v)])).await;
        r.assert_code(0);
        let id = r.outputs["snapshot-id"].clone();
        assert!(id.starts_with(snap), "{v}: {id}");
        assert!(
            snapshots(&ctx)
                .await
                .contains(&(id.clone(), Some(v.to_string()))),
            "{v}: snapshot {id} tagged with the version as given"
        );
        let r = ctx
            .action(&inputs(
                "migrate",
                &[("version", v), ("skip-drain", "true")],
            ))
            .await;
        r.assert_code(0);
        assert_eq!(r.outputs["snapshot-id"], id, "{v}");
        let migrate_td = format!("stage-migrate:{}", i + 2);
        let def = ctx
            .ecs()
            .await
            .describe_task_definition()
            .task_definition(&migrate_td)
            .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
            .send()
            .await
            .unwrap();
        assert_eq!(
            def.task_definition().unwrap().container_definitions()[0].image(),
            Some(format!("{repo}:migrate-{tag}").as_str()),
            "{v}"
        );
        assert!(
            def.tags()
                .iter()
                .any(|t| t.key() == Some("deploy-action:version") && t.value() == Some(*v)),
            "{v}: {:?}",
            def.tags()
        );
        let r = ctx.action(&inputs("deploy", &[("version", v)])).await;
        r.assert_code(0);
        assert_eq!(r.outputs["version"], *v);
        assert_eq!(
            running(&ctx, "core").await,
            (format!("{repo}:core-{tag}"), Some(v.to_string())),
            "{v}"
        );
    }
    // The calver is the last known good: a plain rollback has nothing to do and names the earlier versions; back to
    // the label, then to the rc, by name.
    let r = ctx.action(&inputs("rollback", &[])).await;
    r.assert_code(0);
    assert_eq!(r.outputs["changed"], "false");
    let earlier = &r.outputs["earlier-versions"];
    assert!(
        earlier.contains("drizzle-init") && earlier.contains("v3.56.2-rc1"),
        "{earlier}"
    );
    let r = ctx
        .action(&inputs("rollback", &[("version", "drizzle-init")]))
        .await;
    r.assert_code(0);
    assert_eq!(
        running(&ctx, "core").await,
        (
            format!("{repo}:core-drizzle-init"),
            Some("drizzle-init".to_string())
        )
    );
    let r = ctx
        .action(&inputs("rollback", &[("version", "v3.56.2-rc1")]))
        .await;
    r.assert_code(0);
    assert_eq!(
        running(&ctx, "core").await,
        (
            format!("{repo}:core-v3.56.2-rc1"),
            Some("v3.56.2-rc1".to_string())
        )
    );
}
