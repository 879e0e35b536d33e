//! One-off ECS tasks (the migration, and the named tasks of phase `run`): launched at most once per
//! (environment, task), followed live, judged by exit code.
//!
//! [`run`] does, in order:
//! 1. **Exactly one per (environment, task).** Tasks of the family in this environment's `group`
//!    (`deploy-action:<environment>:<task>`) are looked up first: one still running for the same version is attached
//!    to instead of starting another, one of another version is refused, one still stopping is waited for
//!    ([`plan_launch`]).
//! 2. **A revision with only the image (and secrets) changed**: the latest ACTIVE revision of the family, described
//!    with its tags, is registered again with every RegisterTaskDefinition field copied, the task's container image
//!    set to the version's, with `ssm-path` the same SSM secrets as the services (references; one deleted from the
//!    path is removed, [`revision::merge`]), and the tag `deploy-action:version`. When the latest revision already is
//!    exactly that, it is used.
//! 3. **RunTask, never retried blindly**: launch type and network from the config (or the network of the core service
//!    named by `network-from-service`), optional command override, `startedBy = deploy-action`, the group, and tags
//!    (version, run, environment, task). The SDK's retries are off for this one call; after an ambiguous failure
//!    (throttling, 5xx, timeout) the group is looked up again before another attempt, with the same client token.
//! 4. **Live logs**: the container's awslogs stream (`<prefix>/<container>/<task-id>`) is read with GetLogEvents
//!    about once a second and printed into the job log inside a group; after the task stopped it is read on until
//!    the forward token stops moving, so no line is lost. The last [`LAST_LINES`] lines are kept for the report.
//! 5. **Verdict** from the container's exit code and the task's stop code ([`verdict`]).
//!
//! The deadline (`timeout-minutes`) stops the task with a reason, waits until it stopped and reports `timed-out`.
//! Cancellation (SIGINT, then SIGTERM from the runner) stops it with the reason "cancelled by workflow" and ends the
//! phase as cancelled. Throttling and 5xx while watching are polled through (see [`crate::wait::Poller`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, DesiredStatus, NetworkConfiguration, NetworkMode, Task,
    TaskStopCode,
};
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aws::ecs::{self, td_short};
use crate::aws::logs;
use crate::config::{Environment, TaskConfig, TaskNetwork};
use crate::domain::revision_diff::{self, RevisionDiff};
use crate::domain::{revision, Ctx};
use crate::github::runner::{Group, Runner};
use crate::tags;
use crate::version::Version;
use crate::wait::{human, Backoff, Check, Pace, Poller, WaitError};

/// `startedBy` of every task this action starts.
pub const STARTED_BY: &str = "deploy-action";
/// How many of the last log lines the report keeps.
pub const LAST_LINES: usize = 50;
/// The cadence of the watch: logs and task status about once a second, so a line shows within 2 s.
pub const TAIL: Backoff = Backoff {
    first: Duration::from_millis(500),
    max: Duration::from_secs(1),
};
/// After StopTask at the deadline: ECS's longest stopTimeout (120 s) and some.
const STOP_GRACE: Duration = Duration::from_secs(150);
/// After StopTask on cancel: the runner sends SIGTERM 7.5 s after SIGINT, and kills soon after.
const CANCEL_GRACE: Duration = Duration::from_secs(5);
/// Reading the rest of the log stream after the task stopped.
const DRAIN_GRACE: Duration = Duration::from_secs(60);

/// Only the clients a one-off task uses.
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// The secrets under the environment's `ssm-path` (names and ARNs only).
    pub ssm: aws_sdk_ssm::Client,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            ecs: aws_sdk_ecs::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            ssm: aws_sdk_ssm::Client::new(sdk),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub environment: &'a Environment,
    pub task: &'a TaskConfig,
    pub version: &'a Version,
    /// Replaces the config's `command` (and so the task definition's) when set.
    pub command: Option<&'a [String]>,
    /// Tags for a revision registered for this run besides the copied ones and the version (a review app's
    /// ownership tags, so its revisions can be found and deregistered).
    pub revision_tags: &'a [(String, String)],
}

impl Launch<'_> {
    /// `migration`, or `task <name>`: how logs, errors and the summary name it.
    pub fn label(&self) -> String {
        if self.task.name == "migration" {
            "migration".to_string()
        } else {
            format!("task {}", self.task.name)
        }
    }

    /// The config key of this task's table, for errors.
    fn key(&self) -> &str {
        &self.task.key
    }

    fn command(&self) -> Option<&[String]> {
        self.command.or(self.task.command.as_deref())
    }
}

/// The ECS `group` of a one-off task: one in flight per group.
pub fn group_name(environment: &str, task: &str) -> String {
    format!("deploy-action:{environment}:{task}")
}

/// How a one-off task ended (or would start, in a dry run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskVerdict {
    /// The container exited 0 and the stop code is EssentialContainerExited.
    Succeeded,
    /// The container exited non-zero (or with no exit code), or ECS gave a stop code deploy-action does not know.
    Failed,
    /// ECS could not start it (image pull, secrets, capacity...).
    FailedToStart,
    /// Stopped from outside: by someone (UserInitiated), the scheduler, a Spot interruption, host retirement.
    Interrupted,
    /// Still running at `timeout-minutes`: deploy-action stopped it.
    TimedOut,
    /// Dry run: nothing started.
    Planned,
}

impl std::fmt::Display for TaskVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskVerdict::Succeeded => "succeeded",
            TaskVerdict::Failed => "failed",
            TaskVerdict::FailedToStart => "failed to start",
            TaskVerdict::Interrupted => "interrupted",
            TaskVerdict::TimedOut => "timed out",
            TaskVerdict::Planned => "planned (dry run)",
        })
    }
}

/// A task stop code as we branch on it (the SDK's enum is non-exhaustive; unknown values are kept, not hidden).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StopCode {
    EssentialContainerExited,
    TaskFailedToStart,
    UserInitiated,
    ServiceSchedulerInitiated,
    SpotInterruption,
    TerminationNotice,
    InfrastructureHealth,
    /// No stop code (the task has not stopped).
    None,
    Other(String),
}

impl StopCode {
    pub fn of(code: Option<&TaskStopCode>) -> StopCode {
        match code {
            None => StopCode::None,
            Some(TaskStopCode::EssentialContainerExited) => StopCode::EssentialContainerExited,
            Some(TaskStopCode::TaskFailedToStart) => StopCode::TaskFailedToStart,
            Some(TaskStopCode::UserInitiated) => StopCode::UserInitiated,
            Some(TaskStopCode::ServiceSchedulerInitiated) => StopCode::ServiceSchedulerInitiated,
            Some(TaskStopCode::SpotInterruption) => StopCode::SpotInterruption,
            Some(TaskStopCode::TerminationNotice) => StopCode::TerminationNotice,
            Some(TaskStopCode::InfrastructureHealth) => StopCode::InfrastructureHealth,
            Some(other) => StopCode::Other(other.as_str().to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            StopCode::EssentialContainerExited => "EssentialContainerExited",
            StopCode::TaskFailedToStart => "TaskFailedToStart",
            StopCode::UserInitiated => "UserInitiated",
            StopCode::ServiceSchedulerInitiated => "ServiceSchedulerInitiated",
            StopCode::SpotInterruption => "SpotInterruption",
            StopCode::TerminationNotice => "TerminationNotice",
            StopCode::InfrastructureHealth => "InfrastructureHealth",
            StopCode::None => "none",
            StopCode::Other(s) => s,
        }
    }
}

/// Pure: the verdict on a stopped task. Success only if the container exited 0 **and** the stop code is
/// EssentialContainerExited.
pub fn verdict(stop: &StopCode, exit_code: Option<i32>) -> TaskVerdict {
    match (stop, exit_code) {
        (StopCode::EssentialContainerExited, Some(0)) => TaskVerdict::Succeeded,
        (StopCode::EssentialContainerExited, Some(_) | None) => TaskVerdict::Failed,
        (StopCode::TaskFailedToStart, _) => TaskVerdict::FailedToStart,
        (
            StopCode::UserInitiated
            | StopCode::ServiceSchedulerInitiated
            | StopCode::SpotInterruption
            | StopCode::TerminationNotice
            | StopCode::InfrastructureHealth,
            _,
        ) => TaskVerdict::Interrupted,
        (StopCode::None | StopCode::Other(_), _) => TaskVerdict::Failed,
    }
}

/// A task, reduced to what the runner decides on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskView {
    pub arn: String,
    pub last_status: String,
    pub desired_status: String,
    pub stop_code: StopCode,
    pub stopped_reason: Option<String>,
    /// The exit code of the task's container (the one the config names).
    pub exit_code: Option<i32>,
    /// Why the container stopped, when ECS says (e.g. CannotPullContainerError).
    pub container_reason: Option<String>,
    pub group: Option<String>,
    /// The `deploy-action:version` tag.
    pub version: Option<String>,
    /// The `deploy-action:launch` tag (the RunTask client token that started it).
    pub launch: Option<String>,
    pub task_definition: String,
}

