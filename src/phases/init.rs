//! `init` (CLI only, read-only on AWS): write the config of an environment that runs now.
//!
//! 1. **Input first** ([`Request::from_args`]): the environment name, the region (flag, `AWS_REGION`,
//!    `AWS_DEFAULT_REGION`, or the region of the listener or cluster ARN), a listener in that region, and a file
//!    that does not exist yet (unless `--force`). Bad input exits 2 before any AWS call.
//! 2. **Observe** ([`observe`]): the cluster and every service of it with the containers of the revision it runs and
//!    its desired count; the migration family's newest revision; the database; the listener and its rules.
//!    Describe and List calls only (`deploy-action iam-policy --phase init` prints them).
//! 3. **Render** ([`render`], pure): one environment, commented. The containers that take the new image are the ones
//!    whose tag holds the release version ([`infer_tag`]: `core-v1.4.0` → `core-{version}`); sidecars on their own
//!    versions are left alone and named in a comment. What cannot be inferred (the URL, a missing migration,
//!    database or listener, a tag without a version) is a commented-out line starting `# TODO`.
//! 4. **Check, then write**: the text must pass the same parser `check-config` uses, or nothing is written. The file
//!    is created, never replaced, unless `--force`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_elasticloadbalancingv2::types::{Action, ActionTypeEnum, Rule, RuleCondition};
use serde::Serialize;

use crate::aws::{ecs, elb, rds};
use crate::config::{validate_env_name, Config, Database, DatabaseKind, DEFAULT_SNAPSHOT_NAME};
use crate::error::UsageError;
use crate::github::runner::Outcome;
use crate::inputs::{InitArgs, DEFAULT_CONFIG};
use crate::version::{split_image, ImageTagTemplate};

#[derive(Debug, Clone)]
pub struct Request {
    pub environment: String,
    pub cluster: String,
    pub region: String,
    pub listener_arn: Option<String>,
    pub database: Option<(DatabaseKind, String)>,
    pub migration_family: Option<String>,
    pub path: PathBuf,
    pub force: bool,
}

/// The region inside an ARN (`arn:aws:elasticloadbalancing:eu-central-1:...` → `eu-central-1`).
fn arn_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts[..] {
        ["arn", _, _, region, _, _] if !region.is_empty() => Some(region),
        _ => None,
    }
}

impl Request {
    /// Validates the flags; no AWS call. `env_region` is `AWS_REGION`, else `AWS_DEFAULT_REGION`.
    pub fn from_args(a: &InitArgs, env_region: Option<String>) -> Result<Request, UsageError> {
        validate_env_name(&a.environment)
            .map_err(|why| UsageError::new(format!("--env: {why}")))?;
        if a.cluster.trim().is_empty() {
            return Err(UsageError::new(
                "--cluster: empty; name the ECS cluster the environment runs in",
            ));
        }
        if let Some(l) = &a.listener_arn {
            if !(l.starts_with("arn:")
                && l.contains(":elasticloadbalancing:")
                && l.contains(":listener/app/"))
            {
                return Err(UsageError::new(format!(
                    "--listener-arn: {l:?} is not an ALB listener ARN (arn:aws:elasticloadbalancing:<region>:<account>:listener/app/...); copy it from the load balancer's Listeners tab"
                )));
            }
        }
        let region = a
            .region
            .clone()
            .or(env_region)
            .filter(|r| !r.trim().is_empty())
            .or_else(|| {
                a.listener_arn
                    .as_deref()
                    .and_then(arn_region)
                    .map(str::to_string)
            })
            .or_else(|| arn_region(&a.cluster).map(str::to_string))
            .ok_or_else(|| {
                UsageError::new("--region: missing; pass --region eu-central-1 or set AWS_REGION")
            })?;
        if let Some(l) = &a.listener_arn {
            if let Some(r) = arn_region(l).filter(|r| *r != region) {
                return Err(UsageError::new(format!(
                    "--listener-arn: the listener is in {r}, the environment in {region} (--region or AWS_REGION); pass the listener that serves this environment, or --region {r}"
                )));
            }
        }
        let database = match (&a.db_instance, &a.db_cluster) {
            (Some(i), None) => Some((DatabaseKind::Instance, i.clone())),
            (None, Some(c)) => Some((DatabaseKind::Cluster, c.clone())),
            (None, None) => None,
            (Some(_), Some(_)) => return Err(UsageError::new(
                "--db-instance and --db-cluster: pass one (an RDS instance, or an Aurora cluster)",
            )),
        };
        let path = a
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
        if path.exists() && !a.force {
            return Err(UsageError::new(format!(
                "--config: {} exists; init never replaces a config: pass --force to replace it, or --config another path",
                path.display()
            )));
        }
        Ok(Request {
            environment: a.environment.clone(),
            cluster: a.cluster.clone(),
            region,
            listener_arn: a.listener_arn.clone(),
            database,
            migration_family: a.migration_family.clone(),
            path,
            force: a.force,
        })
    }
}

