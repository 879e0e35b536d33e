//! The environments file (`.github/deploy.toml` by default).
//!
//! ```toml
//! [defaults]                      # every environment inherits these keys (tables merge key by key)
//! region = "eu-central-1"
//! image-repository = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/app"
//!
//! [environments.stage]
//! cluster = "app-stage"
//! url = "https://stage.example.org"
//!
//! [environments.stage.services.core]
//! containers = ["core"]           # containers that take the new image
//! desired-count = 2               # the count `running` and `restricted` restore
//! image-tag = "core-{version}"
//!
//! [environments.stage.migration]
//! family = "migrate"
//! container = "migrate"
//! image-tag = "migrate-{version}"
//! network-from-service = "core"
//!
//! [environments.stage.database]
//! instance = "app-stage"          # or: cluster = "aurora-cluster-id"
//!
//! [environments.stage.maintenance]
//! listener-arn = "arn:aws:elasticloadbalancing:..."
//! fixed-response = { status-code = 503, content-type = "text/html", body = "<h1>Maintenance</h1>" }
//! ```
//!
//! Parsing happens in two passes so that every error names the exact key: first the file as written (unknown keys
//! and wrong types are reported with their path), then each environment merged over `[defaults]` and checked for
//! required keys and values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::UsageError;
use crate::version::ImageTagTemplate;

/// The file as written. Every key optional here; required keys are checked after merging with `[defaults]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaw {
    defaults: Option<toml::Table>,
    #[serde(default)]
    environments: BTreeMap<String, toml::Table>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct EnvRaw {
    region: Option<String>,
    cluster: Option<String>,
    url: Option<String>,
    image_repository: Option<String>,
    image_tag: Option<String>,
    /// The bound on every wait as a duration (`"90s"`, `"5m"`); or `timeout-minutes`, not both.
    timeout: Option<String>,
    timeout_minutes: Option<u64>,
    /// Another environment whose successful deployment of the same version must exist first (issue 6 gate).
    requires: Option<String>,
    /// SSM parameter path whose parameters become `secrets` of the configured containers (phase deploy).
    ssm_path: Option<String>,
    freeze: Option<FreezeRaw>,
    github: Option<GithubRaw>,
    #[serde(default)]
    services: BTreeMap<String, ServiceRaw>,
    migration: Option<MigrationRaw>,
    #[serde(default)]
    tasks: BTreeMap<String, MigrationRaw>,
    database: Option<DatabaseRaw>,
    maintenance: Option<MaintenanceRaw>,
    preview: Option<PreviewRaw>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ServiceRaw {
    containers: Option<Vec<String>>,
    desired_count: Option<i32>,
    image_repository: Option<String>,
    image_tag: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MigrationRaw {
    family: Option<String>,
    container: Option<String>,
    command: Option<Vec<String>>,
    image_repository: Option<String>,
    image_tag: Option<String>,
    network_from_service: Option<String>,
    network: Option<NetworkConfig>,
    launch_type: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DatabaseRaw {
    instance: Option<String>,
    cluster: Option<String>,
    snapshot_name: Option<String>,
    snapshot_retention: Option<u32>,
    settle: Option<SettleConfig>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct MaintenanceRaw {
    listener_arn: Option<String>,
    fixed_response: Option<FixedResponse>,
    redirect: Option<Redirect>,
    drain: Option<DrainConfig>,
}

/// `[environments.<name>.preview]`: this environment is the template of review apps (phase `preview`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PreviewRaw {
    service: Option<String>,
    listener_arn: Option<String>,
    host: Option<String>,
    path: Option<String>,
    url: Option<String>,
    priority_range: Option<Vec<i64>>,
    desired_count: Option<i32>,
    target_group: Option<PreviewTargetGroupRaw>,
    seed: Option<MigrationRaw>,
    teardown: Option<MigrationRaw>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PreviewTargetGroupRaw {
    vpc_id: Option<String>,
    port: Option<i64>,
    protocol: Option<String>,
    health_check_path: Option<String>,
    target_type: Option<String>,
    name_prefix: Option<String>,
}

/// `[environments.<name>.freeze]`: windows (UTC) in which the freeze gate refuses changes.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FreezeRaw {
    #[serde(default)]
    dates: Vec<DateWindowRaw>,
    #[serde(default)]
    weekly: Vec<WeeklyWindowRaw>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DateWindowRaw {
    from: String,
    to: Option<String>,
    reason: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WeeklyWindowRaw {
    days: Vec<String>,
    from: Option<String>,
    to: Option<String>,
    reason: Option<String>,
}

/// `[environments.<name>.github]`: how the environment appears in GitHub Deployments.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct GithubRaw {
    environment: Option<String>,
    production: Option<bool>,
    transient: Option<bool>,
}

/// Network settings for one-off tasks when they are not copied from a service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetworkConfig {
    pub subnets: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub assign_public_ip: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FixedResponse {
    #[serde(default = "default_maintenance_status")]
    pub status_code: u16,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Redirect {
    pub url: String,
    #[serde(default = "default_redirect_status")]
    pub status_code: u16,
}

/// "Wait until traffic has drained": the forwarding target groups' RequestCount stays at or under `threshold`
/// per minute for `window-seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DrainConfig {
    #[serde(default)]
    pub threshold: u64,
    #[serde(default = "default_window")]
    pub window_seconds: u64,
    /// The bound on the wait as a duration (`"90s"`, `"5m"`), or `timeout-minutes`; not both (default 10 minutes).
    #[serde(
        default,
        deserialize_with = "timeout_value",
        serialize_with = "human_duration"
    )]
    pub timeout: Option<std::time::Duration>,
    pub timeout_minutes: Option<u64>,
    #[serde(default)]
    pub skip: bool,
}

/// DB settle wait after migrations: CPU (percent) under `cpu-threshold` for `window-seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SettleConfig {
    #[serde(default = "default_cpu_threshold")]
    pub cpu_threshold: u64,
    #[serde(default = "default_window")]
    pub window_seconds: u64,
    /// The bound on the wait as a duration (`"90s"`, `"5m"`), or `timeout-minutes`; not both (default 10 minutes).
    #[serde(
        default,
        deserialize_with = "timeout_value",
        serialize_with = "human_duration"
    )]
    pub timeout: Option<std::time::Duration>,
    pub timeout_minutes: Option<u64>,
    #[serde(default)]
    pub skip: bool,
}

fn default_maintenance_status() -> u16 {
    503
}
fn default_redirect_status() -> u16 {
    302
}
fn default_content_type() -> String {
    "text/html".into()
}
fn default_window() -> u64 {
    60
}
/// The bound of a drain or settle wait: `timeout`, else `timeout-minutes`, else 10 minutes.
fn wait_bound(timeout: Option<std::time::Duration>, minutes: Option<u64>) -> std::time::Duration {
    timeout.unwrap_or(std::time::Duration::from_secs(
        minutes.unwrap_or(10).saturating_mul(60),
    ))
}

impl DrainConfig {
    pub fn bound(&self) -> std::time::Duration {
        wait_bound(self.timeout, self.timeout_minutes)
    }
}

impl SettleConfig {
    pub fn bound(&self) -> std::time::Duration {
        wait_bound(self.timeout, self.timeout_minutes)
    }
}

/// `key` holds `timeout` or `timeout-minutes`, not both, and no zero minutes.
fn one_bound(
    key: &str,
    timeout: Option<std::time::Duration>,
    minutes: Option<u64>,
) -> Result<(), String> {
    match (timeout, minutes) {
        (Some(_), Some(_)) => Err(format!(
            "{key}: both `timeout` and `timeout-minutes` are set; keep one"
        )),
        (None, Some(0)) => Err(format!("{key}.timeout-minutes: 0; use at least 1")),
        _ => Ok(()),
    }
}

fn timeout_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_timeout(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}
fn default_cpu_threshold() -> u64 {
    30
}

/// The whole file, parsed and validated.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub path: PathBuf,
    pub environments: BTreeMap<String, Environment>,
}

/// One environment with `[defaults]` applied and every required key present.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    pub region: String,
    pub cluster: String,
    pub url: Option<String>,
    /// `timeout` or `timeout-minutes`: the bound on every wait of a phase, unless an input sets one.
    #[serde(serialize_with = "human_duration")]
    pub timeout: Option<std::time::Duration>,
    pub requires: Option<String>,
    /// SSM parameter path (`/app/stage/`): every parameter under it (recursively) becomes a `secrets` entry
    /// `{name: <last path segment>, valueFrom: <parameter ARN>}` of the configured containers on deploy.
    pub ssm_path: Option<String>,
    /// Windows in which the freeze gate refuses changes (empty: never frozen).
    pub freeze: Freeze,
    /// How deployments of this environment are recorded on GitHub.
    pub github: GithubSettings,
    /// Core services, in the order of their names.
    pub services: Vec<Service>,
    pub migration: Option<TaskConfig>,
    /// Named one-off tasks (phase `run`).
    pub tasks: BTreeMap<String, TaskConfig>,
    pub database: Option<Database>,
    pub maintenance: Option<Maintenance>,
    /// Review apps cloned from this environment (phase `preview`).
    pub preview: Option<Preview>,
}

/// The placeholder review-app settings hold: the pull request's number.
pub const PR_NUMBER: &str = "{number}";

/// `[environments.<name>.preview]`: how a review app for pull request N is made from this environment: the service
/// `<service>-pr-N` in this environment's cluster, cloned from the core service `service`, behind a rule of the
/// listener that routes `host` (or `path`) to the target group `<name-prefix>-pr-N`.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// The core service cloned: its task definition, network, launch type and load balancer container.
    pub service: String,
    pub listener_arn: String,
    /// What the listener rule matches, with `{number}` in it.
    pub route: PreviewRoute,
    /// The review app's URL, with `{number}` in it (default: from the host, or the environment's URL and the path).
    pub url: String,
    /// Rule priorities the review apps may take (inclusive).
    pub priorities: (i32, i32),
    pub desired_count: i32,
    pub target_group: PreviewTargetGroup,
    /// Run once, before the review app's service is created (e.g. create and seed its database).
    pub seed: Option<TaskConfig>,
    /// Run first on teardown, while the service still exists (e.g. drop its database).
    pub teardown: Option<TaskConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreviewRoute {
    /// A `host-header` condition, e.g. `pr-{number}.review.example.org`.
    Host(String),
    /// A `path-pattern` condition, e.g. `/pr-{number}/*`.
    Path(String),
}

