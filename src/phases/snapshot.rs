//! Phase `snapshot`: a manual snapshot of the environment's database (a DB snapshot for an RDS instance, a cluster
//! snapshot for Aurora), waited for until `available`.
//!
//! - The name comes from `database.snapshot-name` (default `deploy-{environment}-{version}-{time}`), made valid for
//!   RDS by [`rds::snapshot_identifier`].
//! - The snapshot is tagged with this action, the version, the environment and the workflow run, so a rerun of the
//!   same workflow run finds it ([`find_reusable`]) and waits for it instead of making a second one.
//! - `database.snapshot-retention = N` keeps the newest N snapshots this action made of this database and deletes
//!   older ones of its own ([`retention_plan`]); a snapshot without this action's tag is never touched.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::time::Instant;

use super::Ctx;
use crate::aws::rds::{self, Snapshot};
use crate::aws::AwsError;
use crate::config::{Database, DatabaseKind};
use crate::domain::versions;
use crate::error::UsageError;
use crate::github::runner::{md_table, Outcome};
use crate::inputs::{Common, Invocation};
use crate::tags;
use crate::text::{md_code, md_text};
use crate::version::Version;
use crate::wait::{Backoff, Check, WaitError};

#[derive(Debug, Clone)]
pub struct Request {
    pub environment: String,
    pub database: Database,
    pub version: Version,
    /// The workflow run (`owner/repo/run-id`); `None` off a runner, where nothing is reused.
    pub run_key: Option<String>,
    /// The run id alone, for the `{run}` placeholder.
    pub run_id: Option<String>,
}

impl Request {
    pub fn from_invocation(inv: &Invocation, common: &Common) -> Result<Request, UsageError> {
        let database = common.required_database("snapshot")?;
        Ok(Request {
            environment: common.environment.name.clone(),
            database,
            version: inv.version()?,
            run_key: inv.github.run_key(),
            run_id: inv.github.run_id.clone(),
        })
    }
}

impl super::Recorded for Request {
    fn subject(&self, common: &Common) -> super::Subject {
        super::Subject::new(common, Some(&self.version))
    }
}

