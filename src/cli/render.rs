//! Writes an import as sekisho's TOML configuration: one `[upstreams.<name>]` table per server,
//! a header that says where it came from and which variables to set, and the notes on what was
//! not mapped, so nothing is dropped without a word.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::import::{Format, Imported, Reach};

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// An inline TOML table of strings.
fn inline(map: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = map.iter().map(|(k, v)| format!("{} = {}", key(k), quoted(v))).collect();
    format!("{{ {} }}", parts.join(", "))
}

/// A TOML key, bare when it can be.
fn key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        k.to_string()
    } else {
        quoted(k)
    }
}

fn duration(d: Duration) -> String {
    quoted(&humantime::format_duration(d).to_string())
}

/// The sekisho configuration for `imported`, read from `source` in `format`.
pub fn toml(imported: &Imported, source: &str, format: Format) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# sekisho configuration imported from {source} ({}) by `sekisho import`.", format.label());
    if !imported.variables.is_empty() {
        let _ = writeln!(out, "# Set these variables in sekisho's environment before it starts:");
        for (var, v) in &imported.variables {
            let _ = writeln!(out, "#   {var}: {}", v.why);
        }
        let _ = writeln!(out, "# (`sekisho client-config` passes them from the client's file to sekisho.)");
    }
    if !imported.notes.is_empty() {
        let _ = writeln!(out, "# Not imported as it was:");
        for note in &imported.notes {
            let _ = writeln!(out, "#   - {note}");
        }
    }
    for s in &imported.servers {
        let _ = writeln!(out, "\n[upstreams.{}]", s.name);
        match &s.reach {
            Reach::Stdio { command, args, env, cwd } => {
                let _ = writeln!(out, "command = {}", quoted(command));
                if !args.is_empty() {
                    let args: Vec<String> = args.iter().map(|a| quoted(a)).collect();
                    let _ = writeln!(out, "args = [{}]", args.join(", "));
                }
                if !env.is_empty() {
                    let _ = writeln!(out, "env = {}", inline(env));
                }
                if let Some(cwd) = cwd {
                    let _ = writeln!(out, "cwd = {}", quoted(cwd));
                }
            }
            Reach::Http { url, headers, sse } => {
                let _ = writeln!(out, "url = {}", quoted(url));
                if *sse {
                    let _ = writeln!(out, "transport = \"sse\"");
                }
                if !headers.is_empty() {
                    let _ = writeln!(out, "headers = {}", inline(headers));
                }
            }
        }
        if let Some(d) = s.startup_timeout {
            let _ = writeln!(out, "startup_timeout = {}", duration(d));
        }
        if let Some(d) = s.timeout {
            let _ = writeln!(out, "timeout = {}", duration(d));
        }
        if !s.enabled {
            let _ = writeln!(out, "enabled = false");
        }
    }
    out
}
