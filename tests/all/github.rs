//! Issue 6: GitHub deployments, gates, changelog, notification, with wiremock as the GitHub API.
//!
//! Library-level tests drive `wrapper::around` / `Release::begin` + `finish` with a fake phase; binary-level
//! tests run the real binary (phases snapshot and state) against wiremock and the local AWS.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deploy_action::config::Config;
use deploy_action::github::api::{Api, Retry};
use deploy_action::github::deployments::{self, Mode};
use deploy_action::github::runner::{Outcome, Runner};
use deploy_action::inputs::{Common, GithubEnv, Invocation, OutputFormat, Phase, RawInputs};
use deploy_action::phases::Ctx;
use deploy_action::phases::Subject;
use deploy_action::version::Version;
use deploy_action::wrapper::gates::gates_for;
use deploy_action::wrapper::{self, Plan, Record, Release};
use serde::Serialize;
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::TestContext;

const CONFIG: &str = r#"
[defaults]
region = "eu-central-1"

[environments.stage]
cluster = "app-stage"
url = "https://stage.example.org"
[environments.stage.services.core]
containers = ["core"]

[environments.prod]
cluster = "app-prod"
url = "https://example.org"
requires = "stage"
[environments.prod.services.core]
containers = ["core"]
[environments.prod.freeze]
dates = [{ from = "2026-12-20", to = "2027-01-05", reason = "holidays" }]
"#;

const DEPLOYMENTS: &str = "/repos/acme/backend/deployments";

/// A phase outcome for the wrapper: whether it reached its goal, and the version it replaced.
#[derive(Debug, Clone, Serialize)]
struct Fake {
    ok: bool,
    previous: Option<String>,
}

impl Outcome for Fake {
    fn ok(&self) -> bool {
        self.ok
    }
    fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![(
            "previous-version",
            self.previous.clone().unwrap_or_default(),
        )]
    }
    fn summary(&self) -> String {
        format!(
            "### fake phase: {}\n",
            if self.ok { "done" } else { "rolled back" }
        )
    }
    fn text(&self) -> String {
        if self.ok {
            "done\n"
        } else {
            "core did not complete: rolled back\n"
        }
        .to_string()
    }
}

fn runner_env() -> GithubEnv {
    GithubEnv {
        actions: Some("true".into()),
        repository: Some("acme/backend".into()),
        run_id: Some("4242".into()),
        run_attempt: Some("1".into()),
        server_url: Some("https://github.com".into()),
        sha: Some("0123abc".into()),
        ..GithubEnv::default()
    }
}

fn config_file(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("deploy.toml");
    std::fs::write(&p, CONFIG).unwrap();
    p
}

fn plan(phase: Phase, env: &str, version: Option<&str>) -> Plan {
    let config = Config::parse(CONFIG, Path::new("deploy.toml")).unwrap();
    let environment = config.environment(env).unwrap().clone();
    let required = environment.requires.as_ref().map(|r| {
        (
            r.clone(),
            config.environment(r).unwrap().github.environment.clone(),
        )
    });
    Plan {
        phase,
        gates: gates_for(phase).unwrap(),
        environment,
        required,
        version: version.map(str::to_string),
        mode: Mode::Auto,
        override_freeze: None,
        webhook_url: None,
        dry_run: false,
        teardown: false,
    }
}

fn api(server: &MockServer) -> Result<Api, String> {
    let mut api = Api::new(&server.uri(), "t0ken", "acme/backend").unwrap();
    api.retry = Retry {
        tries: 3,
        first: Duration::from_millis(10),
        cap: Duration::from_millis(50),
    };
    Ok(api)
}

/// Not frozen (the config's window is in December).
const SUMMER: OffsetDateTime = datetime!(2026-07-01 12:00 UTC);

fn deployment(id: u64, env: &str, git_ref: &str, payload: Value) -> Value {
    json!({"id": id, "ref": git_ref, "sha": "0123abc", "task": "deploy", "environment": env, "payload": payload,
           "created_at": "2026-07-01T10:00:00Z", "creator": {"login": "github-actions[bot]"}})
}

fn ours(id: u64, env: &str, phase: &str, version: &str, run: &str) -> Value {
    let mut d = deployment(
        id,
        env,
        version,
        json!({"tool": "deploy-action", "phase": phase, "version": version, "run_id": run, "run_attempt": "1"}),
    );
    d["task"] = json!(format!("deploy:{phase}"));
    d
}

fn status(state: &str, run: &str) -> Value {
    json!({"id": 1, "state": state, "log_url": format!("https://github.com/acme/backend/actions/runs/{run}"),
           "target_url": format!("https://github.com/acme/backend/actions/runs/{run}")})
}

async fn list(server: &MockServer, env: &str, items: Value) {
    Mock::given(method("GET"))
        .and(path(DEPLOYMENTS))
        .and(query_param("environment", env))
        .respond_with(ResponseTemplate::new(200).set_body_json(items))
        .mount(server)
        .await;
}

async fn statuses(server: &MockServer, id: u64, items: Value) {
    Mock::given(method("GET"))
        .and(path(format!("{DEPLOYMENTS}/{id}/statuses")))
        .respond_with(ResponseTemplate::new(200).set_body_json(items))
        .mount(server)
        .await;
}

