//! The CloudWatch Logs calls the phases share.

use aws_sdk_cloudwatchlogs::Client;

use super::{AwsError, AwsResultExt};

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