impl PreviewRoute {
    /// The ELBv2 condition field: `host-header` or `path-pattern`.
    pub fn field(&self) -> &'static str {
        match self {
            PreviewRoute::Host(_) => "host-header",
            PreviewRoute::Path(_) => "path-pattern",
        }
    }

    /// The condition value for pull request `number`.
    pub fn value_for(&self, number: u64) -> String {
        match self {
            PreviewRoute::Host(t) | PreviewRoute::Path(t) => {
                t.replace(PR_NUMBER, &number.to_string())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewTargetGroup {
    pub vpc_id: String,
    pub port: i32,
    pub protocol: String,
    pub health_check_path: String,
    pub target_type: String,
    /// Target group names are `<name-prefix>-pr-<number>` (ELBv2 allows 32 characters).
    pub name_prefix: String,
}

/// Freeze windows, all in UTC. A moment is frozen when any window covers it (see [`crate::wrapper::gates::frozen_at`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Freeze {
    pub dates: Vec<DateWindow>,
    pub weekly: Vec<WeeklyWindow>,
}

/// Whole days, `from` to `to` inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DateWindow {
    #[serde(serialize_with = "display")]
    pub from: time::Date,
    #[serde(serialize_with = "display")]
    pub to: time::Date,
    pub reason: Option<String>,
}

/// On each of `days`, from minute `from` to minute `to` of the day (inclusive). When `to` is before `from` the
/// window runs past midnight into the next day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeeklyWindow {
    #[serde(serialize_with = "weekdays")]
    pub days: Vec<time::Weekday>,
    /// Minutes after midnight.
    pub from: u16,
    pub to: u16,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GithubSettings {
    /// The GitHub environment name (default: the environment's name in this file).
    pub environment: String,
    /// `production_environment` of the records (default: the name is prod or production).
    pub production: bool,
    /// `transient_environment` of the records (review apps).
    pub transient: bool,
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn weekdays<S: serde::Serializer>(days: &[time::Weekday], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(days.iter().map(|d| day_name(*d)))
}

/// `mon` … `sun`: how days are written in the config and in messages.
pub fn day_name(d: time::Weekday) -> &'static str {
    use time::Weekday::*;
    match d {
        Monday => "mon",
        Tuesday => "tue",
        Wednesday => "wed",
        Thursday => "thu",
        Friday => "fri",
        Saturday => "sat",
        Sunday => "sun",
    }
}

/// `HH:MM` for minutes after midnight.
pub fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    pub containers: Vec<String>,
    pub desired_count: Option<i32>,
    pub image: ImageTagTemplate,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskConfig {
    pub name: String,
    /// The config key of its table (`environments.stage.migration`, `...tasks.seed`, `...preview.teardown`), for
    /// errors that name what to correct.
    pub key: String,
    pub family: String,
    pub container: String,
    pub command: Option<Vec<String>>,
    pub image: ImageTagTemplate,
    pub network: TaskNetwork,
    pub launch_type: String,
}

#[derive(Debug, Clone, Serialize)]
pub enum TaskNetwork {
    FromService(String),
    Explicit(NetworkConfig),
}

#[derive(Debug, Clone, Serialize)]
pub struct Database {
    pub kind: DatabaseKind,
    pub identifier: String,
    pub snapshot_name: String,
    pub snapshot_retention: Option<u32>,
    pub settle: Option<SettleConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatabaseKind {
    /// An RDS DB instance.
    Instance,
    /// An Aurora DB cluster.
    Cluster,
}

#[derive(Debug, Clone, Serialize)]
pub struct Maintenance {
    pub listener_arn: String,
    pub response: MaintenanceResponse,
    pub drain: Option<DrainConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum MaintenanceResponse {
    Fixed(FixedResponse),
    Redirect(Redirect),
}

pub const DEFAULT_SNAPSHOT_NAME: &str = "deploy-{environment}-{version}-{time}";

impl Config {
    /// Reads and validates the file. A missing file, a syntax error, an unknown key or a missing required key is a
    /// [`UsageError`] naming the key and the fix.
    pub fn load(path: &Path) -> Result<Config, UsageError> {
        let text = crate::files::read_text(path, crate::files::MAX_CONFIG_BYTES).map_err(|e| {
            UsageError::new(format!(
                "config file {}: cannot read it ({e}); create it (see README \"Configuration\") or pass the right path with the `config` input / --config",
                path.display()
            ))
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, UsageError> {
        let file = path.display();
        let raw: FileRaw = from_toml(text, &format!("config file {file}"), "")?;
        // First pass: every table as written, so unknown keys are reported where they stand.
        if let Some(t) = &raw.defaults {
            let _: EnvRaw = from_value(t.clone(), &format!("config file {file}"), "defaults.")?;
        }
        if raw.environments.is_empty() {
            return Err(UsageError::new(format!(
                "config file {file}: no environments; add a table such as [environments.stage] with at least `cluster` and `region`"
            )));
        }
        let mut environments = BTreeMap::new();
        for (name, table) in &raw.environments {
            let prefix = format!("environments.{name}.");
            let _: EnvRaw = from_value(table.clone(), &format!("config file {file}"), &prefix)?;
            validate_env_name(name).map_err(|why| {
                UsageError::new(format!("config file {file}: environments.{name}: {why}"))
            })?;
            let mut merged = raw.defaults.clone().unwrap_or_default();
            // An environment's own bound replaces the defaults' one, whichever of the two keys either uses.
            if TIMEOUT_KEYS.iter().any(|k| table.contains_key(*k)) {
                TIMEOUT_KEYS.iter().for_each(|k| drop(merged.remove(*k)));
            }
            deep_merge(&mut merged, table.clone());
            // Shared settings in [defaults.maintenance] / [defaults.database] apply only to environments that name
            // their own listener / database; they do not switch those features on everywhere.
            for (section, keys) in [
                ("maintenance", &["listener-arn"][..]),
                ("database", &["instance", "cluster"][..]),
            ] {
                let identified = merged
                    .get(section)
                    .and_then(toml::Value::as_table)
                    .is_some_and(|t| keys.iter().any(|k| t.contains_key(*k)));
                if !table.contains_key(section) && !identified {
                    merged.remove(section);
                }
            }
            let env: EnvRaw = from_value(merged, &format!("config file {file}"), &prefix)?;
            let env = resolve(name, env)
                .map_err(|e| UsageError::new(format!("config file {file}: {e}")))?;
            environments.insert(name.clone(), env);
        }
        for env in environments.values() {
            if let Some(req) = &env.requires {
                if !environments.contains_key(req) {
                    let known: Vec<&str> = environments.keys().map(String::as_str).collect();
                    return Err(UsageError::new(format!(
                        "config file {file}: environments.{}.requires: {req:?} is not an environment of this file; use one of: {}",
                        env.name,
                        known.join(", ")
                    )));
                }
            }
        }
        Ok(Config {
            path: path.to_path_buf(),
            environments,
        })
    }

    /// The environment named by the `environment` input, or a usage error listing the known ones.
    pub fn environment(&self, name: &str) -> Result<&Environment, UsageError> {
        self.environments.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.environments.keys().map(String::as_str).collect();
            UsageError::new(format!(
                "input `environment`: unknown environment {name:?}; {} defines: {}",
                self.path.display(),
                known.join(", ")
            ))
        })
    }
}

impl Environment {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// `database.settle`: a CPU percentage, a window CloudWatch can answer (its RDS metrics are per minute), a timeout.
fn check_settle(s: &SettleConfig, key: &str) -> Result<(), String> {
    // Values out of every range are named by the general range checks (`1 to 1440`, `1 to 86400`).
    if s.timeout_minutes.is_some_and(|m| m > MAX_TIMEOUT_MINUTES)
        || !(1..=86400).contains(&s.window_seconds)
    {
        return Ok(());
    }
    if s.cpu_threshold > 100 {
        return Err(format!(
            "{key}.cpu-threshold: {} is not a CPU percentage; use 0 to 100 (e.g. 30)",
            s.cpu_threshold
        ));
    }
    if !(60..=3600).contains(&s.window_seconds) {
        return Err(format!(
            "{key}.window-seconds: {} is outside 60..3600; CloudWatch reports RDS CPU per minute, so use at least 60",
            s.window_seconds
        ));
    }
    Ok(())
}

/// Environment names become parts of GitHub environment names, snapshot names and tags.
pub fn validate_env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid environment name {name:?}; use 1-40 letters, digits, '-' or '_', starting with a letter or digit"
        ))
    }
}

/// An SSM hierarchy path as GetParametersByPath takes it: `/` first, then `/`-separated segments of letters, digits
/// and `_.-`, at most 15 levels deep.
pub fn validate_ssm_path(path: &str) -> Result<(), String> {
    let fix = "use a parameter hierarchy such as \"/app/stage/\"";
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with '/'; {fix}"));
    }
    if path.len() > 2048 {
        return Err(format!(
            "{} characters is too long (at most 2048); {fix}",
            path.len()
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/_.-".contains(*c)))
    {
        return Err(format!("{path:?} contains {c:?}; {fix}"));
    }
    if path.contains("//") {
        return Err(format!("{path:?} contains '//'; {fix}"));
    }
    if path.matches('/').count() > 15 {
        return Err(format!("{path:?} is more than 15 levels deep; {fix}"));
    }
    let lower = path.to_ascii_lowercase();
    if lower.starts_with("/aws") || lower.starts_with("/ssm") {
        return Err(format!(
            "{path:?} starts with a reserved prefix (aws, ssm); {fix}"
        ));
    }
    Ok(())
}

fn from_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
    prefix: &str,
) -> Result<T, UsageError> {
    let de = toml::Deserializer::parse(text)
        .map_err(|e| toml_error(what, prefix, "", &e, Some(text)))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        toml_error(what, prefix, &path, e.inner(), Some(text))
    })
}

