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

/// How often waits look again, as a multiple of the intervals written in the code: [`Pace::AWS`] in a real run; a
/// run against the local AWS, where everything settles in moments, polls at a fraction of them
/// (`DEPLOY_ACTION_POLL_SCALE=0.1`). Held in the run context ([`crate::phases::Ctx`]), so every wait of a run
/// keeps one pace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace(f64);

impl Pace {
    /// The intervals as written: AWS's pace.
    pub const AWS: Pace = Pace(1.0);
    /// The variable that sets it.
    pub const VAR: &'static str = "DEPLOY_ACTION_POLL_SCALE";

    /// From [`Pace::VAR`] (unset: [`Pace::AWS`]); a number from 0.01 to 10.
    pub fn from_env() -> Result<Pace, crate::error::UsageError> {
        match std::env::var(Self::VAR) {
            Err(_) => Ok(Pace::AWS),
            Ok(v) => Pace::parse(&v),
        }
    }

    pub fn parse(v: &str) -> Result<Pace, crate::error::UsageError> {
        match v.trim().parse::<f64>() {
            Ok(f) if (0.01..=10.0).contains(&f) => Ok(Pace(f)),
            _ => Err(crate::error::UsageError::new(format!(
                "{}: {v:?} is not a number from 0.01 to 10 (the fraction of the normal poll intervals); unset it for the normal pace",
                Self::VAR
            ))),
        }
    }

    /// `backoff` at this pace.
    pub fn of(self, backoff: Backoff) -> Backoff {
        Backoff {
            first: backoff.first.mul_f64(self.0),
            max: backoff.max.mul_f64(self.0),
        }
    }
}

/// When a wait is expected to end (a roll-out that usually takes as long as this service's last ones): look rarely
/// before then, often around it, and as the [`Backoff`] says after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// When the wait is expected to end, counted from its start.
    pub after: Duration,
    /// How far the history's samples strayed from `after` (the largest distance), when there were several: a
    /// history that keeps its time gets a narrower window.
    pub spread: Option<Duration>,
}

impl Expected {
    /// Between looks inside the window around the expected end.
    pub const FINE: Duration = Duration::from_millis(500);
    /// The longest sleep before the window: an early failure is still seen within this.
    pub const RARE: Duration = Duration::from_secs(10);
    /// The widest half window: a long wait (a 10-min database start) gets at most 20 fine looks, not 120.
    pub const MAX_HALF_WINDOW: Duration = Duration::from_secs(5);

    /// Expected at `after`, the spread of its history unknown.
    pub fn at(after: Duration) -> Expected {
        Expected {
            after,
            spread: None,
        }
    }

    /// Half the width of the window of fine looks by rule: a twentieth of the expected duration, at least
    /// [`Expected::FINE`] and at most [`Expected::MAX_HALF_WINDOW`].
    pub fn half_window(&self) -> Duration {
        (self.after / 20).clamp(Expected::FINE, Expected::MAX_HALF_WINDOW)
    }

    /// How long before `after` the fine looks begin: the half window; with a known spread, the spread (never more
    /// than the half window) in whole [`Expected::FINE`] steps, so that a look falls on `after` itself and a history
    /// that keeps its time is looked at once, when it is due.
    pub fn early(&self) -> Duration {
        let half = self.half_window();
        let Some(spread) = self.spread else {
            return half;
        };
        let fine = Expected::FINE.as_millis();
        let steps = (spread.min(half).as_millis() + fine / 2) / fine;
        Expected::FINE * u32::try_from(steps).unwrap_or(u32::MAX)
    }

    /// When the window of fine looks opens, counted from the wait's start.
    pub fn opens(&self) -> Duration {
        self.after.saturating_sub(self.early())
    }

    /// When it closes: as far after `after` as it opened before, at least [`Expected::FINE`].
    pub fn closes(&self) -> Duration {
        self.after + self.early().max(Expected::FINE)
    }

