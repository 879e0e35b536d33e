//! How long this database's starts and stops usually take: paces the wait after StartDBInstance / StopDBInstance
//! (and the cluster calls) so it looks when RDS is usually done.
//!
//! First from this action's own record on the database ([`crate::tags::START_SECONDS`] /
//! [`crate::tags::STOP_SECONDS`]: the last [`RECORD_KEPT`] durations it measured, from its call to RDS's completion
//! event), else from the database's RDS events (DescribeEvents), else none (the wait keeps its backoff).
//!
//! The RDS event catalogue (<https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_Events.Messages.html>,
//! Aurora: <https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/USER_Events.Messages.html>) lists the end
//! of a start or stop ("DB instance started" RDS-EVENT-0088, "DB instance stopped" RDS-EVENT-0087, "DB cluster
//! started" RDS-EVENT-0151, "DB cluster stopped" RDS-EVENT-0150) but a beginning only for AWS's own start after seven
//! days stopped ("DB instance is being started due to it exceeding the maximum allowed time being stopped."
//! RDS-EVENT-0154, cluster RDS-EVENT-0153). In the events alone a transition is measured from a "... is being
//! started" / "... is being stopped" event to its end; an end without such a beginning (a start someone asked for)
//! gives no sample. That is why this action records its own: it knows when it called.

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

fn median_of_last(samples: &[Duration]) -> Option<Duration> {
    let mut last: Vec<Duration> = samples.iter().rev().take(LAST).copied().collect();
    last.sort();
    match last.len() {
        0 => None,
        n if n % 2 == 1 => Some(last[n / 2]),
        n => Some((last[n / 2 - 1] + last[n / 2]) / 2),
    }
}

/// How many measured durations the record on the database keeps (whole seconds, a tag value far below 256 chars).
pub const RECORD_KEPT: usize = LAST;

/// Where the usual duration of a start or stop came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This action's record on the database ([`crate::tags::START_SECONDS`] / [`crate::tags::STOP_SECONDS`]).
    Recorded,
    /// The database's RDS events of the last 14 days.
    Events,
}

/// How long this database's transitions towards one state usually take, from how many samples, and whence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usual {
    pub duration: Duration,
    pub samples: usize,
    pub source: Source,
}

/// The tag holding this action's record of the database's starts (stops).
pub fn record_key(want: DbWant) -> &'static str {
    match want {
        DbWant::Available => crate::tags::START_SECONDS,
        DbWant::Stopped => crate::tags::STOP_SECONDS,
    }
}

/// Pure: the durations in a record's tag value (whole seconds separated by spaces, oldest first). A word that is no
/// number of seconds, or longer than a start or stop can be, is skipped (a tag someone edited).
pub fn parse_record(value: &str) -> Vec<Duration> {
    value
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok())
        .map(Duration::from_secs)
        .filter(|d| *d <= LONGEST_MOVE)
        .collect()
}

