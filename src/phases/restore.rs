//! Phase `restore`: undo a failed migration by bringing the environment's database back from a snapshot, under the
//! same name and endpoint address, deleting nothing.
//!
//! 1. **Preconditions, before any change**: the snapshot (`snapshot-id`, or the newest this action took for
//!    `version` in this environment) exists, is of this environment's database, was made by this action (unless
//!    `allow-foreign-snapshot`) and is `available` ([`pick_snapshot`]); every core service is at 0 tasks (the
//!    environment is `db-only` or `stopped`) and no task this action started is running ([`env_precondition`]).
//! 2. **RDS instance `<id>`**: restore into `<id>-restoring` with the original's settings, wait; rename the original
//!    to `<id>-before-restore-<stamp>`, wait; rename `<id>-restoring` to `<id>`, wait. The endpoint address is the
//!    original's again (it is derived from the identifier).
//! 3. **Aurora cluster `<id>`**: the same with RestoreDBClusterFromSnapshot and one CreateDBInstance per instance of
//!    the original (`<member>-restoring`, same class), then the renames: the original cluster and its instances to
//!    `...-before-restore-<stamp>`, the restored cluster and its instances to the original names.
//! 4. **Crash-safe**: before its first change the run marks the original (tags: role `original`, the snapshot, the
//!    stamp, the member names); the restored resources carry the same tags from their creation; before each rename
//!    the step is tagged on the resource it renames. Every step is chosen by [`next_step`] from what is observed
//!    (names and tags), so a run killed anywhere is finished by the next run with the same snapshot, and a run after
//!    success finds nothing to do and says so.
//!
//! Nothing is deleted: the summary prints the command that deletes the kept original once the team is sure.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::time::Instant;

use super::Ctx;
use crate::aws::rds::{self, Resource, Snapshot, SnapshotOf};
use crate::config::{Database, DatabaseKind, Environment};
use crate::error::UsageError;
use crate::github::runner::{md_table, Outcome};
use crate::inputs::{parse_bool, Common, Invocation};
use crate::tags;
use crate::wait::{human, Backoff, Check, WaitError};

pub use crate::domain::restore::{
    derived, kept_name, MEMBERS, ROLE, SNAPSHOT, STAMP, STEP, TEMP_SUFFIX,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `snapshot-id`.
    Snapshot(String),
    /// `version`: the newest snapshot this action took for it in this environment.
    Version(String),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub environment: Environment,
    pub database: Database,
    pub target: Target,
    pub allow_foreign_snapshot: bool,
}

impl Request {
    pub fn from_invocation(inv: &Invocation, common: &Common) -> Result<Request, UsageError> {
        let env = &common.environment;
        let database = env.database.clone().ok_or_else(|| {
            UsageError::new(format!(
                "config file {}: environments.{name}.database: missing; phase restore needs it: add [environments.{name}.database] with `instance = \"<RDS instance id>\"` or `cluster = \"<Aurora cluster id>\"`",
                common.config_path.display(),
                name = env.name
            ))
        })?;
        let snapshot_id = inv.raw.snapshot_id.as_deref().map(str::trim);
        let target = match (snapshot_id, inv.raw.version.as_deref()) {
            (Some(_), Some(_)) => return Err(UsageError::new(
                "inputs `snapshot-id` and `version`: both set; give one: the snapshot to restore, or the version whose newest snapshot to restore",
            )),
            (Some(id), None) => Target::Snapshot(id.to_string()),
            (None, Some(_)) => Target::Version(inv.version()?.as_str().to_string()),
            (None, None) => return Err(UsageError::new(
                "input `snapshot-id` or `version`: missing; phase restore needs the snapshot to restore (snapshot-id), or the version whose newest snapshot to restore",
            )),
        };
        Ok(Request {
            environment: env.clone(),
            database,
            target,
            allow_foreign_snapshot: parse_bool(
                "allow-foreign-snapshot",
                inv.raw.allow_foreign_snapshot.as_deref(),
                false,
            )?,
        })
    }
}

impl super::Recorded for Request {
    /// A restore is recorded without a version.
    fn subject(&self, common: &Common) -> super::Subject {
        super::Subject::new(common, None)
    }
}

/// Only the clients `restore` uses.
pub struct Clients {
    pub rds: aws_sdk_rds::Client,
    pub ecs: aws_sdk_ecs::Client,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            rds: aws_sdk_rds::Client::new(sdk),
            ecs: aws_sdk_ecs::Client::new(sdk),
        }
    }
}

/// How often the same step may be planned in a row before the run gives up (a step whose effect never shows).
const MAX_REPEATS: u32 = 5;

/// How the phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreEnding {
    /// This run restored (or finished a restore an earlier run started).
    Restored,
    /// An earlier run restored this snapshot already; nothing changed.
    AlreadyRestored,
    /// Dry run: what would be done.
    Planned,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    pub environment: String,
    pub region: String,
    pub database: String,
    pub kind: DatabaseKind,
    pub snapshot_id: String,
    pub result: RestoreEnding,
    pub dry_run: bool,
    /// The steps this run took (or, in a dry run, would take), in order.
    pub steps: Vec<String>,
    /// The original, kept under its new name (cluster first, then its instances).
    pub kept: Vec<String>,
    /// When the original was set aside (UTC `yyyymmdd-hhmmss`).
    pub kept_since: String,
    /// The endpoint address before the restore (when this run saw the original under its name) and after.
    pub address_before: Option<String>,
    pub address_after: Option<String>,
    /// The command that deletes the kept original, once the team is sure.
    pub delete_command: String,
    pub duration_seconds: u64,
}

pub async fn run(req: &Request, clients: &Clients, ctx: &Ctx) -> Result<RestoreOutcome> {
    let started = Instant::now();
    let db = &req.database;
    let snapshot = resolve_snapshot(req, clients).await?;
    let fresh_stamp = utc_stamp();
    let mut seen = observe(&clients.rds, db, &snapshot.id, &fresh_stamp).await?;
    let address_before = seen.address_of_original();
    let first = next_step(&seen.obs);
    if first != Next::Done {
        env_precondition(&req.environment, &clients.ecs)
            .await
            .with_context(|| format!("refusing to restore {}", label(db)))?;
    }
    if ctx.dry_run {
        let steps = simulate(seen.obs.clone())?;
        for s in &steps {
            tracing::info!("dry run: would {s}");
        }
        let result = if steps.is_empty() {
            RestoreEnding::AlreadyRestored
        } else {
            RestoreEnding::Planned
        };
        let begun = Begun {
            snapshot_id: snapshot.id,
            address_before,
            at: started,
            dry_run: true,
        };
        return Ok(outcome(req, &seen, &begun, result, steps));
    }
    let mut steps = Vec::new();
    let mut last: Option<(Next, u32)> = None;
    loop {
        let next = next_step(&seen.obs);
        let repeats = match &last {
            Some((prev, n)) if *prev == next => n + 1,
            _ => 0,
        };
        if repeats >= MAX_REPEATS {
            bail!("cannot restore {}: the step {next:?} did not take effect after {MAX_REPEATS} tries; run restore again, or look at the RDS console", label(db));
        }
        last = Some((next.clone(), repeats));
        match next {
            Next::Done => break,
            Next::Refuse(why) => bail!("cannot restore {}: {why}", label(db)),
            Next::Wait { id, cluster } => {
                wait_available(&clients.rds, &id, cluster, &seen.obs, ctx).await?
            }
            Next::Act(action) => {
                if Instant::now() >= ctx.deadline {
                    bail!(
                        "cannot restore {}: timeout-minutes reached before the step \"{action}\"; the restore from {} is recorded on the resources: run restore again with snapshot-id {} to continue it",
                        label(db),
                        snapshot.id,
                        snapshot.id
                    );
                }
                tracing::info!("{action}");
                apply(&clients.rds, &seen, &action, ctx).await?;
                steps.push(action.to_string());
            }
        }
        seen = observe(&clients.rds, db, &snapshot.id, &fresh_stamp).await?;
    }
    let result = if steps.is_empty() {
        tracing::info!(
            "{} was already restored from snapshot {}; nothing to do",
            label(db),
            snapshot.id
        );
        RestoreEnding::AlreadyRestored
    } else {
        RestoreEnding::Restored
    };
    let begun = Begun {
        snapshot_id: snapshot.id,
        address_before,
        at: started,
        dry_run: false,
    };
    Ok(outcome(req, &seen, &begun, result, steps))
}

