//! Issue 9: phase `preview` (review apps per pull request) against the local AWS, with a stateful fake of the GitHub
//! API (deployments, statuses, pull request comments) on wiremock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_ecs::types::TaskDefinitionStatus;
use aws_sdk_elasticloadbalancingv2::types::{
    HostHeaderConditionConfig, PathPatternConditionConfig, RuleCondition,
};
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::sigint::{hold_next_call, sigint_when_held};
use crate::support::{finish, RunResult, TestContext};

const ENV: &str = "review";
const CLUSTER: &str = "app-review";
const HOST: &str = "pr-12.review.example.org";
const REPO: &str = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/app";
const MARKER: &str = "<!-- deploy-action:preview:review -->";

// ---- A fake GitHub API that keeps what it is sent. ----

#[derive(Debug, Default)]
struct Github {
    /// (deployment as GitHub returns it, its statuses newest first)
    deployments: Vec<(Value, Vec<Value>)>,
    comments: Vec<Value>,
    /// Every request: (method, path).
    log: Vec<(String, String)>,
    next: u64,
}

#[derive(Clone, Default)]
pub(crate) struct FakeGithub(Arc<Mutex<Github>>);

impl FakeGithub {
    fn state(&self) -> std::sync::MutexGuard<'_, Github> {
        self.0.lock().unwrap()
    }

    fn writes(&self) -> Vec<(String, String)> {
        self.state()
            .log
            .iter()
            .filter(|(m, _)| m != "GET")
            .cloned()
            .collect()
    }

    fn count(&self, method: &str, path: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count()
    }
}

impl Respond for FakeGithub {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut gh = self.0.lock().unwrap();
        let method = req.method.as_str().to_string();
        let path = req.url.path().to_string();
        gh.log.push((method.clone(), path.clone()));
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let query: BTreeMap<String, String> = req.url.query_pairs().into_owned().collect();
        let parts: Vec<&str> = path
            .trim_start_matches("/repos/acme/backend/")
            .split('/')
            .collect();
        gh.next += 1;
        let id = 100 + gh.next;
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["deployments"]) => {
                let env = query.get("environment").cloned().unwrap_or_default();
                let list: Vec<Value> = gh
                    .deployments
                    .iter()
                    .rev()
                    .filter(|(d, _)| d["environment"] == env.as_str())
                    .map(|(d, _)| d.clone())
                    .collect();
                ResponseTemplate::new(200).set_body_json(list)
            }
            ("POST", ["deployments"]) => {
                let mut d = body.clone();
                d["id"] = json!(id);
                d["sha"] = json!("0123abc");
                d["created_at"] = json!("2026-07-01T10:00:00Z");
                gh.deployments.push((d.clone(), vec![]));
                ResponseTemplate::new(201).set_body_json(d)
            }
            ("GET", ["deployments", d, "statuses"]) => {
                let d: u64 = d.parse().unwrap();
                let statuses = gh
                    .deployments
                    .iter()
                    .find(|(x, _)| x["id"] == d)
                    .map(|(_, s)| s.clone())
                    .unwrap_or_default();
                ResponseTemplate::new(200).set_body_json(statuses)
            }
            ("POST", ["deployments", d, "statuses"]) => {
                let d: u64 = d.parse().unwrap();
                let mut s = body.clone();
                s["id"] = json!(id);
                match gh.deployments.iter_mut().find(|(x, _)| x["id"] == d) {
                    Some((_, statuses)) => {
                        statuses.insert(0, s.clone());
                        ResponseTemplate::new(201).set_body_json(s)
                    }
                    None => {
                        ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}))
                    }
                }
            }
            ("GET", ["actions", "runs", _]) => {
                ResponseTemplate::new(200).set_body_json(json!({"status": "in_progress"}))
            }
            ("GET", ["issues", _, "comments"]) => {
                ResponseTemplate::new(200).set_body_json(gh.comments.clone())
            }
            ("POST", ["issues", n, "comments"]) => {
                let c = json!({"id": id, "body": body["body"],
                    "html_url": format!("https://github.com/acme/backend/pull/{n}#issuecomment-{id}"),
                    "user": {"login": "github-actions[bot]"}});
                gh.comments.push(c.clone());
                ResponseTemplate::new(201).set_body_json(c)
            }
            ("PATCH", ["issues", "comments", c]) => {
                let c: u64 = c.parse().unwrap();
                match gh.comments.iter_mut().find(|x| x["id"] == c) {
                    Some(x) => {
                        x["body"] = body["body"].clone();
                        ResponseTemplate::new(200).set_body_json(x.clone())
                    }
                    None => {
                        ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}))
                    }
                }
            }
            _ => ResponseTemplate::new(404)
                .set_body_json(json!({"message": format!("fake: {method} {path}")})),
        }
    }
}

pub(crate) async fn github() -> (MockServer, FakeGithub) {
    let server = MockServer::start().await;
    let fake = FakeGithub::default();
    Mock::given(any())
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    (server, fake)
}

// ---- The environment. ----

