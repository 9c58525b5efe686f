//! What desktop and CLI clients see right after they launch the gateway: the first tool list
//! holds every upstream that starts within `[catalog] initial_wait` (names the others as
//! unavailable), and a call made before the list waits for its upstream instead of failing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sekisho");

/// Three upstreams: one that starts at once, one that takes `slow_ms` to start, and one that
/// never answers its handshake.
fn config(dir: &std::path::Path, slow_ms: u64, initial_wait: &str, listen: Option<u16>) -> std::path::PathBuf {
    let echo = echo_upstream().display().to_string();
    let slow = format!("sleep {}; exec {echo} stdio", slow_ms as f64 / 1000.0);
    let server = listen.map(|p| format!("[server]\nlisten = \"127.0.0.1:{p}\"\n")).unwrap_or_default();
    let text = format!(
        "{server}[catalog]\ninitial_wait = \"{initial_wait}\"\n\
         [upstreams.quick]\ncommand = {echo:?}\nargs = [\"stdio\"]\n\
         [upstreams.slow]\ncommand = \"sh\"\nargs = [\"-c\", {slow:?}]\n\
         [upstreams.never]\ncommand = \"sleep\"\nargs = [\"300\"]\nstartup_timeout = \"60s\"\n"
    );
    let path = dir.join("sekisho.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn names(list: &Value) -> Vec<String> {
    list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn the_first_stdio_list_holds_every_upstream_that_starts_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1500, "5s", None);
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(["stdio", "--config"])
        .arg(&cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = |v: Value| writeln!(stdin, "{v}").unwrap();
    // Answers arrive in any order: keep the ones not asked for yet.
    let mut early: Vec<Value> = Vec::new();
    let mut answer = |id: i64| -> Value {
        if let Some(i) = early.iter().position(|v| v["id"] == id) {
            return early.remove(i);
        }
        loop {
            let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
            if v["id"] == id {
                return v;
            }
            if v.get("id").is_some() {
                early.push(v);
            }
        }
    };
    send(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"desk","version":"1"}}}),
    );
    assert!(answer(1)["result"]["protocolVersion"].is_string());
    send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    // A call to the slow upstream's tool before any list: it waits for the upstream.
    send(
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow__echo","arguments":{"message":"early"}}}),
    );
    send(json!({"jsonrpc":"2.0","id":3,"method":"tools/list"}));
    let call = answer(2);
    assert_eq!(call["result"]["content"][0]["text"], "early", "{call}");
    let list = answer(3);
    let waited = started.elapsed();
    let tools = names(&list);
    assert!(tools.iter().any(|n| n == "quick__echo") && tools.iter().any(|n| n == "slow__echo"), "{tools:?}");
    assert_eq!(list["result"]["_meta"]["io.sekisho/unavailableUpstreams"], json!(["never"]), "{list}");
    // Bounded by initial_wait (5 s) from start: the upstream that never starts holds the list
    // no longer (the margin is for starting the process itself).
    assert!(waited < Duration::from_secs(12), "waited {waited:?}");
    // End of input ends the gateway, which stops every upstream (the one still starting too).
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn the_first_http_list_right_after_start_holds_every_upstream_that_starts_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = config(dir.path(), 1500, "5s", Some(port));
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    eventually("the gateway answers", Duration::from_secs(20), async || {
        client().get(format!("{base}/healthz")).send().await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
    // The very first request after the listener is up.
    let list = modern(&format!("{base}/mcp"), 1, "tools/list", json!({})).await;
    let tools = tool_names(&list);
    assert!(tools.iter().any(|n| n == "quick__echo") && tools.iter().any(|n| n == "slow__echo"), "{tools:?}");
    assert_eq!(list.body["result"]["_meta"]["io.sekisho/unavailableUpstreams"], json!(["never"]), "{}", list.raw);
    // SIGTERM (not SIGKILL, which would orphan the upstreams): the gateway drains and stops them.
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}
