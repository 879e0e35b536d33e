//! The GitHub REST calls we make, through octocrab, with our own bounded retry.
//!
//! Requests go through octocrab's raw `_get`/`_post` with relative routes (so its base URI, `GITHUB_API_URL` or a
//! test server, is applied and the token is sent), because the retry decision needs the response headers
//! (`Retry-After`, `x-ratelimit-remaining`) that octocrab's typed errors do not carry. Bodies are parsed into the
//! small types below, which hold only the fields we read.

use std::time::Duration;

use octocrab::service::middleware::retry::RetryConfig;
use octocrab::Octocrab;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// How often and how long a call is retried on 5xx, 429 and secondary rate limits (403 with `Retry-After` or
/// `x-ratelimit-remaining: 0`), and on transport errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub tries: u32,
    /// Wait before the second attempt when GitHub names none; doubles after each attempt.
    pub first: Duration,
    /// No wait is longer than this, whatever `Retry-After` says.
    pub cap: Duration,
}

impl Retry {
    pub const DEFAULT: Retry = Retry {
        tries: 3,
        first: Duration::from_secs(1),
        cap: Duration::from_secs(5),
    };

    fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        retry_after
            .unwrap_or_else(|| self.first * 2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.cap)
    }
}

/// What one response means for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Done,
    /// Try again, after the server's `Retry-After` if it gave one.
    Retry(Option<Duration>),
    Fail,
}

/// The retry decision from the status and the two headers GitHub uses for rate limits.
pub fn disposition(
    status: u16,
    retry_after: Option<&str>,
    ratelimit_remaining: Option<&str>,
) -> Disposition {
    let after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match status {
        200..=299 => Disposition::Done,
        429 | 500..=599 => Disposition::Retry(after),
        403 if retry_after.is_some() || ratelimit_remaining.map(str::trim) == Some("0") => {
            Disposition::Retry(after)
        }
        _ => Disposition::Fail,
    }
}

/// A call that failed after its retries: what we were doing, the HTTP status (none for transport errors) and
/// GitHub's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("GitHub API: {what}: {}{message}", self.status.map(|s| format!("{s} ")).unwrap_or_default())]
pub struct ApiError {
    pub what: String,
    pub status: Option<u16>,
    pub message: String,
}

impl ApiError {
    /// The token is missing a permission, is invalid, or cannot see the repository.
    pub fn is_permission(&self) -> bool {
        matches!(self.status, Some(401 | 403 | 404))
    }

    /// GitHub rejected the request's content (for a deployment: a ref it does not know).
    pub fn is_unprocessable(&self) -> bool {
        self.status == Some(422)
    }
}

/// One repository's API.
#[derive(Debug, Clone)]
pub struct Api {
    client: Octocrab,
    pub owner: String,
    pub repo: String,
    pub retry: Retry,
    /// The token, only to take it out of error messages (a server may repeat it).
    token: Redacted,
}