/// Only the clients `init` uses.
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub rds: aws_sdk_rds::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            ecs: aws_sdk_ecs::Client::new(sdk),
            rds: aws_sdk_rds::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
        }
    }
}

/// A service or task definition as init read it: the revision and its containers as (name, image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedTaskDef {
    pub name: String,
    pub task_definition: String,
    pub containers: Vec<(String, String)>,
    /// Services only: the desired count now.
    pub desired: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedDb {
    pub kind: DatabaseKind,
    pub identifier: String,
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedListener {
    pub arn: String,
    /// One line per rule, in priority order, the default rule last (`10: path-pattern /api/* → forward stage-core`).
    pub rules: Vec<String>,
}

/// Everything `init` read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitObserved {
    pub services: Vec<ObservedTaskDef>,
    pub migration: Option<ObservedTaskDef>,
    pub database: Option<ObservedDb>,
    pub listener: Option<ObservedListener>,
}

/// Reads the environment. Describe and List calls only. A cluster, database, listener or migration family that does
/// not exist is bad input (exit 2); a service whose revision has no containers fails (exit 1).
pub async fn observe(req: &Request, c: &Clients) -> Result<InitObserved> {
    let cluster = &req.cluster;
    if !ecs::cluster_is_active(&c.ecs, cluster).await? {
        return Err(UsageError::new(format!(
            "--cluster: ECS cluster {cluster} does not exist (or is not ACTIVE) in {}; name the cluster the environment runs in, or pass --region",
            req.region
        ))
        .into());
    }
    let names = ecs::service_names(&c.ecs, cluster).await?;
    if names.is_empty() {
        return Err(UsageError::new(format!(
            "--cluster: ECS cluster {cluster} in {} has no services; init describes an environment that runs: create its services first",
            req.region
        ))
        .into());
    }
    let described = ecs::describe_services(&c.ecs, cluster, &names).await?;
    let mut services = Vec::new();
    for svc in &described {
        let name = svc.service_name().unwrap_or_default().to_string();
        let td = svc.task_definition().unwrap_or_default().to_string();
        let containers = ecs::container_images(&c.ecs, &td).await?;
        if containers.is_empty() {
            bail!(
                "ECS service {cluster}/{name}: its task definition {} has no containers, so init cannot tell which take the new image; point the service at a revision with containers and run init again",
                ecs::td_short(&td)
            );
        }
        services.push(ObservedTaskDef {
            name,
            task_definition: td,
            containers,
            desired: Some(svc.desired_count()),
        });
    }
    let migration = match &req.migration_family {
        None => None,
        Some(family) => Some(observe_family(c, family, &req.region).await?),
    };
    let database = match &req.database {
        None => None,
        Some((kind, id)) => Some(observe_db(c, *kind, id, &req.region).await?),
    };
    let listener = match &req.listener_arn {
        None => None,
        Some(arn) => Some(observe_listener(c, arn).await?),
    };
    Ok(InitObserved {
        services,
        migration,
        database,
        listener,
    })
}

async fn observe_family(c: &Clients, family: &str, region: &str) -> Result<ObservedTaskDef> {
    let Some((td, _)) = ecs::latest_task_definition(&c.ecs, family).await? else {
        return Err(UsageError::new(format!(
            "--migration-family: no ACTIVE task definition of family {family} in {region}; name the family the migration task runs (ECS console, Task definitions)"
        ))
        .into());
    };
    let containers = td
        .container_definitions()
        .iter()
        .map(|c| {
            (
                c.name().unwrap_or_default().to_string(),
                c.image().unwrap_or_default().to_string(),
            )
        })
        .collect::<Vec<_>>();
    if containers.is_empty() {
        bail!("ECS task definition family {family}: its newest revision has no containers; register one with the migration container and run init again");
    }
    Ok(ObservedTaskDef {
        name: family.to_string(),
        task_definition: td.task_definition_arn().unwrap_or(family).to_string(),
        containers,
        desired: None,
    })
}