impl TaskView {
    pub fn of(task: &Task, container: &str) -> TaskView {
        let c = task
            .containers()
            .iter()
            .find(|c| c.name() == Some(container));
        let tags = ecs::tag_pairs(task.tags());
        TaskView {
            arn: task.task_arn().unwrap_or_default().to_string(),
            last_status: task.last_status().unwrap_or("UNKNOWN").to_string(),
            desired_status: task.desired_status().unwrap_or("UNKNOWN").to_string(),
            stop_code: StopCode::of(task.stop_code()),
            stopped_reason: task.stopped_reason().map(str::to_string),
            exit_code: c.and_then(|c| c.exit_code()),
            container_reason: c.and_then(|c| c.reason()).map(str::to_string),
            group: task.group().map(str::to_string),
            version: tags::get(&tags, tags::VERSION).map(str::to_string),
            launch: tags::get(&tags, tags::LAUNCH).map(str::to_string),
            task_definition: task.task_definition_arn().unwrap_or_default().to_string(),
        }
    }

    /// The task id (the last part of the ARN).
    pub fn id(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or(&self.arn)
    }

    fn stopped(&self) -> bool {
        self.last_status == "STOPPED"
    }
}

/// What to do about tasks already in this (environment, task) group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchPlan {
    Start,
    /// One is running for the same version (a rerun after a killed job): follow it.
    Attach(Box<TaskView>),
    /// Tasks asked to stop that have not stopped yet: wait, then start.
    WaitForStopping(Vec<String>),
    /// One is running for another version (or several are running): refuse, with the fix.
    Refuse(String),
}

/// Pure: the launch plan from the tasks of this group (running ones and recently stopped ones).
pub fn plan_launch(in_group: &[TaskView], version: &str, label: &str) -> LaunchPlan {
    let running: Vec<&TaskView> = in_group
        .iter()
        .filter(|t| !t.stopped() && t.desired_status != "STOPPED")
        .collect();
    let stopping: Vec<String> = in_group
        .iter()
        .filter(|t| !t.stopped() && t.desired_status == "STOPPED")
        .map(|t| t.arn.clone())
        .collect();
    match running.as_slice() {
        [] if stopping.is_empty() => LaunchPlan::Start,
        [] => LaunchPlan::WaitForStopping(stopping),
        [one] if one.version.as_deref() == Some(version) => LaunchPlan::Attach(Box::new((*one).clone())),
        [one] => LaunchPlan::Refuse(format!(
            "a {label} task for version {} is still running ({}); wait for it to finish or stop it, then run again",
            one.version.as_deref().unwrap_or("unknown"),
            one.arn
        )),
        many => LaunchPlan::Refuse(format!(
            "{} {label} tasks are running for this environment ({}); stop them, then run again",
            many.len(),
            many.iter().map(|t| t.id()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Pure: a task for `version` that another run started since this run first looked at the group (`seen`: the task
/// ARNs it saw then), running or already stopped: that run did this run's work, so this run follows it (and reports
/// its verdict) instead of starting the same task again. The newest such task, by its order in `now`.
pub fn started_meanwhile<'a>(
    seen: &[String],
    now: &'a [TaskView],
    version: &str,
) -> Option<&'a TaskView> {
    now.iter()
        .filter(|t| !seen.contains(&t.arn) && t.version.as_deref() == Some(version))
        .find(|t| !t.stopped())
        .or_else(|| {
            now.iter()
                .find(|t| !seen.contains(&t.arn) && t.version.as_deref() == Some(version))
        })
}

/// Where the awslogs driver writes a container's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogTarget {
    pub group: String,
    pub stream: String,
    pub region: Option<String>,
}

/// Pure: the log group and stream of a container from its log configuration, or why its output cannot be followed.
pub fn log_target(
    driver: Option<&str>,
    options: &HashMap<String, String>,
    container: &str,
    task_id: &str,
) -> Result<LogTarget, String> {
    match driver {
        Some("awslogs") => {}
        Some(other) => {
            return Err(format!(
                "container {container} logs with the {other} driver; only awslogs output can be followed"
            ))
        }
        None => return Err(format!("container {container} has no log configuration")),
    }
    let group = options
        .get("awslogs-group")
        .ok_or_else(|| format!("container {container}: awslogs has no awslogs-group"))?;
    let prefix = options.get("awslogs-stream-prefix").ok_or_else(|| {
        format!("container {container}: awslogs has no awslogs-stream-prefix, so the stream name is not known")
    })?;
    Ok(LogTarget {
        group: group.clone(),
        stream: format!("{prefix}/{container}/{task_id}"),
        region: options.get("awslogs-region").cloned(),
    })
}

/// Everything a one-off task run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub label: String,
    /// `None` in a dry run that would start a task.
    pub task_arn: Option<String>,
    pub task_definition: Option<String>,
    pub image: Option<String>,
    /// Followed a task that was already running instead of starting one.
    pub attached: bool,
    /// The revision this run registered for the task (`None` when an existing one was used).
    pub registered: Option<String>,
    pub verdict: TaskVerdict,
    pub exit_code: Option<i32>,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    pub container_reason: Option<String>,
    pub log_lines: u64,
    pub last_lines: Vec<String>,
    /// How long lines took from their timestamp to the job log (for an attached task, earlier lines count too).
    pub log_lag: Option<Lag>,
    pub log_stream: Option<String>,
    /// Why the logs could not be followed, if they could not.
    pub log_note: Option<String>,
    pub duration_seconds: u64,
    /// A dry run that would register a revision: the revision against the newest one, field by field.
    pub changes: Vec<String>,
}

impl TaskReport {
    pub fn ok(&self) -> bool {
        matches!(self.verdict, TaskVerdict::Succeeded | TaskVerdict::Planned)
    }

    /// One line: what happened and why.
    pub fn explanation(&self) -> String {
        let stop = match (&self.stop_code, &self.stopped_reason) {
            (Some(c), Some(r)) => format!("stop code {c}: {r}"),
            (Some(c), None) => format!("stop code {c}"),
            (None, Some(r)) => r.clone(),
            (None, None) => "no stop code".into(),
        };
        let exit = match self.exit_code {
            Some(n) => format!("exit code {n}"),
            None => "no exit code".into(),
        };
        let container = self
            .container_reason
            .as_deref()
            .map(|r| format!("; container: {r}"))
            .unwrap_or_default();
        match self.verdict {
            TaskVerdict::Succeeded => format!("{} succeeded (exit code 0)", self.label),
            TaskVerdict::Failed => format!("{} failed: {exit} ({stop}{container})", self.label),
            TaskVerdict::FailedToStart => {
                format!("{} failed to start ({stop}{container})", self.label)
            }
            TaskVerdict::Interrupted => {
                format!(
                    "{} was stopped before it finished: {exit} ({stop})",
                    self.label
                )
            }
            TaskVerdict::TimedOut => format!(
                "{} did not finish within timeout-minutes and was stopped: {exit} ({stop})",
                self.label
            ),
            TaskVerdict::Planned => format!("{} planned (dry run): nothing started", self.label),
        }
    }

    /// The outputs every phase that runs a one-off task sets: `task-arn`, `exit-code`, `log-lines`.
    pub fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("task-arn", self.task_arn.clone().unwrap_or_default()),
            (
                "exit-code",
                self.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            ),
            ("log-lines", self.log_lines.to_string()),
        ]
    }

    /// The summary's icon for the verdict.
    pub fn icon(&self) -> &'static str {
        match self.verdict {
            TaskVerdict::Succeeded => "✅",
            TaskVerdict::Planned => "📝",
            TaskVerdict::Failed
            | TaskVerdict::FailedToStart
            | TaskVerdict::Interrupted
            | TaskVerdict::TimedOut => "❌",
        }
    }

    /// (name, value) rows for the summary and the text: task, task definition, image, and (unless planned) exit
    /// code, stop code and log lines.
    pub fn rows(&self, dry_run: bool) -> Vec<Vec<String>> {
        let mut rows = vec![];
        if let Some(arn) = &self.task_arn {
            let how = if self.attached {
                " (attached: it was already running)"
            } else {
                ""
            };
            rows.push(vec!["task".into(), format!("{arn}{how}")]);
        }
        if let Some(td) = &self.task_definition {
            rows.push(vec!["task definition".into(), td_short(td).to_string()]);
        }
        if let Some(image) = &self.image {
            rows.push(vec!["image".into(), image.clone()]);
        }
        if dry_run && !self.changes.is_empty() {
            rows.push(vec!["new revision".into(), self.changes.join("; ")]);
        }
        if !dry_run {
            rows.push(vec![
                "exit code".into(),
                self.exit_code.map_or("none".into(), |c| c.to_string()),
            ]);
            rows.push(vec![
                "stop code".into(),
                match (&self.stop_code, &self.stopped_reason) {
                    (Some(c), Some(r)) => format!("{c}: {r}"),
                    (Some(c), None) => c.clone(),
                    (None, _) => "none".into(),
                },
            ]);
            rows.push(vec![
                "log lines".into(),
                match &self.log_note {
                    Some(note) => format!("{} ({note})", self.log_lines),
                    None => self.log_lines.to_string(),
                },
            ]);
        }
        rows
    }

    /// The last lines as indented text after a blank line (empty when there are none).
    pub fn last_lines_text(&self) -> String {
        if self.last_lines.is_empty() {
            return String::new();
        }
        let mut s = format!(
            "\nlast {} of {} log lines:\n",
            self.last_lines.len(),
            self.log_lines
        );
        for l in &self.last_lines {
            s.push_str(&format!("  {l}\n"));
        }
        s
    }

    /// The last lines as a collapsed markdown block (empty when there are none).
    pub fn last_lines_markdown(&self) -> String {
        if self.last_lines.is_empty() {
            return String::new();
        }
        format!(
            "<details><summary>Last {} of {} log lines</summary>\n\n{}\n</details>\n",
            self.last_lines.len(),
            self.log_lines,
            crate::text::md_code_block("text", &self.last_lines.join("\n"))
        )
    }
}

