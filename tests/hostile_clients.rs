//! Clients that misbehave, as careless or hostile ones do, against the real `sekisho` binary:
//! a JSON-RPC batch of 20,000 requests, answers a batch adds up past its cap, slowloris
//! connections, more connections than the cap, idle keep-alive connections, oversized
//! headers, a body that stalls, a caller opening sessions without end, ending sessions
//! without end, too many GET streams, listen streams or subscriptions, an overlong URI, a
//! forged cursor, a client that never reads its answer, and resource URIs as metric labels.
//! Also: `/metrics` on its own listener without a key, and TLS. None of it may cost the
//! gateway its memory or another client its service.

#[path = "support/binary.rs"]
mod binary;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use binary::{Binary, free_port};
use common::*;
use serde_json::{Value, json};

const KEY_A: &str = "key-a-0123456789abcdef";
const KEY_B: &str = "key-b-0123456789abcdef";

/// A raw TCP connection with a read deadline.
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Read until the peer closes the connection (EOF or reset) and return what came, or `Err`
/// with what came when `within` passes first.
fn read_to_close(s: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(out);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(out);
            }
            Err(_) => return Ok(out),
        }
    }
}

/// What [`read_to_close`] read, when the peer closed; a failure naming how much came (never
/// the bytes themselves: an answer can be megabytes) when it did not.
fn closed(got: Result<Vec<u8>, Vec<u8>>, what: &str) -> Vec<u8> {
    got.unwrap_or_else(|open| {
        let head = String::from_utf8_lossy(&open[..open.len().min(120)]).into_owned();
        panic!("{what}: still open after {} bytes: {head:?}", open.len())
    })
}

/// One HTTP/1.1 GET of `path` on `s` (keep-alive) and its whole response head and body.
fn get_keep_alive(s: &mut TcpStream, path: &str) -> String {
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the answer");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if out.len() >= head_end + 4 + length {
                return text;
            }
        }
    }
}

/// A legacy session on `endpoint` with `bearer` at protocol `version`; its id.
async fn open_session(endpoint: &str, bearer: Option<&str>, version: &str) -> Answer {
    let mut req = client().post(endpoint).header("accept", "application/json, text/event-stream").json(&json!({
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    read(req.send().await.unwrap()).await
}

fn session_of(a: &Answer) -> String {
    a.headers
        .get("mcp-session-id")
        .unwrap_or_else(|| panic!("no session: {} {}", a.status, a.raw))
        .to_str()
        .unwrap()
        .into()
}

/// POST `body` in session `session` with `bearer`.
async fn in_session(endpoint: &str, bearer: Option<&str>, session: &str, version: &str, body: &Value) -> Answer {
    let mut req = client()
        .post(endpoint)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", version)
        .json(body);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    read(req.send().await.unwrap()).await
}

async fn delete_session(endpoint: &str, bearer: Option<&str>, session: &str) -> Answer {
    let mut req = client().delete(endpoint).header("mcp-session-id", session);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    read(req.send().await.unwrap()).await
}

fn echo(name: &str) -> String {
    stdio_upstream(name, "legacy")
}

/// Wait until the catalog lists `tool` (the upstream has started).
async fn listed(gw: &Binary, tool: &str) {
    eventually("the upstream listed", Duration::from_secs(30), async || {
        let a = modern(&gw.url("/mcp"), 0, "tools/list", json!({})).await;
        if tool_names(&a).iter().any(|t| t == tool) { Ok(()) } else { Err(a.raw) }
    })
    .await;
}

#[tokio::test]
async fn a_batch_of_20000_requests_is_refused_whole_with_one_error() {
    let gw = Binary::serving("", &echo("up")).await;
    listed(&gw, "up__echo").await;
    let url = gw.url("/mcp");
    let s = session_of(&open_session(&url, None, "2025-03-26").await);
    let batch: Vec<Value> =
        (0..20_000).map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "tools/list", "params": {}})).collect();
    let a = in_session(&url, None, &s, "2025-03-26", &Value::Array(batch)).await;
    assert_eq!(a.status, 400, "{}", &a.raw[..a.raw.len().min(300)]);
    assert!(a.body.is_object(), "one error, not an answer per request: {} bytes", a.raw.len());
    assert_eq!(a.error_code(), Some(-32600));
    assert!(a.body["id"].is_null());
    assert!(a.raw.contains("max_batch_size"), "{}", a.raw);
    assert!(gw.peak_memory() < 96 << 20, "peak RSS {} MiB", gw.peak_memory() >> 20);
    // A batch within the cap still runs.
    let small: Vec<Value> =
        (0..3).map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "tools/list", "params": {}})).collect();
    let a = in_session(&url, None, &s, "2025-03-26", &Value::Array(small)).await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(3), "{}", a.raw);
}

