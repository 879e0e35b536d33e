//! The SIGINT harness: hold one AWS call in the local AWS (a latency fault), send SIGINT to the running binary while
//! it is held, so the signal lands at a known step boundary, and wait for the exit. "After the signal" is read from
//! the call log's sequence numbers: a call already sent when the signal came is recorded when it ends, so a held
//! call may follow the signal there.
//!
//! ```ignore
//! hold_next_call(&ctx, "UpdateService", 3000).await;
//! let child = ctx.base_command().args([...]).spawn().unwrap();
//! let at = sigint_when_held(&ctx, &child, "UpdateService").await;
//! let r = finish(child).await; // crate::support::finish
//! r.assert_code(130);
//! assert_eq!(mutating_after(&calls(&ctx).await, at), ["ecs:UpdateService"]);
//! ```

use std::time::Duration;

use serde_json::{json, Value};

use super::TestContext;

/// Holds the next call of `operation` (any service) for `ms` in the local AWS: a latency fault, taken once.
pub async fn hold_next_call(ctx: &TestContext, operation: &str, ms: u64) {
    ctx.post(
        "/_test/faults",
        json!({"kind": "latency", "operation": operation, "latencyMs": ms, "count": 1}),
    )
    .await;
}

/// One AWS call the local AWS recorded: (sequence number, service, operation).
pub type Call = (u64, String, String);

/// The local AWS's call log since the last reset, with sequence numbers.
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

/// Polls until `ready` holds on the local AWS (its call log and its faults), then sends SIGINT; returns the last call
/// sequence number recorded before the signal. A `ready` that never holds fails the test after a minute: "`what`
/// never happened" (a guard, not a measure of speed).
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
            send_sigint(child);
            return seen.iter().map(|c| c.0).max().unwrap_or(0);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGINT once the call of `operation` held by [`hold_next_call`] (or another latency fault on it) is in flight;
/// returns the last call sequence number recorded before the signal.
pub async fn sigint_when_held(
    ctx: &TestContext,
    child: &tokio::process::Child,
    operation: &str,
) -> u64 {
    let what = format!("a held {operation}");
    sigint_when(ctx, child, &what, |_, faults| held(faults, operation)).await
}

/// Sends SIGINT to the running binary (as the runner does on cancel).
pub fn send_sigint(child: &tokio::process::Child) {
    let pid = child.id().expect("deploy-action still running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -INT {pid}");
}

/// Removes every fault of the local AWS (the rerun after the signal runs unhindered).
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
