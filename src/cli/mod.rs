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

/// The resolved upstream list for `check`, with secrets redacted: env and header values, API
/// keys (only their ids, roles and priorities are shown), and the user info and query strings
/// of URLs.
pub fn describe(config: &crate::config::Config) -> String {
    use crate::upstream::config::Transport;
    let mut out = format!("listen: {}\n", config.server.listen);
    if config.server.api_keys.is_empty() {
        out.push_str("auth: none (loopback only; every caller is the admin)\n");
    } else {
        out.push_str(&format!("auth: {} API key(s)\n", config.server.api_keys.len()));
        for key in &config.server.api_keys {
            let id = &key.identity;
            // The rate limit in force: the key's own, else `[rate_limits] per_key`.
            let rate = match id.rate_limit.or_else(|| config.rate_limits.per_key.map(|l| l.resolve())) {
                Some(l) => format!(" rate_limit={}/s burst={}", 1.0 / l.interval.as_secs_f64(), l.burst),
                None => String::new(),
            };
            out.push_str(&format!(
                "  {}: role={} priority={} max_priority={}{rate}\n",
                id.id,
                if id.admin { "admin" } else { "client" },
                id.priority.label(),
                id.max_priority.label()
            ));
        }
    }
    out.push_str(&format!("upstreams ({}):\n", config.upstreams.len()));
    for (name, up) in &config.upstreams {
        let state = if up.enabled { "" } else { " (disabled)" };
        match up.transport() {
            Transport::Stdio { command, args, env, inherit_env, cwd } => {
                out.push_str(&format!(
                    "  {name}{state}: stdio `{}`",
                    std::iter::once(command).chain(args).collect::<Vec<_>>().join(" ")
                ));
                if !env.is_empty() {
                    out.push_str(&format!(
                        " env=[{}]",
                        env.keys().map(|k| format!("{k}=<redacted>")).collect::<Vec<_>>().join(", ")
                    ));
                }
                if inherit_env {
                    out.push_str(" inherit_env");
                }
                if let Some(cwd) = cwd {
                    out.push_str(&format!(" cwd={}", cwd.display()));
                }
            }
            Transport::Http { urls, headers, flavor, credentials } => {
                let urls: Vec<String> = urls.iter().map(|u| crate::observe::redact::url(&u.to_string())).collect();
                let kind = if flavor == crate::upstream::config::HttpTransport::Sse { "sse" } else { "http" };
                out.push_str(&format!("  {name}{state}: {kind} {}", urls.join(" ")));
                if !headers.is_empty() {
                    out.push_str(&format!(
                        " headers=[{}]",
                        headers.keys().map(|k| format!("{k}: <redacted>")).collect::<Vec<_>>().join(", ")
                    ));
                }
                if let Some(c) = credentials.first() {
                    out.push_str(&format!(" auth={c:?}"));
                }
            }
        }
        out.push_str(&format!(" era={:?}\n", up.era).to_lowercase());
        if up.enabled {
            // The values in force, as the gateway resolved them (defaults included).
            let settings = toml::to_string(&up.settings).unwrap_or_default();
            for line in settings.lines().filter(|l| !l.is_empty()) {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    out.push_str(&sections(config));
    out
}

/// The gateway-wide sections as they are in force (defaults included), secrets left out.
fn sections(config: &crate::config::Config) -> String {
    let s = &config.server;
    let server = serde_json::json!({
        "max_body_bytes": s.max_body_bytes,
        "shutdown_grace": humantime::format_duration(s.shutdown_grace).to_string(),
        "session_ttl": humantime::format_duration(s.session_ttl).to_string(),
        "session_key": if s.session_key.is_empty() { "<random per process>" } else { "<set>" },
        "allowed_hosts": s.allowed_hosts,
        "allowed_origins": s.allowed_origins,
        "worker_threads": s.worker_threads,
        "max_connections": s.max_connections,
        "header_read_timeout": humantime::format_duration(s.header_read_timeout).to_string(),
        "body_read_timeout": humantime::format_duration(s.body_read_timeout).to_string(),
        "idle_timeout": humantime::format_duration(s.idle_timeout).to_string(),
        "send_timeout": humantime::format_duration(s.send_timeout).to_string(),
        "max_header_bytes": s.max_header_bytes,
        "metrics_listen": if s.metrics_listen.is_empty() { "<none>" } else { s.metrics_listen.as_str() },
        "tls_cert": if s.tls_cert.is_empty() { "<none: plain HTTP>" } else { s.tls_cert.as_str() },
        "max_batch_size": s.max_batch_size,
        "max_batch_response_bytes": s.max_batch_response_bytes,
        "max_sessions_per_caller": s.max_sessions_per_caller,
        "max_ended_sessions_per_caller": s.max_ended_sessions_per_caller,
        "max_streams_per_session": s.max_streams_per_session,
        "max_calls_per_sse_session": s.max_calls_per_sse_session,
        "max_listens_per_caller": s.max_listens_per_caller,
        "max_subscriptions_per_session": s.max_subscriptions_per_session,
        "max_uri_bytes": s.max_uri_bytes,
    });
    let redis = serde_json::json!({
        "url": if config.redis.resolved_url().is_some() { "<set>" } else { "<none>" },
        "prefix": config.redis.prefix,
        "timeout": humantime::format_duration(config.redis.timeout).to_string(),
        "tls": config.redis.resolved_url().is_some_and(|u| u.starts_with("rediss://")),
        "entry_secret": if config.redis.entry_secret.is_empty() { "<none>" } else { "<set>" },
        "ca_file": if config.redis.ca_file.is_empty() { "<system store>" } else { config.redis.ca_file.as_str() },
    });
    let st = &config.store;
    let set = |v: &str| if v.is_empty() { "<none>" } else { "<set>" };
    let store = serde_json::json!({
        "postgres_url": if st.enabled() { "<set>" } else { "<none: keys from this file>" },
        "key_pepper": set(&st.key_pepper),
        "secret_key": set(&st.secret_key),
        "cache_ttl": humantime::format_duration(st.cache_ttl).to_string(),
        "max_stale": humantime::format_duration(st.max_stale).to_string(),
        "last_used_flush": humantime::format_duration(st.last_used_flush).to_string(),
        "timeout": humantime::format_duration(st.timeout).to_string(),
        "max_connections": st.max_connections,
        "cache_capacity": st.cache_capacity,
    });
    let m = &config.monitor;
    let monitor = serde_json::json!({
        "enabled": m.enabled,
        "interval": humantime::format_duration(m.interval).to_string(),
        "retention": humantime::format_duration(m.retention).to_string(),
        "top_n": m.top_n,
        "samples_kept": m.capacity(),
        "replica": m.replica_name(),
    });
    let al = &config.alerts;
    let rules: Vec<String> = al
        .rules()
        .iter()
        .map(|r| {
            let scope = r.scope.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
            let (m, o, t) = (r.metric.as_str(), r.op.as_str(), r.metric.show(r.threshold));
            let held = humantime::format_duration(r.for_);
            format!("{}: {m}{scope} {o} {t} for {held} -> {}", r.name, r.severity.as_str())
        })
        .collect();
    let alerts = serde_json::json!({
        "enabled": al.enabled && m.enabled,
        "rules": rules,
        "rules_source": if al.rules.is_some() { "configured" } else { "defaults" },
        "webhooks": al.webhooks.iter().map(|w| crate::observe::redact::url(&w.url)).collect::<Vec<_>>(),
        "history": al.history,
        "hysteresis": al.hysteresis,
        "queue": al.queue,
        "attempts": al.attempts,
        "backoff": humantime::format_duration(al.backoff).to_string(),
        "timeout": humantime::format_duration(al.timeout).to_string(),
    });
    let mut out = String::from("settings in force:\n");
    let mut section = |name: &str, text: Result<String, toml::ser::Error>| {
        out.push_str(&format!("  [{name}]\n"));
        for line in text.unwrap_or_default().lines().filter(|l| !l.is_empty()) {
            out.push_str(&format!("    {line}\n"));
        }
    };
    section("server", toml::to_string(&server));
    section("admission", toml::to_string(&config.admission));
    section("resilience", toml::to_string(&config.resilience));
    section("cache", toml::to_string(&config.cache));
    section("idempotency", toml::to_string(&config.idempotency));
    section("redis", toml::to_string(&redis));
    section("rate_limits", toml::to_string(&config.rate_limits));
    section("store", toml::to_string(&store));
    section("monitor", toml::to_string(&monitor));
    section("alerts", toml::to_string(&alerts));
    section("self_tools", toml::to_string(&config.self_tools));
    section("audit", toml::to_string(&audit::settings(config)));
    section("catalog", toml::to_string(&config.catalog));
    section("log", toml::to_string(&config.log));
    out
}
