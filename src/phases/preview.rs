//! Phase `preview`: one review app per pull request, cloned from a template environment, and its teardown.
//!
//! The template is an environment with a `[environments.<name>.preview]` table (see [`crate::config::Preview`]). For
//! pull request N (input `pr-number`, else `pull_request.number` / `number` of the event payload) the review app is:
//! - the ECS service `<service>-pr-N` in the template's cluster, made like the template service (launch type,
//!   network, deployment configuration) and running the family `<template family>-pr-N`: the template service's
//!   revision with the configured containers on the PR's image (`version`, e.g. `pr-123-<sha>`) and, when the
//!   template environment has `ssm-path`, its SSM parameters as secrets (the same revision a deploy makes);
//! - the target group `<name-prefix>-pr-N` and a rule of the shared listener routing the PR's host (or path) to it,
//!   at the lowest free priority of `priority-range`;
//! - everything tagged `deploy-action:preview = N` and `deploy-action:environment = <template>`: that is how a
//!   later run finds it again, and nothing without both tags is ever changed or deleted.
//!
//! **Up** (`state` running, the default) is idempotent: what exists is described first and only what is missing or
//! out of date is created or updated. Before anything changes, a rule of someone else that already routes the same
//! host (or path), or a service or target group of that name not made for this PR, refuses with exit 2: [`check`]
//! runs before the GitHub deployment record, so a refusal leaves nothing behind on GitHub either. The
//! optional `seed` task runs (and must exit 0) only while the service does not exist yet, i.e. on the first up; it
//! runs again if that first up failed before the service was created, so it must be safe to repeat. The revision
//! registered for a seed or teardown task is deregistered once the task has stopped. The phase
//! waits until the roll-out completes ([`rollout::watch`]); a failed roll-out is explained and leaves the app as it
//! is (no rollback: the next push deploys again). One pull request comment, found by the hidden marker
//! `<!-- deploy-action:preview:<template> -->`, carries the URL and is edited on every later run.
//!
//! **Down** (`state: stopped`): the `teardown` task first (while the service still exists, with the version it
//! runs), then the rule, the service (scaled to 0, deleted, waited for until INACTIVE), the target group and every
//! revision of the PR's family. The GitHub deployments of the transient environment `<github env>-pr-N` are marked
//! inactive by [`crate::wrapper`], and the comment says "torn down". When nothing is there, nothing is
//! changed and the phase succeeds.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_ecs::types::{LoadBalancer, Service, TaskDefinition};
use aws_sdk_elasticloadbalancingv2::types::{
    Action, ActionTypeEnum, HostHeaderConditionConfig, PathPatternConditionConfig, Rule,
    RuleCondition, TargetGroup,
};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::Ctx;
use crate::aws::ecs::{self, td_short};
use crate::aws::elb;
use crate::config::{Environment, Preview, PreviewRoute, Service as ServiceConfig};
use crate::domain::preflight;
use crate::domain::revision;
use crate::domain::rollout::{self, FailureReport, WatchEnd};
use crate::domain::task::{self, TaskReport};
use crate::error::UsageError;
use crate::github::api::Api;
use crate::github::comments::{self, Posted, When};
use crate::github::deployments::{self, Mode};
use crate::github::runner::{md_table, md_table_md, Outcome};
use crate::inputs::{Common, Invocation};
use crate::tags;
use crate::text::{md_code, md_code_block, md_text, md_url};
use crate::version::Version;
use crate::wait::{human, Backoff, Check};

/// Hidden in the comment once the review app is torn down: a second teardown leaves the comment alone.
const DOWN_MARK: &str = "<!-- deploy-action:preview-state:down -->";
/// How often CreateRule is tried when another run takes the chosen priority first.
const RULE_ATTEMPTS: usize = 3;

// ------------------------------------------------------------------------------------------------------------------
// Inputs
// ------------------------------------------------------------------------------------------------------------------

/// Up or down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// Create or update the review app with this version.
    Up(Version),
    /// Tear it down; the version the teardown task runs, when given (else the one the service runs).
    Down(Option<Version>),
}

/// The names of one pull request's review app, from the template and the number alone (no AWS call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreviewTarget {
    pub number: u64,
    /// The template environment's name in the config.
    pub template: String,
    /// `<template>-pr-N`: the review app's name (task groups, logs).
    pub name: String,
    /// `<template's GitHub environment>-pr-N`: the transient GitHub environment.
    pub github_environment: String,
    /// `<template service>-pr-N`.
    pub service: String,
    /// `<name-prefix>-pr-N`.
    pub target_group: String,
    /// The host or path the listener rule matches.
    pub route_value: String,
    pub url: String,
    pub teardown: bool,
}

impl PreviewTarget {
    /// The review app of the invocation: the template's `[preview]` table, the PR number and `state`. Every error is
    /// a [`UsageError`] naming the input or config key; no AWS call is made.
    pub fn from_invocation(inv: &Invocation, common: &Common) -> Result<PreviewTarget, UsageError> {
        let env = &common.environment;
        let cfg = preview_config(common)?;
        let teardown = match inv.raw.state.as_deref().map(str::trim) {
            None | Some("running") => false,
            Some("stopped") => true,
            Some(other) => {
                return Err(UsageError::new(format!(
                    "input `state`: preview takes running (bring the review app up, the default) or stopped (tear it down), not {other:?}"
                )))
            }
        };
        let number = pr_number(
            inv.raw.pr_number.as_deref(),
            inv.github.event_path.as_deref(),
        )?;
        let target_group = format!("{}-pr-{number}", cfg.target_group.name_prefix);
        if target_group.len() > 32 {
            return Err(UsageError::new(format!(
                "config file {}: environments.{}.preview.target-group.name-prefix: {target_group:?} (for pull request {number}) is longer than the 32 characters ELBv2 allows; set a shorter name-prefix",
                common.config_path.display(),
                env.name
            )));
        }
        Ok(PreviewTarget {
            number,
            template: env.name.clone(),
            name: format!("{}-pr-{number}", env.name),
            github_environment: format!("{}-pr-{number}", env.github.environment),
            service: format!("{}-pr-{number}", cfg.service),
            target_group,
            route_value: cfg.route.value_for(number),
            url: cfg
                .url
                .replace(crate::config::PR_NUMBER, &number.to_string()),
            teardown,
        })
    }

    /// The environment GitHub deployments are recorded under: the transient `<github env>-pr-N` with the review
    /// app's URL.
    pub fn record_environment(&self, template: &Environment) -> Environment {
        let mut env = template.clone();
        env.name = self.name.clone();
        env.url = Some(self.url.clone());
        env.github.environment = self.github_environment.clone();
        env.github.transient = true;
        env.github.production = false;
        env
    }
}

/// The template's `[preview]` table, or a usage error naming it.
fn preview_config(common: &Common) -> Result<&Preview, UsageError> {
    let env = &common.environment;
    env.preview.as_ref().ok_or_else(|| {
        UsageError::new(format!(
            "config file {}: environments.{name}.preview: missing; phase preview needs a template: add [environments.{name}.preview] with `listener-arn`, `host = \"pr-{{number}}.review.example.org\"` and `target-group = {{ vpc-id = \"vpc-...\", port = 8080 }}` (see the README, \"Review apps\")",
            common.config_path.display(),
            name = env.name
        ))
    })
}

/// Pure: the pull request number of an event payload (`pull_request.number`, else the top-level `number`).
pub fn number_in_event(event: &Value) -> Option<u64> {
    event
        .pointer("/pull_request/number")
        .and_then(Value::as_u64)
        .or_else(|| event.get("number").and_then(Value::as_u64))
        .filter(|n| (1..=MAX_PR_NUMBER).contains(n))
}

/// The largest pull request number taken (from the input or the event payload): it becomes part of AWS names.
pub const MAX_PR_NUMBER: u64 = 999_999_999;

/// The `pr-number` input, else the number in the event payload at `event_path`.
pub fn pr_number(input: Option<&str>, event_path: Option<&Path>) -> Result<u64, UsageError> {
    if let Some(v) = input {
        let v = v.trim().trim_start_matches('#');
        return match v.parse::<u64>() {
            Ok(n) if (1..=MAX_PR_NUMBER).contains(&n) => Ok(n),
            _ => Err(UsageError::new(format!(
                "input `pr-number`: {v:?} is not a pull request number; pass e.g. pr-number: ${{{{ github.event.pull_request.number }}}}"
            ))),
        };
    }
    let fix = "run on pull_request events, or pass pr-number (e.g. --pr-number 123)";
    let Some(path) = event_path else {
        return Err(UsageError::new(format!(
            "input `pr-number`: missing, and there is no event payload (GITHUB_EVENT_PATH is not set); {fix}"
        )));
    };
    let text = crate::files::read_text(path, crate::files::MAX_EVENT_BYTES).map_err(|e| {
        UsageError::new(format!(
            "input `pr-number`: missing, and the event payload {} cannot be read ({e}); {fix}",
            path.display()
        ))
    })?;
    let event: Value = serde_json::from_str(&text).map_err(|e| {
        UsageError::new(format!(
            "input `pr-number`: missing, and the event payload {} is not JSON ({e}); {fix}",
            path.display()
        ))
    })?;
    number_in_event(&event).ok_or_else(|| {
        UsageError::new(format!(
            "input `pr-number`: missing, and the event payload has no pull request number (no pull_request.number or number); {fix}"
        ))
    })
}

#[derive(Debug, Clone)]
pub struct Request {
    pub environment: Environment,
    pub preview: Preview,
    /// The template service's entry in the config (which containers take the PR's image, and how).
    pub template: ServiceConfig,
    pub target: PreviewTarget,
    pub direction: Direction,
    /// The GitHub API for the pull request comment, or why there is none.
    pub github: std::result::Result<Api, String>,
    pub run_url: Option<String>,
    pub run_key: Option<String>,
    pub wait_for_images: std::time::Duration,
}

impl Request {
    pub fn from_invocation(inv: &Invocation, common: &Common) -> Result<Request, UsageError> {
        let target = PreviewTarget::from_invocation(inv, common)?;
        let preview = preview_config(common)?.clone();
        let template = common
            .environment
            .service(&preview.service)
            .cloned()
            .ok_or_else(|| UsageError::new("preview.service names no core service"))?;
        let direction = if target.teardown {
            Direction::Down(inv.raw.version.as_deref().map(Version::parse).transpose()?)
        } else {
            let version = inv.version().map_err(|_| {
                UsageError::new(
                    "input `version`: missing; phase preview needs the version the review app runs (e.g. pr-123-<sha>), or state: stopped to tear it down",
                )
            })?;
            template.image.tag_for(&version)?;
            for t in [&preview.seed, &preview.teardown].into_iter().flatten() {
                t.image.tag_for(&version)?;
            }
            Direction::Up(version)
        };
        let mode = Mode::parse(inv.raw.github_deployments.as_deref())?;
        let github = deployments::connect(mode, &inv.github, inv.raw.github_token.as_deref())
            .map_err(|e| UsageError::new(format!("{e:#}")))?;
        Ok(Request {
            environment: common.environment.clone(),
            preview,
            template,
            target,
            direction,
            github,
            run_url: inv.github.run_url(),
            run_key: inv.github.run_key(),
            wait_for_images: common.wait_for_images,
        })
    }

