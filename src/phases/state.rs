//! Phase `state`: move an environment between running, restricted, db-only and stopped ([`converge`]).

use anyhow::Result;
use std::time::Duration;

use super::Ctx;
use crate::config::Environment;
use crate::domain::converge::{bypass_header, check_target, converge, StateOptions, Step, STATES};
pub use crate::domain::converge::{Clients, StateOutcome};
use crate::domain::environment::EnvState;
use crate::domain::preflight;
use crate::domain::promote;
use crate::error::UsageError;
use crate::github::runner::{md_table, text_table, Outcome};
use crate::inputs::{parse_bool, Common, Invocation};
use crate::text::md_text;
use crate::version::Version;
use crate::wait::human;

#[derive(Debug, Clone)]
pub struct Request {
    pub environment: Environment,
    pub target: EnvState,
    pub options: StateOptions,
    /// The `version` input when given: state changes no version, but the run is recorded with it.
    pub version: Option<Version>,
}

impl Request {
    pub fn from_invocation(inv: &Invocation, common: &Common) -> Result<Request, UsageError> {
        let target = parse_target(inv.raw.state.as_deref())?;
        let bypass_header = bypass_header(
            inv.raw.maintenance_header_name.as_deref(),
            inv.raw.maintenance_header_value.as_deref(),
        )?;
        let skip_drain = parse_bool("skip-drain", inv.raw.skip_drain.as_deref(), false)?;
        let options = StateOptions {
            bypass_header,
            skip_drain,
        };
        check_target(&common.environment, target, &options)?;
        let version = match inv.raw.version.as_deref() {
            Some(v) if promote::reference(v).is_some() => None,
            Some(v) => Some(Version::parse(v)?),
            None => None,
        };
        Ok(Request {
            environment: common.environment.clone(),
            target,
            options,
            version,
        })
    }
}

impl super::Recorded for Request {
    fn subject(&self, common: &Common) -> super::Subject {
        super::Subject::new(common, self.version.as_ref())
    }
}

/// The `state` input as a target.
pub fn parse_target(value: Option<&str>) -> Result<EnvState, UsageError> {
    // One spelling per state, lowercase, as `deploy`'s `state` input takes them: no aliases, no case folding.
    let Some(v) = value else {
        return Err(UsageError::new(format!(
            "input `state`: missing; name the target state, one of: {STATES}"
        )));
    };
    match v {
        "running" => Ok(EnvState::Running),
        "restricted" => Ok(EnvState::Restricted),
        "db-only" => Ok(EnvState::DbOnly),
        "stopped" => Ok(EnvState::Stopped),
        _ => Err(UsageError::new(format!(
            "input `state`: unknown state {v:?}; use one of: {STATES}"
        ))),
    }
}

/// The phase: [`converge`] on the requested target.
pub async fn run(req: &Request, clients: &Clients, ctx: &Ctx) -> Result<StateOutcome> {
    let env = &req.environment;
    if let (Some(m), EnvState::Restricted | EnvState::DbOnly | EnvState::Stopped) =
        (&env.maintenance, req.target)
    {
        // The preflight: every forwarding rule can take the bypass condition before maintenance goes on.
        let rows = preflight::maintenance(&clients.elb, m).await?;
        preflight::finish(&ctx.runner, "state", &preflight::Report { rows })?;
    }
    converge(env, req.target, &req.options, clients, ctx).await
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------------------

impl StateOutcome {
    fn rows(&self) -> Vec<Vec<String>> {
        if self.dry_run {
            return self
                .plan
                .iter()
                .map(|s| vec![s.to_string(), "-".into(), "planned (dry run)".into()])
                .collect();
        }
        self.steps
            .iter()
            .map(|s| {
                vec![
                    s.step.to_string(),
                    human(Duration::from_secs_f64(s.seconds)),
                    s.detail.clone(),
                ]
            })
            .collect()
    }

    fn headline(&self) -> String {
        match (self.dry_run, self.plan.is_empty()) {
            (_, true) => format!(
                "environment {} is {} already; nothing to do",
                self.environment, self.target
            ),
            (true, false) => format!(
                "dry run: environment {} is {}; {} step(s) would make it {}",
                self.environment,
                self.previous_state,
                self.plan.len(),
                self.target
            ),
            (false, false) => format!(
                "environment {}: {} → {}",
                self.environment, self.previous_state, self.state
            ),
        }
    }
}

impl Outcome for StateOutcome {
    fn ok(&self) -> bool {
        self.dry_run || self.state == self.target
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        let mut o = vec![
            ("previous-state", self.previous_state.to_string()),
            ("state", self.state.to_string()),
            (
                "steps",
                self.steps
                    .iter()
                    .map(|s| s.step.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            (
                "plan",
                self.plan
                    .iter()
                    .map(Step::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        ];
        if let Some(at) = &self.database_restarts_at {
            o.push(("database-restarts-at", at.clone()));
        }
        o
    }

    fn summary(&self) -> String {
        let mut s = format!("### {}\n\n", md_text(&self.headline()));
        if let Some(why) = &self.previous_reason {
            s.push_str(&format!(
                "> {}\n\n",
                md_text(&format!("was {}: {why}", self.previous_state))
            ));
        }
        if !self.plan.is_empty() {
            s.push_str(&md_table(&["step", "took", "detail"], &self.rows()));
        }
        if let Some(at) = &self.database_restarts_at {
            s.push_str(&format!(
                "\n⚠️ The database is stopped; AWS starts it again by itself on **{}**.\n",
                md_text(&at.to_string())
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("\n> {}\n", md_text(n)));
        }
        s
    }

    fn text(&self) -> String {
        let mut s = format!("{}\n", self.headline());
        if let Some(why) = &self.previous_reason {
            s.push_str(&format!("  was {}: {why}\n", self.previous_state));
        }
        if !self.plan.is_empty() {
            s.push('\n');
            s.push_str(&text_table(&["STEP", "TOOK", "DETAIL"], &self.rows()));
        }
        if let Some(at) = &self.database_restarts_at {
            s.push_str(&format!(
                "\nthe database is stopped; AWS starts it again by itself on {at}\n"
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs() {
        assert_eq!(parse_target(Some("db-only")).unwrap(), EnvState::DbOnly);
        assert_eq!(parse_target(Some("running")).unwrap(), EnvState::Running);
        for other in [
            " running", "Running", "RUNNING", "db_only", "dbonly", "DB-ONLY",
        ] {
            assert!(parse_target(Some(other)).is_err(), "{other:?}");
        }
        let e = parse_target(Some("paused")).unwrap_err().to_string();
        assert!(
            e.contains("input `state`") && e.contains("paused") && e.contains("db-only"),
            "{e}"
        );
        assert!(parse_target(Some("mixed")).is_err());
        assert!(parse_target(None)
            .unwrap_err()
            .to_string()
            .contains("missing"));
        let e = bypass_header(Some("x-b"), None).unwrap_err().to_string();
        assert!(
            e.contains("maintenance-header-name") && e.contains("maintenance-header-value"),
            "{e}"
        );
        let e = bypass_header(Some("x-b"), Some("a*"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("a*"), "{e}");
        assert!(bypass_header(None, None).unwrap().is_none());
    }
}
