//! The RDS calls the phases share: DB instance or Aurora cluster, and their manual snapshots.

use aws_sdk_rds::types::Tag;
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
    /// The snapshot's tags as (key, value).
    pub tags: Vec<(String, String)>,
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

/// Every manual snapshot of the database, newest first (snapshots still without a creation time last).
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
                snaps.extend(page.db_snapshots().iter().map(Snapshot::from_db));
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
                snaps.extend(
                    page.db_cluster_snapshots()
                        .iter()
                        .map(Snapshot::from_cluster),
                );
            }
        }
    }
    snaps.sort_by_key(|s| std::cmp::Reverse(s.created));
    Ok(snaps)
}

impl Snapshot {
    fn from_db(s: &aws_sdk_rds::types::DbSnapshot) -> Snapshot {
        Snapshot {
            id: s.db_snapshot_identifier().unwrap_or_default().to_string(),
            arn: s.db_snapshot_arn().unwrap_or_default().to_string(),
            status: s.status().unwrap_or("unknown").to_string(),
            percent: s.percent_progress(),
            created: s.snapshot_create_time().map(|t| t.secs()),
            tags: tag_pairs(s.tag_list()),
        }
    }

    fn from_cluster(s: &aws_sdk_rds::types::DbClusterSnapshot) -> Snapshot {
        Snapshot {
            id: s
                .db_cluster_snapshot_identifier()
                .unwrap_or_default()
                .to_string(),
            arn: s.db_cluster_snapshot_arn().unwrap_or_default().to_string(),
            status: s.status().unwrap_or("unknown").to_string(),
            percent: s.percent_progress(),
            created: s.snapshot_create_time().map(|t| t.secs()),
            tags: tag_pairs(s.tag_list()),
        }
    }

    /// The value of one tag, if the snapshot carries it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn tag_pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn rds_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// One snapshot of the database by identifier; `None` when RDS does not know it.
pub async fn describe_snapshot(
    rds: &Client,
    db: &Database,
    id: &str,
) -> Result<Option<Snapshot>, AwsError> {
    match db.kind {
        DatabaseKind::Instance => {
            let out = rds
                .describe_db_snapshots()
                .db_snapshot_identifier(id)
                .send()
                .await;
            match out {
                Ok(out) => Ok(out.db_snapshots().first().map(Snapshot::from_db)),
                Err(e) => {
                    let e = AwsError::from_sdk("RDS DescribeDBSnapshots", id, e);
                    if e.is("DBSnapshotNotFound") {
                        Ok(None)
                    } else {
                        Err(e)
                    }
                }
            }
        }
        DatabaseKind::Cluster => {
            let out = rds
                .describe_db_cluster_snapshots()
                .db_cluster_snapshot_identifier(id)
                .send()
                .await;
            match out {
                Ok(out) => Ok(out
                    .db_cluster_snapshots()
                    .first()
                    .map(Snapshot::from_cluster)),
                Err(e) => {
                    let e = AwsError::from_sdk("RDS DescribeDBClusterSnapshots", id, e);
                    if e.is("DBClusterSnapshotNotFoundFault") {
                        Ok(None)
                    } else {
                        Err(e)
                    }
                }
            }
        }
    }
}

/// Starts a manual snapshot of the database (DB snapshot or cluster snapshot), tagged.
pub async fn create_snapshot(
    rds: &Client,
    db: &Database,
    id: &str,
    tags: &[(String, String)],
) -> Result<Snapshot, AwsError> {
    match db.kind {
        DatabaseKind::Instance => {
            let out = rds
                .create_db_snapshot()
                .db_instance_identifier(&db.identifier)
                .db_snapshot_identifier(id)
                .set_tags(Some(rds_tags(tags)))
                .send()
                .await
                .aws(
                    "RDS CreateDBSnapshot",
                    format!("{} snapshot {id}", db.identifier),
                )?;
            Ok(out
                .db_snapshot()
                .map(Snapshot::from_db)
                .unwrap_or_else(|| Snapshot::starting(id, tags)))
        }
        DatabaseKind::Cluster => {
            let out = rds
                .create_db_cluster_snapshot()
                .db_cluster_identifier(&db.identifier)
                .db_cluster_snapshot_identifier(id)
                .set_tags(Some(rds_tags(tags)))
                .send()
                .await
                .aws(
                    "RDS CreateDBClusterSnapshot",
                    format!("{} snapshot {id}", db.identifier),
                )?;
            Ok(out
                .db_cluster_snapshot()
                .map(Snapshot::from_cluster)
                .unwrap_or_else(|| Snapshot::starting(id, tags)))
        }
    }
}

impl Snapshot {
    /// What we know of a snapshot RDS accepted but did not describe in its answer.
    fn starting(id: &str, tags: &[(String, String)]) -> Snapshot {
        Snapshot {
            id: id.to_string(),
            arn: String::new(),
            status: "creating".into(),
            percent: None,
            created: None,
            tags: tags.to_vec(),
        }
    }
}

/// Deletes one manual snapshot of the database.
pub async fn delete_snapshot(rds: &Client, db: &Database, id: &str) -> Result<(), AwsError> {
    match db.kind {
        DatabaseKind::Instance => {
            rds.delete_db_snapshot()
                .db_snapshot_identifier(id)
                .send()
                .await
                .aws("RDS DeleteDBSnapshot", id)?;
        }
        DatabaseKind::Cluster => {
            rds.delete_db_cluster_snapshot()
                .db_cluster_snapshot_identifier(id)
                .send()
                .await
                .aws("RDS DeleteDBClusterSnapshot", id)?;
        }
    }
    Ok(())
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

/// The database's ARN and tags (DescribeDBInstances / DescribeDBClusters carry both).
pub async fn arn_and_tags(
    rds: &Client,
    db: &Database,
) -> Result<(String, Vec<(String, String)>), AwsError> {
    match db.kind {
        DatabaseKind::Instance => {
            let out = rds
                .describe_db_instances()
                .db_instance_identifier(&db.identifier)
                .send()
                .await
                .aws("RDS DescribeDBInstances", &db.identifier)?;
            let i = out.db_instances().first();
            Ok((
                i.and_then(|i| i.db_instance_arn())
                    .unwrap_or_default()
                    .to_string(),
                i.map(|i| tag_pairs(i.tag_list())).unwrap_or_default(),
            ))
        }
        DatabaseKind::Cluster => {
            let out = rds
                .describe_db_clusters()
                .db_cluster_identifier(&db.identifier)
                .send()
                .await
                .aws("RDS DescribeDBClusters", &db.identifier)?;
            let c = out.db_clusters().first();
            Ok((
                c.and_then(|c| c.db_cluster_arn())
                    .unwrap_or_default()
                    .to_string(),
                c.map(|c| tag_pairs(c.tag_list())).unwrap_or_default(),
            ))
        }
    }
}

/// AddTagsToResource on the database (or any RDS resource) by ARN.
pub async fn add_tags(rds: &Client, arn: &str, tags: &[(String, String)]) -> Result<(), AwsError> {
    rds.add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .aws("RDS AddTagsToResource", arn)?;
    Ok(())
}