/// Only the client `snapshot` uses.
pub struct Clients {
    pub rds: aws_sdk_rds::Client,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            rds: aws_sdk_rds::Client::new(sdk),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotOutcome {
    pub environment: String,
    pub database: String,
    pub kind: DatabaseKind,
    pub snapshot_id: String,
    pub snapshot_arn: String,
    pub status: String,
    /// The snapshot was made earlier by this same workflow run and reused.
    pub reused: bool,
    pub dry_run: bool,
    pub duration_seconds: u64,
    /// `database.snapshot-retention`, when set.
    pub retention: Option<u32>,
    /// Older snapshots of this action deleted by retention (or, in a dry run, that would be).
    pub deleted: Vec<String>,
    /// Retention deletions that failed or were skipped, with the reason.
    pub retention_notes: Vec<String>,
}

pub async fn run(req: &Request, clients: &Clients, ctx: &Ctx) -> Result<SnapshotOutcome> {
    let started = Instant::now();
    let db = &req.database;
    let what = db_label(db);
    let existing = rds::manual_snapshots(&clients.rds, db)
        .await
        .with_context(|| format!("listing the manual snapshots of {what}"))?;
    // A version whose name another version's snapshot already gives is refused (exit 2) before anything changes.
    versions::refuse_collision(&req.version, &versions::in_snapshots(&existing))?;
    let reusable = req
        .run_key
        .as_deref()
        .and_then(|run| find_reusable(&existing, run, req.version.as_str()));
    let (snapshot, reused) = match reusable {
        Some(s) => {
            tracing::info!(
                "snapshot {} ({}) was made by this workflow run for {}; reusing it",
                s.id,
                s.status,
                req.version
            );
            (s.clone(), true)
        }
        None => {
            let id = snapshot_id(
                &db.snapshot_name,
                &Placeholders {
                    environment: &req.environment,
                    version: req.version.as_str(),
                    time: &utc_stamp(),
                    run: req.run_id.as_deref().unwrap_or("local"),
                },
            );
            if ctx.dry_run {
                tracing::info!("dry run: would create snapshot {id} of {what}, tagged with version {}, and wait until it is available", req.version);
                let plan = retention_plan(&existing, req.database.snapshot_retention, &id);
                report_retention_plan(&plan, true);
                return Ok(outcome(
                    req,
                    Snapshot {
                        id,
                        arn: String::new(),
                        status: "planned".into(),
                        percent: None,
                        created: None,
                        tags: vec![],
                    },
                    false,
                    true,
                    started,
                    plan.delete,
                    plan.notes,
                ));
            }
            let tags = tags::standard(
                &req.environment,
                req.version.as_str(),
                req.run_key.as_deref(),
            );
            (create(&clients.rds, db, &id, &tags, ctx).await?, false)
        }
    };
    if ctx.dry_run {
        let plan = retention_plan(&existing, req.database.snapshot_retention, &snapshot.id);
        report_retention_plan(&plan, true);
        return Ok(outcome(
            req,
            snapshot,
            reused,
            true,
            started,
            plan.delete,
            plan.notes,
        ));
    }
    let snapshot = wait_available(&clients.rds, db, snapshot, ctx).await?;
    tracing::info!(
        "snapshot {} is available ({} after the start of this phase)",
        snapshot.id,
        crate::wait::human(started.elapsed())
    );
    let (deleted, notes) = apply_retention(&clients.rds, db, &snapshot.id, ctx)
        .await
        .with_context(|| {
            format!(
                "snapshot {} of {what} is available; retention (deleting older snapshots of this action) was stopped: the next snapshot run applies it",
                snapshot.id
            )
        })?;
    Ok(outcome(
        req, snapshot, reused, false, started, deleted, notes,
    ))
}

fn outcome(
    req: &Request,
    snapshot: Snapshot,
    reused: bool,
    dry_run: bool,
    started: Instant,
    deleted: Vec<String>,
    retention_notes: Vec<String>,
) -> SnapshotOutcome {
    SnapshotOutcome {
        environment: req.environment.clone(),
        database: req.database.identifier.clone(),
        kind: req.database.kind,
        snapshot_id: snapshot.id,
        snapshot_arn: snapshot.arn,
        status: snapshot.status,
        reused,
        dry_run,
        duration_seconds: started.elapsed().as_secs(),
        retention: req.database.snapshot_retention,
        deleted,
        retention_notes,
    }
}

fn db_label(db: &Database) -> String {
    match db.kind {
        DatabaseKind::Instance => format!("RDS instance {}", db.identifier),
        DatabaseKind::Cluster => format!("Aurora cluster {}", db.identifier),
    }
}

/// How many names [`create`] tries when the one from the template is taken (two runs in the same second).
const NAME_ATTEMPTS: u32 = 5;

/// CreateDB(Cluster)Snapshot under the template's name, or `<name>-2`, `<name>-3`... when another snapshot (of any
/// database in the account and region) already has it. A signal stops it before each attempt.
async fn create(
    client: &aws_sdk_rds::Client,
    db: &Database,
    id: &str,
    tags: &[(String, String)],
    ctx: &Ctx,
) -> Result<Snapshot> {
    let what = db_label(db);
    for n in 1..=NAME_ATTEMPTS {
        let candidate = candidate_id(id, n);
        ctx.stop_if_cancelled(&format!("creating snapshot {candidate} of {what}"))?;
        tracing::info!("creating snapshot {candidate} of {what}");
        match rds::create_snapshot(client, db, &candidate, tags).await {
            Ok(made) => return Ok(made),
            Err(e) if rds::is_snapshot_exists(&e) => {
                tracing::info!(
                    "the name {candidate} is taken by another snapshot; trying the next one"
                );
            }
            Err(e) => return Err(create_error(e, db)),
        }
    }
    bail!(
        "cannot snapshot {what}: the names {id} to {} are all taken; change database.snapshot-name (add {{run}} or {{time}})",
        candidate_id(id, NAME_ATTEMPTS)
    )
}

/// Pure: the `n`-th name to try: the name itself, then `<name>-n`, still a valid identifier of at most 255.
pub fn candidate_id(id: &str, n: u32) -> String {
    if n <= 1 {
        return id.to_string();
    }
    let suffix = format!("-{n}");
    let base = rds::snapshot_identifier(&id[..id.len().min(255 - suffix.len())]);
    format!("{base}{suffix}")
}

/// CreateDB(Cluster)Snapshot errors a person can act on, with the next step.
fn create_error(e: AwsError, db: &Database) -> anyhow::Error {
    let fix = if rds::is_invalid_state(&e) {
        Some("the database must be available to snapshot it; start it (phase state) and run snapshot again")
    } else if rds::is_db_not_found(&e) {
        Some("the database does not exist in this account and region; correct the `database` table of the config")
    } else if rds::is_snapshot_quota_exceeded(&e) {
        Some("the account's manual snapshot quota is used up; delete old snapshots or set database.snapshot-retention")
    } else {
        None
    };
    let what = db_label(db);
    match fix {
        Some(fix) => anyhow::Error::new(e).context(format!("cannot snapshot {what}: {fix}")),
        None => anyhow::Error::new(e).context(format!("cannot snapshot {what}")),
    }
}

/// Waits until the snapshot is `available`, printing status and percent only when they move.
async fn wait_available(
    client: &aws_sdk_rds::Client,
    db: &Database,
    snapshot: Snapshot,
    ctx: &Ctx,
) -> Result<Snapshot> {
    if progress(&snapshot.status) == SnapshotProgress::Available {
        return Ok(snapshot);
    }
    let id = snapshot.id.clone();
    let poller = ctx.poller(format!("snapshot {id} of {}", db_label(db)), Backoff::SLOW);
    // The first look that saw a percent: with the latest, the rate at which RDS moves (looks come sooner near the end).
    let started = tokio::time::Instant::now();
    let first_seen: std::cell::Cell<Option<(Duration, u8)>> = std::cell::Cell::new(None);
    let first_seen = &first_seen;
    let result = poller
        .run(|| {
            let id = id.clone();
            async move {
                let Some(s) = rds::describe_snapshot(client, db, &id).await? else {
                    anyhow::bail!("snapshot {id} disappeared while it was being created (someone deleted it?); run the snapshot phase again");
                };
                match progress(&s.status) {
                    SnapshotProgress::Available => Ok(Check::Done(s)),
                    SnapshotProgress::Creating => {
                        let progress = match s.percent {
                            Some(p) => format!("snapshot {id}: {} {p}%", s.status),
                            None => format!("snapshot {id}: {}", s.status),
                        };
                        let Some(p) = s.percent.and_then(|p| u8::try_from(p.clamp(0, 100)).ok()) else {
                            return Ok(Check::Pending(progress));
                        };
                        let now = (started.elapsed(), p);
                        let first = first_seen.get().unwrap_or(now);
                        first_seen.set(Some(first));
                        Ok(match crate::wait::eta_from_progress(first, now) {
                            Some(eta) => Check::PendingUntil {
                                progress,
                                within: eta.max(Duration::from_secs(1)),
                            },
                            None => Check::Pending(progress),
                        })
                    }
                    SnapshotProgress::Unknown => Ok(Check::Pending(format!(
                        "snapshot {id}: status {:?} (not one deploy-action knows; still waiting for available)",
                        s.status
                    ))),
                    SnapshotProgress::Failed => anyhow::bail!(
                        "snapshot {id} is {}; RDS could not make it: see the RDS console events for {}, then run the snapshot phase again",
                        s.status,
                        db.identifier
                    ),
                }
            }
        })
        .await;
    match result {
        Ok(s) => Ok(s),
        Err(WaitError::Timeout { what, waited, last }) => anyhow::bail!(
            "{what}: not available within {} (last seen: {last}); it is still being made: run the snapshot phase again in this workflow run (it waits for the same snapshot) or raise timeout-minutes",
            crate::wait::human(waited)
        ),
        Err(e) => Err(e.into()),
    }
}

/// Where an RDS snapshot status leaves the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotProgress {
    Available,
    Creating,
    Failed,
    /// A status deploy-action does not know: shown, and waited through until the deadline.
    Unknown,
}

