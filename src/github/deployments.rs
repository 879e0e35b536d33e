//! The GitHub Deployments API: whether and how to reach it ([`connect`]), deployments as the gates see them
//! ([`DeploymentSeen`]), whether an environment's newest deployment succeeded (promotion by reference), and marking a torn-down
//! review app's deployments inactive. Creating a run's record and deciding the gates is [`crate::wrapper`].

use serde::Serialize;
use serde_json::{json, Value};

use super::api::{Api, ApiError, Deployment, DeploymentStatus};
use crate::error::UsageError;
use crate::inputs::GithubEnv;

/// A deployment status state as GitHub reports it. `Waiting` is what an environment with required reviewers shows
/// before approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusState {
    Error,
    Failure,
    Inactive,
    InProgress,
    Queued,
    Pending,
    Success,
    Waiting,
    Unknown(String),
}

impl StatusState {
    pub fn parse(s: &str) -> StatusState {
        match s {
            "error" => StatusState::Error,
            "failure" => StatusState::Failure,
            "inactive" => StatusState::Inactive,
            "in_progress" => StatusState::InProgress,
            "queued" => StatusState::Queued,
            "pending" => StatusState::Pending,
            "success" => StatusState::Success,
            "waiting" => StatusState::Waiting,
            other => StatusState::Unknown(other.to_string()),
        }
    }

    /// Whether a deployment in this state may be changing the environment right now.
    pub fn is_active(&self) -> bool {
        match self {
            StatusState::InProgress | StatusState::Queued | StatusState::Pending => true,
            // Waiting for approval changes nothing yet; the job's concurrency group orders it.
            StatusState::Waiting => false,
            StatusState::Error
            | StatusState::Failure
            | StatusState::Inactive
            | StatusState::Success => false,
            StatusState::Unknown(_) => false,
        }
    }
}

/// A deployment as the gates see it: who made it, for which run and version, and its statuses (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentSeen {
    pub id: u64,
    /// Made by deploy-action (its payload says so); otherwise by GitHub for a job's `environment:`, or another tool.
    pub ours: bool,
    pub task: String,
    pub git_ref: String,
    pub sha: String,
    /// The workflow run that made it: our payload's `run_id`, else the run in its status's log URL.
    pub run_id: Option<String>,
    pub phase: Option<String>,
    pub version: Option<String>,
    /// Newest first; may hold only the latest.
    pub states: Vec<StatusState>,
    pub log_url: Option<String>,
}

impl DeploymentSeen {
    pub fn latest(&self) -> Option<&StatusState> {
        self.states.first()
    }

    pub fn is_active(&self) -> bool {
        self.latest().is_some_and(StatusState::is_active)
    }

    /// `deployment 17 (deploy v1.2.3, run https://…)`.
    pub fn describe(&self) -> String {
        let what = match (&self.phase, &self.version) {
            (Some(p), Some(v)) => format!("{p} {v}"),
            (Some(p), None) => p.clone(),
            (None, _) => format!("task {}, ref {}", self.task, self.git_ref),
        };
        let link = match (&self.log_url, &self.run_id) {
            (Some(url), _) => format!(", {url}"),
            (None, Some(run)) => format!(", run {run}"),
            (None, None) => String::new(),
        };
        format!("deployment {} ({what}{link})", self.id)
    }
}

/// The run id in a workflow-run URL (`…/actions/runs/123` or `…/actions/runs/123/job/456`).
pub fn run_id_in_url(url: &str) -> Option<String> {
    let rest = url.split("/actions/runs/").nth(1)?;
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!id.is_empty()).then_some(id)
}

/// The payload marker that tells our records from a job's `environment:` records and other tools'.
pub const TOOL: &str = "deploy-action";

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The `github-deployments` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Record when on a runner with a token and `GITHUB_REPOSITORY`, unless the job's own `environment:` already
    /// records this run.
    Auto,
    /// Always record; missing token or repository is an error.
    On,
    /// Never call GitHub: no record, and the gates that need GitHub are skipped.
    Off,
}

impl Mode {
    pub fn parse(value: Option<&str>) -> Result<Mode, UsageError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("auto") => Ok(Mode::Auto),
            Some("true" | "yes" | "on" | "1") => Ok(Mode::On),
            Some("false" | "no" | "off" | "0") => Ok(Mode::Off),
            Some(other) => Err(UsageError::new(format!(
                "input `github-deployments`: {other:?} is not auto, true or false"
            ))),
        }
    }
}

/// The GitHub API if it is available, or why not (`Err` only when `github-deployments: true` cannot be honoured or
/// the runner's GitHub variables are malformed).
pub fn connect(
    mode: Mode,
    github: &GithubEnv,
    token: Option<&str>,
) -> anyhow::Result<Result<Api, String>> {
    let token = token.map(str::trim).filter(|t| !t.is_empty());
    let missing = match (
        mode,
        github.on_runner(),
        token,
        github.repository.as_deref(),
    ) {
        (Mode::Off, ..) => return Ok(Err("github-deployments is false".into())),
        (Mode::Auto, false, ..) => return Ok(Err("not on a GitHub runner".into())),
        (_, _, None, _) => "no github-token",
        (_, _, Some(_), None) => "GITHUB_REPOSITORY is not set",
        (_, _, Some(token), Some(repo)) => {
            let url = github.api_url.as_deref().unwrap_or(DEFAULT_API_URL);
            return Api::new(url, token, repo).map(Ok);
        }
    };
    match mode {
        Mode::On => anyhow::bail!(
            "input `github-deployments`: true, but {missing}; pass a token with `deployments: write` (the default ${{{{ github.token }}}} has it when the job sets `permissions: deployments: write`), or set github-deployments: auto"
        ),
        Mode::Auto | Mode::Off => Ok(Err(missing.to_string())),
    }
}

