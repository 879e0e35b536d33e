//! The ECS calls the phases share.

use anyhow::{anyhow, Result};
use aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionInputBuilder;
use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionInput;
use aws_sdk_ecs::types::{
    ContainerDefinition, ContainerOverride, Deployment, DeploymentRolloutState, DesiredStatus,
    LaunchType, NetworkConfiguration, Service, SortOrder, Tag, Task, TaskDefinition,
    TaskDefinitionField, TaskDefinitionStatus, TaskField, TaskOverride,
};
use aws_sdk_ecs::Client;
use futures::future::try_join_all;
use serde::Serialize;

use super::{AwsError, AwsResultExt};

/// A roll-out state as we branch on it (the SDK's enum is non-exhaustive; unknown values are kept, not hidden).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Rollout {
    InProgress,
    Completed,
    Failed,
    /// No rolloutState reported (not the ECS rolling controller, or an old deployment).
    None,
    Other(String),
}

impl Rollout {
    pub fn of(d: &Deployment) -> Rollout {
        match d.rollout_state() {
            None => Rollout::None,
            Some(DeploymentRolloutState::InProgress) => Rollout::InProgress,
            Some(DeploymentRolloutState::Completed) => Rollout::Completed,
            Some(DeploymentRolloutState::Failed) => Rollout::Failed,
            Some(other) => Rollout::Other(other.as_str().to_string()),
        }
    }
}

impl std::fmt::Display for Rollout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rollout::InProgress => f.write_str("IN_PROGRESS"),
            Rollout::Completed => f.write_str("COMPLETED"),
            Rollout::Failed => f.write_str("FAILED"),
            Rollout::None => f.write_str("-"),
            Rollout::Other(s) => f.write_str(s),
        }
    }
}

/// The PRIMARY deployment (the one ECS is rolling towards).
pub fn primary(service: &Service) -> Option<&Deployment> {
    service
        .deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
}

/// The primary deployment runs `task_definition` and its roll-out FAILED (a circuit breaker that did not roll back):
/// UpdateService to that same revision would start nothing, so a rerun has to force a new deployment.
pub fn failed_on(service: &Service, task_definition: &str) -> bool {
    primary(service).is_some_and(|d| {
        d.task_definition() == Some(task_definition) && Rollout::of(d) == Rollout::Failed
    })
}

/// DescribeServices for every name, batched 10 a call (the API's limit), batches in parallel. A service ECS reports
/// MISSING or INACTIVE is an error naming it and the fix. Results come back in the order of `names`.
pub async fn describe_services(
    ecs: &Client,
    cluster: &str,
    names: &[String],
) -> Result<Vec<Service>> {
    let batches = names.chunks(10).map(|chunk| async move {
        let out = ecs
            .describe_services()
            .cluster(cluster)
            .set_services(Some(chunk.to_vec()))
            .send()
            .await
            .aws("ECS DescribeServices", format!("cluster {cluster}"))?;
        Ok::<_, anyhow::Error>(out.services().to_vec())
    });
    let found: Vec<Service> = try_join_all(batches).await?.into_iter().flatten().collect();
    names
        .iter()
        .map(|name| {
            found
                .iter()
                .find(|s| s.service_name() == Some(name.as_str()) && s.status() != Some("INACTIVE"))
                .cloned()
                .ok_or_else(|| {
                    anyhow!(
                        "ECS service {cluster}/{name} does not exist (or is INACTIVE); create it, or correct services.{name} in the config"
                    )
                })
        })
        .collect()
}

/// `family:revision` from a task definition ARN (`arn:...:task-definition/core:12` → `core:12`).
pub fn td_short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The revision number of a task definition ARN.
pub fn td_revision(arn: &str) -> Option<i32> {
    td_short(arn).rsplit(':').next()?.parse().ok()
}

