//! Issue 7, bad input: a corpus of malformed inputs across every phase (versions, environment names, states,
//! booleans, numbers, durations, headers, URLs, command JSON, config files), each run through the real binary against
//! one seeded local AWS. Every case must exit 2 with exactly one line on stderr naming the input or key, must not
//! panic, and must make no AWS call at all (the emulator's call log stays empty). Property tests check the same
//! parsers at the library level.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};

use deploy_action::aws::rds::snapshot_identifier as rds_identifier;
use deploy_action::config::Config;
use deploy_action::domain::converge::bypass_header;
use deploy_action::inputs::{parse_bool, parse_duration, parse_u64, Phase};
use deploy_action::phases::snapshot::{snapshot_id, Placeholders};
use deploy_action::phases::state::parse_target;
use deploy_action::version::{is_valid_image_tag, ImageTagTemplate, Version};

use crate::support::{RunResult, TestContext};

/// The phases that take an environment, as subcommands.
const PHASES: [&str; 6] = [
    "status", "state", "snapshot", "migrate", "deploy", "rollback",
];
/// The phases that take a version.
const VERSIONED: [&str; 4] = ["snapshot", "migrate", "deploy", "rollback"];

/// How a case reaches the binary.
#[derive(Debug, Clone)]
enum Front {
    /// `deploy-action <args...>` in the test directory.
    Cli(Vec<String>),
    /// The Action: `INPUT_*` variables.
    Action(Vec<(String, String)>),
}

#[derive(Debug, Clone)]
struct Case {
    /// Where the case comes from (shown when it fails).
    origin: String,
    front: Front,
    /// What the one stderr line must contain: the input's or key's name.
    needle: String,
    /// A second acceptable needle (only for `run`, whose phase is a stub on this branch).
    or_needle: Option<String>,
}

fn cli(origin: impl Into<String>, args: &[&str], needle: impl Into<String>) -> Case {
    Case {
        origin: origin.into(),
        front: Front::Cli(args.iter().map(|s| s.to_string()).collect()),
        needle: needle.into(),
        or_needle: None,
    }
}

fn action(origin: impl Into<String>, inputs: &[(&str, &str)], needle: impl Into<String>) -> Case {
    Case {
        origin: origin.into(),
        front: Front::Action(
            inputs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        needle: needle.into(),
        or_needle: None,
    }
}

/// The CLI arguments of a phase run on `stage` with the seeded config, plus what each phase needs to get past its
/// own required inputs (so the case tests only the one bad input it adds).
fn base_args(phase: &str) -> Vec<String> {
    let mut v: Vec<String> = [phase, "--env", "stage", "-c", "deploy.toml"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match phase {
        "state" => v.extend(["--state".into(), "db-only".into()]),
        "snapshot" | "migrate" | "deploy" => v.extend(["--version".into(), "v2.0.0".into()]),
        _ => {}
    }
    v
}

/// `base_args` with `flag value` replacing the flag's default (or added).
fn with_flag(phase: &str, flag: &str, value: &str) -> Vec<String> {
    let mut v = base_args(phase);
    if let Some(i) = v.iter().position(|a| a == flag) {
        v.remove(i + 1);
        v.remove(i);
    }
    // `--flag=value`, so a value that starts with '-' is still a value.
    v.push(format!("{flag}={value}"));
    v
}

fn cli_owned(origin: impl Into<String>, args: Vec<String>, needle: impl Into<String>) -> Case {
    Case {
        origin: origin.into(),
        front: Front::Cli(args),
        needle: needle.into(),
        or_needle: None,
    }
}

/// The Action inputs of a phase run on `stage`, with `extra` replacing or adding inputs.
fn action_inputs(phase: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![
        ("phase".into(), phase.into()),
        ("environment".into(), "stage".into()),
        ("config".into(), "deploy.toml".into()),
    ];
    match phase {
        "state" => v.push(("state".into(), "db-only".into())),
        "snapshot" | "migrate" | "deploy" => v.push(("version".into(), "v2.0.0".into())),
        _ => {}
    }
    for (k, val) in extra {
        v.retain(|(kk, _)| kk != k);
        v.push((k.to_string(), val.to_string()));
    }
    v
}

fn action_owned(origin: impl Into<String>, inputs: Vec<(String, String)>, needle: &str) -> Case {
    Case {
        origin: origin.into(),
        front: Front::Action(inputs),
        needle: needle.into(),
        or_needle: None,
    }
}

/// Hand-picked versions no phase may accept.
fn bad_versions() -> Vec<String> {
    let mut v: Vec<String> = [
        "v1 2",
        "v1\t2",
        "v1\n2",
        "ü",
        "v1.0.0-ß",
        "日本",
        "🚀",
        "..",
        "a..b",
        "../etc/passwd",
        "//",
        "a//b",
        "/abs",
        "api/",
        ".hidden",
        "-rc1",
        "+build",
        "v1;rm -rf /",
        "$(whoami)",
        "`id`",
        "a|b",
        "a&b",
        "a>b",
        "a<b",
        "v1:2",
        "v1@sha256",
        "v1*",
        "v1?",
        "v1#",
        "v1\"",
        "v1'",
        "v1\\",
        "v1%",
        "v1!",
        "{version}",
        "v1,2",
        "v1=2",
        "v1~",
        "(v1)",
        "v1\u{0}",
    ]
    .iter()
    .map(|s| s.to_string())
    .filter(|s| !s.contains('\0'))
    .collect();
    v.push("x".repeat(129));
    v.push(format!("v{}", "1".repeat(300)));
    v
}

/// Versions that pass as versions but cannot form the image tag of the seeded templates (`core-{version}`,
/// `migrate-{version}`: 128 characters at most).
fn too_long_for_a_tag() -> Vec<String> {
    vec!["v".repeat(124), format!("v1.{}", "0".repeat(122))]
}

/// Strings that are not valid versions, by construction (not by asking the parser): a valid stem with a character
/// outside `[A-Za-z0-9._/+-]` put in, a bad first character, or `..` / `//` inside.
fn invalid_version_strategy() -> impl Strategy<Value = String> {
    let stem = "[a-z0-9][a-z0-9._-]{1,20}";
    let forbidden = prop_oneof![
        Just(' '),
        Just(':'),
        Just(';'),
        Just('$'),
        Just('@'),
        Just('*'),
        Just('!'),
        Just('#'),
        Just('é'),
        Just('€'),
        Just('\t'),
        Just('"'),
        "[\\p{Han}]".prop_map(|s| s.chars().next().unwrap_or('中')),
    ];
    let inserted = (stem, forbidden, any::<prop::sample::Index>()).prop_map(|(s, c, at)| {
        // Inside the stem (never first or last), so trimming cannot remove it.
        let chars: Vec<char> = s.chars().collect();
        let at = 1 + at.index(chars.len() - 1);
        let mut out: String = chars[..at].iter().collect();
        out.push(c);
        out.extend(chars[at..].iter());
        out
    });
    let bad_start = ("[./+-]", stem).prop_map(|(a, b)| format!("{a}{b}"));
    let dots = (stem, prop_oneof![Just(".."), Just("//")], stem)
        .prop_map(|(a, sep, b)| format!("{a}{sep}{b}"));
    let too_long = "[a-z]{129,200}";
    prop_oneof![4 => inserted, 1 => bad_start, 1 => dots, 1 => too_long]
}

/// Environment names that are not `stage` (after trimming, as the inputs are).
fn invalid_env_strategy() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ./_$;-]{1,24}|\\PC{1,12}".prop_filter("not the seeded environment", |s| {
        s.trim() != "stage" && !s.trim().is_empty() && !s.starts_with('-')
    })
}

