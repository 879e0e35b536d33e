//! The SIGINT harness: hold one AWS call in the local AWS (a latency fault), send SIGINT to the running binary while
//! it is held, so the signal lands at a known step boundary, and wait for the exit. "After the signal" is read from
//! the call log's sequence numbers: a call already sent when the signal came is recorded when it ends, so a held
//! call may follow the signal there.

use std::time::Duration;

use serde_json::Value;

use super::{RunResult, TestContext};

/// One AWS call the local AWS recorded: (sequence number, service, operation).
pub type Call = (u64, String, String);

pub async fn calls(ctx: &TestContext) -> Vec<Call> {
    ctx.get("/_test/calls")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["seq"].as_u64().unwrap(),
                c["service"].as_str().unwrap_or("").to_string(),
                c["operation"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The mutating calls recorded after `seq`, as `service:Operation`.
pub fn mutating_after(calls: &[Call], seq: u64) -> Vec<String> {
    calls
        .iter()
        .filter(|(n, _, op)| *n > seq && crate::support::is_mutating(op))
        .map(|(_, s, op)| format!("{s}:{op}"))
        .collect()
}

/// Polls until `ready` holds on the local AWS, then sends SIGINT; returns the last call sequence number recorded
/// before the signal.
pub async fn sigint_when<F>(
    ctx: &TestContext,
    child: &tokio::process::Child,
    what: &str,
    ready: F,
) -> u64
where
    F: Fn(&[Call], &Value) -> bool,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen = calls(ctx).await;
        let faults = ctx.get("/_test/faults").await;
        if ready(&seen, &faults) {
            let last = seen.iter().map(|c| c.0).max().unwrap_or(0);
            let pid = child.id().expect("deploy-action still running").to_string();
            let sent = std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap();
            assert!(sent.success());
            return last;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn finish(child: tokio::process::Child) -> RunResult {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("deploy-action did not finish within 120 s")
        .unwrap();
    RunResult {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        outputs: Default::default(),
        summary: String::new(),
    }
}

pub async fn clear_faults(ctx: &TestContext) {
    let r = ctx
        .http
        .delete(format!("{}/_test/faults", ctx.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

/// Has the latency fault on `operation` taken hold of a call (that call is held now)?
pub fn held(faults: &Value, operation: &str) -> bool {
    faults
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["operation"] == operation && f["hits"].as_u64() > Some(0))
}