/// `GET /actions/runs/{id}` answers with that run's status.
async fn workflow_run(server: &MockServer, id: u64, status: &str) {
    Mock::given(method("GET"))
        .and(path(format!("/repos/acme/backend/actions/runs/{id}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": id, "status": status})))
        .mount(server)
        .await;
}

/// `POST /deployments` answers 201 with id 77; its statuses are accepted.
async fn accept_records(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(DEPLOYMENTS))
        .respond_with(ResponseTemplate::new(201).set_body_json(deployment(
            77,
            "prod",
            "v1.2.3",
            json!({}),
        )))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{DEPLOYMENTS}/77/statuses")))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": 5, "state": "in_progress"})),
        )
        .mount(server)
        .await;
}

/// A stage deployment of v1.2.3 that succeeded, so prod's promotion gate passes.
async fn stage_passed(server: &MockServer) {
    list(
        server,
        "stage",
        json!([ours(50, "stage", "deploy", "v1.2.3", "4000")]),
    )
    .await;
    statuses(
        server,
        50,
        json!([
            status("inactive", "4000"),
            status("success", "4000"),
            status("in_progress", "4000")
        ]),
    )
    .await;
}

async fn requests(server: &MockServer, verb: &str, route: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == route)
        .collect()
}

fn invocation(
    phase: Phase,
    github: GithubEnv,
    inputs: &[(&str, &str)],
    dir: &Path,
) -> (Invocation, Common, Ctx) {
    let mut raw = RawInputs {
        phase: Some(phase.name().into()),
        environment: Some("prod".into()),
        config: Some(config_file(dir).display().to_string()),
        github_token: Some("t0ken".into()),
        ..RawInputs::default()
    };
    for (k, v) in inputs {
        let v = Some(v.to_string());
        match *k {
            "version" => raw.version = v,
            "override-freeze" => raw.override_freeze = v,
            "webhook-url" => raw.webhook_url = v,
            "github-deployments" => raw.github_deployments = v,
            "dry-run" => raw.dry_run = v,
            other => panic!("unknown input {other}"),
        }
    }
    let inv = Invocation {
        phase,
        raw,
        github: github.clone(),
    };
    let common = inv.common().unwrap();
    let ctx = Ctx {
        runner: Runner::new(&GithubEnv::default(), OutputFormat::Text),
        github,
        cancel: Default::default(),
        deadline: tokio::time::Instant::now() + Duration::from_secs(60),
        dry_run: common.dry_run,
        pace: crate::support::pace(),
    };
    (inv, common, ctx)
}

fn github_at(server: &MockServer) -> GithubEnv {
    GithubEnv {
        api_url: Some(server.uri()),
        ..runner_env()
    }
}

#[tokio::test]
async fn a_deployment_is_recorded_in_progress_then_success_with_the_run_and_environment_urls() {
    let server = MockServer::start().await;
    list(&server, "prod", json!([])).await;
    stage_passed(&server).await;
    accept_records(&server).await;
    let dir = tempfile::tempdir().unwrap();
    // Inputs resolved as `main` does; the clock is fixed (the config's freeze is in December).
    let (inv, common, ctx) = invocation(
        Phase::Deploy,
        github_at(&server),
        &[("version", "v1.2.3")],
        dir.path(),
    );
    // What the deploy request parsed: the version as given.
    let v1_2_3 = Version::parse("v1.2.3").unwrap();
    let subject = Subject::new(&common, Some(&v1_2_3));
    let plan = Plan::from_invocation(&inv, &common, subject)
        .unwrap()
        .unwrap();
    assert_eq!(plan.required, Some(("stage".into(), "stage".into())));
    let release = Release::begin(
        plan,
        deployments::connect(Mode::Auto, &inv.github, Some("t0ken")).unwrap(),
        inv.github.clone(),
        SUMMER,
    )
    .await
    .unwrap();
    assert_eq!(release.record, Record::Created { id: 77 });
    let creates = requests(&server, "POST", DEPLOYMENTS).await;
    assert_eq!(creates.len(), 1);
    assert_eq!(
        creates[0]
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap()),
        Some("Bearer t0ken")
    );
    let body: Value = creates[0].body_json().unwrap();
    assert_eq!(body["ref"], "v1.2.3");
    assert_eq!(body["task"], "deploy:deploy");
    assert_eq!(body["environment"], "prod");
    assert_eq!(body["auto_merge"], false);
    assert_eq!(body["required_contexts"], json!([]));
    assert_eq!(body["production_environment"], true);
    assert_eq!(body["transient_environment"], false);
    assert_eq!(body["payload"]["phase"], "deploy");
    assert_eq!(body["payload"]["version"], "v1.2.3");
    assert_eq!(body["payload"]["run_id"], "4242");
    assert_eq!(body["payload"]["run_attempt"], "1");
    let out = release
        .finish(
            Ok(Fake {
                ok: true,
                previous: None,
            }),
            Duration::from_secs(5),
            &ctx.runner,
        )
        .await
        .unwrap();
    let posted = requests(&server, "POST", &format!("{DEPLOYMENTS}/77/statuses")).await;
    let states: Vec<Value> = posted
        .iter()
        .map(|r| r.body_json::<Value>().unwrap())
        .collect();
    assert_eq!(states.len(), 2);
    assert_eq!(states[0]["state"], "in_progress");
    assert_eq!(states[1]["state"], "success");
    for s in &states {
        assert_eq!(
            s["log_url"],
            "https://github.com/acme/backend/actions/runs/4242"
        );
        assert_eq!(s["environment_url"], "https://example.org");
    }
    assert!(out.ok());
    assert!(out.outputs().contains(&("deployment-id", "77".to_string())));
    let summary = out.summary();
    assert!(summary.starts_with("### fake phase: done"), "{summary}");
    for part in [
        "### deploy v1.2.3 → prod",
        "| Result | ✅ succeeded |",
        "[deployment 77](https://github.com/acme/backend/deployments/prod)",
        "| promotion | pass | v1.2.3 was deployed to stage successfully (deployment 50",
        "| one at a time | pass |",
        "| freeze | pass |",
        "```mermaid",
    ] {
        assert!(summary.contains(part), "{part:?} missing from:\n{summary}");
    }
    // The JSON outcome is the phase's own.
    assert_eq!(
        serde_json::to_value(&out).unwrap(),
        json!({"ok": true, "previous": null})
    );
}