/// States no phase takes as a target.
fn invalid_state_strategy() -> impl Strategy<Value = String> {
    "[a-z_ -]{1,14}|\\PC{1,8}".prop_filter("not a state", |s| {
        let t = s.trim().to_ascii_lowercase();
        !t.is_empty()
            && !s.starts_with('-')
            && ![
                "running",
                "restricted",
                "db-only",
                "db_only",
                "dbonly",
                "stopped",
            ]
            .contains(&t.as_str())
    })
}

fn sample<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("a value").current())
        .collect()
}

/// Every malformed input of the corpus, except config files.
fn input_cases() -> Vec<Case> {
    let mut cases = Vec::new();

    // Versions: hand-picked, on every phase that takes one.
    for v in bad_versions() {
        for phase in VERSIONED {
            cases.push(cli_owned(
                format!("version {v:?} on {phase}"),
                with_flag(phase, "--version", &v),
                "input `version`",
            ));
        }
    }
    // A version too long for the image tag: refused by the phases that build images, before any call.
    for v in too_long_for_a_tag() {
        for phase in ["migrate", "deploy", "rollback"] {
            cases.push(cli_owned(
                format!("version of {} chars on {phase}", v.len()),
                with_flag(phase, "--version", &v),
                "input `version`",
            ));
        }
    }
    // Missing versions, CLI and Action (empty and blank count as missing).
    for phase in ["snapshot", "migrate", "deploy"] {
        let args: Vec<String> = base_args(phase)
            .into_iter()
            .take_while(|a| a != "--version")
            .collect();
        cases.push(cli_owned(
            format!("no version on {phase}"),
            args,
            "input `version`: missing",
        ));
        for blank in ["", " ", "\t"] {
            cases.push(action_owned(
                format!("version {blank:?} (Action) on {phase}"),
                action_inputs(phase, &[("version", blank)]),
                "input `version`: missing",
            ));
        }
    }
    // Generated invalid versions, spread over the phases.
    for (i, v) in sample(invalid_version_strategy(), 40)
        .into_iter()
        .enumerate()
    {
        let phase = VERSIONED[i % VERSIONED.len()];
        let case = if i % 2 == 0 {
            cli_owned(
                format!("generated version {v:?} on {phase}"),
                with_flag(phase, "--version", &v),
                "input `version`",
            )
        } else {
            action_owned(
                format!("generated version {v:?} (Action) on {phase}"),
                action_inputs(phase, &[("version", &v)]),
                "input `version`",
            )
        };
        cases.push(case);
    }

    // Environment names.
    let envs: Vec<String> = [
        "qa",
        "STAGE",
        "Stage",
        "stage2",
        "prod",
        "../stage",
        "stage/..",
        "st age",
        "stäge",
        "stage;rm -rf /",
        "$(id)",
        "*",
        "default",
        "defaults",
        "environments.stage",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once("s".repeat(300)))
    .collect();
    for (i, e) in envs.iter().enumerate() {
        let phase = PHASES[i % PHASES.len()];
        let mut args = base_args(phase);
        args[2] = e.clone();
        cases.push(cli_owned(
            format!("environment {e:?} on {phase}"),
            args,
            "input `environment`",
        ));
    }
    for (i, e) in sample(invalid_env_strategy(), 16).into_iter().enumerate() {
        let phase = PHASES[i % PHASES.len()];
        cases.push(action_owned(
            format!("generated environment {e:?} (Action) on {phase}"),
            action_inputs(phase, &[("environment", &e)]),
            "input `environment`",
        ));
    }
    for phase in ["status", "deploy"] {
        let mut args = base_args(phase);
        args.drain(1..3);
        cases.push(cli_owned(
            format!("no environment on {phase}"),
            args,
            "input `environment`: missing",
        ));
    }

    // States: the state phase, and deploy (which takes only running or restricted).
    for s in [
        "mixed",
        "Mixed",
        "run",
        "running!",
        "db only",
        "dbonly2",
        "stop",
        "start",
        "up",
        "down",
        "restricted;",
        "ｒｕｎｎｉｎｇ",
        "rünning",
        "0",
        "true",
    ] {
        cases.push(cli_owned(
            format!("state {s:?}"),
            with_flag("state", "--state", s),
            "input `state`",
        ));
    }
    cases.push(cli_owned(
        "no state",
        base_args("state")[..5].to_vec(),
        "input `state`: missing",
    ));
    for (i, s) in sample(invalid_state_strategy(), 12).into_iter().enumerate() {
        let phase = if i % 3 == 2 { "deploy" } else { "state" };
        cases.push(action_owned(
            format!("generated state {s:?} (Action) on {phase}"),
            action_inputs(phase, &[("state", &s)]),
            "input `state`",
        ));
    }
    for s in ["db-only", "stopped", "mixed", "RUNNING", "Restricted "] {
        cases.push(cli_owned(
            format!("deploy state {s:?}"),
            with_flag("deploy", "--state", s),
            "input `state`",
        ));
    }
    // restricted needs the bypass header.
    cases.push(cli_owned(
        "restricted without the bypass header",
        with_flag("state", "--state", "restricted"),
        "maintenance-header-name",
    ));

    // Booleans (Action inputs; the CLI has flags).
    let bools: &[(&str, &str)] = &[
        ("status", "dry-run"),
        ("state", "skip-drain"),
        ("migrate", "allow-without-snapshot"),
        ("rollback", "fast"),
        ("rollback", "wait"),
    ];
    for (i, v) in [
        "maybe",
        "2",
        "yes please",
        "tru",
        "ja",
        "✓",
        "-1",
        "null",
        "TRUE!",
        "on off",
    ]
    .iter()
    .enumerate()
    {
        for (j, (phase, input)) in bools.iter().enumerate() {
            if (i + j) % 2 == 0 {
                cases.push(action_owned(
                    format!("{input} {v:?} on {phase}"),
                    action_inputs(phase, &[(input, v)]),
                    &format!("input `{input}`"),
                ));
            }
        }
    }

    // Numbers.
    for v in [
        "0",
        "-1",
        "1441",
        "ten",
        "1.5",
        "1e3",
        "99999999999999999999",
        "5 5",
    ] {
        cases.push(action_owned(
            format!("timeout-minutes {v:?}"),
            action_inputs("status", &[("timeout-minutes", v)]),
            "input `timeout-minutes`",
        ));
    }
    for v in ["x", "-3", "1.5", "99999999999999999999"] {
        cases.push(cli_owned(
            format!("--timeout-minutes {v:?}"),
            with_flag("deploy", "--timeout-minutes", v),
            "--timeout-minutes",
        ));
    }
    for v in ["0", "1001", "-3", "many"] {
        cases.push(action_owned(
            format!("keep-revisions {v:?}"),
            action_inputs("rollback", &[("keep-revisions", v)]),
            "input `keep-revisions`",
        ));
    }
    for v in ["99", "600", "abc", "2000"] {
        cases.push(action_owned(
            format!("smoke-status {v:?}"),
            action_inputs(
                "deploy",
                &[
                    ("smoke-status", v),
                    ("smoke-url", "https://stage.example.org/health"),
                ],
            ),
            "input `smoke-status`",
        ));
    }
    cases.push(cli_owned(
        "--smoke-status 70000",
        with_flag("deploy", "--smoke-status", "70000"),
        "--smoke-status",
    ));
    cases.push(cli_owned(
        "smoke-status without smoke-url",
        with_flag("deploy", "--smoke-status", "200"),
        "input `smoke-status`",
    ));
    for url in [
        "ftp://x",
        "not a url",
        "http://",
        "javascript:alert(1)",
        "https://exa mple.org",
        "file:///etc/passwd",
    ] {
        cases.push(cli_owned(
            format!("smoke-url {url:?}"),
            with_flag("deploy", "--smoke-url", url),
            "input `smoke-url`",
        ));
    }

    // Durations.
    for v in [
        "soon",
        "0",
        "0s",
        "-1h",
        "1 fortnight",
        "2 hours ago",
        "h",
        "1.5.5h",
        "∞",
    ] {
        cases.push(cli_owned(
            format!("max-snapshot-age {v:?}"),
            with_flag("migrate", "--max-snapshot-age", v),
            "input `max-snapshot-age`",
        ));
    }

    // The bypass header pair.
    let headers: &[(&str, Option<&str>, Option<&str>, &str)] = &[
        ("state", Some("x-bypass"), None, "maintenance-header-value"),
        ("state", None, Some("s3cret"), "maintenance-header-name"),
        (
            "migrate",
            Some("x bypass"),
            Some("s3cret"),
            "input `maintenance-header-name`",
        ),
        (
            "migrate",
            Some("x:bypass"),
            Some("s3cret"),
            "input `maintenance-header-name`",
        ),
        (
            "deploy",
            Some(&"x".repeat(41)),
            Some("s3cret"),
            "input `maintenance-header-name`",
        ),
        (
            "state",
            Some("x-bypass"),
            Some("se*cret"),
            "input `maintenance-header-value`",
        ),
        (
            "state",
            Some("x-bypass"),
            Some("se?cret"),
            "input `maintenance-header-value`",
        ),
        (
            "deploy",
            Some("x-bypass"),
            Some(&"v".repeat(129)),
            "input `maintenance-header-value`",
        ),
        (
            "migrate",
            Some("x-bypäss"),
            Some("s3cret"),
            "input `maintenance-header-name`",
        ),
    ];
    for (phase, name, value, needle) in headers {
        let mut extra: Vec<(&str, &str)> = vec![];
        if let Some(n) = name {
            extra.push(("maintenance-header-name", n));
        }
        if let Some(v) = value {
            extra.push(("maintenance-header-value", v));
        }
        cases.push(action_owned(
            format!(
                "header {name:?}/{} on {phase}",
                value.map_or("none", |_| "<value>")
            ),
            action_inputs(phase, &extra),
            needle,
        ));
    }
    cases.push(action_owned(
        "header value with a newline",
        action_inputs(
            "state",
            &[
                ("maintenance-header-name", "x-bypass"),
                ("maintenance-header-value", "line1\nline2"),
            ],
        ),
        "input `maintenance-header-value`",
    ));

    // Phase and output.
    for p in ["deplyo", "Deploy!", "deploy;status", "snap shot", "☃"] {
        cases.push(action(
            format!("phase {p:?}"),
            &[
                ("phase", p),
                ("environment", "stage"),
                ("config", "deploy.toml"),
            ],
            "input `phase`",
        ));
    }
    cases.push(action(
        "no phase",
        &[("environment", "stage"), ("config", "deploy.toml")],
        "input `phase`",
    ));
    for o in ["yaml", "JSON!", "xml"] {
        cases.push(action_owned(
            format!("output {o:?}"),
            action_inputs("status", &[("output", o)]),
            "input `output`",
        ));
    }
    cases.push(cli_owned(
        "--output yaml",
        with_flag("status", "--output", "yaml"),
        "--output",
    ));
    cases.push(cli(
        "unknown subcommand",
        &["launch", "--env", "stage"],
        "launch",
    ));
    cases.push(cli_owned(
        "unknown flag",
        with_flag("status", "--bogus", "1"),
        "--bogus",
    ));

    // Command JSON (phase run).
    for cmd in [
        "not json",
        "[]",
        "[1,2]",
        "\"rake db:seed\"",
        "{\"a\":1}",
        "[\"a\", null]",
        "[",
        "[\"\"]",
    ] {
        let args = vec![
            "run",
            "--env",
            "stage",
            "-c",
            "deploy.toml",
            "--task",
            "seed",
            "--version",
            "v2.0.0",
            "--command",
            cmd,
        ];
        let mut case = cli(format!("command {cmd:?}"), &args, "input `command`");
        // `run` is built on another branch; until it lands here its stub refuses every invocation.
        case.or_needle = Some("run is not available in this build".into());
        cases.push(case);
    }

    cases.extend(strict_and_bounded_input_cases());

    // Config file paths.
    for (path, needle) in [
        ("missing.toml", "missing.toml"),
        (".", "config file ."),
        ("garbage.bin", "garbage.bin"),
        ("empty.toml", "no environments"),
    ] {
        let mut args = base_args("status");
        args[4] = path.to_string();
        cases.push(cli_owned(format!("config path {path}"), args, needle));
    }
    cases
}

