//! Application Auto Scaling for ECS services: read a service's scalable target and set its `SuspendedState`.

use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace, SuspendedState};
use aws_sdk_applicationautoscaling::Client;
use serde::Serialize;

use super::{AwsError, AwsResultExt};

/// Which of a scalable target's scaling kinds are suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Suspended {
    pub dynamic_in: bool,
    pub dynamic_out: bool,
    pub scheduled: bool,
}

impl Suspended {
    pub const ALL: Suspended = Suspended {
        dynamic_in: true,
        dynamic_out: true,
        scheduled: true,
    };

    /// `dynamic-in=false dynamic-out=false scheduled=false`: how the found state is recorded in a tag.
    pub fn value(&self) -> String {
        format!(
            "dynamic-in={} dynamic-out={} scheduled={}",
            self.dynamic_in, self.dynamic_out, self.scheduled
        )
    }

    /// Pure: the state from [`Suspended::value`]; `None` for anything else.
    pub fn parse(value: &str) -> Option<Suspended> {
        let mut s = Suspended::default();
        let mut seen = 0;
        for part in value.split_whitespace() {
            let (k, v) = part.split_once('=')?;
            let v: bool = v.parse().ok()?;
            match k {
                "dynamic-in" => s.dynamic_in = v,
                "dynamic-out" => s.dynamic_out = v,
                "scheduled" => s.scheduled = v,
                _ => return None,
            }
            seen += 1;
        }
        (seen == 3).then_some(s)
    }

    pub fn describe(&self) -> &'static str {
        match (self.dynamic_in, self.dynamic_out, self.scheduled) {
            (false, false, false) => "active",
            (true, true, true) => "suspended",
            _ => "partly suspended",
        }
    }

    fn of(s: Option<&SuspendedState>) -> Suspended {
        Suspended {
            dynamic_in: s.and_then(|s| s.dynamic_scaling_in_suspended()) == Some(true),
            dynamic_out: s.and_then(|s| s.dynamic_scaling_out_suspended()) == Some(true),
            scheduled: s.and_then(|s| s.scheduled_scaling_suspended()) == Some(true),
        }
    }
}

/// `service/<cluster>/<service>`: the resource id of an ECS service's scalable target.
pub fn resource_id(cluster: &str, service: &str) -> String {
    format!("service/{cluster}/{service}")
}

/// The service's scalable target (`ecs:service:DesiredCount`): its suspended state, or `None` when it has none.
pub async fn ecs_target(
    client: &Client,
    cluster: &str,
    service: &str,
) -> Result<Option<(Suspended, i32, i32)>, AwsError> {
    let id = resource_id(cluster, service);
    let out = client
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_ids(&id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .send()
        .await
        .aws("Application Auto Scaling DescribeScalableTargets", &id)?;
    Ok(out.scalable_targets().first().map(|t| {
        (
            Suspended::of(t.suspended_state()),
            t.min_capacity(),
            t.max_capacity(),
        )
    }))
}

/// RegisterScalableTarget with only `SuspendedState`: updates an existing target, capacities untouched.
pub async fn set_suspended(
    client: &Client,
    cluster: &str,
    service: &str,
    s: Suspended,
) -> Result<(), AwsError> {
    let id = resource_id(cluster, service);
    client
        .register_scalable_target()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_id(&id)
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .suspended_state(
            SuspendedState::builder()
                .dynamic_scaling_in_suspended(s.dynamic_in)
                .dynamic_scaling_out_suspended(s.dynamic_out)
                .scheduled_scaling_suspended(s.scheduled)
                .build(),
        )
        .send()
        .await
        .aws("Application Auto Scaling RegisterScalableTarget", &id)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_state_round_trips() {
        for s in [
            Suspended::default(),
            Suspended::ALL,
            Suspended {
                dynamic_in: true,
                dynamic_out: false,
                scheduled: false,
            },
        ] {
            assert_eq!(Suspended::parse(&s.value()), Some(s));
        }
        assert_eq!(Suspended::parse("dynamic-in=true"), None);
        assert_eq!(Suspended::parse("garbage"), None);
        assert_eq!(Suspended::default().describe(), "active");
        assert_eq!(Suspended::ALL.describe(), "suspended");
    }
}
