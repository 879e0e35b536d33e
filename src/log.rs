//! Logging: one line per event on stderr, no timestamps (the runner adds them). Warnings and errors become
//! workflow annotations on a runner. `DEPLOY_ACTION_LOG` (or `RUST_LOG`) sets the filter; `RUNNER_DEBUG=1`
//! turns on debug lines.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

struct LineFormat {
    on_actions: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut msg = String::new();
        ctx.format_fields(Writer::new(&mut msg), event)?;
        let level = *event.metadata().level();
        match (self.on_actions, level) {
            (true, Level::ERROR) => write!(w, "::error::{}", crate::github::runner::escape_data(&msg))?,
            (true, Level::WARN) => write!(w, "::warning::{}", crate::github::runner::escape_data(&msg))?,
            (true, Level::DEBUG | Level::TRACE) => write!(w, "::debug::{}", crate::github::runner::escape_data(&msg))?,
            (false, Level::ERROR) => write!(w, "error: {msg}")?,
            (false, Level::WARN) => write!(w, "warning: {msg}")?,
            (false, Level::DEBUG | Level::TRACE) => write!(w, "debug: {msg}")?,
            (_, Level::INFO) => write!(w, "{msg}")?,
        }
        writeln!(w)
    }
}

pub fn init(on_actions: bool) {
    let debug = std::env::var("RUNNER_DEBUG").is_ok_and(|v| v == "1");
    let default = if debug { "deploy_action=debug,warn" } else { "deploy_action=info,warn" };
    let filter = std::env::var("DEPLOY_ACTION_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(LineFormat { on_actions })
        .try_init();
}