#[tokio::test]
async fn a_batch_whose_answers_exceed_their_cap_gets_one_error_not_a_partial_answer() {
    let gw = Binary::serving("max_batch_response_bytes = 65536", &echo("up")).await;
    listed(&gw, "up__big").await;
    let url = gw.url("/mcp");
    let s = session_of(&open_session(&url, None, "2025-03-26").await);
    let call = |i: i64| json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "up__big", "arguments": {"kib": 16}}});
    let a = in_session(&url, None, &s, "2025-03-26", &json!([call(1), call(2), call(3)])).await;
    assert_eq!(a.body.as_array().map(Vec::len), Some(3), "48 KiB fit: {}", &a.raw[..a.raw.len().min(300)]);
    let a = in_session(&url, None, &s, "2025-03-26", &Value::Array((1..=8).map(call).collect())).await;
    assert!(a.body.is_object(), "one error, not a partial array: {}", &a.raw[..a.raw.len().min(300)]);
    assert_eq!(a.error_code(), Some(-32600), "{}", a.raw);
    assert!(a.raw.contains("max_batch_response_bytes"), "{}", a.raw);
}

#[tokio::test]
async fn slowloris_connections_are_closed_and_their_slots_freed() {
    let gw = Binary::serving("header_read_timeout = \"1s\"\nmax_connections = 200", "").await;
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = connect(gw.addr);
            s.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
            s
        })
        .collect();
    // All 200 slots are held now; a normal client is served once they are freed.
    let normal = client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(normal.status(), 200);
    for s in &mut slow {
        let left = Duration::from_secs(5).saturating_sub(started.elapsed());
        assert!(read_to_close(s, left).is_ok(), "a slowloris connection still open after {:?}", started.elapsed());
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_waits_for_a_slot() {
    let gw = Binary::serving("max_connections = 4\nidle_timeout = \"30s\"", "").await;
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(gw.addr)).collect();
    for s in &mut held {
        assert!(get_keep_alive(s, "/healthz").starts_with("HTTP/1.1 200"));
    }
    let mut fifth = connect(gw.addr);
    fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    fifth.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let mut buf = [0u8; 64];
    assert!(fifth.read(&mut buf).is_err(), "the fifth connection was served while four were open");
    drop(held.pop());
    let answer = closed(read_to_close(&mut fifth, Duration::from_secs(5)), "served once a slot freed");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let gw = Binary::serving("idle_timeout = \"1s\"", "").await;
    let mut s = connect(gw.addr);
    assert!(get_keep_alive(&mut s, "/healthz").starts_with("HTTP/1.1 200"));
    let idle = Instant::now();
    assert!(read_to_close(&mut s, Duration::from_secs(5)).is_ok(), "still open after {:?}", idle.elapsed());
    assert!(idle.elapsed() >= Duration::from_millis(900), "closed early: {:?}", idle.elapsed());
}