async fn observe_db(c: &Clients, kind: DatabaseKind, id: &str, region: &str) -> Result<ObservedDb> {
    let db = Database {
        kind,
        identifier: id.to_string(),
        snapshot_name: DEFAULT_SNAPSHOT_NAME.into(),
        snapshot_retention: None,
        settle: None,
    };
    match rds::db_status(&c.rds, &db).await {
        Ok(status) => Ok(ObservedDb {
            kind,
            identifier: id.to_string(),
            status,
        }),
        Err(e) if rds::is_db_not_found(&e) => {
            let (flag, what) = match kind {
                DatabaseKind::Instance => ("--db-instance", "RDS DB instance"),
                DatabaseKind::Cluster => ("--db-cluster", "Aurora DB cluster"),
            };
            Err(UsageError::new(format!(
                "{flag}: {what} {id} does not exist in {region}; pass the identifier shown in the RDS console"
            ))
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

async fn observe_listener(c: &Clients, arn: &str) -> Result<ObservedListener> {
    match elb::describe_listener(&c.elb, arn).await {
        Ok(_) => {}
        Err(e) if elb::is_listener_not_found(&e) => {
            return Err(UsageError::new(format!(
                "--listener-arn: listener {arn} does not exist; copy the ARN from the load balancer's Listeners tab"
            ))
            .into())
        }
        Err(e) => return Err(e.into()),
    }
    let rules = elb::describe_rules(&c.elb, arn).await?;
    Ok(ObservedListener {
        arn: arn.to_string(),
        rules: rules.iter().map(rule_line).collect(),
    })
}

/// `10: path-pattern /api/* → forward stage-core`, `default → forward stage-core`.
fn rule_line(rule: &Rule) -> String {
    let when = if rule.is_default() == Some(true) {
        "default".to_string()
    } else {
        let conditions: Vec<String> = rule.conditions().iter().map(condition_text).collect();
        format!(
            "{}: {}",
            rule.priority().unwrap_or("?"),
            conditions.join(" and ")
        )
    };
    let actions: Vec<String> = rule.actions().iter().map(action_text).collect();
    format!("{when} → {}", actions.join(", "))
}

fn condition_text(c: &RuleCondition) -> String {
    let mut values: Vec<String> = c.values().to_vec();
    if let Some(h) = c.host_header_config() {
        values.extend(h.values().iter().cloned());
    }
    if let Some(p) = c.path_pattern_config() {
        values.extend(p.values().iter().cloned());
    }
    if let Some(h) = c.http_header_config() {
        values = vec![format!(
            "{}={}",
            h.http_header_name().unwrap_or_default(),
            h.values().join("|")
        )];
    }
    values.dedup();
    format!("{} {}", c.field().unwrap_or("?"), values.join(","))
}

fn action_text(a: &Action) -> String {
    let tg_name = |arn: &str| arn.split('/').nth(1).unwrap_or(arn).to_string();
    match a.r#type() {
        Some(ActionTypeEnum::Forward) => {
            let mut groups: Vec<String> = a.target_group_arn().map(tg_name).into_iter().collect();
            if let Some(f) = a.forward_config() {
                for g in f.target_groups() {
                    if let Some(arn) = g.target_group_arn() {
                        groups.push(tg_name(arn));
                    }
                }
            }
            groups.dedup();
            format!("forward {}", groups.join(","))
        }
        Some(ActionTypeEnum::FixedResponse) => format!(
            "fixed-response {}",
            a.fixed_response_config()
                .and_then(|f| f.status_code())
                .unwrap_or("?")
        ),
        Some(ActionTypeEnum::Redirect) => "redirect".into(),
        Some(other) => other.as_str().to_string(),
        None => "?".into(),
    }
}

/// Finds the release version in an image tag: `v1.4.0`, `1.4.0`, `v3.56.2-rc1`, `v2024.10.02.1` (three or more
/// numeric parts, an optional `v`, an optional pre-release: alpha, beta, rc, pre, preview, dev or snapshot) or a 40-character commit SHA,
/// standing alone between `-`, `_`, `.` or the ends. Returns the tag template and the version:
/// `core-v1.4.0` → (`core-{version}`, `v1.4.0`). `latest`, `3.4` or `stable` hold none.
pub fn infer_tag(tag: &str) -> Option<(String, String)> {
    let b = tag.as_bytes();
    let sep = |i: usize| i == 0 || b"-_.".contains(&b[i - 1]);
    for start in 0..b.len() {
        if !sep(start) {
            continue;
        }
        let Some(end) = version_end(b, start).or_else(|| sha_end(b, start)) else {
            continue;
        };
        if end == b.len() || b"-_".contains(&b[end]) {
            let template = format!("{}{{version}}{}", &tag[..start], &tag[end..]);
            ImageTagTemplate::new(None, &template).ok()?;
            return Some((template, tag[start..end].to_string()));
        }
    }
    None
}

/// The end of `v?N.N.N(.N)*(-[A-Za-z][A-Za-z0-9.]*)?` starting at `start`.
fn version_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    if i < b.len() && (b[i] == b'v' || b[i] == b'V') {
        i += 1;
    }
    let mut parts = 0;
    loop {
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        i += digits;
        parts += 1;
        if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
            i += 1;
        } else {
            break;
        }
    }
    if parts < 3 {
        return None;
    }
    // A pre-release (`-rc1`, `-beta.2`, `-alpha`) belongs to the version; other suffixes (`-arm64`, `-slim`) do not.
    if i < b.len() && b[i] == b'-' {
        let rest = &b[i + 1..];
        let word = rest.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        let known = ["alpha", "beta", "rc", "pre", "preview", "dev", "snapshot"]
            .iter()
            .any(|w| rest[..word].eq_ignore_ascii_case(w.as_bytes()));
        if known {
            let tail = rest[word..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == b'.')
                .count();
            let tail = if rest[word..word + tail].ends_with(b".") {
                tail - 1
            } else {
                tail
            };
            i += 1 + word + tail;
        }
    }
    Some(i)
}

fn sha_end(b: &[u8], start: usize) -> Option<usize> {
    let n = b[start..]
        .iter()
        .take_while(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        .count();
    (n == 40).then_some(start + 40)
}

/// The containers of a revision that take the new image: those whose tag holds `version` through one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picked {
    pub containers: Vec<String>,
    /// `None`: no container's tag holds a version (the template stays the default `{version}`, with a TODO).
    pub template: Option<String>,
    pub version: Option<String>,
    /// Containers left alone, as (name, image).
    pub others: Vec<(String, String)>,
}

/// Picks the containers of one revision. The one to follow: named like the service (or family) and on the
/// environment's version, else any on that version, else the one named like the service, else the first with a
/// version; every container with the same template and version joins it.
pub fn pick(containers: &[(String, String)], name: &str, env_version: Option<&str>) -> Picked {
    let inferred: Vec<Option<(String, String)>> = containers
        .iter()
        .map(|(_, image)| split_image(image).1.and_then(infer_tag))
        .collect();
    let on_env = |i: usize| {
        inferred[i]
            .as_ref()
            .is_some_and(|(_, v)| Some(v.as_str()) == env_version)
    };
    let named =
        |i: usize| containers[i].0 == name || name.ends_with(&format!("-{}", containers[i].0));
    let idx: Vec<usize> = (0..containers.len()).collect();
    let lead = idx
        .iter()
        .find(|&&i| named(i) && on_env(i))
        .or_else(|| idx.iter().find(|&&i| on_env(i)))
        .or_else(|| idx.iter().find(|&&i| named(i) && inferred[i].is_some()))
        .or_else(|| idx.iter().find(|&&i| inferred[i].is_some()))
        .copied();
    let Some(lead) = lead else {
        let first = idx.iter().find(|&&i| named(i)).copied().unwrap_or(0);
        return Picked {
            containers: vec![containers[first].0.clone()],
            template: None,
            version: None,
            others: others(containers, &[first]),
        };
    };
    let chosen: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| inferred[i] == inferred[lead])
        .collect();
    let (template, version) = inferred[lead].clone().unzip();
    Picked {
        containers: chosen.iter().map(|&i| containers[i].0.clone()).collect(),
        template,
        version,
        others: others(containers, &chosen),
    }
}

