//! Issue 3: phase `state` against the local AWS: maintenance rules asserted exactly, services, database, drain,
//! idempotency, a run killed half-way, dry run, bad input.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, Rule, RuleCondition};
use serde_json::json;

use crate::support::{RunResult, TestContext};

const HEADER: &str = "X-Bypass-Token";
const SECRET: &str = "let-me-in-7f3a9c";

fn listener_arn(ctx: &TestContext) -> String {
    let text = std::fs::read_to_string(ctx.config_path()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("listener-arn"))
        .expect("listener-arn in the seeded config");
    line.split('"').nth(1).unwrap().to_string()
}

async fn state(ctx: &TestContext, target: &str, extra: &[(&str, &str)]) -> RunResult {
    let mut inputs = vec![
        ("phase", "state"),
        ("environment", "stage"),
        ("config", "deploy.toml"),
        ("state", target),
        ("maintenance-header-name", HEADER),
        ("maintenance-header-value", SECRET),
        ("skip-drain", "true"),
    ];
    for (k, v) in extra {
        inputs.retain(|(key, _)| key != k);
        if !v.is_empty() {
            inputs.push((k, v));
        }
    }
    ctx.action(&inputs).await
}

/// The listener as a comparable value: default actions, and every rule (by priority) with its conditions,
/// actions and tags.
#[derive(Debug, Clone, PartialEq)]
struct ListenerDump {
    default_actions: Vec<Action>,
    listener_tags: BTreeMap<String, String>,
    rules: Vec<DumpedRule>,
}

/// (priority, conditions, actions, tags)
type DumpedRule = (
    String,
    Vec<RuleCondition>,
    Vec<Action>,
    BTreeMap<String, String>,
);

