//! Promotion by reference: `version: from:<environment>` is the version that environment's core services run now.
//!
//! - **Validation, no AWS call** ([`VersionRef::from_invocation`]): `from:` must name an environment of the config
//!   file; anything else must be a valid version. A phase that would change nothing by it (deploy an environment to
//!   the version it runs) refuses to name itself.
//! - **Resolution, the first step of a phase** ([`resolve`]), before anything changes: the named environment is
//!   observed read-only through [`environment::observe`] (in its own region) and [`decide`] accepts it only when it is
//!   settled (running or restricted: every service up, its roll-out COMPLETED, one deployment) and every core service
//!   runs the same version; then, where GitHub can say, its last deployment must have succeeded
//!   ([`last_deployment_succeeded`]). A refusal is a [`UsageError`] (exit 2): one line, nothing started.

use anyhow::Result;
use serde::Serialize;

use crate::aws::ecs::Rollout;
use crate::config::{Config, Environment};
use crate::domain::environment::{self, EnvState, Status};
use crate::error::UsageError;
use crate::inputs::{Common, GithubEnv, Invocation};
use crate::version::Version;

/// The prefix of a version reference.
pub const FROM: &str = "from:";

/// The `version` input of a phase that accepts promotion by reference.
#[derive(Debug, Clone)]
pub enum VersionRef {
    /// A release tag or label as given.
    Given(Version),
    /// `from:<environment>`: resolved by [`resolve`] when the phase starts.
    From(Box<Source>),
}

/// The environment a version is promoted from, and how to ask GitHub about it.
#[derive(Debug, Clone)]
pub struct Source {
    pub environment: Environment,
    pub github: GithubEnv,
    /// The `github-token` input; `None` when GitHub cannot be asked.
    pub github_token: Option<String>,
}

/// Whether `from:` may name the environment the phase works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfReference {
    /// `run`: the version this environment runs now is a useful thing to run a task with.
    Allowed,
    /// `deploy`, `migrate`: naming itself would do nothing, so it is almost certainly a typo.
    Refused,
}

impl VersionRef {
    /// The `version` input: required; `from:<environment>` or a version. No AWS call.
    pub fn from_invocation(
        inv: &Invocation,
        common: &Common,
        self_ref: SelfReference,
    ) -> Result<VersionRef, UsageError> {
        let Some(raw) = inv.raw.version.as_deref() else {
            return Err(UsageError::new(format!(
                "input `version`: missing; phase {} needs the release tag or label to use (e.g. v1.66.0), or from:<environment> for the version another environment runs (e.g. from:stage)",
                inv.phase.name()
            )));
        };
        let Some(name) = reference(raw) else {
            return Version::parse(raw).map(VersionRef::Given);
        };
        let here = &common.environment.name;
        if name.is_empty() {
            return Err(UsageError::new(
                "input `version`: \"from:\" names no environment; use from:<environment>, e.g. from:stage",
            ));
        }
        if name == here && self_ref == SelfReference::Refused {
            return Err(UsageError::new(format!(
                "input `version`: from:{name} names the environment phase {} works on, which would change nothing; name the environment to promote from, e.g. from:stage",
                inv.phase.name()
            )));
        }
        let config = Config::load(&common.config_path)?;
        let environment = config.environments.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = config.environments.keys().map(String::as_str).collect();
            UsageError::new(format!(
                "input `version`: from:{name} names no environment of {}; it defines: {}",
                common.config_path.display(),
                known.join(", ")
            ))
        })?;
        Ok(VersionRef::From(Box::new(Source {
            environment,
            github: inv.github.clone(),
            github_token: inv
                .raw
                .github_token
                .clone()
                .filter(|t| !t.trim().is_empty()),
        })))
    }

    /// The version when it was given, for checks that can run before resolution.
    pub fn given(&self) -> Option<&Version> {
        match self {
            VersionRef::Given(v) => Some(v),
            VersionRef::From(_) => None,
        }
    }
}

/// Pure: the environment name of a `from:<environment>` reference, `None` for anything else. Not trimmed (issue 20:
/// no silent trimming of versions): `" from:stage"` is no reference (and no version), `"from: stage"` names no
/// environment.
pub fn reference(input: &str) -> Option<&str> {
    input.strip_prefix(FROM)
}

/// The clients resolution uses: it observes the source environment read-only, in that environment's region.
pub struct Clients {
    sdk: aws_config::SdkConfig,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients { sdk: sdk.clone() }
    }

    /// `status`'s clients for a region: the phase's own configuration with only the region changed (credentials,
    /// endpoint and retries stay).
    fn status_for(&self, region: &str) -> environment::Clients {
        if self.sdk.region().map(|r| r.as_ref()) == Some(region) {
            return environment::Clients::new(&self.sdk);
        }
        let sdk = self
            .sdk
            .to_builder()
            .region(aws_config::Region::new(region.to_string()))
            .build();
        environment::Clients::new(&sdk)
    }
}