/// Pure: the tag value of a record: whole seconds (rounded), separated by spaces.
pub fn format_record(record: &[Duration]) -> String {
    record
        .iter()
        .map(|d| ((d.as_millis() + 500) / 1000).to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Pure: the record with `measured` appended, keeping the last [`RECORD_KEPT`].
pub fn append_record(record: &[Duration], measured: Duration) -> Vec<Duration> {
    let mut out: Vec<Duration> = record.to_vec();
    out.push(measured);
    let drop = out.len().saturating_sub(RECORD_KEPT);
    out.split_off(drop)
}

/// Pure: the expectation of a start or stop: the median of this action's record when it holds any (the events are
/// then not read: `events` is empty), else the median of the samples in the database's events, else none.
pub fn usual(recorded: &[Duration], events: &[(i64, &str)], want: DbWant) -> Option<Usual> {
    if let Some(duration) = median_of_last(recorded) {
        return Some(Usual {
            duration,
            samples: recorded.len().min(LAST),
            source: Source::Recorded,
        });
    }
    let from_events = samples(events, want);
    median_of_last(&from_events).map(|duration| Usual {
        duration,
        samples: from_events.len().min(LAST),
        source: Source::Events,
    })
}

/// Pure: the date (epoch milliseconds) of RDS's completion event of a transition towards `want` called at
/// `called_ms`: the first "DB instance started" / "DB cluster started" (or "stopped") dated at or after the call.
pub fn completion_after(events: &[(i64, &str)], want: DbWant, called_ms: i64) -> Option<i64> {
    let verb = match want {
        DbWant::Available => "started",
        DbWant::Stopped => "stopped",
    };
    events
        .iter()
        .filter(|(t, msg)| *t >= called_ms && is_end(msg, verb))
        .map(|(t, _)| *t)
        .min()
}

/// Pure: how long a transition called at `called_ms` took: to its completion event when RDS reported one, else to
/// the look that saw it done (`seen_ms`). `None` when that is before the call or longer than a start or stop can be.
pub fn measured(called_ms: i64, completed_ms: Option<i64>, seen_ms: i64) -> Option<Duration> {
    let ms = u64::try_from(completed_ms.unwrap_or(seen_ms) - called_ms).ok()?;
    Some(Duration::from_millis(ms)).filter(|d| *d <= LONGEST_MOVE)
}

/// `database stage-db usually starts in ~4m 10s (its last 3 starts, recorded by deploy-action)`, or how the wait
/// looks without an expectation.
pub fn usual_line(db: &str, want: DbWant, usual: Option<Usual>) -> String {
    let (verb, one) = match want {
        DbWant::Available => ("starts", "start"),
        DbWant::Stopped => ("stops", "stop"),
    };
    let Some(u) = usual else {
        return format!(
            "database {db}: no measured {verb} (none recorded by deploy-action, none in its RDS events of the last 14 \
             days); the wait looks every 2-15 s"
        );
    };
    let last = match u.samples {
        1 => format!("its last {one}"),
        n => format!("its last {n} {verb}"),
    };
    let whence = match u.source {
        Source::Recorded => "recorded by deploy-action",
        Source::Events => "from its RDS events",
    };
    format!(
        "database {db} usually {verb} in ~{} ({last}, {whence}): the wait looks often around then",
        crate::wait::human(u.duration)
    )
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
            assert_eq!(
                usual(&[], &events, want).map(|u| u.duration),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn usual_line_names_the_database_the_samples_and_the_source() {
        let u = |samples, source| {
            Some(Usual {
                duration: Duration::from_secs(250),
                samples,
                source,
            })
        };
        assert_eq!(
            usual_line("stage-db", Start, u(3, Source::Recorded)),
            "database stage-db usually starts in ~4m 10s (its last 3 starts, recorded by deploy-action): the wait \
             looks often around then"
        );
        assert!(usual_line("stage-db", Stop, u(1, Source::Events))
            .contains("usually stops in ~4m 10s (its last stop, from its RDS events)"));
        assert!(
            usual_line("stage-db", Stop, None).starts_with("database stage-db: no measured stops")
        );
    }

    #[test]
    fn the_record_on_the_database_parses_formats_and_keeps_the_last_three() {
        let s = Duration::from_secs;
        let parse: &[(&str, &str, Vec<Duration>)] = &[
            ("empty", "", vec![]),
            ("one", "251", vec![s(251)]),
            ("three", "251 248 260", vec![s(251), s(248), s(260)]),
            ("spaces around", "  251  248 ", vec![s(251), s(248)]),
            (
                "a word edited in is skipped",
                "251 soon -3 4.5 260",
                vec![s(251), s(260)],
            ),
            ("longer than two hours is skipped", "9000 60", vec![s(60)]),
            ("zero (a start that was instant)", "0", vec![s(0)]),
        ];
        for (name, value, want) in parse {
            assert_eq!(&parse_record(value), want, "parse: {name}");
        }
        let ms = Duration::from_millis;
        let format: &[(&str, Vec<Duration>, &str)] = &[
            ("empty", vec![], ""),
            (
                "whole seconds, rounded",
                vec![ms(250_499), ms(250_500), ms(0)],
                "250 251 0",
            ),
        ];
        for (name, record, want) in format {
            assert_eq!(format_record(record), *want, "format: {name}");
            assert!(format_record(record).len() <= 256, "a tag value: {name}");
        }
        let append: &[(&str, Vec<Duration>, Duration, Vec<Duration>)] = &[
            ("first", vec![], s(5), vec![s(5)]),
            ("second", vec![s(4)], s(5), vec![s(4), s(5)]),
            ("third", vec![s(3), s(4)], s(5), vec![s(3), s(4), s(5)]),
            (
                "the oldest goes",
                vec![s(2), s(3), s(4)],
                s(5),
                vec![s(3), s(4), s(5)],
            ),
            (
                "a longer record is cut",
                vec![s(1), s(2), s(3), s(4)],
                s(5),
                vec![s(3), s(4), s(5)],
            ),
        ];
        for (name, record, new, want) in append {
            assert_eq!(&append_record(record, *new), want, "append: {name}");
        }
        assert_eq!(
            parse_record(&format_record(&append_record(
                &parse_record("251 248 260"),
                s(270)
            ))),
            vec![s(248), s(260), s(270)],
            "round trip"
        );
        assert_eq!(record_key(Start), crate::tags::START_SECONDS);
        assert_eq!(record_key(Stop), crate::tags::STOP_SECONDS);
    }

    #[test]
    fn the_expectation_comes_from_the_record_first_then_the_events() {
        let s = Duration::from_secs;
        let pair = vec![(0, AUTO), (100_000, "DB instance started")];
        type Case<'a> = (
            &'a str,
            Vec<Duration>,
            Vec<(i64, &'a str)>,
            DbWant,
            Option<(u64, usize, Source)>,
        );
        let cases: Vec<Case> = vec![
            ("nothing", vec![], vec![], Start, None),
            (
                "events only",
                vec![],
                pair.clone(),
                Start,
                Some((100, 1, Source::Events)),
            ),
            (
                "record only",
                vec![s(250)],
                vec![],
                Start,
                Some((250, 1, Source::Recorded)),
            ),
            (
                "the record wins over events",
                vec![s(250), s(260)],
                pair.clone(),
                Start,
                Some((255, 2, Source::Recorded)),
            ),
            (
                "median of the record",
                vec![s(251), s(248), s(260)],
                vec![],
                Start,
                Some((251, 3, Source::Recorded)),
            ),
            (
                "events without a sample",
                vec![],
                vec![(0, "DB instance started")],
                Start,
                None,
            ),
            ("events of the other move", vec![], pair, Stop, None),
        ];
        for (name, recorded, events, want, expected) in cases {
            let got = usual(&recorded, &events, want)
                .map(|u| (u.duration.as_secs(), u.samples, u.source));
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn a_move_is_measured_from_the_call_to_its_completion_event_or_to_the_look_that_saw_it() {
        let called = 1_000_000;
        let events = vec![
            (900_000, "DB instance started"),
            (1_400_000, "DB instance started"),
            (1_000_500, "DB instance stopped"),
            (1_250_000, "DB instance started."),
            (1_300_000, "DB cluster started"),
        ];
        type Case<'a> = (&'a str, Vec<(i64, &'a str)>, DbWant, Option<i64>);
        let completion: Vec<Case> = vec![
            ("no events", vec![], Start, None),
            (
                "the first start after the call (sorted by date)",
                events.clone(),
                Start,
                Some(1_250_000),
            ),
            ("a stop's", events.clone(), Stop, Some(1_000_500)),
            (
                "one before the call is an earlier start",
                vec![(999_999, "DB instance started")],
                Start,
                None,
            ),
            (
                "at the call's millisecond",
                vec![(called, "DB cluster stopped")],
                Stop,
                Some(called),
            ),
            (
                "other messages",
                vec![(1_100_000, "DB instance restarted")],
                Start,
                None,
            ),
        ];
        for (name, events, want, expected) in completion {
            assert_eq!(
                completion_after(&events, want, called),
                expected,
                "completion: {name}"
            );
        }
        let ms = Duration::from_millis;
        let measure: &[(&str, Option<i64>, i64, Option<Duration>)] = &[
            (
                "to the event",
                Some(1_250_000),
                1_260_000,
                Some(ms(250_000)),
            ),
            ("no event: to the look", None, 1_260_000, Some(ms(260_000))),
            (
                "the event after the look (clocks apart): still the event",
                Some(1_262_000),
                1_260_000,
                Some(ms(262_000)),
            ),
            ("a look before the call (a clock step)", None, 999_000, None),
            ("longer than two hours", None, called + 3 * 3_600_000, None),
            ("instant", None, called, Some(ms(0))),
        ];
        for (name, completed, seen, expected) in measure {
            assert_eq!(
                measured(called, *completed, *seen),
                *expected,
                "measured: {name}"
            );
        }
    }
}