async fn dump(ctx: &TestContext) -> ListenerDump {
    let elb = ctx.elb().await;
    let arn = listener_arn(ctx);
    let l = elb
        .describe_listeners()
        .listener_arns(&arn)
        .send()
        .await
        .unwrap();
    let mut rules: Vec<Rule> = elb
        .describe_rules()
        .listener_arn(&arn)
        .send()
        .await
        .unwrap()
        .rules()
        .to_vec();
    rules.sort_by_key(|r| {
        r.priority()
            .and_then(|p| p.parse::<i32>().ok())
            .unwrap_or(i32::MAX)
    });
    let tags_of = |arn: String| {
        let elb = elb.clone();
        async move {
            let out = elb.describe_tags().resource_arns(arn).send().await.unwrap();
            out.tag_descriptions()
                .iter()
                .flat_map(|d| d.tags())
                .map(|t| {
                    (
                        t.key().unwrap().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect::<BTreeMap<_, _>>()
        }
    };
    let mut dumped = vec![];
    for r in &rules {
        let tags = tags_of(r.rule_arn().unwrap().to_string()).await;
        dumped.push((
            r.priority().unwrap().to_string(),
            r.conditions().to_vec(),
            r.actions().to_vec(),
            tags,
        ));
    }
    ListenerDump {
        default_actions: l.listeners()[0].default_actions().to_vec(),
        listener_tags: tags_of(arn).await,
        rules: dumped,
    }
}

fn summary_of(c: &RuleCondition) -> String {
    let field = c.field().unwrap_or_default();
    let values: Vec<String> = match field {
        "http-header" => {
            let h = c.http_header_config().unwrap();
            vec![format!(
                "{}={}",
                h.http_header_name().unwrap(),
                h.values().join("|")
            )]
        }
        "path-pattern" => c
            .path_pattern_config()
            .map(|p| p.values().to_vec())
            .unwrap_or_else(|| c.values().to_vec()),
        "host-header" => c
            .host_header_config()
            .map(|p| p.values().to_vec())
            .unwrap_or_else(|| c.values().to_vec()),
        _ => c.values().to_vec(),
    };
    format!("{field}:{}", values.join(","))
}

fn forward_target(actions: &[Action]) -> String {
    match actions {
        [a] if a.r#type() == Some(&ActionTypeEnum::Forward) => a
            .target_group_arn()
            .unwrap_or_default()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string(),
        other => format!("{other:?}"),
    }
}

async fn services(ctx: &TestContext) -> Vec<(String, i32, i32, i32)> {
    let ecs = ctx.ecs().await;
    let out = ecs
        .describe_services()
        .cluster("app-stage")
        .services("core")
        .services("workers")
        .send()
        .await
        .unwrap();
    out.services()
        .iter()
        .map(|s| {
            (
                s.service_name().unwrap().to_string(),
                s.desired_count(),
                s.running_count(),
                s.pending_count(),
            )
        })
        .collect()
}

async fn db_status(ctx: &TestContext, aurora: bool) -> String {
    let rds = ctx.rds().await;
    if aurora {
        let out = rds
            .describe_db_clusters()
            .db_cluster_identifier("app-stage")
            .send()
            .await
            .unwrap();
        out.db_clusters()[0].status().unwrap().to_string()
    } else {
        let out = rds
            .describe_db_instances()
            .db_instance_identifier("app-stage")
            .send()
            .await
            .unwrap();
        out.db_instances()[0]
            .db_instance_status()
            .unwrap()
            .to_string()
    }
}

fn assert_no_secret(r: &RunResult) {
    for (name, stream) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        let leaks: Vec<&str> = stream
            .lines()
            .filter(|l| {
                (l.contains(SECRET) || l.contains(HEADER)) && !l.starts_with("::add-mask::")
            })
            .collect();
        assert!(leaks.is_empty(), "secret leaked on {name}: {leaks:?}");
    }
    assert!(
        !r.summary.contains(SECRET) && !r.summary.contains(HEADER),
        "{}",
        r.summary
    );
    assert!(
        r.outputs
            .values()
            .all(|v| !v.contains(SECRET) && !v.contains(HEADER)),
        "{:?}",
        r.outputs
    );
}

/// The exact listener in maintenance: default = the configured fixed response; every forwarding rule keeps its
/// conditions and gets the bypass header; the non-forwarding ones are untouched; the bypass rule comes last.
fn assert_restricted(before: &ListenerDump, now: &ListenerDump) {
    let d = &now.default_actions;
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].r#type(), Some(&ActionTypeEnum::FixedResponse));
    let f = d[0].fixed_response_config().unwrap();
    assert_eq!(
        (f.status_code(), f.content_type(), f.message_body()),
        (
            Some("503"),
            Some("text/html"),
            Some("<h1>Down for maintenance</h1>")
        )
    );
    assert_eq!(
        now.listener_tags
            .get("deploy-action:maintenance")
            .map(String::as_str),
        Some("on"),
        "{:?}",
        now.listener_tags
    );
    assert!(now
        .listener_tags
        .contains_key("deploy-action:default-action:0"));
    assert!(
        now.listener_tags
            .values()
            .all(|v| !v.contains(HEADER) && !v.contains(SECRET)),
        "no secret in tags"
    );

    let bypass = format!("http-header:{HEADER}={SECRET}");
    let want: Vec<(String, Vec<String>, String)> = before
        .rules
        .iter()
        .filter(|(p, ..)| p != "default")
        .map(|(p, conds, actions, _)| {
            let mut c: Vec<String> = conds.iter().map(summary_of).collect();
            c.push(bypass.clone());
            (p.clone(), c, forward_target(actions))
        })
        .chain([
            (
                "50000".to_string(),
                vec![bypass.clone()],
                forward_target(&before.default_actions),
            ),
            ("default".to_string(), vec![], "fixed".to_string()),
        ])
        .collect();
    let got: Vec<(String, Vec<String>, String)> = now
        .rules
        .iter()
        .map(|(p, conds, actions, _)| {
            let target = if p == "default" {
                "fixed".to_string()
            } else {
                forward_target(actions)
            };
            (p.clone(), conds.iter().map(summary_of).collect(), target)
        })
        .collect();
    assert_eq!(got, want, "every rule's conditions, exactly");
    for (p, conds, _, tags) in &now.rules {
        if p == "default" {
            continue;
        }
        let header_conds: Vec<&RuleCondition> = conds
            .iter()
            .filter(|c| c.field() == Some("http-header"))
            .collect();
        assert_eq!(header_conds.len(), 1, "rule {p}: one bypass condition");
        if p == "50000" {
            assert_eq!(
                tags.get("deploy-action:bypass-rule").map(String::as_str),
                Some("true")
            );
        } else {
            let hash = tags
                .get("deploy-action:bypass")
                .unwrap_or_else(|| panic!("rule {p} tags: {tags:?}"));
            assert_eq!(hash.len(), 16, "a sha256 prefix, not the name: {hash}");
        }
    }
}

#[tokio::test]
async fn running_to_restricted_and_back_gives_the_exact_rules_back() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let before = dump(&ctx).await;
    assert_eq!(
        before.rules.len(),
        4,
        "seed: 3 forwarding rules and the default: {before:?}"
    );

    let r = state(&ctx, "restricted", &[]).await;
    r.assert_code(0);
    assert_no_secret(&r);
    assert_eq!(r.outputs["previous-state"], "running");
    assert_eq!(r.outputs["state"], "restricted");
    assert_eq!(
        r.outputs["steps"],
        "maintenance on\nwait for traffic to drain"
    );
    assert!(
        r.summary.contains("running → restricted") && r.summary.contains("| maintenance on |"),
        "{}",
        r.summary
    );
    assert!(
        r.summary.contains("skipped: input skip-drain"),
        "{}",
        r.summary
    );
    assert_restricted(&before, &dump(&ctx).await);

    let status = ctx
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
    assert_eq!(status.json()["outcome"]["state"], "restricted");

    let r = state(&ctx, "running", &[]).await;
    r.assert_code(0);
    assert_eq!(r.outputs["previous-state"], "restricted");
    assert_eq!(r.outputs["state"], "running");
    assert_eq!(r.outputs["steps"], "maintenance off");
    let after = dump(&ctx).await;
    assert_eq!(
        after, before,
        "exactly the original default action, rules and tags"
    );
}

