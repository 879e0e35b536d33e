//! The environment as it is now: every core service's revision, version, counts and roll-out, the database and its
//! newest manual snapshot, maintenance, migrations in flight, and the state derived from them ([`derive_state`]).
//! Read-only (Describe/List calls). Phases observe through [`observe`] before they plan; `status` reports it.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::aws::ecs::{self, Rollout};
use crate::aws::rds;
use crate::config::{Database, Environment};
use crate::domain::maintenance::{self, MaintenanceState};

/// The four states an environment can be put in, and `mixed` for anything in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvState {
    Running,
    Restricted,
    DbOnly,
    Stopped,
    Mixed,
}

impl std::fmt::Display for EnvState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EnvState::Running => "running",
            EnvState::Restricted => "restricted",
            EnvState::DbOnly => "db-only",
            EnvState::Stopped => "stopped",
            EnvState::Mixed => "mixed",
        })
    }
}

/// Only the clients [`observe`] uses.
pub struct Clients {
    pub ecs: aws_sdk_ecs::Client,
    pub rds: aws_sdk_rds::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub aas: aws_sdk_applicationautoscaling::Client,
}

impl Clients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Clients {
        Clients {
            ecs: aws_sdk_ecs::Client::new(sdk),
            rds: aws_sdk_rds::Client::new(sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(sdk),
            aas: aws_sdk_applicationautoscaling::Client::new(sdk),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    pub name: String,
    pub task_definition: String,
    pub revision: Option<i32>,
    /// Images of the containers configured to take the new image.
    pub images: Vec<String>,
    /// The version read back from the first configured container's image tag.
    pub version: Option<String>,
    pub desired: i32,
    pub running: i32,
    pub pending: i32,
    pub configured_desired: Option<i32>,
    pub rollout: Rollout,
    pub deployments: usize,
    /// Its Application Auto Scaling target (`status` only): active, suspended, and by whom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseStatus {
    pub identifier: String,
    pub kind: crate::config::DatabaseKind,
    pub status: String,
    pub newest_snapshot: Option<String>,
    /// To the second (a whole-minute figure printed "0.0s old" for a 13-s-old snapshot).
    pub newest_snapshot_age_seconds: Option<u64>,
}

/// The outcome of `status`, also what other phases observe before they plan.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub environment: String,
    pub cluster: String,
    pub region: String,
    pub state: EnvState,
    /// Why the state is `mixed` (or a note), if anything is off.
    pub state_reason: Option<String>,
    pub services: Vec<ServiceStatus>,
    pub database: Option<DatabaseStatus>,
    pub maintenance: MaintenanceState,
    /// With maintenance on: when a drain wait started that did not finish (seconds since the epoch); the next
    /// `state` run towards restricted, db-only or stopped finishes it first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drain_from: Option<i64>,
    /// Migration tasks not yet stopped.
    pub migration_tasks: Vec<String>,
}

/// Reads everything `status` reports. Read-only: Describe/List calls only.
pub async fn observe(env: &Environment, c: &Clients) -> Result<Status> {
    let names: Vec<String> = env.services.iter().map(|s| s.name.clone()).collect();
    let services_fut = ecs::describe_services(&c.ecs, &env.cluster, &names);
    let db_fut = observe_db(&c.rds, env.database.as_ref());
    let maint_fut = maintenance::observe_with_drain(&c.elb, env.maintenance.as_ref());
    let mig_fut = async {
        match &env.migration {
            Some(m) => ecs::live_tasks_of_family(&c.ecs, &env.cluster, &m.family)
                .await
                .map_err(anyhow::Error::from),
            None => Ok(vec![]),
        }
    };
    let (services, database, (maintenance, drain_from), migration_tasks) =
        tokio::try_join!(services_fut, db_fut, maint_fut, mig_fut)?;

    let tds: Vec<String> = services
        .iter()
        .map(|s| s.task_definition().unwrap_or_default().to_string())
        .collect();
    let images = ecs::images_by_task_definition(&c.ecs, &tds).await?;
    let mut out = Vec::new();
    for (cfg, svc) in env.services.iter().zip(&services) {
        let td = svc.task_definition().unwrap_or_default().to_string();
        let containers = images
            .iter()
            .find(|(t, _)| *t == td)
            .map(|(_, c)| c.clone())
            .unwrap_or_default();
        let imgs: Vec<String> = cfg
            .containers
            .iter()
            .map(|name| {
                containers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, i)| i.clone())
                    .unwrap_or_else(|| format!("(no container {name})"))
            })
            .collect();
        let version = imgs.first().and_then(|i| cfg.image.version_of(i));
        let primary = ecs::primary(svc);
        out.push(ServiceStatus {
            name: cfg.name.clone(),
            revision: ecs::td_revision(&td),
            task_definition: td,
            images: imgs,
            version,
            desired: svc.desired_count(),
            running: svc.running_count(),
            pending: svc.pending_count(),
            configured_desired: cfg.desired_count,
            rollout: primary.map(Rollout::of).unwrap_or(Rollout::None),
            deployments: svc.deployments().len(),
            autoscaling: None,
        });
    }
    let mut status = Status {
        environment: env.name.clone(),
        cluster: env.cluster.clone(),
        region: env.region.clone(),
        state: EnvState::Mixed,
        state_reason: None,
        services: out,
        database,
        maintenance,
        drain_from,
        migration_tasks,
    };
    (status.state, status.state_reason) = derive_state(&status.observed());
    Ok(status)
}

