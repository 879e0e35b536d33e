//! Phase `run`: any one-off task (a seed after the database was recreated, `db:prepare`, an admin command), watched
//! like a migration.
//!
//! 1. **The version first** ([`promote::resolve`]): as given, or `from:<environment>`, before anything changes.
//! 2. **Which task**: the `task` input names `[environments.<env>.tasks.<name>]`. When no task has that name but a
//!    core service does, the task is that service's: the family of the task definition the service runs, its first
//!    configured container, its image-tag template, its network and its launch type ([`service_task`]). A
//!    configured task wins over a service of the same name.
//! 3. **The task** through [`crate::domain::task::run`], exactly as `migrate` runs its migration: a revision with only the
//!    image changed to the version's, one task per (environment, task name) and a rerun attaches to it, the optional
//!    `command` override (a JSON list of strings), live logs with no line lost, the verdict from the exit code and
//!    the stop code; `timeout-minutes` and cancellation stop the task.
//!
//! `migrate` is this phase plus its preconditions (a fresh snapshot, db-only): both run the task through
//! [`crate::domain::one_off::execute`] and render a [`RunOutcome`].

use std::time::Duration;

use anyhow::{bail, Result};
use tokio::time::Instant;

use super::Ctx;
use crate::aws::ecs;
use crate::config::{Environment, Service, TaskConfig, TaskNetwork};
use crate::domain::one_off::execute;
pub use crate::domain::one_off::RunOutcome;
use crate::domain::preflight;
use crate::domain::promote::{self, SelfReference, VersionRef};
use crate::domain::task::{self, Launch};
use crate::domain::versions;
use crate::error::UsageError;
use crate::inputs::{Common, Invocation};

#[derive(Debug, Clone)]
pub struct Request {
    pub environment: Environment,
    pub task: TaskRef,
    pub version: VersionRef,
    /// Replaces the task's command when set.
    pub command: Option<Vec<String>>,
    /// How long the preflight waits for the task's image to be pushed.
    pub wait_for_images: Duration,
}

/// The task the `task` input names.
#[derive(Debug, Clone)]
pub enum TaskRef {
    /// `[environments.<env>.tasks.<name>]`.
    Configured(TaskConfig),
    /// A core service's task definition (its family is read from the service when the phase runs).
    Service(Service),
}

impl TaskRef {
    pub fn name(&self) -> &str {
        match self {
            TaskRef::Configured(t) => &t.name,
            TaskRef::Service(s) => &s.name,
        }
    }
}

impl Request {
    pub fn from_invocation(inv: &Invocation, common: &Common) -> Result<Request, UsageError> {
        let env = &common.environment;
        let task = task_ref(env, inv.raw.task.as_deref())?;
        let command = parse_command(inv.raw.command.as_deref())?;
        let version = VersionRef::from_invocation(inv, common, SelfReference::Allowed)?;
        if let Some(v) = version.given() {
            match &task {
                TaskRef::Configured(t) => t.image.tag_for(v)?,
                TaskRef::Service(s) => s.image.tag_for(v)?,
            };
        }
        Ok(Request {
            environment: env.clone(),
            task,
            version,
            command,
            wait_for_images: common.wait_for_images,
        })
    }
}

impl super::Recorded for Request {
    fn subject(&self, common: &Common) -> super::Subject {
        super::Subject::new(common, self.version.given())
    }
}

/// Pure: the task the `task` input names, or a usage error listing the names there are.
pub fn task_ref(env: &Environment, name: Option<&str>) -> Result<TaskRef, UsageError> {
    let tasks: Vec<&str> = env.tasks.keys().map(String::as_str).collect();
    let services: Vec<&str> = env.services.iter().map(|s| s.name.as_str()).collect();
    let known = format!(
        "tasks of {}: {}; core services: {}",
        env.name,
        if tasks.is_empty() {
            "none".to_string()
        } else {
            tasks.join(", ")
        },
        services.join(", ")
    );
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Err(UsageError::new(format!(
            "input `task`: missing; name a task from [environments.{}.tasks] or a core service ({known})",
            env.name
        )));
    };
    if let Some(t) = env.tasks.get(name) {
        return Ok(TaskRef::Configured(t.clone()));
    }
    if let Some(s) = env.service(name) {
        return Ok(TaskRef::Service(s.clone()));
    }
    if name == "migration" && env.migration.is_some() {
        return Err(UsageError::new(
            "input `task`: the migration runs through phase migrate (after its snapshot check), not phase run; use phase: migrate",
        ));
    }
    Err(UsageError::new(format!(
        "input `task`: unknown task {name:?}; {known}; add [environments.{}.tasks.{name}] to the config or correct the name",
        env.name
    )))
}

/// Pure: the `command` input, a JSON list of strings (`["npm","run","seed"]`), or `None` when not given.
pub fn parse_command(value: Option<&str>) -> Result<Option<Vec<String>>, UsageError> {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let example = r#"e.g. ["npm","run","seed"]"#;
    match serde_json::from_str::<Vec<String>>(v) {
        Ok(cmd) if cmd.is_empty() => Err(UsageError::new(format!(
            "input `command`: an empty list; leave the input out to keep the task's command, or give one, {example}"
        ))),
        Ok(cmd) if cmd[0].trim().is_empty() => Err(UsageError::new(format!(
            "input `command`: the first element (the program to run) is empty; name it, {example}"
        ))),
        Ok(cmd) => Ok(Some(cmd)),
        Err(_) => Err(UsageError::new(format!(
            "input `command`: {v:?} is not a JSON list of strings; give the command and its arguments as one, {example}"
        ))),
    }
}