fn others(containers: &[(String, String)], chosen: &[usize]) -> Vec<(String, String)> {
    containers
        .iter()
        .enumerate()
        .filter(|(i, _)| !chosen.contains(i))
        .map(|(_, c)| c.clone())
        .collect()
}

/// The version most containers of the environment's services hold (ties: the first seen).
pub fn env_version(services: &[ObservedTaskDef]) -> Option<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for s in services {
        for (_, image) in &s.containers {
            if let Some((_, v)) = split_image(image).1.and_then(infer_tag) {
                match counts.iter_mut().find(|(seen, _)| *seen == v) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((v, 1)),
                }
            }
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(v, _)| v)
}

/// `<name>-pr-<digits>` where `<name>` is another service: a review app, not a core service.
fn is_review_app(name: &str, all: &[ObservedTaskDef]) -> bool {
    name.rsplit_once("-pr-").is_some_and(|(base, n)| {
        !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) && all.iter().any(|s| s.name == base)
    })
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The config text, what could not be inferred, the services written and the environment's version. Pure.
pub fn render(req: &Request, obs: &InitObserved, written_on: &str) -> Rendered {
    let env = &req.environment;
    let mut todos: Vec<String> = Vec::new();
    let version = env_version(&obs.services);
    let mut out = vec![
        format!("# Written by `deploy-action init` on {written_on} from what ECS cluster {} runs in {}.", req.cluster, req.region),
        format!("# Check it: `deploy-action check-config -c {}`; then `deploy-action status --env {env}` reads the", req.path.display()),
        "# environment through it. Lines starting with `# TODO` are what init could not infer: fill them in or delete them.".into(),
        String::new(),
        format!("[environments.{env}]"),
        format!("region = {}", q(&req.region)),
        format!("cluster = {}", q(&req.cluster)),
        "# TODO: url = \"https://...\"  # the site's public URL: GitHub deployments and the step summary link to it".into(),
    ];
    todos.push("url: the site's public URL".into());
    out.push(String::new());
    let mut services = Vec::new();
    for s in &obs.services {
        if is_review_app(&s.name, &obs.services) {
            out.push(format!(
                "# Service {} is a review app (phase preview), not a core service: left out.",
                s.name
            ));
            out.push(String::new());
            continue;
        }
        services.push(s.name.clone());
        service_block(&mut out, &mut todos, env, s, version.as_deref());
    }
    let first = services.first().cloned().unwrap_or_default();
    migration_block(
        &mut out,
        &mut todos,
        env,
        obs.migration.as_ref(),
        version.as_deref(),
        &first,
    );
    database_block(&mut out, &mut todos, env, obs.database.as_ref());
    maintenance_block(&mut out, &mut todos, env, obs.listener.as_ref());
    Rendered {
        text: out.join("\n").trim_end().to_string() + "\n",
        todos,
        services,
        version,
    }
}

