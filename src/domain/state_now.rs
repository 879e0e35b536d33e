//! "State now": after a phase fails (or is cancelled), what the environment looks like and what makes sense next.
//!
//! The per-run wrapper calls [`observe`] once the phase has ended in failure and prints the block last, on stdout
//! and in the step summary, and sets the outputs `state` and `next-steps`. The observation is read-only and best
//! effort: when AWS cannot be read (the failure may be AWS itself), the block says so and still lists the next
//! steps. [`next_steps`] is the pure decision, table-tested below.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use crate::aws::ecs;
use crate::config::Environment;
use crate::domain::environment::{self, EnvState, Status};
use crate::domain::maintenance::MaintenanceState;
use crate::domain::rollout::{self, RevisionInfo};
use crate::github::runner::{md_table, text_table, Outcome};
use crate::inputs::{Phase, DEFAULT_CONFIG};

/// The observation must not hold a failing run up: past this it is reported as unreadable.
const OBSERVE_WITHIN: Duration = Duration::from_secs(30);

/// What the run was asked to do, as far as the next steps need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub phase: Phase,
    pub environment: String,
    /// `-c`, when not the default path.
    pub config: Option<PathBuf>,
    /// The `version` input as given (deploy, migrate, run, rollback).
    pub version: Option<String>,
    /// The `state` input as given (state, deploy).
    pub state: Option<String>,
    /// The `task` input (run).
    pub task: Option<String>,
    /// Cancelled (SIGINT/SIGTERM) rather than failed.
    pub cancelled: bool,
}

impl Asked {
    pub fn new(phase: Phase, environment: &str, config: &Path) -> Asked {
        Asked {
            phase,
            environment: environment.to_string(),
            config: (config != Path::new(DEFAULT_CONFIG)).then(|| config.to_path_buf()),
            version: None,
            state: None,
            task: None,
            cancelled: false,
        }
    }

    /// `deploy-action <phase> --env E [-c C] <args>`.
    fn command(&self, phase: &str, args: &[(&str, &str)]) -> String {
        command(&self.environment, self.config.as_deref(), phase, args)
    }

    /// The same run again.
    fn rerun(&self) -> String {
        let pairs: Vec<(&str, &Option<String>)> = match self.phase {
            Phase::Deploy => vec![("version", &self.version), ("state", &self.state)],
            Phase::State => vec![("state", &self.state)],
            Phase::Migrate | Phase::Rollback | Phase::Restore => vec![("version", &self.version)],
            Phase::Run => vec![("task", &self.task), ("version", &self.version)],
            _ => vec![],
        };
        let args: Vec<(&str, &str)> = pairs
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
            .collect();
        self.command(self.phase.name(), &args)
    }
}

/// `deploy-action <phase> --env E [-c C] --k v...`: a command to copy (CLI form; in a workflow, the same inputs).
/// The config path is left out when it is the default.
pub fn command(
    environment: &str,
    config: Option<&Path>,
    phase: &str,
    args: &[(&str, &str)],
) -> String {
    let mut c = format!("deploy-action {phase} --env {environment}");
    if let Some(p) = config.filter(|p| *p != Path::new(DEFAULT_CONFIG)) {
        c.push_str(&format!(" -c {}", p.display()));
    }
    for (k, v) in args {
        c.push_str(&format!(" --{k} {v}"));
    }
    c
}

