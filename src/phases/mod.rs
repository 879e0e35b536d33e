//! One module per phase: a `Request`, one `run` function, a serialisable outcome.

pub mod check_config;
pub mod deploy;
pub mod iam_policy;
pub mod migrate;
pub mod preview;
pub mod rollback;
pub mod run;
pub mod snapshot;
pub mod state;
pub mod status;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::github::runner::Runner;
use crate::inputs::GithubEnv;
use crate::wait::{Backoff, Poller, WaitError};

/// What every phase shares besides its clients: where to report, when to give up, whether to stop.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub runner: Runner,
    pub github: GithubEnv,
    pub cancel: CancellationToken,
    /// The phase's overall deadline (`timeout-minutes` from the start).
    pub deadline: Instant,
    pub dry_run: bool,
}

impl Ctx {
    pub fn poller(&self, what: impl Into<String>, backoff: Backoff) -> Poller {
        Poller::new(what, backoff, self.deadline, self.cancel.clone())
    }

    /// At a step boundary (before the next change): `Err(Cancelled)` once a signal came, so the phase stops before
    /// its next mutating call, leaves what it recorded for the rerun, and the run exits 130. `next` names what is not
    /// started (for the message).
    pub fn stop_if_cancelled(&self, next: &str) -> Result<(), WaitError> {
        if self.cancel.is_cancelled() {
            tracing::warn!("cancelled: stopping before {next}");
            return Err(WaitError::Cancelled {
                what: format!("stopped before {next}"),
                waited: std::time::Duration::ZERO,
                last: "cancelled by a signal; re-run the same phase to finish".into(),
            });
        }
        Ok(())
    }
}
