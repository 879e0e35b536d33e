//! What a release is made of, below the phases and above the AWS calls: maintenance mode, roll-outs, one-off tasks,
//! promotion and the quiet-traffic wait. Nothing here imports a phase.

pub mod autoscaling;
pub mod drain;
pub mod environment;
pub mod maintenance;
pub mod preflight;
pub mod promote;
pub mod rollout;
pub mod state_now;
pub mod task;
