//! The ELBv2 calls the phases share.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::{
    Action, ProtocolEnum, Rule, RuleCondition, Tag, TargetGroup, TargetTypeEnum,
};
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

/// A listener as the maintenance code needs it.
#[derive(Debug, Clone)]
pub struct ListenerView {
    pub arn: String,
    pub load_balancer_arn: Option<String>,
    pub default_actions: Vec<Action>,
}

pub async fn describe_listener(elb: &Client, listener_arn: &str) -> Result<ListenerView, AwsError> {
    let out = elb
        .describe_listeners()
        .listener_arns(listener_arn)
        .send()
        .await
        .aws("ELBv2 DescribeListeners", listener_arn)?;
    match out.listeners().first() {
        Some(l) => Ok(ListenerView {
            arn: listener_arn.to_string(),
            load_balancer_arn: l.load_balancer_arn().map(str::to_string),
            default_actions: l.default_actions().to_vec(),
        }),
        None => Err(AwsError {
            operation: "ELBv2 DescribeListeners",
            resource: listener_arn.to_string(),
            code: Some("ListenerNotFound".into()),
            message: "no such listener; correct maintenance.listener-arn in the config".into(),
            transient: false,
        }),
    }
}

/// Every rule of a listener (the default rule included), sorted by priority with the default rule last: the
/// local AWS returns them in insertion order, AWS does not promise an order either.
pub async fn describe_rules(elb: &Client, listener_arn: &str) -> Result<Vec<Rule>, AwsError> {
    let mut rules = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = elb
            .describe_rules()
            .listener_arn(listener_arn)
            .set_marker(marker.clone())
            .page_size(400)
            .send()
            .await
            .aws("ELBv2 DescribeRules", listener_arn)?;
        rules.extend(out.rules().iter().cloned());
        match out.next_marker() {
            Some(m) if !m.is_empty() && Some(m) != marker.as_deref() => {
                marker = Some(m.to_string())
            }
            _ => break,
        }
    }
    rules.sort_by_key(|r| rule_priority(r).unwrap_or(i32::MAX));
    Ok(rules)
}

/// A rule's numeric priority; `None` for the default rule.
pub fn rule_priority(rule: &Rule) -> Option<i32> {
    rule.priority().and_then(|p| p.parse().ok())
}

/// Tags of many resources (DescribeTags takes 20 ARNs a call), by ARN.
pub async fn tags_of(
    elb: &Client,
    arns: &[String],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, AwsError> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> =
        arns.iter().map(|a| (a.clone(), BTreeMap::new())).collect();
    for chunk in arns.chunks(20) {
        let res = elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .aws("ELBv2 DescribeTags", chunk.join(", "))?;
        for d in res.tag_descriptions() {
            let Some(arn) = d.resource_arn() else {
                continue;
            };
            let tags = out.entry(arn.to_string()).or_default();
            for t in d.tags() {
                tags.insert(
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                );
            }
        }
    }
    Ok(out)
}

pub async fn add_tags(elb: &Client, arn: &str, tags: &[(String, String)]) -> Result<(), AwsError> {
    if tags.is_empty() {
        return Ok(());
    }
    let tags: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    elb.add_tags()
        .resource_arns(arn)
        .set_tags(Some(tags))
        .send()
        .await
        .aws("ELBv2 AddTags", arn)?;
    Ok(())
}

pub async fn remove_tags(elb: &Client, arn: &str, keys: &[String]) -> Result<(), AwsError> {
    if keys.is_empty() {
        return Ok(());
    }
    elb.remove_tags()
        .resource_arns(arn)
        .set_tag_keys(Some(keys.to_vec()))
        .send()
        .await
        .aws("ELBv2 RemoveTags", arn)?;
    Ok(())
}

pub async fn set_default_actions(
    elb: &Client,
    listener_arn: &str,
    actions: Vec<Action>,
) -> Result<(), AwsError> {
    elb.modify_listener()
        .listener_arn(listener_arn)
        .set_default_actions(Some(actions))
        .send()
        .await
        .aws("ELBv2 ModifyListener", listener_arn)?;
    Ok(())
}

