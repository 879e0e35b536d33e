//! What changed between the version an environment ran and the one deployed: commits and pull requests from the
//! compare API, bounded, rendered for the step summary.

use serde::Serialize;

use super::api::{Api, ApiError, Comparison};
use crate::text::{md_code, md_text, md_url};

/// At most this many commits are listed; the rest are counted and linked.
pub const MAX_COMMITS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changelog {
    pub base: String,
    pub head: String,
    /// Commits in `head` that are not in `base`.
    pub ahead_by: u64,
    /// Commits in `base` that are not in `head` (a downgrade removes them).
    pub behind_by: u64,
    /// Newest first, at most [`MAX_COMMITS`].
    pub commits: Vec<Entry>,
    /// Pull requests named in the listed commits, in the order first seen.
    pub pulls: Vec<u64>,
    pub compare_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub sha: String,
    pub subject: String,
    pub author: Option<String>,
}

/// `GET /repos/{o}/{r}/compare/{base}...{head}`. One page (GitHub lists the oldest commits first).
pub async fn fetch(api: &Api, base: &str, head: &str) -> Result<Changelog, ApiError> {
    let route = api.route(&format!(
        "compare/{}...{}?per_page=100",
        path_segment(base),
        path_segment(head)
    ));
    let cmp: Comparison = api.get(&format!("compare {base}...{head}"), &route).await?;
    Ok(from_comparison(base, head, &cmp))
}

/// Refs may hold `/` (`api/v1.2.3`), which the compare route takes as is; everything else unusual is escaped.
fn path_segment(r: &str) -> String {
    let mut s = String::new();
    for b in r.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                s.push(b as char)
            }
            _ => s.push_str(&format!("%{b:02X}")),
        }
    }
    s
}

pub fn from_comparison(base: &str, head: &str, cmp: &Comparison) -> Changelog {
    let commits: Vec<Entry> = cmp
        .commits
        .iter()
        .rev()
        .take(MAX_COMMITS)
        .map(|c| Entry {
            sha: c.sha.chars().take(7).collect(),
            subject: subject(&c.commit.message),
            author: c
                .author
                .as_ref()
                .map(|a| a.login.clone())
                .or_else(|| c.commit.author.as_ref().and_then(|a| a.name.clone())),
        })
        .collect();
    let mut pulls = Vec::new();
    for c in cmp.commits.iter().rev().take(MAX_COMMITS) {
        for n in pull_numbers(&c.commit.message) {
            if !pulls.contains(&n) {
                pulls.push(n);
            }
        }
    }
    Changelog {
        base: base.to_string(),
        head: head.to_string(),
        ahead_by: cmp.ahead_by.max(cmp.total_commits),
        behind_by: cmp.behind_by,
        commits,
        pulls,
        compare_url: cmp.html_url.clone(),
    }
}

/// The first line of a commit message, bounded.
fn subject(message: &str) -> String {
    let line = message.lines().next().unwrap_or_default().trim();
    if line.chars().count() > 100 {
        line.chars().take(100).collect::<String>() + "…"
    } else {
        line.to_string()
    }
}

