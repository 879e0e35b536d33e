//! "Wait until it is quiet": a CloudWatch metric stays at or under a threshold for a window.
//!
//! Two uses: the **drain wait** after maintenance goes on (the forwarding target groups' `AWS/ApplicationELB`
//! `RequestCount`, Sum per minute, summed over the target groups), and the **DB settle wait** after a migration
//! (`AWS/RDS` `CPUUtilization`, Average per minute). Both are bounded by their own `timeout-minutes` and the
//! phase's deadline, and print progress only when the data changes.
//!
//! CloudWatch reports ALB request counts only for minutes that had requests, so no datapoint means no traffic. Its
//! data arrives a minute or so late; the window is counted from the moment maintenance went on (drain) or from
//! `window` before the wait started (settle), never from before that.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::aws::cloudwatch::{self, Datapoint, MetricQuery, MetricStatistic};
use crate::config::{Database, DatabaseKind, DrainConfig, SettleConfig};
use crate::domain::Ctx;
use crate::wait::{human, Backoff, Check, Poller};

/// Datapoints are per minute (the finest period ALB and RDS basic metrics have).
const PERIOD: i64 = 60;

/// What "quiet" means: every datapoint at or under `threshold` for `window_seconds`, from `floor` at the earliest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuietRule {
    pub threshold: f64,
    pub window_seconds: i64,
    pub period_seconds: i64,
    /// No datapoint is not quiet (RDS CPU: a database always reports one): the window needs one at or under the
    /// threshold. ALB request counts have none for minutes without requests, so the drain wait does not need one.
    pub needs_data: bool,
}

/// The verdict on the datapoints seen so far.
#[derive(Debug, Clone, PartialEq)]
pub struct QuietCheck {
    pub done: bool,
    /// From when on nothing was over the threshold (seconds since the epoch).
    pub quiet_since: i64,
    /// The newest datapoint over the threshold, if any.
    pub last_breach: Option<Datapoint>,
    /// `needs_data` and no datapoint since `quiet_since` yet.
    pub no_data: bool,
}

/// Pure: has the metric stayed at or under the threshold for the window? A datapoint over the threshold covers its
/// whole period, so the quiet time starts at the end of the newest such period (or at `floor`, if later).
pub fn quiet(points: &[Datapoint], floor: i64, now: i64, rule: &QuietRule) -> QuietCheck {
    let last_breach = points
        .iter()
        .filter(|p| p.value > rule.threshold)
        .max_by_key(|p| p.at)
        .copied();
    let quiet_since = last_breach
        .map(|b| b.at + rule.period_seconds)
        .unwrap_or(floor)
        .max(floor);
    // A datapoint covers its period: one under the threshold whose period reaches into the quiet span counts.
    let no_data = rule.needs_data
        && !points
            .iter()
            .any(|p| p.at + rule.period_seconds > quiet_since && p.value <= rule.threshold);
    QuietCheck {
        done: now - quiet_since >= rule.window_seconds && !no_data,
        quiet_since,
        last_breach,
        no_data,
    }
}

/// Datapoints of several series added up per period start (the target groups' request counts together).
pub fn sum_by_time(series: &[Vec<Datapoint>]) -> Vec<Datapoint> {
    let mut by_time: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
    for p in series.iter().flatten() {
        *by_time.entry(p.at).or_default() += p.value;
    }
    by_time
        .into_iter()
        .map(|(at, value)| Datapoint { at, value })
        .collect()
}

/// How a quiet wait ended.
#[derive(Debug, Clone, Serialize)]
pub struct QuietReport {
    pub what: String,
    /// Why it did not wait (skipped by input or config, or nothing to watch); `None` when it waited.
    pub skipped: Option<String>,
    pub waited_seconds: u64,
    pub detail: String,
}