/// Runs (or attaches to) the one-off task and follows it to the end. See the module docs.
pub async fn run(launch: &Launch<'_>, clients: &Clients, ctx: &Ctx) -> Result<TaskReport> {
    let started = Instant::now();
    let (plan, seen) = look(launch, clients, ctx).await?;
    match launch_or_attach(launch, clients, ctx, plan, &seen, started).await? {
        Launched::Planned(report) => Ok(*report),
        Launched::Task(followed) => follow(launch, clients, ctx, *followed, started).await,
    }
}

/// The task a run follows: the one it started, or one it attached to.
struct Followed {
    task: TaskView,
    attached: bool,
    td: aws_sdk_ecs::types::TaskDefinition,
    /// The image this run started the task with (`None` when attached).
    image: Option<String>,
    /// The revision this run registered for the task, if it registered one.
    registered: Option<String>,
}

/// What the launch came to: a dry run's report, or a task to follow.
enum Launched {
    Planned(Box<TaskReport>),
    Task(Box<Followed>),
}

/// Step 1: the launch plan from the tasks of this group; earlier tasks still stopping are waited for first (a dry
/// run only says so). Also the task ARNs seen, to tell a task another run starts meanwhile.
async fn look(
    launch: &Launch<'_>,
    clients: &Clients,
    ctx: &Ctx,
) -> Result<(LaunchPlan, Vec<String>)> {
    let label = launch.label();
    let version = launch.version.as_str();
    let group = group_name(&launch.environment.name, &launch.task.name);
    let mut looked = in_group(clients, launch, &group).await?;
    let mut plan = plan_launch(&looked, version, &label);
    if let LaunchPlan::WaitForStopping(arns) = &plan {
        if ctx.dry_run {
            tracing::info!("dry run: {} earlier {label} task(s) still stopping; a real run waits for them first", arns.len());
        } else {
            wait_all_stopped(clients, launch, arns, ctx).await?;
            looked = in_group(clients, launch, &group).await?;
            plan = plan_launch(&looked, version, &label);
        }
    }
    Ok((plan, looked.into_iter().map(|t| t.arn).collect()))
}

/// Applies the launch plan: refuse, attach, or prepare the revision and start the task (a dry run stops before the
/// first change and reports what it would do).
async fn launch_or_attach(
    launch: &Launch<'_>,
    clients: &Clients,
    ctx: &Ctx,
    plan: LaunchPlan,
    seen: &[String],
    started: Instant,
) -> Result<Launched> {
    let label = launch.label();
    let version = launch.version.as_str();
    match plan {
        LaunchPlan::Refuse(why) => bail!("{why}"),
        LaunchPlan::WaitForStopping(arns) if !ctx.dry_run => bail!(
            "earlier {label} tasks are still stopping after the wait ({}); run again in a minute",
            arns.join(", ")
        ),
        LaunchPlan::Attach(task) => {
            tracing::info!(
                "a {label} task for {version} is already running ({}): attaching to it instead of starting another",
                task.arn
            );
            if ctx.dry_run {
                return Ok(Launched::Planned(Box::new(planned(
                    &label,
                    Some(task.arn.clone()),
                    Some(task.task_definition.clone()),
                    None,
                    true,
                    started,
                ))));
            }
            Ok(Launched::Task(Box::new(
                attached(clients, *task, None).await?,
            )))
        }
        LaunchPlan::Start | LaunchPlan::WaitForStopping(_) => {
            let prepared = prepare(clients, launch).await?;
            let network = network(clients, launch, &prepared.latest).await?;
            if ctx.dry_run {
                let report = dry_run_report(launch, &prepared, started);
                return Ok(Launched::Planned(Box::new(report)));
            }
            // Under the launch lock: look at the group once more, then register and start. A run that looked at
            // the same moment and got here first has started its task by now, and this run follows it.
            not_started(ctx, &label, &format!("starting the {label} task"))?;
            let lock = LaunchLock::acquire(clients, launch, &prepared.latest, ctx).await?;
            let launched = start_locked(launch, clients, ctx, &prepared, network, seen).await;
            lock.release(clients).await;
            Ok(Launched::Task(Box::new(launched?)))
        }
    }
}

/// A task this run follows without having started it.
async fn attached(
    clients: &Clients,
    task: TaskView,
    registered: Option<String>,
) -> Result<Followed> {
    let td = ecs::task_definition(&clients.ecs, &task.task_definition).await?;
    Ok(Followed {
        task,
        attached: true,
        td,
        image: None,
        registered,
    })
}

/// At a step boundary before the task is started: a signal stops the run here (exit 130), nothing of it started.
fn not_started(ctx: &Ctx, label: &str, next: &str) -> Result<()> {
    ctx.stop_if_cancelled(next)
        .map_err(|e| anyhow!(e).context(format!("cancelled: the {label} task was not started")))
}

/// What a dry run would do: use or register the revision, and run it where, with which command.
fn dry_run_report(launch: &Launch<'_>, prepared: &Prepared, started: Instant) -> TaskReport {
    let (env, cfg) = (launch.environment, launch.task);
    let group = group_name(&env.name, &cfg.name);
    tracing::info!(
        "dry run: would {} and run it on {} ({}) with group {group}{}",
        if prepared.reuse {
            format!(
                "use {} (already runs {})",
                td_short(prepared.latest.task_definition_arn().unwrap_or_default()),
                prepared.image
            )
        } else {
            format!(
                "register a revision of {} with {} = {}",
                cfg.family, cfg.container, prepared.image
            )
        },
        env.cluster,
        cfg.launch_type,
        launch
            .command()
            .map(|c| format!(", command {c:?}"))
            .unwrap_or_default()
    );
    let changes = if prepared.reuse {
        vec![]
    } else {
        prepared.diff.lines()
    };
    for line in &changes {
        tracing::info!("  {line}");
    }
    TaskReport {
        changes,
        ..planned(
            &launch.label(),
            None,
            None,
            Some(prepared.image.clone()),
            false,
            started,
        )
    }
}

