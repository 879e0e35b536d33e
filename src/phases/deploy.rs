//! Phase `deploy`: a new core version on every service, done the moment ECS is.
//!
//! 1. Plan: each service's current revision is described; the new revision is that revision with only the configured
//!    containers' images changed (and, with `ssm-path`, their `secrets`). A service already on it gets no new
//!    revision and no UpdateService.
//! 2. Register the new revisions (tagged `deploy-action:version`), UpdateService on every changed service at once.
//! 3. Watch until every primary deployment on its new revision is COMPLETED with nothing else left
//!    ([`rollout::progress`]), printing new service events; FAILED or ECS's own rollback is seen on the next poll.
//! 4. Optional smoke check; then the revisions are tagged known good and, in state `running`, maintenance is lifted.
//! 5. On failure, timeout or a failed smoke check: every changed service goes back to the revision it ran before
//!    (waited for), the reasons are reported (events, stopped tasks, last log lines), the new revisions are
//!    deregistered, and the phase exits 1 with `rolled-back=true`.
//! 6. A signal (SIGINT/SIGTERM) stops the deploy before its next change and ends it with exit 130, even after the
//!    last one ([`on_cancel`]): new revisions not yet rolled out are deregistered again, services rolling or not
//!    yet smoke-checked are pointed back (not waited for), completed ones are left for the rerun to finish.
//!
//! The version is resolved before the plan ([`promote::resolve`]): as given, or `from:<environment>` (promotion by
//! reference: the version that environment runs now, refused unless it is settled on one version).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{bail, Result};
use aws_sdk_ecs::types::{ContainerDefinition, Service, Tag, TaskDefinition};
use futures::future::{join_all, try_join_all};
use serde::Serialize;
use tokio::time::Instant;

use super::Ctx;
use crate::aws::ecs::{self, td_short};
use crate::config::{Environment, Service as ServiceConfig};
use crate::domain::autoscaling;
use crate::domain::converge::{self, StateOptions};
use crate::domain::environment::EnvState;
use crate::domain::maintenance::{self, BypassHeader, MaintenanceState};
use crate::domain::preflight;
use crate::domain::promote::{self, Promotion, SelfReference, VersionRef};
use crate::domain::revision::{self, release_containers, ssm_secrets, RevisionChange, SsmSecrets};
use crate::domain::revision_diff::{self, RevisionDiff};
use crate::domain::rollout::{
    self, FailureReport, RolloutTarget, RolloutVerdict, WatchEnd, WatchReport,
};
use crate::domain::{retention, versions};
use crate::error::UsageError;
use crate::github::runner::{text_table, Outcome};
use crate::inputs::{parse_u64, Common, Invocation};
use crate::version::{self, Version};
use crate::wait::{Backoff, Check, Poller, WaitError};

/// How long the smoke check keeps trying before it counts as failed.
const SMOKE_WINDOW: Duration = Duration::from_secs(20);

/// What the environment should be in after the deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployState {
    /// Maintenance stays as it is (on): test the new version with the bypass header.
    Restricted,
    /// Maintenance is lifted once every service completed (and the smoke check passed).
    Running,
}

impl std::fmt::Display for DeployState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeployState::Restricted => "restricted",
            DeployState::Running => "running",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Smoke {
    pub url: reqwest::Url,
    pub status: u16,
}

/// The deploy request: `V` is the `version` input ([`VersionRef`]) until [`run`] resolves it to a [`Version`].
#[derive(Debug, Clone)]
pub struct Request<V = VersionRef> {
    pub common: Common,
    pub version: V,
    pub state: DeployState,
    pub smoke: Option<Smoke>,
    /// The secret header that gets through maintenance: sent with the smoke check, and used if maintenance changes.
    pub bypass: Option<BypassHeader>,
    /// `keep-revisions`: after a successful deploy, each service family keeps this many newest revisions.
    pub keep_revisions: usize,
}

impl Request {
    pub fn from_invocation(inv: &Invocation, common: &Common) -> Result<Request, UsageError> {
        let version = VersionRef::from_invocation(inv, common, SelfReference::Refused)?;
        if let Some(v) = version.given() {
            for s in &common.environment.services {
                s.image.tag_for(v)?;
            }
        }
        let state = match inv.raw.state.as_deref().map(str::trim) {
            None | Some("running") => DeployState::Running,
            Some("restricted") => DeployState::Restricted,
            Some(other) => {
                return Err(UsageError::new(format!(
                    "input `state`: deploy takes running or restricted, not {other:?}; restricted keeps maintenance on, running lifts it after the roll-out"
                )))
            }
        };
        let bypass = converge::bypass_header(
            inv.raw.maintenance_header_name.as_deref(),
            inv.raw.maintenance_header_value.as_deref(),
        )?;
        let status = parse_u64("smoke-status", inv.raw.smoke_status.as_deref(), 100..=599)?;
        let smoke = match inv.raw.smoke_url.as_deref().map(str::trim) {
            None => {
                if status.is_some() {
                    return Err(UsageError::new(
                        "input `smoke-status`: set without `smoke-url`; add the URL to request or remove smoke-status",
                    ));
                }
                None
            }
            Some(url) => {
                let parsed = reqwest::Url::parse(url)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .ok_or_else(|| {
                        UsageError::new(format!(
                            "input `smoke-url`: {url:?} is not an http(s) URL; give one such as https://stage.example.org/health"
                        ))
                    })?;
                Some(Smoke {
                    url: parsed,
                    status: status.map(|s| s as u16).unwrap_or(200),
                })
            }
        };
        let maintenance = common.environment.maintenance.is_some();
        if state == DeployState::Restricted && smoke.is_some() && maintenance && bypass.is_none() {
            return Err(UsageError::new(
                "input `maintenance-header-name`: the smoke check in state restricted must pass the maintenance page; set maintenance-header-name and maintenance-header-value",
            ));
        }
        let keep_revisions = parse_u64(
            "keep-revisions",
            inv.raw.keep_revisions.as_deref(),
            1..=1000,
        )?
        .unwrap_or(retention::DEFAULT_KEEP) as usize;
        Ok(Request {
            common: common.clone(),
            version,
            state,
            smoke,
            bypass,
            keep_revisions,
        })
    }

    /// The same request with its version resolved.
    fn resolved(&self, version: Version) -> Request<Version> {
        Request {
            common: self.common.clone(),
            version,
            state: self.state,
            smoke: self.smoke.clone(),
            bypass: self.bypass.clone(),
            keep_revisions: self.keep_revisions,
        }
    }
}

impl super::Recorded for Request {
    fn subject(&self, common: &Common) -> super::Subject {
        super::Subject::new(common, self.version.given())
    }
}

/// Only the clients `deploy` uses (`state` lifts maintenance at the end).
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub state: converge::Clients,
    pub promote: promote::Clients,
    pub preflight: preflight::Clients,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            ecs: aws_sdk_ecs::Client::new(sdk),
            ssm: aws_sdk_ssm::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            state: converge::Clients::new(sdk),
            promote: promote::Clients::new(sdk),
            preflight: preflight::Clients::new(sdk),
        }
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Plan
// ------------------------------------------------------------------------------------------------------------------

/// One service's plan.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub name: String,
    /// The revision the service runs now.
    pub current: String,
    pub current_td: TaskDefinition,
    pub current_tags: Vec<Tag>,
    pub from_version: Option<String>,
    /// The new revision's container definitions, `None` when the current revision already has them.
    pub new_containers: Option<Vec<ContainerDefinition>>,
    /// Whether the primary deployment still needs a look (not COMPLETED on the current revision).
    pub settled: bool,
    /// Set when the service is at 0 (after `db-only`): the count the deploy brings it back to with the new
    /// revision (config `desired-count`, else the count recorded when it was scaled down, else 1).
    pub scale_up_to: Option<i32>,
    /// Event ids present before the deploy.
    pub events: HashSet<String>,
    /// The service's deployment controller (`None`: not reported, which is ECS).
    pub controller: Option<String>,
    pub images: Vec<(String, String)>,
    /// The new revision against the current one, field by field (set with `new_containers`).
    pub diff: Option<RevisionDiff>,
    /// How long this service's roll-outs usually take (from its own events); paces the watch.
    pub usual: Option<rollout::RolloutTime>,
    /// Secrets leaving the new revision because their parameters were deleted from `ssm-path` (one line each).
    pub removed_secrets: Vec<String>,
}

async fn plan(req: &Request<Version>, c: &Clients) -> Result<Vec<ServicePlan>> {
    let env = &req.common.environment;
    let names: Vec<String> = env.services.iter().map(|s| s.name.clone()).collect();
    let services_fut = ecs::describe_services(&c.ecs, &env.cluster, &names);
    let (services, secrets) = tokio::try_join!(services_fut, ssm_secrets(&c.ssm, env))?;
    let tds =
        try_join_all(services.iter().map(|s| {
            ecs::describe_task_definition(&c.ecs, s.task_definition().unwrap_or_default())
        }))
        .await?;
    // A version whose image tag another known version already gives is refused (exit 2) before anything changes.
    let mut families: Vec<&str> = services
        .iter()
        .map(|s| ecs::td_family(s.task_definition().unwrap_or_default()))
        .chain(env.migration.iter().map(|m| m.family.as_str()))
        .collect();
    families.sort_unstable();
    families.dedup();
    let known = versions::in_families(&c.ecs, &families, &req.version).await?;
    versions::refuse_collision(&req.version, &known)?;
    // Services at 0 (the environment is db-only after a migration) come back up with the new revision.
    let scale_up = try_join_all(
        env.services
            .iter()
            .zip(&services)
            .map(|(cfg, svc)| async move {
                if svc.desired_count() > 0 {
                    return Ok::<_, anyhow::Error>(None);
                }
                let tags = ecs::tags(&c.ecs, svc.service_arn().unwrap_or_default()).await?;
                let recorded = tags
                    .iter()
                    .find(|(k, _)| k == converge::TAG_DESIRED_COUNT)
                    .map(|(_, v)| v.as_str());
                Ok(Some(converge::scale_up_count(
                    cfg.desired_count,
                    recorded,
                    0,
                )))
            }),
    )
    .await?;
    let results: Vec<Result<ServicePlan>> = env
        .services
        .iter()
        .zip(services)
        .zip(tds)
        .map(|((cfg, svc), (td, tags))| {
            plan_service(env, cfg, &svc, td, tags, &req.version, secrets.as_ref())
        })
        .collect();
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(|e| format!("{e:#}"))
        .collect();
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(results
        .into_iter()
        .zip(scale_up)
        .map(|(r, up)| ServicePlan {
            scale_up_to: up,
            ..r.expect("checked above")
        })
        .collect())
}

