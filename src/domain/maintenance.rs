//! Maintenance mode on the ALB listener named in the config.
//!
//! **On** means: the listener's default action is the configured maintenance response (fixed response or
//! redirect); every forwarding rule carries an extra `http-header` condition with the secret bypass header, so only
//! requests that carry it still reach the services; and one extra rule at the lowest precedence (tagged
//! `deploy-action:bypass-rule`) sends requests that carry the header and match no other rule to the original
//! default action. The listener's tag `deploy-action:maintenance` says `on`.
//!
//! **Off** means: exactly the rules and the default action from before, and no `deploy-action:*` tag left.
//!
//! Everything needed to undo is recorded on the resources themselves *before* they change, so a run killed half-way
//! (either direction) is converged by the next run and the original rules are never lost:
//! - listener: `deploy-action:default-action` = number of chunks, `deploy-action:default-action:N` = the original
//!   default actions as base64 JSON split into 256-character tag values (ELB tag values are ≤ 256 characters and
//!   cannot hold JSON's quotes and braces); `deploy-action:maintenance` = `turning-on` / `on` / `turning-off`;
//! - each forwarding rule: `deploy-action:bypass` = the sha256 prefix of the bypass header name (never the name
//!   itself), which identifies the condition this tool added; removing it gives back the original conditions.
//!
//! The changes are computed by pure functions ([`plan_on`], [`plan_off`]) from one [`inspect`] of the listener, then
//! applied in an order that never sends a request to the wrong place: on = record, bypass rule, default action,
//! rule conditions; off = rule conditions, default action, bypass rule, records.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, FixedResponseActionConfig, ForwardActionConfig,
    HttpHeaderConditionConfig, RedirectActionConfig, RedirectActionStatusCodeEnum, Rule,
    RuleCondition, TargetGroupStickinessConfig, TargetGroupTuple,
};
use aws_sdk_elasticloadbalancingv2::Client;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::aws::elb::{self, ListenerView, NewRule};
use crate::config::{Maintenance, MaintenanceResponse};
use crate::domain::ctx::Ctx;

/// Tag on the listener: `on` once maintenance is fully on; `turning-on` / `turning-off` while a run is changing it.
pub const TAG_STATE: &str = "deploy-action:maintenance";
/// Tag on the listener: how many chunks the recorded default action has; the chunks are `<this>:0`, `<this>:1`, ...
pub const TAG_DEFAULT: &str = "deploy-action:default-action";
/// Tag on a forwarding rule: sha256 prefixes (space-separated) of the bypass header names added to its conditions.
pub const TAG_BYPASS: &str = "deploy-action:bypass";
/// Tag on the rule that sends bypass traffic matching no other rule to the original default action.
pub const TAG_BYPASS_RULE: &str = "deploy-action:bypass-rule";
/// Tag on the listener: when maintenance went fully on (seconds since the epoch) and the drain wait that follows has
/// not finished yet. Written with the `on` mark (one call), removed when the drain wait ends: a run stopped during
/// the drain (a signal, a timeout, a kill) leaves it, and the next run finishes the drain from that moment instead of
/// finding maintenance on and skipping it.
pub const TAG_DRAIN: &str = "deploy-action:drain-from";

/// ELB limits: tag values ≤ 256 characters, ≤ 50 tags per resource (leave room for the owner's own tags).
const TAG_VALUE_MAX: usize = 256;
const MAX_CHUNKS: usize = 30;
/// ALB rule priorities go from 1 to 50000; the bypass rule takes the highest free one (evaluated last).
const MAX_PRIORITY: i32 = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaintenanceState {
    On,
    Off,
    /// Half-way (a run was interrupted); the next `state` run converges it.
    Partial,
    NotConfigured,
}

impl fmt::Display for MaintenanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MaintenanceState::On => "on",
            MaintenanceState::Off => "off",
            MaintenanceState::Partial => "partial",
            MaintenanceState::NotConfigured => "not configured",
        })
    }
}

/// Pure: the maintenance state from whether the default action is the maintenance response, whether an original
/// default action is recorded, and the listener's state tag.
pub fn classify(
    default_is_maintenance: bool,
    recorded: bool,
    tag: Option<&str>,
) -> MaintenanceState {
    match (default_is_maintenance, recorded, tag) {
        (false, false, None) => MaintenanceState::Off,
        (true, true, Some("on")) => MaintenanceState::On,
        (true, _, None) | (false, true, None) | (_, _, Some(_)) => MaintenanceState::Partial,
    }
}

/// The maintenance state of the configured listener (two read calls; used by `status` and by `state` to plan).
pub async fn observe(elb: &Client, cfg: Option<&Maintenance>) -> Result<MaintenanceState> {
    Ok(observe_with_drain(elb, cfg).await?.0)
}

/// Pure: the unfinished drain's start, when maintenance is fully on and a drain was recorded and not finished.
pub fn pending_drain(state: MaintenanceState, tags: &BTreeMap<String, String>) -> Option<i64> {
    if state != MaintenanceState::On {
        return None;
    }
    tags.get(TAG_DRAIN).and_then(|v| v.parse::<i64>().ok())
}

/// [`observe`], and the start of a drain wait that did not finish ([`TAG_DRAIN`]), if any.
pub async fn observe_with_drain(
    elb: &Client,
    cfg: Option<&Maintenance>,
) -> Result<(MaintenanceState, Option<i64>)> {
    let Some(cfg) = cfg else {
        return Ok((MaintenanceState::NotConfigured, None));
    };
    let listener = elb::describe_listener(elb, &cfg.listener_arn).await?;
    let tags = elb::tags(elb, &cfg.listener_arn)
        .await?
        .into_iter()
        .collect::<BTreeMap<_, _>>();
    let response = RecordedAction::maintenance(&cfg.response)?;
    let state = classify(
        is_response(&listener.default_actions, &response),
        tags.contains_key(TAG_DEFAULT),
        tags.get(TAG_STATE).map(String::as_str),
    );
    Ok((state, pending_drain(state, &tags)))
}

/// The secret header that lets testers through while maintenance is on. `Debug` shows neither name nor value.
#[derive(Clone, PartialEq, Eq)]
pub struct BypassHeader {
    pub name: String,
    pub value: String,
}

impl fmt::Debug for BypassHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BypassHeader {{ name: <sha256 {}>, value: <redacted> }}",
            header_hash(&self.name)
        )
    }
}

/// The header name used when maintenance goes on without bypass inputs (db-only, stopped): its value is random and
/// never printed, so nobody gets through.
pub const LOCKED_HEADER_NAME: &str = "x-deploy-action-locked";

impl BypassHeader {
    /// Checks what ALB accepts: a name of 1–40 token characters, a value of 1–128 characters without the wildcards
    /// `*` and `?` (ALB would treat them as patterns). Errors never repeat the secret.
    pub fn new(name: &str, value: &str) -> Result<BypassHeader, String> {
        let name = name.trim();
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || name.len() > 40 || !name.chars().all(token) {
            return Err("input `maintenance-header-name`: not a valid header name; use 1-40 letters, digits or - (e.g. x-maintenance-bypass)".into());
        }
        if value.is_empty()
            || value.chars().count() > 128
            || value.contains(['*', '?'])
            || value.chars().any(char::is_control)
        {
            return Err("input `maintenance-header-value`: not usable as an ALB condition value; use 1-128 printable characters without * or ?".into());
        }
        Ok(BypassHeader {
            name: name.to_string(),
            value: value.to_string(),
        })
    }