#[tokio::test]
async fn a_request_head_over_max_header_bytes_gets_431() {
    // The default (16 KiB); hyper's own default buffer took ~400 KiB.
    let gw = Binary::serving("", "").await;
    let mut s = connect(gw.addr);
    let filler = "a".repeat(8000);
    let mut head = String::from("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for i in 0..4 {
        head.push_str(&format!("X-Filler-{i}: {filler}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let answer = closed(read_to_close(&mut s, Duration::from_secs(5)), "the connection is closed");
    assert!(answer.starts_with(b"HTTP/1.1 431"), "{}", String::from_utf8_lossy(&answer));
    // A head within the limit is served.
    let ok = client().get(gw.url("/healthz")).header("x-filler", "a".repeat(4000)).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_the_connection_closes() {
    let gw = Binary::serving("body_read_timeout = \"1s\"", "").await;
    let mut s = connect(gw.addr);
    let started = Instant::now();
    s.write_all(
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\":",
    )
    .unwrap();
    let answer = closed(read_to_close(&mut s, Duration::from_secs(5)), "the connection is closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_read_timeout") || text.contains("Request Timeout"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
}

#[tokio::test]
async fn one_caller_filling_its_session_cap_does_not_block_another() {
    let server = format!(
        "api_keys = [{{ key = {KEY_A:?}, name = \"a\" }}, {{ key = {KEY_B:?}, name = \"b\" }}]\nmax_sessions_per_caller = 3"
    );
    let gw = Binary::serving(&server, "").await;
    let url = gw.url("/mcp");
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(session_of(&open_session(&url, Some(KEY_A), "2025-11-25").await));
    }
    let over = open_session(&url, Some(KEY_A), "2025-11-25").await;
    assert_eq!(over.status, 429, "{}", over.raw);
    assert_eq!(over.error_code(), Some(-32015), "{}", over.raw);
    assert_eq!(over.body["error"]["data"]["limit"], "server.max_sessions_per_caller");
    assert!(over.headers.get("mcp-session-id").is_none());
    for _ in 0..3 {
        let b = open_session(&url, Some(KEY_B), "2025-11-25").await;
        assert_eq!(b.status, 200, "the other caller is not blocked: {}", b.raw);
    }
    // Ending a session frees its place; the others keep working.
    assert_eq!(delete_session(&url, Some(KEY_A), &mine[0]).await.status, 200);
    assert_eq!(open_session(&url, Some(KEY_A), "2025-11-25").await.status, 200);
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    assert_eq!(in_session(&url, Some(KEY_A), &mine[1], "2025-11-25", &ping).await.status, 200);
}

#[tokio::test]
async fn an_ended_session_is_remembered_until_its_expiry_and_never_revived() {
    let gw = Binary::serving("session_ttl = \"2s\"\nmax_ended_sessions_per_caller = 2", "").await;
    let url = gw.url("/mcp");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(session_of(&open_session(&url, None, "2025-11-25").await));
    }
    let minted = Instant::now();
    assert_eq!(delete_session(&url, None, &ids[0]).await.status, 200);
    assert_eq!(delete_session(&url, None, &ids[1]).await.status, 200);
    // The list is full: the third is not ended, and no older one is forgotten to make room.
    let third = delete_session(&url, None, &ids[2]).await;
    assert_eq!((third.status, third.error_code()), (429, Some(-32015)), "{}", third.raw);
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    for ended in &ids[..2] {
        assert_eq!(in_session(&url, None, ended, "2025-11-25", &ping).await.status, 404, "revived");
    }
    assert_eq!(in_session(&url, None, &ids[2], "2025-11-25", &ping).await.status, 200, "still valid");
    // Once the ended ids expire they are forgotten, and another session can be ended.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(minted.elapsed())).await;
    let fresh = session_of(&open_session(&url, None, "2025-11-25").await);
    assert_eq!(delete_session(&url, None, &fresh).await.status, 200);
    assert_eq!(in_session(&url, None, &fresh, "2025-11-25", &ping).await.status, 404);
}

#[tokio::test]
async fn streams_listens_and_subscriptions_are_capped_per_session_and_caller() {
    let server = "max_streams_per_session = 2\nmax_listens_per_caller = 2\nmax_subscriptions_per_session = 2";
    let gw = Binary::serving(server, &echo("up")).await;
    listed(&gw, "up__echo").await;
    let url = gw.url("/mcp");
    let s = session_of(&open_session(&url, None, "2025-11-25").await);
    let get = || {
        client()
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &s)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
    };
    let first = get().await.unwrap();
    let second = get().await.unwrap();
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
    let third = read(get().await.unwrap()).await;
    assert_eq!((third.status, third.error_code()), (429, Some(-32015)), "{}", third.raw);
    drop(first);
    eventually("a closed stream frees its place", Duration::from_secs(5), async || {
        let r = get().await.unwrap();
        if r.status() == 200 { Ok(r) } else { Err(r.status()) }
    })
    .await;
    // Modern listen streams, per caller.
    let listen = |id: i64| {
        let meta = json!({"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}});
        client()
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", "subscriptions/listen")
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": "subscriptions/listen",
                          "params": {"notifications": {"toolsListChanged": true}, "_meta": meta}}))
            .send()
    };
    let (l1, l2) = (listen(1).await.unwrap(), listen(2).await.unwrap());
    assert_eq!((l1.status().as_u16(), l2.status().as_u16()), (200, 200));
    let l3 = read(listen(3).await.unwrap()).await;
    assert_eq!((l3.status, l3.error_code()), (429, Some(-32015)), "{}", l3.raw);
    // Subscriptions per session.
    let subscribe = |id: i64, item: i64| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "resources/subscribe",
                          "params": {"uri": format!("sekisho://up/echo://items/{item}")}});
        let (url, s) = (url.clone(), s.clone());
        async move { in_session(&url, None, &s, "2025-11-25", &body).await }
    };
    for item in 1..=2 {
        let a = subscribe(item, item).await;
        assert!(a.body["result"].is_object(), "{}", a.raw);
    }
    let again = subscribe(3, 1).await;
    assert!(again.body["result"].is_object(), "a repeat holds no new place: {}", again.raw);
    let over = subscribe(4, 3).await;
    assert_eq!(over.error_code(), Some(-32015), "{}", over.raw);
    assert_eq!(over.body["error"]["data"]["limit"], "server.max_subscriptions_per_session");
}

