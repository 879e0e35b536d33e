//! `iam-policy`: the least-privilege IAM policy a phase needs for an environment, computed from the config alone (no
//! AWS call).
//!
//! Each phase is a set of [`Grant`]s (what it calls, on what); the policy is their union, one statement per grant.
//! Resources are scoped to what the config names: the cluster, its services, the migration and task families, the
//! database and its snapshots (by the snapshot name's fixed prefix), the maintenance listener and its rules, the SSM
//! path; for review apps, the `<service>-pr-*` services, `<prefix>-pr-*` target groups, the seed and teardown
//! families and the rules of the shared listener (the template service itself is only described). Where AWS has no resource-level permission for an action, or the config cannot know the resource (the task
//! definition families of the services, the log groups the task definitions write to), the statement says so in its
//! `Sid` and uses the narrowest ARN pattern it can (`task-definition/*`, `log-group:*` in the region and account).
//!
//! The account and partition come from the listener ARN or a cluster given as an ARN; otherwise the account is `*`.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{Config, DatabaseKind, Environment};
use crate::error::UsageError;
use crate::github::runner::Outcome;
use crate::inputs::{Invocation, Phase};

/// The phases that call AWS, in the order the policy lists them.
pub const PHASES: [Phase; 9] = [
    Phase::Status,
    Phase::State,
    Phase::Snapshot,
    Phase::Migrate,
    Phase::Restore,
    Phase::Deploy,
    Phase::Rollback,
    Phase::Run,
    Phase::Preview,
];

/// One statement: what a phase does with one kind of resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub sid: &'static str,
    pub actions: BTreeSet<&'static str>,
    /// ARN patterns (`*` wildcards), or `["*"]`.
    pub resources: Vec<String>,
    pub condition: Option<Value>,
}

fn grant(sid: &'static str, actions: &[&'static str], resources: Vec<String>) -> Grant {
    Grant {
        sid,
        actions: actions.iter().copied().collect(),
        resources,
        condition: None,
    }
}

/// Partition, region and account for the environment's ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub partition: String,
    pub region: String,
    pub account: String,
}

impl Scope {
    pub fn of(env: &Environment) -> Scope {
        let from_arn = |arn: &str| {
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            match parts[..] {
                ["arn", partition, _, _, account, _] if !account.is_empty() => {
                    Some((partition.to_string(), account.to_string()))
                }
                _ => None,
            }
        };
        let known = env
            .maintenance
            .as_ref()
            .and_then(|m| from_arn(&m.listener_arn))
            .or_else(|| env.preview.as_ref().and_then(|p| from_arn(&p.listener_arn)))
            .or_else(|| from_arn(&env.cluster));
        let (partition, account) = known.unwrap_or_else(|| ("aws".into(), "*".into()));
        Scope {
            partition,
            region: env.region.clone(),
            account,
        }
    }

    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            self.partition, self.region, self.account
        )
    }
}

fn cluster_name(env: &Environment) -> &str {
    env.cluster.rsplit('/').next().unwrap_or(&env.cluster)
}

fn cluster_arn(env: &Environment, s: &Scope) -> String {
    if env.cluster.starts_with("arn:") {
        env.cluster.clone()
    } else {
        s.arn("ecs", &format!("cluster/{}", env.cluster))
    }
}

/// The fixed start of every snapshot name the template makes for this environment (up to the first placeholder
/// other than `{environment}`), as RDS stores it, followed by `*`.
pub fn snapshot_pattern(template: &str, environment: &str) -> String {
    let filled = template.replace("{environment}", environment);
    let fixed = filled.split('{').next().unwrap_or_default();
    if fixed.is_empty() {
        return "*".into();
    }
    // The same normalisation the snapshot phase applies, without trimming the trailing hyphen it would drop.
    let id = crate::aws::rds::snapshot_identifier(&format!("{fixed}x"));
    format!("{}*", id.trim_end_matches('x'))
}

