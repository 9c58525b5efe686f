//! The operator commands against a running gateway's admin API (`--url`, an admin key from
//! `--admin-key`/`--key` or `SEKISHO_ADMIN_KEY`, through `remote.rs`): `performance`,
//! `metrics`, `alerts`, `health`, `drain`, and `cache clear --url`. Each prints a table, or
//! with `--json` the gateway's JSON; the tables are `ops_table.rs`.
//!
//! Exit codes, the same for every one of them ([`exit`]): 0 all is well (or the command was
//! done), 1 degraded / an alert below critical is firing, 2 unhealthy / a critical alert is
//! firing, 3 the gateway could not be asked (unreachable, no answer in time, 401/403, or it
//! refused the request), 64 the command line is wrong.

use std::time::Duration;

use clap::Args;
use http::Method;
use serde_json::Value;

use super::ops_table as table;
use super::remote::{self, ADMIN_KEY_ENV};

/// The exit codes of the operator commands.
pub mod exit {
    /// All is well, or the command was done.
    pub const OK: u8 = 0;
    /// Degraded, or an alert below `critical` is firing.
    pub const DEGRADED: u8 = 1;
    /// Unhealthy, or a `critical` alert is firing.
    pub const UNHEALTHY: u8 = 2;
    /// The gateway could not be asked: unreachable, late, 401/403, or a refusal.
    pub const UNREACHABLE: u8 = 3;
    /// The command line is wrong (sysexits' `EX_USAGE`, apart from clap's 2 = unhealthy).
    pub const USAGE: u8 = 64;
}

/// The names of the operator commands (for exit code [`exit::USAGE`] on a bad command line).
pub const COMMANDS: [&str; 6] = ["performance", "metrics", "alerts", "health", "drain", "cache"];

/// Where the gateway is and how to print its answer.
#[derive(Debug, Args)]
pub struct Remote {
    /// The running gateway's base URL (`http://127.0.0.1:8080`, `https://gateway.example`).
    #[arg(long)]
    pub url: String,
    /// An API key of the gateway with `role = "admin"`.
    #[arg(long, visible_alias = "key", env = ADMIN_KEY_ENV, hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Print the gateway's JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `sekisho performance`.
#[derive(Debug, Args)]
pub struct PerformanceArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The period to sum up: a duration from 1s to 7d (`1h`, `24h`; default 1h).
    #[arg(long, value_parser = period)]
    pub period: Option<String>,
}

/// `sekisho metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The period of the totals: a duration from 1s to 7d (`1h`, `24h`; default 1h).
    #[arg(long, value_parser = period)]
    pub period: Option<String>,
    /// Also the newest sample per upstream, method and process (and with --json every
    /// sample of the period).
    #[arg(long)]
    pub detailed: bool,
}

/// `sekisho alerts`.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// Also the resolved alerts kept.
    #[arg(long)]
    pub history: bool,
}

/// `sekisho drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// Wait until the gateway has stopped answering (at most its shutdown grace plus 10 s;
    /// exit 1 if it still answers then).
    #[arg(long)]
    pub wait: bool,
}

/// An operator command, parsed.
#[derive(Debug)]
pub enum OpsCommand {
    /// `sekisho performance`.
    Performance(PerformanceArgs),
    /// `sekisho metrics`.
    Metrics(MetricsArgs),
    /// `sekisho alerts`.
    Alerts(AlertsArgs),
    /// `sekisho health`.
    Health(Remote),
    /// `sekisho drain`.
    Drain(DrainArgs),
    /// `sekisho cache clear --url …`.
    CacheClear {
        /// Where the gateway is.
        remote: Remote,
        /// Only this upstream's results.
        upstream: Option<String>,
        /// Only this tool's results (needs `upstream`).
        tool: Option<String>,
    },
}

/// What a command printed and how it ends.
#[derive(Debug)]
pub struct Outcome {
    /// For stdout.
    pub out: String,
    /// For stderr.
    pub err: String,
    /// The exit code ([`exit`]).
    pub code: u8,
}

impl Outcome {
    fn printed(out: String, code: u8) -> Outcome {
        Outcome { out, err: String::new(), code }
    }

    fn failed(err: String) -> Outcome {
        Outcome { out: String::new(), err, code: exit::UNREACHABLE }
    }
}

/// clap's check of `--period`: the gateway's own rule (`report::parse_period`).
fn period(text: &str) -> Result<String, String> {
    crate::report::parse_period(Some(text)).map(|_| text.to_string())
}

/// The exit code of a verdict (`healthy`, `degraded`, `unhealthy`).
pub fn verdict_code(verdict: &str) -> u8 {
    match verdict {
        "healthy" => exit::OK,
        "degraded" => exit::DEGRADED,
        _ => exit::UNHEALTHY,
    }
}

