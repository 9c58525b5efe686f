//! Configuration of one upstream MCP server: how to reach it (a command, or one or more URLs),
//! its process pool, deadlines, retry and breaker policy, fallback, and per-tool overrides; and
//! the `[resilience]` defaults every upstream starts from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::breaker::BreakerConfig;
use super::retry::RetryConfig;

/// `[upstreams.<namespace>]`: one upstream server. The table key is its namespace.
///
/// ```toml
/// [upstreams.everything]          # a stdio server, started and supervised by sekisho
/// command = "npx"
/// args = ["-y", "@modelcontextprotocol/server-everything"]
/// env = { LOG_LEVEL = "info" }    # values may use ${VAR} from sekisho's environment
/// inherit_env = false             # true: the child also gets sekisho's environment
/// min_processes = 1               # a pool of identical processes …
/// max_processes = 4               # … grown under load, reaped when idle
///
/// [upstreams.weather]             # Streamable HTTP, one or more replicas
/// urls = ["http://10.0.0.5:3001/mcp", "http://10.0.0.6:3001/mcp"]
/// headers = { Authorization = "Bearer ${WEATHER_TOKEN}" }
/// timeout = "120s"
/// trusted = true                  # believe its readOnlyHint/idempotentHint (retries, caching)
/// validate = true                 # check tools/call arguments against inputSchema (default)
/// fallback = "weather_backup"     # serves its calls while it is down
///
/// [upstreams.legacy]             # the 2024-11-05 HTTP+SSE transport
/// url = "http://10.0.0.7:3001/sse"
/// transport = "sse"               # default "streamable-http"
///
/// detect = { results = "redact" } # sensitive data in results: "off", "redact", "block"
///
/// [upstreams.weather.tools.forecast]
/// timeout = "10s"
/// retry = true                    # safe to repeat even without annotations
/// detect = { results = "block", kinds = ["secrets"] }  # replaces the upstream's detect
/// ```
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Program to start for a stdio upstream.
    pub command: Option<String>,
    /// Arguments of `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables for the child, besides the few it always gets (`PATH`, `HOME`,
    /// `LANG`, `LC_*`, `TZ`, `TMPDIR`, `USER`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Give the child sekisho's whole environment (never `SEKISHO_*` or `REDIS_URL`), not only
    /// the variables listed under `env`.
    #[serde(default)]
    pub inherit_env: bool,
    /// stdio: lines of the child's stderr logged per second on average, in bursts of up to
    /// five seconds' worth; the rest are counted and dropped (default 20; 0 logs none).
    pub stderr_lines_per_second: Option<u32>,
    /// Working directory of the child.
    pub cwd: Option<PathBuf>,
    /// Streamable HTTP endpoint of an HTTP upstream (`http://` or `https://`).
    pub url: Option<String>,
    /// Several endpoints of the same HTTP upstream (replicas); instead of `url`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// How `url` is spoken to: `"streamable-http"` (the default) or `"sse"` (the 2024-11-05
    /// HTTP+SSE transport; `url` is then the SSE endpoint).
    pub transport: Option<HttpTransport>,
    /// Extra HTTP headers sent with every request to an HTTP upstream.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Credentials presented to this HTTP upstream (`upstream::auth::config::AuthConfig`).
    pub auth: Option<super::auth::config::AuthConfig>,
    /// PEM file of CA certificates trusted for this HTTPS upstream besides the system store
    /// (a private CA); relative to the configuration file's folder.
    pub ca_file: Option<PathBuf>,
    /// Deadline of one call attempt (default: `[resilience] timeout`, 120s).
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Largest answer accepted from it, in bytes: a JSON body, one SSE event, one stdio line
    /// (default: `[resilience] max_response_bytes`, 16 MiB).
    pub max_response_bytes: Option<usize>,
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
    /// Trust the upstream's tool annotations (`readOnlyHint`, `idempotentHint`) for retries.
    #[serde(default)]
    pub trusted: bool,
    /// Check `tools/call` arguments against the tool's `inputSchema` before sending (default
    /// true; false sends them unchecked).
    pub validate: Option<bool>,
    /// Another upstream that serves this one's calls (same tool names) while it is down.
    pub fallback: Option<String>,
    /// After recovery, traffic returns from the fallback gradually over this period (default 30s).
    #[serde(default, with = "humantime_serde::option")]
    pub fallback_return: Option<Duration>,
    /// Calls in flight to this upstream at most (its bulkhead; default 256).
    pub max_concurrent: Option<usize>,
    /// Calls waiting for this upstream's bulkhead at most (default 256).
    pub queue_size: Option<usize>,
    /// stdio: processes kept running (default 1).
    pub min_processes: Option<usize>,
    /// stdio: processes at most (default: `min_processes`; hard cap 64).
    pub max_processes: Option<usize>,
    /// stdio: calls in flight on every process before another is started (default 8).
    pub grow_at: Option<usize>,
    /// stdio: processes above `min_processes` idle this long are stopped; with
    /// `session = "per-client"` also per-client upstream sessions (default 5m).
    #[serde(default, with = "humantime_serde::option")]
    pub idle_timeout: Option<Duration>,
    /// Whether every client session shares the upstream's connections (`"shared"`, the
    /// default) or gets its own upstream session (`"per-client"`: its own process for stdio,
    /// its own `Mcp-Session-Id` for HTTP).
    #[serde(default)]
    pub session: SessionMode,
    /// `session = "per-client"`: live per-client upstream sessions at most (default 32 for
    /// stdio, 1024 for HTTP; 1–4096). A client session beyond it gets -32013 (HTTP 503).
    pub max_client_sessions: Option<usize>,
    /// `resources/read` results are cached this long when the upstream sends no `ttlMs`
    /// (default: not cached unless the upstream sends `ttlMs` > 0).
    #[serde(default, with = "humantime_serde::option")]
    pub resource_ttl: Option<Duration>,
    /// Liveness probe period (`ping` or `server/discover`); `"0s"` turns it off (default 30s).
    #[serde(default, with = "humantime_serde::option")]
    pub health_interval: Option<Duration>,
    /// Crashes within `crash_window` that stop respawning for `crash_cooldown` (default 5).
    pub crash_limit: Option<u32>,
    /// See `crash_limit` (default 60s).
    #[serde(default, with = "humantime_serde::option")]
    pub crash_window: Option<Duration>,
    /// See `crash_limit` (default 60s).
    #[serde(default, with = "humantime_serde::option")]
    pub crash_cooldown: Option<Duration>,
    /// Replaces `[resilience.retry]` for this upstream.
    pub retry: Option<RetryConfig>,
    /// Replaces `[resilience.breaker]` for this upstream.
    pub breaker: Option<BreakerConfig>,
    /// What its calls cost (`crate::cost::config::Price`; none: free).
    pub price: Option<crate::cost::config::Price>,
    /// What to do with results holding sensitive data (`crate::detect::result`; none: off).
    pub detect: Option<crate::detect::result::DetectConfig>,
    /// Per-tool overrides, by the upstream's own tool name.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolConfig>,
    /// The values in force, filled once by [`UpstreamConfig::resolve`] when the configuration
    /// is loaded (not read from the file).
    #[serde(skip)]
    pub settings: Settings,
}

