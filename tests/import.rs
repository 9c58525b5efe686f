//! `sekisho import` and `sekisho client-config` on client files the tests write (Claude Desktop,
//! `.mcp.json`, Cursor, VS Code, Codex): secrets leave the files as `${VAR}`, what cannot be
//! mapped is reported, the imported configuration passes `sekisho check` and `sekisho stdio`
//! serves exactly the tools the original servers serve; `client-config --write` keeps a backup
//! and writes a file the client's format parses.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_sekisho");

/// Run `sekisho args…` with `env` added (and `unset` removed) from the test's environment.
fn sekisho(args: &[&str], env: &[(&str, &str)], unset: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `sekisho import file`: (the TOML printed, what it said on stderr), after checking it
/// succeeded.
fn import(file: &Path, format: Option<&str>) -> (String, String) {
    let mut args = vec!["import", file.to_str().unwrap()];
    if let Some(f) = format {
        args.extend(["--format", f]);
    }
    let out = sekisho(&args, &[], &[]);
    assert!(out.status.success(), "import failed: {}", stderr(&out));
    let said = stderr(&out);
    (String::from_utf8(out.stdout).unwrap(), said)
}

/// The tool names a server answers on its stdio after `initialize`, started as `command args`
/// with `env` added.
async fn stdio_tools(command: &str, args: &[&str], env: &[(&str, &str)]) -> BTreeSet<String> {
    let mut cmd = tokio::process::Command::new(command);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = async |id: i64, method: &str, params: Value| -> Value {
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        stdin.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
            let line =
                line.expect("an answer in 30 s").unwrap().unwrap_or_else(|| panic!("{command} closed its stdout"));
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    };
    let init = ask(
        1,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}),
    )
    .await;
    assert!(init["result"].is_object(), "{init}");
    let list = ask(2, "tools/list", json!({})).await;
    // End of input ends the server (sekisho stops its upstreams on the way out).
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{command} exited with {status}");
    list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The tool names of an HTTP server, asked with `bearer`.
async fn http_tools(url: &str, bearer: &str) -> BTreeSet<String> {
    tool_names(&modern_as(url, Some(bearer), 1, "tools/list", json!({})).await).into_iter().collect()
}

/// `tools` of the original server `namespace`, as sekisho exposes them.
fn exposed(namespace: &str, tools: &BTreeSet<String>) -> BTreeSet<String> {
    tools.iter().map(|t| format!("{namespace}__{t}")).collect()
}

/// What `sekisho stdio` serves with `config`: `check` passes first with `env`, and fails
/// naming the first variable when it is missing.
async fn served(config: &Path, env: &[(&str, &str)]) -> BTreeSet<String> {
    let path = config.to_str().unwrap();
    let ok = sekisho(&["check", "--config", path], env, &[]);
    assert!(ok.status.success(), "check failed: {}", stderr(&ok));
    if let Some((missing, _)) = env.first() {
        let without = sekisho(&["check", "--config", path], &env[1..], &[missing]);
        assert!(!without.status.success(), "check passed without {missing}");
        assert!(stderr(&without).contains(missing), "{}", stderr(&without));
    }
    stdio_tools(BIN, &["stdio", "--config", path], env).await
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A stdio server (`sh -c`) that starts the echo upstream only when `$var` holds `value`
/// (read from a file, so the secret is not in its arguments): without it, it has no tools.
fn guarded(dir: &Path, var: &str, value: &str) -> Vec<String> {
    let echo = echo_upstream().display().to_string();
    let file = dir.join(format!("expected-{var}"));
    std::fs::write(&file, value).unwrap();
    vec!["-c".into(), format!("test \"${var}\" = \"$(cat {})\" && exec {echo} stdio", file.display())]
}

#[tokio::test]
async fn claude_desktop_inline_secret_disabled_server_and_odd_name() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_upstream().display().to_string();
    let file = write(
        dir.path(),
        "claude_desktop_config.json",
        &json!({
            "globalShortcut": "Ctrl+Space",
            "mcpServers": {
                "notes app": {"command": "sh", "args": guarded(dir.path(), "API_TOKEN", "s3cr3t-claude"),
                              "env": {"API_TOKEN": "s3cr3t-claude", "MODE": "fast ${not} expanded"}},
                "old": {"command": echo, "args": ["stdio"], "disabled": true},
            }
        })
        .to_string(),
    );
    let (toml, said) = import(&file, None);
    assert!(!toml.contains("s3cr3t-claude"), "the secret stays out of the TOML:\n{toml}");
    assert!(toml.contains("API_TOKEN = \"${API_TOKEN}\""), "{toml}");
    assert!(toml.contains("MODE = \"fast $${not} expanded\""), "a literal `${{` is escaped:\n{toml}");
    assert!(said.contains("set API_TOKEN"), "{said}");
    assert!(said.contains("\"notes app\" is named \"notes_app\""), "{said}");
    assert!(toml.contains("[upstreams.old]") && toml.contains("enabled = false"), "{toml}");
    let config = write(dir.path(), "sekisho.toml", &toml);

    let original = stdio_tools(
        "sh",
        &guarded(dir.path(), "API_TOKEN", "s3cr3t-claude").iter().map(String::as_str).collect::<Vec<_>>(),
        &[("API_TOKEN", "s3cr3t-claude")],
    )
    .await;
    assert!(original.contains("echo"), "{original:?}");
    let tools = served(&config, &[("API_TOKEN", "s3cr3t-claude")]).await;
    assert_eq!(tools, exposed("notes_app", &original), "the disabled server serves nothing");
}

