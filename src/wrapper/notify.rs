//! The optional `webhook-url` notification: one Slack-compatible JSON message (`{"text": "..."}`) with the outcome.
//! Failures only warn, and the URL (a secret) is never logged. Every text from outside (version, environment, error
//! messages with service names, AWS and task text, the freeze override reason, the run URL) goes through
//! [`mrkdwn`], so none of it becomes a Slack link, mention or command (`<!channel>`, `<https://evil|click>`).

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
    /// One line: result, phase, version, environment, duration, run. Every value in it escaped by [`mrkdwn`].
    pub fn text(&self) -> String {
        let (phase, env) = (mrkdwn(&self.phase), mrkdwn(&self.environment));
        let what = match &self.version {
            Some(v) => format!("{phase} {} to {env}", mrkdwn(v)),
            None => format!("{phase} on {env}"),
        };
        let took = crate::wait::human(self.duration);
        let mut s = match &self.ending {
            Ending::Succeeded => format!("✅ {what} succeeded in {took}"),
            Ending::Failed(why) => {
                format!("❌ {what} failed after {took}: {}", mrkdwn(&short(why)))
            }
            Ending::Refused(why) => format!("🚫 {what} refused: {}", mrkdwn(&short(why))),
        };
        if let Some(reason) = &self.freeze_override {
            s.push_str(&format!(" (freeze overridden: {})", mrkdwn(reason)));
        }
        if let Some(url) = &self.run_url {
            s.push_str(&format!(" · {}", mrkdwn(url)));
        }
        s
    }
}

/// Text from outside as Slack shows it literally: `&`, `<` and `>` escaped as `&amp;`, `&lt;` and `&gt;` (Slack's
/// rule for message text; the three characters its links, mentions and commands are made of), nothing else changed.
pub fn mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
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
    fn mrkdwn_escapes_what_slack_reads_as_links_mentions_and_commands() {
        for (hostile, shown) in [
            ("<!channel>", "&lt;!channel&gt;"),
            ("<!here|here>", "&lt;!here|here&gt;"),
            ("<@U0123ABC>", "&lt;@U0123ABC&gt;"),
            ("<#C0123|general>", "&lt;#C0123|general&gt;"),
            (
                "<https://evil.example|click>",
                "&lt;https://evil.example|click&gt;",
            ),
            ("<!subteam^S0123|@oncall>", "&lt;!subteam^S0123|@oncall&gt;"),
            ("<!date^0^{date}|x>", "&lt;!date^0^{date}|x&gt;"),
            // Already escaped text stays literal: shown as typed, not decoded into a `<`.
            ("&lt;!channel&gt;", "&amp;lt;!channel&amp;gt;"),
            ("a && b >> c << d", "a &amp;&amp; b &gt;&gt; c &lt;&lt; d"),
            ("<<!everyone>>", "&lt;&lt;!everyone&gt;&gt;"),
            (
                "plain text, *bold* and `code`",
                "plain text, *bold* and `code`",
            ),
            ("ünïcödé ＜!channel＞", "ünïcödé ＜!channel＞"),
            ("", ""),
        ] {
            let got = mrkdwn(hostile);
            assert_eq!(got, shown, "{hostile:?}");
            assert!(!got.contains(['<', '>']), "{got:?}");
        }
    }

    #[test]
    fn every_outside_value_of_the_message_is_escaped() {
        let hostile = "<!channel> <https://evil.example|click> & more";
        let escaped = "&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; more";
        let m = Message {
            phase: "deploy".into(),
            environment: format!("prod {hostile}"),
            version: Some(format!("v1 {hostile}")),
            ending: Ending::Failed(format!("ECS service core: {hostile}")),
            duration: Duration::from_secs(3),
            run_url: Some("https://github.example/acme/b/actions/runs/1?a=1&b=<2>".into()),
            freeze_override: Some(hostile.into()),
        };
        let text = m.text();
        assert!(!text.contains(['<', '>']), "{text}");
        assert_eq!(text.matches(escaped).count(), 4, "{text}");
        assert!(text.ends_with("runs/1?a=1&amp;b=&lt;2&gt;"), "{text}");
        let mut r = m.clone();
        r.ending = Ending::Refused(format!("freeze gate: {hostile}"));
        assert!(!r.text().contains(['<', '>']), "{}", r.text());
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
