//! Phase `rollback`: every core service back to its last known-good revision, or to a named version.
//!
//! - Known good: the revision with the newest `deploy-action:known-good` tag (what a deploy or rollback last saw
//!   COMPLETED; [`rollout::known_good`]), never "revision minus one". A service already on it is skipped.
//! - `version`: the newest ACTIVE revision of the service's family whose configured containers run that version's
//!   image; none is an error naming the service (nothing is changed then).
//! - `fast`: update every service and return without waiting (unless `wait`); otherwise wait until every roll-out
//!   COMPLETED and tag the targets known good.
//! - Afterwards the bad revisions (newer than the target, never known good) are deregistered and each family keeps its
//!   newest `keep-revisions` ([`rollout::revisions_to_deregister`]): never the target or the last known-good one,
//!   never a revision this action did not register, never one in use ([`still_in_use`]: a deployment of a service or
//!   a running task uses it, a one-off task's too, read from ECS with [`retention::in_use`]), and never the revision a
//!   service ran before the rollback unless its roll-out was seen COMPLETED (after `fast`, its tasks are still
//!   draining and a failed roll-out returns to it).
//! - Observe → plan → apply: [`changes`], [`still_in_use`], [`to_deregister`], [`after_watch`] and
//!   [`known_good_tags`] are the decisions, pure. The services are changed one after another; a signal (SIGINT,
//!   SIGTERM) stops the rollback before the next service's UpdateService, tag or deregistration (exit 130), and the
//!   rerun finishes it: a service already pointed at its target is only checked settled then.

use std::time::Duration;

use std::collections::{BTreeMap, HashSet};

use anyhow::{bail, Result};
use aws_sdk_ecs::types::{Service, TaskDefinition};
use futures::future::join_all;
use serde::Serialize;

use super::Ctx;
use crate::aws::ecs::{self, td_family, td_short};
use crate::config::Service as ServiceConfig;
use crate::domain::preflight;
use crate::domain::retention;
use crate::domain::rollout::{
    self, FailureReport, KnownGood, RevisionInfo, RolloutTarget, RolloutVerdict, WatchEnd,
};
use crate::domain::state_now;
use crate::domain::versions;
use crate::error::UsageError;
use crate::github::runner::{text_table, Outcome};
use crate::inputs::{parse_bool, parse_u64, Common, Invocation};
use crate::version::Version;
use crate::wait::{Backoff, WaitError};

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
    usual: Option<rollout::RolloutTime>,
    /// The primary deployment runs `current` and its roll-out FAILED (a circuit breaker without rollback): when
    /// `current` is the target too, the roll-out is started again, or no rerun could ever settle the service.
    failed_primary: bool,
}

impl RollbackPlan {
    fn moves(&self) -> bool {
        self.position().moves()
    }

    fn position(&self) -> Position<'_> {
        Position {
            service: &self.cfg.name,
            current: &self.current,
            target: &self.target,
            failed_primary: self.failed_primary,
        }
    }

    fn rollout_target(&self) -> RolloutTarget {
        RolloutTarget {
            service: self.cfg.name.clone(),
            task_definition: self.target.clone(),
            desired_count: None,
        }
    }

    /// The plan's log line.
    fn line(&self) -> String {
        let (name, current) = (&self.cfg.name, td_short(&self.current));
        if self.current == self.target && self.failed_primary {
            format!("{name}: on {current} already, but its last roll-out FAILED: starting it again")
        } else if self.current == self.target {
            format!("{name}: on {current} already; nothing to do")
        } else {
            format!(
                "{name}: {current} ({}) → {} ({})",
                self.from_version.as_deref().unwrap_or("?"),
                td_short(&self.target),
                self.to_version.as_deref().unwrap_or("?")
            )
        }
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Decisions (pure)
// ------------------------------------------------------------------------------------------------------------------

/// Where one service stands, as the decisions below see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position<'a> {
    pub service: &'a str,
    /// The revision the service runs now.
    pub current: &'a str,
    /// The revision it goes back to.
    pub target: &'a str,
    /// Its primary deployment runs `current` and that roll-out FAILED.
    pub failed_primary: bool,
}

impl Position<'_> {
    /// Whether the service moves: to another revision, or its failed roll-out is started again.
    pub fn moves(&self) -> bool {
        self.current != self.target || self.failed_primary
    }
}

/// One change of a rollback, in the order they are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// UpdateService to the target revision.
    Update { service: String, target: String },
    /// On its target already, but the last roll-out FAILED: a new deployment of it (UpdateService, force).
    Redeploy { service: String, target: String },
}