#[tokio::test]
async fn mcp_json_http_headers_references_defaults_and_sse() {
    let dir = tempfile::tempdir().unwrap();
    let remote = HttpUpstream::start_with(&["--bearer", "tok-remote"]).await;
    let echo = echo_upstream().display().to_string();
    let file = write(
        dir.path(),
        ".mcp.json",
        &json!({"mcpServers": {
            "remote": {"type": "http", "url": remote.url, "headers": {"Authorization": "Bearer ${REMOTE_TOKEN}"}},
            "local": {"type": "stdio", "command": echo, "args": ["stdio"], "env": {"MODE": "${MODE:-fast}"}},
            "legacy": {"type": "sse", "url": "http://127.0.0.1:9/sse"},
        }})
        .to_string(),
    );
    let (toml, said) = import(&file, None);
    assert!(toml.contains("# .mcp.json") || toml.contains("(.mcp.json)"), "detected as .mcp.json:\n{toml}");
    assert!(toml.contains("Authorization = \"Bearer ${REMOTE_TOKEN}\""), "{toml}");
    assert!(said.contains("set REMOTE_TOKEN") && said.contains("set MODE"), "{said}");
    assert!(said.contains("the default of ${MODE:-fast} is dropped"), "{said}");
    assert!(toml.contains("[upstreams.legacy]\nurl = \"http://127.0.0.1:9/sse\"\ntransport = \"sse\""), "{toml}");
    let config = write(dir.path(), "sekisho.toml", &toml);

    let want: BTreeSet<String> = exposed("remote", &http_tools(&remote.url, "tok-remote").await)
        .into_iter()
        .chain(exposed("local", &stdio_tools(&echo, &["stdio"], &[]).await))
        .collect();
    assert!(want.contains("remote__echo"), "{want:?}");
    let tools = served(&config, &[("REMOTE_TOKEN", "tok-remote"), ("MODE", "fast")]).await;
    assert_eq!(tools, want);
}

#[tokio::test]
async fn cursor_env_references_and_inline_header_secret() {
    let dir = tempfile::tempdir().unwrap();
    let web = HttpUpstream::start_with(&["--bearer", "inline-cursor"]).await;
    let file = write(
        dir.path(),
        "mcp.json",
        &json!({"mcpServers": {
            "gh": {"command": "sh", "args": guarded(dir.path(), "GITHUB_TOKEN", "gh-secret"), "env": {"GITHUB_TOKEN": "${env:GH_TOKEN}"}},
            "web": {"url": web.url, "headers": {"Authorization": "Bearer inline-cursor"}},
        }})
        .to_string(),
    );
    let (toml, said) = import(&file, Some("cursor"));
    assert!(!toml.contains("inline-cursor"), "{toml}");
    assert!(toml.contains("GITHUB_TOKEN = \"${GH_TOKEN}\""), "{toml}");
    assert!(toml.contains("Authorization = \"Bearer ${WEB_AUTHORIZATION}\""), "{toml}");
    assert!(said.contains("set GH_TOKEN") && said.contains("set WEB_AUTHORIZATION"), "{said}");
    let config = write(dir.path(), "sekisho.toml", &toml);

    let gh = guarded(dir.path(), "GITHUB_TOKEN", "gh-secret");
    let want: BTreeSet<String> = exposed("web", &http_tools(&web.url, "inline-cursor").await)
        .into_iter()
        .chain(exposed(
            "gh",
            &stdio_tools("sh", &gh.iter().map(String::as_str).collect::<Vec<_>>(), &[("GITHUB_TOKEN", "gh-secret")])
                .await,
        ))
        .collect();
    assert!(want.contains("gh__echo") && want.contains("web__echo"), "{want:?}");
    let tools = served(&config, &[("GH_TOKEN", "gh-secret"), ("WEB_AUTHORIZATION", "inline-cursor")]).await;
    assert_eq!(tools, want);
}

