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
use crate::wait::{Backoff, Poller};

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
}
