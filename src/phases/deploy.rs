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
    pub usual: Option<Duration>,
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
    let known = versions::in_families(&c.ecs, &families).await?;
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
fn usual_line(service: &str, usual: Option<Duration>) -> String {
    match usual {
        Some(d) => format!(
            "{service} usually completes in ~{} (its last roll-outs): the watch looks often around then",
            crate::wait::human(d)
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

/// Tags of a new revision: the current revision's own tags (not this action's, not `aws:`) plus the version.
fn new_revision_tags(current: &[Tag], version: &Version) -> Vec<Tag> {
    let mut tags: Vec<Tag> = current
        .iter()
        .filter(|t| {
            t.key()
                .is_some_and(|k| !k.starts_with(rollout::TAG_PREFIX) && !k.starts_with("aws:"))
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
    Ok(out)
}

async fn deploy(req: &Request<Version>, c: &Clients, ctx: &Ctx) -> Result<DeployOutcome> {
    let env = &req.common.environment;
    // New code must not meet a database half migrated (nor lift maintenance over it).
    if let Some(m) = &env.migration {
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
    }
    let plans = {
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
        plans
    };
    preflight::finish(&ctx.runner, "deploy", &checks(req, c, ctx, &plans).await?)?;
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
        let m = maintenance::observe(&c.state.elb, env.maintenance.as_ref()).await?;
        if m != MaintenanceState::On {
            tracing::warn!("state restricted, but maintenance is {m}: users will reach the new version; run phase state with restricted first to test it behind the maintenance page");
        }
        out.maintenance = Some(format!("{m} (left as it is)"));
    }
    if ctx.dry_run {
        for p in &plans {
            let row = out.row(&p.name);
            row.to = if p.new_containers.is_some() {
                "(new revision)".into()
            } else {
                p.current.clone()
            };
        }
        if req.state == DeployState::Running {
            // converge plans (read-only) and stops before the first change on a dry run.
            let opts = StateOptions {
                bypass_header: req.bypass.clone(),
                skip_drain: true,
            };
            let o = converge::converge(env, EnvState::Running, &opts, &c.state, ctx).await?;
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
        return Ok(out);
    }

    // Register the new revisions.
    let registered = register(req, c, &plans).await?;
    let targets: Vec<RolloutTarget> = plans
        .iter()
        .zip(&registered)
        .map(|(p, r)| RolloutTarget {
            service: p.name.clone(),
            task_definition: r
                .as_ref()
                .and_then(|td| td.task_definition_arn())
                .unwrap_or(&p.current)
                .to_string(),
            desired_count: p.scale_up_to,
        })
        .collect();
    for (p, t) in plans.iter().zip(&targets) {
        let row = out.row(&p.name);
        row.to = t.task_definition.clone();
        row.task_definition = t.task_definition.clone();
    }

    // Roll out.
    let changed: Vec<RolloutTarget> = plans
        .iter()
        .zip(&targets)
        .filter(|(p, _)| p.new_containers.is_some() || p.scale_up_to.is_some())
        .map(|(_, t)| t.clone())
        .collect();
    let started = Instant::now();
    let updates = rollout::update_services(&c.ecs, &env.cluster, &changed).await;
    let updated: Vec<String> = updates
        .iter()
        .filter(|(_, e)| e.is_none())
        .map(|(t, _)| t.service.clone())
        .collect();
    if let Some((t, Some(e))) = updates.iter().find(|(_, e)| e.is_some()) {
        let reason = format!("UpdateService failed for {}: {e}", t.service);
        let applied = Applied {
            req,
            c,
            ctx,
            plans: &plans,
            registered: &registered,
            updated: &updated,
        };
        return fail(&applied, out, reason, None).await;
    }
    let seen: BTreeMap<String, HashSet<String>> = plans
        .iter()
        .map(|p| (p.name.clone(), p.events.clone()))
        .collect();
    let report = {
        let _g = ctx.runner.group(&format!(
            "Roll-out of {} on {} service(s)",
            req.version,
            targets.len()
        ));
        let usual: Vec<Option<Duration>> = plans
            .iter()
            .filter(|p| changed.iter().any(|t| t.service == p.name))
            .map(|p| p.usual)
            .collect();
        let poller = ctx
            .poller(
                format!("roll-out of {} in {}", req.version, env.cluster),
                Backoff::FAST,
            )
            .expecting(rollout::expected_end(&usual));
        rollout::watch(&c.ecs, &env.cluster, &targets, seen, poller).await
    };
    for w in &report.services {
        out.row(&w.service).duration_seconds = w.done_after.map(|d| d.as_millis() as f64 / 1000.0);
    }
    let reason = match &report.end {
        WatchEnd::Completed => None,
        WatchEnd::Failed => Some(
            report
                .services
                .iter()
                .filter_map(|w| match &w.verdict {
                    RolloutVerdict::Failed(why) => Some(format!("{}: {why}", w.service)),
                    RolloutVerdict::Done
                    | RolloutVerdict::InProgress(_)
                    | RolloutVerdict::Stuck(_) => None,
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        WatchEnd::TimedOut(last) => Some(format!(
            "the roll-out did not complete within {} (timeout-minutes); last seen: {last}",
            crate::wait::human(started.elapsed())
        )),
        WatchEnd::Error(e) => Some(format!("watching the roll-out failed: {e}")),
        end @ WatchEnd::Cancelled { .. } => {
            let back: Vec<RolloutTarget> = back_targets(&plans, &updated);
            let results = rollout::update_services(&c.ecs, &env.cluster, &back).await;
            let failed: Vec<String> = results
                .iter()
                .filter_map(|(t, e)| e.as_ref().map(|e| format!("{}: {e}", t.service)))
                .collect();
            let what = if failed.is_empty() {
                format!("every changed service ({}) was pointed back at its previous revision, not waited for", back.len())
            } else {
                format!(
                    "pointing services back at their previous revisions failed: {}",
                    failed.join("; ")
                )
            };
            let cancelled = end.cancelled_error().expect("a cancelled watch");
            return Err(anyhow::Error::new(cancelled)
                .context(format!("deploy of {} cancelled; {what}", req.version)));
        }
    };
    if let Some(reason) = reason {
        let applied = Applied {
            req,
            c,
            ctx,
            plans: &plans,
            registered: &registered,
            updated: &updated,
        };
        return fail(&applied, out, reason, Some(&report)).await;
    }
    for p in &plans {
        let row = out.row(&p.name);
        row.result = if p.new_containers.is_some() {
            ServiceResult::Deployed
        } else {
            ServiceResult::Unchanged
        };
    }

    // Smoke check.
    if let Some(smoke) = &req.smoke {
        match smoke_check(smoke, req.bypass.as_ref(), ctx).await {
            Ok(line) => out.smoke = Some(line),
            Err(why) => {
                out.smoke = Some(why.clone());
                for p in &plans {
                    out.row(&p.name).duration_seconds = None;
                }
                let applied = Applied {
                    req,
                    c,
                    ctx,
                    plans: &plans,
                    registered: &registered,
                    updated: &updated,
                };
                return fail(&applied, out, why, Some(&report)).await;
            }
        }
    }

    // Known good: every service completed on its target.
    let tag_results =
        join_all(
            plans.iter().zip(&targets).map(|(p, t)| {
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
    prune(req, c, &targets, &mut out).await;

    // Services brought back from 0: their autoscaling as it was before they went to 0.
    if plans.iter().any(|p| p.scale_up_to.is_some()) {
        match autoscaling::restore(&c.state.ecs, &c.state.aas, env).await {
            Ok(lines) => out.notes.extend(lines),
            Err(e) => out.notes.push(format!(
                "autoscaling not restored: {e:#}; run phase state with running to restore it"
            )),
        }
    }

    // Maintenance.
    if req.state == DeployState::Running {
        match lift_maintenance(req, c, ctx).await {
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
    }
    Ok(out)
}

/// `keep-revisions` after the deploy succeeded: older revisions of ours that nothing uses are deregistered, said in
/// the summary; a failure is a note, never a failed deploy.
async fn prune(
    req: &Request<Version>,
    c: &Clients,
    targets: &[RolloutTarget],
    out: &mut DeployOutcome,
) {
    let env = &req.common.environment;
    let names: Vec<String> = env.services.iter().map(|s| s.name.clone()).collect();
    let mut families: Vec<&str> = targets
        .iter()
        .map(|t| ecs::td_family(&t.task_definition))
        .collect();
    families.sort_unstable();
    families.dedup();
    match retention::after_deploy(&c.ecs, &env.cluster, &names, &families, req.keep_revisions).await
    {
        Ok(p) => {
            out.deregistered.extend(p.deregistered);
            out.notes.extend(p.notes);
        }
        Err(e) => out.notes.push(format!("keep-revisions not applied: {e:#}")),
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
        for arn in &done {
            if let Err(e) = ecs::deregister_task_definition(&c.ecs, arn).await {
                tracing::warn!("{e}");
            }
        }
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

/// What a deploy changed so far: the failure path undoes it.
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
/// deadline), the reasons are collected, the new revisions are deregistered. Returns the outcome (exit 1).
async fn fail(
    d: &Applied<'_>,
    mut out: DeployOutcome,
    reason: String,
    report: Option<&WatchReport>,
) -> Result<DeployOutcome> {
    let Applied {
        req,
        c,
        ctx,
        plans,
        registered,
        updated,
    } = *d;
    let env = &req.common.environment;
    tracing::error!("deploy of {} failed: {reason}", req.version);
    out.error = Some(reason);
    let _g = ctx.runner.group("Rollback to the previous revisions");
    let back = back_targets(plans, updated);
    let results = rollout::update_services(&c.ecs, &env.cluster, &back).await;
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
        let explain = report.services.iter().filter_map(|w| {
            let why = match &w.verdict {
                RolloutVerdict::Done => return None,
                RolloutVerdict::Failed(s) => s.clone(),
                RolloutVerdict::Stuck(s) => format!("stuck: {s}"),
                RolloutVerdict::InProgress(s) => format!("not completed: {s}"),
            };
            let containers = plans
                .iter()
                .zip(registered)
                .find(|(p, _)| p.name == w.service)
                .map(|(p, r)| {
                    r.as_ref()
                        .unwrap_or(&p.current_td)
                        .container_definitions()
                        .to_vec()
                })
                .unwrap_or_default();
            Some(async move {
                rollout::explain(&c.ecs, &c.logs, &env.cluster, w, why, &containers).await
            })
        });
        out.failures = join_all(explain).await;
        for f in &out.failures {
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

    // Wait for the rollback.
    let ok_back: Vec<RolloutTarget> = back
        .iter()
        .filter(|t| !not_back.contains(&t.service))
        .cloned()
        .collect();
    let back_report = if ok_back.is_empty() {
        None
    } else {
        let poller = Poller::new(
            format!("rollback in {}", env.cluster),
            ctx.pace.of(Backoff::FAST),
            Instant::now() + req.common.timeout,
            ctx.cancel.clone(),
        );
        let seen = match report {
            Some(r) => r.seen_events(),
            None => plans
                .iter()
                .map(|p| (p.name.clone(), p.events.clone()))
                .collect(),
        };
        Some(rollout::watch(&c.ecs, &env.cluster, &ok_back, seen, poller).await)
    };
    let failed_services: Vec<&str> = out
        .failures
        .iter()
        .map(|f| f.service.as_str())
        .collect::<Vec<_>>();
    let failed_services: Vec<String> = failed_services.into_iter().map(str::to_string).collect();
    for p in plans {
        let rolled = ok_back.iter().any(|t| t.service == p.name);
        let done = back_report
            .as_ref()
            .and_then(|r| r.service(&p.name))
            .is_some_and(|w| w.verdict == RolloutVerdict::Done);
        let row = out.row(&p.name);
        row.result = match (updated.contains(&p.name), rolled, done) {
            (false, _, _) if failed_services.contains(&p.name) => ServiceResult::Failed,
            (false, _, _) => ServiceResult::Unchanged,
            (true, true, true) if failed_services.contains(&p.name) => ServiceResult::Failed,
            (true, true, true) => ServiceResult::RolledBack,
            (true, _, _) => ServiceResult::RollbackFailed,
        };
        if matches!(
            row.result,
            ServiceResult::Failed | ServiceResult::RolledBack
        ) && rolled
        {
            row.task_definition = p.current.clone();
        }
    }
    match back_report.as_ref().map(|r| &r.end) {
        None | Some(WatchEnd::Completed) => {}
        Some(
            WatchEnd::Failed
            | WatchEnd::TimedOut(_)
            | WatchEnd::Error(_)
            | WatchEnd::Cancelled { .. },
        ) => {
            let r = back_report.as_ref().expect("matched Some");
            let line = r
                .services
                .iter()
                .filter(|w| w.verdict != RolloutVerdict::Done)
                .map(|w| format!("{}: {:?}", w.service, w.verdict))
                .collect::<Vec<_>>()
                .join("; ");
            out.notes.push(format!(
                "the rollback did not complete: {line}; look at the services now"
            ));
        }
    }
    // The revisions the services ran before were just seen COMPLETED again.
    if let Some(r) = &back_report {
        for p in plans {
            if r.service(&p.name)
                .is_some_and(|w| w.verdict == RolloutVerdict::Done)
            {
                if let Err(e) = tag_known_good(
                    &c.ecs,
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

    // Deregister the revisions of this failed deploy (not one a service still points at).
    for (p, r) in plans.iter().zip(registered) {
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
        match ecs::deregister_task_definition(&c.ecs, arn).await {
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
    Ok(out)
}

/// GET the smoke URL until it answers the expected status (redirects are not followed; the bypass header is sent when
/// given). Tries for [`SMOKE_WINDOW`].
async fn smoke_check(
    smoke: &Smoke,
    bypass: Option<&BypassHeader>,
    ctx: &Ctx,
) -> Result<String, String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("smoke check: cannot build an HTTP client: {e}"))?;
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
        Err(e) => Err(format!("smoke check failed: {e}")),
    }
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
        ];
        let tags = ecs::tag_pairs(&new_revision_tags(
            &current,
            &Version::parse("v2.0.0").unwrap(),
        ));
        assert_eq!(
            tags,
            vec![
                ("environment".to_string(), "stage".to_string()),
                (rollout::TAG_VERSION.to_string(), "v2.0.0".to_string())
            ]
        );
    }

    #[test]
    fn the_bypass_header_is_never_printed() {
        let b = BypassHeader::new("x-bypass", "s3cret").unwrap();
        assert!(!format!("{b:?}").contains("s3cret"));
    }
}
