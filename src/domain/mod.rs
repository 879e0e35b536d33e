//! What a release is made of, below the phases and above the AWS calls: observing an environment and deriving its
//! state (environment), converging it, building revisions, maintenance mode, roll-outs, one-off tasks,
//! promotion, the quiet-traffic wait, the names of a database restore and the versions an environment knows. Nothing here imports a phase.

pub mod autoscaling;
pub mod converge;
mod ctx;
pub mod db_history;
pub mod drain;
pub mod environment;
pub mod maintenance;
pub mod one_off;
pub mod preflight;
pub mod promote;
pub mod restore;
pub mod retention;
pub mod revision;
pub mod revision_diff;
pub mod rollout;
pub mod state_now;
pub mod task;
pub mod versions;

pub use ctx::Ctx;
