//! The ELBv2 calls the phases share.

use aws_sdk_elasticloadbalancingv2::types::Action;
use aws_sdk_elasticloadbalancingv2::Client;

use super::{AwsError, AwsResultExt};

/// The listener's default actions.
pub async fn listener_default_actions(
    elb: &Client,
    listener_arn: &str,
) -> Result<Vec<Action>, AwsError> {
    let out = elb
        .describe_listeners()
        .listener_arns(listener_arn)
        .send()
        .await
        .aws("ELBv2 DescribeListeners", listener_arn)?;
    match out.listeners().first() {
        Some(l) => Ok(l.default_actions().to_vec()),
        None => Err(AwsError {
            operation: "ELBv2 DescribeListeners",
            resource: listener_arn.to_string(),
            code: Some("ListenerNotFound".into()),
            message: "no such listener; correct maintenance.listener-arn in the config".into(),
            transient: false,
        }),
    }
}

/// Tags of one resource, as (key, value).
pub async fn tags(elb: &Client, arn: &str) -> Result<Vec<(String, String)>, AwsError> {
    let out = elb
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .aws("ELBv2 DescribeTags", arn)?;
    Ok(out
        .tag_descriptions()
        .iter()
        .flat_map(|d| d.tags())
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect())
}