/// Issue 20: strict parsing, the same in both front ends, and bounds on every number and duration.
fn strict_and_bounded_input_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    // Versions with what used to be trimmed or let through: refused in both forms (GitHub strips nothing inside).
    for v in [
        "v1.0.0 ", "v1.0.0\t", " v1.0.0", "v1.0.0+", "v1.0.0-", "v1.0.0.", "v1.0.0\n",
    ] {
        cases.push(cli_owned(
            format!("version {v:?} (CLI)"),
            with_flag("deploy", "--version", v),
            "input `version`",
        ));
        cases.push(action_owned(
            format!("version {v:?} (Action)"),
            action_inputs("deploy", &[("version", v)]),
            "input `version`",
        ));
    }
    // One spelling per state, lowercase, in both forms.
    for st in [
        "db_only", "dbonly", "RUNNING", "Running", " running", "running ",
    ] {
        cases.push(cli_owned(
            format!("state {st:?} (CLI)"),
            with_flag("state", "--state", st),
            "input `state`",
        ));
        cases.push(action_owned(
            format!("state {st:?} (Action)"),
            action_inputs("state", &[("state", st)]),
            "input `state`",
        ));
    }
    // Numbers: the same value refused by both front ends.
    for n in [
        " 5 ",
        "5 ",
        "0",
        "1441",
        "18446744073709551616",
        "99999999999999999999",
    ] {
        cases.push(action_owned(
            format!("timeout-minutes {n:?} (Action)"),
            action_inputs("status", &[("timeout-minutes", n)]),
            "timeout-minutes",
        ));
        cases.push(cli_owned(
            format!("timeout-minutes {n:?} (CLI)"),
            with_flag("status", "--timeout-minutes", n),
            "timeout-minutes",
        ));
    }
    // Durations that overflow or exceed the bound: refused, never a panic.
    for d in [
        "18446744073709551615",
        "307445734561825861",
        "9999999999999999999999h",
        "500000000y",
        "367days",
        "527041",
    ] {
        cases.push(cli_owned(
            format!("max-snapshot-age {d:?} (CLI)"),
            with_flag("migrate", "--max-snapshot-age", d),
            "input `max-snapshot-age`",
        ));
        cases.push(action_owned(
            format!("max-snapshot-age {d:?} (Action)"),
            action_inputs("migrate", &[("max-snapshot-age", d)]),
            "input `max-snapshot-age`",
        ));
    }
    // A phase name that is not one, with a token given: refused (the mask comes first, see secrets tests).
    cases.push(action_owned(
        "unknown phase with a token",
        action_inputs(
            "status",
            &[
                ("phase", "deploy\n::set-output name=x::y"),
                ("github-token", "ghp_secret_token_value"),
            ],
        ),
        "input `phase`",
    ));
    cases
}

