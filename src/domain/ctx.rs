//! The run context every phase and the domain steps share.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::github::runner::Runner;
use crate::inputs::GithubEnv;
use crate::wait::{Backoff, Pace, Poller, WaitError};

/// What every phase shares besides its clients: where to report, when to give up, whether to stop.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub runner: Runner,
    pub github: GithubEnv,
    pub cancel: CancellationToken,
    /// The phase's overall deadline (`timeout-minutes` from the start).
    pub deadline: Instant,
    pub dry_run: bool,
    /// How often every wait of the run looks again ([`Pace::AWS`] but against the local AWS).
    pub pace: Pace,
}

impl Ctx {
    /// A wait until the run's deadline, at the run's pace.
    pub fn poller(&self, what: impl Into<String>, backoff: Backoff) -> Poller {
        Poller::new(
            what,
            self.pace.of(backoff),
            self.deadline,
            self.cancel.clone(),
        )
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
