//! What a release is made of, below the phases and above the AWS calls: maintenance mode, roll-outs, one-off tasks,
//! promotion and the quiet-traffic wait. Nothing here imports a phase.

pub mod drain;
pub mod maintenance;
pub mod promote;
pub mod rollout;
pub mod task;