impl Change {
    fn service(&self) -> &str {
        match self {
            Change::Update { service, .. } | Change::Redeploy { service, .. } => service,
        }
    }

    fn target(&self) -> &str {
        match self {
            Change::Update { target, .. } | Change::Redeploy { target, .. } => target,
        }
    }
}

/// Pure: the changes: UpdateService for every service not on its target, then a new deployment for every one on
/// its target whose last roll-out FAILED. A service on its target with a settled roll-out is not touched.
pub fn changes(positions: &[Position]) -> Vec<Change> {
    let update = positions
        .iter()
        .filter(|p| p.current != p.target)
        .map(|p| Change::Update {
            service: p.service.to_string(),
            target: p.target.to_string(),
        });
    let redeploy = positions
        .iter()
        .filter(|p| p.current == p.target && p.failed_primary)
        .map(|p| Change::Redeploy {
            service: p.service.to_string(),
            target: p.target.to_string(),
        });
    update.chain(redeploy).collect()
}

/// Pure: the message of a rollback cancelled between its changes: what was sent, what was not, and the rerun.
pub fn cancelled_between(done: &[Change], left: &[Change]) -> String {
    let names = |c: &[Change]| {
        c.iter()
            .map(|c| format!("{} (to {})", c.service(), td_short(c.target())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sent = if done.is_empty() {
        "no service was changed".to_string()
    } else {
        format!("UpdateService sent for {}", names(done))
    };
    format!(
        "rollback cancelled: {sent}; not started: {}; re-run the same rollback to finish (a service already on its target is only checked settled)",
        names(left)
    )
}

/// Pure: the revisions still in use after the rollback, which no deregistration touches: every target, and every
/// service's current revision when its UpdateService failed (it still runs it; its target stays too, ECS may have
/// taken the update). A roll-out that was not seen COMPLETED (not waited for, `fast`, or not done) keeps the
/// revision the service ran: its tasks are still draining, and ECS's circuit breaker returns the service to it if
/// the roll-out fails (the next rollback that sees the roll-out complete deregisters it). So no service, nor any of
/// its deployments, is ever left on a deregistered revision. `observed`: what a deployment of the services or a
/// running task of their families uses, read from ECS ([`retention::in_use`]) once there is anything to deregister.
pub fn still_in_use(
    positions: &[Position],
    failed_updates: &[String],
    seen_completed: &[String],
    waited: bool,
    observed: &[String],
) -> Vec<String> {
    let failed = |p: &&Position| failed_updates.iter().any(|f| f == p.service);
    let completed = |p: &&Position| seen_completed.iter().any(|s| s == p.service);
    let mut used: Vec<String> = positions
        .iter()
        .map(|p| {
            if failed(&p) {
                p.current.to_string()
            } else {
                p.target.to_string()
            }
        })
        .chain(
            positions
                .iter()
                .filter(failed)
                .map(|p| p.target.to_string()),
        )
        .chain(
            positions
                .iter()
                .filter(|p| !waited || !completed(p))
                .map(|p| p.current.to_string()),
        )
        .collect();
    used.extend(observed.iter().cloned());
    used
}

/// Pure: the revisions to deregister, each with the service whose family it is in (`(service, revisions, target)`
/// per service), each once, in the services' order ([`rollout::revisions_to_deregister`] per family: only this
/// action's revisions, never one in `in_use`, the target or the last known-good one).
pub fn to_deregister(
    families: &[(&str, &[RevisionInfo], &str)],
    in_use: &[String],
    keep: usize,
) -> Vec<(String, String)> {
    let mut doomed: Vec<(String, String)> = vec![];
    for (service, revisions, target) in families {
        for arn in rollout::revisions_to_deregister(revisions, target, in_use, keep) {
            if !doomed.iter().any(|(_, a)| *a == arn) {
                doomed.push((service.to_string(), arn));
            }
        }
    }
    doomed
}

/// Pure: a row's result after the watch (`None`: unchanged): a service seen done rolled back if it moved (one on its
/// target already stays "already on it"); any other verdict failed.
pub fn after_watch(verdict: &RolloutVerdict, moved: bool) -> Option<RowResult> {
    match verdict {
        RolloutVerdict::Done => moved.then_some(RowResult::RolledBack),
        RolloutVerdict::Failed(_) | RolloutVerdict::Stuck(_) | RolloutVerdict::InProgress(_) => {
            Some(RowResult::Failed)
        }
    }
}

/// Pure: why the rollback's roll-outs failed (`Ok(None)`: every one completed); the poller's error when cancelled.
pub fn watch_failure(end: &WatchEnd) -> Result<Option<String>, WaitError> {
    Ok(match end {
        WatchEnd::Completed => None,
        WatchEnd::Failed => Some("the rollback roll-out failed".to_string()),
        WatchEnd::TimedOut(last) => Some(format!(
            "the rollback did not complete within timeout-minutes; last seen: {last}"
        )),
        WatchEnd::Error(e) => Some(format!("watching the rollback failed: {e}")),
        end @ WatchEnd::Cancelled { .. } => {
            return Err(end.cancelled_error().unwrap_or(WaitError::Cancelled {
                what: "the rollback's roll-outs".into(),
                waited: Duration::ZERO,
                last: String::new(),
            }))
        }
    })
}

/// Pure: the tags that make `target` (seen COMPLETED) the last known-good revision: the stamp, and its version when
/// the revision has no version tag yet. `None` when it is the last known-good revision already.
pub fn known_good_tags(
    revisions: &[RevisionInfo],
    target: &str,
    to_version: Option<&str>,
    stamp: &str,
) -> Option<Vec<(&'static str, String)>> {
    if matches!(
        rollout::known_good(revisions, target),
        Some(KnownGood::AlreadyOn(_))
    ) {
        return None;
    }
    let mut tags = vec![(rollout::TAG_KNOWN_GOOD, stamp.to_string())];
    let untagged = revisions
        .iter()
        .find(|r| r.arn == target)
        .is_none_or(|i| i.version.is_none());
    if let (Some(v), true) = (to_version, untagged) {
        tags.push((rollout::TAG_VERSION, v.to_string()));
    }
    Some(tags)
}

/// Pure: the outcome before any change: a row per service (planned, or already on it), and when nothing moves why
/// not, with the earlier known-good versions to go back to instead.
fn outcome(req: &Request, mode: String, dry_run: bool, plans: &[RollbackPlan]) -> RollbackOutcome {
    let env = &req.common.environment;
    let mut out = RollbackOutcome {
        environment: env.name.clone(),
        mode,
        dry_run,
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
    if let (Some(_), Some(first)) = (&out.nothing_to_do, plans.first()) {
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
    out
}

// ------------------------------------------------------------------------------------------------------------------
// Observe → plan → apply
// ------------------------------------------------------------------------------------------------------------------

/// Observes every service, plans, and (unless a dry run) applies the plan: see the module docs.
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
        let plans = plan_all(req, c).await?;
        for p in &plans {
            tracing::info!("{}", p.line());
        }
        plans
    };
    preflight::finish(&ctx.runner, "rollback", &checks(c, ctx, &plans).await)?;
    let mut out = outcome(req, mode, ctx.dry_run, &plans);
    if let (Some(why), Some(_)) = (&out.nothing_to_do, plans.first()) {
        tracing::info!("{why}");
    }
    if ctx.dry_run {
        tracing::info!("dry run: no service updated, no revision deregistered");
        return Ok(out);
    }
    let planned = changes(&plans.iter().map(RollbackPlan::position).collect::<Vec<_>>());
    let failed_updates = apply_changes(c, ctx, &env.cluster, &planned, &mut out).await?;
    // Every service is watched (a skipped one must be settled too), unless fast mode returns at once.
    let seen_completed = if req.waits() {
        out.waited = true;
        watch(req, c, ctx, &plans, &failed_updates, &mut out).await?
    } else {
        vec![]
    };
    let mut plans = plans;
    tag_known_good(c, ctx, &mut plans, &seen_completed, &mut out).await?;
    let doomed = doomed(req, c, &plans, &failed_updates, &seen_completed, &mut out).await;
    deregister(c, ctx, doomed, &mut out).await?;
    Ok(out)
}

/// The revisions to deregister: of this action's, those nothing uses, by what this run knows ([`still_in_use`]) and,
/// when that leaves any, by what ECS says a deployment or a running task (a one-off task's too) uses. When that
/// cannot be read, none (a note says why).
async fn doomed(
    req: &Request,
    c: &Clients,
    plans: &[RollbackPlan],
    failed_updates: &[String],
    seen_completed: &[String],
    out: &mut RollbackOutcome,
) -> Vec<(String, String)> {
    let positions: Vec<Position> = plans.iter().map(RollbackPlan::position).collect();
    let families: Vec<(&str, &[RevisionInfo], &str)> = plans
        .iter()
        .map(|p| {
            (
                p.cfg.name.as_str(),
                p.revisions.as_slice(),
                p.target.as_str(),
            )
        })
        .collect();
    let waited = out.waited;
    let decide = |observed: &[String]| {
        let in_use = still_in_use(&positions, failed_updates, seen_completed, waited, observed);
        to_deregister(&families, &in_use, req.keep_revisions)
    };
    if decide(&[]).is_empty() {
        return vec![];
    }
    let env = &req.common.environment;
    let names: Vec<String> = plans.iter().map(|p| p.cfg.name.clone()).collect();
    let mut family_names: Vec<&str> = plans.iter().map(|p| td_family(&p.current)).collect();
    family_names.sort();
    family_names.dedup();
    match retention::in_use(&c.ecs, &env.cluster, &names, &family_names).await {
        Ok(observed) => decide(&observed),
        Err(e) => {
            out.notes.push(format!(
                "no revision deregistered: which revisions are in use could not be read ({e:#}); the next rollback or deploy does it"
            ));
            vec![]
        }
    }
}

/// Observes and plans every service (concurrently). A version colliding with a known one stays bad input (exit 2,
/// nothing changed); any other error names every service that failed.
async fn plan_all(req: &Request, c: &Clients) -> Result<Vec<RollbackPlan>> {
    let env = &req.common.environment;
    let names: Vec<String> = env.services.iter().map(|s| s.name.clone()).collect();
    let services = ecs::describe_services(&c.ecs, &env.cluster, &names).await?;
    let results = join_all(
        env.services
            .iter()
            .zip(&services)
            .map(|(cfg, svc)| plan_service(req, c, cfg, svc)),
    )
    .await;
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
    Ok(results.into_iter().filter_map(Result::ok).collect())
}

/// Makes the changes one service at a time and sets the rows; a signal stops it before the next service's change
/// (what was sent stays: the rerun sees those services on their targets). The services whose UpdateService failed.
async fn apply_changes(
    c: &Clients,
    ctx: &Ctx,
    cluster: &str,
    changes: &[Change],
    out: &mut RollbackOutcome,
) -> Result<Vec<String>> {
    let mut failed: Vec<String> = vec![];
    for (i, change) in changes.iter().enumerate() {
        if let Err(e) = ctx.stop_if_cancelled(&format!("UpdateService of {}", change.service())) {
            return Err(
                anyhow::Error::new(e).context(cancelled_between(&changes[..i], &changes[i..]))
            );
        }
        let error = match change {
            Change::Update { service, target } => {
                let t = RolloutTarget {
                    service: service.clone(),
                    task_definition: target.clone(),
                    desired_count: None,
                };
                let mut sent = rollout::update_services(&c.ecs, cluster, &[t]).await;
                sent.pop().and_then(|(_, e)| e)
            }
            Change::Redeploy { service, target } => {
                let res = ecs::redeploy(&c.ecs, cluster, service).await;
                match &res {
                    Ok(()) => tracing::info!(
                        "{service}: UpdateService (new deployment of {})",
                        td_short(target)
                    ),
                    Err(e) => tracing::error!("{service}: {e}"),
                }
                res.err()
            }
        };
        let service = change.service();
        let row = row(out, service);
        match error {
            None => row.result = RowResult::Started,
            Some(e) => {
                row.result = RowResult::Failed;
                failed.push(service.to_string());
                out.notes.push(format!("{service}: {e}"));
            }
        }
    }
    if !failed.is_empty() {
        out.error = Some(format!("UpdateService failed for {}", failed.join(", ")));
    }
    Ok(failed)
}

/// Watches every service whose UpdateService did not fail (one on its target already must be settled too), sets the
/// rows and explains a failure. The services seen COMPLETED.
async fn watch(
    req: &Request,
    c: &Clients,
    ctx: &Ctx,
    plans: &[RollbackPlan],
    failed_updates: &[String],
    out: &mut RollbackOutcome,
) -> Result<Vec<String>> {
    let env = &req.common.environment;
    let targets: Vec<RolloutTarget> = plans
        .iter()
        .filter(|p| !failed_updates.contains(&p.cfg.name))
        .map(RollbackPlan::rollout_target)
        .collect();
    let moving: Vec<&str> = plans
        .iter()
        .filter(|p| p.moves())
        .map(|p| p.cfg.name.as_str())
        .collect();
    let seen: BTreeMap<String, HashSet<String>> = plans
        .iter()
        .map(|p| (p.cfg.name.clone(), p.events.clone()))
        .collect();
    let report = {
        let _g = ctx
            .runner
            .group(&rollout_title(moving.len(), targets.len()));
        let usual: Vec<Option<rollout::RolloutTime>> = plans
            .iter()
            .filter(|p| p.moves())
            .map(|p| p.usual)
            .collect();
        let poller = ctx
            .poller(format!("rollback in {}", env.cluster), Backoff::FAST)
            .expecting(rollout::expected_end(&usual));
        rollout::watch(&c.ecs, &env.cluster, &targets, seen, poller).await
    };
    let mut seen_completed: Vec<String> = vec![];
    for w in &report.services {
        let r = row(out, &w.service);
        r.duration_seconds = w.done_after.map(|d| d.as_millis() as f64 / 1000.0);
        if w.verdict == RolloutVerdict::Done {
            seen_completed.push(w.service.clone());
        }
        if let Some(result) = after_watch(&w.verdict, moving.contains(&w.service.as_str())) {
            r.result = result;
        }
    }
    let reason = watch_failure(&report.end).map_err(|cancelled| {
        anyhow::Error::new(cancelled)
            .context("rollback cancelled; the services were already pointed at their targets")
    })?;
    if let Some(reason) = reason {
        out.failures = explain(c, &env.cluster, &report.services).await;
        tracing::error!("{reason}");
        out.error = Some(match out.error.take() {
            Some(e) => format!("{e}; {reason}"),
            None => reason,
        });
    }
    Ok(seen_completed)
}

/// Why each service not done failed: its events, stopped tasks and their logs.
async fn explain(c: &Clients, cluster: &str, watched: &[rollout::Watched]) -> Vec<FailureReport> {
    let explain = watched
        .iter()
        .filter(|w| w.verdict != RolloutVerdict::Done)
        .map(|w| {
            let why = match &w.verdict {
                RolloutVerdict::Failed(s) => s.clone(),
                RolloutVerdict::Stuck(s) => format!("stuck: {s}"),
                RolloutVerdict::InProgress(s) => format!("not completed: {s}"),
                RolloutVerdict::Done => String::new(),
            };
            async move {
                let containers = match ecs::describe_task_definition(&c.ecs, &w.target).await {
                    Ok((td, _)) => td.container_definitions().to_vec(),
                    Err(_) => vec![],
                };
                rollout::explain(&c.ecs, &c.logs, cluster, w, why, &containers).await
            }
        });
    join_all(explain).await
}

/// The targets seen COMPLETED are the last known-good revisions now; a signal stops before the next tag.
async fn tag_known_good(
    c: &Clients,
    ctx: &Ctx,
    plans: &mut [RollbackPlan],
    seen_completed: &[String],
    out: &mut RollbackOutcome,
) -> Result<()> {
    for p in plans
        .iter_mut()
        .filter(|p| seen_completed.contains(&p.cfg.name))
    {
        let stamp = rollout::timestamp_now();
        let Some(tags) = known_good_tags(&p.revisions, &p.target, p.to_version.as_deref(), &stamp)
        else {
            continue;
        };
        ctx.stop_if_cancelled(&format!("tagging {} known good", td_short(&p.target)))
            .map_err(|e| anyhow::Error::new(e).context(CANCELLED_AFTER_ROLLOUT))?;
        match ecs::tag(&c.ecs, &p.target, &tags).await {
            Ok(()) => {
                tracing::info!("{}: tagged known good", td_short(&p.target));
                if let Some(i) = p.revisions.iter_mut().find(|r| r.arn == p.target) {
                    i.known_good = Some(stamp);
                }
            }
            Err(e) => out.notes.push(format!("known-good tag not written: {e}")),
        }
    }
    Ok(())
}

/// What a signal after the roll-outs leaves: the rerun tags and deregisters.
const CANCELLED_AFTER_ROLLOUT: &str = "rollback cancelled after its roll-outs: the services are on their targets; re-run the same rollback to tag them known good and deregister the bad revisions";

/// Deregisters the bad revisions and the ones beyond `keep-revisions`; a signal stops before the next one.
async fn deregister(
    c: &Clients,
    ctx: &Ctx,
    doomed: Vec<(String, String)>,
    out: &mut RollbackOutcome,
) -> Result<()> {
    for (service, arn) in doomed {
        ctx.stop_if_cancelled(&format!("DeregisterTaskDefinition of {}", td_short(&arn)))
            .map_err(|e| anyhow::Error::new(e).context(CANCELLED_AFTER_ROLLOUT))?;
        match ecs::deregister_task_definition(&c.ecs, &arn).await {
            Ok(()) => {
                tracing::info!("{service}: deregistered {}", td_short(&arn));
                out.deregistered.push(arn);
            }
            Err(e) => out.notes.push(format!("{service}: {e}")),
        }
    }
    Ok(())
}

fn row<'a>(out: &'a mut RollbackOutcome, service: &str) -> &'a mut RollbackRow {
    out.services
        .iter_mut()
        .find(|r| r.service == service)
        .expect("a row per service")
}

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

/// Reads a service's family revisions and picks its target. Errors name the service and the fix.
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
    let revisions = retention::revisions(&c.ecs, &family).await?;
    if let Some(v) = &req.version {
        versions::refuse_collision(v, &known_versions(&revisions))?;
    }
    let (current_td, _) = ecs::describe_task_definition(&c.ecs, &current).await?;
    let target = match &req.version {
        Some(v) => revision_running(req, c, cfg, &family, &revisions, v).await?,
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
    Ok(RollbackPlan {
        cfg: cfg.clone(),
        failed_primary: ecs::failed_on(svc, &current),
        from_version: version_of(cfg, &current_td),
        to_version: version_of(cfg, &target_td),
        images: images_of(cfg, &target_td),
        current,
        target,
        revisions,
        events: rollout::event_ids(svc),
        usual: rollout::usual_duration_of(svc),
    })
}

/// Pure: the versions the family's revisions are tagged with, and where each was seen.
fn known_versions(revisions: &[RevisionInfo]) -> Vec<versions::Known> {
    revisions
        .iter()
        .filter_map(|r| {
            Some(versions::Known {
                version: r.version.clone()?,
                seen_on: td_short(&r.arn).to_string(),
            })
        })
        .collect()
}

/// The newest ACTIVE revision (in `revisions`' order) whose configured containers run version `v`; an error naming
/// the service and the fix when none does.
async fn revision_running(
    req: &Request,
    c: &Clients,
    cfg: &ServiceConfig,
    family: &str,
    revisions: &[RevisionInfo],
    v: &Version,
) -> Result<String> {
    for r in revisions {
        let (td, _) = ecs::describe_task_definition(&c.ecs, &r.arn).await?;
        if runs_version(cfg, &td, v)? {
            return Ok(r.arn.clone());
        }
    }
    bail!(
        "ECS service {}/{}: no ACTIVE revision of family {family} runs {v} (image tag {}); deploy it with phase deploy, or name a version that ran before",
        req.common.environment.cluster,
        cfg.name,
        cfg.image.tag_for(v)?
    )
}

/// Pure: the version the service's first configured container runs in `td`.
fn version_of(cfg: &ServiceConfig, td: &TaskDefinition) -> Option<String> {
    cfg.containers
        .first()
        .and_then(|n| {
            td.container_definitions()
                .iter()
                .find(|c| c.name() == Some(n.as_str()))
        })
        .and_then(|c| cfg.image.version_of(c.image().unwrap_or_default()))
}

/// Pure: the images of `td`'s configured containers, `(container, image)`.
fn images_of(cfg: &ServiceConfig, td: &TaskDefinition) -> Vec<(String, String)> {
    cfg.containers
        .iter()
        .filter_map(|n| {
            td.container_definitions()
                .iter()
                .find(|c| c.name() == Some(n.as_str()))
                .and_then(|c| c.image())
                .map(|i| (n.clone(), i.to_string()))
        })
        .collect()
}

/// Whether every configured container of `td` runs the image of version `v`.
fn runs_version(cfg: &ServiceConfig, td: &TaskDefinition, v: &Version) -> Result<bool> {
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

    fn pos<'a>(service: &'a str, current: &'a str, target: &'a str, failed: bool) -> Position<'a> {
        Position {
            service,
            current,
            target,
            failed_primary: failed,
        }
    }

    #[test]
    fn changes_update_what_is_off_target_then_redeploy_a_failed_roll_out() {
        let up = |s: &str, t: &str| Change::Update {
            service: s.into(),
            target: t.into(),
        };
        let again = |s: &str, t: &str| Change::Redeploy {
            service: s.into(),
            target: t.into(),
        };
        let cases: Vec<(&str, Vec<Position>, Vec<Change>)> = vec![
            (
                "nothing moves",
                vec![pos("core", "c:2", "c:2", false)],
                vec![],
            ),
            (
                "off target, failed or not: an update",
                vec![
                    pos("core", "c:3", "c:2", false),
                    pos("workers", "w:3", "w:2", true),
                ],
                vec![up("core", "c:2"), up("workers", "w:2")],
            ),
            (
                "on target with a failed roll-out: redeployed after the updates",
                vec![
                    pos("core", "c:2", "c:2", true),
                    pos("workers", "w:3", "w:2", false),
                ],
                vec![up("workers", "w:2"), again("core", "c:2")],
            ),
        ];
        for (name, positions, want) in cases {
            assert_eq!(changes(&positions), want, "{name}");
            let moving = positions.iter().filter(|p| p.moves()).count();
            assert_eq!(moving, want.len(), "{name}: every change is a move");
        }
    }

    #[test]
    fn revisions_still_in_use_after_the_rollback() {
        // core c:3 → c:2, workers w:2 → w:2 (already on it).
        let positions = vec![
            pos("core", "c:3", "c:2", false),
            pos("workers", "w:2", "w:2", false),
        ];
        struct Case {
            name: &'static str,
            failed: &'static [&'static str],
            completed: &'static [&'static str],
            waited: bool,
            observed: &'static [&'static str],
            want: &'static [&'static str],
        }
        let cases = [
            Case {
                name: "waited, both completed: only the targets",
                failed: &[],
                completed: &["core", "workers"],
                waited: true,
                observed: &[],
                want: &["c:2", "w:2"],
            },
            Case {
                name: "what ECS says is in use stays: a one-off task on c:4, a deployment of w:3",
                failed: &[],
                completed: &["core", "workers"],
                waited: true,
                observed: &["c:4", "w:3"],
                want: &["c:2", "w:2", "c:4", "w:3"],
            },
            Case {
                name: "fast (not waited): the revisions they ran too, their tasks still drain",
                failed: &[],
                completed: &[],
                waited: false,
                observed: &[],
                want: &["c:2", "w:2", "c:3", "w:2"],
            },
            Case {
                name: "waited, core not completed: c:3 stays (the circuit breaker returns to it)",
                failed: &[],
                completed: &["workers"],
                waited: true,
                observed: &[],
                want: &["c:2", "w:2", "c:3"],
            },
            Case {
                name: "core's UpdateService failed: it still runs c:3, and c:2 stays too",
                failed: &["core"],
                completed: &["workers"],
                waited: true,
                observed: &[],
                want: &["c:3", "w:2", "c:2", "c:3"],
            },
        ];
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        for c in cases {
            assert_eq!(
                still_in_use(
                    &positions,
                    &s(c.failed),
                    &s(c.completed),
                    c.waited,
                    &s(c.observed)
                ),
                s(c.want),
                "{}",
                c.name
            );
        }
    }

    fn rev(family: &str, n: i32, version: bool, good: bool) -> RevisionInfo {
        RevisionInfo {
            arn: format!("arn:aws:ecs:r:1:task-definition/stage-{family}:{n}"),
            revision: n,
            known_good: good.then(|| format!("2026-12-0{n}T10:00:00Z")),
            version: version.then(|| format!("v1.{n}.0")),
        }
    }

    #[test]
    fn only_our_revisions_that_nothing_uses_are_deregistered() {
        let arn = |f: &str, n: i32| format!("arn:aws:ecs:r:1:task-definition/stage-{f}:{n}");
        // core: 1 good, 2 good (target), 3 ours and bad, 4 by hand (untagged) and bad.
        let core = vec![
            rev("core", 1, true, true),
            rev("core", 2, true, true),
            rev("core", 3, true, false),
            rev("core", 4, false, false),
        ];
        let workers = vec![
            rev("workers", 1, true, true),
            rev("workers", 2, true, false),
        ];
        let families = |ct: &str, wt: &str| {
            vec![
                ("core", core.clone(), ct.to_string()),
                ("workers", workers.clone(), wt.to_string()),
            ]
        };
        type Case = (
            &'static str,
            Vec<(&'static str, Vec<RevisionInfo>, String)>,
            Vec<String>,
            usize,
            Vec<(&'static str, String)>,
        );
        let cases: Vec<Case> = vec![
            (
                "bad ones of ours go; the one registered by hand stays",
                families(&arn("core", 2), &arn("workers", 1)),
                vec![arn("core", 2), arn("workers", 1)],
                10,
                vec![("core", arn("core", 3)), ("workers", arn("workers", 2))],
            ),
            (
                "a bad revision still in use stays",
                families(&arn("core", 2), &arn("workers", 1)),
                vec![arn("core", 2), arn("workers", 1), arn("core", 3)],
                10,
                vec![("workers", arn("workers", 2))],
            ),
            (
                "keep 1: beyond it only ours, never the target or the last known good",
                families(&arn("core", 1), &arn("workers", 1)),
                vec![arn("core", 1), arn("workers", 1)],
                1,
                vec![("core", arn("core", 3)), ("workers", arn("workers", 2))],
            ),
        ];
        for (name, fams, in_use, keep, want) in cases {
            let fams: Vec<(&str, &[RevisionInfo], &str)> = fams
                .iter()
                .map(|(s, r, t)| (*s, r.as_slice(), t.as_str()))
                .collect();
            let want: Vec<(String, String)> =
                want.into_iter().map(|(s, a)| (s.to_string(), a)).collect();
            assert_eq!(to_deregister(&fams, &in_use, keep), want, "{name}");
        }
    }

    #[test]
    fn a_revision_named_by_two_services_is_deregistered_once() {
        let shared = vec![rev("core", 1, true, true), rev("core", 2, true, false)];
        let target = shared[0].arn.clone();
        let fams: Vec<(&str, &[RevisionInfo], &str)> =
            vec![("core", &shared, &target), ("web", &shared, &target)];
        assert_eq!(
            to_deregister(&fams, std::slice::from_ref(&target), 10),
            vec![("core".to_string(), shared[1].arn.clone())]
        );
    }

    #[test]
    fn a_row_after_the_watch() {
        let cases = [
            (RolloutVerdict::Done, true, Some(RowResult::RolledBack)),
            (RolloutVerdict::Done, false, None),
            (
                RolloutVerdict::Failed("x".into()),
                true,
                Some(RowResult::Failed),
            ),
            (
                RolloutVerdict::Stuck("x".into()),
                false,
                Some(RowResult::Failed),
            ),
            (
                RolloutVerdict::InProgress("x".into()),
                true,
                Some(RowResult::Failed),
            ),
        ];
        for (verdict, moved, want) in cases {
            assert_eq!(after_watch(&verdict, moved), want, "{verdict:?} {moved}");
        }
    }

    #[test]
    fn why_the_watch_failed_and_a_cancelled_one_is_an_error() {
        assert_eq!(watch_failure(&WatchEnd::Completed).unwrap(), None);
        assert_eq!(
            watch_failure(&WatchEnd::Failed).unwrap().as_deref(),
            Some("the rollback roll-out failed")
        );
        assert_eq!(
            watch_failure(&WatchEnd::TimedOut("core 1/2".into()))
                .unwrap()
                .as_deref(),
            Some("the rollback did not complete within timeout-minutes; last seen: core 1/2")
        );
        let cancelled = WatchEnd::Cancelled {
            what: "rollback in app-stage".into(),
            waited: Duration::from_secs(3),
            last: "core: 1/2 running".into(),
        };
        assert!(matches!(
            watch_failure(&cancelled),
            Err(WaitError::Cancelled { what, .. }) if what == "rollback in app-stage"
        ));
    }

    #[test]
    fn known_good_tags_mark_a_new_target_and_name_an_untagged_version() {
        let revs = vec![
            rev("core", 1, true, true),
            rev("core", 2, true, false),
            rev("core", 3, false, false),
        ];
        let tags = |t: &str, v: Option<&str>| known_good_tags(&revs, t, v, "now");
        assert_eq!(
            tags(&revs[0].arn, Some("v1.1.0")),
            None,
            "the last known good already"
        );
        assert_eq!(
            tags(&revs[1].arn, Some("v1.2.0")),
            Some(vec![(rollout::TAG_KNOWN_GOOD, "now".to_string())]),
            "its version tag is there"
        );
        assert_eq!(
            tags(&revs[2].arn, Some("v1.3.0")),
            Some(vec![
                (rollout::TAG_KNOWN_GOOD, "now".to_string()),
                (rollout::TAG_VERSION, "v1.3.0".to_string())
            ]),
            "registered by hand: it gets the version it runs"
        );
        assert_eq!(
            tags(&revs[2].arn, None),
            Some(vec![(rollout::TAG_KNOWN_GOOD, "now".to_string())])
        );
    }

    #[test]
    fn a_cancel_between_changes_says_what_was_sent_and_what_not() {
        let up = |s: &str, t: &str| Change::Update {
            service: s.into(),
            target: t.into(),
        };
        let all = [
            up("core", "arn:aws:ecs:r:1:task-definition/stage-core:1"),
            up("workers", "arn:aws:ecs:r:1:task-definition/stage-workers:1"),
        ];
        assert_eq!(
            cancelled_between(&all[..1], &all[1..]),
            "rollback cancelled: UpdateService sent for core (to stage-core:1); not started: workers (to stage-workers:1); re-run the same rollback to finish (a service already on its target is only checked settled)"
        );
        assert!(cancelled_between(&[], &all).starts_with(
            "rollback cancelled: no service was changed; not started: core (to stage-core:1), workers"
        ));
    }
}
