//! The gates a phase passes before it changes an environment, as pure decisions with table tests:
//! - **freeze**: a configured window (dates or weekly, UTC) covers now; `override-freeze: "<reason>"` passes it;
//! - **one at a time**: another deployment of the environment is in progress and is not this run's;
//! - **promotion**: the environment `requires` another, and the version has no successful deployment there.
//!
//! Fetching what the last two decide on (the GitHub Deployments API) is in [`crate::wrapper`].

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{day_name, hhmm, Freeze};
use crate::github::deployments::{DeploymentSeen, StatusState};
use crate::inputs::Phase;

/// Which gates apply to a phase. `None` for phases that change nothing (no gate, no deployment record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateSet {
    pub freeze: bool,
    pub one_at_a_time: bool,
    pub promotion: bool,
}

/// A freeze stops changes to what users get (state, migrate, deploy, run) but not a snapshot (a backup) or a
/// rollback (the way out of an incident). Promotion guards what runs a version: its migration and its deploy.
pub fn gates_for(phase: Phase) -> Option<GateSet> {
    let set = |freeze, promotion| {
        Some(GateSet {
            freeze,
            one_at_a_time: true,
            promotion,
        })
    };
    match phase {
        Phase::Status | Phase::CheckConfig | Phase::IamPolicy | Phase::Init => None,
        // A review app is not what users get: no freeze, no promotion.
        // A restore is the way out of a failed migration, like a rollback.
        Phase::Snapshot | Phase::Rollback | Phase::Restore | Phase::Preview => set(false, false),
        Phase::State | Phase::Run => set(true, false),
        Phase::Migrate | Phase::Deploy => set(true, true),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    Freeze,
    OneAtATime,
    Promotion,
}

impl Gate {
    pub fn name(self) -> &'static str {
        match self {
            Gate::Freeze => "freeze",
            Gate::OneAtATime => "one at a time",
            Gate::Promotion => "promotion",
        }
    }
}

/// One gate's verdict, with the text that explains it (for the log, the summary and the refusal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "detail", rename_all = "kebab-case")]
pub enum GateVerdict {
    Pass(String),
    /// The freeze applies but `override-freeze` gave a reason.
    Overridden(String),
    /// The gate could not be checked (GitHub not available) and was skipped.
    Skipped(String),
    Refuse(String),
}

impl GateVerdict {
    pub fn refuses(&self) -> bool {
        matches!(self, GateVerdict::Refuse(_))
    }

