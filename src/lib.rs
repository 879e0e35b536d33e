//! deploy-action: take an ECS + RDS backend through a release one safe phase at a time.
//!
//! `main` parses inputs and dispatches; each phase lives in [`phases`] with a request, one async `run` and a
//! serialisable outcome, run inside the per-run [`wrapper`] (gates, GitHub deployment record, summary, webhook).
//! What phases share is in [`domain`]; AWS calls live in [`aws`], the one bounded poller in [`wait`], the GitHub API
//! and runner I/O in [`github`].

pub mod aws;
pub mod config;
pub mod domain;
pub mod error;
pub mod files;
pub mod github;
pub mod inputs;
pub mod log;
pub mod phases;
pub mod tags;
pub mod text;
pub mod version;
pub mod wait;
pub mod wrapper;
