//! The versions an environment already knows (the `deploy-action:version` tags on its task definition revisions and
//! on its snapshots), and the refusal of a new version whose name part collides with one of them.
//!
//! In image tags, snapshot names and revision tags a version's `/` and `+` become `-` ([`Version::tag_safe`]), so
//! two different versions can map to the same image tag (`api/v1` and `api-v1`; `v1.0.0+a` and `v1.0.0-a`): the
//! second would run the first one's image. Such a version is refused with exit 2 before any AWS change
//! ([`refuse_collision`]).

use anyhow::Result;
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::aws::ecs::{self, td_short};
use crate::aws::rds::Snapshot;
use crate::error::UsageError;
use crate::tags;
use crate::version::{collides, may_collide, Version};

/// How many of the newest ACTIVE revisions of a family are read for their version tag.
pub const NEWEST_REVISIONS: usize = 50;

/// A version seen in AWS, and where (`stage-core:3`, `snapshot deploy-stage-v1-0-0-...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub version: String,
    pub seen_on: String,
}

/// Pure: the versions tagged on snapshots (this action's tag `deploy-action:version`).
pub fn in_snapshots(snaps: &[Snapshot]) -> Vec<Known> {
    snaps
        .iter()
        .filter_map(|s| {
            Some(Known {
                version: s.tag(tags::VERSION)?.to_string(),
                seen_on: format!("snapshot {}", s.id),
            })
        })
        .collect()
}

/// The versions tagged on the newest [`NEWEST_REVISIONS`] ACTIVE revisions of each family (ListTaskDefinitions,
/// ListTagsForResource; read only) that `version` could collide with: none, and no call, when it has no `/`, `+` or
/// `-` ([`may_collide`]).
pub async fn in_families(
    ecs_client: &aws_sdk_ecs::Client,
    families: &[&str],
    version: &Version,
) -> Result<Vec<Known>> {
    if !may_collide(version.as_str()) {
        return Ok(vec![]);
    }
    let mut arns: Vec<String> = vec![];
    for family in families {
        let mut a = ecs::active_revisions(ecs_client, family).await?;
        a.truncate(NEWEST_REVISIONS);
        arns.extend(a);
    }
    let found: Vec<Option<Known>> = stream::iter(arns)
        .map(|arn| async move {
            let tags = ecs::tags(ecs_client, &arn).await?;
            Ok::<_, anyhow::Error>(tags::get(&tags, tags::VERSION).map(|v| Known {
                version: v.to_string(),
                seen_on: td_short(&arn).to_string(),
            }))
        })
        .buffered(8)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// Pure: a usage error (exit 2) naming both versions and the fix when `version` collides with a known one.
pub fn refuse_collision(version: &Version, known: &[Known]) -> Result<(), UsageError> {
    let Some(k) = known
        .iter()
        .find(|k| collides(version.as_str(), &k.version))
    else {
        return Ok(());
    };
    Err(UsageError::new(format!(
        "input `version`: {version} collides with the version {} already known here ({}): both become {:?} in image tags and names ('/' and '+' become '-'), so one would run the other's image; pass a version that stays distinct (e.g. keep using {}), or retire {} first (deregister its revisions, delete its snapshots)",
        k.version,
        k.seen_on,
        version.tag_safe(),
        k.version,
        k.version
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_colliding_version_is_refused_naming_both() {
        let known = |v: &str| Known {
            version: v.into(),
            seen_on: "stage-core:3".into(),
        };
        let cases: [(&str, &[&str], Option<&str>); 6] = [
            ("api-v1", &["api/v1"], Some("api/v1")),
            ("v1.0.0+a", &["v1.0.0-a", "v0.9.0"], Some("v1.0.0-a")),
            ("v1.0.0", &["v1.0.0"], None),
            ("api/v2", &["api/v1", "api-v1"], None),
            ("drizzle-init", &[], None),
            ("a/b+c", &["v0", "a-b-c"], Some("a-b-c")),
        ];
        for (new, seen, clash) in cases {
            let seen: Vec<Known> = seen.iter().map(|v| known(v)).collect();
            let got = refuse_collision(&Version::parse(new).unwrap(), &seen);
            match clash {
                None => assert_eq!(got, Ok(()), "{new}"),
                Some(other) => {
                    let e = got.expect_err(new).to_string();
                    assert!(
                        e.starts_with("input `version`: ")
                            && e.contains(new)
                            && e.contains(&format!("the version {other} "))
                            && e.contains("stage-core:3")
                            && !e.contains('\n'),
                        "{e}"
                    );
                }
            }
        }
    }
}