/// Pure: the snapshot statuses RDS documents, sorted into what the wait does with them.
pub fn progress(status: &str) -> SnapshotProgress {
    match status {
        "available" => SnapshotProgress::Available,
        "creating" | "copying" | "pending" | "modifying" | "upgrading" => {
            SnapshotProgress::Creating
        }
        "failed" | "deleting" | "deleted" | "incompatible-restore" | "incompatible-parameters" => {
            SnapshotProgress::Failed
        }
        _unknown => SnapshotProgress::Unknown,
    }
}

/// Values for the name template's placeholders.
#[derive(Debug, Clone)]
pub struct Placeholders<'a> {
    pub environment: &'a str,
    pub version: &'a str,
    /// UTC `yyyymmdd-hhmmss`.
    pub time: &'a str,
    pub run: &'a str,
}

/// Pure: the template with its placeholders filled, made a valid RDS identifier.
pub fn snapshot_id(template: &str, p: &Placeholders) -> String {
    let raw = template
        .replace("{environment}", p.environment)
        .replace("{version}", p.version)
        .replace("{time}", p.time)
        .replace("{run}", p.run);
    rds::snapshot_identifier(&raw)
}

/// Now, UTC, as `yyyymmdd-hhmmss`.
pub fn utc_stamp() -> String {
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::OffsetDateTime::now_utc()
        .format(fmt)
        .unwrap_or_else(|_| "00000000-000000".into())
}