fn from_value<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    what: &str,
    prefix: &str,
) -> Result<T, UsageError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        toml_error(what, prefix, &path, e.inner(), None)
    })
}

/// One line: `config file X: <key>: <problem> (line N); <fix>`.
fn toml_error(
    what: &str,
    prefix: &str,
    path: &str,
    e: &toml::de::Error,
    text: Option<&str>,
) -> UsageError {
    let message = e.message().trim().replace('\n', " ");
    let line = match (text, e.span()) {
        (Some(text), Some(span)) => format!(
            " (line {})",
            text[..span.start.min(text.len())].lines().count().max(1)
        ),
        _ => String::new(),
    };
    let key = match path {
        "" | "." => prefix.trim_end_matches('.').to_string(),
        p => format!("{prefix}{p}"),
    };
    let key = if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    };
    let fix = if message.starts_with("unknown field") {
        "; remove the key or correct its spelling"
    } else if message.starts_with("invalid type") {
        "; give the value the type named above"
    } else if message.contains("missing field") {
        "; add the key"
    } else {
        "; fix the TOML at that place"
    };
    UsageError::new(format!("{what}: {key}{message}{line}{fix}"))
}

/// The two spellings of an environment's bound on waiting.
const TIMEOUT_KEYS: [&str; 2] = ["timeout", "timeout-minutes"];

/// A bound on waiting (`timeout` in the config and the inputs): `90s`, `5m`, `1h 30m`, from one second to a day.
/// A unit is required (a bare number is `timeout-minutes`' job). `Err` is the reason, for the caller to name the key.
pub fn parse_timeout(v: &str) -> Result<std::time::Duration, String> {
    const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
    let v = v.trim();
    match humantime::parse_duration(v) {
        Ok(d) if d >= std::time::Duration::from_secs(1) && d <= DAY => Ok(d),
        Ok(_) => Err(format!("{v:?} is not from 1s to 24h")),
        Err(_) => Err(format!(
            "{v:?} is not a duration; use e.g. \"90s\", \"5m\" or \"1h 30m\""
        )),
    }
}

fn human_duration<S: serde::Serializer>(
    d: &Option<std::time::Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}

/// Tables merge key by key (so `[defaults.maintenance]` can hold the response and each environment its listener);
/// any other value in `over` replaces the one in `base`.
fn deep_merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => deep_merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn required<T>(value: Option<T>, key: &str, fix: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("{key}: missing; {fix}"))
}

fn resolve(name: &str, raw: EnvRaw) -> Result<Environment, String> {
    let p = format!("environments.{name}");
    let region = required(
        raw.region,
        &format!("{p}.region"),
        "add `region = \"eu-central-1\"` to the environment or to [defaults]",
    )?;
    let cluster = required(
        raw.cluster,
        &format!("{p}.cluster"),
        "add `cluster = \"<ECS cluster name>\"`",
    )?;
    let images = ImageDefaults {
        repository: raw.image_repository.clone(),
        tag: raw
            .image_tag
            .clone()
            .unwrap_or_else(|| "{version}".to_string()),
    };
    let services = services(name, &p, raw.services, &images)?;
    let service_names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
    let tasks_in = TaskDefaults {
        images: &images,
        service_names: &service_names,
    };
    let migration = match raw.migration {
        Some(m) => Some(tasks_in.task("migration", &format!("{p}.migration"), m)?),
        None => None,
    };
    let mut tasks = BTreeMap::new();
    for (tname, t) in raw.tasks {
        let key = format!("{p}.tasks.{tname}");
        tasks.insert(tname.clone(), tasks_in.task(&tname, &key, t)?);
    }
    let database = match raw.database {
        Some(d) => Some(database(&format!("{p}.database"), d)?),
        None => None,
    };
    let maintenance = match raw.maintenance {
        Some(m) => Some(maintenance(&format!("{p}.maintenance"), m)?),
        None => None,
    };
    if let Some(req) = &raw.requires {
        if req == name {
            return Err(format!(
                "{p}.requires: an environment cannot require itself"
            ));
        }
    }
    if let Some(path) = &raw.ssm_path {
        validate_ssm_path(path).map_err(|why| format!("{p}.ssm-path: {why}"))?;
    }
    let timeout = env_timeout(&p, raw.timeout.as_deref(), raw.timeout_minutes)?;
    let freeze = match raw.freeze {
        Some(f) => freeze(&format!("{p}.freeze"), f)?,
        None => Freeze::default(),
    };
    let github = github_settings(name, &format!("{p}.github"), raw.github.unwrap_or_default())?;
    let preview = match raw.preview {
        Some(pv) => Some(preview(
            &format!("{p}.preview"),
            &tasks_in,
            raw.url.as_deref(),
            pv,
        )?),
        None => None,
    };
    let env = Environment {
        name: name.to_string(),
        region,
        cluster,
        url: raw.url,
        timeout,
        requires: raw.requires,
        ssm_path: raw.ssm_path,
        freeze,
        github,
        services,
        migration,
        tasks,
        database,
        maintenance,
        preview,
    };
    check_limits(&p, &env)?;
    Ok(env)
}

/// The image repository and tag template of an environment, which its services and tasks default to.
struct ImageDefaults {
    repository: Option<String>,
    tag: String,
}

impl ImageDefaults {
    fn template(
        &self,
        key: &str,
        repo: Option<String>,
        tag: Option<String>,
    ) -> Result<ImageTagTemplate, String> {
        let repo = repo.or_else(|| self.repository.clone());
        let tag = tag.unwrap_or_else(|| self.tag.clone());
        ImageTagTemplate::new(repo, &tag).map_err(|why| format!("{key}.image-tag: {why}"))
    }
}

/// `<p>.services`: at least one, each naming its containers.
fn services(
    name: &str,
    p: &str,
    raw: BTreeMap<String, ServiceRaw>,
    images: &ImageDefaults,
) -> Result<Vec<Service>, String> {
    if raw.is_empty() {
        return Err(format!(
            "{p}.services: no core services; add at least one table such as [environments.{name}.services.core] with `containers = [\"core\"]`"
        ));
    }
    let mut services = Vec::new();
    for (sname, s) in raw {
        let key = format!("{p}.services.{sname}");
        let containers = required(
            s.containers,
            &format!("{key}.containers"),
            "list the containers that take the new image, e.g. `containers = [\"core\"]`",
        )?;
        if containers.is_empty() || containers.iter().any(|c| c.trim().is_empty()) {
            return Err(format!(
                "{key}.containers: must name at least one container, with no empty names"
            ));
        }
        if let Some(n) = s.desired_count {
            if !(0..=10_000).contains(&n) {
                return Err(format!(
                    "{key}.desired-count: {n} is out of range; use 0 to 10000"
                ));
            }
        }
        services.push(Service {
            name: sname,
            image: images.template(&key, s.image_repository, s.image_tag)?,
            containers,
            desired_count: s.desired_count,
        });
    }
    Ok(services)
}

/// What a one-off task (migration, `tasks.*`, a review app's seed and teardown) defaults to.
struct TaskDefaults<'a> {
    images: &'a ImageDefaults,
    /// The environment's core services, in order: the first one's network is the default.
    service_names: &'a [String],
}

impl TaskDefaults<'_> {
    /// `key` (e.g. `environments.prod.migration`): a task's family, container, network, command and launch type.
    fn task(&self, tname: &str, key: &str, m: MigrationRaw) -> Result<TaskConfig, String> {
        let family = required(
            m.family,
            &format!("{key}.family"),
            "name the task definition family, e.g. `family = \"migrate\"`",
        )?;
        let container = m.container.unwrap_or_else(|| family.clone());
        let network = self.network(key, m.network_from_service, m.network)?;
        if let Some(cmd) = &m.command {
            if cmd.is_empty() {
                return Err(format!("{key}.command: empty list; remove the key to keep the task definition's command"));
            }
        }
        let launch_type = m.launch_type.unwrap_or_else(|| "FARGATE".into());
        if !["FARGATE", "EC2", "EXTERNAL"].contains(&launch_type.as_str()) {
            return Err(format!(
                "{key}.launch-type: {launch_type:?} is not FARGATE, EC2 or EXTERNAL"
            ));
        }
        Ok(TaskConfig {
            name: tname.to_string(),
            key: key.to_string(),
            image: self.images.template(key, m.image_repository, m.image_tag)?,
            family,
            container,
            command: m.command,
            network,
            launch_type,
        })
    }

    /// `network-from-service` (a core service) or an explicit `network`; by default the first core service's.
    fn network(
        &self,
        key: &str,
        from_service: Option<String>,
        explicit: Option<NetworkConfig>,
    ) -> Result<TaskNetwork, String> {
        Ok(match (from_service, explicit) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{key}: both `network-from-service` and `network` are set; keep one"
                ));
            }
            (Some(svc), None) => {
                if !self.service_names.contains(&svc) {
                    return Err(format!(
                        "{key}.network-from-service: {svc:?} is not a core service of this environment; use one of: {}",
                        self.service_names.join(", ")
                    ));
                }
                TaskNetwork::FromService(svc)
            }
            (None, Some(n)) => {
                if n.subnets.is_empty() {
                    return Err(format!(
                        "{key}.network.subnets: list at least one subnet id"
                    ));
                }
                TaskNetwork::Explicit(n)
            }
            (None, None) => TaskNetwork::FromService(self.service_names[0].clone()),
        })
    }
}

