//! The `sekisho` binary: parse the command line, load the configuration, run, map exit codes
//! (0 clean exit, 1 runtime failure, 2 invalid configuration; the operator commands have their
//! own, `sekisho::cli::ops::exit`).

use std::process::ExitCode;

/// mimalloc: the hot path allocates small, short-lived buffers on every request, and glibc's
/// allocator showed up as ~13% of gateway CPU in profiles (see BENCHMARKS.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use sekisho::cli::{Cli, Command};
use sekisho::config::Config;

/// mimalloc's `arena_eager_commit` (option 4 in mimalloc 2.x's `mi_option_t`; the sys crate has
/// no named constant for it). Committing arenas lazily halves idle RSS (18.7 -> 9.2 MB) at no
/// measured CPU cost.
#[cfg(feature = "mimalloc")]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Runs from `.init_array`, before Rust's runtime makes its first allocation, so the option
/// holds for mimalloc's first arena.
#[cfg(feature = "mimalloc")]
extern "C" fn configure_allocator() {
    // SAFETY: setting a mimalloc option is a plain store into its option table.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[cfg(feature = "mimalloc")]
#[used]
#[unsafe(link_section = ".init_array")]
static CONFIGURE_ALLOCATOR: extern "C" fn() = configure_allocator;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage(e),
    };
    let cli = match cli.command.into_ops() {
        Ok(command) => return run_ops(command),
        Err(command) => Cli { command: *command },
    };
    let cli = match cli.command.into_store() {
        Ok(command) => return run_store_command(command),
        Err(command) => Cli { command: *command },
    };
    if let Command::Audit { action } = cli.command {
        return ExitCode::from(sekisho::cli::audit::run(action));
    }
    if let Command::Switch(args) = cli.command {
        return run_switch(args);
    }
    if let Command::Probe(args) = cli.command {
        return run_probe(args);
    }
    if let Command::Approvals(args) = cli.command {
        return print_answer(sekisho::cli::approvals::run(args));
    }
    if let Command::Recommendations(target) = cli.command {
        return run_advice(sekisho::cli::recommend::recommendations(target));
    }
    if let Command::Optimize(args) = cli.command {
        return run_advice(sekisho::cli::recommend::optimize(args));
    }
    // The client-facing helpers need no gateway configuration of their own to start.
    let helper = match &cli.command {
        Command::Import { file, format, write } => Some(sekisho::cli::run_import(file, *format, write.as_deref())),
        Command::ClientConfig { client, config, file, write } => {
            Some(sekisho::cli::run_client_config(*client, config, file.as_deref(), *write))
        }
        _ => None,
    };
    if let Some(result) = helper {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sekisho: {e}");
                ExitCode::from(2)
            }
        };
    }
    let (path, listen) = match &cli.command {
        Command::Serve { config, listen } => (config, listen.clone()),
        Command::Stdio { config } | Command::Check { config } | Command::Test { config, .. } => (config, None),
        Command::Cache { action: sekisho::cli::CacheAction::Clear { config: Some(config), .. } } => (config, None),
        _ => unreachable!("handled above"),
    };
    let mut config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sekisho: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
        let problems = config.server.validate();
        if !problems.is_empty() {
            eprintln!("sekisho: invalid --listen:\n  - {}", problems.join("\n  - "));
            return ExitCode::from(2);
        }
    }
    if let Command::Check { .. } = cli.command {
        print!("{}", sekisho::cli::describe(&config));
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    sekisho::observe::logging::init(&config.log);
    if let Command::Test { json, .. } = cli.command {
        return dry_run(&config, json);
    }
    if let Command::Cache { action: sekisho::cli::CacheAction::Clear { upstream, tool, json, .. } } = cli.command {
        return clear_cache(&config, upstream.as_deref(), tool.as_deref(), json);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.server.worker_threads > 0 {
        builder.worker_threads(config.server.worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sekisho: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        // Installed first, so a signal during start-up drains the gateway instead of killing it.
        let shutdown = shutdown_signal();
        if config.store.enabled() && matches!(cli.command, Command::Serve { .. } | Command::Stdio { .. }) {
            // Refuse to serve on a database `sekisho db migrate` has not prepared; one that does
            // not answer now is waited for (the store starts degraded).
            match sekisho::store::verify(&config.store).await {
                Err(e) if e.is_retryable() => tracing::warn!(error = %e, "store: PostgreSQL does not answer at start"),
                other => other.map_err(std::io::Error::other)?,
            }
        }
        match cli.command {
            Command::Serve { .. } => {
                let listener = tokio::net::TcpListener::bind(config.server.listen_addr()).await?;
                tracing::info!(addr = %listener.local_addr()?, upstreams = config.upstreams.len(), "listening");
                sekisho::app::run(&config, listener, shutdown).await
            }
            Command::Stdio { .. } => sekisho::app::run_stdio(&config, shutdown).await,
            _ => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sekisho failed");
            eprintln!("sekisho: {e}");
            ExitCode::from(1)
        }
    }
}

/// `sekisho test`: the report on stdout (a table, or JSON); exit 0 when everything passed, 1
/// when anything failed.
fn dry_run(config: &Config, json: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sekisho: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let report = runtime.block_on(sekisho::cli::dry_run::run(config));
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("the report serializes"));
    } else {
        print!("{}", sekisho::cli::dry_run::table(&report));
    }
    if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// A command line clap refused: help and version print as usual (exit 0); an error exits 2,
/// or for the operator commands, whose 2 means unhealthy, 64 (`cli::ops::exit::USAGE`).
fn usage(e: clap::Error) -> ExitCode {
    use sekisho::cli::ops::{COMMANDS, exit};
    let _ = e.print();
    if !e.use_stderr() {
        return ExitCode::SUCCESS;
    }
    let first = std::env::args().nth(1).unwrap_or_default();
    if COMMANDS.contains(&first.as_str()) { ExitCode::from(exit::USAGE) } else { ExitCode::from(2) }
}

/// `sekisho performance|metrics|alerts|health|drain|cache clear --url`: the output on stdout,
/// errors on stderr, the command's exit code (`cli::ops::exit`).
fn run_ops(command: sekisho::cli::ops::OpsCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sekisho: cannot start the runtime: {e}");
            return ExitCode::from(sekisho::cli::ops::exit::UNREACHABLE);
        }
    };
    let outcome = runtime.block_on(sekisho::cli::ops::run(command));
    print!("{}", outcome.out);
    if !outcome.err.is_empty() {
        eprintln!("sekisho: {}", outcome.err);
    }
    ExitCode::from(outcome.code)
}