#[tokio::test]
async fn vscode_inputs_become_variables_and_unknown_keys_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let docs = HttpUpstream::start_with(&["--bearer", "from-input"]).await;
    let file = write(
        dir.path(),
        "mcp.json",
        &json!({
            "inputs": [{"type": "promptString", "id": "api-key", "description": "API key", "password": true}],
            "servers": {
                "echo": {"type": "stdio", "command": "sh", "args": guarded(dir.path(), "KEY", "from-input"),
                         "env": {"KEY": "${input:api-key}"}, "envFile": "${workspaceFolder}/.env"},
                "docs": {"type": "http", "url": docs.url, "headers": {"Authorization": "Bearer ${input:api-key}"}},
            }
        })
        .to_string(),
    );
    let (toml, said) = import(&file, None);
    assert!(toml.contains("(VS Code)"), "detected as VS Code:\n{toml}");
    assert!(toml.contains("KEY = \"${API_KEY}\""), "{toml}");
    assert!(said.contains("set API_KEY (VS Code input \"api-key\""), "{said}");
    assert!(said.contains("VS Code `inputs` prompt in the editor"), "{said}");
    assert!(said.contains("`envFile` has no sekisho equivalent"), "{said}");
    assert!(toml.contains("#   - server \"echo\": `envFile`"), "notes are in the file too:\n{toml}");
    let config = write(dir.path(), "sekisho.toml", &toml);

    let guard = guarded(dir.path(), "KEY", "from-input");
    let want: BTreeSet<String> = exposed("docs", &http_tools(&docs.url, "from-input").await)
        .into_iter()
        .chain(exposed(
            "echo",
            &stdio_tools("sh", &guard.iter().map(String::as_str).collect::<Vec<_>>(), &[("KEY", "from-input")]).await,
        ))
        .collect();
    let tools = served(&config, &[("API_KEY", "from-input")]).await;
    assert_eq!(tools, want);
}

#[tokio::test]
async fn codex_bearer_env_var_timeouts_disabled_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let remote = HttpUpstream::start_with(&["--bearer", "codex-token"]).await;
    let echo = echo_upstream().display().to_string();
    let file = write(
        dir.path(),
        "config.toml",
        &format!(
            "model = \"gpt-5\"\n\n[mcp_servers.echo]\ncommand = {echo:?}\nargs = [\"stdio\"]\nenv = {{ MODE = \"fast\" }}\n\
             startup_timeout_sec = 15\ntool_timeout_sec = 30\nenabled_tools = [\"echo\"]\n\n\
             [mcp_servers.remote]\nurl = {:?}\nbearer_token_env_var = \"REMOTE_TOKEN\"\n\n\
             [mcp_servers.off]\ncommand = {echo:?}\nargs = [\"stdio\"]\nenabled = false\n",
            remote.url
        ),
    );
    let (toml, said) = import(&file, None);
    assert!(toml.contains("(Codex)"), "{toml}");
    assert!(toml.contains("startup_timeout = \"15s\"") && toml.contains("timeout = \"30s\""), "{toml}");
    assert!(toml.contains("Authorization = \"Bearer ${REMOTE_TOKEN}\""), "{toml}");
    assert!(said.contains("set REMOTE_TOKEN (the bearer token of \"remote\")"), "{said}");
    assert!(said.contains("`enabled_tools` has no sekisho equivalent"), "{said}");
    assert!(toml.contains("[upstreams.off]\ncommand") && toml.contains("enabled = false"), "{toml}");
    let config = write(dir.path(), "sekisho.toml", &toml);

    let want: BTreeSet<String> = exposed("remote", &http_tools(&remote.url, "codex-token").await)
        .into_iter()
        .chain(exposed("echo", &stdio_tools(&echo, &["stdio"], &[]).await))
        .collect();
    let tools = served(&config, &[("REMOTE_TOKEN", "codex-token")]).await;
    assert_eq!(tools, want, "`off` serves nothing");
}

