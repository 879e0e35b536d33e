//! The run context every phase and the domain steps share.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::github::runner::Runner;
use crate::inputs::GithubEnv;
use crate::wait::{Backoff, Pace, Poller};

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
}
