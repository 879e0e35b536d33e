//! The SSM Parameter Store calls the phases share. Values are never decrypted and never kept: only names and ARNs.

use aws_sdk_ssm::Client;
use serde::Serialize;

use super::{AwsError, AwsResultExt};

/// A parameter by reference: enough for an ECS `secrets` entry, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParameterRef {
    /// The full parameter name (`/app/stage/DATABASE_URL`).
    pub name: String,
    /// The parameter ARN; ECS `valueFrom` takes it (or the name, in the same region and account).
    pub arn: String,
}

/// Every parameter under `path` (recursively, all pages), by name and ARN. Asked for without decryption; the values
/// in the responses are dropped unread.
pub async fn parameters_by_path(ssm: &Client, path: &str) -> Result<Vec<ParameterRef>, AwsError> {
    let mut pages = ssm
        .get_parameters_by_path()
        .path(path)
        .recursive(true)
        .with_decryption(false)
        .max_results(10)
        .into_paginator()
        .send();
    let mut refs = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.aws("SSM GetParametersByPath", path)?;
        for p in page.parameters() {
            let Some(name) = p.name() else { continue };
            refs.push(ParameterRef {
                name: name.to_string(),
                arn: p.arn().unwrap_or(name).to_string(),
            });
        }
    }
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(refs)
}