/// Pure: a snapshot this action made in this workflow run for this version, that is not failing: the one a rerun
/// reuses (newest first).
pub fn find_reusable<'a>(snaps: &'a [Snapshot], run: &str, version: &str) -> Option<&'a Snapshot> {
    snaps.iter().find(|s| {
        s.tag(tags::CREATED_BY) == Some(tags::CREATOR)
            && s.tag(tags::RUN) == Some(run)
            && s.tag(tags::VERSION) == Some(version)
            && matches!(
                progress(&s.status),
                SnapshotProgress::Available
                    | SnapshotProgress::Creating
                    | SnapshotProgress::Unknown
            )
    })
}

/// What retention does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPlan {
    pub delete: Vec<String>,
    /// Older snapshots of this action it cannot delete now, with the reason.
    pub notes: Vec<String>,
}

/// Pure: with `keep = Some(n)`, the snapshots of this action beyond the newest `n` (the current one always counts
/// as kept; snapshots still being made count as newest). Snapshots without this action's created-by tag are never
/// listed. Snapshots not `available` cannot be deleted and are noted instead.
pub fn retention_plan(snaps: &[Snapshot], keep: Option<u32>, current: &str) -> RetentionPlan {
    let Some(keep) = keep else {
        return RetentionPlan::default();
    };
    let mut mine: Vec<&Snapshot> = snaps
        .iter()
        .filter(|s| s.tag(tags::CREATED_BY) == Some(tags::CREATOR) && s.id != current)
        .collect();
    // Newest first; no creation time yet means it is being made now.
    mine.sort_by_key(|s| std::cmp::Reverse(s.created.unwrap_or(i64::MAX)));
    let mut plan = RetentionPlan::default();
    // The current snapshot takes one of the `keep` places.
    for s in mine.into_iter().skip(keep.saturating_sub(1) as usize) {
        match progress(&s.status) {
            SnapshotProgress::Available | SnapshotProgress::Failed => {
                plan.delete.push(s.id.clone())
            }
            SnapshotProgress::Creating | SnapshotProgress::Unknown => plan.notes.push(format!(
                "{} is {}; left for the next run to delete",
                s.id, s.status
            )),
        }
    }
    plan
}

fn report_retention_plan(plan: &RetentionPlan, dry_run: bool) {
    for id in &plan.delete {
        if dry_run {
            tracing::info!("dry run: retention would delete snapshot {id}");
        } else {
            tracing::info!("retention: deleting snapshot {id}");
        }
    }
    for note in &plan.notes {
        tracing::info!("retention: {note}");
    }
}

