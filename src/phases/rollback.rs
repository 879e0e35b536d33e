//! Phase `rollback`: every core service back to its last known-good revision, or to a named version.
//!
//! - Known good: the revision with the newest `deploy-action:known-good` tag (what a deploy or rollback last saw
//!   COMPLETED; [`rollout::known_good`]), never "revision minus one". A service already on it is skipped.
//! - `version`: the newest ACTIVE revision of the service's family whose configured containers run that version's
//!   image; none is an error naming the service (nothing is changed then).
//! - `fast`: update every service and return without waiting (unless `wait`); otherwise wait until every roll-out
//!   COMPLETED and tag the targets known good.
//! - Afterwards the bad revisions (newer than the target, never known good) are deregistered and each family keeps its
//!   newest `keep-revisions`; never a revision in use, the target or the last known-good one
//!   ([`rollout::revisions_to_deregister`]), never a revision this action did not register, and never the revision a service ran before the rollback unless its
//!   roll-out was seen COMPLETED (after `fast`, its tasks are still draining and a failed roll-out returns to it).

use std::time::Duration;

use std::collections::{BTreeMap, HashSet};

use anyhow::{bail, Result};
use aws_sdk_ecs::types::Service;
use futures::future::join_all;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use super::Ctx;
use crate::aws::ecs::{self, td_family, td_short};
use crate::config::Service as ServiceConfig;
use crate::domain::preflight;
use crate::domain::rollout::{
    self, FailureReport, KnownGood, RevisionInfo, RolloutTarget, RolloutVerdict, WatchEnd,
};
use crate::domain::state_now;
use crate::domain::versions;
use crate::error::UsageError;
use crate::github::runner::{text_table, Outcome};
use crate::inputs::{parse_bool, parse_u64, Common, Invocation};
use crate::version::Version;
use crate::wait::Backoff;

pub const DEFAULT_KEEP_REVISIONS: u64 = crate::domain::retention::DEFAULT_KEEP;

#[derive(Debug, Clone)]
pub struct Request {
    pub common: Common,
    /// Roll back to this version instead of the last known-good revision.
    pub version: Option<Version>,
    pub fast: bool,
    pub wait: bool,
    pub keep_revisions: usize,
}

impl Request {
    pub fn from_invocation(inv: &Invocation, common: &Common) -> Result<Request, UsageError> {
        let version = match inv.raw.version.as_deref() {
            Some(v) => {
                let v = Version::parse(v)?;
                for s in &common.environment.services {
                    s.image.tag_for(&v)?;
                }
                Some(v)
            }
            None => None,
        };
        let fast = parse_bool("fast", inv.raw.fast.as_deref(), false)?;
        let wait = parse_bool("wait", inv.raw.wait.as_deref(), false)?;
        let keep = parse_u64(
            "keep-revisions",
            inv.raw.keep_revisions.as_deref(),
            1..=1000,
        )?
        .unwrap_or(DEFAULT_KEEP_REVISIONS) as usize;
        Ok(Request {
            common: common.clone(),
            version,
            fast,
            wait,
            keep_revisions: keep,
        })
    }

    /// Whether the phase waits for the roll-outs.
    pub fn waits(&self) -> bool {
        !self.fast || self.wait
    }
}

impl super::Recorded for Request {
    fn subject(&self, common: &Common) -> super::Subject {
        super::Subject::new(common, self.version.as_ref())
    }
}

/// Only the clients `rollback` uses.
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub preflight: preflight::Clients,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            ecs: aws_sdk_ecs::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            preflight: preflight::Clients::new(sdk),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowResult {
    Planned,
    /// Already on the target: nothing changed.
    AlreadyOn,
    RolledBack,
    /// fast: UpdateService done, roll-out not waited for.
    Started,
    Failed,
}