    /// A header nobody knows: maintenance without a way through.
    pub fn locked() -> BypassHeader {
        let bytes: [u8; 24] = rand::random();
        BypassHeader {
            name: LOCKED_HEADER_NAME.into(),
            value: hex(&bytes),
        }
    }
}

/// The first 16 hex digits of sha256(lower-cased header name): identifies the condition without storing the name.
pub fn header_hash(name: &str) -> String {
    let digest = Sha256::digest(name.trim().to_ascii_lowercase().as_bytes());
    hex(&digest)[..16].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Actions as recorded in tags
// ---------------------------------------------------------------------------------------------------------------

/// A listener action in the form recorded on the listener. Only what can be put back exactly is recorded;
/// authenticate and JWT actions are refused (they hold configuration AWS does not describe back in full).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum RecordedAction {
    Forward {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tg: Option<String>,
        /// (target group ARN, weight)
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        groups: Vec<(String, Option<i32>)>,
        /// (enabled, duration seconds)
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sticky: Option<(bool, Option<i32>)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<i32>,
    },
    Fixed {
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<i32>,
    },
    Redirect {
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<i32>,
    },
}

impl RecordedAction {
    pub fn from_sdk(a: &Action) -> Result<RecordedAction, String> {
        let order = a.order();
        match a.r#type() {
            Some(ActionTypeEnum::Forward) => {
                let fc = a.forward_config();
                Ok(RecordedAction::Forward {
                    tg: a.target_group_arn().map(str::to_string),
                    groups: fc
                        .map(|f| {
                            f.target_groups()
                                .iter()
                                .map(|g| (g.target_group_arn().unwrap_or_default().to_string(), g.weight()))
                                .collect()
                        })
                        .unwrap_or_default(),
                    sticky: fc
                        .and_then(|f| f.target_group_stickiness_config())
                        .map(|s| (s.enabled().unwrap_or(false), s.duration_seconds())),
                    order,
                })
            }
            Some(ActionTypeEnum::FixedResponse) => {
                let f = a.fixed_response_config().ok_or("fixed-response action without its configuration")?;
                Ok(RecordedAction::Fixed {
                    status: f.status_code().unwrap_or_default().to_string(),
                    content_type: f.content_type().map(str::to_string),
                    body: f.message_body().filter(|b| !b.is_empty()).map(str::to_string),
                    order,
                })
            }
            Some(ActionTypeEnum::Redirect) => {
                let r = a.redirect_config().ok_or("redirect action without its configuration")?;
                Ok(RecordedAction::Redirect {
                    status: r.status_code().map(|s| s.as_str().to_string()).unwrap_or_default(),
                    protocol: r.protocol().map(str::to_string),
                    host: r.host().map(str::to_string),
                    port: r.port().map(str::to_string),
                    path: r.path().map(str::to_string),
                    query: r.query().map(str::to_string),
                    order,
                })
            }
            Some(
                other @ (ActionTypeEnum::AuthenticateCognito | ActionTypeEnum::AuthenticateOidc | ActionTypeEnum::JwtValidation),
            ) => Err(format!(
                "a {} action cannot be recorded and put back exactly (AWS does not describe its secrets)",
                other.as_str()
            )),
            Some(other) => Err(format!("unknown action type {:?}", other.as_str())),
            None => Err("an action without a type".into()),
        }
    }

    pub fn to_sdk(&self) -> Action {
        match self {
            RecordedAction::Forward {
                tg,
                groups,
                sticky,
                order,
            } => {
                let fc = (!groups.is_empty() || sticky.is_some()).then(|| {
                    ForwardActionConfig::builder()
                        .set_target_groups(Some(
                            groups
                                .iter()
                                .map(|(arn, w)| {
                                    TargetGroupTuple::builder()
                                        .target_group_arn(arn)
                                        .set_weight(*w)
                                        .build()
                                })
                                .collect(),
                        ))
                        .set_target_group_stickiness_config(sticky.map(|(e, d)| {
                            TargetGroupStickinessConfig::builder()
                                .enabled(e)
                                .set_duration_seconds(d)
                                .build()
                        }))
                        .build()
                });
                Action::builder()
                    .r#type(ActionTypeEnum::Forward)
                    .set_target_group_arn(tg.clone())
                    .set_forward_config(fc)
                    .set_order(*order)
                    .build()
            }
            RecordedAction::Fixed {
                status,
                content_type,
                body,
                order,
            } => Action::builder()
                .r#type(ActionTypeEnum::FixedResponse)
                .fixed_response_config(
                    FixedResponseActionConfig::builder()
                        .status_code(status)
                        .set_content_type(content_type.clone())
                        .set_message_body(body.clone())
                        .build(),
                )
                .set_order(*order)
                .build(),
            RecordedAction::Redirect {
                status,
                protocol,
                host,
                port,
                path,
                query,
                order,
            } => Action::builder()
                .r#type(ActionTypeEnum::Redirect)
                .redirect_config(
                    RedirectActionConfig::builder()
                        .status_code(RedirectActionStatusCodeEnum::from(status.as_str()))
                        .set_protocol(protocol.clone())
                        .set_host(host.clone())
                        .set_port(port.clone())
                        .set_path(path.clone())
                        .set_query(query.clone())
                        .build(),
                )
                .set_order(*order)
                .build(),
        }
    }

    /// The configured maintenance response as a listener action.
    pub fn maintenance(response: &MaintenanceResponse) -> Result<RecordedAction> {
        Ok(match response {
            MaintenanceResponse::Fixed(f) => RecordedAction::Fixed {
                status: f.status_code.to_string(),
                content_type: Some(f.content_type.clone()),
                body: Some(f.body.clone()).filter(|b| !b.is_empty()),
                order: None,
            },
            MaintenanceResponse::Redirect(r) => {
                let (protocol, host, port, path, query) = split_url(&r.url).ok_or_else(|| {
                    anyhow!(
                        "maintenance.redirect.url: {:?} is not an absolute http(s) URL",
                        r.url
                    )
                })?;
                RecordedAction::Redirect {
                    status: format!("HTTP_{}", r.status_code),
                    protocol: Some(protocol),
                    host: Some(host),
                    port: Some(port),
                    path: Some(path),
                    query,
                    order: None,
                }
            }
        })
    }

    fn without_order(&self) -> RecordedAction {
        let mut a = self.clone();
        match &mut a {
            RecordedAction::Forward { order, .. }
            | RecordedAction::Fixed { order, .. }
            | RecordedAction::Redirect { order, .. } => *order = None,
        }
        a
    }

    /// Target groups this action forwards to.
    pub fn target_groups(&self) -> Vec<String> {
        match self {
            RecordedAction::Forward { tg, groups, .. } => tg
                .iter()
                .cloned()
                .chain(groups.iter().map(|(a, _)| a.clone()))
                .collect(),
            RecordedAction::Fixed { .. } | RecordedAction::Redirect { .. } => vec![],
        }
    }
}

