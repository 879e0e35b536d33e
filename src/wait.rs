//! The one bounded poller every wait goes through: a first interval, a capped backoff, a deadline, cancellation,
//! and "print only what changed".

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The result of one look at the thing being waited for.
#[derive(Debug)]
pub enum Check<T> {
    Done(T),
    /// Not yet; the text describes where things stand (printed only when it changes; empty prints nothing).
    Pending(String),
    /// Not yet, and it may be done at a known moment: look again no later than `within` from now (a wait that
    /// announces "done at 10:04:10" looks at 10:04:10, not up to one backoff interval later).
    PendingUntil {
        progress: String,
        within: Duration,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("{what}: not done within {}; last seen: {last}", crate::wait::human(*waited))]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },
    #[error("{what}: cancelled after {}; last seen: {last}", crate::wait::human(*waited))]
    Cancelled {
        what: String,
        waited: Duration,
        last: String,
    },
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Backoff settings. Polls start at `first` and grow by half each time up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// For ECS roll-outs and tasks: start at 1 s, never more than 3 s between looks, so "done" is seen within ~3 s.
    pub const FAST: Backoff = Backoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(3),
    };
    /// For slow things (snapshots, DB start/stop, metrics windows).
    pub const SLOW: Backoff = Backoff {
        first: Duration::from_secs(2),
        max: Duration::from_secs(15),
    };

    pub fn next(&self, current: Duration) -> Duration {
        (current + current / 2).min(self.max)
    }
}

/// A bounded wait.
#[derive(Debug, Clone)]
pub struct Poller {
    pub what: String,
    pub backoff: Backoff,
    pub deadline: Instant,
    pub cancel: CancellationToken,
}

impl Poller {
    pub fn new(
        what: impl Into<String>,
        backoff: Backoff,
        deadline: Instant,
        cancel: CancellationToken,
    ) -> Poller {
        Poller {
            what: what.into(),
            backoff,
            deadline,
            cancel,
        }
    }

    /// Calls `check` until it is done, the deadline passes, or the run is cancelled. Transient AWS errors
    /// (throttling, 5xx, connection failures that outlived the SDK's retries) are logged once and polled through;
    /// any other error ends the wait.
    pub async fn run<T, F, Fut>(&self, mut check: F) -> Result<T, WaitError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Check<T>>>,
    {
        let start = Instant::now();
        let mut interval = self.backoff.first;
        let mut last = String::from("nothing yet");
        let mut last_error: Option<String> = None;
        loop {
            if self.cancel.is_cancelled() {
                return Err(WaitError::Cancelled {
                    what: self.what.clone(),
                    waited: start.elapsed(),
                    last,
                });
            }
            let result = check().await;
            let cap = match &result {
                Ok(Check::PendingUntil { within, .. }) => (*within).min(interval),
                _ => interval,
            };
            match result {
                Ok(Check::Done(v)) => return Ok(v),
                Ok(Check::Pending(progress) | Check::PendingUntil { progress, .. }) => {
                    last_error = None;
                    if !progress.is_empty() && progress != last {
                        tracing::info!("{progress}");
                        last = progress;
                    }
                }
                Err(e) if crate::aws::is_transient(&e) => {
                    let msg = format!("{e:#}");
                    if last_error.as_deref() != Some(msg.as_str()) {
                        tracing::warn!("{msg}; will look again");
                        last_error = Some(msg);
                    }
                }
                Err(e) => return Err(WaitError::Failed(e)),
            }
            let now = Instant::now();
            if now >= self.deadline {
                return Err(WaitError::Timeout {
                    what: self.what.clone(),
                    waited: start.elapsed(),
                    last,
                });
            }
            let wake = (now + cap).min(self.deadline);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.cancel.cancelled() => {
                    return Err(WaitError::Cancelled { what: self.what.clone(), waited: start.elapsed(), last });
                }
            }
            interval = self.backoff.next(interval);
        }
    }
}

/// `95s` → `1m 35s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{}.{}s", s, d.subsec_millis() / 100),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn poller(deadline_in: Duration) -> Poller {
        Poller::new(
            "thing",
            Backoff {
                first: Duration::from_millis(10),
                max: Duration::from_millis(40),
            },
            Instant::now() + deadline_in,
            CancellationToken::new(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn returns_when_done() {
        let n = AtomicU32::new(0);
        let v = poller(Duration::from_secs(5))
            .run(|| async {
                let i = n.fetch_add(1, Ordering::SeqCst);
                Ok(if i == 3 {
                    Check::Done(i)
                } else {
                    Check::Pending(format!("at {i}"))
                })
            })
            .await
            .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_with_the_last_progress() {
        let e = poller(Duration::from_millis(100))
            .run(|| async { Ok::<_, anyhow::Error>(Check::<()>::Pending("2 of 3 running".into())) })
            .await
            .unwrap_err();
        match e {
            WaitError::Timeout { last, .. } => assert_eq!(last, "2 of 3 running"),
            other => panic!("{other}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_polled_through_and_others_end_the_wait() {
        let n = AtomicU32::new(0);
        let v = poller(Duration::from_secs(5))
            .run(|| async {
                let i = n.fetch_add(1, Ordering::SeqCst);
                if i < 2 {
                    Err(anyhow::Error::new(crate::aws::AwsError {
                        operation: "DescribeServices",
                        resource: "c".into(),
                        code: Some("ThrottlingException".into()),
                        message: "Rate exceeded".into(),
                        transient: true,
                    }))
                } else {
                    Ok(Check::Done(i))
                }
            })
            .await
            .unwrap();
        assert_eq!(v, 2);
        let e = poller(Duration::from_secs(5))
            .run(|| async { Err::<Check<()>, _>(anyhow::anyhow!("access denied")) })
            .await
            .unwrap_err();
        assert!(matches!(e, WaitError::Failed(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_the_wait() {
        let p = poller(Duration::from_secs(60));
        let token = p.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            token.cancel();
        });
        let e = p
            .run(|| async { Ok::<_, anyhow::Error>(Check::<()>::Pending("x".into())) })
            .await
            .unwrap_err();
        assert!(matches!(e, WaitError::Cancelled { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn a_known_done_time_is_looked_at_then_not_a_backoff_later() {
        let p = Poller::new(
            "drain",
            Backoff::SLOW,
            Instant::now() + Duration::from_secs(600),
            CancellationToken::new(),
        );
        let start = Instant::now();
        let done_at = start + Duration::from_secs(40);
        let looks = AtomicU32::new(0);
        let took = p
            .run(|| async {
                looks.fetch_add(1, Ordering::SeqCst);
                let now = Instant::now();
                Ok::<_, anyhow::Error>(if now >= done_at {
                    Check::Done(now - start)
                } else {
                    Check::PendingUntil {
                        progress: "quiet".into(),
                        within: done_at - now,
                    }
                })
            })
            .await
            .unwrap();
        // Backoff alone (2, 3, 4.5, 6.75, 10.1, 15, ...) would first look at or after 40 s at 41.4 s, up to 15 s late.
        assert_eq!(took, Duration::from_secs(40));
        assert!(looks.load(Ordering::SeqCst) <= 8);
    }

    #[test]
    fn backoff_is_capped() {
        let b = Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(3),
        };
        let mut d = b.first;
        let mut seen = vec![];
        for _ in 0..5 {
            seen.push(d.as_millis());
            d = b.next(d);
        }
        assert_eq!(seen, vec![1000, 1500, 2250, 3000, 3000]);
    }
}