/// Seeds `review` (no database, no maintenance) and makes it a review-app template: the listener and VPC of the seed,
/// the seed family for the seed and teardown tasks.
pub(crate) async fn seed_template(ctx: &TestContext, route: &str) -> PathBuf {
    let path = ctx.seed(ENV, &["--no-database", "--no-maintenance"]);
    let elb = ctx.elb().await;
    let listener = listener(ctx).await;
    let tg = elb
        .describe_target_groups()
        .names("review-core")
        .send()
        .await
        .unwrap();
    let vpc = tg.target_groups()[0].vpc_id().unwrap().to_string();
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        r#"
[environments.review.preview]
service = "core"
listener-arn = "{listener}"
{route}
priority-range = [1000, 1099]
target-group = {{ vpc-id = "{vpc}", port = 8080, health-check-path = "/health" }}

[environments.review.preview.seed]
family = "review-seed"
container = "seed"
command = ["npm", "run", "db:create", "--", "pr_{{number}}"]
image-tag = "core-{{version}}"

[environments.review.preview.teardown]
family = "review-seed"
container = "seed"
command = ["npm", "run", "db:drop", "--", "pr_{{number}}"]
image-tag = "core-{{version}}"
"#
    ));
    std::fs::write(&path, text).unwrap();
    ctx.clear_calls().await;
    path
}

/// Nothing of PR 12's review app is left: no active service, target group, rule or revision.
async fn assert_no_review_app(ctx: &TestContext) {
    assert!(service(ctx, "core-pr-12")
        .await
        .is_none_or(|s| s.status() == Some("INACTIVE")));
    assert!(target_group(ctx, "core-pr-12").await.is_none());
    assert!(rules(ctx)
        .await
        .iter()
        .all(|(_, c, _, _)| *c != host_rule(HOST)));
    assert!(
        revisions(ctx, "review-core-pr-12", TaskDefinitionStatus::Active)
            .await
            .is_empty()
    );
}

/// The CLI front end: up for PR 12 with version pr-12-abc (no GitHub).
const CLI_UP: [&str; 9] = [
    "preview",
    "--env",
    ENV,
    "--config",
    "deploy.toml",
    "--pr-number",
    "12",
    "--version",
    "pr-12-abc",
];

async fn cli_up(ctx: &TestContext) -> RunResult {
    ctx.cli(&CLI_UP).await
}

pub(crate) const BY_HOST: &str = r#"host = "pr-{number}.review.example.org""#;