/// Steps 2 and 3 under the launch lock: unless another run started the task meanwhile (then it is followed), the
/// revision is registered (or reused) and the task started. A signal stops before each change.
async fn start_locked(
    launch: &Launch<'_>,
    clients: &Clients,
    ctx: &Ctx,
    prepared: &Prepared,
    network: Option<NetworkConfiguration>,
    seen: &[String],
) -> Result<Followed> {
    let (env, cfg) = (launch.environment, launch.task);
    let label = launch.label();
    let version = launch.version.as_str();
    let group = group_name(&env.name, &cfg.name);
    let now = in_group(clients, launch, &group).await?;
    if let Some(task) = started_meanwhile(seen, &now, version) {
        tracing::info!(
            "another run started a {label} task for {version} meanwhile ({}, {}): following it instead of starting another",
            task.arn,
            task.last_status
        );
        return attached(clients, task.clone(), None).await;
    }
    match plan_launch(&now, version, &label) {
        LaunchPlan::Attach(task) => {
            tracing::info!(
                "a {label} task for {version} was started meanwhile by another run ({}): attaching to it",
                task.arn
            );
            return attached(clients, *task, None).await;
        }
        LaunchPlan::Refuse(why) => bail!("{why}"),
        LaunchPlan::WaitForStopping(arns) => bail!(
            "earlier {label} tasks started stopping meanwhile ({}); run again in a minute",
            arns.join(", ")
        ),
        LaunchPlan::Start => {}
    }
    let (td, registered) = revision_to_run(launch, clients, ctx, prepared).await?;
    let td_arn = td.task_definition_arn().unwrap_or_default().to_string();
    let token = format!("deploy-action-{:032x}", rand::random::<u128>());
    let run_tags = {
        let mut t = tags::standard(&env.name, version, ctx.github.run_key().as_deref());
        t.push((tags::TASK.to_string(), cfg.name.clone()));
        t.push((tags::LAUNCH.to_string(), token.clone()));
        t
    };
    let input = ecs::RunTaskInput {
        cluster: &env.cluster,
        task_definition: &td_arn,
        launch_type: &cfg.launch_type,
        network,
        container: &cfg.container,
        command: launch.command(),
        started_by: STARTED_BY,
        group: &group,
        tags: &run_tags,
        client_token: &token,
    };
    not_started(ctx, &label, &format!("RunTask of the {label} task"))?;
    let (task, attached_to) = start(clients, launch, &group, &input, ctx).await?;
    if attached_to {
        return attached(clients, task, registered).await;
    }
    Ok(Followed {
        task,
        attached: false,
        td,
        image: Some(prepared.image.clone()),
        registered,
    })
}

/// The latest revision when it already is exactly the one to run; else a new one, registered (a signal stops before
/// it). The revision, and its ARN when this run registered it.
async fn revision_to_run(
    launch: &Launch<'_>,
    clients: &Clients,
    ctx: &Ctx,
    prepared: &Prepared,
) -> Result<(aws_sdk_ecs::types::TaskDefinition, Option<String>)> {
    let cfg = launch.task;
    let label = launch.label();
    if prepared.reuse {
        tracing::info!(
            "{} already runs {} for {}; using it",
            td_short(prepared.latest.task_definition_arn().unwrap_or_default()),
            prepared.image,
            launch.version.as_str()
        );
        return Ok((prepared.latest.clone(), None));
    }
    not_started(
        ctx,
        &label,
        &format!("registering a revision of {} for {label}", cfg.family),
    )?;
    for line in prepared.diff.lines() {
        tracing::info!("new revision of {}: {line}", cfg.family);
    }
    let td = ecs::register_revision(
        &clients.ecs,
        &prepared.latest,
        prepared.containers.clone(),
        prepared.tags.clone(),
    )
    .await
    .with_context(|| format!("registering a revision of {} for {label}", cfg.family))?;
    tracing::info!(
        "registered {} with {} = {}",
        td_short(td.task_definition_arn().unwrap_or_default()),
        cfg.container,
        prepared.image
    );
    let registered = td.task_definition_arn().map(str::to_string);
    Ok((td, registered))
}

/// What following a task works with.
struct Following<'a> {
    launch: &'a Launch<'a>,
    clients: &'a Clients,
    ctx: &'a Ctx,
    arn: &'a str,
    id: &'a str,
    tail: &'a Mutex<Option<Tail>>,
}

/// Steps 4 and 5: follows the task and its logs until it stopped (stopping it at the deadline, or when the run is
/// cancelled), then judges it.
async fn follow(
    launch: &Launch<'_>,
    clients: &Clients,
    ctx: &Ctx,
    f: Followed,
    started: Instant,
) -> Result<TaskReport> {
    let (cfg, label) = (launch.task, launch.label());
    let id = f.task.id().to_string();
    tracing::info!(
        "{label} task {id} ({}): {}",
        td_short(&f.task.task_definition),
        f.task.last_status
    );
    let tail = match tail_for(clients, &f.td, &cfg.container, &id) {
        Ok(t) => Some(t),
        Err(why) => {
            tracing::warn!(
                "{why}; the {label}'s output is not followed here (see the ECS console)"
            );
            None
        }
    };
    let log_stream = tail
        .as_ref()
        .map(|t| format!("{} {}", t.target.group, t.target.stream));
    let log_note = tail
        .is_none()
        .then(|| "output not followed: no awslogs stream".to_string());
    let tail = Mutex::new(tail);
    let section = LogSection::open(
        &ctx.runner,
        &format!("{label} logs: {} ({id})", cfg.container),
    );
    let fl = Following {
        launch,
        clients,
        ctx,
        arn: &f.task.arn,
        id: &id,
        tail: &tail,
    };
    let poller = ctx.poller(format!("{label} task {id}"), TAIL);
    let (view, timed_out) = match watch(clients, launch, &f.task.arn, &tail, poller).await {
        Ok(view) => (view, false),
        Err(WaitError::Timeout { .. }) => (fl.stop_at_deadline(started).await?, true),
        Err(cancelled @ WaitError::Cancelled { .. }) => {
            return Err(fl.stop_on_cancel(section, cancelled).await)
        }
        Err(WaitError::Failed(e)) => {
            return Err(e.context(format!(
                "could not follow {label} task {}; it may still be running: run the phase again to attach to it, or see the ECS console",
                f.task.arn
            )));
        }
    };
    drain(&tail, DRAIN_GRACE, ctx.pace).await;
    drop(section);
    let logs = (log_stream, log_note);
    Ok(judged(
        label,
        f,
        view,
        timed_out,
        tail.into_inner(),
        logs,
        started,
    ))
}

