//! What a release is made of, below the phases and above the AWS calls: maintenance mode, roll-outs, one-off tasks,
//! promotion, the quiet-traffic wait and the names of a database restore. Nothing here imports a phase.

pub mod drain;
pub mod environment;
pub mod maintenance;
pub mod promote;
pub mod restore;
pub mod revision_diff;
pub mod rollout;
pub mod state_now;
pub mod task;
