//! Phase `status` (read-only): the derived state of an environment, each core service's revision, image, version,
//! counts and roll-out, the database and its newest manual snapshot, maintenance, and migrations in flight.
//! The observation itself lives in [`crate::domain::environment`]; this phase reports it.

use anyhow::Result;
use serde::Serialize;

use crate::aws::autoscaling;
use crate::aws::ecs;
use crate::config::Environment;
use crate::github::runner::{md_table, text_table, Outcome};
use crate::text::{md_code, md_text};

pub use crate::domain::environment::Clients;
use crate::domain::environment::{observe, Status};

#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub environment: Environment,
}

impl Request {
    pub fn from_invocation(
        _inv: &crate::inputs::Invocation,
        common: &crate::inputs::Common,
    ) -> Result<Request, crate::error::UsageError> {
        Ok(Request {
            environment: common.environment.clone(),
        })
    }
}

impl super::Recorded for Request {
    fn subject(&self, common: &crate::inputs::Common) -> super::Subject {
        super::Subject::new(common, None)
    }
}

/// `status` is [`observe`] reported as an outcome.
pub async fn run(req: &Request, clients: &Clients, _ctx: &super::Ctx) -> Result<Status> {
    let mut status = observe(&req.environment, clients).await?;
    for s in status.services.iter_mut() {
        s.autoscaling = autoscaling_of(clients, &req.environment, &s.name).await;
    }
    Ok(status)
}

/// The service's scalable target, for people: `suspended by deploy-action (found active; min 1, max 4)`. A target
/// that cannot be read is said so, without failing `status`.
async fn autoscaling_of(c: &Clients, env: &Environment, name: &str) -> Option<String> {
    let target = match autoscaling::ecs_target(&c.aas, &env.cluster, name).await {
        Ok(t) => t?,
        Err(e) => {
            return Some(format!(
                "unknown ({})",
                e.code.as_deref().unwrap_or("error")
            ))
        }
    };
    let (now, min, max) = target;
    let arn = ecs::describe_services(&c.ecs, &env.cluster, &[name.to_string()])
        .await
        .ok()?
        .first()?
        .service_arn()?
        .to_string();
    let tags = ecs::tags(&c.ecs, &arn).await.unwrap_or_default();
    let found = crate::tags::get(&tags, crate::domain::autoscaling::TAG)
        .and_then(autoscaling::Suspended::parse);
    Some(match found {
        Some(f) => format!(
            "{} by deploy-action (found {}; min {min}, max {max})",
            now.describe(),
            f.describe()
        ),
        None => format!("{} (min {min}, max {max})", now.describe()),
    })
}

impl Outcome for Status {
    fn ok(&self) -> bool {
        true
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        let mut o = vec![
            ("state", self.state.to_string()),
            ("maintenance", self.maintenance.to_string()),
            (
                "services",
                serde_json::to_string(&self.services).unwrap_or_default(),
            ),
            ("migration-tasks", self.migration_tasks.join(",")),
        ];
        let versions: Vec<&str> = self
            .services
            .iter()
            .filter_map(|s| s.version.as_deref())
            .collect();
        if !versions.is_empty() && versions.iter().all(|v| *v == versions[0]) {
            o.push(("version", versions[0].to_string()));
        }
        if let Some(db) = &self.database {
            o.push(("database-status", db.status.clone()));
            o.push((
                "snapshot-id",
                db.newest_snapshot.clone().unwrap_or_default(),
            ));
            o.push((
                "snapshot-age-minutes",
                db.newest_snapshot_age_seconds
                    .map(|s| (s / 60).to_string())
                    .unwrap_or_default(),
            ));
            o.push((
                "snapshot-age-seconds",
                db.newest_snapshot_age_seconds
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            ));
        }
        o
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "### Environment {}: **{}**\n\n",
            md_code(&self.environment),
            md_text(&self.state.to_string())
        );
        if let Some(r) = &self.state_reason {
            s.push_str(&format!("> {}\n\n", md_text(r)));
        }
        s.push_str(&md_table(
            &[
                "service", "revision", "version", "desired", "running", "pending", "roll-out",
            ],
            &self.service_rows(),
        ));
        s.push('\n');
        s.push_str(&md_table(&["", ""], &self.detail_rows()));
        s
    }

    fn text(&self) -> String {
        let mut s = format!(
            "environment {} ({} in {}): {}\n",
            self.environment, self.cluster, self.region, self.state
        );
        if let Some(r) = &self.state_reason {
            s.push_str(&format!("  {r}\n"));
        }
        s.push('\n');
        s.push_str(&text_table(
            &[
                "SERVICE", "REVISION", "VERSION", "DESIRED", "RUNNING", "PENDING", "ROLL-OUT",
            ],
            &self.service_rows(),
        ));
        s.push('\n');
        for row in self.detail_rows() {
            s.push_str(&format!("{:<16}{}\n", row[0], row[1]));
        }
        s
    }
}

impl Status {
    fn service_rows(&self) -> Vec<Vec<String>> {
        self.services
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    ecs::td_short(&s.task_definition).to_string(),
                    s.version.clone().unwrap_or_else(|| s.images.join(", ")),
                    match s.configured_desired {
                        Some(c) if c != s.desired => format!("{} (config {c})", s.desired),
                        _ => s.desired.to_string(),
                    },
                    s.running.to_string(),
                    s.pending.to_string(),
                    s.rollout.to_string(),
                ]
            })
            .collect()
    }

    fn detail_rows(&self) -> Vec<Vec<String>> {
        let mut rows = vec![vec![
            "maintenance".to_string(),
            self.maintenance.to_string(),
        ]];
        let scaling: Vec<String> = self
            .services
            .iter()
            .filter_map(|s| s.autoscaling.as_ref().map(|a| format!("{}: {a}", s.name)))
            .collect();
        if !scaling.is_empty() {
            rows.push(vec!["autoscaling".to_string(), scaling.join("; ")]);
        }
        match &self.database {
            Some(db) => {
                rows.push(vec![
                    "database".into(),
                    format!("{} ({})", db.identifier, db.status),
                ]);
                rows.push(vec![
                    "newest snapshot".into(),
                    snapshot_cell(
                        db.newest_snapshot.as_deref(),
                        db.newest_snapshot_age_seconds,
                    ),
                ]);
            }
            None => rows.push(vec!["database".into(), "not configured".into()]),
        }
        rows.push(vec![
            "migrations".into(),
            if self.migration_tasks.is_empty() {
                "none in flight".into()
            } else {
                format!(
                    "{} in flight: {}",
                    self.migration_tasks.len(),
                    self.migration_tasks.join(", ")
                )
            },
        ]);
        rows
    }
}

/// Pure: the newest snapshot and its age, to the second.
pub fn snapshot_cell(id: Option<&str>, age_seconds: Option<u64>) -> String {
    match (id, age_seconds) {
        (Some(id), Some(s)) => format!(
            "{id} ({} old)",
            crate::wait::human(std::time::Duration::from_secs(s))
        ),
        (Some(id), None) => id.to_string(),
        (None, _) => "none".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_age_is_to_the_second() {
        let cases = [
            (Some("s"), Some(13), "s (13.0s old)"),
            (Some("s"), Some(82), "s (1m 22s old)"),
            (Some("s"), Some(0), "s (0.0s old)"),
            (Some("s"), Some(3 * 3600 + 125), "s (3h 2m old)"),
            (Some("s"), None, "s"),
            (None, Some(5), "none"),
        ];
        for (id, age, want) in cases {
            assert_eq!(snapshot_cell(id, age), want, "{id:?} {age:?}");
        }
    }
}