#[tokio::test]
async fn an_overlong_resource_uri_is_invalid_params() {
    let gw = Binary::serving("", &echo("up")).await;
    listed(&gw, "up__echo").await;
    let url = gw.url("/mcp");
    let s = session_of(&open_session(&url, None, "2025-11-25").await);
    let uri = format!("sekisho://up/echo://items/{}", "x".repeat(9000));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri}});
    let a = in_session(&url, None, &s, "2025-11-25", &body).await;
    assert_eq!(a.error_code(), Some(-32602), "{}", &a.raw[..a.raw.len().min(300)]);
    assert!(a.raw.contains("max_uri_bytes"), "{}", &a.raw[..a.raw.len().min(300)]);
    assert!(a.raw.len() < 1000, "the URI is not echoed back");
}

#[tokio::test]
async fn a_forged_cursor_past_any_list_is_invalid_params() {
    use base64::Engine;
    let gw = Binary::serving("", &echo("up")).await;
    listed(&gw, "up__echo").await;
    let url = gw.url("/mcp");
    for offset in [u64::MAX.to_string(), (usize::MAX - 3).to_string(), "1000000".into()] {
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("0:{offset}"));
        let a = modern(&url, 1, "tools/list", json!({"cursor": cursor})).await;
        assert_eq!(a.error_code(), Some(-32602), "offset {offset}: {} {}", a.status, a.raw);
    }
    let a = modern(&url, 2, "tools/list", json!({})).await;
    assert!(!tool_names(&a).is_empty(), "the gateway lives on");
}

#[tokio::test]
async fn a_client_that_never_reads_its_answer_is_closed() {
    let gw = Binary::serving("send_timeout = \"1s\"", &echo("up")).await;
    listed(&gw, "up__big").await;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "up__big", "arguments": {"kib": 8192},
        "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}}})
    .to_string();
    // A small receive window, so the answer cannot all sit in this side's buffers.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut s = socket.connect(gw.addr).await.unwrap().into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    write!(
        s,
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json\r\nMCP-Protocol-Version: {MODERN}\r\nMcp-Method: tools/call\r\nMcp-Name: up__big\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Not reading: the gateway's write stalls, and after send_timeout it gives up.
    std::thread::sleep(Duration::from_secs(4));
    let got = closed(read_to_close(&mut s, Duration::from_secs(10)), "the connection is closed");
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got[..got.len().min(200)]));
    assert!(got.len() < 8 << 20, "the whole answer was kept for a client that did not read ({} bytes)", got.len());
    // The gateway serves others meanwhile and after.
    assert_eq!(client().get(gw.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn resource_uris_do_not_become_metric_labels() {
    let gw = Binary::serving("", &format!("{}trusted = true\nresource_ttl = \"30s\"\n", echo("res"))).await;
    listed(&gw, "res__echo").await;
    let url = gw.url("/mcp");
    for i in 0..5 {
        let uri = format!("sekisho://res/echo://items/unique-{i}");
        let a = modern(&url, i, "resources/read", json!({"uri": uri})).await;
        assert!(a.body["result"].is_object(), "{}", a.raw);
    }
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("unique-"), "a series per resource URI:\n{metrics}");
    assert!(metrics.contains(r#"tool="resources/read""#), "{metrics}");
}

#[tokio::test]
async fn metrics_listen_serves_metrics_without_a_key_while_the_main_listener_requires_one() {
    let port = free_port();
    let server = format!("api_keys = [{KEY_A:?}]\nmetrics_listen = \"127.0.0.1:{port}\"");
    let gw = Binary::serving(&server, "").await;
    assert_eq!(client().get(gw.url("/metrics")).send().await.unwrap().status(), 401);
    let keyed = client().get(gw.url("/metrics")).bearer_auth(KEY_A).send().await.unwrap();
    assert_eq!(keyed.status(), 200);
    let open = client().get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
    assert_eq!(open.status(), 200);
    assert!(open.text().await.unwrap().contains("sekisho_"));
    let mcp = client().post(format!("http://127.0.0.1:{port}/mcp")).json(&json!({})).send().await.unwrap();
    assert_eq!(mcp.status(), 404, "only /metrics (and /healthz) there");
}

#[tokio::test]
async fn the_listener_speaks_tls_with_the_configured_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let server =
        format!("tls_cert = {:?}\ntls_key = {:?}", cert_path.display().to_string(), key_path.display().to_string());
    // Not waited for by the harness, which probes plain HTTP.
    let served = Binary::spawn(&server, "", None, &[]);
    let port = served.addr.port();
    let trusting = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", format!("127.0.0.1:{port}").parse().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("https://localhost:{port}");
    let ok = eventually("sekisho serving TLS", Duration::from_secs(30), async || {
        trusting.get(format!("{url}/healthz")).send().await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(ok.status(), 200);
    let a = read(
        trusting
            .post(format!("{url}/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.body["result"]["protocolVersion"], "2025-11-25", "{}", a.raw);
    // Plain HTTP on the TLS port gets no answer.
    assert!(client().get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_err());
}
