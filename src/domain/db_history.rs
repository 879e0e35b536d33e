//! How long this database's starts and stops usually take, from its own RDS events (DescribeEvents): paces the
//! wait after StartDBInstance / StopDBInstance (and the cluster calls) so it looks when RDS is usually done.
//!
//! The RDS event catalogue (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_Events.Messages.html>,
//! Aurora: <https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/USER_Events.Messages.html>) lists the end
//! of a start or stop ("DB instance started" RDS-EVENT-0088, "DB instance stopped" RDS-EVENT-0087, "DB cluster
//! started" RDS-EVENT-0151, "DB cluster stopped" RDS-EVENT-0150) but a beginning only for AWS's own start after seven
//! days stopped ("DB instance is being started due to it exceeding the maximum allowed time being stopped."
//! RDS-EVENT-0154, cluster RDS-EVENT-0153). A transition is measured from a "... is being started" / "... is being
//! stopped" event to its end; an end without such a beginning (a start someone asked for) gives no sample, and
//! without samples the wait keeps its backoff.

use std::time::Duration;

use crate::domain::converge::DbWant;

/// Samples longer than this are not one start or stop (a beginning whose end RDS never reported).
const LONGEST_MOVE: Duration = Duration::from_secs(2 * 3600);

/// How many of the latest transitions the usual duration is the median of.
pub const LAST: usize = 3;

/// Pure: the durations of this database's past transitions towards `want` (oldest first), from its events
/// (`(epoch milliseconds, message)`, any order). A transition starts at the latest "is being started" (or
/// "stopped") and ends at the next "DB instance started" / "DB cluster started" (or "stopped"); an end of the other
/// kind closes it without a sample, and so does an end without a beginning.
pub fn samples(events: &[(i64, &str)], want: DbWant) -> Vec<Duration> {
    let (begins, ends, other_ends) = match want {
        DbWant::Available => ("is being started", "started", "stopped"),
        DbWant::Stopped => ("is being stopped", "stopped", "started"),
    };
    let mut events = events.to_vec();
    events.sort_by_key(|(t, _)| *t);
    let mut out = Vec::new();
    let mut open: Option<i64> = None;
    for (t, msg) in events {
        if msg.contains(begins) {
            open = Some(t);
        } else if is_end(msg, ends) {
            if let Some(start) = open.take() {
                let d = Duration::from_millis(u64::try_from(t - start).unwrap_or(0));
                if d <= LONGEST_MOVE {
                    out.push(d);
                }
            }
        } else if is_end(msg, other_ends) {
            open = None;
        }
    }
    out
}

/// "DB instance started" / "DB cluster started." (with or without the catalogue's full stop).
fn is_end(msg: &str, verb: &str) -> bool {
    let m = msg.trim().trim_end_matches('.');
    m == format!("DB instance {verb}") || m == format!("DB cluster {verb}")
}

/// Pure: how long this database's transitions towards `want` usually take: the median of the last [`LAST`]
/// samples (the mean of the middle two for two); `None` without history.
pub fn usual_duration(events: &[(i64, &str)], want: DbWant) -> Option<Duration> {
    median_of_last(&samples(events, want))
}

fn median_of_last(samples: &[Duration]) -> Option<Duration> {
    let mut last: Vec<Duration> = samples.iter().rev().take(LAST).copied().collect();
    last.sort();
    match last.len() {
        0 => None,
        n if n % 2 == 1 => Some(last[n / 2]),
        n => Some((last[n / 2 - 1] + last[n / 2]) / 2),
    }
}

