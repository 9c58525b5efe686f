//! `sekisho approvals list|approve|deny --url URL`: the calls a running gateway holds for an
//! operator's approval (`crate::approvals`), through its admin API (`/admin/approvals`), with
//! an admin key from `--admin-key` (or `--key`) or `SEKISHO_ADMIN_KEY`. Held calls live on the
//! replica that holds them: `--url` names one replica.

use clap::{Args, Subcommand};

use super::remote::{self, RemoteError};

/// The arguments of `sekisho approvals`.
#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ApprovalsAction,
}

/// `sekisho approvals` subcommands.
#[derive(Debug, Subcommand)]
pub enum ApprovalsAction {
    /// List the calls waiting for approval (oldest first).
    List {
        /// The gateway: `--url`, `--admin-key`, `--json`.
        #[command(flatten)]
        remote: super::ops::Remote,
    },
    /// Approve one held call: it runs.
    Approve {
        /// The held call's id (32 hex digits, from `list`).
        id: String,
        /// The gateway: `--url`, `--admin-key`, `--json`.
        #[command(flatten)]
        remote: super::ops::Remote,
    },
    /// Deny one held call: its caller gets -32023 (with the note, if any).
    Deny {
        /// The held call's id (32 hex digits, from `list`).
        id: String,
        /// A note for the caller (at most 256 characters are kept).
        #[arg(long)]
        note: Option<String>,
        /// The gateway: `--url`, `--admin-key`, `--json`.
        #[command(flatten)]
        remote: super::ops::Remote,
    },
}

/// Run `sekisho approvals`; returns what to print.
///
/// Errors: the text to print on stderr (exit 1): an id that is not 32 hex digits, an unusable
/// `--url` or key, a gateway that cannot be reached, or its refusal (no such held call: 404;
/// a key that is not an admin's: 401/403).
pub async fn run(args: ApprovalsArgs) -> Result<String, String> {
    let (remote, method, path, body) = match &args.action {
        ApprovalsAction::List { remote } => (remote, http::Method::GET, "/admin/approvals".to_string(), None),
        ApprovalsAction::Approve { id, remote } => {
            (remote, http::Method::POST, format!("/admin/approvals/{}/approve", checked(id)?), None)
        }
        ApprovalsAction::Deny { id, note, remote } => {
            let body = serde_json::json!({ "note": note }).to_string().into_bytes();
            (remote, http::Method::POST, format!("/admin/approvals/{}/deny", checked(id)?), Some(body))
        }
    };
    let answer = remote::request(&remote.url, remote.admin_key.as_deref(), method, &path, body)
        .await
        .map_err(|e: RemoteError| e.to_string())?;
    if !answer.status.is_success() {
        return Err(answer.refusal());
    }
    if remote.json {
        return Ok(format!("{:#}\n", answer.json));
    }
    Ok(match args.action {
        ApprovalsAction::List { .. } => table(&answer.json),
        _ => format!(
            "{} {}\n",
            answer.json["decision"].as_str().unwrap_or("?"),
            answer.json["call"]["id"].as_str().unwrap_or("?")
        ),
    })
}

/// `id` when it is 32 hex digits (it goes in the path).
fn checked(id: &str) -> Result<&str, String> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(format!("{id:?} is not a held call's id (32 hex digits, from `sekisho approvals list`)"))
    }
}

/// The held calls of a `GET /admin/approvals` answer as a table: id, caller, tool, why, time
/// left, redacted arguments.
pub fn table(answer: &serde_json::Value) -> String {
    let pending = answer["pending"].as_array().map(Vec::as_slice).unwrap_or_default();
    if pending.is_empty() {
        return "no calls await approval\n".to_string();
    }
    let mut out =
        format!("{:<32}  {:<16} {:<28} {:<11} {:>6}  {}\n", "ID", "CALLER", "TOOL", "WHY", "LEFT", "ARGUMENTS");
    for p in pending {
        let s = |k: &str| p[k].as_str().unwrap_or("-").to_string();
        let left = format!("{}s", p["expires_in_ms"].as_u64().unwrap_or(0) / 1000);
        let mut args = p["arguments"].to_string();
        if args.len() > 80 {
            let cut = (0..=77).rev().find(|&i| args.is_char_boundary(i)).unwrap_or(0);
            args = format!("{}...", &args[..cut]);
        }
        out.push_str(&format!(
            "{:<32}  {:<16} {:<28} {:<11} {:>6}  {args}\n",
            s("id"),
            s("caller"),
            s("tool"),
            s("reason"),
            left
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_before_they_reach_a_path() {
        assert!(checked(&"a".repeat(32)).is_ok());
        assert!(checked("../../admin/drain").is_err());
        assert!(checked(&"g".repeat(32)).is_err());
    }

    #[test]
    fn the_table_shows_each_held_call() {
        let answer = serde_json::json!({"pending": [{"id": "ab".repeat(16), "caller": "alice", "tool": "fs__rm",
            "reason": "destructive", "expires_in_ms": 90_500, "arguments": {"path": "/tmp/x"}}]});
        let t = table(&answer);
        assert!(t.contains(&"ab".repeat(16)) && t.contains("alice") && t.contains("90s"), "{t}");
        assert_eq!(table(&serde_json::json!({"pending": []})), "no calls await approval\n");
    }
}
