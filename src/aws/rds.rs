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

/// What one DescribeDBInstances / DescribeDBClusters says of the database: its status, ARN and tags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbState {
    /// `available`, `stopped`, `starting`, ... (`unknown` when RDS said none).
    pub status: String,
    /// Empty when RDS said none.
    pub arn: String,
    pub tags: Vec<(String, String)>,
}

/// The database's status string (`available`, `stopped`, `starting`, ...).
pub async fn db_status(rds: &Client, db: &Database) -> Result<String, AwsError> {
    Ok(db_state(rds, db).await?.status)
}

/// The database's status, ARN and tags (one DescribeDBInstances / DescribeDBClusters: the tags come with it).
pub async fn db_state(rds: &Client, db: &Database) -> Result<DbState, AwsError> {
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
                .map(|i| DbState {
                    status: i.db_instance_status().unwrap_or("unknown").to_string(),
                    arn: i.db_instance_arn().unwrap_or_default().to_string(),
                    tags: tag_pairs(i.tag_list()),
                })
                .unwrap_or_else(DbState::unknown))
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
                .map(|c| DbState {
                    status: c.status().unwrap_or("unknown").to_string(),
                    arn: c.db_cluster_arn().unwrap_or_default().to_string(),
                    tags: tag_pairs(c.tag_list()),
                })
                .unwrap_or_else(DbState::unknown))
        }
    }
}