/// Replaces a rule's conditions, and its actions when given (`None`: they stay).
pub async fn set_rule(
    elb: &Client,
    rule_arn: &str,
    conditions: Vec<RuleCondition>,
    actions: Option<Vec<Action>>,
) -> Result<(), AwsError> {
    elb.modify_rule()
        .rule_arn(rule_arn)
        .set_conditions(Some(conditions))
        .set_actions(actions)
        .send()
        .await
        .aws("ELBv2 ModifyRule", rule_arn)?;
    Ok(())
}

pub struct NewRule {
    pub priority: i32,
    pub conditions: Vec<RuleCondition>,
    pub actions: Vec<Action>,
    pub tags: Vec<(String, String)>,
}

/// Creates a rule with its tags in one call; returns its ARN.
pub async fn create_rule(
    elb: &Client,
    listener_arn: &str,
    rule: NewRule,
) -> Result<String, AwsError> {
    let tags: Vec<Tag> = rule
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let out = elb
        .create_rule()
        .listener_arn(listener_arn)
        .priority(rule.priority)
        .set_conditions(Some(rule.conditions))
        .set_actions(Some(rule.actions))
        .set_tags(Some(tags))
        .send()
        .await
        .aws("ELBv2 CreateRule", listener_arn)?;
    Ok(out
        .rules()
        .first()
        .and_then(|r| r.rule_arn())
        .unwrap_or_default()
        .to_string())
}

/// Deletes a rule; one that is already gone counts as deleted.
pub async fn delete_rule(elb: &Client, rule_arn: &str) -> Result<(), AwsError> {
    match elb
        .delete_rule()
        .rule_arn(rule_arn)
        .send()
        .await
        .aws("ELBv2 DeleteRule", rule_arn)
    {
        Ok(_) => Ok(()),
        Err(e) if e.is("RuleNotFound") => Ok(()),
        Err(e) => Err(e),
    }
}

/// The target group of this name, or `None` when there is none.
pub async fn target_group_by_name(
    elb: &Client,
    name: &str,
) -> Result<Option<TargetGroup>, AwsError> {
    match elb
        .describe_target_groups()
        .names(name)
        .send()
        .await
        .aws("ELBv2 DescribeTargetGroups", name)
    {
        Ok(out) => Ok(out.target_groups().first().cloned()),
        Err(e) if e.is("TargetGroupNotFound") => Ok(None),
        Err(e) => Err(e),
    }
}

pub struct NewTargetGroup<'a> {
    pub name: &'a str,
    pub vpc_id: &'a str,
    pub port: i32,
    pub protocol: &'a str,
    pub target_type: &'a str,
    pub health_check_path: &'a str,
    pub tags: Vec<(String, String)>,
}

/// Creates a target group with its tags in one call; returns its ARN.
pub async fn create_target_group(elb: &Client, tg: NewTargetGroup<'_>) -> Result<String, AwsError> {
    let tags: Vec<Tag> = tg
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let out = elb
        .create_target_group()
        .name(tg.name)
        .vpc_id(tg.vpc_id)
        .port(tg.port)
        .protocol(ProtocolEnum::from(tg.protocol))
        .target_type(TargetTypeEnum::from(tg.target_type))
        .health_check_path(tg.health_check_path)
        .set_tags(Some(tags))
        .send()
        .await
        .aws("ELBv2 CreateTargetGroup", tg.name)?;
    out.target_groups()
        .first()
        .and_then(|t| t.target_group_arn())
        .map(str::to_string)
        .ok_or_else(|| AwsError {
            operation: "ELBv2 CreateTargetGroup",
            resource: tg.name.to_string(),
            code: None,
            message: "the response holds no target group".into(),
            transient: false,
        })
}

/// Deletes a target group; one that is already gone counts as deleted.
pub async fn delete_target_group(elb: &Client, arn: &str) -> Result<(), AwsError> {
    match elb
        .delete_target_group()
        .target_group_arn(arn)
        .send()
        .await
        .aws("ELBv2 DeleteTargetGroup", arn)
    {
        Ok(_) => Ok(()),
        Err(e) if e.is("TargetGroupNotFound") => Ok(()),
        Err(e) => Err(e),
    }
}

/// CreateRule: another rule of the listener has the priority (two runs picked the same free one).
pub fn is_priority_in_use(err: &AwsError) -> bool {
    err.is("PriorityInUse")
}

/// The listener ARN names no listener (in this account and region).
pub fn is_listener_not_found(err: &AwsError) -> bool {
    err.is("ListenerNotFound")
}