/// Lists again (the new snapshot included) and deletes beyond `snapshot-retention`. Failures are reported, not
/// fatal: the snapshot the phase exists for is available. A signal stops it before the next deletion.
async fn apply_retention(
    client: &aws_sdk_rds::Client,
    db: &Database,
    current: &str,
    ctx: &Ctx,
) -> Result<(Vec<String>, Vec<String>), WaitError> {
    if db.snapshot_retention.is_none() {
        return Ok((vec![], vec![]));
    }
    let snaps = match rds::manual_snapshots(client, db).await {
        Ok(s) => s,
        Err(e) => {
            let note = format!("retention skipped: {e}");
            tracing::warn!("{note}");
            return Ok((vec![], vec![note]));
        }
    };
    let plan = retention_plan(&snaps, db.snapshot_retention, current);
    report_retention_plan(&plan, false);
    let mut deleted = Vec::new();
    let mut notes = plan.notes;
    for id in plan.delete {
        ctx.stop_if_cancelled(&format!("deleting snapshot {id} (retention)"))?;
        match rds::delete_snapshot(client, db, &id).await {
            Ok(()) => deleted.push(id),
            Err(e) => {
                let note = format!("could not delete {id}: {e}");
                tracing::warn!("retention: {note}");
                notes.push(note);
            }
        }
    }
    Ok((deleted, notes))
}

impl Outcome for SnapshotOutcome {
    fn ok(&self) -> bool {
        true
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("snapshot-id", self.snapshot_id.clone()),
            ("snapshot-arn", self.snapshot_arn.clone()),
        ]
    }

    fn summary(&self) -> String {
        let head = if self.dry_run {
            format!(
                "### Snapshot (dry run): would create {} of {}\n\n",
                md_code(&self.snapshot_id),
                md_code(&self.database)
            )
        } else {
            format!(
                "### Snapshot {} of {}: **{}**\n\n",
                md_code(&self.snapshot_id),
                md_code(&self.database),
                md_text(&self.status.to_string())
            )
        };
        let mut s = head;
        s.push_str(&md_table(&["", ""], &self.rows()));
        s
    }

    fn text(&self) -> String {
        let mut s = if self.dry_run {
            format!(
                "dry run: would create snapshot {} of {}\n",
                self.snapshot_id, self.database
            )
        } else {
            format!(
                "snapshot {} of {}: {}\n",
                self.snapshot_id, self.database, self.status
            )
        };
        for row in self.rows() {
            s.push_str(&format!("  {:<12}{}\n", row[0], row[1]));
        }
        s
    }
}