/// What the outcome needs from the start of the run.
struct Begun {
    snapshot_id: String,
    /// The original's endpoint address, when this run saw it under its name.
    address_before: Option<String>,
    at: Instant,
    dry_run: bool,
}

fn outcome(
    req: &Request,
    seen: &RestoreSeen,
    begun: &Begun,
    result: RestoreEnding,
    steps: Vec<String>,
) -> RestoreOutcome {
    let o = &seen.obs;
    let kept: Vec<String> = std::iter::once(&o.main)
        .chain(&o.members)
        .map(|s| s.kept.clone())
        .collect();
    RestoreOutcome {
        environment: req.environment.name.clone(),
        region: req.environment.region.clone(),
        database: req.database.identifier.clone(),
        kind: req.database.kind,
        snapshot_id: begun.snapshot_id.clone(),
        result,
        dry_run: begun.dry_run,
        steps,
        delete_command: delete_command(req.database.kind, &kept, &req.environment.region),
        kept,
        kept_since: o.stamp.clone(),
        address_before: begun.address_before.clone(),
        address_after: seen
            .resources
            .get(&o.main.name)
            .and_then(|r| r.address.clone()),
        duration_seconds: begun.at.elapsed().as_secs(),
    }
}

fn label(db: &Database) -> String {
    match db.kind {
        DatabaseKind::Instance => format!("RDS instance {}", db.identifier),
        DatabaseKind::Cluster => format!("Aurora cluster {}", db.identifier),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Preconditions

/// The snapshot to restore: looked up, then checked by [`pick_snapshot`].
async fn resolve_snapshot(req: &Request, clients: &Clients) -> Result<Snapshot> {
    let db = &req.database;
    let mine = rds::manual_snapshots(&clients.rds, db)
        .await
        .with_context(|| format!("listing the manual snapshots of {}", label(db)))?;
    let found = match &req.target {
        Target::Snapshot(id) => rds::find_snapshot_of(&clients.rds, db.kind, id)
            .await
            .with_context(|| format!("looking up snapshot {id}"))?,
        Target::Version(_) => None,
    };
    match pick_snapshot(
        &req.target,
        &mine,
        found.as_ref(),
        db,
        &req.environment.name,
        req.allow_foreign_snapshot,
    ) {
        Ok(s) => Ok(s.clone()),
        Err(Refusal::BadInput(msg)) => Err(UsageError::new(msg).into()),
        Err(Refusal::NotNow(msg)) => bail!("{msg}"),
    }
}

/// Why a snapshot cannot be restored: bad input (exit 2) or not now (exit 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    BadInput(String),
    NotNow(String),
}

/// Pure: the snapshot to restore, or one line that says why not and lists the snapshots that would fit.
/// `mine` are the manual snapshots of this database; `found` is the snapshot `snapshot-id` names, if RDS knows it.
pub fn pick_snapshot<'a>(
    target: &Target,
    mine: &'a [Snapshot],
    found: Option<&'a SnapshotOf>,
    db: &Database,
    environment: &str,
    allow_foreign: bool,
) -> Result<&'a Snapshot, Refusal> {
    let ours = |s: &Snapshot| s.tag(tags::CREATED_BY) == Some(tags::CREATOR);
    let fits: Vec<String> = mine
        .iter()
        .filter(|s| s.status == "available" && (allow_foreign || ours(s)))
        .take(5)
        .map(|s| match s.tag(tags::VERSION) {
            Some(v) => format!("{} ({v})", s.id),
            None => s.id.clone(),
        })
        .collect();
    let fits = if fits.is_empty() {
        format!("no snapshot of {} would fit", db.identifier)
    } else {
        format!("snapshots that would fit: {}", fits.join(", "))
    };
    let s = match target {
        Target::Version(v) => {
            return mine
                .iter()
                .find(|s| {
                    ours(s)
                        && s.tag(tags::VERSION) == Some(v.as_str())
                        && s.tag(tags::ENVIRONMENT).is_none_or(|e| e == environment)
                        && s.status == "available"
                })
                .ok_or_else(|| Refusal::BadInput(format!(
                    "input `version`: no available snapshot of {} made by deploy-action for version {v}; {fits}",
                    db.identifier
                )));
        }
        Target::Snapshot(id) => match found {
            None => {
                return Err(Refusal::BadInput(format!(
                    "input `snapshot-id`: snapshot {id} does not exist in this account and region; {fits}"
                )))
            }
            Some(f) if f.database != db.identifier => {
                return Err(Refusal::BadInput(format!(
                    "input `snapshot-id`: snapshot {id} is of database {}, not {} (environment {environment}); {fits}",
                    f.database, db.identifier
                )))
            }
            Some(f) => &f.snapshot,
        },
    };
    if let Some(e) = s.tag(tags::ENVIRONMENT).filter(|e| *e != environment) {
        return Err(Refusal::BadInput(format!(
            "input `snapshot-id`: snapshot {} was made for environment {e}, not {environment}; {fits}",
            s.id
        )));
    }
    if !ours(s) && !allow_foreign {
        return Err(Refusal::BadInput(format!(
            "input `snapshot-id`: snapshot {} was not made by deploy-action; set allow-foreign-snapshot: true to restore it anyway; {fits}",
            s.id
        )));
    }
    if s.status != "available" {
        return Err(Refusal::NotNow(format!(
            "snapshot {} is {}, not available; wait until it is, then run restore again",
            s.id, s.status
        )));
    }
    Ok(s)
}

/// Every core service at 0 tasks (db-only or stopped) and no task this action started still running.
async fn env_precondition(env: &Environment, ecs: &aws_sdk_ecs::Client) -> Result<()> {
    let names: Vec<String> = env.services.iter().map(|s| s.name.clone()).collect();
    let services = crate::aws::ecs::describe_services(ecs, &env.cluster, &names).await?;
    let counts: Vec<(String, i32, i32, i32)> = services
        .iter()
        .map(|s| {
            (
                s.service_name().unwrap_or_default().to_string(),
                s.desired_count(),
                s.running_count(),
                s.pending_count(),
            )
        })
        .collect();
    let tasks = crate::aws::ecs::live_tasks_started_by(ecs, &env.cluster, STARTED_BY).await?;
    if let Err(why) = writers(&env.name, &counts, &tasks) {
        bail!("{why}");
    }
    Ok(())
}