/// The clients the task runner uses, and those that resolve `from:`.
pub struct Clients {
    pub task: task::Clients,
    pub promote: promote::Clients,
    pub preflight: preflight::Clients,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            task: task::Clients::new(sdk),
            promote: promote::Clients::new(sdk),
            preflight: preflight::Clients::new(sdk),
        }
    }
}

pub async fn run(req: &Request, clients: &Clients, ctx: &Ctx) -> Result<RunOutcome> {
    let started = Instant::now();
    let env = &req.environment;
    let resolved = promote::resolve(&req.version, &clients.promote).await?;
    let task = match &req.task {
        TaskRef::Configured(t) => t.clone(),
        TaskRef::Service(s) => service_task(env, s, &clients.task.ecs).await?,
    };
    // A version whose image tag another known version already gives is refused (exit 2) before anything changes.
    let known = versions::in_families(
        &clients.task.ecs,
        &[task.family.as_str()],
        &resolved.version,
    )
    .await?;
    versions::refuse_collision(&resolved.version, &known)?;
    let launch = Launch {
        environment: env,
        task: &task,
        version: &resolved.version,
        command: req.command.as_deref(),
        revision_tags: &[],
    };
    let label = format!("task {}", task.name);
    let rows = preflight::one_off(
        &clients.preflight,
        env,
        &task,
        &label,
        &resolved.version,
        req.wait_for_images,
        ctx,
    )
    .await?;
    preflight::finish(&ctx.runner, "run", &preflight::Report { rows })?;
    execute(&launch, &resolved, &clients.task, ctx, started).await
}

/// A core service's task as a one-off task: the family of the revision the service runs now, its first configured
/// container and image-tag template, its network and its launch type (FARGATE when it uses a capacity provider).
pub async fn service_task(
    env: &Environment,
    service: &Service,
    ecs_client: &aws_sdk_ecs::Client,
) -> Result<TaskConfig> {
    let svc = ecs::describe_services(
        ecs_client,
        &env.cluster,
        std::slice::from_ref(&service.name),
    )
    .await?
    .into_iter()
    .next();
    let td = svc
        .as_ref()
        .and_then(|s| s.task_definition())
        .unwrap_or_default();
    let family = ecs::td_family(td);
    if family.is_empty() {
        bail!(
            "ECS service {}/{} has no task definition to run a task from",
            env.cluster,
            service.name
        );
    }
    let launch_type = match svc
        .as_ref()
        .and_then(|s| s.launch_type())
        .map(|l| l.as_str())
    {
        Some(l @ ("FARGATE" | "EC2" | "EXTERNAL")) => l.to_string(),
        Some(_) | None => "FARGATE".to_string(),
    };
    let container = service.containers[0].clone();
    tracing::info!(
        "task {}: the core service's task definition family {family}, container {container}, launch type {launch_type}",
        service.name
    );
    Ok(TaskConfig {
        name: service.name.clone(),
        key: format!("environments.{}.services.{}", env.name, service.name),
        family: family.to_string(),
        container,
        command: None,
        image: service.image.clone(),
        network: TaskNetwork::FromService(service.name.clone()),
        launch_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_inputs() {
        let ok = |v: &str| parse_command(Some(v)).unwrap();
        assert_eq!(
            ok(r#"["npm","run","seed"]"#),
            Some(vec!["npm".into(), "run".into(), "seed".into()])
        );
        assert_eq!(
            ok(r#" ["sh", "-c", "echo \"hi\" && exit 3"] "#)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(parse_command(None).unwrap(), None);
        assert_eq!(parse_command(Some("  ")).unwrap(), None);
        for (bad, needle) in [
            ("npm run seed", "is not a JSON list of strings"),
            (r#""npm run seed""#, "is not a JSON list of strings"),
            (r#"["npm", 1]"#, "is not a JSON list of strings"),
            (r#"{"cmd": ["npm"]}"#, "is not a JSON list of strings"),
            (r#"["npm""#, "is not a JSON list of strings"),
            ("[]", "an empty list"),
        ] {
            let e = parse_command(Some(bad)).unwrap_err().to_string();
            assert!(e.starts_with("input `command`: "), "{e}");
            assert!(
                e.contains(needle) && e.contains(r#"["npm","run","seed"]"#),
                "{bad}: {e}"
            );
        }
    }

    fn env() -> Environment {
        let text = r#"
            [environments.stage]
            region = "eu-central-1"
            cluster = "app-stage"
            [environments.stage.services.core]
            containers = ["core", "sidecar"]
            [environments.stage.services.workers]
            containers = ["workers"]
            [environments.stage.migration]
            family = "stage-migrate"
            [environments.stage.tasks.seed]
            family = "stage-seed"
            [environments.stage.tasks.workers]
            family = "stage-workers-oneoff"
        "#;
        crate::config::Config::parse(text, std::path::Path::new("deploy.toml"))
            .unwrap()
            .environments
            .remove("stage")
            .unwrap()
    }

    #[test]
    fn task_names() {
        let env = env();
        let name = |n: Option<&str>| match task_ref(&env, n) {
            Ok(TaskRef::Configured(t)) => format!("task {}", t.family),
            Ok(TaskRef::Service(s)) => format!("service {}", s.name),
            Err(e) => format!("error {e}"),
        };
        assert_eq!(name(Some("seed")), "task stage-seed");
        assert_eq!(name(Some(" core ")), "service core");
        assert_eq!(
            name(Some("workers")),
            "task stage-workers-oneoff",
            "a configured task wins over a service of the same name"
        );
        let e = name(Some("sed"));
        assert!(e.starts_with("error input `task`: unknown task \"sed\"; tasks of stage: seed, workers; core services: core, workers"), "{e}");
        let e = name(None);
        assert!(e.starts_with("error input `task`: missing"), "{e}");
        let e = name(Some("migration"));
        assert!(e.contains("phase migrate"), "{e}");
    }
}