/// The environment's newest deployments, each with its newest `statuses` statuses.
pub async fn recent_deployments(
    api: &Api,
    environment: &str,
    count: u32,
    statuses: u32,
) -> Result<Vec<DeploymentSeen>, ApiError> {
    let list: Vec<Deployment> = api
        .get(
            &format!("list deployments of {environment}"),
            &api.route(&format!(
                "deployments?environment={}&per_page={count}",
                query_value(environment)
            )),
        )
        .await?;
    with_statuses(api, &list, statuses).await
}

pub async fn with_statuses(
    api: &Api,
    list: &[Deployment],
    statuses: u32,
) -> Result<Vec<DeploymentSeen>, ApiError> {
    let fetches = list.iter().map(|d| async move {
        let what = format!("list statuses of deployment {}", d.id);
        let route = api.route(&format!(
            "deployments/{}/statuses?per_page={statuses}",
            d.id
        ));
        api.get::<Vec<DeploymentStatus>>(&what, &route).await
    });
    let all = futures::future::try_join_all(fetches).await?;
    Ok(list.iter().zip(all).map(|(d, s)| seen(d, &s)).collect())
}

/// A deployment as the gates see it.
pub fn seen(d: &Deployment, statuses: &[DeploymentStatus]) -> DeploymentSeen {
    let ours = d.payload.get("tool").and_then(Value::as_str) == Some(TOOL);
    let field = |k: &str| match d.payload.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let log_url = statuses
        .first()
        .and_then(|s| s.log_url.clone().or_else(|| s.target_url.clone()))
        .filter(|u| !u.is_empty());
    let run_id = ours
        .then(|| field("run_id"))
        .flatten()
        .or_else(|| log_url.as_deref().and_then(run_id_in_url));
    DeploymentSeen {
        id: d.id,
        ours,
        task: d.task.clone(),
        git_ref: d.git_ref.clone(),
        sha: d.sha.clone(),
        run_id,
        phase: ours.then(|| field("phase")).flatten(),
        version: ours.then(|| field("version")).flatten(),
        states: statuses
            .iter()
            .map(|s| StatusState::parse(&s.state))
            .collect(),
        log_url,
    }
}

/// Whether the newest deployment of a GitHub environment ended in success (for `version: from:<env>`). `Ok(None)`
/// when GitHub cannot be asked here (off a runner, no token) or the environment has no deployment yet.
pub async fn last_deployment_succeeded(
    github: &GithubEnv,
    token: Option<&str>,
    gh_environment: &str,
) -> anyhow::Result<Option<bool>> {
    let Ok(api) = connect(Mode::Auto, github, token)? else {
        return Ok(None);
    };
    let list: Vec<Deployment> = api
        .get(
            &format!("list deployments of {gh_environment}"),
            &api.route(&format!(
                "deployments?environment={}&per_page=1",
                query_value(gh_environment)
            )),
        )
        .await?;
    let newest = with_statuses(&api, &list, 10).await?;
    Ok(newest.first().map(|d| last_succeeded(&d.states)))
}

/// Pure: a deployment succeeded when its newest decisive status (skipping `inactive`, which GitHub adds when a
/// later deployment succeeds or a transient one is destroyed) is `success`. Statuses come newest first.
pub fn last_succeeded(states: &[StatusState]) -> bool {
    states
        .iter()
        .find(|s| !matches!(s, StatusState::Inactive))
        .is_some_and(|s| matches!(s, StatusState::Success))
}

/// Marks every deployment of `environment` whose newest status is not `inactive` yet as `inactive` (a torn-down
/// review app). Returns the ids it marked; a second call marks none.
pub async fn deactivate(
    api: &Api,
    environment: &str,
    description: &str,
) -> Result<Vec<u64>, ApiError> {
    let list = recent_deployments(api, environment, 100, 1).await?;
    let mut marked = Vec::new();
    for d in list
        .iter()
        .filter(|d| d.latest() != Some(&StatusState::Inactive))
    {
        api.post::<DeploymentStatus>(
            &format!("set deployment {} to inactive", d.id),
            &api.route(&format!("deployments/{}/statuses", d.id)),
            &json!({ "state": "inactive", "description": bounded(description, 140) }),
        )
        .await?;
        marked.push(d.id);
    }
    Ok(marked)
}

pub fn bounded(s: &str, max: usize) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > max {
        s.chars().take(max - 1).collect::<String>() + "…"
    } else {
        s
    }
}