fn event_file(ctx: &TestContext, payload: Value) -> String {
    let p = ctx.path().join(format!("event-{}.json", rand_id()));
    std::fs::write(&p, payload.to_string()).unwrap();
    p.display().to_string()
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// The Action front end on a `pull_request` event for PR 12, recording to the fake GitHub.
pub(crate) async fn preview(
    ctx: &TestContext,
    server: &MockServer,
    inputs: &[(&str, &str)],
) -> RunResult {
    let event = event_file(
        ctx,
        json!({"action": "synchronize", "number": 12, "pull_request": {"number": 12}}),
    );
    let mut all = vec![
        ("phase", "preview"),
        ("environment", ENV),
        ("config", "deploy.toml"),
        ("github-token", "t0ken"),
    ];
    all.extend_from_slice(inputs);
    let uri = server.uri();
    ctx.action_with_env(
        &all,
        &[
            ("GITHUB_API_URL", uri.as_str()),
            ("GITHUB_EVENT_PATH", event.as_str()),
            ("GITHUB_SHA", "0123abc"),
        ],
    )
    .await
}

async fn service(ctx: &TestContext, name: &str) -> Option<aws_sdk_ecs::types::Service> {
    let out = ctx
        .ecs()
        .await
        .describe_services()
        .cluster(CLUSTER)
        .services(name)
        .include(aws_sdk_ecs::types::ServiceField::Tags)
        .send()
        .await
        .unwrap();
    out.services().first().cloned()
}

/// The seeded load balancer's listener.
async fn listener(ctx: &TestContext) -> String {
    let elb = ctx.elb().await;
    let lb = elb
        .describe_load_balancers()
        .names(CLUSTER)
        .send()
        .await
        .unwrap();
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(lb.load_balancers()[0].load_balancer_arn().unwrap())
        .send()
        .await
        .unwrap();
    listeners.listeners()[0].listener_arn().unwrap().to_string()
}

/// A rule of someone else on the listener, forwarding to the template's target group.
async fn foreign_rule(
    ctx: &TestContext,
    priority: i32,
    condition: aws_sdk_elasticloadbalancingv2::types::RuleCondition,
) {
    use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum};
    let tg = target_group(ctx, "review-core").await.unwrap();
    ctx.elb()
        .await
        .create_rule()
        .listener_arn(listener(ctx).await)
        .priority(priority)
        .conditions(condition)
        .actions(
            Action::builder()
                .r#type(ActionTypeEnum::Forward)
                .target_group_arn(tg.target_group_arn().unwrap())
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// The listener's rules as (priority, conditions as JSON, forward target groups, ARN).
async fn rules(ctx: &TestContext) -> Vec<(String, Value, Vec<String>, String)> {
    let elb = ctx.elb().await;
    let out = elb
        .describe_rules()
        .listener_arn(listener(ctx).await)
        .send()
        .await
        .unwrap();
    out.rules()
        .iter()
        .map(|r| {
            let conditions: Vec<Value> = r
                .conditions()
                .iter()
                .map(|c| {
                    json!({
                        "field": c.field(),
                        "host": c.host_header_config().map(|h| h.values().to_vec()),
                        "path": c.path_pattern_config().map(|p| p.values().to_vec()),
                    })
                })
                .collect();
            let forwards: Vec<String> = r
                .actions()
                .iter()
                .filter_map(|a| a.target_group_arn().map(str::to_string))
                .collect();
            (
                r.priority().unwrap_or_default().to_string(),
                Value::Array(conditions),
                forwards,
                r.rule_arn().unwrap().to_string(),
            )
        })
        .collect()
}

fn host_rule(host: &str) -> Value {
    json!([{"field": "host-header", "host": [host], "path": null}])
}

async fn target_group(
    ctx: &TestContext,
    name: &str,
) -> Option<aws_sdk_elasticloadbalancingv2::types::TargetGroup> {
    match ctx
        .elb()
        .await
        .describe_target_groups()
        .names(name)
        .send()
        .await
    {
        Ok(out) => out.target_groups().first().cloned(),
        Err(e) => {
            let code = aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata::code(&e);
            assert_eq!(code, Some("TargetGroupNotFound"), "{e:?}");
            None
        }
    }
}

async fn revisions(ctx: &TestContext, family: &str, status: TaskDefinitionStatus) -> Vec<String> {
    ctx.ecs()
        .await
        .list_task_definitions()
        .family_prefix(family)
        .status(status)
        .send()
        .await
        .unwrap()
        .task_definition_arns()
        .to_vec()
}

/// The tasks the emulator ran in one task group, with the command each was given.
async fn group_tasks(ctx: &TestContext, group: &str) -> Vec<(String, Vec<String>)> {
    let all = ctx.get("/_test/ecs/tasks").await;
    let arns: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["group"] == group)
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect();
    if arns.is_empty() {
        return vec![];
    }
    let out = ctx
        .ecs()
        .await
        .describe_tasks()
        .cluster(CLUSTER)
        .set_tasks(Some(arns))
        .send()
        .await
        .unwrap();
    out.tasks()
        .iter()
        .map(|t| {
            let command = t
                .overrides()
                .and_then(|o| o.container_overrides().first())
                .map(|c| c.command().to_vec())
                .unwrap_or_default();
            (t.task_definition_arn().unwrap().to_string(), command)
        })
        .collect()
}

fn tag<'a>(tags: &'a [aws_sdk_ecs::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

#[tokio::test]
async fn preview_up_update_down_and_down_again_end_to_end() {
    let ctx = TestContext::new().await;
    seed_template(&ctx, BY_HOST).await;
    let (server, gh) = github().await;
    let seed_family = revisions(&ctx, "review-seed", TaskDefinitionStatus::Active).await;
    assert!(!seed_family.is_empty());

    // ---- Up: service, target group, rule, seed task, transient deployment, one comment. ----
    let r = preview(&ctx, &server, &[("version", "pr-12-abc1234")]).await;
    r.assert_code(0);
    // The seed task's revision (the PR's image in the shared family) is deregistered after it ran: the family's
    // latest revision is the environment's own again.
    assert_eq!(
        revisions(&ctx, "review-seed", TaskDefinitionStatus::Active).await,
        seed_family
    );
    assert_eq!(
        revisions(&ctx, "review-seed", TaskDefinitionStatus::Inactive)
            .await
            .len(),
        1
    );
    assert!(
        r.stdout.contains("(registered for the seed task)"),
        "{}",
        r.stdout
    );
    assert_eq!(r.outputs["url"], "https://pr-12.review.example.org");
    assert_eq!(r.outputs["preview-environment"], "review-pr-12");
    let svc = service(&ctx, "core-pr-12")
        .await
        .expect("the review app's service");
    assert_eq!(svc.status(), Some("ACTIVE"));
    assert_eq!(svc.desired_count(), 1);
    let td1 = svc.task_definition().unwrap().to_string();
    assert!(
        td1.ends_with("task-definition/review-core-pr-12:1"),
        "{td1}"
    );
    assert_eq!(tag(svc.tags(), "deploy-action:preview"), Some("12"));
    assert_eq!(tag(svc.tags(), "deploy-action:environment"), Some("review"));
    let td = ctx
        .ecs()
        .await
        .describe_task_definition()
        .task_definition(&td1)
        .send()
        .await
        .unwrap();
    let images: Vec<(String, String)> = td
        .task_definition()
        .unwrap()
        .container_definitions()
        .iter()
        .map(|c| {
            (
                c.name().unwrap().to_string(),
                c.image().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        images[0],
        ("core".into(), format!("{REPO}:core-pr-12-abc1234"))
    );
    assert_eq!(
        images.len(),
        2,
        "the template's sidecar is kept: {images:?}"
    );
    let tg = target_group(&ctx, "core-pr-12")
        .await
        .expect("target group");
    assert_eq!(
        (tg.port(), tg.health_check_path()),
        (Some(8080), Some("/health"))
    );
    let lb = &svc.load_balancers()[0];
    assert_eq!(lb.target_group_arn(), tg.target_group_arn());
    assert_eq!(
        (lb.container_name(), lb.container_port()),
        (Some("core"), Some(8080))
    );
    let ours: Vec<_> = rules(&ctx)
        .await
        .into_iter()
        .filter(|(_, c, _, _)| *c == host_rule(HOST))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert_eq!(ours[0].0, "1000", "the lowest free priority of the range");
    assert_eq!(ours[0].2, vec![tg.target_group_arn().unwrap().to_string()]);
    let seeds = group_tasks(&ctx, "deploy-action:review-pr-12:seed").await;
    assert_eq!(seeds.len(), 1, "{seeds:?}");
    assert_eq!(seeds[0].1, ["npm", "run", "db:create", "--", "pr_12"]);
    {
        let g = gh.state();
        assert_eq!(g.deployments.len(), 1, "{:?}", g.deployments);
        let (d, statuses) = &g.deployments[0];
        assert_eq!(d["environment"], "review-pr-12");
        assert_eq!(d["transient_environment"], true);
        assert_eq!(d["production_environment"], false);
        assert_eq!(d["payload"]["phase"], "preview");
        assert_eq!(statuses[0]["state"], "success");
        assert_eq!(
            statuses[0]["environment_url"],
            "https://pr-12.review.example.org"
        );
        assert_eq!(g.comments.len(), 1);
        let body = g.comments[0]["body"].as_str().unwrap();
        assert!(body.starts_with(MARKER), "{body}");
        assert!(
            body.contains("https://pr-12.review.example.org") && body.contains("pr-12-abc1234"),
            "{body}"
        );
    }
    let comment_id = gh.state().comments[0]["id"].clone();
    assert!(
        r.summary.contains("Review app `review-pr-12`"),
        "{}",
        r.summary
    );

    // ---- A second push: a new revision, the same rule, the same comment edited. ----
    let r = preview(&ctx, &server, &[("version", "pr-12-def5678")]).await;
    r.assert_code(0);
    let svc = service(&ctx, "core-pr-12").await.unwrap();
    let td2 = svc.task_definition().unwrap().to_string();
    assert!(td2.ends_with("review-core-pr-12:2"), "{td2}");
    assert_eq!(
        revisions(&ctx, "review-core-pr-12", TaskDefinitionStatus::Active).await,
        vec![td2.clone()],
        "the previous revision is deregistered once the new one runs"
    );
    let ours: Vec<_> = rules(&ctx)
        .await
        .into_iter()
        .filter(|(_, c, _, _)| *c == host_rule(HOST))
        .collect();
    assert_eq!(ours.len(), 1, "no second rule: {ours:?}");
    assert_eq!(
        group_tasks(&ctx, "deploy-action:review-pr-12:seed")
            .await
            .len(),
        1,
        "the seed runs only on the first up"
    );
    {
        let g = gh.state();
        assert_eq!(g.comments.len(), 1, "still one comment");
        assert_eq!(g.comments[0]["id"], comment_id);
        let body = g.comments[0]["body"].as_str().unwrap();
        assert!(
            body.contains("pr-12-def5678") && !body.contains("abc1234"),
            "{body}"
        );
        assert_eq!(g.deployments.len(), 2);
        assert!(g
            .deployments
            .iter()
            .all(|(d, _)| d["transient_environment"] == true));
    }
    assert_eq!(
        gh.count("POST", "/repos/acme/backend/issues/12/comments"),
        1
    );
    assert_eq!(
        gh.count(
            "PATCH",
            &format!("/repos/acme/backend/issues/comments/{comment_id}")
        ),
        1
    );

    // ---- Down: the teardown task first, then everything is gone; the deployments are inactive. ----
    let r = preview(&ctx, &server, &[("state", "stopped")]).await;
    r.assert_code(0);
    let teardowns = group_tasks(&ctx, "deploy-action:review-pr-12:teardown").await;
    assert_eq!(teardowns.len(), 1, "{teardowns:?}");
    assert_eq!(teardowns[0].1, ["npm", "run", "db:drop", "--", "pr_12"]);
    let teardown_td = ctx
        .ecs()
        .await
        .describe_task_definition()
        .task_definition(&teardowns[0].0)
        .send()
        .await
        .unwrap();
    assert_eq!(
        teardown_td
            .task_definition()
            .unwrap()
            .container_definitions()[0]
            .image(),
        Some(format!("{REPO}:core-pr-12-def5678").as_str()),
        "the teardown runs the version the review app ran"
    );
    match service(&ctx, "core-pr-12").await {
        None => {}
        Some(s) => assert_eq!(s.status(), Some("INACTIVE")),
    }
    assert!(
        rules(&ctx)
            .await
            .iter()
            .all(|(_, c, _, _)| *c != host_rule(HOST)),
        "the rule is deleted"
    );
    assert!(target_group(&ctx, "core-pr-12").await.is_none());
    assert!(
        revisions(&ctx, "review-core-pr-12", TaskDefinitionStatus::Active)
            .await
            .is_empty()
    );
    assert_eq!(
        revisions(&ctx, "review-core-pr-12", TaskDefinitionStatus::Inactive)
            .await
            .len(),
        2
    );
    assert_eq!(
        revisions(&ctx, "review-seed", TaskDefinitionStatus::Active).await,
        seed_family,
        "the teardown task's revision is deregistered too"
    );
    assert_eq!(
        revisions(&ctx, "review-seed", TaskDefinitionStatus::Inactive)
            .await
            .len(),
        2
    );
    {
        let g = gh.state();
        assert_eq!(
            g.deployments.len(),
            2,
            "a teardown makes no deployment record"
        );
        for (d, statuses) in &g.deployments {
            assert_eq!(statuses[0]["state"], "inactive", "deployment {}", d["id"]);
        }
        assert_eq!(g.comments.len(), 1);
        let body = g.comments[0]["body"].as_str().unwrap();
        assert!(
            body.starts_with(MARKER) && body.contains("Torn down"),
            "{body}"
        );
    }
    // The teardown task ran before anything was removed.
    let calls = ctx.calls().await;
    let run_task = calls.iter().position(|(_, op)| op == "RunTask").unwrap();
    let delete_rule = calls.iter().position(|(_, op)| op == "DeleteRule").unwrap();
    let delete_service = calls
        .iter()
        .position(|(_, op)| op == "DeleteService")
        .unwrap();
    assert!(
        run_task < delete_rule && delete_rule < delete_service,
        "{calls:?}"
    );

    // ---- Down again: nothing there, no error, nothing changed anywhere. ----
    ctx.clear_calls().await;
    let writes_before = gh.writes().len();
    let r = preview(&ctx, &server, &[("state", "stopped")]).await;
    r.assert_code(0);
    assert!(r.stdout.contains("nothing to tear down"), "{}", r.stdout);
    assert!(
        ctx.mutating_calls().await.is_empty(),
        "{:?}",
        ctx.mutating_calls().await
    );
    assert_eq!(gh.writes().len(), writes_before, "{:?}", gh.writes());
}

#[tokio::test]
async fn preview_by_path_takes_the_next_free_priority_and_exact_conditions() {
    let ctx = TestContext::new().await;
    seed_template(&ctx, r#"path = "/pr-{number}/*""#).await;
    // Another app's rule holds the first priority of the range.
    foreign_rule(
        &ctx,
        1000,
        RuleCondition::builder()
            .field("path-pattern")
            .path_pattern_config(
                PathPatternConditionConfig::builder()
                    .values("/other/*")
                    .build(),
            )
            .build(),
    )
    .await;
    let r = ctx
        .cli(&[
            "preview",
            "--env",
            ENV,
            "--config",
            "deploy.toml",
            "--pr-number",
            "7",
            "--version",
            "pr-7-abc",
        ])
        .await;
    r.assert_code(0);
    assert!(
        r.stdout
            .contains("is up at https://review.example.org/pr-7/"),
        "the URL is the environment's URL and the path: {}",
        r.stdout
    );
    let ours: Vec<_> = rules(&ctx)
        .await
        .into_iter()
        .filter(|(_, c, _, _)| {
            *c == json!([{"field": "path-pattern", "host": null, "path": ["/pr-7/*"]}])
        })
        .collect();
    assert_eq!(ours.len(), 1, "{:?}", rules(&ctx).await);
    assert_eq!(ours[0].0, "1001");
    let pr_tg = target_group(&ctx, "core-pr-7").await.unwrap();
    assert_eq!(
        ours[0].2,
        vec![pr_tg.target_group_arn().unwrap().to_string()]
    );
}

#[tokio::test]
async fn preview_a_host_another_rule_routes_exits_2_and_creates_nothing() {
    let ctx = TestContext::new().await;
    seed_template(&ctx, BY_HOST).await;
    foreign_rule(
        &ctx,
        50,
        RuleCondition::builder()
            .field("host-header")
            .host_header_config(HostHeaderConditionConfig::builder().values(HOST).build())
            .build(),
    )
    .await;
    ctx.clear_calls().await;
    // Through the Action, with GitHub: the refusal comes before the deployment record, so GitHub is not written
    // to either (no deployment, no status, no comment).
    let (server, gh) = github().await;
    let r = preview(&ctx, &server, &[("version", "pr-12-abc")]).await;
    r.assert_code(2);
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("would collide"))
        .unwrap_or_default();
    assert!(
        line.contains(HOST) && line.contains("priority 50") && line.contains("nothing was created"),
        "{}",
        r.stderr
    );
    assert!(gh.writes().is_empty(), "{:?}", gh.writes());
    assert!(
        ctx.mutating_calls().await.is_empty(),
        "{:?}",
        ctx.mutating_calls().await
    );
    assert!(service(&ctx, "core-pr-12").await.is_none());
    assert!(target_group(&ctx, "core-pr-12").await.is_none());

    // The CLI front end says the same in one line.
    let r = cli_up(&ctx).await;
    r.assert_code(2);
    let line = r.stderr.lines().last().unwrap_or_default();
    assert!(
        line.contains("would collide") && line.contains(HOST) && line.contains("priority 50"),
        "{}",
        r.stderr
    );
    assert!(ctx.mutating_calls().await.is_empty());
}

#[tokio::test]
async fn preview_a_service_of_its_name_that_is_not_its_own_exits_2_before_github() {
    let ctx = TestContext::new().await;
    seed_template(&ctx, BY_HOST).await;
    let core = service(&ctx, "core").await.unwrap();
    ctx.ecs()
        .await
        .create_service()
        .cluster(CLUSTER)
        .service_name("core-pr-12")
        .task_definition(core.task_definition().unwrap())
        .desired_count(0)
        .send()
        .await
        .unwrap();
    ctx.clear_calls().await;
    let (server, gh) = github().await;
    let r = preview(&ctx, &server, &[("version", "pr-12-abc")]).await;
    r.assert_code(2);
    assert!(
        r.stderr.contains(
            "ECS service app-review/core-pr-12 exists but is not this review app's (no tags deploy-action:preview=12"
        ),
        "{}",
        r.stderr
    );
    assert!(gh.writes().is_empty(), "{:?}", gh.writes());
    assert!(
        ctx.mutating_calls().await.is_empty(),
        "{:?}",
        ctx.mutating_calls().await
    );
    // Down leaves it alone too, with a warning, and succeeds (nothing of this review app's exists).
    let r = preview(&ctx, &server, &[("state", "stopped")]).await;
    r.assert_code(0);
    assert!(r.stderr.contains("not this review app's"), "{}", r.stderr);
    assert_eq!(
        service(&ctx, "core-pr-12").await.unwrap().status(),
        Some("ACTIVE")
    );
}

#[tokio::test]
async fn preview_a_seed_family_that_does_not_exist_names_its_config_key() {
    let ctx = TestContext::new().await;
    let path = seed_template(&ctx, BY_HOST).await;
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "[environments.review.preview.seed]\nfamily = \"review-seed\"",
        "[environments.review.preview.seed]\nfamily = \"review-seeed\"",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let r = cli_up(&ctx).await;
    // The preflight: the config is at fault (exit 2), and nothing was made.
    r.assert_code(2);
    assert!(
        r.stderr.contains(
            "task definition family review-seeed has no ACTIVE revision; register one, or correct environments.review.preview.seed.family in the config"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("preflight (preview):"), "{}", r.stdout);
    assert!(
        r.stdout.contains("task seed task definition"),
        "{}",
        r.stdout
    );
    assert!(
        ctx.mutating_calls().await.is_empty(),
        "{:?}",
        ctx.mutating_calls().await
    );
    assert!(service(&ctx, "core-pr-12").await.is_none());
    assert!(target_group(&ctx, "core-pr-12").await.is_none());
}

#[tokio::test]
async fn preview_down_with_a_teardown_container_that_does_not_exist_removes_nothing() {
    let ctx = TestContext::new().await;
    let path = seed_template(&ctx, BY_HOST).await;
    cli_up(&ctx).await.assert_code(0);
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        "[environments.review.preview.teardown]\nfamily = \"review-seed\"\ncontainer = \"seed\"",
        "[environments.review.preview.teardown]\nfamily = \"review-seed\"\ncontainer = \"sed\"",
        1,
    );
    std::fs::write(&path, text).unwrap();
    ctx.clear_calls().await;
    let mut down: Vec<&str> = CLI_UP.to_vec();
    down.extend(["--state", "stopped"]);
    let r = ctx.cli(&down).await;
    r.assert_code(2);
    assert!(
        r.stderr
            .contains("has no container \"sed\" (it has: seed); correct environments.review.preview.teardown.container in the config"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("task teardown container"), "{}", r.stdout);
    assert!(
        ctx.mutating_calls().await.is_empty(),
        "{:?}",
        ctx.mutating_calls().await
    );
    assert!(service(&ctx, "core-pr-12").await.is_some());
    assert!(target_group(&ctx, "core-pr-12").await.is_some());
}

#[tokio::test]
async fn preview_revisions_take_secrets_from_the_template_environments_ssm_path() {
    let ctx = TestContext::new().await;
    seed_template(&ctx, BY_HOST).await;
    ctx.ssm_secrets(
        "cluster = \"app-review\"",
        "/app/review/",
        &[
            ("/app/review/DATABASE_URL", "postgres://review-secret"),
            ("/app/other/X", "no"),
        ],
    )
    .await;
    let (server, _gh) = github().await;
    let r = preview(&ctx, &server, &[("version", "pr-12-abc")]).await;
    r.assert_code(0);
    let td = service(&ctx, "core-pr-12")
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .to_string();
    let secrets = ctx.container_secrets(&td, "core").await;
    assert_eq!(
        secrets,
        vec![(
            "DATABASE_URL".to_string(),
            "arn:aws:ssm:eu-central-1:123456789012:parameter/app/review/DATABASE_URL".to_string()
        )]
    );
    for out in [&r.stdout, &r.stderr, &r.summary] {
        assert!(!out.contains("postgres://review-secret"));
    }
    // The same push again: the revision is already right, nothing is registered or changed.
    ctx.clear_calls().await;
    preview(&ctx, &server, &[("version", "pr-12-abc")])
        .await
        .assert_code(0);
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
}

/// kill -9 while the seed task runs, then the rerun: it attaches to that task (never a second seed), and the revision
/// the killed run registered for it is deregistered all the same.
#[tokio::test]
async fn preview_killed_during_its_seed_then_rerun_attaches_and_leaves_no_seed_revision() {
    let ctx = TestContext::new().await;
    seed_template(&ctx, BY_HOST).await;
    let seed_family = revisions(&ctx, "review-seed", TaskDefinitionStatus::Active).await;
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "db:create", "runningSeconds": 10, "logs": ["creating pr_12"]}),
    )
    .await;
    let mut cmd = ctx.base_command();
    cmd.args(CLI_UP);
    let mut child = cmd.spawn().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while group_tasks(&ctx, "deploy-action:review-pr-12:seed")
        .await
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the seed task started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    child.kill().await.unwrap();
    assert_eq!(
        revisions(&ctx, "review-seed", TaskDefinitionStatus::Active)
            .await
            .len(),
        seed_family.len() + 1,
        "the killed run registered the seed's revision"
    );
    let r = cli_up(&ctx).await;
    r.assert_code(0);
    assert!(r.stderr.contains("attaching to it"), "{}", r.stderr);
    assert_eq!(
        group_tasks(&ctx, "deploy-action:review-pr-12:seed")
            .await
            .len(),
        1,
        "one seed task"
    );
    assert_eq!(
        revisions(&ctx, "review-seed", TaskDefinitionStatus::Active).await,
        seed_family
    );
    assert!(service(&ctx, "core-pr-12").await.is_some());
}

/// A roll-out stopped by the circuit breaker, then the same push again: the service is already on that revision, so
/// UpdateService alone would start nothing; the rerun forces a new deployment and converges.
#[tokio::test]
async fn preview_rerun_after_a_failed_roll_out_of_the_same_version_converges() {
    let ctx = TestContext::new().await;
    seed_template(&ctx, BY_HOST).await;
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "core-pr-12", "outcome": "FAILED", "times": 1, "taskLogs": ["panic: no DATABASE_URL"]}),
    )
    .await;
    let r = cli_up(&ctx).await;
    r.assert_code(1);
    assert!(r.stdout.contains("did not complete"), "{}", r.stdout);
    assert!(r.stdout.contains("panic: no DATABASE_URL"), "{}", r.stdout);
    assert!(r.stdout.contains("stopped task"), "{}", r.stdout);
    let r = cli_up(&ctx).await;
    r.assert_code(0);
    assert!(
        r.stdout.contains("(its last roll-out failed)"),
        "{}",
        r.stdout
    );
    let svc = service(&ctx, "core-pr-12").await.unwrap();
    let primary = svc
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .unwrap();
    assert_eq!(
        primary.rollout_state(),
        Some(&aws_sdk_ecs::types::DeploymentRolloutState::Completed)
    );
    assert_eq!(
        group_tasks(&ctx, "deploy-action:review-pr-12:seed")
            .await
            .len(),
        1,
        "the seed ran once: the service existed on the rerun"
    );
}