#[tokio::test]
async fn applying_twice_makes_no_mutating_call() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    for target in ["restricted", "stopped", "running"] {
        state(&ctx, target, &[]).await.assert_code(0);
        ctx.clear_calls().await;
        let r = state(&ctx, target, &[]).await;
        r.assert_code(0);
        assert!(r.stdout.contains("nothing to do"), "{}", r.stdout);
        assert_eq!(r.outputs["steps"], "");
        assert_eq!(
            ctx.mutating_calls().await,
            Vec::<String>::new(),
            "{target} twice"
        );
    }
}

#[tokio::test]
async fn running_to_db_only_and_back_restores_the_service_counts() {
    let ctx = TestContext::new().await;
    let path = ctx.seed("stage", &[]);
    // workers has no desired-count in the config: its count comes back from the tag written when it went to 0.
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("desired-count = 1\n", "", 1);
    std::fs::write(&path, text).unwrap();
    let ecs = ctx.ecs().await;
    ecs.update_service()
        .cluster("app-stage")
        .service("workers")
        .desired_count(3)
        .send()
        .await
        .unwrap();
    let r = state(&ctx, "running", &[]).await;
    r.assert_code(0);
    assert_eq!(
        services(&ctx).await,
        vec![("core".into(), 2, 2, 0), ("workers".into(), 3, 3, 0)]
    );

    let r = ctx
        .cli(&[
            "state",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--state",
            "db-only",
            "--skip-drain",
            "--output",
            "json",
        ])
        .await;
    r.assert_code(0);
    let o = &r.json()["outcome"];
    assert_eq!(o["previous_state"], "running");
    assert_eq!(o["state"], "db-only");
    let steps: Vec<&str> = o["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, vec!["maintenance-on", "drain-wait", "scale-down"]);
    assert_eq!(
        services(&ctx).await,
        vec![("core".into(), 0, 0, 0), ("workers".into(), 0, 0, 0)]
    );
    let svc = ecs
        .describe_services()
        .cluster("app-stage")
        .services("workers")
        .send()
        .await
        .unwrap();
    let arn = svc.services()[0].service_arn().unwrap().to_string();
    let tags = ecs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .any(|t| t.key() == Some("deploy-action:desired-count") && t.value() == Some("3")),
        "{tags:?}"
    );
    // Without bypass inputs, maintenance is on with a header nobody knows.
    let d = dump(&ctx).await;
    assert!(
        d.rules.iter().any(|(_, c, ..)| c
            .iter()
            .any(|c| summary_of(c).starts_with("http-header:x-deploy-action-locked="))),
        "{d:?}"
    );

    let r = state(&ctx, "running", &[]).await;
    r.assert_code(0);
    assert_eq!(r.outputs["steps"], "scale services up\nmaintenance off");
    assert_eq!(
        services(&ctx).await,
        vec![("core".into(), 2, 2, 0), ("workers".into(), 3, 3, 0)]
    );
    let tags = ecs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tags()
            .iter()
            .all(|t| t.key() != Some("deploy-action:desired-count")),
        "{tags:?}"
    );
    // Maintenance came off only after the services completed.
    let calls = ctx.calls().await;
    let last_update = calls
        .iter()
        .rposition(|(_, op)| op == "UpdateService")
        .unwrap();
    let listener_back = calls
        .iter()
        .rposition(|(_, op)| op == "ModifyListener")
        .unwrap();
    let completed_check = calls[last_update..listener_back]
        .iter()
        .filter(|(_, op)| op == "DescribeServices")
        .count();
    assert!(
        completed_check >= 1,
        "services were checked COMPLETED before maintenance came off: {calls:?}"
    );
}

async fn stopped_and_back(aurora: bool) {
    let ctx = TestContext::new().await;
    ctx.seed("stage", if aurora { &["--aurora"] } else { &[] });
    let before = dump(&ctx).await;
    let r = state(&ctx, "stopped", &[]).await;
    r.assert_code(0);
    assert_eq!(r.outputs["state"], "stopped");
    assert_eq!(
        r.outputs["steps"],
        "maintenance on\nwait for traffic to drain\nscale services to 0\nstop the database"
    );
    let at = &r.outputs["database-restarts-at"];
    assert!(
        at.ends_with(" UTC") && r.summary.contains(at.as_str()) && r.stderr.contains(at.as_str()),
        "{at}\n{}\n{}",
        r.summary,
        r.stderr
    );
    assert_eq!(db_status(&ctx, aurora).await, "stopped");
    assert_eq!(
        services(&ctx).await,
        vec![("core".into(), 0, 0, 0), ("workers".into(), 0, 0, 0)]
    );
    let stop = if aurora {
        "StopDBCluster"
    } else {
        "StopDBInstance"
    };
    let calls = ctx.mutating_calls().await;
    assert_eq!(
        calls
            .iter()
            .rfind(|c| *c != "rds:AddTagsToResource")
            .map(String::as_str),
        Some(format!("rds:{stop}").as_str()),
        "the database stops last (only its record follows): {calls:?}"
    );

    ctx.clear_calls().await;
    let r = state(&ctx, "running", &[]).await;
    r.assert_code(0);
    assert_eq!(
        r.outputs["steps"],
        "start the database\nscale services up\nmaintenance off"
    );
    assert_eq!(db_status(&ctx, aurora).await, "available");
    assert_eq!(
        services(&ctx).await,
        vec![("core".into(), 2, 2, 0), ("workers".into(), 1, 1, 0)]
    );
    assert_eq!(dump(&ctx).await, before);
    let start = if aurora {
        "rds:StartDBCluster"
    } else {
        "rds:StartDBInstance"
    };
    assert_eq!(
        ctx.mutating_calls().await.first().map(String::as_str),
        Some(start),
        "the database starts first"
    );
}

