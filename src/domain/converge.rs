//! Bringing an environment to running, restricted, db-only or stopped: the pure plan and the steps that run it.
//! Phase `state` is [`converge`] on its input; migrate brings the environment to db-only and deploy lifts
//! maintenance at the end through it too.
//!
//! | state      | core services                                   | maintenance | database  |
//! |------------|-------------------------------------------------|-------------|-----------|
//! | running    | at their desired counts, roll-out COMPLETED     | off         | available |
//! | restricted | as in running                                   | on (bypass header gets through) | available |
//! | db-only    | at 0, no task left                              | on          | available |
//! | stopped    | at 0, no task left                              | on          | stopped (AWS starts it again after 7 days) |
//!
//! Plan, then act: [`plan`] is a pure function from what [`environment::observe`] saw to the ordered steps; [`converge`]
//! runs them. Maintenance goes on first when leaving running (then the drain wait), the database stops last; going
//! up, the database starts first and maintenance comes off last, after every service completed its roll-out. Other
//! phases call [`converge`] (migrate brings the environment to db-only, deploy lifts maintenance at the end).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use crate::aws::ecs::{self, Rollout};
use crate::aws::{rds, AwsError};
use crate::config::{Database, Environment};
use crate::domain::autoscaling;
use crate::domain::db_history;
use crate::domain::drain::{self, QuietReport};
use crate::domain::environment::{self, EnvState, Observed, ServiceObs};
use crate::domain::maintenance::{self, MaintenanceState};
use crate::domain::Ctx;
use crate::error::UsageError;
use crate::wait::{human, Backoff, Check, Expected};

pub use crate::domain::maintenance::BypassHeader;

/// Service tag: the desired count a service had when this action scaled it to 0 (used to scale it back up when the
/// config names no `desired-count`).
pub const TAG_DESIRED_COUNT: &str = "deploy-action:desired-count";

/// How AWS treats a stopped database: it starts it again by itself after this long.
const RDS_AUTO_START: Duration = Duration::from_secs(7 * 24 * 3600);

/// What callers can choose besides the target.
#[derive(Debug, Clone, Default)]
pub struct StateOptions {
    /// The secret header that gets testers through maintenance; required for `restricted`. Without it, maintenance
    /// goes on with a random header nobody knows (db-only, stopped).
    pub bypass_header: Option<BypassHeader>,
    /// Do not wait for traffic to drain after maintenance goes on.
    pub skip_drain: bool,
}

/// The four states, as the inputs name them.
pub const STATES: &str = "running, restricted, db-only, stopped";

/// The two header inputs: both or neither.
pub fn bypass_header(
    name: Option<&str>,
    value: Option<&str>,
) -> Result<Option<BypassHeader>, UsageError> {
    match (name, value) {
        (Some(n), Some(v)) => BypassHeader::new(n, v).map(Some).map_err(UsageError::new),
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => Err(UsageError::new(
            "inputs `maintenance-header-name` and `maintenance-header-value`: give both or neither (the secret header that gets testers through maintenance)",
        )),
    }
}

/// Whether the environment's config can support the target with these options. No AWS call.
pub fn check_target(
    env: &Environment,
    target: EnvState,
    opts: &StateOptions,
) -> Result<(), UsageError> {
    let name = &env.name;
    match target {
        EnvState::Mixed => Err(UsageError::new(format!("input `state`: mixed is not a target; use one of: {STATES}"))),
        EnvState::Stopped if env.database.is_none() => Err(UsageError::new(format!(
            "input `state`: stopped stops the database, but environments.{name}.database is not configured; add `instance = \"<RDS id>\"` or `cluster = \"<Aurora id>\"` there, or use db-only"
        ))),
        EnvState::Restricted if env.maintenance.is_none() => Err(UsageError::new(format!(
            "input `state`: restricted needs maintenance on the load balancer, but environments.{name}.maintenance is not configured; add `listener-arn = \"arn:aws:elasticloadbalancing:...:listener/app/...\"` there"
        ))),
        EnvState::Restricted if opts.bypass_header.is_none() => Err(UsageError::new(
            "inputs `maintenance-header-name` and `maintenance-header-value`: restricted needs both (the secret header that gets testers through maintenance); pass them from repository secrets",
        )),
        EnvState::Running | EnvState::Restricted | EnvState::DbOnly | EnvState::Stopped => Ok(()),
    }
}

/// Only the clients `state` uses.
#[derive(Debug, Clone)]
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub rds: aws_sdk_rds::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub aas: aws_sdk_applicationautoscaling::Client,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            ecs: aws_sdk_ecs::Client::new(sdk),
            rds: aws_sdk_rds::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
            aas: aws_sdk_applicationautoscaling::Client::new(sdk),
        }
    }

    /// The subset `environment::observe` reads with.
    pub fn status(&self) -> environment::Clients {
        environment::Clients {
            ecs: self.ecs.clone(),
            rds: self.rds.clone(),
            elb: self.elb.clone(),
            aas: self.aas.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    MaintenanceOn,
    DrainWait,
    ScaleDown,
    StopDatabase,
    StartDatabase,
    ScaleUp,
    MaintenanceOff,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::MaintenanceOn => "maintenance on",
            Step::DrainWait => "wait for traffic to drain",
            Step::ScaleDown => "scale services to 0",
            Step::StopDatabase => "stop the database",
            Step::StartDatabase => "start the database",
            Step::ScaleUp => "scale services up",
            Step::MaintenanceOff => "maintenance off",
        })
    }
}

/// Pure: the ordered steps from what was observed to `target`, converging from any (also `mixed`) state. Empty when
/// the environment already is there.
pub fn plan(o: &Observed, target: EnvState) -> Vec<Step> {
    use MaintenanceState as M;
    let up = o.services.iter().all(ServiceObs::up);
    let down = o.services.iter().all(ServiceObs::down);
    let db = o.db.as_deref();
    let db_available = matches!(db, None | Some("available"));
    let db_stopped = db == Some("stopped");
    let maintenance_on = match o.maintenance {
        M::On | M::NotConfigured => None,
        M::Off | M::Partial => Some(Step::MaintenanceOn),
    };
    let mut steps = Vec::new();
    // Maintenance on, then the drain while services still serve; also a drain a stopped run left unfinished.
    let drain_left = o.drain_pending && o.maintenance == M::On;
    let turn_on = |steps: &mut Vec<Step>| {
        if let Some(step) = maintenance_on {
            steps.push(step);
        }
        if (maintenance_on.is_some() || drain_left) && !down {
            steps.push(Step::DrainWait);
        }
    };
    match target {
        EnvState::Running => {
            if !db_available {
                steps.push(Step::StartDatabase);
            }
            if !up {
                steps.push(Step::ScaleUp);
            }
            if matches!(o.maintenance, M::On | M::Partial) {
                steps.push(Step::MaintenanceOff);
            }
        }
        EnvState::Restricted => {
            turn_on(&mut steps);
            if !db_available {
                steps.push(Step::StartDatabase);
            }
            if !up {
                steps.push(Step::ScaleUp);
            }
        }
        EnvState::DbOnly => {
            turn_on(&mut steps);
            if !down {
                steps.push(Step::ScaleDown);
            }
            if !db_available {
                steps.push(Step::StartDatabase);
            }
        }
        EnvState::Stopped => {
            turn_on(&mut steps);
            if !down {
                steps.push(Step::ScaleDown);
            }
            if db.is_some() && !db_stopped {
                steps.push(Step::StopDatabase);
            }
        }
        EnvState::Mixed => {}
    }
    steps
}

