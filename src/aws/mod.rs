//! AWS clients and the error handling every call shares.
//!
//! Clients come from the standard credential chain (env, web identity / OIDC from
//! aws-actions/configure-aws-credentials, profiles, SSO, IMDS/ECS) and honour `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_<SERVICE>`: there is no endpoint switch in this code. Retries are the SDK's standard mode.

pub mod autoscaling;
pub mod cloudwatch;
pub mod ecr;
pub mod ecs;
pub mod elb;
pub mod logs;
pub mod rds;
pub mod ssm;

use std::fmt;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Default attempts per call (first try included) unless `AWS_MAX_ATTEMPTS` says otherwise.
const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The shared SDK configuration for one region.
pub async fn sdk_config(region: &str) -> SdkConfig {
    let attempts = std::env::var("AWS_MAX_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(DEFAULT_MAX_ATTEMPTS);
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(attempts))
        .load()
        .await
}

/// A failed AWS call, named by operation and resource, with the modeled error code to branch on.
#[derive(Debug, Clone)]
pub struct AwsError {
    pub operation: &'static str,
    pub resource: String,
    /// The modeled error code (`ServiceNotFoundException`, `DBSnapshotNotFound`, ...), when AWS sent one.
    pub code: Option<String>,
    pub message: String,
    /// Throttling, 5xx, timeouts and connection failures (after the SDK's own retries).
    pub transient: bool,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(
                f,
                "{} {}: {code}: {}",
                self.operation, self.resource, self.message
            ),
            None => write!(f, "{} {}: {}", self.operation, self.resource, self.message),
        }
    }
}

impl std::error::Error for AwsError {}

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

impl AwsError {
    pub fn from_sdk<E>(
        operation: &'static str,
        resource: impl Into<String>,
        err: SdkError<E, HttpResponse>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let resource = resource.into();
        match &err {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let code = ctx.err().code().map(str::to_string);
                let transient =
                    status >= 500 || code.as_deref().is_some_and(|c| THROTTLING.contains(&c));
                let message = ctx
                    .err()
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("HTTP {status}"));
                AwsError {
                    operation,
                    resource,
                    code,
                    message,
                    transient,
                }
            }
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => AwsError {
                operation,
                resource,
                code: None,
                message: format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
                transient: true,
            },
            _ => AwsError {
                operation,
                resource,
                code: None,
                message: format!(
                    "{}",
                    aws_smithy_types::error::display::DisplayErrorContext(&err)
                ),
                transient: false,
            },
        }
    }

    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// `.aws("DescribeServices", "cluster/core")?` on any SDK result: turns the error into an [`AwsError`].
pub trait AwsResultExt<T> {
    fn aws(self, operation: &'static str, resource: impl Into<String>) -> Result<T, AwsError>;
}

impl<T, E> AwsResultExt<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn aws(self, operation: &'static str, resource: impl Into<String>) -> Result<T, AwsError> {
        self.map_err(|e| AwsError::from_sdk(operation, resource, e))
    }
}

/// Whether an error (anywhere in its chain) is a transient AWS failure worth another poll.
pub fn is_transient(err: &anyhow::Error) -> bool {
    err.chain()
        .any(|e| e.downcast_ref::<AwsError>().is_some_and(|a| a.transient))
}

/// The modeled AWS error code anywhere in the chain.
pub fn error_code(err: &anyhow::Error) -> Option<&str> {
    err.chain()
        .find_map(|e| e.downcast_ref::<AwsError>().and_then(|a| a.code.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(operation: &'static str, code: &str) -> AwsError {
        AwsError {
            operation,
            resource: "r".into(),
            code: Some(code.into()),
            message: "m".into(),
            transient: false,
        }
    }

    #[test]
    fn named_error_predicates() {
        type Case = (fn(&AwsError) -> bool, &'static str, &'static str, bool);
        let cases: &[Case] = &[
            (
                ecs::is_family_unknown,
                "ECS DescribeTaskDefinition",
                "ClientException",
                true,
            ),
            (
                ecs::is_family_unknown,
                "ECS DescribeServices",
                "ClientException",
                false,
            ),
            (
                ecs::is_family_unknown,
                "ECS DescribeTaskDefinition",
                "AccessDeniedException",
                false,
            ),
            (
                elb::is_priority_in_use,
                "ELB CreateRule",
                "PriorityInUse",
                true,
            ),
            (
                elb::is_priority_in_use,
                "ELB CreateRule",
                "TooManyRules",
                false,
            ),
            (
                elb::is_listener_not_found,
                "ELB DescribeRules",
                "ListenerNotFound",
                true,
            ),
            (
                rds::is_snapshot_exists,
                "RDS CreateDBSnapshot",
                "DBSnapshotAlreadyExists",
                true,
            ),
            (
                rds::is_snapshot_exists,
                "RDS CreateDBClusterSnapshot",
                "DBClusterSnapshotAlreadyExistsFault",
                true,
            ),
            (
                rds::is_snapshot_exists,
                "RDS CreateDBSnapshot",
                "DBInstanceNotFound",
                false,
            ),
            (
                rds::is_db_not_found,
                "RDS CreateDBSnapshot",
                "DBInstanceNotFound",
                true,
            ),
            (
                rds::is_db_not_found,
                "RDS CreateDBClusterSnapshot",
                "DBClusterNotFoundFault",
                true,
            ),
            (
                rds::is_snapshot_quota_exceeded,
                "RDS CreateDBSnapshot",
                "SnapshotQuotaExceeded",
                true,
            ),
            (
                rds::is_invalid_state,
                "RDS StopDBInstance",
                "InvalidDBInstanceState",
                true,
            ),
            (
                rds::is_invalid_state,
                "RDS StopDBCluster",
                "InvalidDBClusterStateFault",
                true,
            ),
        ];
        for (predicate, operation, code, want) in cases {
            assert_eq!(
                predicate(&err(operation, code)),
                *want,
                "{operation} {code}"
            );
        }
    }
}