/// CreateTargetGroup, then CreateRule, refused on every attempt half-way through the first up: the error says what
/// exists already; the rerun finishes it (reusing the revision and target group) and a teardown removes all of it.
#[tokio::test]
async fn preview_failing_half_way_says_what_exists_and_a_rerun_then_teardown_converge() {
    let ctx = TestContext::new().await;
    seed_template(&ctx, BY_HOST).await;
    for (op, what) in [
        (
            "CreateTargetGroup",
            "creating the review app's target group",
        ),
        ("CreateRule", "creating the review app's listener rule"),
    ] {
        ctx.post(
            "/_test/faults",
            json!({"operation": op, "kind": "503", "count": 5}),
        )
        .await;
        let r = cli_up(&ctx).await;
        r.assert_code(1);
        let line = r.stderr.lines().last().unwrap_or_default();
        assert!(
            line.contains(what)
                && line.contains("done so far")
                && line.contains("run again to finish, or tear it down with state: stopped"),
            "{op}: {}",
            r.stderr
        );
        assert!(
            service(&ctx, "core-pr-12").await.is_none(),
            "{op}: the service is created last"
        );
    }
    ctx.http
        .delete(format!("{}/_test/faults", ctx.url))
        .send()
        .await
        .unwrap();
    cli_up(&ctx).await.assert_code(0);
    assert_eq!(
        group_tasks(&ctx, "deploy-action:review-pr-12:seed")
            .await
            .len(),
        3,
        "the seed runs again while the service does not exist (it must be safe to repeat)"
    );
    let ours: Vec<_> = rules(&ctx)
        .await
        .into_iter()
        .filter(|(_, c, _, _)| *c == host_rule(HOST))
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    let r = ctx
        .cli(&[
            "preview",
            "--env",
            ENV,
            "--config",
            "deploy.toml",
            "--pr-number",
            "12",
            "--state",
            "stopped",
        ])
        .await;
    r.assert_code(0);
    assert_no_review_app(&ctx).await;
}

