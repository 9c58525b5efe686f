//! `sekisho import`: reads the MCP server list of a desktop or CLI client — Claude Desktop
//! (`claude_desktop_config.json`), Claude Code and other `.mcp.json` files, Cursor (`mcp.json`),
//! VS Code (`mcp.json` with `servers` and `inputs`), Codex (`config.toml`, `[mcp_servers.*]`) —
//! into upstreams sekisho can serve. Inline secrets become `${VAR}` references (listed for the
//! operator to set); the clients' own variable references are translated; whatever has no
//! sekisho equivalent is reported, never dropped silently.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::ValueEnum;
use serde_json::Value;

/// A client configuration format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Claude Desktop: `{"mcpServers": {name: {command, args, env}}}`.
    Claude,
    /// Claude Code and other tools' `.mcp.json`: `mcpServers`, with `type` stdio/http/sse,
    /// `url`, `headers`, and `${VAR}` / `${VAR:-default}` references.
    McpJson,
    /// Cursor `mcp.json`: `mcpServers`, with `url`/`headers` and `${env:VAR}` references.
    Cursor,
    /// VS Code `mcp.json`: `servers` with `type`, and `inputs` referenced as `${input:id}`.
    Vscode,
    /// Codex `config.toml`: `[mcp_servers.<name>]`.
    Codex,
}

impl Format {
    /// The client's name for people.
    pub fn label(self) -> &'static str {
        match self {
            Format::Claude => "Claude Desktop",
            Format::McpJson => ".mcp.json",
            Format::Cursor => "Cursor",
            Format::Vscode => "VS Code",
            Format::Codex => "Codex",
        }
    }
}

/// How an imported server is reached.
#[derive(Clone, Debug, PartialEq)]
pub enum Reach {
    /// A command sekisho starts.
    Stdio {
        /// Program.
        command: String,
        /// Arguments.
        args: Vec<String>,
        /// Environment for the child; values may hold `${VAR}` references.
        env: BTreeMap<String, String>,
        /// Working directory.
        cwd: Option<String>,
    },
    /// An HTTP endpoint: Streamable HTTP, or the legacy HTTP+SSE transport.
    Http {
        /// The URL.
        url: String,
        /// Headers; values may hold `${VAR}` references.
        headers: BTreeMap<String, String>,
        /// The client's `type = "sse"`: the 2024-11-05 HTTP+SSE transport (`transport = "sse"`).
        sse: bool,
    },
}

/// One server as sekisho will configure it.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    /// The sekisho namespace (the client's name, made portable).
    pub name: String,
    /// The name in the client's file.
    pub original: String,
    /// How to reach it.
    pub reach: Reach,
    /// Start-up deadline, when the client sets one.
    pub startup_timeout: Option<Duration>,
    /// Per-call deadline, when the client sets one.
    pub timeout: Option<Duration>,
    /// False for servers switched off in the client (kept, not started).
    pub enabled: bool,
}

/// A variable sekisho's environment must hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Variable {
    /// Why, for people.
    pub why: String,
    /// What the client's file gave for it, in the client's own syntax (an inline value or one
    /// of its references), so `client-config` can pass it to sekisho from the same place;
    /// `None` when it comes from the client's environment (Codex `env_vars` and friends).
    pub client_value: Option<String>,
}

/// What an import produced.
#[derive(Clone, Debug, Default)]
pub struct Imported {
    /// The servers, in the client's order.
    pub servers: Vec<Server>,
    /// Variables sekisho's environment must hold.
    pub variables: BTreeMap<String, Variable>,
    /// What could not be mapped, or was changed on the way.
    pub notes: Vec<String>,
}

/// Guess the format of a client file from its contents (and name).
///
/// Errors: a message when the text is neither a JSON object with `mcpServers`/`servers` nor a
/// TOML document with `mcp_servers`.
pub fn detect(file_name: &str, text: &str) -> Result<Format, String> {
    if let Ok(json) = serde_json::from_str::<Value>(text) {
        return match () {
            _ if json.get("servers").is_some_and(Value::is_object) => Ok(Format::Vscode),
            _ if json.get("mcpServers").is_some_and(Value::is_object) => Ok(if file_name.contains("claude_desktop") {
                Format::Claude
            } else if file_name.ends_with(".mcp.json") {
                Format::McpJson
            } else {
                Format::Cursor
            }),
            _ => Err("a JSON file without `mcpServers` or `servers`: not a client configuration".into()),
        };
    }
    match text.parse::<toml::Table>() {
        Ok(t) if t.contains_key("mcp_servers") => Ok(Format::Codex),
        Ok(_) => Err("a TOML file without [mcp_servers]: not a Codex configuration".into()),
        Err(e) => Err(format!("neither JSON nor TOML: {e}")),
    }
}

