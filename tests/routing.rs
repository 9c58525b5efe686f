//! The merged catalog and routing, end to end through real child processes and a real HTTP
//! upstream: namespacing, the per-upstream route, both eras on both sides, progress,
//! pagination, resource URI mapping, error pass-through, and list changes reaching clients.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::{Value, json};

async fn two_upstreams() -> (Gateway, HttpUpstream) {
    let http = HttpUpstream::start("dual").await;
    let toml = format!(
        "[catalog]\npage_size = 7\n{}\n{}\n{}",
        stdio_upstream("legacy", "legacy"),
        stdio_upstream("modern", "modern"),
        http.table("web")
    );
    (Gateway::start(&toml).await, http)
}

async fn all_tools(s: &Legacy) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let params = cursor.as_ref().map_or(json!({}), |c| json!({"cursor": c}));
        let a = s.request(1, "tools/list", params).await;
        names.extend(tool_names(&a));
        match a.body["result"]["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return names,
        }
    }
}

#[tokio::test]
async fn merges_namespaced_paginated_and_deterministic() {
    let (gw, _http) = two_upstreams().await;
    let ready = gw.readyz().await;
    assert_eq!(ready["upstreams"]["legacy"]["era"], "legacy");
    assert_eq!(ready["upstreams"]["modern"]["era"], "modern");
    assert_eq!(ready["upstreams"]["web"]["era"], "modern", "dual-era HTTP upstreams are spoken to in the modern era");
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let names = all_tools(&s).await;
    // Every echo tool from each of the 3 upstreams (the fixture gains tools over time).
    let per_upstream = names.iter().filter(|n| n.starts_with("legacy__")).count();
    assert!(per_upstream >= 15, "{names:?}");
    assert_eq!(names.len(), 3 * per_upstream, "the same tools from each of 3 upstreams: {names:?}");
    assert_eq!(names[0], "legacy__echo");
    assert!(names.contains(&"modern__add".to_string()) && names.contains(&"web__big".to_string()));
    assert!(
        names.iter().all(|n| n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    );
    assert_eq!(names, all_tools(&s).await, "same order every time");
    let page = s.request(2, "tools/list", json!({})).await;
    assert_eq!(tool_names(&page).len(), 7);
    let annotated = &page.body["result"]["tools"][0];
    assert_eq!(annotated["annotations"]["readOnlyHint"], true, "upstream fields survive");
}

#[tokio::test]
async fn calls_reach_every_upstream_in_both_eras() {
    let (gw, _http) = two_upstreams().await;
    let mcp = gw.url("/mcp");
    let s = Legacy::open(&mcp, "2025-11-25").await;
    for ns in ["legacy", "modern", "web"] {
        let a = s.request(1, "tools/call", json!({"name": format!("{ns}__echo"), "arguments": {"message": ns}})).await;
        assert_eq!(text(&a), ns);
        let m =
            modern(&mcp, 2, "tools/call", json!({"name": format!("{ns}__add"), "arguments": {"a": 2, "b": 3}})).await;
        assert_eq!(m.body["result"]["structuredContent"]["sum"], 5.0, "{}", m.raw);
        assert_eq!(m.body["result"]["resultType"], "complete", "modern clients always get resultType");
        let e = s.request(3, "tools/call", json!({"name": format!("{ns}__rpc_error"), "arguments": {}})).await;
        assert_eq!(e.error_code(), Some(-32603), "upstream JSON-RPC errors pass through");
        let f = modern(&mcp, 4, "tools/call", json!({"name": format!("{ns}__fail"), "arguments": {}})).await;
        assert_eq!(f.body["result"]["isError"], true);
    }
    let p = s.request(5, "prompts/get", json!({"name": "modern__greet", "arguments": {"name": "Ada"}})).await;
    assert_eq!(p.body["result"]["messages"][0]["content"]["text"], "Hello, Ada!");
}

#[tokio::test]
async fn per_upstream_route_is_unprefixed() {
    let (gw, _http) = two_upstreams().await;
    let url = gw.url("/servers/legacy/mcp");
    let s = Legacy::open(&url, "2025-11-25").await;
    let names = tool_names(&s.request(1, "tools/list", json!({})).await);
    assert_eq!(names[0], "echo");
    assert_eq!(
        text(&s.request(2, "tools/call", json!({"name": "echo", "arguments": {"message": "plain"}})).await),
        "plain"
    );
    let m =
        modern(&gw.url("/servers/web/mcp"), 3, "tools/call", json!({"name": "echo", "arguments": {"message": "m"}}))
            .await;
    assert_eq!(text(&m), "m");
    let missing = read(client().post(gw.url("/servers/nope/mcp")).json(&json!({})).send().await.unwrap()).await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn resources_map_reversibly() {
    let (gw, _http) = two_upstreams().await;
    let mcp = gw.url("/mcp");
    let s = Legacy::open(&mcp, "2025-11-25").await;
    let list = s.request(1, "resources/list", json!({})).await;
    let uris: Vec<&str> =
        list.body["result"]["resources"].as_array().unwrap().iter().map(|r| r["uri"].as_str().unwrap()).collect();
    assert_eq!(
        uris,
        [
            "sekisho://legacy/echo://static/hello",
            "sekisho://modern/echo://static/hello",
            "sekisho://web/echo://static/hello"
        ]
    );
    let r = s.request(2, "resources/read", json!({"uri": "sekisho://modern/echo://static/hello"})).await;
    assert_eq!(r.body["result"]["contents"][0]["text"], "content of echo://static/hello");
    let t = s.request(3, "resources/templates/list", json!({})).await;
    assert_eq!(t.body["result"]["resourceTemplates"][0]["uriTemplate"], "sekisho://legacy/echo://items/{id}");
    let r = s.request(4, "resources/read", json!({"uri": "sekisho://web/echo://items/42"})).await;
    assert_eq!(r.body["result"]["contents"][0]["uri"], "echo://items/42");
    let m = modern(&mcp, 5, "resources/read", json!({"uri": "sekisho://legacy/echo://static/hello"})).await;
    assert_eq!(m.body["result"]["ttlMs"], 0, "cache hints added for a legacy upstream's result: {}", m.raw);
    assert_eq!(m.body["result"]["cacheScope"], "private");
    let l = modern(&mcp, 6, "resources/list", json!({})).await;
    assert!(l.body["result"]["ttlMs"].is_u64() && l.body["result"]["cacheScope"].is_string());
}

#[tokio::test]
async fn progress_reaches_the_caller_with_its_own_token() {
    let (gw, _http) = two_upstreams().await;
    let mcp = gw.url("/mcp");
    let s = Legacy::open(&mcp, "2025-11-25").await;
    for ns in ["legacy", "web"] {
        let a = s
            .request(
                1,
                "tools/call",
                json!({"name": format!("{ns}__progress"), "arguments": {"steps": 3, "ms": 5},
                "_meta": {"progressToken": "mine-1"}}),
            )
            .await;
        let progress: Vec<&Value> = a.events.iter().filter(|e| e["method"] == "notifications/progress").collect();
        assert_eq!(progress.len(), 3, "{ns}: {}", a.raw);
        assert!(progress.iter().all(|p| p["params"]["progressToken"] == "mine-1"));
        assert_eq!(text(&a), "done after 3 steps");
    }
    let m = modern(
        &mcp,
        2,
        "tools/call",
        json!({"name": "modern__progress", "arguments": {"steps": 2, "ms": 5}, "_meta": {"progressToken": 77}}),
    )
    .await;
    let progress: Vec<&Value> = m.events.iter().filter(|e| e["method"] == "notifications/progress").collect();
    assert_eq!(progress.len(), 2, "{}", m.raw);
    assert_eq!(progress[0]["params"]["progressToken"], 77);
}

#[tokio::test]
async fn list_changes_reach_legacy_and_modern_listeners() {
    let (gw, _http) = two_upstreams().await;
    let mcp = gw.url("/mcp");
    let s = Legacy::open(&mcp, "2025-11-25").await;
    let mut legacy_stream = s.listen().await;
    let listen = client()
        .post(&mcp)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "subscriptions/listen")
        .json(&json!({"jsonrpc":"2.0","id":"sub-1","method":"subscriptions/listen","params":{
            "notifications": {"toolsListChanged": true},
            "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}}}))
        .send()
        .await
        .unwrap();
    let mut modern_stream = listen.bytes_stream();
    let ack = String::from_utf8(modern_stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(ack.contains("notifications/subscriptions/acknowledged") && ack.contains("sub-1"), "{ack}");
    for ns in ["legacy", "modern", "web"] {
        let before = s.request(1, "tools/list", json!({})).await;
        let a = s.request(2, "tools/call", json!({"name": format!("{ns}__change_tools"), "arguments": {}})).await;
        assert!(text(&a).starts_with("added"));
        let seen = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let chunk = legacy_stream.next().await.unwrap().unwrap();
                if String::from_utf8_lossy(&chunk).contains("notifications/tools/list_changed") {
                    return;
                }
            }
        })
        .await;
        assert!(seen.is_ok(), "{ns}: the legacy GET stream got list_changed");
        let tagged = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let chunk = String::from_utf8(modern_stream.next().await.unwrap().unwrap().to_vec()).unwrap();
                if chunk.contains("notifications/tools/list_changed") {
                    return chunk;
                }
            }
        })
        .await
        .expect("the modern listen stream got list_changed");
        assert!(tagged.contains("io.modelcontextprotocol/subscriptionId") && tagged.contains("sub-1"));
        let mut after = Vec::new();
        let mut cursor = None;
        loop {
            let a = s.request(3, "tools/list", cursor.map_or(json!({}), |c: String| json!({"cursor": c}))).await;
            after.extend(tool_names(&a));
            match a.body["result"]["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert!(after.iter().any(|n| n == &format!("{ns}__dynamic_1")), "{ns}: refreshed catalog has the new tool");
        drop(before);
    }
}

#[tokio::test]
async fn resource_updates_reach_subscribed_sessions() {
    let gw = Gateway::start(&stdio_upstream("docs", "legacy")).await;
    let mcp = gw.url("/mcp");
    let s = Legacy::open(&mcp, "2025-11-25").await;
    let init = s.request(0, "ping", json!({})).await;
    assert_eq!(init.status, 200);
    let mut stream = s.listen().await;
    let uri = "sekisho://docs/echo://static/hello";
    let sub = s.request(1, "resources/subscribe", json!({"uri": uri})).await;
    assert_eq!(sub.body["result"], json!({}), "{}", sub.raw);
    // An update of another resource is not delivered; the subscribed one is.
    s.request(2, "tools/call", json!({"name": "docs__touch", "arguments": {"uri": "echo://items/9"}})).await;
    s.request(3, "tools/call", json!({"name": "docs__touch", "arguments": {"uri": "echo://static/hello"}})).await;
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let chunk = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
            if chunk.contains("notifications/resources/updated") {
                return chunk;
            }
        }
    })
    .await
    .expect("the update reached the session's stream");
    assert!(got.contains(uri) && !got.contains("items/9"), "{got}");
    let unsub = s.request(4, "resources/unsubscribe", json!({"uri": uri})).await;
    assert_eq!(unsub.body["result"], json!({}));
}

