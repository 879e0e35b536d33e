//! GitHub Deployments around every phase that changes an environment, and the gates checked before it.
//!
//! [`around`] is what `main` calls with the phase's future (nothing of which has run yet):
//! 1. [`Plan::from_invocation`]: the inputs this needs (`github-deployments`, `override-freeze`, `webhook-url`),
//!    validated; read-only phases (status, check-config) pass straight through;
//! 2. [`connect`]: the GitHub API when on a runner with a token and `GITHUB_REPOSITORY` (or when forced);
//! 3. [`Release::begin`]: the gates (freeze; one at a time and promotion from the Deployments API), then the record
//!    (`POST /deployments`, status `in_progress`). A refusal or a permission error ends the run here, exit 1,
//!    before any AWS call;
//! 4. the phase runs;
//! 5. [`Release::finish`]: status `success` / `failure` / `error` (a failure to record it only warns), the changelog
//!    for deploy, the summary section, the webhook.
//!
//! `dry-run` checks the gates (a refusal becomes a warning) and records nothing.
//!
//! Phase `preview` is recorded under its review app's transient environment (`<github env>-pr-N`, with the app's
//! URL); its teardown makes no record of its own but marks every deployment of that environment `inactive`
//! ([`deactivate`]) once the phase succeeded.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use tokio::time::Instant;

use self::gates::{Gate, GateResult, GateSet, GateVerdict};
use self::notify::{Ending, Message};
use crate::config::{Config, Environment};
use crate::error::UsageError;
use crate::github::api::{Api, ApiError, Commit, Deployment, DeploymentStatus, WorkflowRun};
use crate::github::deployments::{
    bounded, connect, deactivate, query_value, recent_deployments, seen, with_statuses,
    DeploymentSeen, Mode, StatusState, TOOL,
};

use crate::domain::Ctx;
use crate::github::changelog;
use crate::github::runner::{md_table, md_table_md, Outcome, Runner};
use crate::github::summary::render_steps;
use crate::inputs::{Common, GithubEnv, Invocation, Phase};
use crate::phases::Subject;
use crate::text::{md_text, md_url};
use crate::wait::{human, WaitError};

pub mod gates;
pub mod notify;

/// How many of an environment's newest deployments the one-at-a-time gate looks at.
const RECENT: u32 = 10;
/// How many of the required environment's newest deployments the promotion gate looks at.
const PROMOTION_WINDOW: u32 = 100;

/// What the wrapper does for one invocation, from validated inputs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub phase: Phase,
    pub gates: GateSet,
    pub environment: Environment,
    /// The environment `requires` names: (its name in the config, its GitHub environment).
    pub required: Option<(String, String)>,
    pub version: Option<String>,
    pub mode: Mode,
    pub override_freeze: Option<String>,
    pub webhook_url: Option<String>,
    pub dry_run: bool,
    /// A review app's teardown: no record; the environment's deployments are marked inactive at the end.
    pub teardown: bool,
}

impl Plan {
    /// `None` for phases that change nothing. Every input error is a [`UsageError`] naming the input. What the run
    /// is recorded under comes from the phase's parsed request ([`Subject`]); only the wrapper's own inputs are read
    /// here.
    pub fn from_invocation(
        inv: &Invocation,
        common: &Common,
        subject: Subject,
    ) -> Result<Option<Plan>, UsageError> {
        let Some(gates) = gates::gates_for(inv.phase) else {
            return Ok(None);
        };
        let mode = Mode::parse(inv.raw.github_deployments.as_deref())?;
        let override_freeze = inv
            .raw
            .override_freeze
            .as_deref()
            .map(parse_override)
            .transpose()?;
        let webhook_url = inv
            .raw
            .webhook_url
            .as_deref()
            .map(notify::validate_url)
            .transpose()?;
        let Subject {
            environment: env,
            version,
            teardown,
        } = subject;
        let required = match &env.requires {
            Some(name) => {
                let config = Config::load(&common.config_path)?;
                let req = config.environment(name)?;
                Some((name.clone(), req.github.environment.clone()))
            }
            None => None,
        };
        Ok(Some(Plan {
            phase: inv.phase,
            gates,
            environment: env,
            required,
            version,
            mode,
            override_freeze,
            webhook_url,
            dry_run: common.dry_run,
            teardown,
        }))
    }

    fn github_environment(&self) -> &str {
        &self.environment.github.environment
    }