/// The preflight of a deploy: every service on the ECS deployment controller, every image of the plan in ECR.
async fn checks(
    req: &Request<Version>,
    c: &Clients,
    ctx: &Ctx,
    plans: &[ServicePlan],
) -> Result<preflight::Report> {
    let env = &req.common.environment;
    let controllers: Vec<(String, Option<String>)> = plans
        .iter()
        .map(|p| (p.name.clone(), p.controller.clone()))
        .collect();
    let mut rows = preflight::controller_rows(&env.cluster, &controllers);
    let wanted: Vec<preflight::Wanted> = plans
        .iter()
        .flat_map(|p| {
            p.images.iter().map(|(container, image)| preflight::Wanted {
                what: format!("service {}, container {container}", p.name),
                image: image.clone(),
            })
        })
        .collect();
    let poller = ctx.poller("images", Backoff::SLOW);
    let images = preflight::images(&c.preflight, &wanted, req.common.wait_for_images, poller).await;
    rows.extend(preflight::image_rows(&images));
    Ok(preflight::Report { rows })
}

fn plan_service(
    env: &Environment,
    cfg: &ServiceConfig,
    svc: &Service,
    td: TaskDefinition,
    tags: Vec<Tag>,
    version: &Version,
    secrets: Option<&SsmSecrets>,
) -> Result<ServicePlan> {
    // The deployment controller is the preflight's (checks), before anything changes.
    let current = td.task_definition_arn().unwrap_or_default().to_string();
    let mut images = Vec::new();
    for name in &cfg.containers {
        let Some(container) = td
            .container_definitions()
            .iter()
            .find(|c| c.name() == Some(name.as_str()))
        else {
            let known: Vec<&str> = td
                .container_definitions()
                .iter()
                .filter_map(|c| c.name())
                .collect();
            bail!(
                "ECS service {}/{}: its task definition {} has no container {name:?} (it has: {}); correct services.{}.containers in the config",
                env.cluster,
                cfg.name,
                td_short(&current),
                known.join(", "),
                cfg.name
            );
        };
        let image = cfg
            .image
            .image_for(version, container.image().unwrap_or_default())?;
        images.push((name.clone(), image));
    }
    let from_version = cfg
        .containers
        .first()
        .and_then(|n| {
            td.container_definitions()
                .iter()
                .find(|c| c.name() == Some(n.as_str()))
        })
        .and_then(|c| cfg.image.version_of(c.image().unwrap_or_default()));
    let release = RevisionChange {
        images: images.clone(),
        secrets: secrets.cloned(),
    };
    let removed_secrets: Vec<String> = secrets
        .into_iter()
        .flat_map(|ssm| {
            td.container_definitions()
                .iter()
                .filter(|c| cfg.containers.iter().any(|n| c.name() == Some(n.as_str())))
                .filter_map(move |c| {
                    let who = format!("{} container {}", cfg.name, c.name().unwrap_or_default());
                    revision::removed_line(&who, c, ssm)
                })
        })
        .collect();
    for line in &removed_secrets {
        tracing::info!("plan: {line}");
    }
    let new = release_containers(td.container_definitions(), &release);
    let changed = new != td.container_definitions();
    let diff = changed.then(|| revision_diff::diff(td.container_definitions(), &new));
    let primary_done =
        rollout::progress(&current, &rollout::DeploymentObs::of(svc), true) == RolloutVerdict::Done;
    Ok(ServicePlan {
        name: cfg.name.clone(),
        current,
        from_version,
        new_containers: changed.then_some(new),
        settled: primary_done && svc.task_definition() == td.task_definition_arn(),
        scale_up_to: None,
        events: rollout::event_ids(svc),
        controller: svc
            .deployment_controller()
            .map(|d| d.r#type().as_str().to_string()),
        usual: rollout::usual_duration_of(svc),
        removed_secrets,
        current_td: td,
        current_tags: tags,
        images,
        diff,
    })
}

/// `core usually completes in ~4m 10s` (from its history), or how the watch looks without one.
fn usual_line(service: &str, usual: Option<rollout::RolloutTime>) -> String {
    match usual {
        Some(u) => format!(
            "{service} usually completes in ~{} (its last roll-outs{}): the watch looks often around then",
            crate::wait::human(u.typical),
            match u.spread {
                Some(d) => format!(", within {} of it", crate::wait::human(d)),
                None => String::new(),
            }
        ),
        None => format!("{service}: no roll-out history in its events; the watch looks every 1–3 s"),
    }
}

impl ServicePlan {
    fn line(&self, version: &Version) -> String {
        let line = self.change_line(version);
        match self.scale_up_to {
            Some(n) => format!("{line}; scaled from 0 up to {n} task(s)"),
            None => line,
        }
    }

    fn change_line(&self, version: &Version) -> String {
        match &self.new_containers {
            Some(_) => format!(
                "{}: {} ({}) → new revision with {}",
                self.name,
                td_short(&self.current),
                self.from_version.as_deref().unwrap_or("unknown version"),
                self.images
                    .iter()
                    .map(|(n, i)| format!("{n}={i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None if self.settled => format!(
                "{}: {} runs {version} already; nothing to change",
                self.name,
                td_short(&self.current)
            ),
            None => format!(
                "{}: {} has {version} already; its roll-out has not completed yet, watching it",
                self.name,
                td_short(&self.current)
            ),
        }
    }
}

/// Tags of a new revision: the current revision's own tags (not this action's, not `aws:`; but retention's mark,
/// which holds for the family) plus the version.
fn new_revision_tags(current: &[Tag], version: &Version) -> Vec<Tag> {
    let mut tags: Vec<Tag> = current
        .iter()
        .filter(|t| {
            t.key().is_some_and(|k| {
                k == retention::TAG_JUDGED
                    || (!k.starts_with(rollout::TAG_PREFIX) && !k.starts_with("aws:"))
            })
        })
        .cloned()
        .collect();
    tags.push(
        Tag::builder()
            .key(rollout::TAG_VERSION)
            .value(version.as_str())
            .build(),
    );
    tags
}

// ------------------------------------------------------------------------------------------------------------------
// Outcome
// ------------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceResult {
    /// Dry run: what would happen.
    Planned,
    /// Already on the version; nothing changed.
    Unchanged,
    Deployed,
    /// Its roll-out failed (or did not finish); rolled back.
    Failed,
    /// Rolled back because the deploy failed elsewhere.
    RolledBack,
    /// The rollback of this service did not complete: look at it now.
    RollbackFailed,
}

impl std::fmt::Display for ServiceResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServiceResult::Planned => "planned",
            ServiceResult::Unchanged => "unchanged",
            ServiceResult::Deployed => "deployed",
            ServiceResult::Failed => "failed, rolled back",
            ServiceResult::RolledBack => "rolled back",
            ServiceResult::RollbackFailed => "ROLLBACK DID NOT COMPLETE",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceRow {
    pub service: String,
    pub from: String,
    pub from_version: Option<String>,
    pub to: String,
    pub to_version: Option<String>,
    /// The revision the service runs after the phase.
    pub task_definition: String,
    pub result: ServiceResult,
    pub duration_seconds: Option<f64>,
    /// The planned new revision against the current one, one line per change, then what stays (empty: no new
    /// revision).
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeployOutcome {
    pub environment: String,
    pub version: String,
    /// Set when the version was `from:<environment>`.
    pub resolved_from: Option<Promotion>,
    pub previous_version: Option<String>,
    pub state: DeployState,
    pub dry_run: bool,
    pub services: Vec<ServiceRow>,
    pub rolled_back: bool,
    /// Why the deploy failed (one line), when it did.
    pub error: Option<String>,
    pub failures: Vec<FailureReport>,
    pub smoke: Option<String>,
    pub maintenance: Option<String>,
    pub deregistered: Vec<String>,
    pub notes: Vec<String>,
}

impl DeployOutcome {
    fn new(req: &Request<Version>, plans: &[ServicePlan], dry_run: bool) -> DeployOutcome {
        DeployOutcome {
            environment: req.common.environment.name.clone(),
            version: req.version.to_string(),
            resolved_from: None,
            previous_version: plans.first().and_then(|p| p.from_version.clone()),
            state: req.state,
            dry_run,
            services: plans
                .iter()
                .map(|p| ServiceRow {
                    service: p.name.clone(),
                    from: p.current.clone(),
                    from_version: p.from_version.clone(),
                    to: p.current.clone(),
                    to_version: Some(req.version.to_string()),
                    task_definition: p.current.clone(),
                    result: if dry_run {
                        ServiceResult::Planned
                    } else {
                        ServiceResult::Unchanged
                    },
                    duration_seconds: None,
                    changes: p.diff.iter().flat_map(RevisionDiff::lines).collect(),
                })
                .collect(),
            rolled_back: false,
            error: None,
            failures: vec![],
            smoke: None,
            maintenance: None,
            deregistered: vec![],
            notes: plans
                .iter()
                .flat_map(|p| p.removed_secrets.iter().cloned())
                .collect(),
        }
    }

    fn row(&mut self, name: &str) -> &mut ServiceRow {
        self.services
            .iter_mut()
            .find(|r| r.service == name)
            .expect("a row per planned service")
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Run
// ------------------------------------------------------------------------------------------------------------------

pub async fn run(req: &Request, c: &Clients, ctx: &Ctx) -> Result<DeployOutcome> {
    // The version first, before anything changes.
    let resolved = promote::resolve(&req.version, &c.promote).await?;
    for s in &req.common.environment.services {
        s.image.tag_for(&resolved.version)?;
    }
    let mut out = deploy(&req.resolved(resolved.version), c, ctx).await?;
    out.resolved_from = resolved.promotion;
    // A signal after the last change still ends the run as cancelled (exit 130), never as a success.
    if let Err(e) = ctx.stop_if_cancelled("reporting the deploy") {
        return Err(anyhow::Error::new(e).context(cancelled_at_the_end(&out)));
    }
    Ok(out)
}

/// Observe (no migration running, each service's revision), plan (printed), preflight; then the dry run's report or
/// the changes ([`apply`]).
async fn deploy(req: &Request<Version>, c: &Clients, ctx: &Ctx) -> Result<DeployOutcome> {
    refuse_during_migration(req, c).await?;
    let plans = plan_and_show(req, c, ctx).await?;
    let report = checks(req, c, ctx, &plans).await?;
    // A signal during the image wait ends the wait early: the run stops here (exit 130), before the first change,
    // not on images it did not wait for.
    ctx.stop_if_cancelled(&Stage::Register.to_string())
        .map_err(|e| anyhow::Error::new(e).context(cancelled_before_any_change(&req.version)))?;
    preflight::finish(&ctx.runner, "deploy", &report)?;
    let mut out = DeployOutcome::new(req, &plans, ctx.dry_run);
    if let Some(prev) = &out.previous_version {
        if version::is_downgrade(&req.version, prev) {
            tracing::warn!(
                "{} is lower than the version running now ({prev}): this deploy is a downgrade",
                req.version
            );
        }
    }
    if req.state == DeployState::Restricted {
        let m = maintenance::observe(&c.state.elb, env_of(req).maintenance.as_ref()).await?;
        if m != MaintenanceState::On {
            tracing::warn!("state restricted, but maintenance is {m}: users will reach the new version; run phase state with restricted first to test it behind the maintenance page");
        }
        out.maintenance = Some(format!("{m} (left as it is)"));
    }
    if ctx.dry_run {
        return dry_run(req, c, ctx, &plans, out).await;
    }
    apply(req, c, ctx, &plans, out).await
}

fn env_of(req: &Request<Version>) -> &Environment {
    &req.common.environment
}

/// New code must not meet a database half migrated (nor lift maintenance over it).
async fn refuse_during_migration(req: &Request<Version>, c: &Clients) -> Result<()> {
    let env = env_of(req);
    let Some(m) = &env.migration else {
        return Ok(());
    };
    let running = ecs::live_tasks_of_family(&c.ecs, &env.cluster, &m.family).await?;
    if !running.is_empty() {
        let ids: Vec<&str> = running
            .iter()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .collect();
        bail!(
            "refusing to deploy {} to {}: a migration task is still running ({}); wait for it (phase migrate attaches to it and reports its result) or stop it, then run again",
            req.version,
            env.name,
            ids.join(", ")
        );
    }
    Ok(())
}

/// The plan, each service's line, usual roll-out time and field diff printed in one group.
async fn plan_and_show(req: &Request<Version>, c: &Clients, ctx: &Ctx) -> Result<Vec<ServicePlan>> {
    let env = env_of(req);
    let _g = ctx.runner.group(&format!(
        "Plan: {} to {} ({})",
        req.version, env.name, env.cluster
    ));
    let plans = plan(req, c).await?;
    for p in &plans {
        tracing::info!("{}", p.line(&req.version));
        tracing::info!("{}", usual_line(&p.name, p.usual));
        for line in p.diff.iter().flat_map(RevisionDiff::lines) {
            tracing::info!("  {line}");
        }
    }
    Ok(plans)
}

/// Dry run: each row says whether a new revision would be registered; in state running, what converge would do
/// after the roll-out (it plans read-only and stops before the first change on a dry run).
async fn dry_run(
    req: &Request<Version>,
    c: &Clients,
    ctx: &Ctx,
    plans: &[ServicePlan],
    mut out: DeployOutcome,
) -> Result<DeployOutcome> {
    for p in plans {
        let row = out.row(&p.name);
        row.to = if p.new_containers.is_some() {
            "(new revision)".into()
        } else {
            p.current.clone()
        };
    }
    if req.state == DeployState::Running {
        let opts = StateOptions {
            bypass_header: req.bypass.clone(),
            skip_drain: true,
        };
        let o = converge::converge(env_of(req), EnvState::Running, &opts, &c.state, ctx).await?;
        out.maintenance = Some(if o.plan.is_empty() {
            "nothing to change".into()
        } else {
            format!(
                "after the roll-out: {}",
                o.plan
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
    tracing::info!("dry run: no revision registered, no service updated");
    Ok(out)
}

/// The changes: the new revisions, UpdateService on the changed services, the watch; then [`finish`]. A signal
/// stops it at the next boundary, after the cleanup [`on_cancel`] names.
async fn apply(
    req: &Request<Version>,
    c: &Clients,
    ctx: &Ctx,
    plans: &[ServicePlan],
    mut out: DeployOutcome,
) -> Result<DeployOutcome> {
    if plans.iter().any(|p| p.new_containers.is_some()) {
        ctx.stop_if_cancelled(&Stage::Register.to_string())
            .map_err(|e| {
                anyhow::Error::new(e).context(cancelled_before_any_change(&req.version))
            })?;
    }
    let registered = register(req, c, plans).await?;
    let targets = rollout_targets(plans, &registered);
    for t in &targets {
        let row = out.row(&t.service);
        row.to = t.task_definition.clone();
        row.task_definition = t.task_definition.clone();
    }
    let changed: Vec<RolloutTarget> = plans
        .iter()
        .zip(&targets)
        .filter(|(p, _)| needs_update(p.new_containers.is_some(), p.scale_up_to.is_some()))
        .map(|(_, t)| t.clone())
        .collect();
    let mut d = Applied {
        req,
        c,
        ctx,
        plans,
        registered: &registered,
        updated: &[],
    };
    if let Err(e) = ctx.stop_if_cancelled(&Stage::Update.to_string()) {
        return Err(cancelled(&d, Stage::Update, e).await);
    }
    let started = Instant::now();
    let updates = rollout::update_services(&c.ecs, &env_of(req).cluster, &changed).await;
    let updated: Vec<String> = updates
        .iter()
        .filter(|(_, e)| e.is_none())
        .map(|(t, _)| t.service.clone())
        .collect();
    d.updated = &updated;
    if let Some(reason) = update_failure(&updates) {
        return fail(&d, out, reason, None).await;
    }
    let report = watch(&d, &targets, &changed).await;
    for w in &report.services {
        out.row(&w.service).duration_seconds = w.done_after.map(|d| d.as_millis() as f64 / 1000.0);
    }
    let verdicts: Vec<(&str, &RolloutVerdict)> = report
        .services
        .iter()
        .map(|w| (w.service.as_str(), &w.verdict))
        .collect();
    match after_watch(&report.end, &verdicts, started.elapsed()) {
        AfterWatch::Completed => {}
        AfterWatch::Failed(reason) => return fail(&d, out, reason, Some(&report)).await,
        AfterWatch::Cancelled(e) => return Err(cancelled(&d, Stage::Watch, e).await),
    }
    for p in plans {
        out.row(&p.name).result = completed_result(p.new_containers.is_some());
    }
    finish(&d, &targets, &report, out).await
}

/// The roll-out watch of every target (new service events printed), paced by the changed services' usual times.
async fn watch(
    d: &Applied<'_>,
    targets: &[RolloutTarget],
    changed: &[RolloutTarget],
) -> WatchReport {
    let env = env_of(d.req);
    let seen: BTreeMap<String, HashSet<String>> = d
        .plans
        .iter()
        .map(|p| (p.name.clone(), p.events.clone()))
        .collect();
    let _g = d.ctx.runner.group(&format!(
        "Roll-out of {} on {} service(s)",
        d.req.version,
        targets.len()
    ));
    let usual: Vec<Option<rollout::RolloutTime>> = d
        .plans
        .iter()
        .filter(|p| changed.iter().any(|t| t.service == p.name))
        .map(|p| p.usual)
        .collect();
    let poller = d
        .ctx
        .poller(
            format!("roll-out of {} in {}", d.req.version, env.cluster),
            Backoff::FAST,
        )
        .expecting(rollout::expected_end(&usual));
    rollout::watch(&d.c.ecs, &env.cluster, targets, seen, poller).await
}

/// After every service completed: the steps of [`finish_plan`] in order, a signal checked before each.
async fn finish(
    d: &Applied<'_>,
    targets: &[RolloutTarget],
    report: &WatchReport,
    mut out: DeployOutcome,
) -> Result<DeployOutcome> {
    let scaled_up = d.plans.iter().any(|p| p.scale_up_to.is_some());
    for stage in finish_plan(d.req.smoke.is_some(), scaled_up, d.req.state) {
        if let Err(e) = d.ctx.stop_if_cancelled(&stage.to_string()) {
            return Err(cancelled(d, stage, e).await);
        }
        match stage {
            Stage::Smoke => {
                let Some(smoke) = &d.req.smoke else { continue };
                match smoke_check(smoke, d.req.bypass.as_ref(), d.ctx).await {
                    Ok(line) => out.smoke = Some(line),
                    Err(SmokeEnd::Cancelled(e)) => return Err(cancelled(d, stage, e).await),
                    Err(SmokeEnd::Failed(why)) => {
                        out.smoke = Some(why.clone());
                        for p in d.plans {
                            out.row(&p.name).duration_seconds = None;
                        }
                        return fail(d, out, why, Some(report)).await;
                    }
                }
            }
            Stage::TagKnownGood => tag_all_known_good(d, targets, &mut out).await,
            Stage::Prune => prune(d.req, d.c, d.plans, targets, &mut out).await,
            Stage::RestoreAutoscaling => {
                // Services brought back from 0: their autoscaling as it was before they went to 0.
                match autoscaling::restore(&d.c.state.ecs, &d.c.state.aas, env_of(d.req)).await {
                    Ok(lines) => out.notes.extend(lines),
                    Err(e) => out.notes.push(format!(
                        "autoscaling not restored: {e:#}; run phase state with running to restore it"
                    )),
                }
            }
            Stage::LiftMaintenance => lift_maintenance_into(d, &mut out).await?,
            Stage::Register | Stage::Update | Stage::Watch => {}
        }
    }
    Ok(out)
}

/// Known good: every service completed on its target (a new revision gets the version, one kept its own tags).
async fn tag_all_known_good(d: &Applied<'_>, targets: &[RolloutTarget], out: &mut DeployOutcome) {
    let (req, c) = (d.req, d.c);
    let tag_results =
        join_all(
            d.plans.iter().zip(targets).map(|(p, t)| {
                let (tags, version) = match &p.new_containers {
                    Some(_) => (
                        ecs::tag_pairs(&new_revision_tags(&p.current_tags, &req.version)),
                        Some(req.version.to_string()),
                    ),
                    None => (ecs::tag_pairs(&p.current_tags), p.from_version.clone()),
                };
                async move {
                    tag_known_good(&c.ecs, &t.task_definition, &tags, version.as_deref()).await
                }
            }),
        )
        .await;
    for r in tag_results {
        if let Err(e) = r {
            out.notes.push(format!("known-good tag not written: {e}"));
        }
    }
}

/// State `running` after the roll-out: maintenance lifted; a failure is the outcome's error (the services stay on
/// the new version), a signal during it ends the run as cancelled.
async fn lift_maintenance_into(d: &Applied<'_>, out: &mut DeployOutcome) -> Result<()> {
    let req = d.req;
    match lift_maintenance(req, d.c, d.ctx).await {
        Ok(line) => out.maintenance = Some(line),
        Err(e)
            if e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<WaitError>(),
                    Some(WaitError::Cancelled { .. })
                )
            }) =>
        {
            return Err(e.context(format!(
                "every service runs {}; lifting maintenance was cancelled",
                req.version
            )));
        }
        Err(e) => {
            // The services stay on the new version (they completed); only the last step is left to do.
            let why = format!(
                "every service runs {}, but lifting maintenance failed: {e:#}; run phase state with running",
                req.version
            );
            tracing::error!("{why}");
            out.maintenance = Some("not lifted".into());
            out.error = Some(why);
        }
    }
    Ok(())
}

/// A signal stopped the deploy before `stage` (or during it): the cleanup [`on_cancel`] names, then the error that
/// ends the run as cancelled (exit 130), saying what was left.
async fn cancelled(d: &Applied<'_>, stage: Stage, e: WaitError) -> anyhow::Error {
    let version = &d.req.version;
    let what = match on_cancel(stage) {
        Cleanup::Nothing => cancelled_before_any_change(version),
        Cleanup::DeregisterNew => {
            let arns: Vec<String> = d
                .registered
                .iter()
                .flatten()
                .filter_map(|td| td.task_definition_arn().map(str::to_string))
                .collect();
            deregister_all(d.c, &arns).await;
            let shorts: Vec<&str> = arns.iter().map(|a| td_short(a)).collect();
            cancelled_before_update_line(version, &shorts)
        }
        Cleanup::PointBack => {
            let back = back_targets(d.plans, d.updated);
            let results =
                rollout::update_services(&d.c.ecs, &env_of(d.req).cluster, &back).await;
            let failed: Vec<String> = results
                .iter()
                .filter_map(|(t, e)| e.as_ref().map(|e| format!("{}: {e}", t.service)))
                .collect();
            format!(
                "deploy of {version} cancelled; {}",
                pointed_back_line(back.len(), &failed)
            )
        }
        Cleanup::Leave => format!(
            "deploy of {version} cancelled after every service completed on it; re-run the deploy to finish (it changes no service)"
        ),
    };
    anyhow::Error::new(e).context(what)
}

/// `keep-revisions` after the deploy succeeded: older revisions of ours that nothing uses are deregistered, said in
/// the summary; a failure is a note, never a failed deploy.
async fn prune(
    req: &Request<Version>,
    c: &Clients,
    plans: &[ServicePlan],
    targets: &[RolloutTarget],
    out: &mut DeployOutcome,
) {
    let env = &req.common.environment;
    let names: Vec<String> = env.services.iter().map(|s| s.name.clone()).collect();
    let families = families_to_judge(plans, targets, req.keep_revisions);
    if families.is_empty() {
        return;
    }
    match retention::after_deploy(&c.ecs, &env.cluster, &names, &families, req.keep_revisions).await
    {
        Ok(p) => {
            out.deregistered.extend(p.deregistered);
            out.notes.extend(p.notes);
            mark_judged(&c.ecs, targets, &p.judged, out).await;
        }
        Err(e) => out.notes.push(format!("keep-revisions not applied: {e:#}")),
    }
}

/// Pure: the families retention must look at after the deploy, each with its mark (the lowest the services of the
/// family carry; 0 when one has none): only those that may hold a revision not judged yet past the newest `keep`.
fn families_to_judge<'a>(
    plans: &[ServicePlan],
    targets: &'a [RolloutTarget],
    keep: usize,
) -> Vec<retention::Family<'a>> {
    let mut families: Vec<retention::Family<'a>> = Vec::new();
    for (p, t) in plans.iter().zip(targets) {
        let name = ecs::td_family(&t.task_definition);
        let judged = p
            .current_tags
            .iter()
            .find(|tag| tag.key() == Some(retention::TAG_JUDGED))
            .and_then(|tag| tag.value()?.parse().ok())
            .unwrap_or(0);
        match families.iter_mut().find(|f| f.name == name) {
            Some(f) => f.judged = f.judged.min(judged),
            None => families.push(retention::Family { name, judged }),
        }
    }
    families.retain(|f| {
        let newest = targets
            .iter()
            .filter(|t| ecs::td_family(&t.task_definition) == f.name)
            .filter_map(|t| ecs::td_revision(&t.task_definition))
            .max();
        retention::may_hold_unjudged(newest, keep, f.judged)
    });
    families
}

/// Writes each risen mark on the revisions the services of that family now run (the next deploy copies it on).
async fn mark_judged(
    ecs_client: &aws_sdk_ecs::Client,
    targets: &[RolloutTarget],
    judged: &[(String, i32)],
    out: &mut DeployOutcome,
) {
    for (family, mark) in judged {
        let mut arns: Vec<&str> = targets
            .iter()
            .map(|t| t.task_definition.as_str())
            .filter(|td| ecs::td_family(td) == family)
            .collect();
        arns.sort_unstable();
        arns.dedup();
        for arn in arns {
            if let Err(e) = ecs::tag(
                ecs_client,
                arn,
                &[(retention::TAG_JUDGED, mark.to_string())],
            )
            .await
            {
                out.notes
                    .push(format!("keep-revisions: mark not written: {e}"));
            }
        }
    }
}

/// Registers the planned revisions concurrently; `None` for services that keep their revision. If any registration
/// fails, the ones that succeeded are deregistered again and the error is returned (nothing else changed yet).
async fn register(
    req: &Request<Version>,
    c: &Clients,
    plans: &[ServicePlan],
) -> Result<Vec<Option<TaskDefinition>>> {
    let calls = plans.iter().map(|p| async move {
        let Some(containers) = &p.new_containers else {
            return Ok(None);
        };
        let mut td = p.current_td.clone();
        td.container_definitions = Some(containers.clone());
        let input = ecs::register_input_from(td, new_revision_tags(&p.current_tags, &req.version));
        let new = ecs::register_task_definition(&c.ecs, input).await?;
        tracing::info!(
            "{}: registered {}",
            p.name,
            td_short(new.task_definition_arn().unwrap_or_default())
        );
        Ok::<_, anyhow::Error>(Some(new))
    });
    let results = join_all(calls).await;
    if results.iter().any(Result::is_err) {
        let done: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned().flatten())
            .filter_map(|td| td.task_definition_arn().map(str::to_string))
            .collect();
        deregister_all(c, &done).await;
        let errors: Vec<String> = results
            .into_iter()
            .filter_map(|r| r.err())
            .map(|e| format!("{e:#}"))
            .collect();
        bail!(
            "registering the new revisions failed, no service was changed: {}",
            errors.join("; ")
        );
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("checked above"))
        .collect())
}

/// Deregisters revisions nothing uses (this run registered them and changed no service); a failure is a warning.
async fn deregister_all(c: &Clients, arns: &[String]) {
    for arn in arns {
        if let Err(e) = ecs::deregister_task_definition(&c.ecs, arn).await {
            tracing::warn!("{e}");
        }
    }
}

fn back_targets(plans: &[ServicePlan], updated: &[String]) -> Vec<RolloutTarget> {
    plans
        .iter()
        .filter(|p| updated.contains(&p.name))
        .map(|p| RolloutTarget {
            service: p.name.clone(),
            task_definition: p.current.clone(),
            // A service this deploy scaled up from 0 goes back to 0: the state it was found in.
            desired_count: p.scale_up_to.map(|_| 0),
        })
        .collect()
}

/// Tags a revision `known-good=<now>` (and its version, when it has none) unless it is tagged known good already: a
/// rerun of a finished deploy changes nothing.
async fn tag_known_good(
    ecs_client: &aws_sdk_ecs::Client,
    arn: &str,
    tags: &[(String, String)],
    version: Option<&str>,
) -> Result<()> {
    if tags.iter().any(|(k, _)| k == rollout::TAG_KNOWN_GOOD) {
        return Ok(());
    }
    let mut new = vec![(rollout::TAG_KNOWN_GOOD, rollout::timestamp_now())];
    if let Some(v) = version.filter(|_| !tags.iter().any(|(k, _)| k == rollout::TAG_VERSION)) {
        new.push((rollout::TAG_VERSION, v.to_string()));
    }
    ecs::tag(ecs_client, arn, &new).await?;
    tracing::info!("{}: tagged known good", td_short(arn));
    Ok(())
}

/// What a deploy changed so far: the failure path and a cancelled run undo it.
struct Applied<'a> {
    req: &'a Request<Version>,
    c: &'a Clients,
    ctx: &'a Ctx,
    plans: &'a [ServicePlan],
    registered: &'a [Option<TaskDefinition>],
    /// Services whose UpdateService succeeded.
    updated: &'a [String],
}

/// The failure path: every service this run updated goes back to its previous revision (waited for, on a fresh
/// deadline), the reasons are collected, the new revisions are deregistered. Returns the outcome (exit 1). A signal
/// after the services were pointed back stops it there (the run then ends as cancelled).
async fn fail(
    d: &Applied<'_>,
    mut out: DeployOutcome,
    reason: String,
    report: Option<&WatchReport>,
) -> Result<DeployOutcome> {
    tracing::error!("deploy of {} failed: {reason}", d.req.version);
    out.error = Some(reason);
    let _g = d.ctx.runner.group("Rollback to the previous revisions");
    let back = back_targets(d.plans, d.updated);
    let results = rollout::update_services(&d.c.ecs, &env_of(d.req).cluster, &back).await;
    out.rolled_back = !back.is_empty();
    let not_back: Vec<String> = results
        .iter()
        .filter(|(_, e)| e.is_some())
        .map(|(t, _)| t.service.clone())
        .collect();
    for (t, e) in &results {
        if let Some(e) = e {
            out.notes
                .push(format!("{}: rollback UpdateService failed: {e}", t.service));
        }
    }
    // Why: while the rollback starts, read the failed services' stopped tasks and logs (log lines, not annotations:
    // the one annotation is the reason above).
    if let Some(report) = report {
        out.failures = explain_failures(d, report).await;
        print_failures(&out.failures);
    }
    let ok_back: Vec<RolloutTarget> = back
        .into_iter()
        .filter(|t| !not_back.contains(&t.service))
        .collect();
    let back_report = wait_back(d, &ok_back, report).await;
    let failed_services: Vec<String> = out.failures.iter().map(|f| f.service.clone()).collect();
    for p in d.plans {
        let rolled = ok_back.iter().any(|t| t.service == p.name);
        let done = back_report
            .as_ref()
            .and_then(|r| r.service(&p.name))
            .is_some_and(|w| w.verdict == RolloutVerdict::Done);
        let row = out.row(&p.name);
        row.result = rollback_result(
            d.updated.contains(&p.name),
            rolled,
            done,
            failed_services.contains(&p.name),
        );
        if matches!(
            row.result,
            ServiceResult::Failed | ServiceResult::RolledBack
        ) && rolled
        {
            row.task_definition = p.current.clone();
        }
    }
    if let Some(r) = &back_report {
        let verdicts: Vec<(&str, &RolloutVerdict)> = r
            .services
            .iter()
            .map(|w| (w.service.as_str(), &w.verdict))
            .collect();
        out.notes
            .extend(rollback_incomplete_note(&r.end, &verdicts));
    }
    if d.ctx
        .stop_if_cancelled("tagging the previous revisions known good")
        .is_err()
    {
        return Ok(out);
    }
    retag_previous(d, back_report.as_ref(), &mut out).await;
    if d.ctx
        .stop_if_cancelled("deregistering the new revisions")
        .is_err()
    {
        return Ok(out);
    }
    deregister_failed(d, &not_back, &mut out).await;
    Ok(out)
}

/// For each service whose roll-out did not finish: its stopped tasks and last log lines, read concurrently.
async fn explain_failures(d: &Applied<'_>, report: &WatchReport) -> Vec<FailureReport> {
    let (c, cluster) = (d.c, &env_of(d.req).cluster);
    let explain = report.services.iter().filter_map(|w| {
        let why = unfinished_why(&w.verdict)?;
        let containers = d
            .plans
            .iter()
            .zip(d.registered)
            .find(|(p, _)| p.name == w.service)
            .map(|(p, r)| {
                r.as_ref()
                    .unwrap_or(&p.current_td)
                    .container_definitions()
                    .to_vec()
            })
            .unwrap_or_default();
        Some(async move { rollout::explain(&c.ecs, &c.logs, cluster, w, why, &containers).await })
    });
    join_all(explain).await
}

fn print_failures(failures: &[FailureReport]) {
    for f in failures {
        for t in &f.stopped_tasks {
            tracing::info!("{}: stopped task {}", f.service, t.line());
        }
        if let Some(log) = &f.log {
            tracing::info!("{}: last log lines of {}:", f.service, log.stream);
            for l in &log.lines {
                tracing::info!("  {l}");
            }
        }
    }
}

/// Waits for the services pointed back (none: `None`), on a fresh deadline, printing only events not seen yet.
async fn wait_back(
    d: &Applied<'_>,
    ok_back: &[RolloutTarget],
    report: Option<&WatchReport>,
) -> Option<WatchReport> {
    if ok_back.is_empty() {
        return None;
    }
    let env = env_of(d.req);
    let poller = Poller::new(
        format!("rollback in {}", env.cluster),
        d.ctx.pace.of(Backoff::FAST),
        Instant::now() + d.req.common.timeout,
        d.ctx.cancel.clone(),
    );
    let seen = match report {
        Some(r) => r.seen_events(),
        None => d
            .plans
            .iter()
            .map(|p| (p.name.clone(), p.events.clone()))
            .collect(),
    };
    Some(rollout::watch(&d.c.ecs, &env.cluster, ok_back, seen, poller).await)
}

/// The revisions the services ran before were just seen COMPLETED again: known good.
async fn retag_previous(
    d: &Applied<'_>,
    back_report: Option<&WatchReport>,
    out: &mut DeployOutcome,
) {
    let Some(r) = back_report else {
        return;
    };
    for p in d.plans {
        if r.service(&p.name)
            .is_some_and(|w| w.verdict == RolloutVerdict::Done)
        {
            if let Err(e) = tag_known_good(
                &d.c.ecs,
                &p.current,
                &ecs::tag_pairs(&p.current_tags),
                p.from_version.as_deref(),
            )
            .await
            {
                out.notes.push(format!("known-good tag not written: {e}"));
            }
        }
    }
}

/// Deregisters the revisions of this failed deploy, but not one a service still points at.
async fn deregister_failed(d: &Applied<'_>, not_back: &[String], out: &mut DeployOutcome) {
    for (p, r) in d.plans.iter().zip(d.registered) {
        let Some(arn) = r.as_ref().and_then(|td| td.task_definition_arn()) else {
            continue;
        };
        if not_back.contains(&p.name) {
            out.notes.push(format!(
                "{}: {} stays registered (the service still uses it)",
                p.name,
                td_short(arn)
            ));
            continue;
        }
        match ecs::deregister_task_definition(&d.c.ecs, arn).await {
            Ok(()) => {
                tracing::info!("{}: deregistered {}", p.name, td_short(arn));
                out.deregistered.push(arn.to_string());
            }
            Err(e) => out.notes.push(format!(
                "{}: deregistering {} failed: {e}",
                p.name,
                td_short(arn)
            )),
        }
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Decisions (pure, table-tested below)
// ------------------------------------------------------------------------------------------------------------------

/// The stages of a deploy's changes, in order: where a signal can stop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Register,
    Update,
    Watch,
    Smoke,
    TagKnownGood,
    Prune,
    RestoreAutoscaling,
    LiftMaintenance,
}

impl std::fmt::Display for Stage {
    /// What is not started when a signal stops the deploy before this stage.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Register => "registering the new revisions",
            Stage::Update => "UpdateService on the changed services",
            Stage::Watch => "the end of the roll-out",
            Stage::Smoke => "the smoke check",
            Stage::TagKnownGood => "tagging the revisions known good",
            Stage::Prune => "keep-revisions (deregistering older unused revisions)",
            Stage::RestoreAutoscaling => "restoring autoscaling",
            Stage::LiftMaintenance => "lifting maintenance",
        })
    }
}

