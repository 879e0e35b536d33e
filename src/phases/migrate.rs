//! Phase `migrate`: the database migration task for a version, run so that it cannot lose data.
//!
//! 1. **Preconditions, before anything changes**: a snapshot of this database made by this action, `available` and
//!    younger than `max-snapshot-age` (default 2h), must exist ([`snapshot_precondition`]); else the phase refuses
//!    with the fix (run the snapshot phase first). `allow-without-snapshot: true` skips the check and says so in a
//!    warning annotation and a banner in the summary. A migration of another version still running is refused too.
//! 2. **db-only**: maintenance on, core services at 0, no core task left, through the `state` phase's
//!    [`converge::converge`].
//! 3. **The migration task**, exactly as phase `run` runs a task ([`run::execute`]): a revision with only the
//!    migration image changed, one task per environment (a rerun attaches), live logs, verdict by exit code and stop
//!    code.
//!
//! The version is resolved first ([`promote::resolve`]): as given, or `from:<environment>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::time::Instant;

use super::Ctx;
use crate::aws::rds::{self, Snapshot};
use crate::config::{Database, Environment, TaskConfig};
use crate::domain::converge::{self, StateOptions};
use crate::domain::drain::{self, QuietReport};
use crate::domain::environment::EnvState;
use crate::domain::one_off::{self, RunOutcome};
use crate::domain::preflight;
use crate::domain::promote::{self, Resolved, SelfReference, VersionRef};
use crate::domain::task::{self, LaunchPlan};
use crate::domain::versions;
use crate::error::UsageError;
use crate::github::runner::Outcome;
use crate::inputs::{parse_bool, parse_duration, Common, Invocation};
use crate::tags;
use crate::tags::LastMigration;
use crate::version::Version;
use crate::wait::human;

/// `max-snapshot-age` when the input is not given.
pub const DEFAULT_MAX_SNAPSHOT_AGE: Duration = Duration::from_secs(2 * 3600);

#[derive(Debug, Clone)]
pub struct Request {
    pub environment: Environment,
    pub database: Database,
    pub migration: TaskConfig,
    pub version: VersionRef,
    pub max_snapshot_age: Duration,
    pub allow_without_snapshot: bool,
    /// How `state` brings the environment to db-only (bypass header, skip-drain).
    pub state: StateOptions,
    pub wait_for_images: Duration,
}

impl Request {
    pub fn from_invocation(inv: &Invocation, common: &Common) -> Result<Request, UsageError> {
        let env = &common.environment;
        let database = common.required_database("migrate")?;
        let migration = env.migration.clone().ok_or_else(|| {
            UsageError::new(format!(
                "config file {}: environments.{name}.migration: missing; phase migrate needs it: add [environments.{name}.migration] with `family = \"<task definition family>\"` and `container = \"<container>\"`",
                common.config_path.display(),
                name = env.name
            ))
        })?;
        let version = VersionRef::from_invocation(inv, common, SelfReference::Refused)?;
        if let Some(v) = version.given() {
            migration.image.tag_for(v)?;
        }
        let max_snapshot_age =
            parse_duration("max-snapshot-age", inv.raw.max_snapshot_age.as_deref())?
                .unwrap_or(DEFAULT_MAX_SNAPSHOT_AGE);
        if max_snapshot_age.is_zero() {
            return Err(UsageError::new(
                "input `max-snapshot-age`: 0 would refuse every snapshot; use e.g. 2h or 30m",
            ));
        }
        let allow_without_snapshot = parse_bool(
            "allow-without-snapshot",
            inv.raw.allow_without_snapshot.as_deref(),
            false,
        )?;
        let state = StateOptions {
            bypass_header: converge::bypass_header(
                inv.raw.maintenance_header_name.as_deref(),
                inv.raw.maintenance_header_value.as_deref(),
            )?,
            skip_drain: parse_bool("skip-drain", inv.raw.skip_drain.as_deref(), false)?,
        };
        converge::check_target(env, EnvState::DbOnly, &state)?;
        Ok(Request {
            environment: env.clone(),
            database,
            migration,
            version,
            max_snapshot_age,
            allow_without_snapshot,
            state,
            wait_for_images: common.wait_for_images,
        })
    }
}