#[tokio::test]
async fn around_runs_the_phase_between_in_progress_and_its_final_status() {
    let server = MockServer::start().await;
    list(&server, "prod", json!([])).await;
    accept_records(&server).await;
    let dir = tempfile::tempdir().unwrap();
    // Rollback: no freeze, no promotion, so the real clock does not matter.
    let (inv, common, ctx) = invocation(Phase::Rollback, github_at(&server), &[], dir.path());
    let seen_in_progress = Arc::new(AtomicBool::new(false));
    let flag = seen_in_progress.clone();
    let srv = &server;
    let phase = async move {
        // By the time the phase runs, the record is in progress.
        let posted = requests(srv, "POST", &format!("{DEPLOYMENTS}/77/statuses")).await;
        flag.store(posted.len() == 1, Ordering::SeqCst);
        Ok(Fake {
            ok: false,
            previous: None,
        })
    };
    let subject = Subject::new(&common, None);
    let out = wrapper::around(&inv, &common, &ctx, subject, phase)
        .await
        .unwrap();
    assert!(seen_in_progress.load(Ordering::SeqCst));
    assert!(!out.ok());
    let body: Value = requests(&server, "POST", DEPLOYMENTS).await[0]
        .body_json()
        .unwrap();
    assert_eq!(body["ref"], "0123abc", "no version: the commit");
    assert_eq!(body["task"], "deploy:rollback");
    let last: Value = requests(&server, "POST", &format!("{DEPLOYMENTS}/77/statuses")).await[1]
        .body_json()
        .unwrap();
    assert_eq!(last["state"], "failure");
    assert_eq!(
        last["description"],
        "rollback on prod: failed: core did not complete: rolled back"
    );
}

