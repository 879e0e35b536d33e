//! The ECS calls the phases share.

use anyhow::{anyhow, Result};
use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState, Service};
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

pub async fn tag(ecs: &Client, arn: &str, key: &str, value: &str) -> Result<(), AwsError> {
    let tag = aws_sdk_ecs::types::Tag::builder()
        .key(key)
        .value(value)
        .build();
    ecs.tag_resource()
        .resource_arn(arn)
        .tags(tag)
        .send()
        .await
        .aws("ECS TagResource", arn)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_definition_names() {
        let arn = "arn:aws:ecs:eu-central-1:123456789012:task-definition/core:12";
        assert_eq!(td_short(arn), "core:12");
        assert_eq!(td_revision(arn), Some(12));
        assert_eq!(td_revision("core"), None);
    }
}