/// Whether a failure of this phase ends with the block: every phase that can change the environment. `status`
/// only reads (its failure is that AWS could not be read), `preview` works on a review app and names its own rerun
/// and teardown, `check-config` and `iam-policy` never reach AWS.
pub fn applies(phase: Phase) -> bool {
    match phase {
        Phase::State
        | Phase::Snapshot
        | Phase::Migrate
        | Phase::Deploy
        | Phase::Rollback
        | Phase::Run
        | Phase::Restore => true,
        Phase::Status | Phase::Preview | Phase::CheckConfig | Phase::IamPolicy | Phase::Init => {
            false
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceState {
    pub name: String,
    /// `family:revision`.
    pub revision: String,
    pub version: Option<String>,
    pub rollout: String,
    pub desired: i32,
    pub running: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextStep {
    pub command: String,
    pub why: String,
}

/// The block.
#[derive(Debug, Clone, Serialize)]
pub struct StateNow {
    pub environment: String,
    /// `None` when the environment could not be read.
    pub state: Option<EnvState>,
    pub state_reason: Option<String>,
    pub maintenance: Option<MaintenanceState>,
    pub services: Vec<ServiceState>,
    /// `identifier (status)`.
    pub database: Option<String>,
    pub migration_tasks: Vec<String>,
    /// The versions the services ran when last seen good, the most recent first (deploy and rollback only).
    pub known_good_versions: Vec<String>,
    /// Why the environment could not be read, if it could not.
    pub read_error: Option<String>,
    pub next_steps: Vec<NextStep>,
    /// Said under the steps (what is not a command).
    pub notes: Vec<String>,
}

/// What [`next_steps`] decides from, reduced from the observation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeenNow {
    /// `None`: not read.
    pub state: Option<EnvState>,
    pub maintenance: Option<MaintenanceState>,
    /// Each service's version (`None`: not read from its image).
    pub versions: Vec<Option<String>>,
    /// The most recent known-good version first.
    pub known_good: Vec<String>,
    pub migrations_in_flight: usize,
}

impl SeenNow {
    fn one_version(&self) -> Option<&str> {
        let first = self.versions.first()?.as_deref()?;
        self.versions
            .iter()
            .all(|v| v.as_deref() == Some(first))
            .then_some(first)
    }
}

/// Pure: the next commands that make sense after `asked` ended as it did, in the order to consider them.
pub fn next_steps(asked: &Asked, seen: &SeenNow) -> Vec<NextStep> {
    let mut out = vec![];
    let mut push = |command: String, why: &str| {
        if !out.iter().any(|s: &NextStep| s.command == command) {
            out.push(NextStep {
                command,
                why: why.to_string(),
            });
        }
    };
    let maintenance_configured = !matches!(seen.maintenance, Some(MaintenanceState::NotConfigured));
    let state = |s: &str| asked.command("state", &[("state", s)]);
    let rerun_why = match (asked.cancelled, asked.phase) {
        (true, _) => "resume: the run picks up what is already done",
        (false, Phase::Migrate) => {
            "run the migration again once it is fixed (it must be safe to run twice)"
        }
        (false, _) => "run it again once the cause above is fixed; what is done already is kept",
    };
    push(asked.rerun(), rerun_why);
    let good = seen.known_good.first().map(String::as_str);
    match asked.phase {
        Phase::Deploy | Phase::Rollback => {
            match good {
                Some(good) if seen.one_version() != Some(good) => push(
                    asked.command("rollback", &[("version", good)]),
                    &format!("every service back to {good}, the last known-good release"),
                ),
                _ => {}
            }
            let on_good = good.is_some() && seen.one_version() == good;
            if on_good && seen.state == Some(EnvState::Restricted) {
                push(
                    state("running"),
                    &format!(
                        "reopen on {}, only if it works with the database as it is now",
                        good.unwrap_or_default()
                    ),
                );
            }
        }
        Phase::State => {
            if asked.state.as_deref() != Some("running") {
                push(state("running"), "back to running instead");
            }
        }
        Phase::Migrate | Phase::Snapshot | Phase::Run | Phase::Restore => {}
        Phase::Status | Phase::Preview | Phase::CheckConfig | Phase::IamPolicy | Phase::Init => {}
    }
    if seen.state == Some(EnvState::Mixed) && maintenance_configured {
        push(
            state("restricted"),
            "settle every service with maintenance on: a known state to work from",
        );
    }
    if asked.phase == Phase::Migrate {
        if let Some(step) = restore_step(asked) {
            push(step.command, &step.why);
        }
    }
    if seen.state.is_none() {
        push(
            asked.command("status", &[]),
            "read the environment again once AWS answers",
        );
    }
    out
}

/// After a failed migration: phase `restore` brings the database back from the snapshot taken for this version.
fn restore_step(asked: &Asked) -> Option<NextStep> {
    let version = asked.version.as_deref()?;
    Some(NextStep {
        command: asked.command("restore", &[("version", version)]),
        why: format!(
            "if the migration left the database half-migrated: bring it back from the snapshot taken for {version}"
        ),
    })
}

/// Pure: what is said under the steps.
pub fn notes(asked: &Asked, newest_snapshot: Option<&str>) -> Vec<String> {
    let mut n = vec![];
    if asked.phase == Phase::Migrate && restore_step(asked).is_none() {
        n.push(match newest_snapshot {
            Some(id) => format!(
                "if the migration task started, the database may be half-migrated: restore snapshot {id} (the newest) with phase restore --snapshot-id"
            ),
            None => "if the migration task started, the database may be half-migrated, and no snapshot was found".into(),
        });
    }
    if asked.cancelled {
        n.push("cancelled: nothing more was changed after the signal".into());
    }
    n
}

/// Only the clients the observation uses.
pub struct Clients {
    pub env: environment::Clients,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            env: environment::Clients::new(sdk),
        }
    }
}

/// Reads the environment (read-only, bounded) and decides the next steps.
pub async fn observe(env: &Environment, c: &Clients, asked: &Asked) -> StateNow {
    let read = async {
        let status = environment::observe(env, &c.env).await?;
        let known_good = match asked.phase {
            Phase::Deploy | Phase::Rollback => known_good_versions(&c.env.ecs, &status).await?,
            _ => vec![],
        };
        anyhow::Ok((status, known_good))
    };
    let read = match tokio::time::timeout(OBSERVE_WITHIN, read).await {
        Ok(r) => r.map_err(|e| format!("{e:#}")),
        Err(_) => Err(format!(
            "no answer within {}",
            crate::wait::human(OBSERVE_WITHIN)
        )),
    };
    match read {
        Ok((status, known_good)) => from_status(&status, known_good, asked),
        Err(e) => {
            let seen = SeenNow::default();
            StateNow {
                environment: env.name.clone(),
                state: None,
                state_reason: None,
                maintenance: None,
                services: vec![],
                database: None,
                migration_tasks: vec![],
                known_good_versions: vec![],
                read_error: Some(e),
                next_steps: next_steps(asked, &seen),
                notes: notes(asked, None),
            }
        }
    }
}

/// Pure: the block from what was observed.
pub fn from_status(status: &Status, known_good: Vec<String>, asked: &Asked) -> StateNow {
    let seen = SeenNow {
        state: Some(status.state),
        maintenance: Some(status.maintenance),
        versions: status.services.iter().map(|s| s.version.clone()).collect(),
        known_good: known_good.clone(),
        migrations_in_flight: status.migration_tasks.len(),
    };
    let snapshot = status
        .database
        .as_ref()
        .and_then(|d| d.newest_snapshot.as_deref());
    StateNow {
        environment: status.environment.clone(),
        state: Some(status.state),
        state_reason: status.state_reason.clone(),
        maintenance: Some(status.maintenance),
        services: status
            .services
            .iter()
            .map(|s| ServiceState {
                name: s.name.clone(),
                revision: ecs::td_short(&s.task_definition).to_string(),
                version: s.version.clone(),
                rollout: s.rollout.to_string(),
                desired: s.desired,
                running: s.running,
            })
            .collect(),
        database: status
            .database
            .as_ref()
            .map(|d| format!("{} ({})", d.identifier, d.status)),
        migration_tasks: status.migration_tasks.clone(),
        known_good_versions: known_good,
        read_error: None,
        next_steps: next_steps(asked, &seen),
        notes: notes(asked, snapshot),
    }
}

/// The known-good versions of the first service's family (every core service is released together).
async fn known_good_versions(
    ecs_client: &aws_sdk_ecs::Client,
    status: &Status,
) -> anyhow::Result<Vec<String>> {
    let Some(first) = status.services.first() else {
        return Ok(vec![]);
    };
    let family = ecs::td_family(&first.task_definition).to_string();
    let arns = ecs::active_revisions(ecs_client, &family).await?;
    let revisions: Vec<RevisionInfo> = stream::iter(arns.iter())
        .map(|arn| async move {
            let tags = ecs::tags(ecs_client, arn).await?;
            Ok::<_, anyhow::Error>(RevisionInfo::new(arn, &tags))
        })
        .buffered(8)
        .try_collect()
        .await?;
    Ok(rollout::known_good_versions(&revisions))
}

impl StateNow {
    fn state_line(&self) -> String {
        match (&self.state, &self.read_error) {
            (Some(s), _) => {
                let m = match self.maintenance {
                    Some(MaintenanceState::NotConfigured) | None => String::new(),
                    Some(m) => format!(", maintenance {m}"),
                };
                format!("environment {} is {s}{m}", self.environment)
            }
            (None, Some(e)) => format!("environment {}: could not be read ({e})", self.environment),
            (None, None) => format!("environment {}: not read", self.environment),
        }
    }

    fn service_rows(&self) -> Vec<Vec<String>> {
        self.services
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.revision.clone(),
                    s.version.clone().unwrap_or_else(|| "?".into()),
                    format!("{}/{}", s.running, s.desired),
                    s.rollout.clone(),
                ]
            })
            .collect()
    }

    fn detail_lines(&self) -> Vec<String> {
        let mut d = vec![];
        if let Some(r) = &self.state_reason {
            d.push(format!(
                "why {}: {r}",
                self.state.map(|s| s.to_string()).unwrap_or_default()
            ));
        }
        if let Some(db) = &self.database {
            d.push(format!("database {db}"));
        }
        if !self.migration_tasks.is_empty() {
            d.push(format!(
                "{} migration task(s) in flight: {}",
                self.migration_tasks.len(),
                self.migration_tasks.join(", ")
            ));
        }
        if !self.known_good_versions.is_empty() {
            d.push(format!(
                "known-good versions, newest first: {}",
                self.known_good_versions.join(", ")
            ));
        }
        d
    }

    /// The text block, printed last on stdout.
    pub fn text(&self) -> String {
        let mut s = format!("\nstate now: {}\n", self.state_line());
        if !self.services.is_empty() {
            s.push_str(&indent(&text_table(
                &["SERVICE", "REVISION", "VERSION", "RUNNING", "ROLL-OUT"],
                &self.service_rows(),
            )));
        }
        for l in self.detail_lines() {
            s.push_str(&format!("  {l}\n"));
        }
        s.push_str("next:\n");
        for step in &self.next_steps {
            s.push_str(&format!("  {}\n      {}\n", step.command, step.why));
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s
    }

    /// The markdown block, appended last to the step summary.
    pub fn markdown(&self) -> String {
        let mut s = format!("### State now: {}\n\n", self.state_line());
        if !self.services.is_empty() {
            s.push_str(&md_table(
                &["service", "revision", "version", "running", "roll-out"],
                &self.service_rows(),
            ));
            s.push('\n');
        }
        for l in self.detail_lines() {
            s.push_str(&format!("- {l}\n"));
        }
        s.push_str("\n**Next**\n\n");
        for step in &self.next_steps {
            s.push_str(&format!("- `{}`: {}\n", step.command, step.why));
        }
        for n in &self.notes {
            s.push_str(&format!("\n> {n}\n"));
        }
        s
    }

    pub fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "state",
                self.state
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            ),
            (
                "next-steps",
                self.next_steps
                    .iter()
                    .map(|s| s.command.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ]
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// A phase's outcome that ended in failure, followed by the block (outputs, summary, text and JSON).
pub struct Then<O> {
    pub outcome: O,
    pub now: StateNow,
}

impl<O: Serialize> Serialize for Then<O> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.outcome).map_err(serde::ser::Error::custom)?;
        let now = serde_json::to_value(&self.now).map_err(serde::ser::Error::custom)?;
        match &mut v {
            serde_json::Value::Object(m) => {
                m.insert("state_now".into(), now);
            }
            other => {
                *other = serde_json::json!({ "outcome": other.clone(), "state_now": now });
            }
        }
        v.serialize(s)
    }
}

