//! Keep-last-N retention of task definition revisions after a successful deploy (`keep-revisions`): per family, the
//! newest N ACTIVE revisions stay; older ones are deregistered only when they are this action's (tagged
//! `deploy-action:version` or `deploy-action:known-good`) and no service, deployment or running task uses them
//! ([`to_deregister`]). Phase rollback applies its own rule ([`crate::domain::rollout::revisions_to_deregister`]).
//!
//! What was judged is remembered: the family's newest revision carries [`TAG_JUDGED`] (every ACTIVE revision at or
//! below that number is another tool's), copied to each new revision at registration, so a deploy reads the tags
//! of the revisions numbered above it only, and a family with nothing new past the newest `keep` costs no call.

use anyhow::Result;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::aws::ecs::{self, td_short};
use crate::domain::rollout::RevisionInfo;

/// Tag on a family's newest revision: retention judged every ACTIVE revision of the family numbered at or below this
/// value another tool's (those of this action it deregistered; none in use is below it). See [`judged_through`].
pub const TAG_JUDGED: &str = "deploy-action:retention-judged";

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
        .filter(|r| r.is_ours() && !in_use.contains(&r.arn))
        .map(|r| r.arn.clone())
        .collect()
}

/// Pure: whether a family whose newest revision is number `newest` may hold a revision retention has not judged yet:
/// one beyond the newest `keep` and numbered above `judged` (the family's [`TAG_JUDGED`] mark; 0 when none). ECS
/// numbers a family's revisions 1, 2, 3, … and never reuses a number, so every revision beyond the newest `keep` is
/// numbered at most `newest - keep`: a family at revision `keep` or lower, or whose mark reaches `newest - keep`,
/// needs no call at all.
pub fn may_hold_unjudged(newest: Option<i32>, keep: usize, judged: i32) -> bool {
    let Some(newest) = newest else { return true };
    i64::from(newest) - i64::try_from(keep).unwrap_or(i64::MAX) > i64::from(judged)
}

/// Pure: a family's new [`TAG_JUDGED`] mark after retention looked at it. `beyond`: the numbers of its ACTIVE
/// revisions beyond the newest `keep` (as listed); `ours_left`: those of this action still ACTIVE afterwards (in use,
/// or their deregistration failed), which must be judged again next time. Every revision at or below the mark is
/// another tool's (never ours again: retention only ever reads tags above the mark). `None` when the mark stays.
pub fn judged_through(beyond: &[i32], ours_left: &[i32], old: i32) -> Option<i32> {
    let newest_beyond = *beyond.iter().max()?;
    let mark = match ours_left.iter().min() {
        Some(lowest) => newest_beyond.min(lowest - 1),
        None => newest_beyond,
    };
    (mark > old).then_some(mark)
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

/// What retention did: the revisions deregistered, one line for the summary, and the families whose
/// [`TAG_JUDGED`] mark rose (to be written on their newest revision).
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    pub deregistered: Vec<String>,
    pub notes: Vec<String>,
    pub judged: Vec<(String, i32)>,
}

/// A family retention looks at after a deploy, with its [`TAG_JUDGED`] mark (0 when none).
#[derive(Debug, Clone, Copy)]
pub struct Family<'a> {
    pub name: &'a str,
    pub judged: i32,
}

/// The revisions of `family` beyond the newest `keep` (their numbers) and, read with their tags, those numbered
/// above its mark.
async fn unjudged(
    ecs_client: &aws_sdk_ecs::Client,
    family: Family<'_>,
    keep: usize,
) -> Result<(Vec<i32>, Vec<RevisionInfo>)> {
    let arns = ecs::active_revisions(ecs_client, family.name).await?;
    let beyond = beyond_keep(&arns, keep);
    let numbers = beyond.iter().filter_map(|a| ecs::td_revision(a)).collect();
    let mut read = Vec::new();
    for arn in beyond
        .iter()
        .filter(|a| ecs::td_revision(a).is_none_or(|n| n > family.judged))
    {
        let tags = ecs::tags(ecs_client, arn).await?;
        read.push(RevisionInfo::new(arn, &tags));
    }
    Ok((numbers, read))
}

