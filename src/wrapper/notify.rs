//! The optional `webhook-url` notification: one Slack-compatible JSON message (`{"text": "..."}`) with the outcome.
//! Failures only warn, and the URL (a secret) is never logged.

use std::time::Duration;

use crate::error::UsageError;

/// How a phase ended, for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Succeeded,
    Failed(String),
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub phase: String,
    pub environment: String,
    pub version: Option<String>,
    pub ending: Ending,
    pub duration: Duration,
    pub run_url: Option<String>,
    pub freeze_override: Option<String>,
}

impl Message {
    /// One line: result, phase, version, environment, duration, run.
    pub fn text(&self) -> String {
        let what = match &self.version {
            Some(v) => format!("{} {v} to {}", self.phase, self.environment),
            None => format!("{} on {}", self.phase, self.environment),
        };
        let took = crate::wait::human(self.duration);
        let mut s = match &self.ending {
            Ending::Succeeded => format!("✅ {what} succeeded in {took}"),
            Ending::Failed(why) => format!("❌ {what} failed after {took}: {}", short(why)),
            Ending::Refused(why) => format!("🚫 {what} refused: {}", short(why)),
        };
        if let Some(reason) = &self.freeze_override {
            s.push_str(&format!(" (freeze overridden: {reason})"));
        }
        if let Some(url) = &self.run_url {
            s.push_str(&format!(" · {url}"));
        }
        s
    }
}

fn short(s: &str) -> String {
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 300 {
        s.chars().take(300).collect::<String>() + "…"
    } else {
        s
    }
}

/// The `webhook-url` input: an http(s) URL. The error never repeats the value (it is a secret).
pub fn validate_url(value: &str) -> Result<String, UsageError> {
    let v = value.trim();
    match reqwest::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Ok(v.to_string()),
        _ => Err(UsageError::new(
            "input `webhook-url`: not an http(s) URL; pass the incoming-webhook URL from a secret, e.g. webhook-url: ${{ secrets.SLACK_WEBHOOK_URL }}",
        )),
    }
}

/// POSTs `{"text": ...}`. The error names the HTTP status or the transport failure, never the URL.
pub async fn post(url: &str, text: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.without_url().to_string())?;
    let res = client
        .post(url)
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", res.status()))
    }
}

/// Posts the message if a webhook is configured; a failure is a warning that leaves the outcome alone.
pub async fn send(url: Option<&str>, message: &Message) {
    let Some(url) = url else { return };
    match post(url, &message.text()).await {
        Ok(()) => tracing::info!("notification sent to the webhook"),
        Err(e) => tracing::warn!(
            "could not post the notification to webhook-url: {e}; the outcome is unchanged"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ending: Ending) -> Message {
        Message {
            phase: "deploy".into(),
            environment: "prod".into(),
            version: Some("v1.2.3".into()),
            ending,
            duration: Duration::from_secs(252),
            run_url: Some("https://github.com/acme/backend/actions/runs/4242".into()),
            freeze_override: None,
        }
    }

    #[test]
    fn message_text() {
        assert_eq!(
            msg(Ending::Succeeded).text(),
            "✅ deploy v1.2.3 to prod succeeded in 4m 12s · https://github.com/acme/backend/actions/runs/4242"
        );
        assert_eq!(
            msg(Ending::Failed("ECS service core\ndid not complete".into())).text(),
            "❌ deploy v1.2.3 to prod failed after 4m 12s: ECS service core did not complete · https://github.com/acme/backend/actions/runs/4242"
        );
        let mut m = msg(Ending::Refused("freeze gate: prod is frozen".into()));
        m.version = None;
        m.phase = "state".into();
        m.run_url = None;
        m.freeze_override = None;
        assert_eq!(
            m.text(),
            "🚫 state on prod refused: freeze gate: prod is frozen"
        );
        let mut m = msg(Ending::Succeeded);
        m.freeze_override = Some("INC-42 hotfix".into());
        assert!(m
            .text()
            .contains("(freeze overridden: INC-42 hotfix) · https://"));
    }

    #[test]
    fn url_validation_never_echoes_the_value() {
        assert!(validate_url("https://hooks.slack.com/services/T/B/x").is_ok());
        assert!(validate_url("http://127.0.0.1:9/hook").is_ok());
        for bad in [
            "hooks.slack.com/secret-part",
            "ftp://x/secret-part",
            "https://",
            "secret-part",
        ] {
            let e = validate_url(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("input `webhook-url`") && !e.contains("secret-part"),
                "{e}"
            );
        }
    }
}