    pub fn label(&self) -> &'static str {
        match self {
            GateVerdict::Pass(_) => "pass",
            GateVerdict::Overridden(_) => "overridden",
            GateVerdict::Skipped(_) => "skipped",
            GateVerdict::Refuse(_) => "refused",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            GateVerdict::Pass(d)
            | GateVerdict::Overridden(d)
            | GateVerdict::Skipped(d)
            | GateVerdict::Refuse(d) => d,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateResult {
    pub gate: Gate,
    #[serde(flatten)]
    pub verdict: GateVerdict,
}

/// The reason `now` is frozen (the window's reason and the window), or `None`.
pub fn frozen_at(freeze: &Freeze, now: OffsetDateTime) -> Option<String> {
    let now = now.to_offset(time::UtcOffset::UTC);
    let today = now.date();
    for w in &freeze.dates {
        if w.from <= today && today <= w.to {
            let span = if w.from == w.to {
                format!("{} UTC", w.from)
            } else {
                format!("{} to {} UTC", w.from, w.to)
            };
            return Some(describe(w.reason.as_deref(), &span));
        }
    }
    let minute = u16::from(now.hour()) * 60 + u16::from(now.minute());
    let day = now.weekday();
    for w in &freeze.weekly {
        let covers = if w.from < w.to {
            w.days.contains(&day) && (w.from..=w.to).contains(&minute)
        } else {
            // Past midnight: from `from` on a listed day to `to` on the next day.
            (w.days.contains(&day) && minute >= w.from)
                || (w.days.contains(&day.previous()) && minute <= w.to)
        };
        if covers {
            let days: Vec<&str> = w.days.iter().map(|d| day_name(*d)).collect();
            let span = format!("{} {}-{} UTC", days.join(", "), hhmm(w.from), hhmm(w.to));
            return Some(describe(w.reason.as_deref(), &span));
        }
    }
    None
}

fn describe(reason: Option<&str>, span: &str) -> String {
    match reason {
        Some(r) => format!("{r} ({span})"),
        None => format!("freeze window {span}"),
    }
}

/// The freeze gate: frozen and not overridden refuses, naming the window and both ways forward.
pub fn freeze_gate(
    environment: &str,
    freeze: &Freeze,
    now: OffsetDateTime,
    override_reason: Option<&str>,
) -> GateVerdict {
    match (frozen_at(freeze, now), override_reason) {
        (None, _) => GateVerdict::Pass("no freeze window applies now".into()),
        (Some(why), Some(reason)) => {
            GateVerdict::Overridden(format!("{environment} is frozen ({why}); overridden: {reason}"))
        }
        (Some(why), None) => GateVerdict::Refuse(format!(
            "freeze gate: {environment} is frozen now: {why}; wait until the window ends, or set `override-freeze: \"<reason>\"` (--override-freeze) to go ahead anyway"
        )),
    }
}

/// Active deployments that are not this run's: the candidates that may block. Runs known to have finished
/// (`finished_runs`) left stale records behind and do not block.
pub fn blockers<'a>(
    seen: &'a [DeploymentSeen],
    this_run: &str,
    finished_runs: &[String],
) -> Vec<&'a DeploymentSeen> {
    seen.iter()
        .filter(|d| d.is_active())
        .filter(|d| d.run_id.as_deref() != Some(this_run))
        .filter(|d| !d.run_id.as_ref().is_some_and(|r| finished_runs.contains(r)))
        .collect()
}

/// The one-at-a-time gate from the blockers left after the stale check.
pub fn one_at_a_time_gate(environment: &str, blockers: &[&DeploymentSeen]) -> GateVerdict {
    match blockers.first() {
        None => GateVerdict::Pass(format!("no other deployment of {environment} is in progress")),
        Some(other) => GateVerdict::Refuse(format!(
            "one-at-a-time gate: another deployment of {environment} is in progress: {}; wait for it to finish (or cancel that run) and re-run this job",
            other.describe()
        )),
    }
}

/// The deployment GitHub made for this job's own `environment:` (active, not ours, this run), if any.
pub fn this_jobs_record<'a>(
    seen: &'a [DeploymentSeen],
    this_run: &str,
) -> Option<&'a DeploymentSeen> {
    seen.iter()
        .find(|d| !d.ours && d.is_active() && d.run_id.as_deref() == Some(this_run))
}

/// Whether `d` deployed `version` (at commit `sha`, when known): our records by their payload's version and the
/// deploy phase; others (a job's `environment:` record) by ref or commit.
pub fn deployed_version(d: &DeploymentSeen, version: &str, sha: Option<&str>) -> bool {
    if d.ours {
        d.phase.as_deref() == Some("deploy") && d.version.as_deref() == Some(version)
    } else {
        d.git_ref == version || sha.is_some_and(|s| !s.is_empty() && d.sha == s)
    }
}

/// A deployment succeeded when any of its statuses is success and it did not fail after.
pub fn succeeded(d: &DeploymentSeen) -> bool {
    for s in &d.states {
        match s {
            StatusState::Success => return true,
            StatusState::Failure | StatusState::Error => return false,
            // `inactive` follows success when a newer deployment replaced it.
            StatusState::Inactive
            | StatusState::InProgress
            | StatusState::Queued
            | StatusState::Pending
            | StatusState::Waiting
            | StatusState::Unknown(_) => {}
        }
    }
    false
}