impl super::Recorded for Request {
    fn subject(&self, common: &Common) -> super::Subject {
        super::Subject::new(common, self.version.given())
    }
}

/// The clients `state` (db-only) and the task runner use, and those that resolve `from:`.
pub struct Clients {
    pub state: converge::Clients,
    pub task: task::Clients,
    pub promote: promote::Clients,
    pub preflight: preflight::Clients,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            state: converge::Clients::new(sdk),
            task: task::Clients::new(sdk),
            promote: promote::Clients::new(sdk),
            preflight: preflight::Clients::new(sdk),
        }
    }
}

/// The snapshot the precondition accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotCheck {
    pub id: String,
    pub age_seconds: u64,
}

/// Phase `run`'s outcome for the migration task, plus what the preconditions found and did.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateOutcome {
    #[serde(flatten)]
    pub run: RunOutcome,
    /// The fresh snapshot the precondition found; `None` only with allow-without-snapshot.
    pub snapshot: Option<SnapshotCheck>,
    /// Ran without a fresh snapshot (allow-without-snapshot), and why there was none.
    pub without_snapshot: Option<String>,
    /// The database settle wait after a successful migration (`None`: no migration succeeded, or a dry run).
    pub settle: Option<QuietReport>,
    /// The environment's state before the phase brought it to db-only.
    pub previous_state: EnvState,
    /// What `state` did to reach db-only (empty when it already was).
    pub state_steps: Vec<String>,
}

pub async fn run(req: &Request, clients: &Clients, ctx: &Ctx) -> Result<MigrateOutcome> {
    let started = Instant::now();
    let env = &req.environment;
    // 1. Preconditions: nothing changes before all of them hold. The version first.
    let resolved = promote::resolve(&req.version, &clients.promote).await?;
    let version = &resolved.version;
    let launch = task::Launch {
        environment: env,
        task: &req.migration,
        version,
        command: None,
        revision_tags: &[],
    };
    let pre = preconditions(req, clients, ctx, &launch).await?;

    // 2. db-only (a signal during the checks stops here, before the first change).
    ctx.stop_if_cancelled("bringing the environment to db-only")?;
    let state = converge::converge(env, EnvState::DbOnly, &req.state, &clients.state, ctx)
        .await
        .with_context(|| format!("bringing {} to db-only before the migration", env.name))?;

    // 3. The migration task, as phase `run` runs it.
    let run = migration(clients, ctx, &launch, &resolved, &pre.db_arn, started).await?;

    // 4. The database settles before anything runs the new code.
    let settle = if run.ok() && !ctx.dry_run {
        let _g = ctx.runner.group("Database settle");
        let report = drain::wait_db_settled(&clients.state.cloudwatch, &req.database, ctx).await?;
        tracing::info!("database settle: {}", report.detail);
        Some(report)
    } else {
        None
    };
    Ok(MigrateOutcome {
        run,
        snapshot: pre.snapshot,
        without_snapshot: pre.without_snapshot,
        settle,
        previous_state: state.previous_state,
        state_steps: if ctx.dry_run {
            state.plan.iter().map(ToString::to_string).collect()
        } else {
            state.steps.iter().map(|s| s.step.to_string()).collect()
        },
    })
}

/// What the preconditions found: the database (to record the migration on) and the snapshot decision.
struct Preconditions {
    db_arn: String,
    snapshot: Option<SnapshotCheck>,
    without_snapshot: Option<String>,
}