/// What a cancelled deploy undoes before it exits 130.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cleanup {
    /// Nothing changed yet.
    Nothing,
    /// Revisions registered, no service changed: they are deregistered again (the environment is as it was found).
    DeregisterNew,
    /// Services updated but the new version not verified (rolling, or before/while its smoke check): every changed
    /// service is pointed back at its previous revision, not waited for.
    PointBack,
    /// Every service completed (and passed the smoke check): left as it is; the rerun finishes the rest.
    Leave,
}

/// Pure: the cleanup when a signal stops the deploy before (or during) `stage`.
fn on_cancel(stage: Stage) -> Cleanup {
    match stage {
        Stage::Register => Cleanup::Nothing,
        Stage::Update => Cleanup::DeregisterNew,
        Stage::Watch | Stage::Smoke => Cleanup::PointBack,
        Stage::TagKnownGood | Stage::Prune | Stage::RestoreAutoscaling | Stage::LiftMaintenance => {
            Cleanup::Leave
        }
    }
}

/// Pure: the steps after every service completed, in order: the smoke check (when asked), the known-good tags,
/// keep-revisions, autoscaling (when a service came back from 0), maintenance lifted (state running).
fn finish_plan(smoke: bool, scaled_up: bool, state: DeployState) -> Vec<Stage> {
    let mut steps = vec![];
    if smoke {
        steps.push(Stage::Smoke);
    }
    steps.extend([Stage::TagKnownGood, Stage::Prune]);
    if scaled_up {
        steps.push(Stage::RestoreAutoscaling);
    }
    if state == DeployState::Running {
        steps.push(Stage::LiftMaintenance);
    }
    steps
}