/// Percent-encodes a query value or path segment (environment names may hold spaces).
pub fn query_value(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(Mode::parse(None).unwrap(), Mode::Auto);
        assert_eq!(Mode::parse(Some("AUTO")).unwrap(), Mode::Auto);
        assert_eq!(Mode::parse(Some("true")).unwrap(), Mode::On);
        assert_eq!(Mode::parse(Some("false")).unwrap(), Mode::Off);
        let e = Mode::parse(Some("maybe")).unwrap_err().to_string();
        assert!(e.starts_with("input `github-deployments`"), "{e}");
    }

    fn runner_env() -> GithubEnv {
        GithubEnv {
            actions: Some("true".into()),
            repository: Some("acme/backend".into()),
            run_id: Some("4242".into()),
            ..GithubEnv::default()
        }
    }

    #[tokio::test]
    async fn when_github_is_used() {
        let local = GithubEnv::default();
        let runner = runner_env();
        let why = |r: anyhow::Result<Result<Api, String>>| r.unwrap().err();
        assert_eq!(
            why(connect(Mode::Auto, &local, Some("t"))).as_deref(),
            Some("not on a GitHub runner")
        );
        assert_eq!(
            why(connect(Mode::Off, &runner, Some("t"))).as_deref(),
            Some("github-deployments is false")
        );
        assert_eq!(
            why(connect(Mode::Auto, &runner, None)).as_deref(),
            Some("no github-token")
        );
        assert_eq!(
            why(connect(Mode::Auto, &runner, Some("  "))).as_deref(),
            Some("no github-token")
        );
        let no_repo = GithubEnv {
            repository: None,
            ..runner_env()
        };
        assert_eq!(
            why(connect(Mode::Auto, &no_repo, Some("t"))).as_deref(),
            Some("GITHUB_REPOSITORY is not set")
        );
        assert!(connect(Mode::Auto, &runner, Some("t")).unwrap().is_ok());
        // Forced: a local run with a token and a repository records; a missing token is an error naming the permission.
        let local_repo = GithubEnv {
            repository: Some("acme/backend".into()),
            ..GithubEnv::default()
        };
        assert!(connect(Mode::On, &local_repo, Some("t")).unwrap().is_ok());
        let e = connect(Mode::On, &runner, None).unwrap_err().to_string();
        assert!(
            e.contains("no github-token") && e.contains("deployments: write"),
            "{e}"
        );
        let bad_repo = GithubEnv {
            repository: Some("acme".into()),
            ..runner_env()
        };
        assert!(connect(Mode::Auto, &bad_repo, Some("t")).is_err());
    }

    #[test]
    fn records_are_told_apart() {
        let d = |payload: Value| Deployment {
            id: 7,
            git_ref: "v1.2.3".into(),
            sha: "abc".into(),
            task: "deploy:deploy".into(),
            environment: "prod".into(),
            payload,
            created_at: String::new(),
            creator: None,
        };
        let status = |state: &str, url: Option<&str>| DeploymentStatus {
            id: 1,
            state: state.into(),
            log_url: url.map(str::to_string),
            target_url: None,
            environment_url: None,
        };
        let ours = seen(
            &d(
                json!({"tool": "deploy-action", "phase": "deploy", "version": "v1.2.3", "run_id": "99"}),
            ),
            &[status("in_progress", None)],
        );
        assert!(ours.ours);
        assert_eq!(ours.run_id.as_deref(), Some("99"));
        assert_eq!(ours.version.as_deref(), Some("v1.2.3"));
        let numeric = seen(&d(json!({"tool": "deploy-action", "run_id": 99})), &[]);
        assert_eq!(numeric.run_id.as_deref(), Some("99"));
        let job = seen(
            &d(json!("")),
            &[status(
                "in_progress",
                Some("https://github.com/acme/backend/actions/runs/4242/job/1"),
            )],
        );
        assert!(!job.ours);
        assert_eq!(job.run_id.as_deref(), Some("4242"));
        assert_eq!(job.version, None);
        // Someone else's payload that happens to carry a version is not ours.
        let other = seen(&d(json!({"version": "v1.2.3", "run_id": "5"})), &[]);
        assert!(!other.ours && other.version.is_none() && other.run_id.is_none());
    }

    #[test]
    fn encoding_and_bounds() {
        assert_eq!(query_value("prod eu/1"), "prod%20eu%2F1");
        assert_eq!(bounded("a  b\nc", 140), "a b c");
        assert_eq!(bounded(&"x".repeat(200), 140).chars().count(), 140);
    }
}

#[cfg(test)]
mod last_deployment_tests {
    use super::*;

    #[test]
    fn the_newest_decisive_status_decides() {
        use StatusState as S;
        let cases: &[(&[StatusState], bool)] = &[
            (&[S::Success, S::InProgress], true),
            (&[S::Inactive, S::Success, S::InProgress], true),
            (&[S::Failure, S::InProgress], false),
            (&[S::Error], false),
            (&[S::InProgress], false),
            (&[S::Inactive], false),
            (&[], false),
        ];
        for (states, want) in cases {
            assert_eq!(last_succeeded(states), *want, "{states:?}");
        }
    }
}