/// Images of a task definition's containers, by container name.
pub async fn container_images(
    ecs: &Client,
    task_definition: &str,
) -> Result<Vec<(String, String)>, AwsError> {
    let out = ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .send()
        .await
        .aws("ECS DescribeTaskDefinition", td_short(task_definition))?;
    Ok(out
        .task_definition()
        .map(|td| {
            td.container_definitions()
                .iter()
                .map(|c| {
                    (
                        c.name().unwrap_or_default().to_string(),
                        c.image().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// ARNs of tasks of a family that are not stopped (running, pending or provisioning).
pub async fn live_tasks_of_family(
    ecs: &Client,
    cluster: &str,
    family: &str,
) -> Result<Vec<String>, AwsError> {
    let out = ecs
        .list_tasks()
        .cluster(cluster)
        .family(family)
        .desired_status(aws_sdk_ecs::types::DesiredStatus::Running)
        .send()
        .await
        .aws("ECS ListTasks", format!("{cluster} family {family}"))?;
    Ok(out.task_arns().to_vec())
}

/// Resolves each service's images concurrently, sharing describes for services on the same revision.
pub async fn images_by_task_definition(
    ecs: &Client,
    tds: &[String],
) -> Result<Vec<(String, Vec<(String, String)>)>> {
    let mut unique: Vec<String> = tds.to_vec();
    unique.sort();
    unique.dedup();
    let described = try_join_all(unique.iter().map(|td| async move {
        Ok::<_, anyhow::Error>((td.clone(), container_images(ecs, td).await?))
    }))
    .await?;
    Ok(described)
}

/// Pure: `Err` naming the service and the fix when its deployment controller is not ECS's own. ECS refuses
/// UpdateService with a new task definition on a `CODE_DEPLOY` (blue/green) or `EXTERNAL` service, so deploy (its
/// preflight) and rollback (while planning) check this before they change anything.
pub fn rolling_controller(cluster: &str, service: &Service) -> Result<()> {
    let kind = service.deployment_controller().map(|d| d.r#type().as_str());
    match controller_refusal(cluster, service.service_name().unwrap_or_default(), kind) {
        None => Ok(()),
        Some(why) => Err(anyhow!(why)),
    }
}

/// Pure: why a service with deployment controller `kind` (`None`: not reported, which is ECS) cannot take a new
/// revision through UpdateService, naming the service, its controller and the fix; `None` for ECS (rolling, or ECS
/// blue/green, which ECS runs itself).
pub fn controller_refusal(cluster: &str, name: &str, kind: Option<&str>) -> Option<String> {
    let kind = kind.unwrap_or("ECS");
    if kind == "ECS" {
        return None;
    }
    Some(format!(
        "ECS service {cluster}/{name} uses the {kind} deployment controller: ECS takes a new task definition for it only through {}, not UpdateService; switch the service to the ECS deployment controller (rolling, or ECS blue/green), or remove services.{name} from the config",
        if kind == "CODE_DEPLOY" { "a CodeDeploy deployment" } else { "a new task set" }
    ))
}

/// Pure: whether ECS would run this revision or deploy it. A deregistered (INACTIVE) or deleted revision is refused
/// by RunTask, CreateService and UpdateService, so it is never reused, even when it holds exactly the wanted image.
pub fn runnable(td: &TaskDefinition) -> bool {
    matches!(td.status(), Some(TaskDefinitionStatus::Active) | None)
}

/// The latest ACTIVE revision of a family, with its tags (`None` when the family has no ACTIVE revision).
pub async fn latest_task_definition(
    ecs: &Client,
    family: &str,
) -> Result<Option<(TaskDefinition, Vec<Tag>)>, AwsError> {
    let out = ecs
        .describe_task_definition()
        .task_definition(family)
        .include(TaskDefinitionField::Tags)
        .send()
        .await;
    match out {
        Ok(out) => Ok(out
            .task_definition()
            .cloned()
            .map(|td| (td, out.tags().to_vec()))),
        Err(e) => {
            let e = AwsError::from_sdk(DESCRIBE_TASK_DEFINITION, family, e);
            if is_family_unknown(&e) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// One task definition by ARN or `family:revision`.
pub async fn task_definition(ecs: &Client, td: &str) -> Result<TaskDefinition, AwsError> {
    let out = ecs
        .describe_task_definition()
        .task_definition(td)
        .send()
        .await
        .aws("ECS DescribeTaskDefinition", td_short(td))?;
    out.task_definition().cloned().ok_or_else(|| AwsError {
        operation: "ECS DescribeTaskDefinition",
        resource: td_short(td).to_string(),
        code: None,
        message: "ECS returned no task definition".into(),
        transient: false,
    })
}

/// Registers a new revision that is `td` with `containers` and `tags`: every other field the
/// RegisterTaskDefinition input accepts is copied as it is (inference accelerators, retired by AWS, excepted).
pub async fn register_revision(
    ecs: &Client,
    td: &TaskDefinition,
    containers: Vec<ContainerDefinition>,
    tags: Vec<Tag>,
) -> Result<TaskDefinition, AwsError> {
    fn some<T: Clone>(v: &[T]) -> Option<Vec<T>> {
        (!v.is_empty()).then(|| v.to_vec())
    }
    let family = td.family().unwrap_or_default();
    let out = ecs
        .register_task_definition()
        .family(family)
        .set_task_role_arn(td.task_role_arn().map(str::to_string))
        .set_execution_role_arn(td.execution_role_arn().map(str::to_string))
        .set_network_mode(td.network_mode().cloned())
        .set_container_definitions(Some(containers))
        .set_volumes(some(td.volumes()))
        .set_placement_constraints(some(td.placement_constraints()))
        .set_requires_compatibilities(some(td.requires_compatibilities()))
        .set_cpu(td.cpu().map(str::to_string))
        .set_memory(td.memory().map(str::to_string))
        .set_tags(some(&tags))
        .set_pid_mode(td.pid_mode().cloned())
        .set_ipc_mode(td.ipc_mode().cloned())
        .set_proxy_configuration(td.proxy_configuration().cloned())
        .set_ephemeral_storage(td.ephemeral_storage().cloned())
        .set_runtime_platform(td.runtime_platform().cloned())
        .set_enable_fault_injection(td.enable_fault_injection())
        .send()
        .await
        .aws("ECS RegisterTaskDefinition", family)?;
    out.task_definition().cloned().ok_or_else(|| AwsError {
        operation: "ECS RegisterTaskDefinition",
        resource: family.to_string(),
        code: None,
        message: "ECS returned no task definition".into(),
        transient: false,
    })
}

/// ARNs of a family's tasks with the given desired status (`RUNNING` covers pending and provisioning tasks).
pub async fn list_tasks(
    ecs: &Client,
    cluster: &str,
    family: &str,
    desired: DesiredStatus,
) -> Result<Vec<String>, AwsError> {
    let mut arns = Vec::new();
    let mut pages = ecs
        .list_tasks()
        .cluster(cluster)
        .family(family)
        .desired_status(desired)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.aws("ECS ListTasks", format!("{cluster} family {family}"))?;
        arns.extend(page.task_arns().iter().cloned());
    }
    Ok(arns)
}

/// DescribeTasks with tags, 100 a call (the API's limit). Tasks ECS no longer knows are left out.
pub async fn describe_tasks(
    ecs: &Client,
    cluster: &str,
    arns: &[String],
) -> Result<Vec<Task>, AwsError> {
    let mut tasks = Vec::new();
    for chunk in arns.chunks(100) {
        let out = ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(chunk.to_vec()))
            .include(TaskField::Tags)
            .send()
            .await
            .aws("ECS DescribeTasks", format!("cluster {cluster}"))?;
        tasks.extend(out.tasks().iter().cloned());
    }
    Ok(tasks)
}

/// What a one-off RunTask starts.
#[derive(Debug, Clone)]
pub struct RunTaskInput<'a> {
    pub cluster: &'a str,
    pub task_definition: &'a str,
    pub launch_type: &'a str,
    pub network: Option<NetworkConfiguration>,
    /// The container whose command `command` overrides.
    pub container: &'a str,
    pub command: Option<&'a [String]>,
    pub started_by: &'a str,
    pub group: &'a str,
    pub tags: &'a [(String, String)],
    /// The same token on every attempt: ECS starts one task per token.
    pub client_token: &'a str,
}

/// One RunTask attempt, with the SDK's own retries switched off: after an ambiguous failure the caller looks for
/// the task before it tries again. A task ECS could not place comes back as an error with the failure's reason as
/// its code.
pub async fn run_task_once(ecs: &Client, input: &RunTaskInput<'_>) -> Result<Task, AwsError> {
    let overrides = input.command.map(|cmd| {
        TaskOverride::builder()
            .container_overrides(
                ContainerOverride::builder()
                    .name(input.container)
                    .set_command(Some(cmd.to_vec()))
                    .build(),
            )
            .build()
    });
    let resource = format!("{} {}", input.cluster, td_short(input.task_definition));
    let out = ecs
        .run_task()
        .cluster(input.cluster)
        .task_definition(input.task_definition)
        .count(1)
        .launch_type(LaunchType::from(input.launch_type))
        .set_network_configuration(input.network.clone())
        .set_overrides(overrides)
        .started_by(input.started_by)
        .group(input.group)
        .set_tags(Some(ecs_tags(input.tags)))
        .client_token(input.client_token)
        .customize()
        .config_override(
            aws_sdk_ecs::config::Builder::default()
                .retry_config(aws_config::retry::RetryConfig::disabled()),
        )
        .send()
        .await
        .aws("ECS RunTask", resource.clone())?;
    if let Some(task) = out.tasks().first() {
        return Ok(task.clone());
    }
    let failure = out.failures().first();
    Err(AwsError {
        operation: "ECS RunTask",
        resource,
        code: failure.and_then(|f| f.reason()).map(str::to_string),
        message: failure
            .and_then(|f| f.detail())
            .unwrap_or("ECS started no task and gave no reason")
            .to_string(),
        transient: false,
    })
}

/// StopTask with a reason ECS shows as the task's stopped reason.
pub async fn stop_task(
    ecs: &Client,
    cluster: &str,
    arn: &str,
    reason: &str,
) -> Result<(), AwsError> {
    ecs.stop_task()
        .cluster(cluster)
        .task(arn)
        .reason(reason)
        .send()
        .await
        .aws("ECS StopTask", arn)?;
    Ok(())
}

/// (key, value) pairs as ECS tags.
pub fn ecs_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// ECS tags as (key, value) pairs.
pub fn tag_pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// UpdateService with only a new desired count (no new deployment).
pub async fn set_desired_count(
    ecs: &Client,
    cluster: &str,
    service: &str,
    desired: i32,
) -> Result<(), AwsError> {
    ecs.update_service()
        .cluster(cluster)
        .service(service)
        .desired_count(desired)
        .send()
        .await
        .aws("ECS UpdateService", format!("{cluster}/{service}"))?;
    Ok(())
}

/// A resource's tags (service, task definition, ...), as (key, value).
pub async fn tags(ecs: &Client, arn: &str) -> Result<Vec<(String, String)>, AwsError> {
    let out = ecs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .aws("ECS ListTagsForResource", arn)?;
    Ok(out
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// TagResource on any ECS resource (service, cluster, task definition, task).
pub async fn tag(ecs: &Client, arn: &str, tags: &[(&str, String)]) -> Result<(), AwsError> {
    let resource = if arn.contains(":task-definition/") {
        td_short(arn)
    } else {
        arn
    };
    ecs.tag_resource()
        .resource_arn(arn)
        .set_tags(Some(
            tags.iter()
                .map(|(k, v)| Tag::builder().key(*k).value(v.clone()).build())
                .collect(),
        ))
        .send()
        .await
        .aws("ECS TagResource", resource)?;
    Ok(())
}

pub async fn untag(ecs: &Client, arn: &str, key: &str) -> Result<(), AwsError> {
    ecs.untag_resource()
        .resource_arn(arn)
        .tag_keys(key)
        .send()
        .await
        .aws("ECS UntagResource", arn)?;
    Ok(())
}

/// The family of a task definition ARN or `family:revision` (`arn:...:task-definition/core:12` → `core`).
pub fn td_family(arn: &str) -> &str {
    let short = td_short(arn);
    short.rsplit_once(':').map(|(f, _)| f).unwrap_or(short)
}

/// A task definition as DescribeTaskDefinition returns it, with its tags.
pub async fn describe_task_definition(
    ecs: &Client,
    task_definition: &str,
) -> Result<(TaskDefinition, Vec<Tag>)> {
    let out = ecs
        .describe_task_definition()
        .task_definition(task_definition)
        .include(TaskDefinitionField::Tags)
        .send()
        .await
        .aws("ECS DescribeTaskDefinition", td_short(task_definition))?;
    let tags = out.tags().to_vec();
    let td = out.task_definition.ok_or_else(|| {
        anyhow!(
            "ECS DescribeTaskDefinition {}: the response holds no task definition",
            td_short(task_definition)
        )
    })?;
    Ok((td, tags))
}

/// A RegisterTaskDefinition request that registers `td` again as it is: every field RegisterTaskDefinition accepts is
/// moved over, including the ones this code never looks at (volumes, proxy configuration, runtime platform,
/// ephemeral storage, ...). The fields only AWS sets (ARN, revision, status, compatibilities, requiresAttributes,
/// registeredAt/By, deregisteredAt, deleteRequestedAt) are left out. `tags` become the new revision's tags.
///
/// The unit test `register_input_from_moves_every_field` compares against the SDK's own list of request members, so
/// a field added to RegisterTaskDefinition by a newer SDK fails the build's tests until it is moved here too.
// Inference accelerators are deprecated, but a task definition that still carries them must keep them.
#[allow(deprecated)]
pub fn register_input_from(
    td: TaskDefinition,
    tags: Vec<Tag>,
) -> RegisterTaskDefinitionInputBuilder {
    RegisterTaskDefinitionInput::builder()
        .set_family(td.family)
        .set_task_role_arn(td.task_role_arn)
        .set_execution_role_arn(td.execution_role_arn)
        .set_network_mode(td.network_mode)
        .set_container_definitions(td.container_definitions)
        .set_volumes(td.volumes)
        .set_placement_constraints(td.placement_constraints)
        .set_requires_compatibilities(td.requires_compatibilities)
        .set_cpu(td.cpu)
        .set_memory(td.memory)
        .set_tags((!tags.is_empty()).then_some(tags))
        .set_pid_mode(td.pid_mode)
        .set_ipc_mode(td.ipc_mode)
        .set_proxy_configuration(td.proxy_configuration)
        .set_inference_accelerators(td.inference_accelerators)
        .set_ephemeral_storage(td.ephemeral_storage)
        .set_runtime_platform(td.runtime_platform)
        .set_enable_fault_injection(td.enable_fault_injection)
}

/// Registers a new revision; returns it as ECS registered it.
pub async fn register_task_definition(
    ecs: &Client,
    input: RegisterTaskDefinitionInputBuilder,
) -> Result<TaskDefinition> {
    let family = input.get_family().clone().unwrap_or_default();
    let out = input
        .send_with(ecs)
        .await
        .aws("ECS RegisterTaskDefinition", format!("family {family}"))?;
    out.task_definition.ok_or_else(|| {
        anyhow!("ECS RegisterTaskDefinition family {family}: the response holds no task definition")
    })
}

/// Points a service at a task definition revision (ECS starts a new deployment). Returns the service as updated.
pub async fn update_service(
    ecs: &Client,
    cluster: &str,
    service: &str,
    task_definition: &str,
    desired_count: Option<i32>,
) -> Result<Service, AwsError> {
    let out = ecs
        .update_service()
        .cluster(cluster)
        .service(service)
        .task_definition(task_definition)
        .set_desired_count(desired_count)
        .send()
        .await
        .aws("ECS UpdateService", format!("{cluster}/{service}"))?;
    out.service.ok_or_else(|| AwsError {
        operation: "ECS UpdateService",
        resource: format!("{cluster}/{service}"),
        code: None,
        message: "the response holds no service".into(),
        transient: false,
    })
}

/// UpdateService with forceNewDeployment: a new deployment of the revision the service runs (after a FAILED one).
pub async fn redeploy(ecs: &Client, cluster: &str, service: &str) -> Result<(), AwsError> {
    ecs.update_service()
        .cluster(cluster)
        .service(service)
        .force_new_deployment(true)
        .send()
        .await
        .aws("ECS UpdateService", format!("{cluster}/{service}"))?;
    Ok(())
}

/// Marks a revision INACTIVE (running tasks keep running; no new task or deployment can use it).
pub async fn deregister_task_definition(ecs: &Client, arn: &str) -> Result<(), AwsError> {
    ecs.deregister_task_definition()
        .task_definition(arn)
        .send()
        .await
        .aws("ECS DeregisterTaskDefinition", td_short(arn))?;
    Ok(())
}

/// ACTIVE revisions of exactly this family (ListTaskDefinitions matches a prefix), newest first.
pub async fn active_revisions(ecs: &Client, family: &str) -> Result<Vec<String>> {
    let mut pages = ecs
        .list_task_definitions()
        .family_prefix(family)
        .status(TaskDefinitionStatus::Active)
        .sort(SortOrder::Desc)
        .into_paginator()
        .items()
        .send();
    let mut arns = Vec::new();
    while let Some(arn) = pages.next().await {
        let arn = arn.aws("ECS ListTaskDefinitions", format!("family {family}"))?;
        if td_family(&arn) == family {
            arns.push(arn);
        }
    }
    // Sorted here as well: not every implementation honours `sort`.
    arns.sort_by_key(|a| std::cmp::Reverse(td_revision(a).unwrap_or(0)));
    Ok(arns)
}

/// The stopped tasks a deployment started (ListTasks startedBy + desiredStatus STOPPED, then DescribeTasks), newest
/// first, at most `limit`.
pub async fn stopped_tasks_of_deployment(
    ecs: &Client,
    cluster: &str,
    deployment_id: &str,
    limit: usize,
) -> Result<Vec<Task>, AwsError> {
    let out = ecs
        .list_tasks()
        .cluster(cluster)
        .started_by(deployment_id)
        .desired_status(DesiredStatus::Stopped)
        .send()
        .await
        .aws(
            "ECS ListTasks",
            format!("{cluster} deployment {deployment_id}"),
        )?;
    let arns: Vec<String> = out.task_arns().iter().take(100).cloned().collect();
    if arns.is_empty() {
        return Ok(vec![]);
    }
    let out = ecs
        .describe_tasks()
        .cluster(cluster)
        .set_tasks(Some(arns))
        .send()
        .await
        .aws(
            "ECS DescribeTasks",
            format!("{cluster} deployment {deployment_id}"),
        )?;
    let mut tasks = out.tasks().to_vec();
    tasks.sort_by_key(|t| {
        std::cmp::Reverse(t.stopped_at().map(|d| d.as_secs_f64() as i64).unwrap_or(0))
    });
    tasks.truncate(limit);
    Ok(tasks)
}

/// One service with its tags, or `None` when ECS reports it MISSING or INACTIVE (DRAINING is returned: it is still
/// being deleted).
pub async fn service_if_any(
    ecs: &Client,
    cluster: &str,
    name: &str,
) -> Result<Option<Service>, AwsError> {
    let out = ecs
        .describe_services()
        .cluster(cluster)
        .services(name)
        .include(aws_sdk_ecs::types::ServiceField::Tags)
        .send()
        .await
        .aws("ECS DescribeServices", format!("{cluster}/{name}"))?;
    Ok(out
        .services()
        .iter()
        .find(|s| s.service_name() == Some(name) && s.status() != Some("INACTIVE"))
        .cloned())
}

/// A new service made like `template`: the same launch type or capacity providers, platform version, network,
/// deployment configuration, health-check grace period, placement and ECS Exec setting; its own name, revision,
/// count, load balancer and tags.
pub struct ServiceLike<'a> {
    pub template: &'a Service,
    pub name: &'a str,
    pub task_definition: &'a str,
    pub desired_count: i32,
    pub load_balancer: aws_sdk_ecs::types::LoadBalancer,
    pub tags: &'a [(String, String)],
}

/// CreateService for [`ServiceLike`]; returns the service as created.
pub async fn create_service_like(
    ecs: &Client,
    cluster: &str,
    s: ServiceLike<'_>,
) -> Result<Service, AwsError> {
    let t = s.template;
    let strategy = t.capacity_provider_strategy();
    let out = ecs
        .create_service()
        .cluster(cluster)
        .service_name(s.name)
        .task_definition(s.task_definition)
        .desired_count(s.desired_count)
        .set_launch_type(if strategy.is_empty() {
            t.launch_type().cloned()
        } else {
            None
        })
        .set_capacity_provider_strategy((!strategy.is_empty()).then(|| strategy.to_vec()))
        .set_platform_version(t.platform_version().map(str::to_string))
        .set_network_configuration(t.network_configuration().cloned())
        .set_deployment_configuration(t.deployment_configuration().cloned())
        .set_health_check_grace_period_seconds(t.health_check_grace_period_seconds())
        .set_placement_constraints(
            (!t.placement_constraints().is_empty()).then(|| t.placement_constraints().to_vec()),
        )
        .set_placement_strategy(
            (!t.placement_strategy().is_empty()).then(|| t.placement_strategy().to_vec()),
        )
        .enable_execute_command(t.enable_execute_command())
        .enable_ecs_managed_tags(t.enable_ecs_managed_tags())
        .propagate_tags(aws_sdk_ecs::types::PropagateTags::Service)
        .load_balancers(s.load_balancer)
        .set_tags(Some(ecs_tags(s.tags)))
        .send()
        .await
        .aws("ECS CreateService", format!("{cluster}/{}", s.name))?;
    out.service.ok_or_else(|| AwsError {
        operation: "ECS CreateService",
        resource: format!("{cluster}/{}", s.name),
        code: None,
        message: "the response holds no service".into(),
        transient: false,
    })
}

/// DeleteService (the service must be scaled to 0 first); one already gone counts as deleted.
pub async fn delete_service(ecs: &Client, cluster: &str, name: &str) -> Result<(), AwsError> {
    match ecs
        .delete_service()
        .cluster(cluster)
        .service(name)
        .send()
        .await
        .aws("ECS DeleteService", format!("{cluster}/{name}"))
    {
        Ok(_) => Ok(()),
        Err(e) if e.is("ServiceNotFoundException") || e.is("ServiceNotActiveException") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the cluster exists and is ACTIVE (DescribeClusters answers an unknown cluster with a `MISSING` failure,
/// not an error).
pub async fn cluster_is_active(ecs: &Client, cluster: &str) -> Result<bool, AwsError> {
    let out = ecs
        .describe_clusters()
        .clusters(cluster)
        .send()
        .await
        .aws("ECS DescribeClusters", cluster)?;
    Ok(out.clusters().iter().any(|c| c.status() == Some("ACTIVE")))
}

/// The names of every service of a cluster (ListServices, every page).
pub async fn service_names(ecs: &Client, cluster: &str) -> Result<Vec<String>, AwsError> {
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = ecs
            .list_services()
            .cluster(cluster)
            .set_next_token(token.clone())
            .max_results(100)
            .send()
            .await
            .aws("ECS ListServices", format!("cluster {cluster}"))?;
        names.extend(
            out.service_arns()
                .iter()
                .map(|a| a.rsplit('/').next().unwrap_or(a).to_string()),
        );
        match out.next_token() {
            Some(t) if !t.is_empty() && Some(t) != token.as_deref() => token = Some(t.to_string()),
            _ => break,
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

const DESCRIBE_TASK_DEFINITION: &str = "ECS DescribeTaskDefinition";

/// DescribeTaskDefinition of a family with no ACTIVE revision. Its modeled errors are `ClientException` (an
/// identifier that is not valid), `InvalidParameterException` and `ServerException`; a denied permission is
/// `AccessDeniedException`. So the precise code is `ClientException`, and only from this operation: the same code from
/// any other call means something else and is not taken for "unknown family".
pub fn is_family_unknown(err: &AwsError) -> bool {
    err.operation == DESCRIBE_TASK_DEFINITION && err.is("ClientException")
}

/// ARNs of the cluster's tasks started by `started_by` that are not stopped (running, pending or provisioning).
pub async fn live_tasks_started_by(
    ecs: &Client,
    cluster: &str,
    started_by: &str,
) -> Result<Vec<String>, AwsError> {
    let mut arns = Vec::new();
    let mut pages = ecs
        .list_tasks()
        .cluster(cluster)
        .started_by(started_by)
        .desired_status(DesiredStatus::Running)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.aws(
            "ECS ListTasks",
            format!("{cluster} started by {started_by}"),
        )?;
        arns.extend(page.task_arns().iter().cloned());
    }
    Ok(arns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_rolling_controller_takes_a_new_task_definition() {
        use aws_sdk_ecs::types::{DeploymentController, DeploymentControllerType as T};
        for (controller, ok) in [
            (None, true),
            (Some(T::Ecs), true),
            (Some(T::CodeDeploy), false),
            (Some(T::External), false),
        ] {
            let svc = Service::builder()
                .service_name("core")
                .set_deployment_controller(
                    controller
                        .clone()
                        .map(|t| DeploymentController::builder().r#type(t).build().unwrap()),
                )
                .build();
            let got = rolling_controller("prod", &svc);
            assert_eq!(got.is_ok(), ok, "{controller:?}");
            if let Err(e) = got {
                let e = e.to_string();
                assert!(
                    e.contains("prod/core") && e.contains("services.core"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn only_an_active_revision_is_runnable() {
        for (status, want) in [
            (Some(TaskDefinitionStatus::Active), true),
            (None, true),
            (Some(TaskDefinitionStatus::Inactive), false),
            (Some(TaskDefinitionStatus::DeleteInProgress), false),
        ] {
            let td = TaskDefinition::builder().set_status(status.clone()).build();
            assert_eq!(runnable(&td), want, "{status:?}");
        }
    }

    #[test]
    fn a_failed_roll_out_on_the_revision_is_seen_only_on_the_primary() {
        let dep = |status: &str, td: &str, state: DeploymentRolloutState| {
            Deployment::builder()
                .status(status)
                .task_definition(td)
                .rollout_state(state)
                .build()
        };
        let svc = |deps: Vec<Deployment>| Service::builder().set_deployments(Some(deps)).build();
        use DeploymentRolloutState as S;
        for (what, deps, want) in [
            (
                "primary failed on it",
                vec![dep("PRIMARY", "a:2", S::Failed)],
                true,
            ),
            (
                "primary completed",
                vec![dep("PRIMARY", "a:2", S::Completed)],
                false,
            ),
            (
                "primary failed on another",
                vec![dep("PRIMARY", "a:3", S::Failed)],
                false,
            ),
            (
                "only an old deployment failed on it",
                vec![
                    dep("PRIMARY", "a:1", S::InProgress),
                    dep("ACTIVE", "a:2", S::Failed),
                ],
                false,
            ),
            ("no deployments", vec![], false),
        ] {
            assert_eq!(failed_on(&svc(deps), "a:2"), want, "{what}");
        }
    }

    #[test]
    fn task_definition_names() {
        let arn = "arn:aws:ecs:eu-central-1:123456789012:task-definition/core:12";
        assert_eq!(td_short(arn), "core:12");
        assert_eq!(td_revision(arn), Some(12));
        assert_eq!(td_revision("core"), None);
    }

    /// A task definition with every field set, as DescribeTaskDefinition could return it.
    #[allow(deprecated)]
    pub(crate) fn every_field_task_definition() -> TaskDefinition {
        use aws_sdk_ecs::types::*;
        TaskDefinition::builder()
            .task_definition_arn("arn:aws:ecs:eu-central-1:123456789012:task-definition/core:7")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("core")
                    .image("repo/app:core-v1.0.0")
                    .build(),
            )
            .family("core")
            .task_role_arn("arn:aws:iam::123456789012:role/task")
            .execution_role_arn("arn:aws:iam::123456789012:role/exec")
            .network_mode(NetworkMode::Awsvpc)
            .revision(7)
            .volumes(Volume::builder().name("data").build())
            .status(TaskDefinitionStatus::Active)
            .requires_attributes(
                Attribute::builder()
                    .name("com.amazonaws.ecs.capability.logging-driver.awslogs")
                    .build()
                    .unwrap(),
            )
            .placement_constraints(
                TaskDefinitionPlacementConstraint::builder()
                    .r#type(TaskDefinitionPlacementConstraintType::MemberOf)
                    .expression("attribute:ecs.availability-zone in [eu-central-1a]")
                    .build(),
            )
            .compatibilities(Compatibility::Fargate)
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(CpuArchitecture::Arm64)
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            )
            .requires_compatibilities(Compatibility::Fargate)
            .cpu("512")
            .memory("1024")
            .inference_accelerators(
                InferenceAccelerator::builder()
                    .device_name("gpu0")
                    .device_type("eia2.medium")
                    .build()
                    .unwrap(),
            )
            .pid_mode(PidMode::Task)
            .ipc_mode(IpcMode::Task)
            .proxy_configuration(
                ProxyConfiguration::builder()
                    .container_name("envoy")
                    .build()
                    .unwrap(),
            )
            .registered_at(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .deregistered_at(aws_smithy_types::DateTime::from_secs(1_700_000_100))
            .delete_requested_at(aws_smithy_types::DateTime::from_secs(1_700_000_200))
            .registered_by("arn:aws:iam::123456789012:user/ci")
            .ephemeral_storage(EphemeralStorage::builder().size_in_gib(30).build())
            .enable_fault_injection(true)
            .build()
    }

    /// Top-level fields a `{:#?}` rendering shows as `None`.
    fn unset_fields(pretty_debug: &str) -> Vec<String> {
        pretty_debug
            .lines()
            .filter(|l| l.starts_with("    ") && !l.starts_with("     "))
            .filter_map(|l| l.trim().strip_suffix(": None,").map(str::to_string))
            .collect()
    }

    fn snake_case(camel: &str) -> String {
        let mut s = String::new();
        for c in camel.chars() {
            if c.is_ascii_uppercase() {
                s.push('_');
                s.push(c.to_ascii_lowercase());
            } else {
                s.push(c);
            }
        }
        s
    }

    /// Guards against a forgotten field: every member of the SDK's RegisterTaskDefinition request must be filled from
    /// a task definition that has every field set. A newer SDK with a new member fails here until it is copied.
    #[test]
    fn register_input_from_moves_every_field() {
        let td = every_field_task_definition();
        let unset = unset_fields(&format!("{td:#?}"));
        assert!(
            unset.is_empty(),
            "the fixture leaves TaskDefinition fields unset (set them, and copy them if RegisterTaskDefinition takes them): {unset:?}"
        );
        let tags = vec![Tag::builder().key("environment").value("stage").build()];
        let input = register_input_from(td.clone(), tags.clone())
            .build()
            .unwrap();
        let debug = format!("{input:#?}");
        let members: Vec<String> = RegisterTaskDefinitionInput::SCHEMA
            .members()
            .iter()
            .filter_map(|m| m.member_name())
            .map(snake_case)
            .collect();
        assert!(members.len() >= 18, "{members:?}");
        for m in &members {
            assert!(
                debug.contains(&format!("\n    {m}: Some(")),
                "RegisterTaskDefinition member `{m}` is not copied by register_input_from:\n{debug}"
            );
        }
        assert!(unset_fields(&debug).is_empty(), "{debug}");
        assert_eq!(input.family(), td.family());
        assert_eq!(input.container_definitions(), td.container_definitions());
        assert_eq!(input.runtime_platform(), td.runtime_platform());
        assert_eq!(input.ephemeral_storage(), td.ephemeral_storage());
        assert_eq!(input.proxy_configuration(), td.proxy_configuration());
        assert_eq!(input.tags(), &tags[..]);
    }

    #[test]
    fn families() {
        assert_eq!(
            td_family("arn:aws:ecs:r:1:task-definition/stage-core:12"),
            "stage-core"
        );
        assert_eq!(td_family("stage-core:3"), "stage-core");
        assert_eq!(td_family("stage-core"), "stage-core");
    }
}
