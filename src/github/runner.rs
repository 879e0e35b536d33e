//! Runner I/O: `$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY`, `::add-mask::`, `::group::`, `::error::`.
//!
//! Streams: results go to stdout (text for a person, or one JSON object); logs, groups and annotations go to
//! stderr, so they stay in order with the log lines they wrap. `::add-mask::` goes to both streams, before anything
//! else is printed, so a secret is masked whichever stream could carry it.
//!
//! The only workflow commands printed are built here (and the `stop-commands` fence around a task's log), with their
//! data escaped; everything else reaches the job log through [`for_log`] (see [`crate::text`]).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rand::Rng;
use serde::Serialize;

use crate::inputs::{GithubEnv, OutputFormat};
use crate::text::{for_log, json_for_log};

/// What every phase returns: serialisable (JSON), with outputs, a markdown summary and a text rendering.
pub trait Outcome: Serialize {
    /// Whether the phase reached its goal (exit 0) or not (exit 1).
    fn ok(&self) -> bool;
    /// `$GITHUB_OUTPUT` name/value pairs.
    fn outputs(&self) -> Vec<(&'static str, String)>;
    /// Markdown for `$GITHUB_STEP_SUMMARY` (the reason first on failure).
    fn summary(&self) -> String;
    /// Plain text for a person at a terminal.
    fn text(&self) -> String;
}

#[derive(Debug, Clone)]
pub struct Runner {
    pub on_actions: bool,
    pub format: OutputFormat,
    output_file: Option<PathBuf>,
    summary_file: Option<PathBuf>,
    /// Summary sections that go after the phase's own (its verdict stays first): the preflight table.
    deferred: Arc<Mutex<Vec<String>>>,
}

impl Runner {
    pub fn new(github: &GithubEnv, format: OutputFormat) -> Runner {
        Runner {
            on_actions: github.on_runner(),
            format,
            output_file: github.output_file.clone(),
            summary_file: github.step_summary_file.clone(),
            deferred: Arc::default(),
        }
    }

    /// Markdown for `$GITHUB_STEP_SUMMARY` after the phase's own section (or after its error).
    pub fn defer_summary(&self, markdown: &str) {
        if let Ok(mut d) = self.deferred.lock() {
            d.push(markdown.to_string());
        }
    }

    /// Appends what was deferred (once).
    pub fn flush_deferred(&self) {
        let sections: Vec<String> = match self.deferred.lock() {
            Ok(mut d) => d.drain(..).collect(),
            Err(_) => vec![],
        };
        for md in sections {
            if let Err(e) = self.append_summary(&md) {
                self.warning(&format!("could not write $GITHUB_STEP_SUMMARY: {e}"));
            }
        }
    }

    /// Registers a secret with the runner (each line separately, as multi-line masks need). A no-op off a runner.
    pub fn mask(&self, secret: &str) {
        if !self.on_actions {
            return;
        }
        for line in secret.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // The value exactly as it is (only made one line): a mask must match what could be printed.
            let cmd = format!("::add-mask::{}\n", escape_line(line));
            let _ = io::stdout().write_all(cmd.as_bytes());
            let _ = io::stdout().flush();
            let _ = io::stderr().write_all(cmd.as_bytes());
        }
    }

    /// A collapsible group in the job log (a heading off a runner). Ends when the guard drops.
    pub fn group(&self, title: &str) -> Group {
        if self.on_actions {
            eprintln!("::group::{}", escape_data(title));
        } else {
            eprintln!("── {}", for_log(title));
        }
        Group {
            on_actions: self.on_actions,
        }
    }

    /// The final failure as an annotation (on a runner) or a plain line.
    pub fn error(&self, message: &str) {
        if self.on_actions {
            eprintln!("::error title=deploy-action::{}", escape_data(message));
        } else {
            eprintln!("error: {}", for_log(message));
        }
    }

    pub fn warning(&self, message: &str) {
        if self.on_actions {
            eprintln!("::warning title=deploy-action::{}", escape_data(message));
        } else {
            eprintln!("warning: {}", for_log(message));
        }
    }

    /// Appends outputs to `$GITHUB_OUTPUT`, every value in the multi-line form with a random delimiter.
    pub fn set_outputs(&self, outputs: &[(&str, String)]) -> io::Result<()> {
        let Some(path) = &self.output_file else {
            return Ok(());
        };
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        f.write_all(format_outputs(outputs, &mut rand::rng()).as_bytes())
    }

    /// Appends markdown to `$GITHUB_STEP_SUMMARY`.
    pub fn append_summary(&self, markdown: &str) -> io::Result<()> {
        let Some(path) = &self.summary_file else {
            return Ok(());
        };
        let mut f = OpenOptions::new().create(true).append(true).open(path)?;
        // Each phase's section ends with a blank line, so sections appended by later steps render apart.
        f.write_all(markdown.trim_end().as_bytes())?;
        f.write_all(b"\n\n")
    }

