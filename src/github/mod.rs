//! The GitHub side: runner I/O (outputs, summary, masks, groups, annotations), the REST API (deployments, compare, PR comments),
//! the deployment wrapper around mutating phases, summaries and the webhook notification.

pub mod api;
pub mod changelog;
pub mod comments;
pub mod deployments;
pub mod notify;
pub mod runner;
pub mod summary;