/// `startedBy` of the one-off tasks this action runs (migrations, `[tasks]`).
const STARTED_BY: &str = "deploy-action";

/// Pure: what could still write to the database: a core service with tasks, or a one-off task of this action.
pub fn writers(
    environment: &str,
    services: &[(String, i32, i32, i32)],
    tasks: &[String],
) -> Result<(), String> {
    let busy: Vec<String> = services
        .iter()
        .filter(|(_, d, r, p)| *d > 0 || *r > 0 || *p > 0)
        .map(|(n, d, r, p)| format!("{n} (desired {d}, running {r}, pending {p})"))
        .collect();
    if !busy.is_empty() {
        return Err(format!(
            "environment {environment} is not db-only or stopped: {} can still write to the database; run phase state with state: db-only first",
            busy.join(", ")
        ));
    }
    if !tasks.is_empty() {
        let ids: Vec<&str> = tasks
            .iter()
            .map(|t| t.rsplit('/').next().unwrap_or(t))
            .collect();
        return Err(format!(
            "a migration or one-off task of deploy-action is still running in environment {environment} ({}); wait until it stops or stop it, then run restore again",
            ids.join(", ")
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Observe

/// What the planner sees of one instance or cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub id: String,
    pub status: String,
    /// [`ROLE`]: `original` or `restored`.
    pub role: Option<String>,
    pub snapshot: Option<String>,
    pub stamp: Option<String>,
}

/// One name a restore moves: the original's name, the restored resource's temporary name, the kept original's name,
/// and what is found under each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub name: String,
    pub temp: String,
    pub kept: String,
    pub at_name: Option<View>,
    pub at_temp: Option<View>,
    pub at_kept: Option<View>,
}

/// Everything [`next_step`] decides from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obs {
    pub kind: DatabaseKind,
    pub snapshot: String,
    pub stamp: String,
    /// The instance, or the cluster.
    pub main: Slot,
    /// The cluster's instances (Aurora); empty for an RDS instance.
    pub members: Vec<Slot>,
}

/// The observation and the resources behind it (settings to copy, ARNs to tag).
struct RestoreSeen {
    obs: Obs,
    resources: HashMap<String, Resource>,
}

impl RestoreSeen {
    fn address_of_original(&self) -> Option<String> {
        let v = self.obs.main.at_name.as_ref()?;
        (!is_restored(v, &self.obs.snapshot))
            .then(|| self.resources.get(&v.id)?.address.clone())
            .flatten()
    }
}

fn view(r: &Resource) -> View {
    View {
        id: r.id.clone(),
        status: r.status.clone(),
        role: r.tag(ROLE).map(str::to_string),
        snapshot: r.tag(SNAPSHOT).map(str::to_string),
        stamp: r.tag(STAMP).map(str::to_string),
    }
}

async fn find(rds: &aws_sdk_rds::Client, id: &str, cluster: bool) -> Result<Option<Resource>> {
    let found = if cluster {
        rds::find_cluster(rds, id).await?
    } else {
        rds::find_instance(rds, id).await?
    };
    Ok(found)
}

/// Describes the original's name, the temporary name and the kept name (of the cluster and of each of its
/// instances). The stamp is the one recorded for this snapshot, else `fresh`.
async fn observe(
    rds: &aws_sdk_rds::Client,
    db: &Database,
    snapshot: &str,
    fresh: &str,
) -> Result<RestoreSeen> {
    let cluster = db.kind == DatabaseKind::Cluster;
    let name = db.identifier.clone();
    let temp = derived(&name, TEMP_SUFFIX);
    let at_name = find(rds, &name, cluster).await?;
    let at_temp = find(rds, &temp, cluster).await?;
    let of_this = |r: &&Resource| r.tag(SNAPSHOT) == Some(snapshot);
    let stamp = [&at_name, &at_temp]
        .into_iter()
        .flatten()
        .filter(of_this)
        .find_map(|r| r.tag(STAMP).map(str::to_string))
        .unwrap_or_else(|| fresh.to_string());
    let kept = kept_name(&name, &stamp);
    let at_kept = find(rds, &kept, cluster).await?;
    let mut resources = HashMap::new();
    let members: Vec<String> = if cluster {
        let recorded = [&at_name, &at_temp, &at_kept]
            .into_iter()
            .flatten()
            .filter(of_this)
            .find_map(|r| r.tag(MEMBERS).map(str::to_string));
        match recorded {
            Some(list) => list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            None => at_name
                .as_ref()
                .map(|r| r.members.clone())
                .unwrap_or_default(),
        }
    } else {
        vec![]
    };
    let mut member_slots = Vec::new();
    for m in &members {
        let (t, k) = (derived(m, TEMP_SUFFIX), kept_name(m, &stamp));
        let (a, b, c) = (
            find(rds, m, false).await?,
            find(rds, &t, false).await?,
            find(rds, &k, false).await?,
        );
        member_slots.push(slot(m, &t, &k, [a, b, c], &mut resources));
    }
    let main = slot(
        &name,
        &temp,
        &kept,
        [at_name, at_temp, at_kept],
        &mut resources,
    );
    Ok(RestoreSeen {
        obs: Obs {
            kind: db.kind,
            snapshot: snapshot.to_string(),
            stamp,
            main,
            members: member_slots,
        },
        resources,
    })
}

fn slot(
    name: &str,
    temp: &str,
    kept: &str,
    found: [Option<Resource>; 3],
    resources: &mut HashMap<String, Resource>,
) -> Slot {
    let [a, b, c] = found.map(|r| {
        r.map(|r| {
            let v = view(&r);
            resources.insert(r.id.clone(), r);
            v
        })
    });
    Slot {
        name: name.into(),
        temp: temp.into(),
        kept: kept.into(),
        at_name: a,
        at_temp: b,
        at_kept: c,
    }
}

/// Now, UTC, as `yyyymmdd-hhmmss`.
fn utc_stamp() -> String {
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::OffsetDateTime::now_utc()
        .format(fmt)
        .unwrap_or_else(|_| "00000000-000000".into())
}

/// Pure: how long ago a stamp was, if it parses.
pub fn stamp_age(stamp: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    let t = time::PrimitiveDateTime::parse(stamp, fmt)
        .ok()?
        .assume_utc();
    (now - t).try_into().ok()
}

// ---------------------------------------------------------------------------------------------------------------
// Plan (pure)

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Every name holds the restored resource, available.
    Done,
    /// Wait until this instance or cluster is available (or stopped).
    Wait {
        id: String,
        cluster: bool,
    },
    Act(RestoreAction),
    /// A state no step leads out of: what is wrong and what to do by hand.
    Refuse(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreAction {
    /// Tag the original with the restore (role, snapshot, stamp, members) before any change.
    Mark {
        id: String,
        cluster: bool,
        snapshot: String,
    },
    /// Start the stopped original: only an available instance or cluster can be renamed.
    Start { id: String, cluster: bool },
    /// RestoreDBInstanceFromDBSnapshot / RestoreDBClusterFromSnapshot into the temporary name.
    Restore {
        temp: String,
        like: String,
        cluster: bool,
        snapshot: String,
    },
    /// CreateDBInstance in the restored cluster, like an instance of the original.
    CreateMember {
        temp: String,
        cluster: String,
        like: String,
    },
    /// ModifyDB(Instance|Cluster) with the new identifier, applied immediately.
    Rename {
        from: String,
        to: String,
        cluster: bool,
    },
}

fn what(cluster: bool) -> &'static str {
    if cluster {
        "Aurora cluster"
    } else {
        "DB instance"
    }
}

impl std::fmt::Display for RestoreAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreAction::Mark {
                id,
                cluster,
                snapshot,
            } => write!(
                f,
                "record the restore from {snapshot} on {} {id} (tags)",
                what(*cluster)
            ),
            RestoreAction::Start { id, cluster } => write!(
                f,
                "start {} {id} (stopped; only an available one can be renamed)",
                what(*cluster)
            ),
            RestoreAction::Restore {
                temp,
                like,
                cluster,
                snapshot,
            } => write!(
                f,
                "restore {} {temp} from snapshot {snapshot} with the settings of {like}",
                what(*cluster)
            ),
            RestoreAction::CreateMember {
                temp,
                cluster,
                like,
            } => write!(
                f,
                "create DB instance {temp} in cluster {cluster}, class of {like}"
            ),
            RestoreAction::Rename { from, to, cluster } => {
                write!(f, "rename {} {from} to {to}", what(*cluster))
            }
        }
    }
}

