//! `sekisho recommendations` and `sekisho optimize`: a running gateway's recommendations
//! (`GET /admin/recommendations`, `crate::monitor::recommend`) as a table or JSON, and the
//! configuration changes they carry as a TOML patch, optionally applied to a copy of the
//! configuration file (`--write`, `crate::monitor::recommend::patch`). The gateway is `--url`,
//! or the one `--config` describes (its `server.listen`); the admin key comes from
//! `--admin-key`, `SEKISHO_ADMIN_KEY`, or the configuration's first admin key.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use super::remote::{self, ADMIN_KEY_ENV};
use crate::monitor::recommend::Change;
use crate::monitor::recommend::patch;

/// Exit code: no recommendation is high or critical (or `optimize` did its work).
pub const EXIT_OK: u8 = 0;
/// Exit code of `recommendations`: at least one recommendation is high or critical.
pub const EXIT_URGENT: u8 = 1;
/// Exit code: the recommendations could not be had, or the file could not be written.
pub const EXIT_FAILED: u8 = 2;

/// Where the gateway is and how to speak to it.
#[derive(Debug, Args)]
pub struct Target {
    /// The running gateway's base URL (default: `http://` + `server.listen` of `--config`).
    #[arg(long)]
    pub url: Option<String>,
    /// The gateway's configuration file (for its address and admin key; for `optimize
    /// --write`, the file the copy is made from).
    #[arg(long, short, env = "SEKISHO_CONFIG")]
    pub config: Option<PathBuf>,
    /// An API key of the gateway with `role = "admin"` (default: the configuration's first).
    #[arg(long, visible_alias = "key", env = ADMIN_KEY_ENV, hide_env_values = true)]
    pub admin_key: Option<String>,
    /// The period judged: a duration from 1s to 7d (`1h`, `24h`).
    #[arg(long, default_value = "1h")]
    pub period: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The arguments of `sekisho optimize`.
#[derive(Debug, Args)]
pub struct OptimizeArgs {
    /// The gateway and the period.
    #[command(flatten)]
    pub target: Target,
    /// Write a copy of `--config` with the changes applied to this file (never `--config`
    /// itself); check it with `sekisho check --config FILE`.
    #[arg(long)]
    pub write: Option<PathBuf>,
}

/// `GET /admin/recommendations` of the target.
///
/// Errors: no `--url` and no `--config`, an unloadable configuration, an unreachable gateway,
/// or its refusal.
async fn fetch(target: &Target) -> Result<Value, String> {
    let config = match &target.config {
        Some(path) => Some(crate::config::Config::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let url = match (&target.url, &config) {
        (Some(url), _) => url.clone(),
        (None, Some(c)) => {
            let mut addr = c.server.listen_addr();
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let scheme = if c.server.tls_cert.is_empty() { "http" } else { "https" };
            format!("{scheme}://{addr}")
        }
        (None, None) => return Err("give --url, or --config for the gateway it configures".into()),
    };
    let key = target
        .admin_key
        .clone()
        .or_else(|| config.as_ref()?.server.api_keys.iter().find(|k| k.is_admin()).map(|k| k.secret().to_string()));
    if target.period.len() > 32 || !target.period.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("--period {:?}: give a duration such as 1h or 24h", target.period));
    }
    let path = format!("/admin/recommendations?period={}", target.period);
    let answer =
        remote::request(&url, key.as_deref(), http::Method::GET, &path, None).await.map_err(|e| e.to_string())?;
    if !answer.status.is_success() {
        return Err(answer.refusal());
    }
    Ok(answer.json)
}

/// Whether any recommendation is high or critical.
fn urgent(answer: &Value) -> bool {
    answer["summary"]["critical"].as_u64().unwrap_or(0) + answer["summary"]["high"].as_u64().unwrap_or(0) > 0
}

/// `sekisho recommendations`: the text to print and the exit code ([`EXIT_URGENT`] when any is
/// high or critical).
///
/// Errors: the text for stderr ([`EXIT_FAILED`]).
pub async fn recommendations(target: Target) -> Result<(String, u8), String> {
    let answer = fetch(&target).await?;
    let code = if urgent(&answer) { EXIT_URGENT } else { EXIT_OK };
    if target.json {
        return Ok((format!("{answer:#}\n"), code));
    }
    Ok((table(&answer), code))
}

/// The one-line summary of an answer.
fn summary(answer: &Value) -> String {
    let s = &answer["summary"];
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    let period =
        humantime::format_duration(std::time::Duration::from_millis(answer["period_ms"].as_u64().unwrap_or(0)));
    format!(
        "{} recommendation(s) over the last {period} ({} samples): {} critical, {} high, {} medium, {} low\n",
        n("total"),
        answer["samples"].as_u64().unwrap_or(0),
        n("critical"),
        n("high"),
        n("medium"),
        n("low")
    )
}

/// The recommendations of an answer as a table, then each one's details.
pub fn table(answer: &Value) -> String {
    let mut out = summary(answer);
    let recs = answer["recommendations"].as_array().cloned().unwrap_or_default();
    if recs.is_empty() {
        return out;
    }
    let s = |r: &Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    out.push_str(&format!("\n{:<9} {:<12} {:<6} {}\n", "PRIORITY", "CATEGORY", "EFFORT", "TITLE"));
    for r in &recs {
        out.push_str(&format!(
            "{:<9} {:<12} {:<6} {}\n",
            s(r, "priority"),
            s(r, "category"),
            s(r, "implementation_effort"),
            s(r, "title")
        ));
    }
    for r in &recs {
        out.push_str(&format!("\n[{}] {}\n  {}\n", s(r, "priority"), s(r, "id"), s(r, "description")));
        out.push_str(&format!("  impact: {}\n  improvement: {}\n", s(r, "impact"), s(r, "estimated_improvement")));
        let evidence: Vec<String> = r["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("{}={} {}", s(e, "name"), e["value"], s(e, "unit")))
            .collect();
        if !evidence.is_empty() {
            out.push_str(&format!("  evidence: {}\n", evidence.join(", ")));
        }
        for a in r["action_items"].as_array().into_iter().flatten() {
            out.push_str(&format!("  - {}\n", a.as_str().unwrap_or("")));
        }
        for c in r["config_patch"].as_array().into_iter().flatten() {
            out.push_str(&format!("  patch: {} = {}\n", s(c, "key"), c["value"]));
        }
    }
    out
}

/// Every change of the answer's recommendations, in their order (a later change of the same
/// key replaces an earlier one).
fn changes(answer: &Value) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for c in answer["recommendations"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["config_patch"].as_array().cloned().unwrap_or_default())
    {
        let path: Vec<String> =
            c["path"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect();
        if path.is_empty() {
            continue;
        }
        out.retain(|o| o.path != path);
        out.push(Change { key: patch::dotted(&path), path, value: c["value"].clone() });
    }
    out
}

/// Whether `a` and `b` name the same file (the same path once resolved, or the same inode).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => std::fs::canonicalize(a).ok().zip(std::fs::canonicalize(b).ok()).is_some_and(|(x, y)| x == y),
    }
}

