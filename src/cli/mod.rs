//! Command-line interface: `serve`, `stdio`, `check`. No business logic lives here.

use std::path::PathBuf;

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
    /// Manage the response cache of a running gateway.
    Cache {
        /// What to do.
        #[command(subcommand)]
        action: CacheAction,
    },
}

/// `sekisho cache …`.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Drop cached results (all, one upstream's, or one tool's) in the gateway listening at
    /// the configuration's `server.listen`, and through Redis in every replica.
    Clear {
        /// The configuration file (TOML) of the running gateway.
        #[arg(long, short, env = "SEKISHO_CONFIG")]
        config: PathBuf,
        /// Only this upstream's results.
        #[arg(long)]
        upstream: Option<String>,
        /// Only this tool's results (the upstream's own tool name; needs --upstream).
        #[arg(long, requires = "upstream")]
        tool: Option<String>,
    },
}

/// Ask the gateway configured by `config` to clear its cache (`POST /admin/cache/clear`);
/// returns its answer.
///
/// Errors: a message when the gateway cannot be reached or refuses (HTTP status and body).
pub async fn clear_cache(
    config: &crate::config::Config,
    upstream: Option<&str>,
    tool: Option<&str>,
) -> Result<String, String> {
    use http_body_util::{BodyExt, Full};
    let mut addr = config.server.listen_addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let scope =
        crate::cache::key::ClearScope { upstream: upstream.map(str::to_string), tool: tool.map(str::to_string) };
    let query = serde_urlencoded::to_string(&scope).map_err(|e| e.to_string())?;
    let uri = format!("http://{addr}/admin/cache/clear?{query}");
    let mut req = http::Request::post(&uri).header(http::header::HOST, "localhost");
    if let Some(key) = config.server.api_keys.first() {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {}", key.secret()));
    }
    let req = req.body(Full::new(bytes::Bytes::new())).map_err(|e| e.to_string())?;
    let resp = crate::upstream::http::client().request(req).await.map_err(|e| format!("cannot reach {uri}: {e}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() { Ok(body) } else { Err(format!("{status}: {body}")) }
}

/// The resolved upstream list for `check`, with secrets (env values, header values) redacted.
pub fn describe(config: &crate::config::Config) -> String {
    use crate::upstream::config::Transport;
    let mut out = format!("listen: {}\n", config.server.listen);
    out.push_str(&format!(
        "auth: {}\n",
        if config.server.api_keys.is_empty() {
            "none (loopback only)".to_string()
        } else {
            format!("{} API key(s)", config.server.api_keys.len())
        }
    ));
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
            Transport::Http { urls, headers } => {
                let urls: Vec<String> = urls.iter().map(|u| u.to_string()).collect();
                out.push_str(&format!("  {name}{state}: http {}", urls.join(" ")));
                if !headers.is_empty() {
                    out.push_str(&format!(
                        " headers=[{}]",
                        headers.keys().map(|k| format!("{k}: <redacted>")).collect::<Vec<_>>().join(", ")
                    ));
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
    });
    let redis = serde_json::json!({
        "url": if config.redis.resolved_url().is_some() { "<set>" } else { "<none>" },
        "prefix": config.redis.prefix,
        "timeout": humantime::format_duration(config.redis.timeout).to_string(),
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
    section("catalog", toml::to_string(&config.catalog));
    section("log", toml::to_string(&config.log));
    out
}