/// Malformed config files: (name, text, needle). `base` is the config seed.py wrote.
fn config_cases(base: &str) -> Vec<(String, String, String, &'static str)> {
    let mut out: Vec<(String, String, String, &'static str)> = Vec::new();
    let mut add = |name: &str, text: String, needle: &str, phase: &'static str| {
        out.push((name.to_string(), text, needle.to_string(), phase));
    };
    let replace = |from: &str, to: &str| -> String {
        assert!(base.contains(from), "seeded config lacks {from:?}");
        base.replacen(from, to, 1)
    };
    let cut = |from: &str, to: &str| -> String {
        let start = base.find(from).unwrap_or_else(|| panic!("no {from:?}"));
        let end = start
            + base[start..]
                .find(to)
                .unwrap_or_else(|| panic!("no {to:?}"));
        format!("{}{}", &base[..start], &base[end..])
    };
    let svc = "[environments.stage.services.core]\n";
    let mig = "[environments.stage.migration]\n";
    let db = "[environments.stage.database]\n";
    let maint = "[environments.stage.maintenance]\n";
    let tasks = "[environments.stage.tasks.seed]\n";
    let env = "[environments.stage]\n";

    // Syntax errors.
    add(
        "syntax-open-table",
        format!("{base}\n[environments.stage\n"),
        "(line",
        "status",
    );
    add(
        "syntax-no-value",
        format!("{base}\nkey = \n"),
        "(line",
        "status",
    );
    add(
        "syntax-string",
        replace("cluster = \"app-stage\"", "cluster = \"app-stage"),
        "(line",
        "status",
    );
    add(
        "syntax-duplicate-key",
        replace(
            "cluster = \"app-stage\"",
            "cluster = \"app-stage\"\ncluster = \"b\"",
        ),
        "(line",
        "status",
    );
    add(
        "syntax-duplicate-table",
        format!("{base}\n{env}"),
        "(line",
        "status",
    );
    add(
        "syntax-escape",
        replace("cluster = \"app-stage\"", "cluster = \"\\uZZZZ\""),
        "(line",
        "status",
    );
    add(
        "syntax-not-toml",
        "this is not toml at all {".into(),
        "(line",
        "status",
    );
    add(
        "syntax-json",
        "{\"environments\": {}}".into(),
        "(line",
        "status",
    );

    // Unknown keys, at every level.
    add(
        "unknown-top",
        format!("surprise = 1\n{base}"),
        "surprise",
        "status",
    );
    add(
        "unknown-defaults",
        replace("[defaults]\n", "[defaults]\nregon = \"x\"\n"),
        "defaults.regon",
        "status",
    );
    add(
        "unknown-env",
        replace(env, &format!("{env}clustr = \"x\"\n")),
        "environments.stage.clustr",
        "status",
    );
    add(
        "unknown-service",
        replace(svc, &format!("{svc}surprise = 1\n")),
        "environments.stage.services.core.surprise",
        "status",
    );
    add(
        "unknown-migration",
        replace(mig, &format!("{mig}famliy = \"x\"\n")),
        "environments.stage.migration.famliy",
        "status",
    );
    add(
        "unknown-task",
        replace(tasks, &format!("{tasks}commands = [\"x\"]\n")),
        "environments.stage.tasks.seed.commands",
        "status",
    );
    add(
        "unknown-database",
        replace(db, &format!("{db}instanse = \"x\"\n")),
        "environments.stage.database.instanse",
        "status",
    );
    add(
        "unknown-maintenance",
        replace(maint, &format!("{maint}listner-arn = \"x\"\n")),
        "environments.stage.maintenance.listner-arn",
        "status",
    );
    add(
        "unknown-fixed-response",
        replace("status-code = 503,", "code = 503,"),
        "environments.stage.maintenance.fixed-response.code",
        "status",
    );
    add(
        "unknown-drain",
        replace("window-seconds = 60,", "window = 60,"),
        "environments.stage.maintenance.drain.window",
        "status",
    );
    add(
        "unknown-settle",
        replace(db, &format!("{db}settle = {{ cpu = 3 }}\n")),
        "environments.stage.database.settle.cpu",
        "status",
    );
    add(
        "unknown-network",
        replace(
            "network-from-service = \"core\"\n",
            "network = { subnet = [\"s\"] }\n",
        ),
        "environments.stage.migration.network.subnet",
        "status",
    );
    add("unknown-redirect", replace("fixed-response = { status-code = 503, content-type = \"text/html\", body = \"<h1>Down for maintenance</h1>\" }", "redirect = { uri = \"https://x\" }"), "environments.stage.maintenance.redirect.uri", "status");
    add(
        "unknown-defaults-nested",
        replace(
            "[defaults]\n",
            "[defaults.services.core]\nsurprise = 1\n[defaults]\n",
        ),
        "defaults.services.core.surprise",
        "status",
    );
    add(
        "unknown-section",
        replace(
            "[environments.stage]\n",
            "[environment.stage]\ncluster = \"x\"\n[environments.stage]\n",
        ),
        "environment",
        "status",
    );

    // Wrong types.
    add(
        "type-cluster",
        replace("cluster = \"app-stage\"", "cluster = 3"),
        "environments.stage.cluster",
        "status",
    );
    add(
        "type-region",
        replace("region = \"eu-central-1\"", "region = true"),
        "defaults.region",
        "status",
    );
    add("type-services", replace(svc, "").replace("containers = [\"core\"]\ndesired-count = 2\nimage-tag = \"core-{version}\"\n", "").replace("[environments.stage.services.workers]", "[environments.stage.services]\ncore = \"core\"\n[environments.stage.services.workers]"), "environments.stage.services.core", "status");
    add(
        "type-containers",
        replace("containers = [\"core\"]", "containers = \"core\""),
        "environments.stage.services.core.containers",
        "status",
    );
    add(
        "type-desired-string",
        replace("desired-count = 2", "desired-count = \"2\""),
        "environments.stage.services.core.desired-count",
        "status",
    );
    add(
        "type-desired-float",
        replace("desired-count = 2", "desired-count = 2.5"),
        "environments.stage.services.core.desired-count",
        "status",
    );
    add(
        "type-timeout",
        replace("timeout-minutes = 10", "timeout-minutes = \"10\""),
        "defaults.timeout-minutes",
        "status",
    );
    add(
        "type-timeout-negative",
        replace("timeout-minutes = 10", "timeout-minutes = -1"),
        "defaults.timeout-minutes",
        "status",
    );
    add(
        "type-database",
        replace(db, "")
            .replace("instance = \"app-stage\"\n", "")
            .replace(env, &format!("{env}database = \"app-stage\"\n")),
        "environments.stage.database",
        "status",
    );
    add(
        "type-retention",
        replace(
            "instance = \"app-stage\"",
            "instance = \"app-stage\"\nsnapshot-retention = -1",
        ),
        "environments.stage.database.snapshot-retention",
        "status",
    );
    add(
        "type-status-code",
        replace("status-code = 503", "status-code = \"503\""),
        "environments.stage.maintenance.fixed-response.status-code",
        "status",
    );
    add(
        "type-drain",
        replace("threshold = 0", "threshold = \"0\""),
        "environments.stage.maintenance.drain.threshold",
        "status",
    );
    add(
        "type-command",
        replace(
            "family = \"stage-migrate\"",
            "family = \"stage-migrate\"\ncommand = \"migrate\"",
        ),
        "environments.stage.migration.command",
        "status",
    );
    add(
        "type-environments",
        format!(
            "environments = \"stage\"\n{}",
            &base[..base.find("[environments.").unwrap()]
        ),
        "environments",
        "status",
    );
    add(
        "type-family",
        replace("family = \"stage-migrate\"", "family = [\"stage-migrate\"]"),
        "environments.stage.migration.family",
        "status",
    );

    // Missing required keys.
    add(
        "missing-region",
        replace("region = \"eu-central-1\"\n", ""),
        "environments.stage.region",
        "status",
    );
    add(
        "missing-cluster",
        replace("cluster = \"app-stage\"\n", ""),
        "environments.stage.cluster",
        "status",
    );
    add("missing-services", cut(svc, mig).replace("[environments.stage.services.workers]\ncontainers = [\"workers\"]\ndesired-count = 1\nimage-tag = \"workers-{version}\"\n", ""), "environments.stage.services", "status");
    add(
        "missing-containers",
        replace("containers = [\"core\"]\n", ""),
        "environments.stage.services.core.containers",
        "status",
    );
    add(
        "missing-family",
        replace("family = \"stage-migrate\"\n", ""),
        "environments.stage.migration.family",
        "status",
    );
    add(
        "missing-db-id",
        replace("instance = \"app-stage\"\n", ""),
        "environments.stage.database",
        "status",
    );
    add(
        "missing-listener",
        replace("listener-arn = \"", "# listener-arn = \""),
        "environments.stage.maintenance.listener-arn",
        "status",
    );
    add(
        "missing-environments",
        base[..base.find("[environments.").unwrap()].to_string(),
        "no environments",
        "status",
    );

    // Both or neither of two alternatives.
    add(
        "both-db",
        replace(
            "instance = \"app-stage\"",
            "instance = \"app-stage\"\ncluster = \"aurora\"",
        ),
        "environments.stage.database",
        "status",
    );
    add(
        "both-network",
        replace(
            "network-from-service = \"core\"",
            "network-from-service = \"core\"\nnetwork = { subnets = [\"subnet-1\"] }",
        ),
        "environments.stage.migration",
        "status",
    );
    add(
        "both-response",
        replace(
            maint,
            &format!("{maint}redirect = {{ url = \"https://x.example.org\" }}\n"),
        ),
        "environments.stage.maintenance",
        "status",
    );

    // Bad ARNs.
    for (i, arn) in [
        "nope",
        "",
        "arn:aws:elasticloadbalancing:eu-central-1:123456789012:loadbalancer/app/x/1",
        "arn:aws:ecs:eu-central-1:123456789012:listener/x",
    ]
    .iter()
    .enumerate()
    {
        let at = base.find("listener-arn = \"").unwrap() + "listener-arn = \"".len();
        let end = at + base[at..].find('"').unwrap();
        let text = format!("{}{arn}{}", &base[..at], &base[end..]);
        add(
            &format!("arn-{i}"),
            text,
            "environments.stage.maintenance.listener-arn",
            "status",
        );
    }

    // Bad templates and repositories.
    for (i, tag) in [
        "core",
        "{version}-{version}",
        "{env}-{version}",
        "a b{version}",
        "{Version}",
        "core/{version}",
    ]
    .iter()
    .enumerate()
    {
        add(
            &format!("template-{i}"),
            replace(
                "image-tag = \"core-{version}\"",
                &format!("image-tag = \"{tag}\""),
            ),
            "environments.stage.services.core.image-tag",
            "status",
        );
    }
    add(
        "template-migration",
        replace(
            "image-tag = \"migrate-{version}\"",
            "image-tag = \"migrate\"",
        ),
        "environments.stage.migration.image-tag",
        "status",
    );
    add(
        "repository-tag",
        replace(
            "image-repository = \"",
            "image-repository = \"repo:tag\"\n# \"",
        ),
        "image-repository",
        "status",
    );
    add(
        "repository-empty",
        replace("image-repository = \"", "image-repository = \"\"\n# \""),
        "image-repository",
        "status",
    );

    // Values out of range or not usable.
    add(
        "desired-too-big",
        replace("desired-count = 2", "desired-count = 10001"),
        "environments.stage.services.core.desired-count",
        "status",
    );
    add(
        "desired-negative",
        replace("desired-count = 2", "desired-count = -1"),
        "environments.stage.services.core.desired-count",
        "status",
    );
    add(
        "containers-empty",
        replace("containers = [\"core\"]", "containers = []"),
        "environments.stage.services.core.containers",
        "status",
    );
    add(
        "containers-blank",
        replace("containers = [\"core\"]", "containers = [\" \"]"),
        "environments.stage.services.core.containers",
        "status",
    );
    add(
        "command-empty",
        replace(
            "family = \"stage-migrate\"",
            "family = \"stage-migrate\"\ncommand = []",
        ),
        "environments.stage.migration.command",
        "status",
    );
    add(
        "subnets-empty",
        replace(
            "network-from-service = \"core\"",
            "network = { subnets = [] }",
        ),
        "environments.stage.migration.network.subnets",
        "status",
    );
    add(
        "network-from-unknown",
        replace(
            "network-from-service = \"core\"",
            "network-from-service = \"web\"",
        ),
        "environments.stage.migration.network-from-service",
        "status",
    );
    add(
        "launch-type",
        replace(
            "family = \"stage-migrate\"",
            "family = \"stage-migrate\"\nlaunch-type = \"SPOT\"",
        ),
        "environments.stage.migration.launch-type",
        "status",
    );
    add("redirect-scheme", replace("fixed-response = { status-code = 503, content-type = \"text/html\", body = \"<h1>Down for maintenance</h1>\" }", "redirect = { url = \"ftp://x\" }"), "environments.stage.maintenance.redirect.url", "status");
    add("redirect-status", replace("fixed-response = { status-code = 503, content-type = \"text/html\", body = \"<h1>Down for maintenance</h1>\" }", "redirect = { url = \"https://x\", status-code = 307 }"), "environments.stage.maintenance.redirect.status-code", "status");
    add(
        "body-too-long",
        replace("<h1>Down for maintenance</h1>", &"x".repeat(1025)),
        "environments.stage.maintenance.fixed-response.body",
        "status",
    );
    add(
        "status-code-range",
        replace("status-code = 503", "status-code = 99"),
        "environments.stage.maintenance.fixed-response.status-code",
        "status",
    );
    add(
        "snapshot-name-fixed",
        replace(
            "instance = \"app-stage\"",
            "instance = \"app-stage\"\nsnapshot-name = \"fixed\"",
        ),
        "environments.stage.database.snapshot-name",
        "status",
    );
    add(
        "retention-zero",
        replace(
            "instance = \"app-stage\"",
            "instance = \"app-stage\"\nsnapshot-retention = 0",
        ),
        "environments.stage.database.snapshot-retention",
        "status",
    );
    add(
        "timeout-zero",
        replace(
            "cluster = \"app-stage\"",
            "cluster = \"app-stage\"\ntimeout-minutes = 0",
        ),
        "environments.stage.timeout-minutes",
        "status",
    );
    add(
        "requires-itself",
        replace(
            "cluster = \"app-stage\"",
            "cluster = \"app-stage\"\nrequires = \"stage\"",
        ),
        "environments.stage.requires",
        "status",
    );
    add(
        "ssm-relative",
        replace(
            "cluster = \"app-stage\"",
            "cluster = \"app-stage\"\nssm-path = \"app/stage/\"",
        ),
        "environments.stage.ssm-path",
        "status",
    );
    add(
        "ssm-reserved",
        replace(
            "cluster = \"app-stage\"",
            "cluster = \"app-stage\"\nssm-path = \"/aws/x\"",
        ),
        "environments.stage.ssm-path",
        "status",
    );
    add(
        "env-name",
        replace(
            "[environments.stage]\n",
            "[environments.\"bad name\"]\ncluster = \"x\"\n[environments.stage]\n",
        ),
        "bad name",
        "status",
    );

    // Configs valid as files that a phase cannot use.
    add(
        "no-database-for-snapshot",
        cut(db, maint),
        "environments.stage.database: missing",
        "snapshot",
    );
    add(
        "no-database-for-migrate",
        cut(db, maint),
        "environments.stage.database: missing",
        "migrate",
    );
    add(
        "no-migration-for-migrate",
        cut(mig, tasks),
        "environments.stage.migration: missing",
        "migrate",
    );
    add(
        "no-maintenance-for-restricted",
        base[..base.find(maint).unwrap()].to_string(),
        "environments.stage.maintenance",
        "state-restricted",
    );
    add(
        "no-database-for-stopped",
        cut(db, maint),
        "environments.stage.database",
        "state-stopped",
    );
    // Issue 20: what check-config used to pass and a run would fail on half-way (or panic on).
    // The seeded drain is an inline table: `drain = { threshold = 0, window-seconds = N, timeout-minutes = 2 }`.
    let drain_line = base
        .lines()
        .find(|l| l.starts_with("drain = {"))
        .expect("the seeded config has a drain");
    let with_drain = |window: &str, timeout: &str| -> String {
        base.replacen(
            drain_line,
            &format!("drain = {{ threshold = 0, window-seconds = {window}, timeout-minutes = {timeout} }}"),
            1,
        )
    };
    let hostile: Vec<(&str, String, &str)> = vec![
        ("drain-timeout-0", with_drain("5", "0"), "maintenance.drain.timeout-minutes"),
        ("drain-timeout-huge", with_drain("5", "9223372036854775807"), "maintenance.drain.timeout-minutes"),
        ("drain-window-2-63", with_drain("9223372036854775807", "2"), "maintenance.drain.window-seconds"),
        ("drain-window-over-timeout", with_drain("7200", "2"), "maintenance.drain.window-seconds"),
        ("timeout-huge", replace("timeout-minutes = 10", "timeout-minutes = 9223372036854775807"), "environments.stage.timeout-minutes"),
        ("region-empty", replace("region = \"eu-central-1\"", "region = \"\""), "region"),
        ("region-slash", replace("region = \"eu-central-1\"", "region = \"eu-central-1/x\""), "region"),
        ("region-query", replace("region = \"eu-central-1\"", "region = \"eu-central-1?x=1\""), "region"),
        ("region-hash", replace("region = \"eu-central-1\"", "region = \"eu-central-1#\""), "region"),
        ("cluster-empty", replace("cluster = \"app-stage\"", "cluster = \"\""), "environments.stage.cluster"),
        ("service-key-empty", format!("{base}\n[environments.stage.services.\"\"]\ncontainers = [\"x\"]\n"), "environments.stage.services."),
        ("listener-newline", base.replacen(":listener/app/", ":listener/app/\\n", 1), "listener-arn"),
        ("snapshot-unknown-placeholder", replace(db, &format!("{db}snapshot-name = \"pre-{{version}}-{{branch}}\"\n")), "database.snapshot-name"),
        ("github-env-newline", format!("{base}\n[environments.stage.github]\nenvironment = \"stage\\n::set-output name=x::y\"\n"), "github.environment"),
    ];
    for (name, text, needle) in hostile {
        add(name, text, needle, "status");
    }
    out
}

