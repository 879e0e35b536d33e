//! Keep-last-N retention of task definition revisions after a successful deploy (`keep-revisions`): per family, the
//! newest N ACTIVE revisions stay; older ones are deregistered only when they are this action's (tagged
//! `deploy-action:version` or `deploy-action:known-good`) and no service, deployment or running task uses them
//! ([`to_deregister`]). Phase rollback applies its own rule ([`crate::domain::rollout::revisions_to_deregister`]).

use anyhow::Result;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::aws::ecs::{self, td_short};
use crate::domain::rollout::RevisionInfo;

/// `keep-revisions` when not given (deploy and rollback).
pub const DEFAULT_KEEP: u64 = 10;

/// Pure: the revisions of one family to deregister: beyond the newest `keep` (counting every ACTIVE revision), those
/// of this action that nothing in `in_use` names. A revision someone else registered is never touched.
pub fn to_deregister(revisions: &[RevisionInfo], in_use: &[String], keep: usize) -> Vec<String> {
    let mut newest_first: Vec<&RevisionInfo> = revisions.iter().collect();
    newest_first.sort_by_key(|r| std::cmp::Reverse(r.revision));
    newest_first
        .into_iter()
        .skip(keep)
        .filter(|r| (r.version.is_some() || r.known_good.is_some()) && !in_use.contains(&r.arn))
        .map(|r| r.arn.clone())
        .collect()
}

/// Pure: whether a family whose newest revision is `task_definition` can hold more than `keep` ACTIVE revisions.
/// ECS numbers a family's revisions 1, 2, 3, … and never reuses a number, so a family whose newest is revision
/// `keep` or lower has at most `keep`: nothing to read, nothing to prune.
pub fn may_exceed(task_definition: &str, keep: usize) -> bool {
    ecs::td_revision(task_definition).is_none_or(|n| usize::try_from(n).map_or(true, |n| n > keep))
}

/// Pure: the revisions beyond the newest `keep` (the only ones retention could deregister), newest first.
pub fn beyond_keep(arns: &[String], keep: usize) -> Vec<String> {
    let mut numbered: Vec<(i32, &String)> = arns
        .iter()
        .map(|a| (ecs::td_revision(a).unwrap_or(i32::MAX), a))
        .collect();
    numbered.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    numbered
        .into_iter()
        .skip(keep)
        .map(|(_, a)| a.clone())
        .collect()
}

/// The ACTIVE revisions of a family with the tags this action reads, newest first.
pub async fn revisions(
    ecs_client: &aws_sdk_ecs::Client,
    family: &str,
) -> Result<Vec<RevisionInfo>> {
    let arns = ecs::active_revisions(ecs_client, family).await?;
    stream::iter(arns.iter())
        .map(|arn| async move {
            let tags = ecs::tags(ecs_client, arn).await?;
            Ok::<_, anyhow::Error>(RevisionInfo::new(arn, &tags))
        })
        .buffered(8)
        .try_collect()
        .await
}