impl Following<'_> {
    /// The deadline came: StopTask with the reason, then wait (within [`STOP_GRACE`]) until it stopped.
    async fn stop_at_deadline(&self, started: Instant) -> Result<TaskView> {
        let (label, id, arn) = (self.launch.label(), self.id, self.arn);
        let reason = format!(
            "deploy-action: timeout-minutes reached after {}",
            human(started.elapsed())
        );
        tracing::warn!(
            "{label} task {id} is still running at the deadline: stopping it ({reason})"
        );
        ecs::stop_task(&self.clients.ecs, &self.launch.environment.cluster, arn, &reason)
            .await
            .with_context(|| format!("{label} task {arn} did not finish within timeout-minutes and could not be stopped; stop it in the ECS console"))?;
        let grace = Poller::new(
            format!("{label} task {id} to stop"),
            self.ctx.pace.of(TAIL),
            Instant::now() + STOP_GRACE,
            self.ctx.cancel.clone(),
        );
        watch(self.clients, self.launch, arn, self.tail, grace)
            .await
            .map_err(|e| {
                anyhow!(e).context(format!(
                    "{label} task {arn} did not finish within timeout-minutes; StopTask was sent"
                ))
            })
    }

    /// The run was cancelled: the task is stopped ("cancelled by workflow"), waited for briefly (the runner kills
    /// soon after), its last lines read; the error to end the phase with (exit 130).
    async fn stop_on_cancel(&self, section: LogSection, cancelled: WaitError) -> anyhow::Error {
        let (label, id, arn) = (self.launch.label(), self.id, self.arn);
        let ctx = self.ctx;
        tracing::warn!("cancelled by workflow: stopping {label} task {arn}");
        let cluster = &self.launch.environment.cluster;
        let stop = ecs::stop_task(&self.clients.ecs, cluster, arn, "cancelled by workflow").await;
        let grace = Poller::new(
            format!("{label} task {id} to stop"),
            ctx.pace.of(TAIL),
            Instant::now() + CANCEL_GRACE,
            CancellationToken::new(),
        );
        let stopped = match &stop {
            Ok(()) => watch(self.clients, self.launch, arn, self.tail, grace)
                .await
                .ok(),
            Err(_) => None,
        };
        if stopped.is_some() {
            drain(self.tail, CANCEL_GRACE, ctx.pace).await;
        }
        drop(section);
        let msg = match (&stop, &stopped) {
            (Err(e), _) => format!("cancelled by workflow; StopTask for {label} task {arn} failed ({e}): stop it in the ECS console"),
            (Ok(()), Some(_)) => format!("cancelled by workflow: {label} task {arn} stopped"),
            (Ok(()), None) => format!("cancelled by workflow: StopTask sent for {label} task {arn}; ECS is stopping it"),
        };
        tracing::warn!("{msg}");
        anyhow!(cancelled).context(msg)
    }
}

/// Step 5: the report of a stopped task, its verdict logged.
fn judged(
    label: String,
    f: Followed,
    view: TaskView,
    timed_out: bool,
    tail: Option<Tail>,
    (log_stream, log_note): (Option<String>, Option<String>),
    started: Instant,
) -> TaskReport {
    let verdict = match (timed_out, &view.stop_code) {
        (true, StopCode::UserInitiated) => TaskVerdict::TimedOut,
        _ => verdict(&view.stop_code, view.exit_code),
    };
    let report = TaskReport {
        label,
        task_arn: Some(view.arn.clone()),
        task_definition: Some(view.task_definition.clone()),
        image: f.image,
        attached: f.attached,
        registered: f.registered,
        verdict,
        exit_code: view.exit_code,
        stop_code: (view.stop_code != StopCode::None).then(|| view.stop_code.as_str().to_string()),
        stopped_reason: view.stopped_reason.clone(),
        container_reason: view.container_reason.clone(),
        log_lines: tail.as_ref().map_or(0, |t| t.lines),
        last_lines: tail
            .as_ref()
            .map(|t| t.last.iter().cloned().collect())
            .unwrap_or_default(),
        log_lag: tail.as_ref().filter(|t| t.lines > 0).map(|t| t.lag),
        log_stream,
        log_note,
        duration_seconds: started.elapsed().as_secs(),
        changes: vec![],
    };
    if report.ok() {
        tracing::info!(
            "{} ({} log lines, {})",
            report.explanation(),
            report.log_lines,
            human(started.elapsed())
        );
    } else {
        tracing::error!("{}", report.explanation());
    }
    report
}

fn planned(
    label: &str,
    arn: Option<String>,
    td: Option<String>,
    image: Option<String>,
    attached: bool,
    started: Instant,
) -> TaskReport {
    TaskReport {
        label: label.to_string(),
        task_arn: arn,
        task_definition: td,
        image,
        attached,
        registered: None,
        verdict: TaskVerdict::Planned,
        exit_code: None,
        stop_code: None,
        stopped_reason: None,
        container_reason: None,
        log_lines: 0,
        last_lines: vec![],
        log_lag: None,
        log_stream: None,
        log_note: None,
        duration_seconds: started.elapsed().as_secs(),
        changes: vec![],
    }
}

/// The launch plan [`run`] would start from (read-only): callers that change things before [`run`] (migrate brings
/// the environment to db-only) refuse early on [`LaunchPlan::Refuse`].
pub async fn plan(launch: &Launch<'_>, clients: &Clients) -> Result<LaunchPlan> {
    let group = group_name(&launch.environment.name, &launch.task.name);
    let tasks = in_group(clients, launch, &group).await?;
    Ok(plan_launch(
        &tasks,
        launch.version.as_str(),
        &launch.label(),
    ))
}

/// Tasks of the family in this group: those ECS wants running, and recently stopped ones still stopping.
async fn in_group(clients: &Clients, launch: &Launch<'_>, group: &str) -> Result<Vec<TaskView>> {
    let cluster = &launch.environment.cluster;
    let family = &launch.task.family;
    let (running, stopped) = tokio::try_join!(
        ecs::list_tasks(&clients.ecs, cluster, family, DesiredStatus::Running),
        ecs::list_tasks(&clients.ecs, cluster, family, DesiredStatus::Stopped),
    )?;
    let mut arns = running;
    arns.extend(stopped);
    if arns.is_empty() {
        return Ok(vec![]);
    }
    let tasks = ecs::describe_tasks(&clients.ecs, cluster, &arns).await?;
    Ok(tasks
        .iter()
        .filter(|t| t.group() == Some(group))
        .map(|t| TaskView::of(t, &launch.task.container))
        .collect())
}

async fn wait_all_stopped(
    clients: &Clients,
    launch: &Launch<'_>,
    arns: &[String],
    ctx: &Ctx,
) -> Result<()> {
    let label = launch.label();
    tracing::info!(
        "waiting for {} earlier {label} task(s) to stop before starting a new one: {}",
        arns.len(),
        arns.join(", ")
    );
    ctx.poller(format!("earlier {label} tasks to stop"), Backoff::FAST)
        .run(|| async {
            let tasks =
                ecs::describe_tasks(&clients.ecs, &launch.environment.cluster, arns).await?;
            let left = tasks
                .iter()
                .filter(|t| t.last_status() != Some("STOPPED"))
                .count();
            Ok(if left == 0 {
                Check::Done(())
            } else {
                Check::Pending(format!("{left} earlier {label} task(s) still stopping"))
            })
        })
        .await?;
    Ok(())
}

/// The latest ACTIVE revision and the revision to register from it.
struct Prepared {
    latest: aws_sdk_ecs::types::TaskDefinition,
    containers: Vec<aws_sdk_ecs::types::ContainerDefinition>,
    tags: Vec<aws_sdk_ecs::types::Tag>,
    image: String,
    /// The latest revision already is exactly the one to run.
    reuse: bool,
    /// `containers` against the latest revision's.
    diff: RevisionDiff,
}

async fn prepare(clients: &Clients, launch: &Launch<'_>) -> Result<Prepared> {
    let cfg = launch.task;
    let key = launch.key();
    let Some((latest, td_tags)) = ecs::latest_task_definition(&clients.ecs, &cfg.family).await?
    else {
        bail!(
            "task definition family {} has no ACTIVE revision; register one, or correct {key}.family in the config",
            cfg.family
        );
    };
    let name = td_short(latest.task_definition_arn().unwrap_or_default()).to_string();
    let secrets = revision::ssm_secrets(&clients.ssm, launch.environment).await?;
    let mut containers = latest.container_definitions().to_vec();
    let Some(target) = containers
        .iter_mut()
        .find(|c| c.name.as_deref() == Some(cfg.container.as_str()))
    else {
        let names: Vec<&str> = latest
            .container_definitions()
            .iter()
            .filter_map(|c| c.name())
            .collect();
        bail!(
            "{name} has no container {:?} (it has: {}); correct {key}.container in the config",
            cfg.container,
            names.join(", ")
        );
    };
    let current = target.image.clone().unwrap_or_default();
    let image = cfg.image.image_for(launch.version, &current)?;
    // The same secrets as the services (references, never values); one deleted from the path leaves the revision.
    if let Some(ssm) = &secrets {
        if let Some(line) = revision::removed_line(&launch.label(), target, ssm) {
            tracing::info!("plan: {line}");
        }
        *target = revision::merge(target, ssm);
    }
    target.image = Some(image.clone());
    let mut tags = ecs::tag_pairs(&td_tags);
    let wanted: Vec<(String, String)> =
        std::iter::once((tags::VERSION.to_string(), launch.version.to_string()))
            .chain(launch.revision_tags.iter().cloned())
            .collect();
    let tagged = wanted
        .iter()
        .all(|(k, v)| tags::get(&tags, k) == Some(v.as_str()));
    tags.retain(|(k, _)| !wanted.iter().any(|(w, _)| w == k));
    tags.extend(wanted);
    Ok(Prepared {
        diff: revision_diff::diff(latest.container_definitions(), &containers),
        reuse: containers.as_slice() == latest.container_definitions()
            && tagged
            && ecs::runnable(&latest),
        latest,
        containers,
        tags: ecs::ecs_tags(&tags),
        image,
    })
}