/// The exit code of an `/admin/alerts` answer: the worst firing alert's.
pub fn alerts_code(answer: &Value) -> u8 {
    let firing = answer["active"].as_array().into_iter().flatten().filter(|a| a["state"] == "firing");
    firing.map(|a| if a["severity"] == "critical" { exit::UNHEALTHY } else { exit::DEGRADED }).max().unwrap_or(exit::OK)
}

/// `GET`/`POST` `path` of the gateway; its JSON when it answered 2xx.
///
/// Errors: the text for stderr (unreachable, late, a refusal with its status and hint).
async fn ask(remote: &Remote, method: Method, path: &str) -> Result<Value, String> {
    let answer = remote::request(&remote.url, remote.admin_key.as_deref(), method, path, None)
        .await
        .map_err(|e| e.to_string())?;
    if !answer.status.is_success() {
        return Err(answer.refusal());
    }
    if answer.json.is_null() {
        return Err(format!("{} answered {} without JSON", answer.shown, answer.status));
    }
    Ok(answer.json)
}

/// `?period=P` (empty without one).
fn period_query(period: &Option<String>) -> String {
    period.as_ref().map(|p| format!("?period={}", urlencoding(p))).unwrap_or_default()
}

/// `text` with everything but `[A-Za-z0-9._~-]` percent-encoded.
fn urlencoding(text: &str) -> String {
    serde_urlencoded::to_string([("", text)]).map(|s| s[1..].to_string()).unwrap_or_default()
}

fn pretty(v: &Value) -> String {
    format!("{v:#}\n")
}

/// Run one operator command.
pub async fn run(command: OpsCommand) -> Outcome {
    let result = match command {
        OpsCommand::Performance(a) => {
            ask(&a.remote, Method::GET, &format!("/admin/performance{}", period_query(&a.period))).await.map(|v| {
                let code = verdict_code(v["overall_health"].as_str().unwrap_or(""));
                Outcome::printed(if a.remote.json { pretty(&v) } else { table::performance(&v) }, code)
            })
        }
        OpsCommand::Metrics(a) => {
            ask(&a.remote, Method::GET, &format!("/admin/monitor{}", period_query(&a.period))).await.map(|mut v| {
                if let Some(o) = v.as_object_mut().filter(|_| !a.detailed) {
                    o.remove("samples");
                }
                Outcome::printed(if a.remote.json { pretty(&v) } else { table::metrics(&v, a.detailed) }, exit::OK)
            })
        }
        OpsCommand::Alerts(a) => {
            let path = if a.history { "/admin/alerts?history=1" } else { "/admin/alerts" };
            ask(&a.remote, Method::GET, path)
                .await
                .map(|v| Outcome::printed(if a.remote.json { pretty(&v) } else { table::alerts(&v) }, alerts_code(&v)))
        }
        OpsCommand::Health(remote) => ask(&remote, Method::GET, "/admin/health").await.map(|v| {
            let code = verdict_code(v["status"].as_str().unwrap_or(""));
            Outcome::printed(if remote.json { pretty(&v) } else { table::health(&v) }, code)
        }),
        OpsCommand::Drain(a) => drain(a).await,
        OpsCommand::CacheClear { remote, upstream, tool } => {
            let scope = crate::cache::key::ClearScope { upstream, tool };
            let query = serde_urlencoded::to_string(&scope).unwrap_or_default();
            ask(&remote, Method::POST, &format!("/admin/cache/clear?{query}"))
                .await
                .map(|v| Outcome::printed(if remote.json { pretty(&v) } else { table::cleared(&v) }, exit::OK))
        }
    };
    result.unwrap_or_else(Outcome::failed)
}

/// `sekisho drain`: ask for the drain; with `--wait`, poll `/healthz` until the gateway no
/// longer answers.
async fn drain(a: DrainArgs) -> Result<Outcome, String> {
    let v = ask(&a.remote, Method::POST, "/admin/drain").await?;
    let out = if a.remote.json { pretty(&v) } else { table::drained(&v) };
    if !a.wait {
        return Ok(Outcome::printed(out, exit::OK));
    }
    let grace = Duration::from_millis(v["grace_ms"].as_u64().unwrap_or(30_000));
    let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        match remote::request(&a.remote.url, None, Method::GET, "/healthz", None).await {
            Err(remote::RemoteError::Gateway(_)) => {
                let note = if a.remote.json { String::new() } else { "the gateway has stopped\n".into() };
                return Ok(Outcome::printed(out + &note, exit::OK));
            }
            Err(remote::RemoteError::Invalid(e)) => return Err(e),
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Ok(Outcome { out, err: format!("{} still answers after {grace:?} and 10 s", a.remote.url), code: exit::DEGRADED })
}