/// A secret kept for redaction: its Debug form is `***`.
#[derive(Clone)]
struct Redacted(String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Api {
    /// `api_url` is `GITHUB_API_URL` (or `https://api.github.com`), `repository` is `owner/name`.
    pub fn new(api_url: &str, token: &str, repository: &str) -> anyhow::Result<Api> {
        let (owner, repo) = repository
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "GITHUB_REPOSITORY {repository:?} is not owner/name; run on a GitHub runner or set it so"
                )
            })?;
        let client = Octocrab::builder()
            .base_uri(api_url.trim_end_matches('/'))
            .map_err(|e| anyhow::anyhow!("GITHUB_API_URL {api_url:?} is not a URL: {e}"))?
            .personal_token(token.to_string())
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(20)))
            .build()
            .map_err(|e| anyhow::anyhow!("GitHub client: {e}"))?;
        Ok(Api {
            client,
            owner: owner.to_string(),
            repo: repo.to_string(),
            retry: Retry::DEFAULT,
            token: Redacted(token.to_string()),
        })
    }

    /// `/repos/{owner}/{repo}/{tail}`.
    pub fn route(&self, tail: &str) -> String {
        format!("/repos/{}/{}/{tail}", self.owner, self.repo)
    }

    pub async fn get<T: DeserializeOwned>(&self, what: &str, route: &str) -> Result<T, ApiError> {
        let body = self.send(what, route, Verb::Get).await?;
        parse(what, &body)
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        what: &str,
        route: &str,
        body: &Value,
    ) -> Result<T, ApiError> {
        let body = self.send(what, route, Verb::Post(body)).await?;
        parse(what, &body)
    }

    pub async fn patch<T: DeserializeOwned>(
        &self,
        what: &str,
        route: &str,
        body: &Value,
    ) -> Result<T, ApiError> {
        let body = self.send(what, route, Verb::Patch(body)).await?;
        parse(what, &body)
    }

    /// One request, retried per [`Retry`]; the body of the first success.
    async fn send(&self, what: &str, route: &str, verb: Verb<'_>) -> Result<String, ApiError> {
        // GitHub's message is anyone's text: bounded, one line, without the token or URLs' secrets.
        let err = |status: Option<u16>, message: String| ApiError {
            what: what.to_string(),
            status,
            message: crate::text::redact(
                &crate::text::shorten(&message, 200),
                &[self.token.0.as_str()],
            ),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = match verb {
                Verb::Get => self.client._get(route).await,
                Verb::Post(b) => self.client._post(route, Some(b)).await,
                Verb::Patch(b) => self.client._patch(route, Some(b)).await,
            };
            let (disposition, failure) = match res {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let header = |name: &str| {
                        res.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let d = disposition(
                        status,
                        header("retry-after").as_deref(),
                        header("x-ratelimit-remaining").as_deref(),
                    );
                    let text = self
                        .client
                        .body_to_string(res)
                        .await
                        .map_err(|e| err(Some(status), format!("reading the response: {e}")))?;
                    if d == Disposition::Done {
                        return Ok(text);
                    }
                    (d, err(Some(status), github_message(&text)))
                }
                Err(e) => (Disposition::Retry(None), err(None, transport_message(&e))),
            };
            match disposition {
                Disposition::Retry(after) if attempt < self.retry.tries => {
                    let wait = self.retry.wait(attempt, after);
                    tracing::warn!(
                        "{failure}; retrying in {} (attempt {} of {})",
                        crate::wait::human(wait),
                        attempt + 1,
                        self.retry.tries
                    );
                    // A bounded backoff between attempts (at most `cap`), not a wait for a state.
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(failure),
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Verb<'a> {
    Get,
    Post(&'a Value),
    Patch(&'a Value),
}

fn parse<T: DeserializeOwned>(what: &str, body: &str) -> Result<T, ApiError> {
    serde_json::from_str(body).map_err(|e| ApiError {
        what: what.to_string(),
        status: None,
        message: format!("unexpected response ({e})"),
    })
}

/// GitHub's `message` from an error body, else the body's first line (bounded).
fn github_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct Body {
        message: Option<String>,
    }
    let msg = serde_json::from_str::<Body>(body)
        .ok()
        .and_then(|b| b.message)
        .unwrap_or_else(|| body.lines().next().unwrap_or_default().to_string());
    let msg: String = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    if msg.chars().count() > 200 {
        msg.chars().take(200).collect::<String>() + "…"
    } else {
        msg
    }
}

/// A transport error as one line (octocrab's Display of the innermost cause).
fn transport_message(e: &octocrab::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    format!("request failed: {msg}")
}

/// `GET /repos/{o}/{r}/deployments` item (the fields we read).
#[derive(Debug, Clone, Deserialize)]
pub struct Deployment {
    pub id: u64,
    #[serde(rename = "ref", default)]
    pub git_ref: String,
    #[serde(default)]
    pub sha: String,
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub environment: String,
    /// An object for deployments made with one, `""` or absent otherwise.
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub created_at: String,
    pub creator: Option<Login>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    pub login: String,
}

/// `GET …/deployments/{id}/statuses` item.
#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentStatus {
    pub id: u64,
    pub state: String,
    pub log_url: Option<String>,
    pub target_url: Option<String>,
    pub environment_url: Option<String>,
}

/// `GET /repos/{o}/{r}/issues/{n}/comments` item (the fields we read).
#[derive(Debug, Clone, Deserialize)]
pub struct IssueComment {
    pub id: u64,
    #[serde(default)]
    pub body: String,
    pub html_url: Option<String>,
    pub user: Option<Login>,
}

/// `GET /repos/{o}/{r}/actions/runs/{id}` (the field we read).
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowRun {
    pub status: Option<String>,
}

/// `GET /repos/{o}/{r}/commits/{ref}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Commit {
    pub sha: String,
}

/// `GET /repos/{o}/{r}/compare/{base}...{head}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Comparison {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub ahead_by: u64,
    #[serde(default)]
    pub behind_by: u64,
    #[serde(default)]
    pub total_commits: u64,
    pub html_url: Option<String>,
    #[serde(default)]
    pub commits: Vec<CompareCommit>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CompareCommit {
    pub sha: String,
    pub commit: CommitDetail,
    pub author: Option<Login>,
    pub html_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommitDetail {
    pub message: String,
    pub author: Option<GitAuthor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitAuthor {
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_decisions() {
        use Disposition::*;
        let s = |n| Some(Duration::from_secs(n));
        let cases: &[(u16, Option<&str>, Option<&str>, Disposition)] = &[
            (200, None, None, Done),
            (201, None, None, Done),
            (500, None, None, Retry(None)),
            (502, Some("2"), None, Retry(s(2))),
            (503, Some("soon"), None, Retry(None)),
            (429, Some("7"), None, Retry(s(7))),
            (429, None, None, Retry(None)),
            // Secondary rate limit: 403 with Retry-After or no primary quota left.
            (403, Some("60"), None, Retry(s(60))),
            (403, None, Some("0"), Retry(None)),
            // A plain 403 is a permission problem: retrying cannot help.
            (403, None, Some("4999"), Fail),
            (403, None, None, Fail),
            (401, None, None, Fail),
            (404, None, None, Fail),
            (422, None, None, Fail),
            (409, None, None, Fail),
        ];
        for (status, ra, rem, want) in cases {
            assert_eq!(
                disposition(*status, *ra, *rem),
                *want,
                "{status} {ra:?} {rem:?}"
            );
        }
    }

    #[test]
    fn waits_double_and_are_capped() {
        let r = Retry {
            tries: 5,
            first: Duration::from_secs(1),
            cap: Duration::from_secs(5),
        };
        assert_eq!(r.wait(1, None), Duration::from_secs(1));
        assert_eq!(r.wait(2, None), Duration::from_secs(2));
        assert_eq!(r.wait(4, None), Duration::from_secs(5));
        assert_eq!(
            r.wait(1, Some(Duration::from_secs(60))),
            Duration::from_secs(5)
        );
        assert_eq!(
            r.wait(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn error_messages_are_one_bounded_line() {
        assert_eq!(
            github_message(
                r#"{"message":"Resource not accessible\nby integration","documentation_url":"x"}"#
            ),
            "Resource not accessible by integration"
        );
        assert_eq!(
            github_message("<html>bad gateway</html>\nmore"),
            "<html>bad gateway</html>"
        );
        assert!(github_message(&"x".repeat(500)).chars().count() <= 201);
        let e = ApiError {
            what: "create a deployment for prod".into(),
            status: Some(403),
            message: "Resource not accessible by integration".into(),
        };
        assert_eq!(
            e.to_string(),
            "GitHub API: create a deployment for prod: 403 Resource not accessible by integration"
        );
        assert!(e.is_permission());
    }
}
