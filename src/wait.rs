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
    /// Not yet, and it cannot be before this instant (a window that ends then): the next look is then, not earlier,
    /// and never later than the deadline.
    PendingUntil(String, Instant),
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

/// The pace of a wait whose end can be estimated (a roll-out that usually takes as long as this service's last
/// ones): look rarely before the expected end, often around it, and as [`Backoff`] says after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// When the wait is expected to end, counted from its start.
    pub expected: Duration,
}

impl Pace {
    /// Between looks inside the window around the expected end.
    pub const FINE: Duration = Duration::from_millis(500);
    /// The longest sleep before the window: an early failure is still seen within this.
    pub const RARE: Duration = Duration::from_secs(10);

    /// Half the width of the window of fine looks: a twentieth of the expected duration, at least [`Pace::FINE`].
    pub fn half_window(&self) -> Duration {
        (self.expected / 20).max(Pace::FINE)
    }

    /// Pure: how long to wait before the first look. A wait that cannot end before the window opens does not look
    /// at once (the look would only say "not yet"); it looks when the window opens, or after [`Pace::RARE`].
    pub fn first_sleep(pace: Option<Pace>) -> Duration {
        match pace {
            Some(p) => p.expected.saturating_sub(p.half_window()).min(Pace::RARE),
            None => Duration::ZERO,
        }
    }
}

/// Pure: how long to sleep after a look made `elapsed` into the wait. `interval` is what the backoff would sleep;
/// without a pace it is the answer. With one: before the window around the expected end, sleep until the window
/// opens but never longer than [`Pace::RARE`]; inside it, [`Pace::FINE`]; after it (the wait runs late), the backoff.
pub fn next_sleep(elapsed: Duration, interval: Duration, pace: Option<Pace>) -> Duration {
    let Some(pace) = pace else {
        return interval;
    };
    let opens = pace.expected.saturating_sub(pace.half_window());
    let closes = pace.expected + pace.half_window();
    if elapsed < opens {
        (opens - elapsed).min(Pace::RARE)
    } else if elapsed < closes {
        Pace::FINE
    } else {
        interval
    }
}

/// A bounded wait.
#[derive(Debug, Clone)]
pub struct Poller {
    pub what: String,
    pub backoff: Backoff,
    pub deadline: Instant,
    pub cancel: CancellationToken,
    /// How to space the looks when the end can be estimated; `None`: the backoff alone.
    pub pace: Option<Pace>,
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
            pace: None,
        }
    }

    /// The same wait, its looks spaced by `pace` (see [`next_sleep`]).
    pub fn paced(mut self, pace: Option<Pace>) -> Poller {
        self.pace = pace;
        self
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
        let first = Pace::first_sleep(self.pace);
        if !first.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep_until((start + first).min(self.deadline)) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
        loop {
            if self.cancel.is_cancelled() {
                return Err(WaitError::Cancelled {
                    what: self.what.clone(),
                    waited: start.elapsed(),
                    last,
                });
            }
            let mut not_before = None;
            match check().await {
                Ok(Check::Done(v)) => return Ok(v),
                Ok(Check::Pending(progress)) => {
                    last_error = None;
                    if !progress.is_empty() && progress != last {
                        tracing::info!("{progress}");
                        last = progress;
                    }
                }
                Ok(Check::PendingUntil(progress, at)) => {
                    last_error = None;
                    not_before = Some(at);
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
            let wake = match not_before {
                Some(at) => at.max(now),
                None => now + next_sleep(now - start, interval, self.pace),
            }
            .min(self.deadline);
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

    #[test]
    fn paced_looks_are_rare_before_the_expected_end_and_fine_around_it() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let fast = s(3);
        let pace = |secs| Some(Pace { expected: s(secs) });
        // (elapsed, expected, sleep)
        let cases = [
            // No estimate: the backoff decides.
            (ms(0), None, fast),
            // 20 s expected: window 19–21 s; before it at most 10 s, landing on its start.
            (ms(0), pace(20), s(10)),
            (s(10), pace(20), s(9)),
            (s(19), pace(20), Pace::FINE),
            (ms(20_900), pace(20), Pace::FINE),
            (s(21), pace(20), fast),
            // 4 min expected: window ±12 s.
            (s(200), pace(240), s(10)),
            (s(225), pace(240), s(3)),
            (s(228), pace(240), Pace::FINE),
            (s(252), pace(240), fast),
            // 3 s expected: window 2.5–3.5 s.
            (ms(2_000), pace(3), ms(500)),
            (ms(2_500), pace(3), Pace::FINE),
            (ms(3_500), pace(3), fast),
            // An instant roll-out: the window starts at once.
            (ms(0), pace(0), Pace::FINE),
            (s(1), pace(0), fast),
        ];
        for (elapsed, pace, want) in cases {
            assert_eq!(
                next_sleep(elapsed, fast, pace),
                want,
                "{elapsed:?} {pace:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_wait_looks_at_the_expected_end() {
        let looks = std::sync::Mutex::new(vec![]);
        let start = Instant::now();
        let p = poller(Duration::from_secs(60)).paced(Some(Pace {
            expected: Duration::from_secs(20),
        }));
        p.run(|| async {
            let t = start.elapsed();
            looks.lock().unwrap().push(t.as_millis());
            Ok::<_, anyhow::Error>(if t >= Duration::from_secs(20) {
                Check::Done(())
            } else {
                Check::Pending(String::new())
            })
        })
        .await
        .unwrap();
        // No look at once (it could only say "not yet"), one after 10 s (an early failure), then around 20 s.
        assert_eq!(
            looks.into_inner().unwrap(),
            vec![10_000, 19_000, 19_500, 20_000]
        );
    }

    #[test]
    fn the_first_look_waits_for_the_window_when_the_end_is_known() {
        let s = Duration::from_secs;
        let pace = |secs| Some(Pace { expected: s(secs) });
        assert_eq!(Pace::first_sleep(None), Duration::ZERO);
        assert_eq!(Pace::first_sleep(pace(0)), Duration::ZERO);
        assert_eq!(Pace::first_sleep(pace(3)), Duration::from_millis(2_500));
        assert_eq!(Pace::first_sleep(pace(240)), Pace::RARE);
    }

    #[tokio::test(start_paused = true)]
    async fn pending_until_looks_then_and_not_before() {
        let n = AtomicU32::new(0);
        let start = Instant::now();
        let at = start + Duration::from_secs(7);
        let looked_at = p_until(&n, at, start).await;
        assert_eq!(looked_at, vec![0, 7_000]);
    }

    async fn p_until(n: &AtomicU32, at: Instant, start: Instant) -> Vec<u128> {
        let looks = std::sync::Mutex::new(vec![]);
        poller(Duration::from_secs(60))
            .run(|| async {
                looks.lock().unwrap().push(start.elapsed().as_millis());
                Ok::<_, anyhow::Error>(if n.fetch_add(1, Ordering::SeqCst) == 0 {
                    Check::PendingUntil("quiet from now".into(), at)
                } else {
                    Check::Done(())
                })
            })
            .await
            .unwrap();
        looks.into_inner().unwrap()
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