/// The values in force for one upstream, resolved once from its own table, `[resilience]`,
/// and the defaults written here and nowhere else. `sekisho check` prints them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Settings {
    /// Deadline of one call attempt (`timeout`, else `[resilience] timeout`).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Deadline for starting and probing (`startup_timeout`, default 60s).
    #[serde(with = "humantime_serde")]
    pub startup_timeout: Duration,
    /// Largest answer accepted in bytes (`max_response_bytes`, else `[resilience]`'s, 16 MiB).
    pub max_response_bytes: usize,
    /// stdio: stderr lines logged per second on average (`stderr_lines_per_second`, default 20).
    pub stderr_lines_per_second: u32,
    /// Whether the bulkhead limits calls (`[resilience] bulkhead`).
    pub bulkhead: bool,
    /// Calls in flight at most (`max_concurrent`, default 256).
    pub max_concurrent: usize,
    /// Calls waiting for the bulkhead at most (`queue_size`, default 256).
    pub queue_size: usize,
    /// Longest wait in the bulkhead's queue (5s).
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Waiting this long in the bulkhead raises a call by one priority class (1s).
    #[serde(with = "humantime_serde")]
    pub aging: Duration,
    /// stdio: processes kept running (`min_processes`, default 1).
    pub min_processes: usize,
    /// stdio: processes at most (`max_processes`, default `min_processes`, hard cap 64).
    pub max_processes: usize,
    /// stdio: calls in flight on the chosen process that start another (`grow_at`, default 8).
    pub grow_at: usize,
    /// stdio: processes above the minimum idle this long stop (`idle_timeout`, default 5m).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Liveness probe period, zero for none (`health_interval`, default 30s).
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// Crashes within `crash_window` that pause restarts (`crash_limit`, default 5).
    pub crash_limit: u32,
    /// See `crash_limit` (default 60s).
    #[serde(with = "humantime_serde")]
    pub crash_window: Duration,
    /// How long restarts pause after a crash loop (`crash_cooldown`, default 60s).
    #[serde(with = "humantime_serde")]
    pub crash_cooldown: Duration,
    /// How long traffic takes to return from the fallback (`fallback_return`, default 30s).
    #[serde(with = "humantime_serde")]
    pub fallback_return: Duration,
    /// Retry policy (`retry`, else `[resilience.retry]`).
    pub retry: RetryConfig,
    /// Circuit breaker policy (`breaker`, else `[resilience.breaker]`).
    pub breaker: BreakerConfig,
    /// Shared or per-client upstream sessions (`session`, default shared).
    pub session: SessionMode,
    /// Per-client upstream sessions at most (`max_client_sessions`; default 32 for stdio,
    /// 1024 for HTTP; 0 in shared mode).
    pub max_client_sessions: usize,
    /// Whether `tools/call` arguments are checked against the tool's `inputSchema`
    /// (`validate`, default true).
    pub validate: bool,
}

