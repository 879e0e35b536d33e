//! A one-off task run and reported: what phases `run` and `migrate` share ([`execute`] and the rendering of
//! [`RunOutcome`]).

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use tokio::time::Instant;

use crate::domain::promote::{Promotion, Resolved};
use crate::domain::task::{self, Launch, TaskReport};
use crate::domain::Ctx;
use crate::github::runner::{md_table, Outcome};
use crate::text::{md_code, md_text};
use crate::wait::human;

/// What `run` does after resolving its task, and `migrate` after its preconditions: the task through
/// [`task::run`], reported as a [`RunOutcome`]. `started` is when the phase started (for the duration).
pub async fn execute(
    launch: &Launch<'_>,
    resolved: &Resolved,
    clients: &task::Clients,
    ctx: &Ctx,
    started: Instant,
) -> Result<RunOutcome> {
    let report = task::run(launch, clients, ctx).await?;
    Ok(RunOutcome {
        environment: launch.environment.name.clone(),
        version: resolved.version.to_string(),
        resolved_from: resolved.promotion.clone(),
        dry_run: ctx.dry_run,
        command: launch.command.map(<[String]>::to_vec),
        task: report,
        duration_seconds: started.elapsed().as_secs(),
    })
}

/// The outcome of a one-off task (and the part of `migrate`'s outcome that is the same).
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub environment: String,
    pub version: String,
    /// Set when the version was `from:<environment>`.
    pub resolved_from: Option<Promotion>,
    pub dry_run: bool,
    /// The command override, when one was given.
    pub command: Option<Vec<String>>,
    pub task: TaskReport,
    pub duration_seconds: u64,
}

impl RunOutcome {
    /// `task-arn`, `exit-code`, `log-lines`, `version`, `resolved-from`.
    pub fn base_outputs(&self) -> Vec<(&'static str, String)> {
        let mut o = self.task.outputs();
        o.push(("version", self.version.clone()));
        o.push((
            "resolved-from",
            self.resolved_from
                .as_ref()
                .map(|p| p.environment.clone())
                .unwrap_or_default(),
        ));
        o
    }

    /// Markdown: the verdict first (and why, on failure), then `banners`, the table (the task's rows, `extra`, the
    /// duration), and the last log lines on failure.
    pub fn summary_with(&self, banners: &[String], extra: Vec<Vec<String>>) -> String {
        let mut s = format!("### {} {}\n\n", self.task.icon(), self.headline());
        if !self.task.ok() {
            s.push_str(&format!("**{}**\n\n", md_text(&self.task.explanation())));
        }
        for b in banners {
            s.push_str(b);
            s.push_str("\n\n");
        }
        s.push_str(&md_table(&["", ""], &self.rows(extra)));
        if !self.task.ok() {
            let block = self.task.last_lines_markdown();
            if !block.is_empty() {
                s.push('\n');
                s.push_str(&block);
            }
        }
        s
    }

    /// Plain text, in the same order as [`RunOutcome::summary_with`].
    pub fn text_with(&self, notes: &[String], extra: Vec<Vec<String>>) -> String {
        let mut s = format!(
            "{} {} on {}: {}\n",
            self.task.label, self.version, self.environment, self.task.verdict
        );
        if !self.task.ok() {
            s.push_str(&format!("  {}\n", self.task.explanation()));
        }
        for n in notes {
            s.push_str(&format!("  {n}\n"));
        }
        for row in self.rows(extra) {
            s.push_str(&format!("  {:<17}{}\n", row[0], row[1]));
        }
        if !self.task.ok() {
            s.push_str(&self.task.last_lines_text());
        }
        s
    }

    fn headline(&self) -> String {
        let mut label = self.task.label.chars();
        let title: String = label
            .next()
            .map(|first| first.to_uppercase().chain(label).collect())
            .unwrap_or_default();
        format!(
            "{} on {}: {}",
            md_text(&format!("{title} {}", self.version)),
            md_code(&self.environment),
            md_text(&self.task.verdict.to_string())
        )
    }

    fn rows(&self, extra: Vec<Vec<String>>) -> Vec<Vec<String>> {
        let mut rows = self.task.rows(self.dry_run);
        if let Some(cmd) = &self.command {
            rows.push(vec![
                "command".into(),
                serde_json::to_string(cmd).unwrap_or_default(),
            ]);
        }
        if let Some(p) = &self.resolved_from {
            rows.push(vec!["version".into(), p.describe(&self.version)]);
        }
        rows.extend(extra);
        rows.push(vec![
            "took".into(),
            human(Duration::from_secs(self.duration_seconds)),
        ]);
        rows
    }
}

impl Outcome for RunOutcome {
    fn ok(&self) -> bool {
        self.task.ok()
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        self.base_outputs()
    }

    fn summary(&self) -> String {
        self.summary_with(&[], vec![])
    }

    fn text(&self) -> String {
        self.text_with(&[], vec![])
    }
}