    /// `deploy v1.2.3 to prod`, `state on prod`.
    fn what(&self) -> String {
        match &self.version {
            Some(v) => format!("{} {v} to {}", self.phase.name(), self.environment.name),
            None => format!("{} on {}", self.phase.name(), self.environment.name),
        }
    }
}

/// `override-freeze` must say why: text, not a yes.
pub fn parse_override(value: &str) -> Result<String, UsageError> {
    let reason: String = value.split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = reason.to_ascii_lowercase();
    if ["true", "yes", "1", "on", "false", "no", "0", "off"].contains(&lower.as_str()) {
        return Err(UsageError::new(format!(
            "input `override-freeze`: {reason:?} is not a reason; say why the freeze is overridden, e.g. override-freeze: \"hotfix for INC-123, approved by the on-call lead\""
        )));
    }
    if reason.chars().count() > 200 {
        return Err(UsageError::new(
            "input `override-freeze`: longer than 200 characters; keep the reason to one sentence",
        ));
    }
    Ok(reason)
}

/// How this run is recorded on GitHub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Record {
    /// Our deployment, moved to `in_progress`.
    Created {
        id: u64,
    },
    /// The deployment GitHub made for the job's own `environment:` records this run; we made no second one.
    Job {
        id: u64,
    },
    NotRecorded {
        why: String,
    },
}

/// Gates passed and the record started: what [`Release::finish`] completes.
#[derive(Debug)]
pub struct Release {
    pub plan: Plan,
    api: Option<Api>,
    github: GithubEnv,
    pub gates: Vec<GateResult>,
    pub record: Record,
    /// The version of the environment's newest successful `deploy` record (for the changelog).
    pub deployed_before: Option<String>,
    steps: Vec<(String, Duration, bool)>,
}

/// The wrapper `main` puts around every phase: read-only phases run as they are; the others pass the gates, are
/// recorded as a GitHub deployment, and get a summary section and a notification.
pub async fn around<O, F>(
    inv: &Invocation,
    common: &Common,
    ctx: &Ctx,
    subject: Subject,
    phase: F,
) -> anyhow::Result<Released<O>>
where
    O: Outcome,
    F: Future<Output = anyhow::Result<O>>,
{
    let Some(plan) = Plan::from_invocation(inv, common, subject)? else {
        return Ok(Released::plain(phase.await?));
    };
    let api = connect(plan.mode, &inv.github, inv.raw.github_token.as_deref())?;
    let release = Release::begin(plan, api, inv.github.clone(), OffsetDateTime::now_utc()).await?;
    let started = Instant::now();
    let result = phase.await;
    release.finish(result, started.elapsed(), &ctx.runner).await
}

impl Release {
    /// The gates, then the record. `Err` (exit 1) on a refusal or when GitHub cannot be used as asked; nothing has
    /// touched AWS yet.
    pub async fn begin(
        plan: Plan,
        api: Result<Api, String>,
        github: GithubEnv,
        now: OffsetDateTime,
    ) -> anyhow::Result<Release> {
        let started = Instant::now();
        let api = api
            .map_err(|why| warn_unavailable(&plan, &github, &why))
            .ok();
        let this_run = github.run_id.clone().unwrap_or_default();
        let (results, recent) = check_gates(&plan, api.as_ref(), &this_run, now).await?;
        for r in &results {
            match &r.verdict {
                GateVerdict::Pass(d) => tracing::info!("gate {}: pass ({d})", r.gate.name()),
                GateVerdict::Overridden(d) => tracing::warn!("gate {}: {d}", r.gate.name()),
                GateVerdict::Skipped(_) | GateVerdict::Refuse(_) => {}
            }
        }
        let refusal = results
            .iter()
            .find(|r| r.verdict.refuses())
            .map(|r| r.verdict.detail().to_string());
        let mut steps = vec![("gates".to_string(), started.elapsed(), refusal.is_none())];
        if let Some(refusal) = refusal {
            refuse(&plan, &github, refusal, started.elapsed()).await?;
        }
        let deployed_before = deployed_before(&recent);
        let record =
            start_record(&plan, api.as_ref(), &github, &recent, &this_run, &mut steps).await?;
        Ok(Release {
            plan,
            api,
            github,
            gates: results,
            record,
            deployed_before,
            steps,
        })
    }

