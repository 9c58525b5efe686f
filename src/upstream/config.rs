//! Configuration of one upstream MCP server: how to reach it and how long to wait for it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[upstreams.<namespace>]`: one upstream server. The table key is its namespace.
///
/// ```toml
/// [upstreams.everything]          # a stdio server, started and supervised by sekisho
/// command = "npx"
/// args = ["-y", "@modelcontextprotocol/server-everything"]
/// env = { LOG_LEVEL = "info" }    # values may use ${VAR} from sekisho's environment
/// cwd = "/srv/mcp"                # optional working directory
///
/// [upstreams.weather]             # a Streamable HTTP server
/// url = "http://127.0.0.1:3001/mcp"
/// headers = { Authorization = "Bearer ${WEATHER_TOKEN}" }
/// timeout = "120s"                # per-call deadline (default 120s)
/// ```
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Program to start for a stdio upstream.
    pub command: Option<String>,
    /// Arguments of `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables for the child (added to sekisho's own environment).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the child.
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP endpoint of an HTTP upstream (`http://` or `https://`).
    pub url: Option<String>,
    /// Extra HTTP headers sent with every request to an HTTP upstream.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deadline of one call to this upstream (default 120s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Deadline for starting and probing the upstream (default 60s; `npx -y` may download).
    #[serde(default, with = "humantime_serde::option")]
    pub startup_timeout: Option<Duration>,
    /// Protocol era to speak: `auto` (probe `server/discover`, fall back to `initialize`),
    /// `legacy` or `modern`.
    #[serde(default)]
    pub era: EraChoice,
    /// Set to false to keep the entry but not start it.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// Which protocol era to speak to an upstream.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EraChoice {
    /// Probe with `server/discover`, fall back to `initialize`.
    #[default]
    Auto,
    /// Always use the `initialize` handshake.
    Legacy,
    /// Always use the per-request envelope.
    Modern,
}

/// The default per-call deadline (the seeds' proxied-request timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The default deadline for starting and probing an upstream.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How an upstream is reached, after validation.
#[derive(Clone, Debug, PartialEq)]
pub enum Transport {
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio { command: String, args: Vec<String>, env: BTreeMap<String, String>, cwd: Option<PathBuf> },
    /// A Streamable HTTP endpoint.
    Http { url: http::Uri, headers: http::HeaderMap },
}

impl UpstreamConfig {
    /// Check this upstream; returns every problem found, prefixed with `upstreams.<name>`.
    pub fn validate(&self, name: &str) -> Vec<String> {
        let at = format!("upstreams.{name}");
        let mut problems = Vec::new();
        if name.is_empty()
            || name.len() > 32
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.push(format!("{at}: the namespace must be 1-32 characters of A-Z, a-z, 0-9, '-' or '_'"));
        }
        match (&self.command, &self.url) {
            (Some(_), Some(_)) => {
                problems.push(format!("{at}: set either `command` (stdio) or `url` (HTTP), not both"))
            }
            (None, None) => {
                problems.push(format!("{at}: set `command` for a stdio server or `url` for an HTTP server"))
            }
            (Some(cmd), None) => {
                if cmd.trim().is_empty() {
                    problems.push(format!("{at}.command is empty"));
                }
                if !self.headers.is_empty() {
                    problems.push(format!("{at}.headers only applies to HTTP upstreams (`url`)"));
                }
            }
            (None, Some(url)) => {
                match url.parse::<http::Uri>() {
                    Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {}
                    _ => problems.push(format!("{at}.url = {url:?} is not an http:// or https:// URL")),
                }
                for (k, v) in &self.headers {
                    if http::HeaderName::try_from(k.as_str()).is_err() {
                        problems.push(format!("{at}.headers: {k:?} is not a valid header name"));
                    }
                    if http::HeaderValue::try_from(v.as_str()).is_err() {
                        problems.push(format!("{at}.headers.{k}: the value is not a valid header value"));
                    }
                }
                if !self.args.is_empty() || !self.env.is_empty() || self.cwd.is_some() {
                    problems.push(format!("{at}: args, env and cwd only apply to stdio upstreams (`command`)"));
                }
            }
        }
        for (field, d) in [("timeout", self.timeout), ("startup_timeout", self.startup_timeout)] {
            if d.is_some_and(|d| d < Duration::from_millis(10)) {
                problems.push(format!("{at}.{field} must be at least 10ms"));
            }
        }
        problems
    }

    /// The transport this upstream uses (call after [`UpstreamConfig::validate`] passed).
    pub fn transport(&self) -> Transport {
        match (&self.command, &self.url) {
            (Some(command), _) => Transport::Stdio {
                command: command.clone(),
                args: self.args.clone(),
                env: self.env.clone(),
                cwd: self.cwd.clone(),
            },
            (None, Some(url)) => {
                let mut headers = http::HeaderMap::new();
                for (k, v) in &self.headers {
                    if let (Ok(k), Ok(v)) =
                        (http::HeaderName::try_from(k.as_str()), http::HeaderValue::try_from(v.as_str()))
                    {
                        headers.insert(k, v);
                    }
                }
                Transport::Http { url: url.parse().expect("validated"), headers }
            }
            (None, None) => unreachable!("validated: command or url is set"),
        }
    }

    /// The per-call deadline.
    pub fn call_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// The start-and-probe deadline.
    pub fn startup_deadline(&self) -> Duration {
        self.startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT)
    }
}