/// Pure: whether `steps` may run while these migration tasks (not stopped) exist. Scaling services up, lifting
/// maintenance or stopping the database under a running migration would let users (or the new code) at a database
/// half migrated, or cut the migration off; everything else (maintenance on, scaling down, starting the database) is
/// what a migration needs anyway.
pub fn migration_guard(steps: &[Step], migrations: &[String]) -> Result<(), String> {
    if migrations.is_empty() {
        return Ok(());
    }
    let refused: Vec<String> = steps
        .iter()
        .filter(|s| match s {
            Step::ScaleUp | Step::MaintenanceOff | Step::StopDatabase => true,
            Step::MaintenanceOn | Step::DrainWait | Step::ScaleDown | Step::StartDatabase => false,
        })
        .map(Step::to_string)
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = migrations
        .iter()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .collect();
    Err(format!(
        "a migration task is still running ({}), and {} must wait until it stopped; wait for it (phase migrate attaches to it and reports its result) or stop it, then run again",
        ids.join(", "),
        refused.join(", ")
    ))
}

// ---------------------------------------------------------------------------------------------------------------
// The outcome
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: Step,
    pub seconds: f64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateOutcome {
    pub environment: String,
    pub target: EnvState,
    pub previous_state: EnvState,
    /// Why the previous state was `mixed`, if it was.
    pub previous_reason: Option<String>,
    /// The state observed after the steps (the previous one on a dry run).
    pub state: EnvState,
    pub dry_run: bool,
    pub plan: Vec<Step>,
    /// The steps taken, in order.
    pub steps: Vec<StepRecord>,
    /// When the database is stopped: the date AWS starts it again by itself.
    pub database_restarts_at: Option<String>,
    pub notes: Vec<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// Acting
// ---------------------------------------------------------------------------------------------------------------

/// Observes the environment, plans, and (unless `ctx.dry_run`) runs the steps to `target`. Fails with a
/// [`UsageError`] before any AWS call when the config cannot support the target; fails naming the step, what was
/// done and what was not when a step fails.
pub async fn converge(
    env: &Environment,
    target: EnvState,
    opts: &StateOptions,
    clients: &Clients,
    ctx: &Ctx,
) -> Result<StateOutcome> {
    check_target(env, target, opts)?;
    let before = environment::observe(env, &clients.status())
        .await
        .with_context(|| format!("observing environment {}", env.name))?;
    let steps = plan(&before.observed(), target);
    migration_guard(&steps, &before.migration_tasks)
        .map_err(|why| anyhow!("state {}: refusing to go {target}: {why}", env.name))?;
    let mut out = StateOutcome {
        environment: env.name.clone(),
        target,
        previous_state: before.state,
        previous_reason: before.state_reason.clone(),
        state: before.state,
        dry_run: ctx.dry_run,
        plan: steps.clone(),
        steps: vec![],
        database_restarts_at: None,
        notes: vec![],
    };
    out.notes.extend(no_maintenance_note(env, target, &steps));
    let from = match &before.state_reason {
        Some(why) => format!("{} ({why})", before.state),
        None => before.state.to_string(),
    };
    if steps.is_empty() {
        tracing::info!(
            "environment {} is {target} already; nothing to do",
            env.name
        );
        if matches!(target, EnvState::Running | EnvState::Restricted) && !ctx.dry_run {
            // A run killed after scaling up but before restoring autoscaling: the way back finishes here.
            out.notes
                .extend(autoscaling::restore(&clients.ecs, &clients.aas, env).await?);
        }
        return Ok(out);
    }
    let listed: Vec<String> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}. {s}", i + 1))
        .collect();
    tracing::info!(
        "environment {}: {from} → {target}: {}",
        env.name,
        listed.join(", ")
    );
    if ctx.dry_run {
        tracing::info!("dry run: stopping before the first change");
        return Ok(out);
    }

    let head = format!("state {}: {from} → {target}", env.name);
    run_steps(env, opts, clients, ctx, &head, &mut out).await?;
    let after = environment::observe(env, &clients.status())
        .await
        .context("observing the environment after the steps")?;
    out.state = after.state;
    if after.state != target {
        bail!(
            "state {}: every step finished, but the environment is {} ({}); re-run the state phase to converge, or see `status`",
            env.name,
            after.state,
            after.state_reason.unwrap_or_default()
        );
    }
    Ok(out)
}

/// Runs the planned steps (`out.plan`) in order, each in its group, and records them. A signal stops them at the next
/// boundary: nothing more changes, the rerun converges from here. A failed or stopped step fails naming it, what was
/// done and what was not (`head`: which environment, from what to what).
async fn run_steps(
    env: &Environment,
    opts: &StateOptions,
    clients: &Clients,
    ctx: &Ctx,
    head: &str,
    out: &mut StateOutcome,
) -> Result<()> {
    let steps = out.plan.clone();
    let mut run = Running {
        maintenance: None,
        drain_follows: steps.contains(&Step::DrainWait),
    };
    for (i, step) in steps.iter().enumerate() {
        let _group = ctx
            .runner
            .group(&format!("{}/{}: {step}", i + 1, steps.len()));
        let started = tokio::time::Instant::now();
        let (stopped_before, result) =
            match ctx.stop_if_cancelled(&format!("step {} ({step})", i + 1)) {
                Ok(()) => (false, run.step(*step, env, opts, clients, ctx, out).await),
                Err(e) => (true, Err(e.into())),
            };
        let seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        match result {
            Ok(detail) => {
                tracing::info!("{step}: {detail} ({})", human(started.elapsed()));
                out.steps.push(StepRecord {
                    step: *step,
                    seconds,
                    detail,
                });
            }
            Err(e) => {
                // Stopped before the step: it is not done either; stopped in it: it says what it finished.
                let first_left = if stopped_before { i } else { i + 1 };
                let how = match (stopped_before, ctx.cancel.is_cancelled()) {
                    (true, _) => "not started (stopped by a signal)",
                    (false, true) => "stopped by a signal",
                    (false, false) => "failed",
                };
                let failed = StepFailed { i, first_left, how };
                return Err(e.context(failed.context(head, &steps, &out.steps)));
            }
        }
    }
    Ok(())
}