/// Runs one case; `Err` says what was wrong with the result.
fn judge(
    case: &Case,
    r: &RunResult,
    calls_before: usize,
    calls_after: usize,
) -> Result<(), String> {
    let mut why = vec![];
    if r.code != 2 {
        why.push(format!("exit {} (want 2)", r.code));
    }
    if r.code == 101 || r.stderr.contains("panicked") || r.stdout.contains("panicked") {
        why.push("panicked".into());
    }
    let lines: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect();
    if lines.len() != 1 {
        why.push(format!("{} stderr lines (want 1)", lines.len()));
    }
    let named = r.stderr.contains(&case.needle)
        || case
            .or_needle
            .as_deref()
            .is_some_and(|n| r.stderr.contains(n));
    if !named {
        why.push(format!("stderr does not name {:?}", case.needle));
    }
    if r.stdout.lines().any(|l| !l.starts_with("::add-mask::")) {
        why.push("stdout is not empty".into());
    }
    if calls_after != calls_before {
        why.push(format!("{} AWS call(s)", calls_after - calls_before));
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {} | stderr: {}",
            case.origin,
            why.join(", "),
            r.stderr.trim()
        ))
    }
}

async fn run_case(ctx: &TestContext, case: &Case) -> RunResult {
    match &case.front {
        Front::Cli(args) => {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ctx.cli(&args).await
        }
        Front::Action(inputs) => {
            let inputs: Vec<(&str, &str)> = inputs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            ctx.action(&inputs).await
        }
    }
}