fn is_restored(v: &View, snapshot: &str) -> bool {
    v.role.as_deref() == Some("restored") && v.snapshot.as_deref() == Some(snapshot)
}

fn is_marked(v: &View, o: &Obs) -> bool {
    v.role.as_deref() == Some("original")
        && v.snapshot.as_deref() == Some(o.snapshot.as_str())
        && v.stamp.as_deref() == Some(o.stamp.as_str())
}

/// Pure: the next step of the restore from what is observed. Order: mark the original; restore (and, for Aurora,
/// create the instances) under the temporary names; wait; rename every original to its kept name; wait; rename every
/// restored resource to the original's name; wait. Each step is chosen again from a fresh observation, so a run that
/// was killed anywhere continues where it stopped, and a finished restore is `Done` at once.
pub fn next_step(o: &Obs) -> Next {
    let snap = o.snapshot.as_str();
    let cluster = o.kind == DatabaseKind::Cluster;
    let m = &o.main;
    if let Some(t) = m.at_temp.as_ref().filter(|t| !is_restored(t, snap)) {
        return Next::Refuse(format!(
            "{} {} exists and is not a restore of snapshot {snap} (it holds {}); finish that restore (run restore with snapshot-id {}) or rename or delete {} by hand",
            what(cluster),
            t.id,
            t.snapshot.as_deref().unwrap_or("an unknown snapshot"),
            t.snapshot.as_deref().unwrap_or("<its snapshot>"),
            t.id
        ));
    }
    match (&m.at_name, &m.at_temp) {
        (None, None) => {
            return Next::Refuse(match &m.at_kept {
                Some(k) => format!(
                "neither {} nor {} exists, only the kept original {}; rename {} back to {} by hand",
                m.name, m.temp, k.id, k.id, m.name
            ),
                None => format!(
                    "{} {} does not exist in this account and region",
                    what(cluster),
                    m.name
                ),
            })
        }
        (Some(v), None) if !is_restored(v, snap) && !is_marked(v, o) => {
            return Next::Act(RestoreAction::Mark {
                id: m.name.clone(),
                cluster,
                snapshot: o.snapshot.clone(),
            })
        }
        (Some(v), None) if is_marked(v, o) => {
            return Next::Act(RestoreAction::Restore {
                temp: m.temp.clone(),
                like: m.name.clone(),
                cluster,
                snapshot: o.snapshot.clone(),
            })
        }
        _ => {}
    }
    if let (Some(v), Some(_)) = (&m.at_name, &m.at_temp) {
        if !is_restored(v, snap) {
            if let Some(s) = o
                .members
                .iter()
                .find(|s| s.at_temp.is_none() && s.at_name.is_some())
            {
                return Next::Act(RestoreAction::CreateMember {
                    temp: s.temp.clone(),
                    cluster: m.temp.clone(),
                    like: s.name.clone(),
                });
            }
        }
    }
    let all = || std::iter::once((m, cluster)).chain(o.members.iter().map(|s| (s, false)));
    if let Some((v, c)) = all().find_map(|(s, c)| {
        s.at_temp
            .as_ref()
            .filter(|t| t.status != "available")
            .map(|t| (t, c))
    }) {
        return Next::Wait {
            id: v.id.clone(),
            cluster: c,
        };
    }
    renames(o, snap, &all().collect::<Vec<_>>())
}

/// Pure: the renames and the final waits (see [`next_step`]).
fn renames(o: &Obs, snap: &str, slots: &[(&Slot, bool)]) -> Next {
    for (s, c) in slots {
        if let (Some(v), Some(_)) = (&s.at_name, &s.at_temp) {
            if is_restored(v, snap) {
                return Next::Refuse(format!(
                    "both {} and {} hold a restore of {snap}; rename or delete {} by hand",
                    s.name, s.temp, s.temp
                ));
            }
            return match v.status.as_str() {
                "available" => Next::Act(RestoreAction::Rename {
                    from: s.name.clone(),
                    to: s.kept.clone(),
                    cluster: *c,
                }),
                "stopped" => Next::Act(RestoreAction::Start {
                    id: s.name.clone(),
                    cluster: *c,
                }),
                _ => Next::Wait {
                    id: s.name.clone(),
                    cluster: *c,
                },
            };
        }
    }
    for (s, c) in slots {
        if let (None, Some(_)) = (&s.at_name, &s.at_temp) {
            return match &s.at_kept {
                Some(k) if k.status != "available" => Next::Wait {
                    id: k.id.clone(),
                    cluster: *c,
                },
                _ => Next::Act(RestoreAction::Rename {
                    from: s.temp.clone(),
                    to: s.name.clone(),
                    cluster: *c,
                }),
            };
        }
    }
    for (s, c) in slots {
        match &s.at_name {
            Some(v) if !is_restored(v, snap) => {
                return Next::Refuse(format!(
                    "{} is not the restore of {snap} and {} is missing; look at both by hand",
                    s.name, s.temp
                ))
            }
            Some(v) if v.status != "available" => return Next::Wait { id: v.id.clone(), cluster: *c },
            Some(_) => {}
            None => return Next::Refuse(format!("{} is missing: neither the original nor the restored one holds the name; rename {} (kept original) back by hand", s.name, s.kept)),
        }
    }
    let _ = o;
    Next::Done
}

