//! One module per phase: a `Request`, one `run` function, a serialisable outcome.

pub mod check_config;
pub mod deploy;
pub mod iam_policy;
pub mod init;
pub mod migrate;
pub mod preview;
pub mod restore;
pub mod rollback;
pub mod run;
pub mod snapshot;
pub mod state;
pub mod status;

pub use crate::domain::Ctx;

/// What the per-run wrapper records a run under, read from the request the phase already parsed: inputs are parsed
/// once per run.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The environment the run is recorded for (a review app: its own transient environment).
    pub environment: crate::config::Environment,
    /// The version as given; `None` without one, or for `from:<environment>` (the phase resolves it later).
    pub version: Option<String>,
    /// A review app's teardown: no record of its own; the environment's deployments are marked inactive at the end.
    pub teardown: bool,
}

impl Subject {
    pub fn new(
        common: &crate::inputs::Common,
        version: Option<&crate::version::Version>,
    ) -> Subject {
        Subject {
            environment: common.environment.clone(),
            version: version.map(ToString::to_string),
            teardown: false,
        }
    }
}

/// A phase's request tells the wrapper what the run is recorded under.
pub trait Recorded {
    fn subject(&self, common: &crate::inputs::Common) -> Subject;
}
