//! `sekisho test`: the dry run before a deploy. Start every enabled upstream of a configuration
//! (concurrently), wait for its handshake, list what it offers, ping it, report timings, and
//! stop everything, without binding a listener or writing to the store or Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::catalog::listing::{self, ListKind};
use crate::config::Config;
use crate::upstream::config::{HttpTransport, Transport, UpstreamConfig};
use crate::upstream::replica::{self, Replica};
use crate::upstream::status::Status;
use crate::upstream::{Upstream, UpstreamSet};
use crate::wire::mcp::Era;

/// Version of the `--json` document; bumped only when a field changes meaning or goes away
/// (new fields may appear without a bump).
pub const REPORT_VERSION: u32 = 1;

/// Longest error text kept per failure, in characters: an upstream's error answer is hostile
/// text of any length.
const MAX_ERROR_CHARS: usize = 400;

/// Longest server name or version kept, in characters.
const MAX_INFO_CHARS: usize = 80;

/// How long past its `startup_timeout` a replica that has not reported is waited for: its
/// supervisor gives up at `startup_timeout` and says why, which is the better message.
const STARTUP_MARGIN: Duration = Duration::from_millis(500);

/// How long Redis is given to connect and answer `PING`.
const REDIS_WAIT: Duration = Duration::from_secs(3);

/// What `sekisho test` found (the `--json` document).
#[derive(Debug, Serialize)]
pub struct Report {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// Every upstream passed and no service failed in a way `serve` would refuse to start on.
    pub ok: bool,
    /// Wall time of the whole run, stopping included, in milliseconds.
    pub duration_ms: f64,
    /// One entry per enabled upstream, in namespace order.
    pub upstreams: Vec<UpstreamReport>,
    /// The PostgreSQL store and Redis, when configured.
    pub services: Vec<ServiceReport>,
}

/// What one upstream did.
#[derive(Debug, Serialize)]
pub struct UpstreamReport {
    /// Its namespace.
    pub name: String,
    /// `stdio`, `http` (Streamable HTTP) or `sse` (HTTP+SSE).
    pub transport: &'static str,
    /// Every replica connected, every offered list was read and every ping answered.
    pub ok: bool,
    /// `legacy` or `modern`, once a replica completed its handshake.
    pub era: Option<&'static str>,
    /// The protocol revision in use.
    pub protocol_version: Option<&'static str>,
    /// The upstream's `serverInfo` name and version (cut to 80 characters, controls removed).
    pub server: Option<ServerInfo>,
    /// The slowest replica's time from start to completed handshake, in milliseconds.
    pub handshake_ms: Option<f64>,
    /// The lists read (every page of each).
    pub lists: Lists,
    /// The slowest replica's `ping` (legacy) or `server/discover` (modern) round trip, in
    /// milliseconds.
    pub ping_ms: Option<f64>,
    /// Each replica: a process (`min_processes` of them) or one per URL.
    pub replicas: Vec<ReplicaReport>,
    /// The first failure, in words (secrets, URL user info and query strings redacted).
    pub error: Option<String>,
}

/// The upstream's `serverInfo`.
#[derive(Debug, Serialize)]
pub struct ServerInfo {
    /// `name`.
    pub name: Option<String>,
    /// `version`.
    pub version: Option<String>,
}

/// The four lists; `null` for a list the upstream does not offer (no capability declared).
#[derive(Debug, Default, Serialize)]
pub struct Lists {
    /// `tools/list`.
    pub tools: Option<ListReport>,
    /// `prompts/list`.
    pub prompts: Option<ListReport>,
    /// `resources/list`.
    pub resources: Option<ListReport>,
    /// `resources/templates/list`.
    pub resource_templates: Option<ListReport>,
}

impl Lists {
    fn slot(&mut self, kind: ListKind) -> &mut Option<ListReport> {
        match kind {
            ListKind::Tools => &mut self.tools,
            ListKind::Prompts => &mut self.prompts,
            ListKind::Resources => &mut self.resources,
            ListKind::Templates => &mut self.resource_templates,
        }
    }