#[tokio::test]
async fn preview_a_failing_seed_creates_nothing_else() {
    let ctx = TestContext::new().await;
    seed_template(&ctx, BY_HOST).await;
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "db:create", "exitCode": 1, "logs": ["ERROR: database pr_12 already exists"]}),
    )
    .await;
    let r = cli_up(&ctx).await;
    r.assert_code(1);
    assert!(
        r.stdout.contains("task seed failed: exit code 1"),
        "{}",
        r.stdout
    );
    assert_no_review_app(&ctx).await;
}

#[tokio::test]
async fn preview_bad_input_exits_2_with_zero_aws_calls() {
    let ctx = TestContext::new().await;
    let path = seed_template(&ctx, BY_HOST).await;
    // A second environment without a [preview] table.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[environments.plain]\ncluster = \"app-plain\"\n[environments.plain.services.core]\ncontainers = [\"core\"]\n");
    std::fs::write(&path, text).unwrap();
    let (server, gh) = github().await;
    let push = event_file(&ctx, json!({"ref": "refs/heads/main", "after": "0123abc"}));
    /// (inputs over the defaults, extra environment, what the one line says)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        // No PR number: a push event and no input.
        (
            vec![("version", "pr-12-abc")],
            vec![("GITHUB_EVENT_PATH", push.as_str())],
            "input `pr-number`: missing",
        ),
        (
            vec![("version", "pr-12-abc"), ("pr-number", "twelve")],
            vec![],
            "input `pr-number`",
        ),
        // The template does not exist, or is no template.
        (
            vec![
                ("version", "pr-12-abc"),
                ("pr-number", "12"),
                ("environment", "reviw"),
            ],
            vec![],
            "input `environment`: unknown environment \"reviw\"",
        ),
        (
            vec![
                ("version", "pr-12-abc"),
                ("pr-number", "12"),
                ("environment", "plain"),
            ],
            vec![],
            "environments.plain.preview: missing",
        ),
        (
            vec![("pr-number", "12")],
            vec![],
            "input `version`: missing",
        ),
        (
            vec![
                ("version", "pr-12-abc"),
                ("pr-number", "12"),
                ("state", "down"),
            ],
            vec![],
            "input `state`",
        ),
    ];
    for (inputs, env, want) in cases {
        let mut all = vec![
            ("phase", "preview"),
            ("environment", ENV),
            ("config", "deploy.toml"),
            ("github-token", "t0ken"),
        ];
        for (k, v) in &inputs {
            all.retain(|(x, _)| x != k);
            all.push((k, v));
        }
        let uri = server.uri();
        let mut env = env.clone();
        env.push(("GITHUB_API_URL", uri.as_str()));
        let r = ctx.action_with_env(&all, &env).await;
        r.assert_code(2);
        assert!(
            r.stderr.contains(want),
            "{inputs:?}: want {want:?} in {}",
            r.stderr
        );
        assert!(
            ctx.calls().await.is_empty(),
            "{inputs:?}: {:?}",
            ctx.calls().await
        );
        assert!(
            gh.state().log.is_empty(),
            "{inputs:?}: {:?}",
            gh.state().log
        );
    }
}

