//! `sekisho audit verify|tail|search`: read the audit log back from PostgreSQL
//! (`--database-url`) or a JSON-lines file (`--file`), check its hash chains, show records.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use crate::audit::read::{Filter, Source};
use crate::audit::record::Record;
use crate::audit::verify::{Report, verify};

/// Where the records are read from; `--file` wins over a database URL from the environment.
#[derive(Debug, Args)]
pub struct From {
    /// PostgreSQL URL of the `[store]` database that holds `audit_log`.
    #[arg(long, env = "SEKISHO_STORE__POSTGRES_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// A JSON-lines audit file (`[audit] path`).
    #[arg(long)]
    pub file: Option<PathBuf>,
}

/// `sekisho audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check every writer's hash chain; name the first altered, removed or reordered record.
    ///
    /// Exit codes: 0 intact, 1 broken, 2 the log cannot be read.
    Verify {
        #[command(flatten)]
        from: From,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The newest records, oldest first; `--follow` keeps printing new ones.
    ///
    /// Exit codes: 0 done, 2 the log cannot be read.
    Tail {
        #[command(flatten)]
        from: From,
        /// How many.
        #[arg(short, long, default_value_t = 20)]
        n: usize,
        /// Keep printing records as they are written (every 500 ms) until interrupted.
        #[arg(long)]
        follow: bool,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
    /// The newest records that match every filter given, oldest first.
    ///
    /// Exit codes: 0 done, 2 the log cannot be read or a filter is not valid.
    Search {
        #[command(flatten)]
        from: From,
        /// The caller id (a key's name, `key:…`, `sk:<tenant>:<key>`, `anon`).
        #[arg(long)]
        caller: Option<String>,
        /// The tool, prompt or resource URI (or an admin action's object).
        #[arg(long)]
        tool: Option<String>,
        /// Records at or after: an RFC 3339 time, or a duration ago (`15m`, `2h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// The outcome (`ok`, `tool_error`, `rpc_error`, `unavailable`, …).
        #[arg(long)]
        outcome: Option<String>,
        /// At most this many (the newest).
        #[arg(short, long, default_value_t = 100)]
        n: usize,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
}

/// `[audit]` as `sekisho check` shows it: the sink `auto` resolves to, where it writes.
pub fn settings(config: &crate::config::Config) -> serde_json::Value {
    let a = &config.audit;
    let sink = a.resolved_sink(config.store.enabled());
    let mut v = serde_json::to_value(a).unwrap_or_default();
    v["sink"] = serde_json::to_value(sink).unwrap_or_default();
    v["writes_to"] = match sink {
        crate::audit::SinkKind::Postgres => "the audit_log table of [store]".into(),
        _ => a.path.clone().into(),
    };
    v
}

/// Run `action`; the process exit code.
pub fn run(action: AuditAction) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sekisho: cannot start the runtime: {e}");
            return 2;
        }
    };
    runtime.block_on(async move {
        match execute(action).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("sekisho audit: {e}");
                2
            }
        }
    })
}

fn source(from: From) -> Result<Source, String> {
    match (from.file, from.database_url) {
        (Some(file), _) => Ok(Source::File(file)),
        (None, Some(url)) => {
            crate::store::pool(&url, 1, Duration::from_secs(10)).map(Source::Postgres).map_err(|e| e.to_string())
        }
        (None, None) => Err("give --file or --database-url (or SEKISHO_STORE__POSTGRES_URL)".into()),
    }
}

async fn execute(action: AuditAction) -> Result<u8, String> {
    match action {
        AuditAction::Verify { from, json } => {
            let report = verify(&source(from)?).await?;
            print!("{}", if json { verify_json(&report) } else { verify_text(&report) });
            Ok(if report.problem.is_some() { 1 } else { 0 })
        }
        AuditAction::Tail { from, n, follow, json } => {
            let source = source(from)?;
            let filter = Filter::default();
            let (records, mut place) = source.last(n, &filter).await?;
            records.iter().for_each(|r| println!("{}", line(r, json)));
            if !follow {
                return Ok(0);
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let (records, next) = source.after(place, &filter).await?;
                records.iter().for_each(|r| println!("{}", line(r, json)));
                place = next;
            }
        }
        AuditAction::Search { from, caller, tool, since, outcome, n, json } => {
            let since = since.map(|s| parse_since(&s)).transpose()?;
            let filter = Filter { caller, tool, since, outcome };
            let (records, _) = source(from)?.last(n, &filter).await?;
            records.iter().for_each(|r| println!("{}", line(r, json)));
            Ok(0)
        }
    }
}

/// An RFC 3339 time, or a duration before now.
fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        return Ok(at);
    }
    let ago = humantime::parse_duration(text)
        .map_err(|_| format!("--since {text:?} is neither an RFC 3339 time nor a duration (15m, 2h)"))?;
    Ok(SystemTime::now().checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH))
}

/// One record: its JSON, or a line for people.
fn line(r: &Record, json: bool) -> String {
    if json {
        return r.canonical();
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = format!(
        "{} #{} {:<8} {:<16} {:<16} {:<24} {:<10}",
        r.at,
        r.seq,
        r.kind.name(),
        opt(&r.caller),
        opt(&r.method),
        opt(&r.name),
        opt(&r.outcome)
    );
    if let Some(ms) = r.duration_ms {
        out.push_str(&format!(" {ms}ms"));
    }
    for (label, v) in [("upstream", &r.upstream), ("tenant", &r.tenant), ("cache", &r.cache), ("trace", &r.trace_id)] {
        if let Some(v) = v {
            out.push_str(&format!(" {label}={v}"));
        }
    }
    if let Some(code) = r.code {
        out.push_str(&format!(" code={code}"));
    }
    if let Some(d) = &r.detail {
        out.push_str(&format!(" {d}"));
    }
    out
}

fn verify_text(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.chains {
        out.push_str(&format!(
            "chain {}: {} records, last seq {}, last anchor {}{}\n",
            c.writer,
            c.records,
            c.last_seq,
            if c.last_anchor == 0 { "none".to_string() } else { format!("seq {}", c.last_anchor) },
            if c.closed {
                ", closed cleanly".to_string()
            } else if c.last_seq > c.last_anchor {
                format!(
                    "; not closed: the {} records after the last anchor are not covered (a removed tail there cannot be detected)",
                    c.last_seq - c.last_anchor
                )
            } else {
                "; not closed".to_string()
            }
        ));
    }
    match &report.problem {
        None => out.push_str(&format!("audit log intact: {} records in {} chains\n", report.rows, report.chains.len())),
        Some(p) => out.push_str(&format!(
            "audit log BROKEN at record {} (seq {}{}): {}: {}\n",
            p.id,
            p.seq.map_or("?".to_string(), |s| s.to_string()),
            p.writer.as_ref().map(|w| format!(", chain {w}")).unwrap_or_default(),
            p.fault.name(),
            p.detail
        )),
    }
    out
}

fn verify_json(report: &Report) -> String {
    let chains: Vec<serde_json::Value> = report
        .chains
        .iter()
        .map(|c| {
            serde_json::json!({
                "writer": c.writer, "records": c.records, "last_seq": c.last_seq,
                "last_anchor": c.last_anchor, "closed": c.closed,
            })
        })
        .collect();
    let problem = report.problem.as_ref().map(|p| {
        serde_json::json!({
            "fault": p.fault.name(), "id": p.id, "writer": p.writer, "seq": p.seq, "detail": p.detail,
        })
    });
    let body = serde_json::json!({
        "intact": report.problem.is_none(), "records": report.rows, "chains": chains, "problem": problem,
    });
    format!("{body}\n")
}