/// Observe (the database, its snapshots, the versions known), decide ([`snapshot_decision`]), refuse a migration
/// of another version still running, and the preflight. Nothing changes here.
async fn preconditions(
    req: &Request,
    clients: &Clients,
    ctx: &Ctx,
    launch: &task::Launch<'_>,
) -> Result<Preconditions> {
    let env = &req.environment;
    let version = launch.version;
    let (db_arn, db_tags) = rds::arn_and_tags(&clients.state.rds, &req.database)
        .await
        .with_context(|| format!("reading database {}", req.database.identifier))?;
    // A rerun of the same version's migration (which attaches to its task) is not a later migration.
    let last = tags::get(&db_tags, tags::LAST_MIGRATION)
        .and_then(LastMigration::parse)
        .filter(|l| l.version != version.as_str());
    let snaps = rds::manual_snapshots(&clients.state.rds, &req.database)
        .await
        .with_context(|| {
            format!(
                "listing the manual snapshots of database {}",
                req.database.identifier
            )
        })?;
    // A version whose image tag another known version already gives is refused (exit 2) before anything changes.
    let mut known = versions::in_snapshots(&snaps);
    known.extend(
        versions::in_families(&clients.task.ecs, &[req.migration.family.as_str()], version).await?,
    );
    versions::refuse_collision(version, &known)?;
    let now = now_secs();
    let found = snapshot_precondition(
        &snaps,
        &req.database,
        &env.name,
        last.as_ref(),
        now,
        req.max_snapshot_age,
    );
    let (snapshot, without_snapshot) = match snapshot_decision(found, now, req.allow_without_snapshot) {
        SnapshotDecision::Fresh(check) => {
            tracing::info!(
                "snapshot {} of {} is available and {} old (max-snapshot-age {})",
                check.id,
                req.database.identifier,
                human(Duration::from_secs(check.age_seconds)),
                human(req.max_snapshot_age)
            );
            (Some(check), None)
        }
        SnapshotDecision::Without(why) => {
            ctx.runner.warning(&format!(
                "migrating {} WITHOUT a fresh snapshot: {why}; allow-without-snapshot is true",
                env.name
            ));
            (None, Some(why))
        }
        SnapshotDecision::Refuse(why) => bail!(
            "refusing to migrate {}: {why}; run the snapshot phase first to take a fresh one (phase: snapshot, version: {version}; CLI: deploy-action snapshot --env {} --version {version}), or set allow-without-snapshot: true to migrate without one",
            env.name,
            env.name,
        ),
    };
    if let LaunchPlan::Refuse(why) = task::plan(launch, &clients.task).await? {
        bail!("refusing to migrate {}: {why}", env.name);
    }
    let report = checks(req, &clients.preflight, ctx, version).await?;
    // A signal during the checks (the image wait ends early) stops the run here (exit 130), before the first change.
    ctx.stop_if_cancelled("bringing the environment to db-only")?;
    preflight::finish(&ctx.runner, "migrate", &report)?;
    Ok(Preconditions {
        db_arn,
        snapshot,
        without_snapshot,
    })
}

/// The migration task, as phase `run` runs it; its start and its end recorded on the database (the start first, so
/// a run killed during the migration still leaves a time later snapshots must follow). A signal stops it before
/// the record and again before the task starts.
async fn migration(
    clients: &Clients,
    ctx: &Ctx,
    launch: &task::Launch<'_>,
    resolved: &Resolved,
    db_arn: &str,
    started: Instant,
) -> Result<RunOutcome> {
    let version = launch.version;
    ctx.stop_if_cancelled("starting the migration task")?;
    if !ctx.dry_run {
        record_migration(clients, db_arn, version, ctx).await;
        // The start is recorded (a rerun of this version ignores it); the task is not started.
        ctx.stop_if_cancelled("RunTask (the migration task)")?;
    }
    let run = one_off::execute(launch, resolved, &clients.task, ctx, started).await;
    if !ctx.dry_run {
        record_migration(clients, db_arn, version, ctx).await;
    }
    run
}

/// What the snapshot precondition leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotDecision {
    /// A fresh snapshot: migrate.
    Fresh(SnapshotCheck),
    /// None, and allow-without-snapshot: migrate with a warning (why there is none).
    Without(String),
    /// None: refuse (why).
    Refuse(String),
}

/// Pure: the precondition's finding (`found`) and `allow-without-snapshot` as what the phase does.
pub fn snapshot_decision(
    found: Result<&Snapshot, String>,
    now: i64,
    allow_without: bool,
) -> SnapshotDecision {
    match found {
        Ok(s) => SnapshotDecision::Fresh(SnapshotCheck {
            id: s.id.clone(),
            age_seconds: age_seconds(s, now),
        }),
        Err(why) if allow_without => SnapshotDecision::Without(why),
        Err(why) => SnapshotDecision::Refuse(why),
    }
}