impl Status {
    /// What decides the state (and what `state` plans from).
    pub fn observed(&self) -> Observed {
        Observed {
            services: self
                .services
                .iter()
                .map(|s| ServiceObs {
                    desired: s.desired,
                    running: s.running,
                    pending: s.pending,
                    rollout: s.rollout.clone(),
                    deployments: s.deployments,
                })
                .collect(),
            maintenance: self.maintenance,
            db: self.database.as_ref().map(|d| d.status.clone()),
            drain_pending: self.drain_from.is_some(),
        }
    }
}

async fn observe_db(
    rds_client: &aws_sdk_rds::Client,
    db: Option<&Database>,
) -> Result<Option<DatabaseStatus>> {
    let Some(db) = db else { return Ok(None) };
    let (status, snaps) = tokio::try_join!(
        rds::db_status(rds_client, db),
        rds::manual_snapshots(rds_client, db)
    )
    .with_context(|| format!("reading database {}", db.identifier))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let newest = snaps.iter().find(|s| s.status == "available");
    Ok(Some(DatabaseStatus {
        identifier: db.identifier.clone(),
        kind: db.kind,
        status,
        newest_snapshot: newest.map(|s| s.id.clone()),
        newest_snapshot_age_seconds: newest
            .and_then(|s| s.created)
            .map(|t| (now - t).max(0) as u64),
    }))
}

/// The inputs of [`derive_state`], reduced to what decides it.
#[derive(Debug, Clone)]
pub struct Observed {
    pub services: Vec<ServiceObs>,
    pub maintenance: MaintenanceState,
    /// The DB status string, `None` when no database is configured.
    pub db: Option<String>,
    /// Maintenance is on, and the drain wait after it did not finish (a run was stopped during it).
    pub drain_pending: bool,
}

#[derive(Debug, Clone)]
pub struct ServiceObs {
    pub desired: i32,
    pub running: i32,
    pub pending: i32,
    pub rollout: Rollout,
    pub deployments: usize,
}

impl ServiceObs {
    /// Settled at a count above 0: running == desired, nothing pending, the roll-out done, one deployment.
    pub fn up(&self) -> bool {
        let settled = match self.rollout {
            Rollout::Completed | Rollout::None => true,
            Rollout::InProgress | Rollout::Failed | Rollout::Other(_) => false,
        };
        self.desired > 0
            && self.running == self.desired
            && self.pending == 0
            && settled
            && self.deployments <= 1
    }
    /// Scaled to 0 with no task left.
    pub fn down(&self) -> bool {
        self.desired == 0 && self.running == 0 && self.pending == 0
    }
}