impl std::fmt::Display for RowResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RowResult::Planned => "planned",
            RowResult::AlreadyOn => "already on it",
            RowResult::RolledBack => "rolled back",
            RowResult::Started => "started (not waited for)",
            RowResult::Failed => "FAILED",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackRow {
    pub service: String,
    pub from: String,
    pub from_version: Option<String>,
    pub to: String,
    pub to_version: Option<String>,
    pub result: RowResult,
    pub duration_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackOutcome {
    pub environment: String,
    /// `known-good` or `version <v>`.
    pub mode: String,
    pub dry_run: bool,
    pub waited: bool,
    pub services: Vec<RollbackRow>,
    pub error: Option<String>,
    pub failures: Vec<FailureReport>,
    pub deregistered: Vec<String>,
    pub notes: Vec<String>,
    /// Set when no service had to move: why there was nothing to roll back.
    pub nothing_to_do: Option<String>,
    /// The earlier known-good versions (from the known-good tags, most recently good first) and the command that
    /// rolls back to each: listed when there was nothing to roll back.
    pub earlier: Vec<EarlierVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EarlierVersion {
    pub version: String,
    pub command: String,
}

/// Pure: why there is nothing to roll back (no service moves), or `None`. `on` is each service's version after the
/// rollback (its target's); `asked` the `version` input.
pub fn nothing_to_do(asked: Option<&str>, any_moves: bool, on: &[Option<&str>]) -> Option<String> {
    if any_moves {
        return None;
    }
    let first = on.first().copied().flatten();
    let one = first.filter(|f| on.iter().all(|v| *v == Some(*f)));
    Some(match (asked, one) {
        (Some(v), _) => format!("nothing to roll back: every service runs {v} already"),
        (None, Some(v)) => {
            format!("nothing to roll back: {v} is the last known-good revision on every service")
        }
        (None, None) => {
            "nothing to roll back: every service is on its last known-good revision".to_string()
        }
    })
}

/// Pure: the title of the roll-out group: how many services move and how many are only checked settled.
pub fn rollout_title(moving: usize, total: usize) -> String {
    match (moving, total - moving.min(total)) {
        (0, n) => format!("Checking that {n} service(s) already on their target are settled"),
        (m, 0) => format!("Roll-out of the rollback on {m} service(s)"),
        (m, n) => format!(
            "Roll-out of the rollback on {m} service(s); {n} already on their target, checked settled"
        ),
    }
}

/// Pure: the earlier known-good versions (every one but the version the services run now) with their commands.
pub fn earlier_versions(
    known_good: &[String],
    now: Option<&str>,
    command: impl Fn(&str) -> String,
) -> Vec<EarlierVersion> {
    known_good
        .iter()
        .filter(|v| Some(v.as_str()) != now)
        .map(|v| EarlierVersion {
            version: v.clone(),
            command: command(v),
        })
        .collect()
}

/// One service's plan: where it is, where it goes, and its family's ACTIVE revisions.
struct RollbackPlan {
    cfg: ServiceConfig,
    current: String,
    target: String,
    revisions: Vec<RevisionInfo>,
    from_version: Option<String>,
    to_version: Option<String>,
    events: HashSet<String>,
    /// The images of the target revision's configured containers, `(container, image)`: the preflight's.
    images: Vec<(String, String)>,
    /// How long this service's roll-outs usually take (from its own events); paces the watch.
    usual: Option<Duration>,
    /// The primary deployment runs `current` and its roll-out FAILED (a circuit breaker without rollback): when
    /// `current` is the target too, the roll-out is started again, or no rerun could ever settle the service.
    failed_primary: bool,
}

impl RollbackPlan {
    fn moves(&self) -> bool {
        self.current != self.target || self.failed_primary
    }
}

pub async fn run(req: &Request, c: &Clients, ctx: &Ctx) -> Result<RollbackOutcome> {
    let env = &req.common.environment;
    let mode = match &req.version {
        Some(v) => format!("version {v}"),
        None => "known-good".to_string(),
    };
    let plans = {
        let _g = ctx
            .runner
            .group(&format!("Plan: rollback of {} to {mode}", env.name));
        let names: Vec<String> = env.services.iter().map(|s| s.name.clone()).collect();
        let services = ecs::describe_services(&c.ecs, &env.cluster, &names).await?;
        let results = join_all(
            env.services
                .iter()
                .zip(&services)
                .map(|(cfg, svc)| plan_service(req, c, cfg, svc)),
        )
        .await;
        // Bad input (a version colliding with a known one) stays bad input: exit 2, nothing changed.
        if let Some(e) = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .find_map(|e| e.downcast_ref::<UsageError>())
        {
            return Err(e.clone().into());
        }
        let errors: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| format!("{e:#}"))
            .collect();
        if !errors.is_empty() {
            bail!("{}", errors.join("; "));
        }
        let plans: Vec<RollbackPlan> = results
            .into_iter()
            .map(|r| r.expect("checked above"))
            .collect();
        for p in &plans {
            if p.current == p.target && p.failed_primary {
                tracing::info!(
                    "{}: on {} already, but its last roll-out FAILED: starting it again",
                    p.cfg.name,
                    td_short(&p.current)
                );
            } else if p.current == p.target {
                tracing::info!(
                    "{}: on {} already; nothing to do",
                    p.cfg.name,
                    td_short(&p.current)
                );
            } else {
                tracing::info!(
                    "{}: {} ({}) → {} ({})",
                    p.cfg.name,
                    td_short(&p.current),
                    p.from_version.as_deref().unwrap_or("?"),
                    td_short(&p.target),
                    p.to_version.as_deref().unwrap_or("?")
                );
            }
        }
        plans
    };
    preflight::finish(&ctx.runner, "rollback", &checks(c, ctx, &plans).await)?;
    let mut out = RollbackOutcome {
        environment: env.name.clone(),
        mode,
        dry_run: ctx.dry_run,
        waited: false,
        services: plans
            .iter()
            .map(|p| RollbackRow {
                service: p.cfg.name.clone(),
                from: p.current.clone(),
                from_version: p.from_version.clone(),
                to: p.target.clone(),
                to_version: p.to_version.clone(),
                result: if !p.moves() {
                    RowResult::AlreadyOn
                } else {
                    RowResult::Planned
                },
                duration_seconds: None,
            })
            .collect(),
        error: None,
        failures: vec![],
        deregistered: vec![],
        notes: vec![],
        nothing_to_do: None,
        earlier: vec![],
    };
    let on: Vec<Option<&str>> = plans.iter().map(|p| p.to_version.as_deref()).collect();
    out.nothing_to_do = nothing_to_do(
        req.version.as_ref().map(Version::as_str),
        plans.iter().any(RollbackPlan::moves),
        &on,
    );
    if let (Some(why), Some(first)) = (&out.nothing_to_do, plans.first()) {
        tracing::info!("{why}");
        let known = rollout::known_good_versions(&first.revisions);
        out.earlier = earlier_versions(&known, first.to_version.as_deref(), |v| {
            state_now::command(
                &env.name,
                Some(&req.common.config_path),
                "rollback",
                &[("version", v)],
            )
        });
    }
    if ctx.dry_run {
        tracing::info!("dry run: no service updated, no revision deregistered");
        return Ok(out);
    }

    let target = |p: &RollbackPlan| RolloutTarget {
        service: p.cfg.name.clone(),
        task_definition: p.target.clone(),
        desired_count: None,
    };
    let moving: Vec<RolloutTarget> = plans.iter().filter(|p| p.moves()).map(target).collect();
    let changing: Vec<RolloutTarget> = plans
        .iter()
        .filter(|p| p.current != p.target)
        .map(target)
        .collect();
    let mut updates = rollout::update_services(&c.ecs, &env.cluster, &changing).await;
    for p in plans
        .iter()
        .filter(|p| p.current == p.target && p.failed_primary)
    {
        let res = ecs::redeploy(&c.ecs, &env.cluster, &p.cfg.name).await;
        match &res {
            Ok(()) => tracing::info!(
                "{}: UpdateService (new deployment of {})",
                p.cfg.name,
                td_short(&p.target)
            ),
            Err(e) => tracing::error!("{}: {e}", p.cfg.name),
        }
        updates.push((target(p), res.err()));
    }
    let mut failed_updates: Vec<String> = vec![];
    for (t, e) in &updates {
        let row = row(&mut out, &t.service);
        match e {
            None => row.result = RowResult::Started,
            Some(e) => {
                row.result = RowResult::Failed;
                failed_updates.push(t.service.clone());
                out.notes.push(format!("{}: {e}", t.service));
            }
        }
    }
    if !failed_updates.is_empty() {
        out.error = Some(format!(
            "UpdateService failed for {}",
            failed_updates.join(", ")
        ));
    }

    // Every service is watched (a skipped one must be settled too), unless fast mode returns at once.
    let mut seen_completed: Vec<String> = vec![];
    if req.waits() {
        out.waited = true;
        let targets: Vec<RolloutTarget> = plans
            .iter()
            .filter(|p| !failed_updates.contains(&p.cfg.name))
            .map(|p| RolloutTarget {
                service: p.cfg.name.clone(),
                task_definition: p.target.clone(),
                desired_count: None,
            })
            .collect();
        let seen: BTreeMap<String, HashSet<String>> = plans
            .iter()
            .map(|p| (p.cfg.name.clone(), p.events.clone()))
            .collect();
        let report = {
            let _g = ctx
                .runner
                .group(&rollout_title(moving.len(), targets.len()));
            let usual: Vec<Option<Duration>> = plans
                .iter()
                .filter(|p| p.moves())
                .map(|p| p.usual)
                .collect();
            let poller = ctx
                .poller(format!("rollback in {}", env.cluster), Backoff::FAST)
                .expecting(rollout::expected_end(&usual));
            rollout::watch(&c.ecs, &env.cluster, &targets, seen, poller).await
        };
        for w in &report.services {
            let moved = moving.iter().any(|t| t.service == w.service);
            let r = row(&mut out, &w.service);
            r.duration_seconds = w.done_after.map(|d| d.as_millis() as f64 / 1000.0);
            match &w.verdict {
                RolloutVerdict::Done => {
                    seen_completed.push(w.service.clone());
                    if moved {
                        r.result = RowResult::RolledBack;
                    }
                }
                RolloutVerdict::Failed(_)
                | RolloutVerdict::Stuck(_)
                | RolloutVerdict::InProgress(_) => r.result = RowResult::Failed,
            }
        }
        let reason = match &report.end {
            WatchEnd::Completed => None,
            WatchEnd::Failed => Some("the rollback roll-out failed".to_string()),
            WatchEnd::TimedOut(last) => Some(format!(
                "the rollback did not complete within timeout-minutes; last seen: {last}"
            )),
            WatchEnd::Error(e) => Some(format!("watching the rollback failed: {e}")),
            end @ WatchEnd::Cancelled { .. } => {
                let cancelled = end.cancelled_error().expect("a cancelled watch");
                return Err(anyhow::Error::new(cancelled).context(
                    "rollback cancelled; the services were already pointed at their targets",
                ));
            }
        };
        if let Some(reason) = reason {
            let explain = report
                .services
                .iter()
                .filter(|w| w.verdict != RolloutVerdict::Done)
                .map(|w| {
                    let why = match &w.verdict {
                        RolloutVerdict::Failed(s) => s.clone(),
                        RolloutVerdict::Stuck(s) => format!("stuck: {s}"),
                        RolloutVerdict::InProgress(s) => format!("not completed: {s}"),
                        RolloutVerdict::Done => String::new(),
                    };
                    let env = &env;
                    async move {
                        let containers =
                            match ecs::describe_task_definition(&c.ecs, &w.target).await {
                                Ok((td, _)) => td.container_definitions().to_vec(),
                                Err(_) => vec![],
                            };
                        rollout::explain(&c.ecs, &c.logs, &env.cluster, w, why, &containers).await
                    }
                });
            out.failures = join_all(explain).await;
            tracing::error!("{reason}");
            out.error = Some(match out.error.take() {
                Some(e) => format!("{e}; {reason}"),
                None => reason,
            });
        }
    }

    // Known good: the targets seen COMPLETED are the last known-good revisions now.
    let mut plans = plans;
    for p in plans
        .iter_mut()
        .filter(|p| seen_completed.contains(&p.cfg.name))
    {
        if matches!(
            rollout::known_good(&p.revisions, &p.target),
            Some(KnownGood::AlreadyOn(_))
        ) {
            continue;
        }
        let stamp = rollout::timestamp_now();
        let mut tags = vec![(rollout::TAG_KNOWN_GOOD, stamp.clone())];
        let info = p.revisions.iter_mut().find(|r| r.arn == p.target);
        if let (Some(v), true) = (
            &p.to_version,
            info.as_ref().is_none_or(|i| i.version.is_none()),
        ) {
            tags.push((rollout::TAG_VERSION, v.clone()));
        }
        match ecs::tag(&c.ecs, &p.target, &tags).await {
            Ok(()) => {
                tracing::info!("{}: tagged known good", td_short(&p.target));
                if let Some(i) = info {
                    i.known_good = Some(stamp);
                }
            }
            Err(e) => out.notes.push(format!("known-good tag not written: {e}")),
        }
    }

    // Deregister the bad revisions and keep the newest N per family.
    let in_use: Vec<String> = plans
        .iter()
        .map(|p| {
            if failed_updates.contains(&p.cfg.name) {
                p.current.clone()
            } else {
                p.target.clone()
            }
        })
        .chain(
            plans
                .iter()
                .filter(|p| failed_updates.contains(&p.cfg.name))
                .map(|p| p.target.clone()),
        )
        // A roll-out that did not complete, or was not waited for (fast): tasks of the revision the service ran are
        // still draining, and ECS's circuit breaker returns the service to that revision if the roll-out fails, so
        // it stays registered (the next rollback that sees the roll-out complete deregisters it). No service is
        // ever left on a deregistered revision.
        .chain(
            plans
                .iter()
                .filter(|p| !out.waited || !seen_completed.contains(&p.cfg.name))
                .map(|p| p.current.clone()),
        )
        .collect();
    let mut doomed: Vec<(String, String)> = vec![];
    for p in &plans {
        for arn in
            rollout::revisions_to_deregister(&p.revisions, &p.target, &in_use, req.keep_revisions)
        {
            if !doomed.iter().any(|(_, a)| *a == arn) {
                doomed.push((p.cfg.name.clone(), arn));
            }
        }
    }
    for (service, arn) in doomed {
        match ecs::deregister_task_definition(&c.ecs, &arn).await {
            Ok(()) => {
                tracing::info!("{service}: deregistered {}", td_short(&arn));
                out.deregistered.push(arn);
            }
            Err(e) => out.notes.push(format!("{service}: {e}")),
        }
    }
    Ok(out)
}

fn row<'a>(out: &'a mut RollbackOutcome, service: &str) -> &'a mut RollbackRow {
    out.services
        .iter_mut()
        .find(|r| r.service == service)
        .expect("a row per service")
}