/// The grants of one phase for one environment.
pub fn grants(env: &Environment, phase: Phase) -> Vec<Grant> {
    let s = Scope::of(env);
    let cluster = cluster_arn(env, &s);
    let cname = cluster_name(env);
    let services: Vec<String> = env
        .services
        .iter()
        .map(|svc| s.arn("ecs", &format!("service/{cname}/{}", svc.name)))
        .collect();
    let tasks = vec![s.arn("ecs", &format!("task/{cname}/*"))];
    let on_cluster = json!({"ArnEquals": {"ecs:cluster": cluster}});
    let task_families: Vec<&str> = match phase {
        Phase::Migrate => env.migration.iter().map(|m| m.family.as_str()).collect(),
        Phase::Run => env.tasks.values().map(|t| t.family.as_str()).collect(),
        Phase::Preview => env
            .preview
            .iter()
            .flat_map(|p| [&p.seed, &p.teardown])
            .flatten()
            .map(|t| t.family.as_str())
            .collect(),
        _ => vec![],
    };
    let family_arns: Vec<String> = task_families
        .iter()
        .map(|f| s.arn("ecs", &format!("task-definition/{f}:*")))
        .collect();

    let describe_services = grant(
        "EcsDescribeServices",
        &["ecs:DescribeServices"],
        services.clone(),
    );
    let update_services = grant(
        "EcsUpdateServices",
        &["ecs:UpdateService"],
        services.clone(),
    );
    let service_tags = grant(
        "EcsServiceCountTags",
        &[
            "ecs:ListTagsForResource",
            "ecs:TagResource",
            "ecs:UntagResource",
        ],
        services.clone(),
    );
    let service_tags_read = grant(
        "EcsServiceCountTags",
        &["ecs:ListTagsForResource"],
        services.clone(),
    );
    let td_read = |actions: &[&'static str]| {
        grant(
            "EcsTaskDefinitionsNoResourceLevel",
            actions,
            vec!["*".into()],
        )
    };
    let list_tasks = Grant {
        condition: Some(on_cluster.clone()),
        ..grant(
            "EcsListTasksInCluster",
            &["ecs:ListTasks"],
            vec!["*".into()],
        )
    };
    let describe_tasks = grant("EcsDescribeTasks", &["ecs:DescribeTasks"], tasks.clone());
    // Revisions of the services' families: the config does not name those families.
    let service_revision_tags = grant(
        "EcsServiceRevisionTagsAnyFamily",
        &["ecs:ListTagsForResource", "ecs:TagResource"],
        vec![s.arn("ecs", "task-definition/*")],
    );
    let pass_role = Grant {
        condition: Some(
            json!({"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
        ),
        ..grant(
            "PassTaskRolesToEcs",
            &["iam:PassRole"],
            vec![format!("arn:{}:iam::*:role/*", s.partition)],
        )
    };
    let logs = grant(
        "LogsReadTaskOutputAnyGroup",
        &["logs:GetLogEvents"],
        vec![s.arn("logs", "log-group:*")],
    );

    // The preflight: images in ECR (any repository: the image URIs name them), log groups of one-off tasks.
    let ecr_read = grant(
        "EcrImagesExist",
        &["ecr:BatchGetImage", "ecr:DescribeImages"],
        vec![format!("arn:{}:ecr:*:*:repository/*", s.partition)],
    );
    let log_groups = grant(
        "LogsDescribeGroups",
        &["logs:DescribeLogGroups"],
        vec![s.arn("logs", "log-group:*")],
    );
    // Application Auto Scaling of the services: suspended while they are at 0, restored after.
    let scaling_read = grant(
        "AutoscalingDescribeNoResourceLevel",
        &["application-autoscaling:DescribeScalableTargets"],
        vec!["*".into()],
    );
    let scaling_write = grant(
        "AutoscalingSuspendResume",
        &["application-autoscaling:RegisterScalableTarget"],
        vec![s.arn("application-autoscaling", "scalable-target/*")],
    );
    let mut db: Vec<Grant> = vec![];
    let mut db_record: Vec<Grant> = vec![];
    let mut settle_metrics: Vec<Grant> = vec![];
    let mut db_start_stop: Vec<Grant> = vec![];
    let mut db_start: Vec<Grant> = vec![];
    let mut snapshot_write: Vec<Grant> = vec![];
    let mut snapshot_read: Vec<Grant> = vec![];
    if let Some(d) = &env.database {
        let prefix = snapshot_pattern(&d.snapshot_name, &env.name);
        let (res, snap, describe, describe_snaps, create, delete, start, stop) = match d.kind {
            DatabaseKind::Instance => (
                s.arn("rds", &format!("db:{}", d.identifier)),
                "snapshot",
                "rds:DescribeDBInstances",
                "rds:DescribeDBSnapshots",
                "rds:CreateDBSnapshot",
                "rds:DeleteDBSnapshot",
                "rds:StartDBInstance",
                "rds:StopDBInstance",
            ),
            DatabaseKind::Cluster => (
                s.arn("rds", &format!("cluster:{}", d.identifier)),
                "cluster-snapshot",
                "rds:DescribeDBClusters",
                "rds:DescribeDBClusterSnapshots",
                "rds:CreateDBClusterSnapshot",
                "rds:DeleteDBClusterSnapshot",
                "rds:StartDBCluster",
                "rds:StopDBCluster",
            ),
        };
        let ours = s.arn("rds", &format!("{snap}:{prefix}"));
        db.push(grant("RdsDescribeDatabase", &[describe], vec![res.clone()]));
        snapshot_read.push(grant(
            "RdsDescribeSnapshots",
            &[describe_snaps],
            vec![res.clone(), s.arn("rds", &format!("{snap}:*"))],
        ));
        snapshot_write.push(grant(
            "RdsCreateSnapshot",
            &[create],
            vec![res.clone(), ours.clone()],
        ));
        snapshot_write.push(grant(
            "RdsTagNewSnapshot",
            &["rds:AddTagsToResource"],
            vec![ours.clone()],
        ));
        if d.snapshot_retention.is_some() {
            snapshot_write.push(grant("RdsDeleteOwnOldSnapshots", &[delete], vec![ours]));
        }
        db_start_stop.push(grant(
            "RdsStartStopDatabase",
            &[start, stop],
            vec![res.clone()],
        ));
        db_record.push(grant(
            "RdsRecordOnDatabase",
            &["rds:AddTagsToResource"],
            vec![res.clone()],
        ));
        if d.settle.as_ref().is_some_and(|st| !st.skip) {
            settle_metrics.push(grant(
                "CloudWatchDrainMetricsNoResourceLevel",
                &["cloudwatch:GetMetricStatistics"],
                vec!["*".into()],
            ));
        }
        db_start.push(grant("RdsStartDatabase", &[start], vec![res.clone()]));
        // The database's own start/stop events pace the wait after a start or stop (domain/db_history.rs).
        let events = grant(
            "RdsEventsNoResourceLevel",
            &["rds:DescribeEvents"],
            vec!["*".into()],
        );
        db_start_stop.push(events.clone());
        db_start.push(events);
        // How long each start/stop took, recorded on the database (tags START_SECONDS / STOP_SECONDS): paces the
        // next one's wait. One Sid with the migration record: the same action on the same database.
        let record = grant("RdsRecordOnDatabase", &["rds:AddTagsToResource"], vec![res]);
        db_start_stop.push(record.clone());
        db_start.push(record);
    }

    let mut elb_read: Vec<Grant> = vec![];
    let mut elb_write: Vec<Grant> = vec![];
    let mut metrics: Vec<Grant> = vec![];
    if let Some(m) = &env.maintenance {
        elb_read.push(grant(
            "ElbDescribeNoResourceLevel",
            &[
                "elasticloadbalancing:DescribeListeners",
                "elasticloadbalancing:DescribeRules",
                "elasticloadbalancing:DescribeTags",
            ],
            vec!["*".into()],
        ));
        let rules = format!(
            "{}/*",
            m.listener_arn.replacen(":listener/", ":listener-rule/", 1)
        );
        elb_write.push(grant(
            "ElbMaintenanceListener",
            &[
                "elasticloadbalancing:ModifyListener",
                "elasticloadbalancing:CreateRule",
                "elasticloadbalancing:AddTags",
                "elasticloadbalancing:RemoveTags",
            ],
            vec![m.listener_arn.clone()],
        ));
        elb_write.push(grant(
            "ElbMaintenanceRules",
            &[
                "elasticloadbalancing:ModifyRule",
                "elasticloadbalancing:DeleteRule",
                "elasticloadbalancing:AddTags",
                "elasticloadbalancing:RemoveTags",
            ],
            vec![rules],
        ));
        metrics.push(grant(
            "CloudWatchDrainMetricsNoResourceLevel",
            &["cloudwatch:GetMetricStatistics"],
            vec!["*".into()],
        ));
    }
    let ssm: Vec<Grant> = env
        .ssm_path
        .iter()
        .map(|path| {
            let p = path.trim_end_matches('/');
            grant(
                "SsmSecretNamesUnderPath",
                &["ssm:GetParametersByPath"],
                vec![
                    s.arn("ssm", &format!("parameter{p}")),
                    s.arn("ssm", &format!("parameter{p}/*")),
                ],
            )
        })
        .collect();
    let migration_running = env.migration.is_some();
    let one_off_revision_tags = grant(
        "EcsOneOffRevisionTagsRead",
        &["ecs:ListTagsForResource"],
        family_arns.clone(),
    );
    let run_task = |families: Vec<String>| -> Vec<Grant> {
        vec![
            Grant {
                condition: Some(on_cluster.clone()),
                ..grant("EcsRunOneOffTask", &["ecs:RunTask"], families.clone())
            },
            grant(
                "EcsStopAndTagOneOffTasks",
                &["ecs:StopTask", "ecs:TagResource"],
                tasks.clone(),
            ),
            grant("EcsOneOffRevisionTags", &["ecs:TagResource"], families),
            grant(
                "EcsLaunchLockOnCluster",
                &[
                    "ecs:ListTagsForResource",
                    "ecs:TagResource",
                    "ecs:UntagResource",
                ],
                vec![cluster.clone()],
            ),
        ]
    };

    // What `status` reads (also what `state` plans from).
    let mut status = vec![
        describe_services.clone(),
        td_read(&["ecs:DescribeTaskDefinition"]),
    ];
    if migration_running {
        status.push(list_tasks.clone());
    }
    status.extend(db.iter().cloned());
    status.extend(snapshot_read.iter().cloned());
    status.extend(elb_read.iter().cloned());
    let state_up = |start: &[Grant]| {
        let mut v = status.clone();
        v.push(update_services.clone());
        v.push(service_tags.clone());
        v.push(scaling_read.clone());
        v.push(scaling_write.clone());
        v.extend(start.iter().cloned());
        v.extend(elb_write.iter().cloned());
        v
    };

    let mut out: Vec<Grant> = match phase {
        Phase::Status => {
            let mut v = status.clone();
            v.push(scaling_read.clone());
            v.push(service_tags_read.clone());
            v
        }
        Phase::State => {
            let mut v = state_up(&db_start_stop);
            v.extend(metrics.iter().cloned());
            v
        }
        Phase::Snapshot => {
            let mut v = snapshot_read.clone();
            v.extend(snapshot_write.iter().cloned());
            v
        }
        Phase::Migrate => {
            let mut v = state_up(&db_start);
            v.extend(metrics.iter().cloned());
            v.push(list_tasks.clone());
            v.push(describe_tasks.clone());
            // ListTaskDefinitions and the revision tags: the versions known here (a colliding one is refused).
            v.push(td_read(&[
                "ecs:DescribeTaskDefinition",
                "ecs:ListTaskDefinitions",
                "ecs:RegisterTaskDefinition",
            ]));
            v.push(one_off_revision_tags.clone());
            v.extend(run_task(family_arns.clone()));
            v.push(pass_role.clone());
            v.push(logs.clone());
            v.push(log_groups.clone());
            v.push(ecr_read.clone());
            v.extend(db_record.iter().cloned());
            v.extend(settle_metrics.iter().cloned());
            v.extend(ssm.iter().cloned());
            v
        }
        Phase::Deploy => {
            let mut v = state_up(&db_start);
            v.push(service_tags_read.clone());
            // ListTaskDefinitions: the "state now" block after a failure lists the known-good versions.
            v.push(td_read(&[
                "ecs:DescribeTaskDefinition",
                "ecs:ListTaskDefinitions",
                "ecs:RegisterTaskDefinition",
                "ecs:DeregisterTaskDefinition",
            ]));
            v.push(service_revision_tags.clone());
            v.push(list_tasks.clone());
            v.push(describe_tasks.clone());
            v.push(pass_role.clone());
            v.push(logs.clone());
            v.push(ecr_read.clone());
            v.extend(ssm.iter().cloned());
            v
        }
        Phase::Rollback => {
            let mut v = vec![
                describe_services.clone(),
                update_services.clone(),
                td_read(&[
                    "ecs:DescribeTaskDefinition",
                    "ecs:ListTaskDefinitions",
                    "ecs:DeregisterTaskDefinition",
                ]),
                service_revision_tags.clone(),
                list_tasks.clone(),
                describe_tasks.clone(),
                logs.clone(),
                // The preflight: the images of the revisions it goes back to.
                ecr_read.clone(),
            ];
            // After a failure the "state now" block reads the environment as `status` does.
            v.extend(db.iter().cloned());
            v.extend(snapshot_read.iter().cloned());
            v.extend(elb_read.iter().cloned());
            v
        }
        Phase::Run => {
            let mut v = vec![
                describe_services.clone(),
                list_tasks.clone(),
                describe_tasks.clone(),
                td_read(&[
                    "ecs:DescribeTaskDefinition",
                    "ecs:ListTaskDefinitions",
                    "ecs:RegisterTaskDefinition",
                ]),
                one_off_revision_tags.clone(),
            ];
            v.extend(run_task(family_arns.clone()));
            v.push(pass_role.clone());
            v.push(logs.clone());
            v.push(log_groups.clone());
            v.push(ecr_read.clone());
            v.extend(ssm.iter().cloned());
            v
        }
        Phase::Preview => match &env.preview {
            None => vec![],
            Some(p) => {
                let template = s.arn("ecs", &format!("service/{cname}/{}", p.service));
                let review_apps = s.arn("ecs", &format!("service/{cname}/{}-pr-*", p.service));
                let mut v = vec![
                    grant(
                        "EcsDescribeServices",
                        &["ecs:DescribeServices"],
                        vec![template, review_apps.clone()],
                    ),
                    grant(
                        "EcsReviewAppServices",
                        &[
                            "ecs:CreateService",
                            "ecs:UpdateService",
                            "ecs:DeleteService",
                            "ecs:TagResource",
                        ],
                        vec![review_apps],
                    ),
                    td_read(&[
                        "ecs:DescribeTaskDefinition",
                        "ecs:ListTaskDefinitions",
                        "ecs:RegisterTaskDefinition",
                        "ecs:DeregisterTaskDefinition",
                    ]),
                    // The PR families are `<template family>-pr-N`; the config does not name the template family.
                    grant(
                        "EcsReviewAppRevisionTagsAnyTemplateFamily",
                        &["ecs:TagResource"],
                        vec![s.arn("ecs", "task-definition/*-pr-*:*")],
                    ),
                    list_tasks.clone(),
                    describe_tasks.clone(),
                    pass_role.clone(),
                    logs.clone(),
                    grant(
                        "ElbDescribeNoResourceLevel",
                        &[
                            "elasticloadbalancing:DescribeRules",
                            "elasticloadbalancing:DescribeTags",
                            "elasticloadbalancing:DescribeTargetGroups",
                        ],
                        vec!["*".into()],
                    ),
                    grant(
                        "ElbReviewAppTargetGroups",
                        &[
                            "elasticloadbalancing:CreateTargetGroup",
                            "elasticloadbalancing:DeleteTargetGroup",
                            "elasticloadbalancing:AddTags",
                        ],
                        vec![s.arn(
                            "elasticloadbalancing",
                            &format!("targetgroup/{}-pr-*/*", p.target_group.name_prefix),
                        )],
                    ),
                    grant(
                        "ElbReviewAppRuleOnListener",
                        &["elasticloadbalancing:CreateRule"],
                        vec![p.listener_arn.clone()],
                    ),
                    // Any rule of the shared listener: a rule's ARN does not say whose it is (the phase only ever
                    // changes rules tagged as the pull request's).
                    grant(
                        "ElbReviewAppRulesOfListener",
                        &[
                            "elasticloadbalancing:ModifyRule",
                            "elasticloadbalancing:DeleteRule",
                            "elasticloadbalancing:AddTags",
                        ],
                        vec![format!(
                            "{}/*",
                            p.listener_arn.replacen(":listener/", ":listener-rule/", 1)
                        )],
                    ),
                ];
                if !family_arns.is_empty() {
                    v.extend(run_task(family_arns.clone()));
                    // The preflight of the seed and teardown tasks: their log groups exist.
                    v.push(log_groups.clone());
                }
                v.push(ecr_read.clone());
                v.extend(ssm.iter().cloned());
                v
            }
        },
        // `init` (read-only): the cluster, every service of it (init finds them), their task definitions, the
        // database and the listener named on its command line; the same environment's, when init is run again.
        Phase::Init => {
            let mut v = vec![
                grant(
                    "EcsDescribeCluster",
                    &["ecs:DescribeClusters"],
                    vec![cluster.clone()],
                ),
                Grant {
                    condition: Some(on_cluster.clone()),
                    ..grant(
                        "EcsListServicesInCluster",
                        &["ecs:ListServices"],
                        vec!["*".into()],
                    )
                },
                grant(
                    "EcsDescribeEveryServiceOfCluster",
                    &["ecs:DescribeServices"],
                    vec![s.arn("ecs", &format!("service/{cname}/*"))],
                ),
                td_read(&["ecs:DescribeTaskDefinition"]),
            ];
            v.extend(db.iter().cloned());
            v.extend(elb_read.iter().cloned());
            v
        }
        Phase::Restore => {
            let mut v = vec![describe_services.clone(), list_tasks.clone()];
            v.extend(restore_grants(env, &s));
            v
        }
        Phase::CheckConfig | Phase::IamPolicy => vec![],
    };
    if family_arns.is_empty() {
        out.retain(|g| {
            ![
                "EcsRunOneOffTask",
                "EcsOneOffRevisionTags",
                "EcsOneOffRevisionTagsRead",
            ]
            .contains(&g.sid)
        });
    }
    merge(out)
}

/// What `restore` does to the database: look up snapshots (any, to tell whose a given one is), describe the original,
/// the restored and the kept names, restore into `<id>-restoring` (with the subnet, option and parameter groups it
/// names), tag, rename (`<id>` and `<id>-restoring` only) and start a stopped original. Aurora instances are not named
/// by the config: their actions are on `db:*`.
fn restore_grants(env: &Environment, s: &Scope) -> Vec<Grant> {
    use crate::domain::restore::{derived, kept_name, TEMP_SUFFIX};
    let Some(d) = &env.database else {
        return vec![];
    };
    let id = &d.identifier;
    let temp = derived(id, TEMP_SUFFIX);
    let kept = kept_name(id, "*");
    let kept = kept.trim_end_matches('*');
    let (prefix, snap) = match d.kind {
        DatabaseKind::Instance => ("db", "snapshot"),
        DatabaseKind::Cluster => ("cluster", "cluster-snapshot"),
    };
    let arn = |name: &str| s.arn("rds", &format!("{prefix}:{name}"));
    let (main, temp_arn) = (arn(id), arn(&temp));
    let names = vec![main.clone(), temp_arn.clone(), arn(&format!("{kept}*"))];
    let groups = |kinds: &[&str]| -> Vec<String> {
        kinds
            .iter()
            .map(|k| s.arn("rds", &format!("{k}:*")))
            .collect()
    };
    // RDS names the same steps differently for an instance and an Aurora cluster.
    let (describe_snapshots, describe, restore, modify, start, group_kinds): (
        _,
        _,
        _,
        _,
        _,
        &[&str],
    ) = match d.kind {
        DatabaseKind::Instance => (
            "rds:DescribeDBSnapshots",
            "rds:DescribeDBInstances",
            "rds:RestoreDBInstanceFromDBSnapshot",
            "rds:ModifyDBInstance",
            "rds:StartDBInstance",
            &["subgrp", "og", "pg", "secgrp"],
        ),
        DatabaseKind::Cluster => (
            "rds:DescribeDBClusterSnapshots",
            "rds:DescribeDBClusters",
            "rds:RestoreDBClusterFromSnapshot",
            "rds:ModifyDBCluster",
            "rds:StartDBCluster",
            &["subgrp", "cluster-pg", "og"],
        ),
    };
    let snapshots = s.arn("rds", &format!("{snap}:*"));
    let mut out = vec![
        grant(
            "RdsRestoreDescribeSnapshots",
            &[describe_snapshots],
            vec![main.clone(), snapshots.clone()],
        ),
        grant("RdsRestoreDescribeNames", &[describe], names),
        grant("RdsRestoreIntoTemporaryName", &[restore], {
            let mut r = vec![temp_arn.clone(), snapshots];
            r.extend(groups(group_kinds));
            r
        }),
        grant(
            "RdsRestoreTagAndRename",
            &["rds:AddTagsToResource", modify],
            vec![main.clone(), temp_arn.clone()],
        ),
        grant("RdsRestoreStartStoppedOriginal", &[start], vec![main]),
    ];
    if d.kind == DatabaseKind::Cluster {
        // The cluster's instances: the config does not name them.
        out.push(grant(
            "RdsRestoreClusterInstancesAnyName",
            &[
                "rds:DescribeDBInstances",
                "rds:CreateDBInstance",
                "rds:ModifyDBInstance",
                "rds:AddTagsToResource",
            ],
            {
                let mut r = vec![s.arn("rds", "db:*"), temp_arn];
                r.extend(groups(&["pg", "subgrp"]));
                r
            },
        ));
    }
    out
}

/// Grants with the same Sid become one (actions united; resources united).
fn merge(grants: Vec<Grant>) -> Vec<Grant> {
    let mut out: Vec<Grant> = vec![];
    for g in grants {
        match out
            .iter_mut()
            .find(|o| o.sid == g.sid && o.condition == g.condition)
        {
            Some(o) => {
                o.actions.extend(g.actions);
                for r in g.resources {
                    if !o.resources.contains(&r) {
                        o.resources.push(r);
                    }
                }
            }
            None => out.push(g),
        }
    }
    out
}

/// An IAM policy document, its keys in the order people write them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyDocument {
    #[serde(rename = "Version")]
    pub version: &'static str,
    #[serde(rename = "Statement")]
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    #[serde(rename = "Sid")]
    pub sid: String,
    #[serde(rename = "Effect")]
    pub effect: &'static str,
    #[serde(rename = "Action")]
    pub actions: Vec<String>,
    /// `"*"` or a list of ARN patterns.
    #[serde(rename = "Resource")]
    pub resource: Value,
    #[serde(rename = "Condition", skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
}

/// The policy document for these environments and phases.
pub fn policy(envs: &[&Environment], phases: &[Phase]) -> PolicyDocument {
    let mut statements = vec![];
    for env in envs {
        let mut all: Vec<Grant> = vec![];
        for p in phases {
            all.extend(grants(env, *p));
        }
        let suffix = if envs.len() > 1 {
            sid_part(&env.name)
        } else {
            String::new()
        };
        for g in merge(all) {
            statements.push(Statement {
                sid: format!("{}{suffix}", g.sid),
                effect: "Allow",
                actions: g.actions.iter().map(|a| a.to_string()).collect(),
                resource: if g.resources == ["*"] {
                    json!("*")
                } else {
                    json!(g.resources)
                },
                condition: g.condition.clone(),
            });
        }
    }
    PolicyDocument {
        version: "2012-10-17",
        statements,
    }
}

fn sid_part(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(if upper { c.to_ascii_uppercase() } else { c });
            upper = false;
        } else {
            upper = true;
        }
    }
    out
}