impl DbState {
    fn unknown() -> DbState {
        DbState {
            status: "unknown".into(),
            ..DbState::default()
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

/// The longest history DescribeEvents keeps: 14 days, in minutes (its `Duration`).
const EVENTS_KEPT_MINUTES: i32 = 14 * 24 * 60;

/// The database's own RDS events of the last 14 days (DescribeEvents, SourceType `db-instance` or `db-cluster`),
/// as `(epoch milliseconds, message)`, in the order AWS lists them. Their messages are the ones of the RDS event
/// catalogue (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_Events.Messages.html>, for Aurora
/// <https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/USER_Events.Messages.html>): e.g. "DB instance
/// started" (RDS-EVENT-0088), "DB instance stopped" (RDS-EVENT-0087), "DB cluster started" / "DB cluster stopped"
/// (RDS-EVENT-0151 / 0150).
pub async fn recent_events(rds: &Client, db: &Database) -> Result<Vec<(i64, String)>, AwsError> {
    events(rds, db, None).await
}

/// As [`recent_events`], the events dated from `since_ms` (epoch milliseconds) until now (DescribeEvents `StartTime`
/// and `EndTime`: both, as the API names a `Duration` default of 60 minutes besides them).
pub async fn events_since(
    rds: &Client,
    db: &Database,
    since_ms: i64,
) -> Result<Vec<(i64, String)>, AwsError> {
    events(rds, db, Some(since_ms)).await
}

async fn events(
    rds: &Client,
    db: &Database,
    since_ms: Option<i64>,
) -> Result<Vec<(i64, String)>, AwsError> {
    let source_type = match db.kind {
        DatabaseKind::Instance => aws_sdk_rds::types::SourceType::DbInstance,
        DatabaseKind::Cluster => aws_sdk_rds::types::SourceType::DbCluster,
    };
    let req = rds
        .describe_events()
        .source_type(source_type)
        .source_identifier(&db.identifier);
    let req = match since_ms {
        Some(ms) => req
            .start_time(aws_sdk_rds::primitives::DateTime::from_millis(ms))
            .end_time(aws_sdk_rds::primitives::DateTime::from(
                std::time::SystemTime::now(),
            )),
        None => req.duration(EVENTS_KEPT_MINUTES),
    };
    let mut pages = req.into_paginator().send();
    let mut events = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.aws("RDS DescribeEvents", &db.identifier)?;
        events.extend(
            page.events()
                .iter()
                .filter_map(|e| Some((e.date()?.to_millis().ok()?, e.message()?.to_string()))),
        );
    }
    Ok(events)
}

/// The error codes RDS answers when a start/stop races with another state change.
pub fn is_invalid_state(err: &AwsError) -> bool {
    err.is("InvalidDBInstanceState")
        || err.is("InvalidDBInstanceStateFault")
        || err.is("InvalidDBClusterStateFault")
}

/// Pure: any string made a valid RDS snapshot identifier: 1-255 lower-case letters, digits and hyphens, starting
/// with a letter, no two hyphens in a row, no hyphen at the end. Other characters (`.`, `/`, `_`, `+`, spaces) become
/// hyphens; a name that does not start with a letter gets `snapshot-` in front.
pub fn snapshot_identifier(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert_str(0, "snapshot-");
    }
    out.truncate(255);
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// CreateDB(Cluster)Snapshot: a snapshot of that name exists already.
pub fn is_snapshot_exists(err: &AwsError) -> bool {
    err.is("DBSnapshotAlreadyExists") || err.is("DBClusterSnapshotAlreadyExistsFault")
}

/// The instance or cluster does not exist (in this account and region).
pub fn is_db_not_found(err: &AwsError) -> bool {
    err.is("DBInstanceNotFound")
        || err.is("DBInstanceNotFoundFault")
        || err.is("DBClusterNotFoundFault")
}

/// The account's manual snapshot quota is used up.
pub fn is_snapshot_quota_exceeded(err: &AwsError) -> bool {
    err.is("SnapshotQuotaExceeded")
}

// ---------------------------------------------------------------------------------------------------------------
// Restore: DB instances and Aurora clusters as phase `restore` reads, copies, restores and renames them.

/// A DB instance or an Aurora cluster, with the settings a restore copies from the original.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Resource {
    pub id: String,
    pub arn: String,
    pub status: String,
    /// The endpoint address (instance) or the cluster (writer) endpoint.
    pub address: Option<String>,
    pub port: Option<i32>,
    /// Instance class (instances; Aurora members).
    pub class: Option<String>,
    pub engine: Option<String>,
    pub engine_version: Option<String>,
    pub subnet_group: Option<String>,
    pub security_groups: Vec<String>,
    pub parameter_group: Option<String>,
    pub option_group: Option<String>,
    pub multi_az: Option<bool>,
    pub storage_type: Option<String>,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub deletion_protection: Option<bool>,
    pub iam_auth: Option<bool>,
    pub copy_tags: Option<bool>,
    pub publicly_accessible: Option<bool>,
    /// The cluster of an Aurora member instance.
    pub cluster: Option<String>,
    /// A cluster's member instances.
    pub members: Vec<String>,
    pub tags: Vec<(String, String)>,
}

impl Resource {
    fn from_instance(i: &aws_sdk_rds::types::DbInstance) -> Resource {
        Resource {
            id: i.db_instance_identifier().unwrap_or_default().to_string(),
            arn: i.db_instance_arn().unwrap_or_default().to_string(),
            status: i.db_instance_status().unwrap_or("unknown").to_string(),
            address: i.endpoint().and_then(|e| e.address()).map(str::to_string),
            port: i.endpoint().and_then(|e| e.port()).or(i.db_instance_port()),
            class: i.db_instance_class().map(str::to_string),
            engine: i.engine().map(str::to_string),
            engine_version: i.engine_version().map(str::to_string),
            subnet_group: i
                .db_subnet_group()
                .and_then(|g| g.db_subnet_group_name())
                .map(str::to_string),
            security_groups: i
                .vpc_security_groups()
                .iter()
                .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
                .collect(),
            parameter_group: i
                .db_parameter_groups()
                .first()
                .and_then(|g| g.db_parameter_group_name())
                .map(str::to_string),
            option_group: i
                .option_group_memberships()
                .first()
                .and_then(|g| g.option_group_name())
                .map(str::to_string),
            multi_az: i.multi_az(),
            storage_type: i.storage_type().map(str::to_string),
            iops: i.iops(),
            throughput: i.storage_throughput(),
            deletion_protection: i.deletion_protection(),
            iam_auth: i.iam_database_authentication_enabled(),
            copy_tags: i.copy_tags_to_snapshot(),
            publicly_accessible: i.publicly_accessible(),
            cluster: i.db_cluster_identifier().map(str::to_string),
            members: vec![],
            tags: tag_pairs(i.tag_list()),
        }
    }

    fn from_cluster(c: &aws_sdk_rds::types::DbCluster) -> Resource {
        Resource {
            id: c.db_cluster_identifier().unwrap_or_default().to_string(),
            arn: c.db_cluster_arn().unwrap_or_default().to_string(),
            status: c.status().unwrap_or("unknown").to_string(),
            address: c.endpoint().map(str::to_string),
            port: c.port(),
            class: c.db_cluster_instance_class().map(str::to_string),
            engine: c.engine().map(str::to_string),
            engine_version: c.engine_version().map(str::to_string),
            subnet_group: c.db_subnet_group().map(str::to_string),
            security_groups: c
                .vpc_security_groups()
                .iter()
                .filter_map(|g| g.vpc_security_group_id().map(str::to_string))
                .collect(),
            parameter_group: c.db_cluster_parameter_group().map(str::to_string),
            option_group: None,
            multi_az: None,
            storage_type: c.storage_type().map(str::to_string),
            iops: c.iops(),
            throughput: c.storage_throughput(),
            deletion_protection: c.deletion_protection(),
            iam_auth: c.iam_database_authentication_enabled(),
            copy_tags: c.copy_tags_to_snapshot(),
            publicly_accessible: c.publicly_accessible(),
            cluster: None,
            members: c
                .db_cluster_members()
                .iter()
                .filter_map(|m| m.db_instance_identifier().map(str::to_string))
                .collect(),
            tags: tag_pairs(c.tag_list()),
        }
    }