/// The corpus: at least 200 malformed inputs and 40 malformed config files, each exit 2, one line naming the input
/// or key, no panic, and not a single AWS call (read or write) for the whole corpus.
#[tokio::test]
async fn every_malformed_input_exits_2_with_one_line_and_no_aws_call() {
    let ctx = TestContext::new().await;
    let path = ctx.seed("stage", &[]);
    let base = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        ctx.path().join("garbage.bin"),
        [0xff_u8, 0xfe, 0x00, 0x9f, 0x92],
    )
    .unwrap();
    std::fs::write(ctx.path().join("empty.toml"), "").unwrap();
    let mut cases = input_cases();
    let inputs = cases.len();
    let configs = config_cases(&base);
    let mut names = BTreeSet::new();
    for (name, text, needle, phase) in &configs {
        assert!(names.insert(name.clone()), "duplicate config case {name}");
        let file = format!("cfg-{name}.toml");
        std::fs::write(ctx.path().join(&file), text).unwrap();
        let mut args = match *phase {
            "state-restricted" => {
                let mut a = with_flag("state", "--state", "restricted");
                a.extend([
                    "--maintenance-header-name".into(),
                    "x-bypass".into(),
                    "--maintenance-header-value".into(),
                    "s3cret".into(),
                ]);
                a
            }
            "state-stopped" => with_flag("state", "--state", "stopped"),
            p => base_args(p),
        };
        args[4] = file;
        cases.push(cli_owned(format!("config {name}"), args, needle.clone()));
    }
    assert!(
        inputs >= 200,
        "the corpus has {inputs} malformed inputs besides config files"
    );
    assert!(configs.len() >= 40, "{} config files", configs.len());

    ctx.clear_calls().await;
    let mut failures = vec![];
    let mut calls = 0;
    for case in &cases {
        let r = run_case(&ctx, case).await;
        let now = ctx.calls().await.len();
        if let Err(e) = judge(case, &r, calls, now) {
            failures.push(e);
        }
        calls = now;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(ctx.calls().await, vec![], "bad input must not reach AWS");
    assert!(ctx.mutating_calls().await.is_empty());
}