/// Pure: the steps a run would take from `o`, simulating that each one succeeds (the dry run prints them).
pub fn simulate(mut o: Obs) -> Result<Vec<String>> {
    let mut steps = Vec::new();
    for _ in 0..64 {
        match next_step(&o) {
            Next::Done => return Ok(steps),
            Next::Refuse(why) => bail!("cannot restore {}: {why}", o.main.name),
            Next::Wait { id, .. } => set_status(&mut o, &id, "available"),
            Next::Act(a) => {
                steps.push(a.to_string());
                simulate_one(&mut o, &a);
            }
        }
    }
    bail!(
        "restore of {}: the plan does not converge (a bug in deploy-action)",
        o.main.name
    )
}

fn views(o: &mut Obs) -> impl Iterator<Item = &mut Option<View>> {
    std::iter::once(&mut o.main)
        .chain(o.members.iter_mut())
        .flat_map(|s| [&mut s.at_name, &mut s.at_temp, &mut s.at_kept])
}

fn set_status(o: &mut Obs, id: &str, status: &str) {
    for v in views(o).flatten() {
        if v.id == id {
            v.status = status.into();
        }
    }
}

fn simulate_one(o: &mut Obs, a: &RestoreAction) {
    let restored = |id: &str, o: &Obs| View {
        id: id.into(),
        status: "available".into(),
        role: Some("restored".into()),
        snapshot: Some(o.snapshot.clone()),
        stamp: Some(o.stamp.clone()),
    };
    match a {
        RestoreAction::Mark { .. } => {
            let (snap, stamp) = (o.snapshot.clone(), o.stamp.clone());
            if let Some(v) = o.main.at_name.as_mut() {
                v.role = Some("original".into());
                v.snapshot = Some(snap);
                v.stamp = Some(stamp);
            }
        }
        RestoreAction::Start { id, .. } => set_status(o, id, "available"),
        RestoreAction::Restore { temp, .. } => o.main.at_temp = Some(restored(temp, o)),
        RestoreAction::CreateMember { temp, .. } => {
            let v = restored(temp, o);
            if let Some(s) = o.members.iter_mut().find(|s| &s.temp == temp) {
                s.at_temp = Some(v);
            }
        }
        RestoreAction::Rename { from, to, .. } => {
            for s in std::iter::once(&mut o.main).chain(o.members.iter_mut()) {
                let taken = [&mut s.at_name, &mut s.at_temp, &mut s.at_kept]
                    .into_iter()
                    .find(|v| v.as_ref().is_some_and(|v| &v.id == from))
                    .and_then(Option::take);
                if let Some(mut v) = taken {
                    v.id = to.clone();
                    v.status = "available".into();
                    let place = if to == &s.name {
                        &mut s.at_name
                    } else if to == &s.kept {
                        &mut s.at_kept
                    } else {
                        &mut s.at_temp
                    };
                    *place = Some(v);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Apply

/// Tags of a resource without this phase's own.
fn carried(tags: &[(String, String)]) -> Vec<(String, String)> {
    tags.iter()
        .filter(|(k, _)| !k.starts_with("deploy-action:restore"))
        .cloned()
        .collect()
}

/// The restore's record: role, snapshot, stamp and (Aurora) the original's instances.
fn record(o: &Obs, role: &str) -> Vec<(String, String)> {
    let mut t = vec![
        (ROLE.to_string(), role.to_string()),
        (SNAPSHOT.to_string(), o.snapshot.clone()),
        (STAMP.to_string(), o.stamp.clone()),
    ];
    if o.kind == DatabaseKind::Cluster {
        let names: Vec<&str> = o.members.iter().map(|s| s.name.as_str()).collect();
        t.push((MEMBERS.to_string(), names.join(",")));
    }
    t
}

/// One step. Errors that the next observation resolves (the name is taken or gone, the resource is busy) are not
/// errors here: the loop observes again and plans from what is there.
async fn apply(
    rds_client: &aws_sdk_rds::Client,
    seen: &RestoreSeen,
    action: &RestoreAction,
    ctx: &Ctx,
) -> Result<()> {
    let o = &seen.obs;
    let poller = ctx.poller(format!("{action}"), Backoff::FAST);
    let result = poller
        .run(|| async {
            match apply_once(rds_client, seen, action, o).await {
                Ok(()) => Ok(Check::Done(())),
                Err(e)
                    if rds::is_already_exists(&e)
                        || rds::is_instance_not_found(&e)
                        || rds::is_cluster_not_found(&e)
                        || rds::is_invalid_state(&e) =>
                {
                    tracing::info!("{e}; looking again before the next step");
                    Ok(Check::Done(()))
                }
                Err(e) => Err(anyhow::Error::new(e)),
            }
        })
        .await;
    result.map_err(|e| timeout_error(e, o))
}

async fn apply_once(
    rds_client: &aws_sdk_rds::Client,
    seen: &RestoreSeen,
    action: &RestoreAction,
    o: &Obs,
) -> Result<(), crate::aws::AwsError> {
    let arn = |id: &str| {
        seen.resources
            .get(id)
            .map(|r| r.arn.clone())
            .unwrap_or_default()
    };
    match action {
        RestoreAction::Mark { id, .. } => {
            let mut t = record(o, "original");
            t.push((STEP.into(), "restore".into()));
            rds::add_tags(rds_client, &arn(id), &t).await
        }
        RestoreAction::Start { id, cluster } => {
            let db = Database {
                kind: if *cluster {
                    DatabaseKind::Cluster
                } else {
                    DatabaseKind::Instance
                },
                identifier: id.clone(),
                snapshot_name: String::new(),
                snapshot_retention: None,
                settle: None,
            };
            rds::start(rds_client, &db).await
        }
        RestoreAction::Restore {
            temp,
            like,
            cluster,
            snapshot,
        } => {
            let like = seen.resources.get(like).cloned().unwrap_or_default();
            let mut t = carried(&like.tags);
            t.extend(record(o, "restored"));
            t.push((tags::CREATED_BY.into(), tags::CREATOR.into()));
            if *cluster {
                rds::restore_cluster(rds_client, snapshot, temp, &like, &t)
                    .await
                    .map(drop)
            } else {
                rds::restore_instance(rds_client, snapshot, temp, &like, &t)
                    .await
                    .map(drop)
            }
        }
        RestoreAction::CreateMember {
            temp,
            cluster,
            like,
        } => {
            let like = seen.resources.get(like).cloned().unwrap_or_default();
            let mut t = carried(&like.tags);
            t.extend(record(o, "restored"));
            t.push((tags::CREATED_BY.into(), tags::CREATOR.into()));
            rds::create_cluster_instance(rds_client, temp, cluster, &like, &t)
                .await
                .map(drop)
        }
        RestoreAction::Rename { from, to, cluster } => {
            let mut t = vec![(STEP.to_string(), format!("rename-to:{to}"))];
            if seen.resources.get(from).and_then(|r| r.tag(ROLE)).is_none() {
                // An Aurora instance of the original: recorded as such before it is renamed.
                t.extend(
                    record(o, "original")
                        .into_iter()
                        .filter(|(k, _)| k != MEMBERS),
                );
            }
            rds::add_tags(rds_client, &arn(from), &t).await?;
            if *cluster {
                rds::rename_cluster(rds_client, from, to).await
            } else {
                rds::rename_instance(rds_client, from, to).await
            }
        }
    }
}

fn timeout_error(e: WaitError, o: &Obs) -> anyhow::Error {
    match e {
        WaitError::Timeout { what, waited, last } => anyhow::anyhow!(
            "{what}: not done within {} (last seen: {last}); the restore from {} is recorded on the resources: run restore again with snapshot-id {} to continue it, or raise timeout-minutes",
            human(waited),
            o.snapshot,
            o.snapshot
        ),
        other => other.into(),
    }
}

/// Where an RDS instance or cluster status leaves a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreProgress {
    Available,
    /// Stopped: the planner starts it when it has to be renamed.
    Stopped,
    Busy,
    Failed,
}

/// Pure: the instance and cluster statuses RDS documents, sorted into what the wait does with them. A status
/// deploy-action does not know is waited through (and shown).
pub fn progress(status: &str) -> RestoreProgress {
    match status {
        "available" => RestoreProgress::Available,
        "stopped" => RestoreProgress::Stopped,
        "failed"
        | "incompatible-restore"
        | "incompatible-parameters"
        | "incompatible-network"
        | "incompatible-option-group"
        | "inaccessible-encryption-credentials"
        | "inaccessible-encryption-credentials-recoverable"
        | "restore-error"
        | "storage-full"
        | "deleting"
        | "deleted" => RestoreProgress::Failed,
        _busy_or_unknown => RestoreProgress::Busy,
    }
}

/// Waits until the instance or cluster is available (or stopped), printing its status when it changes.
async fn wait_available(
    rds_client: &aws_sdk_rds::Client,
    id: &str,
    cluster: bool,
    o: &Obs,
    ctx: &Ctx,
) -> Result<()> {
    let poller = ctx.poller(format!("{} {id}", what(cluster)), Backoff::SLOW);
    let result = poller
        .run(|| async {
            let Some(r) = find(rds_client, id, cluster).await? else {
                return Ok(Check::Pending(format!("{} {id}: not found yet", what(cluster))));
            };
            match progress(&r.status) {
                RestoreProgress::Available | RestoreProgress::Stopped => Ok(Check::Done(())),
                RestoreProgress::Busy => Ok(Check::Pending(format!("{} {id}: {}", what(cluster), r.status))),
                RestoreProgress::Failed => bail!(
                    "{} {id} is {}; RDS could not finish it: see the RDS console events of {id}; nothing was deleted, the original is untouched or kept",
                    what(cluster),
                    r.status
                ),
            }
        })
        .await;
    result.map_err(|e| timeout_error(e, o))
}

// ---------------------------------------------------------------------------------------------------------------
// Outcome

/// Pure: the AWS CLI command that deletes the kept original (instances first for Aurora), with a final snapshot.
pub fn delete_command(kind: DatabaseKind, kept: &[String], region: &str) -> String {
    let Some((main, members)) = kept.split_first() else {
        return String::new();
    };
    let mut parts: Vec<String> = members
        .iter()
        .map(|m| format!("aws rds delete-db-instance --region {region} --db-instance-identifier {m} --skip-final-snapshot"))
        .collect();
    parts.push(match kind {
        DatabaseKind::Instance => format!("aws rds delete-db-instance --region {region} --db-instance-identifier {main} --final-db-snapshot-identifier {main}-final"),
        DatabaseKind::Cluster => format!("aws rds delete-db-cluster --region {region} --db-cluster-identifier {main} --final-db-snapshot-identifier {main}-final"),
    });
    parts.join(" && ")
}

impl RestoreOutcome {
    fn headline(&self) -> String {
        match self.result {
            RestoreEnding::Restored => format!(
                "{} restored from snapshot {}",
                self.database, self.snapshot_id
            ),
            RestoreEnding::AlreadyRestored => format!(
                "{} is already restored from snapshot {}; nothing changed",
                self.database, self.snapshot_id
            ),
            RestoreEnding::Planned => format!(
                "dry run: would restore {} from snapshot {}",
                self.database, self.snapshot_id
            ),
        }
    }

    fn rows(&self) -> Vec<Vec<String>> {
        let kind = match self.kind {
            DatabaseKind::Instance => "RDS instance",
            DatabaseKind::Cluster => "Aurora cluster",
        };
        let age = stamp_age(&self.kept_since, time::OffsetDateTime::now_utc())
            .map(|d| format!(", {} ago", human(d)))
            .unwrap_or_default();
        let mut rows = vec![
            vec!["environment".into(), self.environment.clone()],
            vec!["database".into(), format!("{} ({kind})", self.database)],
            vec!["snapshot".into(), self.snapshot_id.clone()],
        ];
        if let Some(a) = &self.address_after {
            let same = match &self.address_before {
                Some(b) if b == a => " (unchanged)",
                Some(_) => " (CHANGED)",
                None => "",
            };
            rows.push(vec!["endpoint".into(), format!("{a}{same}")]);
        }
        if self.result != RestoreEnding::Planned || !self.kept.is_empty() {
            rows.push(vec![
                if self.dry_run { "would keep" } else { "kept" }.into(),
                format!(
                    "{} (since {} UTC{age}; nothing was deleted)",
                    self.kept.join(", "),
                    self.kept_since
                ),
            ]);
        }
        for (i, s) in self.steps.iter().enumerate() {
            rows.push(vec![format!("step {}", i + 1), s.clone()]);
        }
        rows.push(vec![
            "took".into(),
            human(Duration::from_secs(self.duration_seconds)),
        ]);
        rows
    }
}

impl Outcome for RestoreOutcome {
    fn ok(&self) -> bool {
        true
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("snapshot-id", self.snapshot_id.clone()),
            (
                "restore-result",
                serde_json::to_value(self.result)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            ),
            ("kept-id", self.kept.first().cloned().unwrap_or_default()),
            ("delete-command", self.delete_command.clone()),
        ]
    }

    fn summary(&self) -> String {
        let mut s = format!("### Restore: {}\n\n", self.headline());
        s.push_str(&md_table(&["", ""], &self.rows()));
        if !self.dry_run {
            s.push_str(&format!(
                "\nThe original is kept. Once the team is sure it is not needed, delete it (a final snapshot is taken):\n\n```sh\n{}\n```\n",
                self.delete_command
            ));
        }
        s
    }

    fn text(&self) -> String {
        let mut s = format!("{}\n", self.headline());
        for row in self.rows() {
            s.push_str(&format!("  {:<12}{}\n", row[0], row[1]));
        }
        if !self.dry_run {
            s.push_str(&format!(
                "  to delete the kept original once you are sure:\n    {}\n",
                self.delete_command
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(kind: DatabaseKind) -> Database {
        Database {
            kind,
            identifier: "app-stage".into(),
            snapshot_name: crate::config::DEFAULT_SNAPSHOT_NAME.into(),
            snapshot_retention: None,
            settle: None,
        }
    }

    fn snap(id: &str, status: &str, tags: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            id: id.into(),
            arn: String::new(),
            status: status.into(),
            percent: None,
            created: None,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const MINE: (&str, &str) = (tags::CREATED_BY, tags::CREATOR);

    #[test]
    fn which_snapshot_is_restored_and_why_not() {
        let d = db(DatabaseKind::Instance);
        let v1 = (tags::VERSION, "v1");
        let stage = (tags::ENVIRONMENT, "stage");
        let mine = vec![
            snap("new-v1", "available", &[MINE, v1, stage]),
            snap("old-v1", "available", &[MINE, v1, stage]),
            snap("v2-busy", "creating", &[MINE, (tags::VERSION, "v2"), stage]),
            snap("by-hand", "available", &[]),
        ];
        let of = |id: &str, database: &str| SnapshotOf {
            snapshot: mine
                .iter()
                .find(|s| s.id == id)
                .cloned()
                .unwrap_or_else(|| snap(id, "available", &[MINE])),
            database: database.into(),
        };
        let bad = |m: &str| Err::<&str, Refusal>(Refusal::BadInput(m.into()));
        type Case<'a> = (Target, Option<SnapshotOf>, bool, Result<&'a str, Refusal>);
        let cases: Vec<Case> = vec![
            (Target::Version("v1".into()), None, false, Ok("new-v1")),
            (Target::Version("v3".into()), None, false, bad("input `version`: no available snapshot of app-stage made by deploy-action for version v3; snapshots that would fit: new-v1 (v1), old-v1 (v1)")),
            (Target::Version("v2".into()), None, false, bad("input `version`: no available snapshot")),
            (Target::Snapshot("old-v1".into()), Some(of("old-v1", "app-stage")), false, Ok("old-v1")),
            (Target::Snapshot("nope".into()), None, false, bad("input `snapshot-id`: snapshot nope does not exist in this account and region; snapshots that would fit: new-v1 (v1), old-v1 (v1)")),
            (Target::Snapshot("prod-1".into()), Some(of("prod-1", "app-prod")), false, bad("input `snapshot-id`: snapshot prod-1 is of database app-prod, not app-stage (environment stage)")),
            (Target::Snapshot("by-hand".into()), Some(of("by-hand", "app-stage")), false, bad("was not made by deploy-action; set allow-foreign-snapshot: true")),
            (Target::Snapshot("by-hand".into()), Some(of("by-hand", "app-stage")), true, Ok("by-hand")),
            (Target::Snapshot("v2-busy".into()), Some(of("v2-busy", "app-stage")), false, Err(Refusal::NotNow("snapshot v2-busy is creating, not available".into()))),
        ];
        for (target, found, foreign, want) in cases {
            let got = pick_snapshot(&target, &mine, found.as_ref(), &d, "stage", foreign)
                .map(|s| s.id.as_str());
            match (&got, &want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{target:?}"),
                (Err(Refusal::BadInput(g)), Err(Refusal::BadInput(w)))
                | (Err(Refusal::NotNow(g)), Err(Refusal::NotNow(w))) => {
                    assert!(
                        g.contains(w.as_str()),
                        "{target:?}: {g:?} should contain {w:?}"
                    )
                }
                _ => panic!("{target:?}: got {got:?}, want {want:?}"),
            }
        }
        let foreign_fits = pick_snapshot(
            &Target::Version("v9".into()),
            &mine,
            None,
            &d,
            "stage",
            true,
        )
        .unwrap_err();
        assert!(
            matches!(foreign_fits, Refusal::BadInput(m) if m.contains("by-hand")),
            "with allow-foreign, foreign ones fit"
        );
    }

    #[test]
    fn only_a_quiet_environment_is_restored() {
        let idle = vec![
            ("core".to_string(), 0, 0, 0),
            ("workers".to_string(), 0, 0, 0),
        ];
        assert_eq!(writers("stage", &idle, &[]), Ok(()));
        let busy = vec![
            ("core".to_string(), 2, 2, 0),
            ("workers".to_string(), 0, 0, 1),
        ];
        let e = writers("stage", &busy, &[]).unwrap_err();
        assert!(
            e.contains(
                "core (desired 2, running 2, pending 0), workers (desired 0, running 0, pending 1)"
            ) && e.contains("state: db-only"),
            "{e}"
        );
        let e = writers(
            "stage",
            &idle,
            &["arn:aws:ecs:r:1:task/app-stage/abc".into()],
        )
        .unwrap_err();
        assert!(e.contains("(abc)"), "{e}");
    }

    #[test]
    fn derived_names_stay_valid_identifiers() {
        assert_eq!(derived("app-stage", TEMP_SUFFIX), "app-stage-restoring");
        assert_eq!(
            kept_name("app-stage", "20261202-104500"),
            "app-stage-before-restore-20261202-104500"
        );
        let long = "a".repeat(63);
        assert_eq!(derived(&long, TEMP_SUFFIX).len(), 63);
        let k = kept_name(
            &format!("{}-{}", "b".repeat(31), "c".repeat(20)),
            "20261202-104500",
        );
        assert!(k.len() <= 63 && !k.contains("--"), "{k}");
        let now = time::macros::datetime!(2026-12-02 12:45:00 UTC);
        assert_eq!(
            stamp_age("20261202-104500", now),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(stamp_age("garbage", now), None);
    }

    const S: &str = "snap-1";
    const T: &str = "20261202-104500";

    fn v(id: &str, status: &str, role: Option<&str>) -> Option<View> {
        Some(View {
            id: id.into(),
            status: status.into(),
            role: role.map(str::to_string),
            snapshot: role.map(|_| S.to_string()),
            stamp: role.map(|_| T.to_string()),
        })
    }

    fn instance(at_name: Option<View>, at_temp: Option<View>, at_kept: Option<View>) -> Obs {
        Obs {
            kind: DatabaseKind::Instance,
            snapshot: S.into(),
            stamp: T.into(),
            main: Slot {
                name: "db".into(),
                temp: "db-restoring".into(),
                kept: "db-old".into(),
                at_name,
                at_temp,
                at_kept,
            },
            members: vec![],
        }
    }

    fn rename(from: &str, to: &str) -> Next {
        Next::Act(RestoreAction::Rename {
            from: from.into(),
            to: to.into(),
            cluster: false,
        })
    }

    #[test]
    fn the_next_step_from_every_point_of_an_instance_restore() {
        let wait = |id: &str| Next::Wait {
            id: id.into(),
            cluster: false,
        };
        let cases: Vec<(&str, Obs, Next)> = vec![
            (
                "fresh: record first",
                instance(v("db", "available", None), None, None),
                Next::Act(RestoreAction::Mark {
                    id: "db".into(),
                    cluster: false,
                    snapshot: S.into(),
                }),
            ),
            (
                "restored from another snapshot earlier: a new restore",
                instance(
                    Some(View {
                        snapshot: Some("old".into()),
                        ..v("db", "available", Some("restored")).unwrap()
                    }),
                    None,
                    None,
                ),
                Next::Act(RestoreAction::Mark {
                    id: "db".into(),
                    cluster: false,
                    snapshot: S.into(),
                }),
            ),
            (
                "recorded: restore",
                instance(v("db", "available", Some("original")), None, None),
                Next::Act(RestoreAction::Restore {
                    temp: "db-restoring".into(),
                    like: "db".into(),
                    cluster: false,
                    snapshot: S.into(),
                }),
            ),
            (
                "restoring: wait",
                instance(
                    v("db", "available", Some("original")),
                    v("db-restoring", "creating", Some("restored")),
                    None,
                ),
                wait("db-restoring"),
            ),
            (
                "restored: rename the original",
                instance(
                    v("db", "available", Some("original")),
                    v("db-restoring", "available", Some("restored")),
                    None,
                ),
                rename("db", "db-old"),
            ),
            (
                "original stopped: start it",
                instance(
                    v("db", "stopped", Some("original")),
                    v("db-restoring", "available", Some("restored")),
                    None,
                ),
                Next::Act(RestoreAction::Start {
                    id: "db".into(),
                    cluster: false,
                }),
            ),
            (
                "original starting: wait",
                instance(
                    v("db", "starting", Some("original")),
                    v("db-restoring", "available", Some("restored")),
                    None,
                ),
                wait("db"),
            ),
            (
                "killed between the renames, kept still renaming: wait",
                instance(
                    None,
                    v("db-restoring", "available", Some("restored")),
                    v("db-old", "renaming", Some("original")),
                ),
                wait("db-old"),
            ),
            (
                "between the renames: rename the restored one",
                instance(
                    None,
                    v("db-restoring", "available", Some("restored")),
                    v("db-old", "available", Some("original")),
                ),
                rename("db-restoring", "db"),
            ),
            (
                "renamed, renaming: wait",
                instance(
                    v("db", "renaming", Some("restored")),
                    None,
                    v("db-old", "available", Some("original")),
                ),
                wait("db"),
            ),
            (
                "done",
                instance(
                    v("db", "available", Some("restored")),
                    None,
                    v("db-old", "available", Some("original")),
                ),
                Next::Done,
            ),
            (
                "done, and the kept one deleted since: still done",
                instance(v("db", "available", Some("restored")), None, None),
                Next::Done,
            ),
        ];
        for (what, obs, want) in cases {
            assert_eq!(next_step(&obs), want, "{what}");
        }
        let refusals: Vec<(&str, Obs, &str)> = vec![
            (
                "nothing there",
                instance(None, None, None),
                "does not exist",
            ),
            (
                "only the kept one",
                instance(None, None, v("db-old", "available", Some("original"))),
                "rename db-old back to db by hand",
            ),
            (
                "a temp of another restore",
                instance(
                    v("db", "available", None),
                    Some(View {
                        snapshot: Some("other".into()),
                        ..v("db-restoring", "available", Some("restored")).unwrap()
                    }),
                    None,
                ),
                "run restore with snapshot-id other",
            ),
        ];
        for (what, obs, want) in refusals {
            match next_step(&obs) {
                Next::Refuse(why) => assert!(why.contains(want), "{what}: {why}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_dry_run_lists_every_step_and_a_finished_restore_none() {
        let steps = simulate(instance(v("db", "available", None), None, None)).unwrap();
        assert_eq!(
            steps,
            vec![
                "record the restore from snap-1 on DB instance db (tags)",
                "restore DB instance db-restoring from snapshot snap-1 with the settings of db",
                "rename DB instance db to db-old",
                "rename DB instance db-restoring to db",
            ]
        );
        let between = instance(
            None,
            v("db-restoring", "available", Some("restored")),
            v("db-old", "available", Some("original")),
        );
        assert_eq!(
            simulate(between).unwrap(),
            vec!["rename DB instance db-restoring to db"]
        );
        assert!(
            simulate(instance(v("db", "available", Some("restored")), None, None))
                .unwrap()
                .is_empty()
        );
    }

    fn member(
        name: &str,
        at_name: Option<View>,
        at_temp: Option<View>,
        at_kept: Option<View>,
    ) -> Slot {
        Slot {
            name: name.into(),
            temp: format!("{name}-restoring"),
            kept: format!("{name}-old"),
            at_name,
            at_temp,
            at_kept,
        }
    }

    #[test]
    fn an_aurora_restore_creates_every_instance_and_renames_originals_before_restored_ones() {
        let mut o = instance(v("db", "available", None), None, None);
        o.kind = DatabaseKind::Cluster;
        o.members = vec![
            member("db-1", v("db-1", "available", None), None, None),
            member("db-2", v("db-2", "available", None), None, None),
        ];
        let steps = simulate(o.clone()).unwrap();
        assert_eq!(
            steps,
            vec![
                "record the restore from snap-1 on Aurora cluster db (tags)",
                "restore Aurora cluster db-restoring from snapshot snap-1 with the settings of db",
                "create DB instance db-1-restoring in cluster db-restoring, class of db-1",
                "create DB instance db-2-restoring in cluster db-restoring, class of db-2",
                "rename Aurora cluster db to db-old",
                "rename DB instance db-1 to db-1-old",
                "rename DB instance db-2 to db-2-old",
                "rename Aurora cluster db-restoring to db",
                "rename DB instance db-1-restoring to db-1",
                "rename DB instance db-2-restoring to db-2",
            ]
        );
        // Killed after the cluster renames, before the instances': the rerun renames the instances only.
        o.main = Slot {
            at_name: v("db", "available", Some("restored")),
            at_temp: None,
            at_kept: v("db-old", "available", Some("original")),
            ..o.main
        };
        o.members[0].at_name = None;
        o.members[0].at_temp = v("db-1-restoring", "available", Some("restored"));
        o.members[0].at_kept = v("db-1-old", "available", Some("original"));
        o.members[1].at_temp = v("db-2-restoring", "creating", Some("restored"));
        assert_eq!(
            next_step(&o),
            Next::Wait {
                id: "db-2-restoring".into(),
                cluster: false
            }
        );
        o.members[1].at_temp.as_mut().unwrap().status = "available".into();
        assert_eq!(
            simulate(o).unwrap(),
            vec![
                "rename DB instance db-2 to db-2-old",
                "rename DB instance db-1-restoring to db-1",
                "rename DB instance db-2-restoring to db-2"
            ]
        );
    }

    #[test]
    fn instance_statuses() {
        for (status, want) in [
            ("available", RestoreProgress::Available),
            ("stopped", RestoreProgress::Stopped),
            ("creating", RestoreProgress::Busy),
            ("renaming", RestoreProgress::Busy),
            ("backing-up", RestoreProgress::Busy),
            ("something-new", RestoreProgress::Busy),
            ("incompatible-restore", RestoreProgress::Failed),
            ("failed", RestoreProgress::Failed),
        ] {
            assert_eq!(progress(status), want, "{status}");
        }
    }

    #[test]
    fn the_delete_command_names_what_is_kept() {
        assert_eq!(
            delete_command(DatabaseKind::Instance, &["db-old".into()], "eu-central-1"),
            "aws rds delete-db-instance --region eu-central-1 --db-instance-identifier db-old --final-db-snapshot-identifier db-old-final"
        );
        let c = delete_command(
            DatabaseKind::Cluster,
            &["c-old".into(), "c-1-old".into()],
            "eu-central-1",
        );
        assert!(c.starts_with("aws rds delete-db-instance --region eu-central-1 --db-instance-identifier c-1-old --skip-final-snapshot && aws rds delete-db-cluster --region eu-central-1 --db-cluster-identifier c-old --final-db-snapshot-identifier c-old-final"), "{c}");
    }
}