    /// Pure: how long to wait before the first look. A wait that cannot end before the window opens does not look
    /// at once (the look could only say "not yet"); it looks when the window opens, or after [`Expected::RARE`].
    pub fn first_sleep(expected: Option<Expected>) -> Duration {
        match expected {
            Some(e) => e.opens().min(Expected::RARE),
            None => Duration::ZERO,
        }
    }
}

/// Pure: how long to sleep after a look made `elapsed` into the wait. `interval` is what the backoff would sleep;
/// without an expected end it is the answer. With one: before the window around the expected end, sleep until the
/// window opens but never longer than [`Expected::RARE`]; inside it, [`Expected::FINE`]; after it (the wait runs
/// late), the backoff.
pub fn next_sleep(elapsed: Duration, interval: Duration, expected: Option<Expected>) -> Duration {
    let Some(e) = expected else {
        return interval;
    };
    let (opens, closes) = (e.opens(), e.closes());
    if elapsed < opens {
        (opens - elapsed).min(Expected::RARE)
    } else if elapsed < closes {
        Expected::FINE
    } else {
        interval
    }
}

/// Pure: the backoff's interval after a look made `elapsed` into the wait. With an expected end the backoff starts
/// over once the window around it has passed (a wait that runs late is seen within `first`, then growing), instead of
/// having grown to `max` unused during the rare and fine looks.
pub fn next_interval(
    backoff: Backoff,
    interval: Duration,
    elapsed: Duration,
    expected: Option<Expected>,
) -> Duration {
    match expected {
        Some(e) if elapsed < e.closes() => backoff.first,
        _ => backoff.next(interval),
    }
}

/// Pure: how long until a job that reports its progress in percent (an RDS snapshot's `PercentProgress`) is expected
/// to end, at the rate it moved between the first look `(elapsed, percent)` and the latest one. `None` until the
/// percent has moved (no rate yet) or once it reads 100. The wait uses it only to look sooner, never later.
pub fn eta_from_progress(first: (Duration, u8), latest: (Duration, u8)) -> Option<Duration> {
    let ((t0, p0), (t1, p1)) = (first, latest);
    if p1 <= p0 || p1 >= 100 || t1 <= t0 {
        return None;
    }
    let per_point = (t1 - t0) / u32::from(p1 - p0);
    Some(per_point * u32::from(100 - p1))
}