/// `<p>.database`: the instance or cluster, the snapshot name template, retention and settle bound.
fn database(key: &str, d: DatabaseRaw) -> Result<Database, String> {
    let (kind, identifier) = match (d.instance, d.cluster) {
        (Some(i), None) => (DatabaseKind::Instance, i),
        (None, Some(c)) => (DatabaseKind::Cluster, c),
        (Some(_), Some(_)) => {
            return Err(format!("{key}: both `instance` and `cluster` are set; use `instance` for RDS, `cluster` for Aurora"));
        }
        (None, None) => {
            return Err(format!("{key}: set `instance = \"<RDS instance id>\"` or `cluster = \"<Aurora cluster id>\"`"));
        }
    };
    let snapshot_name = d
        .snapshot_name
        .unwrap_or_else(|| DEFAULT_SNAPSHOT_NAME.to_string());
    if !snapshot_name.contains("{version}")
        && !snapshot_name.contains("{time}")
        && !snapshot_name.contains("{run}")
    {
        return Err(format!(
            "{key}.snapshot-name: {snapshot_name:?} would give every snapshot the same name; include {{version}}, {{time}} or {{run}}"
        ));
    }
    if let Some(settle) = &d.settle {
        one_bound(
            &format!("{key}.settle"),
            settle.timeout,
            settle.timeout_minutes,
        )?;
    }
    if let Some(settle) = &d.settle {
        check_settle(settle, &format!("{key}.settle"))?;
    }
    if d.snapshot_retention == Some(0) {
        return Err(format!("{key}.snapshot-retention: 0 would delete every snapshot; use at least 1, or remove the key to keep all"));
    }
    Ok(Database {
        kind,
        identifier,
        snapshot_name,
        snapshot_retention: d.snapshot_retention,
        settle: d.settle,
    })
}

/// `<p>.maintenance`: the ALB listener, the response while down, the drain bound.
fn maintenance(key: &str, m: MaintenanceRaw) -> Result<Maintenance, String> {
    let listener_arn = required(
        m.listener_arn,
        &format!("{key}.listener-arn"),
        "give the ARN of the ALB listener that serves the site",
    )?;
    let parts: Vec<&str> = listener_arn.splitn(6, ':').collect();
    let alb_listener = matches!(parts[..], ["arn", _, "elasticloadbalancing", _, _, resource] if resource.starts_with("listener/app/"));
    if !alb_listener {
        return Err(format!("{key}.listener-arn: {listener_arn:?} is not an ALB listener ARN (arn:aws:elasticloadbalancing:...:listener/app/...)"));
    }
    let response = maintenance_response(key, m.fixed_response, m.redirect)?;
    if let Some(drain) = &m.drain {
        one_bound(
            &format!("{key}.drain"),
            drain.timeout,
            drain.timeout_minutes,
        )?;
    }
    Ok(Maintenance {
        listener_arn,
        response,
        drain: m.drain,
    })
}

/// `fixed-response` or `redirect` (not both); by default a 503 page.
fn maintenance_response(
    key: &str,
    fixed: Option<FixedResponse>,
    redirect: Option<Redirect>,
) -> Result<MaintenanceResponse, String> {
    Ok(match (fixed, redirect) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "{key}: both `fixed-response` and `redirect` are set; keep one"
            ))
        }
        (Some(f), None) => {
            if f.body.len() > 1024 {
                return Err(format!(
                    "{key}.fixed-response.body: {} bytes; ALB allows at most 1024",
                    f.body.len()
                ));
            }
            if !(200..=599).contains(&f.status_code) {
                return Err(format!(
                    "{key}.fixed-response.status-code: {} is not an HTTP status (200-599)",
                    f.status_code
                ));
            }
            MaintenanceResponse::Fixed(f)
        }
        (None, Some(r)) => {
            if !(r.url.starts_with("https://") || r.url.starts_with("http://")) {
                return Err(format!(
                    "{key}.redirect.url: {:?} must start with https://",
                    r.url
                ));
            }
            if r.status_code != 301 && r.status_code != 302 {
                return Err(format!(
                    "{key}.redirect.status-code: {} must be 301 or 302",
                    r.status_code
                ));
            }
            MaintenanceResponse::Redirect(r)
        }
        (None, None) => MaintenanceResponse::Fixed(FixedResponse {
            status_code: 503,
            content_type: "text/html".into(),
            body: "<h1>Down for maintenance</h1><p>We will be back shortly.</p>".into(),
        }),
    })
}

/// `<p>.timeout` or `<p>.timeout-minutes` (not both): the bound on every wait.
fn env_timeout(
    p: &str,
    timeout: Option<&str>,
    minutes: Option<u64>,
) -> Result<Option<std::time::Duration>, String> {
    Ok(match (timeout, minutes) {
        (Some(_), Some(_)) => {
            return Err(format!(
            "{p}: both `timeout` and `timeout-minutes` are set (here or in [defaults]); keep one"
        ))
        }
        (Some(t), None) => Some(parse_timeout(t).map_err(|why| format!("{p}.timeout: {why}"))?),
        (None, Some(0)) => return Err(format!("{p}.timeout-minutes: 0; use at least 1")),
        (None, Some(m)) => {
            bounded(&format!("{p}.timeout-minutes"), m, 1, MAX_TIMEOUT_MINUTES)?;
            Some(std::time::Duration::from_secs(m * 60))
        }
        (None, None) => None,
    })
}

/// `<p>.preview`: the template service (a core service; the only one by default), its seed and teardown tasks (in
/// its network unless they say otherwise) and the rest of the table.
fn preview(
    key: &str,
    tasks_in: &TaskDefaults,
    env_url: Option<&str>,
    mut pv: PreviewRaw,
) -> Result<Preview, String> {
    let service_names = tasks_in.service_names;
    let service = match pv.service.take() {
        Some(s) if service_names.contains(&s) => s,
        Some(s) => {
            return Err(format!(
                "{key}.service: {s:?} is not a core service of this environment; use one of: {}",
                service_names.join(", ")
            ))
        }
        None if service_names.len() == 1 => service_names[0].clone(),
        None => {
            return Err(format!(
                "{key}.service: missing; name the core service review apps are cloned from (one of: {})",
                service_names.join(", ")
            ))
        }
    };
    let one_off = |tname: &str, m: Option<MigrationRaw>| match m {
        None => Ok(None),
        Some(mut m) => {
            if m.network.is_none() && m.network_from_service.is_none() {
                m.network_from_service = Some(service.clone());
            }
            tasks_in.task(tname, &format!("{key}.{tname}"), m).map(Some)
        }
    };
    let seed = one_off("seed", pv.seed.take())?;
    let teardown = one_off("teardown", pv.teardown.take())?;
    preview_settings(key, service, env_url, pv, seed, teardown)
}

/// `{number}` exactly once, and no other placeholder.
fn pr_template(key: &str, value: &str, example: &str) -> Result<(), String> {
    if value.matches(PR_NUMBER).count() != 1 || value.replace(PR_NUMBER, "").contains(['{', '}']) {
        return Err(format!(
            "{key}: {value:?} must contain {PR_NUMBER} exactly once and no other placeholder, e.g. {example:?}"
        ));
    }
    Ok(())
}

fn preview_settings(
    key: &str,
    service: String,
    env_url: Option<&str>,
    raw: PreviewRaw,
    seed: Option<TaskConfig>,
    teardown: Option<TaskConfig>,
) -> Result<Preview, String> {
    let listener_arn = required(
        raw.listener_arn,
        &format!("{key}.listener-arn"),
        "give the ARN of the shared ALB listener the review apps' rules go on",
    )?;
    if !listener_arn.starts_with("arn:") || !listener_arn.contains(":listener/") {
        return Err(format!("{key}.listener-arn: {listener_arn:?} is not an ALB listener ARN (arn:aws:elasticloadbalancing:...:listener/app/...)"));
    }
    let route = preview_route(key, raw.host, raw.path)?;
    let url = preview_url(key, raw.url, &route, env_url)?;
    let priorities = match raw.priority_range.as_deref() {
        None => (1000, 1999),
        Some(&[from, to]) if 1 <= from && from <= to && to <= 50_000 => (from as i32, to as i32),
        Some(other) => {
            return Err(format!(
                "{key}.priority-range: {other:?} is not [from, to] with 1 <= from <= to <= 50000; e.g. [1000, 1999]"
            ))
        }
    };
    let desired_count = raw.desired_count.unwrap_or(1);
    if !(1..=100).contains(&desired_count) {
        return Err(format!(
            "{key}.desired-count: {desired_count} is out of range; use 1 to 100"
        ));
    }
    let target_group =
        preview_target_group(&format!("{key}.target-group"), raw.target_group, &service)?;
    Ok(Preview {
        service,
        listener_arn,
        route,
        url,
        priorities,
        desired_count,
        target_group,
        seed,
        teardown,
    })
}

/// `host` or `path` (one of them), with `{number}` once, fitting ALB's 128 characters for any PR number.
fn preview_route(
    key: &str,
    host: Option<String>,
    path: Option<String>,
) -> Result<PreviewRoute, String> {
    // The longest value a PR number can give must still fit ALB's 128 characters.
    let longest = |t: &str| t.replace(PR_NUMBER, "9999999").len();
    Ok(match (host, path) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "{key}: both `host` and `path` are set; keep one (a host-header or a path-pattern rule)"
            ))
        }
        (None, None) => {
            return Err(format!(
                "{key}.host: missing; set `host = \"pr-{PR_NUMBER}.review.example.org\"` or `path = \"/pr-{PR_NUMBER}/*\"`"
            ))
        }
        (Some(h), None) => {
            let k = format!("{key}.host");
            pr_template(&k, &h, "pr-{number}.review.example.org")?;
            let rest = h.replace(PR_NUMBER, "1");
            if rest.is_empty()
                || !rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.*?".contains(c))
                || longest(&h) > 128
            {
                return Err(format!(
                    "{k}: {h:?} is not a host name pattern (letters, digits, '-', '.', '*', '?'; at most 128 characters)"
                ));
            }
            PreviewRoute::Host(h)
        }
        (None, Some(path)) => {
            let k = format!("{key}.path");
            pr_template(&k, &path, "/pr-{number}/*")?;
            if !path.starts_with('/') || path.contains(char::is_whitespace) || longest(&path) > 128 {
                return Err(format!(
                    "{k}: {path:?} is not a path pattern (starts with '/', no spaces, at most 128 characters)"
                ));
            }
            PreviewRoute::Path(path)
        }
    })
}

