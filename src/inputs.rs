//! Inputs: two front ends, one request.
//!
//! # Precedence (the one place it is written down)
//! For every input, the first of these that is set and not empty wins:
//! 1. the CLI flag (`deploy-action deploy --version v1.2.3`), or the subcommand for `phase`;
//! 2. the Action input, read from `INPUT_<NAME>` with the name upper-cased and hyphens kept
//!    (`INPUT_TIMEOUT-MINUTES`); the runner sets an empty value for inputs the workflow leaves out, and empty
//!    counts as not set;
//! 3. the environment's entry in the config file (`timeout-minutes`, for example), then its `[defaults]`;
//! 4. the built-in default documented in `action.yml` and the README.
//!
//! Inputs are resolved into typed requests before any AWS client is built, so bad input exits with code 2 and
//! makes no AWS call.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Environment};
use crate::error::UsageError;
use crate::version::Version;

pub const DEFAULT_CONFIG: &str = ".github/deploy.toml";
pub const DEFAULT_TIMEOUT_MINUTES: u64 = 30;

/// Every input the action knows, as strings, before validation. Field names are the Action input names.
#[derive(Debug, Default, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", default)]
pub struct RawInputs {
    pub phase: Option<String>,
    pub environment: Option<String>,
    pub version: Option<String>,
    pub state: Option<String>,
    pub config: Option<String>,
    pub dry_run: Option<String>,
    pub timeout: Option<String>,
    pub timeout_minutes: Option<String>,
    pub github_token: Option<String>,
    pub output: Option<String>,
    pub maintenance_header_name: Option<String>,
    pub maintenance_header_value: Option<String>,
    pub skip_drain: Option<String>,
    pub max_snapshot_age: Option<String>,
    pub allow_without_snapshot: Option<String>,
    pub smoke_url: Option<String>,
    pub smoke_status: Option<String>,
    pub fast: Option<String>,
    pub wait: Option<String>,
    pub keep_revisions: Option<String>,
    pub task: Option<String>,
    pub command: Option<String>,
    pub override_freeze: Option<String>,
    pub webhook_url: Option<String>,
    pub pr_number: Option<String>,
    pub github_deployments: Option<String>,
    /// Deploy, migrate, run, preview: how long the preflight waits for images still being pushed.
    pub wait_for_images: Option<String>,
    /// `iam-policy`: the phase whose policy to print (all when unset).
    pub policy_phase: Option<String>,
    /// `restore`: the snapshot to restore.
    pub snapshot_id: Option<String>,
    /// `restore`: accept a snapshot this action did not make.
    pub allow_foreign_snapshot: Option<String>,
}

macro_rules! merge_fields {
    ($hi:ident, $lo:ident, $($f:ident),*) => { RawInputs { $($f: $hi.$f.or($lo.$f)),* } };
}

impl RawInputs {
    /// `INPUT_*` variables from the process environment (empty values dropped).
    pub fn from_env() -> Result<RawInputs, UsageError> {
        let (vars, not_text) = env_vars("INPUT_");
        if let Some(name) = not_text.first() {
            return Err(UsageError::new(format!(
                "Action input {name}: not valid UTF-8 text; give the input as text in the `with:` block of the step"
            )));
        }
        let vars = vars.into_iter().filter(|(_, v)| !v.trim().is_empty());
        envy::prefixed("INPUT_").from_iter(vars).map_err(|e| {
            UsageError::new(format!(
                "Action inputs: {e}; check the `with:` block of the step"
            ))
        })
    }

    /// `self` wins over `lower`, field by field.
    pub fn or(self, lower: RawInputs) -> RawInputs {
        let hi = self;
        let lo = lower;
        merge_fields!(
            hi,
            lo,
            phase,
            environment,
            version,
            state,
            config,
            dry_run,
            timeout,
            timeout_minutes,
            github_token,
            output,
            maintenance_header_name,
            maintenance_header_value,
            skip_drain,
            max_snapshot_age,
            allow_without_snapshot,
            smoke_url,
            smoke_status,
            fast,
            wait,
            keep_revisions,
            task,
            command,
            override_freeze,
            webhook_url,
            pr_number,
            github_deployments,
            wait_for_images,
            policy_phase,
            snapshot_id,
            allow_foreign_snapshot
        )
    }