/// AWS refuses RunTask on a deregistered (INACTIVE) revision. Up deregisters the seed task's revision once it ran; a
/// down right after it, at the same version, must run its teardown task on a fresh ACTIVE revision, never on the seed's
/// (the local AWS is strict: such a RunTask would fail with ClientException "TaskDefinition is inactive").
#[tokio::test]
async fn preview_teardown_right_after_the_seed_never_runs_the_inactive_seed_revision() {
    let ctx = TestContext::new().await;
    seed_template(&ctx, BY_HOST).await;
    cli_up(&ctx).await.assert_code(0);
    let seeds = group_tasks(&ctx, "deploy-action:review-pr-12:seed").await;
    assert_eq!(seeds.len(), 1, "{seeds:?}");
    let inactive = revisions(&ctx, "review-seed", TaskDefinitionStatus::Inactive).await;
    assert_eq!(
        inactive,
        vec![seeds[0].0.clone()],
        "the seed's revision is INACTIVE"
    );

    let r = ctx
        .cli(&[
            "preview",
            "--env",
            ENV,
            "--config",
            "deploy.toml",
            "--pr-number",
            "12",
            "--state",
            "stopped",
        ])
        .await;
    r.assert_code(0);
    let teardowns = group_tasks(&ctx, "deploy-action:review-pr-12:teardown").await;
    assert_eq!(teardowns.len(), 1, "{teardowns:?}");
    assert_ne!(
        teardowns[0].0, seeds[0].0,
        "the teardown does not reuse the INACTIVE seed revision\n{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("using it"),
        "no INACTIVE revision is reused: {}",
        r.stderr
    );
    let refused: Vec<Value> = ctx
        .get("/_test/calls")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["operation"] == "RunTask" && c["status"] != 200)
        .cloned()
        .collect();
    assert!(refused.is_empty(), "no RunTask refused: {refused:?}");
    assert_no_review_app(&ctx).await;
}

