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
            Transport::Stdio { command, args, env, cwd } => {
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
        let timeout = up.timeout.unwrap_or(config.resilience.timeout);
        out.push_str(&format!(" era={:?} timeout={:?}\n", up.era, timeout).to_lowercase());
    }
    out
}