/// Pure: whether an environment whose services all just completed a roll-out is `running` already, from the two
/// things a deploy does not look at: the maintenance listener (off, or not configured) and the database (available,
/// or none). Anything else (maintenance on or half-way, the database stopped or moving) goes through [`converge`].
pub fn running_after_rollout(maintenance: MaintenanceState, database: Option<&str>) -> bool {
    matches!(
        maintenance,
        MaintenanceState::Off | MaintenanceState::NotConfigured
    ) && database.is_none_or(|s| s == "available")
}

/// [`running_after_rollout`] from three reads (the listener, its tags, the database's status) instead of the whole
/// environment: what a deploy looks at before it lifts maintenance.
pub async fn is_running_after_rollout(env: &Environment, c: &Clients) -> Result<bool> {
    let database = async {
        Ok::<_, anyhow::Error>(match &env.database {
            Some(db) => Some(rds::db_status(&c.rds, db).await?),
            None => None,
        })
    };
    let (maintenance, database) = tokio::try_join!(
        maintenance::observe(&c.elb, env.maintenance.as_ref()),
        database
    )?;
    Ok(running_after_rollout(maintenance, database.as_deref()))
}

/// Pure: the note that visitors see the load balancer's own error while services are at 0 without maintenance.
fn no_maintenance_note(env: &Environment, target: EnvState, steps: &[Step]) -> Option<String> {
    (env.maintenance.is_none()
        && matches!(target, EnvState::DbOnly | EnvState::Stopped)
        && !steps.is_empty())
    .then(|| {
        format!(
            "no maintenance configured (environments.{}.maintenance): visitors get the load balancer's own error while services are at 0",
            env.name
        )
    })
}

/// Which step of the plan failed (or was stopped), and how.
struct StepFailed {
    i: usize,
    /// The first step not done (`i` when stopped before step `i` started).
    first_left: usize,
    how: &'static str,
}

impl StepFailed {
    /// Pure: the context of the failure: which step, what was done (with seconds) and what was not.
    fn context(&self, head: &str, steps: &[Step], taken: &[StepRecord]) -> String {
        let done: Vec<String> = taken
            .iter()
            .map(|s| format!("{} ({}s)", s.step, s.seconds))
            .collect();
        let left: Vec<String> = steps[self.first_left..]
            .iter()
            .map(Step::to_string)
            .collect();
        format!(
            "{head}: step {} of {} ({}) {}; done: {}; not done: {}",
            self.i + 1,
            steps.len(),
            steps[self.i],
            self.how,
            if done.is_empty() {
                "nothing".into()
            } else {
                done.join(", ")
            },
            if left.is_empty() {
                "nothing else".into()
            } else {
                left.join(", ")
            },
        )
    }
}

/// What one run carries from step to step.
struct Running {
    /// What turning maintenance on did (the drain wait watches its target groups), and when.
    maintenance: Option<(maintenance::Applied, i64)>,
    /// A drain wait is planned after maintenance on: its start is recorded with the `on` mark.
    drain_follows: bool,
}

impl Running {
    async fn step(
        &mut self,
        step: Step,
        env: &Environment,
        opts: &StateOptions,
        c: &Clients,
        ctx: &Ctx,
        out: &mut StateOutcome,
    ) -> Result<String> {
        match step {
            Step::MaintenanceOn => self.maintenance_on(env, opts, c, ctx, out).await,
            Step::DrainWait => self.drain_wait(env, opts, c, ctx).await,
            Step::ScaleDown => scale_down(env, c, ctx).await,
            Step::ScaleUp => scale_up(env, c, ctx).await,
            Step::StartDatabase => {
                let db = env
                    .database
                    .as_ref()
                    .ok_or_else(|| anyhow!("no database configured"))?;
                move_database(db, DbWant::Available, c, ctx).await
            }
            Step::StopDatabase => stop_database(env, c, ctx, out).await,
            Step::MaintenanceOff => maintenance_off(env, c, ctx).await,
        }
    }

    async fn maintenance_on(
        &mut self,
        env: &Environment,
        opts: &StateOptions,
        c: &Clients,
        ctx: &Ctx,
        out: &mut StateOutcome,
    ) -> Result<String> {
        let cfg = env
            .maintenance
            .as_ref()
            .ok_or_else(|| anyhow!("no maintenance configured"))?;
        let header = opts.bypass_header.clone().unwrap_or_else(|| {
            out.notes
                .push("maintenance went on without bypass inputs: nobody gets through".into());
            BypassHeader::locked()
        });
        let applied = maintenance::turn_on(&c.elb, cfg, &header, self.drain_follows, ctx).await?;
        let detail = match applied.changes.len() {
            0 => "already on".to_string(),
            n => format!("{n} change(s) on listener {}", short_arn(&cfg.listener_arn)),
        };
        let since = applied.drain_from.unwrap_or_else(now_secs);
        self.maintenance = Some((applied, since));
        Ok(detail)
    }

    async fn drain_wait(
        &self,
        env: &Environment,
        opts: &StateOptions,
        c: &Clients,
        ctx: &Ctx,
    ) -> Result<String> {
        let cfg = env
            .maintenance
            .as_ref()
            .ok_or_else(|| anyhow!("no maintenance configured"))?;
        // The window counts from when maintenance went on: this run's, or the one a stopped run recorded.
        let (tgs, lb, since, recorded) = match &self.maintenance {
            Some((a, since)) => (
                a.target_groups.clone(),
                a.load_balancer.clone(),
                *since,
                a.drain_from.is_some(),
            ),
            None => {
                let snap = maintenance::inspect(&c.elb, &cfg.listener_arn).await?;
                let from = maintenance::pending_drain(MaintenanceState::On, &snap.tags);
                if let Some(t) = from {
                    tracing::info!(
                        "finishing the drain a stopped run left: maintenance went on {}s ago",
                        (now_secs() - t).max(0)
                    );
                }
                (
                    maintenance::forwarding_target_groups(&snap)?,
                    snap.listener.load_balancer_arn.clone(),
                    from.unwrap_or_else(now_secs),
                    from.is_some(),
                )
            }
        };
        let report: QuietReport = drain::wait_drained(
            &c.cloudwatch,
            &tgs,
            lb.as_deref(),
            cfg.drain.as_ref(),
            opts.skip_drain,
            since,
            ctx,
        )
        .await?;
        if recorded {
            maintenance::drain_finished(&c.elb, &cfg.listener_arn).await?;
        }
        Ok(report.detail)
    }
}