/// `sekisho cache clear --config`: ask the configured gateway to clear its cache; a sentence
/// (or its JSON answer) on stdout and exit 0, or the error on stderr and exit 3.
fn clear_cache(config: &Config, upstream: Option<&str>, tool: Option<&str>, json: bool) -> ExitCode {
    use sekisho::cli::ops::exit;
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sekisho: cannot start the runtime: {e}");
            return ExitCode::from(exit::UNREACHABLE);
        }
    };
    match runtime.block_on(sekisho::cli::clear_cache(config, upstream, tool)) {
        Ok(answer) => {
            let value: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
            if json {
                println!("{answer}")
            } else {
                print!("{}", sekisho::cli::ops_table::cleared(&value))
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sekisho: {e}");
            ExitCode::from(exit::UNREACHABLE)
        }
    }
}

/// `sekisho db|tenant|server|instance|key …`: print the answer, or the error on stderr (exit 1).
fn run_store_command(command: sekisho::cli::store::StoreCommand) -> ExitCode {
    print_answer(sekisho::cli::store::run(command))
}

/// `sekisho switch …`: print the answer, or the error on stderr (exit 1).
fn run_switch(args: sekisho::cli::switch::SwitchArgs) -> ExitCode {
    print_answer(sekisho::cli::switch::run(args))
}

/// `sekisho probe`: one upstream connection, its tools listed and one called.
fn run_probe(args: sekisho::cli::probe::ProbeArgs) -> ExitCode {
    sekisho::observe::logging::init(&sekisho::observe::config::LogConfig::default());
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => ExitCode::from(runtime.block_on(sekisho::cli::probe::run(args))),
        Err(e) => {
            eprintln!("sekisho: cannot start the runtime: {e}");
            ExitCode::from(2)
        }
    }
}

/// `sekisho recommendations|optimize`: print the answer and exit with its code, or the error
/// on stderr (exit 2).
fn run_advice(command: impl std::future::Future<Output = Result<(String, u8), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sekisho: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(command) {
        Ok((text, code)) => {
            print!("{text}");
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("sekisho: {e}");
            ExitCode::from(2)
        }
    }
}

/// Run a client command on a runtime of its own: its answer on stdout (exit 0), or its error on
/// stderr (exit 1).
fn print_answer<E: std::fmt::Display>(command: impl std::future::Future<Output = Result<String, E>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sekisho: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(command) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sekisho: {e}");
            ExitCode::from(1)
        }
    }
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled (which happens only once the gateway has started).
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