/// Issue 20: a FIFO, a device or a directory as the config file or the event payload is refused at once (a FIFO
/// used to block forever); an input that is not UTF-8 is refused without a panic, and the token given with it is
/// masked before the error line.
#[tokio::test]
async fn files_that_are_not_files_and_bytes_that_are_not_text_are_refused_at_once() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    let fifo = ctx.path().join("fifo.toml");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    ctx.clear_calls().await;
    // A run that opens the FIFO blocks forever: the harness's hang guard (support::HANG_GUARD) fails the test then,
    // naming the hang. Refused "at once" is the refusal itself: exit 2, the reason, and no AWS call (at the end).
    for (config, needle) in [
        ("fifo.toml", "a FIFO is not a regular file"),
        ("/dev/zero", "a device is not a regular file"),
        ("/dev/stdin", "not a regular file"),
        (".", "a directory is not a regular file"),
    ] {
        let r = ctx.cli(&["status", "--env", "stage", "-c", config]).await;
        r.assert_code(2);
        assert!(r.stderr.contains(needle), "{config}: {}", r.stderr);
        let r = ctx.cli(&["check-config", "-c", config]).await;
        r.assert_code(2);
        assert!(
            r.stderr.contains(needle),
            "check-config {config}: {}",
            r.stderr
        );
    }
    // The event payload of phase preview, read when pr-number is not given.
    let r = ctx
        .action_with_env(
            &[
                ("phase", "preview"),
                ("environment", "stage"),
                ("config", "deploy.toml"),
                ("version", "v1.0.0"),
            ],
            &[("GITHUB_EVENT_PATH", fifo.to_str().unwrap())],
        )
        .await;
    r.assert_code(2);
    assert!(
        r.stderr.contains("pr-number") || r.stderr.contains("preview"),
        "{}",
        r.stderr
    );
    // Bytes that are not UTF-8 in an input: exit 2 naming it, no panic; the token is masked first.
    let token = "ghp_0123456789abcdef0123456789abcdef0123";
    let mut cmd = ctx.base_command();
    cmd.env("GITHUB_ACTIONS", "true")
        .env("INPUT_PHASE", "status")
        .env("INPUT_ENVIRONMENT", "stage")
        .env("INPUT_GITHUB-TOKEN", token)
        .env("INPUT_VERSION", OsStr::from_bytes(b"v1\xff\xfe"));
    let out = cmd.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("INPUT_VERSION") && stderr.contains("UTF-8"),
        "{stderr}"
    );
    let mask = stderr
        .find(&format!("::add-mask::{token}"))
        .expect("masked");
    let error = stderr.find("::error").expect("an error line");
    assert!(mask < error, "the mask comes before the error: {stderr}");
    // An unknown phase: the token is masked before the error, too.
    let r = ctx
        .action(&[("phase", "launch"), ("github-token", token)])
        .await;
    r.assert_code(2);
    let mask = r.stderr.find("::add-mask::").expect("masked");
    assert!(mask < r.stderr.find("::error").unwrap(), "{}", r.stderr);
    assert_eq!(ctx.calls().await, vec![], "nothing reached AWS");
}

// ---------------------------------------------------------------------------------------------------------------
// Library level: the parsers never panic, and what they accept is usable.
// ---------------------------------------------------------------------------------------------------------------