/// `https://host:8443/path?q` → (HTTPS, host, 8443, /path, q); the port defaults to the scheme's.
fn split_url(url: &str) -> Option<(String, String, String, String, Option<String>)> {
    let (scheme, rest) = url.split_once("://")?;
    let (protocol, default_port) = match scheme.to_ascii_lowercase().as_str() {
        "https" => ("HTTPS", "443"),
        "http" => ("HTTP", "80"),
        _ => return None,
    };
    let (authority, path_query) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (path_query, _fragment) = path_query.split_once('#').unwrap_or((path_query, ""));
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string()).filter(|q| !q.is_empty())),
        None => (path_query, None),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => (h, p),
        _ => (authority, default_port),
    };
    if host.is_empty() {
        return None;
    }
    Some((
        protocol.into(),
        host.into(),
        port.into(),
        path.into(),
        query,
    ))
}

/// Whether the listener's default actions are exactly the maintenance response.
pub fn is_response(actions: &[Action], response: &RecordedAction) -> bool {
    match actions {
        [one] => RecordedAction::from_sdk(one)
            .is_ok_and(|a| a.without_order() == response.without_order()),
        _ => false,
    }
}

fn same_actions(actions: &[Action], recorded: &[RecordedAction]) -> bool {
    let now: Result<Vec<RecordedAction>, String> =
        actions.iter().map(RecordedAction::from_sdk).collect();
    now.is_ok_and(|now| {
        now.len() == recorded.len()
            && now
                .iter()
                .zip(recorded)
                .all(|(a, b)| a.without_order() == b.without_order())
    })
}

/// The recorded default actions as listener tags: a count and 256-character chunks of base64 JSON.
pub fn encode_record(actions: &[RecordedAction]) -> Result<Vec<(String, String)>> {
    let json = serde_json::to_string(actions)?;
    let b64 = aws_smithy_types::base64::encode(json.as_bytes());
    let chunks: Vec<String> = b64
        .as_bytes()
        .chunks(TAG_VALUE_MAX)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    if chunks.len() > MAX_CHUNKS {
        bail!(
            "the listener's default action is too large to record in tags ({} characters)",
            b64.len()
        );
    }
    let mut tags = vec![(TAG_DEFAULT.to_string(), chunks.len().to_string())];
    tags.extend(
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, c)| (format!("{TAG_DEFAULT}:{i}"), c)),
    );
    Ok(tags)
}

/// The recorded default actions, `None` when nothing is recorded. A damaged record is an error, never ignored.
pub fn decode_record(tags: &BTreeMap<String, String>) -> Result<Option<Vec<RecordedAction>>> {
    let Some(count) = tags.get(TAG_DEFAULT) else {
        return Ok(None);
    };
    let n: usize = count
        .parse()
        .map_err(|_| anyhow!("tag {TAG_DEFAULT} = {count:?} is not a chunk count"))?;
    let mut b64 = String::new();
    for i in 0..n {
        let key = format!("{TAG_DEFAULT}:{i}");
        b64.push_str(
            tags.get(&key)
                .ok_or_else(|| anyhow!("tag {key} is missing (the record has {n} chunks)"))?,
        );
    }
    let json = aws_smithy_types::base64::decode(&b64)
        .map_err(|e| anyhow!("tags {TAG_DEFAULT}:*: not base64 ({e})"))?;
    let actions = serde_json::from_slice(&json)
        .context("tags deploy-action:default-action:*: not a recorded action")?;
    Ok(Some(actions))
}