    /// The lists in catalog order.
    pub fn all(&self) -> [&Option<ListReport>; 4] {
        [&self.tools, &self.prompts, &self.resources, &self.resource_templates]
    }
}

/// One list read.
#[derive(Debug, Serialize)]
pub struct ListReport {
    /// Items listed (`null` when reading failed).
    pub count: Option<usize>,
    /// Time to read every page, in milliseconds.
    pub ms: f64,
    /// Why reading failed.
    pub error: Option<String>,
}

/// One replica of an upstream.
#[derive(Debug, Serialize)]
pub struct ReplicaReport {
    /// The command started (without its arguments) or the URL (user info and query redacted).
    pub target: String,
    /// The child's process id (stdio), once started; it is stopped before the report is made.
    pub pid: Option<u32>,
    /// Connected and answered its ping.
    pub ok: bool,
    /// Time from start to completed handshake, in milliseconds.
    pub handshake_ms: Option<f64>,
    /// The ping's round trip, in milliseconds.
    pub ping_ms: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A service the gateway depends on.
#[derive(Debug, Serialize)]
pub struct ServiceReport {
    /// `postgres` (the `[store]`) or `redis`.
    pub name: &'static str,
    /// It answered (and, for the store, its schema is migrated).
    pub ok: bool,
    /// The failure would stop `serve` from starting (an unmigrated store, unusable store
    /// settings), so it fails the run; a service that does not answer only degrades `serve`
    /// and is reported without failing it.
    pub fatal: bool,
    /// Time to the answer, in milliseconds.
    pub ms: f64,
    /// Why it failed.
    pub error: Option<String>,
}

/// Run the dry run for `config`: every enabled upstream concurrently, each bounded by its
/// `startup_timeout` for the handshake, by its call deadline (`timeout`, retries included)
/// for each list, and by the shorter of `timeout` and `startup_timeout` for the ping; then
/// stop every upstream (children get stdin closed, SIGTERM, SIGKILL) before returning.
/// Needs a Tokio runtime.
pub async fn run(config: &Config) -> Report {
    let started = Instant::now();
    crate::upstream::http::tls::install_provider();
    let set = UpstreamSet::new(config.enabled_upstreams());
    let t0 = Instant::now();
    // Nobody follows the catalog here; dropped receivers make the replicas' signals no-ops.
    drop(set.start());
    let probes = futures::future::join_all(set.iter().map(|up| probe_upstream(Arc::clone(up), t0)));
    let (upstreams, services) = tokio::join!(probes, services(config));
    set.shutdown().await;
    let ok = upstreams.iter().all(|u| u.ok) && !services.iter().any(|s| s.fatal);
    Report { version: REPORT_VERSION, ok, duration_ms: ms(started.elapsed()), upstreams, services }
}

/// One upstream: handshake of every replica, its lists, a ping of every live replica.
async fn probe_upstream(up: Arc<Upstream>, t0: Instant) -> UpstreamReport {
    let scrub = Scrubber::for_upstream(&up.config);
    let settings = &up.config.settings;
    let transport = up.config.transport();
    let limit = settings.startup_timeout + STARTUP_MARGIN;
    let replicas = up.replicas();
    let connected = futures::future::join_all(replicas.iter().map(|r| connect(r, t0, limit, &transport, &scrub))).await;
    let mut report = UpstreamReport {
        name: up.name.to_string(),
        transport: match &transport {
            Transport::Stdio { .. } => "stdio",
            Transport::Http { flavor: HttpTransport::Sse, .. } => "sse",
            Transport::Http { .. } => "http",
        },
        ok: false,
        era: None,
        protocol_version: None,
        server: None,
        handshake_ms: connected.iter().filter_map(|(r, _)| r.handshake_ms).reduce(f64::max),
        lists: Lists::default(),
        ping_ms: None,
        replicas: Vec::new(),
        error: connected.iter().find_map(|(r, _)| r.error.clone()),
    };
    let Some(h) = up.handshake() else {
        report.replicas = connected.into_iter().map(|(r, _)| r).collect();
        report.error.get_or_insert_with(|| "no replica connected".into());
        return report;
    };
    report.era = Some(if h.era == Era::Modern { "modern" } else { "legacy" });
    report.protocol_version = Some(h.version);
    report.server = h.server_info.as_deref().map(server_info);
    let deadline = up.longest_call(None);
    for kind in ListKind::ALL {
        if !h.has_capability(kind.capability()) {
            continue;
        }
        let begun = Instant::now();
        let read = tokio::time::timeout(deadline, listing::fetch(&up, kind)).await;
        let (count, error) = match read {
            Ok(Ok((entries, _))) => (Some(entries.len()), None),
            Ok(Err(e)) => (None, Some(scrub.clean(&format!("{}: {e}", kind.method())))),
            Err(_) => (None, Some(format!("{}: no answer within {}", kind.method(), secs(deadline)))),
        };
        if let Some(e) = &error {
            report.error.get_or_insert_with(|| e.clone());
        }
        *report.lists.slot(kind) = Some(ListReport { count, ms: ms(begun.elapsed()), error });
    }
    let mut out = Vec::with_capacity(connected.len());
    for (mut r, conn) in connected {
        if let Some(conn) = conn {
            let begun = Instant::now();
            // A ping is the cheapest request there is: it gets no longer than the handshake.
            match replica::probe(&conn, settings.timeout.min(settings.startup_timeout)).await {
                Ok(()) => r.ping_ms = Some(ms(begun.elapsed())),
                Err(e) => {
                    let e = scrub.clean(&format!("ping: {e}"));
                    report.error.get_or_insert_with(|| e.clone());
                    r.error = Some(e);
                    r.ok = false;
                }
            }
        }
        out.push(r);
    }
    report.ping_ms = out.iter().filter_map(|r| r.ping_ms).reduce(f64::max);
    report.replicas = out;
    report.ok = report.error.is_none() && report.replicas.iter().all(|r| r.ok);
    report
}

/// Wait for one replica's handshake; its report so far and its connection when it is up.
async fn connect(
    r: &Arc<Replica>,
    t0: Instant,
    limit: Duration,
    transport: &Transport,
    scrub: &Scrubber,
) -> (ReplicaReport, Option<Arc<crate::upstream::connection::Connection>>) {
    let target = match transport {
        Transport::Stdio { command, .. } => command.clone(),
        Transport::Http { urls, .. } => {
            // Replica `i` of an HTTP upstream is its `i`-th URL (no growth for HTTP).
            let url = urls.get(r.index % urls.len().max(1)).map(|u| u.to_string()).unwrap_or_default();
            crate::observe::redact::url(&url)
        }
    };
    let mut report = ReplicaReport { target, pid: None, ok: false, handshake_ms: None, ping_ms: None, error: None };
    match r.connected(limit).await {
        Ok(conn) => {
            report.handshake_ms = Some(ms(t0.elapsed()));
            report.pid = conn.pid();
            report.ok = true;
            (report, Some(conn))
        }
        Err(()) => {
            let why = match r.status() {
                Status::Down { reason, .. } => reason,
                Status::Stopped => "stopped before it connected".into(),
                Status::Starting | Status::Up { .. } => format!("no handshake within {}", secs(limit - STARTUP_MARGIN)),
            };
            report.error = Some(scrub.clean(&why));
            (report, None)
        }
    }
}

/// The store's and Redis's answers, when they are configured (read only: the store's schema
/// version, Redis's `PING`).
async fn services(config: &Config) -> Vec<ServiceReport> {
    let mut out = Vec::new();
    if config.store.enabled() {
        let begun = Instant::now();
        let limit = config.store.timeout * 2 + Duration::from_secs(1);
        let scrub = Scrubber { pairs: vec![secret_pair(&config.store.postgres_url)] };
        let (fatal, error) = match tokio::time::timeout(limit, crate::store::verify(&config.store)).await {
            Ok(Ok(())) => (false, None),
            Ok(Err(e)) => (!e.is_retryable(), Some(scrub.clean(&e.to_string()))),
            Err(_) => (false, Some(format!("PostgreSQL did not answer within {}", secs(limit)))),
        };
        out.push(ServiceReport { name: "postgres", ok: error.is_none(), fatal, ms: ms(begun.elapsed()), error });
    }
    if let Some(url) = config.redis.resolved_url() {
        let begun = Instant::now();
        let stop = tokio_util::sync::CancellationToken::new();
        let l2 = crate::cache::l2::L2::connect(url, &config.redis, stop.clone());
        let answered = tokio::time::timeout(REDIS_WAIT, async {
            while l2.connection().is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            l2.run::<String>("ping", &redis::cmd("PING")).await
        })
        .await;
        stop.cancel();
        let error = match answered {
            Ok(Some(_)) => None,
            _ => Some(format!("Redis did not answer PING within {} (the log says why)", secs(REDIS_WAIT))),
        };
        out.push(ServiceReport { name: "redis", ok: error.is_none(), fatal: false, ms: ms(begun.elapsed()), error });
    }
    out
}

/// Removes what must not be printed from error texts: the configured URLs become their
/// redacted forms, env and header values (and a header's credential after its scheme word)
/// become `<redacted>`; control characters become spaces and the text is cut to
/// [`MAX_ERROR_CHARS`].
struct Scrubber {
    pairs: Vec<(String, String)>,
}

/// A URL and its redacted form.
fn secret_pair(url: &str) -> (String, String) {
    (url.to_string(), crate::observe::redact::url(url))
}

impl Scrubber {
    fn for_upstream(config: &UpstreamConfig) -> Scrubber {
        let mut pairs = Vec::new();
        let mut secret = |value: &str| {
            // Very short values would redact ordinary words; no credential is that short.
            if value.len() >= 4 {
                pairs.push((value.to_string(), "<redacted>".to_string()));
            }
        };
        match config.transport() {
            Transport::Stdio { env, .. } => env.values().for_each(|v| secret(v)),
            Transport::Http { urls, headers, .. } => {
                for value in headers.values().filter_map(|v| v.to_str().ok()) {
                    secret(value);
                    if let Some((_, credential)) = value.split_once(' ') {
                        secret(credential.trim());
                    }
                }
                let urls = urls.iter().map(|u| secret_pair(&u.to_string()));
                // URLs first (they may contain a secret value), longest first.
                let mut urls: Vec<_> = urls.collect();
                urls.sort_by_key(|(u, _)| std::cmp::Reverse(u.len()));
                pairs.splice(0..0, urls);
            }
        }
        Scrubber { pairs }
    }