    /// The value of one tag, if the resource carries it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        crate::tags::get(&self.tags, key)
    }
}

/// One DB instance by identifier; `None` when RDS does not know it.
pub async fn find_instance(rds: &Client, id: &str) -> Result<Option<Resource>, AwsError> {
    match rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_instances().first().map(Resource::from_instance)),
        Err(e) => {
            let e = AwsError::from_sdk("RDS DescribeDBInstances", id, e);
            if is_instance_not_found(&e) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// One Aurora cluster by identifier; `None` when RDS does not know it.
pub async fn find_cluster(rds: &Client, id: &str) -> Result<Option<Resource>, AwsError> {
    match rds
        .describe_db_clusters()
        .db_cluster_identifier(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_clusters().first().map(Resource::from_cluster)),
        Err(e) => {
            let e = AwsError::from_sdk("RDS DescribeDBClusters", id, e);
            if is_cluster_not_found(&e) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// A snapshot and the database it was taken of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotOf {
    pub snapshot: Snapshot,
    /// The identifier of the instance or cluster it was taken of (as it was named then).
    pub database: String,
}

/// One manual or automated snapshot by identifier (DB snapshot or cluster snapshot by the database's kind), with
/// the database it was taken of; `None` when RDS does not know it.
pub async fn find_snapshot_of(
    rds: &Client,
    kind: DatabaseKind,
    id: &str,
) -> Result<Option<SnapshotOf>, AwsError> {
    match kind {
        DatabaseKind::Instance => {
            match rds
                .describe_db_snapshots()
                .db_snapshot_identifier(id)
                .send()
                .await
            {
                Ok(out) => Ok(out.db_snapshots().first().map(|s| SnapshotOf {
                    snapshot: Snapshot::from_db(s),
                    database: s.db_instance_identifier().unwrap_or_default().to_string(),
                })),
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
            match rds
                .describe_db_cluster_snapshots()
                .db_cluster_snapshot_identifier(id)
                .send()
                .await
            {
                Ok(out) => Ok(out.db_cluster_snapshots().first().map(|s| SnapshotOf {
                    snapshot: Snapshot::from_cluster(s),
                    database: s.db_cluster_identifier().unwrap_or_default().to_string(),
                })),
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

/// RestoreDBInstanceFromDBSnapshot into `new_id` with the settings of `like` (class, subnet group, security
/// groups, parameter and option group, port, Multi-AZ, storage, deletion protection, IAM auth, copy-tags, public
/// access) and `tags`. Encryption comes from the snapshot.
pub async fn restore_instance(
    rds: &Client,
    snapshot: &str,
    new_id: &str,
    like: &Resource,
    tags: &[(String, String)],
) -> Result<Resource, AwsError> {
    let io_storage = matches!(like.storage_type.as_deref(), Some("io1" | "io2" | "gp3"));
    let out = rds
        .restore_db_instance_from_db_snapshot()
        .db_instance_identifier(new_id)
        .db_snapshot_identifier(snapshot)
        .set_db_instance_class(like.class.clone())
        .set_db_subnet_group_name(like.subnet_group.clone())
        .set_vpc_security_group_ids(
            (!like.security_groups.is_empty()).then(|| like.security_groups.clone()),
        )
        .set_db_parameter_group_name(custom(&like.parameter_group))
        .set_option_group_name(custom(&like.option_group))
        .set_port(like.port)
        .set_multi_az(like.multi_az)
        .set_storage_type(like.storage_type.clone())
        .set_iops(like.iops.filter(|_| io_storage))
        .set_storage_throughput(
            like.throughput
                .filter(|_| like.storage_type.as_deref() == Some("gp3")),
        )
        .set_deletion_protection(like.deletion_protection)
        .set_enable_iam_database_authentication(like.iam_auth)
        .set_copy_tags_to_snapshot(like.copy_tags)
        .set_publicly_accessible(like.publicly_accessible)
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .aws(
            "RDS RestoreDBInstanceFromDBSnapshot",
            format!("{new_id} from snapshot {snapshot}"),
        )?;
    Ok(out
        .db_instance()
        .map(Resource::from_instance)
        .unwrap_or_else(|| Resource {
            id: new_id.to_string(),
            status: "creating".into(),
            tags: tags.to_vec(),
            ..Resource::default()
        }))
}

/// RestoreDBClusterFromSnapshot into `new_id` with the settings of `like` and `tags` (no instances: see
/// [`create_cluster_instance`]).
pub async fn restore_cluster(
    rds: &Client,
    snapshot: &str,
    new_id: &str,
    like: &Resource,
    tags: &[(String, String)],
) -> Result<Resource, AwsError> {
    let out = rds
        .restore_db_cluster_from_snapshot()
        .db_cluster_identifier(new_id)
        .snapshot_identifier(snapshot)
        .set_engine(like.engine.clone())
        .set_engine_version(like.engine_version.clone())
        .set_port(like.port)
        .set_db_subnet_group_name(like.subnet_group.clone())
        .set_vpc_security_group_ids(
            (!like.security_groups.is_empty()).then(|| like.security_groups.clone()),
        )
        .set_db_cluster_parameter_group_name(custom(&like.parameter_group))
        .set_deletion_protection(like.deletion_protection)
        .set_enable_iam_database_authentication(like.iam_auth)
        .set_copy_tags_to_snapshot(like.copy_tags)
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .aws(
            "RDS RestoreDBClusterFromSnapshot",
            format!("{new_id} from snapshot {snapshot}"),
        )?;
    Ok(out
        .db_cluster()
        .map(Resource::from_cluster)
        .unwrap_or_else(|| Resource {
            id: new_id.to_string(),
            status: "creating".into(),
            tags: tags.to_vec(),
            ..Resource::default()
        }))
}

/// CreateDBInstance `id` in cluster `cluster`, with the class and engine of `like` (an instance of the original
/// cluster) and `tags`.
pub async fn create_cluster_instance(
    rds: &Client,
    id: &str,
    cluster: &str,
    like: &Resource,
    tags: &[(String, String)],
) -> Result<Resource, AwsError> {
    let out = rds
        .create_db_instance()
        .db_instance_identifier(id)
        .db_cluster_identifier(cluster)
        .set_db_instance_class(like.class.clone())
        .set_engine(like.engine.clone())
        .set_db_parameter_group_name(custom(&like.parameter_group))
        .set_publicly_accessible(like.publicly_accessible)
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .aws("RDS CreateDBInstance", format!("{id} in cluster {cluster}"))?;
    Ok(out
        .db_instance()
        .map(Resource::from_instance)
        .unwrap_or_else(|| Resource {
            id: id.to_string(),
            status: "creating".into(),
            ..Resource::default()
        }))
}

/// A parameter or option group to name in a restore: a custom one; a default group (`default.postgres16`,
/// `default:postgres-16`) is what RDS picks when none is named, so it is left out.
fn custom(group: &Option<String>) -> Option<String> {
    group
        .clone()
        .filter(|g| !g.starts_with("default.") && !g.starts_with("default:"))
}

/// ModifyDBInstance with NewDBInstanceIdentifier, applied immediately.
pub async fn rename_instance(rds: &Client, id: &str, new_id: &str) -> Result<(), AwsError> {
    rds.modify_db_instance()
        .db_instance_identifier(id)
        .new_db_instance_identifier(new_id)
        .apply_immediately(true)
        .send()
        .await
        .aws("RDS ModifyDBInstance", format!("{id} (rename to {new_id})"))?;
    Ok(())
}

/// ModifyDBCluster with NewDBClusterIdentifier, applied immediately.
pub async fn rename_cluster(rds: &Client, id: &str, new_id: &str) -> Result<(), AwsError> {
    rds.modify_db_cluster()
        .db_cluster_identifier(id)
        .new_db_cluster_identifier(new_id)
        .apply_immediately(true)
        .send()
        .await
        .aws("RDS ModifyDBCluster", format!("{id} (rename to {new_id})"))?;
    Ok(())
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

/// AddTagsToResource on an instance, cluster or snapshot ARN.
pub async fn add_tags(rds: &Client, arn: &str, tags: &[(String, String)]) -> Result<(), AwsError> {
    rds.add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(rds_tags(tags)))
        .send()
        .await
        .aws("RDS AddTagsToResource", arn)?;
    Ok(())
}

/// The instance does not exist (DescribeDBInstances, ModifyDBInstance...).
pub fn is_instance_not_found(err: &AwsError) -> bool {
    err.is("DBInstanceNotFound") || err.is("DBInstanceNotFoundFault")
}

/// The cluster does not exist.
pub fn is_cluster_not_found(err: &AwsError) -> bool {
    err.is("DBClusterNotFoundFault")
}

/// Another instance or cluster already has the identifier (restore, create or rename).
pub fn is_already_exists(err: &AwsError) -> bool {
    err.is("DBInstanceAlreadyExists")
        || err.is("DBInstanceAlreadyExistsFault")
        || err.is("DBClusterAlreadyExistsFault")
}