/// Pure: whether a service gets an UpdateService: a new revision, or brought back from 0 (on the revision it has).
fn needs_update(new_revision: bool, scale_up: bool) -> bool {
    new_revision || scale_up
}

/// Pure: a service's result once every roll-out completed.
fn completed_result(new_revision: bool) -> ServiceResult {
    if new_revision {
        ServiceResult::Deployed
    } else {
        ServiceResult::Unchanged
    }
}

/// Pure: what each service rolls out: its new revision, else the one it runs; and the count it is brought up to.
fn rollout_targets(
    plans: &[ServicePlan],
    registered: &[Option<TaskDefinition>],
) -> Vec<RolloutTarget> {
    plans
        .iter()
        .zip(registered)
        .map(|(p, r)| RolloutTarget {
            service: p.name.clone(),
            task_definition: r
                .as_ref()
                .and_then(|td| td.task_definition_arn())
                .unwrap_or(&p.current)
                .to_string(),
            desired_count: p.scale_up_to,
        })
        .collect()
}

/// Pure: the failure reason when an UpdateService failed (the first one).
fn update_failure<E: std::fmt::Display>(updates: &[(RolloutTarget, Option<E>)]) -> Option<String> {
    updates.iter().find_map(|(t, e)| {
        e.as_ref()
            .map(|e| format!("UpdateService failed for {}: {e}", t.service))
    })
}