/// Tags the database with the time of now and the version ([`tags::LAST_MIGRATION`]). A failure is a warning: the
/// migration itself is what matters here, and the next migrate needs a snapshot younger than max-snapshot-age anyway.
async fn record_migration(clients: &Clients, db_arn: &str, version: &Version, ctx: &Ctx) {
    let last = LastMigration {
        ended: now_secs(),
        version: version.to_string(),
    };
    let tag = [(tags::LAST_MIGRATION.to_string(), last.value())];
    if let Err(e) = rds::add_tags(&clients.state.rds, db_arn, &tag).await {
        ctx.runner.warning(&format!(
            "could not record the migration on the database ({e}); the next migrate cannot tell whether a snapshot predates it: take a fresh snapshot before it"
        ));
    }
}

/// The preflight of a migration: the task's definition, container, network source and logs, its image, and (when
/// maintenance is configured) that maintenance can go on.
async fn checks(
    req: &Request,
    c: &preflight::Clients,
    ctx: &Ctx,
    version: &Version,
) -> Result<preflight::Report> {
    let env = &req.environment;
    let mut rows = preflight::one_off(
        c,
        env,
        &req.migration,
        "migration",
        version,
        req.wait_for_images,
        ctx,
    )
    .await?;
    if let Some(m) = &env.maintenance {
        rows.extend(preflight::maintenance(&c.elb, m).await?);
    }
    Ok(preflight::Report { rows })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn age_seconds(s: &Snapshot, now: i64) -> u64 {
    s.created.map_or(0, |c| (now - c).max(0) as u64)
}

/// Pure: the newest snapshot of this database made by this action for this environment that is `available`,
/// younger than `max_age` and taken after the end of the last migration this action ran there (`last`), or why
/// there is none (one line, without the fix). A snapshot from before that migration would lose it on a restore.
pub fn snapshot_precondition<'a>(
    snaps: &'a [Snapshot],
    db: &Database,
    environment: &str,
    last: Option<&LastMigration>,
    now: i64,
    max_age: Duration,
) -> Result<&'a Snapshot, String> {
    let mut mine: Vec<&Snapshot> = snaps
        .iter()
        .filter(|s| s.tag(tags::CREATED_BY) == Some(tags::CREATOR))
        .filter(|s| s.tag(tags::ENVIRONMENT) == Some(environment))
        .collect();
    mine.sort_by_key(|s| std::cmp::Reverse(s.created.unwrap_or(i64::MAX)));
    let fresh = |s: &&&Snapshot| {
        s.created
            .is_some_and(|c| now - c <= max_age.as_secs() as i64)
    };
    let after_last = |s: &&&Snapshot| match (last, s.created) {
        (None, _) | (Some(_), None) => true,
        (Some(l), Some(c)) => c > l.ended,
    };
    let available = |s: &&&Snapshot| s.status == "available";
    if let Some(s) = mine
        .iter()
        .filter(available)
        .find(|s| fresh(s) && after_last(s))
    {
        return Ok(s);
    }
    let id = &db.identifier;
    let limit = human(max_age);
    if let Some(s) = mine
        .iter()
        .find(|s| !available(s) && (s.created.is_none() || (fresh(s) && after_last(s))))
    {
        return Err(format!(
            "the newest snapshot of {id} made by deploy-action, {}, is {} (not available yet)",
            s.id, s.status
        ));
    }
    if let (Some(l), Some(s)) = (last, mine.iter().filter(available).find(fresh)) {
        return Err(format!(
            "the newest snapshot of {id} made by deploy-action for {environment}, {}, was taken at {}, before the end of the last migration there ({} ended at {}): restoring it would lose that migration and everything written since",
            s.id,
            clock(s.created.unwrap_or_default()),
            l.version,
            clock(l.ended)
        ));
    }
    match mine.iter().find(available) {
        Some(s) => Err(format!(
            "the newest available snapshot of {id} made by deploy-action, {}, is {} old; max-snapshot-age is {limit}",
            s.id,
            human(Duration::from_secs(age_seconds(s, now)))
        )),
        None => Err(format!(
            "no available snapshot of {id} made by deploy-action for {environment} exists"
        )),
    }
}