/// The promotion gate: `candidates` are the deployments of `required` that deployed the version (with statuses).
pub fn promotion_gate(
    environment: &str,
    required: &str,
    version: &str,
    candidates: &[DeploymentSeen],
    looked_at: usize,
) -> GateVerdict {
    match candidates.iter().find(|d| succeeded(d)) {
        Some(d) => GateVerdict::Pass(format!(
            "{version} was deployed to {required} successfully ({})",
            d.describe()
        )),
        None => GateVerdict::Refuse(format!(
            "promotion gate: {environment} requires {required} first, and {version} has no successful deployment on {required} (looked at its {looked_at} most recent deployments); deploy {version} to {required} first"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DateWindow, WeeklyWindow};
    use crate::github::deployments::run_id_in_url;
    use time::macros::{date, datetime};
    use time::Weekday::*;

    fn freeze() -> Freeze {
        Freeze {
            dates: vec![DateWindow {
                from: date!(2026 - 12 - 20),
                to: date!(2027 - 01 - 05),
                reason: Some("holidays".into()),
            }],
            weekly: vec![
                WeeklyWindow {
                    days: vec![Friday, Saturday],
                    from: 16 * 60,
                    to: 23 * 60 + 59,
                    reason: Some("weekend".into()),
                },
                // Past midnight: Sunday 22:00 to Monday 06:00.
                WeeklyWindow {
                    days: vec![Sunday],
                    from: 22 * 60,
                    to: 6 * 60,
                    reason: None,
                },
            ],
        }
    }

    #[test]
    fn freeze_windows() {
        let f = freeze();
        // 2026-12-18 is a Friday.
        let cases: &[(OffsetDateTime, Option<&str>)] = &[
            (datetime!(2026-12-19 12:00 UTC), None),
            (
                datetime!(2026-12-19 23:59:59 UTC),
                Some("weekend (fri, sat 16:00-23:59 UTC)"),
            ),
            (
                datetime!(2026-12-20 00:00 UTC),
                Some("holidays (2026-12-20 to 2027-01-05 UTC)"),
            ),
            (
                datetime!(2027-01-05 23:59 UTC),
                Some("holidays (2026-12-20 to 2027-01-05 UTC)"),
            ),
            (datetime!(2027-01-06 00:00 UTC), None),
            (datetime!(2026-12-18 15:59 UTC), None),
            (
                datetime!(2026-12-18 16:00 UTC),
                Some("weekend (fri, sat 16:00-23:59 UTC)"),
            ),
            (
                datetime!(2026-12-18 23:59:30 UTC),
                Some("weekend (fri, sat 16:00-23:59 UTC)"),
            ),
            (datetime!(2026-12-17 18:00 UTC), None),
            (datetime!(2026-11-29 21:59 UTC), None),
            (
                datetime!(2026-11-29 22:00 UTC),
                Some("freeze window sun 22:00-06:00 UTC"),
            ),
            (
                datetime!(2026-11-30 06:00 UTC),
                Some("freeze window sun 22:00-06:00 UTC"),
            ),
            (datetime!(2026-11-30 06:01 UTC), None),
            // Monday night is not Sunday night.
            (datetime!(2026-11-30 23:00 UTC), None),
            // Offsets are converted to UTC: 17:30+02:00 is 15:30 UTC on a Friday.
            (datetime!(2026-11-27 17:30 +02:00), None),
            (
                datetime!(2026-11-27 19:30 +02:00),
                Some("weekend (fri, sat 16:00-23:59 UTC)"),
            ),
        ];
        for (now, want) in cases {
            assert_eq!(frozen_at(&f, *now).as_deref(), *want, "{now}");
        }
        assert_eq!(
            frozen_at(&Freeze::default(), datetime!(2026-12-24 12:00 UTC)),
            None
        );
    }

    #[test]
    fn freeze_gate_refuses_unless_overridden() {
        let f = freeze();
        let frozen = datetime!(2026-12-24 12:00 UTC);
        let v = freeze_gate("prod", &f, frozen, None);
        assert!(v.refuses());
        let msg = v.detail();
        assert!(
            msg.contains("prod is frozen now: holidays") && msg.contains("override-freeze"),
            "{msg}"
        );
        let v = freeze_gate("prod", &f, frozen, Some("hotfix INC-42"));
        assert_eq!(v.label(), "overridden");
        assert!(v.detail().contains("hotfix INC-42"));
        assert_eq!(
            freeze_gate("prod", &f, datetime!(2026-11-25 12:00 UTC), None).label(),
            "pass"
        );
    }

    #[test]
    fn which_gates_apply() {
        let g = |p| gates_for(p).map(|g: GateSet| (g.freeze, g.one_at_a_time, g.promotion));
        assert_eq!(g(Phase::Status), None);
        assert_eq!(g(Phase::CheckConfig), None);
        assert_eq!(g(Phase::Snapshot), Some((false, true, false)));
        assert_eq!(g(Phase::Rollback), Some((false, true, false)));
        assert_eq!(g(Phase::Preview), Some((false, true, false)));
        assert_eq!(g(Phase::State), Some((true, true, false)));
        assert_eq!(g(Phase::Run), Some((true, true, false)));
        assert_eq!(g(Phase::Migrate), Some((true, true, true)));
        assert_eq!(g(Phase::Deploy), Some((true, true, true)));
    }

    fn seen(id: u64, ours: bool, run: Option<&str>, states: &[&str]) -> DeploymentSeen {
        DeploymentSeen {
            id,
            ours,
            task: if ours {
                "deploy:deploy".into()
            } else {
                "deploy".into()
            },
            git_ref: "v1.2.3".into(),
            sha: "abc".into(),
            run_id: run.map(str::to_string),
            phase: ours.then(|| "deploy".to_string()),
            version: ours.then(|| "v1.2.3".to_string()),
            states: states.iter().map(|s| StatusState::parse(s)).collect(),
            log_url: run.map(|r| format!("https://github.com/acme/backend/actions/runs/{r}")),
        }
    }

    #[test]
    fn active_states() {
        for (s, active) in [
            ("in_progress", true),
            ("queued", true),
            ("pending", true),
            ("waiting", false),
            ("success", false),
            ("failure", false),
            ("error", false),
            ("inactive", false),
            ("something_new", false),
        ] {
            assert_eq!(StatusState::parse(s).is_active(), active, "{s}");
        }
    }

    #[test]
    fn one_at_a_time() {
        let this = "4242";
        // name, deployments, runs known to have finished, the blocker expected
        type Case<'a> = (&'a str, Vec<DeploymentSeen>, &'a [&'a str], Option<u64>);
        let cases: &[Case] = &[
            ("nothing deployed", vec![], &[], None),
            (
                "finished ones",
                vec![
                    seen(1, true, Some("1"), &["success", "in_progress"]),
                    seen(2, false, Some("2"), &["failure"]),
                ],
                &[],
                None,
            ),
            (
                "another run in progress",
                vec![seen(3, true, Some("99"), &["in_progress"])],
                &[],
                Some(3),
            ),
            (
                "another run queued",
                vec![seen(4, false, Some("99"), &["queued"])],
                &[],
                Some(4),
            ),
            (
                "this run's own earlier record",
                vec![seen(5, true, Some(this), &["in_progress"])],
                &[],
                None,
            ),
            (
                "this job's environment record",
                vec![seen(6, false, Some(this), &["in_progress"])],
                &[],
                None,
            ),
            (
                "a stale record of a finished run",
                vec![seen(7, true, Some("98"), &["in_progress"])],
                &["98"],
                None,
            ),
            (
                "unknown run in progress blocks",
                vec![seen(8, false, None, &["in_progress"])],
                &[],
                Some(8),
            ),
            (
                "no status yet",
                vec![seen(9, true, Some("97"), &[])],
                &[],
                None,
            ),
            (
                "waiting for approval",
                vec![seen(10, false, Some("96"), &["waiting"])],
                &[],
                None,
            ),
        ];
        for (name, list, finished, want) in cases {
            let finished: Vec<String> = finished.iter().map(|s| s.to_string()).collect();
            let b = blockers(list, this, &finished);
            assert_eq!(b.first().map(|d| d.id), *want, "{name}");
            let v = one_at_a_time_gate("prod", &b);
            assert_eq!(v.refuses(), want.is_some(), "{name}");
        }
        let b = [seen(3, true, Some("99"), &["in_progress"])];
        let v = one_at_a_time_gate("prod", &blockers(&b, this, &[]));
        assert_eq!(
            v.detail(),
            "one-at-a-time gate: another deployment of prod is in progress: deployment 3 (deploy v1.2.3, https://github.com/acme/backend/actions/runs/99); wait for it to finish (or cancel that run) and re-run this job"
        );
    }

    #[test]
    fn the_jobs_own_environment_record_is_found() {
        let list = vec![
            seen(1, true, Some("4242"), &["in_progress"]),
            seen(2, false, Some("4242"), &["success"]),
            seen(3, false, Some("4242"), &["in_progress"]),
        ];
        assert_eq!(this_jobs_record(&list, "4242").map(|d| d.id), Some(3));
        assert_eq!(this_jobs_record(&list, "1"), None);
    }

    #[test]
    fn run_ids_in_urls() {
        assert_eq!(
            run_id_in_url("https://github.com/a/b/actions/runs/123").as_deref(),
            Some("123")
        );
        assert_eq!(
            run_id_in_url("https://github.com/a/b/actions/runs/123/job/9").as_deref(),
            Some("123")
        );
        assert_eq!(run_id_in_url("https://github.com/a/b/actions/runs/"), None);
        assert_eq!(run_id_in_url("https://example.org/log"), None);
    }

    #[test]
    fn promotion() {
        let mut other = seen(2, false, Some("1"), &["success"]);
        other.git_ref = "main".into();
        let mut failed_after = seen(3, true, Some("1"), &["failure", "success"]);
        failed_after.id = 3;
        let mut snapshot_only = seen(4, true, Some("1"), &["success"]);
        snapshot_only.phase = Some("snapshot".into());
        let cases: &[(&str, DeploymentSeen, Option<&str>, bool, bool)] = &[
            // name, deployment, sha of the version, deployed this version, succeeded
            (
                "ours, success",
                seen(1, true, Some("1"), &["success"]),
                None,
                true,
                true,
            ),
            (
                "ours, replaced later",
                seen(1, true, Some("1"), &["inactive", "success", "in_progress"]),
                None,
                true,
                true,
            ),
            (
                "ours, still running",
                seen(1, true, Some("1"), &["in_progress"]),
                None,
                true,
                false,
            ),
            (
                "ours, failed",
                seen(1, true, Some("1"), &["failure", "in_progress"]),
                None,
                true,
                false,
            ),
            (
                "ours, failed after success",
                failed_after.clone(),
                None,
                true,
                false,
            ),
            (
                "ours, a snapshot is not a deploy",
                snapshot_only.clone(),
                None,
                false,
                true,
            ),
            (
                "a job record on the tag",
                seen(2, false, Some("1"), &["success"]),
                None,
                true,
                true,
            ),
            (
                "a job record on main at the tag's commit",
                other.clone(),
                Some("abc"),
                true,
                true,
            ),
            (
                "a job record on main at another commit",
                other.clone(),
                Some("def"),
                false,
                true,
            ),
            (
                "a job record on main, commit unknown",
                other.clone(),
                None,
                false,
                true,
            ),
        ];
        for (name, d, sha, deployed, ok) in cases {
            assert_eq!(deployed_version(d, "v1.2.3", *sha), *deployed, "{name}");
            assert_eq!(succeeded(d), *ok, "{name}");
        }
        let good = [seen(1, true, Some("1"), &["success"])];
        assert_eq!(
            promotion_gate("prod", "stage", "v1.2.3", &good, 5).label(),
            "pass"
        );
        let v = promotion_gate("prod", "stage", "v1.2.3", &[failed_after], 5);
        assert_eq!(
            v.detail(),
            "promotion gate: prod requires stage first, and v1.2.3 has no successful deployment on stage (looked at its 5 most recent deployments); deploy v1.2.3 to stage first"
        );
    }
}