#[tokio::test]
async fn stopped_and_back_with_an_rds_instance() {
    stopped_and_back(false).await;
}

#[tokio::test]
async fn stopped_and_back_with_an_aurora_cluster() {
    stopped_and_back(true).await;
}

#[tokio::test]
async fn database_transitions_are_waited_for() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/rds/instance-rules",
        json!({"transitionDescribes": 2}),
    )
    .await;
    let r = state(&ctx, "stopped", &[]).await;
    r.assert_code(0);
    assert!(r.stderr.contains("is stopping"), "{}", r.stderr);
    let r = state(&ctx, "db-only", &[]).await;
    r.assert_code(0);
    assert!(r.stderr.contains("is starting"), "{}", r.stderr);
    assert_eq!(db_status(&ctx, false).await, "available");
}

/// How many times a run of `db-only` from `stopped` described the database (the start takes `transitionSeconds`).
async fn describes_of_a_start(ctx: &TestContext) -> (usize, RunResult) {
    ctx.post("/_test/rds/instance-rules", json!({})).await;
    state(ctx, "stopped", &[]).await.assert_code(0);
    ctx.post(
        "/_test/rds/instance-rules",
        json!({"transitionSeconds": START_SECONDS}),
    )
    .await;
    ctx.clear_calls().await;
    let r = state(ctx, "db-only", &[]).await;
    r.assert_code(0);
    assert_eq!(db_status(ctx, false).await, "available");
    let calls = ctx.get("/_test/calls").await;
    let calls = calls.as_array().unwrap();
    let op = |c: &serde_json::Value| c["operation"].as_str().unwrap_or("").to_string();
    let n = calls
        .iter()
        .filter(|c| op(c) == "DescribeDBInstances")
        .count();
    // The looks after the start, in seconds from the call: printed for the record (not asserted).
    let t = |c: &serde_json::Value| c["t"].as_f64().unwrap_or(0.0);
    if let Some(start) = calls.iter().find(|c| op(c) == "StartDBInstance").map(t) {
        let looks: Vec<String> = calls
            .iter()
            .filter(|c| op(c) == "DescribeDBInstances" && t(c) >= start)
            .map(|c| format!("{:.2}", t(c) - start))
            .collect();
        eprintln!("looks after StartDBInstance (s): {}", looks.join(" "));
    }
    (n, r)
}

/// How long a start takes in the local AWS in [`a_database_start_is_paced_by_its_own_history`].
const START_SECONDS: f64 = 3.0;

/// Issue 19: the wait after StartDBInstance looks rarely before the database's usual start time (from its own RDS
/// events: here two of AWS's own starts of 3 s, RDS-EVENT-0154 then 0088) and often around it; without a history it
/// keeps its backoff and looks more often. No timing asserted: the looks are counted.
#[tokio::test]
async fn a_database_start_is_paced_by_its_own_history() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    // No record of its own on the database (see `a_database_start_is_paced_by_its_own_record`): the events alone.
    ctx.post(
        "/_test/faults",
        json!({"operation": "AddTagsToResource", "kind": "denied", "count": -1}),
    )
    .await;
    let (without, r) = describes_of_a_start(&ctx).await;
    assert!(
        r.stderr.contains("database app-stage: no measured starts"),
        "{}",
        r.stderr
    );
    let begin =
        "DB instance is being started due to it exceeding the maximum allowed time being stopped.";
    let history: Vec<_> = [
        (600.0, begin),
        (600.0 - START_SECONDS, "DB instance started"),
    ]
    .into_iter()
    .chain([
        (300.0, begin),
        (300.0 - START_SECONDS, "DB instance started"),
    ])
    .map(|(ago, m)| json!({"message": m, "secondsAgo": ago}))
    .collect();
    ctx.post(
        "/_test/rds/events",
        json!({"dbInstanceIdentifier": "app-stage", "region": crate::support::REGION, "events": history}),
    )
    .await;
    let (with, r) = describes_of_a_start(&ctx).await;
    assert!(
        r.stderr.contains(
            "database app-stage usually starts in ~3.0s (its last 2 starts, from its RDS events)"
        ),
        "{}",
        r.stderr
    );
    eprintln!("DescribeDBInstances calls of a {START_SECONDS} s start: {without} without a history, {with} with one");
    assert!(
        with + 2 <= without,
        "paced by its history: {with} describes, without one {without}"
    );
    ctx.clear_calls().await;
    state(&ctx, "db-only", &[]).await.assert_code(0);
    let ops: Vec<String> = ctx.calls().await.into_iter().map(|(_, op)| op).collect();
    assert!(
        !ops.iter().any(|op| op == "DescribeEvents"),
        "no start needed, no events read: {ops:?}"
    );
}