fn record_keys(tags: &BTreeMap<String, String>) -> Vec<String> {
    tags.keys()
        .filter(|k| k.as_str() == TAG_DEFAULT || k.starts_with(&format!("{TAG_DEFAULT}:")))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Rule conditions
// ---------------------------------------------------------------------------------------------------------------

/// The condition added to forwarding rules (and the bypass rule).
pub fn header_condition(h: &BypassHeader) -> RuleCondition {
    RuleCondition::builder()
        .field("http-header")
        .http_header_config(
            HttpHeaderConditionConfig::builder()
                .http_header_name(&h.name)
                .values(&h.value)
                .build(),
        )
        .build()
}

fn is_header_condition_of(c: &RuleCondition, hashes: &BTreeSet<String>) -> bool {
    c.field() == Some("http-header")
        && c.http_header_config()
            .and_then(|h| h.http_header_name())
            .is_some_and(|n| hashes.contains(&header_hash(n)))
}

fn is_exactly(c: &RuleCondition, h: &BypassHeader) -> bool {
    c.field() == Some("http-header")
        && c.http_header_config().is_some_and(|cfg| {
            cfg.http_header_name()
                .is_some_and(|n| n.eq_ignore_ascii_case(&h.name))
                && cfg.values() == [h.value.clone()]
        })
}

/// A condition as ModifyRule accepts it: DescribeRules returns both the legacy `Values` and the typed config, and
/// AWS refuses both in one condition. Keep the typed config when there is one.
pub fn normalize(c: &RuleCondition) -> RuleCondition {
    let typed = c.host_header_config().is_some()
        || c.path_pattern_config().is_some()
        || c.http_header_config().is_some()
        || c.query_string_config().is_some()
        || c.http_request_method_config().is_some()
        || c.source_ip_config().is_some();
    RuleCondition::builder()
        .set_field(c.field().map(str::to_string))
        .set_values((!typed && !c.values().is_empty()).then(|| c.values().to_vec()))
        .set_host_header_config(c.host_header_config().cloned())
        .set_path_pattern_config(c.path_pattern_config().cloned())
        .set_http_header_config(c.http_header_config().cloned())
        .set_query_string_config(c.query_string_config().cloned())
        .set_http_request_method_config(c.http_request_method_config().cloned())
        .set_source_ip_config(c.source_ip_config().cloned())
        .set_regex_values((!c.regex_values().is_empty()).then(|| c.regex_values().to_vec()))
        .build()
}

/// ALB: at most 5 condition values per rule (and 3 per condition); the bypass-header condition adds one.
pub const MAX_RULE_VALUES: usize = 5;

/// Pure: how many condition values a condition holds, as ALB counts them toward its per-rule limit (a query-string
/// key/value pair is one value).
pub fn condition_values(c: &RuleCondition) -> usize {
    let typed = [
        c.host_header_config().map(|h| h.values().len()),
        c.path_pattern_config().map(|p| p.values().len()),
        c.http_header_config().map(|h| h.values().len()),
        c.query_string_config().map(|q| q.values().len()),
        c.http_request_method_config().map(|m| m.values().len()),
        c.source_ip_config().map(|s| s.values().len()),
    ];
    match typed.iter().flatten().max() {
        Some(n) => *n,
        None => c.values().len(),
    }
}

/// Pure: each forwarding rule with the number of condition values it has without a bypass condition of this
/// action, for the preflight's "can maintenance go on" check (our bypass condition adds one).
pub fn forwarding_rule_values(snap: &ListenerSnapshot) -> Vec<(String, usize)> {
    snap.rules
        .iter()
        .filter(|r| r.is_forwarding())
        .map(|r| {
            let ours = parse_hashes(r.tags.get(TAG_BYPASS));
            let n = r
                .rule
                .conditions()
                .iter()
                .filter(|c| !is_header_condition_of(c, &ours))
                .map(condition_values)
                .sum();
            (r.label(), n)
        })
        .collect()
}

fn parse_hashes(tag: Option<&String>) -> BTreeSet<String> {
    tag.map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------------------------
// Inspect, plan, apply
// ---------------------------------------------------------------------------------------------------------------

/// One look at the listener: its default actions, tags, and every non-default rule (by priority) with its tags.
#[derive(Debug, Clone)]
pub struct ListenerSnapshot {
    pub listener: ListenerView,
    pub tags: BTreeMap<String, String>,
    pub rules: Vec<RuleSnapshot>,
}

#[derive(Debug, Clone)]
pub struct RuleSnapshot {
    pub arn: String,
    pub priority: i32,
    pub rule: Rule,
    pub tags: BTreeMap<String, String>,
}

impl RuleSnapshot {
    fn is_bypass_rule(&self) -> bool {
        self.tags.contains_key(TAG_BYPASS_RULE)
    }

    /// A rule whose actions forward to target groups (not our bypass rule).
    fn is_forwarding(&self) -> bool {
        !self.is_bypass_rule()
            && self
                .rule
                .actions()
                .iter()
                .any(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
    }

    fn label(&self) -> String {
        format!(
            "rule {} ({})",
            self.priority,
            self.arn.rsplit('/').next().unwrap_or(&self.arn)
        )
    }
}

pub async fn inspect(elb: &Client, listener_arn: &str) -> Result<ListenerSnapshot> {
    let (listener, rules) = tokio::try_join!(
        elb::describe_listener(elb, listener_arn),
        elb::describe_rules(elb, listener_arn)
    )?;
    let rules: Vec<(String, i32, Rule)> = rules
        .into_iter()
        .filter(|r| r.is_default() != Some(true))
        .filter_map(|r| Some((r.rule_arn()?.to_string(), elb::rule_priority(&r)?, r)))
        .collect();
    let mut arns = vec![listener_arn.to_string()];
    arns.extend(rules.iter().map(|(a, _, _)| a.clone()));
    let mut tags = elb::tags_of(elb, &arns).await?;
    Ok(ListenerSnapshot {
        tags: tags.remove(listener_arn).unwrap_or_default(),
        rules: rules
            .into_iter()
            .map(|(arn, priority, rule)| RuleSnapshot {
                tags: tags.remove(&arn).unwrap_or_default(),
                arn,
                priority,
                rule,
            })
            .collect(),
        listener,
    })
}

/// One change to the listener or a rule. `what` is for the log: it never contains the header name or value.
#[derive(Debug, Clone)]
pub struct Change {
    pub what: String,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone)]
pub enum ChangeKind {
    TagListener(Vec<(String, String)>),
    /// The listener's `on` mark, and with `drain` the drain's start ([`TAG_DRAIN`], the time of this call).
    MarkOn {
        drain: bool,
    },
    UntagListener(Vec<String>),
    SetDefault(Vec<Action>),
    CreateBypassRule {
        priority: i32,
        conditions: Vec<RuleCondition>,
        actions: Vec<Action>,
    },
    UpdateBypassRule {
        arn: String,
        conditions: Vec<RuleCondition>,
        actions: Vec<Action>,
    },
    DeleteRule {
        arn: String,
    },
    TagRule {
        arn: String,
        tags: Vec<(String, String)>,
    },
    UntagRule {
        arn: String,
        keys: Vec<String>,
    },
    SetConditions {
        arn: String,
        conditions: Vec<RuleCondition>,
    },
}

fn change(what: impl Into<String>, kind: ChangeKind) -> Change {
    Change {
        what: what.into(),
        kind,
    }
}

/// Pure: the changes that put maintenance on, from what is there now. Empty when it is fully on already. With
/// `drain` (a drain wait follows), the `on` mark records the drain's start too.
pub fn plan_on(
    snap: &ListenerSnapshot,
    response: &RecordedAction,
    header: &BypassHeader,
    drain: bool,
) -> Result<Vec<Change>> {
    let Original {
        actions: original,
        record_tags,
    } = original_default(snap, response)?;
    let cond = header_condition(header);
    // The bypass rule first: while the default action still forwards it changes nothing for anyone.
    let mut work = bypass_rule_changes(snap, &original, header, &cond)?;
    if !is_response(&snap.listener.default_actions, response) {
        work.push(change(
            "set the listener's default action to the maintenance response",
            ChangeKind::SetDefault(vec![response.to_sdk()]),
        ));
    }
    for r in snap.rules.iter().filter(|r| r.is_forwarding()) {
        work.extend(forwarding_rule_changes(r, header, &cond));
    }
    let state = snap.tags.get(TAG_STATE).map(String::as_str);
    let on = || {
        change(
            if drain {
                "mark the listener: maintenance on, drain from now"
            } else {
                "mark the listener: maintenance on"
            },
            ChangeKind::MarkOn { drain },
        )
    };
    Ok(match (work.is_empty() && record_tags.is_empty(), state) {
        (true, Some("on")) => vec![],
        (true, _) => vec![on()],
        (false, _) => {
            let mut first = record_tags;
            first.push((TAG_STATE.into(), "turning-on".into()));
            let mut out = vec![change(
                "record the listener's default action and mark it: turning on",
                ChangeKind::TagListener(first),
            )];
            out.extend(work);
            out.push(on());
            out
        }
    })
}

/// The listener's original default action: the recorded one, else the current one with the tags that record it
/// (refused when the current one already is the maintenance response: there would be nothing to put back).
fn original_default(snap: &ListenerSnapshot, response: &RecordedAction) -> Result<Original> {
    let arn = &snap.listener.arn;
    if let Some(recorded) = decode_record(&snap.tags).with_context(|| format!("listener {arn}"))? {
        return Ok(Original {
            actions: recorded,
            record_tags: vec![],
        });
    }
    if is_response(&snap.listener.default_actions, response) {
        bail!(
            "listener {arn}: its default action already is the maintenance response, but deploy-action recorded no original to put back later; set the original default action by hand, then re-run"
        );
    }
    let original: Vec<RecordedAction> = snap
        .listener
        .default_actions
        .iter()
        .map(RecordedAction::from_sdk)
        .collect::<Result<_, _>>()
        .map_err(|why| {
            anyhow!("listener {arn}: default action: {why}; maintenance cannot be turned on safely")
        })?;
    let record_tags = encode_record(&original).with_context(|| format!("listener {arn}"))?;
    Ok(Original {
        actions: original,
        record_tags,
    })
}

/// The default action maintenance puts back, and the listener tags that still have to record it (none when recorded).
struct Original {
    actions: Vec<RecordedAction>,
    record_tags: Vec<(String, String)>,
}

/// The one bypass rule (header condition → the original default action): created, brought up to date, duplicates
/// deleted.
fn bypass_rule_changes(
    snap: &ListenerSnapshot,
    original: &[RecordedAction],
    header: &BypassHeader,
    cond: &RuleCondition,
) -> Result<Vec<Change>> {
    let mut work = vec![];
    let bypass_actions: Vec<Action> = original.iter().map(RecordedAction::to_sdk).collect();
    let bypass_rules: Vec<&RuleSnapshot> =
        snap.rules.iter().filter(|r| r.is_bypass_rule()).collect();
    match bypass_rules.first() {
        None => work.push(change(
            "create the bypass rule (requests with the bypass header reach the original default action)",
            ChangeKind::CreateBypassRule { priority: free_priority(&snap.rules)?, conditions: vec![cond.clone()], actions: bypass_actions },
        )),
        Some(r) => {
            let conds_ok = matches!(r.rule.conditions(), [c] if is_exactly(c, header));
            if !conds_ok || !same_actions(r.rule.actions(), original) {
                work.push(change(
                    format!("update the bypass {}", r.label()),
                    ChangeKind::UpdateBypassRule { arn: r.arn.clone(), conditions: vec![cond.clone()], actions: bypass_actions },
                ));
            }
        }
    }
    for extra in bypass_rules.iter().skip(1) {
        work.push(change(
            format!("delete the duplicate bypass {}", extra.label()),
            ChangeKind::DeleteRule {
                arn: extra.arn.clone(),
            },
        ));
    }
    Ok(work)
}

/// A forwarding rule gets the bypass-header condition (replacing an earlier header's), recorded in its tags first.
fn forwarding_rule_changes(
    r: &RuleSnapshot,
    header: &BypassHeader,
    cond: &RuleCondition,
) -> Vec<Change> {
    let mut work = vec![];
    let ours = header_hash(&header.name);
    let tagged = parse_hashes(r.tags.get(TAG_BYPASS));
    let mut all = tagged.clone();
    all.insert(ours.clone());
    // Tag before changing, so a run killed in between still knows which condition is ours.
    if !tagged.contains(&ours) {
        work.push(change(
            format!("record the bypass condition on {}", r.label()),
            ChangeKind::TagRule {
                arn: r.arn.clone(),
                tags: vec![(TAG_BYPASS.into(), join(&all))],
            },
        ));
    }
    let current: Vec<RuleCondition> = r.rule.conditions().iter().map(normalize).collect();
    let mut desired: Vec<RuleCondition> = current
        .iter()
        .filter(|c| !is_header_condition_of(c, &all))
        .cloned()
        .collect();
    desired.push(cond.clone());
    if current != desired {
        work.push(change(
            format!("add the bypass-header condition to {}", r.label()),
            ChangeKind::SetConditions {
                arn: r.arn.clone(),
                conditions: desired,
            },
        ));
    }
    if tagged.len() > 1 || (tagged.len() == 1 && !tagged.contains(&ours)) {
        work.push(change(
            format!("forget the replaced bypass condition of {}", r.label()),
            ChangeKind::TagRule {
                arn: r.arn.clone(),
                tags: vec![(TAG_BYPASS.into(), ours.clone())],
            },
        ));
    }
    work
}

/// Pure: the changes that take maintenance off and put back exactly what was recorded. Empty when it is off.
pub fn plan_off(snap: &ListenerSnapshot, response: &RecordedAction) -> Result<Vec<Change>> {
    let arn = &snap.listener.arn;
    let recorded = decode_record(&snap.tags).with_context(|| format!("listener {arn}"))?;
    let mut work = vec![];
    for r in snap
        .rules
        .iter()
        .filter(|r| r.tags.contains_key(TAG_BYPASS) && !r.is_bypass_rule())
    {
        let ours = parse_hashes(r.tags.get(TAG_BYPASS));
        let current: Vec<RuleCondition> = r.rule.conditions().iter().map(normalize).collect();
        let original: Vec<RuleCondition> = current
            .iter()
            .filter(|c| !is_header_condition_of(c, &ours))
            .cloned()
            .collect();
        if original.is_empty() {
            bail!("{}: removing the bypass condition would leave no condition; check the rule by hand", r.label());
        }
        if original != current {
            work.push(change(
                format!("remove the bypass-header condition from {}", r.label()),
                ChangeKind::SetConditions {
                    arn: r.arn.clone(),
                    conditions: original,
                },
            ));
        }
        work.push(change(
            format!("forget the bypass condition of {}", r.label()),
            ChangeKind::UntagRule {
                arn: r.arn.clone(),
                keys: vec![TAG_BYPASS.into()],
            },
        ));
    }
    match &recorded {
        Some(original) => {
            if !same_actions(&snap.listener.default_actions, original) {
                work.push(change(
                    "put the listener's original default action back",
                    ChangeKind::SetDefault(original.iter().map(RecordedAction::to_sdk).collect()),
                ));
            }
        }
        None => {
            if is_response(&snap.listener.default_actions, response) {
                bail!(
                    "listener {arn}: its default action is the maintenance response, but deploy-action recorded no original (it was not set by deploy-action); set the default action by hand"
                );
            }
        }
    }
    for r in snap.rules.iter().filter(|r| r.is_bypass_rule()) {
        work.push(change(
            format!("delete the bypass {}", r.label()),
            ChangeKind::DeleteRule { arn: r.arn.clone() },
        ));
    }
    let mut keys = record_keys(&snap.tags);
    for tag in [TAG_STATE, TAG_DRAIN] {
        if snap.tags.contains_key(tag) {
            keys.push(tag.into());
        }
    }
    if work.is_empty() && keys.is_empty() {
        return Ok(vec![]);
    }
    let mut out = vec![];
    if !work.is_empty() {
        out.push(change(
            "mark the listener: turning off",
            ChangeKind::TagListener(vec![(TAG_STATE.into(), "turning-off".into())]),
        ));
        if !keys.contains(&TAG_STATE.to_string()) {
            keys.push(TAG_STATE.into());
        }
    }
    out.extend(work);
    out.push(change(
        "forget the recorded default action and the maintenance mark",
        ChangeKind::UntagListener(keys),
    ));
    Ok(out)
}

fn join(hashes: &BTreeSet<String>) -> String {
    hashes.iter().cloned().collect::<Vec<_>>().join(" ")
}

fn free_priority(rules: &[RuleSnapshot]) -> Result<i32> {
    let used: BTreeSet<i32> = rules.iter().map(|r| r.priority).collect();
    (1..=MAX_PRIORITY)
        .rev()
        .find(|p| !used.contains(p))
        .ok_or_else(|| anyhow!("the listener has no free rule priority"))
}

/// Applies changes in order, logging each. Returns the drain's start if a [`ChangeKind::MarkOn`] recorded one.
///
/// A signal stops it before the next change (each change is recorded, so the rerun converges from where it stopped).
pub async fn apply(
    elb: &Client,
    listener_arn: &str,
    changes: &[Change],
    ctx: &Ctx,
) -> Result<Option<i64>> {
    let mut drain_from = None;
    for c in changes {
        ctx.stop_if_cancelled(&format!("maintenance: {}", c.what))?;
        tracing::info!("maintenance: {}", c.what);
        match &c.kind {
            ChangeKind::TagListener(tags) => elb::add_tags(elb, listener_arn, tags).await?,
            ChangeKind::MarkOn { drain } => {
                let mut tags = vec![(TAG_STATE.to_string(), "on".to_string())];
                if *drain {
                    let now = now_secs();
                    tags.push((TAG_DRAIN.to_string(), now.to_string()));
                    drain_from = Some(now);
                }
                elb::add_tags(elb, listener_arn, &tags).await?
            }
            ChangeKind::UntagListener(keys) => elb::remove_tags(elb, listener_arn, keys).await?,
            ChangeKind::SetDefault(actions) => {
                elb::set_default_actions(elb, listener_arn, actions.clone()).await?
            }
            ChangeKind::CreateBypassRule {
                priority,
                conditions,
                actions,
            } => {
                let arn = elb::create_rule(
                    elb,
                    listener_arn,
                    NewRule {
                        priority: *priority,
                        conditions: conditions.clone(),
                        actions: actions.clone(),
                        tags: vec![(TAG_BYPASS_RULE.into(), "true".into())],
                    },
                )
                .await?;
                tracing::debug!("bypass rule {arn} at priority {priority}");
            }
            ChangeKind::UpdateBypassRule {
                arn,
                conditions,
                actions,
            } => elb::set_rule(elb, arn, conditions.clone(), Some(actions.clone())).await?,
            ChangeKind::DeleteRule { arn } => elb::delete_rule(elb, arn).await?,
            ChangeKind::TagRule { arn, tags } => elb::add_tags(elb, arn, tags).await?,
            ChangeKind::UntagRule { arn, keys } => elb::remove_tags(elb, arn, keys).await?,
            ChangeKind::SetConditions { arn, conditions } => {
                elb::set_rule(elb, arn, conditions.clone(), None).await?
            }
        }
    }
    Ok(drain_from)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The drain wait ended (drained, or skipped on purpose): forget its start, so the next run does not wait again.
pub async fn drain_finished(elb: &Client, listener_arn: &str) -> Result<()> {
    tracing::info!("maintenance: forget the drain's start (the drain finished)");
    elb::remove_tags(elb, listener_arn, &[TAG_DRAIN.to_string()]).await?;
    Ok(())
}

/// What turning maintenance on or off did, and where traffic would go (for the drain wait).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// One line per change made (empty: nothing needed changing).
    pub changes: Vec<String>,
    /// The target groups the original default action and the forwarding rules send traffic to.
    pub target_groups: Vec<String>,
    /// The listener's load balancer ARN.
    pub load_balancer: Option<String>,
    /// When turning on recorded the drain's start ([`TAG_DRAIN`]); or the unfinished drain it found recorded.
    pub drain_from: Option<i64>,
}

/// Puts maintenance on (converging from whatever a previous run left). With `drain` (a drain wait follows), the
/// drain's start is recorded with the `on` mark.
pub async fn turn_on(
    elb: &Client,
    cfg: &Maintenance,
    header: &BypassHeader,
    drain: bool,
    ctx: &Ctx,
) -> Result<Applied> {
    let response = RecordedAction::maintenance(&cfg.response)?;
    let snap = inspect(elb, &cfg.listener_arn).await?;
    let changes = plan_on(&snap, &response, header, drain)?;
    let recorded = apply(elb, &cfg.listener_arn, &changes, ctx).await?;
    Ok(Applied {
        changes: changes.into_iter().map(|c| c.what).collect(),
        target_groups: forwarding_target_groups(&snap)?,
        load_balancer: snap.listener.load_balancer_arn.clone(),
        drain_from: recorded.or_else(|| snap.tags.get(TAG_DRAIN).and_then(|v| v.parse().ok())),
    })
}

/// Takes maintenance off, putting back exactly what was recorded.
pub async fn turn_off(elb: &Client, cfg: &Maintenance, ctx: &Ctx) -> Result<Applied> {
    let response = RecordedAction::maintenance(&cfg.response)?;
    let snap = inspect(elb, &cfg.listener_arn).await?;
    let changes = plan_off(&snap, &response)?;
    apply(elb, &cfg.listener_arn, &changes, ctx).await?;
    Ok(Applied {
        changes: changes.into_iter().map(|c| c.what).collect(),
        target_groups: forwarding_target_groups(&snap)?,
        load_balancer: snap.listener.load_balancer_arn.clone(),
        drain_from: None,
    })
}

/// Target groups that normal traffic reaches: the (original) default action's and the forwarding rules'.
pub fn forwarding_target_groups(snap: &ListenerSnapshot) -> Result<Vec<String>> {
    let default: Vec<RecordedAction> = match decode_record(&snap.tags)? {
        Some(r) => r,
        None => snap
            .listener
            .default_actions
            .iter()
            .filter_map(|a| RecordedAction::from_sdk(a).ok())
            .collect(),
    };
    let mut tgs: Vec<String> = default
        .iter()
        .flat_map(RecordedAction::target_groups)
        .collect();
    for r in snap.rules.iter().filter(|r| r.is_forwarding()) {
        for a in r.rule.actions() {
            if let Ok(a) = RecordedAction::from_sdk(a) {
                tgs.extend(a.target_groups());
            }
        }
    }
    let mut seen = BTreeSet::new();
    tgs.retain(|t| !t.is_empty() && seen.insert(t.clone()));
    Ok(tgs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_elasticloadbalancingv2::types::PathPatternConditionConfig;

    const TG: &str = "arn:aws:elasticloadbalancing:eu-central-1:1:targetgroup/stage-core/abc";
    const TG2: &str = "arn:aws:elasticloadbalancing:eu-central-1:1:targetgroup/stage-workers/def";
    const LISTENER: &str = "arn:aws:elasticloadbalancing:eu-central-1:1:listener/app/lb/1/2";

    #[test]
    fn classification() {
        use MaintenanceState as M;
        let cases = [
            (false, false, None, M::Off),
            (true, true, Some("on"), M::On),
            (false, true, Some("turning-on"), M::Partial),
            (true, true, Some("turning-off"), M::Partial),
            (true, false, None, M::Partial),
            (false, true, None, M::Partial),
            (false, false, Some("on"), M::Partial),
            (true, true, None, M::Partial),
        ];
        for (maint, rec, tag, want) in cases {
            assert_eq!(classify(maint, rec, tag), want, "{maint} {rec} {tag:?}");
        }
    }

    fn forward(tg: &str) -> Action {
        RecordedAction::Forward {
            tg: Some(tg.into()),
            groups: vec![(tg.into(), Some(1))],
            sticky: Some((false, None)),
            order: None,
        }
        .to_sdk()
    }

    fn path(p: &str) -> RuleCondition {
        // As DescribeRules returns it: both the legacy values and the typed config.
        RuleCondition::builder()
            .field("path-pattern")
            .values(p)
            .path_pattern_config(PathPatternConditionConfig::builder().values(p).build())
            .build()
    }

    fn rule(
        priority: i32,
        conds: Vec<RuleCondition>,
        action: Action,
        tags: &[(&str, &str)],
    ) -> RuleSnapshot {
        let arn = format!("{LISTENER}-rule/{priority}");
        RuleSnapshot {
            rule: Rule::builder()
                .rule_arn(&arn)
                .priority(priority.to_string())
                .set_conditions(Some(conds))
                .actions(action)
                .build(),
            arn,
            priority,
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn fixed() -> RecordedAction {
        RecordedAction::Fixed {
            status: "503".into(),
            content_type: Some("text/html".into()),
            body: Some("down".into()),
            order: None,
        }
    }

    fn header() -> BypassHeader {
        BypassHeader::new("X-Bypass", "s3cret").unwrap()
    }

    fn original() -> ListenerSnapshot {
        ListenerSnapshot {
            listener: ListenerView {
                arn: LISTENER.into(),
                load_balancer_arn: None,
                default_actions: vec![forward(TG)],
            },
            tags: BTreeMap::new(),
            rules: vec![
                rule(20, vec![path("/workers/*")], forward(TG2), &[]),
                rule(10, vec![path("/api/*")], forward(TG), &[]),
                rule(
                    5,
                    vec![path("/old")],
                    RecordedAction::Fixed {
                        status: "410".into(),
                        content_type: None,
                        body: None,
                        order: None,
                    }
                    .to_sdk(),
                    &[],
                ),
            ],
        }
    }

    /// Applies planned changes to a snapshot the way ELB would (the fake below the pure functions).
    fn simulate(snap: &mut ListenerSnapshot, changes: &[Change]) {
        for c in changes {
            match &c.kind {
                ChangeKind::TagListener(t) => snap.tags.extend(t.iter().cloned()),
                ChangeKind::MarkOn { drain } => {
                    snap.tags.insert(TAG_STATE.into(), "on".into());
                    if *drain {
                        snap.tags.insert(TAG_DRAIN.into(), "1700000000".into());
                    }
                }
                ChangeKind::UntagListener(k) => k.iter().for_each(|k| {
                    snap.tags.remove(k);
                }),
                ChangeKind::SetDefault(a) => snap.listener.default_actions = a.clone(),
                ChangeKind::CreateBypassRule {
                    priority,
                    conditions,
                    actions,
                } => {
                    let mut r = rule(
                        *priority,
                        conditions.clone(),
                        actions[0].clone(),
                        &[(TAG_BYPASS_RULE, "true")],
                    );
                    r.rule = Rule::builder()
                        .rule_arn(&r.arn)
                        .priority(priority.to_string())
                        .set_conditions(Some(conditions.clone()))
                        .set_actions(Some(actions.clone()))
                        .build();
                    snap.rules.push(r);
                }
                ChangeKind::UpdateBypassRule {
                    arn,
                    conditions,
                    actions,
                } => {
                    let r = snap.rules.iter_mut().find(|r| &r.arn == arn).unwrap();
                    r.rule = rebuild(&r.rule, conditions.clone(), actions.clone());
                }
                ChangeKind::DeleteRule { arn } => snap.rules.retain(|r| &r.arn != arn),
                ChangeKind::TagRule { arn, tags } => snap
                    .rules
                    .iter_mut()
                    .find(|r| &r.arn == arn)
                    .unwrap()
                    .tags
                    .extend(tags.iter().cloned()),
                ChangeKind::UntagRule { arn, keys } => {
                    let r = snap.rules.iter_mut().find(|r| &r.arn == arn).unwrap();
                    keys.iter().for_each(|k| {
                        r.tags.remove(k);
                    });
                }
                ChangeKind::SetConditions { arn, conditions } => {
                    let r = snap.rules.iter_mut().find(|r| &r.arn == arn).unwrap();
                    r.rule = rebuild(&r.rule, conditions.clone(), r.rule.actions().to_vec());
                }
            }
        }
    }

    fn rebuild(r: &Rule, conditions: Vec<RuleCondition>, actions: Vec<Action>) -> Rule {
        Rule::builder()
            .set_rule_arn(r.rule_arn().map(str::to_string))
            .set_priority(r.priority().map(str::to_string))
            .set_conditions(Some(conditions))
            .set_actions(Some(actions))
            .build()
    }

    fn conditions(snap: &ListenerSnapshot) -> Vec<(i32, Vec<RuleCondition>)> {
        let mut v: Vec<_> = snap
            .rules
            .iter()
            .filter(|r| !r.is_bypass_rule())
            .map(|r| {
                (
                    r.priority,
                    r.rule.conditions().iter().map(normalize).collect(),
                )
            })
            .collect();
        v.sort_by_key(|(p, _)| *p);
        v
    }

    #[test]
    fn on_then_off_gives_back_exactly_the_original_and_both_are_idempotent() {
        let before = original();
        let mut snap = before.clone();
        // A drain follows: the `on` mark records its start (issue 20: a rerun finishes an unfinished drain).
        let on = plan_on(&snap, &fixed(), &header(), true).unwrap();
        assert!(
            matches!(
                on.last().map(|c| &c.kind),
                Some(ChangeKind::MarkOn { drain: true })
            ),
            "the drain's start is written with the `on` mark, in one call"
        );
        simulate(&mut snap, &on);
        assert!(is_response(&snap.listener.default_actions, &fixed()));
        assert_eq!(snap.tags.get(TAG_STATE).map(String::as_str), Some("on"));
        assert_eq!(
            pending_drain(MaintenanceState::On, &snap.tags),
            Some(1_700_000_000)
        );
        assert_eq!(pending_drain(MaintenanceState::Partial, &snap.tags), None);
        for r in snap.rules.iter().filter(|r| r.is_forwarding()) {
            assert!(
                r.rule.conditions().iter().any(|c| is_exactly(c, &header())),
                "{}",
                r.label()
            );
            assert_eq!(r.tags.get(TAG_BYPASS), Some(&header_hash("x-bypass")));
        }
        let fixed_rule = snap.rules.iter().find(|r| r.priority == 5).unwrap();
        assert_eq!(
            fixed_rule.rule.conditions().len(),
            1,
            "non-forwarding rules are left alone"
        );
        let bypass = snap.rules.iter().find(|r| r.is_bypass_rule()).unwrap();
        assert_eq!(bypass.priority, MAX_PRIORITY);
        assert!(same_actions(
            bypass.rule.actions(),
            &[RecordedAction::from_sdk(&forward(TG)).unwrap()]
        ));
        assert!(
            plan_on(&snap, &fixed(), &header(), false)
                .unwrap()
                .is_empty(),
            "on twice changes nothing"
        );

        let off = plan_off(&snap, &fixed()).unwrap();
        simulate(&mut snap, &off);
        assert_eq!(conditions(&snap), conditions(&before));
        assert_eq!(
            snap.listener.default_actions,
            before.listener.default_actions
        );
        assert!(
            snap.tags.is_empty(),
            "off leaves no tag, the drain's start included: {:?}",
            snap.tags
        );
        assert!(snap
            .rules
            .iter()
            .all(|r| r.tags.is_empty() && !r.is_bypass_rule()));
        assert!(
            plan_off(&snap, &fixed()).unwrap().is_empty(),
            "off twice changes nothing"
        );
        // Without a drain to follow, nothing is recorded for one.
        let mut quiet = before.clone();
        let changes = plan_on(&quiet, &fixed(), &header(), false).unwrap();
        simulate(&mut quiet, &changes);
        assert_eq!(pending_drain(MaintenanceState::On, &quiet.tags), None);
    }

    /// A run killed after any number of changes, in either direction, converges on the next run and never loses
    /// the original rules.
    #[test]
    fn killed_half_way_converges_either_way() {
        let before = original();
        let full_on = plan_on(&before, &fixed(), &header(), false).unwrap();
        for k in 0..=full_on.len() {
            let mut snap = before.clone();
            simulate(&mut snap, &full_on[..k]);
            // Re-run on.
            let mut on = snap.clone();
            let c = plan_on(&on, &fixed(), &header(), false).unwrap();
            simulate(&mut on, &c);
            assert!(
                plan_on(&on, &fixed(), &header(), false).unwrap().is_empty(),
                "after {k} changes: on converges"
            );
            // Off, from the half-on state, and from the converged one.
            for mut s in [snap.clone(), on] {
                let off = plan_off(&s, &fixed()).unwrap();
                // Killed half-way through off as well.
                for j in 0..=off.len() {
                    let mut t = s.clone();
                    simulate(&mut t, &off[..j]);
                    let c = plan_off(&t, &fixed()).unwrap();
                    simulate(&mut t, &c);
                    assert_eq!(
                        conditions(&t),
                        conditions(&before),
                        "on killed after {k}, off after {j}"
                    );
                    assert_eq!(
                        t.listener.default_actions, before.listener.default_actions,
                        "on {k}, off {j}"
                    );
                    assert!(
                        t.tags.is_empty() && t.rules.iter().all(|r| r.tags.is_empty()),
                        "on {k}, off {j}"
                    );
                }
                simulate(&mut s, &off);
            }
        }
    }

    #[test]
    fn a_changed_header_replaces_the_old_condition() {
        let mut snap = original();
        let c = plan_on(&snap, &fixed(), &header(), false).unwrap();
        simulate(&mut snap, &c);
        let new = BypassHeader::new("x-other", "v2").unwrap();
        let changes = plan_on(&snap, &fixed(), &new, false).unwrap();
        // Killed right after the rules were re-tagged with both hashes: the old condition is still found.
        let cut = changes
            .iter()
            .position(|c| matches!(c.kind, ChangeKind::SetConditions { .. }))
            .unwrap();
        simulate(&mut snap, &changes[..cut]);
        let c = plan_on(&snap, &fixed(), &new, false).unwrap();
        simulate(&mut snap, &c);
        for r in snap.rules.iter().filter(|r| r.is_forwarding()) {
            let headers: Vec<_> = r
                .rule
                .conditions()
                .iter()
                .filter(|c| c.field() == Some("http-header"))
                .collect();
            assert_eq!(headers.len(), 1, "{}", r.label());
            assert!(is_exactly(headers[0], &new));
            assert_eq!(r.tags.get(TAG_BYPASS), Some(&header_hash("x-other")));
        }
        let before = original();
        let c = plan_off(&snap, &fixed()).unwrap();
        simulate(&mut snap, &c);
        assert_eq!(conditions(&snap), conditions(&before));
    }

    #[test]
    fn refuses_what_it_could_not_put_back() {
        let mut snap = original();
        snap.listener.default_actions = vec![fixed().to_sdk()];
        let e = plan_on(&snap, &fixed(), &header(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("recorded no original"), "{e}");
        let e = plan_off(&snap, &fixed()).unwrap_err().to_string();
        assert!(e.contains("recorded no original"), "{e}");
        snap.listener.default_actions = vec![Action::builder()
            .r#type(ActionTypeEnum::AuthenticateOidc)
            .build()];
        let e = format!(
            "{:#}",
            plan_on(&snap, &fixed(), &header(), false).unwrap_err()
        );
        assert!(e.contains("authenticate-oidc"), "{e}");
    }

    #[test]
    fn records_split_into_tag_sized_chunks_and_round_trip() {
        let big: Vec<RecordedAction> = (0..12)
            .map(|i| RecordedAction::Forward {
                tg: None,
                groups: vec![(format!("{TG}{i}"), Some(i)), (TG2.into(), Some(1))],
                sticky: Some((true, Some(3600))),
                order: Some(i),
            })
            .collect();
        let tags = encode_record(&big).unwrap();
        assert!(tags.len() > 3, "{}", tags.len());
        for (k, v) in &tags {
            assert!(k.len() <= 128 && v.len() <= TAG_VALUE_MAX, "{k}");
            let ok = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
            assert!(v.chars().all(ok), "ELB tag value charset: {v}");
        }
        let map: BTreeMap<String, String> = tags.into_iter().collect();
        assert_eq!(decode_record(&map).unwrap(), Some(big));
        let mut damaged = map.clone();
        damaged.remove(&format!("{TAG_DEFAULT}:1"));
        assert!(
            decode_record(&damaged).is_err(),
            "a damaged record is an error, never 'nothing recorded'"
        );
    }

    #[test]
    fn bypass_header_validation_and_debug() {
        assert!(BypassHeader::new("x-bypass", "abc").is_ok());
        let long = "x".repeat(41);
        for (n, v) in [
            ("", "s3cr"),
            ("bad name", "s3cr"),
            (long.as_str(), "s3cr"),
            ("x-b", ""),
            ("x-b", "s3cr*t"),
            ("x-b", "s3cr?"),
        ] {
            let e = BypassHeader::new(n, v).unwrap_err();
            assert!(
                !e.contains("s3cr") && (n.is_empty() || !e.contains(n)),
                "errors must not echo the secrets: {e}"
            );
        }
        let dbg = format!("{:?}", BypassHeader::new("x-bypass", "hunter2").unwrap());
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("x-bypass"),
            "{dbg}"
        );
        let locked = BypassHeader::locked();
        assert_eq!(locked.value.len(), 48);
    }

    #[test]
    fn redirect_urls_become_redirect_actions() {
        let cases = [
            (
                "https://status.example.org/maint?x=1",
                ("HTTPS", "status.example.org", "443", "/maint", Some("x=1")),
            ),
            ("http://h:8080", ("HTTP", "h", "8080", "/", None)),
        ];
        for (url, (p, h, port, path, q)) in cases {
            let got = split_url(url).unwrap();
            assert_eq!(
                got,
                (
                    p.into(),
                    h.into(),
                    port.into(),
                    path.into(),
                    q.map(str::to_string)
                ),
                "{url}"
            );
        }
        assert!(split_url("ftp://x").is_none());
    }
}