const TEMPLATES: [&str; 4] = [
    "{version}",
    "core-{version}",
    "migrate-{version}",
    "{version}-alpine",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any string: `Version::parse` never panics; an accepted version gives, for every template, either a valid image
    /// tag or a usage error naming the `version` input; a rejected one is one line naming the input.
    #[test]
    fn version_parse_never_panics_and_accepted_versions_make_valid_tags(s in "\\PC{0,140}|[a-zA-Z0-9._/+-]{1,140}") {
        match Version::parse(&s) {
            Ok(v) => {
                prop_assert_eq!(v.as_str(), s.as_str(), "accepted as given, never trimmed");
                prop_assert!(!v.as_str().is_empty() && v.as_str().len() <= 128);
                for t in TEMPLATES {
                    let tpl = ImageTagTemplate::new(None, t).unwrap();
                    match tpl.tag_for(&v) {
                        Ok(tag) => {
                            prop_assert!(is_valid_image_tag(&tag), "{tag}");
                            prop_assert_eq!(tpl.version_of(&format!("repo:{tag}")), Some(v.tag_safe()));
                        }
                        Err(e) => {
                            let e = e.to_string();
                            prop_assert!(e.starts_with("input `version`"), "{}", e);
                        }
                    }
                }
            }
            Err(e) => {
                let e = e.to_string();
                prop_assert!(e.starts_with("input `version`"), "{}", e);
                prop_assert!(!e.contains('\n'));
            }
        }
    }

    /// The invalid-version generator the corpus uses really generates invalid versions.
    #[test]
    fn generated_invalid_versions_are_rejected(s in invalid_version_strategy()) {
        prop_assert!(Version::parse(&s).is_err(), "{:?} was accepted", s);
    }

    /// A snapshot name made from any accepted version is a valid RDS identifier.
    #[test]
    fn snapshot_names_are_valid_rds_identifiers(s in "[a-zA-Z0-9._/+-]{1,128}", env in "[a-z0-9][a-z0-9_-]{0,39}") {
        if let Ok(v) = Version::parse(&s) {
            let id = snapshot_id(
                deploy_action::config::DEFAULT_SNAPSHOT_NAME,
                &Placeholders { environment: &env, version: v.as_str(), time: "20261123-101500", run: "4242" },
            );
            prop_assert!(is_rds_identifier(&id), "{id}");
            prop_assert_eq!(rds_identifier(&id), id.clone());
        }
    }

    /// Any `state` input: never panics; accepted only for the four targets.
    #[test]
    fn state_targets_are_only_the_four_states(s in "\\PC{0,20}") {
        match parse_target(Some(&s)) {
            Ok(_) => prop_assert!(["running", "restricted", "db-only", "stopped"].contains(&s.as_str())),
            Err(e) => prop_assert!(e.to_string().starts_with("input `state`")),
        }
    }

    /// Booleans, numbers, durations and the header pair: never panic, errors name the input.
    #[test]
    fn input_parsers_never_panic_and_name_the_input(s in "\\PC{0,30}") {
        if let Err(e) = parse_bool("dry-run", Some(&s), false) {
            prop_assert!(e.to_string().starts_with("input `dry-run`"));
        }
        if let Err(e) = parse_u64("timeout-minutes", Some(&s), 1..=1440) {
            prop_assert!(e.to_string().starts_with("input `timeout-minutes`"));
        }
        if let Err(e) = parse_duration("max-snapshot-age", Some(&s)) {
            prop_assert!(e.to_string().starts_with("input `max-snapshot-age`"));
        }
        if let Err(e) = Phase::parse(&s) {
            prop_assert!(e.to_string().starts_with("input `phase`"));
        }
        match bypass_header(Some(&s), Some("v")) {
            Ok(h) => prop_assert!(h.is_some()),
            Err(e) => prop_assert!(e.to_string().contains("maintenance-header-name")),
        }
        if let Err(e) = bypass_header(Some("x-bypass"), Some(&s)) {
            let e = e.to_string();
            prop_assert!(e.contains("maintenance-header-value"));
            prop_assert!(s.chars().count() < 12 || !e.contains(&s), "the error repeats the secret");
        }
    }

    /// Issue 20: any number in any duration or count of the config: never a panic; accepted only within the named
    /// bounds, and then every duration made from it is representable (no overflow when added to now).
    #[test]
    fn config_numbers_never_panic_and_stay_within_bounds(
        timeout in any::<i64>(),
        window in any::<i64>(),
        drain_timeout in any::<i64>(),
        retention in any::<i64>(),
        desired in any::<i64>(),
    ) {
        let text = format!(
            "[environments.stage]\nregion = \"eu-central-1\"\ncluster = \"c\"\ntimeout-minutes = {timeout}\n\
             [environments.stage.services.core]\ncontainers = [\"core\"]\ndesired-count = {desired}\n\
             [environments.stage.database]\ninstance = \"db\"\nsnapshot-retention = {retention}\n\
             [environments.stage.maintenance]\nlistener-arn = \"arn:aws:elasticloadbalancing:eu-central-1:1:listener/app/a/b/c\"\n\
             drain = {{ window-seconds = {window}, timeout-minutes = {drain_timeout} }}\n"
        );
        match Config::parse(&text, std::path::Path::new("deploy.toml")) {
            Ok(c) => {
                let env = c.environment("stage").unwrap();
                let day = std::time::Duration::from_secs(deploy_action::config::MAX_TIMEOUT_MINUTES * 60);
                let t = env.timeout.unwrap();
                prop_assert!(t >= std::time::Duration::from_secs(60) && t <= day);
                let d = env.maintenance.as_ref().unwrap().drain.as_ref().unwrap();
                prop_assert!((1..=deploy_action::config::MAX_WINDOW_SECONDS).contains(&d.window_seconds));
                prop_assert!(d.bound() <= day);
                prop_assert!(d.window_seconds <= d.bound().as_secs());
                let later = std::time::Instant::now() + t + d.bound();
                prop_assert!(later > std::time::Instant::now());
            }
            Err(e) => {
                let e = e.to_string();
                prop_assert!(e.starts_with("config file deploy.toml: environments.stage."), "{}", e);
                prop_assert!(!e.contains('\n'));
            }
        }
    }

    /// Issue 20: any duration input (including numbers that overflow as minutes): never a panic; accepted ones are at
    /// most the bound, so adding one to a time cannot overflow.
    #[test]
    fn durations_are_bounded(minutes in any::<u64>(), text in "[0-9]{1,25}[a-z ]{0,8}") {
        for v in [minutes.to_string(), text] {
            match parse_duration("max-snapshot-age", Some(&v)) {
                Ok(Some(d)) => prop_assert!(d <= std::time::Duration::from_secs(deploy_action::inputs::MAX_DURATION_DAYS * 86_400)),
                Ok(None) => prop_assert!(false, "a value gives a duration or an error"),
                Err(e) => prop_assert!(e.to_string().starts_with("input `max-snapshot-age`")),
            }
        }
    }

    /// Issue 20: a pull request number from the input or from the event payload: in range, or refused naming
    /// `pr-number`; never a panic.
    #[test]
    fn pr_numbers_are_range_checked_wherever_they_come_from(n in any::<u64>(), text in "\\PC{0,12}") {
        use deploy_action::phases::preview::{pr_number, MAX_PR_NUMBER};
        let dir = tempfile::tempdir().unwrap();
        let event = dir.path().join("event.json");
        std::fs::write(&event, format!("{{\"pull_request\": {{\"number\": {n}}}}}")).unwrap();
        let in_range = (1..=MAX_PR_NUMBER).contains(&n);
        for got in [pr_number(Some(&n.to_string()), None), pr_number(None, Some(&event))] {
            match got {
                Ok(m) => prop_assert!(in_range && m == n),
                Err(e) => prop_assert!(!in_range && e.to_string().contains("pr-number")),
            }
        }
        if let Err(e) = pr_number(Some(&text), None) {
            prop_assert!(e.to_string().starts_with("input `pr-number`"));
        }
    }

    /// Any environment name other than the configured ones is refused naming the input and listing the known ones.
    #[test]
    fn unknown_environments_are_refused(name in invalid_env_strategy()) {
        let c = Config::parse(GOOD, std::path::Path::new("deploy.toml")).unwrap();
        let e = c.environment(&name).unwrap_err().to_string();
        prop_assert!(e.starts_with("input `environment`") && e.contains("stage"), "{}", e);
    }

    /// Any text as a config file, and the good config with one line dropped or one character changed: never a
    /// panic, and every error is one line.
    #[test]
    fn config_parse_never_panics_and_errors_are_one_line(
        text in "\\PC{0,200}",
        drop_line in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        c in prop_oneof![Just('"'), Just('['), Just(']'), Just('='), Just('\n'), Just('{'), Just('x'), Just('-')],
    ) {
        let lines: Vec<&str> = GOOD.lines().collect();
        let dropped: String = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != drop_line.index(lines.len()))
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        let mut changed: Vec<char> = GOOD.chars().collect();
        let i = at.index(changed.len());
        changed[i] = c;
        let changed: String = changed.into_iter().collect();
        for t in [text.as_str(), dropped.as_str(), changed.as_str()] {
            if let Err(e) = Config::parse(t, std::path::Path::new("deploy.toml")) {
                let e = e.to_string();
                prop_assert!(!e.contains('\n'), "{}", e);
                prop_assert!(e.starts_with("config file deploy.toml") || e.starts_with("input `"), "{}", e);
            }
        }
    }
}

fn is_rds_identifier(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.contains("--")
        && !id.ends_with('-')
}

const GOOD: &str = r#"
[defaults]
region = "eu-central-1"
image-repository = "123.dkr.ecr.eu-central-1.amazonaws.com/app"

[environments.stage]
cluster = "app-stage"

[environments.stage.services.core]
containers = ["core"]
desired-count = 2
image-tag = "core-{version}"

[environments.stage.migration]
family = "migrate"
image-tag = "migrate-{version}"

[environments.stage.database]
instance = "app-stage"

[environments.stage.maintenance]
listener-arn = "arn:aws:elasticloadbalancing:eu-central-1:123:listener/app/lb/1/2"
"#;