/// How the deploy goes on after the roll-out watch.
#[derive(Debug)]
enum AfterWatch {
    Completed,
    /// The reason, one line (the failure path rolls back).
    Failed(String),
    Cancelled(WaitError),
}

/// Pure: the watch's end (and each service's verdict) read as what happens next.
fn after_watch(
    end: &WatchEnd,
    verdicts: &[(&str, &RolloutVerdict)],
    elapsed: Duration,
) -> AfterWatch {
    match end {
        WatchEnd::Completed => AfterWatch::Completed,
        WatchEnd::Failed => AfterWatch::Failed(
            verdicts
                .iter()
                .filter_map(|(service, v)| match v {
                    RolloutVerdict::Failed(why) => Some(format!("{service}: {why}")),
                    RolloutVerdict::Done
                    | RolloutVerdict::InProgress(_)
                    | RolloutVerdict::Stuck(_) => None,
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        WatchEnd::TimedOut(last) => AfterWatch::Failed(format!(
            "the roll-out did not complete within {} (timeout-minutes); last seen: {last}",
            crate::wait::human(elapsed)
        )),
        WatchEnd::Error(e) => AfterWatch::Failed(format!("watching the roll-out failed: {e}")),
        WatchEnd::Cancelled { what, waited, last } => AfterWatch::Cancelled(WaitError::Cancelled {
            what: what.clone(),
            waited: *waited,
            last: last.clone(),
        }),
    }
}

/// Pure: why a service's roll-out needs explaining (`None`: it completed).
fn unfinished_why(verdict: &RolloutVerdict) -> Option<String> {
    match verdict {
        RolloutVerdict::Done => None,
        RolloutVerdict::Failed(s) => Some(s.clone()),
        RolloutVerdict::Stuck(s) => Some(format!("stuck: {s}")),
        RolloutVerdict::InProgress(s) => Some(format!("not completed: {s}")),
    }
}

/// Pure: a service's result after the failure path: whether this run updated it, pointed it back, saw it back
/// COMPLETED, and whether its own roll-out failed.
fn rollback_result(
    updated: bool,
    pointed_back: bool,
    back_done: bool,
    failed: bool,
) -> ServiceResult {
    match (updated, pointed_back, back_done) {
        (false, _, _) if failed => ServiceResult::Failed,
        (false, _, _) => ServiceResult::Unchanged,
        (true, true, true) if failed => ServiceResult::Failed,
        (true, true, true) => ServiceResult::RolledBack,
        (true, _, _) => ServiceResult::RollbackFailed,
    }
}

/// Pure: the note when the wait for the rollback ended without every service back.
fn rollback_incomplete_note(
    end: &WatchEnd,
    verdicts: &[(&str, &RolloutVerdict)],
) -> Option<String> {
    match end {
        WatchEnd::Completed => None,
        WatchEnd::Failed
        | WatchEnd::TimedOut(_)
        | WatchEnd::Error(_)
        | WatchEnd::Cancelled { .. } => {
            let line = verdicts
                .iter()
                .filter(|(_, v)| **v != RolloutVerdict::Done)
                .map(|(s, v)| format!("{s}: {v:?}"))
                .collect::<Vec<_>>()
                .join("; ");
            Some(format!(
                "the rollback did not complete: {line}; look at the services now"
            ))
        }
    }
}

/// Pure: what a cancelled deploy says after pointing `back` services back (`failed`: those whose UpdateService
/// failed, with the error).
fn pointed_back_line(back: usize, failed: &[String]) -> String {
    if failed.is_empty() {
        format!("every changed service ({back}) was pointed back at its previous revision, not waited for")
    } else {
        format!(
            "pointing services back at their previous revisions failed: {}",
            failed.join("; ")
        )
    }
}

fn cancelled_before_any_change(version: &Version) -> String {
    format!("deploy of {version} cancelled before any change")
}

/// Pure: a deploy cancelled after registering (`deregistered`: the revisions deregistered again), before UpdateService.
fn cancelled_before_update_line(version: &Version, deregistered: &[&str]) -> String {
    if deregistered.is_empty() {
        format!("deploy of {version} cancelled before any service changed")
    } else {
        format!(
            "deploy of {version} cancelled before any service changed; its new revisions were deregistered again ({})",
            deregistered.join(", ")
        )
    }
}

/// Pure: the error of a deploy whose phase ended (done, or failed and rolled back) after a signal came.
fn cancelled_at_the_end(out: &DeployOutcome) -> String {
    match &out.error {
        None => format!(
            "{}; a signal came after its last change: re-run the deploy to confirm (it changes no service)",
            out.headline()
        ),
        Some(e) => format!("{}: {e}; then cancelled by a signal", out.headline()),
    }
}

/// GET the smoke URL until it answers the expected status (redirects are not followed; the bypass header is sent when
/// given). Tries for [`SMOKE_WINDOW`].
async fn smoke_check(
    smoke: &Smoke,
    bypass: Option<&BypassHeader>,
    ctx: &Ctx,
) -> Result<String, SmokeEnd> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| SmokeEnd::Failed(format!("smoke check: cannot build an HTTP client: {e}")))?;
    let url = smoke.url.clone();
    let poller = Poller::new(
        format!("smoke check GET {url}"),
        ctx.pace.of(Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(4),
        }),
        Instant::now() + SMOKE_WINDOW,
        ctx.cancel.clone(),
    );
    let res = poller
        .run(|| {
            let mut request = http.get(url.clone());
            if let Some(b) = bypass {
                request = request.header(b.name.as_str(), b.value.as_str());
            }
            let url = url.clone();
            async move {
                Ok(match request.send().await {
                    Ok(r) if r.status().as_u16() == smoke.status => {
                        Check::Done(r.status().as_u16())
                    }
                    Ok(r) => Check::Pending(format!(
                        "smoke check GET {url}: {}, expected {}",
                        r.status().as_u16(),
                        smoke.status
                    )),
                    Err(e) => Check::Pending(format!("smoke check GET {url}: {}", without_url(&e))),
                })
            }
        })
        .await;
    match res {
        Ok(status) => {
            let line = format!("GET {url}: {status} as expected");
            tracing::info!("smoke check: {line}");
            Ok(line)
        }
        Err(e @ WaitError::Cancelled { .. }) => Err(SmokeEnd::Cancelled(e)),
        Err(e) => Err(SmokeEnd::Failed(format!("smoke check failed: {e}"))),
    }
}

