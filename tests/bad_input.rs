//! Bad input gets its spec-correct error, nothing panics or hangs, and the gateway keeps
//! serving afterwards: malformed JSON, wrong shapes, unknown methods and tools, oversize
//! bodies, missing/bogus/deleted/expired sessions, header/body mismatch, foreign Host/Origin,
//! missing or wrong API keys (refused from the head, on a connection that then closes), and
//! era-specific refusals.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn config(extra: &str) -> String {
    format!("[server]\nmax_body_bytes = 4096\nsession_ttl = \"2s\"\n{extra}\n{}", stdio_upstream("echo", "dual"))
}

async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut req = client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.body(body.to_string()).send().await.unwrap()).await
}

#[tokio::test]
async fn malformed_messages_get_jsonrpc_errors() {
    let gw = Gateway::start(&config("")).await;
    let mcp = gw.url("/mcp");
    let a = post(&mcp, &[], "{not json").await;
    assert_eq!((a.status, a.error_code()), (400, Some(-32700)));
    assert_eq!(a.body["id"], Value::Null);
    let a = post(&mcp, &[], r#"{"jsonrpc":"2.0","id":7}"#).await;
    assert_eq!((a.status, a.error_code()), (400, Some(-32600)));
    assert_eq!(a.body["id"], 7, "the id is echoed when readable");
    let a = post(&mcp, &[], r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).await;
    assert_eq!(a.error_code(), Some(-32600));
    let a = post(&mcp, &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}"#).await;
    assert_eq!(a.error_code(), Some(-32600));
    let a = post(&mcp, &[], "42").await;
    assert_eq!(a.error_code(), Some(-32600));
    let a = post(&mcp, &[], "").await;
    assert_eq!(a.error_code(), Some(-32700));
    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(8192));
    let a = post(&mcp, &[], &big).await;
    assert_eq!(a.status, 413);
    assert_eq!(a.error_code(), Some(-32600));
    let a = read(client().post(&mcp).header("content-type", "text/plain").body("{}").send().await.unwrap()).await;
    assert_eq!(a.status, 415);
    let a = read(
        client()
            .post(&mcp)
            .header("accept", "text/html")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 406);
    // Still healthy.
    assert_eq!(client().get(gw.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn sessions_are_required_validated_and_ended() {
    let gw = Gateway::start(&config("")).await;
    let mcp = gw.url("/mcp");
    let a = post(&mcp, &[], r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await;
    assert_eq!((a.status, a.error_code()), (400, Some(-32600)), "no session: {}", a.raw);
    let a = post(&mcp, &[("mcp-session-id", "bogus")], r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).await;
    assert_eq!(a.status, 404, "unknown session");
    let s = Legacy::open(&mcp, "2025-11-25").await;
    assert!(s.session.bytes().all(|b| (0x21..=0x7e).contains(&b)), "visible ASCII session id");
    assert_eq!(s.request(1, "ping", json!({})).await.body["result"], json!({}));
    let a = post(
        &mcp,
        &[("mcp-session-id", &s.session), ("mcp-protocol-version", "1999-01-01")],
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
    )
    .await;
    assert_eq!(a.status, 400, "unsupported protocol version header");
    let d = client().delete(&mcp).header("mcp-session-id", &s.session).send().await.unwrap();
    assert_eq!(d.status(), 200);
    assert_eq!(s.request(3, "ping", json!({})).await.status, 404, "deleted session");
    let d = client().delete(&mcp).header("mcp-session-id", &s.session).send().await.unwrap();
    assert_eq!(d.status(), 404);
    let s2 = Legacy::open(&mcp, "2025-06-18").await;
    // A session id carries its own expiry (session_ttl, in whole seconds): using it does not
    // extend it, so pinging until it stops working does not change when it expires.
    let expired = eventually("the session expired", Duration::from_secs(10), async || {
        let a = s2.request(1, "ping", json!({})).await;
        if a.status == 200 { Err(a.raw) } else { Ok(a) }
    })
    .await;
    assert_eq!(expired.status, 404, "expired session");
}

#[tokio::test]
async fn unknown_methods_tools_and_params() {
    let gw = Gateway::start(&config("")).await;
    let mcp = gw.url("/mcp");
    let s = Legacy::open(&mcp, "2025-11-25").await;
    let a = s.request(1, "no/such/method", json!({})).await;
    assert_eq!((a.status, a.error_code()), (200, Some(-32601)));
    let a = s.request(2, "tools/call", json!({"name": "echo__nope", "arguments": {}})).await;
    assert_eq!(a.error_code(), Some(-32602));
    assert!(a.body["error"]["message"].as_str().unwrap().contains("echo__nope"));
    let a = s.request(3, "tools/call", json!({"arguments": {}})).await;
    assert_eq!(a.error_code(), Some(-32602), "missing name");
    let a = s.request(4, "tools/list", json!({"cursor": "not-ours"})).await;
    assert_eq!(a.error_code(), Some(-32602), "foreign cursor");
    let a = s.request(5, "resources/read", json!({"uri": "nowhere://x"})).await;
    assert_eq!(a.error_code(), Some(-32002), "legacy resource not found");
    let m = modern(&mcp, 6, "resources/read", json!({"uri": "nowhere://x"})).await;
    assert_eq!((m.status, m.error_code()), (400, Some(-32602)), "modern resource not found: {}", m.raw);
    assert_eq!(m.body["error"]["data"]["uri"], "nowhere://x");
    let m = modern(&mcp, 7, "no/such/method", json!({})).await;
    assert_eq!((m.status, m.error_code()), (404, Some(-32601)));
    for removed in ["initialize", "ping", "logging/setLevel", "resources/subscribe"] {
        let m = modern(&mcp, 8, removed, json!({"uri": "x", "level": "info", "protocolVersion": MODERN})).await;
        assert_eq!((m.status, m.error_code()), (404, Some(-32601)), "{removed}: {}", m.raw);
        assert_eq!(m.body["id"], 8, "errors echo the request id");
    }
}

#[tokio::test]
async fn modern_envelope_ladder() {
    let gw = Gateway::start(&config("")).await;
    let mcp = gw.url("/mcp");
    let envelope = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let h = |method: &'static str| vec![("mcp-protocol-version", MODERN), ("mcp-method", method)];
    let a = post(&mcp, &h("tools/list"), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#).await;
    assert_eq!((a.status, a.error_code()), (400, Some(-32602)), "missing _meta");
    let a = post(
        &mcp,
        &h("prompts/list"),
        &format!(r#"{{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{{{envelope}}}}}"#),
    )
    .await;
    assert_eq!((a.status, a.error_code()), (400, Some(-32020)), "Mcp-Method mismatch");
    let mut with_name = h("tools/call");
    with_name.push(("mcp-name", "echo__add"));
    let a = post(
        &mcp,
        &with_name,
        &format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"echo__echo",{envelope}}}}}"#),
    )
    .await;
    assert_eq!((a.status, a.error_code()), (400, Some(-32020)), "Mcp-Name mismatch");
    let a = post(&mcp, &[("mcp-protocol-version", "2099-01-01"), ("mcp-method", "tools/list")],
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}"#).await;
    assert_eq!((a.status, a.error_code()), (400, Some(-32022)), "{}", a.raw);
    assert_eq!(a.body["error"]["data"], json!({"supported": [MODERN], "requested": "2099-01-01"}));
    let a = post(
        &mcp,
        &h("tools/list"),
        &format!(r#"[{{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{{{envelope}}}}}]"#),
    )
    .await;
    assert_eq!(a.error_code(), Some(-32600), "no batches in 2026-07-28");
    let a = read(client().get(&mcp).header("mcp-protocol-version", MODERN).send().await.unwrap()).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.headers.get("allow").unwrap(), "POST");
    let a = read(client().delete(&mcp).header("mcp-protocol-version", MODERN).send().await.unwrap()).await;
    assert_eq!(a.status, 405);
    let ok = modern(&mcp, 6, "tools/call", json!({"name": "echo__echo", "arguments": {"message": "ok"}})).await;
    assert_eq!(text(&ok), "ok");
    assert_eq!(ok.body["result"]["resultType"], "complete");
}

#[tokio::test]
async fn batches_only_for_2025_03_26() {
    let gw = Gateway::start(&config("")).await;
    let mcp = gw.url("/mcp");
    let old = Legacy::open(&mcp, "2025-03-26").await;
    assert_eq!(old.version, "2025-03-26");
    let batch = json!([
        {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo__sleep_ms","arguments":{"ms":300}}},
        {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo__sleep_ms","arguments":{"ms":300}}},
        {"jsonrpc":"2.0","method":"notifications/initialized"},
        {"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo__nope","arguments":{}}}
    ]);
    let started = std::time::Instant::now();
    let a = old.post_raw(batch.clone()).await;
    assert_eq!(a.status, 200);
    let answers = a.body.as_array().expect("an array of answers");
    assert_eq!(answers.len(), 3, "{}", a.raw);
    assert!(started.elapsed() < Duration::from_millis(550), "requests of a batch run concurrently");
    assert_eq!(answers.iter().filter(|x| x.get("error").is_some()).count(), 1);
    let new = Legacy::open(&mcp, "2025-11-25").await;
    let a = new.post_raw(batch).await;
    assert_eq!((a.status, a.error_code()), (400, Some(-32600)));
}

#[tokio::test]
async fn dns_rebinding_is_refused() {
    let gw = Gateway::start(&config("")).await;
    let mcp = gw.url("/mcp");
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    let a = post(&mcp, &[("host", "evil.example.com")], init).await;
    assert_eq!(a.status, 403);
    let a = post(&mcp, &[("origin", "http://evil.example.com")], init).await;
    assert_eq!(a.status, 403);
    let port = gw.addr.port().to_string();
    let host = format!("localhost:{port}");
    let a = post(&mcp, &[("host", &host), ("origin", &format!("http://{host}"))], init).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn api_keys_are_enforced() {
    let gw = Gateway::start(&config("api_keys = [\"k-0123456789abcdef0123\"]")).await;
    let mcp = gw.url("/mcp");
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    let a = post(&mcp, &[], init).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.headers.get("www-authenticate").unwrap(), "Bearer");
    let a = post(&mcp, &[("authorization", "Bearer k-wrong")], init).await;
    assert_eq!(a.status, 401);
    let a = post(&mcp, &[("authorization", "Bearer k-0123456789abcdef0123")], init).await;
    assert_eq!(a.status, 200);
    assert_eq!(client().get(gw.url("/metrics")).send().await.unwrap().status(), 401);
    assert_eq!(client().get(gw.url("/healthz")).send().await.unwrap().status(), 200, "probes stay open");
}

/// A refusal the edge sends from the request's head, before its body has arrived, says
/// `Connection: close` and the connection then closes: hyper cannot reuse a connection whose
/// body is unread, so a client that was not told would send its retry (with a key or token)
/// down a closing connection and get no answer at all.
#[tokio::test]
async fn a_refusal_before_the_body_closes_the_connection_and_says_so() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Gateway::start(&config("api_keys = [\"k-0123456789abcdef0123\"]")).await;
    let host = gw.addr.to_string();
    for (what, host, status) in [("no key", host.as_str(), "401"), ("a foreign Host", "evil.example.com", "403")] {
        let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        // The head only; the 64 bytes of body it announces never come.
        let head = format!(
            "POST /mcp HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\ncontent-length: 64\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut got))
            .await
            .unwrap_or_else(|_| panic!("{what}: the connection stays open"))
            .unwrap();
        let text = String::from_utf8_lossy(&got).to_lowercase();
        assert!(text.starts_with(&format!("http/1.1 {status}")), "{what}: {text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{what}: {text}");
    }
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;
    let a = post(&gw.url("/mcp"), &[("authorization", "Bearer k-0123456789abcdef0123")], init).await;
    assert_eq!(a.status, 200);
    assert!(a.headers.get("connection").is_none(), "an accepted request keeps its connection");
}

#[tokio::test]
async fn non_loopback_without_keys_is_a_config_error() {
    let err = sekisho::config::Config::from_toml("[server]\nlisten = \"0.0.0.0:8080\"\n").unwrap_err();
    assert!(err.to_string().contains("api_keys"), "{err}");
}