/// `2026-12-02 10:41:07 UTC`.
fn clock(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

impl Outcome for MigrateOutcome {
    fn ok(&self) -> bool {
        self.run.ok()
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        let mut o = self.run.base_outputs();
        o.push((
            "snapshot-id",
            self.snapshot
                .as_ref()
                .map(|s| s.id.clone())
                .unwrap_or_default(),
        ));
        o.push((
            "restore-command",
            self.restore_command().unwrap_or_default(),
        ));
        o
    }

    fn summary(&self) -> String {
        let banners: Vec<String> = self
            .without_snapshot
            .iter()
            .map(|why| format!(
                "> [!WARNING]\n> **Migrated without a fresh snapshot** (allow-without-snapshot: true): {}.",
                crate::text::md_text(why)
            ))
            .chain(self.restore_command().map(|cmd| format!(
                "> [!CAUTION]\n> To bring the database back from the snapshot taken before this migration (after approval): `{cmd}` (Action: `phase: restore`, `snapshot-id: {}`).",
                self.snapshot.as_ref().map(|s| s.id.as_str()).unwrap_or_default()
            )))
            .collect();
        self.run.summary_with(&banners, self.rows())
    }

    fn text(&self) -> String {
        let notes: Vec<String> = self
            .without_snapshot
            .iter()
            .map(|why| format!("WITHOUT a fresh snapshot (allow-without-snapshot): {why}"))
            .chain(
                self.restore_command()
                    .map(|cmd| format!("to bring the database back from its snapshot: {cmd}")),
            )
            .collect();
        self.run.text_with(&notes, self.rows())
    }
}

impl MigrateOutcome {
    /// After a failed migration, the invocation that brings the database back from the snapshot the precondition
    /// accepted (phase `restore`); `None` when the migration succeeded, in a dry run, or without a snapshot.
    pub fn restore_command(&self) -> Option<String> {
        if self.run.ok() || self.run.dry_run {
            return None;
        }
        let s = self.snapshot.as_ref()?;
        Some(format!(
            "deploy-action restore --env {} --snapshot-id {}",
            self.run.environment, s.id
        ))
    }

    /// What the preconditions add to phase `run`'s rows.
    fn rows(&self) -> Vec<Vec<String>> {
        let mut rows = vec![
            vec![
                "snapshot".into(),
                match &self.snapshot {
                    Some(s) => format!(
                        "{} ({} old)",
                        s.id,
                        human(Duration::from_secs(s.age_seconds))
                    ),
                    None => "none (allow-without-snapshot)".into(),
                },
            ],
            vec![
                "environment".into(),
                if self.state_steps.is_empty() {
                    format!("{} (already db-only)", self.previous_state)
                } else {
                    format!(
                        "{} → db-only: {}",
                        self.previous_state,
                        self.state_steps.join(", ")
                    )
                },
            ],
        ];
        if let Some(settle) = &self.settle {
            rows.push(vec!["database settle".into(), settle.detail.clone()]);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatabaseKind;

    fn db() -> Database {
        Database {
            kind: DatabaseKind::Instance,
            identifier: "app-stage".into(),
            snapshot_name: crate::config::DEFAULT_SNAPSHOT_NAME.into(),
            snapshot_retention: None,
            settle: None,
        }
    }

    fn snap(id: &str, age_minutes: Option<i64>, status: &str, mine: bool) -> Snapshot {
        Snapshot {
            id: id.into(),
            arn: String::new(),
            status: status.into(),
            percent: None,
            created: age_minutes.map(|m| NOW - m * 60),
            tags: if mine {
                vec![
                    (tags::CREATED_BY.into(), tags::CREATOR.into()),
                    (tags::ENVIRONMENT.into(), "stage".into()),
                ]
            } else {
                vec![]
            },
        }
    }

    const NOW: i64 = 1_800_000_000;
    const TWO_HOURS: Duration = Duration::from_secs(7200);

    #[test]
    fn a_missing_snapshot_refuses_unless_allowed() {
        let fresh = snap("a", Some(10), "available", true);
        let why = || Err("no available snapshot".to_string());
        let cases = [
            (
                Ok(&fresh),
                false,
                SnapshotDecision::Fresh(SnapshotCheck {
                    id: "a".into(),
                    age_seconds: 600,
                }),
            ),
            (
                Ok(&fresh),
                true,
                SnapshotDecision::Fresh(SnapshotCheck {
                    id: "a".into(),
                    age_seconds: 600,
                }),
            ),
            (
                why(),
                true,
                SnapshotDecision::Without("no available snapshot".into()),
            ),
            (
                why(),
                false,
                SnapshotDecision::Refuse("no available snapshot".into()),
            ),
        ];
        for (found, allow, want) in cases {
            assert_eq!(snapshot_decision(found, NOW, allow), want, "allow {allow}");
        }
    }

    #[test]
    fn the_snapshot_precondition() {
        let cases: Vec<(Vec<Snapshot>, Result<&str, &str>)> = vec![
            (vec![snap("a", Some(10), "available", true)], Ok("a")),
            (
                vec![
                    snap("old", Some(300), "available", true),
                    snap("new", Some(5), "available", true),
                ],
                Ok("new"),
            ),
            (vec![snap("edge", Some(120), "available", true)], Ok("edge")),
            (
                vec![],
                Err("no available snapshot of app-stage made by deploy-action for stage exists"),
            ),
            (
                vec![snap("by-hand", Some(1), "available", false)],
                Err("no available snapshot"),
            ),
            (
                vec![snap("stale", Some(121), "available", true)],
                Err("stale, is 2h 1m old; max-snapshot-age is 2h 0m"),
            ),
            (
                vec![snap("busy", None, "creating", true)],
                Err("busy, is creating (not available yet)"),
            ),
            (
                vec![
                    snap("busy", Some(1), "creating", true),
                    snap("stale", Some(500), "available", true),
                ],
                Err("busy, is creating"),
            ),
            (
                vec![
                    snap("busy", Some(1), "creating", true),
                    snap("ok", Some(30), "available", true),
                ],
                Ok("ok"),
            ),
            (
                vec![snap("failed", Some(1), "failed", true)],
                Err("failed, is failed"),
            ),
        ];
        for (snaps, want) in cases {
            let got = snapshot_precondition(&snaps, &db(), "stage", None, NOW, TWO_HOURS)
                .map(|s| s.id.as_str());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w),
                (Err(g), Err(w)) => assert!(g.contains(w), "{g:?} should contain {w:?}"),
                (g, w) => panic!("{snaps:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn a_snapshot_must_follow_the_last_migration_and_be_of_this_environment() {
        let last = LastMigration {
            ended: NOW - 20 * 60,
            version: "v1.1.0".into(),
        };
        // (snapshots, last migration, want)
        type Case<'a> = (
            Vec<Snapshot>,
            Option<&'a LastMigration>,
            Result<&'a str, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (vec![snap("after", Some(10), "available", true)], Some(&last), Ok("after")),
            (
                vec![snap("before", Some(30), "available", true)],
                Some(&last),
                Err("before, was taken at 2027-01-15 07:30:00 UTC, before the end of the last migration there (v1.1.0 ended at 2027-01-15 07:40:00 UTC)"),
            ),
            (
                vec![
                    snap("before", Some(30), "available", true),
                    snap("after", Some(5), "available", true),
                ],
                Some(&last),
                Ok("after"),
            ),
            (
                vec![
                    snap("before", Some(30), "available", true),
                    snap("busy", Some(1), "creating", true),
                ],
                Some(&last),
                Err("busy, is creating"),
            ),
            (vec![snap("before", Some(30), "available", true)], None, Ok("before")),
        ];
        for (snaps, last, want) in cases {
            let got = snapshot_precondition(&snaps, &db(), "stage", last, NOW, TWO_HOURS)
                .map(|s| s.id.as_str());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w),
                (Err(g), Err(w)) => assert!(g.contains(w), "{g:?} should contain {w:?}"),
                (g, w) => panic!("{snaps:?}: got {g:?}, want {w:?}"),
            }
        }
        let mut other_env = snap("prod-one", Some(1), "available", true);
        other_env.tags[1].1 = "prod".into();
        assert!(
            snapshot_precondition(&[other_env], &db(), "stage", None, NOW, TWO_HOURS)
                .unwrap_err()
                .contains("for stage exists")
        );
        assert_eq!(
            LastMigration::parse("1800000000 v1.2.0"),
            Some(LastMigration {
                ended: 1_800_000_000,
                version: "v1.2.0".into()
            })
        );
        assert_eq!(LastMigration::parse("garbage"), None);
    }
}
