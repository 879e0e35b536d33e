//! deploy-action: take an ECS + RDS backend through a release one safe phase at a time.
//!
//! `main` parses inputs and dispatches; each phase lives in [`phases`] with a request, one async `run` and a
//! serialisable outcome. AWS calls live in [`aws`], the one bounded poller in [`wait`], runner I/O in [`github`].

pub mod autoscaling;
pub mod aws;
pub mod config;
pub mod drain;
pub mod error;
pub mod gates;
pub mod github;
pub mod iam;
pub mod inputs;
pub mod log;
pub mod maintenance;
pub mod phases;
pub mod preflight;
pub mod promote;
pub mod rollout;
pub mod tags;
pub mod task;
pub mod version;
pub mod wait;