    /// The secret inputs' values straight from `INPUT_*`, valid or not, even when the rest of the inputs cannot be
    /// read (a variable that is not UTF-8): masked before the error that says so is printed.
    pub fn secrets_from_env() -> Vec<String> {
        const SECRET: [&str; 4] = [
            "INPUT_GITHUB-TOKEN",
            "INPUT_MAINTENANCE-HEADER-NAME",
            "INPUT_MAINTENANCE-HEADER-VALUE",
            "INPUT_WEBHOOK-URL",
        ];
        let (vars, _) = env_vars("INPUT_");
        vars.into_iter()
            .filter(|(k, v)| {
                let k = k
                    .to_ascii_uppercase()
                    .replace('_', "-")
                    .replacen("INPUT-", "INPUT_", 1);
                SECRET.contains(&k.as_str()) && !v.trim().is_empty()
            })
            .map(|(_, v)| v)
            .collect()
    }

    /// Secret values: masked before anything could print them.
    pub fn secrets(&self) -> Vec<&str> {
        [
            &self.github_token,
            &self.maintenance_header_name,
            &self.maintenance_header_value,
            &self.webhook_url,
        ]
        .into_iter()
        .filter_map(|s| s.as_deref())
        .filter(|s| !s.is_empty())
        .collect()
    }
}

/// The process environment's variables whose name starts with `prefix`, without panicking on bytes that are not
/// UTF-8 (`std::env::vars` would): those come back by name (lossy, value never shown) in the second list.
pub fn env_vars(prefix: &str) -> (Vec<(String, String)>, Vec<String>) {
    let (mut vars, mut not_text) = (vec![], vec![]);
    for (k, v) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if !name.starts_with(prefix) {
            continue;
        }
        match (k.into_string(), v.into_string()) {
            (Ok(k), Ok(v)) => vars.push((k, v)),
            (k, _) => not_text.push(match k {
                Ok(k) => k,
                Err(k) => k.to_string_lossy().into_owned(),
            }),
        }
    }
    (vars, not_text)
}

/// Input parsing helpers: each error names the input and the fix.
pub fn parse_bool(name: &str, value: Option<&str>, default: bool) -> Result<bool, UsageError> {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" => Ok(false),
            _ => Err(UsageError::new(format!(
                "input `{name}`: {v:?} is not a boolean; use true or false"
            ))),
        },
    }
}

