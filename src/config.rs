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
    timeout_minutes: Option<u64>,
    /// Another environment whose successful deployment of the same version must exist first (issue 6 gate).
    requires: Option<String>,
    /// SSM parameter path whose parameters become `secrets` of the configured containers (phase deploy).
    ssm_path: Option<String>,
    #[serde(default)]
    services: BTreeMap<String, ServiceRaw>,
    migration: Option<MigrationRaw>,
    #[serde(default)]
    tasks: BTreeMap<String, MigrationRaw>,
    database: Option<DatabaseRaw>,
    maintenance: Option<MaintenanceRaw>,
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
    #[serde(default = "default_drain_timeout")]
    pub timeout_minutes: u64,
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
    #[serde(default = "default_drain_timeout")]
    pub timeout_minutes: u64,
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
fn default_drain_timeout() -> u64 {
    10
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
    pub timeout_minutes: Option<u64>,
    pub requires: Option<String>,
    /// SSM parameter path (`/app/stage/`): every parameter under it (recursively) becomes a `secrets` entry
    /// `{name: <last path segment>, valueFrom: <parameter ARN>}` of the configured containers on deploy.
    pub ssm_path: Option<String>,
    /// Core services, in the order of their names.
    pub services: Vec<Service>,
    pub migration: Option<TaskConfig>,
    /// Named one-off tasks (phase `run`).
    pub tasks: BTreeMap<String, TaskConfig>,
    pub database: Option<Database>,
    pub maintenance: Option<Maintenance>,
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
        let text = std::fs::read_to_string(path).map_err(|e| {
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
    if raw.services.is_empty() {
        return Err(format!(
            "{p}.services: no core services; add at least one table such as [environments.{name}.services.core] with `containers = [\"core\"]`"
        ));
    }
    let repo_default = raw.image_repository.clone();
    let tag_default = raw
        .image_tag
        .clone()
        .unwrap_or_else(|| "{version}".to_string());
    let template = |key: &str,
                    repo: Option<String>,
                    tag: Option<String>|
     -> Result<ImageTagTemplate, String> {
        let repo = repo.or_else(|| repo_default.clone());
        let tag = tag.unwrap_or_else(|| tag_default.clone());
        ImageTagTemplate::new(repo, &tag).map_err(|why| format!("{key}.image-tag: {why}"))
    };
    let mut services = Vec::new();
    for (sname, s) in raw.services {
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
            image: template(&key, s.image_repository, s.image_tag)?,
            containers,
            desired_count: s.desired_count,
        });
    }
    let service_names: Vec<String> = services.iter().map(|s| s.name.clone()).collect();
    let task = |tname: &str, key: &str, m: MigrationRaw| -> Result<TaskConfig, String> {
        let family = required(
            m.family,
            &format!("{key}.family"),
            "name the task definition family, e.g. `family = \"migrate\"`",
        )?;
        let container = m.container.unwrap_or_else(|| family.clone());
        let network = match (m.network_from_service, m.network) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{key}: both `network-from-service` and `network` are set; keep one"
                ));
            }
            (Some(svc), None) => {
                if !service_names.contains(&svc) {
                    return Err(format!(
                        "{key}.network-from-service: {svc:?} is not a core service of this environment; use one of: {}",
                        service_names.join(", ")
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
            (None, None) => TaskNetwork::FromService(service_names[0].clone()),
        };
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
            image: template(key, m.image_repository, m.image_tag)?,
            family,
            container,
            command: m.command,
            network,
            launch_type,
        })
    };
    let migration = match raw.migration {
        Some(m) => Some(task("migration", &format!("{p}.migration"), m)?),
        None => None,
    };
    let mut tasks = BTreeMap::new();
    for (tname, t) in raw.tasks {
        let key = format!("{p}.tasks.{tname}");
        tasks.insert(tname.clone(), task(&tname, &key, t)?);
    }
    let database = match raw.database {
        None => None,
        Some(d) => {
            let key = format!("{p}.database");
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
            if d.snapshot_retention == Some(0) {
                return Err(format!("{key}.snapshot-retention: 0 would delete every snapshot; use at least 1, or remove the key to keep all"));
            }
            Some(Database {
                kind,
                identifier,
                snapshot_name,
                snapshot_retention: d.snapshot_retention,
                settle: d.settle,
            })
        }
    };
    let maintenance = match raw.maintenance {
        None => None,
        Some(m) => {
            let key = format!("{p}.maintenance");
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
            let response = match (m.fixed_response, m.redirect) {
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
            };
            Some(Maintenance {
                listener_arn,
                response,
                drain: m.drain,
            })
        }
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
    if raw.timeout_minutes == Some(0) {
        return Err(format!("{p}.timeout-minutes: 0; use at least 1"));
    }
    Ok(Environment {
        name: name.to_string(),
        region,
        cluster,
        url: raw.url,
        timeout_minutes: raw.timeout_minutes,
        requires: raw.requires,
        ssm_path: raw.ssm_path,
        services,
        migration,
        tasks,
        database,
        maintenance,
    })
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
