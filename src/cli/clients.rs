//! `sekisho client-config`: a client's configuration with its imported servers replaced by one
//! `sekisho stdio --config …` entry (servers that could not be imported stay as they were),
//! printed or written in place with a backup. Where each client keeps its file is in
//! docs/clients.md; `default_path` knows the same places.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use std::collections::BTreeMap;

use super::import::{Format, Variable};

/// The entry name sekisho takes in the client's server list.
pub const ENTRY: &str = "sekisho";

/// Where `client` keeps its MCP servers on this machine (user-wide; project files in the
/// current directory for `.mcp.json` and VS Code), or `None` when the home directory is unknown.
pub fn default_path(client: Format) -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match client {
        Format::Claude => {
            if cfg!(target_os = "macos") {
                Some(home?.join("Library/Application Support/Claude/claude_desktop_config.json"))
            } else if cfg!(windows) {
                Some(PathBuf::from(std::env::var_os("APPDATA")?).join("Claude/claude_desktop_config.json"))
            } else {
                let config =
                    std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from).or_else(|| Some(home?.join(".config")))?;
                Some(config.join("Claude/claude_desktop_config.json"))
            }
        }
        Format::Cursor => Some(home?.join(".cursor/mcp.json")),
        Format::Vscode => Some(PathBuf::from(".vscode/mcp.json")),
        Format::McpJson => Some(PathBuf::from(".mcp.json")),
        Format::Codex => {
            let codex = std::env::var_os("CODEX_HOME").map(PathBuf::from).or_else(|| Some(home?.join(".codex")))?;
            Some(codex.join("config.toml"))
        }
    }
}

/// The entry that starts sekisho.
pub struct Entry<'a> {
    /// The sekisho binary.
    pub sekisho: &'a Path,
    /// Its configuration.
    pub config: &'a Path,
    /// The variables the imported servers need, with what the client's file gave for them.
    pub variables: &'a BTreeMap<String, Variable>,
}

/// `existing` (the client's file, or `None` for a new one) with the servers named in
/// `imported` removed and one entry that runs `sekisho stdio --config <config>` added, which
/// passes sekisho the variables the imported servers need, from where the client gave them
/// (inline values stay in the client's file; references keep the client's syntax).
///
/// Errors: a message when `existing` does not parse as `client`'s format.
pub fn rewrite(
    client: Format,
    existing: Option<&str>,
    imported: &[String],
    entry: &Entry<'_>,
) -> Result<String, String> {
    let args = ["stdio".to_string(), "--config".to_string(), entry.config.display().to_string()];
    let command = entry.sekisho.display().to_string();
    let given: BTreeMap<&str, &str> =
        entry.variables.iter().filter_map(|(k, v)| Some((k.as_str(), v.client_value.as_deref()?))).collect();
    let passed: Vec<&str> =
        entry.variables.iter().filter(|(_, v)| v.client_value.is_none()).map(|(k, _)| k.as_str()).collect();
    if client == Format::Codex {
        let mut doc: toml_edit::DocumentMut = existing.unwrap_or("").parse().map_err(|e| format!("not TOML: {e}"))?;
        let servers = doc
            .entry("mcp_servers")
            .or_insert_with(|| {
                let mut t = toml_edit::Table::new();
                t.set_implicit(true);
                toml_edit::Item::Table(t)
            })
            .as_table_mut()
            .ok_or("`mcp_servers` is not a table")?;
        for name in imported {
            servers.remove(name);
        }
        let mut table = toml_edit::Table::new();
        table.insert("command", toml_edit::value(command));
        table.insert("args", toml_edit::value(toml_edit::Array::from_iter(args)));
        if !given.is_empty() {
            let mut env = toml_edit::InlineTable::new();
            for (k, v) in &given {
                env.insert(*k, (*v).into());
            }
            table.insert("env", toml_edit::value(env));
        }
        if !passed.is_empty() {
            table.insert("env_vars", toml_edit::value(toml_edit::Array::from_iter(passed.iter().copied())));
        }
        // Lists wait up to [catalog] initial_wait (8 s) for slow upstreams; Codex's own
        // start-up timeout is 10 s by default: leave room.
        table.insert("startup_timeout_sec", toml_edit::value(20));
        servers.insert(ENTRY, toml_edit::Item::Table(table));
        return Ok(doc.to_string());
    }
    let mut doc: Value = match existing {
        Some(text) if !text.trim().is_empty() => serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?,
        _ => json!({}),
    };
    let key = if client == Format::Vscode { "servers" } else { "mcpServers" };
    let root = doc.as_object_mut().ok_or("the file is not a JSON object")?;
    let servers =
        root.entry(key).or_insert_with(|| json!({})).as_object_mut().ok_or(format!("`{key}` is not an object"))?;
    for name in imported {
        servers.remove(name);
    }
    let mut value = if client == Format::Vscode {
        json!({ "type": "stdio", "command": command, "args": args })
    } else {
        json!({ "command": command, "args": args })
    };
    // The JSON clients give values inline or as their own references; a variable they give no
    // value for is passed from their environment (`${env:VAR}`, which Cursor and VS Code expand).
    let env: serde_json::Map<String, Value> = given
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .chain(passed.iter().map(|k| (k.to_string(), Value::from(format!("${{env:{k}}}")))))
        .collect();
    if !env.is_empty() {
        value["env"] = Value::Object(env);
    }
    servers.insert(ENTRY.to_string(), value);
    Ok(serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())? + "\n")
}

/// Write `text` to `path`, first copying the file there (if any) to `<path>.sekisho-backup-<unix
/// seconds>`; returns the backup's path.
///
/// Errors: I/O errors copying or writing.
pub fn write_with_backup(path: &Path, text: &str) -> std::io::Result<Option<PathBuf>> {
    let backup = if path.exists() {
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".sekisho-backup-{stamp}"));
        let backup = PathBuf::from(name);
        std::fs::copy(path, &backup)?;
        Some(backup)
    } else {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        None
    };
    std::fs::write(path, text)?;
    Ok(backup)
}