impl SnapshotOutcome {
    fn rows(&self) -> Vec<Vec<String>> {
        let mut rows = vec![
            vec!["environment".into(), self.environment.clone()],
            vec![
                "database".into(),
                format!(
                    "{} ({})",
                    self.database,
                    match self.kind {
                        DatabaseKind::Instance => "RDS instance",
                        DatabaseKind::Cluster => "Aurora cluster",
                    }
                ),
            ],
        ];
        if !self.snapshot_arn.is_empty() {
            rows.push(vec!["arn".into(), self.snapshot_arn.clone()]);
        }
        if self.reused {
            rows.push(vec![
                "reused".into(),
                "made earlier by this workflow run".into(),
            ]);
        }
        rows.push(vec![
            "took".into(),
            crate::wait::human(Duration::from_secs(self.duration_seconds)),
        ]);
        if let Some(n) = self.retention {
            let verb = if self.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            let what = if self.deleted.is_empty() {
                "nothing to delete".to_string()
            } else {
                format!("{verb} {}", self.deleted.join(", "))
            };
            rows.push(vec!["retention".into(), format!("keep {n}: {what}")]);
        }
        for note in &self.retention_notes {
            rows.push(vec!["note".into(), note.clone()]);
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_rds_naming_rules() {
        let cases = [
            (
                "deploy-stage-v1.66.0-20261123-101500",
                "deploy-stage-v1-66-0-20261123-101500",
            ),
            (
                "deploy-prod-api/v2024.10.02.1-x",
                "deploy-prod-api-v2024-10-02-1-x",
            ),
            ("Deploy_Stage--v1+build.5", "deploy-stage-v1-build-5"),
            ("1.0.0-pre", "snapshot-1-0-0-pre"),
            ("-leading", "leading"),
            ("trailing-", "trailing"),
            ("a..b", "a-b"),
            ("ünïcode", "n-code"),
            ("", "snapshot"),
            ("---", "snapshot"),
            ("9", "snapshot-9"),
        ];
        for (raw, want) in cases {
            assert_eq!(rds::snapshot_identifier(raw), want, "{raw:?}");
        }
        let long = rds::snapshot_identifier(&format!("a{}", "-b".repeat(200)));
        assert!(long.len() <= 255 && !long.ends_with('-'), "{long}");
        let long = rds::snapshot_identifier(&format!("{}-{}", "a".repeat(254), "b"));
        assert_eq!(long, "a".repeat(254), "truncated, then no trailing hyphen");
    }

    #[test]
    fn every_identifier_is_valid() {
        for raw in [
            "x", "--a--b--", "v1.2.3", "___", "a/b/c", "Z9", "0-0", "é-é", " a ",
        ] {
            let id = rds::snapshot_identifier(raw);
            assert!((1..=255).contains(&id.len()), "{raw:?} -> {id:?}");
            assert!(
                id.starts_with(|c: char| c.is_ascii_lowercase()),
                "{raw:?} -> {id:?}"
            );
            assert!(id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            assert!(
                !id.contains("--") && !id.ends_with('-'),
                "{raw:?} -> {id:?}"
            );
        }
    }

    #[test]
    fn taken_names_get_a_suffix_and_stay_valid() {
        assert_eq!(candidate_id("deploy-stage-v1", 1), "deploy-stage-v1");
        assert_eq!(candidate_id("deploy-stage-v1", 2), "deploy-stage-v1-2");
        let long = "a".repeat(255);
        let c = candidate_id(&long, 5);
        assert_eq!(c.len(), 255);
        assert!(c.ends_with("a-5"), "{c}");
        let hyphen_at_cut = format!("{}-{}", "a".repeat(252), "bb");
        let c = candidate_id(&hyphen_at_cut, 3);
        assert!(
            !c.contains("--") && c.ends_with("-3") && c.len() <= 255,
            "{c}"
        );
    }

    /// The README's table of version shapes: image tag and snapshot name of each.
    #[test]
    fn every_version_shape_gives_the_readme_s_image_tag_and_snapshot_name() {
        let image = crate::version::ImageTagTemplate::new(None, "core-{version}").unwrap();
        let cases = [
            (
                "v1.66.0",
                "core-v1.66.0",
                "deploy-stage-v1-66-0-20261202-150000",
            ),
            (
                "v3.56.2-rc1",
                "core-v3.56.2-rc1",
                "deploy-stage-v3-56-2-rc1-20261202-150000",
            ),
            (
                "drizzle-init",
                "core-drizzle-init",
                "deploy-stage-drizzle-init-20261202-150000",
            ),
            (
                "api/v2024.10.02.1",
                "core-api-v2024.10.02.1",
                "deploy-stage-api-v2024-10-02-1-20261202-150000",
            ),
            (
                "v1.0.0+build.5",
                "core-v1.0.0-build.5",
                "deploy-stage-v1-0-0-build-5-20261202-150000",
            ),
        ];
        let readme = include_str!("../../README.md");
        for (v, tag, snap) in cases {
            let version = Version::parse(v).unwrap();
            assert_eq!(image.tag_for(&version).unwrap(), tag, "{v}");
            let p = Placeholders {
                environment: "stage",
                version: v,
                time: "20261202-150000",
                run: "1",
            };
            assert_eq!(
                snapshot_id(crate::config::DEFAULT_SNAPSHOT_NAME, &p),
                snap,
                "{v}"
            );
            let row = format!("| `{v}` | `{tag}` | `{snap}` | `{v}` |");
            assert!(readme.contains(&row), "README lacks {row}");
        }
    }

    #[test]
    fn templates_fill_every_placeholder() {
        let p = Placeholders {
            environment: "stage",
            version: "v1.66.0",
            time: "20261123-101500",
            run: "4242",
        };
        assert_eq!(
            snapshot_id(crate::config::DEFAULT_SNAPSHOT_NAME, &p),
            "deploy-stage-v1-66-0-20261123-101500"
        );
        assert_eq!(
            snapshot_id("pre-{version}-run{run}", &p),
            "pre-v1-66-0-run4242"
        );
        assert_eq!(
            snapshot_id("{time}-{environment}", &p),
            "snapshot-20261123-101500-stage"
        );
        let stamp = utc_stamp();
        assert_eq!(stamp.len(), 15, "{stamp}");
        assert_eq!(&stamp[8..9], "-");
    }

    fn snap(id: &str, created: Option<i64>, status: &str, tags: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            id: id.into(),
            arn: format!("arn:{id}"),
            status: status.into(),
            percent: None,
            created,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const MINE: (&str, &str) = (tags::CREATED_BY, tags::CREATOR);

    #[test]
    fn a_rerun_finds_only_its_own_snapshot() {
        let run = (tags::RUN, "acme/app/42");
        let v1 = (tags::VERSION, "v1");
        let snaps = vec![
            snap(
                "other-run",
                Some(30),
                "available",
                &[MINE, (tags::RUN, "acme/app/41"), v1],
            ),
            snap("by-hand", Some(29), "available", &[run, v1]),
            snap(
                "other-version",
                Some(28),
                "available",
                &[MINE, run, (tags::VERSION, "v2")],
            ),
            snap("failed", Some(27), "failed", &[MINE, run, v1]),
            snap("mine", Some(26), "creating", &[MINE, run, v1]),
            snap("mine-older", Some(25), "available", &[MINE, run, v1]),
        ];
        assert_eq!(
            find_reusable(&snaps, "acme/app/42", "v1").map(|s| s.id.as_str()),
            Some("mine")
        );
        assert_eq!(find_reusable(&snaps, "acme/app/43", "v1"), None);
        assert_eq!(find_reusable(&snaps, "acme/app/42", "v3"), None);
    }

    #[test]
    fn retention_keeps_the_newest_of_its_own_and_never_touches_others() {
        let snaps = vec![
            snap("new", None, "creating", &[MINE]),
            snap("by-hand", Some(100), "available", &[]),
            snap("s5", Some(50), "available", &[MINE]),
            snap("s4", Some(40), "available", &[MINE]),
            snap("s3", Some(30), "creating", &[MINE]),
            snap("s2", Some(20), "failed", &[MINE]),
            snap("s1", Some(10), "available", &[MINE]),
            snap(
                "tagged-by-someone-else",
                Some(5),
                "available",
                &[(tags::CREATED_BY, "terraform")],
            ),
        ];
        let cases: Vec<(Option<u32>, Vec<&str>, usize)> = vec![
            (None, vec![], 0),
            (Some(1), vec!["s5", "s4", "s2", "s1"], 1),
            (Some(2), vec!["s4", "s2", "s1"], 1),
            (Some(3), vec!["s2", "s1"], 1),
            (Some(5), vec!["s1"], 0),
            (Some(6), vec![], 0),
            (Some(100), vec![], 0),
        ];
        for (keep, want, notes) in cases {
            let plan = retention_plan(&snaps, keep, "new");
            assert_eq!(plan.delete, want, "keep {keep:?}");
            assert_eq!(plan.notes.len(), notes, "keep {keep:?}: {:?}", plan.notes);
        }
        // The current snapshot is kept even when it is not the newest by creation time.
        let plan = retention_plan(&snaps, Some(1), "s1");
        assert!(!plan.delete.contains(&"s1".to_string()));
        assert!(plan.delete.contains(&"s5".to_string()));
    }

    #[test]
    fn snapshot_statuses() {
        let cases = [
            ("available", SnapshotProgress::Available),
            ("creating", SnapshotProgress::Creating),
            ("copying", SnapshotProgress::Creating),
            ("pending", SnapshotProgress::Creating),
            ("failed", SnapshotProgress::Failed),
            ("deleting", SnapshotProgress::Failed),
            ("incompatible-restore", SnapshotProgress::Failed),
            ("something-new", SnapshotProgress::Unknown),
        ];
        for (status, want) in cases {
            assert_eq!(progress(status), want, "{status}");
        }
    }
}