/// What [`render`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub todos: Vec<String>,
    pub services: Vec<String>,
    pub version: Option<String>,
}

fn service_block(
    out: &mut Vec<String>,
    todos: &mut Vec<String>,
    env: &str,
    s: &ObservedTaskDef,
    version: Option<&str>,
) {
    let p = pick(&s.containers, &s.name, version);
    let images: Vec<String> = s
        .containers
        .iter()
        .map(|(n, i)| format!("{n} {i}"))
        .collect();
    out.push(format!(
        "# {}: revision {}; containers: {}",
        s.name,
        ecs::td_short(&s.task_definition),
        images.join(", ")
    ));
    for (n, _) in &p.others {
        out.push(format!("# Container {n} keeps its image on deploy (its tag does not follow the release version)."));
    }
    out.push(format!("[environments.{env}.services.{}]", s.name));
    let names: Vec<String> = p.containers.iter().map(|c| q(c)).collect();
    out.push(format!("containers = [{}]", names.join(", ")));
    match s.desired {
        Some(n) if n > 0 => out.push(format!("desired-count = {n}")),
        _ => {
            out.push("# TODO: desired-count = 1  # the service runs 0 tasks now; the count `running` brings it back to".into());
            todos.push(format!(
                "services.{}.desired-count: the service runs 0 tasks now",
                s.name
            ));
        }
    }
    match &p.template {
        Some(t) => out.push(format!("image-tag = {}", q(t))),
        None => {
            out.push(format!("# TODO: image-tag = \"{}-{{version}}\"  # no tag of {} holds a release version; the default is the version itself", s.name, s.name));
            todos.push(format!(
                "services.{}.image-tag: no container tag holds a release version",
                s.name
            ));
        }
    }
    out.push(String::new());
}