/// Events that cannot be read (no rds:DescribeEvents in the role) and a record that cannot be written (no
/// rds:AddTagsToResource) never fail the run: one line each, then the backoff.
#[tokio::test]
async fn a_database_start_without_access_to_its_events_still_succeeds() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    state(&ctx, "stopped", &[]).await.assert_code(0);
    for op in ["DescribeEvents", "AddTagsToResource"] {
        ctx.post(
            "/_test/faults",
            json!({"operation": op, "kind": "denied", "count": -1}),
        )
        .await;
    }
    ctx.clear_calls().await;
    let r = state(&ctx, "db-only", &[]).await;
    r.assert_code(0);
    assert_eq!(db_status(&ctx, false).await, "available");
    for line in [
        "database app-stage: its RDS events could not be read",
        "could not be recorded in its tag deploy-action:start-seconds",
    ] {
        assert_eq!(r.stderr.matches(line).count(), 1, "{line}\n{}", r.stderr);
    }
    let ops: Vec<String> = ctx.calls().await.into_iter().map(|(_, op)| op).collect();
    assert_eq!(
        ops.iter().filter(|op| *op == "DescribeEvents").count(),
        1,
        "events denied before the start: not asked again after it: {ops:?}"
    );
}

/// The database's tags (instance or Aurora cluster `app-stage`).
async fn db_tags(ctx: &TestContext, aurora: bool) -> BTreeMap<String, String> {
    let rds = ctx.rds().await;
    let tags = if aurora {
        let out = rds
            .describe_db_clusters()
            .db_cluster_identifier("app-stage")
            .send()
            .await
            .unwrap();
        out.db_clusters()[0].tag_list().to_vec()
    } else {
        let out = rds
            .describe_db_instances()
            .db_instance_identifier("app-stage")
            .send()
            .await
            .unwrap();
        out.db_instances()[0].tag_list().to_vec()
    };
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Issue 19: RDS reports no beginning of a start someone asked for, so the action records its own starts on the
/// database (tag deploy-action:start-seconds, from its call to RDS's "DB instance started"): the first start (no
/// history at all) writes it, the second reads it and looks less often. No timing asserted: the looks are counted.
#[tokio::test]
async fn a_database_start_is_paced_by_its_own_record() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let (first, r) = describes_of_a_start(&ctx).await;
    assert!(
        r.stderr.contains("database app-stage: no measured starts"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("until RDS's completion event (recorded on it: deploy-action:start-seconds="),
        "measured to the event dated when the start ended: {}",
        r.stderr
    );
    let seconds = START_SECONDS.round().to_string();
    let tags = db_tags(&ctx, false).await;
    assert_eq!(
        tags.get("deploy-action:start-seconds"),
        Some(&seconds),
        "measured from the call to RDS's completion event: {tags:?}"
    );
    assert!(tags.contains_key("deploy-action:stop-seconds"), "{tags:?}");
    let (second, r) = describes_of_a_start(&ctx).await;
    assert!(
        r.stderr.contains(&format!(
            "database app-stage usually starts in ~{START_SECONDS:.1}s (its last start, recorded by deploy-action)"
        )),
        "{}",
        r.stderr
    );
    let ops: Vec<String> = ctx.calls().await.into_iter().map(|(_, op)| op).collect();
    assert_eq!(
        ops.iter().filter(|op| *op == "DescribeEvents").count(),
        1,
        "with a record, the events are read only for the completion event: {ops:?}"
    );
    assert_eq!(
        db_tags(&ctx, false)
            .await
            .get("deploy-action:start-seconds"),
        Some(&format!("{seconds} {seconds}")),
        "the second start appended"
    );
    eprintln!("DescribeDBInstances calls of a {START_SECONDS} s start: {first} the first time, {second} the second");
    assert!(
        second < first,
        "paced by its record: {second} describes, the first time {first}"
    );
}

/// An Aurora cluster keeps the same record (DescribeDBClusters's TagList, AddTagsToResource on the cluster's ARN).
#[tokio::test]
async fn an_aurora_cluster_records_its_starts_and_stops() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &["--aurora"]);
    state(&ctx, "stopped", &[]).await.assert_code(0);
    state(&ctx, "db-only", &[]).await.assert_code(0);
    let tags = db_tags(&ctx, true).await;
    for key in ["deploy-action:start-seconds", "deploy-action:stop-seconds"] {
        assert_eq!(
            tags.get(key).map(String::as_str),
            Some("0"),
            "{key}: {tags:?}"
        );
    }
    state(&ctx, "stopped", &[]).await.assert_code(0);
    let r = state(&ctx, "db-only", &[]).await;
    r.assert_code(0);
    assert!(
        r.stderr
            .contains("database app-stage usually starts in ~0.0s (its last start, recorded by deploy-action)"),
        "{}",
        r.stderr
    );
    assert_eq!(
        db_tags(&ctx, true)
            .await
            .get("deploy-action:start-seconds")
            .map(String::as_str),
        Some("0 0")
    );
}