    /// The environment the seed and teardown tasks run in: the template's cluster, named after the review app (so
    /// each pull request has its own task group).
    fn task_environment(&self) -> Environment {
        let mut env = self.environment.clone();
        env.name = self.target.name.clone();
        env
    }

    /// The tags that mark this review app's resources.
    fn ownership(&self) -> [(String, String); 2] {
        [
            (tags::PREVIEW.to_string(), self.target.number.to_string()),
            (tags::ENVIRONMENT.to_string(), self.target.template.clone()),
        ]
    }

    fn is_ours(&self, tags: &BTreeMap<String, String>) -> bool {
        self.ownership()
            .iter()
            .all(|(k, v)| tags.get(k).map(String::as_str) == Some(v.as_str()))
    }
}

impl super::Recorded for Request {
    /// Recorded under the review app's own transient environment (`<github env>-pr-N`, with its URL).
    fn subject(&self, common: &Common) -> super::Subject {
        let version = match &self.direction {
            Direction::Up(v) => Some(v),
            Direction::Down(v) => v.as_ref(),
        };
        super::Subject {
            environment: self.target.record_environment(&common.environment),
            version: version.map(ToString::to_string),
            teardown: self.target.teardown,
        }
    }
}

/// Only the clients `preview` uses.
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// Secrets from the template environment's `ssm-path` (names and ARNs only).
    pub ssm: aws_sdk_ssm::Client,
    pub task: task::Clients,
    pub preflight: preflight::Clients,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            ecs: aws_sdk_ecs::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            ssm: aws_sdk_ssm::Client::new(sdk),
            task: task::Clients::new(sdk),
            preflight: preflight::Clients::new(sdk),
        }
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Decisions
// ------------------------------------------------------------------------------------------------------------------

/// A listener rule reduced to what the decisions read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleView {
    pub arn: String,
    /// `None` for the default rule.
    pub priority: Option<i32>,
    /// (field, values) per condition.
    pub conditions: Vec<(String, Vec<String>)>,
    /// Target groups its forward action sends to.
    pub forwards_to: Vec<String>,
    /// Tagged as this review app's.
    pub ours: bool,
}

impl RuleView {
    pub fn of(rule: &Rule, ours: bool) -> RuleView {
        let conditions = rule
            .conditions()
            .iter()
            .map(|c| {
                let mut values: Vec<String> = c.values().to_vec();
                if let Some(h) = c.host_header_config() {
                    values.extend(h.values().iter().cloned());
                }
                if let Some(p) = c.path_pattern_config() {
                    values.extend(p.values().iter().cloned());
                }
                values.dedup();
                (c.field().unwrap_or_default().to_string(), values)
            })
            .collect();
        let forwards_to = rule
            .actions()
            .iter()
            .filter(|a| a.r#type() == Some(&ActionTypeEnum::Forward))
            .flat_map(|a| {
                let mut arns: Vec<String> = a
                    .target_group_arn()
                    .map(str::to_string)
                    .into_iter()
                    .collect();
                if let Some(f) = a.forward_config() {
                    arns.extend(
                        f.target_groups()
                            .iter()
                            .filter_map(|t| t.target_group_arn())
                            .map(str::to_string),
                    );
                }
                arns.dedup();
                arns
            })
            .collect();
        RuleView {
            arn: rule.rule_arn().unwrap_or_default().to_string(),
            priority: elb::rule_priority(rule),
            conditions,
            forwards_to,
            ours,
        }
    }

    /// Whether one of its conditions matches `value` in `field` (host names compare without case, as ALB does).
    fn matches(&self, field: &str, value: &str) -> bool {
        self.conditions.iter().any(|(f, values)| {
            f == field
                && values.iter().any(|v| match field {
                    "host-header" => v.eq_ignore_ascii_case(value),
                    _ => v == value,
                })
        })
    }

    /// Exactly our one condition, forwarding to exactly `target_group`.
    pub fn routes(&self, field: &str, value: &str, target_group: &str) -> bool {
        self.conditions == [(field.to_string(), vec![value.to_string()])]
            && self.forwards_to == [target_group.to_string()]
    }
}

/// Where this review app's rule stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RulePlan {
    /// Ours exists (kept at its priority; modified if it no longer routes as configured).
    Existing { arn: String, priority: i32 },
    /// None yet: create one at this priority.
    Create { priority: i32 },
}

/// Why no rule can be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleRefusal {
    /// Another rule already routes this host or path (exit 2: nothing is created).
    Collision(String),
    /// Every priority of the range is taken (exit 1).
    NoFreePriority(String),
}

/// Pure: our rule if there is one, else a free priority, unless another rule already routes `value` in `field`.
pub fn plan_rule(
    rules: &[RuleView],
    field: &str,
    value: &str,
    range: (i32, i32),
) -> std::result::Result<RulePlan, RuleRefusal> {
    if let Some(other) = rules.iter().find(|r| !r.ours && r.matches(field, value)) {
        return Err(RuleRefusal::Collision(format!(
            "{field} {value:?} is already routed by rule {} (priority {}) of the listener, which is not this review app's",
            other.arn,
            other.priority.map(|p| p.to_string()).unwrap_or_else(|| "default".into())
        )));
    }
    if let Some(ours) = rules.iter().find(|r| r.ours) {
        if let Some(priority) = ours.priority {
            return Ok(RulePlan::Existing {
                arn: ours.arn.clone(),
                priority,
            });
        }
    }
    let used: Vec<i32> = rules.iter().filter_map(|r| r.priority).collect();
    match (range.0..=range.1).find(|p| !used.contains(p)) {
        Some(priority) => Ok(RulePlan::Create { priority }),
        None => Err(RuleRefusal::NoFreePriority(format!(
            "every rule priority from {} to {} of the listener is taken; tear down review apps of closed pull requests, or widen preview.priority-range",
            range.0, range.1
        ))),
    }
}

/// Who a resource with our name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Absent,
    Ours,
    /// Exists, without this review app's tags: never changed or deleted.
    Foreign,
}

// ------------------------------------------------------------------------------------------------------------------
// What is there
// ------------------------------------------------------------------------------------------------------------------

/// Everything the phase reads before it decides (read-only calls only).
pub struct PreviewObserved {
    template: Service,
    /// `<template family>-pr-N`.
    family: String,
    service: Option<Service>,
    service_owner: Owner,
    rules: Vec<RuleView>,
    target_group: Option<TargetGroup>,
    target_group_owner: Owner,
    /// ACTIVE revisions of the PR's family, newest first.
    revisions: Vec<String>,
}

impl PreviewObserved {
    fn our_service(&self) -> Option<&Service> {
        self.service
            .as_ref()
            .filter(|_| self.service_owner == Owner::Ours)
    }

    fn our_target_group(&self) -> Option<&str> {
        match self.target_group_owner {
            Owner::Ours => self
                .target_group
                .as_ref()
                .and_then(|t| t.target_group_arn()),
            Owner::Absent | Owner::Foreign => None,
        }
    }
}

async fn observe(req: &Request, c: &Clients) -> Result<PreviewObserved> {
    let env = &req.environment;
    let t = &req.target;
    let template_name = req.preview.service.clone();
    let (templates, service, rules, target_group) = tokio::try_join!(
        ecs::describe_services(&c.ecs, &env.cluster, std::slice::from_ref(&template_name)),
        async {
            ecs::service_if_any(&c.ecs, &env.cluster, &t.service)
                .await
                .map_err(anyhow::Error::from)
        },
        listener_rules(req, c),
        async {
            elb::target_group_by_name(&c.elb, &t.target_group)
                .await
                .map_err(anyhow::Error::from)
        },
    )?;
    let template = templates
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("ECS service {}/{template_name} not found", env.cluster))?;
    let family = format!(
        "{}-pr-{}",
        ecs::td_family(template.task_definition().unwrap_or_default()),
        t.number
    );
    let service_owner = match &service {
        None => Owner::Absent,
        Some(s) => {
            let tags: BTreeMap<String, String> = ecs::tag_pairs(s.tags()).into_iter().collect();
            if req.is_ours(&tags) {
                Owner::Ours
            } else {
                Owner::Foreign
            }
        }
    };
    let target_group_owner = match target_group.as_ref().and_then(|g| g.target_group_arn()) {
        None => Owner::Absent,
        Some(arn) => {
            let tags: BTreeMap<String, String> =
                elb::tags(&c.elb, arn).await?.into_iter().collect();
            if req.is_ours(&tags) {
                Owner::Ours
            } else {
                Owner::Foreign
            }
        }
    };
    let revisions = ecs::active_revisions(&c.ecs, &family).await?;
    Ok(PreviewObserved {
        template,
        family,
        service,
        service_owner,
        rules,
        target_group,
        target_group_owner,
        revisions,
    })
}

/// The listener's rules with ownership read from their tags.
async fn listener_rules(req: &Request, c: &Clients) -> Result<Vec<RuleView>> {
    let listener = &req.preview.listener_arn;
    let rules = elb::describe_rules(&c.elb, listener).await.map_err(|e| {
        let fix = if elb::is_listener_not_found(&e) {
            format!(
                "; correct environments.{}.preview.listener-arn in the config",
                req.environment.name
            )
        } else {
            String::new()
        };
        anyhow!("{e}{fix}")
    })?;
    let arns: Vec<String> = rules
        .iter()
        .filter(|r| elb::rule_priority(r).is_some())
        .filter_map(|r| r.rule_arn().map(str::to_string))
        .collect();
    let tags = elb::tags_of(&c.elb, &arns).await?;
    Ok(rules
        .iter()
        .map(|r| {
            let ours = r
                .rule_arn()
                .and_then(|a| tags.get(a))
                .is_some_and(|t| req.is_ours(t));
            RuleView::of(r, ours)
        })
        .collect())
}

// ------------------------------------------------------------------------------------------------------------------
// The outcome
// ------------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct PreviewOutcome {
    /// `up` or `down`.
    pub action: &'static str,
    pub pr_number: u64,
    /// The template environment.
    pub environment: String,
    /// The review app's name (`<template>-pr-N`), also its GitHub environment's.
    pub name: String,
    pub github_environment: String,
    pub url: String,
    pub version: Option<String>,
    pub cluster: String,
    pub service: String,
    pub task_definition: Option<String>,
    pub target_group: Option<String>,
    pub rule: Option<String>,
    pub priority: Option<i32>,
    pub dry_run: bool,
    /// What was done (or, in a dry run, would be), in order.
    pub steps: Vec<PreviewStep>,
    pub seed: Option<TaskReport>,
    pub teardown: Option<TaskReport>,
    /// Why the phase did not reach its goal.
    pub failure: Option<String>,
    pub failures: Vec<FailureReport>,
    pub comment: Option<Posted>,
    /// Why there is no comment, or why writing it failed.
    pub comment_note: Option<String>,
    pub duration_seconds: u64,
}

