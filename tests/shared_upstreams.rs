//! Clients that share one upstream connection must not step on each other through it: one
//! client's `resources/unsubscribe` cannot end another's updates (subscriptions are counted and
//! the upstream unsubscribe goes out when the last session leaves), one client's
//! `logging/setLevel` cannot silence another's log messages, and an upstream's sampling,
//! elicitation or roots request reaches only a client that declared that capability.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

/// Wait on `stream` (a session's GET stream) for a chunk containing `needle`.
async fn next_containing(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    needle: &str,
    within: Duration,
) -> Option<String> {
    tokio::time::timeout(within, async {
        loop {
            let chunk = String::from_utf8(stream.next().await?.ok()?.to_vec()).ok()?;
            if chunk.contains(needle) {
                return Some(chunk);
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// What the (one, shared) upstream process has subscribed to now.
async fn upstream_subscriptions(s: &Legacy) -> Value {
    let a = s.request(90, "tools/call", json!({"name": "docs__subscriptions", "arguments": {}})).await;
    serde_json::from_str(&text(&a)).unwrap()
}

#[tokio::test]
async fn one_clients_unsubscribe_does_not_end_anothers_updates() {
    let gw = Gateway::start(&stdio_upstream("docs", "legacy")).await;
    let mcp = gw.url("/mcp");
    let (a, b, c) = (
        Legacy::open(&mcp, "2025-11-25").await,
        Legacy::open(&mcp, "2025-11-25").await,
        Legacy::open(&mcp, "2025-11-25").await,
    );
    let uri = "sekisho://docs/echo://static/hello";
    for s in [&a, &b] {
        let sub = s.request(1, "resources/subscribe", json!({"uri": uri})).await;
        assert_eq!(sub.body["result"], json!({}), "{}", sub.raw);
    }
    let mut b_stream = b.listen().await;
    // A leaves; B still wants updates, so the upstream stays subscribed.
    let unsub = a.request(2, "resources/unsubscribe", json!({"uri": uri})).await;
    assert_eq!(unsub.body["result"], json!({}), "{}", unsub.raw);
    assert_eq!(upstream_subscriptions(&c).await, json!(["echo://static/hello"]));
    let touched = c
        .request(
            3,
            "tools/call",
            json!({"name": "docs__touch_subscribed", "arguments": {"uri": "echo://static/hello"}}),
        )
        .await;
    assert_eq!(text(&touched), "touched echo://static/hello");
    let got = next_containing(&mut b_stream, "notifications/resources/updated", Duration::from_secs(5)).await;
    assert!(got.is_some_and(|g| g.contains(uri)), "B still gets its updates");
    // B's session ends: it was the last subscriber, so the upstream is unsubscribed.
    let deleted = client().delete(&mcp).header("mcp-session-id", &b.session).send().await.unwrap();
    assert_eq!(deleted.status(), 200);
    eventually("the upstream unsubscribed after the last session left", Duration::from_secs(10), async || {
        let now = upstream_subscriptions(&c).await;
        if now == json!([]) { Ok(()) } else { Err(now) }
    })
    .await;
}

#[tokio::test]
async fn one_clients_log_level_applies_to_its_own_notifications_only() {
    let http = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&http.table("web")).await;
    let mcp = gw.url("/mcp");
    let (quiet, loud) = (Legacy::open(&mcp, "2025-11-25").await, Legacy::open(&mcp, "2025-11-25").await);
    let set = quiet.request(1, "logging/setLevel", json!({"level": "error"})).await;
    assert_eq!(set.body["result"], json!({}), "{}", set.raw);
    let is_log = |e: &Value| e["method"] == "notifications/message";
    // The other client still gets the upstream's info messages …
    let a = loud.request(2, "tools/call", json!({"name": "web__log", "arguments": {}})).await;
    assert_eq!(text(&a), "logged");
    assert!(a.events.iter().any(is_log), "the upstream's level was not changed for everyone: {}", a.raw);
    // … and the client that asked for errors only does not.
    let a = quiet.request(3, "tools/call", json!({"name": "web__log", "arguments": {}})).await;
    assert_eq!(text(&a), "logged");
    assert!(!a.events.iter().any(is_log), "{}", a.raw);
}

#[tokio::test]
async fn server_requests_reach_only_clients_that_declared_the_capability() {
    let http = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&http.table("web")).await;
    let mcp = gw.url("/mcp");
    // A client without the sampling capability is never asked; the upstream gets an error.
    let plain = Legacy::open_declaring(&mcp, "2025-11-25", json!({})).await;
    let a = plain
        .request(1, "tools/call", json!({"name": "web__ask", "arguments": {"method": "sampling/createMessage"}}))
        .await;
    assert!(!a.events.iter().any(|e| e.get("method").is_some()), "no request reached the client: {}", a.raw);
    let answer: Value = serde_json::from_str(&text(&a)).unwrap_or_else(|_| panic!("{}", a.raw));
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("sampling capability"), "{answer}");
    // A client that declared sampling (but not roots) is asked for sampling only.
    let sampler = Legacy::open_declaring(&mcp, "2025-11-25", json!({"sampling": {}})).await;
    let a = sampler.request(2, "tools/call", json!({"name": "web__ask", "arguments": {"method": "roots/list"}})).await;
    assert!(!a.events.iter().any(|e| e.get("method").is_some()), "{}", a.raw);
    assert!(text(&a).contains("roots capability"), "{}", a.raw);
    let resp = client()
        .post(&mcp)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sampler.session)
        .header("mcp-protocol-version", "2025-11-25")
        .json(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"web__ask","arguments":{"method":"sampling/createMessage"}}}))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let asked = next_containing(&mut stream, "sampling/createMessage", Duration::from_secs(5)).await.expect("asked");
    let data = asked.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let request: Value = serde_json::from_str(data).unwrap();
    let reply = sampler
        .post_raw(json!({"jsonrpc":"2.0","id":request["id"],"result":{"role":"assistant","model":"m","content":{"type":"text","text":"hi"}}}))
        .await;
    assert_eq!(reply.status, 202);
    let done = next_containing(&mut stream, "\"id\":3", Duration::from_secs(5)).await.expect("the call's answer");
    assert!(done.contains("the client said: hi"), "the client's answer went back upstream: {done}");
}