    /// Writes the outcome everywhere it belongs: outputs and summary on a runner, text or JSON on stdout.
    pub fn emit<O: Outcome>(&self, phase: &str, outcome: &O) -> io::Result<()> {
        let mut outputs = outcome.outputs();
        outputs.push((
            "result",
            if outcome.ok() { "success" } else { "failure" }.to_string(),
        ));
        if let Err(e) = self.set_outputs(&outputs) {
            self.warning(&format!("could not write $GITHUB_OUTPUT: {e}"));
        }
        if let Err(e) = self.append_summary(&outcome.summary()) {
            self.warning(&format!("could not write $GITHUB_STEP_SUMMARY: {e}"));
        }
        self.flush_deferred();
        let mut out = io::stdout().lock();
        match self.format {
            OutputFormat::Json => {
                let value =
                    serde_json::json!({ "phase": phase, "ok": outcome.ok(), "outcome": outcome });
                let json = serde_json::to_string(&value).map_err(io::Error::other)?;
                writeln!(out, "{}", json_for_log(&json))?;
            }
            OutputFormat::Text => {
                let text = outcome.text();
                write!(out, "{}", for_log(&text))?;
                if !text.ends_with('\n') {
                    writeln!(out)?;
                }
            }
        }
        out.flush()
    }
}

/// Closes a log group when dropped.
pub struct Group {
    on_actions: bool,
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.on_actions {
            eprintln!("::endgroup::");
        }
    }
}

/// `name<<DELIM\nvalue\nDELIM\n` for each output, with a delimiter that occurs in no value.
pub fn format_outputs(outputs: &[(&str, String)], rng: &mut impl Rng) -> String {
    let mut s = String::new();
    for (name, value) in outputs {
        let delim = loop {
            let d = format!("ghadelimiter_{:016x}", rng.random::<u64>());
            if !value.contains(&d) {
                break d;
            }
        };
        s.push_str(&format!("{name}<<{delim}\n{value}\n{delim}\n"));
    }
    s
}

/// Escapes a workflow command's data part (`%`, CR, LF): the command stays one line. Text from outside in it is
/// first put through [`for_log`], so not even the legacy `##[` form survives in it.
pub fn escape_data(s: &str) -> String {
    escape_line(&for_log(s))
}

fn escape_line(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A markdown table of plain text: every cell goes through [`crate::text::md_text`] (one line, HTML and markdown
/// escaped), so a value from outside renders as the characters it holds.
pub fn md_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| crate::text::md_text(c)).collect())
        .collect();
    md_table_md(header, &rows)
}

/// A markdown table whose cells are already markdown (built with [`crate::text::md_text`] and
/// [`crate::text::md_code`] around every value from outside): only the table's own structure is escaped (`|`, line
/// breaks).
pub fn md_table_md(header: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |c: &str| c.replace('|', "\\|").replace(['\n', '\r'], " ");
    let mut s = format!(
        "| {} |\n|{}\n",
        header.join(" | "),
        "---|".repeat(header.len())
    );
    for r in rows {
        s.push_str(&format!(
            "| {} |\n",
            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    s
}

/// A plain-text table with aligned columns.
pub fn text_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i + 1 < cells.len() {
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut s = line(header.to_vec());
    for r in rows {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn outputs_use_a_delimiter_absent_from_the_value() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let s = format_outputs(&[("a", "one".into()), ("b", "two\nlines".into())], &mut rng);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].starts_with("a<<ghadelimiter_"));
        let delim = lines[0].split_once("<<").unwrap().1;
        assert_eq!(lines[1], "one");
        assert_eq!(lines[2], delim);
        assert!(lines[3].starts_with("b<<"));
        assert_eq!(&lines[4..6], &["two", "lines"]);
    }

    #[test]
    fn workflow_command_data_is_escaped() {
        assert_eq!(escape_data("50%\nnext\r"), "50%25%0Anext%0D");
        assert_eq!(escape_data("a ##[x"), "a #\u{200B}#[x");
        assert_eq!(escape_line("a ##[x"), "a ##[x");
    }

    #[test]
    fn tables() {
        let md = md_table(&["a", "b"], &[vec!["x|y".into(), "1".into()]]);
        assert_eq!(md, "| a | b |\n|---|---|\n| x\\|y | 1 |\n");
        let md = md_table(&["a"], &[vec!["<b>`x`</b>\n[l](u)".into()]]);
        assert_eq!(
            md,
            "| a |\n|---|\n| &lt;b&gt;\\`x\\`&lt;/b&gt; \\[l\\](u) |\n"
        );
        let md = md_table_md(&["a"], &[vec!["`x|y`\nz".into()]]);
        assert_eq!(md, "| a |\n|---|\n| `x\\|y` z |\n");
        let t = text_table(&["name", "n"], &[vec!["core".into(), "2".into()]]);
        assert_eq!(t, "name  n\ncore  2\n");
    }
}