/// Issue 20, "between steps": SIGINT while an up creates the target group (its CreateTargetGroup held). The step
/// finishes; the listener rule and the service are never made, exit 130, the error says what was done; the rerun
/// finishes the review app.
#[tokio::test]
async fn sigint_between_preview_up_steps_stops_before_the_next_step_and_the_rerun_converges() {
    let ctx = TestContext::new().await;
    seed_template(&ctx, BY_HOST).await;
    hold_next_call(&ctx, "CreateTargetGroup", 3000).await;
    let mut cmd = ctx.base_command();
    cmd.args(CLI_UP);
    let child = cmd.spawn().unwrap();
    sigint_when_held(&ctx, &child, "CreateTargetGroup").await;
    let r = finish(child).await;
    r.assert_code(130);
    assert!(
        r.stderr.contains("stopped before the listener rule")
            && r.stderr
                .contains("created target group core-pr-12; run the same phase again to finish"),
        "{}",
        r.stderr
    );
    let changed = ctx.mutating_calls().await;
    assert!(
        changed.iter().any(|c| c == "elbv2:CreateTargetGroup")
            && !changed
                .iter()
                .any(|c| c.ends_with(":CreateRule") || c.ends_with(":CreateService")),
        "{changed:?}"
    );
    assert!(target_group(&ctx, "core-pr-12").await.is_some());
    assert!(service(&ctx, "core-pr-12").await.is_none());

    cli_up(&ctx).await.assert_code(0);
    assert!(service(&ctx, "core-pr-12").await.is_some());
    assert_eq!(
        rules(&ctx)
            .await
            .iter()
            .filter(|(_, c, _, _)| *c == host_rule(HOST))
            .count(),
        1
    );
}