/// A smoke check that did not pass: failed (the reason, one line), or cancelled by a signal.
#[derive(Debug)]
enum SmokeEnd {
    Failed(String),
    Cancelled(WaitError),
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(&format!(" ({u})"), "").replace(u.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    s
}

/// State `running`: the environment converges on running (maintenance off) once every service completed. Returns
/// what it did, one line.
async fn lift_maintenance(req: &Request<Version>, c: &Clients, ctx: &Ctx) -> Result<String> {
    if req.common.environment.maintenance.is_none() {
        // No listener to restore and every service just completed on its revision: nothing to lift, no look needed.
        return Ok(format!(
            "environment {} has no maintenance configured: nothing to lift",
            req.common.environment.name
        ));
    }
    // Cheap first: three reads say whether anything is left to lift (the whole environment is read only then).
    if converge::is_running_after_rollout(&req.common.environment, &c.state).await? {
        return Ok(format!(
            "environment {} was running already (maintenance off)",
            req.common.environment.name
        ));
    }
    let opts = StateOptions {
        bypass_header: req.bypass.clone(),
        skip_drain: true,
    };
    let done = converge::converge(
        &req.common.environment,
        EnvState::Running,
        &opts,
        &c.state,
        ctx,
    )
    .await?;
    Ok(if done.steps.is_empty() {
        format!("environment {} was running already", done.environment)
    } else {
        done.steps
            .iter()
            .map(|s| format!("{}: {}", s.step, s.detail))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

// ------------------------------------------------------------------------------------------------------------------
// Outcome rendering
// ------------------------------------------------------------------------------------------------------------------

impl DeployOutcome {
    fn rows(&self) -> Vec<Vec<String>> {
        self.services
            .iter()
            .map(|r| {
                rollout::row_cells(
                    &r.service,
                    (&r.from, r.from_version.as_deref()),
                    (&r.to, r.to_version.as_deref()),
                    &r.result,
                    r.duration_seconds,
                )
            })
            .collect()
    }

    fn headline(&self) -> String {
        match (&self.error, self.dry_run) {
            (_, true) => format!(
                "Deploy {} to {}: dry run, nothing changed",
                self.version, self.environment
            ),
            (None, false) => format!(
                "Deploy {} to {}: done (state {})",
                self.version, self.environment, self.state
            ),
            (Some(_), false) if self.rolled_back => {
                format!(
                    "Deploy {} to {}: FAILED, rolled back",
                    self.version, self.environment
                )
            }
            (Some(_), false) => format!("Deploy {} to {}: FAILED", self.version, self.environment),
        }
    }

    /// The dry run's field diff per service: `core: stage-core:3 → new revision`, then its changes indented.
    fn plan_lines(&self) -> Vec<String> {
        if !self.dry_run {
            return vec![];
        }
        let mut lines = vec![];
        for r in &self.services {
            if r.changes.is_empty() {
                lines.push(format!(
                    "{}: {} stays (nothing to change)",
                    r.service,
                    td_short(&r.from)
                ));
                continue;
            }
            lines.push(format!(
                "{}: {} → new revision",
                r.service,
                td_short(&r.from)
            ));
            lines.extend(r.changes.iter().map(|c| format!("  {c}")));
        }
        lines
    }

    fn failure_lines(&self) -> Vec<String> {
        self.failures
            .iter()
            .flat_map(FailureReport::lines)
            .collect()
    }
}

impl Outcome for DeployOutcome {
    fn ok(&self) -> bool {
        self.error.is_none()
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        let arns: BTreeMap<&str, &str> = self
            .services
            .iter()
            .map(|r| (r.service.as_str(), r.task_definition.as_str()))
            .collect();
        vec![
            ("version", self.version.clone()),
            (
                "resolved-from",
                self.resolved_from
                    .as_ref()
                    .map(|p| p.environment.clone())
                    .unwrap_or_default(),
            ),
            (
                "previous-version",
                self.previous_version.clone().unwrap_or_default(),
            ),
            (
                "task-definition-arns",
                serde_json::to_string(&arns).unwrap_or_default(),
            ),
            ("rolled-back", self.rolled_back.to_string()),
        ]
    }

    fn summary(&self) -> String {
        let failures = self.failure_lines();
        let mut s = rollout::summary_markdown(
            self.ok(),
            &self.headline(),
            self.error.as_deref(),
            &self.rows(),
            &[],
        );
        let plan = self.plan_lines();
        if !plan.is_empty() {
            s.push_str("\n**Plan: every field that changes**\n\n```\n");
            for l in plan {
                s.push_str(&l);
                s.push('\n');
            }
            s.push_str("```\n");
        }
        if !failures.is_empty() {
            s.push_str("\n**Why**\n\n");
            s.push_str(&crate::text::md_code_block("", &failures.join("\n")));
        }
        let mut details = vec![];
        if let Some(p) = &self.resolved_from {
            details.push(format!("version: {}", p.describe(&self.version)));
        }
        if let Some(m) = &self.maintenance {
            details.push(format!("maintenance: {m}"));
        }
        if let Some(sm) = &self.smoke {
            details.push(format!("smoke check: {sm}"));
        }
        if !self.deregistered.is_empty() {
            details.push(format!(
                "deregistered: {}",
                self.deregistered
                    .iter()
                    .map(|a| td_short(a))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        details.extend(self.notes.iter().cloned());
        if !details.is_empty() {
            s.push('\n');
            for d in details {
                s.push_str(&format!("- {}\n", crate::text::md_text(&d)));
            }
        }
        s
    }

    fn text(&self) -> String {
        let mut s = format!("{}\n", self.headline());
        if let Some(e) = &self.error {
            s.push_str(&format!("  {e}\n"));
        }
        s.push('\n');
        s.push_str(&text_table(
            &["SERVICE", "FROM", "TO", "RESULT", "DURATION"],
            &self.rows(),
        ));
        let plan = self.plan_lines();
        if !plan.is_empty() {
            s.push_str("\nplan (every field that changes):\n");
            for l in plan {
                s.push_str(&format!("  {l}\n"));
            }
        }
        let failures = self.failure_lines();
        if !failures.is_empty() {
            s.push_str("\nwhy:\n");
            for l in failures {
                s.push_str(&format!("  {l}\n"));
            }
        }
        if let Some(p) = &self.resolved_from {
            s.push_str(&format!("\nversion: {}\n", p.describe(&self.version)));
        }
        if let Some(m) = &self.maintenance {
            s.push_str(&format!("\nmaintenance: {m}\n"));
        }
        if let Some(sm) = &self.smoke {
            s.push_str(&format!("smoke check: {sm}\n"));
        }
        if !self.deregistered.is_empty() {
            s.push_str(&format!(
                "deregistered: {}\n",
                self.deregistered
                    .iter()
                    .map(|a| td_short(a))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn new_revisions_keep_foreign_tags_and_get_the_version() {
        let current = vec![
            Tag::builder().key("environment").value("stage").build(),
            Tag::builder()
                .key(rollout::TAG_KNOWN_GOOD)
                .value("2026-01-01T00:00:00.000Z")
                .build(),
            Tag::builder().key(rollout::TAG_VERSION).value("v1").build(),
            Tag::builder()
                .key("aws:cloudformation:stack-name")
                .value("x")
                .build(),
            Tag::builder().key(retention::TAG_JUDGED).value("7").build(),
        ];
        let tags = ecs::tag_pairs(&new_revision_tags(
            &current,
            &Version::parse("v2.0.0").unwrap(),
        ));
        assert_eq!(
            tags,
            vec![
                ("environment".to_string(), "stage".to_string()),
                (retention::TAG_JUDGED.to_string(), "7".to_string()),
                (rollout::TAG_VERSION.to_string(), "v2.0.0".to_string())
            ]
        );
    }

    #[test]
    fn retention_looks_only_at_families_that_may_hold_an_unjudged_revision() {
        let td =
            |f: &str, n: i32| format!("arn:aws:ecs:eu-central-1:1:task-definition/stage-{f}:{n}");
        let with_mark = |name: &str, mark: Option<&str>| ServicePlan {
            current_tags: mark
                .map(|m| vec![Tag::builder().key(retention::TAG_JUDGED).value(m).build()])
                .unwrap_or_default(),
            ..plan(name, true, None)
        };
        let target = |f: &str, n: i32| RolloutTarget {
            service: f.into(),
            task_definition: td(f, n),
            desired_count: None,
        };
        // (services: family, mark on the running revision, new revision number) → families looked at, with marks
        type Service<'a> = (&'a str, Option<&'a str>, i32);
        type Case<'a> = (&'a str, Vec<Service<'a>>, Vec<(&'a str, i32)>);
        let cases: [Case; 5] = [
            (
                "young families: none",
                vec![("core", None, 10), ("api", None, 3)],
                vec![],
            ),
            (
                "past keep, no mark",
                vec![("core", None, 11)],
                vec![("stage-core", 0)],
            ),
            (
                "the mark covers all but the newest keep",
                vec![("core", Some("1"), 11)],
                vec![],
            ),
            (
                "one new past keep",
                vec![("core", Some("1"), 12), ("api", Some("40"), 50)],
                vec![("stage-core", 1)],
            ),
            (
                "a mark that is not a number counts as none",
                vec![("core", Some("x"), 12)],
                vec![("stage-core", 0)],
            ),
        ];
        for (name, services, want) in cases {
            let plans: Vec<ServicePlan> =
                services.iter().map(|(f, m, _)| with_mark(f, *m)).collect();
            let targets: Vec<RolloutTarget> =
                services.iter().map(|(f, _, n)| target(f, *n)).collect();
            let got: Vec<(&str, i32)> = families_to_judge(&plans, &targets, 10)
                .iter()
                .map(|f| (f.name, f.judged))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    fn plan(name: &str, new_revision: bool, scale_up_to: Option<i32>) -> ServicePlan {
        ServicePlan {
            name: name.into(),
            current: format!("arn:aws:ecs:eu-central-1:1:task-definition/stage-{name}:1"),
            current_td: TaskDefinition::builder().build(),
            current_tags: vec![],
            from_version: Some("v1.0.0".into()),
            new_containers: new_revision.then(Vec::new),
            settled: !new_revision,
            scale_up_to,
            events: HashSet::new(),
            controller: None,
            images: vec![],
            diff: None,
            usual: None,
            removed_secrets: vec![],
        }
    }

    #[test]
    fn a_signal_undoes_only_what_is_not_verified() {
        use Cleanup::*;
        let cases = [
            (Stage::Register, Nothing),
            (Stage::Update, DeregisterNew),
            (Stage::Watch, PointBack),
            (Stage::Smoke, PointBack),
            (Stage::TagKnownGood, Leave),
            (Stage::Prune, Leave),
            (Stage::RestoreAutoscaling, Leave),
            (Stage::LiftMaintenance, Leave),
        ];
        for (stage, cleanup) in cases {
            assert_eq!(on_cancel(stage), cleanup, "{stage}");
        }
    }

    #[test]
    fn the_steps_after_the_roll_out() {
        use DeployState::*;
        use Stage::*;
        let cases: &[(bool, bool, DeployState, &[Stage])] = &[
            (false, false, Restricted, &[TagKnownGood, Prune]),
            (
                false,
                false,
                Running,
                &[TagKnownGood, Prune, LiftMaintenance],
            ),
            (
                true,
                false,
                Running,
                &[Smoke, TagKnownGood, Prune, LiftMaintenance],
            ),
            (
                false,
                true,
                Restricted,
                &[TagKnownGood, Prune, RestoreAutoscaling],
            ),
            (
                true,
                true,
                Running,
                &[
                    Smoke,
                    TagKnownGood,
                    Prune,
                    RestoreAutoscaling,
                    LiftMaintenance,
                ],
            ),
        ];
        for (smoke, scaled_up, state, want) in cases {
            assert_eq!(
                finish_plan(*smoke, *scaled_up, *state),
                want.to_vec(),
                "smoke {smoke}, scaled up {scaled_up}, {state}"
            );
        }
    }

    #[test]
    fn which_services_are_updated_and_their_result() {
        // (new revision, scaled up from 0) -> UpdateService?, result after the roll-out
        let cases = [
            (false, false, false, ServiceResult::Unchanged),
            (true, false, true, ServiceResult::Deployed),
            (false, true, true, ServiceResult::Unchanged),
            (true, true, true, ServiceResult::Deployed),
        ];
        for (new, up, update, result) in cases {
            assert_eq!(needs_update(new, up), update, "new {new}, up {up}");
            assert_eq!(completed_result(new), result, "new {new}");
        }
    }

    #[test]
    fn rollout_targets_take_the_new_revision_or_keep_the_current_one() {
        let plans = [plan("core", true, None), plan("workers", false, Some(2))];
        let registered = [
            Some(
                TaskDefinition::builder()
                    .task_definition_arn("arn:aws:ecs:eu-central-1:1:task-definition/stage-core:2")
                    .build(),
            ),
            None,
        ];
        let targets = rollout_targets(&plans, &registered);
        let got: Vec<(&str, &str, Option<i32>)> = targets
            .iter()
            .map(|t| {
                (
                    t.service.as_str(),
                    td_short(&t.task_definition),
                    t.desired_count,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("core", "stage-core:2", None),
                ("workers", "stage-workers:1", Some(2))
            ]
        );
        let back = back_targets(&plans, &["workers".to_string()]);
        assert_eq!(back.len(), 1);
        assert_eq!(td_short(&back[0].task_definition), "stage-workers:1");
        assert_eq!(
            back[0].desired_count,
            Some(0),
            "scaled up from 0: back to 0"
        );
    }

    #[test]
    fn the_first_failed_update_is_the_reason() {
        let t = |s: &str| RolloutTarget {
            service: s.into(),
            task_definition: String::new(),
            desired_count: None,
        };
        type Updates<'a> = Vec<(RolloutTarget, Option<&'a str>)>;
        let cases: Vec<(Updates, Option<&str>)> = vec![
            (vec![], None),
            (vec![(t("core"), None), (t("workers"), None)], None),
            (
                vec![
                    (t("core"), None),
                    (t("workers"), Some("AccessDenied")),
                    (t("web"), Some("x")),
                ],
                Some("UpdateService failed for workers: AccessDenied"),
            ),
        ];
        for (updates, want) in cases {
            assert_eq!(update_failure(&updates).as_deref(), want);
        }
    }

    #[test]
    fn what_follows_the_watch() {
        let failed = RolloutVerdict::Failed("roll-out FAILED: circuit breaker".into());
        let done = RolloutVerdict::Done;
        let rolling = RolloutVerdict::InProgress("1/2 running".into());
        let verdicts = [("core", &failed), ("workers", &done), ("web", &rolling)];
        let secs = Duration::from_secs(95);
        let reason = |end: WatchEnd| match after_watch(&end, &verdicts, secs) {
            AfterWatch::Failed(r) => Some(r),
            AfterWatch::Completed | AfterWatch::Cancelled(_) => None,
        };
        assert!(matches!(
            after_watch(&WatchEnd::Completed, &verdicts, secs),
            AfterWatch::Completed
        ));
        assert_eq!(
            reason(WatchEnd::Failed).as_deref(),
            Some("core: roll-out FAILED: circuit breaker")
        );
        assert_eq!(
            reason(WatchEnd::TimedOut("web: 1/2 running".into())).as_deref(),
            Some("the roll-out did not complete within 1m 35s (timeout-minutes); last seen: web: 1/2 running")
        );
        assert_eq!(
            reason(WatchEnd::Error("AccessDenied".into())).as_deref(),
            Some("watching the roll-out failed: AccessDenied")
        );
        let cancelled = WatchEnd::Cancelled {
            what: "roll-out".into(),
            waited: secs,
            last: "web: 1/2 running".into(),
        };
        assert!(matches!(
            after_watch(&cancelled, &verdicts, secs),
            AfterWatch::Cancelled(WaitError::Cancelled { .. })
        ));
    }

    #[test]
    fn on_failure_each_service_is_rolled_back_or_said_to_need_a_look() {
        use ServiceResult::*;
        // (updated by this run, pointed back, seen back COMPLETED, its own roll-out failed) -> result
        let cases = [
            (false, false, false, false, Unchanged),
            (false, false, false, true, Failed),
            (true, true, true, false, RolledBack),
            (true, true, true, true, Failed),
            (true, true, false, false, RollbackFailed),
            (true, true, false, true, RollbackFailed),
            (true, false, false, false, RollbackFailed),
            (true, false, false, true, RollbackFailed),
        ];
        for (updated, back, done, failed, want) in cases {
            assert_eq!(
                rollback_result(updated, back, done, failed),
                want,
                "updated {updated}, back {back}, done {done}, failed {failed}"
            );
        }
    }

    #[test]
    fn what_the_failure_path_prints() {
        let cases = [
            (RolloutVerdict::Done, None),
            (RolloutVerdict::Failed("FAILED".into()), Some("FAILED")),
            (
                RolloutVerdict::Stuck("no task".into()),
                Some("stuck: no task"),
            ),
            (
                RolloutVerdict::InProgress("1/2".into()),
                Some("not completed: 1/2"),
            ),
        ];
        for (v, want) in cases {
            assert_eq!(unfinished_why(&v).as_deref(), want, "{v:?}");
        }
        let done = RolloutVerdict::Done;
        let rolling = RolloutVerdict::InProgress("0/2 running".into());
        let verdicts = [("core", &rolling), ("workers", &done)];
        assert_eq!(
            rollback_incomplete_note(&WatchEnd::Completed, &verdicts),
            None
        );
        for end in [
            WatchEnd::Failed,
            WatchEnd::TimedOut(String::new()),
            WatchEnd::Error(String::new()),
            WatchEnd::Cancelled {
                what: String::new(),
                waited: Duration::ZERO,
                last: String::new(),
            },
        ] {
            assert_eq!(
                rollback_incomplete_note(&end, &verdicts).as_deref(),
                Some("the rollback did not complete: core: InProgress(\"0/2 running\"); look at the services now"),
                "{end:?}"
            );
        }
        assert_eq!(
            pointed_back_line(2, &[]),
            "every changed service (2) was pointed back at its previous revision, not waited for"
        );
        assert_eq!(
            pointed_back_line(2, &["core: AccessDenied".into()]),
            "pointing services back at their previous revisions failed: core: AccessDenied"
        );
    }

    #[test]
    fn a_signal_never_ends_a_deploy_as_a_success() {
        let v = Version::parse("v2.0.0").unwrap();
        assert_eq!(
            cancelled_before_update_line(&v, &[]),
            "deploy of v2.0.0 cancelled before any service changed"
        );
        assert_eq!(
            cancelled_before_update_line(&v, &["stage-core:2", "stage-workers:2"]),
            "deploy of v2.0.0 cancelled before any service changed; its new revisions were deregistered again (stage-core:2, stage-workers:2)"
        );
        let mut out = DeployOutcome {
            environment: "stage".into(),
            version: "v2.0.0".into(),
            resolved_from: None,
            previous_version: None,
            state: DeployState::Running,
            dry_run: false,
            services: vec![],
            rolled_back: false,
            error: None,
            failures: vec![],
            smoke: None,
            maintenance: None,
            deregistered: vec![],
            notes: vec![],
        };
        assert_eq!(
            cancelled_at_the_end(&out),
            "Deploy v2.0.0 to stage: done (state running); a signal came after its last change: re-run the deploy to confirm (it changes no service)"
        );
        out.error = Some("core: roll-out FAILED".into());
        out.rolled_back = true;
        assert_eq!(
            cancelled_at_the_end(&out),
            "Deploy v2.0.0 to stage: FAILED, rolled back: core: roll-out FAILED; then cancelled by a signal"
        );
    }

    #[test]
    fn the_bypass_header_is_never_printed() {
        let b = BypassHeader::new("x-bypass", "s3cret").unwrap();
        assert!(!format!("{b:?}").contains("s3cret"));
    }
}