#[tokio::test]
async fn a_phase_error_is_recorded_as_failure_and_returned_unchanged() {
    let server = MockServer::start().await;
    list(&server, "prod", json!([])).await;
    accept_records(&server).await;
    let release = Release::begin(
        plan(Phase::Snapshot, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap();
    let err = release
        .finish::<Fake>(
            Err(anyhow::anyhow!(
                "RDS CreateDBSnapshot app-prod: quota exceeded"
            )),
            Duration::from_secs(3),
            &Runner::new(&GithubEnv::default(), OutputFormat::Text),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "RDS CreateDBSnapshot app-prod: quota exceeded"
    );
    let last: Value = requests(&server, "POST", &format!("{DEPLOYMENTS}/77/statuses")).await[1]
        .body_json()
        .unwrap();
    assert_eq!(last["state"], "failure");
}

#[tokio::test]
async fn another_runs_deployment_in_progress_refuses_before_anything_changes() {
    let server = MockServer::start().await;
    list(
        &server,
        "prod",
        json!([
            ours(12, "prod", "migrate", "v1.2.2", "99"),
            ours(11, "prod", "deploy", "v1.2.1", "98")
        ]),
    )
    .await;
    statuses(&server, 12, json!([status("in_progress", "99")])).await;
    statuses(&server, 11, json!([status("success", "98")])).await;
    workflow_run(&server, 99, "in_progress").await;
    accept_records(&server).await;
    let err = Release::begin(
        plan(Phase::Snapshot, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "one-at-a-time gate: another deployment of prod is in progress: deployment 12 (migrate v1.2.2, https://github.com/acme/backend/actions/runs/99); wait for it to finish (or cancel that run) and re-run this job"
    );
    assert!(
        requests(&server, "POST", DEPLOYMENTS).await.is_empty(),
        "no record for a refused run"
    );
}

#[tokio::test]
async fn a_stale_record_of_a_finished_run_and_this_runs_own_records_do_not_block() {
    let server = MockServer::start().await;
    list(
        &server,
        "prod",
        json!([
            ours(13, "prod", "snapshot", "v1.2.3", "4242"),
            ours(12, "prod", "deploy", "v1.2.2", "99")
        ]),
    )
    .await;
    statuses(&server, 13, json!([status("in_progress", "4242")])).await;
    statuses(&server, 12, json!([status("in_progress", "99")])).await;
    workflow_run(&server, 99, "completed").await;
    accept_records(&server).await;
    let release = Release::begin(
        plan(Phase::Snapshot, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap();
    assert_eq!(release.record, Record::Created { id: 77 });
    assert_eq!(release.gates[0].verdict.label(), "pass");
}

#[tokio::test]
async fn the_jobs_own_environment_record_is_used_instead_of_a_second_one() {
    let server = MockServer::start().await;
    list(
        &server,
        "prod",
        json!([deployment(30, "prod", "main", json!(""))]),
    )
    .await;
    statuses(&server, 30, json!([status("in_progress", "4242")])).await;
    accept_records(&server).await;
    let release = Release::begin(
        plan(Phase::Snapshot, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap();
    assert_eq!(release.record, Record::Job { id: 30 });
    assert!(requests(&server, "POST", DEPLOYMENTS).await.is_empty());
    let out = release
        .finish(
            Ok(Fake {
                ok: true,
                previous: None,
            }),
            Duration::from_secs(1),
            &Runner::new(&GithubEnv::default(), OutputFormat::Text),
        )
        .await
        .unwrap();
    assert!(out.outputs().contains(&("deployment-id", "30".to_string())));
    assert!(out
        .summary()
        .contains("deployment 30, made for the job's `environment:`"));
    // github-deployments: true forces our own record anyway.
    let mut forced = plan(Phase::Snapshot, "prod", Some("v1.2.3"));
    forced.mode = Mode::On;
    let release = Release::begin(forced, api(&server), runner_env(), SUMMER)
        .await
        .unwrap();
    assert_eq!(release.record, Record::Created { id: 77 });
}

#[tokio::test]
async fn the_freeze_refuses_and_an_override_with_a_reason_passes_and_is_recorded() {
    let server = MockServer::start().await;
    list(&server, "prod", json!([])).await;
    stage_passed(&server).await;
    accept_records(&server).await;
    let christmas = datetime!(2026-12-24 10:00 UTC);
    let err = Release::begin(
        plan(Phase::Deploy, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        christmas,
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "freeze gate: prod is frozen now: holidays (2026-12-20 to 2027-01-05 UTC); wait until the window ends, or set `override-freeze: \"<reason>\"` (--override-freeze) to go ahead anyway"
    );
    assert!(requests(&server, "POST", DEPLOYMENTS).await.is_empty());
    // A rollback is not frozen: it is the way out of an incident.
    Release::begin(
        plan(Phase::Rollback, "prod", None),
        api(&server),
        runner_env(),
        christmas,
    )
    .await
    .unwrap();
    let mut p = plan(Phase::Deploy, "prod", Some("v1.2.3"));
    p.override_freeze = Some("hotfix for INC-42".into());
    let release = Release::begin(p, api(&server), runner_env(), christmas)
        .await
        .unwrap();
    assert_eq!(release.gates[0].verdict.label(), "overridden");
    let body: Value = requests(&server, "POST", DEPLOYMENTS)
        .await
        .last()
        .unwrap()
        .body_json()
        .unwrap();
    assert_eq!(body["payload"]["override_freeze"], "hotfix for INC-42");
    let out = release
        .finish(
            Ok(Fake {
                ok: true,
                previous: None,
            }),
            Duration::from_secs(1),
            &Runner::new(&GithubEnv::default(), OutputFormat::Text),
        )
        .await
        .unwrap();
    assert!(
        out.summary()
            .contains("| Freeze overridden | hotfix for INC-42 |"),
        "{}",
        out.summary()
    );
}

#[tokio::test]
async fn promotion_needs_a_successful_deploy_of_the_same_version_on_the_required_environment() {
    // Stage deployed v1.2.3 but it failed; v1.2.2 succeeded: prod refuses v1.2.3.
    let server = MockServer::start().await;
    list(&server, "prod", json!([])).await;
    list(
        &server,
        "stage",
        json!([
            ours(51, "stage", "deploy", "v1.2.3", "4001"),
            ours(50, "stage", "deploy", "v1.2.2", "4000")
        ]),
    )
    .await;
    statuses(
        &server,
        51,
        json!([status("failure", "4001"), status("in_progress", "4001")]),
    )
    .await;
    statuses(&server, 50, json!([status("success", "4000")])).await;
    accept_records(&server).await;
    let err = Release::begin(
        plan(Phase::Deploy, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "promotion gate: prod requires stage first, and v1.2.3 has no successful deployment on stage (looked at its 2 most recent deployments); deploy v1.2.3 to stage first"
    );
    assert!(requests(&server, "POST", DEPLOYMENTS).await.is_empty());

    // A job's own `environment: stage` record on main at the tag's commit counts.
    let server = MockServer::start().await;
    list(&server, "prod", json!([])).await;
    let mut job = deployment(60, "stage", "main", json!(""));
    job["sha"] = json!("feedbeef");
    list(&server, "stage", json!([job])).await;
    statuses(&server, 60, json!([status("success", "4100")])).await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/backend/commits/v1.2.3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"sha": "feedbeef"})))
        .mount(&server)
        .await;
    accept_records(&server).await;
    let release = Release::begin(
        plan(Phase::Migrate, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap();
    let promotion = release
        .gates
        .iter()
        .find(|g| g.gate.name() == "promotion")
        .unwrap();
    assert_eq!(promotion.verdict.label(), "pass", "{promotion:?}");
    // Stage itself requires nothing.
    let server = MockServer::start().await;
    list(&server, "stage", json!([])).await;
    accept_records(&server).await;
    let release = Release::begin(
        plan(Phase::Deploy, "stage", Some("v9.9.9")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap();
    assert!(release.gates.iter().all(|g| g.gate.name() != "promotion"));
}

#[tokio::test]
async fn permission_errors_name_deployments_write_and_stop_before_the_phase() {
    let server = MockServer::start().await;
    list(&server, "prod", json!([])).await;
    Mock::given(method("POST"))
        .and(path(DEPLOYMENTS))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"message": "Resource not accessible by integration"})),
        )
        .mount(&server)
        .await;
    let err = Release::begin(
        plan(Phase::Snapshot, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "GitHub API: create a deployment of prod: 403 Resource not accessible by integration: the token cannot write deployments; give the job `permissions: deployments: write` (and `contents: read`), or set github-deployments: false; nothing was changed"
    );
    assert_eq!(
        requests(&server, "POST", DEPLOYMENTS).await.len(),
        1,
        "a plain 403 is not retried"
    );

    // Bad credentials on the first read.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(DEPLOYMENTS))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"})),
        )
        .mount(&server)
        .await;
    let err = Release::begin(
        plan(Phase::Snapshot, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("GitHub API: list deployments of prod: 401 Bad credentials: "),
        "{err}"
    );
    assert!(err.contains("`permissions: deployments: write`"), "{err}");
}

#[tokio::test]
async fn server_errors_and_secondary_rate_limits_are_retried_then_succeed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(DEPLOYMENTS))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    list(&server, "prod", json!([])).await;
    Mock::given(method("POST"))
        .and(path(DEPLOYMENTS))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"message": "You have exceeded a secondary rate limit"})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    accept_records(&server).await;
    let release = Release::begin(
        plan(Phase::Snapshot, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap();
    assert_eq!(release.record, Record::Created { id: 77 });
    assert_eq!(requests(&server, "GET", DEPLOYMENTS).await.len(), 3);
    assert_eq!(requests(&server, "POST", DEPLOYMENTS).await.len(), 2);

    // Bounded: a GitHub that keeps failing ends the run before the phase, naming the failure.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(DEPLOYMENTS))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(json!({"message": "Service unavailable"})),
        )
        .mount(&server)
        .await;
    let err = Release::begin(
        plan(Phase::Snapshot, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("GitHub API: list deployments of prod: 503 Service unavailable: the one-at-a-time gate could not be checked"), "{err}");
    assert_eq!(requests(&server, "GET", DEPLOYMENTS).await.len(), 3);
}

#[tokio::test]
async fn a_failure_to_record_the_final_status_only_warns() {
    let server = MockServer::start().await;
    list(&server, "prod", json!([])).await;
    Mock::given(method("POST"))
        .and(path(DEPLOYMENTS))
        .respond_with(ResponseTemplate::new(201).set_body_json(deployment(
            77,
            "prod",
            "v1.2.3",
            json!({}),
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{DEPLOYMENTS}/77/statuses")))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": 5, "state": "in_progress"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{DEPLOYMENTS}/77/statuses")))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"message": "Server Error"})))
        .mount(&server)
        .await;
    let release = Release::begin(
        plan(Phase::Snapshot, "prod", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap();
    let out = release
        .finish(
            Ok(Fake {
                ok: true,
                previous: None,
            }),
            Duration::from_secs(1),
            &Runner::new(&GithubEnv::default(), OutputFormat::Text),
        )
        .await
        .unwrap();
    assert!(out.ok(), "the phase's success stands");
    assert_eq!(
        requests(&server, "POST", &format!("{DEPLOYMENTS}/77/statuses"))
            .await
            .len(),
        4,
        "1 + 3 tries"
    );
    assert!(
        out.summary().contains("| record success | "),
        "{}",
        out.summary()
    );
    assert!(out.summary().contains("| ❌ |"), "{}", out.summary());
}

fn compare_body() -> Value {
    json!({
        "status": "ahead", "ahead_by": 2, "behind_by": 0, "total_commits": 2,
        "html_url": "https://github.com/acme/backend/compare/v1.2.2...v1.2.3",
        "commits": [
            {"sha": "1111111aaaa", "commit": {"message": "Add export (#120)", "author": {"name": "Ann"}}, "author": {"login": "ann"}},
            {"sha": "2222222bbbb", "commit": {"message": "Merge pull request #121 from acme/fix\n\nFix login", "author": {"name": "Bo"}}, "author": null}
        ]
    })
}

#[tokio::test]
async fn a_deploy_summary_lists_the_changes_since_the_previous_version() {
    let server = MockServer::start().await;
    list(
        &server,
        "stage",
        json!([ours(40, "stage", "deploy", "v1.2.1", "3000")]),
    )
    .await;
    statuses(&server, 40, json!([status("success", "3000")])).await;
    accept_records(&server).await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/backend/compare/v1.2.2...v1.2.3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(compare_body()))
        .mount(&server)
        .await;
    let runner = Runner::new(&GithubEnv::default(), OutputFormat::Text);
    // The previous version from the phase's outcome wins over the last record (v1.2.1).
    let release = Release::begin(
        plan(Phase::Deploy, "stage", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap();
    assert_eq!(release.deployed_before.as_deref(), Some("v1.2.1"));
    let out = release
        .finish(
            Ok(Fake {
                ok: true,
                previous: Some("v1.2.2".into()),
            }),
            Duration::from_secs(1),
            &runner,
        )
        .await
        .unwrap();
    let s = out.summary();
    for part in [
        "#### Changes v1.2.2 → v1.2.3",
        "2 commits, pull requests [#121](https://github.com/acme/backend/pull/121), [#120](https://github.com/acme/backend/pull/120)",
        "- `2222222` Merge pull request #121 from acme/fix — Bo",
        "- `1111111` Add export (#120) — ann",
    ] {
        assert!(s.contains(part), "{part:?} missing from:\n{s}");
    }
    // No previous version in the outcome: the last successful deploy record's version; a compare failure only warns.
    let release = Release::begin(
        plan(Phase::Deploy, "stage", Some("v1.2.3")),
        api(&server),
        runner_env(),
        SUMMER,
    )
    .await
    .unwrap();
    let out = release
        .finish(
            Ok(Fake {
                ok: true,
                previous: None,
            }),
            Duration::from_secs(1),
            &runner,
        )
        .await
        .unwrap();
    assert!(out.ok());
    assert!(!out.summary().contains("#### Changes"), "{}", out.summary());
    assert_eq!(
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/repos/acme/backend/compare/v1.2.1...v1.2.3")
            .count(),
        1
    );
}

#[tokio::test]
async fn the_webhook_gets_one_message_and_its_failure_only_warns() {
    let server = MockServer::start().await;
    list(&server, "stage", json!([])).await;
    accept_records(&server).await;
    Mock::given(method("POST"))
        .and(path("/hooks/T1/B2"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let runner = Runner::new(&GithubEnv::default(), OutputFormat::Text);
    let mut p = plan(Phase::Snapshot, "stage", Some("v1.2.3"));
    p.webhook_url = Some(format!("{}/hooks/T1/B2", server.uri()));
    let release = Release::begin(p, api(&server), runner_env(), SUMMER)
        .await
        .unwrap();
    release
        .finish(
            Ok(Fake {
                ok: true,
                previous: None,
            }),
            Duration::from_secs(72),
            &runner,
        )
        .await
        .unwrap();
    let hooks = requests(&server, "POST", "/hooks/T1/B2").await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(
        hooks[0].body_json::<Value>().unwrap(),
        json!({"text": "✅ snapshot v1.2.3 to stage succeeded in 1m 12s · https://github.com/acme/backend/actions/runs/4242"})
    );
    // A webhook that fails does not change the outcome.
    let mut p = plan(Phase::Snapshot, "stage", Some("v1.2.3"));
    p.webhook_url = Some(format!("{}/hooks/gone", server.uri()));
    let release = Release::begin(p, api(&server), runner_env(), SUMMER)
        .await
        .unwrap();
    let out = release
        .finish(
            Ok(Fake {
                ok: true,
                previous: None,
            }),
            Duration::from_secs(1),
            &runner,
        )
        .await
        .unwrap();
    assert!(out.ok());
}

#[tokio::test]
async fn off_a_runner_github_is_skipped_but_the_freeze_applies() {
    let server = MockServer::start().await;
    let local = GithubEnv::default();
    let no_github = deployments::connect(Mode::Auto, &local, None).unwrap();
    let christmas = datetime!(2026-12-24 10:00 UTC);
    let err = Release::begin(
        plan(Phase::Deploy, "prod", Some("v1.2.3")),
        no_github.clone(),
        local.clone(),
        christmas,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("freeze gate: prod is frozen now"), "{err}");
    let release = Release::begin(
        plan(Phase::Deploy, "prod", Some("v1.2.3")),
        no_github,
        local,
        SUMMER,
    )
    .await
    .unwrap();
    assert_eq!(
        release.record,
        Record::NotRecorded {
            why: "GitHub not available".into()
        }
    );
    let labels: Vec<(&str, &str)> = release
        .gates
        .iter()
        .map(|g| (g.gate.name(), g.verdict.label()))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("freeze", "pass"),
            ("one at a time", "skipped"),
            ("promotion", "skipped")
        ]
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_dry_run_checks_the_gates_and_records_nothing() {
    let server = MockServer::start().await;
    list(
        &server,
        "prod",
        json!([ours(12, "prod", "deploy", "v1.2.2", "99")]),
    )
    .await;
    statuses(&server, 12, json!([status("in_progress", "99")])).await;
    workflow_run(&server, 99, "in_progress").await;
    accept_records(&server).await;
    let mut p = plan(Phase::Snapshot, "prod", Some("v1.2.3"));
    p.dry_run = true;
    let release = Release::begin(p, api(&server), runner_env(), SUMMER)
        .await
        .unwrap();
    assert_eq!(release.gates[0].verdict.label(), "refused");
    assert_eq!(
        release.record,
        Record::NotRecorded {
            why: "dry run".into()
        }
    );
    let out = release
        .finish(
            Ok(Fake {
                ok: true,
                previous: None,
            }),
            Duration::from_secs(1),
            &Runner::new(&GithubEnv::default(), OutputFormat::Text),
        )
        .await
        .unwrap();
    assert!(out.summary().contains("🧪 dry run"), "{}", out.summary());
    assert!(requests(&server, "POST", DEPLOYMENTS).await.is_empty());
}

// ---- The binary: refusals happen before any AWS call. These need the real phases (snapshot, state). ----

async fn github_mock() -> MockServer {
    MockServer::start().await
}

fn github_env(server: &MockServer) -> Vec<(String, String)> {
    vec![
        ("GITHUB_API_URL".into(), server.uri()),
        ("GITHUB_SHA".into(), "0123abc".into()),
    ]
}

async fn run_action(
    ctx: &TestContext,
    server: &MockServer,
    inputs: &[(&str, &str)],
) -> crate::support::RunResult {
    let env = github_env(server);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut all = vec![("config", "deploy.toml"), ("github-token", "t0ken")];
    all.extend_from_slice(inputs);
    ctx.action_with_env(&all, &env).await
}

#[tokio::test]
async fn binary_a_deployment_in_progress_elsewhere_refuses_with_zero_aws_calls() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    let server = github_mock().await;
    list(
        &server,
        "stage",
        json!([ours(12, "stage", "deploy", "v1.2.2", "99")]),
    )
    .await;
    statuses(&server, 12, json!([status("in_progress", "99")])).await;
    accept_records(&server).await;
    let r = run_action(
        &ctx,
        &server,
        &[
            ("phase", "snapshot"),
            ("environment", "stage"),
            ("version", "v1.2.3"),
        ],
    )
    .await;
    r.assert_code(1);
    assert!(
        r.stderr.contains("one-at-a-time gate: another deployment of stage is in progress: deployment 12 (deploy v1.2.2, https://github.com/acme/backend/actions/runs/99)"),
        "{}",
        r.stderr
    );
    assert!(
        ctx.calls().await.is_empty(),
        "no AWS call: {:?}",
        ctx.calls().await
    );
    assert!(requests(&server, "POST", DEPLOYMENTS).await.is_empty());
    assert!(r.summary.contains("one-at-a-time gate"), "{}", r.summary);
}

#[tokio::test]
async fn binary_missing_deployments_permission_names_it_with_zero_aws_calls() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    let server = github_mock().await;
    list(&server, "stage", json!([])).await;
    Mock::given(method("POST"))
        .and(path(DEPLOYMENTS))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"message": "Resource not accessible by integration"})),
        )
        .mount(&server)
        .await;
    let r = run_action(
        &ctx,
        &server,
        &[
            ("phase", "snapshot"),
            ("environment", "stage"),
            ("version", "v1.2.3"),
        ],
    )
    .await;
    r.assert_code(1);
    assert!(
        r.stderr.contains("`permissions: deployments: write`"),
        "{}",
        r.stderr
    );
    assert!(
        ctx.calls().await.is_empty(),
        "no AWS call: {:?}",
        ctx.calls().await
    );
}

#[tokio::test]
async fn binary_a_snapshot_is_recorded_through_retries_and_a_lost_final_status_only_warns() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let server = github_mock().await;
    Mock::given(method("GET"))
        .and(path(DEPLOYMENTS))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    list(&server, "stage", json!([])).await;
    Mock::given(method("POST"))
        .and(path(DEPLOYMENTS))
        .respond_with(ResponseTemplate::new(201).set_body_json(deployment(
            77,
            "stage",
            "v1.2.3",
            json!({}),
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{DEPLOYMENTS}/77/statuses")))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": 5, "state": "in_progress"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{DEPLOYMENTS}/77/statuses")))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"message": "Server Error"})))
        .mount(&server)
        .await;
    let r = run_action(
        &ctx,
        &server,
        &[
            ("phase", "snapshot"),
            ("environment", "stage"),
            ("version", "v1.2.3"),
        ],
    )
    .await;
    r.assert_code(0);
    assert!(r.stderr.contains("retrying in"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("could not record the final status (success) of GitHub deployment 77"),
        "{}",
        r.stderr
    );
    assert_eq!(r.outputs["deployment-id"], "77");
    assert!(
        r.summary.contains("### snapshot v1.2.3 → stage"),
        "{}",
        r.summary
    );
    assert!(
        ctx.mutating_calls()
            .await
            .iter()
            .any(|c| c.contains("CreateDBSnapshot")),
        "{:?}",
        ctx.mutating_calls().await
    );
}

#[tokio::test]
async fn binary_a_frozen_environment_refuses_state_changes_unless_overridden() {
    let ctx = TestContext::new().await;
    let path = ctx.seed("stage", &[]);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("\n[environments.stage.freeze]\ndates = [{ from = \"2000-01-01\", to = \"2999-12-31\", reason = \"test freeze\" }]\n");
    std::fs::write(&path, text).unwrap();
    ctx.clear_calls().await;
    let server = github_mock().await;
    list(&server, "stage", json!([])).await;
    accept_records(&server).await;
    let r = run_action(
        &ctx,
        &server,
        &[
            ("phase", "state"),
            ("environment", "stage"),
            ("state", "running"),
        ],
    )
    .await;
    r.assert_code(1);
    assert!(
        r.stderr.contains(
            "freeze gate: stage is frozen now: test freeze (2000-01-01 to 2999-12-31 UTC)"
        ),
        "{}",
        r.stderr
    );
    assert!(
        ctx.calls().await.is_empty(),
        "no AWS call: {:?}",
        ctx.calls().await
    );
    let r = run_action(
        &ctx,
        &server,
        &[
            ("phase", "state"),
            ("environment", "stage"),
            ("state", "running"),
            ("override-freeze", "true"),
        ],
    )
    .await;
    r.assert_code(2);
    assert!(r.stderr.contains("input `override-freeze`"), "{}", r.stderr);
    let r = run_action(
        &ctx,
        &server,
        &[
            ("phase", "state"),
            ("environment", "stage"),
            ("state", "running"),
            ("override-freeze", "INC-7 fix, approved by on-call"),
        ],
    )
    .await;
    r.assert_code(0);
    assert!(
        r.summary
            .contains("| Freeze overridden | INC-7 fix, approved by on-call |"),
        "{}",
        r.summary
    );
    let body: Value = requests(&server, "POST", DEPLOYMENTS).await[0]
        .body_json()
        .unwrap();
    assert_eq!(
        body["payload"]["override_freeze"],
        "INC-7 fix, approved by on-call"
    );
}

#[tokio::test]
async fn binary_bad_github_inputs_exit_2_with_zero_aws_calls() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.clear_calls().await;
    let server = github_mock().await;
    let base = [
        ("phase", "snapshot"),
        ("environment", "stage"),
        ("version", "v1.2.3"),
    ];
    for (input, value, names) in [
        ("github-deployments", "maybe", "input `github-deployments`"),
        (
            "webhook-url",
            "hooks.example.org/T0/B0/s3cr3t",
            "input `webhook-url`",
        ),
        ("override-freeze", "yes", "input `override-freeze`"),
    ] {
        let mut inputs = base.to_vec();
        inputs.push((input, value));
        let r = run_action(&ctx, &server, &inputs).await;
        r.assert_code(2);
        assert!(r.stderr.contains(names), "{}", r.stderr);
        let leaked = r
            .stderr
            .lines()
            .any(|l| l.contains("s3cr3t") && !l.starts_with("::add-mask::"));
        assert!(!leaked, "the webhook URL is a secret: {}", r.stderr);
    }
    assert!(
        ctx.calls().await.is_empty(),
        "no AWS call: {:?}",
        ctx.calls().await
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn binary_a_deploy_summary_lists_the_changes_since_the_running_version() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let server = github_mock().await;
    list(&server, "stage", json!([])).await;
    accept_records(&server).await;
    let mut compare = compare_body();
    compare["html_url"] = json!("https://github.com/acme/backend/compare/v1.0.0...v1.1.0");
    Mock::given(method("GET"))
        .and(path("/repos/acme/backend/compare/v1.0.0...v1.1.0"))
        .respond_with(ResponseTemplate::new(200).set_body_json(compare))
        .mount(&server)
        .await;
    let r = run_action(
        &ctx,
        &server,
        &[
            ("phase", "deploy"),
            ("environment", "stage"),
            ("version", "v1.1.0"),
        ],
    )
    .await;
    r.assert_code(0);
    assert_eq!(r.outputs["deployment-id"], "77");
    for part in [
        "### deploy v1.1.0 → stage",
        "#### Changes v1.0.0 → v1.1.0",
        "[#120](https://github.com/acme/backend/pull/120)",
        "- `1111111` Add export (#120) — ann",
    ] {
        assert!(
            r.summary.contains(part),
            "{part:?} missing from:\n{}",
            r.summary
        );
    }
    let last: Value = requests(&server, "POST", &format!("{DEPLOYMENTS}/77/statuses")).await[1]
        .body_json()
        .unwrap();
    assert_eq!(last["state"], "success");
}

#[tokio::test]
async fn binary_status_is_read_only_and_records_nothing_on_github() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let server = github_mock().await;
    let r = run_action(
        &ctx,
        &server,
        &[("phase", "status"), ("environment", "stage")],
    )
    .await;
    r.assert_code(0);
    assert!(server.received_requests().await.unwrap().is_empty());
    assert!(!r.outputs.contains_key("deployment-id"));
}

/// `version: from:stage` also asks GitHub: stage's newest deployment failed, so nothing is promoted (exit 2, no AWS
/// change), even though stage's services look settled on one version.
#[tokio::test]
async fn promotion_by_reference_refuses_when_the_sources_last_deployment_failed() {
    let ctx = crate::support::TestContext::new().await;
    crate::run::seed_two(&ctx, "v1.4.0", &[]);
    let server = MockServer::start().await;
    list(&server, "prod", json!([])).await;
    accept_records(&server).await;
    list(
        &server,
        "stage",
        json!([ours(50, "stage", "deploy", "v1.4.0", "4000")]),
    )
    .await;
    statuses(
        &server,
        50,
        json!([status("failure", "4000"), status("in_progress", "4000")]),
    )
    .await;
    ctx.clear_calls().await;
    let uri = server.uri();
    let r = ctx
        .action_with_env(
            &[
                ("phase", "deploy"),
                ("environment", "prod"),
                ("config", "deploy.toml"),
                ("version", "from:stage"),
                ("github-token", "ghs_test_token"),
            ],
            &[("GITHUB_API_URL", uri.as_str()), ("GITHUB_SHA", "0123abc")],
        )
        .await;
    assert_eq!(r.code, 2, "stderr: {}", r.stderr);
    assert!(
        r.stderr.contains(
            "refusing from:stage: its last deployment (v1.4.0) did not succeed on GitHub"
        ),
        "{}",
        r.stderr
    );
    assert!(
        ctx.mutating_calls().await.is_empty(),
        "nothing changed in AWS"
    );
}