#[test]
fn import_refuses_what_is_not_a_client_file_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let junk = write(dir.path(), "x.json", "{\"hello\": 1}");
    let out = sekisho(&["import", junk.to_str().unwrap()], &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a client configuration"), "{}", stderr(&out));
    let file = write(dir.path(), ".mcp.json", "{\"mcpServers\": {}}");
    let existing = write(dir.path(), "sekisho.toml", "# mine\n");
    let out = sekisho(&["import", file.to_str().unwrap(), "--write", existing.to_str().unwrap()], &[], &[]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "# mine\n");
}

/// `client-config --write` on a JSON client and on Codex: a backup of the old file, the
/// imported servers (an HTTP+SSE one included) replaced by one `sekisho` entry that passes the
/// variables, the rest of the file kept, and the result parsed back.
#[test]
fn client_config_write_keeps_a_backup_and_a_parseable_file() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_upstream().display().to_string();
    let original = json!({
        "globalShortcut": "Ctrl+Space",
        "mcpServers": {
            "notes": {"command": echo, "args": ["stdio"], "env": {"API_TOKEN": "s3cr3t"}},
            "legacy": {"type": "sse", "url": "http://127.0.0.1:9/sse"},
        }
    });
    let claude = write(dir.path(), "claude_desktop_config.json", &original.to_string());
    let (toml, _) = import(&claude, Some("claude"));
    let config = write(dir.path(), "sekisho.toml", &toml);
    let out = sekisho(
        &[
            "client-config",
            "claude",
            "--config",
            config.to_str().unwrap(),
            "--file",
            claude.to_str().unwrap(),
            "--write",
        ],
        &[],
        &["API_TOKEN"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let backups: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("claude_desktop_config.json.sekisho-backup-"))
        .collect();
    assert_eq!(backups.len(), 1, "{}", stderr(&out));
    let backed_up: Value = serde_json::from_str(&std::fs::read_to_string(&backups[0]).unwrap()).unwrap();
    assert_eq!(backed_up, original);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&claude).unwrap()).unwrap();
    assert_eq!(written["globalShortcut"], "Ctrl+Space");
    let servers = written["mcpServers"].as_object().unwrap();
    // The HTTP+SSE server too: sekisho speaks its transport (`transport = "sse"`).
    assert_eq!(servers.keys().collect::<BTreeSet<_>>(), BTreeSet::from([&"sekisho".to_string()]));
    let entry = &servers["sekisho"];
    assert_eq!(entry["command"], BIN);
    assert_eq!(entry["args"], json!(["stdio", "--config", std::fs::canonicalize(&config).unwrap()]));
    assert_eq!(entry["env"], json!({"API_TOKEN": "s3cr3t"}), "the client passes sekisho what it passed the server");

    // Codex: a TOML file whose other settings (and comments) survive.
    let codex = write(
        dir.path(),
        "config.toml",
        &format!(
            "# my settings\nmodel = \"gpt-5\"\n\n[mcp_servers.echo]\ncommand = {echo:?}\nargs = [\"stdio\"]\n\n\
             [mcp_servers.remote]\nurl = \"http://127.0.0.1:9/mcp\"\nbearer_token_env_var = \"REMOTE_TOKEN\"\n"
        ),
    );
    let (toml, _) = import(&codex, None);
    let config = write(dir.path(), "codex-sekisho.toml", &toml);
    let out = sekisho(
        &["client-config", "codex", "--config", config.to_str().unwrap(), "--file", codex.to_str().unwrap(), "--write"],
        &[],
        &["REMOTE_TOKEN"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&codex).unwrap();
    assert!(text.starts_with("# my settings\nmodel = \"gpt-5\""), "{text}");
    let doc: toml::Table = text.parse().unwrap();
    let servers = doc["mcp_servers"].as_table().unwrap();
    assert_eq!(servers.keys().collect::<Vec<_>>(), vec!["sekisho"], "{text}");
    assert_eq!(servers["sekisho"]["command"].as_str(), Some(BIN));
    assert_eq!(servers["sekisho"]["env_vars"].as_array().unwrap(), &vec![toml::Value::from("REMOTE_TOKEN")]);
    assert!(servers["sekisho"]["startup_timeout_sec"].as_integer().unwrap() > 8, "room for initial_wait");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("config.toml.sekisho-backup-"))
    );

    // Printing (no --write) changes nothing.
    let before = std::fs::read_to_string(&codex).unwrap();
    let out = sekisho(
        &["client-config", "codex", "--config", config.to_str().unwrap(), "--file", codex.to_str().unwrap()],
        &[],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&codex).unwrap(), before);
}