/// Applies `keep-revisions` to the families after a successful deploy. Failures are notes, never a failed deploy.
pub async fn after_deploy(
    ecs_client: &aws_sdk_ecs::Client,
    cluster: &str,
    services: &[String],
    families: &[Family<'_>],
    keep: usize,
) -> Result<Pruned> {
    // Cheap first: one listing per family; tags only of the revisions beyond the newest `keep` above the family's
    // mark; what is in use only once there is a candidate.
    let mut looked = Vec::new();
    for family in families {
        looked.push((*family, unjudged(ecs_client, *family, keep).await?));
    }
    let candidates: Vec<RevisionInfo> = looked.iter().flat_map(|(_, (_, r))| r.clone()).collect();
    let used = if candidates.iter().any(RevisionInfo::is_ours) {
        let names: Vec<&str> = families.iter().map(|f| f.name).collect();
        in_use(ecs_client, cluster, services, &names).await?
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
    for (family, (beyond, read)) in &looked {
        let left: Vec<i32> = read
            .iter()
            .filter(|r| r.is_ours() && !out.deregistered.contains(&r.arn))
            .map(|r| r.revision)
            .collect();
        if let Some(mark) = judged_through(beyond, &left, family.judged) {
            out.judged.push((family.name.to_string(), mark));
        }
    }
    out.notes.push(summary_line(keep, &out.deregistered));
    Ok(out)
}

/// Pure: the summary's line about retention.
fn summary_line(keep: usize, deregistered: &[String]) -> String {
    if deregistered.is_empty() {
        return format!("keep-revisions {keep}: nothing to deregister");
    }
    format!(
        "keep-revisions {keep}: deregistered {} of this action's older revision(s) that no service, deployment or running task uses: {}",
        deregistered.len(),
        deregistered
            .iter()
            .map(|a| td_short(a))
            .collect::<Vec<_>>()
            .join(", ")
    )
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
    fn a_family_is_read_only_when_it_may_hold_an_unjudged_revision_past_keep() {
        let cases = [
            (Some(1), 10, 0, false),
            (Some(10), 10, 0, false),
            (Some(11), 10, 0, true),
            (Some(3), 2, 0, true),
            (Some(1), 0, 0, true),
            (None, 10, 0, true),
            // The mark: revisions at or below it were judged.
            (Some(11), 10, 1, false),
            (Some(12), 10, 1, true),
            (Some(40), 10, 30, false),
            (Some(40), 10, 29, true),
            (Some(5), usize::MAX, 0, false),
        ];
        for (newest, keep, judged, want) in cases {
            assert_eq!(
                may_hold_unjudged(newest, keep, judged),
                want,
                "{newest:?} keep {keep} judged {judged}"
            );
        }
    }

    #[test]
    fn the_mark_rises_to_the_newest_beyond_keep_but_stays_below_ours_still_active() {
        // (name, numbers beyond keep, ours left, old mark) → new mark
        type Case<'a> = (&'a str, &'a [i32], &'a [i32], i32, Option<i32>);
        let cases: [Case; 6] = [
            ("nothing beyond keep", &[], &[], 4, None),
            (
                "all beyond judged, none ours left",
                &[3, 7, 5],
                &[],
                0,
                Some(7),
            ),
            ("ours in use at 5", &[3, 7, 5], &[5], 0, Some(4)),
            ("ours left at 3 and 6", &[3, 6, 7], &[6, 3], 0, Some(2)),
            ("no rise below the old mark", &[3, 7], &[3], 5, None),
            ("the same mark again", &[2, 5], &[], 5, None),
        ];
        for (name, beyond, left, old, want) in cases {
            assert_eq!(judged_through(beyond, left, old), want, "{name}");
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