/// Whether `pattern` (IAM wildcards `*` and `?`) matches `value`.
pub fn wildcard_match(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], v) || (!v.is_empty() && go(p, &v[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &v[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    go(&p, &v)
}

/// Whether a policy allows `action` (`service:Operation`), and, when given, on `resource`. Conditions are not
/// evaluated (every condition this module writes narrows a statement that already names the action).
pub fn allows(policy: &PolicyDocument, action: &str, resource: Option<&str>) -> bool {
    policy.statements.iter().any(|st| {
        let resources: Vec<&str> = match &st.resource {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        st.effect == "Allow"
            && st.actions.iter().any(|a| wildcard_match(a, action))
            && resource.is_none_or(|r| resources.iter().any(|p| wildcard_match(p, r)))
    })
}

/// The `policy-phase` input: one phase, or every phase (the union).
/// `init` is printed only when asked for: the role that writes the config is not the one that deploys.
pub fn parse_phase(value: Option<&str>) -> Result<Vec<Phase>, UsageError> {
    let names: Vec<&str> = PHASES
        .iter()
        .chain(&[Phase::Init])
        .map(|p| p.name())
        .collect();
    match value.map(str::trim) {
        None | Some("all") => Ok(PHASES.to_vec()),
        Some(v) => PHASES
            .iter()
            .chain(&[Phase::Init])
            .find(|p| p.name() == v.to_ascii_lowercase())
            .map(|p| vec![*p])
            .ok_or_else(|| {
                UsageError::new(format!(
                    "input `policy-phase`: unknown phase {v:?}; use one of: {}, or all",
                    names.join(", ")
                ))
            }),
    }
}

/// What `iam-policy` prints.
#[derive(Debug, Clone, Serialize)]
pub struct IamPolicy {
    pub environments: Vec<String>,
    pub phases: Vec<String>,
    pub policy: PolicyDocument,
}

/// The phase: reads the config, prints the policy. No AWS call.
pub fn run(inv: &Invocation) -> Result<IamPolicy, UsageError> {
    let phases = parse_phase(inv.raw.policy_phase.as_deref())?;
    let config = Config::load(&inv.config_path())?;
    let envs: Vec<&Environment> = match inv.raw.environment.as_deref().map(str::trim) {
        Some(name) => vec![config.environment(name)?],
        None => config.environments.values().collect(),
    };
    if phases == [Phase::Preview] {
        if let Some(e) = envs.iter().find(|e| e.preview.is_none()) {
            return Err(UsageError::new(format!(
                "input `policy-phase`: preview, but environment {} has no [environments.{}.preview] table; name an environment that has one with `environment`, or add the table",
                e.name, e.name
            )));
        }
    }
    Ok(IamPolicy {
        environments: envs.iter().map(|e| e.name.clone()).collect(),
        phases: phases.iter().map(|p| p.name().to_string()).collect(),
        policy: policy(&envs, &phases),
    })
}

impl Outcome for IamPolicy {
    fn ok(&self) -> bool {
        true
    }

    fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![(
            "policy",
            serde_json::to_string(&self.policy).unwrap_or_default(),
        )]
    }

    fn summary(&self) -> String {
        format!(
            "### IAM policy for {} ({})\n\n{}",
            crate::text::md_text(&self.environments.join(", ")),
            crate::text::md_text(&self.phases.join(", ")),
            crate::text::md_code_block("json", &self.text())
        )
    }

    fn text(&self) -> String {
        serde_json::to_string_pretty(&self.policy).unwrap_or_default() + "\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CONFIG: &str = r#"
[defaults]
region = "eu-central-1"
image-repository = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/app"

[environments.stage]
cluster = "app-stage"
ssm-path = "/app/stage/"
[environments.stage.services.core]
containers = ["core"]
[environments.stage.services.workers]
containers = ["workers"]
[environments.stage.migration]
family = "stage-migrate"
[environments.stage.tasks.seed]
family = "stage-seed"
[environments.stage.database]
instance = "app-stage"
snapshot-retention = 5
[environments.stage.maintenance]
listener-arn = "arn:aws:elasticloadbalancing:eu-central-1:123456789012:listener/app/app-stage/0eea/a93b"

[environments.prod]
cluster = "app-prod"
[environments.prod.services.core]
containers = ["core"]
[environments.prod.database]
cluster = "aurora-prod"
snapshot-name = "pre-{environment}-{version}"
"#;

    fn env(name: &str) -> Environment {
        Config::parse(CONFIG, Path::new("deploy.toml"))
            .unwrap()
            .environment(name)
            .unwrap()
            .clone()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match(
            "arn:aws:ecs:r:*:service/c/*",
            "arn:aws:ecs:r:1:service/c/core"
        ));
        assert!(!wildcard_match(
            "arn:aws:ecs:r:*:service/c/core",
            "arn:aws:ecs:r:1:service/c/core2"
        ));
        assert!(wildcard_match("ecs:*", "ecs:RunTask"));
        assert!(wildcard_match("a?c", "abc") && !wildcard_match("a?c", "ac"));
    }

    #[test]
    fn snapshot_prefixes() {
        assert_eq!(
            snapshot_pattern("deploy-{environment}-{version}-{time}", "stage"),
            "deploy-stage-*"
        );
        assert_eq!(snapshot_pattern("{version}-x", "stage"), "*");
        assert_eq!(
            snapshot_pattern("Pre_{environment}.{run}", "qa"),
            "pre-qa-*"
        );
        assert_eq!(snapshot_pattern("9-{version}", "qa"), "snapshot-9-*");
    }

    #[test]
    fn each_phase_gets_only_what_it_calls_scoped_to_the_environment() {
        let stage = env("stage");
        let p = |phase| policy(&[&stage], &[phase]);
        let svc = "arn:aws:ecs:eu-central-1:123456789012:service/app-stage/core";
        let other = "arn:aws:ecs:eu-central-1:123456789012:service/app-prod/core";
        let rule = "arn:aws:elasticloadbalancing:eu-central-1:123456789012:listener-rule/app/app-stage/0eea/a93b/77";
        let snap =
            "arn:aws:rds:eu-central-1:123456789012:snapshot:deploy-stage-v2-0-0-20261123-101500";
        let hand = "arn:aws:rds:eu-central-1:123456789012:snapshot:by-hand";
        let status = p(Phase::Status);
        assert!(allows(&status, "ecs:DescribeServices", Some(svc)));
        assert!(!allows(&status, "ecs:DescribeServices", Some(other)));
        assert!(
            !allows(&status, "ecs:UpdateService", None),
            "status is read-only"
        );
        let state = p(Phase::State);
        assert!(allows(&state, "ecs:UpdateService", Some(svc)));
        assert!(!allows(&state, "ecs:UpdateService", Some(other)));
        assert!(allows(
            &state,
            "elasticloadbalancing:ModifyRule",
            Some(rule)
        ));
        assert!(allows(
            &state,
            "rds:StopDBInstance",
            Some("arn:aws:rds:eu-central-1:123456789012:db:app-stage")
        ));
        assert!(!allows(&state, "ecs:RunTask", None));
        let snapshot = p(Phase::Snapshot);
        assert!(allows(&snapshot, "rds:CreateDBSnapshot", Some(snap)));
        assert!(!allows(&snapshot, "rds:CreateDBSnapshot", Some(hand)));
        assert!(allows(&snapshot, "rds:DeleteDBSnapshot", Some(snap)));
        assert!(
            !allows(&snapshot, "rds:DeleteDBSnapshot", Some(hand)),
            "retention never deletes a hand-made one"
        );
        assert!(!allows(&snapshot, "ecs:DescribeServices", None));
        let migrate = p(Phase::Migrate);
        let td = "arn:aws:ecs:eu-central-1:123456789012:task-definition/stage-migrate:7";
        assert!(allows(&migrate, "ecs:RunTask", Some(td)));
        assert!(!allows(
            &migrate,
            "ecs:RunTask",
            Some("arn:aws:ecs:eu-central-1:123456789012:task-definition/stage-seed:1")
        ));
        assert!(allows(
            &migrate,
            "iam:PassRole",
            Some("arn:aws:iam::123456789012:role/migrate")
        ));
        assert!(allows(
            &migrate,
            "ecs:TagResource",
            Some("arn:aws:ecs:eu-central-1:123456789012:cluster/app-stage")
        ));
        assert!(
            !allows(&migrate, "rds:StopDBInstance", None),
            "migrate never stops the database"
        );
        for one_off in [Phase::Migrate, Phase::Run] {
            assert!(
                allows(
                    &p(one_off),
                    "ssm:GetParametersByPath",
                    Some("arn:aws:ssm:eu-central-1:123456789012:parameter/app/stage")
                ),
                "{one_off:?}: the one-off revisions take the secrets"
            );
        }
        let deploy = p(Phase::Deploy);
        assert!(allows(
            &deploy,
            "ssm:GetParametersByPath",
            Some("arn:aws:ssm:eu-central-1:123456789012:parameter/app/stage")
        ));
        assert!(!allows(
            &deploy,
            "ssm:GetParametersByPath",
            Some("arn:aws:ssm:eu-central-1:123456789012:parameter/app/prod")
        ));
        assert!(
            !allows(&deploy, "ssm:GetParameters", None),
            "values are never read"
        );
        assert!(!allows(&deploy, "ecs:RunTask", None));
        let rollback = p(Phase::Rollback);
        assert!(allows(&rollback, "ecs:DeregisterTaskDefinition", None));
        assert!(!allows(&rollback, "ecs:RegisterTaskDefinition", None));
        let run = p(Phase::Run);
        assert!(allows(
            &run,
            "ecs:RunTask",
            Some("arn:aws:ecs:eu-central-1:123456789012:task-definition/stage-seed:1")
        ));
        assert!(!allows(&run, "ecs:RunTask", Some(td)));
    }

    #[test]
    fn review_apps_only_touch_pr_resources() {
        let text = format!(
            "{CONFIG}\n[environments.stage.preview]\nservice = \"core\"\nlistener-arn = \"arn:aws:elasticloadbalancing:eu-central-1:123456789012:listener/app/shared/1f/2e\"\nhost = \"pr-{{number}}.review.example.org\"\ntarget-group = {{ vpc-id = \"vpc-1\", port = 8080 }}\n[environments.stage.preview.seed]\nfamily = \"stage-seed\"\ncontainer = \"seed\"\n"
        );
        let c = Config::parse(&text, Path::new("deploy.toml")).unwrap();
        let stage = c.environment("stage").unwrap();
        let p = policy(&[stage], &[Phase::Preview]);
        let arn = |r: &str| format!("arn:aws:ecs:eu-central-1:123456789012:{r}");
        let elb = |r: &str| format!("arn:aws:elasticloadbalancing:eu-central-1:123456789012:{r}");
        let pr = arn("service/app-stage/core-pr-12");
        for a in [
            "ecs:CreateService",
            "ecs:UpdateService",
            "ecs:DeleteService",
        ] {
            assert!(allows(&p, a, Some(&pr)), "{a}");
            assert!(
                !allows(&p, a, Some(&arn("service/app-stage/core"))),
                "{a} never on the template service"
            );
        }
        assert!(allows(
            &p,
            "ecs:DescribeServices",
            Some(&arn("service/app-stage/core"))
        ));
        assert!(!allows(
            &p,
            "ecs:DescribeServices",
            Some(&arn("service/app-stage/workers"))
        ));
        assert!(allows(
            &p,
            "ecs:RunTask",
            Some(&arn("task-definition/stage-seed:3"))
        ));
        assert!(!allows(
            &p,
            "ecs:RunTask",
            Some(&arn("task-definition/stage-migrate:3"))
        ));
        let tg = elb("targetgroup/core-pr-12/abc");
        assert!(allows(
            &p,
            "elasticloadbalancing:CreateTargetGroup",
            Some(&tg)
        ));
        assert!(allows(
            &p,
            "elasticloadbalancing:DeleteTargetGroup",
            Some(&tg)
        ));
        assert!(!allows(
            &p,
            "elasticloadbalancing:DeleteTargetGroup",
            Some(&elb("targetgroup/stage-core/abc"))
        ));
        assert!(allows(
            &p,
            "elasticloadbalancing:DeleteRule",
            Some(&elb("listener-rule/app/shared/1f/2e/9"))
        ));
        assert!(
            !allows(
                &p,
                "elasticloadbalancing:DeleteRule",
                Some(&elb("listener-rule/app/app-stage/0eea/a93b/77"))
            ),
            "never a rule of the maintenance listener"
        );
        assert!(!allows(&p, "elasticloadbalancing:ModifyListener", None));
        assert!(!allows(&p, "rds:StopDBInstance", None));
        assert!(allows(
            &p,
            "ssm:GetParametersByPath",
            Some("arn:aws:ssm:eu-central-1:123456789012:parameter/app/stage")
        ));
        // Without a preview table: no grant at all.
        assert!(policy(&[&env("prod")], &[Phase::Preview])
            .statements
            .is_empty());
    }

    /// Every phase that may start or stop the database through the state change reads its RDS events and tags it with
    /// how long the move took (they pace the wait); no other does.
    #[test]
    fn database_events_wherever_the_database_is_started_or_stopped() {
        let stage = env("stage");
        let prod = env("prod");
        let cases: &[(&str, &Environment, &str, &str)] = &[
            (
                "instance",
                &stage,
                "rds:StartDBInstance",
                "arn:aws:rds:eu-central-1:123456789012:db:app-stage",
            ),
            (
                "Aurora cluster",
                &prod,
                "rds:StartDBCluster",
                "arn:aws:rds:eu-central-1:9:cluster:aurora-prod",
            ),
        ];
        for (kind, e, start, db_arn) in cases {
            let mut granted = vec![];
            for phase in PHASES {
                let p = policy(&[*e], &[phase]);
                // restore starts the database it restored with a wait of its own, not paced by the events.
                let moves = allows(&p, start, None) && phase != Phase::Restore;
                assert_eq!(
                    allows(&p, "rds:DescribeEvents", None),
                    moves,
                    "{kind}, {}: DescribeEvents exactly where {start}",
                    phase.name()
                );
                // The start/stop record (restore tags the database it restored anyway).
                assert_eq!(
                    allows(&p, "rds:AddTagsToResource", Some(db_arn)),
                    moves || phase == Phase::Restore,
                    "{kind}, {}: tags on the database exactly where {start}",
                    phase.name()
                );
                if moves {
                    granted.push(phase.name());
                }
            }
            for must in ["state", "deploy", "migrate"] {
                assert!(
                    granted.contains(&must),
                    "{kind}: {must} starts the database: {granted:?}"
                );
            }
            let p = policy(&[*e], &[Phase::Status, Phase::Snapshot]);
            assert!(
                !allows(&p, "rds:DescribeEvents", None),
                "{kind}: status and snapshot never wait for one"
            );
            assert!(
                !allows(&p, "rds:AddTagsToResource", Some(db_arn)),
                "{kind}: status and snapshot never tag the database"
            );
        }
    }

    #[test]
    fn aurora_and_no_listener() {
        let prod = env("prod");
        let p = policy(&[&prod], &[Phase::Snapshot, Phase::State]);
        let text = serde_json::to_string(&p).unwrap();
        assert!(allows(
            &p,
            "rds:CreateDBClusterSnapshot",
            Some("arn:aws:rds:eu-central-1:1:cluster-snapshot:pre-prod-v1")
        ));
        assert!(allows(
            &p,
            "rds:StopDBCluster",
            Some("arn:aws:rds:eu-central-1:9:cluster:aurora-prod")
        ));
        assert!(
            !text.contains("elasticloadbalancing"),
            "no maintenance configured: {text}"
        );
        assert!(
            !allows(&p, "rds:DeleteDBClusterSnapshot", None),
            "no retention configured"
        );
    }

    #[test]
    fn every_environment_when_none_is_named_with_unique_sids() {
        let c = Config::parse(CONFIG, Path::new("deploy.toml")).unwrap();
        let envs: Vec<&Environment> = c.environments.values().collect();
        let p = policy(&envs, &PHASES);
        let sids: Vec<&str> = p.statements.iter().map(|s| s.sid.as_str()).collect();
        let unique: BTreeSet<&&str> = sids.iter().collect();
        assert_eq!(unique.len(), sids.len(), "{sids:?}");
        assert!(sids
            .iter()
            .all(|s| s.chars().all(|c| c.is_ascii_alphanumeric())));
        assert!(parse_phase(Some("deplyo"))
            .unwrap_err()
            .to_string()
            .contains("input `policy-phase`"));
        assert_eq!(parse_phase(None).unwrap().len(), PHASES.len());
    }
}