async fn stop_database(
    env: &Environment,
    c: &Clients,
    ctx: &Ctx,
    out: &mut StateOutcome,
) -> Result<String> {
    let db = env
        .database
        .as_ref()
        .ok_or_else(|| anyhow!("no database configured"))?;
    let detail = move_database(db, DbWant::Stopped, c, ctx).await?;
    let at = restart_date(SystemTime::now());
    tracing::warn!(
        "database {} is stopped; AWS starts it again by itself on {at}",
        db.identifier
    );
    out.database_restarts_at = Some(at.clone());
    Ok(format!("{detail}; AWS starts it again on {at}"))
}

async fn maintenance_off(env: &Environment, c: &Clients, ctx: &Ctx) -> Result<String> {
    let cfg = env
        .maintenance
        .as_ref()
        .ok_or_else(|| anyhow!("no maintenance configured"))?;
    let applied = maintenance::turn_off(&c.elb, cfg, ctx).await?;
    Ok(match applied.changes.len() {
        0 => "already off".to_string(),
        n => format!(
            "{n} change(s) on listener {}: original rules and default action back",
            short_arn(&cfg.listener_arn)
        ),
    })
}

fn short_arn(arn: &str) -> &str {
    arn.rsplit_once(":listener/").map(|(_, s)| s).unwrap_or(arn)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The date AWS starts a database stopped at `now` again (seven days later), e.g. `2026-11-30 14:05 UTC`.
pub fn restart_date(now: SystemTime) -> String {
    let secs = (now + RDS_AUTO_START)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| "in 7 days".into())
}

// ---------------------------------------------------------------------------------------------------------------
// Services
// ---------------------------------------------------------------------------------------------------------------

/// Pure: the count to scale a service up to. The config's `desired-count` if above 0; else the count recorded when
/// this action scaled the service to 0; else its current desired count if above 0; else 1.
pub fn scale_up_count(configured: Option<i32>, recorded: Option<&str>, current: i32) -> i32 {
    if let Some(n) = configured.filter(|n| *n > 0) {
        return n;
    }
    if let Some(n) = recorded
        .and_then(|r| r.trim().parse::<i32>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    if current > 0 {
        current
    } else {
        1
    }
}

/// How far one service is towards `target` tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleProgress {
    Done,
    Pending(String),
    Failed(String),
}

/// Pure: scaled down = nothing running or pending; scaled up = the PRIMARY deployment COMPLETED (or no roll-out
/// state reported) with running == target, nothing pending and no other deployment left.
pub fn scale_progress(name: &str, target: i32, s: &ServiceObs) -> ScaleProgress {
    if target == 0 {
        return if s.running == 0 && s.pending == 0 {
            ScaleProgress::Done
        } else {
            ScaleProgress::Pending(format!(
                "{name} {} running, {} pending",
                s.running, s.pending
            ))
        };
    }
    let counts = format!(
        "{name} {}/{target} running, {} pending, roll-out {}",
        s.running, s.pending, s.rollout
    );
    match &s.rollout {
        Rollout::Failed => ScaleProgress::Failed(format!("{counts}: the deployment FAILED")),
        Rollout::Completed | Rollout::None
            if s.desired == target
                && s.running == target
                && s.pending == 0
                && s.deployments <= 1 =>
        {
            ScaleProgress::Done
        }
        Rollout::Completed | Rollout::None | Rollout::InProgress | Rollout::Other(_) => {
            ScaleProgress::Pending(counts)
        }
    }
}

fn obs(s: &aws_sdk_ecs::types::Service) -> ServiceObs {
    ServiceObs {
        desired: s.desired_count(),
        running: s.running_count(),
        pending: s.pending_count(),
        rollout: ecs::primary(s).map(Rollout::of).unwrap_or(Rollout::None),
        deployments: s.deployments().len(),
    }
}

async fn scale_down(env: &Environment, c: &Clients, ctx: &Ctx) -> Result<String> {
    // Autoscaling first: nothing may bring a task back while the services are meant to be at 0.
    let mut changed = autoscaling::suspend(&c.ecs, &c.aas, env).await?;
    let names: Vec<String> = env.services.iter().map(|s| s.name.clone()).collect();
    let services = ecs::describe_services(&c.ecs, &env.cluster, &names).await?;
    for (name, svc) in names.iter().zip(&services) {
        if svc.desired_count() > 0 {
            let arn = svc.service_arn().unwrap_or_default();
            // Recorded first, so scaling back up finds it even if this run dies right after.
            ecs::tag(
                &c.ecs,
                arn,
                &[(TAG_DESIRED_COUNT, svc.desired_count().to_string())],
            )
            .await?;
            ecs::set_desired_count(&c.ecs, &env.cluster, name, 0).await?;
            tracing::info!(
                "{}/{name}: desired {} → 0",
                env.cluster,
                svc.desired_count()
            );
            changed.push(format!("{name} {}→0", svc.desired_count()));
        }
    }
    let targets: Vec<(String, i32)> = names.iter().map(|n| (n.clone(), 0)).collect();
    wait_services(env, &targets, c, ctx).await?;
    Ok(if changed.is_empty() {
        "no task left".into()
    } else {
        format!("{}; no task left", changed.join(", "))
    })
}

async fn scale_up(env: &Environment, c: &Clients, ctx: &Ctx) -> Result<String> {
    let names: Vec<String> = env.services.iter().map(|s| s.name.clone()).collect();
    let services = ecs::describe_services(&c.ecs, &env.cluster, &names).await?;
    let mut targets = vec![];
    let mut tagged = vec![];
    let mut changed = vec![];
    for (cfg, svc) in env.services.iter().zip(&services) {
        let arn = svc.service_arn().unwrap_or_default().to_string();
        let tags = ecs::tags(&c.ecs, &arn).await?;
        let recorded = tags
            .iter()
            .find(|(k, _)| k == TAG_DESIRED_COUNT)
            .map(|(_, v)| v.clone());
        let target = scale_up_count(cfg.desired_count, recorded.as_deref(), svc.desired_count());
        if recorded.is_some() {
            tagged.push(arn);
        }
        if svc.desired_count() != target {
            ecs::set_desired_count(&c.ecs, &env.cluster, &cfg.name, target).await?;
            tracing::info!(
                "{}/{}: desired {} → {target}",
                env.cluster,
                cfg.name,
                svc.desired_count()
            );
            changed.push(format!("{} {}→{target}", cfg.name, svc.desired_count()));
        }
        targets.push((cfg.name.clone(), target));
    }
    wait_services(env, &targets, c, ctx).await?;
    for arn in tagged {
        ecs::untag(&c.ecs, &arn, TAG_DESIRED_COUNT).await?;
    }
    changed.extend(autoscaling::restore(&c.ecs, &c.aas, env).await?);
    let counts: Vec<String> = targets.iter().map(|(n, t)| format!("{n} {t}")).collect();
    Ok(format!(
        "{}roll-outs COMPLETED ({})",
        if changed.is_empty() {
            String::new()
        } else {
            format!("{}; ", changed.join(", "))
        },
        counts.join(", ")
    ))
}

