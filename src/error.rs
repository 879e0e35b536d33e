//! Errors a caller branches on. Everything else is `anyhow` with context.

/// Bad input or configuration: exit code 2, one line naming the input or key and the fix, and no AWS call made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> Self {
        // One line, always: callers may embed multi-line library messages.
        let msg: String = msg.into();
        UsageError(msg.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// Exit codes shared by both front ends.
pub mod exit {
    pub const OK: u8 = 0;
    /// The phase ran and failed (AWS said no, a roll-out failed, a migration exited non-zero, a wait timed out).
    pub const FAILED: u8 = 1;
    /// Bad input or configuration; nothing was changed.
    pub const USAGE: u8 = 2;
    /// Cancelled by SIGINT/SIGTERM; what was left is in the log and the summary.
    pub const CANCELLED: u8 = 130;
}
