//! ECS roll-outs as `deploy` and `rollback` share them: when a service is done, failed or stuck (pure decisions), the
//! watch that polls every service until all are done, the reasons of a failure (service events, stopped tasks, the
//! last log lines of a failed task), and which revisions are known good or may be deregistered.
//!
//! Revisions carry two tags this module reads and writes:
//! - `deploy-action:version = <version>`: the version a revision was registered for;
//! - `deploy-action:known-good = <UTC timestamp>`: when a deploy or rollback last saw the revision COMPLETED on its
//!   service. The revision with the newest timestamp is the service's last known-good revision.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use aws_sdk_ecs::types::{ContainerDefinition, LogDriver, Service};
use futures::future::join_all;
use serde::Serialize;
use tokio::time::Instant;

use crate::aws::ecs::{self, td_short, Rollout};
use crate::aws::{logs, AwsError};
use crate::wait::{Check, Poller, WaitError};

/// Tag: the version a revision was registered for.
pub const TAG_VERSION: &str = "deploy-action:version";
/// Tag: when a roll-out to this revision was last seen COMPLETED (UTC, millisecond precision, sortable as text).
pub const TAG_KNOWN_GOOD: &str = "deploy-action:known-good";
/// Tags this action owns; they are never copied from one revision to the next.
pub const TAG_PREFIX: &str = "deploy-action:";

/// Now as the known-good tag value: `2026-11-23T10:54:08.123Z` (fixed width, so text order is time order).
pub fn timestamp_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

// ------------------------------------------------------------------------------------------------------------------
// Decision: is a service's roll-out done?
// ------------------------------------------------------------------------------------------------------------------

/// One entry of a service's `deployments`, reduced to what the decision reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentObs {
    pub id: String,
    /// PRIMARY, ACTIVE or INACTIVE (kept as ECS says it).
    pub status: String,
    pub task_definition: String,
    pub rollout: Rollout,
    pub rollout_reason: Option<String>,
    pub desired: i32,
    pub running: i32,
    pub pending: i32,
    pub failed_tasks: i32,
}

impl DeploymentObs {
    pub fn of(service: &Service) -> Vec<DeploymentObs> {
        service
            .deployments()
            .iter()
            .map(|d| DeploymentObs {
                id: d.id().unwrap_or_default().to_string(),
                status: d.status().unwrap_or_default().to_string(),
                task_definition: d.task_definition().unwrap_or_default().to_string(),
                rollout: Rollout::of(d),
                rollout_reason: d.rollout_state_reason().map(str::to_string),
                desired: d.desired_count(),
                running: d.running_count(),
                pending: d.pending_count(),
                failed_tasks: d.failed_tasks(),
            })
            .collect()
    }

    fn counts(&self) -> String {
        let mut s = format!("{}/{} running", self.running, self.desired);
        if self.pending > 0 {
            s.push_str(&format!(", {} pending", self.pending));
        }
        if self.failed_tasks > 0 {
            s.push_str(&format!(", {} failed", self.failed_tasks));
        }
        s
    }
}

/// Where one service's roll-out stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "kebab-case")]
pub enum RolloutVerdict {
    /// The primary deployment runs the target revision, its roll-out COMPLETED, and no other deployment remains.
    Done,
    InProgress(String),
    /// Still in progress, but tasks of the new deployment keep failing (no circuit breaker to end it).
    Stuck(String),
    /// The roll-out FAILED (circuit breaker), or ECS rolled back to another revision by itself.
    Failed(String),
}

