//! The RDS calls the phases share: DB instance or Aurora cluster, and their manual snapshots.

use aws_sdk_rds::Client;
use serde::Serialize;

use super::{AwsError, AwsResultExt};
use crate::config::{Database, DatabaseKind};

/// A manual snapshot, instance or cluster alike.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub id: String,
    pub arn: String,
    pub status: String,
    pub percent: Option<i32>,
    /// Seconds since the epoch, when AWS has set it.
    pub created: Option<i64>,
}

/// The database's status string (`available`, `stopped`, `starting`, ...).
pub async fn db_status(rds: &Client, db: &Database) -> Result<String, AwsError> {
    match db.kind {
        DatabaseKind::Instance => {
            let out = rds
                .describe_db_instances()
                .db_instance_identifier(&db.identifier)
                .send()
                .await
                .aws("RDS DescribeDBInstances", &db.identifier)?;
            Ok(out
                .db_instances()
                .first()
                .and_then(|i| i.db_instance_status())
                .unwrap_or("unknown")
                .to_string())
        }
        DatabaseKind::Cluster => {
            let out = rds
                .describe_db_clusters()
                .db_cluster_identifier(&db.identifier)
                .send()
                .await
                .aws("RDS DescribeDBClusters", &db.identifier)?;
            Ok(out
                .db_clusters()
                .first()
                .and_then(|c| c.status())
                .unwrap_or("unknown")
                .to_string())
        }
    }
}

/// Every manual snapshot of the database, newest first.
pub async fn manual_snapshots(rds: &Client, db: &Database) -> Result<Vec<Snapshot>, AwsError> {
    let mut snaps = Vec::new();
    match db.kind {
        DatabaseKind::Instance => {
            let mut pages = rds
                .describe_db_snapshots()
                .db_instance_identifier(&db.identifier)
                .snapshot_type("manual")
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.aws("RDS DescribeDBSnapshots", &db.identifier)?;
                for s in page.db_snapshots() {
                    snaps.push(Snapshot {
                        id: s.db_snapshot_identifier().unwrap_or_default().to_string(),
                        arn: s.db_snapshot_arn().unwrap_or_default().to_string(),
                        status: s.status().unwrap_or("unknown").to_string(),
                        percent: s.percent_progress(),
                        created: s.snapshot_create_time().map(|t| t.secs()),
                    });
                }
            }
        }
        DatabaseKind::Cluster => {
            let mut pages = rds
                .describe_db_cluster_snapshots()
                .db_cluster_identifier(&db.identifier)
                .snapshot_type("manual")
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.aws("RDS DescribeDBClusterSnapshots", &db.identifier)?;
                for s in page.db_cluster_snapshots() {
                    snaps.push(Snapshot {
                        id: s
                            .db_cluster_snapshot_identifier()
                            .unwrap_or_default()
                            .to_string(),
                        arn: s.db_cluster_snapshot_arn().unwrap_or_default().to_string(),
                        status: s.status().unwrap_or("unknown").to_string(),
                        percent: s.percent_progress(),
                        created: s.snapshot_create_time().map(|t| t.secs()),
                    });
                }
            }
        }
    }
    snaps.sort_by_key(|s| std::cmp::Reverse(s.created));
    Ok(snaps)
}

/// StartDBInstance / StartDBCluster.
pub async fn start(rds: &Client, db: &Database) -> Result<(), AwsError> {
    match db.kind {
        DatabaseKind::Instance => {
            rds.start_db_instance()
                .db_instance_identifier(&db.identifier)
                .send()
                .await
                .aws("RDS StartDBInstance", &db.identifier)?;
        }
        DatabaseKind::Cluster => {
            rds.start_db_cluster()
                .db_cluster_identifier(&db.identifier)
                .send()
                .await
                .aws("RDS StartDBCluster", &db.identifier)?;
        }
    }
    Ok(())
}

/// StopDBInstance / StopDBCluster (AWS starts a stopped database again by itself after seven days).
pub async fn stop(rds: &Client, db: &Database) -> Result<(), AwsError> {
    match db.kind {
        DatabaseKind::Instance => {
            rds.stop_db_instance()
                .db_instance_identifier(&db.identifier)
                .send()
                .await
                .aws("RDS StopDBInstance", &db.identifier)?;
        }
        DatabaseKind::Cluster => {
            rds.stop_db_cluster()
                .db_cluster_identifier(&db.identifier)
                .send()
                .await
                .aws("RDS StopDBCluster", &db.identifier)?;
        }
    }
    Ok(())
}

/// The error codes RDS answers when a start/stop races with another state change.
pub fn is_invalid_state(err: &AwsError) -> bool {
    err.is("InvalidDBInstanceState")
        || err.is("InvalidDBInstanceStateFault")
        || err.is("InvalidDBClusterStateFault")
}
