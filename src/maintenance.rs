//! Maintenance mode on the ALB listener: observation (used by `status`).
//!
//! What "on" means: the listener's default action is the maintenance response and the listener carries the tag
//! `deploy-action:maintenance = on`, written after every forwarding rule got its bypass-header condition.

use anyhow::Result;
use aws_sdk_elasticloadbalancingv2::types::ActionTypeEnum;
use aws_sdk_elasticloadbalancingv2::Client;
use serde::Serialize;

use crate::aws::elb;
use crate::config::Maintenance;

/// Tag on the listener: `on` once maintenance is fully on; `turning-on` / `turning-off` while a run is changing it.
pub const TAG_STATE: &str = "deploy-action:maintenance";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaintenanceState {
    On,
    Off,
    /// Half-way (a run was interrupted); the next `state` run converges it.
    Partial,
    NotConfigured,
}

impl std::fmt::Display for MaintenanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MaintenanceState::On => "on",
            MaintenanceState::Off => "off",
            MaintenanceState::Partial => "partial",
            MaintenanceState::NotConfigured => "not configured",
        })
    }
}

/// Pure: the maintenance state from the listener's default action type and its state tag.
pub fn classify(default_is_forward: bool, tag: Option<&str>) -> MaintenanceState {
    match (default_is_forward, tag) {
        (true, None) => MaintenanceState::Off,
        (false, Some("on")) => MaintenanceState::On,
        (true, Some(_)) | (false, Some(_)) | (false, None) => MaintenanceState::Partial,
    }
}

pub async fn observe(elb: &Client, cfg: Option<&Maintenance>) -> Result<MaintenanceState> {
    let Some(cfg) = cfg else {
        return Ok(MaintenanceState::NotConfigured);
    };
    let actions = elb::listener_default_actions(elb, &cfg.listener_arn).await?;
    let forward = actions
        .iter()
        .any(|a| a.r#type() == Some(&ActionTypeEnum::Forward));
    let tags = elb::tags(elb, &cfg.listener_arn).await?;
    let tag = tags
        .iter()
        .find(|(k, _)| k == TAG_STATE)
        .map(|(_, v)| v.as_str());
    Ok(classify(forward, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let cases = [
            (true, None, MaintenanceState::Off),
            (false, Some("on"), MaintenanceState::On),
            (true, Some("turning-on"), MaintenanceState::Partial),
            (false, Some("turning-off"), MaintenanceState::Partial),
            (false, None, MaintenanceState::Partial),
            (true, Some("on"), MaintenanceState::Partial),
        ];
        for (fwd, tag, want) in cases {
            assert_eq!(classify(fwd, tag), want, "{fwd} {tag:?}");
        }
    }
}