impl PreviewOutcome {
    fn new(req: &Request, ctx: &Ctx) -> PreviewOutcome {
        let t = &req.target;
        PreviewOutcome {
            action: if t.teardown { "down" } else { "up" },
            pr_number: t.number,
            environment: t.template.clone(),
            name: t.name.clone(),
            github_environment: t.github_environment.clone(),
            url: t.url.clone(),
            version: match &req.direction {
                Direction::Up(v) => Some(v.to_string()),
                Direction::Down(v) => v.as_ref().map(Version::to_string),
            },
            cluster: req.environment.cluster.clone(),
            service: t.service.clone(),
            task_definition: None,
            target_group: None,
            rule: None,
            priority: None,
            dry_run: ctx.dry_run,
            steps: vec![],
            seed: None,
            teardown: None,
            failure: None,
            failures: vec![],
            comment: None,
            comment_note: None,
            duration_seconds: 0,
        }
    }

    /// Logs a step that changes something and keeps it for the summary.
    fn step(&mut self, dry_run: bool, what: impl Into<String>) {
        let what = what.into();
        let text = if dry_run {
            tracing::info!("dry run: would {what}");
            format!("would {what}")
        } else {
            tracing::info!("{what}");
            what
        };
        self.steps.push(PreviewStep {
            kind: StepKind::Change,
            text,
        });
    }

    /// Logs that there is nothing to do and keeps it for the summary.
    fn nothing(&mut self, what: impl Into<String>) {
        let text = what.into();
        tracing::info!("{text}");
        self.steps.push(PreviewStep {
            kind: StepKind::Nothing,
            text,
        });
    }

    /// Whether any step changed (or, in a dry run, would change) something.
    fn changed(&self) -> bool {
        self.steps.iter().any(|s| s.kind == StepKind::Change)
    }
}

/// One line of what a run did. Serialises as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewStep {
    pub kind: StepKind,
    pub text: String,
}

/// What a step is: a change, or the finding that there is nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Change,
    Nothing,
}

impl Serialize for PreviewStep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl std::fmt::Display for PreviewStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What [`check`] read and decided. An up's refusals (a host or path another rule routes, a service or target group
/// of the review app's name that is not its own) come out of `check`, before the GitHub deployment record is made:
/// bad input creates nothing, not even a record.
pub enum Checked {
    Up {
        version: Version,
        seen: Box<PreviewObserved>,
        rule_plan: RulePlan,
    },
    Down {
        version: Option<Version>,
    },
}

/// Read-only: what is there, and every refusal of an up (exit 2 for a collision or a foreign resource).
pub async fn check(req: &Request, c: &Clients) -> Result<Checked> {
    let version = match &req.direction {
        Direction::Down(version) => {
            return Ok(Checked::Down {
                version: version.clone(),
            })
        }
        Direction::Up(version) => version.clone(),
    };
    let env = &req.environment;
    let t = &req.target;
    let seen = observe(req, c).await?;
    refuse_foreign(req, &seen)?;
    let rule_plan = match plan_rule(
        &seen.rules,
        req.preview.route.field(),
        &t.route_value,
        req.preview.priorities,
    ) {
        Ok(p) => p,
        Err(RuleRefusal::Collision(why)) => {
            return Err(UsageError::new(format!(
                "environments.{}.preview: the review app of pull request #{} would collide: {why}; nothing was created. Change preview.host/path, or remove that rule",
                env.name, t.number
            ))
            .into())
        }
        Err(RuleRefusal::NoFreePriority(why)) => bail!("{why}; nothing was created"),
    };
    if let Some(s) = &seen.service {
        if s.status() == Some("DRAINING") {
            bail!(
                "ECS service {}/{} is still being deleted (DRAINING) after a teardown; run again in a few minutes; nothing was changed",
                env.cluster,
                t.service
            );
        }
    }
    Ok(Checked::Up {
        version,
        seen: Box::new(seen),
        rule_plan,
    })
}

pub async fn run(
    req: &Request,
    clients: &Clients,
    ctx: &Ctx,
    checked: Checked,
) -> Result<PreviewOutcome> {
    let started = Instant::now();
    let mut out = PreviewOutcome::new(req, ctx);
    match checked {
        Checked::Up {
            version,
            seen,
            rule_plan,
        } => up(req, clients, ctx, &version, *seen, rule_plan, &mut out).await?,
        Checked::Down { version } => down(req, clients, ctx, version.as_ref(), &mut out).await?,
    }
    out.duration_seconds = started.elapsed().as_secs();
    if !ctx.dry_run {
        comment(req, &mut out).await;
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------------------------------
// Up
// ------------------------------------------------------------------------------------------------------------------

/// The review app's service against the revision it is to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceNow {
    /// Not there yet.
    Absent,
    /// Runs the revision at the desired count, its roll-out COMPLETED and nothing else left.
    UpToDate,
    /// The last roll-out, of this very revision, failed: an UpdateService to it would start no deployment.
    FailedOn,
    /// Runs something else, at another count, or the revision is yet to be registered.
    Behind,
}

/// Pure: where the service stands against `task_definition` (`None`: a revision yet to be registered, which no
/// service runs).
fn service_now(
    service: Option<&Service>,
    task_definition: Option<&str>,
    desired: i32,
) -> ServiceNow {
    match (service, task_definition) {
        (None, _) => ServiceNow::Absent,
        (Some(s), Some(td)) if up_to_date(s, td, desired) => ServiceNow::UpToDate,
        (Some(s), Some(td)) if ecs::failed_on(s, td) => ServiceNow::FailedOn,
        (Some(_), _) => ServiceNow::Behind,
    }
}

/// What an up found (read by [`check`] and the revision look-up), reduced to what its steps depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpFacts {
    /// A seed task is configured.
    pub seed: bool,
    /// The latest revision of the PR's family, when it already has the wanted containers and version.
    pub reusable: Option<String>,
    /// Our target group's ARN, when it exists.
    pub target_group: Option<String>,
    pub rule: RulePlan,
    pub service: ServiceNow,
    /// ACTIVE revisions of the PR's family, newest first.
    pub revisions: Vec<String>,
    pub dry_run: bool,
}

/// One step of an up, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpStep {
    /// Run the seed task (the first up only); a failure stops the up.
    Seed,
    /// A seed is configured, but the review app exists: it is not run again (logged).
    SeedSkipped,
    /// Use this revision of the PR's family.
    ReuseRevision(String),
    RegisterRevision,
    /// Our target group exists.
    KeepTargetGroup(String),
    CreateTargetGroup,
    Rule(RulePlan),
    CreateService,
    /// The service runs the revision already: the up ends here.
    ServiceCurrent,
    /// UpdateService to the revision whose roll-out failed starts no deployment: force one.
    RedeployService,
    UpdateService,
    /// Watch the roll-out; a failure stops the up.
    Rollout,
    /// Older revisions of the PR's family, no longer needed.
    Deregister(Vec<String>),
}

impl UpStep {
    /// What the step does, for the message of a run stopped before it.
    pub fn what(&self) -> &'static str {
        match self {
            UpStep::Seed => "the seed task",
            UpStep::SeedSkipped => "the seed step",
            UpStep::ReuseRevision(_) | UpStep::RegisterRevision => "the revision",
            UpStep::KeepTargetGroup(_) | UpStep::CreateTargetGroup => "the target group",
            UpStep::Rule(_) => "the listener rule",
            UpStep::CreateService
            | UpStep::ServiceCurrent
            | UpStep::RedeployService
            | UpStep::UpdateService => "the service",
            UpStep::Rollout => "the roll-out",
            UpStep::Deregister(_) => "deregistering older revisions",
        }
    }
}

/// Pure: the steps of an up. A dry run stops once the service step is told; so does a service already up to date.
pub fn plan_up(f: &UpFacts) -> Vec<UpStep> {
    let mut steps = Vec::new();
    if f.seed {
        steps.push(match f.service {
            ServiceNow::Absent => UpStep::Seed,
            ServiceNow::UpToDate | ServiceNow::FailedOn | ServiceNow::Behind => UpStep::SeedSkipped,
        });
    }
    steps.push(match &f.reusable {
        Some(arn) => UpStep::ReuseRevision(arn.clone()),
        None => UpStep::RegisterRevision,
    });
    steps.push(match &f.target_group {
        Some(arn) => UpStep::KeepTargetGroup(arn.clone()),
        None => UpStep::CreateTargetGroup,
    });
    steps.push(UpStep::Rule(f.rule.clone()));
    steps.push(match f.service {
        ServiceNow::Absent => UpStep::CreateService,
        ServiceNow::UpToDate => UpStep::ServiceCurrent,
        ServiceNow::FailedOn => UpStep::RedeployService,
        ServiceNow::Behind => UpStep::UpdateService,
    });
    if f.dry_run || f.service == ServiceNow::UpToDate {
        return steps;
    }
    steps.push(UpStep::Rollout);
    let old: Vec<String> = f
        .revisions
        .iter()
        .filter(|a| f.reusable.as_ref() != Some(*a))
        .cloned()
        .collect();
    if !old.is_empty() {
        steps.push(UpStep::Deregister(old));
    }
    steps
}

/// Whether the up goes on after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Next,
    Stop,
}

/// What the steps of one up work with.
struct Up<'a> {
    run: Run<'a>,
    version: &'a Version,
    seen: &'a PreviewObserved,
    template_td: &'a TaskDefinition,
    wanted: &'a Wanted,
}

/// What the steps of an up have made so far.
#[derive(Default)]
struct Made {
    td_arn: String,
    tg_arn: String,
    seen_events: BTreeMap<String, HashSet<String>>,
}

async fn up(
    req: &Request,
    c: &Clients,
    ctx: &Ctx,
    version: &Version,
    seen: PreviewObserved,
    rule_plan: RulePlan,
    out: &mut PreviewOutcome,
) -> Result<()> {
    let env = &req.environment;
    let t = &req.target;
    tracing::info!(
        "review app {} of pull request #{}: {} at {}",
        t.name,
        t.number,
        version,
        t.url
    );
    // What is there was read by `check`, with every refusal, before anything changed; here the revision it needs.
    let template_td_arn = seen
        .template
        .task_definition()
        .ok_or_else(|| {
            anyhow!(
                "ECS service {}/{} has no task definition",
                env.cluster,
                req.preview.service
            )
        })?
        .to_string();
    let ((template_td, template_tags), secrets) = tokio::try_join!(
        ecs::describe_task_definition(&c.ecs, &template_td_arn),
        revision::ssm_secrets(&c.ssm, env),
    )?;
    let wanted = wanted_revision(req, &template_td, &template_tags, version, secrets)?;
    // The preflight: the review app's images are in ECR (waited for with wait-for-images) before anything changes.
    let want: Vec<preflight::Wanted> = wanted
        .pairs
        .iter()
        .map(|(container, image)| preflight::Wanted {
            what: format!("review app {}, container {container}", t.name),
            image: image.clone(),
        })
        .collect();
    let poller = ctx.poller("images", crate::wait::Backoff::SLOW);
    let found = preflight::images(&c.preflight, &want, req.wait_for_images, poller).await;
    let mut rows = preflight::image_rows(&found);
    // The seed runs on the first up only (no service yet): its definition, container, logs, network and image.
    if let (Some(seed), None) = (&req.preview.seed, seen.our_service()) {
        rows.extend(task_checks(req, c, ctx, seed, version).await?);
    }
    preflight::finish(&ctx.runner, "preview", &preflight::Report { rows })?;
    let latest = ecs::latest_task_definition(&c.ecs, &seen.family).await?;
    let reusable = latest.as_ref().and_then(|(td, tags)| {
        let tagged = tags::get(&ecs::tag_pairs(tags), tags::VERSION) == Some(version.as_str());
        (tagged && ecs::runnable(td) && td.container_definitions() == wanted.containers.as_slice())
            .then(|| td.task_definition_arn().unwrap_or_default().to_string())
    });
    let facts = UpFacts {
        seed: req.preview.seed.is_some(),
        service: service_now(
            seen.our_service(),
            reusable.as_deref(),
            req.preview.desired_count,
        ),
        reusable,
        target_group: seen.our_target_group().map(str::to_string),
        rule: rule_plan,
        revisions: seen.revisions.clone(),
        dry_run: ctx.dry_run,
    };
    let up = Up {
        run: Run { req, c, ctx },
        version,
        seen: &seen,
        template_td: &template_td,
        wanted: &wanted,
    };
    let mut made = Made::default();
    for step in plan_up(&facts) {
        stop_before(ctx, step.what(), out)?;
        if up.apply(step, &mut made, out).await? == Flow::Stop {
            break;
        }
    }
    Ok(())
}

