//! Application Auto Scaling around scaling services to 0 (db-only, stopped, migrate).
//!
//! A service with a scalable target (min capacity 1, say) would be brought back up by Application Auto Scaling while
//! it should stay at 0 (old code against a database half migrated). So before a service goes to 0, its target's
//! dynamic and scheduled scaling are suspended (`RegisterScalableTarget` with `SuspendedState`), after the state it
//! had is recorded on the ECS service (tag [`TAG`]), and never overwritten: a killed run converges on the next one,
//! and the way back restores exactly the state found, also a target its owner had suspended already. When the
//! service is back up (state running/restricted, or a deploy that scaled it up), the recorded state is restored and
//! the tag removed.

use anyhow::{Context, Result};

use crate::aws::autoscaling::{self, Suspended};
use crate::aws::ecs;
use crate::config::Environment;

/// Service tag: the scalable target's suspended state as this action found it before suspending it.
pub const TAG: &str = "deploy-action:autoscaling";

/// Pure: before scaling to 0, (the record to write, whether to suspend), from the target (if any) and the record.
/// An existing record is kept: it holds the state from before this action's first suspension.
pub fn before_zero(target: Option<Suspended>, recorded: Option<&str>) -> (Option<String>, bool) {
    match (target, recorded) {
        (None, _) => (None, false),
        (Some(found), None) => (Some(found.value()), found != Suspended::ALL),
        (Some(found), Some(_)) => (None, found != Suspended::ALL),
    }
}

/// What to do on the way back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    Nothing,
    /// Set the target to the recorded state (`None`: it is there already), then remove the record.
    To(Option<Suspended>),
    /// The target is gone: only remove the record.
    Forget,
    /// The record cannot be read: leave it and say so.
    Unreadable(String),
}

/// Pure: the way back from the target's state and the record.
pub fn on_the_way_up(target: Option<Suspended>, recorded: Option<&str>) -> Restore {
    let Some(value) = recorded else {
        return Restore::Nothing;
    };
    let Some(original) = Suspended::parse(value) else {
        return Restore::Unreadable(value.to_string());
    };
    match target {
        None => Restore::Forget,
        Some(now) if now == original => Restore::To(None),
        Some(_) => Restore::To(Some(original)),
    }
}

/// Suspends the scaling of every core service that has a scalable target; the lines say what changed.
pub async fn suspend(
    ecs_client: &aws_sdk_ecs::Client,
    aas: &aws_sdk_applicationautoscaling::Client,
    env: &Environment,
) -> Result<Vec<String>> {
    let mut lines = vec![];
    for (name, arn) in services(ecs_client, env).await? {
        let target = autoscaling::ecs_target(aas, &env.cluster, &name)
            .await?
            .map(|(s, _, _)| s);
        if target.is_none() {
            continue;
        }
        let tags = ecs::tags(ecs_client, &arn).await?;
        let recorded = crate::tags::get(&tags, TAG).map(str::to_string);
        let (record, call) = before_zero(target, recorded.as_deref());
        if let Some(value) = record {
            ecs::tag(ecs_client, &arn, &[(TAG, value)]).await?;
        }
        if call {
            autoscaling::set_suspended(aas, &env.cluster, &name, Suspended::ALL)
                .await
                .with_context(|| {
                    format!(
                        "suspending the autoscaling of {}/{name} before scaling it to 0",
                        env.cluster
                    )
                })?;
            tracing::info!(
                "{}/{name}: autoscaling suspended (dynamic and scheduled) while at 0",
                env.cluster
            );
            lines.push(format!("{name} autoscaling suspended"));
        }
    }
    Ok(lines)
}

