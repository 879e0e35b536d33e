//! What a release is made of, below the phases and above the AWS calls: observing an environment and deriving its
//! state, maintenance mode, roll-outs, one-off tasks,
//! promotion and the quiet-traffic wait. Nothing here imports a phase.

pub mod converge;
mod ctx;
pub mod drain;
pub mod maintenance;
pub mod observe;
pub mod one_off;
pub mod promote;
pub mod revision;
pub mod rollout;
pub mod task;

pub use ctx::Ctx;