pub fn parse_u64(
    name: &str,
    value: Option<&str>,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, UsageError> {
    let Some(v) = value else { return Ok(None) };
    // Not trimmed: the CLI refuses " 5 ", and so does the Action form.
    match v.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(UsageError::new(format!(
            "input `{name}`: {v:?} is not a whole number from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

/// The longest duration a duration input takes (a year): anything longer is a typo, and adding it to a time
/// could overflow.
pub const MAX_DURATION_DAYS: u64 = 366;

/// `90m`, `2h`, `1h 30m`, or a number of minutes; at most [`MAX_DURATION_DAYS`] days.
pub fn parse_duration(name: &str, value: Option<&str>) -> Result<Option<Duration>, UsageError> {
    let Some(v) = value else { return Ok(None) };
    let v = v.trim();
    let max = Duration::from_secs(MAX_DURATION_DAYS * 86_400);
    let parsed = match v.parse::<u64>() {
        Ok(minutes) => minutes.checked_mul(60).map(Duration::from_secs),
        Err(_) => Some(humantime::parse_duration(v).map_err(|_| {
            UsageError::new(format!(
                "input `{name}`: {v:?} is not a duration; use e.g. 2h, 90m or a number of minutes"
            ))
        })?),
    };
    match parsed {
        Some(d) if d <= max => Ok(Some(d)),
        _ => Err(UsageError::new(format!(
            "input `{name}`: {v:?} is longer than {MAX_DURATION_DAYS} days; use e.g. 2h, 90m or a number of minutes up to that"
        ))),
    }
}

/// Which phase to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Status,
    State,
    Snapshot,
    Migrate,
    Restore,
    Deploy,
    Rollback,
    Run,
    Preview,
    CheckConfig,
    IamPolicy,
    Init,
}

impl Phase {
    pub fn parse(s: &str) -> Result<Phase, UsageError> {
        <Phase as ValueEnum>::from_str(s.trim(), true).map_err(|_| {
            let names: Vec<String> = Phase::value_variants()
                .iter()
                .filter_map(|p| p.to_possible_value())
                .map(|v| v.get_name().to_string())
                .collect();
            UsageError::new(format!(
                "input `phase`: unknown phase {s:?}; use one of: {}",
                names.join(", ")
            ))
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Status => "status",
            Phase::State => "state",
            Phase::Snapshot => "snapshot",
            Phase::Migrate => "migrate",
            Phase::Restore => "restore",
            Phase::Deploy => "deploy",
            Phase::Rollback => "rollback",
            Phase::Run => "run",
            Phase::Preview => "preview",
            Phase::CheckConfig => "check-config",
            Phase::IamPolicy => "iam-policy",
            Phase::Init => "init",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// For a person.
    #[default]
    Text,
    /// For a machine: the outcome as one JSON object on stdout.
    Json,
}

/// deploy-action: take an ECS + RDS backend through a release one safe phase at a time.
///
/// As a GitHub Action it reads its inputs from INPUT_* variables; locally each phase is a subcommand.
#[derive(Debug, Parser)]
#[command(name = "deploy-action", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report an environment: derived state, services, database, maintenance, migrations in flight (read-only).
    Status(StatusArgs),
    /// Move an environment to running, restricted, db-only or stopped.
    State(StateArgs),
    /// Take a manual snapshot of the environment's database and wait until it is available.
    Snapshot(SnapshotArgs),
    /// Run the database migration task for a version, after checking for a fresh snapshot.
    Migrate(MigrateArgs),
    /// Bring the database back from a snapshot under the same name and endpoint, keeping the original.
    Restore(RestoreArgs),
    /// Deploy a version to every core service and wait until ECS completes the roll-out.
    Deploy(DeployArgs),
    /// Roll every core service back to its last known-good revision or to a named version.
    Rollback(RollbackArgs),
    /// Run a configured one-off task, watched like a migration.
    Run(RunArgs),
    /// Create or update the review app of a pull request (state stopped: tear it down).
    Preview(PreviewArgs),
    /// Validate the config file; every error names the key and the fix.
    CheckConfig(CheckConfigArgs),
    /// Print the least-privilege IAM policy for an environment's phases (from the config alone; no AWS call).
    IamPolicy(IamPolicyArgs),
    /// Write a config for an environment that runs now, read from AWS (read-only; never overwrites without --force).
    Init(InitArgs),
}

#[derive(Debug, Args, Default)]
pub struct CommonArgs {
    /// Environment name from the config file.
    #[arg(long = "env", short = 'e', visible_alias = "environment")]
    pub environment: Option<String>,
    /// Config file [default: .github/deploy.toml].
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Print what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Bound on every wait of the phase, as a duration: 90s, 5m, 1h 30m [default: from config, else 30m].
    #[arg(long)]
    pub timeout: Option<String>,
    /// Bound on every wait of the phase, in minutes (or --timeout; not both).
    #[arg(long)]
    pub timeout_minutes: Option<u64>,
    /// text for people, json for machines.
    #[arg(long, value_enum)]
    pub output: Option<OutputFormat>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct MaintenanceArgs {
    /// Name of the secret header that bypasses maintenance (or env DEPLOY_MAINTENANCE_HEADER_NAME).
    #[arg(long, env = "DEPLOY_MAINTENANCE_HEADER_NAME", hide_env_values = true)]
    pub maintenance_header_name: Option<String>,
    /// Value of the secret bypass header (or env DEPLOY_MAINTENANCE_HEADER_VALUE).
    #[arg(long, env = "DEPLOY_MAINTENANCE_HEADER_VALUE", hide_env_values = true)]
    pub maintenance_header_value: Option<String>,
    /// Do not wait for traffic to drain after maintenance goes on.
    #[arg(long)]
    pub skip_drain: bool,
}

/// Flags of every phase that changes an environment (the gates and the notification).
#[derive(Debug, Args, Default)]
pub struct ReleaseArgs {
    /// Go ahead during a freeze window; the reason goes into the log, the summary and the deployment record.
    #[arg(long, value_name = "REASON")]
    pub override_freeze: Option<String>,
    /// Post the outcome as one Slack-compatible message to this URL (or env DEPLOY_WEBHOOK_URL).
    #[arg(long, env = "DEPLOY_WEBHOOK_URL", hide_env_values = true)]
    pub webhook_url: Option<String>,
    /// Deploy, migrate, run, preview: wait this long (2m, 10m, or minutes) for the version's images to be pushed
    /// [default: 0, look once].
    #[arg(long, value_name = "DURATION")]
    pub wait_for_images: Option<String>,
}

impl ReleaseArgs {
    fn fill(&self, r: &mut RawInputs) {
        r.override_freeze = s(&self.override_freeze);
        r.webhook_url = s(&self.webhook_url);
        r.wait_for_images = s(&self.wait_for_images);
    }
}

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Target state: running, restricted, db-only or stopped.
    #[arg(long)]
    pub state: Option<String>,
    #[command(flatten)]
    pub maintenance: MaintenanceArgs,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// The version the snapshot is taken for (goes into its name and tags).
    #[arg(long)]
    pub version: Option<String>,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// The version whose migration image runs.
    #[arg(long)]
    pub version: Option<String>,
    /// Newest snapshot must be younger than this [default: 2h].
    #[arg(long)]
    pub max_snapshot_age: Option<String>,
    /// Run without a fresh snapshot (said loudly in the log and summary).
    #[arg(long)]
    pub allow_without_snapshot: bool,
    #[command(flatten)]
    pub maintenance: MaintenanceArgs,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// The snapshot to restore.
    #[arg(long)]
    pub snapshot_id: Option<String>,
    /// Or: restore the newest snapshot this action took for this version in this environment.
    #[arg(long)]
    pub version: Option<String>,
    /// Accept a snapshot this action did not make.
    #[arg(long)]
    pub allow_foreign_snapshot: bool,
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// The version to deploy.
    #[arg(long)]
    pub version: Option<String>,
    /// restricted keeps maintenance on; running lifts it after every service completed [default: running].
    #[arg(long)]
    pub state: Option<String>,
    /// URL requested after the roll-out; a wrong status rolls back.
    #[arg(long)]
    pub smoke_url: Option<String>,
    /// Expected HTTP status of the smoke check [default: 200].
    #[arg(long)]
    pub smoke_status: Option<u16>,
    /// After a successful deploy, keep this many newest revisions per service family; older ones of this action
    /// that nothing uses are deregistered [default: 10].
    #[arg(long)]
    pub keep_revisions: Option<u64>,
    #[command(flatten)]
    pub maintenance: MaintenanceArgs,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Roll back to this version instead of the last known-good revision.
    #[arg(long)]
    pub version: Option<String>,
    /// Emergency mode: update every service and return without waiting (unless --wait).
    #[arg(long)]
    pub fast: bool,
    /// With --fast: wait for the roll-out after all.
    #[arg(long)]
    pub wait: bool,
    /// Keep this many newest revisions per family when deregistering bad ones [default: 10].
    #[arg(long)]
    pub keep_revisions: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// Task name from the environment's [tasks] table.
    #[arg(long)]
    pub task: Option<String>,
    /// The version whose image the task runs.
    #[arg(long)]
    pub version: Option<String>,
    /// Command override as a JSON list of strings, e.g. '["rake","db:seed"]'.
    #[arg(long)]
    pub command: Option<String>,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub release: ReleaseArgs,
    /// The pull request number [default: from the event payload, $GITHUB_EVENT_PATH].
    #[arg(long)]
    pub pr_number: Option<u64>,
    /// The version the review app runs (e.g. pr-123-<sha>); required to bring it up.
    #[arg(long)]
    pub version: Option<String>,
    /// running brings the review app up (the default); stopped tears it down.
    #[arg(long)]
    pub state: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Config file [default: .github/deploy.toml].
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Check only this environment.
    #[arg(long = "env", short = 'e', visible_alias = "environment")]
    pub environment: Option<String>,
    #[arg(long, value_enum)]
    pub output: Option<OutputFormat>,
}

#[derive(Debug, Args)]
pub struct IamPolicyArgs {
    /// Config file [default: .github/deploy.toml].
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Only this environment [default: every environment in the config].
    #[arg(long = "env", short = 'e', visible_alias = "environment")]
    pub environment: Option<String>,
    /// Only this phase: status, state, snapshot, migrate, deploy, rollback, run, preview, or init (what `init`
    /// reads; never part of all) [default: all of them].
    #[arg(long)]
    pub phase: Option<String>,
    #[arg(long, value_enum)]
    pub output: Option<OutputFormat>,
}

/// `init`: what to read. Everything else (services, containers, image tags, desired counts) is read from AWS.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The environment's name in the config written (stage, prod).
    #[arg(long = "env", short = 'e', visible_alias = "environment")]
    pub environment: String,
    /// The ECS cluster (name or ARN) whose services become the environment's core services.
    #[arg(long)]
    pub cluster: String,
    /// Region [default: AWS_REGION, then AWS_DEFAULT_REGION, then the region of --listener-arn or a cluster ARN].
    #[arg(long)]
    pub region: Option<String>,
    /// The ALB listener that serves the site (maintenance puts its response in front of the listener's rules).
    #[arg(long)]
    pub listener_arn: Option<String>,
    /// The RDS DB instance of the environment.
    #[arg(long, conflicts_with = "db_cluster")]
    pub db_instance: Option<String>,
    /// The Aurora DB cluster of the environment.
    #[arg(long)]
    pub db_cluster: Option<String>,
    /// The task definition family of the migration task (phase migrate).
    #[arg(long)]
    pub migration_family: Option<String>,
    /// The file to write [default: .github/deploy.toml].
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
    #[arg(long, value_enum)]
    pub output: Option<OutputFormat>,
}

fn s(v: &Option<String>) -> Option<String> {
    v.clone().filter(|v| !v.trim().is_empty())
}
fn flag(b: bool) -> Option<String> {
    b.then(|| "true".to_string())
}

impl CommonArgs {
    fn raw(&self, phase: &str) -> RawInputs {
        RawInputs {
            phase: Some(phase.to_string()),
            environment: s(&self.environment),
            config: self.config.as_ref().map(|p| p.display().to_string()),
            dry_run: flag(self.dry_run),
            timeout: s(&self.timeout),
            timeout_minutes: self.timeout_minutes.map(|n| n.to_string()),
            output: self.output.map(|o| format!("{o:?}").to_lowercase()),
            ..RawInputs::default()
        }
    }
}

impl MaintenanceArgs {
    fn fill(&self, r: &mut RawInputs) {
        r.maintenance_header_name = s(&self.maintenance_header_name);
        r.maintenance_header_value = s(&self.maintenance_header_value);
        r.skip_drain = flag(self.skip_drain);
    }
}

impl Command {
    /// The CLI's flags as raw inputs (unset flags are `None`, so Action inputs and defaults can fill them).
    pub fn raw(&self) -> RawInputs {
        let mut r = self.phase_raw();
        if let Some(release) = self.release() {
            release.fill(&mut r);
        }
        r
    }

    /// The flags shared by the phases that change an environment.
    fn release(&self) -> Option<&ReleaseArgs> {
        match self {
            Command::State(a) => Some(&a.release),
            Command::Snapshot(a) => Some(&a.release),
            Command::Migrate(a) => Some(&a.release),
            Command::Restore(a) => Some(&a.release),
            Command::Deploy(a) => Some(&a.release),
            Command::Rollback(a) => Some(&a.release),
            Command::Run(a) => Some(&a.release),
            Command::Preview(a) => Some(&a.release),
            Command::Status(_)
            | Command::CheckConfig(_)
            | Command::IamPolicy(_)
            | Command::Init(_) => None,
        }
    }

    fn phase_raw(&self) -> RawInputs {
        match self {
            Command::Status(a) => a.common.raw("status"),
            Command::State(a) => {
                let mut r = a.common.raw("state");
                r.state = s(&a.state);
                a.maintenance.fill(&mut r);
                r
            }
            Command::Snapshot(a) => RawInputs {
                version: s(&a.version),
                ..a.common.raw("snapshot")
            },
            Command::Migrate(a) => {
                let mut r = a.common.raw("migrate");
                r.version = s(&a.version);
                r.max_snapshot_age = s(&a.max_snapshot_age);
                r.allow_without_snapshot = flag(a.allow_without_snapshot);
                a.maintenance.fill(&mut r);
                r
            }
            Command::Restore(a) => RawInputs {
                snapshot_id: s(&a.snapshot_id),
                version: s(&a.version),
                allow_foreign_snapshot: flag(a.allow_foreign_snapshot),
                ..a.common.raw("restore")
            },
            Command::Deploy(a) => {
                let mut r = a.common.raw("deploy");
                r.version = s(&a.version);
                r.state = s(&a.state);
                r.smoke_url = s(&a.smoke_url);
                r.smoke_status = a.smoke_status.map(|n| n.to_string());
                r.keep_revisions = a.keep_revisions.map(|n| n.to_string());
                a.maintenance.fill(&mut r);
                r
            }
            Command::Rollback(a) => RawInputs {
                version: s(&a.version),
                fast: flag(a.fast),
                wait: flag(a.wait),
                keep_revisions: a.keep_revisions.map(|n| n.to_string()),
                ..a.common.raw("rollback")
            },
            Command::Run(a) => RawInputs {
                task: s(&a.task),
                version: s(&a.version),
                command: s(&a.command),
                ..a.common.raw("run")
            },
            Command::Preview(a) => RawInputs {
                pr_number: a.pr_number.map(|n| n.to_string()),
                version: s(&a.version),
                state: s(&a.state),
                ..a.common.raw("preview")
            },
            Command::IamPolicy(a) => RawInputs {
                phase: Some("iam-policy".into()),
                config: a.config.as_ref().map(|p| p.display().to_string()),
                environment: s(&a.environment),
                policy_phase: s(&a.phase),
                output: a.output.map(|o| format!("{o:?}").to_lowercase()),
                ..RawInputs::default()
            },
            // `init` has its own request (main runs it before inputs are resolved); only its name is here.
            Command::Init(a) => RawInputs {
                phase: Some("init".into()),
                environment: Some(a.environment.clone()),
                config: a.config.as_ref().map(|p| p.display().to_string()),
                output: a.output.map(|o| format!("{o:?}").to_lowercase()),
                ..RawInputs::default()
            },
            Command::CheckConfig(a) => RawInputs {
                phase: Some("check-config".into()),
                config: a.config.as_ref().map(|p| p.display().to_string()),
                environment: s(&a.environment),
                output: a.output.map(|o| format!("{o:?}").to_lowercase()),
                ..RawInputs::default()
            },
        }
    }
}

/// What the workflow run looks like from inside (all optional: absent when run locally).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct GithubEnv {
    #[serde(rename = "github_actions")]
    pub actions: Option<String>,
    #[serde(rename = "github_repository")]
    pub repository: Option<String>,
    #[serde(rename = "github_run_id")]
    pub run_id: Option<String>,
    #[serde(rename = "github_run_attempt")]
    pub run_attempt: Option<String>,
    #[serde(rename = "github_server_url")]
    pub server_url: Option<String>,
    #[serde(rename = "github_api_url")]
    pub api_url: Option<String>,
    #[serde(rename = "github_sha")]
    pub sha: Option<String>,
    #[serde(rename = "github_ref_name")]
    pub ref_name: Option<String>,
    #[serde(rename = "github_output")]
    pub output_file: Option<PathBuf>,
    #[serde(rename = "github_step_summary")]
    pub step_summary_file: Option<PathBuf>,
    #[serde(rename = "github_workflow")]
    pub workflow: Option<String>,
    #[serde(rename = "github_job")]
    pub job: Option<String>,
    /// The webhook event's JSON payload (`pull_request.number` for phase preview).
    #[serde(rename = "github_event_path")]
    pub event_path: Option<PathBuf>,
}

impl GithubEnv {
    pub fn from_env() -> GithubEnv {
        // A variable that is not text is left out (as if unset): the runner sets these, and none is worth a panic.
        let (vars, _) = env_vars("GITHUB_");
        envy::from_iter(vars.into_iter().filter(|(_, v)| !v.is_empty())).unwrap_or_default()
    }

    pub fn on_runner(&self) -> bool {
        self.actions.as_deref() == Some("true")
    }

    /// The workflow run's URL, for `log_url` and the summary.
    pub fn run_url(&self) -> Option<String> {
        Some(format!(
            "{}/{}/actions/runs/{}",
            self.server_url.as_deref().unwrap_or("https://github.com"),
            self.repository.as_deref()?,
            self.run_id.as_deref()?
        ))
    }

    /// Identifies this workflow run across re-runs of the same job: used to tag what the run creates, so a rerun
    /// finds and reuses it.
    pub fn run_key(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.repository.as_deref()?,
            self.run_id.as_deref()?
        ))
    }
}

/// The resolved invocation: the phase, its raw inputs, and the runner context.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub phase: Phase,
    pub raw: RawInputs,
    pub github: GithubEnv,
}

/// Common inputs every phase that touches an environment uses.
#[derive(Debug, Clone)]
pub struct Common {
    pub environment: Environment,
    pub config_path: PathBuf,
    pub dry_run: bool,
    pub timeout: Duration,
    pub output: OutputFormat,
    /// `wait-for-images` (0: the preflight looks once).
    pub wait_for_images: Duration,
}

impl Common {
    /// The environment's database, or a usage error naming the config key (phases snapshot and migrate).
    pub fn required_database(&self, phase: &str) -> Result<crate::config::Database, UsageError> {
        let env = &self.environment.name;
        self.environment.database.clone().ok_or_else(|| {
            UsageError::new(format!(
                "config file {}: environments.{env}.database: missing; phase {phase} needs it: add [environments.{env}.database] with `instance = \"<RDS instance id>\"` or `cluster = \"<Aurora cluster id>\"`",
                self.config_path.display()
            ))
        })
    }
}

impl Invocation {
    /// CLI flags over `INPUT_*` variables. `cli` is `None` when no subcommand was given (the Action front end).
    pub fn resolve(
        cli: Option<&Command>,
        env_inputs: RawInputs,
        github: GithubEnv,
    ) -> Result<Invocation, UsageError> {
        let raw = match cli {
            Some(cmd) => cmd.raw().or(env_inputs),
            None => env_inputs,
        };
        let phase = match raw.phase.as_deref() {
            Some(p) => Phase::parse(p)?,
            None => {
                return Err(UsageError::new(
                    "input `phase`: missing; set `phase:` in the step's `with:` block, or run `deploy-action <phase> --env <name>` (see --help)",
                ))
            }
        };
        if phase == Phase::Init && cli.is_none() {
            return Err(UsageError::new(
                "input `phase`: init is a CLI command, not an Action phase; run `deploy-action init --env <name> --cluster <cluster>` where you can read the environment in AWS, and commit the file it writes",
            ));
        }
        Ok(Invocation { phase, raw, github })
    }

    pub fn output_format(&self) -> OutputFormat {
        match self.raw.output.as_deref().map(str::trim) {
            Some("json") => OutputFormat::Json,
            _ => OutputFormat::Text,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        PathBuf::from(self.raw.config.as_deref().unwrap_or(DEFAULT_CONFIG))
    }

    /// Loads the config and picks the environment; validates the common inputs.
    pub fn common(&self) -> Result<Common, UsageError> {
        let output = match self.raw.output.as_deref().map(str::trim) {
            None | Some("text") => OutputFormat::Text,
            Some("json") => OutputFormat::Json,
            Some(other) => {
                return Err(UsageError::new(format!(
                    "input `output`: {other:?} is not text or json"
                )));
            }
        };
        let name = self.raw.environment.as_deref().map(str::trim).ok_or_else(|| {
            UsageError::new("input `environment`: missing; name an environment from the config file (--env stage)")
        })?;
        let config_path = self.config_path();
        let config = Config::load(&config_path)?;
        let environment = config.environment(name)?.clone();
        let dry_run = parse_bool("dry-run", self.raw.dry_run.as_deref(), false)?;
        let timeout = self
            .timeout()?
            .or(environment.timeout)
            .unwrap_or(Duration::from_secs(DEFAULT_TIMEOUT_MINUTES * 60));
        let wait_for_images =
            parse_duration("wait-for-images", self.raw.wait_for_images.as_deref())?
                .unwrap_or(Duration::ZERO);
        if wait_for_images > timeout {
            return Err(UsageError::new(format!(
                "input `wait-for-images`: {} is longer than the phase's timeout ({}); lower it or raise timeout-minutes",
                crate::wait::human(wait_for_images),
                crate::wait::human(timeout)
            )));
        }
        Ok(Common {
            environment,
            config_path,
            dry_run,
            timeout,
            output,
            wait_for_images,
        })
    }

    /// The `timeout` input (a duration) or the `timeout-minutes` input, not both; `None` when neither is set.
    pub fn timeout(&self) -> Result<Option<Duration>, UsageError> {
        let minutes = parse_u64(
            "timeout-minutes",
            self.raw.timeout_minutes.as_deref(),
            1..=1440,
        )?;
        match (self.raw.timeout.as_deref(), minutes) {
            (Some(_), Some(_)) => Err(UsageError::new(
                "input `timeout`: set together with `timeout-minutes`; give one of them (timeout: 90s, 5m or 1h 30m)",
            )),
            (Some(t), None) => crate::config::parse_timeout(t)
                .map(Some)
                .map_err(|why| UsageError::new(format!("input `timeout`: {why}"))),
            (None, m) => Ok(m.map(|m| Duration::from_secs(m * 60))),
        }
    }

    /// The `version` input, required.
    pub fn version(&self) -> Result<Version, UsageError> {
        match self.raw.version.as_deref() {
            Some(v) => Version::parse(v),
            None => Err(UsageError::new(format!(
                "input `version`: missing; phase {} needs the release tag or label to use (e.g. v1.66.0)",
                self.phase.name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_inputs(pairs: &[(&str, &str)]) -> RawInputs {
        let vars = pairs
            .iter()
            .map(|(k, v)| (format!("INPUT_{k}"), v.to_string()))
            .filter(|(_, v)| !v.is_empty());
        envy::prefixed("INPUT_").from_iter(vars).unwrap()
    }

    #[test]
    fn action_inputs_keep_hyphens_and_empty_means_unset() {
        let raw = env_inputs(&[
            ("PHASE", "deploy"),
            ("TIMEOUT-MINUTES", "15"),
            ("DRY-RUN", ""),
            ("ENVIRONMENT", "stage"),
        ]);
        assert_eq!(raw.timeout_minutes.as_deref(), Some("15"));
        assert_eq!(raw.dry_run, None);
        let inv = Invocation::resolve(None, raw, GithubEnv::default()).unwrap();
        assert_eq!(inv.phase, Phase::Deploy);
    }

    #[test]
    fn cli_flags_win_over_action_inputs() {
        let cli = Cli::try_parse_from([
            "deploy-action",
            "deploy",
            "--env",
            "prod",
            "--version",
            "v2.0.0",
        ])
        .unwrap();
        let env = env_inputs(&[
            ("PHASE", "status"),
            ("ENVIRONMENT", "stage"),
            ("VERSION", "v1.0.0"),
            ("TIMEOUT-MINUTES", "7"),
        ]);
        let inv = Invocation::resolve(cli.command.as_ref(), env, GithubEnv::default()).unwrap();
        assert_eq!(inv.phase, Phase::Deploy);
        assert_eq!(inv.raw.environment.as_deref(), Some("prod"));
        assert_eq!(inv.raw.version.as_deref(), Some("v2.0.0"));
        assert_eq!(
            inv.raw.timeout_minutes.as_deref(),
            Some("7"),
            "unset flags fall back to Action inputs"
        );
    }

    #[test]
    fn bad_inputs_name_the_input() {
        let e = Invocation::resolve(None, RawInputs::default(), GithubEnv::default())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("input `phase`"), "{e}");
        let e = Invocation::resolve(
            None,
            env_inputs(&[("PHASE", "deplyo")]),
            GithubEnv::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown phase") && e.contains("deploy"), "{e}");
        assert!(parse_bool("dry-run", Some("maybe"), false)
            .unwrap_err()
            .to_string()
            .contains("`dry-run`"));
        assert!(parse_u64("timeout-minutes", Some("0"), 1..=1440).is_err());
        assert!(parse_u64("timeout-minutes", Some("ten"), 1..=1440).is_err());
        assert_eq!(
            parse_duration("max-snapshot-age", Some("2h")).unwrap(),
            Some(Duration::from_secs(7200))
        );
        assert_eq!(
            parse_duration("max-snapshot-age", Some("90")).unwrap(),
            Some(Duration::from_secs(5400))
        );
        assert!(parse_duration("max-snapshot-age", Some("soon")).is_err());
    }

    #[test]
    fn timeout_takes_a_duration_or_minutes_but_not_both() {
        let timeout = |pairs: &[(&str, &str)]| {
            let mut all = vec![("PHASE", "status")];
            all.extend_from_slice(pairs);
            Invocation::resolve(None, env_inputs(&all), GithubEnv::default())
                .unwrap()
                .timeout()
        };
        let secs = |n| Ok(Some(Duration::from_secs(n)));
        assert_eq!(
            timeout(&[("TIMEOUT", "90s")]).map_err(|e| e.to_string()),
            secs(90)
        );
        assert_eq!(
            timeout(&[("TIMEOUT", "1h 30m")]).map_err(|e| e.to_string()),
            secs(5400)
        );
        assert_eq!(
            timeout(&[("TIMEOUT-MINUTES", "5")]).map_err(|e| e.to_string()),
            secs(300)
        );
        assert_eq!(timeout(&[]).map_err(|e| e.to_string()), Ok(None));
        for (pairs, needle) in [
            (
                &[("TIMEOUT", "90")][..],
                "input `timeout`: \"90\" is not a duration",
            ),
            (
                &[("TIMEOUT", "0s")][..],
                "input `timeout`: \"0s\" is not from 1s to 24h",
            ),
            (
                &[("TIMEOUT", "2d")][..],
                "input `timeout`: \"2d\" is not from 1s to 24h",
            ),
            (
                &[("TIMEOUT", "5m"), ("TIMEOUT-MINUTES", "5")][..],
                "give one of them",
            ),
        ] {
            let e = timeout(pairs).unwrap_err().to_string();
            assert!(e.contains(needle), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn every_phase_has_help() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        for p in [
            "status",
            "state",
            "snapshot",
            "migrate",
            "deploy",
            "rollback",
            "run",
            "preview",
            "check-config",
            "iam-policy",
            "init",
        ] {
            let e = Cli::try_parse_from(["deploy-action", p, "--help"]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{p}");
        }
    }

    #[test]
    fn release_flags_of_mutating_phases() {
        let cli = Cli::try_parse_from([
            "deploy-action",
            "state",
            "--env",
            "prod",
            "--override-freeze",
            "INC-42 hotfix",
        ])
        .unwrap();
        let env = env_inputs(&[
            ("GITHUB-DEPLOYMENTS", "false"),
            ("WEBHOOK-URL", "https://hooks.example/x"),
        ]);
        let inv = Invocation::resolve(cli.command.as_ref(), env, GithubEnv::default()).unwrap();
        assert_eq!(inv.raw.override_freeze.as_deref(), Some("INC-42 hotfix"));
        assert_eq!(inv.raw.github_deployments.as_deref(), Some("false"));
        assert_eq!(
            inv.raw.webhook_url.as_deref(),
            Some("https://hooks.example/x")
        );
        assert!(inv.raw.secrets().contains(&"https://hooks.example/x"));
        assert!(
            Cli::try_parse_from(["deploy-action", "status", "--override-freeze", "x"]).is_err()
        );
    }

    #[test]
    fn secrets_are_listed_for_masking() {
        let raw = env_inputs(&[
            ("MAINTENANCE-HEADER-VALUE", "s3cret"),
            ("GITHUB-TOKEN", "ghs_x"),
        ]);
        let mut s = raw.secrets();
        s.sort();
        assert_eq!(s, vec!["ghs_x", "s3cret"]);
    }
}