impl Up<'_> {
    async fn apply(&self, step: UpStep, made: &mut Made, out: &mut PreviewOutcome) -> Result<Flow> {
        let Run { req, c, ctx } = self.run;
        let dry = ctx.dry_run;
        let t = &req.target;
        match step {
            UpStep::Seed => return self.seed(out).await,
            UpStep::SeedSkipped => tracing::info!(
                "seed: the review app exists already; the seed task runs only on its first up"
            ),
            UpStep::ReuseRevision(arn) => {
                tracing::info!("{} already runs {}; using it", td_short(&arn), self.version);
                out.task_definition = Some(arn.clone());
                made.td_arn = arn;
            }
            UpStep::RegisterRevision => {
                made.td_arn = self.register(out).await?;
                out.task_definition = Some(made.td_arn.clone());
            }
            UpStep::KeepTargetGroup(arn) => {
                out.target_group = Some(arn.clone());
                made.tg_arn = arn;
            }
            UpStep::CreateTargetGroup => {
                made.tg_arn = self.create_target_group(out).await?;
                out.target_group = (!made.tg_arn.is_empty()).then(|| made.tg_arn.clone());
            }
            UpStep::Rule(plan) => {
                let tags = resource_tags(req, self.version);
                let (rule_arn, priority) =
                    ensure_rule(&self.run, plan, &self.seen.rules, &made.tg_arn, tags, out).await?;
                out.rule = rule_arn;
                out.priority = Some(priority);
            }
            UpStep::CreateService => self.create_service(&made.td_arn, &made.tg_arn, out).await?,
            UpStep::ServiceCurrent => out.step(
                dry,
                format!(
                    "service {} already runs {} ({} task(s))",
                    t.service,
                    td_short(&made.td_arn),
                    req.preview.desired_count
                ),
            ),
            UpStep::RedeployService | UpStep::UpdateService if dry => out.step(
                dry,
                format!("update service {} to {}", t.service, td_short(&made.td_arn)),
            ),
            UpStep::RedeployService => {
                made.seen_events = self.redeploy_service(&made.td_arn, out).await?;
            }
            UpStep::UpdateService => {
                made.seen_events = self.update_service(&made.td_arn, out).await?;
            }
            UpStep::Rollout => {
                let seen_events = std::mem::take(&mut made.seen_events);
                return self.rollout(&made.td_arn, seen_events, out).await;
            }
            UpStep::Deregister(old) => {
                for old in &old {
                    stop_before(ctx, &format!("deregistering {}", td_short(old)), out)?;
                    match ecs::deregister_task_definition(&c.ecs, old).await {
                        Ok(()) => out.step(dry, format!("deregistered {}", td_short(old))),
                        Err(e) => tracing::warn!("{e}; the old revision stays registered"),
                    }
                }
            }
        }
        Ok(Flow::Next)
    }

    /// The seed task; a failure stops the up before anything else is made.
    async fn seed(&self, out: &mut PreviewOutcome) -> Result<Flow> {
        let Run { req, c, ctx } = self.run;
        let Some(seed) = &req.preview.seed else {
            return Ok(Flow::Next);
        };
        let report = one_off(req, c, ctx, seed, self.version, out).await?;
        let ok = report.ok();
        out.seed = Some(report);
        if ok {
            return Ok(Flow::Next);
        }
        out.failure = Some(format!(
            "{}; the review app was not created (run again after fixing it)",
            out.seed
                .as_ref()
                .map(TaskReport::explanation)
                .unwrap_or_default()
        ));
        Ok(Flow::Stop)
    }

    /// Registers the wanted revision in the PR's family (a dry run only tells); its ARN.
    async fn register(&self, out: &mut PreviewOutcome) -> Result<String> {
        let dry = self.run.ctx.dry_run;
        let family = &self.seen.family;
        let images = self.wanted.images.join(", ");
        if dry {
            out.step(
                dry,
                format!("register a revision of {family} with {images}"),
            );
            return Ok(format!("{family}:(new)"));
        }
        let input =
            ecs::register_input_from(self.template_td.clone(), ecs::ecs_tags(&self.wanted.tags))
                .family(family)
                .set_container_definitions(Some(self.wanted.containers.clone()));
        let td = ecs::register_task_definition(&self.run.c.ecs, input)
            .await
            .with_context(|| format!("registering a revision of {family} for the review app"))?;
        let arn = td.task_definition_arn().unwrap_or_default().to_string();
        out.step(dry, format!("registered {} with {images}", td_short(&arn)));
        Ok(arn)
    }

    /// Creates the target group (a dry run only tells: no ARN).
    async fn create_target_group(&self, out: &mut PreviewOutcome) -> Result<String> {
        let Run { req, c, ctx } = self.run;
        let dry = ctx.dry_run;
        let t = &req.target;
        let tg = &req.preview.target_group;
        if dry {
            out.step(
                dry,
                format!(
                    "create target group {} (port {}, health check {})",
                    t.target_group, tg.port, tg.health_check_path
                ),
            );
            return Ok(String::new());
        }
        let arn = elb::create_target_group(
            &c.elb,
            elb::NewTargetGroup {
                name: &t.target_group,
                vpc_id: &tg.vpc_id,
                port: tg.port,
                protocol: &tg.protocol,
                target_type: &tg.target_type,
                health_check_path: &tg.health_check_path,
                tags: resource_tags(req, self.version),
            },
        )
        .await
        .with_context(|| format!("creating the review app's target group ({})", so_far(out)))?;
        out.step(dry, format!("created target group {}", t.target_group));
        Ok(arn)
    }

    /// Creates the service like the template's, on the review app's target group (a dry run only tells).
    async fn create_service(
        &self,
        td_arn: &str,
        tg_arn: &str,
        out: &mut PreviewOutcome,
    ) -> Result<()> {
        let Run { req, c, ctx } = self.run;
        let dry = ctx.dry_run;
        let t = &req.target;
        let desired = req.preview.desired_count;
        let lb = template_load_balancer(req, &self.seen.template, tg_arn);
        if dry {
            out.step(
                dry,
                format!(
                    "create service {} ({} task(s) of {})",
                    t.service,
                    desired,
                    td_short(td_arn)
                ),
            );
            return Ok(());
        }
        let tags = resource_tags(req, self.version);
        ecs::create_service_like(
            &c.ecs,
            &req.environment.cluster,
            ecs::ServiceLike {
                template: &self.seen.template,
                name: &t.service,
                task_definition: td_arn,
                desired_count: desired,
                load_balancer: lb,
                tags: &tags,
            },
        )
        .await
        .with_context(|| format!("creating the review app's service ({})", so_far(out)))?;
        out.step(
            dry,
            format!("created service {} with {}", t.service, td_short(td_arn)),
        );
        Ok(())
    }

    /// Forces a new deployment of the revision whose roll-out failed (at the desired count); the events seen before.
    async fn redeploy_service(
        &self,
        td_arn: &str,
        out: &mut PreviewOutcome,
    ) -> Result<BTreeMap<String, HashSet<String>>> {
        let Run { req, c, ctx } = self.run;
        let (cluster, t) = (&req.environment.cluster, &req.target);
        let desired = req.preview.desired_count;
        let s = self.our_service()?;
        if s.desired_count() != desired {
            ecs::set_desired_count(&c.ecs, cluster, &t.service, desired).await?;
        }
        ecs::redeploy(&c.ecs, cluster, &t.service)
            .await
            .with_context(|| {
                format!(
                    "redeploying the review app's service after its failed roll-out ({})",
                    so_far(out)
                )
            })?;
        out.step(
            ctx.dry_run,
            format!(
                "redeployed service {} on {} (its last roll-out failed)",
                t.service,
                td_short(td_arn)
            ),
        );
        Ok(BTreeMap::from([(t.service.clone(), rollout::event_ids(s))]))
    }

    /// Moves the service to the revision (at the desired count); the events seen before.
    async fn update_service(
        &self,
        td_arn: &str,
        out: &mut PreviewOutcome,
    ) -> Result<BTreeMap<String, HashSet<String>>> {
        let Run { req, c, ctx } = self.run;
        let t = &req.target;
        let s = self.our_service()?;
        let desired = Some(req.preview.desired_count);
        ecs::update_service(
            &c.ecs,
            &req.environment.cluster,
            &t.service,
            td_arn,
            desired,
        )
        .await
        .with_context(|| format!("updating the review app's service ({})", so_far(out)))?;
        out.step(
            ctx.dry_run,
            format!("updated service {} to {}", t.service, td_short(td_arn)),
        );
        Ok(BTreeMap::from([(t.service.clone(), rollout::event_ids(s))]))
    }

    fn our_service(&self) -> Result<&Service> {
        self.seen.our_service().ok_or_else(|| {
            anyhow!(
                "ECS service {}/{} is not this review app's",
                self.run.req.environment.cluster,
                self.run.req.target.service
            )
        })
    }

    /// Watches the roll-out; a failed one is explained and stops the up (the app is left as it is).
    async fn rollout(
        &self,
        td_arn: &str,
        seen_events: BTreeMap<String, HashSet<String>>,
        out: &mut PreviewOutcome,
    ) -> Result<Flow> {
        let Run { req, c, ctx } = self.run;
        let (env, t, version) = (&req.environment, &req.target, self.version);
        let targets = [rollout::RolloutTarget {
            service: t.service.clone(),
            task_definition: td_arn.to_string(),
            desired_count: None,
        }];
        let report = {
            let _g = ctx
                .runner
                .group(&format!("Roll-out of {version} on {}", t.service));
            let poller = ctx.poller(
                format!("roll-out of {version} on {}", t.service),
                Backoff::FAST,
            );
            rollout::watch(&c.ecs, &env.cluster, &targets, seen_events, poller).await
        };
        let Some(reason) = rollout_failure(&report.end, &report.services).map_err(|e| {
            e.context(format!(
                "the roll-out of {version} on {} was left running",
                t.service
            ))
        })?
        else {
            out.step(
                ctx.dry_run,
                format!("roll-out of {version} on {} completed", t.service),
            );
            return Ok(Flow::Next);
        };
        out.step(
            ctx.dry_run,
            format!(
                "roll-out of {version} on {} did not complete: {reason}",
                t.service
            ),
        );
        for w in &report.services {
            let f = rollout::explain(
                &c.ecs,
                &c.logs,
                &env.cluster,
                w,
                reason.clone(),
                &self.wanted.containers,
            )
            .await;
            out.failures.push(f);
        }
        out.failure = Some(format!(
            "the roll-out of {version} on {} did not complete: {reason}; the review app is left as it is (a rerun or the next push deploys again)",
            t.service
        ));
        Ok(Flow::Stop)
    }
}