/// A run killed half-way (here: an AWS error on the 2nd rule change) leaves enough recorded that the next run
/// converges, in either direction, and the original rules come back exactly.
#[tokio::test]
async fn a_run_killed_half_way_converges_on_the_next_run() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let before = dump(&ctx).await;

    ctx.post(
        "/_test/faults",
        json!({"operation": "ModifyRule", "kind": "500", "after": 1, "count": -1}),
    )
    .await;
    let r = ctx
        .action_with_env(
            &[
                ("phase", "state"),
                ("environment", "stage"),
                ("config", "deploy.toml"),
                ("state", "restricted"),
                ("maintenance-header-name", HEADER),
                ("maintenance-header-value", SECRET),
                ("skip-drain", "true"),
            ],
            &[("AWS_MAX_ATTEMPTS", "1")],
        )
        .await;
    r.assert_code(1);
    assert!(
        r.stderr.contains("step 1 of 2 (maintenance on) failed") && r.stderr.contains("ModifyRule"),
        "{}",
        r.stderr
    );
    assert_no_secret(&r);
    let half = dump(&ctx).await;
    assert_eq!(
        half.listener_tags
            .get("deploy-action:maintenance")
            .map(String::as_str),
        Some("turning-on")
    );
    let s = ctx
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
    assert_eq!(s.json()["outcome"]["state"], "mixed");
    assert_eq!(s.json()["outcome"]["maintenance"], "partial");
    let faults = ctx
        .http
        .delete(format!("{}/_test/faults", ctx.url))
        .send()
        .await
        .unwrap();
    assert!(faults.status().is_success());

    // Off from half-on: exactly the original.
    let r = state(&ctx, "running", &[]).await;
    r.assert_code(0);
    assert_eq!(r.outputs["previous-state"], "mixed");
    assert_eq!(dump(&ctx).await, before);

    // Half-on again, then on converges, then off in a run that dies half-way, then off again.
    ctx.post(
        "/_test/faults",
        json!({"operation": "ModifyRule", "kind": "500", "after": 2, "count": -1}),
    )
    .await;
    let inputs = [
        ("phase", "state"),
        ("environment", "stage"),
        ("config", "deploy.toml"),
        ("state", "restricted"),
        ("maintenance-header-name", HEADER),
        ("maintenance-header-value", SECRET),
        ("skip-drain", "true"),
    ];
    ctx.action_with_env(&inputs, &[("AWS_MAX_ATTEMPTS", "1")])
        .await
        .assert_code(1);
    ctx.http
        .delete(format!("{}/_test/faults", ctx.url))
        .send()
        .await
        .unwrap();
    let r = state(&ctx, "restricted", &[]).await;
    r.assert_code(0);
    assert_restricted(&before, &dump(&ctx).await);

    ctx.post(
        "/_test/faults",
        json!({"operation": "ModifyListener", "kind": "500", "count": -1}),
    )
    .await;
    let mut off = inputs;
    off[3] = ("state", "running");
    ctx.action_with_env(&off, &[("AWS_MAX_ATTEMPTS", "1")])
        .await
        .assert_code(1);
    let half = dump(&ctx).await;
    assert_eq!(
        half.listener_tags
            .get("deploy-action:maintenance")
            .map(String::as_str),
        Some("turning-off")
    );
    ctx.http
        .delete(format!("{}/_test/faults", ctx.url))
        .send()
        .await
        .unwrap();
    state(&ctx, "running", &[]).await.assert_code(0);
    assert_eq!(dump(&ctx).await, before);
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_changes_nothing() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    let r = state(&ctx, "stopped", &[("dry-run", "true")]).await;
    r.assert_code(0);
    assert_eq!(
        r.outputs["plan"],
        "maintenance on\nwait for traffic to drain\nscale services to 0\nstop the database"
    );
    assert_eq!(r.outputs["steps"], "");
    assert_eq!(r.outputs["state"], "running");
    assert!(
        r.stdout.contains("dry run") && r.stdout.contains("stop the database"),
        "{}",
        r.stdout
    );
    assert_eq!(ctx.mutating_calls().await, Vec::<String>::new());
    assert!(!ctx.calls().await.is_empty(), "the dry run observes");
}

#[tokio::test]
async fn bad_input_exits_2_and_makes_no_aws_call() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &["--no-database", "--no-maintenance"]);
    ctx.clear_calls().await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("state", "paused")], "unknown state \"paused\""),
        (&[("state", "")], "input `state`: missing"),
        (&[("state", "mixed")], "unknown state \"mixed\""),
        (&[("state", "stopped")], "environments.stage.database"),
        (&[("state", "restricted")], "environments.stage.maintenance"),
        (
            &[("state", "running"), ("maintenance-header-value", "")],
            "maintenance-header-value",
        ),
        (
            &[
                ("state", "running"),
                ("maintenance-header-value", "wild*card"),
            ],
            "maintenance-header-value",
        ),
        (
            &[("state", "running"), ("skip-drain", "maybe")],
            "`skip-drain`",
        ),
    ];
    for (extra, needle) in cases {
        let r = state(&ctx, "running", extra).await;
        assert_eq!(r.code, 2, "{extra:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(needle),
            "{extra:?} should name {needle:?}: {}",
            r.stderr
        );
        let lines: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| !l.starts_with("::add-mask::"))
            .collect();
        assert_eq!(lines.len(), 1, "{extra:?}: one line: {}", r.stderr);
        assert!(
            lines.iter().all(|l| !l.contains("wild*card")),
            "the value is never echoed: {}",
            r.stderr
        );
    }
    // restricted with a listener but without the header inputs.
    ctx.post("/_test/reset", json!({})).await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    let r = state(
        &ctx,
        "restricted",
        &[
            ("maintenance-header-name", ""),
            ("maintenance-header-value", ""),
        ],
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("maintenance-header-name")
            && r.stderr.contains("maintenance-header-value"),
        "{}",
        r.stderr
    );
    let r = ctx
        .cli(&[
            "state",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--state",
            "restricted",
        ])
        .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(ctx.calls().await, vec![], "bad input must not reach AWS");
}

