//! The one integration-test binary: every test runs the real binary (or library code) against the local AWS.

mod support;

mod badinput;
mod container;
mod deploy;
mod foundation;
mod github;
mod hostile;
mod iam;
mod init;
mod migrate;
mod plan;
mod preflight;
mod preview;
mod restore;
mod run;
mod safety;
mod secrets;
mod shapes;
mod signals;
mod snapshot;
mod state;
mod state_now;