/// The awsvpc settings: from the config, or copied from the core service named by `network-from-service`.
async fn network(
    clients: &Clients,
    launch: &Launch<'_>,
    td: &aws_sdk_ecs::types::TaskDefinition,
) -> Result<Option<NetworkConfiguration>> {
    let awsvpc = td.network_mode() == Some(&NetworkMode::Awsvpc);
    let net = match &launch.task.network {
        TaskNetwork::Explicit(n) => Some(
            NetworkConfiguration::builder()
                .awsvpc_configuration(
                    AwsVpcConfiguration::builder()
                        .set_subnets(Some(n.subnets.clone()))
                        .set_security_groups(Some(n.security_groups.clone()))
                        .assign_public_ip(if n.assign_public_ip {
                            AssignPublicIp::Enabled
                        } else {
                            AssignPublicIp::Disabled
                        })
                        .build()
                        .context("network settings")?,
                )
                .build(),
        ),
        TaskNetwork::FromService(name) => {
            let svc = ecs::describe_services(
                &clients.ecs,
                &launch.environment.cluster,
                std::slice::from_ref(name),
            )
            .await?;
            let net = svc.first().and_then(|s| s.network_configuration()).cloned();
            if net.is_none() && awsvpc {
                bail!(
                    "service {name} has no awsvpc network configuration to copy for {}; set {}.network (subnets, security-groups) in the config",
                    launch.label(),
                    launch.key()
                );
            }
            net
        }
    };
    Ok(if awsvpc { net } else { None })
}

/// RunTask once per attempt; after an ambiguous failure, the group is looked up before the next attempt.
async fn start(
    clients: &Clients,
    launch: &Launch<'_>,
    group: &str,
    input: &ecs::RunTaskInput<'_>,
    ctx: &Ctx,
) -> Result<(TaskView, bool)> {
    let label = launch.label();
    let attempts = AtomicU32::new(0);
    let started = ctx
        .poller(format!("starting the {label} task"), Backoff::FAST)
        .run(|| async {
            if attempts.fetch_add(1, Ordering::SeqCst) > 0 {
                // The last attempt may have started the task after all: look before trying again. Ours carries this
                // launch's token (whatever its status); one someone else started meanwhile is followed, not doubled.
                let found = in_group(clients, launch, group).await?;
                let ours = found
                    .iter()
                    .find(|t| t.launch.as_deref() == Some(input.client_token));
                let running = found
                    .iter()
                    .find(|t| !t.stopped() && t.desired_status != "STOPPED");
                if let Some(t) = ours {
                    tracing::info!(
                        "the {label} task was started after all ({}); following it",
                        t.arn
                    );
                    return Ok(Check::Done((t.clone(), false)));
                }
                if let Some(t) = running {
                    tracing::info!(
                        "a {label} task was started meanwhile by another run ({}); attaching to it",
                        t.arn
                    );
                    return Ok(Check::Done((t.clone(), true)));
                }
            }
            let task = ecs::run_task_once(&clients.ecs, input).await?;
            let task = TaskView::of(&task, &launch.task.container);
            tracing::info!("started {label} task {}", task.arn);
            Ok(Check::Done((task, false)))
        })
        .await;
    match started {
        Ok(started) => Ok(started),
        Err(WaitError::Failed(e)) => Err(e.context(format!("could not start the {label} task"))),
        Err(e) => Err(anyhow!(e).context(format!("could not start the {label} task"))),
    }
}

/// Polls the task (and reads its logs) until it is STOPPED.
async fn watch(
    clients: &Clients,
    launch: &Launch<'_>,
    arn: &str,
    tail: &Mutex<Option<Tail>>,
    poller: Poller,
) -> Result<TaskView, WaitError> {
    let label = launch.label();
    poller
        .run(|| async {
            if let Some(t) = tail.lock().await.as_mut() {
                t.read().await?;
            }
            let tasks = ecs::describe_tasks(
                &clients.ecs,
                &launch.environment.cluster,
                &[arn.to_string()],
            )
            .await?;
            let Some(task) = tasks.first() else {
                bail!(
                    "ECS no longer knows task {arn} (it forgets stopped tasks after about an hour)"
                );
            };
            let view = TaskView::of(task, &launch.task.container);
            Ok(if view.stopped() {
                Check::Done(view)
            } else {
                Check::Pending(format!("{label} task {}: {}", view.id(), view.last_status))
            })
        })
        .await
}

/// Reads the rest of the stream after the task stopped (until the forward token stops moving), through throttling.
async fn drain(tail: &Mutex<Option<Tail>>, grace: Duration, pace: Pace) {
    let mut guard = tail.lock().await;
    let Some(t) = guard.as_mut() else { return };
    let t = Mutex::new(t);
    let poller = Poller::new(
        "reading the last log lines",
        pace.of(TAIL),
        Instant::now() + grace,
        CancellationToken::new(),
    );
    let res = poller
        .run(|| async {
            t.lock().await.read().await?;
            Ok(Check::Done(()))
        })
        .await;
    if let Err(e) = res {
        tracing::warn!(
            "{e}; the log may miss its last lines (see {} {} in CloudWatch)",
            t.lock().await.target.group,
            t.lock().await.target.stream
        );
    }
}

fn tail_for(
    clients: &Clients,
    td: &aws_sdk_ecs::types::TaskDefinition,
    container: &str,
    task_id: &str,
) -> Result<Tail, String> {
    let c = td
        .container_definitions()
        .iter()
        .find(|c| c.name() == Some(container))
        .ok_or_else(|| {
            format!(
                "{} has no container {container}",
                td_short(td.task_definition_arn().unwrap_or_default())
            )
        })?;
    let lc = c.log_configuration();
    let target = log_target(
        lc.map(|l| l.log_driver().as_str()),
        &lc.and_then(|l| l.options()).cloned().unwrap_or_default(),
        container,
        task_id,
    )?;
    let client = match &target.region {
        Some(r) if Some(r.as_str()) != clients.logs.config().region().map(|x| x.as_ref()) => {
            aws_sdk_cloudwatchlogs::Client::from_conf(
                clients
                    .logs
                    .config()
                    .to_builder()
                    .region(aws_config::Region::new(r.clone()))
                    .build(),
            )
        }
        _ => clients.logs.clone(),
    };
    Ok(Tail {
        client,
        target,
        token: None,
        lines: 0,
        last: VecDeque::new(),
        lag: Lag::default(),
    })
}

/// Follows one log stream: everything after the last event read, printed as it comes.
struct Tail {
    client: aws_sdk_cloudwatchlogs::Client,
    target: LogTarget,
    token: Option<String>,
    lines: u64,
    last: VecDeque<String>,
    lag: Lag,
}

/// From a line's timestamp to the moment it was printed here, over every line read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Lag {
    pub max_ms: u64,
    pub mean_ms: u64,
    #[serde(skip)]
    sum_ms: u128,
    #[serde(skip)]
    n: u64,
}

