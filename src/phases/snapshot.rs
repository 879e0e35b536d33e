//! Phase `snapshot`: a manual snapshot of the environment's database.
//!
//! Not built yet: `run` refuses with a usage error before any AWS call.

use serde::Serialize;

use super::Ctx;
use crate::error::UsageError;
use crate::github::runner::Outcome;
use crate::inputs::{Common, Invocation};

#[derive(Debug, Clone)]
pub struct Request {
    pub common: Common,
}

impl Request {
    pub fn from_invocation(inv: &Invocation, common: &Common) -> Result<Request, UsageError> {
        let _ = inv;
        Err(UsageError::new("input `phase`: snapshot is not available in this build yet; see the README for the phases that are"))
            .map(|()| Request { common: common.clone() })
    }
}

pub struct Clients {}

impl Clients {
    pub fn new(_sdk: &aws_config::SdkConfig) -> Clients {
        Clients {}
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotOutcome {}

pub async fn run(_req: &Request, _clients: &Clients, _ctx: &Ctx) -> anyhow::Result<SnapshotOutcome> {
    Err(UsageError::new("input `phase`: snapshot is not available in this build yet").into())
}

impl Outcome for SnapshotOutcome {
    fn ok(&self) -> bool {
        false
    }
    fn outputs(&self) -> Vec<(&'static str, String)> {
        vec![]
    }
    fn summary(&self) -> String {
        String::new()
    }
    fn text(&self) -> String {
        String::new()
    }
}