    /// Records the final status, adds the changelog (deploy) and the summary section, notifies. The phase's result
    /// comes back unchanged: nothing here can turn a success into a failure or hide a failure.
    pub async fn finish<O: Outcome>(
        mut self,
        result: anyhow::Result<O>,
        took: Duration,
        runner: &Runner,
    ) -> anyhow::Result<Released<O>> {
        let (state, ending) = match &result {
            Ok(o) if o.ok() => ("success", Ending::Succeeded),
            Ok(o) => ("failure", Ending::Failed(first_line(&o.text()))),
            Err(e) if is_cancelled(e) => ("error", Ending::Failed(format!("{e:#}"))),
            Err(e) => ("failure", Ending::Failed(format!("{e:#}"))),
        };
        self.steps
            .push((self.plan.phase.name().to_string(), took, state == "success"));
        if let (Record::Created { id }, Some(api)) = (&self.record, &self.api) {
            let t = Instant::now();
            let description = match &ending {
                Ending::Succeeded => format!("{}: succeeded in {}", self.plan.what(), human(took)),
                Ending::Failed(why) | Ending::Refused(why) => {
                    format!("{}: failed: {why}", self.plan.what())
                }
            };
            let ok = match post_status(api, *id, state, &description, &self.plan, &self.github)
                .await
            {
                Ok(()) => {
                    tracing::info!("GitHub deployment {id}: {state}");
                    true
                }
                Err(e) => {
                    tracing::warn!(
                        "could not record the final status ({state}) of GitHub deployment {id}: {e}; the phase's result stands"
                    );
                    false
                }
            };
            self.steps
                .push((format!("record {state}"), t.elapsed(), ok));
        }
        if let (true, "success", false, Some(api)) =
            (self.plan.teardown, state, self.plan.dry_run, &self.api)
        {
            let t = Instant::now();
            let env = self.plan.github_environment().to_string();
            let result = deactivate(api, &env, &format!("{}: torn down", self.plan.what())).await;
            let ok = match &result {
                Ok(ids) => {
                    tracing::info!(
                        "GitHub environment {env}: {} deployment(s) marked inactive",
                        ids.len()
                    );
                    true
                }
                Err(e) => {
                    tracing::warn!("could not mark the deployments of {env} inactive: {e}");
                    false
                }
            };
            self.steps.push(("record inactive".into(), t.elapsed(), ok));
        }
        let changes = match &result {
            Ok(o) if self.plan.phase == Phase::Deploy && !self.plan.dry_run => {
                self.changelog(o).await
            }
            _ => None,
        };
        let section = self.section(&ending, took, changes.as_deref());
        if !self.plan.dry_run {
            let message = Message {
                phase: self.plan.phase.name().into(),
                environment: self.plan.environment.name.clone(),
                version: self.plan.version.clone(),
                ending,
                duration: took,
                run_url: self.github.run_url(),
                freeze_override: self.freeze_override(),
            };
            notify::send(self.plan.webhook_url.as_deref(), &message).await;
        }
        let deployment_id = match self.record {
            Record::Created { id } | Record::Job { id } => Some(id),
            Record::NotRecorded { .. } => None,
        };
        match result {
            Ok(inner) => Ok(Released {
                inner,
                section,
                deployment_id,
            }),
            Err(e) => {
                if let Err(io) = runner.append_summary(&section) {
                    runner.warning(&format!("could not write $GITHUB_STEP_SUMMARY: {io}"));
                }
                Err(e)
            }
        }
    }

    fn freeze_override(&self) -> Option<String> {
        self.gates
            .iter()
            .any(|g| matches!(g.verdict, GateVerdict::Overridden(_)))
            .then(|| self.plan.override_freeze.clone())
            .flatten()
    }

    /// The changelog markdown for a deploy, or `None` (with a log line saying why).
    async fn changelog<O: Outcome>(&mut self, outcome: &O) -> Option<String> {
        let (api, head) = (self.api.as_ref()?, self.plan.version.clone()?);
        let from_outcome = outcome
            .outputs()
            .into_iter()
            .find(|(k, v)| *k == "previous-version" && !v.trim().is_empty())
            .map(|(_, v)| v);
        let Some(base) = from_outcome.or_else(|| self.deployed_before.clone()) else {
            tracing::info!("changelog: the version deployed before is not known; skipped");
            return None;
        };
        if base == head {
            return Some(format!(
                "#### Changes\n\n{head} was deployed again: no changes.\n"
            ));
        }
        let t = Instant::now();
        let result = changelog::fetch(api, &base, &head).await;
        self.steps
            .push(("changelog".into(), t.elapsed(), result.is_ok()));
        match result {
            Ok(log) => {
                tracing::info!(
                    "changelog {base}...{head}: {} commits, {} pull requests",
                    log.ahead_by,
                    log.pulls.len()
                );
                Some(changelog::render(&log, self.repo_url().as_deref()))
            }
            Err(e) => {
                tracing::warn!("changelog: {e}; the summary has no list of changes");
                None
            }
        }
    }