/// Reads a service's family revisions and picks its target. Errors name the service and the fix.
/// The preflight of a rollback: the images of the revisions it goes back to are still in ECR (a lifecycle policy
/// may have expired them; ECS would find out only as CannotPullContainerError half-way through). The deployment
/// controller is checked while planning.
async fn checks(c: &Clients, ctx: &Ctx, plans: &[RollbackPlan]) -> preflight::Report {
    let wanted: Vec<preflight::Wanted> = plans
        .iter()
        .filter(|p| p.moves())
        .flat_map(|p| {
            p.images.iter().map(|(container, image)| preflight::Wanted {
                what: format!(
                    "service {}, container {container} ({})",
                    p.cfg.name,
                    td_short(&p.target)
                ),
                image: image.clone(),
            })
        })
        .collect();
    let poller = ctx.poller("images", Backoff::SLOW);
    let found = preflight::images(&c.preflight, &wanted, std::time::Duration::ZERO, poller).await;
    preflight::Report {
        rows: preflight::image_rows_fix(
            &found,
            "an ECR lifecycle policy may have expired it: push it again, or roll back to another version with input `version`",
        ),
    }
}

async fn plan_service(
    req: &Request,
    c: &Clients,
    cfg: &ServiceConfig,
    svc: &Service,
) -> Result<RollbackPlan> {
    let env = &req.common.environment;
    ecs::rolling_controller(&env.cluster, svc)?;
    let current = svc.task_definition().unwrap_or_default().to_string();
    let family = td_family(&current).to_string();
    let arns = ecs::active_revisions(&c.ecs, &family).await?;
    let revisions: Vec<RevisionInfo> = stream::iter(arns.iter())
        .map(|arn| async move {
            let tags = ecs::tags(&c.ecs, arn).await?;
            Ok::<_, anyhow::Error>(RevisionInfo::new(arn, &tags))
        })
        .buffered(8)
        .try_collect()
        .await?;
    if let Some(v) = &req.version {
        let known: Vec<versions::Known> = revisions
            .iter()
            .filter_map(|r| {
                Some(versions::Known {
                    version: r.version.clone()?,
                    seen_on: td_short(&r.arn).to_string(),
                })
            })
            .collect();
        versions::refuse_collision(v, &known)?;
    }
    let version_of = |td: &aws_sdk_ecs::types::TaskDefinition| {
        cfg.containers
            .first()
            .and_then(|n| {
                td.container_definitions()
                    .iter()
                    .find(|c| c.name() == Some(n.as_str()))
            })
            .and_then(|c| cfg.image.version_of(c.image().unwrap_or_default()))
    };
    let (current_td, _) = ecs::describe_task_definition(&c.ecs, &current).await?;
    let target = match &req.version {
        Some(v) => {
            let mut found = None;
            for r in &revisions {
                let (td, _) = ecs::describe_task_definition(&c.ecs, &r.arn).await?;
                if runs_version(cfg, &td, v)? {
                    found = Some(r.arn.clone());
                    break;
                }
            }
            match found {
                Some(arn) => arn,
                None => bail!(
                    "ECS service {}/{}: no ACTIVE revision of family {family} runs {v} (image tag {}); deploy it with phase deploy, or name a version that ran before",
                    env.cluster,
                    cfg.name,
                    cfg.image.tag_for(v)?
                ),
            }
        }
        None => match rollout::known_good(&revisions, &current) {
            Some(KnownGood::AlreadyOn(r) | KnownGood::RollTo(r)) => r.arn.clone(),
            None => bail!(
                "ECS service {}/{}: no ACTIVE revision of family {family} is tagged {} (deploy tags the revisions it saw COMPLETED); roll back to a named version with `version`",
                env.cluster,
                cfg.name,
                rollout::TAG_KNOWN_GOOD
            ),
        },
    };
    let target_td = if target == current {
        current_td.clone()
    } else {
        ecs::describe_task_definition(&c.ecs, &target).await?.0
    };
    let to_version = version_of(&target_td);
    let images = cfg
        .containers
        .iter()
        .filter_map(|n| {
            target_td
                .container_definitions()
                .iter()
                .find(|c| c.name() == Some(n.as_str()))
                .and_then(|c| c.image())
                .map(|i| (n.clone(), i.to_string()))
        })
        .collect();
    let failed_primary = ecs::failed_on(svc, &current);
    Ok(RollbackPlan {
        cfg: cfg.clone(),
        failed_primary,
        from_version: version_of(&current_td),
        to_version,
        current,
        target,
        revisions,
        events: rollout::event_ids(svc),
        images,
        usual: rollout::usual_duration_of(svc),
    })
}