/// Pure: why a watched roll-out did not complete (`None`: it did); an error when the watch was cancelled.
fn rollout_failure(end: &WatchEnd, services: &[rollout::Watched]) -> Result<Option<String>> {
    Ok(match end {
        WatchEnd::Completed => None,
        WatchEnd::Failed => services
            .iter()
            .find_map(|w| match &w.verdict {
                rollout::RolloutVerdict::Failed(why) => Some(why.clone()),
                rollout::RolloutVerdict::Done
                | rollout::RolloutVerdict::InProgress(_)
                | rollout::RolloutVerdict::Stuck(_) => None,
            })
            .or_else(|| Some("the roll-out failed".into())),
        WatchEnd::TimedOut(last) => Some(format!(
            "the roll-out did not complete within timeout-minutes; last seen: {last}"
        )),
        WatchEnd::Error(e) => Some(format!("watching the roll-out failed: {e}")),
        end @ WatchEnd::Cancelled { .. } => {
            return Err(end
                .cancelled_error()
                .map(anyhow::Error::from)
                .unwrap_or_else(|| anyhow!("cancelled")))
        }
    })
}

/// Exit 2 when a service or target group of our name exists without this review app's tags.
fn refuse_foreign(req: &Request, seen: &PreviewObserved) -> Result<(), UsageError> {
    let env = &req.environment;
    let t = &req.target;
    let ours = format!(
        "tags {}={} and {}={}",
        tags::PREVIEW,
        t.number,
        tags::ENVIRONMENT,
        t.template
    );
    if seen.service_owner == Owner::Foreign {
        return Err(UsageError::new(format!(
            "environments.{}.preview: ECS service {}/{} exists but is not this review app's (no {ours}); rename or delete it, or clone another service; nothing was created",
            env.name, env.cluster, t.service
        )));
    }
    if seen.target_group_owner == Owner::Foreign {
        return Err(UsageError::new(format!(
            "environments.{}.preview.target-group.name-prefix: target group {} exists but is not this review app's (no {ours}); set another name-prefix; nothing was created",
            env.name, t.target_group
        )));
    }
    Ok(())
}

/// The revision the review app runs: the template's, with the configured containers on the PR's image.
struct Wanted {
    containers: Vec<aws_sdk_ecs::types::ContainerDefinition>,
    tags: Vec<(String, String)>,
    /// `container = image` for the log.
    images: Vec<String>,
    /// (container, image).
    pairs: Vec<(String, String)>,
}

fn wanted_revision(
    req: &Request,
    template: &TaskDefinition,
    template_tags: &[aws_sdk_ecs::types::Tag],
    version: &Version,
    secrets: Option<revision::SsmSecrets>,
) -> Result<Wanted> {
    let containers = template.container_definitions();
    let mut images = Vec::new();
    for name in &req.template.containers {
        let Some(c) = containers.iter().find(|c| c.name() == Some(name.as_str())) else {
            bail!(
                "{} (the template service's revision) has no container {name:?}; correct environments.{}.services.{}.containers in the config",
                td_short(template.task_definition_arn().unwrap_or_default()),
                req.environment.name,
                req.template.name
            );
        };
        let image = req
            .template
            .image
            .image_for(version, c.image().unwrap_or_default())?;
        images.push((name.clone(), image));
    }
    let shown = images.iter().map(|(n, i)| format!("{n} = {i}")).collect();
    let pairs = images.clone();
    // The same revision a deploy of the template environment makes: images, and secrets from its `ssm-path`.
    let containers =
        revision::release_containers(containers, &revision::RevisionChange { images, secrets });
    let mut tags: Vec<(String, String)> = ecs::tag_pairs(template_tags)
        .into_iter()
        .filter(|(k, _)| !k.starts_with(rollout::TAG_PREFIX) && !k.starts_with("aws:"))
        .collect();
    tags.extend(resource_tags(req, version));
    Ok(Wanted {
        containers,
        tags,
        images: shown,
        pairs,
    })
}

/// Ownership, version and run tags for what the review app creates.
fn resource_tags(req: &Request, version: &Version) -> Vec<(String, String)> {
    let mut t = tags::standard(
        &req.target.template,
        version.as_str(),
        req.run_key.as_deref(),
    );
    t.retain(|(k, _)| k != tags::ENVIRONMENT);
    t.extend(req.ownership());
    t
}

/// The template's load balancer container and port, pointed at the review app's target group.
fn template_load_balancer(req: &Request, template: &Service, target_group: &str) -> LoadBalancer {
    let lb = template.load_balancers().first();
    LoadBalancer::builder()
        .target_group_arn(target_group)
        .container_name(
            lb.and_then(|l| l.container_name())
                .unwrap_or(req.template.containers[0].as_str()),
        )
        .container_port(
            lb.and_then(|l| l.container_port())
                .unwrap_or(req.preview.target_group.port),
        )
        .build()
}

/// Pure: the service already runs `td` at `desired` with a COMPLETED roll-out and nothing else left.
fn up_to_date(s: &Service, td: &str, desired: i32) -> bool {
    s.task_definition() == Some(td)
        && s.desired_count() == desired
        && s.deployments().len() == 1
        && rollout::progress(td, &rollout::DeploymentObs::of(s), true)
            == rollout::RolloutVerdict::Done
}

/// What a step of the run works with.
struct Run<'a> {
    req: &'a Request,
    c: &'a Clients,
    ctx: &'a Ctx,
}

/// Creates our rule (retrying on a priority another run took first) or brings the existing one up to date.
async fn ensure_rule(
    run: &Run<'_>,
    plan: RulePlan,
    rules: &[RuleView],
    tg_arn: &str,
    tags: Vec<(String, String)>,
    out: &mut PreviewOutcome,
) -> Result<(Option<String>, i32)> {
    let t = &run.req.target;
    let field = run.req.preview.route.field();
    let dry = run.ctx.dry_run;
    match plan {
        RulePlan::Existing { arn, priority } => {
            let current = rules.iter().find(|r| r.arn == arn);
            if current.is_some_and(|r| r.routes(field, &t.route_value, tg_arn)) {
                tracing::info!(
                    "rule {arn} (priority {priority}) already routes {field} {} to {}",
                    t.route_value,
                    t.target_group
                );
            } else {
                update_rule(run, &arn, priority, tg_arn, out).await?;
            }
            Ok((Some(arn), priority))
        }
        RulePlan::Create { priority } if dry => {
            out.step(
                dry,
                format!(
                    "create a rule at priority {priority} routing {field} {} to {}",
                    t.route_value, t.target_group
                ),
            );
            Ok((None, priority))
        }
        RulePlan::Create { priority } => create_rule(run, priority, tg_arn, tags, out).await,
    }
}

/// Points our existing rule at the route and target group again (a dry run only tells).
async fn update_rule(
    run: &Run<'_>,
    arn: &str,
    priority: i32,
    tg_arn: &str,
    out: &mut PreviewOutcome,
) -> Result<()> {
    let Run { req, c, ctx } = *run;
    let (cfg, t, dry) = (&req.preview, &req.target, ctx.dry_run);
    let field = cfg.route.field();
    if !dry {
        elb::set_rule(
            &c.elb,
            arn,
            vec![condition(&cfg.route, &t.route_value)],
            Some(vec![forward(tg_arn)]),
        )
        .await
        .context("updating the review app's listener rule")?;
    }
    let done = if dry { "update" } else { "updated" };
    out.step(
        dry,
        format!(
            "{done} rule {arn} (priority {priority}) to route {field} {} to {}",
            t.route_value, t.target_group
        ),
    );
    Ok(())
}

/// CreateRule at `priority`; when another run takes it first, at the next free one (a few attempts).
async fn create_rule(
    run: &Run<'_>,
    mut priority: i32,
    tg_arn: &str,
    tags: Vec<(String, String)>,
    out: &mut PreviewOutcome,
) -> Result<(Option<String>, i32)> {
    let Run { req, c, ctx } = *run;
    let (cfg, t) = (&req.preview, &req.target);
    let field = cfg.route.field();
    for attempt in 1..=RULE_ATTEMPTS {
        let created = elb::create_rule(
            &c.elb,
            &cfg.listener_arn,
            elb::NewRule {
                priority,
                conditions: vec![condition(&cfg.route, &t.route_value)],
                actions: vec![forward(tg_arn)],
                tags: tags.clone(),
            },
        )
        .await;
        match created {
            Ok(arn) => {
                out.step(
                    ctx.dry_run,
                    format!(
                        "created rule {arn} at priority {priority}: {field} {} → {}",
                        t.route_value, t.target_group
                    ),
                );
                return Ok((Some(arn), priority));
            }
            Err(e) if elb::is_priority_in_use(&e) && attempt < RULE_ATTEMPTS => {
                tracing::info!("priority {priority} was taken meanwhile; picking another");
                let rules = listener_rules(req, c).await?;
                match plan_rule(&rules, field, &t.route_value, cfg.priorities) {
                    Ok(RulePlan::Create { priority: p }) => priority = p,
                    Ok(RulePlan::Existing { arn, priority }) => return Ok((Some(arn), priority)),
                    Err(RuleRefusal::Collision(why) | RuleRefusal::NoFreePriority(why)) => {
                        bail!("{why}")
                    }
                }
            }
            Err(e) => {
                return Err(anyhow::Error::from(e).context(format!(
                    "creating the review app's listener rule ({})",
                    so_far(out)
                )))
            }
        }
    }
    bail!("no rule could be created: the priorities kept being taken by other runs; run again")
}

fn condition(route: &PreviewRoute, value: &str) -> RuleCondition {
    match route {
        PreviewRoute::Host(_) => RuleCondition::builder()
            .field("host-header")
            .host_header_config(HostHeaderConditionConfig::builder().values(value).build())
            .build(),
        PreviewRoute::Path(_) => RuleCondition::builder()
            .field("path-pattern")
            .path_pattern_config(PathPatternConditionConfig::builder().values(value).build())
            .build(),
    }
}

fn forward(target_group: &str) -> Action {
    Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(target_group)
        .build()
}