    fn repo_url(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            self.github
                .server_url
                .as_deref()
                .unwrap_or("https://github.com"),
            self.github.repository.as_deref()?
        ))
    }

    /// The summary section: what, result, gates, record, steps, changes.
    pub fn section(&self, ending: &Ending, took: Duration, changes: Option<&str>) -> String {
        let p = &self.plan;
        let result = match (ending, p.dry_run) {
            (_, true) => "🧪 dry run: nothing changed, nothing recorded".to_string(),
            (Ending::Succeeded, false) => "✅ succeeded".to_string(),
            (Ending::Failed(why), false) => format!("❌ failed: {why}"),
            (Ending::Refused(why), false) => format!("🚫 refused: {why}"),
        };
        let env = match &p.environment.url {
            Some(url) => format!("{} ({url})", p.environment.name),
            None => p.environment.name.clone(),
        };
        let env_link = self
            .repo_url()
            .map(|r| format!("{r}/deployments/{}", query_value(p.github_environment())));
        // The one cell with a link: every piece escaped here, the table taken as markdown.
        let record = match (&self.record, env_link) {
            (Record::Created { id }, Some(link)) => format!(
                "[deployment {id}]({}) on {}",
                md_url(&link),
                md_text(p.github_environment())
            ),
            (Record::Created { id }, None) => format!("deployment {id}"),
            (Record::Job { id }, _) => {
                format!("deployment {id}, made for the job's `environment:`")
            }
            (Record::NotRecorded { why }, _) => md_text(&format!("not recorded ({why})")),
        };
        let mut rows = vec![
            vec!["Result".to_string(), md_text(&result)],
            vec!["Environment".into(), md_text(&env)],
            vec![
                "Version".into(),
                md_text(p.version.as_deref().unwrap_or("—")),
            ],
            vec!["Duration".into(), human(took)],
            vec!["GitHub".into(), record],
        ];
        if let Some(url) = self.github.run_url() {
            rows.push(vec!["Run".into(), md_text(&url)]);
        }
        if let Some(reason) = self.freeze_override() {
            rows.push(vec!["Freeze overridden".into(), md_text(&reason)]);
        }
        let title = p
            .version
            .as_deref()
            .map(|v| format!("{v} → {}", p.environment.name))
            .unwrap_or_else(|| p.environment.name.clone());
        let mut s = format!(
            "### {} {}\n\n{}",
            p.phase.name(),
            md_text(&title),
            md_table_md(&["", ""], &rows)
        );
        if !self.gates.is_empty() {
            let rows: Vec<Vec<String>> = self
                .gates
                .iter()
                .map(|g| {
                    vec![
                        g.gate.name().into(),
                        g.verdict.label().into(),
                        g.verdict.detail().into(),
                    ]
                })
                .collect();
            s.push_str(&format!(
                "\n{}",
                md_table(&["Gate", "Verdict", "Detail"], &rows)
            ));
        }
        let steps: Vec<(&str, Duration, bool)> = self
            .steps
            .iter()
            .map(|(n, d, ok)| (n.as_str(), *d, *ok))
            .collect();
        s.push_str(&format!("\n{}", render_steps(&steps)));
        if let Some(c) = changes {
            s.push_str(&format!("\n{c}"));
        }
        s
    }
}

fn promotion_applies(plan: &Plan) -> bool {
    plan.gates.promotion && plan.required.is_some() && plan.version.is_some()
}

fn is_cancelled(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<WaitError>(),
            Some(WaitError::Cancelled { .. })
        )
    })
}

fn first_line(s: &str) -> String {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("the phase did not reach its goal")
        .trim()
        .to_string()
}