/// Restores the recorded scaling state of every core service that has one; the lines say what changed.
pub async fn restore(
    ecs_client: &aws_sdk_ecs::Client,
    aas: &aws_sdk_applicationautoscaling::Client,
    env: &Environment,
) -> Result<Vec<String>> {
    let mut lines = vec![];
    for (name, arn) in services(ecs_client, env).await? {
        let tags = ecs::tags(ecs_client, &arn).await?;
        let Some(recorded) = crate::tags::get(&tags, TAG).map(str::to_string) else {
            continue;
        };
        let target = autoscaling::ecs_target(aas, &env.cluster, &name)
            .await?
            .map(|(s, _, _)| s);
        match on_the_way_up(target, Some(&recorded)) {
            Restore::Nothing => continue,
            Restore::Unreadable(v) => {
                tracing::warn!("{}/{name}: tag {TAG}={v:?} is not a state this action wrote; left as it is: set the scalable target's SuspendedState by hand, then remove the tag", env.cluster);
                continue;
            }
            Restore::To(Some(original)) => {
                autoscaling::set_suspended(aas, &env.cluster, &name, original)
                    .await
                    .with_context(|| {
                        format!("restoring the autoscaling of {}/{name}", env.cluster)
                    })?;
                tracing::info!(
                    "{}/{name}: autoscaling {} again (as found)",
                    env.cluster,
                    original.describe()
                );
                lines.push(format!("{name} autoscaling {} again", original.describe()));
            }
            Restore::To(None) | Restore::Forget => {}
        }
        ecs::untag(ecs_client, &arn, TAG).await?;
    }
    Ok(lines)
}

async fn services(
    ecs_client: &aws_sdk_ecs::Client,
    env: &Environment,
) -> Result<Vec<(String, String)>> {
    let names: Vec<String> = env.services.iter().map(|s| s.name.clone()).collect();
    let found = ecs::describe_services(ecs_client, &env.cluster, &names).await?;
    Ok(names
        .into_iter()
        .zip(found)
        .map(|(n, s)| (n, s.service_arn().unwrap_or_default().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIVE: Suspended = Suspended {
        dynamic_in: false,
        dynamic_out: false,
        scheduled: false,
    };
    const IN_ONLY: Suspended = Suspended {
        dynamic_in: true,
        dynamic_out: false,
        scheduled: false,
    };

    #[test]
    fn before_scaling_to_zero() {
        let active = ACTIVE.value();
        // (target, recorded) → (record, suspend)
        let cases = [
            ((None, None), (None, false)),
            ((Some(ACTIVE), None), (Some(active.clone()), true)),
            // Suspended by its owner: recorded as found, nothing to call.
            (
                (Some(Suspended::ALL), None),
                (Some(Suspended::ALL.value()), false),
            ),
            // A killed run recorded and suspended already: the record is kept.
            ((Some(Suspended::ALL), Some(active.as_str())), (None, false)),
            // A killed run recorded but did not suspend yet.
            ((Some(ACTIVE), Some(active.as_str())), (None, true)),
            ((Some(IN_ONLY), None), (Some(IN_ONLY.value()), true)),
        ];
        for ((target, recorded), want) in cases {
            assert_eq!(
                before_zero(target, recorded),
                want,
                "{target:?} {recorded:?}"
            );
        }
    }

    #[test]
    fn on_the_way_back_the_found_state_returns() {
        let cases = [
            ((Some(ACTIVE), None), Restore::Nothing),
            (
                (Some(Suspended::ALL), Some(ACTIVE.value())),
                Restore::To(Some(ACTIVE)),
            ),
            (
                (Some(Suspended::ALL), Some(IN_ONLY.value())),
                Restore::To(Some(IN_ONLY)),
            ),
            // Its owner had it suspended: it stays suspended.
            (
                (Some(Suspended::ALL), Some(Suspended::ALL.value())),
                Restore::To(None),
            ),
            ((None, Some(ACTIVE.value())), Restore::Forget),
            (
                (Some(Suspended::ALL), Some("x".to_string())),
                Restore::Unreadable("x".into()),
            ),
        ];
        for ((target, recorded), want) in cases {
            assert_eq!(on_the_way_up(target, recorded.as_deref()), want);
        }
    }
}