/// `url`, else the host (without wildcards), else the environment's `url` with the path.
fn preview_url(
    key: &str,
    url: Option<String>,
    route: &PreviewRoute,
    env_url: Option<&str>,
) -> Result<String, String> {
    Ok(match (url, route) {
        (Some(u), _) => {
            let k = format!("{key}.url");
            pr_template(&k, &u, "https://pr-{number}.review.example.org")?;
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(format!("{k}: {u:?} must start with https://"));
            }
            u
        }
        (None, PreviewRoute::Host(h)) if !h.contains(['*', '?']) => format!("https://{h}"),
        (None, PreviewRoute::Host(h)) => {
            return Err(format!(
                "{key}.url: missing; the host {h:?} has wildcards, so give the review app's URL, e.g. \"https://pr-{PR_NUMBER}.review.example.org\""
            ))
        }
        (None, PreviewRoute::Path(path)) => match env_url {
            Some(base) => {
                let prefix = path.trim_end_matches(['*', '?']);
                format!("{}{prefix}", base.trim_end_matches('/'))
            }
            None => {
                return Err(format!(
                    "{key}.url: missing; with `path`, give the review app's URL (e.g. \"https://review.example.org/pr-{PR_NUMBER}/\") or the environment's `url`"
                ))
            }
        },
    })
}

/// `<key>` (`...preview.target-group`): VPC, port, protocol, health check, target type and name prefix.
fn preview_target_group(
    tg_key: &str,
    raw: Option<PreviewTargetGroupRaw>,
    service: &str,
) -> Result<PreviewTargetGroup, String> {
    let tg = raw.ok_or_else(|| {
        format!("{tg_key}: missing; add `target-group = {{ vpc-id = \"vpc-...\", port = 8080 }}` (the VPC and the port the container listens on)")
    })?;
    let vpc_id = required(
        tg.vpc_id,
        &format!("{tg_key}.vpc-id"),
        "give the VPC of the review apps' target groups, e.g. `vpc-id = \"vpc-0abc\"`",
    )?;
    let port = required(
        tg.port,
        &format!("{tg_key}.port"),
        "give the port the container listens on, e.g. `port = 8080`",
    )?;
    if !(1..=65535).contains(&port) {
        return Err(format!("{tg_key}.port: {port} is not a port (1-65535)"));
    }
    let protocol = tg.protocol.unwrap_or_else(|| "HTTP".into());
    if !["HTTP", "HTTPS"].contains(&protocol.as_str()) {
        return Err(format!(
            "{tg_key}.protocol: {protocol:?} is not HTTP or HTTPS"
        ));
    }
    let health_check_path = tg.health_check_path.unwrap_or_else(|| "/".into());
    if !health_check_path.starts_with('/') || health_check_path.len() > 1024 {
        return Err(format!(
            "{tg_key}.health-check-path: {health_check_path:?} must start with '/' (at most 1024 characters)"
        ));
    }
    let target_type = tg.target_type.unwrap_or_else(|| "ip".into());
    if !["ip", "instance"].contains(&target_type.as_str()) {
        return Err(format!(
            "{tg_key}.target-type: {target_type:?} is not ip (awsvpc tasks) or instance"
        ));
    }
    let name_prefix = tg_name_prefix(tg_key, tg.name_prefix, service)?;
    Ok(PreviewTargetGroup {
        vpc_id,
        port: port as i32,
        protocol,
        health_check_path,
        target_type,
        name_prefix,
    })
}

/// `name-prefix` (by default the service name): what ELBv2 accepts at the start of `<prefix>-pr-<number>`.
fn tg_name_prefix(tg_key: &str, prefix: Option<String>, service: &str) -> Result<String, String> {
    let (name_prefix, prefix_key) = match prefix {
        Some(p) => (p, format!("{tg_key}.name-prefix")),
        None => (
            service.to_string(),
            format!("{tg_key}.name-prefix (it defaults to the service name)"),
        ),
    };
    let ok = !name_prefix.is_empty()
        && name_prefix.len() <= MAX_TG_PREFIX
        && name_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name_prefix.starts_with('-')
        && !name_prefix.ends_with('-')
        && !name_prefix.to_ascii_lowercase().starts_with("internal-");
    if !ok {
        return Err(format!(
            "{prefix_key}: {name_prefix:?} cannot start target group names `<prefix>-pr-<number>`; set `name-prefix` to 1-{MAX_TG_PREFIX} letters, digits or inner '-'"
        ));
    }
    Ok(name_prefix)
}

/// Target group names hold 32 characters: the prefix, `-pr-` and up to 6 digits.
pub const MAX_TG_PREFIX: usize = 22;

fn freeze(key: &str, raw: FreezeRaw) -> Result<Freeze, String> {
    let date = |k: String, v: &str| -> Result<time::Date, String> {
        time::Date::parse(
            v.trim(),
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .map_err(|_| {
            format!("{k}: {v:?} is not a date; write it as YYYY-MM-DD, e.g. \"2026-12-20\"")
        })
    };
    let minute = |k: String, v: &str| -> Result<u16, String> {
        let parsed = v.trim().split_once(':').and_then(|(h, m)| {
            let digits = (1..=2).contains(&h.len()) && m.len() == 2;
            let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
            (digits && h < 24 && m < 60).then_some(h * 60 + m)
        });
        parsed.ok_or_else(|| {
            format!("{k}: {v:?} is not a time of day; write it as HH:MM from 00:00 to 23:59 (UTC)")
        })
    };
    let reason = |k: String, r: Option<String>| -> Result<Option<String>, String> {
        match r.map(|r| r.trim().to_string()) {
            Some(r) if r.is_empty() => Err(format!(
                "{k}: empty; say why (it is shown in the refusal) or remove the key"
            )),
            Some(r) if r.chars().count() > 200 => {
                Err(format!("{k}: longer than 200 characters; shorten it"))
            }
            r => Ok(r),
        }
    };
    let mut dates = Vec::new();
    for (i, d) in raw.dates.into_iter().enumerate() {
        let k = format!("{key}.dates[{i}]");
        let from = date(format!("{k}.from"), &d.from)?;
        let to = match &d.to {
            Some(t) => date(format!("{k}.to"), t)?,
            None => from,
        };
        if to < from {
            return Err(format!("{k}.to: {to} is before from = {from}; swap them"));
        }
        dates.push(DateWindow {
            from,
            to,
            reason: reason(format!("{k}.reason"), d.reason)?,
        });
    }
    let mut weekly = Vec::new();
    for (i, w) in raw.weekly.into_iter().enumerate() {
        let k = format!("{key}.weekly[{i}]");
        if w.days.is_empty() {
            return Err(format!(
                "{k}.days: empty; list days such as [\"fri\", \"sat\"]"
            ));
        }
        let mut days = Vec::new();
        for (j, d) in w.days.iter().enumerate() {
            let day = parse_day(d).ok_or_else(|| {
                format!(
                    "{k}.days[{j}]: {d:?} is not a day; use mon, tue, wed, thu, fri, sat or sun"
                )
            })?;
            if !days.contains(&day) {
                days.push(day);
            }
        }
        let from = match &w.from {
            Some(v) => minute(format!("{k}.from"), v)?,
            None => 0,
        };
        let to = match &w.to {
            Some(v) => minute(format!("{k}.to"), v)?,
            None => 23 * 60 + 59,
        };
        if from == to {
            return Err(format!("{k}: from and to are both {}; a window needs a start and a later end (to is inclusive; use 23:59 for the end of the day)", hhmm(from)));
        }
        weekly.push(WeeklyWindow {
            days,
            from,
            to,
            reason: reason(format!("{k}.reason"), w.reason)?,
        });
    }
    Ok(Freeze { dates, weekly })
}

fn parse_day(s: &str) -> Option<time::Weekday> {
    use time::Weekday::*;
    let s = s.trim().to_ascii_lowercase();
    [
        Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday,
    ]
    .into_iter()
    .find(|d| s == day_name(*d) || s == d.to_string().to_ascii_lowercase())
}

fn github_settings(name: &str, key: &str, raw: GithubRaw) -> Result<GithubSettings, String> {
    let environment = match raw.environment.map(|e| e.trim().to_string()) {
        Some(e)
            if e.is_empty()
                || e.chars().count() > 255
                || e.contains(['\'', '"', '`', ',', ';', '/', '\\']) =>
        {
            return Err(format!(
                "{key}.environment: {e:?} is not a GitHub environment name; use up to 255 characters without quotes, commas, semicolons or slashes"
            ));
        }
        Some(e) => e,
        None => name.to_string(),
    };
    let production = raw.production.unwrap_or_else(|| {
        ["prod", "production"].contains(&environment.to_ascii_lowercase().as_str())
    });
    Ok(GithubSettings {
        environment,
        production,
        transient: raw.transient.unwrap_or(false),
    })
}

/// The longest wait any phase, drain or settle may be given (one day), in minutes: also the bound of the
/// `timeout-minutes` input.
pub const MAX_TIMEOUT_MINUTES: u64 = 1440;
/// The longest quiet window of a drain or a settle wait, in seconds (one day).
pub const MAX_WINDOW_SECONDS: u64 = 86_400;
/// The placeholders `database.snapshot-name` knows.
pub const SNAPSHOT_PLACEHOLDERS: [&str; 4] = ["{environment}", "{version}", "{time}", "{run}"];

/// Everything the file already shows that would fail a run half-way: names AWS would refuse, text that would print
/// as more than one line, durations out of bounds, placeholders nobody fills in. `p` is `environments.<name>`.
fn check_limits(p: &str, env: &Environment) -> Result<(), String> {
    region(&format!("{p}.region"), &env.region)?;
    aws_name(
        &format!("{p}.cluster"),
        &env.cluster,
        "the ECS cluster's name",
    )?;
    for s in &env.services {
        let key = format!("{p}.services.{}", s.name);
        aws_name(&key, &s.name, "the ECS service's name as the table's key")?;
        for c in &s.containers {
            one_line(&format!("{key}.containers"), c)?;
        }
    }
    if let Some(url) = &env.url {
        one_line(&format!("{p}.url"), url)?;
    }
    one_line(&format!("{p}.github.environment"), &env.github.environment)?;
    if let Some(t) = env.timeout {
        let key = format!("{p}.timeout");
        bounded(&key, t.as_secs(), 1, MAX_TIMEOUT_MINUTES * 60)?;
    }
    if let Some(m) = &env.maintenance {
        let key = format!("{p}.maintenance");
        one_line(&format!("{key}.listener-arn"), &m.listener_arn)?;
        if let Some(d) = &m.drain {
            wait_limits(
                &format!("{key}.drain"),
                d.window_seconds,
                d.timeout_minutes,
                Some(d.bound()),
            )?;
        }
    }
    if let Some(db) = &env.database {
        let key = format!("{p}.database");
        let id_key = match db.kind {
            DatabaseKind::Instance => "instance",
            DatabaseKind::Cluster => "cluster",
        };
        aws_name(
            &format!("{key}.{id_key}"),
            &db.identifier,
            "the database's identifier",
        )?;
        snapshot_template(&format!("{key}.snapshot-name"), &db.snapshot_name)?;
        if let Some(st) = &db.settle {
            // The settle window may reach back before the wait started: no window-within-bound rule.
            wait_limits(
                &format!("{key}.settle"),
                st.window_seconds,
                st.timeout_minutes,
                None,
            )?;
            bounded(
                &format!("{key}.settle.cpu-threshold"),
                st.cpu_threshold,
                0,
                100,
            )?;
        }
    }
    if let Some(pv) = &env.preview {
        one_line(&format!("{p}.preview.listener-arn"), &pv.listener_arn)?;
        one_line(&format!("{p}.preview.url"), &pv.url)?;
    }
    Ok(())
}

/// A window and a timeout of a quiet-wait: both within bounds, and, given `bound` (what the wait gets from either
/// key), the window fits in it: the drain counts its window from the moment maintenance went on, so a longer window
/// can never be seen and the wait would fail with maintenance on. `timeout_minutes` is the key as written
/// (`timeout`, a duration, is bounded when it is parsed).
fn wait_limits(
    key: &str,
    window_seconds: u64,
    timeout_minutes: Option<u64>,
    bound: Option<std::time::Duration>,
) -> Result<(), String> {
    if let Some(m) = timeout_minutes {
        bounded(&format!("{key}.timeout-minutes"), m, 1, MAX_TIMEOUT_MINUTES)?;
    }
    bounded(
        &format!("{key}.window-seconds"),
        window_seconds,
        1,
        MAX_WINDOW_SECONDS,
    )?;
    let Some(bound) = bound else {
        return Ok(());
    };
    if window_seconds > bound.as_secs() {
        return Err(format!(
            "{key}.window-seconds: {window_seconds} s is longer than the wait's bound ({}), so the wait could never succeed; shorten the window or raise the timeout",
            humantime::format_duration(bound)
        ));
    }
    Ok(())
}

fn bounded(key: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{key}: {value} is out of range; use {min} to {max}"
        ))
    }
}