impl Lag {
    fn add(&mut self, ms: u64) {
        self.max_ms = self.max_ms.max(ms);
        self.sum_ms += u128::from(ms);
        self.n += 1;
        self.mean_ms = (self.sum_ms / u128::from(self.n)) as u64;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Tail {
    /// Reads every event after the last one read, page after page, until the forward token stops moving. A stream
    /// that does not exist yet has nothing to read.
    async fn read(&mut self) -> Result<(), crate::aws::AwsError> {
        loop {
            let Some(page) = logs::events_after(
                &self.client,
                &self.target.group,
                &self.target.stream,
                self.token.as_deref(),
            )
            .await?
            else {
                return Ok(());
            };
            for e in page.events {
                let line = e.message.trim_end_matches(['\n', '\r']).to_string();
                tracing::info!("{line}");
                self.lines += 1;
                if let Some(ts) = e.timestamp {
                    self.lag.add(now_ms().saturating_sub(ts).max(0) as u64);
                }
                if self.last.len() == LAST_LINES {
                    self.last.pop_front();
                }
                self.last.push_back(line);
            }
            let moved = page.next_forward_token.is_some() && page.next_forward_token != self.token;
            if page.next_forward_token.is_some() {
                self.token = page.next_forward_token;
            }
            if !moved {
                return Ok(());
            }
        }
    }
}

/// A log group in the job log whose lines the runner does not interpret as workflow commands (the task's output
/// could contain `::` lines): `::stop-commands::` inside the group, resumed before it closes.
struct LogSection {
    resume: Option<String>,
    _group: Group,
}

impl LogSection {
    fn open(runner: &Runner, title: &str) -> LogSection {
        let group = runner.group(title);
        let resume = runner.on_actions.then(|| {
            let token = format!("deploy-action-{:016x}", rand::random::<u64>());
            eprintln!("::stop-commands::{token}");
            token
        });
        LogSection {
            resume,
            _group: group,
        }
    }
}

impl Drop for LogSection {
    fn drop(&mut self) {
        if let Some(token) = &self.resume {
            eprintln!("::{token}::");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The launch lock
// ---------------------------------------------------------------------------------------------------------------

/// Tag key prefix on the cluster: `deploy-action:launch-lock:<hash of the group>` = `<claim> <unix ms>`.
pub const TAG_LAUNCH_LOCK: &str = "deploy-action:launch-lock";
/// A claim older than this is left over from a run that died while starting its task; it is taken over.
pub const LOCK_TTL: Duration = Duration::from_secs(120);
/// The claim is read back one poll later (at least a second): a run that read the lock free at the same moment as
/// this one has written its own claim by then, and only the later writer goes on.
const LOCK_POLL: Backoff = Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(2),
};

/// Who holds a group's launch lock, from the tag's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockHolder {
    Free,
    Mine,
    /// Another run's claim, younger than [`LOCK_TTL`] (its age, for the log).
    Other(Duration),
    /// A claim older than [`LOCK_TTL`], or one that cannot be read.
    Stale,
}

/// Pure: the holder of a lock whose tag holds `value`, for the run with `claim`, at `now_ms`.
pub fn lock_holder(value: Option<&str>, claim: &str, now_ms: i64) -> LockHolder {
    let Some(value) = value else {
        return LockHolder::Free;
    };
    let (who, since) = match value.split_once(' ') {
        Some((who, since)) => (who, since.parse::<i64>().ok()),
        None => (value, None),
    };
    if who == claim {
        return LockHolder::Mine;
    }
    match since {
        Some(since) if now_ms.saturating_sub(since) < LOCK_TTL.as_millis() as i64 => {
            LockHolder::Other(Duration::from_millis(
                now_ms.saturating_sub(since).max(0) as u64
            ))
        }
        Some(_) | None => LockHolder::Stale,
    }
}

/// Pure: the ARN of `cluster` (a name or an ARN) in the partition, region and account of a task definition ARN.
pub fn cluster_arn(cluster: &str, task_definition_arn: &str) -> Option<String> {
    if cluster.starts_with("arn:") {
        return Some(cluster.to_string());
    }
    match task_definition_arn.splitn(6, ':').collect::<Vec<_>>()[..] {
        ["arn", partition, "ecs", region, account, _] => Some(format!(
            "arn:{partition}:ecs:{region}:{account}:cluster/{cluster}"
        )),
        _ => None,
    }
}

/// The tag key of a group's launch lock (tag keys are short: the group is hashed).
pub fn lock_key(group: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(group.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{TAG_LAUNCH_LOCK}:{hex}")
}

/// A claim on starting the one task of a group: held from the last look at the group until RunTask answered, so two
/// runs that look at the same moment do not both start one. ECS has no conditional write; the claim is a tag on the
/// cluster, written and then read back a poll later (see [`LOCK_POLL`]).
struct LaunchLock {
    cluster_arn: String,
    key: String,
    claim: String,
}

impl LaunchLock {
    async fn acquire(
        clients: &Clients,
        launch: &Launch<'_>,
        td: &aws_sdk_ecs::types::TaskDefinition,
        ctx: &Ctx,
    ) -> Result<LaunchLock> {
        let env = launch.environment;
        let group = group_name(&env.name, &launch.task.name);
        let label = launch.label();
        let cluster_arn = cluster_arn(&env.cluster, td.task_definition_arn().unwrap_or_default())
            .ok_or_else(|| {
            anyhow!(
                "cannot tell the ARN of cluster {} from {}",
                env.cluster,
                td.task_definition_arn().unwrap_or_default()
            )
        })?;
        let lock = LaunchLock {
            key: lock_key(&group),
            claim: format!("run-{:016x}", rand::random::<u64>()),
            cluster_arn,
        };
        let claimed = std::sync::atomic::AtomicBool::new(false);
        let got = ctx
            .poller(format!("the launch lock of the {label} task"), LOCK_POLL)
            .run(|| async {
                let tags = ecs::tags(&clients.ecs, &lock.cluster_arn).await?;
                match lock_holder(tags::get(&tags, &lock.key), &lock.claim, now_ms()) {
                    LockHolder::Mine if claimed.load(Ordering::SeqCst) => Ok(Check::Done(())),
                    LockHolder::Mine => {
                        claimed.store(true, Ordering::SeqCst);
                        Ok(Check::Pending(String::new()))
                    }
                    LockHolder::Other(age) => {
                        claimed.store(false, Ordering::SeqCst);
                        Ok(Check::Pending(format!(
                            "another run is starting a {label} task for {} (its claim is {} old); waiting for it",
                            env.name,
                            human(age)
                        )))
                    }
                    LockHolder::Free | LockHolder::Stale => {
                        let value = format!("{} {}", lock.claim, now_ms());
                        ecs::tag(&clients.ecs, &lock.cluster_arn, &[(lock.key.as_str(), value)]).await?;
                        claimed.store(true, Ordering::SeqCst);
                        Ok(Check::Pending(String::new()))
                    }
                }
            })
            .await;
        match got {
            Ok(()) => Ok(lock),
            Err(e) => {
                lock.release(clients).await;
                Err(anyhow!(e).context(format!("could not start the {label} task")))
            }
        }
    }

    /// Removes the claim if it still is this run's; a failure only delays the next launch by [`LOCK_TTL`].
    async fn release(&self, clients: &Clients) {
        let result = async {
            let tags = ecs::tags(&clients.ecs, &self.cluster_arn).await?;
            if lock_holder(tags::get(&tags, &self.key), &self.claim, now_ms()) == LockHolder::Mine {
                ecs::untag(&clients.ecs, &self.cluster_arn, &self.key).await?;
            }
            Ok::<(), crate::aws::AwsError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(
                "{e}; the launch lock {} on {} expires by itself in {}",
                self.key,
                self.cluster_arn,
                human(LOCK_TTL)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_started_meanwhile_is_followed() {
        let seen = vec![task("old", "STOPPED", "STOPPED", Some("v1")).arn];
        let cases: Vec<(Vec<TaskView>, Option<&str>)> = vec![
            (vec![], None),
            (vec![task("old", "STOPPED", "STOPPED", Some("v1"))], None),
            (
                vec![
                    task("old", "STOPPED", "STOPPED", Some("v1")),
                    task("new", "RUNNING", "RUNNING", Some("v1")),
                ],
                Some("new"),
            ),
            (
                vec![task("done", "STOPPED", "STOPPED", Some("v1"))],
                Some("done"),
            ),
            (vec![task("other", "RUNNING", "RUNNING", Some("v0"))], None),
            (
                vec![
                    task("done", "STOPPED", "STOPPED", Some("v1")),
                    task("live", "PROVISIONING", "RUNNING", Some("v1")),
                ],
                Some("live"),
            ),
        ];
        for (now, want) in cases {
            let got = started_meanwhile(&seen, &now, "v1").map(|t| t.id().to_string());
            assert_eq!(got.as_deref(), want, "{now:?}");
        }
    }

    #[test]
    fn launch_lock_holders() {
        let now = 1_800_000_000_000;
        let ttl = LOCK_TTL.as_millis() as i64;
        let cases: Vec<(Option<String>, LockHolder)> = vec![
            (None, LockHolder::Free),
            (Some(format!("run-a {now}")), LockHolder::Mine),
            (Some(format!("run-a {}", now - ttl * 10)), LockHolder::Mine),
            (
                Some(format!("run-b {}", now - 1500)),
                LockHolder::Other(Duration::from_millis(1500)),
            ),
            (
                Some(format!("run-b {}", now + 500)),
                LockHolder::Other(Duration::ZERO),
            ),
            (Some(format!("run-b {}", now - ttl)), LockHolder::Stale),
            (Some("run-b".into()), LockHolder::Stale),
            (Some("run-b soon".into()), LockHolder::Stale),
        ];
        for (value, want) in cases {
            assert_eq!(
                lock_holder(value.as_deref(), "run-a", now),
                want,
                "{value:?}"
            );
        }
    }

    #[test]
    fn cluster_arns_and_lock_keys() {
        let td = "arn:aws:ecs:eu-central-1:123456789012:task-definition/stage-migrate:3";
        assert_eq!(
            cluster_arn("app-stage", td).as_deref(),
            Some("arn:aws:ecs:eu-central-1:123456789012:cluster/app-stage")
        );
        let given = "arn:aws-cn:ecs:cn-north-1:1:cluster/x";
        assert_eq!(cluster_arn(given, td).as_deref(), Some(given));
        assert_eq!(cluster_arn("app-stage", "stage-migrate:3"), None);
        let key = lock_key("deploy-action:stage:migration");
        assert!(
            key.starts_with("deploy-action:launch-lock:") && key.len() <= 128,
            "{key}"
        );
        assert_ne!(key, lock_key("deploy-action:prod:migration"));
    }

    #[test]
    fn verdicts() {
        use StopCode as S;
        let cases = [
            (S::EssentialContainerExited, Some(0), TaskVerdict::Succeeded),
            (S::EssentialContainerExited, Some(1), TaskVerdict::Failed),
            (S::EssentialContainerExited, Some(137), TaskVerdict::Failed),
            (S::EssentialContainerExited, None, TaskVerdict::Failed),
            (S::TaskFailedToStart, None, TaskVerdict::FailedToStart),
            (S::TaskFailedToStart, Some(0), TaskVerdict::FailedToStart),
            (S::UserInitiated, Some(0), TaskVerdict::Interrupted),
            (S::UserInitiated, Some(137), TaskVerdict::Interrupted),
            (
                S::ServiceSchedulerInitiated,
                Some(0),
                TaskVerdict::Interrupted,
            ),
            (S::SpotInterruption, Some(0), TaskVerdict::Interrupted),
            (S::TerminationNotice, None, TaskVerdict::Interrupted),
            (S::InfrastructureHealth, Some(0), TaskVerdict::Interrupted),
            (S::None, Some(0), TaskVerdict::Failed),
            (
                S::Other("SomethingNew".into()),
                Some(0),
                TaskVerdict::Failed,
            ),
        ];
        for (stop, exit, want) in cases {
            assert_eq!(verdict(&stop, exit), want, "{stop:?} {exit:?}");
        }
        assert_eq!(
            StopCode::of(Some(&TaskStopCode::from("Brand new"))),
            S::Other("Brand new".into())
        );
        assert_eq!(StopCode::of(None), S::None);
    }

    fn task(id: &str, last: &str, desired: &str, version: Option<&str>) -> TaskView {
        TaskView {
            arn: format!("arn:aws:ecs:r:1:task/c/{id}"),
            last_status: last.into(),
            desired_status: desired.into(),
            stop_code: StopCode::None,
            stopped_reason: None,
            exit_code: None,
            container_reason: None,
            group: Some("deploy-action:stage:migration".into()),
            version: version.map(str::to_string),
            launch: None,
            task_definition: "td".into(),
        }
    }

    #[test]
    fn launch_plans() {
        let v1 = Some("v1");
        let cases: Vec<(Vec<TaskView>, &str)> = vec![
            (vec![], "start"),
            (vec![task("a", "STOPPED", "STOPPED", v1)], "start"),
            (vec![task("a", "RUNNING", "RUNNING", v1)], "attach a"),
            (
                vec![
                    task("a", "PROVISIONING", "RUNNING", v1),
                    task("b", "STOPPED", "STOPPED", v1),
                ],
                "attach a",
            ),
            (vec![task("a", "RUNNING", "RUNNING", Some("v0"))], "refuse"),
            (vec![task("a", "RUNNING", "RUNNING", None)], "refuse"),
            (
                vec![
                    task("a", "RUNNING", "RUNNING", v1),
                    task("b", "PENDING", "RUNNING", v1),
                ],
                "refuse",
            ),
            (vec![task("a", "DEACTIVATING", "STOPPED", v1)], "wait a"),
            (
                vec![
                    task("a", "DEACTIVATING", "STOPPED", v1),
                    task("b", "RUNNING", "RUNNING", v1),
                ],
                "attach b",
            ),
        ];
        for (tasks, want) in cases {
            let got = match plan_launch(&tasks, "v1", "migration") {
                LaunchPlan::Start => "start".to_string(),
                LaunchPlan::Attach(t) => format!("attach {}", t.id()),
                LaunchPlan::WaitForStopping(a) => format!(
                    "wait {}",
                    a.iter()
                        .map(|x| x.rsplit('/').next().unwrap())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                LaunchPlan::Refuse(why) => {
                    assert!(why.contains("then run again"), "{why}");
                    "refuse".to_string()
                }
            };
            assert_eq!(got, want, "{tasks:?}");
        }
    }

    #[test]
    fn log_targets() {
        let opts = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let full = opts(&[
            ("awslogs-group", "/ecs/migrate"),
            ("awslogs-stream-prefix", "ecs"),
            ("awslogs-region", "eu-west-1"),
        ]);
        assert_eq!(
            log_target(Some("awslogs"), &full, "migrate", "abc123"),
            Ok(LogTarget {
                group: "/ecs/migrate".into(),
                stream: "ecs/migrate/abc123".into(),
                region: Some("eu-west-1".into())
            })
        );
        let no_prefix = opts(&[("awslogs-group", "/ecs/migrate")]);
        assert!(log_target(Some("awslogs"), &no_prefix, "migrate", "x")
            .unwrap_err()
            .contains("awslogs-stream-prefix"));
        assert!(log_target(Some("awslogs"), &opts(&[]), "migrate", "x")
            .unwrap_err()
            .contains("awslogs-group"));
        assert!(log_target(Some("awsfirelens"), &full, "migrate", "x")
            .unwrap_err()
            .contains("awsfirelens"));
        assert!(log_target(None, &full, "migrate", "x")
            .unwrap_err()
            .contains("no log configuration"));
    }

    #[test]
    fn explanations_name_exit_and_stop_codes() {
        let mut r = planned("migration", None, None, None, false, Instant::now());
        r.verdict = TaskVerdict::Failed;
        r.exit_code = Some(1);
        r.stop_code = Some("EssentialContainerExited".into());
        r.stopped_reason = Some("Essential container in task exited".into());
        assert_eq!(
            r.explanation(),
            "migration failed: exit code 1 (stop code EssentialContainerExited: Essential container in task exited)"
        );
        r.verdict = TaskVerdict::FailedToStart;
        r.exit_code = None;
        r.stop_code = Some("TaskFailedToStart".into());
        r.stopped_reason = Some("CannotPullContainerError: not found".into());
        assert!(r.explanation().starts_with(
            "migration failed to start (stop code TaskFailedToStart: CannotPullContainerError"
        ));
        assert!(r.last_lines_markdown().is_empty());
        r.last_lines = vec!["a".into(), "```b".into()];
        r.log_lines = 7;
        let md = r.last_lines_markdown();
        assert!(
            md.starts_with("<details><summary>Last 2 of 7 log lines</summary>")
                && md.contains("````text\na\n```b\n````\n"),
            "{md}"
        );
    }
}
