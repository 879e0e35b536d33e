//! The CloudWatch metric reads the waits share (traffic drain, database settle).

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_sdk_cloudwatch::Client;
use aws_smithy_types::DateTime;

use super::{AwsError, AwsResultExt};

/// One metric with its dimensions and the statistic to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricQuery {
    pub namespace: &'static str,
    pub metric: &'static str,
    pub dimensions: Vec<(&'static str, String)>,
    pub statistic: MetricStatistic,
    pub period_seconds: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricStatistic {
    Sum,
    Average,
}

/// A datapoint: start of its period (seconds since the epoch) and the statistic's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Datapoint {
    pub at: i64,
    pub value: f64,
}

impl MetricQuery {
    /// `TargetGroup=targetgroup/x/y, LoadBalancer=app/z/w`, for messages.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self
            .dimensions
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{}/{} ({})", self.namespace, self.metric, dims.join(", "))
    }
}

/// GetMetricStatistics for `[start, end)`, datapoints sorted by time.
pub async fn datapoints(
    cw: &Client,
    q: &MetricQuery,
    start: i64,
    end: i64,
) -> Result<Vec<Datapoint>, AwsError> {
    let dims: Vec<Dimension> = q
        .dimensions
        .iter()
        .map(|(k, v)| Dimension::builder().name(*k).value(v).build())
        .collect();
    let stat = match q.statistic {
        MetricStatistic::Sum => Statistic::Sum,
        MetricStatistic::Average => Statistic::Average,
    };
    let out = cw
        .get_metric_statistics()
        .namespace(q.namespace)
        .metric_name(q.metric)
        .set_dimensions(Some(dims))
        .start_time(DateTime::from_secs(start))
        .end_time(DateTime::from_secs(end))
        .period(q.period_seconds)
        .statistics(stat.clone())
        .send()
        .await
        .aws("CloudWatch GetMetricStatistics", q.describe())?;
    let mut points: Vec<Datapoint> = out
        .datapoints()
        .iter()
        .filter_map(|d| {
            let value = match q.statistic {
                MetricStatistic::Sum => d.sum(),
                MetricStatistic::Average => d.average(),
            }?;
            Some(Datapoint {
                at: d.timestamp()?.secs(),
                value,
            })
        })
        .collect();
    points.sort_by_key(|p| p.at);
    Ok(points)
}