#[tokio::test]
async fn an_upstream_stream_closed_early_is_resumed() {
    let http = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&http.table("polling")).await;
    assert_eq!(gw.readyz().await["upstreams"]["polling"]["era"], "legacy");
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let a = s.request(1, "tools/call", json!({"name": "polling__park", "arguments": {"ms": 200}})).await;
    assert_eq!(text(&a), "slept 200 ms", "{}", a.raw);
    let m = modern(&gw.url("/mcp"), 2, "tools/call", json!({"name": "polling__park", "arguments": {"ms": 50}})).await;
    assert_eq!(text(&m), "slept 50 ms", "{}", m.raw);
}

#[tokio::test]
async fn a_list_right_after_a_change_shows_the_change() {
    let http = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&format!("{}\n{}", http.table("web"), stdio_upstream("local", "legacy"))).await;
    let s = Legacy::open(&gw.url("/servers/web/mcp"), "2025-11-25").await;
    for round in 1..=3 {
        let a = s.request(1, "tools/call", json!({"name": "change_tools", "arguments": {}})).await;
        assert_eq!(text(&a), format!("added dynamic_{round}"));
        let names = tool_names(&s.request(2, "tools/list", json!({})).await);
        assert!(names.contains(&format!("dynamic_{round}")), "round {round}: {names:?}");
    }
}