/// For an error half-way through an up: what exists by now (all of it tagged as the review app's), and the way out.
fn so_far(out: &PreviewOutcome) -> String {
    if out.steps.is_empty() {
        return "nothing was created; run again".into();
    }
    format!(
        "done so far: {}; run again to finish, or tear it down with state: stopped",
        out.steps
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// At a step boundary of an up or a down, and before each change in a step's loop: once a signal came, the phase
/// stops here (exit 130); what was done stays, and the rerun goes on from it.
fn stop_before(ctx: &Ctx, next: &str, out: &PreviewOutcome) -> Result<()> {
    ctx.stop_if_cancelled(next)
        .map_err(|e| anyhow!(e).context(cancelled(out.action, &out.name, &out.steps)))
}

/// Pure: the message of an up or a down stopped by a signal: what was done, and the rerun.
pub fn cancelled(action: &str, name: &str, steps: &[PreviewStep]) -> String {
    let done: Vec<&str> = steps
        .iter()
        .filter(|s| s.kind == StepKind::Change)
        .map(|s| s.text.as_str())
        .collect();
    let done = if done.is_empty() {
        "nothing was changed".to_string()
    } else {
        format!("done: {}", done.join("; "))
    };
    format!(
        "preview {action} of review app {name} cancelled: {done}; run the same phase again to finish"
    )
}

/// The preflight rows of the seed or teardown task: its definition, container, logs and network source in the
/// environment it runs in, then its image (waited for up to `wait-for-images`).
async fn task_checks(
    req: &Request,
    c: &Clients,
    ctx: &Ctx,
    cfg: &crate::config::TaskConfig,
    version: &Version,
) -> Result<Vec<preflight::Row>> {
    let env = req.task_environment();
    let label = format!("task {}", cfg.name);
    preflight::one_off(
        &c.preflight,
        &env,
        cfg,
        &label,
        version,
        req.wait_for_images,
        ctx,
    )
    .await
}

/// The step line of a seed or teardown task.
fn task_step(report: &TaskReport, what: &str) -> String {
    match report.verdict {
        task::TaskVerdict::Planned => format!("run the {what} task"),
        task::TaskVerdict::Succeeded
        | task::TaskVerdict::Failed
        | task::TaskVerdict::FailedToStart
        | task::TaskVerdict::Interrupted
        | task::TaskVerdict::TimedOut => report.explanation(),
    }
}

/// The seed or teardown task, with `{number}` in its command replaced, run like a migration. Its revision (the pull
/// request's image in the shared family) carries the review app's ownership tags and is deregistered once the task
/// has stopped, whether this run registered it, reused it or attached to a task an earlier run started: the
/// family's latest revision stays the environment's own, and closed pull requests leave nothing behind.
async fn one_off(
    req: &Request,
    c: &Clients,
    ctx: &Ctx,
    cfg: &crate::config::TaskConfig,
    version: &Version,
    out: &mut PreviewOutcome,
) -> Result<TaskReport> {
    let env = req.task_environment();
    let command: Option<Vec<String>> = cfg.command.as_ref().map(|cmd| {
        cmd.iter()
            .map(|a| a.replace(crate::config::PR_NUMBER, &req.target.number.to_string()))
            .collect()
    });
    let ownership = req.ownership();
    let launch = task::Launch {
        environment: &env,
        task: cfg,
        version,
        command: command.as_deref(),
        revision_tags: &ownership,
    };
    let report = task::run(&launch, &c.task, ctx).await?;
    out.step(ctx.dry_run, task_step(&report, &cfg.name));
    let Some(td) = report.task_definition.as_deref().filter(|_| !ctx.dry_run) else {
        return Ok(report);
    };
    let ours = match ecs::describe_task_definition(&c.ecs, td).await {
        Ok((_, tags)) => req.is_ours(&ecs::tag_pairs(&tags).into_iter().collect()),
        Err(e) => {
            tracing::warn!("{e}; {} stays registered", td_short(td));
            false
        }
    };
    if ours {
        match ecs::deregister_task_definition(&c.ecs, td).await {
            Ok(()) => out.step(
                ctx.dry_run,
                format!(
                    "deregistered {} (registered for the {} task)",
                    td_short(td),
                    cfg.name
                ),
            ),
            Err(e) => tracing::warn!("{e}; {} stays registered", td_short(td)),
        }
    }
    Ok(report)
}

// ------------------------------------------------------------------------------------------------------------------
// Down
// ------------------------------------------------------------------------------------------------------------------

/// What a down found, reduced to what its steps depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownFacts {
    /// A teardown task is configured.
    pub teardown_task: bool,
    /// Our service, when it exists.
    pub service: Option<ServiceSeen>,
    /// Our rules: ARN and priority.
    pub rules: Vec<(String, Option<i32>)>,
    /// Our target group's ARN.
    pub target_group: Option<String>,
    /// ACTIVE revisions of the PR's family, newest first.
    pub revisions: Vec<String>,
}

/// The review app's service as a teardown sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSeen {
    /// Status ACTIVE (not DRAINING).
    pub active: bool,
    pub desired_count: i32,
}

/// One step of a down, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownStep {
    /// Nothing of the review app is there: the down succeeds without a change.
    Nothing,
    /// The teardown task, while the service still exists; a failure stops the down.
    Teardown,
    /// Traffic stops first.
    DeleteRules(Vec<(String, Option<i32>)>),
    /// Scaled to 0 first when it still runs tasks; deleted, waited for until gone.
    DeleteService { scale_to_zero: bool },
    /// No rule uses it any more.
    DeleteTargetGroup(String),
    /// Every revision of the PR's family.
    Deregister(Vec<String>),
}

impl DownStep {
    /// What the step does, for the message of a run stopped before it.
    pub fn what(&self) -> &'static str {
        match self {
            DownStep::Nothing => "the look at the review app",
            DownStep::Teardown => "the teardown task",
            DownStep::DeleteRules(_) => "deleting the listener rules",
            DownStep::DeleteService { .. } => "deleting the service",
            DownStep::DeleteTargetGroup(_) => "deleting the target group",
            DownStep::Deregister(_) => "deregistering the revisions",
        }
    }
}

/// Pure: the steps of a down.
pub fn plan_down(f: &DownFacts) -> Vec<DownStep> {
    if f.rules.is_empty()
        && f.service.is_none()
        && f.target_group.is_none()
        && f.revisions.is_empty()
    {
        return vec![DownStep::Nothing];
    }
    let mut steps = Vec::new();
    if f.teardown_task && f.service.is_some_and(|s| s.active) {
        steps.push(DownStep::Teardown);
    }
    if !f.rules.is_empty() {
        steps.push(DownStep::DeleteRules(f.rules.clone()));
    }
    if let Some(s) = f.service {
        steps.push(DownStep::DeleteService {
            scale_to_zero: s.active && s.desired_count > 0,
        });
    }
    if let Some(arn) = &f.target_group {
        steps.push(DownStep::DeleteTargetGroup(arn.clone()));
    }
    if !f.revisions.is_empty() {
        steps.push(DownStep::Deregister(f.revisions.clone()));
    }
    steps
}

async fn down(
    req: &Request,
    c: &Clients,
    ctx: &Ctx,
    version: Option<&Version>,
    out: &mut PreviewOutcome,
) -> Result<()> {
    let env = &req.environment;
    let t = &req.target;
    let seen = observe(req, c).await?;
    if seen.service_owner == Owner::Foreign {
        tracing::warn!(
            "ECS service {}/{} is not this review app's (no preview tags): left alone",
            env.cluster,
            t.service
        );
    }
    if seen.target_group_owner == Owner::Foreign {
        tracing::warn!(
            "target group {} is not this review app's (no preview tags): left alone",
            t.target_group
        );
    }
    let facts = DownFacts {
        teardown_task: req.preview.teardown.is_some(),
        service: seen.our_service().map(|s| ServiceSeen {
            active: s.status() == Some("ACTIVE"),
            desired_count: s.desired_count(),
        }),
        rules: seen
            .rules
            .iter()
            .filter(|r| r.ours)
            .map(|r| (r.arn.clone(), r.priority))
            .collect(),
        target_group: seen.our_target_group().map(str::to_string),
        revisions: seen.revisions.clone(),
    };
    let run = Run { req, c, ctx };
    for step in plan_down(&facts) {
        stop_before(ctx, step.what(), out)?;
        if apply_down(&run, &seen, version, step, out).await? == Flow::Stop {
            break;
        }
    }
    Ok(())
}

async fn apply_down(
    run: &Run<'_>,
    seen: &PreviewObserved,
    version: Option<&Version>,
    step: DownStep,
    out: &mut PreviewOutcome,
) -> Result<Flow> {
    let Run { req, c, ctx } = *run;
    let t = &req.target;
    let dry = ctx.dry_run;
    match step {
        DownStep::Nothing => out.nothing(format!(
            "nothing to tear down: review app {} has no service, rule, target group or revision",
            t.name
        )),
        DownStep::Teardown => return teardown(run, seen, version, out).await,
        DownStep::DeleteRules(rules) => {
            for (arn, priority) in &rules {
                stop_before(ctx, &format!("deleting rule {arn}"), out)?;
                if dry {
                    out.step(dry, format!("delete rule {arn}"));
                    continue;
                }
                elb::delete_rule(&c.elb, arn)
                    .await
                    .context("deleting the review app's listener rule")?;
                out.step(
                    dry,
                    format!(
                        "deleted rule {arn} (priority {})",
                        priority.unwrap_or_default()
                    ),
                );
            }
            out.rule = rules.first().map(|(arn, _)| arn.clone());
        }
        DownStep::DeleteService { scale_to_zero } => {
            delete_service(run, scale_to_zero, out).await?
        }
        DownStep::DeleteTargetGroup(arn) => {
            out.target_group = Some(arn.clone());
            if dry {
                out.step(dry, format!("delete target group {}", t.target_group));
            } else {
                elb::delete_target_group(&c.elb, &arn)
                    .await
                    .context("deleting the review app's target group")?;
                out.step(dry, format!("deleted target group {}", t.target_group));
            }
        }
        DownStep::Deregister(revisions) => {
            for arn in &revisions {
                stop_before(ctx, &format!("deregistering {}", td_short(arn)), out)?;
                if dry {
                    out.step(dry, format!("deregister {}", td_short(arn)));
                    continue;
                }
                ecs::deregister_task_definition(&c.ecs, arn).await?;
                out.step(dry, format!("deregistered {}", td_short(arn)));
            }
            out.task_definition = revisions.first().cloned();
        }
    }
    Ok(Flow::Next)
}

/// The teardown task, with the given version or the one the service runs; a failure stops the down (nothing else is
/// removed, so it can be run again).
async fn teardown(
    run: &Run<'_>,
    seen: &PreviewObserved,
    version: Option<&Version>,
    out: &mut PreviewOutcome,
) -> Result<Flow> {
    let Run { req, c, ctx } = *run;
    let (Some(task_cfg), Some(s)) = (&req.preview.teardown, seen.our_service()) else {
        return Ok(Flow::Next);
    };
    let version = match version {
        Some(v) => v.clone(),
        None => running_version(c, s).await?,
    };
    // The teardown is the first step of a down: its preflight comes before anything is removed.
    let rows = task_checks(req, c, ctx, task_cfg, &version).await?;
    preflight::finish(&ctx.runner, "preview", &preflight::Report { rows })?;
    let report = one_off(req, c, ctx, task_cfg, &version, out).await?;
    let ok = report.ok();
    out.teardown = Some(report);
    if ok {
        return Ok(Flow::Next);
    }
    out.failure = Some(format!(
        "{}; nothing else was removed: fix it and run the teardown again",
        out.teardown
            .as_ref()
            .map(TaskReport::explanation)
            .unwrap_or_default()
    ));
    Ok(Flow::Stop)
}

