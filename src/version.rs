//! Versions (release tags and labels) and how they become image tags.

use serde::Serialize;

use crate::error::UsageError;

/// A release version as given in the `version` input: a semver tag (`v1.66.0`, `v3.56.2-rc1`), a label
/// (`drizzle-init`) or a path/calver tag (`api/v2024.10.02.1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Version(String);

impl Version {
    pub fn parse(input: &str) -> Result<Version, UsageError> {
        // Not trimmed: GitHub strips what it strips from inputs, and the CLI takes the argument as given; a space,
        // a tab or a newline left in a version is refused like any other character a tag cannot hold.
        let v = input;
        let why = if v.is_empty() {
            Some("is empty".to_string())
        } else if v.len() > 128 {
            Some(format!("is {} characters long (at most 128)", v.len()))
        } else if let Some(c) = v
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._/+-".contains(*c)))
        {
            Some(format!(
                "contains {c:?}; use letters, digits, '.', '_', '-', '+' and '/' only"
            ))
        } else if v.starts_with(['/', '.', '-', '+']) || v.ends_with(['/', '.', '-', '+']) {
            Some("must start and end with a letter, digit or '_'".to_string())
        } else if v.contains("//") || v.contains("..") {
            Some("contains '//' or '..'".to_string())
        } else {
            None
        };
        match why {
            Some(why) => Err(UsageError::new(format!(
                "input `version`: {input:?} {why}; pass a release tag such as v1.66.0 or a label such as drizzle-init"
            ))),
            None => Ok(Version(v.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The semantic version, if this is one: the last path segment without a leading `v`.
    pub fn semver(&self) -> Option<semver::Version> {
        semver_of(&self.0)
    }

    /// The form used inside image tags: characters an image tag cannot hold (`/`, `+`) become `-`.
    pub fn tag_safe(&self) -> String {
        tag_safe(&self.0)
    }
}

/// Pure: a version's form inside image tags, revision and snapshot names: `/` and `+` become `-`.
pub fn tag_safe(v: &str) -> String {
    v.replace(['/', '+'], "-")
}

/// Pure: two different versions that give the same image tag (`api/v1` and `api-v1`, `v1.0.0+a` and `v1.0.0-a`):
/// one would run the other's image. Image tags are case-sensitive and keep `.` and `_`, so `V1` and `v1`, or `v1.0`
/// and `v1-0`, do not collide.
pub fn collides(a: &str, b: &str) -> bool {
    a != b && tag_safe(a) == tag_safe(b)
}

/// Pure: whether any other version could collide with `v` ([`collides`]). Two colliding versions differ only where
/// one has `/`, `+` or `-` and the other another of the three, so a version with none of them (`v1.2.3`,
/// `2026.12.05`) collides with nothing: its collision check reads nothing from AWS.
pub fn may_collide(v: &str) -> bool {
    v.contains(['/', '+', '-'])
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `v1.2.3`, `api/v1.2.3`, `core-v1.2.3` style strings to a semver, if they hold one.
pub fn semver_of(s: &str) -> Option<semver::Version> {
    let last = s.rsplit('/').next().unwrap_or(s);
    let last = last
        .strip_prefix('v')
        .or_else(|| last.strip_prefix('V'))
        .unwrap_or(last);
    semver::Version::parse(last).ok()
}

/// How two versions order, when they can be ordered at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    /// A semantic version (`v1.2.3`, `v3.56.2-rc1`): semver precedence, so a pre-release is older than its release.
    Semver(semver::Version),
    /// A calendar version (`v2024.10.02.1`, `api/v2024.10.02`): its numbers in order (year first), then a
    /// pre-release suffix (`-rc1`) older than none.
    Calver {
        numbers: Vec<u64>,
        pre: Option<String>,
    },
}

/// Pure: the order key of a version string and the path before its last segment (`api/` of `api/v2024.10.02.1`):
/// calendar versions (a 4-digit year first) before semver, so `v2024.10.2` and `v2024.10.02.1` compare alike.
/// Labels (`drizzle-init`) have none.
pub fn order_of(s: &str) -> Option<(&str, Order)> {
    let (prefix, last) = match s.rfind('/') {
        Some(i) => (&s[..=i], &s[i + 1..]),
        None => ("", s),
    };
    let bare = last
        .strip_prefix('v')
        .or_else(|| last.strip_prefix('V'))
        .unwrap_or(last);
    let (nums, pre) = match bare.split_once('-') {
        Some((n, p)) => (n, Some(p.to_string())),
        None => (bare, None),
    };
    let parts: Vec<&str> = nums.split('.').collect();
    let calver = parts.len() >= 2
        && parts[0].len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && parts[0]
            .parse::<u64>()
            .is_ok_and(|y| (1970..=9999).contains(&y));
    if calver {
        let numbers = parts.iter().filter_map(|p| p.parse().ok()).collect();
        return Some((prefix, Order::Calver { numbers, pre }));
    }
    semver_of(s).map(|v| (prefix, Order::Semver(v)))
}

/// Pure: `a` older than `b`, when both order the same way (and, for calendar versions, share the path before their
/// last segment); `None` when they cannot be compared (labels, mixed kinds, different paths).
pub fn older(a: &str, b: &str) -> Option<bool> {
    match (order_of(a)?, order_of(b)?) {
        ((_, Order::Semver(x)), (_, Order::Semver(y))) => Some(x < y),
        (
            (
                pa,
                Order::Calver {
                    numbers: na,
                    pre: xa,
                },
            ),
            (
                pb,
                Order::Calver {
                    numbers: nb,
                    pre: xb,
                },
            ),
        ) if pa == pb => Some(match na.cmp(&nb) {
            std::cmp::Ordering::Equal => match (xa, xb) {
                (Some(x), Some(y)) => x < y,
                (Some(_), None) => true,
                (None, _) => false,
            },
            o => o == std::cmp::Ordering::Less,
        }),
        _ => None,
    }
}

/// True when `new` orders before `running` (semver, or calendar versions by date; a pre-release before its
/// release): worth a warning before deploying.
pub fn is_downgrade(new: &Version, running: &str) -> bool {
    older(new.as_str(), running) == Some(true)
}

/// Whether a string is a valid Docker/OCI image tag.
pub fn is_valid_image_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// How a version becomes an image: an optional repository (else the one the task definition uses now) and a tag
/// template holding `{version}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageTagTemplate {
    pub repository: Option<String>,
    pub tag: String,
}

impl ImageTagTemplate {
    pub fn new(repository: Option<String>, tag: &str) -> Result<Self, String> {
        if tag.matches("{version}").count() != 1 {
            return Err(format!(
                "{tag:?} must contain {{version}} exactly once, e.g. \"core-{{version}}\""
            ));
        }
        let rest = tag.replace("{version}", "x");
        if rest.contains(['{', '}']) {
            return Err(format!(
                "{tag:?} has an unknown placeholder; only {{version}} is replaced"
            ));
        }
        if !is_valid_image_tag(&rest) {
            return Err(format!(
                "{tag:?} cannot form a valid image tag; use letters, digits, '_', '.', '-'"
            ));
        }
        if let Some(r) = &repository {
            if r.is_empty() || r.contains(char::is_whitespace) || split_image(r).1.is_some() {
                return Err(format!(
                    "image-repository {r:?} must be a repository without a tag"
                ));
            }
        }
        Ok(ImageTagTemplate {
            repository,
            tag: tag.to_string(),
        })
    }

    /// The image tag for a version, or a usage error naming the `version` input.
    pub fn tag_for(&self, version: &Version) -> Result<String, UsageError> {
        let tag = self.tag.replace("{version}", &version.tag_safe());
        if is_valid_image_tag(&tag) {
            Ok(tag)
        } else {
            Err(UsageError::new(format!(
                "input `version`: {:?} gives the image tag {tag:?}, which is not a valid image tag (at most 128 characters of letters, digits, '_', '.', '-'); pass a shorter version",
                version.as_str()
            )))
        }
    }

    /// The full image for a version; the repository defaults to the one in `current_image`.
    pub fn image_for(&self, version: &Version, current_image: &str) -> Result<String, UsageError> {
        let tag = self.tag_for(version)?;
        let repo = match &self.repository {
            Some(r) => r.clone(),
            None => split_image(current_image).0.to_string(),
        };
        Ok(format!("{repo}:{tag}"))
    }

    /// The version an image was deployed with, read back through the template (`repo:core-v1.2.3` → `v1.2.3`).
    pub fn version_of(&self, image: &str) -> Option<String> {
        let tag = split_image(image).1?;
        let (pre, post) = self.tag.split_once("{version}")?;
        let v = tag.strip_prefix(pre)?.strip_suffix(post)?;
        (!v.is_empty()).then(|| v.to_string())
    }
}

/// Splits `registry:5000/repo:tag@sha256:...` into (`registry:5000/repo`, `Some("tag")`).
pub fn split_image(image: &str) -> (&str, Option<&str>) {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => (&no_digest[..i], Some(&no_digest[i + 1..])),
        _ => (no_digest, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downgrades_by_semver_and_by_date_pre_releases_before_their_release() {
        let v = |s: &str| Version::parse(s).unwrap();
        let cases = [
            ("v1.2.3", "v1.3.0", true),
            ("v1.3.0", "v1.2.3", false),
            ("v1.2.3", "v1.2.3", false),
            ("v3.56.2-rc1", "v3.56.2", true),
            ("v3.56.2", "v3.56.2-rc1", false),
            ("v3.56.2-rc1", "v3.56.2-rc2", true),
            ("v3.56.3-rc1", "v3.56.2", false),
            ("api/v2024.10.02.1", "api/v2024.10.02.2", true),
            ("api/v2024.09.30.9", "api/v2024.10.02.1", true),
            ("api/v2024.10.02.1", "api/v2024.9.30", false),
            ("api/v2024.10.02", "api/v2024.10.02.1", true),
            ("api/v2024.10.02-rc1", "api/v2024.10.02", true),
            ("api/v2024.10.02", "api/v2024.10.02-rc1", false),
            ("api/v2024.10.01", "web/v2024.10.02", false),
            ("v2024.10.2", "v2024.10.02.1", true),
            ("drizzle-init", "v1.0.0", false),
            ("v1.0.0", "drizzle-init", false),
            ("v1.0.0", "v2024.10.02", false),
        ];
        for (new, running, want) in cases {
            assert_eq!(
                is_downgrade(&v(new), running),
                want,
                "{new} after {running}"
            );
        }
    }

    #[test]
    fn versions_collide_when_their_image_tags_are_equal() {
        let cases = [
            ("api/v1", "api-v1", true),
            ("v1.0.0+a", "v1.0.0-a", true),
            ("api/v2024.10.02.1", "api-v2024.10.02.1", true),
            ("a/b", "a+b", true),
            ("drizzle-init", "drizzle/init", true),
            ("v1.0.0", "v1.0.0", false),
            ("V1.0.0", "v1.0.0", false),
            ("v1.0.0", "v1-0-0", false),
            ("v1_0", "v1-0", false),
            ("v3.56.2-rc1", "v3.56.2", false),
            ("api/v1", "web/v1", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(collides(a, b), want, "{a} / {b}");
            assert_eq!(collides(b, a), want, "{b} / {a}");
        }
    }

    #[test]
    fn only_a_version_with_a_slash_plus_or_dash_may_collide() {
        let cases = [
            ("v1.2.3", false),
            ("2026.12.05", false),
            ("V1_0", false),
            ("v3.56.2-rc1", true),
            ("api/v1", true),
            ("v1.0.0+a", true),
            ("drizzle-init", true),
        ];
        for (v, want) in cases {
            assert_eq!(may_collide(v), want, "{v}");
        }
        // The skip is safe: every colliding pair is seen by both sides.
        let all = [
            "api/v1", "api-v1", "api+v1", "v1.0.0", "v1-0-0", "v1.0.0+a", "v1.0.0-a", "v1_0",
            "a/b", "a-b", "ab",
        ];
        for a in all {
            for b in all {
                if collides(a, b) {
                    assert!(may_collide(a) && may_collide(b), "{a} / {b}");
                }
            }
        }
    }

    #[test]
    fn versions_accepted_and_rejected() {
        for ok in [
            "v1.66.0",
            "v3.56.2-rc1",
            "drizzle-init",
            "api/v2024.10.02.1",
            "1.0.0+build.5",
            "hotfix_2",
        ] {
            Version::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            " ",
            "v1 2",
            "-v1",
            "/api",
            "api/",
            "a//b",
            "a..b",
            "v1;rm",
            "ü",
            &"x".repeat(129),
            "v1:2",
        ] {
            let e = Version::parse(bad).expect_err(bad).to_string();
            assert!(e.starts_with("input `version`"), "{e}");
        }
    }

    #[test]
    fn semver_and_downgrades() {
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(v("v1.66.0").semver(), Some(semver::Version::new(1, 66, 0)));
        assert!(v("v3.56.2-rc1").semver().is_some());
        assert_eq!(v("drizzle-init").semver(), None);
        assert!(is_downgrade(&v("v1.2.0"), "v1.10.0"));
        assert!(!is_downgrade(&v("v1.10.0"), "v1.2.0"));
        assert!(is_downgrade(&v("v2.0.0-rc1"), "v2.0.0"));
        assert!(!is_downgrade(&v("drizzle-init"), "v1.0.0"));
    }

    #[test]
    fn templates_render_and_read_back() {
        let t = ImageTagTemplate::new(None, "core-{version}").unwrap();
        let v = Version::parse("api/v2024.10.02.1").unwrap();
        assert_eq!(t.tag_for(&v).unwrap(), "core-api-v2024.10.02.1");
        assert_eq!(
            t.image_for(&v, "reg:5000/app:core-v1").unwrap(),
            "reg:5000/app:core-api-v2024.10.02.1"
        );
        assert_eq!(
            t.version_of("reg:5000/app:core-v1.2.3"),
            Some("v1.2.3".into())
        );
        assert_eq!(t.version_of("reg:5000/app:workers-v1.2.3"), None);
        assert_eq!(t.version_of("reg:5000/app"), None);
        let long = Version::parse(&"a".repeat(126)).unwrap();
        assert!(t.tag_for(&long).is_err());
        for bad in [
            "core",
            "{version}-{version}",
            "{env}-{version}",
            "a b{version}",
        ] {
            assert!(ImageTagTemplate::new(None, bad).is_err(), "{bad}");
        }
        assert!(ImageTagTemplate::new(Some("repo:tag".into()), "{version}").is_err());
    }

    #[test]
    fn image_split() {
        assert_eq!(split_image("a/b:c"), ("a/b", Some("c")));
        assert_eq!(split_image("h:5000/b"), ("h:5000/b", None));
        assert_eq!(
            split_image("h:5000/b:t@sha256:abc"),
            ("h:5000/b", Some("t"))
        );
    }
}