/// The revisions in use: every deployment of the given services, and every task of the families ECS wants running
/// in the cluster (a service's, a one-off task's, anyone's).
pub async fn in_use(
    ecs_client: &aws_sdk_ecs::Client,
    cluster: &str,
    services: &[String],
    families: &[&str],
) -> Result<Vec<String>> {
    let svcs = ecs::describe_services(ecs_client, cluster, services).await?;
    let mut used: Vec<String> = svcs
        .iter()
        .flat_map(|s| {
            s.deployments()
                .iter()
                .filter_map(|d| d.task_definition())
                .chain(s.task_definition())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    for family in families {
        let arns = ecs::live_tasks_of_family(ecs_client, cluster, family).await?;
        if arns.is_empty() {
            continue;
        }
        let tasks = ecs::describe_tasks(ecs_client, cluster, &arns).await?;
        used.extend(
            tasks
                .iter()
                .filter_map(|t| t.task_definition_arn().map(str::to_string)),
        );
    }
    used.sort();
    used.dedup();
    Ok(used)
}

/// What retention did: the revisions deregistered, and one line for the summary.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    pub deregistered: Vec<String>,
    pub notes: Vec<String>,
}

/// Applies `keep-revisions` to the families after a successful deploy. Failures are notes, never a failed deploy.
pub async fn after_deploy(
    ecs_client: &aws_sdk_ecs::Client,
    cluster: &str,
    services: &[String],
    families: &[&str],
    keep: usize,
) -> Result<Pruned> {
    // Cheap first: one listing per family; tags only of the revisions beyond the newest `keep`; what is in use only
    // once there is a candidate.
    let mut candidates: Vec<RevisionInfo> = Vec::new();
    for family in families {
        let arns = ecs::active_revisions(ecs_client, family).await?;
        for arn in beyond_keep(&arns, keep) {
            let tags = ecs::tags(ecs_client, &arn).await?;
            candidates.push(RevisionInfo::new(&arn, &tags));
        }
    }
    let ours = candidates
        .iter()
        .any(|r| r.version.is_some() || r.known_good.is_some());
    let used = if ours {
        in_use(ecs_client, cluster, services, families).await?
    } else {
        Vec::new()
    };
    let mut out = Pruned::default();
    for arn in to_deregister(&candidates, &used, 0) {
        match ecs::deregister_task_definition(ecs_client, &arn).await {
            Ok(()) => {
                tracing::info!("keep-revisions {keep}: deregistered {}", td_short(&arn));
                out.deregistered.push(arn);
            }
            Err(e) => out.notes.push(format!("keep-revisions: {e}")),
        }
    }
    out.notes.push(if out.deregistered.is_empty() {
        format!("keep-revisions {keep}: nothing to deregister")
    } else {
        format!(
            "keep-revisions {keep}: deregistered {} of this action's older revision(s) that no service, deployment or running task uses: {}",
            out.deregistered.len(),
            out.deregistered
                .iter()
                .map(|a| td_short(a))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(n: i32, ours: bool, good: bool) -> RevisionInfo {
        RevisionInfo {
            arn: format!("arn:aws:ecs:r:1:task-definition/stage-core:{n}"),
            revision: n,
            known_good: good.then(|| "2026-12-02T15:00:00Z".to_string()),
            version: ours.then(|| format!("v1.{n}.0")),
        }
    }

    #[test]
    fn a_family_can_exceed_keep_only_past_revision_keep() {
        let td = |n: &str| format!("arn:aws:ecs:r:1:task-definition/stage-core:{n}");
        let cases = [
            ("1", 10, false),
            ("10", 10, false),
            ("11", 10, true),
            ("3", 2, true),
            ("1", 0, true),
            ("x", 10, true),
        ];
        for (n, keep, want) in cases {
            assert_eq!(may_exceed(&td(n), keep), want, "{n} keep {keep}");
        }
    }

    #[test]
    fn only_the_revisions_past_the_newest_keep_are_read() {
        let td = |n: i32| format!("arn:aws:ecs:r:1:task-definition/stage-core:{n}");
        let arns: Vec<String> = [3, 12, 7, 11, 9].into_iter().map(td).collect();
        assert_eq!(beyond_keep(&arns, 3), vec![td(7), td(3)]);
        assert_eq!(beyond_keep(&arns, 5), Vec::<String>::new());
        assert_eq!(beyond_keep(&arns, 0).len(), 5);
    }

    #[test]
    fn keeps_the_newest_n_and_never_one_in_use_or_not_ours() {
        let arn = |n: i32| format!("arn:aws:ecs:r:1:task-definition/stage-core:{n}");
        // Revisions 1 (not ours), 2..=6 ours (5 known good).
        let revs: Vec<RevisionInfo> = (1..=6).map(|n| rev(n, n > 1, n == 5)).collect();
        let cases: [(&str, usize, Vec<String>, Vec<i32>); 5] = [
            (
                "keep 2: 4 and older go, except 1 (not ours)",
                2,
                vec![],
                vec![4, 3, 2],
            ),
            ("keep 2, 3 in use", 2, vec![arn(3)], vec![4, 2]),
            ("keep 10: nothing", 10, vec![], vec![]),
            (
                "keep 1: the known-good 5 is ours too",
                1,
                vec![arn(6)],
                vec![5, 4, 3, 2],
            ),
            (
                "keep 0 is never asked, but in use still wins",
                0,
                vec![arn(6), arn(2)],
                vec![5, 4, 3],
            ),
        ];
        for (name, keep, used, want) in cases {
            let got = to_deregister(&revs, &used, keep);
            let want: Vec<String> = want.into_iter().map(arn).collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