/// Whether every configured container of `td` runs the image of version `v`.
fn runs_version(
    cfg: &ServiceConfig,
    td: &aws_sdk_ecs::types::TaskDefinition,
    v: &Version,
) -> Result<bool> {
    for name in &cfg.containers {
        let Some(c) = td
            .container_definitions()
            .iter()
            .find(|c| c.name() == Some(name.as_str()))
        else {
            return Ok(false);
        };
        let image = c.image().unwrap_or_default();
        if cfg.image.image_for(v, image)? != image {
            return Ok(false);
        }
    }
    Ok(true)
}

impl RollbackOutcome {
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
        if let (None, Some(why)) = (&self.error, &self.nothing_to_do) {
            return format!("Rollback of {} to {}: {why}", self.environment, self.mode);
        }
        let status = match (&self.error, self.dry_run, self.waited) {
            (_, true, _) => "dry run, nothing changed",
            (None, false, true) => "done",
            (None, false, false) => "started, not waited for",
            (Some(_), false, _) => "FAILED",
        };
        format!(
            "Rollback of {} to {}: {status}",
            self.environment, self.mode
        )
    }

    /// The version every service runs after the rollback, when they agree.
    fn version(&self) -> Option<&str> {
        let v: Vec<Option<&str>> = self
            .services
            .iter()
            .map(|r| r.to_version.as_deref())
            .collect();
        v.first()
            .copied()
            .flatten()
            .filter(|first| v.iter().all(|x| *x == Some(*first)))
    }

    fn previous_version(&self) -> Option<&str> {
        self.services
            .first()
            .and_then(|r| r.from_version.as_deref())
    }

    fn details(&self) -> Vec<String> {
        let mut d = vec![];
        d.extend(self.failures.iter().flat_map(FailureReport::lines));
        if !self.deregistered.is_empty() {
            d.push(format!(
                "deregistered: {}",
                self.deregistered
                    .iter()
                    .map(|a| td_short(a))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        d.extend(self.notes.iter().map(|n| format!("note: {n}")));
        d
    }

    /// What to do instead when there was nothing to roll back.
    fn earlier_lines(&self) -> Vec<String> {
        if self.nothing_to_do.is_none() {
            return vec![];
        }
        if self.earlier.is_empty() {
            return vec![
                "no earlier known-good version is registered: deploy the version to go back to with phase deploy"
                    .into(),
            ];
        }
        let mut l = vec!["earlier known-good versions, most recently good first:".to_string()];
        l.extend(
            self.earlier
                .iter()
                .map(|e| format!("  {}: {}", e.version, e.command)),
        );
        l
    }
}

impl Outcome for RollbackOutcome {
    fn ok(&self) -> bool {
        self.error.is_none()
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        let arns: BTreeMap<&str, &str> = self
            .services
            .iter()
            .map(|r| {
                let now = match r.result {
                    RowResult::Planned | RowResult::Failed => &r.from,
                    RowResult::AlreadyOn | RowResult::RolledBack | RowResult::Started => &r.to,
                };
                (r.service.as_str(), now.as_str())
            })
            .collect();
        let moved = self
            .services
            .iter()
            .any(|r| matches!(r.result, RowResult::RolledBack | RowResult::Started));
        vec![
            ("version", self.version().unwrap_or_default().to_string()),
            (
                "previous-version",
                self.previous_version().unwrap_or_default().to_string(),
            ),
            (
                "task-definition-arns",
                serde_json::to_string(&arns).unwrap_or_default(),
            ),
            ("rolled-back", moved.to_string()),
            ("changed", moved.to_string()),
            (
                "earlier-versions",
                self.earlier
                    .iter()
                    .map(|e| e.version.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ]
    }

    fn summary(&self) -> String {
        let mut s = rollout::summary_markdown(
            self.ok(),
            &self.headline(),
            self.error.as_deref(),
            &self.rows(),
            &self.details(),
        );
        let earlier = self.earlier_lines();
        if let Some((head, rest)) = earlier.split_first() {
            s.push_str(&format!("\n{head}\n\n"));
            for e in &self.earlier {
                s.push_str(&format!("- {}: `{}`\n", e.version, e.command));
            }
            if self.earlier.is_empty() && rest.is_empty() {
                s.push('\n');
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
        let details = self.details();
        if !details.is_empty() {
            s.push('\n');
            for l in details {
                s.push_str(&format!("{l}\n"));
            }
        }
        let earlier = self.earlier_lines();
        if !earlier.is_empty() {
            s.push('\n');
            for l in earlier {
                s.push_str(&format!("{l}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_roll_back_says_why() {
        type Case<'a> = (Option<&'a str>, bool, Vec<Option<&'a str>>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (None, true, vec![Some("v1")], None),
            (
                None,
                false,
                vec![Some("v1.1.0"), Some("v1.1.0")],
                Some(
                    "nothing to roll back: v1.1.0 is the last known-good revision on every service",
                ),
            ),
            (
                None,
                false,
                vec![Some("v1.1.0"), None],
                Some("nothing to roll back: every service is on its last known-good revision"),
            ),
            (
                Some("v1.0.0"),
                false,
                vec![Some("v1.0.0")],
                Some("nothing to roll back: every service runs v1.0.0 already"),
            ),
            (Some("v1.0.0"), true, vec![Some("v1.0.0")], None),
        ];
        for (asked, moves, on, want) in cases {
            assert_eq!(
                nothing_to_do(asked, moves, &on).as_deref(),
                want,
                "{asked:?} {moves} {on:?}"
            );
        }
    }

    #[test]
    fn the_roll_out_title_counts_what_moves() {
        assert_eq!(
            rollout_title(0, 3),
            "Checking that 3 service(s) already on their target are settled"
        );
        assert_eq!(
            rollout_title(3, 3),
            "Roll-out of the rollback on 3 service(s)"
        );
        assert_eq!(
            rollout_title(1, 3),
            "Roll-out of the rollback on 1 service(s); 2 already on their target, checked settled"
        );
    }

    #[test]
    fn earlier_versions_leave_out_the_current_one() {
        let known = vec!["v1.1.0".to_string(), "v1.0.0".into(), "v0.9.0".into()];
        let e = earlier_versions(&known, Some("v1.1.0"), |v| format!("rollback {v}"));
        assert_eq!(
            e,
            vec![
                EarlierVersion {
                    version: "v1.0.0".into(),
                    command: "rollback v1.0.0".into()
                },
                EarlierVersion {
                    version: "v0.9.0".into(),
                    command: "rollback v0.9.0".into()
                },
            ]
        );
    }
}