/// Pure: the verdict for a service that should run `target`, from its deployments. `seen_target`: an earlier poll saw
/// a deployment of `target` (so its absence now means ECS replaced it, not that it has not started yet).
pub fn progress(target: &str, deployments: &[DeploymentObs], seen_target: bool) -> RolloutVerdict {
    let primary = deployments.iter().find(|d| d.status == "PRIMARY");
    let of_target = deployments.iter().find(|d| d.task_definition == target);
    let Some(p) = primary else {
        return RolloutVerdict::InProgress("no PRIMARY deployment yet".into());
    };
    if p.task_definition != target {
        return match (of_target, seen_target) {
            (Some(d), _) => RolloutVerdict::Failed(format!(
                "ECS rolled back by itself: the deployment of {} is {} (roll-out {}{}), the primary deployment runs {}",
                td_short(target),
                d.status,
                d.rollout,
                d.rollout_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default(),
                td_short(&p.task_definition)
            )),
            (None, true) => RolloutVerdict::Failed(format!(
                "ECS rolled back by itself: {} is no longer deployed; the primary deployment runs {}",
                td_short(target),
                td_short(&p.task_definition)
            )),
            (None, false) => RolloutVerdict::InProgress(format!(
                "waiting for ECS to start the deployment of {}",
                td_short(target)
            )),
        };
    }
    // Deployments still holding tasks besides the primary (an unknown status counts: better wait than cut short).
    let others = deployments
        .iter()
        .filter(|d| !std::ptr::eq(*d, p))
        .filter(|d| d.status != "INACTIVE")
        .count();
    let draining = |what: &str| format!("{what}; {others} older deployment(s) draining");
    match &p.rollout {
        Rollout::Failed => RolloutVerdict::Failed(format!(
            "roll-out FAILED: {}",
            p.rollout_reason.as_deref().unwrap_or("no reason given")
        )),
        Rollout::Completed if others == 0 => RolloutVerdict::Done,
        Rollout::Completed => RolloutVerdict::InProgress(draining("COMPLETED")),
        Rollout::None if others == 0 && p.running == p.desired && p.pending == 0 => {
            RolloutVerdict::Done
        }
        Rollout::None if others == 0 => RolloutVerdict::InProgress(p.counts()),
        Rollout::None => RolloutVerdict::InProgress(draining(&p.counts())),
        Rollout::InProgress if p.failed_tasks > 0 => RolloutVerdict::Stuck(format!(
            "{}; tasks keep failing and no circuit breaker ended the roll-out",
            p.counts()
        )),
        Rollout::InProgress => RolloutVerdict::InProgress(p.counts()),
        Rollout::Other(state) => {
            RolloutVerdict::InProgress(format!("roll-out {state}; {}", p.counts()))
        }
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Decisions: known-good revision, revisions to deregister
// ------------------------------------------------------------------------------------------------------------------

/// An ACTIVE revision of a family with the tags this action reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionInfo {
    pub arn: String,
    pub revision: i32,
    /// `deploy-action:known-good` (when it was last seen COMPLETED), if tagged.
    pub known_good: Option<String>,
    /// `deploy-action:version`, if tagged.
    pub version: Option<String>,
}

impl RevisionInfo {
    /// Registered or marked by this action (a `deploy-action:version` or `deploy-action:known-good` tag): the only
    /// revisions retention and rollback ever deregister.
    pub fn is_ours(&self) -> bool {
        self.version.is_some() || self.known_good.is_some()
    }

    pub fn new(arn: &str, tags: &[(String, String)]) -> RevisionInfo {
        let tag = |k: &str| {
            tags.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        RevisionInfo {
            arn: arn.to_string(),
            revision: ecs::td_revision(arn).unwrap_or(0),
            known_good: tag(TAG_KNOWN_GOOD).filter(|v| !v.is_empty()),
            version: tag(TAG_VERSION).filter(|v| !v.is_empty()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownGood<'a> {
    /// The service runs its last known-good revision already.
    AlreadyOn(&'a RevisionInfo),
    RollTo(&'a RevisionInfo),
}

/// Pure: the last known-good revision (the newest `known-good` timestamp; the higher revision on a tie) and whether
/// the service (on `current`) runs it already. `None` when no revision is tagged. Never "current minus one".
pub fn known_good<'a>(revisions: &'a [RevisionInfo], current: &str) -> Option<KnownGood<'a>> {
    let best = revisions
        .iter()
        .filter(|r| r.known_good.is_some())
        .max_by(|a, b| (&a.known_good, a.revision).cmp(&(&b.known_good, b.revision)))?;
    Some(if best.arn == current {
        KnownGood::AlreadyOn(best)
    } else {
        KnownGood::RollTo(best)
    })
}

/// Pure: the versions of the revisions tagged known good (their `deploy-action:version` tag), the most recently seen
/// good first, each once. What `rollback --version` can go back to without a new build.
pub fn known_good_versions(revisions: &[RevisionInfo]) -> Vec<String> {
    let mut good: Vec<&RevisionInfo> = revisions
        .iter()
        .filter(|r| r.known_good.is_some() && r.version.is_some())
        .collect();
    good.sort_by(|a, b| (&b.known_good, b.revision).cmp(&(&a.known_good, a.revision)));
    let mut out: Vec<String> = vec![];
    for r in good {
        let v = r.version.clone().unwrap_or_default();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Pure: which ACTIVE revisions of a family to deregister after moving its service to `target`: the bad ones
/// (newer than the target and never known good), then all but the newest `keep` of the rest. Never one in use
/// (`in_use`: what services or their deployments run), never the target, never the last known-good one, never one
/// this action did not register (untagged: registered by hand or by another tool).
pub fn revisions_to_deregister(
    revisions: &[RevisionInfo],
    target: &str,
    in_use: &[String],
    keep: usize,
) -> Vec<String> {
    let target_rev = ecs::td_revision(target).unwrap_or(i32::MAX);
    let last_good = known_good(revisions, target).map(|k| match k {
        KnownGood::AlreadyOn(r) | KnownGood::RollTo(r) => r.arn.clone(),
    });
    // A revision this action did not register (no `deploy-action:*` tag) is never touched.
    let protected = |r: &RevisionInfo| {
        !r.is_ours()
            || r.arn == target
            || in_use.contains(&r.arn)
            || last_good.as_deref() == Some(r.arn.as_str())
    };
    let mut newest_first: Vec<&RevisionInfo> = revisions.iter().collect();
    newest_first.sort_by_key(|r| std::cmp::Reverse(r.revision));
    let bad = |r: &RevisionInfo| r.revision > target_rev && r.known_good.is_none();
    let mut out: Vec<String> = newest_first
        .iter()
        .filter(|r| bad(r) && !protected(r))
        .map(|r| r.arn.clone())
        .collect();
    let rest = newest_first.iter().filter(|r| !bad(r) || protected(r));
    out.extend(
        rest.skip(keep)
            .filter(|r| !protected(r))
            .map(|r| r.arn.clone()),
    );
    out
}

// ------------------------------------------------------------------------------------------------------------------
// The watch
// ------------------------------------------------------------------------------------------------------------------

/// A service and the revision its primary deployment must reach.
#[derive(Debug, Clone)]
pub struct RolloutTarget {
    pub service: String,
    pub task_definition: String,
    /// A desired count to set with the update (a service scaled to 0 by `db-only` comes back up with the new
    /// revision, watched like any roll-out); `None` keeps the service's count.
    pub desired_count: Option<i32>,
}

/// What the watch saw of one service.
#[derive(Debug, Clone, Serialize)]
pub struct Watched {
    pub service: String,
    pub target: String,
    pub verdict: RolloutVerdict,
    /// How long after the watch started the service was first seen done.
    #[serde(serialize_with = "secs")]
    pub done_after: Option<Duration>,
    /// The id of the deployment of `target`, once seen.
    pub deployment_id: Option<String>,
    /// Service events that appeared during the watch, oldest first.
    pub events: Vec<String>,
    #[serde(skip)]
    seen_target: bool,
    #[serde(skip)]
    seen_events: HashSet<String>,
}

fn secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&(d.as_millis() as f64 / 1000.0)),
        None => s.serialize_none(),
    }
}

/// How a watch ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "end", content = "detail", rename_all = "kebab-case")]
pub enum WatchEnd {
    /// Every service done.
    Completed,
    /// At least one service failed (the others may still be rolling).
    Failed,
    TimedOut(String),
    /// The run was cancelled (SIGINT/SIGTERM); [`WatchEnd::into_cancelled`] gives the error to return.
    Cancelled {
        what: String,
        #[serde(skip)]
        waited: Duration,
        last: String,
    },
    /// A non-transient error ended the watch (the services' state is unknown).
    Error(String),
}

impl WatchEnd {
    /// For `Cancelled`: the poller's error again, for the caller to return (exit code 130).
    pub fn cancelled_error(&self) -> Option<WaitError> {
        match self {
            WatchEnd::Cancelled { what, waited, last } => Some(WaitError::Cancelled {
                what: what.clone(),
                waited: *waited,
                last: last.clone(),
            }),
            WatchEnd::Completed | WatchEnd::Failed | WatchEnd::TimedOut(_) | WatchEnd::Error(_) => {
                None
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchReport {
    pub end: WatchEnd,
    pub services: Vec<Watched>,
}

impl WatchReport {
    pub fn service(&self, name: &str) -> Option<&Watched> {
        self.services.iter().find(|w| w.service == name)
    }

    /// The event ids every service showed so far: a later watch of the same services prints only newer ones.
    pub fn seen_events(&self) -> BTreeMap<String, HashSet<String>> {
        self.services
            .iter()
            .map(|w| (w.service.clone(), w.seen_events.clone()))
            .collect()
    }
}

/// Samples longer than this are not roll-outs (a task started by autoscaling, closed by ECS's periodic
/// "steady state" hours later).
const LONGEST_ROLLOUT: Duration = Duration::from_secs(3600);

/// How long a service's roll-outs usually take, and how far its recent ones strayed from that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolloutTime {
    /// The median of the last five.
    pub typical: Duration,
    /// The largest distance of one of them from the median; `None` with a single roll-out.
    pub spread: Option<Duration>,
}

/// Pure: how long this service's roll-outs usually take, from its own events (`(epoch milliseconds, message)`, any
/// order). A roll-out starts at the first "has started N tasks" after the previous one ended and ends at the next
/// "deployment completed" (or "has reached a steady state"). The median of the last five and their spread; `None`
/// without history.
pub fn usual_duration(events: &[(i64, &str)]) -> Option<RolloutTime> {
    let mut events = events.to_vec();
    events.sort_by_key(|(t, _)| *t);
    let mut samples = Vec::new();
    let mut open: Option<i64> = None;
    for (t, msg) in events {
        if msg.contains(" has started ") {
            open.get_or_insert(t);
        } else if msg.contains(" deployment completed")
            || msg.contains(" has reached a steady state")
        {
            if let Some(start) = open.take() {
                let d = Duration::from_millis((t - start).max(0) as u64);
                if d <= LONGEST_ROLLOUT {
                    samples.push(d);
                }
            }
        }
    }
    let mut last: Vec<Duration> = samples.into_iter().rev().take(5).collect();
    last.sort();
    let typical = *last.get(last.len().checked_sub(1)? / 2)?;
    let spread = (last.len() >= 2).then(|| {
        last.iter()
            .map(|d| d.abs_diff(typical))
            .max()
            .unwrap_or_default()
    });
    Some(RolloutTime { typical, spread })
}

/// The longest believable delay from an UpdateService to its first "has started" event: a longer one means the
/// roll-out's own event is no longer among the service's events (ECS keeps the latest 100).
const LONGEST_START_DELAY: Duration = Duration::from_secs(120);

/// Pure: how long ECS took from the last roll-out's UpdateService (its deployment's `created_ms`) to that roll-out's
/// first "has started N tasks" event. [`usual_duration`] measures from that event; the watch counts from the call,
/// so the delay is added to the expectation. `None` when no such event is seen, or only one too late to be it.
pub fn start_delay(created_ms: i64, events: &[(i64, &str)]) -> Option<Duration> {
    let first = events
        .iter()
        .filter(|(t, m)| *t >= created_ms && m.contains(" has started "))
        .map(|(t, _)| *t)
        .min()?;
    Some(Duration::from_millis(
        u64::try_from(first - created_ms).ok()?,
    ))
    .filter(|d| *d <= LONGEST_START_DELAY)
}

/// [`usual_duration`] of a described service, counted from the UpdateService: plus the [`start_delay`] of its last
/// roll-out (the PRIMARY deployment).
pub fn usual_duration_of(service: &Service) -> Option<RolloutTime> {
    let events: Vec<(i64, &str)> = service
        .events()
        .iter()
        .filter_map(|e| Some((e.created_at()?.to_millis().ok()?, e.message()?)))
        .collect();
    let delay = ecs::primary(service)
        .and_then(|d| d.created_at()?.to_millis().ok())
        .and_then(|created| start_delay(created, &events))
        .unwrap_or_default();
    usual_duration(&events).map(|u| RolloutTime {
        typical: u.typical + delay,
        ..u
    })
}

/// When a watch of several services is expected to end: they all must finish, so the slowest usual duration, with
/// the widest spread (unknown when one is); `None` when any of them has no history (the backoff alone then).
pub fn expected_end(usual: &[Option<RolloutTime>]) -> Option<crate::wait::Expected> {
    let mut slowest = Duration::ZERO;
    let mut spread = Some(Duration::ZERO);
    for u in usual {
        let u = (*u)?;
        slowest = slowest.max(u.typical);
        spread = spread.zip(u.spread).map(|(a, b)| a.max(b));
    }
    (!usual.is_empty()).then_some(crate::wait::Expected {
        after: slowest,
        spread,
    })
}

/// Event ids a service shows now: the watch prints only events that appear after these.
pub fn event_ids(service: &Service) -> HashSet<String> {
    service
        .events()
        .iter()
        .filter_map(|e| e.id())
        .map(str::to_string)
        .collect()
}

/// Pure: the line when a watched service is done: a service settled on its target at the first look did not roll
/// out anything (a rollback or deploy that leaves it where it is), so it is not called a completed roll-out.
pub fn done_line(service: &str, target: &str, first_look: bool) -> String {
    if first_look {
        format!("{service}: on {} already, settled", td_short(target))
    } else {
        format!("{service}: roll-out to {} completed", td_short(target))
    }
}

/// Polls DescribeServices (batched) until every target is done, one fails, or the poller's deadline passes. Prints
/// new service events as they appear and the deployment counts when they change. Throttling and 5xx are polled
/// through by the poller.
pub async fn watch(
    ecs_client: &aws_sdk_ecs::Client,
    cluster: &str,
    targets: &[RolloutTarget],
    mut seen_events: BTreeMap<String, HashSet<String>>,
    poller: Poller,
) -> WatchReport {
    let start = Instant::now();
    let names: Vec<String> = targets.iter().map(|t| t.service.clone()).collect();
    let state = Mutex::new(
        targets
            .iter()
            .map(|t| Watched {
                service: t.service.clone(),
                target: t.task_definition.clone(),
                verdict: RolloutVerdict::InProgress("not looked at yet".into()),
                done_after: None,
                deployment_id: None,
                events: vec![],
                seen_target: false,
                seen_events: seen_events.remove(&t.service).unwrap_or_default(),
            })
            .collect::<Vec<_>>(),
    );
    let looks = std::sync::atomic::AtomicUsize::new(0);
    let result = poller
        .run(|| async {
            let services = ecs::describe_services(ecs_client, cluster, &names).await?;
            let first_look = looks.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
            let mut watched = state.lock().unwrap_or_else(|e| e.into_inner());
            for (w, svc) in watched.iter_mut().zip(&services) {
                for e in svc.events().iter().rev() {
                    let (Some(id), Some(msg)) = (e.id(), e.message()) else {
                        continue;
                    };
                    if w.seen_events.insert(id.to_string()) {
                        tracing::info!("{}: {msg}", w.service);
                        w.events.push(msg.to_string());
                    }
                }
                let deployments = DeploymentObs::of(svc);
                if let Some(d) = deployments.iter().find(|d| d.task_definition == w.target) {
                    w.seen_target = true;
                    w.deployment_id = Some(d.id.clone());
                }
                w.verdict = progress(&w.target, &deployments, w.seen_target);
                if w.verdict == RolloutVerdict::Done && w.done_after.is_none() {
                    w.done_after = Some(start.elapsed());
                    tracing::info!("{}", done_line(&w.service, &w.target, first_look));
                }
            }
            if watched
                .iter()
                .any(|w| matches!(w.verdict, RolloutVerdict::Failed(_)))
            {
                return Ok(Check::Done(WatchEnd::Failed));
            }
            if watched.iter().all(|w| w.verdict == RolloutVerdict::Done) {
                return Ok(Check::Done(WatchEnd::Completed));
            }
            Ok(Check::Pending(pending_line(&watched)))
        })
        .await;
    let end = match result {
        Ok(end) => end,
        Err(WaitError::Timeout { .. }) => {
            let watched = state.lock().unwrap_or_else(|e| e.into_inner());
            WatchEnd::TimedOut(pending_line(&watched))
        }
        Err(WaitError::Cancelled { what, waited, last }) => {
            WatchEnd::Cancelled { what, waited, last }
        }
        Err(WaitError::Failed(e)) => WatchEnd::Error(format!("{e:#}")),
    };
    let services = state.into_inner().unwrap_or_else(|e| e.into_inner());
    WatchReport { end, services }
}

/// `core: 1/2 running, 1 pending; workers: done`
fn pending_line(watched: &[Watched]) -> String {
    watched
        .iter()
        .map(|w| match &w.verdict {
            RolloutVerdict::Done => format!("{}: done", w.service),
            RolloutVerdict::InProgress(s) => format!("{}: {s}", w.service),
            RolloutVerdict::Stuck(s) => format!("{}: STUCK {s}", w.service),
            RolloutVerdict::Failed(s) => format!("{}: FAILED {s}", w.service),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Points every service at its target concurrently. Returns, per target, the error if its UpdateService failed.
pub async fn update_services(
    ecs_client: &aws_sdk_ecs::Client,
    cluster: &str,
    targets: &[RolloutTarget],
) -> Vec<(RolloutTarget, Option<AwsError>)> {
    let calls = targets.iter().map(|t| async move {
        let res = ecs::update_service(
            ecs_client,
            cluster,
            &t.service,
            &t.task_definition,
            t.desired_count,
        )
        .await;
        match &res {
            Ok(_) => tracing::info!(
                "{}: UpdateService → {}",
                t.service,
                td_short(&t.task_definition)
            ),
            Err(e) => tracing::error!("{}: {e}", t.service),
        }
        (t.clone(), res.err())
    });
    join_all(calls).await
}

/// The summary of a deploy or rollback: the headline with its icon, the error first, the service table, then a
/// block of lines (why it failed, details). Every piece is plain text (escaped here for its place in the markdown).
pub fn summary_markdown(
    ok: bool,
    headline: &str,
    error: Option<&str>,
    rows: &[Vec<String>],
    block: &[String],
) -> String {
    use crate::text::{md_code_block, md_text};
    let icon = if ok { "✅" } else { "❌" };
    let mut s = format!("### {icon} {}\n\n", md_text(headline));
    if let Some(e) = error {
        s.push_str(&format!("> {}\n\n", md_text(e)));
    }
    s.push_str(&crate::github::runner::md_table(
        &["service", "from", "to", "result", "duration"],
        rows,
    ));
    if !block.is_empty() {
        s.push('\n');
        s.push_str(&md_code_block("", &block.join("\n")));
    }
    s
}

/// One row of a deploy or rollback table: service, from, to, result, duration.
pub fn row_cells(
    service: &str,
    from: (&str, Option<&str>),
    to: (&str, Option<&str>),
    result: &dyn std::fmt::Display,
    duration_seconds: Option<f64>,
) -> Vec<String> {
    let rev = |(arn, version): (&str, Option<&str>)| match version {
        Some(v) => format!("{} ({v})", td_short(arn)),
        None => td_short(arn).to_string(),
    };
    vec![
        service.to_string(),
        rev(from),
        rev(to),
        result.to_string(),
        duration_seconds
            .map(|s| crate::wait::human(std::time::Duration::from_secs_f64(s)))
            .unwrap_or_else(|| "-".into()),
    ]
}

// ------------------------------------------------------------------------------------------------------------------
// Why a roll-out failed
// ------------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoppedContainer {
    pub name: String,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoppedTask {
    pub task_id: String,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    pub containers: Vec<StoppedContainer>,
}

impl StoppedTask {
    /// `abc123: EssentialContainerExited, Essential container in task exited; core exit 1`
    pub fn line(&self) -> String {
        let mut parts = vec![self
            .stop_code
            .clone()
            .unwrap_or_else(|| "no stop code".into())];
        if let Some(r) = &self.stopped_reason {
            parts.push(r.clone());
        }
        let exits: Vec<String> = self
            .containers
            .iter()
            .filter(|c| c.exit_code.is_some_and(|x| x != 0) || c.reason.is_some())
            .map(|c| match (c.exit_code, &c.reason) {
                (Some(x), Some(r)) => format!("{} exit {x} ({r})", c.name),
                (Some(x), None) => format!("{} exit {x}", c.name),
                (None, Some(r)) => format!("{}: {r}", c.name),
                (None, None) => c.name.clone(),
            })
            .collect();
        let mut s = format!("{}: {}", self.task_id, parts.join(", "));
        if !exits.is_empty() {
            s.push_str(&format!("; {}", exits.join(", ")));
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogExcerpt {
    pub group: String,
    pub stream: String,
    pub lines: Vec<String>,
}

/// Why a service's roll-out did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureReport {
    pub service: String,
    pub reason: String,
    /// Service events seen during the roll-out (the last ones).
    pub events: Vec<String>,
    pub stopped_tasks: Vec<StoppedTask>,
    /// The last log lines of one failed task.
    pub log: Option<LogExcerpt>,
    /// What could not be read while explaining (never hides the failure itself).
    pub notes: Vec<String>,
}

impl FailureReport {
    /// The explanation as plain lines for the job log and the summary: the reason, the service events, the stopped
    /// tasks, the last log lines of one of them, and what could not be read.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("{}: {}", self.service, self.reason)];
        lines.extend(self.events.iter().map(|e| format!("  event: {e}")));
        lines.extend(
            self.stopped_tasks
                .iter()
                .map(|t| format!("  stopped task {}", t.line())),
        );
        if let Some(log) = &self.log {
            lines.push(format!("  last log lines ({} {}):", log.group, log.stream));
            lines.extend(log.lines.iter().map(|l| format!("    {l}")));
        }
        lines.extend(self.notes.iter().map(|n| format!("  note: {n}")));
        lines
    }
}

/// Reads why `w` failed: the stopped tasks of its deployment (stop code, reason, exit codes) and the last log lines
/// of one of them, found through the awslogs settings of `containers` (the target revision's). Errors while reading
/// become notes.
pub async fn explain(
    ecs_client: &aws_sdk_ecs::Client,
    logs_client: &aws_sdk_cloudwatchlogs::Client,
    cluster: &str,
    w: &Watched,
    reason: String,
    containers: &[ContainerDefinition],
) -> FailureReport {
    let mut report = FailureReport {
        service: w.service.clone(),
        reason,
        events: w.events.iter().rev().take(10).rev().cloned().collect(),
        stopped_tasks: vec![],
        log: None,
        notes: vec![],
    };
    let Some(deployment) = &w.deployment_id else {
        report
            .notes
            .push("no deployment of the new revision was seen, so no task to explain".into());
        return report;
    };
    let tasks = match ecs::stopped_tasks_of_deployment(ecs_client, cluster, deployment, 5).await {
        Ok(t) => t,
        Err(e) => {
            report
                .notes
                .push(format!("stopped tasks not readable: {e}"));
            return report;
        }
    };
    report.stopped_tasks = tasks
        .iter()
        .map(|t| StoppedTask {
            task_id: t
                .task_arn()
                .unwrap_or_default()
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
            stop_code: t.stop_code().map(|c| c.as_str().to_string()),
            stopped_reason: t.stopped_reason().map(str::to_string),
            containers: t
                .containers()
                .iter()
                .map(|c| StoppedContainer {
                    name: c.name().unwrap_or_default().to_string(),
                    exit_code: c.exit_code(),
                    reason: c.reason().map(str::to_string),
                })
                .collect(),
        })
        .collect();
    if let Some((group, stream)) = report
        .stopped_tasks
        .first()
        .and_then(|t| log_stream(t, containers))
    {
        match logs::last_lines(logs_client, &group, &stream, 20).await {
            Ok(lines) => {
                report.log = Some(LogExcerpt {
                    group,
                    stream,
                    lines,
                })
            }
            Err(e) => report.notes.push(format!("log lines not readable: {e}")),
        }
    }
    report
}

/// The awslogs group and stream of a stopped task's most telling container: the first with a non-zero exit code,
/// else the first essential one with awslogs settings. `prefix/container/task-id` is the stream name ECS uses.
pub fn log_stream(
    task: &StoppedTask,
    containers: &[ContainerDefinition],
) -> Option<(String, String)> {
    let failed: Vec<&str> = task
        .containers
        .iter()
        .filter(|c| c.exit_code.is_some_and(|x| x != 0))
        .map(|c| c.name.as_str())
        .collect();
    let awslogs = |c: &&ContainerDefinition| {
        c.log_configuration()
            .filter(|l| *l.log_driver() == LogDriver::Awslogs)
            .and_then(|l| l.options())
            .and_then(|o| {
                Some((
                    o.get("awslogs-group")?.clone(),
                    o.get("awslogs-stream-prefix")?.clone(),
                ))
            })
    };
    let pick = containers
        .iter()
        .filter(|c| awslogs(c).is_some())
        .min_by_key(|c| {
            let name = c.name().unwrap_or_default();
            (!failed.contains(&name), c.essential() == Some(false))
        })?;
    let (group, prefix) = awslogs(&pick)?;
    Some((
        group,
        format!(
            "{prefix}/{}/{}",
            pick.name().unwrap_or_default(),
            task.task_id
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "arn:aws:ecs:r:1:task-definition/core:1";
    const NEW: &str = "arn:aws:ecs:r:1:task-definition/core:2";

    fn dep(
        status: &str,
        td: &str,
        rollout: Rollout,
        running: i32,
        desired: i32,
        failed: i32,
    ) -> DeploymentObs {
        DeploymentObs {
            id: format!("ecs-svc/{status}{}", td_short(td)),
            status: status.into(),
            task_definition: td.into(),
            rollout,
            rollout_reason: None,
            desired,
            running,
            pending: desired - running,
            failed_tasks: failed,
        }
    }

    #[test]
    fn roll_out_verdicts() {
        use Rollout as R;
        let cases: Vec<(&str, Vec<DeploymentObs>, bool, &str)> = vec![
            (
                "done: completed, nothing else",
                vec![dep("PRIMARY", NEW, R::Completed, 2, 2, 0)],
                true,
                "done",
            ),
            (
                "completed but the old one drains",
                vec![
                    dep("PRIMARY", NEW, R::Completed, 2, 2, 0),
                    dep("ACTIVE", OLD, R::Completed, 1, 2, 0),
                ],
                true,
                "in-progress",
            ),
            (
                "an INACTIVE leftover does not hold it",
                vec![
                    dep("PRIMARY", NEW, R::Completed, 2, 2, 0),
                    dep("INACTIVE", OLD, R::Completed, 0, 2, 0),
                ],
                true,
                "done",
            ),
            (
                "an unknown status holds it",
                vec![
                    dep("PRIMARY", NEW, R::Completed, 2, 2, 0),
                    dep("DRAINING", OLD, R::Completed, 1, 2, 0),
                ],
                true,
                "in-progress",
            ),
            (
                "running = desired is not enough while IN_PROGRESS",
                vec![dep("PRIMARY", NEW, R::InProgress, 2, 2, 0)],
                true,
                "in-progress",
            ),
            (
                "no rolloutState: running = desired is done",
                vec![dep("PRIMARY", NEW, R::None, 2, 2, 0)],
                true,
                "done",
            ),
            (
                "no rolloutState, short",
                vec![dep("PRIMARY", NEW, R::None, 1, 2, 0)],
                true,
                "in-progress",
            ),
            (
                "no rolloutState, old draining",
                vec![
                    dep("PRIMARY", NEW, R::None, 2, 2, 0),
                    dep("ACTIVE", OLD, R::None, 1, 1, 0),
                ],
                true,
                "in-progress",
            ),
            (
                "circuit breaker",
                vec![
                    dep("PRIMARY", NEW, R::Failed, 0, 2, 3),
                    dep("ACTIVE", OLD, R::Completed, 2, 2, 0),
                ],
                true,
                "failed",
            ),
            (
                "tasks failing, no breaker",
                vec![
                    dep("PRIMARY", NEW, R::InProgress, 0, 2, 4),
                    dep("ACTIVE", OLD, R::Completed, 2, 2, 0),
                ],
                true,
                "stuck",
            ),
            (
                "ECS rolled back, failed one still listed",
                vec![
                    dep("PRIMARY", OLD, R::InProgress, 1, 2, 0),
                    dep("ACTIVE", NEW, R::Failed, 0, 2, 3),
                ],
                true,
                "failed",
            ),
            (
                "ECS rolled back, failed one gone",
                vec![dep("PRIMARY", OLD, R::Completed, 2, 2, 0)],
                true,
                "failed",
            ),
            (
                "not started yet",
                vec![dep("PRIMARY", OLD, R::Completed, 2, 2, 0)],
                false,
                "in-progress",
            ),
            (
                "no primary",
                vec![dep("ACTIVE", NEW, R::InProgress, 0, 2, 0)],
                false,
                "in-progress",
            ),
            ("no deployments", vec![], false, "in-progress"),
            (
                "a new rollout state keeps waiting",
                vec![dep("PRIMARY", NEW, R::Other("PAUSED".into()), 2, 2, 0)],
                true,
                "in-progress",
            ),
        ];
        for (name, deployments, seen, want) in cases {
            let got = match progress(NEW, &deployments, seen) {
                RolloutVerdict::Done => "done",
                RolloutVerdict::InProgress(_) => "in-progress",
                RolloutVerdict::Stuck(_) => "stuck",
                RolloutVerdict::Failed(_) => "failed",
            };
            assert_eq!(got, want, "{name}: {:?}", progress(NEW, &deployments, seen));
        }
    }

    #[test]
    fn failure_reasons_name_the_revisions() {
        let mut d = dep("PRIMARY", NEW, Rollout::Failed, 0, 2, 3);
        d.rollout_reason = Some("ECS deployment circuit breaker: tasks failed to start.".into());
        let RolloutVerdict::Failed(why) = progress(NEW, &[d], true) else {
            panic!()
        };
        assert!(why.contains("circuit breaker"), "{why}");
        let RolloutVerdict::Failed(why) = progress(
            NEW,
            &[dep("PRIMARY", OLD, Rollout::Completed, 2, 2, 0)],
            true,
        ) else {
            panic!()
        };
        assert!(why.contains("core:2") && why.contains("core:1"), "{why}");
    }

    fn rev(n: i32, known_good: Option<&str>) -> RevisionInfo {
        RevisionInfo {
            arn: format!("arn:aws:ecs:r:1:task-definition/core:{n}"),
            revision: n,
            known_good: known_good.map(str::to_string),
            version: Some(format!("v{n}")),
        }
    }
    /// A revision registered by hand or by another tool: none of our tags.
    fn foreign(n: i32) -> RevisionInfo {
        RevisionInfo {
            version: None,
            ..rev(n, None)
        }
    }
    fn arn(n: i32) -> String {
        format!("arn:aws:ecs:r:1:task-definition/core:{n}")
    }

    #[test]
    fn a_service_settled_at_the_first_look_is_not_a_completed_roll_out() {
        let td = "arn:aws:ecs:r:1:task-definition/stage-core:3";
        assert_eq!(
            done_line("core", td, true),
            "core: on stage-core:3 already, settled"
        );
        assert_eq!(
            done_line("core", td, false),
            "core: roll-out to stage-core:3 completed"
        );
    }

    #[test]
    fn known_good_versions_most_recently_good_first_each_once() {
        let v = |n: i32, good: Option<&str>, version: Option<&str>| RevisionInfo {
            version: version.map(str::to_string),
            ..rev(n, good)
        };
        let t = |d: u32| format!("2026-11-0{d}T10:00:00.000Z");
        let cases: Vec<(&str, Vec<RevisionInfo>, Vec<&str>)> = vec![
            ("none tagged", vec![v(1, None, Some("v1"))], vec![]),
            (
                "newest good first; a bad one left out",
                vec![
                    v(1, Some(&t(1)), Some("v1.0.0")),
                    v(2, Some(&t(2)), Some("v1.1.0")),
                    v(3, None, Some("v1.2.0")),
                ],
                vec!["v1.1.0", "v1.0.0"],
            ),
            (
                "a rollback re-tagged an older revision: it counts from then",
                vec![
                    v(1, Some(&t(3)), Some("v1.0.0")),
                    v(2, Some(&t(2)), Some("v1.1.0")),
                ],
                vec!["v1.0.0", "v1.1.0"],
            ),
            (
                "the same version on two revisions once; no version tag skipped",
                vec![
                    v(1, Some(&t(1)), Some("v1.0.0")),
                    v(2, Some(&t(2)), Some("v1.0.0")),
                    v(3, Some(&t(3)), None),
                ],
                vec!["v1.0.0"],
            ),
        ];
        for (name, revs, want) in cases {
            assert_eq!(known_good_versions(&revs), want, "{name}");
        }
    }

    #[test]
    fn known_good_is_the_newest_tag_never_revision_minus_one() {
        let t1 = "2026-11-01T10:00:00.000Z";
        let t2 = "2026-11-02T10:00:00.000Z";
        let t3 = "2026-11-03T10:00:00.000Z";
        type Case = (&'static str, Vec<RevisionInfo>, i32, Option<(bool, i32)>);
        let cases: Vec<Case> = vec![
            ("none tagged", vec![rev(1, None), rev(2, None)], 2, None),
            (
                "current is the last known good",
                vec![rev(1, Some(t1)), rev(2, Some(t2))],
                2,
                Some((true, 2)),
            ),
            (
                "a bad revision on top",
                vec![rev(1, Some(t1)), rev(2, Some(t2)), rev(3, None)],
                3,
                Some((false, 2)),
            ),
            (
                "skips untagged in between",
                vec![rev(4, Some(t1)), rev(5, None), rev(6, None), rev(7, None)],
                7,
                Some((false, 4)),
            ),
            (
                "a rollback re-tagged an older one",
                vec![rev(1, Some(t3)), rev(2, Some(t2))],
                1,
                Some((true, 1)),
            ),
            (
                "newest timestamp wins over higher revision",
                vec![rev(1, Some(t3)), rev(2, Some(t2)), rev(3, None)],
                3,
                Some((false, 1)),
            ),
            (
                "tie: higher revision",
                vec![rev(1, Some(t1)), rev(2, Some(t1))],
                1,
                Some((false, 2)),
            ),
            (
                "current not listed (inactive)",
                vec![rev(1, Some(t1))],
                9,
                Some((false, 1)),
            ),
        ];
        for (name, revs, current, want) in cases {
            let got = known_good(&revs, &arn(current)).map(|k| match k {
                KnownGood::AlreadyOn(r) => (true, r.revision),
                KnownGood::RollTo(r) => (false, r.revision),
            });
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn deregistration_keeps_what_is_in_use_the_target_and_the_known_good() {
        let t1 = "2026-11-01T10:00:00.000Z";
        let t2 = "2026-11-02T10:00:00.000Z";
        type Case = (
            &'static str,
            Vec<RevisionInfo>,
            i32,
            Vec<i32>,
            usize,
            Vec<i32>,
        );
        let cases: Vec<Case> = vec![
            (
                "bad ones above the target go",
                vec![rev(1, Some(t1)), rev(2, None), rev(3, None)],
                1,
                vec![1],
                10,
                vec![3, 2],
            ),
            (
                "known-good above the target stays",
                vec![rev(1, Some(t1)), rev(2, Some(t2)), rev(3, None)],
                1,
                vec![1],
                10,
                vec![3],
            ),
            (
                "in use stays",
                vec![rev(1, Some(t1)), rev(2, None), rev(3, None)],
                1,
                vec![1, 3],
                10,
                vec![2],
            ),
            (
                "keep newest N of the rest",
                vec![rev(1, None), rev(2, None), rev(3, None), rev(4, Some(t1))],
                4,
                vec![4],
                2,
                vec![2, 1],
            ),
            (
                "never the target or last known good when pruning",
                vec![
                    rev(1, Some(t2)),
                    rev(2, None),
                    rev(3, None),
                    rev(4, None),
                    rev(5, None),
                ],
                2,
                vec![2],
                1,
                vec![5, 4, 3],
            ),
            (
                "keep 0 still keeps target and in use",
                vec![rev(1, None), rev(2, None)],
                2,
                vec![2],
                0,
                vec![1],
            ),
            (
                "a revision someone else registered stays, bad or old",
                vec![
                    foreign(1),
                    rev(2, Some(t1)),
                    rev(3, None),
                    foreign(4),
                    rev(5, None),
                ],
                2,
                vec![2],
                0,
                vec![5, 3],
            ),
            (
                "nothing to do",
                vec![rev(1, Some(t1))],
                1,
                vec![1],
                10,
                vec![],
            ),
        ];
        for (name, revs, target, in_use, keep, want) in cases {
            let in_use: Vec<String> = in_use.into_iter().map(arn).collect();
            let got = revisions_to_deregister(&revs, &arn(target), &in_use, keep);
            let want: Vec<String> = want.into_iter().map(arn).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn usual_duration_from_the_services_own_events() {
        let started = "(service core) has started 2 tasks: (task a) (task b).";
        let done = "(service core) (deployment ecs-svc/1) deployment completed.";
        let steady = "(service core) has reached a steady state.";
        let stopped = "(service core) has stopped 2 running tasks: (task c) (task d).";
        let s = Duration::from_secs;
        type Case<'a> = (&'a str, Vec<(i64, &'a str)>, Option<Duration>);
        let cases: Vec<Case> = vec![
            ("no events", vec![], None),
            ("only steady states", vec![(0, steady), (60_000, steady)], None),
            ("one roll-out", vec![(1_000, started), (5_000, stopped), (21_000, done), (21_500, steady)], Some(s(20))),
            // Newest first, as ECS lists them.
            ("any order", vec![(21_000, done), (1_000, started)], Some(s(20))),
            (
                "median of three",
                vec![
                    (0, started), (30_000, done),
                    (100_000, started), (110_000, done),
                    (200_000, started), (220_000, steady),
                ],
                Some(s(20)),
            ),
            (
                "a second start inside a roll-out does not restart it",
                vec![(0, started), (5_000, started), (12_000, done)],
                Some(s(12)),
            ),
            (
                "an autoscaling start closed by the periodic steady state hours later is no roll-out",
                vec![(0, started), (7_200_000, steady)],
                None,
            ),
            (
                "only the last five count",
                vec![
                    (0, started), (500_000, done),
                    (1_000_000, started), (1_500_000, done),
                    (2_000_000, started), (2_004_000, done),
                    (3_000_000, started), (3_004_000, done),
                    (4_000_000, started), (4_004_000, done),
                    (5_000_000, started), (5_004_000, done),
                    (6_000_000, started), (6_004_000, done),
                ],
                Some(s(4)),
            ),
        ];
        for (name, events, want) in cases {
            assert_eq!(usual_duration(&events).map(|u| u.typical), want, "{name}");
        }
    }

    #[test]
    fn the_delay_from_the_update_to_the_first_started_task() {
        let started = "(service core) has started 2 tasks: (task a) (task b).";
        let done = "(service core) (deployment ecs-svc/1) deployment completed.";
        let ms = Duration::from_millis;
        type Case<'a> = (&'a str, Vec<(i64, &'a str)>, Option<Duration>);
        let cases: Vec<Case> = vec![
            ("no events", vec![], None),
            (
                "started 4 s after the update",
                vec![(104_000, started), (130_000, done)],
                Some(ms(4_000)),
            ),
            (
                "the first start after the update counts",
                vec![(110_000, started), (103_500, started)],
                Some(ms(3_500)),
            ),
            (
                "an earlier roll-out's start does not",
                vec![(90_000, started), (100_000, done)],
                None,
            ),
            ("at once", vec![(100_000, started)], Some(ms(0))),
            (
                "too late to be the roll-out's own",
                vec![(400_000, started)],
                None,
            ),
        ];
        for (name, events, want) in cases {
            assert_eq!(start_delay(100_000, &events), want, "{name}");
        }
    }

    #[test]
    fn the_spread_of_the_last_roll_outs() {
        let started = "(service core) has started 1 tasks: (task a).";
        let done = "(service core) (deployment ecs-svc/1) deployment completed.";
        let ms = Duration::from_millis;
        let runs = |durations: &[i64]| -> Vec<(i64, &str)> {
            durations
                .iter()
                .enumerate()
                .flat_map(|(i, d)| {
                    let t = i as i64 * 1_000_000;
                    [(t, started), (t + d, done)]
                })
                .collect()
        };
        let cases: [(&[i64], Option<Duration>); 4] = [
            (&[20_000], None),
            (&[20_000, 20_030], Some(ms(30))),
            (&[3_000, 3_000, 3_000], Some(ms(0))),
            (&[2_000, 7_200, 4_600], Some(ms(2_600))),
        ];
        for (durations, want) in cases {
            let events = runs(durations);
            assert_eq!(
                usual_duration(&events).and_then(|u| u.spread),
                want,
                "{durations:?}"
            );
        }
    }

    #[test]
    fn a_watch_is_paced_by_its_slowest_service() {
        let s = Duration::from_secs;
        let time = |typical, spread: Option<u64>| {
            Some(RolloutTime {
                typical: s(typical),
                spread: spread.map(s),
            })
        };
        assert_eq!(expected_end(&[]), None);
        assert_eq!(expected_end(&[time(3, Some(0)), None]), None);
        assert_eq!(
            expected_end(&[time(3, Some(1)), time(20, Some(0))]),
            Some(crate::wait::Expected {
                after: s(20),
                spread: Some(s(1))
            })
        );
        assert_eq!(
            expected_end(&[time(3, None), time(20, Some(0))]),
            Some(crate::wait::Expected {
                after: s(20),
                spread: None
            })
        );
    }

    #[test]
    fn timestamps_sort_as_text() {
        let t = timestamp_now();
        assert_eq!(t.len(), "2026-11-23T10:54:08.123Z".len(), "{t}");
        assert!(t.ends_with('Z'));
    }

    #[test]
    fn log_stream_of_the_failed_container() {
        use aws_sdk_ecs::types::LogConfiguration;
        let logc = |group: &str| {
            LogConfiguration::builder()
                .log_driver(LogDriver::Awslogs)
                .options("awslogs-group", group)
                .options("awslogs-stream-prefix", "ecs")
                .build()
                .unwrap()
        };
        let containers = vec![
            ContainerDefinition::builder()
                .name("core")
                .essential(true)
                .log_configuration(logc("/ecs/core"))
                .build(),
            ContainerDefinition::builder()
                .name("sidecar")
                .essential(false)
                .log_configuration(logc("/ecs/sidecar"))
                .build(),
        ];
        let task = |core: Option<i32>, side: Option<i32>| StoppedTask {
            task_id: "abc".into(),
            stop_code: Some("EssentialContainerExited".into()),
            stopped_reason: None,
            containers: vec![
                StoppedContainer {
                    name: "core".into(),
                    exit_code: core,
                    reason: None,
                },
                StoppedContainer {
                    name: "sidecar".into(),
                    exit_code: side,
                    reason: None,
                },
            ],
        };
        assert_eq!(
            log_stream(&task(Some(1), Some(0)), &containers),
            Some(("/ecs/core".into(), "ecs/core/abc".into()))
        );
        assert_eq!(
            log_stream(&task(Some(0), Some(2)), &containers),
            Some(("/ecs/sidecar".into(), "ecs/sidecar/abc".into()))
        );
        assert_eq!(
            log_stream(&task(None, None), &containers),
            Some(("/ecs/core".into(), "ecs/core/abc".into()))
        );
        assert_eq!(log_stream(&task(Some(1), None), &[]), None);
        assert_eq!(
            task(Some(1), Some(0)).line(),
            "abc: EssentialContainerExited; core exit 1"
        );
    }
}