/// A bounded wait.
#[derive(Debug, Clone)]
pub struct Poller {
    pub what: String,
    pub backoff: Backoff,
    pub deadline: Instant,
    pub cancel: CancellationToken,
    /// When the wait is expected to end, if that can be estimated: spaces the looks (see [`next_sleep`]).
    pub expected: Option<Expected>,
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
            expected: None,
        }
    }

    /// The same wait, its looks spaced around `expected` (see [`next_sleep`]).
    pub fn expecting(mut self, expected: Option<Expected>) -> Poller {
        self.expected = expected;
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
        let first = Expected::first_sleep(self.expected);
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
            let result = check().await;
            let elapsed = start.elapsed();
            let paced = next_sleep(elapsed, interval, self.expected);
            let cap = match &result {
                Ok(Check::PendingUntil { within, .. }) => (*within).min(paced),
                _ => paced,
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
            interval = next_interval(self.backoff, interval, elapsed, self.expected);
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

    #[test]
    fn eta_from_progress_extrapolates_the_rate_and_needs_movement() {
        type Look = (Duration, u8);
        let s = Duration::from_secs;
        let cases: &[(&str, Look, Look, Option<Duration>)] = &[
            ("no movement yet", (s(0), 10), (s(10), 10), None),
            (
                "10 points in 10 s, 50 left",
                (s(0), 40),
                (s(10), 50),
                Some(s(50)),
            ),
            (
                "one point in 30 s, 1 left",
                (s(0), 98),
                (s(30), 99),
                Some(s(30)),
            ),
            ("done", (s(0), 10), (s(10), 100), None),
            ("same look", (s(5), 10), (s(5), 20), None),
            ("went backwards", (s(0), 50), (s(10), 40), None),
        ];
        for (name, first, latest, want) in cases {
            assert_eq!(eta_from_progress(*first, *latest), *want, "{name}");
        }
    }

    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The looks a wait makes (ms from its start) until `done_at`, per [`Expected::first_sleep`] and [`next_sleep`]
    /// with the FAST backoff: the poller's schedule, without a clock.
    fn t_look(out: &[u128]) -> Duration {
        Duration::from_millis(u64::try_from(*out.last().unwrap()).unwrap())
    }

    fn looks(expected: Option<Expected>, done_at: Duration) -> Vec<u128> {
        let mut t = Expected::first_sleep(expected);
        let mut interval = Backoff::FAST.first;
        let mut out = vec![];
        loop {
            out.push(t.as_millis());
            if t >= done_at || out.len() > 50 {
                return out;
            }
            t += next_sleep(t, interval, expected);
            interval = next_interval(Backoff::FAST, interval, t_look(&out), expected);
        }
    }

    #[test]
    fn paced_looks_are_rare_before_the_expected_end_and_fine_around_it() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let fast = s(3);
        let exp = |secs| Some(Expected::at(s(secs)));
        // (elapsed, expected, sleep)
        let cases = [
            // No estimate: the backoff decides.
            (ms(0), None, fast),
            // 20 s expected: window 19–21 s; before it at most 10 s, landing on its start.
            (ms(0), exp(20), s(10)),
            (s(10), exp(20), s(9)),
            (s(19), exp(20), Expected::FINE),
            (ms(20_900), exp(20), Expected::FINE),
            (s(21), exp(20), fast),
            // 4 min expected: window ±5 s (a twentieth would be ±12 s: capped).
            (s(200), exp(240), s(10)),
            (s(228), exp(240), s(7)),
            (s(235), exp(240), Expected::FINE),
            (s(244), exp(240), Expected::FINE),
            (s(245), exp(240), fast),
            // 3 s expected: window 2.5–3.5 s.
            (ms(2_000), exp(3), ms(500)),
            (ms(2_500), exp(3), Expected::FINE),
            (ms(3_500), exp(3), fast),
            // An instant roll-out: the window starts at once.
            (ms(0), exp(0), Expected::FINE),
            (s(1), exp(0), fast),
        ];
        for (elapsed, expected, want) in cases {
            assert_eq!(
                next_sleep(elapsed, fast, expected),
                want,
                "{elapsed:?} {expected:?}"
            );
        }
    }

    #[test]
    fn the_schedule_of_looks_around_the_expected_end() {
        let s = Duration::from_secs;
        let exp = |secs| Some(Expected::at(s(secs)));
        // No look at once (it could only say "not yet"), one after 10 s (an early failure), then around 20 s.
        assert_eq!(looks(exp(20), s(20)), vec![10_000, 19_000, 19_500, 20_000]);
        // Three services that settle at 3 s: two looks.
        assert_eq!(looks(exp(3), s(3)), vec![2_500, 3_000]);
        // An instant roll-out: one look, at once.
        assert_eq!(looks(exp(0), s(0)), vec![0]);
        // Without history: 1 s, then backing off to 3 s (a 20-s roll-out is seen up to 3 s late).
        assert_eq!(
            looks(None, s(20)),
            vec![0, 1_000, 2_500, 4_750, 7_750, 10_750, 13_750, 16_750, 19_750, 22_750]
        );
        // Later than expected: fine looks through the window, then the backoff from its start (1 s, 1.5 s, ...).
        assert_eq!(looks(exp(3), s(6)), vec![2_500, 3_000, 3_500, 4_500, 6_000]);
        // A 4-min wait that is exactly on time: 23 rare looks, then 11 fine ones (±5 s), not 24 (±12 s).
        let on_time = looks(exp(240), s(240));
        assert_eq!(on_time.iter().filter(|t| **t < 235_000).count(), 23);
        assert_eq!(on_time.iter().filter(|t| **t >= 235_000).count(), 11);
        // 10 s late: after the window (to 245 s) the looks come 1 s, 1.5 s, 2.25 s, 3 s apart: seen 2.75 s late.
        let late = looks(exp(240), s(250));
        assert_eq!(
            &late[late.len() - 5..],
            &[245_000, 246_000, 247_500, 249_750, 252_750]
        );
    }

    #[test]
    fn a_history_that_keeps_its_time_gets_a_narrow_window() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let with = |after, spread| {
            Some(Expected {
                after,
                spread: Some(spread),
            })
        };
        // Two 20-s roll-outs 30 ms apart: one rare look, then one at 20 s (due), then 20.5 s.
        assert_eq!(looks(with(s(20), ms(30)), s(20)), vec![10_000, 20_000]);
        assert_eq!(
            looks(with(s(20), ms(30)), ms(20_400)),
            vec![10_000, 20_000, 20_500]
        );
        // Three at 3 s: one look.
        assert_eq!(looks(with(s(3), ms(0)), s(3)), vec![3_000]);
        // Spread 0.8 s: the window opens 1 s early (two fine steps), a look still falls on 20 s.
        assert_eq!(
            looks(with(s(20), ms(800)), s(20)),
            vec![10_000, 19_000, 19_500, 20_000]
        );
        // A spread wider than the rule is capped by it (a twentieth, at most 5 s).
        let wide = Expected {
            after: s(240),
            spread: Some(s(30)),
        };
        assert_eq!((wide.opens(), wide.closes()), (s(235), s(245)));
        // Unknown spread: the rule, as before.
        let rule = Expected::at(s(20));
        assert_eq!((rule.opens(), rule.closes()), (s(19), s(21)));
        // Early or late, the first look after the window comes from the backoff's start.
        assert_eq!(
            looks(with(s(3), ms(0)), s(5)),
            vec![3_000, 3_500, 4_500, 6_000]
        );
    }

    #[test]
    fn the_first_look_waits_for_the_window_when_the_end_is_known() {
        let s = Duration::from_secs;
        let exp = |secs| Some(Expected::at(s(secs)));
        assert_eq!(Expected::first_sleep(None), Duration::ZERO);
        assert_eq!(Expected::first_sleep(exp(0)), Duration::ZERO);
        assert_eq!(Expected::first_sleep(exp(3)), Duration::from_millis(2_500));
        assert_eq!(Expected::first_sleep(exp(240)), Expected::RARE);
    }

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

    #[tokio::test]
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

    #[tokio::test]
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

    #[tokio::test]
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

    #[tokio::test]
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

    #[tokio::test]
    async fn a_known_done_time_is_looked_at_then_not_a_backoff_later() {
        // Real time (the tests build no paused clock): looks at 1 s, then it is known done at 2.2 s.
        let p = Poller::new(
            "drain",
            Backoff {
                first: Duration::from_secs(1),
                max: Duration::from_secs(3),
            },
            Instant::now() + Duration::from_secs(60),
            CancellationToken::new(),
        );
        let start = Instant::now();
        let done_at = start + Duration::from_millis(2200);
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
        // Backoff alone (0, 1, 2.5 s) would first look at or after 2.2 s at 2.5 s.
        assert!(
            took >= Duration::from_millis(2200) && took < Duration::from_millis(2450),
            "{took:?}"
        );
        assert!(looks.load(Ordering::SeqCst) <= 4);
    }

    #[test]
    fn pace_scales_the_intervals_and_refuses_nonsense() {
        let fast = Pace::parse("0.1").unwrap().of(Backoff::FAST);
        assert_eq!(
            (fast.first, fast.max),
            (Duration::from_millis(100), Duration::from_millis(300))
        );
        assert_eq!(Pace::AWS.of(Backoff::SLOW).max, Backoff::SLOW.max);
        for bad in ["0", "-1", "fast", "11", ""] {
            let e = Pace::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("DEPLOY_ACTION_POLL_SCALE: "), "{e}");
        }
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