/// An AWS region as the SDK puts it in a host name (`eu-central-1`): lowercase letters and digits in parts joined by
/// `-`, so nothing in it can change the endpoint's host or path.
fn region(key: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value.split('-').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key}: {value:?} is not an AWS region; use its code, e.g. \"eu-central-1\""
        ))
    }
}

/// A name AWS takes for a cluster, a service or a database (or an ARN of one): not empty, one line, no spaces,
/// at most 255 characters.
fn aws_name(key: &str, value: &str, what: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{key}: empty; give {what}"));
    }
    if value.chars().count() > 255 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{key}: {value:?} is not a valid name; give {what} (at most 255 characters, no spaces or control characters)"
        ));
    }
    Ok(())
}

/// A value printed in the log and the summary: one line, no control characters.
fn one_line(key: &str, value: &str) -> Result<(), String> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!(
            "{key}: {value:?} contains the control character {c:?}; remove it (the value must be one line)"
        )),
        None => Ok(()),
    }
}

/// Only the placeholders the snapshot phase fills in: any other `{...}` would become text of the name.
fn snapshot_template(key: &str, value: &str) -> Result<(), String> {
    let mut rest = value.to_string();
    for p in SNAPSHOT_PLACEHOLDERS {
        rest = rest.replace(p, "");
    }
    if rest.contains(['{', '}']) {
        return Err(format!(
            "{key}: {value:?} has a placeholder the snapshot phase does not know; use only {}",
            SNAPSHOT_PLACEHOLDERS.join(", ")
        ));
    }
    one_line(key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[defaults]
region = "eu-central-1"
image-repository = "123.dkr.ecr.eu-central-1.amazonaws.com/app"

[defaults.maintenance]
fixed-response = { status-code = 503, body = "down" }

[environments.stage]
cluster = "app-stage"

[environments.stage.services.core]
containers = ["core"]
desired-count = 2
image-tag = "core-{version}"

[environments.stage.services.workers]
containers = ["workers"]

[environments.stage.migration]
family = "migrate"
image-tag = "migrate-{version}"

[environments.stage.database]
instance = "app-stage"

[environments.stage.maintenance]
listener-arn = "arn:aws:elasticloadbalancing:eu-central-1:123:listener/app/lb/1/2"

[environments.prod]
region = "eu-west-1"
cluster = "app-prod"
requires = "stage"
[environments.prod.services.core]
containers = ["core"]
[environments.prod.database]
cluster = "aurora-prod"
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("deploy.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_inherited_and_tables_merge_key_by_key() {
        let c = parse(GOOD).unwrap();
        let stage = c.environment("stage").unwrap();
        assert_eq!(stage.region, "eu-central-1");
        assert_eq!(stage.services.len(), 2);
        assert_eq!(stage.services[0].name, "core");
        assert_eq!(stage.services[0].desired_count, Some(2));
        let m = stage.maintenance.as_ref().unwrap();
        assert!(matches!(&m.response, MaintenanceResponse::Fixed(f) if f.body == "down"));
        let mig = stage.migration.as_ref().unwrap();
        assert_eq!(mig.container, "migrate");
        assert!(matches!(&mig.network, TaskNetwork::FromService(s) if s == "core"));
        let prod = c.environment("prod").unwrap();
        assert_eq!(prod.region, "eu-west-1");
        assert_eq!(prod.database.as_ref().unwrap().kind, DatabaseKind::Cluster);
        assert!(
            prod.maintenance.is_none(),
            "defaults.maintenance alone has no listener and must not leak in"
        );
    }

    #[test]
    fn timeouts_are_durations_or_minutes_and_an_environment_s_own_wins() {
        use std::time::Duration;
        let with = |defaults: &str, stage: &str| {
            GOOD.replace("[defaults]\n", &format!("[defaults]\n{defaults}\n"))
                .replace(
                    "[environments.stage]\n",
                    &format!("[environments.stage]\n{stage}\n"),
                )
        };
        let timeout =
            |text: String, env: &str| parse(&text).unwrap().environment(env).unwrap().timeout;
        assert_eq!(
            timeout(with("", "timeout = \"90s\""), "stage"),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            timeout(with("timeout-minutes = 5", ""), "prod"),
            Some(Duration::from_secs(300))
        );
        // The environment's own bound replaces the defaults', whichever key each uses.
        let text = with("timeout-minutes = 5", "timeout = \"1h 30m\"");
        assert_eq!(
            timeout(text.clone(), "stage"),
            Some(Duration::from_secs(5400))
        );
        assert_eq!(timeout(text, "prod"), Some(Duration::from_secs(300)));
        assert_eq!(timeout(GOOD.to_string(), "stage"), None);
        let drain = GOOD.replace(
            "listener-arn = \"arn:aws:elasticloadbalancing:eu-central-1:123:listener/app/lb/1/2\"",
            "listener-arn = \"arn:aws:elasticloadbalancing:eu-central-1:123:listener/app/lb/1/2\"\ndrain = { timeout = \"45s\", window-seconds = 30 }",
        );
        let c = parse(&drain).unwrap();
        let m = c.environment("stage").unwrap().maintenance.clone().unwrap();
        assert_eq!(m.drain.unwrap().bound(), Duration::from_secs(45));
        for (text, needle) in [
            (
                with("", "timeout = \"90\""),
                "environments.stage.timeout: \"90\" is not a duration",
            ),
            (
                with("", "timeout = \"0s\""),
                "environments.stage.timeout: \"0s\" is not from 1s to 24h",
            ),
            (
                with("", "timeout = \"5m\"\ntimeout-minutes = 5"),
                "both `timeout` and `timeout-minutes`",
            ),
            (
                drain.replace(
                    "timeout = \"45s\"",
                    "timeout = \"45s\", timeout-minutes = 1",
                ),
                "environments.stage.maintenance.drain: both `timeout` and `timeout-minutes`",
            ),
            (
                drain.replace("\"45s\"", "\"soon\""),
                "\"soon\" is not a duration",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let cases: &[(&str, &str)] = &[
            ("[environments.stage]\nclustr = \"x\"", "environments.stage.clustr"),
            ("[environments.stage]\ncluster = 3", "environments.stage.cluster"),
            ("[defaults]\nregon = \"x\"", "defaults.regon"),
            ("[environment.stage]\ncluster = \"x\"", "environment"),
            ("[environments.stage]\ncluster = \"c\"\n[environments.stage.services.core]\ncontainers=[\"core\"]\n", "environments.stage.region"),
            ("[environments.stage]\nregion=\"r\"\ncluster = \"c\"\n", "environments.stage.services"),
            ("[environments.stage]\nregion=\"r\"\ncluster = \"c\"\n[environments.stage.services.core]\n", "environments.stage.services.core.containers"),
            ("[environments.stage]\nregion=\"r\"\ncluster = \"c\"\n[environments.stage.services.core]\ncontainers=[\"core\"]\n[environments.stage.database]\n", "environments.stage.database"),
            ("[environments.stage]\nregion=\"r\"\ncluster = \"c\"\n[environments.stage.services.core]\ncontainers=[\"core\"]\n[environments.stage.maintenance]\nlistener-arn=\"nope\"\n", "environments.stage.maintenance.listener-arn"),
            ("[environments.stage]\nregion=\"r\"\ncluster = \"c\"\n[environments.stage.services.core]\ncontainers=[\"core\"]\nimage-tag=\"{verson}\"\n", "environments.stage.services.core.image-tag"),
            ("[environments.stage]\nregion=\"r\"\ncluster = \"c\"\n[environments.stage.services.core]\ncontainers=[\"core\"]\n[environments.stage.migration]\nfamily=\"m\"\nnetwork-from-service=\"web\"\n", "environments.stage.migration.network-from-service"),
            ("[environments.stage]\nregion=\"r\"\ncluster = \"c\"\n[environments.stage.services.core]\ncontainers=[\"core\"]\nsurprise=1\n", "environments.stage.services.core.surprise"),
            ("[environments.\"bad name\"]\nregion=\"r\"\n", "bad name"),
            ("not toml at all [", "config file deploy.toml"),
            ("", "no environments"),
        ];
        for (text, key) in cases {
            let err = parse(text).expect_err(text);
            assert!(
                err.contains(key),
                "error for {text:?} should name {key:?}: {err}"
            );
            assert!(!err.contains('\n'), "error must be one line: {err:?}");
        }
    }

    #[test]
    fn ssm_path_is_inherited_and_validated() {
        let text = GOOD.replace("[defaults]\n", "[defaults]\nssm-path = \"/app/shared/\"\n");
        let c = parse(&text).unwrap();
        assert_eq!(
            c.environment("stage").unwrap().ssm_path.as_deref(),
            Some("/app/shared/")
        );
        let base = "[environments.stage]\nregion=\"r\"\ncluster = \"c\"\n[environments.stage.services.core]\ncontainers=[\"core\"]\n";
        for ok in ["/app/stage/", "/app/stage", "/a_b.c-d/e"] {
            let t = base.replace(
                "cluster = \"c\"",
                &format!("cluster = \"c\"\nssm-path = {ok:?}"),
            );
            parse(&t).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "app/stage/",
            "/app//stage",
            "/app/st age/",
            "/aws/x",
            "/SSM/x",
            "",
        ] {
            let t = base.replace(
                "cluster = \"c\"",
                &format!("cluster = \"c\"\nssm-path = {bad:?}"),
            );
            let e = parse(&t).expect_err(bad);
            assert!(e.contains("environments.stage.ssm-path"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy.toml");
        let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.environments.keys().collect::<Vec<_>>(),
            vec!["prod", "stage"]
        );
        assert!(matches!(
            c.environment("prod")
                .unwrap()
                .maintenance
                .as_ref()
                .unwrap()
                .response,
            MaintenanceResponse::Redirect(_)
        ));
    }

    const BASE: &str = "[environments.stage]\nregion=\"r\"\ncluster = \"c\"\n[environments.stage.services.core]\ncontainers=[\"core\"]\n";

    #[test]
    fn freeze_windows_are_parsed() {
        let text = format!(
            "{BASE}[environments.stage.freeze]\ndates = [{{ from = \"2026-12-20\", to = \"2027-01-05\", reason = \"holidays\" }}, {{ from = \"2026-11-26\" }}]\nweekly = [{{ days = [\"fri\", \"Saturday\", \"fri\"], from = \"16:00\", to = \"23:59\" }}, {{ days = [\"sun\"], from = \"22:00\", to = \"6:00\" }}, {{ days = [\"mon\"] }}]\n"
        );
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let f = &c.environment("stage").unwrap().freeze;
        assert_eq!(f.dates.len(), 2);
        assert_eq!(f.dates[0].to, time::macros::date!(2027 - 01 - 05));
        assert_eq!(f.dates[0].reason.as_deref(), Some("holidays"));
        assert_eq!(f.dates[1].from, f.dates[1].to, "`to` defaults to `from`");
        assert_eq!(
            f.weekly[0].days,
            vec![time::Weekday::Friday, time::Weekday::Saturday]
        );
        assert_eq!((f.weekly[0].from, f.weekly[0].to), (960, 1439));
        assert_eq!((f.weekly[1].from, f.weekly[1].to), (1320, 360));
        assert_eq!(
            (f.weekly[2].from, f.weekly[2].to),
            (0, 1439),
            "whole days by default"
        );
        // [defaults.freeze] applies to every environment.
        let text = format!("[defaults.freeze]\ndates = [{{ from = \"2026-12-24\" }}]\n{BASE}");
        assert_eq!(
            parse(&text)
                .unwrap()
                .environment("stage")
                .unwrap()
                .freeze
                .dates
                .len(),
            1
        );
        assert_eq!(
            parse(BASE).unwrap().environment("stage").unwrap().freeze,
            Freeze::default()
        );
    }

    #[test]
    fn freeze_errors_name_the_key() {
        let cases: &[(&str, &str)] = &[
            (
                "dates = [{ from = \"2026-13-01\" }]",
                "environments.stage.freeze.dates[0].from",
            ),
            (
                "dates = [{ from = \"2026-12-20\", to = \"2026-12-01\" }]",
                "environments.stage.freeze.dates[0].to",
            ),
            (
                "dates = [{ to = \"2026-12-01\" }]",
                "environments.stage.freeze.dates[0]",
            ),
            (
                "dates = [{ from = \"2026-12-20\", why = \"x\" }]",
                "environments.stage.freeze.dates[0].why",
            ),
            (
                "dates = [{ from = \"2026-12-20\", reason = \" \" }]",
                "environments.stage.freeze.dates[0].reason",
            ),
            (
                "weekly = [{ days = [] }]",
                "environments.stage.freeze.weekly[0].days",
            ),
            (
                "weekly = [{ days = [\"fri\", \"fry\"] }]",
                "environments.stage.freeze.weekly[0].days[1]",
            ),
            (
                "weekly = [{ days = [\"fri\"], from = \"24:00\" }]",
                "environments.stage.freeze.weekly[0].from",
            ),
            (
                "weekly = [{ days = [\"fri\"], to = \"4pm\" }]",
                "environments.stage.freeze.weekly[0].to",
            ),
            (
                "weekly = [{ days = [\"fri\"], from = \"10:00\", to = \"10:00\" }]",
                "environments.stage.freeze.weekly[0]",
            ),
            ("monthly = []", "environments.stage.freeze.monthly"),
        ];
        for (freeze, key) in cases {
            let text = format!("{BASE}[environments.stage.freeze]\n{freeze}\n");
            let err = parse(&text).expect_err(freeze);
            assert!(
                err.contains(key),
                "error for {freeze:?} should name {key:?}: {err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn github_settings_and_requires() {
        let c = parse(GOOD).unwrap();
        let prod = &c.environment("prod").unwrap().github;
        assert_eq!(
            (prod.environment.as_str(), prod.production, prod.transient),
            ("prod", true, false)
        );
        let stage = &c.environment("stage").unwrap().github;
        assert!(!stage.production);
        let text = format!("{BASE}[environments.stage.github]\nenvironment = \"Staging EU\"\nproduction = true\ntransient = true\n");
        let g = parse(&text)
            .unwrap()
            .environment("stage")
            .unwrap()
            .github
            .clone();
        assert_eq!(
            (g.environment.as_str(), g.production, g.transient),
            ("Staging EU", true, true)
        );
        let e = parse(&format!(
            "{BASE}[environments.stage.github]\nenvironment = \"a/b\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("environments.stage.github.environment"), "{e}");
        let e = parse(&GOOD.replace("requires = \"stage\"", "requires = \"stag\"")).unwrap_err();
        assert!(
            e.contains("environments.prod.requires") && e.contains("prod, stage"),
            "{e}"
        );
    }

    const PREVIEW: &str = "[environments.stage.preview]\nlistener-arn = \"arn:aws:elasticloadbalancing:r:1:listener/app/lb/1/2\"\nhost = \"pr-{number}.review.example.org\"\ntarget-group = { vpc-id = \"vpc-1\", port = 8080 }\n";

    #[test]
    fn a_preview_template_is_parsed_with_defaults() {
        let text = format!("{BASE}{PREVIEW}[environments.stage.preview.seed]\nfamily = \"seed\"\ncommand = [\"seed\", \"pr_{{number}}\"]\n");
        let c = parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let p = c.environment("stage").unwrap().preview.clone().unwrap();
        assert_eq!(p.service, "core", "the only core service");
        assert_eq!(
            p.route,
            PreviewRoute::Host("pr-{number}.review.example.org".into())
        );
        assert_eq!(p.route.value_for(12), "pr-12.review.example.org");
        assert_eq!(p.url, "https://pr-{number}.review.example.org");
        assert_eq!((p.priorities, p.desired_count), ((1000, 1999), 1));
        let tg = &p.target_group;
        assert_eq!(
            (
                tg.protocol.as_str(),
                tg.health_check_path.as_str(),
                tg.target_type.as_str(),
                tg.name_prefix.as_str()
            ),
            ("HTTP", "/", "ip", "core")
        );
        let seed = p.seed.unwrap();
        assert_eq!(seed.container, "seed");
        assert!(matches!(&seed.network, TaskNetwork::FromService(s) if s == "core"));
        assert!(p.teardown.is_none());
        // By path: the URL is the environment's URL and the path's prefix.
        let text = format!(
            "{}{}",
            BASE.replacen(
                "cluster = \"c\"",
                "cluster = \"c\"\nurl = \"https://review.example.org/\"",
                1
            ),
            PREVIEW.replace(
                "host = \"pr-{number}.review.example.org\"",
                "path = \"/pr-{number}/*\""
            )
        );
        let p = parse(&text)
            .unwrap_or_else(|e| panic!("{e}"))
            .environment("stage")
            .unwrap()
            .preview
            .clone()
            .unwrap();
        assert_eq!(p.route.field(), "path-pattern");
        assert_eq!(p.url, "https://review.example.org/pr-{number}/");
    }

    #[test]
    fn preview_errors_name_the_key() {
        let host = "host = \"pr-{number}.review.example.org\"";
        let cases: &[(&str, &str, &str)] = &[
            ("listener-arn = \"arn:aws:elasticloadbalancing:r:1:listener/app/lb/1/2\"\n", "", "environments.stage.preview.listener-arn"),
            (host, "host = \"review.example.org\"", "environments.stage.preview.host"),
            (host, "host = \"pr-{number}.{branch}.example.org\"", "environments.stage.preview.host"),
            (host, "host = \"pr {number}.example.org\"", "environments.stage.preview.host"),
            (host, "path = \"pr-{number}/*\"", "environments.stage.preview.path"),
            (host, "path = \"/pr-{number}/*\"", "environments.stage.preview.url"),
            (host, "host = \"*.pr-{number}.example.org\"", "environments.stage.preview.url"),
            (host, "host = \"pr-{number}.x\"\npath = \"/pr-{number}\"", "environments.stage.preview"),
            (host, "host = \"pr-{number}.x\"\nurl = \"https://x\"", "environments.stage.preview.url"),
            (host, "host = \"pr-{number}.x\"\npriority-range = [10, 5]", "environments.stage.preview.priority-range"),
            (host, "host = \"pr-{number}.x\"\npriority-range = [1]", "environments.stage.preview.priority-range"),
            (host, "host = \"pr-{number}.x\"\ndesired-count = 0", "environments.stage.preview.desired-count"),
            (host, "host = \"pr-{number}.x\"\nservice = \"web\"", "environments.stage.preview.service"),
            (host, "host = \"pr-{number}.x\"\nhots = 1", "environments.stage.preview.hots"),
            ("target-group = { vpc-id = \"vpc-1\", port = 8080 }", "", "environments.stage.preview.target-group"),
            ("{ vpc-id = \"vpc-1\", port = 8080 }", "{ port = 8080 }", "environments.stage.preview.target-group.vpc-id"),
            ("{ vpc-id = \"vpc-1\", port = 8080 }", "{ vpc-id = \"vpc-1\", port = 0 }", "environments.stage.preview.target-group.port"),
            ("{ vpc-id = \"vpc-1\", port = 8080 }", "{ vpc-id = \"vpc-1\", port = 80, protocol = \"TCP\" }", "environments.stage.preview.target-group.protocol"),
            ("{ vpc-id = \"vpc-1\", port = 8080 }", "{ vpc-id = \"vpc-1\", port = 80, name-prefix = \"a-very-long-prefix-for-names\" }", "environments.stage.preview.target-group.name-prefix"),
            ("{ vpc-id = \"vpc-1\", port = 8080 }", "{ vpc-id = \"vpc-1\", port = 80, vpc = \"x\" }", "environments.stage.preview.target-group.vpc"),
            ("target-group = { vpc-id = \"vpc-1\", port = 8080 }", "target-group = { vpc-id = \"vpc-1\", port = 8080 }\n[environments.stage.preview.seed]\ncontainer = \"seed\"", "environments.stage.preview.seed.family"),
            ("target-group = { vpc-id = \"vpc-1\", port = 8080 }", "target-group = { vpc-id = \"vpc-1\", port = 8080 }\n[environments.stage.preview.teardown]\nfamily = \"t\"\nnetwork-from-service = \"web\"", "environments.stage.preview.teardown.network-from-service"),
        ];
        for (from, to, key) in cases {
            let text = format!("{BASE}{}", PREVIEW.replacen(from, to, 1));
            let err = parse(&text).expect_err(to);
            assert!(err.contains(key), "{to:?} should name {key:?}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        // Two core services: the template must be named.
        let two = format!(
            "{BASE}[environments.stage.services.workers]\ncontainers = [\"workers\"]\n{PREVIEW}"
        );
        let e = parse(&two).unwrap_err();
        assert!(
            e.contains("environments.stage.preview.service") && e.contains("core, workers"),
            "{e}"
        );
    }

    /// Issue 20: every config that used to pass here and fail half-way at run time (or panic) is refused, naming the
    /// key and the bound.
    #[test]
    fn configs_that_would_fail_half_way_are_refused() {
        let listener = "arn:aws:elasticloadbalancing:eu-central-1:1:listener/app/a/b/c";
        let maint = |extra: &str| {
            format!(
                "{BASE}[environments.stage.maintenance]\nlistener-arn = \"{listener}\"\n{extra}"
            )
        };
        let db = |extra: &str| {
            format!("{BASE}[environments.stage.database]\ninstance = \"db\"\n{extra}")
        };
        let cases: Vec<(String, &str, &str)> = vec![
            (maint("[environments.stage.maintenance.drain]\ntimeout-minutes = 0\n"), "maintenance.drain.timeout-minutes", "at least 1"),
            (maint("[environments.stage.maintenance.drain]\ntimeout = \"90s\"\nwindow-seconds = 120\n"), "maintenance.drain.window-seconds", "longer than the wait's bound (1m 30s)"),
            (maint("[environments.stage.maintenance.drain]\ntimeout = \"100000d\"\n"), "maintenance.drain", "not from 1s to 24h"),
            (db("[environments.stage.database.settle]\ntimeout-minutes = 9223372036854775807\n"), "database.settle.timeout-minutes", "1 to 1440"),
            (maint("[environments.stage.maintenance.drain]\ntimeout-minutes = 9223372036854775807\n"), "maintenance.drain.timeout-minutes", "1 to 1440"),
            (maint("[environments.stage.maintenance.drain]\nwindow-seconds = 9223372036854775807\n"), "maintenance.drain.window-seconds", "1 to 86400"),
            (maint("[environments.stage.maintenance.drain]\nwindow-seconds = 0\n"), "maintenance.drain.window-seconds", "1 to 86400"),
            (maint("[environments.stage.maintenance.drain]\nwindow-seconds = 7200\ntimeout-minutes = 10\n"), "maintenance.drain.window-seconds", "longer than the wait's bound (10m)"),
            (db("[environments.stage.database.settle]\nwindow-seconds = 9223372036854775807\n"), "database.settle.window-seconds", "1 to 86400"),
            (db("[environments.stage.database.settle]\ncpu-threshold = 101\n"), "database.settle.cpu-threshold", "0 to 100"),
            (db("snapshot-name = \"pre-{version}-{branch}\"\n"), "database.snapshot-name", "{environment}, {version}, {time}, {run}"),
            (db("snapshot-name = \"pre-{version}\\n\"\n"), "database.snapshot-name", "control character"),
            (BASE.replace("region=\"r\"", "region=\"\""), "stage.region", "not an AWS region"),
            (BASE.replace("region=\"r\"", "region=\"eu-central-1/x\""), "stage.region", "not an AWS region"),
            (BASE.replace("region=\"r\"", "region=\"eu-central-1?x\""), "stage.region", "not an AWS region"),
            (BASE.replace("region=\"r\"", "region=\"eu-central-1#\""), "stage.region", "not an AWS region"),
            (BASE.replace("cluster = \"c\"", "cluster = \"\""), "stage.cluster", "empty"),
            (BASE.replace("services.core]", "services.\"\"]"), "stage.services.", "empty"),
            (BASE.replace("services.core]", "services.\"a b\"]"), "stage.services.a b", "not a valid name"),
            (BASE.replacen("cluster = \"c\"", "cluster = \"c\"\ntimeout-minutes = 9223372036854775807", 1), "stage.timeout-minutes", "1 to 1440"),
            (format!("{BASE}[environments.stage.maintenance]\nlistener-arn = \"{listener}\\n\"\n"), "maintenance.listener-arn", "control character"),
            (format!("{BASE}[environments.stage.github]\nenvironment = \"Stage\\nprod\"\n"), "github.environment", "control character"),
            (BASE.replacen("cluster = \"c\"", "cluster = \"c\"\nurl = \"https://x\\r\\n::add-mask::y\"", 1), "stage.url", "control character"),
        ];
        for (text, key, bound) in cases {
            let err = parse(&text).expect_err(&text);
            assert!(
                err.contains(key) && err.contains(bound),
                "{text:?} should name {key:?} and {bound:?}: {err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
        // The bounds themselves are fine.
        for ok in [
            maint("[environments.stage.maintenance.drain]\ntimeout-minutes = 1440\nwindow-seconds = 86400\n"),
            db("snapshot-name = \"{environment}-{version}-{time}-{run}\"\n"),
            // A settle window reaches back before the wait: it may be longer than the bound.
            db("[environments.stage.database.settle]\ntimeout = \"30s\"\nwindow-seconds = 600\n"),
        ] {
            parse(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn unknown_environment_lists_the_known_ones() {
        let c = parse(GOOD).unwrap();
        let e = c.environment("qa").unwrap_err().to_string();
        assert!(
            e.contains("input `environment`") && e.contains("prod, stage"),
            "{e}"
        );
    }
}
