//! Parse inputs, start logging, dispatch one phase, emit its outcome. Nothing else lives here.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;

use deploy_action::domain::state_now;
use deploy_action::error::{exit, UsageError};
use deploy_action::github::runner::Outcome;
use deploy_action::github::runner::Runner;
use deploy_action::inputs::{
    Cli, Command, Common, GithubEnv, InitArgs, Invocation, Phase, RawInputs,
};
use deploy_action::phases::{self, Ctx, Recorded};
use deploy_action::wait::{Pace, WaitError};
use deploy_action::wrapper;
use deploy_action::{aws, log};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let first = e
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_string();
            eprintln!(
                "error: {} (see deploy-action --help)",
                deploy_action::text::for_log(&first)
            );
            return ExitCode::from(exit::USAGE);
        }
    };
    let github = GithubEnv::from_env();
    // Masks first, before any parsing that can fail and print: every secret given on the command line or as an
    // Action input, whether the rest of the inputs turn out valid or not. The log redacts the same values.
    let early = Runner::new(&github, Default::default());
    let env_inputs = RawInputs::from_env();
    let cli_raw = cli.command.as_ref().map(|c| c.raw()).unwrap_or_default();
    let secrets: Vec<String> = cli_raw
        .secrets()
        .into_iter()
        .map(str::to_string)
        .chain(RawInputs::secrets_from_env())
        .collect();
    for secret in &secrets {
        early.mask(secret);
    }
    log::init(github.on_runner(), secrets);
    if let Some(Command::Init(args)) = &cli.command {
        return ExitCode::from(init(args, &github).await);
    }
    let inv =
        env_inputs.and_then(|env| Invocation::resolve(cli.command.as_ref(), env, github.clone()));
    let inv = match inv {
        Ok(inv) => inv,
        Err(e) => {
            early.error(&e.to_string());
            return ExitCode::from(exit::USAGE);
        }
    };
    let runner = Runner::new(&github, inv.output_format());
    let code = match dispatch(&inv, &runner).await {
        Ok(code) => code,
        Err(e) => report_error(&runner, inv.phase, &e),
    };
    ExitCode::from(code)
}

/// One match: phase → request → clients → run → emit.
async fn dispatch(inv: &Invocation, runner: &Runner) -> anyhow::Result<u8> {
    if inv.phase == Phase::CheckConfig {
        let out = phases::check_config::run(&inv.config_path(), inv.raw.environment.as_deref())?;
        return emit(runner, inv.phase, &out);
    }
    if inv.phase == Phase::IamPolicy {
        return emit(runner, inv.phase, &phases::iam_policy::run(inv)?);
    }
    let common = inv.common()?;
    let pace = Pace::from_env()?;
    let cancel = CancellationToken::new();
    watch_signals(cancel.clone());
    let ctx = Ctx {
        runner: runner.clone(),
        github: inv.github.clone(),
        cancel,
        deadline: tokio::time::Instant::now() + common.timeout,
        dry_run: common.dry_run,
        pace,
    };
    // Every phase: validate its inputs (no AWS call yet), build only its clients, run, emit. Phases that change the
    // environment run inside `wrapper::around`: gates and the GitHub deployment record first, status after.
    macro_rules! phase {
        ($m:ident) => {{
            let req = phases::$m::Request::from_invocation(inv, &common)?;
            let subject = req.subject(&common);
            let started = AtomicBool::new(false);
            let run = async {
                started.store(true, Ordering::Relaxed);
                let sdk = aws::sdk_config(&common.environment.region).await;
                phases::$m::run(&req, &phases::$m::Clients::new(&sdk), &ctx).await
            };
            let out = wrapper::around(inv, &common, &ctx, subject, run).await;
            finish(
                runner,
                inv,
                &common,
                &ctx,
                out,
                started.load(Ordering::Relaxed),
            )
            .await
        }};
    }
    match inv.phase {
        Phase::Status => phase!(status),
        Phase::State => phase!(state),
        Phase::Snapshot => phase!(snapshot),
        Phase::Migrate => phase!(migrate),
        Phase::Restore => phase!(restore),
        Phase::Deploy => phase!(deploy),
        Phase::Rollback => phase!(rollback),
        Phase::Run => phase!(run),
        Phase::Preview => {
            // A review app reads AWS before the GitHub deployment record: a colliding host or path, or a resource of
            // its name that is not its own, is bad input (exit 2) and creates nothing, not even the record.
            let req = phases::preview::Request::from_invocation(inv, &common)?;
            let sdk = aws::sdk_config(&common.environment.region).await;
            let clients = phases::preview::Clients::new(&sdk);
            let checked = phases::preview::check(&req, &clients).await?;
            let subject = req.subject(&common);
            let run = phases::preview::run(&req, &clients, &ctx, checked);
            let out = wrapper::around(inv, &common, &ctx, subject, run).await?;
            emit(runner, inv.phase, &out)
        }
        Phase::CheckConfig | Phase::IamPolicy | Phase::Init => unreachable!("handled above"),
    }
}