/// Pull request numbers a commit message names: `(#123)` (squash merges) and `Merge pull request #123` (merge
/// commits).
pub fn pull_numbers(message: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut push = |digits: &str| {
        if let Ok(n) = digits.parse::<u64>() {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    };
    for (i, _) in message.match_indices("(#") {
        let rest = &message[i + 2..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && rest[digits.len()..].starts_with(')') {
            push(&digits);
        }
    }
    for (i, m) in message.match_indices("Merge pull request #") {
        let digits: String = message[i + m.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        push(&digits);
    }
    out
}

/// Markdown for the step summary (every value from GitHub escaped: subjects and authors are anyone's text).
/// `repo_url` (`https://github.com/acme/backend`) makes the pull requests links.
pub fn render(log: &Changelog, repo_url: Option<&str>) -> String {
    let (base, head) = (md_text(&log.base), md_text(&log.head));
    let mut s = format!("#### Changes {base} → {head}\n\n");
    let compare = log
        .compare_url
        .as_deref()
        .map(|u| format!(" ([compare]({}))", md_url(u)))
        .unwrap_or_default();
    if log.ahead_by == 0 && log.behind_by == 0 {
        s.push_str(&format!(
            "No changes: {base} and {head} are the same commit.\n"
        ));
        return s;
    }
    if log.behind_by > 0 {
        s.push_str(&format!(
            "⚠️ {head} is {} commit{} behind {base}: this deploy takes them out again.{compare}\n\n",
            log.behind_by,
            plural(log.behind_by),
        ));
        if log.ahead_by == 0 {
            return s;
        }
    }
    let pulls: Vec<String> = log
        .pulls
        .iter()
        .map(|n| match repo_url {
            Some(r) => format!("[#{n}]({}/pull/{n})", md_url(r)),
            None => format!("#{n}"),
        })
        .collect();
    s.push_str(&format!("{} commit{}", log.ahead_by, plural(log.ahead_by)));
    if !pulls.is_empty() {
        s.push_str(&format!(", pull requests {}", pulls.join(", ")));
    }
    s.push_str(&format!("{compare}\n\n"));
    for c in &log.commits {
        let by = c
            .author
            .as_deref()
            .map(|a| format!(" — {}", md_text(a)))
            .unwrap_or_default();
        s.push_str(&format!(
            "- {} {}{by}\n",
            md_code(&c.sha),
            md_text(&c.subject)
        ));
    }
    let listed = log.commits.len() as u64;
    if log.ahead_by > listed {
        s.push_str(&format!(
            "- … and {} more{compare}\n",
            log.ahead_by - listed
        ));
    }
    s
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pull_request_numbers() {
        let cases: &[(&str, &[u64])] = &[
            ("Fix login (#123)", &[123]),
            (
                "Merge pull request #45 from acme/feature\n\nFix (#46)",
                &[46, 45],
            ),
            ("Bump deps (#7) (#8)", &[7, 8]),
            ("Issue #9 is not a PR reference", &[]),
            ("(#) and (#12a) are not numbers", &[]),
            ("Revert \"Fix (#5)\" (#6)", &[5, 6]),
        ];
        for (msg, want) in cases {
            assert_eq!(pull_numbers(msg), *want, "{msg}");
        }
    }

    fn comparison(n: usize, ahead: u64, behind: u64) -> Comparison {
        let commits: Vec<_> = (0..n)
            .map(|i| {
                json!({
                    "sha": format!("{i:07}aaaaaaaaaa"),
                    "commit": {"message": format!("Change {i} (#{})\n\nbody", 100 + i), "author": {"name": "Dev"}},
                    "author": if i % 2 == 0 { json!({"login": "alice"}) } else { json!(null) },
                })
            })
            .collect();
        serde_json::from_value(json!({
            "status": "ahead", "ahead_by": ahead, "behind_by": behind, "total_commits": ahead,
            "html_url": "https://github.com/acme/backend/compare/v1...v2", "commits": commits,
        }))
        .unwrap()
    }

    #[test]
    fn renders_newest_first_with_links() {
        let log = from_comparison("v1.0.0", "v1.1.0", &comparison(2, 2, 0));
        assert_eq!(log.pulls, vec![101, 100]);
        let md = render(&log, Some("https://github.com/acme/backend"));
        assert_eq!(
            md,
            "#### Changes v1.0.0 → v1.1.0\n\n2 commits, pull requests [#101](https://github.com/acme/backend/pull/101), [#100](https://github.com/acme/backend/pull/100) ([compare](https://github.com/acme/backend/compare/v1...v2))\n\n- `0000001` Change 1 (#101) — Dev\n- `0000000` Change 0 (#100) — alice\n"
        );
    }

    #[test]
    fn is_bounded() {
        let log = from_comparison("v1", "v2", &comparison(100, 130, 0));
        assert_eq!(log.commits.len(), MAX_COMMITS);
        assert_eq!(log.commits[0].subject, "Change 99 (#199)");
        assert_eq!(log.pulls.len(), MAX_COMMITS);
        let md = render(&log, None);
        assert!(
            md.starts_with("#### Changes v1 → v2\n\n130 commits, pull requests #199, #198"),
            "{md}"
        );
        assert!(
            md.ends_with(
                "- … and 80 more ([compare](https://github.com/acme/backend/compare/v1...v2))\n"
            ),
            "{md}"
        );
    }

    #[test]
    fn downgrades_and_no_change_say_so() {
        let md = render(&from_comparison("v2", "v1", &comparison(0, 0, 3)), None);
        assert!(
            md.contains("⚠️ v1 is 3 commits behind v2: this deploy takes them out again."),
            "{md}"
        );
        assert!(!md.contains("0 commits"), "{md}");
        let md = render(&from_comparison("v1", "v1", &comparison(0, 0, 0)), None);
        assert!(md.contains("No changes"), "{md}");
    }

    #[test]
    fn refs_in_the_route_are_escaped() {
        assert_eq!(path_segment("api/v1.2.3"), "api/v1.2.3");
        assert_eq!(path_segment("v1.2.3+build"), "v1.2.3%2Bbuild");
    }
}