/// The version a phase works with, and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub version: Version,
    /// Set for `from:<environment>`.
    pub promotion: Option<Promotion>,
}

/// What `from:<environment>` was resolved from.
#[derive(Debug, Clone, Serialize)]
pub struct Promotion {
    pub environment: String,
    pub region: String,
    pub state: EnvState,
    /// (service, version) of every core service there.
    pub services: Vec<(String, String)>,
    /// Whether GitHub says its last deployment succeeded; `None` when that is not known.
    pub last_deployment_succeeded: Option<bool>,
}

impl Resolved {
    /// The `resolved-from` output: the environment named by `from:`, empty otherwise.
    pub fn resolved_from(&self) -> String {
        self.promotion
            .as_ref()
            .map(|p| p.environment.clone())
            .unwrap_or_default()
    }
}

impl Promotion {
    /// One line for summaries: `v1.2.0 from stage (running: core v1.2.0, workers v1.2.0)`.
    pub fn describe(&self, version: &str) -> String {
        let github = match self.last_deployment_succeeded {
            Some(true) => "; its last deployment succeeded",
            Some(false) => "; its last deployment did NOT succeed",
            None => "",
        };
        format!(
            "{version} from {} ({}: {}{github})",
            self.environment,
            self.state,
            self.services
                .iter()
                .map(|(s, v)| format!("{s} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// Resolves the version: as given, or what the source environment runs now. Read-only; refusals are usage errors.
pub async fn resolve(vref: &VersionRef, clients: &Clients) -> Result<Resolved> {
    let source = match vref {
        VersionRef::Given(v) => {
            return Ok(Resolved {
                version: v.clone(),
                promotion: None,
            })
        }
        VersionRef::From(source) => source,
    };
    let env = &source.environment;
    let status = environment::observe(env, &clients.status_for(&env.region))
        .await
        .map_err(|e| {
            e.context(format!(
                "reading environment {} ({} in {}) to resolve version from:{}",
                env.name, env.cluster, env.region, env.name
            ))
        })?;
    let version = decide(&status).map_err(|why| {
        UsageError::new(format!(
            "input `version`: refusing from:{}: {why}",
            env.name
        ))
    })?;
    let version = Version::parse(&version).map_err(|e| {
        UsageError::new(format!(
            "input `version`: refusing from:{}: its services run {version:?}, which is not a usable version ({e})",
            env.name
        ))
    })?;
    let last = last_deployment_succeeded(source, &version).await?;
    match last {
        Some(true) => tracing::info!(
            "GitHub: the last deployment of {version} to {} succeeded",
            env.name
        ),
        Some(false) => {
            return Err(UsageError::new(format!(
                "input `version`: refusing from:{}: its last deployment ({version}) did not succeed on GitHub; fix {} first, or pass the version explicitly",
                env.name, env.name
            ))
            .into())
        }
        None => tracing::info!(
            "GitHub: whether the last deployment to {} succeeded is not known here; relying on its ECS state",
            env.name
        ),
    }
    tracing::info!(
        "version from:{} resolves to {version}: {} is {} and {} run {version}",
        env.name,
        env.name,
        status.state,
        status
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Resolved {
        promotion: Some(Promotion {
            environment: env.name.clone(),
            region: env.region.clone(),
            state: status.state,
            services: status
                .services
                .iter()
                .map(|s| (s.name.clone(), s.version.clone().unwrap_or_default()))
                .collect(),
            last_deployment_succeeded: last,
        }),
        version,
    })
}

/// Hook for the GitHub side of the promotion check: whether the source environment's last GitHub deployment
/// succeeded. `Ok(None)` means not known (no token, not on a runner, or no record), and promotion relies on the ECS
/// state alone.
pub async fn last_deployment_succeeded(source: &Source, version: &Version) -> Result<Option<bool>> {
    let _ = version;
    crate::github::deployments::last_deployment_succeeded(
        &source.github,
        source.github_token.as_deref(),
        &source.environment.github.environment,
    )
    .await
}

/// Pure: the version a settled environment runs, or why it cannot be promoted from (one line, without the input name).
pub fn decide(status: &Status) -> Result<String, String> {
    let name = &status.environment;
    let reason = status
        .state_reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    match status.state {
        EnvState::Running | EnvState::Restricted => {}
        EnvState::Mixed => {
            return Err(format!(
                "{name} is mixed{reason}: a change there is under way or stuck; promote once it is settled (see phase status)"
            ))
        }
        EnvState::DbOnly => {
            return Err(format!(
                "{name} is db-only: its core services are at 0 while a release is under way; promote once it is running"
            ))
        }
        EnvState::Stopped => {
            return Err(format!(
                "{name} is stopped: its core services run nothing now; start it (phase state, running) or pass the version"
            ))
        }
    }
    for s in &status.services {
        match &s.rollout {
            Rollout::Completed | Rollout::None => {}
            Rollout::InProgress | Rollout::Failed | Rollout::Other(_) => {
                return Err(format!(
                    "service {} of {name} has a roll-out {}; promote once it is COMPLETED",
                    s.name, s.rollout
                ))
            }
        }
    }
    let mut versions: Vec<(&str, &str)> = vec![];
    for s in &status.services {
        match &s.version {
            Some(v) => versions.push((&s.name, v)),
            None => {
                return Err(format!(
                    "service {} of {name} runs {}, which its image-tag template does not match, so its version is not known",
                    s.name,
                    s.images.join(", ")
                ))
            }
        }
    }
    match versions.as_slice() {
        [] => Err(format!("{name} has no core service")),
        [(_, first), rest @ ..] if rest.iter().all(|(_, v)| v == first) => Ok(first.to_string()),
        all => Err(format!(
            "its core services run different versions ({}); deploy one version to {name} first",
            all.iter()
                .map(|(s, v)| format!("{s} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::environment::ServiceStatus;
    use crate::domain::maintenance::MaintenanceState;

    fn svc(name: &str, version: Option<&str>, rollout: Rollout) -> ServiceStatus {
        ServiceStatus {
            name: name.into(),
            task_definition: format!("arn:aws:ecs:r:1:task-definition/stage-{name}:3"),
            revision: Some(3),
            images: vec![format!("repo/app:{name}-{}", version.unwrap_or("latest"))],
            version: version.map(str::to_string),
            desired: 1,
            running: 1,
            pending: 0,
            configured_desired: Some(1),
            rollout,
            deployments: 1,
            autoscaling: None,
        }
    }

    fn status(state: EnvState, services: Vec<ServiceStatus>) -> Status {
        Status {
            environment: "stage".into(),
            cluster: "app-stage".into(),
            region: "eu-central-1".into(),
            state,
            state_reason: (state == EnvState::Mixed)
                .then(|| "1 service(s) neither settled up nor scaled to 0".into()),
            services,
            database: None,
            maintenance: MaintenanceState::Off,
            drain_from: None,
            migration_tasks: vec![],
        }
    }

    #[test]
    fn what_a_promotion_accepts_and_refuses() {
        use Rollout::*;
        let v1 = Some("v1.2.0");
        let cases: Vec<(EnvState, Vec<ServiceStatus>, Result<&str, &str>)> = vec![
            (
                EnvState::Running,
                vec![svc("core", v1, Completed), svc("workers", v1, Completed)],
                Ok("v1.2.0"),
            ),
            (EnvState::Restricted, vec![svc("core", v1, Completed)], Ok("v1.2.0")),
            (EnvState::Running, vec![svc("core", v1, None)], Ok("v1.2.0")),
            (
                EnvState::Running,
                vec![svc("core", v1, Completed), svc("workers", Some("v1.1.0"), Completed)],
                Err("run different versions (core v1.2.0, workers v1.1.0)"),
            ),
            (
                EnvState::Mixed,
                vec![svc("core", v1, InProgress)],
                Err("stage is mixed (1 service(s) neither settled up"),
            ),
            (
                EnvState::Running,
                vec![svc("core", v1, InProgress)],
                Err("roll-out IN_PROGRESS"),
            ),
            (
                EnvState::Running,
                vec![svc("core", v1, Failed)],
                Err("roll-out FAILED"),
            ),
            (
                EnvState::Running,
                vec![svc("core", v1, Other("NEW_STATE".into()))],
                Err("roll-out NEW_STATE"),
            ),
            (
                EnvState::DbOnly,
                vec![svc("core", v1, Completed)],
                Err("stage is db-only"),
            ),
            (
                EnvState::Stopped,
                vec![svc("core", v1, Completed)],
                Err("stage is stopped"),
            ),
            (
                EnvState::Running,
                vec![svc("core", Option::None, Completed)],
                Err("service core of stage runs repo/app:core-latest, which its image-tag template does not match"),
            ),
            (EnvState::Running, vec![], Err("stage has no core service")),
        ];
        for (state, services, want) in cases {
            let got = decide(&status(state, services.clone()));
            match (&got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w),
                (Err(g), Err(w)) => assert!(g.contains(w), "{g:?} should contain {w:?}"),
                _ => panic!("{state} {services:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn references() {
        assert_eq!(reference("from:stage"), Some("stage"));
        assert_eq!(reference(" from:stage"), None);
        assert_eq!(reference("from: stage "), Some(" stage "));
        assert_eq!(reference("from:"), Some(""));
        assert_eq!(reference("v1.2.3"), None);
        assert_eq!(reference("api/v1"), None);
        assert!(
            Version::parse("from:stage").is_err(),
            "a reference can never be a version"
        );
    }
}