/// `init` has no config to read yet: its own request, from the flags and the AWS region variables.
async fn init(args: &InitArgs, github: &GithubEnv) -> u8 {
    let runner = Runner::new(github, args.output.unwrap_or_default());
    let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()));
    let req = match phases::init::Request::from_args(args, region) {
        Ok(req) => req,
        Err(e) => {
            runner.error(&e.to_string());
            return exit::USAGE;
        }
    };
    let sdk = aws::sdk_config(&req.region).await;
    match phases::init::run(&req, &phases::init::Clients::new(&sdk)).await {
        Ok(out) => emit(&runner, Phase::Init, &out)
            .unwrap_or_else(|e| report_error(&runner, Phase::Init, &e)),
        Err(e) => report_error(&runner, Phase::Init, &e),
    }
}

/// Emits the outcome; a failure of a phase that started (not bad input, not a gate's refusal, not a dry run) ends
/// with the "state now" block, printed last. A refusal before the phase changed nothing and reads nothing of AWS.
async fn finish<O: Outcome>(
    runner: &Runner,
    inv: &Invocation,
    common: &Common,
    ctx: &Ctx,
    result: anyhow::Result<O>,
    started: bool,
) -> anyhow::Result<u8> {
    let failed = started
        && match &result {
            Ok(out) => !out.ok(),
            Err(e) => !e.chain().any(|c| c.is::<UsageError>()),
        };
    if !failed || ctx.dry_run || !state_now::applies(inv.phase) {
        return emit(runner, inv.phase, &result?);
    }
    let asked = state_now::Asked {
        version: inv.raw.version.clone(),
        state: inv.raw.state.clone(),
        task: inv.raw.task.clone(),
        cancelled: ctx.cancel.is_cancelled(),
        ..state_now::Asked::new(inv.phase, &common.environment.name, &common.config_path)
    };
    let sdk = aws::sdk_config(&common.environment.region).await;
    let now = state_now::observe(&common.environment, &state_now::Clients::new(&sdk), &asked).await;
    match result {
        Ok(outcome) => emit(runner, inv.phase, &state_now::Then { outcome, now }),
        Err(e) => {
            let code = report_error(runner, inv.phase, &e);
            let after = state_now::AfterError {
                error: format!("{e:#}"),
                state_now: now,
            };
            emit(runner, inv.phase, &after)?;
            Ok(code)
        }
    }
}

fn emit<O: Outcome>(runner: &Runner, phase: Phase, out: &O) -> anyhow::Result<u8> {
    runner.emit(phase.name(), out)?;
    Ok(if out.ok() { exit::OK } else { exit::FAILED })
}

/// Prints the error chain once, as one annotation, and picks the exit code.
fn report_error(runner: &Runner, phase: Phase, e: &anyhow::Error) -> u8 {
    let msg = format!("{e:#}");
    runner.error(&msg);
    let code = if e.chain().any(|c| c.is::<UsageError>()) {
        exit::USAGE
    } else if e.chain().any(|c| {
        matches!(
            c.downcast_ref::<WaitError>(),
            Some(WaitError::Cancelled { .. })
        )
    }) {
        exit::CANCELLED
    } else {
        exit::FAILED
    };
    if code != exit::USAGE {
        let _ = runner.append_summary(&format!(
            "### ❌ {} failed\n\n{}\n",
            phase.name(),
            deploy_action::text::md_text(&msg)
        ));
    }
    runner.flush_deferred();
    code
}

/// SIGINT (the runner's first signal on cancel) or SIGTERM (7.5 s later) cancel the run; phases clean up.
fn watch_signals(cancel: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        loop {
            let name = tokio::select! { _ = int.recv() => "SIGINT", _ = term.recv() => "SIGTERM" };
            tracing::warn!(
                "{name} received: cancelling; stopping what this run started before exiting"
            );
            cancel.cancel();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}
