//! Logging: one line per event on stderr, no timestamps (the runner adds them). Warnings and errors become
//! workflow annotations on a runner. `DEPLOY_ACTION_LOG` (or `RUST_LOG`) sets the filter; `RUNNER_DEBUG=1`
//! turns on debug lines. Every line goes through [`for_log`]: a message carrying text from outside (a task's log
//! line, an AWS error) never reaches the runner as a workflow command.

use std::fmt;

use crate::text::for_log;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

struct LineFormat {
    on_actions: bool,
    /// Values never printed (the token, the bypass header, the webhook URL), in every form a line can carry them
    /// ([`crate::text::secret_forms`]): replaced by `***` in every line, including the SDK's trace and debug lines
    /// when a filter turns them on.
    secrets: Vec<String>,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut msg = String::new();
        ctx.format_fields(Writer::new(&mut msg), event)?;
        let msg = crate::text::redact(&msg, &self.secrets);
        let level = *event.metadata().level();
        match (self.on_actions, level) {
            (true, Level::ERROR) => {
                write!(w, "::error::{}", crate::github::runner::escape_data(&msg))?
            }
            (true, Level::WARN) => {
                write!(w, "::warning::{}", crate::github::runner::escape_data(&msg))?
            }
            (true, Level::DEBUG | Level::TRACE) => {
                write!(w, "::debug::{}", crate::github::runner::escape_data(&msg))?
            }
            (false, Level::ERROR) => write!(w, "error: {}", for_log(&msg))?,
            (false, Level::WARN) => write!(w, "warning: {}", for_log(&msg))?,
            (false, Level::DEBUG | Level::TRACE) => write!(w, "debug: {}", for_log(&msg))?,
            (_, Level::INFO) => write!(w, "{}", for_log(&msg))?,
        }
        writeln!(w)
    }
}

/// Every form of every secret ([`crate::text::secret_forms`]), longest first: a form that contains another secret is
/// replaced whole.
fn every_form(secrets: &[String]) -> Vec<String> {
    let mut forms: Vec<String> = secrets
        .iter()
        .flat_map(|s| crate::text::secret_forms(s))
        .collect();
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    forms
}

/// Starts logging to stderr; `secrets` are redacted from every line (see [`LineFormat`]).
pub fn init(on_actions: bool, secrets: Vec<String>) {
    let debug = std::env::var("RUNNER_DEBUG").is_ok_and(|v| v == "1");
    let default = if debug {
        "deploy_action=debug,warn"
    } else {
        "deploy_action=info,warn"
    };
    let filter = std::env::var("DEPLOY_ACTION_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(LineFormat {
            on_actions,
            secrets: every_form(&secrets),
        })
        .try_init();
}
