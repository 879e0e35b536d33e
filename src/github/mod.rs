//! The GitHub side: runner I/O (outputs, summary, masks, groups, annotations) and the REST API (deployments, compare,
//! PR comments). The wrapper that records a run as a deployment is [`crate::wrapper`].

pub mod api;
pub mod changelog;
pub mod comments;
pub mod deployments;
pub mod runner;
pub mod summary;