/// Read a client file's servers.
///
/// Errors: a message when the text does not parse as `format`.
pub fn parse(text: &str, format: Format) -> Result<Imported, String> {
    let mut out = Imported::default();
    let servers: Vec<(String, Value)> = if format == Format::Codex {
        let doc: toml::Table = text.parse().map_err(|e| format!("not TOML: {e}"))?;
        let table = doc.get("mcp_servers").and_then(toml::Value::as_table).cloned().unwrap_or_default();
        table
            .into_iter()
            .map(|(k, v)| Ok((k, serde_json::to_value(v).map_err(|e| e.to_string())?)))
            .collect::<Result<_, String>>()?
    } else {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        if format == Format::Vscode && doc.get("inputs").is_some_and(|i| !i.as_array().is_none_or(|a| a.is_empty())) {
            out.notes.push("VS Code `inputs` prompt in the editor; sekisho reads each one from an environment variable instead (see the variables to set)".into());
        }
        let key = if format == Format::Vscode { "servers" } else { "mcpServers" };
        let map = doc.get(key).and_then(Value::as_object).ok_or_else(|| format!("no `{key}` object"))?;
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let mut taken = std::collections::BTreeSet::new();
    for (original, spec) in servers {
        let name = namespace(&original, &mut taken);
        if name != original {
            out.notes.push(format!(
                "server {original:?} is named {name:?} in sekisho (namespaces are 1-32 of A-Z a-z 0-9 - _)"
            ));
        }
        if let Some(server) = server(&original, name, &spec, format, &mut out) {
            out.servers.push(server);
        }
    }
    Ok(out)
}

impl Imported {
    fn need(&mut self, var: &str, why: String, client_value: Option<String>) {
        self.variables.entry(var.to_string()).or_insert(Variable { why, client_value });
    }
}

/// A portable, unique namespace for a client's server name.
fn namespace(original: &str, taken: &mut std::collections::BTreeSet<String>) -> String {
    let mut name: String = original
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(28)
        .collect();
    if name.is_empty() {
        name = "server".into();
    }
    let base = name.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

const KNOWN_JSON: [&str; 9] = ["command", "args", "env", "cwd", "url", "headers", "type", "disabled", "enabled"];
const KNOWN_CODEX: [&str; 13] = [
    "command",
    "args",
    "env",
    "env_vars",
    "cwd",
    "url",
    "bearer_token_env_var",
    "http_headers",
    "env_http_headers",
    "startup_timeout_sec",
    "startup_timeout_ms",
    "tool_timeout_sec",
    "enabled",
];

fn server(original: &str, name: String, spec: &Value, format: Format, out: &mut Imported) -> Option<Server> {
    let Some(obj) = spec.as_object() else {
        out.notes.push(format!("server {original:?} is not an object: skipped"));
        return None;
    };
    let known: &[&str] = if format == Format::Codex { &KNOWN_CODEX } else { &KNOWN_JSON };
    for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        out.notes.push(format!("server {original:?}: `{key}` has no sekisho equivalent and was not imported"));
    }
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let strings = |v: Option<&Value>| -> BTreeMap<String, String> {
        v.and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default()
    };
    let enabled = obj.get("disabled").and_then(Value::as_bool) != Some(true)
        && obj.get("enabled").and_then(Value::as_bool) != Some(false);
    let kind = text("type").unwrap_or_default();
    let seconds = |k: &str, scale: f64| obj.get(k).and_then(Value::as_f64).map(|s| Duration::from_secs_f64(s / scale));
    let reach = if let Some(command) = text("command") {
        let args: Vec<String> = obj
            .get("args")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        for (i, arg) in args.iter().enumerate() {
            if arg.contains("${") {
                out.notes.push(format!("server {original:?}: argument {i} ({arg:?}) uses a client variable; sekisho does not expand arguments, so it is kept as written"));
            }
        }
        let mut env = BTreeMap::new();
        for (key, value) in strings(obj.get("env")) {
            let value = secret_or_reference(original, &key, &value, true, format, out);
            env.insert(key, value);
        }
        if let Some(vars) = obj.get("env_vars").and_then(Value::as_array) {
            for var in vars.iter().filter_map(Value::as_str) {
                env.insert(var.to_string(), format!("${{{var}}}"));
                out.need(var, format!("passed through to {original:?} (env_vars)"), None);
            }
        }
        Reach::Stdio { command, args, env, cwd: text("cwd") }
    } else if let Some(url) = text("url") {
        let mut headers = BTreeMap::new();
        let header_key = if format == Format::Codex { "http_headers" } else { "headers" };
        for (key, value) in strings(obj.get(header_key)) {
            let value = secret_or_reference(original, &key, &value, false, format, out);
            headers.insert(key, value);
        }
        for (header, var) in strings(obj.get("env_http_headers")) {
            headers.insert(header, format!("${{{var}}}"));
            out.need(&var, format!("a header of {original:?} (env_http_headers)"), None);
        }
        if let Some(var) = text("bearer_token_env_var") {
            headers.insert("Authorization".into(), format!("Bearer ${{{var}}}"));
            out.need(&var, format!("the bearer token of {original:?}"), None);
        }
        Reach::Http { url, headers, sse: kind == "sse" }
    } else {
        out.notes.push(format!("server {original:?} has neither `command` nor `url`: skipped"));
        return None;
    };
    Some(Server {
        name,
        original: original.to_string(),
        reach,
        startup_timeout: seconds("startup_timeout_sec", 1.0).or_else(|| seconds("startup_timeout_ms", 1000.0)),
        timeout: seconds("tool_timeout_sec", 1.0),
        enabled,
    })
}

/// Whether an environment variable or header name usually holds a credential.
fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["token", "secret", "key", "password", "passwd", "auth", "credential", "cookie", "pat"]
        .iter()
        .any(|w| k.contains(w))
}