impl<O: Outcome> Outcome for Then<O> {
    fn ok(&self) -> bool {
        self.outcome.ok()
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        let ours = self.now.outputs();
        let mut o: Vec<(&'static str, String)> = self
            .outcome
            .outputs()
            .into_iter()
            .filter(|(k, _)| !ours.iter().any(|(n, _)| n == k))
            .collect();
        o.extend(ours);
        o
    }

    fn summary(&self) -> String {
        format!(
            "{}\n\n{}",
            self.outcome.summary().trim_end(),
            self.now.markdown()
        )
    }

    fn text(&self) -> String {
        let t = self.outcome.text();
        format!("{}\n{}", t.trim_end(), self.now.text())
    }
}

/// A phase that ended in an error (no outcome): the error and the block.
#[derive(Serialize)]
pub struct AfterError {
    pub error: String,
    pub state_now: StateNow,
}

impl Outcome for AfterError {
    fn ok(&self) -> bool {
        false
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        self.state_now.outputs()
    }

    fn summary(&self) -> String {
        self.state_now.markdown()
    }

    fn text(&self) -> String {
        self.state_now.text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EnvState as S;
    use MaintenanceState as M;

    fn asked(phase: Phase, version: Option<&str>, state: Option<&str>, cancelled: bool) -> Asked {
        Asked {
            version: version.map(str::to_string),
            state: state.map(str::to_string),
            cancelled,
            ..Asked::new(phase, "stage", Path::new("deploy.toml"))
        }
    }

    fn seen(
        state: Option<EnvState>,
        m: MaintenanceState,
        versions: &[&str],
        good: &[&str],
    ) -> SeenNow {
        SeenNow {
            state,
            maintenance: Some(m),
            versions: versions.iter().map(|v| Some(v.to_string())).collect(),
            known_good: good.iter().map(|v| v.to_string()).collect(),
            migrations_in_flight: 0,
        }
    }

    fn commands(a: &Asked, s: &SeenNow) -> Vec<String> {
        next_steps(a, s).into_iter().map(|s| s.command).collect()
    }

    #[test]
    fn next_steps_by_phase_and_what_was_seen() {
        let e = "--env stage -c deploy.toml";
        type Case = (&'static str, Asked, SeenNow, Vec<String>);
        let cases: Vec<Case> = vec![
            (
                "deploy failed and rolled back, left restricted: rerun, or reopen on the old version",
                asked(Phase::Deploy, Some("v1.1.0"), Some("running"), false),
                seen(Some(S::Restricted), M::On, &["v1.0.0", "v1.0.0"], &["v1.0.0"]),
                vec![
                    format!("deploy-action deploy {e} --version v1.1.0 --state running"),
                    format!("deploy-action state {e} --state running"),
                ],
            ),
            (
                "deploy failed half-way: services disagree, roll back to the known-good version",
                asked(Phase::Deploy, Some("v1.1.0"), None, false),
                seen(Some(S::Mixed), M::Off, &["v1.1.0", "v1.0.0"], &["v1.0.0"]),
                vec![
                    format!("deploy-action deploy {e} --version v1.1.0"),
                    format!("deploy-action rollback {e} --version v1.0.0"),
                    format!("deploy-action state {e} --state restricted"),
                ],
            ),
            (
                "rollback failed, nothing known good",
                asked(Phase::Rollback, None, None, false),
                seen(Some(S::Running), M::Off, &["v1.1.0"], &[]),
                vec![format!("deploy-action rollback {e}")],
            ),
            (
                "migration failed: rerun, or restore the database from the version's snapshot",
                asked(Phase::Migrate, Some("v2.0.0"), None, false),
                seen(Some(S::DbOnly), M::On, &["v1.0.0"], &[]),
                vec![
                    format!("deploy-action migrate {e} --version v2.0.0"),
                    format!("deploy-action restore {e} --version v2.0.0"),
                ],
            ),
            (
                "state change cancelled half-way: resume, or go back to running",
                asked(Phase::State, None, Some("db-only"), true),
                seen(Some(S::Restricted), M::On, &["v1"], &[]),
                vec![
                    format!("deploy-action state {e} --state db-only"),
                    format!("deploy-action state {e} --state running"),
                ],
            ),
            (
                "state running failed with maintenance half-way: rerun, or settle restricted",
                asked(Phase::State, None, Some("running"), false),
                seen(Some(S::Mixed), M::Partial, &["v1"], &[]),
                vec![
                    format!("deploy-action state {e} --state running"),
                    format!("deploy-action state {e} --state restricted"),
                ],
            ),
            (
                "mixed without maintenance configured: no state restricted",
                asked(Phase::Snapshot, None, None, false),
                seen(Some(S::Mixed), M::NotConfigured, &["v1"], &[]),
                vec![format!("deploy-action snapshot {e}")],
            ),
            (
                "AWS not readable: rerun, then status",
                asked(Phase::Run, Some("v1"), None, false),
                SeenNow::default(),
                vec![
                    format!("deploy-action run {e} --version v1"),
                    format!("deploy-action status {e}"),
                ],
            ),
        ];
        for (name, a, s, want) in cases {
            assert_eq!(commands(&a, &s), want, "{name}");
        }
    }

    #[test]
    fn the_default_config_path_is_left_out_of_the_commands() {
        let a = Asked::new(Phase::Snapshot, "prod", Path::new(DEFAULT_CONFIG));
        assert_eq!(a.rerun(), "deploy-action snapshot --env prod");
    }

    #[test]
    fn a_failed_migration_names_the_snapshot_to_restore() {
        let a = asked(Phase::Migrate, None, None, false);
        let n = notes(&a, Some("stage-pre-v2"));
        assert!(n[0].contains("restore snapshot stage-pre-v2"), "{n:?}");
        let with_version = asked(Phase::Migrate, Some("v2"), None, true);
        let n = notes(&with_version, Some("x"));
        assert_eq!(n.len(), 1, "the restore step says it: {n:?}");
        assert!(n[0].starts_with("cancelled"), "{n:?}");
        assert!(notes(&asked(Phase::Deploy, Some("v2"), None, false), Some("x")).is_empty());
    }

    #[test]
    fn the_block_says_state_maintenance_services_and_next() {
        let now = StateNow {
            environment: "stage".into(),
            state: Some(S::Restricted),
            state_reason: None,
            maintenance: Some(M::On),
            services: vec![ServiceState {
                name: "core".into(),
                revision: "stage-core:1".into(),
                version: Some("v1.0.0".into()),
                rollout: "completed".into(),
                desired: 2,
                running: 2,
            }],
            database: Some("stage-db (available)".into()),
            migration_tasks: vec![],
            known_good_versions: vec!["v1.0.0".into()],
            read_error: None,
            next_steps: vec![NextStep {
                command: "deploy-action state --env stage --state running".into(),
                why: "reopen".into(),
            }],
            notes: vec![],
        };
        let t = now.text();
        assert!(
            t.starts_with("\nstate now: environment stage is restricted, maintenance on\n"),
            "{t}"
        );
        assert!(
            t.contains("core     stage-core:1  v1.0.0   2/2      completed"),
            "{t}"
        );
        assert!(
            t.contains("next:\n  deploy-action state --env stage --state running\n      reopen\n"),
            "{t}"
        );
        let md = now.markdown();
        assert!(
            md.starts_with("### State now: environment stage is restricted, maintenance on"),
            "{md}"
        );
        assert!(
            md.contains("- `deploy-action state --env stage --state running`: reopen"),
            "{md}"
        );
        assert_eq!(
            now.outputs(),
            vec![
                ("state", "restricted".to_string()),
                (
                    "next-steps",
                    "deploy-action state --env stage --state running".to_string()
                )
            ]
        );
    }
}