impl QuietReport {
    fn skipped(what: &str, why: impl Into<String>) -> QuietReport {
        let why = why.into();
        QuietReport {
            what: what.into(),
            detail: format!("skipped: {why}"),
            skipped: Some(why),
            waited_seconds: 0,
        }
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn clock(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// `arn:...:targetgroup/name/id` → `targetgroup/name/id` (the `TargetGroup` dimension).
pub fn target_group_dimension(arn: &str) -> String {
    arn.rsplit_once(':')
        .map(|(_, s)| s)
        .unwrap_or(arn)
        .to_string()
}

/// `arn:...:loadbalancer/app/name/id` or `arn:...:listener/app/name/id/lid` → `app/name/id` (the `LoadBalancer`
/// dimension).
pub fn load_balancer_dimension(arn: &str) -> Option<String> {
    let tail = arn.rsplit_once(':')?.1;
    let rest = tail
        .strip_prefix("loadbalancer/")
        .or_else(|| tail.strip_prefix("listener/"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    (parts.len() >= 3).then(|| parts[..3].join("/"))
}

/// Waits until `queries` (summed) stay at or under the rule for its window, counted from `floor`.
async fn wait_quiet(
    cw: &aws_sdk_cloudwatch::Client,
    what: &str,
    queries: &[MetricQuery],
    rule: QuietRule,
    floor: i64,
    timeout: Duration,
    ctx: &Ctx,
) -> Result<QuietReport> {
    let started = tokio::time::Instant::now();
    let deadline = ctx.deadline.min(started + timeout);
    let poller = Poller::new(
        what,
        ctx.pace.of(Backoff::SLOW),
        deadline,
        ctx.cancel.clone(),
    );
    let metric = queries.first().map(|q| q.metric).unwrap_or_default();
    let detail = poller
        .run(|| async {
            let now = now_secs();
            // Two periods before the window, so a busy period that began before `floor` is seen.
            let start = floor.min(now - rule.window_seconds) - 2 * rule.period_seconds;
            let mut series = Vec::new();
            for q in queries {
                series.push(cloudwatch::datapoints(cw, q, start, now + rule.period_seconds).await?);
            }
            let points = sum_by_time(&series);
            let check = quiet(&points, floor, now, &rule);
            let done_at = clock(check.quiet_since + rule.window_seconds);
            let breach = match check.last_breach {
                Some(b) => format!(
                    "{metric} {} at {} (threshold {})",
                    b.value,
                    clock(b.at),
                    rule.threshold
                ),
                None => format!("{metric} at or under {}", rule.threshold),
            };
            if check.no_data {
                let seen = match check.last_breach {
                    Some(_) => format!("{breach}; "),
                    None => String::new(),
                };
                return Ok(Check::Pending(format!(
                    "{what}: {seen}no {metric} datapoint since {} yet; no data is not quiet, waiting (CloudWatch reports a minute or two late)",
                    clock(check.quiet_since)
                )));
            }
            if check.done {
                Ok(Check::Done(format!(
                    "{breach}; quiet since {}",
                    clock(check.quiet_since)
                )))
            } else {
                let due = check.quiet_since + rule.window_seconds;
                Ok(Check::PendingUntil {
                    progress: format!(
                        "{what}: {breach}; quiet from {}, done at {done_at} if it stays so",
                        clock(check.quiet_since)
                    ),
                    within: Duration::from_secs((due - now).max(1) as u64),
                })
            }
        })
        .await?;
    Ok(QuietReport {
        what: what.into(),
        skipped: None,
        waited_seconds: started.elapsed().as_secs(),
        detail,
    })
}

/// The drain wait after maintenance went on at `since` (seconds since the epoch): the target groups' RequestCount
/// stays at or under `maintenance.drain.threshold` for `window-seconds`. Skipped with `skip` (the `skip-drain`
/// input) or `drain.skip`.
pub async fn wait_drained(
    cw: &aws_sdk_cloudwatch::Client,
    target_groups: &[String],
    load_balancer_arn: Option<&str>,
    cfg: Option<&DrainConfig>,
    skip: bool,
    since: i64,
    ctx: &Ctx,
) -> Result<QuietReport> {
    const WHAT: &str = "traffic drain";
    let cfg = cfg.cloned().unwrap_or(DrainConfig {
        threshold: 0,
        window_seconds: 60,
        timeout: None,
        timeout_minutes: None,
        skip: false,
    });
    if skip {
        return Ok(QuietReport::skipped(WHAT, "input skip-drain"));
    }
    if cfg.skip {
        return Ok(QuietReport::skipped(
            WHAT,
            "maintenance.drain.skip in the config",
        ));
    }
    if target_groups.is_empty() {
        return Ok(QuietReport::skipped(
            WHAT,
            "the listener forwards to no target group",
        ));
    }
    let lb = load_balancer_arn.and_then(load_balancer_dimension);
    let queries: Vec<MetricQuery> = target_groups
        .iter()
        .map(|tg| {
            let mut dimensions = vec![("TargetGroup", target_group_dimension(tg))];
            if let Some(lb) = &lb {
                dimensions.push(("LoadBalancer", lb.clone()));
            }
            MetricQuery {
                namespace: "AWS/ApplicationELB",
                metric: "RequestCount",
                dimensions,
                statistic: MetricStatistic::Sum,
                period_seconds: PERIOD as i32,
            }
        })
        .collect();
    let rule = QuietRule {
        threshold: cfg.threshold as f64,
        window_seconds: cfg.window_seconds as i64,
        period_seconds: PERIOD,
        needs_data: false,
    };
    let timeout = cfg.bound();
    tracing::info!(
        "waiting for traffic to drain: RequestCount of {} target group(s) at or under {}/min for {}s (at most {})",
        queries.len(),
        cfg.threshold,
        cfg.window_seconds,
        human(timeout)
    );
    wait_quiet(cw, WHAT, &queries, rule, since, timeout, ctx).await.context(
        "traffic did not drain (maintenance is on); re-run with skip-drain: true to go on anyway, or raise maintenance.drain.threshold / timeout",
    )
}

/// The DB settle wait after a successful migration (phase migrate, before anything runs the new code): the
/// database's CPUUtilization (Average per minute) stays at or under `database.settle.cpu-threshold` for
/// `window-seconds`, counted over the trailing window, bounded by `timeout-minutes`; no datapoint is not quiet.
/// Only when `[database] settle` is configured; `settle.skip` skips it.
pub async fn wait_db_settled(
    cw: &aws_sdk_cloudwatch::Client,
    db: &Database,
    ctx: &Ctx,
) -> Result<QuietReport> {
    const WHAT: &str = "database settle";
    let Some(cfg): Option<SettleConfig> = db.settle.clone() else {
        return Ok(QuietReport::skipped(
            WHAT,
            "database.settle is not configured",
        ));
    };
    if cfg.skip {
        return Ok(QuietReport::skipped(
            WHAT,
            "database.settle.skip in the config",
        ));
    }
    let dim = match db.kind {
        DatabaseKind::Instance => "DBInstanceIdentifier",
        DatabaseKind::Cluster => "DBClusterIdentifier",
    };
    let query = MetricQuery {
        namespace: "AWS/RDS",
        metric: "CPUUtilization",
        dimensions: vec![(dim, db.identifier.clone())],
        statistic: MetricStatistic::Average,
        period_seconds: PERIOD as i32,
    };
    let rule = QuietRule {
        threshold: cfg.cpu_threshold as f64,
        window_seconds: cfg.window_seconds as i64,
        period_seconds: PERIOD,
        needs_data: true,
    };
    let timeout = cfg.bound();
    tracing::info!(
        "waiting for database {} to settle: CPU at or under {}% for {}s (at most {})",
        db.identifier,
        cfg.cpu_threshold,
        cfg.window_seconds,
        human(timeout)
    );
    let floor = now_secs() - rule.window_seconds;
    wait_quiet(cw, WHAT, &[query], rule, floor, timeout, ctx).await.with_context(|| {
        format!(
            "database {} did not settle; raise database.settle.cpu-threshold / timeout-minutes, or set database.settle.skip",
            db.identifier
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(at: i64, value: f64) -> Datapoint {
        Datapoint { at, value }
    }

    #[test]
    fn quiet_decisions() {
        let rule = QuietRule {
            threshold: 5.0,
            window_seconds: 60,
            period_seconds: 60,
            needs_data: false,
        };
        // (points, floor, now, done, quiet_since)
        let cases: Vec<(Vec<Datapoint>, i64, i64, bool, i64)> = vec![
            (vec![], 1000, 1000, false, 1000), // just went on: the window starts now
            (vec![], 1000, 1059, false, 1000), // 59 s of silence
            (vec![], 1000, 1060, true, 1000),  // a full window of silence
            (vec![p(900, 500.0)], 1000, 1060, true, 1000), // traffic before maintenance does not count
            (vec![p(1000, 6.0)], 1000, 1100, false, 1060), // a busy minute after going on
            (vec![p(1000, 6.0)], 1000, 1120, true, 1060),
            (vec![p(1000, 5.0), p(1060, 1.0)], 1000, 1060, true, 1000), // at the threshold is quiet
            (
                vec![p(1000, 9.0), p(1060, 0.0), p(1120, 7.0)],
                1000,
                1200,
                false,
                1180,
            ),
        ];
        for (points, floor, now, done, since) in cases {
            let got = quiet(&points, floor, now, &rule);
            assert_eq!(
                (got.done, got.quiet_since),
                (done, since),
                "{points:?} floor {floor} now {now}"
            );
        }
        let zero = QuietRule {
            threshold: 0.0,
            ..rule
        };
        assert!(!quiet(&[p(1000, 1.0)], 1000, 1100, &zero).done);
    }

    #[test]
    fn no_datapoint_is_not_quiet_when_data_is_needed() {
        let rule = QuietRule {
            threshold: 30.0,
            window_seconds: 60,
            period_seconds: 60,
            needs_data: true,
        };
        // (points, floor, now, done, no_data)
        let cases: Vec<(Vec<Datapoint>, i64, i64, bool, bool)> = vec![
            (vec![], 1000, 5000, false, true), // silence for an hour: still no data
            (vec![p(900, 10.0)], 1000, 1100, false, true), // only before the window
            (vec![p(1000, 10.0)], 1000, 1060, true, false),
            (vec![p(960, 10.0)], 1000, 1060, true, false), // the minute that began before the window reaches into it
            (vec![p(1000, 90.0)], 1000, 1200, false, true), // busy, then nothing reported since
            (vec![p(1000, 90.0), p(1060, 5.0)], 1000, 1120, true, false),
            (vec![p(1000, 90.0), p(1060, 5.0)], 1000, 1100, false, false),
        ];
        for (points, floor, now, done, no_data) in cases {
            let got = quiet(&points, floor, now, &rule);
            assert_eq!(
                (got.done, got.no_data),
                (done, no_data),
                "{points:?} floor {floor} now {now}"
            );
        }
    }

    #[test]
    fn series_add_up_per_minute() {
        let s = sum_by_time(&[vec![p(60, 1.0), p(120, 2.0)], vec![p(120, 3.0)]]);
        assert_eq!(s, vec![p(60, 1.0), p(120, 5.0)]);
    }

    #[test]
    fn dimensions_from_arns() {
        assert_eq!(
            target_group_dimension("arn:aws:elasticloadbalancing:eu-central-1:1:targetgroup/stage-core/73e2d6bc24d8a067"),
            "targetgroup/stage-core/73e2d6bc24d8a067"
        );
        assert_eq!(
            load_balancer_dimension("arn:aws:elasticloadbalancing:eu-central-1:1:loadbalancer/app/app-stage/50dc6c495c0c9188").as_deref(),
            Some("app/app-stage/50dc6c495c0c9188")
        );
        assert_eq!(
            load_balancer_dimension(
                "arn:aws:elasticloadbalancing:eu-central-1:1:listener/app/app-stage/50dc/f2f7"
            )
            .as_deref(),
            Some("app/app-stage/50dc")
        );
        assert_eq!(load_balancer_dimension("nonsense"), None);
    }
}