/// Waits until every service reached its target count (see [`scale_progress`]).
async fn wait_services(
    env: &Environment,
    targets: &[(String, i32)],
    c: &Clients,
    ctx: &Ctx,
) -> Result<()> {
    let names: Vec<String> = targets.iter().map(|(n, _)| n.clone()).collect();
    let what = format!("services of {} at their target counts", env.cluster);
    ctx.poller(what, Backoff::FAST)
        .run(|| async {
            let services = ecs::describe_services(&c.ecs, &env.cluster, &names).await?;
            let mut done = vec![];
            let mut pending = vec![];
            for ((name, target), svc) in targets.iter().zip(&services) {
                match scale_progress(name, *target, &obs(svc)) {
                    ScaleProgress::Done => done.push(format!("{name} {target}")),
                    ScaleProgress::Pending(p) => pending.push(p),
                    ScaleProgress::Failed(why) => {
                        let event = svc.events().first().and_then(|e| e.message()).unwrap_or("no service event");
                        bail!("ECS service {}/{name}: {why}; last event: {event}; see the stopped tasks in the ECS console", env.cluster);
                    }
                }
            }
            if pending.is_empty() {
                return Ok(Check::Done(()));
            }
            Ok(Check::Pending(format!(
                "not yet: {}; reached: {}",
                pending.join("; "),
                if done.is_empty() { "none".into() } else { done.join(", ") }
            )))
        })
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// Database
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbWant {
    Available,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbMove {
    Done,
    Start,
    Stop,
    /// In a transition; look again.
    Wait,
    /// A state that will not get there by itself.
    Refuse,
}

/// Pure: what to do about a database in `status` to get it `want`.
pub fn db_move(status: &str, want: DbWant) -> DbMove {
    use DbWant::{Available, Stopped};
    match (status, want) {
        ("available", Available) | ("stopped", Stopped) => DbMove::Done,
        ("stopped", Available) => DbMove::Start,
        ("available", Stopped) => DbMove::Stop,
        (
            "failed"
            | "incompatible-network"
            | "incompatible-option-group"
            | "incompatible-parameters"
            | "incompatible-restore"
            | "inaccessible-encryption-credentials"
            | "inaccessible-encryption-credentials-recoverable"
            | "restore-error"
            | "storage-full"
            | "deleting"
            | "insufficient-capacity"
            | "cloning-failed",
            _,
        ) => DbMove::Refuse,
        // starting, stopping, modifying, backing-up, rebooting, upgrading, maintenance, configuring-*, renaming,
        // storage-optimization, creating, ... and any status AWS adds later: a transition, shown while we wait.
        (_transitional, Available | Stopped) => DbMove::Wait,
    }
}

async fn move_database(db: &Database, want: DbWant, c: &Clients, ctx: &Ctx) -> Result<String> {
    let target = match want {
        DbWant::Available => "available",
        DbWant::Stopped => "stopped",
    };
    // The first look through the poller too, so a throttled describe is looked at again. It brings the database's
    // ARN and tags (this action's record of its starts and stops) along.
    let first = ctx
        .poller(format!("database {} status", db.identifier), Backoff::SLOW)
        .run(|| async { Ok(Check::Done(rds::db_state(&c.rds, db).await?)) })
        .await?;
    let called = match db_move(&first.status, want) {
        DbMove::Done => {
            return Ok(format!(
                "database {} {target} (was already moving there)",
                db.identifier
            ))
        }
        DbMove::Refuse => return Err(refused(db, &first.status, target)),
        DbMove::Start | DbMove::Stop => call_move(db, want, target, &first, c).await?,
        DbMove::Wait => None,
    };
    // Counted from the call: the poller counts from its own start, a moment later.
    let expected = called
        .as_ref()
        .and_then(|k| k.usual.map(|u| u.duration.saturating_sub(k.at.elapsed())))
        .map(Expected::at);
    let again = std::cell::Cell::new(false);
    ctx.poller(
        format!("database {} {target}", db.identifier),
        Backoff::SLOW,
    )
    .expecting(expected)
    .run(|| look(db, want, target, c, &again))
    .await?;
    let seen_ms = epoch_ms(SystemTime::now());
    match &called {
        // Started again by the wait (it had settled elsewhere): the call's time no longer measures this move.
        Some(k) if !again.get() => record_move(db, want, &first.arn, k, seen_ms, c, ctx).await,
        _ => {}
    }
    Ok(format!("database {} {target}", db.identifier)
        + if called.is_some() || again.get() {
            ""
        } else {
            " (was already moving there)"
        })
}

/// A start or stop just made: when, and what was known of this database's earlier ones.
#[derive(Debug, Clone)]
struct Called {
    at: std::time::Instant,
    /// The same moment, epoch milliseconds (matched against the dates of RDS's events).
    at_ms: i64,
    usual: Option<db_history::Usual>,
    /// This action's record of the earlier ones (see [`db_history::record_key`]).
    recorded: Vec<Duration>,
    /// The events could not be read before the call: not tried again after the wait.
    events_unreadable: bool,
}

/// Finds how long this database's starts (stops) usually take, then calls StartDB*/StopDB*. `None` when RDS
/// refused because the database is changing state already (the wait then looks at the backoff's pace).
async fn call_move(
    db: &Database,
    want: DbWant,
    target: &str,
    first: &rds::DbState,
    c: &Clients,
) -> Result<Option<Called>> {
    let recorded = crate::tags::get(&first.tags, db_history::record_key(want))
        .map(db_history::parse_record)
        .unwrap_or_default();
    let (events, events_unreadable) = if recorded.is_empty() {
        match database_events(db, c, None).await {
            Some(events) => (events, false),
            None => (vec![], true),
        }
    } else {
        (vec![], false)
    };
    let events: Vec<(i64, &str)> = events.iter().map(|(t, m)| (*t, m.as_str())).collect();
    let usual = db_history::usual(&recorded, &events, want);
    tracing::info!("{}", db_history::usual_line(&db.identifier, want, usual));
    let (at, at_ms) = (std::time::Instant::now(), epoch_ms(SystemTime::now()));
    let call = match want {
        DbWant::Available => rds::start(&c.rds, db).await,
        DbWant::Stopped => rds::stop(&c.rds, db).await,
    };
    match call {
        Ok(()) => {
            tracing::info!(
                "database {} was {}; asked RDS to make it {target}",
                db.identifier,
                first.status
            );
            Ok(Some(Called {
                at,
                at_ms,
                usual,
                recorded,
                events_unreadable,
            }))
        }
        Err(e) if rds::is_invalid_state(&e) => {
            tracing::info!(
                "database {} is changing state ({})",
                db.identifier,
                code(&e)
            );
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The database's RDS events: of the last 14 days, or from `since_ms` on. Events that cannot be read (no
/// `rds:DescribeEvents`, ...) are one warning line, never a failure: `None`.
async fn database_events(
    db: &Database,
    c: &Clients,
    since_ms: Option<i64>,
) -> Option<Vec<(i64, String)>> {
    let read = match since_ms {
        None => rds::recent_events(&c.rds, db).await,
        Some(ms) => rds::events_since(&c.rds, db, ms).await,
    };
    read.map_err(|e| {
        tracing::warn!(
            "database {}: its RDS events could not be read ({}); {}",
            db.identifier,
            crate::text::for_log(&e.to_string()),
            if since_ms.is_none() {
                "the wait looks every 2-15 s"
            } else {
                "the move is recorded as long as the wait saw it"
            }
        )
    })
    .ok()
}

/// Records how long the start (stop) called at `k` took on the database ([`db_history::record_key`]): to RDS's
/// completion event (one DescribeEvents from the call on), else to `seen_ms`, when the wait saw it done. Neither a
/// failure to read the events nor to write the tag fails the run: one warning line. After a signal nothing is
/// written (no change after it).
async fn record_move(
    db: &Database,
    want: DbWant,
    arn: &str,
    k: &Called,
    seen_ms: i64,
    c: &Clients,
    ctx: &Ctx,
) {
    let events = if k.events_unreadable {
        None
    } else {
        database_events(db, c, Some(k.at_ms)).await
    };
    let events: Vec<(i64, &str)> = events
        .iter()
        .flatten()
        .map(|(t, m)| (*t, m.as_str()))
        .collect();
    let completed = db_history::completion_after(&events, want, k.at_ms);
    let Some(took) = db_history::measured(k.at_ms, completed, seen_ms) else {
        return;
    };
    let key = db_history::record_key(want);
    let value = db_history::format_record(&db_history::append_record(&k.recorded, took));
    if arn.is_empty() || ctx.cancel.is_cancelled() {
        return;
    }
    match rds::add_tags(&c.rds, arn, &[(key.to_string(), value.clone())]).await {
        Ok(()) => tracing::info!(
            "database {} took {} {} (recorded on it: {key}={value})",
            db.identifier,
            human(took),
            if completed.is_some() {
                "until RDS's completion event"
            } else {
                "until the wait saw it (no completion event from RDS)"
            }
        ),
        Err(e) => tracing::warn!(
            "database {}: how long it took ({}) could not be recorded in its tag {key} ({}); the next wait is paced \
             by its RDS events or looks every 2-15 s",
            db.identifier,
            human(took),
            crate::text::for_log(&e.to_string())
        ),
    }
}

fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One look of the database wait: done, still moving, or (when it settled somewhere else) the start/stop again.
async fn look(
    db: &Database,
    want: DbWant,
    target: &str,
    c: &Clients,
    again: &std::cell::Cell<bool>,
) -> Result<Check<()>> {
    let status = rds::db_status(&c.rds, db).await?;
    let call = match db_move(&status, want) {
        DbMove::Done => return Ok(Check::Done(())),
        DbMove::Wait => {
            return Ok(Check::Pending(format!(
                "database {} is {status}",
                db.identifier
            )))
        }
        DbMove::Refuse => return Err(refused(db, &status, target)),
        DbMove::Start => rds::start(&c.rds, db).await,
        DbMove::Stop => rds::stop(&c.rds, db).await,
    };
    match call {
        Ok(()) => {
            again.set(true);
            Ok(Check::Pending(format!(
                "database {} was {status}; waiting until it is {target}",
                db.identifier
            )))
        }
        Err(e) if rds::is_invalid_state(&e) => Ok(Check::Pending(format!(
            "database {} is changing state ({})",
            db.identifier,
            code(&e)
        ))),
        Err(e) => Err(e.into()),
    }
}

fn refused(db: &Database, status: &str, target: &str) -> anyhow::Error {
    anyhow!(
        "database {} is {status}, which will not become {target} by itself; fix it in the RDS console, then re-run",
        db.identifier
    )
}

fn code(e: &AwsError) -> &str {
    e.code.as_deref().unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::environment::derive_state;
    use MaintenanceState as M;

    const ALL: [EnvState; 4] = [
        EnvState::Running,
        EnvState::Restricted,
        EnvState::DbOnly,
        EnvState::Stopped,
    ];

    fn up() -> Vec<ServiceObs> {
        vec![
            ServiceObs {
                desired: 2,
                running: 2,
                pending: 0,
                rollout: Rollout::Completed,
                deployments: 1,
            },
            ServiceObs {
                desired: 1,
                running: 1,
                pending: 0,
                rollout: Rollout::Completed,
                deployments: 1,
            },
        ]
    }
    fn down() -> Vec<ServiceObs> {
        vec![
            ServiceObs {
                desired: 0,
                running: 0,
                pending: 0,
                rollout: Rollout::Completed,
                deployments: 1,
            },
            ServiceObs {
                desired: 0,
                running: 0,
                pending: 0,
                rollout: Rollout::Completed,
                deployments: 1,
            },
        ]
    }

    /// The observation that is exactly `s`.
    fn observed(s: EnvState) -> Observed {
        let avail = Some("available".to_string());
        match s {
            EnvState::Running => Observed {
                services: up(),
                maintenance: M::Off,
                db: avail,
                drain_pending: false,
            },
            EnvState::Restricted => Observed {
                services: up(),
                maintenance: M::On,
                db: avail,
                drain_pending: false,
            },
            EnvState::DbOnly => Observed {
                services: down(),
                maintenance: M::On,
                db: avail,
                drain_pending: false,
            },
            EnvState::Stopped => Observed {
                services: down(),
                maintenance: M::On,
                db: Some("stopped".into()),
                drain_pending: false,
            },
            EnvState::Mixed => unreachable!(),
        }
    }

    /// Step effects on an observation (the model the plan is checked against).
    fn simulate(mut o: Observed, steps: &[Step]) -> Observed {
        for s in steps {
            match s {
                Step::MaintenanceOn => o.maintenance = M::On,
                Step::MaintenanceOff => o.maintenance = M::Off,
                Step::DrainWait => {}
                Step::ScaleDown => o.services = down(),
                Step::ScaleUp => o.services = up(),
                Step::StartDatabase => o.db = Some("available".into()),
                Step::StopDatabase => o.db = Some("stopped".into()),
            }
        }
        o
    }

    #[test]
    fn after_a_rollout_only_maintenance_and_the_database_can_be_left() {
        use MaintenanceState::{NotConfigured, Off, On, Partial};
        let cases = [
            (Off, Some("available"), true),
            (Off, None, true),
            (NotConfigured, Some("available"), true),
            (On, Some("available"), false),
            (Partial, None, false),
            (Off, Some("stopped"), false),
            (Off, Some("starting"), false),
        ];
        for (m, db, want) in cases {
            assert_eq!(running_after_rollout(m, db), want, "{m:?} {db:?}");
        }
    }

    #[test]
    fn no_lifting_while_a_migration_runs() {
        use Step::*;
        let task = vec!["arn:aws:ecs:r:1:task/app-stage/abc123".to_string()];
        let cases: Vec<(Vec<Step>, bool, bool)> = vec![
            // (steps, migration running, allowed)
            (vec![ScaleUp, MaintenanceOff], false, true),
            (vec![ScaleUp, MaintenanceOff], true, false),
            (vec![MaintenanceOff], true, false),
            (vec![StartDatabase, ScaleUp], true, false),
            (
                vec![MaintenanceOn, DrainWait, ScaleDown, StopDatabase],
                true,
                false,
            ),
            (vec![MaintenanceOn, DrainWait, ScaleDown], true, true),
            (vec![StartDatabase], true, true),
            (vec![], true, true),
        ];
        for (steps, running, allowed) in cases {
            let migrations = if running { task.clone() } else { vec![] };
            let got = migration_guard(&steps, &migrations);
            assert_eq!(got.is_ok(), allowed, "{steps:?} {running}: {got:?}");
            if let Err(why) = got {
                assert!(why.contains("abc123") && why.contains("run again"), "{why}");
            }
        }
    }

    #[test]
    fn every_pair_of_states() {
        use EnvState::*;
        use Step::*;
        let cases: Vec<(EnvState, EnvState, Vec<Step>)> = vec![
            (Running, Running, vec![]),
            (Running, Restricted, vec![MaintenanceOn, DrainWait]),
            (Running, DbOnly, vec![MaintenanceOn, DrainWait, ScaleDown]),
            (
                Running,
                Stopped,
                vec![MaintenanceOn, DrainWait, ScaleDown, StopDatabase],
            ),
            (Restricted, Running, vec![MaintenanceOff]),
            (Restricted, Restricted, vec![]),
            (Restricted, DbOnly, vec![ScaleDown]),
            (Restricted, Stopped, vec![ScaleDown, StopDatabase]),
            (DbOnly, Running, vec![ScaleUp, MaintenanceOff]),
            (DbOnly, Restricted, vec![ScaleUp]),
            (DbOnly, DbOnly, vec![]),
            (DbOnly, Stopped, vec![StopDatabase]),
            (
                Stopped,
                Running,
                vec![StartDatabase, ScaleUp, MaintenanceOff],
            ),
            (Stopped, Restricted, vec![StartDatabase, ScaleUp]),
            (Stopped, DbOnly, vec![StartDatabase]),
            (Stopped, Stopped, vec![]),
        ];
        assert_eq!(cases.len(), 16);
        for (from, to, want) in cases {
            let o = observed(from);
            assert_eq!(derive_state(&o).0, from, "fixture for {from}");
            let got = plan(&o, to);
            assert_eq!(got, want, "{from} → {to}");
            assert_eq!(
                derive_state(&simulate(o, &got)).0,
                to,
                "{from} → {to} reaches {to}"
            );
        }
    }

    /// Issue 20: a run stopped during the drain leaves maintenance on and the drain recorded; the next run towards
    /// any maintenance state finishes the drain before anything else (it used to say "restricted already").
    #[test]
    fn an_unfinished_drain_is_finished_first() {
        use EnvState::*;
        use Step::*;
        let cases: Vec<(EnvState, EnvState, Vec<Step>)> = vec![
            (Restricted, Restricted, vec![DrainWait]),
            (Restricted, DbOnly, vec![DrainWait, ScaleDown]),
            (
                Restricted,
                Stopped,
                vec![DrainWait, ScaleDown, StopDatabase],
            ),
            // Maintenance goes off anyway (and forgets the drain); services at 0 have nothing to drain.
            (Restricted, Running, vec![MaintenanceOff]),
            (DbOnly, Stopped, vec![StopDatabase]),
            (DbOnly, Restricted, vec![ScaleUp]),
        ];
        for (from, to, want) in cases {
            let mut o = observed(from);
            o.drain_pending = true;
            assert_eq!(plan(&o, to), want, "{from} → {to} with a drain left");
        }
        // Only with maintenance fully on: a half-on listener turns on again, and drains anyway.
        let mut half = observed(Restricted);
        half.maintenance = M::Partial;
        half.drain_pending = true;
        assert_eq!(plan(&half, Restricted), vec![MaintenanceOn, DrainWait]);
    }

    #[test]
    fn mixed_states_converge() {
        use Step::*;
        let avail = || Some("available".to_string());
        let half = || vec![up()[0].clone(), down()[0].clone()];
        let rolling = || {
            vec![ServiceObs {
                desired: 2,
                running: 1,
                pending: 1,
                rollout: Rollout::InProgress,
                deployments: 2,
            }]
        };
        let cases: Vec<(Observed, EnvState, Vec<Step>)> = vec![
            // A run killed half-way through maintenance: on again (and drain) or off again.
            (
                Observed {
                    services: up(),
                    maintenance: M::Partial,
                    db: avail(),
                    drain_pending: false,
                },
                EnvState::Restricted,
                vec![MaintenanceOn, DrainWait],
            ),
            (
                Observed {
                    services: up(),
                    maintenance: M::Partial,
                    db: avail(),
                    drain_pending: false,
                },
                EnvState::Running,
                vec![MaintenanceOff],
            ),
            // Half the services scaled down.
            (
                Observed {
                    services: half(),
                    maintenance: M::On,
                    db: avail(),
                    drain_pending: false,
                },
                EnvState::DbOnly,
                vec![ScaleDown],
            ),
            (
                Observed {
                    services: half(),
                    maintenance: M::On,
                    db: avail(),
                    drain_pending: false,
                },
                EnvState::Running,
                vec![ScaleUp, MaintenanceOff],
            ),
            // Services down without maintenance: nothing to drain.
            (
                Observed {
                    services: down(),
                    maintenance: M::Off,
                    db: avail(),
                    drain_pending: false,
                },
                EnvState::Stopped,
                vec![MaintenanceOn, StopDatabase],
            ),
            (
                Observed {
                    services: down(),
                    maintenance: M::Off,
                    db: avail(),
                    drain_pending: false,
                },
                EnvState::Running,
                vec![ScaleUp],
            ),
            // The database mid-transition.
            (
                Observed {
                    services: down(),
                    maintenance: M::On,
                    db: Some("stopping".into()),
                    drain_pending: false,
                },
                EnvState::Stopped,
                vec![StopDatabase],
            ),
            (
                Observed {
                    services: down(),
                    maintenance: M::On,
                    db: Some("starting".into()),
                    drain_pending: false,
                },
                EnvState::Running,
                vec![StartDatabase, ScaleUp, MaintenanceOff],
            ),
            // A roll-out in flight is not "up".
            (
                Observed {
                    services: rolling(),
                    maintenance: M::Off,
                    db: avail(),
                    drain_pending: false,
                },
                EnvState::Running,
                vec![ScaleUp],
            ),
            // Up while the database is stopped.
            (
                Observed {
                    services: up(),
                    maintenance: M::Off,
                    db: Some("stopped".into()),
                    drain_pending: false,
                },
                EnvState::Restricted,
                vec![MaintenanceOn, DrainWait, StartDatabase],
            ),
            // No maintenance and no database configured.
            (
                Observed {
                    services: up(),
                    maintenance: M::NotConfigured,
                    db: None,
                    drain_pending: false,
                },
                EnvState::DbOnly,
                vec![ScaleDown],
            ),
            (
                Observed {
                    services: down(),
                    maintenance: M::NotConfigured,
                    db: None,
                    drain_pending: false,
                },
                EnvState::Running,
                vec![ScaleUp],
            ),
        ];
        for (o, to, want) in cases {
            let got = plan(&o, to);
            assert_eq!(got, want, "{o:?} → {to}");
            let after = simulate(o.clone(), &got);
            assert_eq!(derive_state(&after).0, to, "{o:?} → {to}");
        }
        // Whatever is observed, the plan reaches the target (and ends with maintenance off when going up).
        let maint = [M::On, M::Off, M::Partial];
        let dbs = [
            Some("available"),
            Some("stopped"),
            Some("starting"),
            Some("stopping"),
        ];
        for services in [up(), down(), half(), rolling()] {
            for m in maint {
                for db in dbs {
                    let o = Observed {
                        services: services.clone(),
                        maintenance: m,
                        db: db.map(str::to_string),
                        drain_pending: false,
                    };
                    for to in ALL {
                        let steps = plan(&o, to);
                        assert_eq!(
                            derive_state(&simulate(o.clone(), &steps)).0,
                            to,
                            "{o:?} → {to}: {steps:?}"
                        );
                        if let Some(i) = steps.iter().position(|s| *s == MaintenanceOff) {
                            assert_eq!(i, steps.len() - 1, "maintenance comes off last: {steps:?}");
                        }
                        if let Some(i) = steps.iter().position(|s| *s == MaintenanceOn) {
                            assert_eq!(i, 0, "maintenance goes on first: {steps:?}");
                        }
                        if let Some(i) = steps.iter().position(|s| *s == StopDatabase) {
                            assert_eq!(i, steps.len() - 1, "the database stops last: {steps:?}");
                        }
                        if let (Some(a), Some(b)) = (
                            steps.iter().position(|s| *s == StartDatabase),
                            steps.iter().position(|s| *s == ScaleUp),
                        ) {
                            assert!(a < b, "database before services: {steps:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn scale_up_counts() {
        let cases = [
            (Some(3), Some("5"), 0, 3),
            (None, Some("5"), 0, 5),
            (None, Some("junk"), 0, 1),
            (None, None, 4, 4),
            (None, None, 0, 1),
            (Some(0), None, 2, 2),
        ];
        for (configured, recorded, current, want) in cases {
            assert_eq!(
                scale_up_count(configured, recorded, current),
                want,
                "{configured:?} {recorded:?} {current}"
            );
        }
    }

    #[test]
    fn scale_progress_decisions() {
        let s = |desired, running, pending, rollout, deployments| ServiceObs {
            desired,
            running,
            pending,
            rollout,
            deployments,
        };
        let cases = [
            (0, s(0, 0, 0, Rollout::Completed, 1), "done"),
            (0, s(0, 1, 0, Rollout::Completed, 1), "pending"),
            (0, s(0, 0, 1, Rollout::Completed, 1), "pending"),
            (2, s(2, 2, 0, Rollout::Completed, 1), "done"),
            (2, s(2, 2, 0, Rollout::None, 1), "done"),
            (2, s(2, 1, 0, Rollout::Completed, 1), "pending"),
            (2, s(2, 2, 0, Rollout::InProgress, 1), "pending"),
            (2, s(2, 2, 0, Rollout::Completed, 2), "pending"),
            (2, s(0, 0, 0, Rollout::Completed, 1), "pending"),
            (2, s(2, 0, 0, Rollout::Failed, 1), "failed"),
            (2, s(2, 2, 0, Rollout::Other("NEW".into()), 1), "pending"),
        ];
        for (target, o, want) in cases {
            let got = match scale_progress("core", target, &o) {
                ScaleProgress::Done => "done",
                ScaleProgress::Pending(_) => "pending",
                ScaleProgress::Failed(_) => "failed",
            };
            assert_eq!(got, want, "{target} {o:?}");
        }
    }

    #[test]
    fn database_moves() {
        use DbMove::*;
        let cases = [
            ("available", DbWant::Available, Done),
            ("stopped", DbWant::Stopped, Done),
            ("stopped", DbWant::Available, Start),
            ("available", DbWant::Stopped, Stop),
            ("starting", DbWant::Available, Wait),
            ("starting", DbWant::Stopped, Wait),
            ("stopping", DbWant::Available, Wait),
            ("backing-up", DbWant::Stopped, Wait),
            ("some-new-status", DbWant::Available, Wait),
            ("storage-full", DbWant::Available, Refuse),
            ("failed", DbWant::Stopped, Refuse),
        ];
        for (status, want, expect) in cases {
            assert_eq!(db_move(status, want), expect, "{status} {want:?}");
        }
    }

    #[test]
    fn restart_date_is_seven_days_later() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000); // 2026-11-18 11:06:40 UTC
        assert_eq!(restart_date(t), "2026-11-25 11:06 UTC");
    }
}