/// The service: to 0, deleted, waited for until gone (a dry run only tells).
async fn delete_service(
    run: &Run<'_>,
    scale_to_zero: bool,
    out: &mut PreviewOutcome,
) -> Result<()> {
    let Run { req, c, ctx } = *run;
    let (cluster, t) = (&req.environment.cluster, &req.target);
    if ctx.dry_run {
        out.step(
            ctx.dry_run,
            format!("scale service {} to 0 and delete it", t.service),
        );
        return Ok(());
    }
    if scale_to_zero {
        ecs::set_desired_count(&c.ecs, cluster, &t.service, 0).await?;
    }
    ecs::delete_service(&c.ecs, cluster, &t.service).await?;
    ctx.poller(
        format!("service {} to be deleted", t.service),
        Backoff::FAST,
    )
    .run(|| async {
        Ok(
            match ecs::service_if_any(&c.ecs, cluster, &t.service).await? {
                None => Check::Done(()),
                Some(s) => Check::Pending(format!(
                    "service {}: {}, {} running",
                    t.service,
                    s.status().unwrap_or("UNKNOWN"),
                    s.running_count()
                )),
            },
        )
    })
    .await
    .map_err(|e| anyhow!(e).context(format!("deleting service {cluster}/{}", t.service)))?;
    out.step(ctx.dry_run, format!("deleted service {}", t.service));
    Ok(())
}

/// The version the review app runs: its revision's `deploy-action:version` tag.
async fn running_version(c: &Clients, s: &Service) -> Result<Version> {
    let td = s.task_definition().unwrap_or_default();
    let (_, tags) = ecs::describe_task_definition(&c.ecs, td).await?;
    match tags::get(&ecs::tag_pairs(&tags), tags::VERSION) {
        Some(v) => Ok(Version::parse(v)?),
        None => bail!(
            "{} has no {} tag, so the teardown task's version is not known; pass `version`",
            td_short(td),
            tags::VERSION
        ),
    }
}

// ------------------------------------------------------------------------------------------------------------------
// The pull request comment
// ------------------------------------------------------------------------------------------------------------------

/// Creates or edits the one comment. A failure only warns: the review app's state stands.
async fn comment(req: &Request, out: &mut PreviewOutcome) {
    let api = match &req.github {
        Ok(api) => api,
        Err(why) => {
            tracing::info!("pull request comment: {why}; not commented");
            out.comment_note = Some(format!("not commented ({why})"));
            return;
        }
    };
    let marker = comments::marker(&req.target.template);
    let body = comment_body(req, out, &marker);
    let changed = out.changed();
    let when = match (&req.direction, changed) {
        (Direction::Up(_), _) | (Direction::Down(_), true) => When::Always,
        (Direction::Down(_), false) => When::OnlyExisting { unless: DOWN_MARK },
    };
    match comments::upsert(api, req.target.number, &marker, &body, when).await {
        Ok(posted) => {
            tracing::info!(
                "pull request #{} comment: {:?}{}",
                req.target.number,
                posted.action,
                posted
                    .url
                    .as_deref()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default()
            );
            out.comment = Some(posted);
        }
        Err(e) => {
            let hint = if e.is_permission() {
                "; give the job `permissions: pull-requests: write`"
            } else {
                ""
            };
            tracing::warn!(
                "could not comment on pull request #{}: {e}{hint}",
                req.target.number
            );
            out.comment_note = Some(format!("{e}{hint}"));
        }
    }
}

/// The comment's markdown: the marker first, then the state of the review app.
pub fn comment_body(req: &Request, out: &PreviewOutcome, marker: &str) -> String {
    let t = &req.target;
    let run = req
        .run_url
        .as_deref()
        .map(|u| format!(" ([workflow run]({}))", md_url(u)))
        .unwrap_or_default();
    let mut s = format!("{marker}\n### 🔎 Review app {}\n\n", md_code(&t.name));
    match (&req.direction, &out.failure) {
        (Direction::Up(v), None) => {
            s.push_str(&format!(
                "**{}** runs {}{run}.\n\n",
                md_text(&t.url),
                md_code(v.as_str())
            ));
            let rows = vec![
                vec![
                    "Service".to_string(),
                    format!("{} in {}", md_code(&t.service), md_code(&out.cluster)),
                ],
                vec![
                    "Task definition".into(),
                    out.task_definition
                        .as_deref()
                        .map(|a| md_code(td_short(a)))
                        .unwrap_or_else(|| "—".into()),
                ],
                vec![
                    "Deployed in".into(),
                    human(std::time::Duration::from_secs(out.duration_seconds)),
                ],
            ];
            s.push_str(&md_table_md(&["", ""], &rows));
            s.push_str("\nUpdated on every push; torn down when the pull request is closed.\n");
        }
        (Direction::Up(v), Some(why)) => {
            s.push_str(&format!(
                "❌ {} was not deployed{run}: {}\n\n{}\n",
                md_code(v.as_str()),
                md_text(why),
                md_text(&t.url)
            ));
        }
        (Direction::Down(_), None) => {
            s.push_str(&format!(
                "🧹 Torn down{run}: the service {}, its rule, target group and task definitions are gone.\n{DOWN_MARK}\n",
                md_code(&t.service)
            ));
        }
        (Direction::Down(_), Some(why)) => {
            s.push_str(&format!(
                "❌ The teardown did not finish{run}: {}\n",
                md_text(why)
            ));
        }
    }
    s
}

impl Outcome for PreviewOutcome {
    fn ok(&self) -> bool {
        self.failure.is_none()
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        let comment = self.comment.as_ref();
        vec![
            (
                "url",
                if self.action == "up" {
                    self.url.clone()
                } else {
                    String::new()
                },
            ),
            ("pr-number", self.pr_number.to_string()),
            ("preview-environment", self.github_environment.clone()),
            ("service", self.service.clone()),
            (
                "task-definition",
                self.task_definition.clone().unwrap_or_default(),
            ),
            (
                "comment-url",
                comment.and_then(|c| c.url.clone()).unwrap_or_default(),
            ),
        ]
    }

    fn summary(&self) -> String {
        let icon = match (&self.failure, self.dry_run) {
            (Some(_), _) => "❌",
            (None, true) => "📝",
            (None, false) => "✅",
        };
        let what = if self.action == "up" {
            "up"
        } else {
            "torn down"
        };
        let mut s = format!(
            "### {icon} Review app {} (pull request #{}): {what}\n\n",
            md_code(&self.name),
            self.pr_number
        );
        if let Some(why) = &self.failure {
            s.push_str(&format!("**{}**\n\n", md_text(why)));
        }
        let mut rows = vec![
            vec!["URL".to_string(), self.url.clone()],
            vec![
                "Version".into(),
                self.version.clone().unwrap_or_else(|| "—".into()),
            ],
            vec![
                "Service".into(),
                format!("{} in {}", self.service, self.cluster),
            ],
        ];
        if let Some(td) = &self.task_definition {
            rows.push(vec!["Task definition".into(), td_short(td).to_string()]);
        }
        if let Some(p) = self.priority {
            rows.push(vec!["Rule priority".into(), p.to_string()]);
        }
        rows.push(vec![
            "Comment".into(),
            match (&self.comment, &self.comment_note) {
                (Some(c), _) => format!(
                    "{:?}{}",
                    c.action,
                    c.url
                        .as_deref()
                        .map(|u| format!(" ({u})"))
                        .unwrap_or_default()
                )
                .to_lowercase(),
                (None, Some(n)) => n.clone(),
                (None, None) => "—".into(),
            },
        ]);
        s.push_str(&md_table(&["", ""], &rows));
        if !self.steps.is_empty() {
            s.push('\n');
            for step in &self.steps {
                s.push_str(&format!("- {}\n", md_text(&step.text)));
            }
        }
        for r in [&self.seed, &self.teardown].into_iter().flatten() {
            if !r.ok() {
                s.push('\n');
                s.push_str(&r.last_lines_markdown());
            }
        }
        if !self.failures.is_empty() {
            let lines: Vec<String> = self
                .failures
                .iter()
                .flat_map(FailureReport::lines)
                .collect();
            s.push_str("\n**Why**\n\n");
            s.push_str(&md_code_block("", &lines.join("\n")));
        }
        s
    }

