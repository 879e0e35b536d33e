//! Issue 20: hostile output. A task (one-off or a service's) prints workflow commands, HTML and markdown, and stops
//! with a reason made of the same; nothing of it reaches the runner as a command or the step summary as markup.

use serde_json::json;

use crate::support::{RunResult, TestContext};

/// What a container could print: every workflow command form, HTML, markdown, a line that closes a code fence.
const HOSTILE_LINES: &[&str] = &[
    "::set-output name=result::pwned",
    "  ::add-mask::hunter2",
    "\t::stop-commands::evil",
    "::error title=forged::from the task",
    "::set-env name=LD_PRELOAD::/tmp/x.so",
    "progress ##[set-output name=x;]pwned",
    "##[error]legacy form",
    "```",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "<details><summary>pwned</summary>",
    "<!-- everything after this is hidden",
];

const HOSTILE_REASON: &str = "::warning::forged reason <b>bold</b> ##[error]x ``` [x](javascript:1)";

/// The payload markers that must never reach the runner as a command.
const FORGED: &[&str] = &[
    "set-output",
    "add-mask::hunter2",
    "stop-commands::evil",
    "error title=forged",
    "set-env",
    "warning::forged",
];

/// Reads a job log as the runner does (actions/runner `ActionCommandManager`): a line is a command when it starts
/// with `::` after trimming whitespace, or when it holds `##[`; between `::stop-commands::T` and `::T::` nothing is.
/// Returns the command lines seen outside a fence.
fn commands_the_runner_sees(log: &str) -> Vec<String> {
    let mut fence: Option<String> = None;
    let mut seen = vec![];
    for line in log.lines() {
        let t = line.trim();
        if let Some(token) = &fence {
            if t == format!("::{token}::") {
                fence = None;
            }
            continue;
        }
        if let Some(token) = t.strip_prefix("::stop-commands::") {
            fence = Some(token.to_string());
            seen.push(t.to_string());
            continue;
        }
        if t.starts_with("::") || t.contains("##[") {
            seen.push(t.to_string());
        }
    }
    seen
}

fn assert_nothing_forged(r: &RunResult) {
    const OURS: &[&str] = &[
        "::group::",
        "::endgroup::",
        "::error title=deploy-action::",
        "::warning title=deploy-action::",
        "::warning::",
        "::error::",
        "::debug::",
        "::add-mask::",
        "::stop-commands::deploy-action-",
    ];
    for (stream, text) in [("stderr", &r.stderr), ("stdout", &r.stdout)] {
        for cmd in commands_the_runner_sees(text) {
            // Our own commands only (a stop-commands token is ours: random, deploy-action-…), and their data is
            // text: no legacy `##[` form inside, nothing forged at its start.
            let Some(ours) = OURS.iter().find(|o| cmd.starts_with(**o)) else {
                panic!("{stream}: the runner would act on {cmd:?}\n{text}");
            };
            let data = &cmd[ours.len()..];
            assert!(
                !data.contains("##[") && !data.trim_start().starts_with("::"),
                "{stream}: {cmd:?}"
            );
            if *ours == "::add-mask::" {
                assert!(!FORGED.iter().any(|f| data.contains(f)), "{cmd:?}");
            }
        }
    }
    // The text is still there for a person to read (zero-width spaces aside).
    let shown = r.stdout.replace('\u{200B}', "") + &r.stderr.replace('\u{200B}', "");
    assert!(shown.contains("set-output name=result::pwned"), "{shown}");
}

/// Walks the markdown as a renderer does: fenced code blocks (closed only by a backtick run at least as long as the
/// opening one, alone on its line) and everything else. Returns the lines outside code blocks.
fn outside_code_blocks(md: &str) -> Vec<&str> {
    let mut open: Option<usize> = None;
    let mut out = vec![];
    for line in md.lines() {
        let t = line.trim_start();
        let run = t.chars().take_while(|c| *c == '`').count();
        match open {
            Some(n) if run >= n && t.trim_end().chars().all(|c| c == '`') => open = None,
            Some(_) => {}
            None if run >= 3 => open = Some(run),
            None => out.push(line),
        }
    }
    assert_eq!(open, None, "a code block is left open:\n{md}");
    out
}

fn assert_summary_inert(summary: &str) {
    for line in outside_code_blocks(summary) {
        // What markdown would still read as markup: backslash escapes taken out first.
        let mut live = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                chars.next();
                live.push('_');
            } else {
                live.push(c);
            }
        }
        for bad in ["<img", "<b>", "<!--", "<details><summary>pwned", "](javascript:", "```"] {
            assert!(
                !live.contains(bad),
                "markup from outside in the summary: {line:?}\n{summary}"
            );
        }
    }
    assert!(
        summary.contains("&lt;b&gt;bold&lt;/b&gt;") || summary.contains("<b>bold</b>"),
        "the reason is shown, escaped or in a code block:\n{summary}"
    );
}

#[tokio::test]
async fn hostile_output_from_a_failed_one_off_task_reaches_neither_runner_nor_summary() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-seed", "exitCode": 1, "describes": 2, "logs": HOSTILE_LINES,
               "stoppedReason": HOSTILE_REASON}),
    )
    .await;
    let r = ctx
        .action(&[
            ("phase", "run"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("task", "seed"),
            ("version", "v1.0.0"),
        ])
        .await;
    r.assert_code(1);
    assert_nothing_forged(&r);
    assert_summary_inert(&r.summary);
    assert!(
        !r.outputs.contains_key("x") && r.outputs.get("result").map(String::as_str) == Some("failure"),
        "{:?}",
        r.outputs
    );
}

#[tokio::test]
async fn hostile_output_from_a_failed_roll_out_reaches_neither_runner_nor_summary() {
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/service-rules",
        json!({"service": "core", "outcome": "FAILED", "times": 1, "failedTasks": 1, "taskExitCode": 3,
               "taskLogs": HOSTILE_LINES, "taskStoppedReason": HOSTILE_REASON}),
    )
    .await;
    let r = ctx
        .action(&[
            ("phase", "deploy"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("version", "v1.1.0"),
        ])
        .await;
    r.assert_code(1);
    assert_nothing_forged(&r);
    assert_summary_inert(&r.summary);
}

#[tokio::test]
async fn hostile_inputs_are_neither_commands_nor_markup() {
    // A command echoed back and a freeze override reason: both are anyone's text in a workflow.
    let ctx = TestContext::new().await;
    ctx.seed("stage", &[]);
    ctx.post(
        "/_test/ecs/task-rules",
        json!({"match": "stage-seed", "exitCode": 1, "describes": 2, "logs": ["x"]}),
    )
    .await;
    let r = ctx
        .action(&[
            ("phase", "run"),
            ("environment", "stage"),
            ("config", "deploy.toml"),
            ("task", "seed"),
            ("version", "v1.0.0"),
            (
                "command",
                "[\"sh\", \"-c\", \"echo\\n::set-output name=x::y <img src=x onerror=alert(1)> ##[error]z\"]",
            ),
        ])
        .await;
    assert_ne!(r.code, 0, "{}", r.stderr);
    for cmd in commands_the_runner_sees(&r.stderr)
        .into_iter()
        .chain(commands_the_runner_sees(&r.stdout))
    {
        assert!(!cmd.contains("set-output") && !cmd.contains("##["), "{cmd}");
    }
    for line in outside_code_blocks(&r.summary) {
        assert!(!line.contains("<img"), "{line}\n{}", r.summary);
    }
}