pub use super::transport::{EraChoice, HttpTransport, Transport};

pub use super::session_mode::{
    DEFAULT_MAX_CLIENT_HTTP_SESSIONS, DEFAULT_MAX_CLIENT_PROCESSES, MAX_CLIENT_SESSIONS_CAP, SessionMode,
};

pub use super::tool_config::ToolConfig;

fn yes() -> bool {
    true
}

/// `[resilience]`: defaults for every upstream.
///
/// ```toml
/// [resilience]
/// timeout = "120s"
/// max_response_bytes = 16777216 # largest upstream answer (JSON body, SSE event, stdio line)
/// bulkhead = true               # per-upstream concurrency limits (max_concurrent, queue_size)
/// [resilience.retry]            # see upstream::retry
/// [resilience.breaker]          # see upstream::breaker
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResilienceConfig {
    /// Deadline of one call attempt.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest answer accepted from an upstream, in bytes (a JSON body, one SSE event, one
    /// stdio line); a larger one is cut off and the call fails with -32603.
    pub max_response_bytes: usize,
    /// Whether each upstream's bulkhead (`max_concurrent`, `queue_size`) limits its calls.
    pub bulkhead: bool,
    /// Retry policy.
    pub retry: RetryConfig,
    /// Circuit breaker policy.
    pub breaker: BreakerConfig,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            timeout: DEFAULT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            bulkhead: true,
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

impl ResilienceConfig {
    /// Problems with these settings.
    pub fn validate(&self) -> Vec<String> {
        let mut p = self.retry.validate("resilience.retry");
        p.extend(self.breaker.validate("resilience.breaker"));
        if self.timeout < Duration::from_millis(10) {
            p.push("resilience.timeout must be at least 10ms".into());
        }
        p.extend(response_limit("resilience", Some(self.max_response_bytes)));
        p
    }
}

/// The default per-call deadline (the seeds' proxied-request timeout).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The default deadline for starting and probing an upstream.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The default largest upstream answer (16 MiB): a JSON body, one SSE event, one stdio line.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// The default rate of logged stderr lines per upstream (lines a second).
pub const DEFAULT_STDERR_LINES_PER_SECOND: u32 = 20;
/// Bounds of `max_response_bytes`: 1 KiB (a JSON-RPC error with some data fits) to 1 GiB.
const RESPONSE_LIMITS: (usize, usize) = (1024, 1 << 30);

fn response_limit(at: &str, value: Option<usize>) -> Option<String> {
    let (min, max) = RESPONSE_LIMITS;
    value
        .filter(|v| !(min..=max).contains(v))
        .map(|_| format!("{at}.max_response_bytes must be between {min} and {max}"))
}

/// No upstream runs more processes than this, whatever the configuration says.
pub const MAX_PROCESSES_CAP: usize = 64;

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
        let http = self.url.is_some() || !self.urls.is_empty();
        if self.url.is_some() && !self.urls.is_empty() {
            problems.push(format!("{at}: set `url` or `urls`, not both"));
        }
        match (&self.command, http) {
            (Some(_), true) => problems.push(format!("{at}: set either `command` (stdio) or `url` (HTTP), not both")),
            (None, false) => {
                problems.push(format!("{at}: set `command` for a stdio server or `url` for an HTTP server"))
            }
            (Some(cmd), false) => {
                if cmd.trim().is_empty() {
                    problems.push(format!("{at}.command is empty"));
                }
                if !self.headers.is_empty() || self.transport.is_some() || self.auth.is_some() {
                    problems.push(format!("{at}.headers, auth and transport only apply to HTTP upstreams (`url`)"));
                }
                if self.ca_file.is_some() {
                    problems.push(format!("{at}.ca_file only applies to HTTP upstreams (`url`)"));
                }
                let min = self.min_processes.unwrap_or(1);
                let max = self.max_processes.unwrap_or(min);
                if min == 0 || max < min || max > MAX_PROCESSES_CAP {
                    problems.push(format!(
                        "{at}: need 1 ≤ min_processes ≤ max_processes ≤ {MAX_PROCESSES_CAP} (got {min} and {max})"
                    ));
                }
            }
            (None, true) => {
                for url in self.url.iter().chain(&self.urls) {
                    match url.parse::<http::Uri>() {
                        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {}
                        _ => problems.push(format!(
                            "{at}: {:?} is not an http:// or https:// URL",
                            crate::observe::redact::url(url)
                        )),
                    }
                }
                if let Some(path) = &self.ca_file
                    && let Err(e) = crate::upstream::http::tls::read_pem_certs(path)
                {
                    problems.push(format!("{at}.ca_file: {e}"));
                }
                problems.extend(super::auth::config::problems(
                    &at,
                    self.auth.as_ref(),
                    &self.headers,
                    self.transport == Some(HttpTransport::Sse),
                ));
                for (k, v) in &self.headers {
                    if http::HeaderName::try_from(k.as_str()).is_err() {
                        problems.push(format!("{at}.headers: {k:?} is not a valid header name"));
                    }
                    if http::HeaderValue::try_from(v.as_str()).is_err() {
                        problems.push(format!("{at}.headers.{k}: the value is not a valid header value"));
                    }
                }
                if !self.args.is_empty()
                    || !self.env.is_empty()
                    || self.cwd.is_some()
                    || self.inherit_env
                    || self.stderr_lines_per_second.is_some()
                {
                    problems.push(format!(
                        "{at}: args, env, inherit_env, cwd and stderr_lines_per_second only apply to stdio upstreams (`command`)"
                    ));
                }
                if self.transport == Some(HttpTransport::Sse) && self.era == EraChoice::Modern {
                    problems
                        .push(format!("{at}: transport = \"sse\" is a legacy-era transport; era cannot be \"modern\""));
                }
                if self.min_processes.is_some() || self.max_processes.is_some() || self.grow_at.is_some() {
                    problems
                        .push(format!("{at}: min_processes, max_processes and grow_at only apply to stdio upstreams"));
                }
            }
        }
        for (field, d) in [("timeout", self.timeout), ("startup_timeout", self.startup_timeout)] {
            if d.is_some_and(|d| d < Duration::from_millis(10)) {
                problems.push(format!("{at}.{field} must be at least 10ms"));
            }
        }
        if self.fallback.as_deref() == Some(name) {
            problems.push(format!("{at}.fallback cannot be the upstream itself"));
        }
        problems.extend(response_limit(&at, self.max_response_bytes));
        match (self.session, self.max_client_sessions) {
            (SessionMode::Shared, Some(_)) => {
                problems.push(format!("{at}.max_client_sessions only applies with session = \"per-client\""))
            }
            (SessionMode::PerClient, Some(n)) if n == 0 || n > MAX_CLIENT_SESSIONS_CAP => {
                problems.push(format!("{at}.max_client_sessions must be between 1 and {MAX_CLIENT_SESSIONS_CAP}"))
            }
            _ => {}
        }
        if self.max_concurrent == Some(0) {
            problems.push(format!("{at}.max_concurrent must be at least 1"));
        }
        if let Some(r) = &self.retry {
            problems.extend(r.validate(&format!("{at}.retry")));
        }
        if let Some(b) = &self.breaker {
            problems.extend(b.validate(&format!("{at}.breaker")));
        }
        let tools = self.tools.iter().filter_map(|(t, c)| Some((format!("{at}.tools.{t}.price"), c.price.as_ref()?)));
        for (at, price) in self.price.iter().map(|p| (format!("{at}.price"), p)).chain(tools) {
            problems.extend(price.validate(&at));
        }
        let tools = self.tools.iter().map(|(t, c)| (t.as_str(), c.detect.as_ref()));
        problems.extend(crate::detect::result::DetectConfig::problems(&at, self.detect.as_ref(), tools));
        problems
    }

    /// Fill [`UpstreamConfig::settings`] from this table and `defaults` (call once, after
    /// [`UpstreamConfig::validate`] passed).
    pub fn resolve(&mut self, defaults: &ResilienceConfig) {
        let min_processes = self.min_processes.unwrap_or(1);
        self.settings = Settings {
            timeout: self.timeout.unwrap_or(defaults.timeout),
            startup_timeout: self.startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT),
            max_response_bytes: self.max_response_bytes.unwrap_or(defaults.max_response_bytes),
            stderr_lines_per_second: self.stderr_lines_per_second.unwrap_or(DEFAULT_STDERR_LINES_PER_SECOND),
            bulkhead: defaults.bulkhead,
            max_concurrent: self.max_concurrent.unwrap_or(256),
            queue_size: self.queue_size.unwrap_or(256),
            queue_timeout: Duration::from_secs(5),
            aging: Duration::from_secs(1),
            min_processes,
            max_processes: self.max_processes.unwrap_or(min_processes).min(MAX_PROCESSES_CAP),
            grow_at: self.grow_at.unwrap_or(8),
            idle_timeout: self.idle_timeout.unwrap_or(Duration::from_secs(300)),
            health_interval: self.health_interval.unwrap_or(Duration::from_secs(30)),
            crash_limit: self.crash_limit.unwrap_or(5).max(1),
            crash_window: self.crash_window.unwrap_or(Duration::from_secs(60)),
            crash_cooldown: self.crash_cooldown.unwrap_or(Duration::from_secs(60)),
            fallback_return: self.fallback_return.unwrap_or(Duration::from_secs(30)),
            retry: self.retry.clone().unwrap_or_else(|| defaults.retry.clone()),
            breaker: self.breaker.clone().unwrap_or_else(|| defaults.breaker.clone()),
            session: self.session,
            max_client_sessions: match (self.session, self.command.is_some()) {
                (SessionMode::Shared, _) => 0,
                (SessionMode::PerClient, true) => self.max_client_sessions.unwrap_or(DEFAULT_MAX_CLIENT_PROCESSES),
                (SessionMode::PerClient, false) => self.max_client_sessions.unwrap_or(DEFAULT_MAX_CLIENT_HTTP_SESSIONS),
            },
            validate: self.validate.unwrap_or(true),
        };
    }

    /// The transport this upstream uses (call after [`UpstreamConfig::validate`] passed).
    pub fn transport(&self) -> Transport {
        match &self.command {
            Some(command) => Transport::Stdio {
                command: command.clone(),
                args: self.args.clone(),
                env: self.env.clone(),
                inherit_env: self.inherit_env,
                cwd: self.cwd.clone(),
            },
            None => {
                let mut headers = http::HeaderMap::new();
                for (k, v) in &self.headers {
                    if let (Ok(k), Ok(v)) =
                        (http::HeaderName::try_from(k.as_str()), http::HeaderValue::try_from(v.as_str()))
                    {
                        headers.insert(k, v);
                    }
                }
                let urls = self.url.iter().chain(&self.urls).map(|u| u.parse().expect("validated")).collect();
                let credentials = super::auth::for_urls(self.auth.as_ref(), self.url.iter().chain(&self.urls));
                Transport::Http { urls, headers, flavor: self.transport.unwrap_or_default(), credentials }
            }
        }
    }
}