    fn text(&self) -> String {
        let mut s = match (&self.failure, self.action) {
            (Some(why), _) => format!(
                "review app {} (#{}) failed: {why}\n",
                self.name, self.pr_number
            ),
            (None, _) if self.dry_run => format!(
                "dry run for review app {} (#{}), nothing changed:\n",
                self.name, self.pr_number
            ),
            (None, "up") => format!(
                "review app {} (#{}) is up at {}{}\n",
                self.name,
                self.pr_number,
                self.url,
                self.version
                    .as_deref()
                    .map(|v| format!(" running {v}"))
                    .unwrap_or_default()
            ),
            (None, _) => format!(
                "review app {} (#{}) is torn down\n",
                self.name, self.pr_number
            ),
        };
        for step in &self.steps {
            s.push_str(&format!("  {step}\n"));
        }
        let why: Vec<String> = self
            .failures
            .iter()
            .flat_map(FailureReport::lines)
            .collect();
        if !why.is_empty() {
            s.push_str("why:\n");
            for l in why {
                s.push_str(&format!("  {l}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_pr_number_comes_from_the_input_or_the_event() {
        assert_eq!(
            number_in_event(&json!({"number": 12, "pull_request": {"number": 12}})),
            Some(12)
        );
        assert_eq!(
            number_in_event(&json!({"pull_request": {"number": 7}})),
            Some(7)
        );
        assert_eq!(number_in_event(&json!({"number": 9})), Some(9));
        assert_eq!(number_in_event(&json!({"ref": "refs/heads/main"})), None);
        assert_eq!(number_in_event(&json!({"number": 0})), None);
        assert_eq!(pr_number(Some("#42"), None).unwrap(), 42);
        let dir = tempfile::tempdir().unwrap();
        let event = dir.path().join("event.json");
        std::fs::write(
            &event,
            r#"{"action":"opened","number":5,"pull_request":{"number":5}}"#,
        )
        .unwrap();
        assert_eq!(pr_number(None, Some(&event)).unwrap(), 5);
        assert_eq!(
            pr_number(Some("8"), Some(&event)).unwrap(),
            8,
            "the input wins"
        );
        for (input, path) in [(Some("abc"), None), (Some("0"), None), (None, None)] {
            let e = pr_number(input, path).unwrap_err().to_string();
            assert!(e.starts_with("input `pr-number`"), "{e}");
        }
        std::fs::write(&event, r#"{"ref":"refs/heads/main"}"#).unwrap();
        let e = pr_number(None, Some(&event)).unwrap_err().to_string();
        assert!(e.contains("no pull request number"), "{e}");
    }

    fn rule(
        arn: &str,
        priority: Option<i32>,
        field: &str,
        values: &[&str],
        ours: bool,
    ) -> RuleView {
        RuleView {
            arn: arn.into(),
            priority,
            conditions: vec![(field.into(), values.iter().map(|v| v.to_string()).collect())],
            forwards_to: vec!["tg".into()],
            ours,
        }
    }

    #[test]
    fn rule_plans() {
        let host = "pr-12.review.example.org";
        let default = RuleView {
            arn: "default".into(),
            priority: None,
            conditions: vec![],
            forwards_to: vec!["tg".into()],
            ours: false,
        };
        type Case = (
            Vec<RuleView>,
            (i32, i32),
            std::result::Result<RulePlan, &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                vec![default.clone()],
                (1000, 1999),
                Ok(RulePlan::Create { priority: 1000 }),
            ),
            (
                vec![
                    rule(
                        "a",
                        Some(1000),
                        "host-header",
                        &["pr-11.review.example.org"],
                        false,
                    ),
                    rule("b", Some(1001), "path-pattern", &["/x"], false),
                    default.clone(),
                ],
                (1000, 1999),
                Ok(RulePlan::Create { priority: 1002 }),
            ),
            (
                vec![
                    rule("ours", Some(1005), "host-header", &[host], true),
                    default.clone(),
                ],
                (1000, 1999),
                Ok(RulePlan::Existing {
                    arn: "ours".into(),
                    priority: 1005,
                }),
            ),
            // Someone else's rule for the same host (case does not matter for hosts): a collision.
            (
                vec![rule(
                    "x",
                    Some(20),
                    "host-header",
                    &["PR-12.review.example.org"],
                    false,
                )],
                (1000, 1999),
                Err("collision"),
            ),
            // The same value in another field is no collision.
            (
                vec![rule("x", Some(20), "path-pattern", &[host], false)],
                (1000, 1999),
                Ok(RulePlan::Create { priority: 1000 }),
            ),
            (
                vec![
                    rule("a", Some(1), "path-pattern", &["/a"], false),
                    rule("b", Some(2), "path-pattern", &["/b"], false),
                ],
                (1, 2),
                Err("full"),
            ),
            // Full, but ours is there: kept.
            (
                vec![
                    rule("a", Some(1), "path-pattern", &["/a"], false),
                    rule("ours", Some(2), "host-header", &[host], true),
                ],
                (1, 2),
                Ok(RulePlan::Existing {
                    arn: "ours".into(),
                    priority: 2,
                }),
            ),
        ];
        for (rules, range, want) in cases {
            let got = plan_rule(&rules, "host-header", host, range);
            match (&got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, &w),
                (Err(RuleRefusal::Collision(why)), Err("collision")) => {
                    assert!(why.contains("x") && why.contains("priority 20"), "{why}")
                }
                (Err(RuleRefusal::NoFreePriority(why)), Err("full")) => {
                    assert!(why.contains("from 1 to 2"), "{why}")
                }
                (g, w) => panic!("{rules:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn a_rule_routes_only_when_its_one_condition_and_target_match() {
        let r = rule("r", Some(1000), "host-header", &["pr-1.x"], true);
        assert!(r.routes("host-header", "pr-1.x", "tg"));
        assert!(!r.routes("host-header", "pr-1.x", "other-tg"));
        assert!(!r.routes("path-pattern", "pr-1.x", "tg"));
        let two = RuleView {
            conditions: vec![
                ("host-header".into(), vec!["pr-1.x".into()]),
                ("path-pattern".into(), vec!["/a".into()]),
            ],
            ..r
        };
        assert!(!two.routes("host-header", "pr-1.x", "tg"));
    }

    fn up_facts(seed: bool, service: ServiceNow, reusable: Option<&str>, dry_run: bool) -> UpFacts {
        UpFacts {
            seed,
            reusable: reusable.map(str::to_string),
            target_group: None,
            rule: RulePlan::Create { priority: 1000 },
            service,
            revisions: vec!["f-pr-1:2".into(), "f-pr-1:1".into()],
            dry_run,
        }
    }

    #[test]
    fn the_steps_of_an_up() {
        use ServiceNow::*;
        use UpStep::*;
        let rule = Rule(RulePlan::Create { priority: 1000 });
        let old = |arns: &[&str]| Deregister(arns.iter().map(|a| a.to_string()).collect());
        #[rustfmt::skip]
        let table: Vec<(&str, UpFacts, Vec<UpStep>)> = vec![
            ("first up: seed, everything made, watched, old revisions go",
             up_facts(true, Absent, None, false),
             vec![Seed, RegisterRevision, CreateTargetGroup, rule.clone(), CreateService, Rollout,
                  old(&["f-pr-1:2", "f-pr-1:1"])]),
            ("first up without a seed",
             up_facts(false, Absent, None, false),
             vec![RegisterRevision, CreateTargetGroup, rule.clone(), CreateService, Rollout,
                  old(&["f-pr-1:2", "f-pr-1:1"])]),
            ("a new push: the seed is not run again; the revision in use is kept",
             up_facts(true, Behind, Some("f-pr-1:2"), false),
             vec![SeedSkipped, ReuseRevision("f-pr-1:2".into()), CreateTargetGroup, rule.clone(), UpdateService,
                  Rollout, old(&["f-pr-1:1"])]),
            ("its roll-out failed before: forced redeploy",
             up_facts(false, FailedOn, Some("f-pr-1:2"), false),
             vec![ReuseRevision("f-pr-1:2".into()), CreateTargetGroup, rule.clone(), RedeployService, Rollout,
                  old(&["f-pr-1:1"])]),
            ("already up to date: nothing watched, nothing deregistered",
             up_facts(true, UpToDate, Some("f-pr-1:2"), false),
             vec![SeedSkipped, ReuseRevision("f-pr-1:2".into()), CreateTargetGroup, rule.clone(), ServiceCurrent]),
            ("a dry run stops at the service step",
             up_facts(true, Absent, None, true),
             vec![Seed, RegisterRevision, CreateTargetGroup, rule.clone(), CreateService]),
            ("a dry run of an update",
             up_facts(false, Behind, None, true),
             vec![RegisterRevision, CreateTargetGroup, rule.clone(), UpdateService]),
        ];
        for (why, facts, want) in table {
            assert_eq!(plan_up(&facts), want, "{why}");
        }
        let kept = UpFacts {
            target_group: Some("tg-arn".into()),
            rule: RulePlan::Existing {
                arn: "r".into(),
                priority: 7,
            },
            revisions: vec!["f-pr-1:3".into()],
            ..up_facts(false, Behind, Some("f-pr-1:3"), false)
        };
        assert_eq!(
            plan_up(&kept),
            vec![
                ReuseRevision("f-pr-1:3".into()),
                KeepTargetGroup("tg-arn".into()),
                Rule(RulePlan::Existing {
                    arn: "r".into(),
                    priority: 7
                }),
                UpdateService,
                Rollout,
            ],
            "what exists is kept; with no older revision there is nothing to deregister"
        );
    }

    #[test]
    fn a_service_against_a_revision_yet_to_be_registered_is_behind() {
        let s = Service::builder()
            .task_definition("arn:aws:ecs:eu-west-1:1:task-definition/f-pr-1:2")
            .desired_count(1)
            .build();
        assert_eq!(service_now(None, Some("x"), 1), ServiceNow::Absent);
        assert_eq!(service_now(None, None, 1), ServiceNow::Absent);
        assert_eq!(service_now(Some(&s), None, 1), ServiceNow::Behind);
        assert_eq!(
            service_now(
                Some(&s),
                Some("arn:aws:ecs:eu-west-1:1:task-definition/f-pr-1:3"),
                1
            ),
            ServiceNow::Behind
        );
    }

    #[test]
    fn the_steps_of_a_down() {
        use DownStep::*;
        let active = Some(ServiceSeen {
            active: true,
            desired_count: 2,
        });
        let idle = Some(ServiceSeen {
            active: true,
            desired_count: 0,
        });
        let draining = Some(ServiceSeen {
            active: false,
            desired_count: 0,
        });
        let rules = vec![("r".to_string(), Some(1000))];
        let revs = vec!["f-pr-1:2".to_string(), "f-pr-1:1".to_string()];
        let facts = |teardown_task,
                     service,
                     rules: &[(String, Option<i32>)],
                     tg: Option<&str>,
                     revisions: &[String]| {
            DownFacts {
                teardown_task,
                service,
                rules: rules.to_vec(),
                target_group: tg.map(str::to_string),
                revisions: revisions.to_vec(),
            }
        };
        #[rustfmt::skip]
        let table: Vec<(&str, DownFacts, Vec<DownStep>)> = vec![
            ("nothing there", facts(true, None, &[], None, &[]), vec![Nothing]),
            ("everything there, teardown task first, traffic stops before the service goes",
             facts(true, active, &rules, Some("tg"), &revs),
             vec![Teardown, DeleteRules(rules.clone()), DeleteService { scale_to_zero: true },
                  DeleteTargetGroup("tg".into()), Deregister(revs.clone())]),
            ("no teardown task configured", facts(false, active, &rules, Some("tg"), &[]),
             vec![DeleteRules(rules.clone()), DeleteService { scale_to_zero: true }, DeleteTargetGroup("tg".into())]),
            ("a service at 0 is not scaled", facts(false, idle, &[], None, &[]),
             vec![DeleteService { scale_to_zero: false }]),
            ("a draining service: no teardown task, no scaling", facts(true, draining, &[], None, &revs),
             vec![DeleteService { scale_to_zero: false }, Deregister(revs.clone())]),
            ("no service: the teardown task has nothing to run with", facts(true, None, &rules, None, &[]),
             vec![DeleteRules(rules.clone())]),
            ("only revisions left", facts(true, None, &[], None, &revs), vec![Deregister(revs.clone())]),
        ];
        for (why, facts, want) in table {
            assert_eq!(plan_down(&facts), want, "{why}");
        }
    }

    #[test]
    fn a_cancelled_preview_says_what_it_changed() {
        let step = |kind, text: &str| PreviewStep {
            kind,
            text: text.into(),
        };
        let cases = [
            (
                vec![],
                "preview up of review app review-pr-12 cancelled: nothing was changed; run the same phase again to finish",
            ),
            (
                vec![step(StepKind::Nothing, "nothing to tear down")],
                "preview up of review app review-pr-12 cancelled: nothing was changed; run the same phase again to finish",
            ),
            (
                vec![
                    step(StepKind::Change, "registered review-core-pr-12:1 with app:pr-12"),
                    step(StepKind::Change, "created target group core-pr-12"),
                ],
                "preview up of review app review-pr-12 cancelled: done: registered review-core-pr-12:1 with app:pr-12; created target group core-pr-12; run the same phase again to finish",
            ),
        ];
        for (steps, want) in cases {
            assert_eq!(cancelled("up", "review-pr-12", &steps), want);
        }
    }

    #[test]
    fn every_step_names_what_a_cancel_stops_before() {
        let up = plan_up(&UpFacts {
            seed: true,
            reusable: None,
            target_group: None,
            rule: RulePlan::Create { priority: 1000 },
            service: ServiceNow::Behind,
            revisions: vec!["old".into()],
            dry_run: false,
        });
        let names: Vec<&str> = up.iter().map(UpStep::what).collect();
        assert_eq!(
            names,
            vec![
                "the seed step",
                "the revision",
                "the target group",
                "the listener rule",
                "the service",
                "the roll-out",
                "deregistering older revisions"
            ]
        );
    }
}