/// Says that GitHub is not available and which gates that skips: a warning on a runner or with a promotion gate,
/// else (the ordinary local CLI run) one quiet line.
fn warn_unavailable(plan: &Plan, github: &GithubEnv, why: &str) {
    let needs_github: Vec<&str> = [
        Some("one-at-a-time"),
        promotion_applies(plan).then_some("promotion"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let what = format!(
        "GitHub not available ({why}): {}the {} gate{} skipped",
        if plan.dry_run {
            ""
        } else {
            "this run is not recorded on GitHub, and "
        },
        needs_github.join(" and "),
        if needs_github.len() > 1 {
            "s are"
        } else {
            " is"
        }
    );
    if github.on_runner() || promotion_applies(plan) {
        tracing::warn!("{what}");
    } else {
        tracing::info!("{what}");
    }
}

/// Every gate of the plan, in order (freeze; one at a time and promotion from the Deployments API, skipped without
/// GitHub), with the environment's recent deployments they read. `Err` when GitHub cannot be read for a gate.
async fn check_gates(
    plan: &Plan,
    api: Option<&Api>,
    this_run: &str,
    now: OffsetDateTime,
) -> anyhow::Result<(Vec<GateResult>, Vec<DeploymentSeen>)> {
    let mut results = Vec::new();
    if plan.gates.freeze {
        let verdict = gates::freeze_gate(
            &plan.environment.name,
            &plan.environment.freeze,
            now,
            plan.override_freeze.as_deref(),
        );
        results.push(GateResult {
            gate: Gate::Freeze,
            verdict,
        });
    }
    let Some(api) = api else {
        let why = GateVerdict::Skipped("GitHub not available".into());
        results.push(GateResult {
            gate: Gate::OneAtATime,
            verdict: why.clone(),
        });
        if promotion_applies(plan) {
            results.push(GateResult {
                gate: Gate::Promotion,
                verdict: why,
            });
        }
        return Ok((results, Vec::new()));
    };
    let recent = recent_deployments(api, plan.github_environment(), RECENT, 1)
        .await
        .map_err(|e| gate_error(&e, "one-at-a-time"))?;
    let verdict = one_at_a_time(api, plan, &recent, this_run).await;
    results.push(GateResult {
        gate: Gate::OneAtATime,
        verdict,
    });
    if promotion_applies(plan) {
        let verdict = promotion(api, plan)
            .await
            .map_err(|e| gate_error(&e, "promotion"))?;
        results.push(GateResult {
            gate: Gate::Promotion,
            verdict,
        });
    }
    Ok((results, recent))
}

/// A gate refused: a dry run only warns; a real run notifies the webhook and ends here (`Err`).
async fn refuse(
    plan: &Plan,
    github: &GithubEnv,
    refusal: String,
    took: Duration,
) -> anyhow::Result<()> {
    if plan.dry_run {
        tracing::warn!("dry run: a real run would be refused: {refusal}");
        return Ok(());
    }
    let message = Message {
        phase: plan.phase.name().into(),
        environment: plan.environment.name.clone(),
        version: plan.version.clone(),
        ending: Ending::Refused(refusal.clone()),
        duration: took,
        run_url: github.run_url(),
        freeze_override: None,
    };
    notify::send(plan.webhook_url.as_deref(), &message).await;
    anyhow::bail!("{refusal}");
}

/// Pure: the version of the environment's newest successful `deploy` of ours (for the changelog).
fn deployed_before(recent: &[DeploymentSeen]) -> Option<String> {
    recent
        .iter()
        .find(|d| {
            d.ours
                && d.phase.as_deref() == Some("deploy")
                && d.latest() == Some(&StatusState::Success)
        })
        .and_then(|d| d.version.clone())
}

/// The GitHub record of this run: none (dry run, no GitHub, a teardown), the job's own, or ours made `in_progress`.
async fn start_record(
    plan: &Plan,
    api: Option<&Api>,
    github: &GithubEnv,
    recent: &[DeploymentSeen],
    this_run: &str,
    steps: &mut Vec<(String, Duration, bool)>,
) -> anyhow::Result<Record> {
    Ok(match api {
        _ if plan.dry_run => Record::NotRecorded {
            why: "dry run".into(),
        },
        None => Record::NotRecorded {
            why: "GitHub not available".into(),
        },
        Some(_) if plan.teardown => Record::NotRecorded {
            why: "a teardown; the environment's deployments are marked inactive".into(),
        },
        Some(api) => match gates::this_jobs_record(recent, this_run) {
            Some(job) if plan.mode == Mode::Auto => {
                tracing::info!(
                    "GitHub deployments: the job's `environment:` records this run (deployment {}); not creating a second record (github-deployments: true forces one)",
                    job.id
                );
                Record::Job { id: job.id }
            }
            _ => {
                let t = Instant::now();
                let id = create(api, plan, github).await?;
                steps.push(("record in_progress".into(), t.elapsed(), true));
                tracing::info!(
                    "GitHub deployment {id}: {} is in progress ({})",
                    plan.what(),
                    plan.github_environment()
                );
                Record::Created { id }
            }
        },
    })
}

/// A gate that could not be checked refuses: the message names the permission when that is the cause.
fn gate_error(e: &ApiError, gate: &str) -> anyhow::Error {
    if e.is_permission() {
        anyhow::anyhow!(
            "{e}: the token cannot read deployments for the {gate} gate; give the job `permissions: deployments: write` (and `contents: read`), or set github-deployments: false to skip the GitHub gates; nothing was changed"
        )
    } else {
        anyhow::anyhow!(
            "{e}: the {gate} gate could not be checked; re-run when GitHub answers, or set github-deployments: false to skip the GitHub gates; nothing was changed"
        )
    }
}

/// The one-at-a-time verdict. A blocker whose workflow run has finished left a stale record (its runner died):
/// warned about, not waited for.
async fn one_at_a_time(
    api: &Api,
    plan: &Plan,
    recent: &[DeploymentSeen],
    this_run: &str,
) -> GateVerdict {
    let mut finished = Vec::new();
    for d in gates::blockers(recent, this_run, &[]) {
        let Some(run) = &d.run_id else { continue };
        let route = api.route(&format!("actions/runs/{run}"));
        match api
            .get::<WorkflowRun>(&format!("get workflow run {run}"), &route)
            .await
        {
            Ok(r) if r.status.as_deref() == Some("completed") => {
                tracing::warn!(
                    "{} is still marked in progress, but its workflow run has finished; not waiting for it",
                    d.describe()
                );
                finished.push(run.clone());
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("{e}; taking {} as running", d.describe()),
        }
    }
    let blockers = gates::blockers(recent, this_run, &finished);
    gates::one_at_a_time_gate(plan.github_environment(), &blockers)
}

async fn promotion(api: &Api, plan: &Plan) -> Result<GateVerdict, ApiError> {
    let (Some((required, required_gh)), Some(version)) = (&plan.required, &plan.version) else {
        return Ok(GateVerdict::Pass("no promotion required".into()));
    };
    let list: Vec<Deployment> = api
        .get(
            &format!("list deployments of {required_gh}"),
            &api.route(&format!(
                "deployments?environment={}&per_page={PROMOTION_WINDOW}",
                query_value(required_gh)
            )),
        )
        .await?;
    let bare: Vec<DeploymentSeen> = list.iter().map(|d| seen(d, &[])).collect();
    // Records made by a job's `environment:` name a branch or tag; the version's commit matches them too.
    let sha = if bare.iter().any(|d| !d.ours && d.git_ref != *version) {
        let route = api.route(&format!("commits/{}", query_value(version)));
        match api
            .get::<Commit>(&format!("get commit of {version}"), &route)
            .await
        {
            Ok(c) => Some(c.sha),
            Err(e) => {
                tracing::debug!("{e}; matching {required} deployments by version and ref only");
                None
            }
        }
    } else {
        None
    };
    let candidates: Vec<Deployment> = list
        .iter()
        .zip(&bare)
        .filter(|(_, s)| gates::deployed_version(s, version, sha.as_deref()))
        .map(|(d, _)| d.clone())
        .take(10)
        .collect();
    let candidates = with_statuses(api, &candidates, 100).await?;
    Ok(gates::promotion_gate(
        &plan.environment.name,
        required,
        version,
        &candidates,
        list.len(),
    ))
}

/// `POST /deployments` (the version's tag, else the commit), then status `in_progress`.
async fn create(api: &Api, plan: &Plan, github: &GithubEnv) -> anyhow::Result<u64> {
    let env = plan.github_environment();
    let sha = github.sha.clone().filter(|s| !s.is_empty());
    let mut refs: Vec<String> = plan.version.iter().cloned().chain(sha.clone()).collect();
    refs.dedup();
    if refs.is_empty() {
        anyhow::bail!(
            "GitHub deployments: nothing to record the deployment at (no version input and GITHUB_SHA is not set); pass `version`, or set github-deployments: false; nothing was changed"
        );
    }
    let mut payload = json!({
        "tool": TOOL,
        "phase": plan.phase.name(),
        "version": plan.version,
        "environment": plan.environment.name,
        "run_id": github.run_id,
        "run_attempt": github.run_attempt,
    });
    if let Some(reason) = &plan.override_freeze {
        payload["override_freeze"] = json!(reason);
    }
    let what = format!("create a deployment of {env}");
    let mut last: Option<ApiError> = None;
    for (i, git_ref) in refs.iter().enumerate() {
        let body = json!({
            "ref": git_ref,
            "task": format!("deploy:{}", plan.phase.name()),
            "auto_merge": false,
            "required_contexts": [],
            "payload": payload,
            "environment": env,
            "description": bounded(&format!("{} (deploy-action)", plan.what()), 140),
            "transient_environment": plan.environment.github.transient,
            "production_environment": plan.environment.github.production,
        });
        match api
            .post::<Deployment>(&what, &api.route("deployments"), &body)
            .await
        {
            Ok(d) => {
                post_status(
                    api,
                    d.id,
                    "in_progress",
                    &format!("{}: started", plan.what()),
                    plan,
                    github,
                )
                .await
                .map_err(|e| record_error(&e))?;
                return Ok(d.id);
            }
            Err(e) if e.is_unprocessable() && i + 1 < refs.len() => {
                tracing::info!(
                    "GitHub does not take {git_ref:?} as a ref ({}); recording the deployment at {} instead",
                    e.message,
                    refs[i + 1]
                );
                last = Some(e);
            }
            Err(e) => return Err(record_error(&e)),
        }
    }
    Err(record_error(&last.expect("the loop ran at least once")))
}

fn record_error(e: &ApiError) -> anyhow::Error {
    if e.is_permission() {
        anyhow::anyhow!(
            "{e}: the token cannot write deployments; give the job `permissions: deployments: write` (and `contents: read`), or set github-deployments: false; nothing was changed"
        )
    } else {
        anyhow::anyhow!(
            "{e}: the deployment could not be recorded; re-run when GitHub answers, or set github-deployments: false; nothing was changed"
        )
    }
}

async fn post_status(
    api: &Api,
    id: u64,
    state: &str,
    description: &str,
    plan: &Plan,
    github: &GithubEnv,
) -> Result<(), ApiError> {
    let mut body = json!({
        "state": state,
        "description": bounded(description, 140),
    });
    if let Some(url) = github.run_url() {
        body["log_url"] = json!(url);
    }
    if let Some(url) = &plan.environment.url {
        body["environment_url"] = json!(url);
    }
    api.post::<DeploymentStatus>(
        &format!("set deployment {id} to {state}"),
        &api.route(&format!("deployments/{id}/statuses")),
        &body,
    )
    .await
    .map(|_| ())
}

/// A phase's outcome with the deployment's summary section after its own. Serialises as the phase's outcome.
#[derive(Debug, Clone)]
pub struct Released<O> {
    pub inner: O,
    /// Markdown appended to the phase's summary (empty for read-only phases).
    pub section: String,
    pub deployment_id: Option<u64>,
}

impl<O> Released<O> {
    pub fn plain(inner: O) -> Released<O> {
        Released {
            inner,
            section: String::new(),
            deployment_id: None,
        }
    }
}

impl<O: Serialize> Serialize for Released<O> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<O: Outcome> Outcome for Released<O> {
    fn ok(&self) -> bool {
        self.inner.ok()
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        let mut out = self.inner.outputs();
        if let Some(id) = self.deployment_id {
            out.push(("deployment-id", id.to_string()));
        }
        out
    }

    fn summary(&self) -> String {
        let own = self.inner.summary();
        match (own.trim().is_empty(), self.section.is_empty()) {
            (_, true) => own,
            (true, false) => self.section.clone(),
            (false, false) => format!("{}\n\n{}", own.trim_end(), self.section),
        }
    }

    fn text(&self) -> String {
        self.inner.text()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_needs_a_reason() {
        assert_eq!(
            parse_override("  hotfix  for\nINC-42 ").unwrap(),
            "hotfix for INC-42"
        );
        for bad in ["true", "YES", "1"] {
            let e = parse_override(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("input `override-freeze`") && e.contains("not a reason"),
                "{e}"
            );
        }
        assert!(parse_override(&"x".repeat(201)).is_err());
    }
}
