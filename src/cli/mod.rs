//! Command-line interface: `serve`, `stdio`, `check`, `test` (`dry_run.rs`), `cache clear`,
//! `switch` (`switch.rs`), `recommendations` and `optimize` (`recommend.rs`), the operator
//! commands `performance`, `metrics`, `alerts`, `health`, `drain` (`ops.rs`, tables in
//! `ops_table.rs`), `import`, `client-config`, and the store's `db`, `tenant`, `server`,
//! `instance`, `key` (`store.rs`); `remote.rs` is the admin-API client the `--url` commands
//! share. No gateway logic lives here.

pub mod approvals;
pub mod audit;
pub mod cache;
pub mod clients;
pub mod describe;
pub mod dry_run;
pub mod import;
pub mod ops;
pub mod ops_table;
pub mod probe;
pub mod recommend;
pub mod remote;
pub mod render;
pub mod store;
pub mod switch;

pub use describe::describe;

use std::path::PathBuf;

pub use cache::{CacheAction, clear_cache};

use clap::{Parser, Subcommand};

/// sekisho — a fast, hard-to-break MCP gateway.
#[derive(Debug, Parser)]
#[command(name = "sekisho", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Streamable HTTP at /mcp in front of the configured upstreams.
    Serve {
        /// The configuration file (TOML).
        #[arg(long, short, env = "SEKISHO_CONFIG")]
        config: PathBuf,
        /// Override server.listen (e.g. 127.0.0.1:0 for any free port).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Serve one client on stdin/stdout (for desktop clients that launch local servers).
    Stdio {
        /// The configuration file (TOML).
        #[arg(long, short, env = "SEKISHO_CONFIG")]
        config: PathBuf,
    },
    /// Validate the configuration and print the resolved upstreams, without serving.
    Check {
        /// The configuration file (TOML).
        #[arg(long, short, env = "SEKISHO_CONFIG")]
        config: PathBuf,
    },
    /// The dry run before a deploy: start every upstream, handshake, list, ping, print timings.
    ///
    /// Validates the configuration, starts every enabled upstream (concurrently, each within
    /// its startup_timeout), waits for its handshake, lists its tools, prompts and resources,
    /// pings it, prints the timings, and stops everything (no child is left running).
    ///
    /// Binds no listener and writes nothing to the store or Redis; when they are configured it
    /// only checks that they answer (PostgreSQL: its schema version; Redis: PING). Exit codes:
    /// 0 all good, 1 an upstream failed (or the store would stop `serve` from starting), 2 the
    /// configuration is invalid. Errors name the upstream and the cause, never env or header
    /// values; URLs lose their user info and query strings.
    Test {
        /// The configuration file (TOML).
        #[arg(long, short, env = "SEKISHO_CONFIG")]
        config: PathBuf,
        /// Print a JSON document (stable fields, `version` 1; docs/operations.md) instead of
        /// the table.
        #[arg(long)]
        json: bool,
    },
    /// Manage the response cache of a running gateway.
    Cache {
        /// What to do.
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Show or change a running gateway's runtime switches (`--url`, an admin key): `sekisho
    /// switch <layer> on|off` (cache, coalesce, retry, breaker, admission, rate_limits,
    /// batching), on every replica with `[redis]`. Exit 1 when refused or unreachable.
    Switch(switch::SwitchArgs),
    /// The calls a running gateway (one replica: `--url`, an admin key) holds for approval:
    /// `list`, `approve ID`, `deny ID [--note TEXT]`. Exit 1 when refused or unreachable.
    Approvals(approvals::ApprovalsArgs),
    /// A running gateway's recommendations: what its monitor and configuration say to change.
    ///
    /// Each names its category, priority, effort, the numbers that triggered it, what to do,
    /// and the configuration change that removes the cause. Exit codes: 0 when none is high
    /// or critical, 1 when any is, 2 when the gateway cannot be reached or refuses.
    Recommendations(recommend::Target),
    /// Connect to one MCP server as the gateway connects to an upstream (with its `auth`), list
    /// its tools, call one. Exit 0 the tool answered, 1 a step failed, 2 wrong arguments.
    Probe(probe::ProbeArgs),
    /// The overall check and the configuration changes of the recommendations as a TOML patch;
    /// `--write FILE` writes a copy of `--config` with them applied (never `--config` itself).
    ///
    /// Exit codes: 0 done, 2 when the gateway cannot be reached or refuses, or the copy cannot
    /// be written.
    Optimize(recommend::OptimizeArgs),
    /// A running gateway's performance summary (`--url`, an admin key): overall health with
    /// its reasons, cache hit rate, average response time, error rate, cost efficiency.
    ///
    /// Exit codes (every operator command): 0 healthy, 1 degraded, 2 unhealthy, 3 the gateway
    /// could not be asked (unreachable, 401/403, refused), 64 a wrong command line.
    Performance(ops::PerformanceArgs),
    /// A running gateway's monitor: the newest sample beside the period's totals.
    ///
    /// Exit codes: 0 answered, 3 could not ask (or the monitor is off), 64 a wrong command line.
    Metrics(ops::MetricsArgs),
    /// A running gateway's alerts, firing and pending (and with --history the resolved ones).
    ///
    /// Exit codes: 0 none firing, 1 an alert below critical firing, 2 a critical alert
    /// firing, 3 could not ask (or alerts are off), 64 a wrong command line.
    Alerts(ops::AlertsArgs),
    /// A running gateway's health: verdict, reasons, upstreams, breakers, store, Redis.
    ///
    /// Exit codes: 0 healthy, 1 degraded, 2 unhealthy, 3 could not ask, 64 a wrong command line.
    Health(ops::Remote),
    /// Drain a running gateway, as SIGTERM does: it refuses new work, finishes the calls in
    /// flight within its shutdown grace, and exits.
    ///
    /// Exit codes: 0 draining (with --wait: stopped), 1 with --wait: still answering after
    /// the grace, 3 could not ask, 64 a wrong command line.
    Drain(ops::DrainArgs),
    /// Read a desktop or CLI client's MCP servers and print them as sekisho configuration
    /// (variables to set and anything not mapped go to stderr).
    Import {
        /// The client's configuration file.
        file: PathBuf,
        /// Its format (detected from the contents when omitted).
        #[arg(long, value_enum)]
        format: Option<import::Format>,
        /// Write the configuration to this new file instead of printing it.
        #[arg(long)]
        write: Option<PathBuf>,
    },
    /// Print a client's configuration with the servers sekisho serves replaced by one
    /// `sekisho stdio --config …` entry; `--write` writes it in place, keeping a backup.
    ClientConfig {
        /// The client.
        #[arg(value_enum)]
        client: import::Format,
        /// The sekisho configuration the client will start sekisho with.
        #[arg(long, short, env = "SEKISHO_CONFIG")]
        config: PathBuf,
        /// The client's file (default: where the client keeps it; see docs/clients.md).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Write the file (keeping a backup) instead of printing it.
        #[arg(long)]
        write: bool,
    },
    /// The audit log (`[audit]`, docs/security.md): `verify` its hash chains, `tail`, `search`.
    Audit {
        /// What to do.
        #[command(subcommand)]
        action: audit::AuditAction,
    },
    /// The PostgreSQL store's schema (`[store]`, docs/multi-tenant.md).
    Db {
        /// What to do.
        #[command(subcommand)]
        action: store::DbAction,
    },
    /// Tenants of the store.
    Tenant {
        /// What to do.
        #[command(subcommand)]
        action: store::TenantAction,
    },
    /// Tenants' own MCP servers (server configs) in the store.
    Server {
        /// What to do.
        #[command(subcommand)]
        action: store::ServerAction,
    },
    /// Instances (virtual servers) and their tool groups in the store.
    Instance {
        /// What to do.
        #[command(subcommand)]
        action: store::InstanceAction,
    },
    /// API keys of instances in the store.
    Key {
        /// What to do.
        #[command(subcommand)]
        action: store::KeyAction,
    },
}

impl Command {
    /// The operator command against a running gateway this is, if it is one (they need no
    /// gateway configuration): `performance`, `metrics`, `alerts`, `health`, `drain`, `cache
    /// clear --url`.
    pub fn into_ops(self) -> Result<ops::OpsCommand, Box<Command>> {
        use ops::OpsCommand as O;
        match self {
            Command::Performance(a) => Ok(O::Performance(a)),
            Command::Metrics(a) => Ok(O::Metrics(a)),
            Command::Alerts(a) => Ok(O::Alerts(a)),
            Command::Health(a) => Ok(O::Health(a)),
            Command::Drain(a) => Ok(O::Drain(a)),
            Command::Cache { action: CacheAction::Clear { url: Some(url), admin_key, json, upstream, tool, .. } } => {
                Ok(O::CacheClear { remote: ops::Remote { url, admin_key, json }, upstream, tool })
            }
            other => Err(Box::new(other)),
        }
    }

    /// The store command this is, if it is one (they need no gateway configuration).
    pub fn into_store(self) -> Result<store::StoreCommand, Box<Command>> {
        use store::StoreCommand as S;
        match self {
            Command::Db { action } => Ok(S::Db(action)),
            Command::Tenant { action } => Ok(S::Tenant(action)),
            Command::Server { action } => Ok(S::Server(action)),
            Command::Instance { action } => Ok(S::Instance(action)),
            Command::Key { action } => Ok(S::Key(action)),
            other => Err(Box::new(other)),
        }
    }
}

/// `sekisho import`: the TOML for `file` (printed, or written to `write`), and a report of the
/// variables to set and what was not mapped on stderr.
///
/// Errors: a message when the file cannot be read or parsed, or `write` exists already.
pub fn run_import(
    file: &std::path::Path,
    format: Option<import::Format>,
    write: Option<&std::path::Path>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let format = match format {
        Some(f) => f,
        None => import::detect(&name, &text)?,
    };
    let imported = import::parse(&text, format)?;
    let toml = render::toml(&imported, &file.display().to_string(), format);
    for (var, v) in &imported.variables {
        eprintln!("sekisho import: set {var} ({})", v.why);
    }
    for note in &imported.notes {
        eprintln!("sekisho import: {note}");
    }
    match write {
        Some(path) if path.exists() => Err(format!("{} exists; not overwriting it", path.display())),
        Some(path) => std::fs::write(path, toml).map_err(|e| format!("cannot write {}: {e}", path.display())),
        None => {
            print!("{toml}");
            Ok(())
        }
    }
}

/// `sekisho client-config`: `client`'s file with the servers sekisho serves (those `import`
/// maps) replaced by one entry that starts sekisho with `config`.
///
/// Errors: a message when `config` is not a valid sekisho configuration, the client's file
/// cannot be read, parsed or written, or its place is unknown.
pub fn run_client_config(
    client: import::Format,
    config: &std::path::Path,
    file: Option<&std::path::Path>,
    write: bool,
) -> Result<(), String> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => clients::default_path(client).ok_or("cannot tell where the client keeps its file: pass --file")?,
    };
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let imported = match &existing {
        Some(text) if !text.trim().is_empty() => import::parse(text, client)?,
        _ => import::Imported::default(),
    };
    // The variables the import moved out of the servers' entries come back in sekisho's entry;
    // check the configuration as if they were set, since the client will set them.
    for var in imported.variables.keys().filter(|v| std::env::var_os(v).is_none()) {
        // SAFETY: the CLI is single-threaded here (no runtime has started).
        unsafe { std::env::set_var(var, "set-by-the-client") };
    }
    crate::config::Config::load(config).map_err(|e| e.to_string())?;
    let config = std::fs::canonicalize(config).map_err(|e| e.to_string())?;
    let replaced: Vec<String> = imported.servers.iter().map(|s| s.original.clone()).collect();
    let sekisho = std::env::current_exe().map_err(|e| e.to_string())?;
    let entry = clients::Entry { sekisho: &sekisho, config: &config, variables: &imported.variables };
    let text = clients::rewrite(client, existing.as_deref(), &replaced, &entry)?;
    if !write {
        print!("{text}");
        return Ok(());
    }
    let backup =
        clients::write_with_backup(&path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!(
        "sekisho client-config: wrote {} ({} servers now served through sekisho)",
        path.display(),
        replaced.len()
    );
    if let Some(b) = backup {
        eprintln!("sekisho client-config: the previous file is {}", b.display());
    }
    Ok(())
}