/// `database stage-db usually starts in ~4m 10s (its last 3 starts)`, or how the wait looks without a history.
pub fn usual_line(db: &str, want: DbWant, usual: Option<Duration>, samples: usize) -> String {
    let (verb, one) = match want {
        DbWant::Available => ("starts", "start"),
        DbWant::Stopped => ("stops", "stop"),
    };
    let noun = verb;
    let last = match samples.min(LAST) {
        1 => format!("its last {one}"),
        n => format!("its last {n} {noun}"),
    };
    match usual {
        Some(d) => format!(
            "database {db} usually {verb} in ~{} ({last}): the wait looks often around then",
            crate::wait::human(d)
        ),
        None => format!(
            "database {db}: no measured {noun} in its RDS events of the last 14 days; the wait looks every 2-15 s"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DbWant::{Available as Start, Stopped as Stop};

    const AUTO: &str =
        "DB instance is being started due to it exceeding the maximum allowed time being stopped.";
    const AUTO_CL: &str =
        "DB cluster is being started due to it exceeding the maximum allowed time being stopped.";

    #[test]
    fn usual_duration_from_the_databases_own_events() {
        let s = Duration::from_secs;
        type Case<'a> = (&'a str, Vec<(i64, &'a str)>, DbWant, Option<Duration>);
        let cases: Vec<Case> = vec![
            ("no history", vec![], Start, None),
            (
                "other events only",
                vec![
                    (0, "Backing up DB instance"),
                    (9_000, "Finished DB instance backup"),
                ],
                Start,
                None,
            ),
            (
                "one pair",
                vec![(0, AUTO), (250_000, "DB instance started")],
                Start,
                Some(s(250)),
            ),
            (
                "catalogue's full stop",
                vec![(0, AUTO), (250_000, "DB instance started.")],
                Start,
                Some(s(250)),
            ),
            (
                "an end without a beginning (a start someone asked for)",
                vec![(0, "DB instance started")],
                Start,
                None,
            ),
            (
                "a beginning without an end (still starting)",
                vec![(0, AUTO)],
                Start,
                None,
            ),
            (
                "out of order: sorted by date first",
                vec![
                    (250_000, "DB instance started"),
                    (0, AUTO),
                    (900_000, "DB instance started"),
                    (800_000, AUTO),
                ],
                Start,
                Some(s(175)),
            ),
            (
                "an end before its beginning pairs with nothing",
                vec![(0, "DB instance started"), (10_000, AUTO)],
                Start,
                None,
            ),
            (
                "start vs stop: a start's pair is no stop sample",
                vec![(0, AUTO), (250_000, "DB instance started")],
                Stop,
                None,
            ),
            (
                "a stop's pair",
                vec![
                    (0, "DB instance is being stopped"),
                    (60_000, "DB instance stopped"),
                ],
                Stop,
                Some(s(60)),
            ),
            (
                "a stop ending closes an open start",
                vec![
                    (0, AUTO),
                    (60_000, "DB instance stopped"),
                    (70_000, "DB instance started"),
                ],
                Start,
                None,
            ),
            (
                "cluster messages",
                vec![(0, AUTO_CL), (300_000, "DB cluster started")],
                Start,
                Some(s(300)),
            ),
            (
                "median of the last three (older ones ignored)",
                vec![
                    (0, AUTO),
                    (1_000_000, "DB instance started"),
                    (2_000_000, AUTO),
                    (2_100_000, "DB instance started"),
                    (3_000_000, AUTO),
                    (3_300_000, "DB instance started"),
                    (4_000_000, AUTO),
                    (4_200_000, "DB instance started"),
                ],
                Start,
                Some(s(200)),
            ),
            (
                "two samples: their mean",
                vec![
                    (0, AUTO),
                    (100_000, "DB instance started"),
                    (1_000_000, AUTO),
                    (1_300_000, "DB instance started"),
                ],
                Start,
                Some(s(200)),
            ),
            (
                "longer than two hours: not one start",
                vec![(0, AUTO), (3 * 3_600_000, "DB instance started")],
                Start,
                None,
            ),
        ];
        for (name, events, want, expected) in cases {
            assert_eq!(usual_duration(&events, want), expected, "{name}");
        }
    }

    #[test]
    fn usual_line_names_the_database_and_the_samples() {
        let d = Some(Duration::from_secs(250));
        assert_eq!(
            usual_line("stage-db", Start, d, 5),
            "database stage-db usually starts in ~4m 10s (its last 3 starts): the wait looks often around then"
        );
        assert!(
            usual_line("stage-db", Stop, d, 1).contains("usually stops in ~4m 10s (its last stop)")
        );
        assert!(usual_line("stage-db", Stop, None, 0).contains("no measured stops"));
    }
}
