//! The CloudWatch Logs calls the phases share.

use aws_sdk_cloudwatchlogs::Client;

use super::{AwsError, AwsResultExt};

/// One log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// When the line was written, in milliseconds since the epoch.
    pub timestamp: Option<i64>,
    pub message: String,
}

/// One GetLogEvents page, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsPage {
    pub events: Vec<LogEvent>,
    /// Pass it back to read on; it equals the token sent once there is nothing newer.
    pub next_forward_token: Option<String>,
}

/// The events of a stream after `token` (from the head when `None`). `None` when the stream (or its group) does
/// not exist yet: ECS creates it when the container starts.
pub async fn events_after(
    logs: &Client,
    group: &str,
    stream: &str,
    token: Option<&str>,
) -> Result<Option<EventsPage>, AwsError> {
    let out = logs
        .get_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .start_from_head(true)
        .set_next_token(token.map(str::to_string))
        .send()
        .await
        .aws("CloudWatch Logs GetLogEvents", format!("{group} {stream}"));
    match out {
        Ok(out) => Ok(Some(EventsPage {
            events: out
                .events()
                .iter()
                .map(|e| LogEvent {
                    timestamp: e.timestamp(),
                    message: e.message().unwrap_or_default().to_string(),
                })
                .collect(),
            next_forward_token: out.next_forward_token().map(str::to_string),
        })),
        Err(e) if e.is("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last `n` lines of a log stream, oldest first. A stream that does not exist (the container never started)
/// gives no lines.
pub async fn last_lines(
    logs: &Client,
    group: &str,
    stream: &str,
    n: i32,
) -> Result<Vec<String>, AwsError> {
    let res = logs
        .get_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .start_from_head(false)
        .limit(n)
        .send()
        .await
        .aws("CloudWatch Logs GetLogEvents", format!("{group} {stream}"));
    match res {
        Ok(out) => {
            let lines: Vec<String> = out
                .events()
                .iter()
                .filter_map(|e| e.message())
                .map(|m| m.trim_end().to_string())
                .collect();
            let skip = lines.len().saturating_sub(n.max(0) as usize);
            Ok(lines.into_iter().skip(skip).collect())
        }
        Err(e) if e.is("ResourceNotFoundException") => Ok(vec![]),
        Err(e) => Err(e),
    }
}

/// Whether a log group of exactly this name exists (DescribeLogGroups by prefix, first page of 50).
pub async fn log_group_exists(logs: &Client, group: &str) -> Result<bool, AwsError> {
    let out = logs
        .describe_log_groups()
        .log_group_name_prefix(group)
        .limit(50)
        .send()
        .await
        .aws("CloudWatch Logs DescribeLogGroups", group)?;
    Ok(out
        .log_groups()
        .iter()
        .any(|g| g.log_group_name() == Some(group)))
}