/// Pure: the environment's state from what was observed, with the reason when it is `mixed`.
pub fn derive_state(o: &Observed) -> (EnvState, Option<String>) {
    let up = o.services.iter().all(ServiceObs::up);
    let down = o.services.iter().all(ServiceObs::down);
    let db = o.db.as_deref();
    let db_available = matches!(db, None | Some("available"));
    let db_stopped = db == Some("stopped");
    use MaintenanceState as M;
    let maint_on = matches!(o.maintenance, M::On | M::NotConfigured);
    let state = match (up, down, o.maintenance) {
        (true, _, M::Off | M::NotConfigured) if db_available => Some(EnvState::Running),
        (true, _, M::On) if db_available => Some(EnvState::Restricted),
        (_, true, _) if maint_on && db_available && db.is_some() => Some(EnvState::DbOnly),
        (_, true, _) if maint_on && db.is_none() => Some(EnvState::DbOnly),
        (_, true, _) if maint_on && db_stopped => Some(EnvState::Stopped),
        _ => None,
    };
    match state {
        Some(s) => (s, None),
        None => {
            let mut why = Vec::new();
            if !up && !down {
                let n = o.services.iter().filter(|s| !s.up() && !s.down()).count();
                why.push(format!("{n} service(s) neither settled up nor scaled to 0"));
            } else if up {
                why.push("services are up".to_string());
            } else {
                why.push("services are at 0".to_string());
            }
            why.push(format!("maintenance {}", o.maintenance));
            if let Some(db) = db {
                why.push(format!("database {db}"));
            }
            (EnvState::Mixed, Some(why.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MaintenanceState as M;

    fn svc(desired: i32, running: i32, rollout: Rollout) -> ServiceObs {
        ServiceObs {
            desired,
            running,
            pending: 0,
            rollout,
            deployments: 1,
        }
    }

    #[test]
    fn derived_states() {
        let up = || vec![svc(2, 2, Rollout::Completed), svc(1, 1, Rollout::Completed)];
        let down = || vec![svc(0, 0, Rollout::Completed), svc(0, 0, Rollout::Completed)];
        let avail = Some("available".to_string());
        let cases: Vec<(Vec<ServiceObs>, MaintenanceState, Option<String>, EnvState)> = vec![
            (up(), M::Off, avail.clone(), EnvState::Running),
            (up(), M::NotConfigured, None, EnvState::Running),
            (up(), M::On, avail.clone(), EnvState::Restricted),
            (down(), M::On, avail.clone(), EnvState::DbOnly),
            (down(), M::On, Some("stopped".into()), EnvState::Stopped),
            (
                down(),
                M::NotConfigured,
                Some("stopped".into()),
                EnvState::Stopped,
            ),
            (down(), M::Off, avail.clone(), EnvState::Mixed),
            (up(), M::Partial, avail.clone(), EnvState::Mixed),
            (up(), M::Off, Some("stopped".into()), EnvState::Mixed),
            (up(), M::Off, Some("starting".into()), EnvState::Mixed),
            (
                vec![
                    svc(2, 1, Rollout::InProgress),
                    svc(1, 1, Rollout::Completed),
                ],
                M::Off,
                avail.clone(),
                EnvState::Mixed,
            ),
            (
                vec![svc(2, 2, Rollout::Failed)],
                M::Off,
                avail.clone(),
                EnvState::Mixed,
            ),
            (
                vec![svc(2, 2, Rollout::Completed), svc(0, 0, Rollout::Completed)],
                M::On,
                avail.clone(),
                EnvState::Mixed,
            ),
            (down(), M::On, Some("stopping".into()), EnvState::Mixed),
        ];
        for (services, m, db, want) in cases {
            let o = Observed {
                services,
                maintenance: m,
                db,
                drain_pending: false,
            };
            let (got, why) = derive_state(&o);
            assert_eq!(got, want, "{o:?}");
            assert_eq!(why.is_some(), want == EnvState::Mixed, "{o:?}: {why:?}");
        }
    }

    #[test]
    fn a_second_deployment_still_draining_is_not_settled() {
        let mut s = svc(2, 2, Rollout::Completed);
        s.deployments = 2;
        let o = Observed {
            services: vec![s],
            maintenance: M::Off,
            db: None,
            drain_pending: false,
        };
        assert_eq!(derive_state(&o).0, EnvState::Mixed);
    }
}