/// The sekisho value for one env or header entry: the client's own variable references
/// translated to `${VAR}` (for the clients that expand them); an inline secret moved into a
/// variable named after its key; any other value kept as written (with `${` escaped).
fn secret_or_reference(
    server: &str,
    key: &str,
    value: &str,
    is_env: bool,
    format: Format,
    out: &mut Imported,
) -> String {
    if value.contains("${") && expands_references(format) {
        return translate_references(server, value, format, out);
    }
    if !looks_secret(key) {
        return value.replace("${", "$${");
    }
    let var = variable_name(server, key, is_env, out);
    let (prefix, secret) = match value.strip_prefix("Bearer ") {
        Some(token) if !is_env => ("Bearer ", token),
        _ => ("", value),
    };
    out.need(&var, format!("inline in {server:?}'s {key} in the client's file"), Some(secret.to_string()));
    format!("{prefix}${{{var}}}")
}

/// Whether the client expands `${…}` in env and header values (Claude Desktop and Codex pass
/// them on as written).
fn expands_references(format: Format) -> bool {
    matches!(format, Format::McpJson | Format::Cursor | Format::Vscode)
}

/// A variable name for an inline secret: the env key itself when it is a valid name not used
/// for another server, else `SERVER_KEY`.
fn variable_name(server: &str, key: &str, is_env: bool, out: &Imported) -> String {
    let upper = |s: &str| {
        s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect::<String>()
    };
    let plain = upper(key);
    if is_env && !out.variables.contains_key(&plain) && !plain.starts_with(|c: char| c.is_ascii_digit()) {
        return plain;
    }
    format!("{}_{}", upper(server), plain)
}

/// Translate a client's reference forms into sekisho's `${VAR}`: `${env:VAR}` (VS Code,
/// Cursor), `${VAR}` and `${VAR:-default}` (Claude Code's `.mcp.json`), `${input:id}` (VS Code
/// inputs, read from a variable named after the input); others (`${workspaceFolder}` …) are
/// reported and kept as written.
fn translate_references(server: &str, value: &str, format: Format, out: &mut Imported) -> String {
    let mut result = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        result.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 2..start + len];
        let reference = format!("${{{inner}}}");
        match reference_variable(server, inner, format, out) {
            Some((var, why)) => {
                result.push_str(&format!("${{{var}}}"));
                out.need(&var, why, Some(reference));
            }
            None => {
                out.notes
                    .push(format!("server {server:?}: {reference} has no sekisho equivalent and is kept as written"));
                result.push_str(&format!("$${{{inner}}}"));
            }
        }
        rest = &rest[start + len + 1..];
    }
    result.push_str(&rest.replace("${", "$${"));
    result
}

/// The variable (and why it is needed) that the reference `${inner}` of `format` reads.
fn reference_variable(server: &str, inner: &str, format: Format, out: &mut Imported) -> Option<(String, String)> {
    let name = |v: &str| {
        (!v.is_empty()
            && !v.starts_with(|c: char| c.is_ascii_digit())
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| v.to_string())
    };
    let referenced = format!("referenced by {server:?}");
    match format {
        Format::Cursor | Format::Vscode if inner.starts_with("env:") => Some((name(&inner[4..])?, referenced)),
        Format::Vscode if inner.starts_with("input:") => {
            let id = &inner[6..];
            let var =
                id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
            Some((var, format!("VS Code input {id:?} of {server:?}")))
        }
        Format::McpJson => match inner.split_once(":-") {
            Some((v, _default)) => {
                let v = name(v)?;
                out.notes
                    .push(format!("server {server:?}: the default of ${{{inner}}} is dropped; sekisho needs {v} set"));
                Some((v, referenced))
            }
            None => Some((name(inner)?, referenced)),
        },
        _ => None,
    }
}