fn migration_block(
    out: &mut Vec<String>,
    todos: &mut Vec<String>,
    env: &str,
    m: Option<&ObservedTaskDef>,
    version: Option<&str>,
    network_from: &str,
) {
    let Some(m) = m else {
        out.push("# TODO: the migration task (phase migrate): run init again with --migration-family, or fill in:".into());
        out.push(format!("# [environments.{env}.migration]"));
        out.push("# family = \"<task definition family>\"".into());
        out.push("# container = \"migrate\"".into());
        out.push("# image-tag = \"migrate-{version}\"".into());
        out.push(format!("# network-from-service = {}", q(network_from)));
        out.push(String::new());
        todos.push("migration: no --migration-family given".into());
        return;
    };
    let p = pick(&m.containers, &m.name, version);
    out.push(format!(
        "# {}: the newest revision runs {}",
        ecs::td_short(&m.task_definition),
        m.containers
            .iter()
            .map(|(n, i)| format!("{n} {i}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.push(format!("[environments.{env}.migration]"));
    out.push(format!("family = {}", q(&m.name)));
    out.push(format!("container = {}", q(&p.containers[0])));
    match &p.template {
        Some(t) => out.push(format!("image-tag = {}", q(t))),
        None => {
            out.push("# TODO: image-tag = \"migrate-{version}\"  # the migration image's tag holds no release version".into());
            todos.push("migration.image-tag: the tag holds no release version".into());
        }
    }
    out.push(format!(
        "network-from-service = {}  # the task runs in this service's subnets and security groups",
        q(network_from)
    ));
    out.push(String::new());
}

fn database_block(
    out: &mut Vec<String>,
    todos: &mut Vec<String>,
    env: &str,
    db: Option<&ObservedDb>,
) {
    match db {
        Some(d) => {
            out.push(format!("[environments.{env}.database]"));
            let key = match d.kind {
                DatabaseKind::Instance => "instance",
                DatabaseKind::Cluster => "cluster",
            };
            out.push(format!("{key} = {}  # {} now", q(&d.identifier), d.status));
            out.push("# snapshot-retention = 10  # keep this many of the snapshots this action makes (default: all)".into());
        }
        None => {
            out.push("# TODO: the database (phases snapshot and migrate): run init again with --db-instance or --db-cluster, or:".into());
            out.push(format!("# [environments.{env}.database]"));
            out.push(
                "# instance = \"<RDS instance id>\"  # or: cluster = \"<Aurora cluster id>\""
                    .into(),
            );
            todos.push("database: no --db-instance or --db-cluster given".into());
        }
    }
    out.push(String::new());
}

fn maintenance_block(
    out: &mut Vec<String>,
    todos: &mut Vec<String>,
    env: &str,
    l: Option<&ObservedListener>,
) {
    match l {
        Some(l) => {
            out.push("# The listener's rules now; maintenance puts its response in front of them and restores them exactly:".into());
            for r in &l.rules {
                out.push(format!("#   {r}"));
            }
            out.push(format!("[environments.{env}.maintenance]"));
            out.push(format!("listener-arn = {}", q(&l.arn)));
            out.push("# The response while maintenance is on (default: fixed-response 503, a short HTML page):".into());
            out.push("# fixed-response = { status-code = 503, content-type = \"text/html\", body = \"<h1>Down for maintenance</h1>\" }".into());
            out.push(
                "# redirect = { url = \"https://maintenance.example.org\", status-code = 302 }"
                    .into(),
            );
        }
        None => {
            out.push("# TODO: maintenance (states restricted, db-only, stopped): run init again with --listener-arn, or:".into());
            out.push(format!("# [environments.{env}.maintenance]"));
            out.push("# listener-arn = \"arn:aws:elasticloadbalancing:<region>:<account>:listener/app/...\"".into());
            todos.push("maintenance: no --listener-arn given".into());
        }
    }
}

/// What `init` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Initialized {
    pub config: String,
    pub environment: String,
    pub region: String,
    pub cluster: String,
    pub services: Vec<String>,
    pub version: Option<String>,
    /// What could not be inferred (commented-out `# TODO` lines in the file).
    pub todos: Vec<String>,
}

/// Observe, render, check with the config parser, write (create; replace only with `--force`).
pub async fn run(req: &Request, c: &Clients) -> Result<Initialized> {
    let obs = observe(req, c).await?;
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let r = render(req, &obs, &today);
    check(&r.text, &req.path, &req.environment)?;
    write(&req.path, &r.text, req.force)?;
    Ok(Initialized {
        config: req.path.display().to_string(),
        environment: req.environment.clone(),
        region: req.region.clone(),
        cluster: req.cluster.clone(),
        services: r.services,
        version: r.version,
        todos: r.todos,
    })
}

/// The text passes the parser `check-config` uses (a failure here is a bug of init: nothing is written).
fn check(text: &str, path: &Path, env: &str) -> Result<()> {
    let config = Config::parse(text, path)
        .map_err(|e| anyhow!("init made a config check-config rejects, so nothing was written (a bug of init; please report it): {e}"))?;
    config.environment(env)?;
    Ok(())
}

fn write(path: &Path, text: &str, force: bool) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if force {
        let tmp = path.with_extension("toml.init-tmp");
        std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replace {}", path.display()))?;
        return Ok(());
    }
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::Error::from(UsageError::new(format!(
                "--config: {} exists; init never replaces a config: pass --force to replace it, or --config another path",
                path.display()
            ))),
            _ => anyhow!("create {}: {e}", path.display()),
        })?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

impl Outcome for Initialized {
    fn ok(&self) -> bool {
        true
    }
    fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("config", self.config.clone()),
            ("environments", self.environment.clone()),
        ]
    }
    fn summary(&self) -> String {
        let mut s = format!(
            "### Config `{}` written for `{}`\n\nServices: {}; version {}.\n",
            self.config,
            self.environment,
            self.services.join(", "),
            self.version.as_deref().unwrap_or("unknown")
        );
        for t in &self.todos {
            s.push_str(&format!("- TODO {t}\n"));
        }
        s
    }
    fn text(&self) -> String {
        let mut s = format!(
            "wrote {}: environment {} (cluster {}, {}), services {} on {}\n",
            self.config,
            self.environment,
            self.cluster,
            self.region,
            self.services.join(", "),
            self.version.as_deref().unwrap_or("an unknown version")
        );
        if !self.todos.is_empty() {
            s.push_str("TODO (commented out in the file):\n");
            for t in &self.todos {
                s.push_str(&format!("  - {t}\n"));
            }
        }
        s.push_str(&format!(
            "next: deploy-action check-config -c {0}; deploy-action status --env {1} -c {0}",
            self.config, self.environment
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_templates_are_inferred_from_the_version_inside() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("core-v1.4.0", Some(("core-{version}", "v1.4.0"))),
            ("v1.4.0", Some(("{version}", "v1.4.0"))),
            ("1.4.0", Some(("{version}", "1.4.0"))),
            (
                "workers-v3.56.2-rc1",
                Some(("workers-{version}", "v3.56.2-rc1")),
            ),
            (
                "v2.0.0-beta.2-slim",
                Some(("{version}-slim", "v2.0.0-beta.2")),
            ),
            (
                "core-v1.4.0-arm64",
                Some(("core-{version}-arm64", "v1.4.0")),
            ),
            (
                "api-v2024.10.02.1",
                Some(("api-{version}", "v2024.10.02.1")),
            ),
            ("v1.4.0_slim", Some(("{version}_slim", "v1.4.0"))),
            (&format!("migrate-{sha}"), Some(("migrate-{version}", sha))),
            ("latest", None),
            ("3.4", None),
            ("core-v1.4", None),
            ("corev1.4.0", None),
            ("v1.4.0x", None),
            (&sha[..39], None),
        ];
        for (tag, want) in cases {
            let got = infer_tag(tag);
            let want = want.map(|(t, v)| (t.to_string(), v.to_string()));
            assert_eq!(got, want, "{tag}");
        }
    }

    fn c(name: &str, image: &str) -> (String, String) {
        (name.to_string(), image.to_string())
    }

    #[test]
    fn containers_that_follow_the_release_are_picked() {
        let repo = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/app";
        // A sidecar on its own version is left alone.
        let p = pick(
            &[
                c("core", &format!("{repo}:core-v1.0.0")),
                c("nudenet", "ghcr.io/notai-tech/nudenet:3.4"),
                c("nginx", "nginx:1.25.3"),
            ],
            "core",
            Some("v1.0.0"),
        );
        assert_eq!(p.containers, vec!["core"]);
        assert_eq!(p.template.as_deref(), Some("core-{version}"));
        assert_eq!(p.others.len(), 2);
        // Two containers on one template and version both take the new image.
        let p = pick(
            &[
                c("web", &format!("{repo}:v2.0.0")),
                c("jobs", &format!("{repo}:v2.0.0")),
            ],
            "web",
            Some("v2.0.0"),
        );
        assert_eq!(p.containers, vec!["web", "jobs"]);
        // The environment's version wins over a sidecar that comes first.
        let p = pick(
            &[
                c("proxy", "envoy:1.30.1"),
                c("app", &format!("{repo}:app-v2.0.0")),
            ],
            "api",
            Some("v2.0.0"),
        );
        assert_eq!(p.containers, vec!["app"]);
        // A family `stage-migrate` follows its container `migrate`.
        let p = pick(
            &[
                c("other", &format!("{repo}:x-v1.0.0")),
                c("migrate", &format!("{repo}:migrate-v1.0.0")),
            ],
            "stage-migrate",
            Some("v1.0.0"),
        );
        assert_eq!(p.containers, vec!["migrate"]);
        // No version anywhere: the container named like the service, with no template.
        let p = pick(
            &[
                c("side", "busybox:latest"),
                c("core", &format!("{repo}:latest")),
            ],
            "core",
            None,
        );
        assert_eq!((p.containers, p.template), (vec!["core".to_string()], None));
    }

    fn observed() -> InitObserved {
        let repo = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/app";
        let svc = |name: &str, tag: &str, desired| ObservedTaskDef {
            name: name.into(),
            task_definition: format!(
                "arn:aws:ecs:eu-central-1:123456789012:task-definition/stage-{name}:3"
            ),
            containers: vec![c(name, &format!("{repo}:{tag}"))],
            desired: Some(desired),
        };
        InitObserved {
            services: vec![
                svc("core", "core-v1.4.0", 2),
                svc("core-pr-12", "core-pr-12-abc", 1),
                svc("workers", "workers-v1.4.0", 0),
            ],
            migration: Some(ObservedTaskDef {
                name: "stage-migrate".into(),
                task_definition:
                    "arn:aws:ecs:eu-central-1:123456789012:task-definition/stage-migrate:1".into(),
                containers: vec![c("migrate", &format!("{repo}:migrate-v1.4.0"))],
                desired: None,
            }),
            database: Some(ObservedDb {
                kind: DatabaseKind::Cluster,
                identifier: "app-stage".into(),
                status: "available".into(),
            }),
            listener: None,
        }
    }

    fn request() -> Request {
        Request {
            environment: "stage".into(),
            cluster: "app-stage".into(),
            region: "eu-central-1".into(),
            listener_arn: None,
            database: None,
            migration_family: None,
            path: PathBuf::from("deploy.toml"),
            force: false,
        }
    }

    #[test]
    fn the_rendered_config_parses_and_says_what_it_could_not_infer() {
        let r = render(&request(), &observed(), "2026-12-02");
        let config = Config::parse(&r.text, Path::new("deploy.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{}", r.text));
        let env = config.environment("stage").unwrap();
        assert_eq!(
            r.services,
            vec!["core", "workers"],
            "the review app is left out"
        );
        assert_eq!(env.services.len(), 2);
        assert_eq!(env.service("core").unwrap().desired_count, Some(2));
        assert_eq!(env.service("core").unwrap().image.tag, "core-{version}");
        assert_eq!(
            env.service("workers").unwrap().desired_count,
            None,
            "0 now: a TODO, not 0"
        );
        let m = env.migration.as_ref().unwrap();
        assert_eq!(
            (
                m.family.as_str(),
                m.container.as_str(),
                m.image.tag.as_str()
            ),
            ("stage-migrate", "migrate", "migrate-{version}")
        );
        let db = env.database.as_ref().unwrap();
        assert_eq!(
            (db.kind, db.identifier.as_str()),
            (DatabaseKind::Cluster, "app-stage")
        );
        assert!(env.maintenance.is_none() && env.url.is_none());
        assert_eq!(r.version.as_deref(), Some("v1.4.0"));
        for todo in [
            "# TODO: url",
            "# TODO: desired-count",
            "# TODO: maintenance",
        ] {
            assert!(r.text.contains(todo), "{todo}:\n{}", r.text);
        }
        assert_eq!(r.todos.len(), 3, "{:?}", r.todos);
        assert!(
            r.text.contains("# Service core-pr-12 is a review app"),
            "{}",
            r.text
        );
    }

    fn args(extra: &[&str]) -> InitArgs {
        use clap::Parser;
        let mut argv = vec![
            "deploy-action",
            "init",
            "--env",
            "stage",
            "--cluster",
            "app-stage",
            "-c",
            "/nonexistent/deploy.toml",
        ];
        argv.extend_from_slice(extra);
        match crate::inputs::Cli::try_parse_from(argv).unwrap().command {
            Some(crate::inputs::Command::Init(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_input_is_refused_before_any_call() {
        let other = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/x/1/2";
        let e = Request::from_args(
            &args(&["--listener-arn", other]),
            Some("eu-central-1".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "--listener-arn: the listener is in us-east-1, the environment in eu-central-1"
            ),
            "{e}"
        );
        let e = Request::from_args(
            &args(&[
                "--listener-arn",
                "arn:aws:elasticloadbalancing:eu-central-1:1:listener/net/x/1/2",
            ]),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not an ALB listener ARN"), "{e}");
        let e = Request::from_args(&args(&[]), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--region: missing"), "{e}");
        // The region of the listener when nothing else names one.
        let here = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:listener/app/x/1/2";
        assert_eq!(
            Request::from_args(&args(&["--listener-arn", here]), None)
                .unwrap()
                .region,
            "eu-west-1"
        );
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("deploy.toml");
        std::fs::write(&existing, "x").unwrap();
        let mut a = args(&[]);
        a.config = Some(existing.clone());
        let e = Request::from_args(&a, Some("eu-central-1".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exists; init never replaces a config: pass --force"),
            "{e}"
        );
        a.force = true;
        assert!(Request::from_args(&a, Some("eu-central-1".into())).is_ok());
        let mut a = args(&[]);
        a.environment = "bad name".into();
        assert!(Request::from_args(&a, Some("eu-central-1".into()))
            .unwrap_err()
            .to_string()
            .starts_with("--env:"));
        use clap::Parser;
        assert!(crate::inputs::Cli::try_parse_from([
            "deploy-action",
            "init",
            "--env",
            "s",
            "--cluster",
            "c",
            "--db-instance",
            "a",
            "--db-cluster",
            "b"
        ])
        .is_err());
    }
}