pub(crate) fn with_drain(ctx: &TestContext, drain: &str) {
    let path = ctx.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("drain = {").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let text = format!("{}drain = {drain}{}", &text[..start], &text[end..]);
    std::fs::write(&path, text).unwrap();
}

/// The body for `/_test/cloudwatch/metric`: RequestCount of the core target group, as ALB reports it.
pub(crate) async fn requests_metric(
    ctx: &TestContext,
    value: f64,
    seconds_ago: i64,
) -> serde_json::Value {
    let elb = ctx.elb().await;
    let arn = listener_arn(ctx);
    let l = elb
        .describe_listeners()
        .listener_arns(&arn)
        .send()
        .await
        .unwrap();
    let lb = l.listeners()[0]
        .load_balancer_arn()
        .unwrap()
        .split_once(":loadbalancer/")
        .unwrap()
        .1
        .to_string();
    let tgs = elb.describe_target_groups().send().await.unwrap();
    let core = tgs
        .target_groups()
        .iter()
        .find(|t| t.target_group_name() == Some("stage-core"))
        .unwrap();
    let tg = core
        .target_group_arn()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    json!({"region": "eu-central-1", "namespace": "AWS/ApplicationELB", "metric": "RequestCount",
           "dimensions": {"TargetGroup": tg, "LoadBalancer": lb}, "unit": "Count",
           "values": [{"value": value, "secondsAgo": seconds_ago}]})
}

/// The time of day `HH:MM:SS` that follows the first `marker` in `text`, in seconds since midnight.
#[track_caller]
fn clock_after(text: &str, marker: &str) -> i64 {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in:\n{text}"));
    let hms = text[at + marker.len()..].get(..8).unwrap_or_default();
    let parts: Vec<i64> = hms.split(':').filter_map(|p| p.parse().ok()).collect();
    assert_eq!(parts.len(), 3, "a time HH:MM:SS after {marker:?}: {hms:?}");
    parts[0] * 3600 + parts[1] * 60 + parts[2]
}

async fn seed_requests(ctx: &TestContext, value: f64, seconds_ago: i64) {
    let body = requests_metric(ctx, value, seconds_ago).await;
    ctx.post("/_test/cloudwatch/metric", body).await;
}

#[tokio::test]
async fn drain_waits_for_the_window_and_ignores_traffic_from_before() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    with_drain(
        &ctx,
        "{ threshold = 5, window-seconds = 4, timeout = \"1m\" }",
    );
    seed_requests(&ctx, 500.0, 100).await; // busy before maintenance went on (its minute ended before)
    seed_requests(&ctx, 2.0, 0).await; // a trickle under the threshold
    ctx.post(
        "/_test/faults",
        json!({"operation": "GetMetricStatistics", "kind": "throttle", "count": 2}),
    )
    .await;
    let r = state(&ctx, "restricted", &[("skip-drain", "")]).await;
    r.assert_code(0);
    let steps = r.outputs["steps"].clone();
    assert_eq!(steps, "maintenance on\nwait for traffic to drain");
    // Waited the window, as the run reports it (not a clock): a look said "not yet" ("quiet from T, done at T+4 if it
    // stays so") and the end says "quiet since T". T is when maintenance went on: the busy minute before it does not
    // count (it would make the wait end at its first look), and the window is the configured 4 s.
    let from = clock_after(&r.stderr, "quiet from ");
    let done_at = clock_after(&r.stderr, ", done at ");
    assert_eq!((done_at - from).rem_euclid(86_400), 4, "{}", r.stderr);
    assert_eq!(
        clock_after(&r.summary, "quiet since "),
        from,
        "the window counted from the same moment: {}\n{}",
        r.stderr,
        r.summary
    );
    let gets = ctx
        .calls()
        .await
        .iter()
        .filter(|(_, op)| op == "GetMetricStatistics")
        .count();
    assert!(gets >= 2, "read the metric: {gets}");
}