    fn clean(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (secret, shown) in &self.pairs {
            if !secret.is_empty() && secret != shown {
                text = text.replace(secret.as_str(), shown);
            }
        }
        printable(&text, MAX_ERROR_CHARS)
    }
}

/// `text` with control characters as spaces, cut to `max` characters (ending in `…`).
fn printable(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// The name and version of a raw `serverInfo` object (hostile: only short strings are kept).
fn server_info(raw: &[u8]) -> ServerInfo {
    let v: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
    let field = |k: &str| v.get(k).and_then(|s| s.as_str()).map(|s| printable(s, MAX_INFO_CHARS));
    ServerInfo { name: field("name"), version: field("version") }
}

/// Milliseconds, to a tenth.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// A duration as humans read it (`20s`, `1m 30s`).
fn secs(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}

/// The report as a table for people: one row per upstream, then the services and a verdict.
pub fn table(report: &Report) -> String {
    let header = [
        "UPSTREAM",
        "STATUS",
        "ERA",
        "SERVER",
        "TOOLS",
        "PROMPTS",
        "RESOURCES",
        "TEMPLATES",
        "HANDSHAKE_MS",
        "LISTS_MS",
        "PING_MS",
        "ERROR",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for u in &report.upstreams {
        let up = u.replicas.iter().filter(|r| r.ok).count();
        let mut status = if u.ok { "ok".to_string() } else { "FAILED".to_string() };
        if u.replicas.len() > 1 {
            status.push_str(&format!(" ({up}/{} replicas)", u.replicas.len()));
        }
        let era = match (u.era, u.protocol_version) {
            (Some(e), Some(v)) => format!("{e} {v}"),
            _ => "-".into(),
        };
        let server = u.server.as_ref().map_or("-".into(), |s| {
            format!("{} {}", s.name.as_deref().unwrap_or("?"), s.version.as_deref().unwrap_or("")).trim().to_string()
        });
        let mut row = vec![u.name.clone(), status, era, server];
        for list in u.lists.all() {
            row.push(match list {
                None if u.era.is_some() => "-".into(),
                None => "".into(),
                Some(l) => l.count.map_or("error".into(), |c| c.to_string()),
            });
        }
        let lists: f64 = u.lists.all().iter().filter_map(|l| l.as_ref().map(|l| l.ms)).sum();
        let number = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
        row.push(number(u.handshake_ms));
        row.push(number(u.era.map(|_| lists)));
        row.push(number(u.ping_ms));
        row.push(u.error.clone().unwrap_or_default());
        rows.push(row);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for s in &report.services {
        let state = match (&s.error, s.fatal) {
            (None, _) => "ok".to_string(),
            (Some(e), true) => format!("FAILED: {e}"),
            (Some(e), false) => format!("warning (serve would start degraded): {e}"),
        };
        out.push_str(&format!("{}: {state} ({:.1} ms)\n", s.name, s.ms));
    }
    let failed: Vec<&str> = report.upstreams.iter().filter(|u| !u.ok).map(|u| u.name.as_str()).collect();
    let total = report.upstreams.len();
    out.push_str(&match (report.ok, failed.is_empty()) {
        (true, _) if total == 0 => "no enabled upstreams: nothing to start\n".to_string(),
        (true, _) => format!("all {total} upstreams OK ({:.0} ms)\n", report.duration_ms),
        (false, false) => format!("{} of {total} upstreams FAILED: {}\n", failed.len(), failed.join(", ")),
        (false, true) => "a service FAILED\n".to_string(),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_lose_urls_credentials_and_secret_values() {
        let config = Config::from_toml(
            "[upstreams.h]\nurl = \"https://svc:pw-0001@mcp.example.com/mcp?token=tk-0002\"\n\
             headers = { Authorization = \"Bearer hdr-0003\", X-Key = \"key-0004\" }\n\
             [upstreams.s]\ncommand = \"srv\"\nenv = { TOKEN = \"env-0005\", N = \"1\" }\n",
        )
        .unwrap();
        let h = Scrubber::for_upstream(&config.upstreams["h"]);
        let text = h.clean(
            "error sending request for url (https://svc:pw-0001@mcp.example.com/mcp?token=tk-0002): \
             rejected hdr-0003 and key-0004\n\u{1b}[31m",
        );
        assert!(text.contains("https://<redacted>@mcp.example.com/mcp?<redacted>"), "{text}");
        for secret in ["pw-0001", "tk-0002", "hdr-0003", "key-0004", "\n", "\u{1b}"] {
            assert!(!text.contains(secret), "{secret:?} in {text}");
        }
        let s = Scrubber::for_upstream(&config.upstreams["s"]);
        assert_eq!(s.clean("env-0005 leaked; exit 1"), "<redacted> leaked; exit 1", "short values stay");
        let long = "x".repeat(MAX_ERROR_CHARS + 10);
        assert_eq!(s.clean(&long).chars().count(), MAX_ERROR_CHARS + 1);
    }

    #[test]
    fn server_info_keeps_short_strings_only() {
        let info = server_info(br#"{"name":"a\u0007b","version":7}"#);
        assert_eq!((info.name.as_deref(), info.version.as_deref()), (Some("a b"), None));
        let info = server_info(b"not json");
        assert!(info.name.is_none());
        assert_eq!(ms(Duration::from_micros(12_345)), 12.3);
    }
}