/// `sekisho optimize`: the overall check (the summary and the recommendations' titles) and the
/// TOML patch; with `--write`, a copy of `--config` with the patch applied.
///
/// Errors: as [`recommendations`], plus `--write` without `--config`, `--write` naming
/// `--config` itself, a change that cannot be applied, or a file that cannot be written.
pub async fn optimize(args: OptimizeArgs) -> Result<(String, u8), String> {
    if let Some(out) = &args.write {
        let Some(config) = &args.target.config else {
            return Err("--write needs --config: the file the copy is made from".into());
        };
        if same_file(out, config) {
            return Err(format!("--write {}: that is the configuration itself; name a new file", out.display()));
        }
    }
    let answer = fetch(&args.target).await?;
    let changes = changes(&answer);
    let toml = patch::render(&changes);
    let written = match (&args.write, &args.target.config) {
        (Some(out), Some(config)) => {
            let text = std::fs::read_to_string(config).map_err(|e| format!("cannot read {}: {e}", config.display()))?;
            let patched = patch::apply(&text, &changes)?;
            std::fs::write(out, patched).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            Some(out.display().to_string())
        }
        _ => None,
    };
    if args.target.json {
        let body = serde_json::json!({
            "summary": answer["summary"],
            "period_ms": answer["period_ms"],
            "recommendations": answer["recommendations"],
            "patch": changes,
            "patch_toml": toml,
            "written": written,
        });
        return Ok((format!("{body:#}\n"), EXIT_OK));
    }
    let mut out = summary(&answer);
    for r in answer["recommendations"].as_array().into_iter().flatten() {
        let patched =
            if r["config_patch"].as_array().is_some_and(|p| !p.is_empty()) { "" } else { " (no config change)" };
        out.push_str(&format!(
            "  [{}] {}{patched}\n",
            r["priority"].as_str().unwrap_or(""),
            r["title"].as_str().unwrap_or("")
        ));
    }
    if changes.is_empty() {
        out.push_str("\nno configuration change to make\n");
    } else {
        out.push_str(&format!("\n# configuration changes ({} keys)\n{toml}", changes.len()));
    }
    if let Some(path) = written {
        out.push_str(&format!("\nwrote {path}: check it with `sekisho check --config {path}`\n"));
    }
    Ok((out, EXIT_OK))
}