#[tokio::test]
async fn drain_times_out_naming_the_way_out_and_can_be_skipped() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    with_drain(
        &ctx,
        "{ threshold = 5, window-seconds = 5, timeout = \"8s\" }",
    );
    // Traffic keeps coming after maintenance went on (say, long-polling clients): 120 requests in this minute and
    // in the next, seeded now (the datapoint in the future counts once its time has come).
    let mut body = requests_metric(&ctx, 120.0, 0).await;
    body["values"] =
        json!([{"value": 120.0, "secondsAgo": 0}, {"value": 120.0, "secondsAgo": -60}]);
    ctx.post("/_test/cloudwatch/metric", body).await;
    let r = state(&ctx, "db-only", &[("skip-drain", "")]).await;
    r.assert_code(1);
    assert!(
        r.stderr.contains("traffic did not drain") && r.stderr.contains("skip-drain"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("RequestCount 120"), "{}", r.stderr);
    assert!(
        r.stderr.contains("not done: scale services to 0"),
        "{}",
        r.stderr
    );
    assert_eq!(
        services(&ctx).await,
        vec![("core".into(), 2, 2, 0), ("workers".into(), 1, 1, 0)],
        "nothing scaled"
    );

    ctx.clear_calls().await;
    let r = state(&ctx, "db-only", &[("skip-drain", "true")]).await;
    r.assert_code(0);
    assert!(ctx
        .calls()
        .await
        .iter()
        .all(|(_, op)| op != "GetMetricStatistics"));
    // Maintenance was already on; the drain the timed-out run left unfinished is in the plan again (issue 20), and
    // skipped here on purpose.
    assert_eq!(
        r.outputs["steps"], "wait for traffic to drain\nscale services to 0",
        "{}",
        r.stderr
    );
}

#[tokio::test]
async fn throttling_during_waits_does_not_fail() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/faults",
        json!({"operation": "DescribeServices", "kind": "throttle", "after": 3, "count": 3}),
    )
    .await;
    ctx.post(
        "/_test/faults",
        json!({"operation": "DescribeDBInstances", "kind": "503", "after": 1, "count": 2}),
    )
    .await;
    ctx.post(
        "/_test/faults",
        json!({"operation": "DescribeRules", "kind": "throttle", "count": 1}),
    )
    .await;
    let r = state(&ctx, "stopped", &[]).await;
    r.assert_code(0);
    assert_eq!(r.outputs["state"], "stopped");
    let r = state(&ctx, "running", &[]).await;
    r.assert_code(0);
    assert_eq!(r.outputs["state"], "running");
}

/// The DB settle wait other phases call after a migration (library API, same mechanism as the drain wait).
#[tokio::test]
async fn db_settle_waits_for_cpu_under_the_threshold() {
    use deploy_action::config::{Database, DatabaseKind, SettleConfig};
    use deploy_action::github::runner::Runner;
    use deploy_action::inputs::{GithubEnv, OutputFormat};
    use deploy_action::phases::Ctx;

    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let cw = aws_sdk_cloudwatch::Client::new(&ctx.sdk().await);
    let db = Database {
        kind: DatabaseKind::Instance,
        identifier: "app-stage".into(),
        snapshot_name: "x-{version}".into(),
        snapshot_retention: None,
        settle: Some(SettleConfig {
            cpu_threshold: 30,
            window_seconds: 2,
            timeout: None,
            timeout_minutes: Some(1),
            skip: false,
        }),
    };
    let phase = |secs: u64| Ctx {
        runner: Runner::new(&GithubEnv::default(), OutputFormat::Text),
        github: GithubEnv::default(),
        cancel: tokio_util::sync::CancellationToken::new(),
        deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(secs),
        dry_run: false,
        pace: crate::support::pace(),
    };
    let cpu = |value: f64| {
        json!({"region": "eu-central-1", "namespace": "AWS/RDS", "metric": "CPUUtilization",
               "dimensions": {"DBInstanceIdentifier": "app-stage"}, "unit": "Percent",
               "values": [{"value": value, "secondsAgo": 0}]})
    };
    // Quiet CPU: settled at once, i.e. at the first look (one metric read).
    ctx.post("/_test/cloudwatch/metric", cpu(12.0)).await;
    ctx.clear_calls().await;
    let report = deploy_action::domain::drain::wait_db_settled(&cw, &db, &phase(30))
        .await
        .unwrap();
    assert!(report.skipped.is_none(), "{report:?}");
    let reads = ctx
        .calls()
        .await
        .iter()
        .filter(|(_, op)| op == "GetMetricStatistics")
        .count();
    assert_eq!(reads, 1, "settled at the first look: {report:?}");
    // Busy CPU: bounded by the phase deadline (a wait that ignored it would hang: the hang guard), and the error
    // says what was seen.
    ctx.post("/_test/cloudwatch/metric", cpu(85.0)).await;
    let e = crate::support::guarded(
        "a settle wait on a busy database, with a 3 s deadline",
        deploy_action::domain::drain::wait_db_settled(&cw, &db, &phase(3)),
    )
    .await
    .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("database app-stage did not settle")
            && msg.contains("CPUUtilization")
            && msg.contains("(threshold 30)"),
        "{msg}"
    );
    // Skipped by config.
    let skip = Database {
        settle: Some(SettleConfig {
            skip: true,
            ..db.settle.clone().unwrap()
        }),
        ..db.clone()
    };
    let report = deploy_action::domain::drain::wait_db_settled(&cw, &skip, &phase(3))
        .await
        .unwrap();
    assert!(report.skipped.is_some());
}
