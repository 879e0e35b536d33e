//! One pull-request comment per review app: found again by a hidden marker at its start and edited in place, so a PR
//! gets one comment however often it is pushed to.

use serde::Serialize;
use serde_json::json;

use super::api::{Api, ApiError, IssueComment};

/// Comments read per page, and the most pages read (3000 comments) before giving up the search.
const PER_PAGE: usize = 100;
const MAX_PAGES: usize = 30;

/// The hidden first line that identifies the comment of one review-app template (`<!-- deploy-action:preview:review -->`).
pub fn marker(key: &str) -> String {
    format!("<!-- deploy-action:preview:{key} -->")
}

/// When a comment is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When<'a> {
    /// Create it, or edit the one there (unless it already says exactly this).
    Always,
    /// Only edit one that is there, and only when it does not hold `unless` yet (a second teardown leaves the
    /// comment of the first alone).
    OnlyExisting { unless: &'a str },
}

/// What to do about the comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentStep {
    Create,
    Update(u64),
    /// Leave it as it is (the id of the one there, if any).
    Nothing(Option<u64>),
}

/// Pure: the step from the comment found (if any), the new body and the policy.
pub fn decide(found: Option<&IssueComment>, body: &str, when: When<'_>) -> CommentStep {
    match (found, when) {
        (None, When::Always) => CommentStep::Create,
        (None, When::OnlyExisting { .. }) => CommentStep::Nothing(None),
        (Some(c), _) if c.body == body => CommentStep::Nothing(Some(c.id)),
        (Some(c), When::OnlyExisting { unless }) if c.body.contains(unless) => {
            CommentStep::Nothing(Some(c.id))
        }
        (Some(c), When::Always | When::OnlyExisting { .. }) => CommentStep::Update(c.id),
    }
}

/// The first comment that starts with `marker` (a quote of it starts with `>`, so it does not count).
pub fn find<'a>(comments: &'a [IssueComment], marker: &str) -> Option<&'a IssueComment> {
    comments
        .iter()
        .find(|c| c.body.trim_start().starts_with(marker))
}

/// What happened to the comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommentAction {
    Created,
    Updated,
    Unchanged,
    /// There was none and none was needed.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Posted {
    pub action: CommentAction,
    pub id: Option<u64>,
    pub url: Option<String>,
}

/// Finds the comment of `marker` on issue (or pull request) `number` and creates or edits it per `when`. `body` must
/// start with `marker`.
pub async fn upsert(
    api: &Api,
    number: u64,
    marker: &str,
    body: &str,
    when: When<'_>,
) -> Result<Posted, ApiError> {
    debug_assert!(body.starts_with(marker));
    let found = find_on(api, number, marker).await?;
    match decide(found.as_ref(), body, when) {
        CommentStep::Nothing(id) => Ok(Posted {
            action: if id.is_some() {
                CommentAction::Unchanged
            } else {
                CommentAction::None
            },
            id,
            url: found.and_then(|c| c.html_url),
        }),
        CommentStep::Create => {
            let c: IssueComment = api
                .post(
                    &format!("comment on pull request #{number}"),
                    &api.route(&format!("issues/{number}/comments")),
                    &json!({ "body": body }),
                )
                .await?;
            Ok(Posted {
                action: CommentAction::Created,
                id: Some(c.id),
                url: c.html_url,
            })
        }
        CommentStep::Update(id) => {
            let c: IssueComment = api
                .patch(
                    &format!("edit comment {id} on pull request #{number}"),
                    &api.route(&format!("issues/comments/{id}")),
                    &json!({ "body": body }),
                )
                .await?;
            Ok(Posted {
                action: CommentAction::Updated,
                id: Some(c.id),
                url: c.html_url,
            })
        }
    }
}

async fn find_on(api: &Api, number: u64, marker: &str) -> Result<Option<IssueComment>, ApiError> {
    for page in 1..=MAX_PAGES {
        let comments: Vec<IssueComment> = api
            .get(
                &format!("list comments of pull request #{number}"),
                &api.route(&format!(
                    "issues/{number}/comments?per_page={PER_PAGE}&page={page}"
                )),
            )
            .await?;
        if let Some(c) = find(&comments, marker) {
            return Ok(Some(c.clone()));
        }
        if comments.len() < PER_PAGE {
            break;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(id: u64, body: &str) -> IssueComment {
        IssueComment {
            id,
            body: body.into(),
            html_url: None,
            user: None,
        }
    }

    #[test]
    fn the_marker_must_start_the_comment() {
        let m = marker("review");
        assert_eq!(m, "<!-- deploy-action:preview:review -->");
        let comments = [
            comment(1, "looks good"),
            comment(2, &format!("> {m}\n> quoted")),
            comment(3, &format!("{m}\nours")),
            comment(4, &format!("{m}\na second one")),
        ];
        assert_eq!(find(&comments, &m).map(|c| c.id), Some(3));
        assert_eq!(find(&comments, &marker("qa")).map(|c| c.id), None);
    }

    #[test]
    fn decisions() {
        let up = comment(7, "<!-- m -->\nup at v1");
        let down = comment(7, "<!-- m -->\ntorn down <!-- down -->");
        let only = When::OnlyExisting {
            unless: "<!-- down -->",
        };
        let cases: &[(Option<&IssueComment>, &str, When, CommentStep)] = &[
            (None, "<!-- m -->\nup", When::Always, CommentStep::Create),
            (
                Some(&up),
                "<!-- m -->\nup at v2",
                When::Always,
                CommentStep::Update(7),
            ),
            (
                Some(&up),
                "<!-- m -->\nup at v1",
                When::Always,
                CommentStep::Nothing(Some(7)),
            ),
            (
                None,
                "<!-- m -->\ntorn down",
                only,
                CommentStep::Nothing(None),
            ),
            (
                Some(&up),
                "<!-- m -->\ntorn down <!-- down -->",
                only,
                CommentStep::Update(7),
            ),
            (
                Some(&down),
                "<!-- m -->\ntorn down again <!-- down -->",
                only,
                CommentStep::Nothing(Some(7)),
            ),
            // Brought up again after a teardown: the same comment says so.
            (
                Some(&down),
                "<!-- m -->\nup at v3",
                When::Always,
                CommentStep::Update(7),
            ),
        ];
        for (found, body, when, want) in cases {
            assert_eq!(
                &decide(*found, body, *when),
                want,
                "{found:?} {body} {when:?}"
            );
        }
    }
}
