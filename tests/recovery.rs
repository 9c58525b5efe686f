//! A failing upstream only fails its own calls: a crashed child is restarted and its tools
//! come back; an upstream that cannot start is reported (log, metric, `/readyz`, list
//! `_meta`) while the rest is served; a call past its deadline times out and is cancelled;
//! SIGTERM-style shutdown lets in-flight calls finish within the grace period.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test]
async fn crashed_child_is_restarted_and_others_keep_serving() {
    let toml = format!("{}\n{}", stdio_upstream("fragile", "legacy"), stdio_upstream("steady", "modern"));
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let crash = s.request(1, "tools/call", json!({"name": "fragile__crash", "arguments": {}})).await;
    assert_eq!(crash.error_code(), Some(-32010), "the in-flight call fails as unavailable: {}", crash.raw);
    let steady =
        s.request(2, "tools/call", json!({"name": "steady__echo", "arguments": {"message": "still here"}})).await;
    assert_eq!(text(&steady), "still here");
    let listed = s.request(3, "tools/list", json!({})).await;
    assert!(tool_names(&listed).contains(&"fragile__echo".to_string()), "tools stay listed while restarting");
    let a = eventually("the restarted child serving", Duration::from_secs(15), async || {
        let a = s.request(4, "tools/call", json!({"name": "fragile__echo", "arguments": {"message": "back"}})).await;
        match a.error_code() {
            None => Ok(a),
            Some(code) => {
                assert_eq!(code, -32010, "{}", a.raw);
                Err(a.raw)
            }
        }
    })
    .await;
    assert_eq!(text(&a), "back");
    let ready = gw.readyz().await;
    assert_eq!(ready["upstreams"]["fragile"]["status"], "up");
    assert!(ready["upstreams"]["fragile"]["restarts"].as_u64().unwrap() >= 1);
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sekisho_upstream_restarts{upstream=\"fragile\"} 1"), "{metrics}");
    assert!(metrics.contains("outcome=\"unavailable\""));
}

#[tokio::test]
async fn an_upstream_that_cannot_start_is_visible_not_silent() {
    let toml = format!("[upstreams.broken]\ncommand = \"/nonexistent/mcp-server\"\n\n{}", stdio_upstream("ok", "dual"));
    let gw = Gateway::start(&toml).await;
    // The failed start is retried after a backoff: wait for a moment that shows it down.
    let ready = eventually("broken reported down", Duration::from_secs(10), async || {
        let ready = gw.readyz().await;
        if ready["upstreams"]["broken"]["status"] == "down" { Ok(ready) } else { Err(ready) }
    })
    .await;
    assert_eq!(ready["ready"], true, "one live upstream is enough to serve");
    assert_eq!(ready["upstreams"]["broken"]["status"], "down");
    assert!(ready["upstreams"]["broken"]["reason"].as_str().unwrap().contains("cannot start"));
    let strict = client().get(gw.url("/readyz?strict=1")).send().await.unwrap();
    assert_eq!(strict.status(), 503);
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let list = s.request(1, "tools/list", json!({})).await;
    assert_eq!(list.body["result"]["_meta"]["io.sekisho/unavailableUpstreams"], json!(["broken"]));
    assert_eq!(
        text(&s.request(2, "tools/call", json!({"name": "ok__echo", "arguments": {"message": "fine"}})).await),
        "fine"
    );
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sekisho_upstream_up{upstream=\"broken\"} 0"));
    assert!(metrics.contains("sekisho_upstream_up{upstream=\"ok\"} 1"));
}

#[tokio::test]
async fn calls_past_their_deadline_time_out_and_are_cancelled() {
    let toml = format!("{}timeout = \"300ms\"\n", stdio_upstream("slow", "legacy"));
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let started = Instant::now();
    let a = s.request(1, "tools/call", json!({"name": "slow__sleep_ms", "arguments": {"ms": 5000}})).await;
    assert_eq!(a.error_code(), Some(-32011), "{}", a.raw);
    assert_eq!(a.body["error"]["data"]["timeoutMs"], 300);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(gw.readyz().await["upstreams"]["slow"]["in_flight"], 0, "the timed-out call is no longer pending");
    assert_eq!(
        text(&s.request(2, "tools/call", json!({"name": "slow__echo", "arguments": {"message": "next"}})).await),
        "next"
    );
}

#[tokio::test]
async fn shutdown_drains_in_flight_calls() {
    let toml = format!("[server]\nshutdown_grace = \"5s\"\n{}", stdio_upstream("work", "legacy"));
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let call = tokio::spawn(async move {
        s.request(1, "tools/call", json!({"name": "work__sleep_ms", "arguments": {"ms": 700}})).await
    });
    eventually("the call in flight", Duration::from_secs(10), async || {
        let n = gw.readyz().await["upstreams"]["work"]["in_flight"].clone();
        if n.as_u64() > Some(0) { Ok(()) } else { Err(n) }
    })
    .await;
    let url = gw.url("/mcp");
    let readyz = gw.url("/readyz");
    let stopping = tokio::spawn(gw.shutdown());
    // Draining has begun once /readyz says so, or no longer accepts connections.
    eventually("the gateway draining", Duration::from_secs(10), async || match client().get(&readyz).send().await {
        Ok(r) => match r.json::<serde_json::Value>().await {
            Ok(v) if v["draining"] == false => Err(v.to_string()),
            _ => Ok(()),
        },
        Err(_) => Ok(()),
    })
    .await;
    let late = client().post(&url).json(&json!({"jsonrpc":"2.0","id":1,"method":"ping"})).send().await;
    assert!(late.is_err() || late.unwrap().status() == 503, "new work is refused while draining");
    let a = call.await.unwrap();
    assert_eq!(text(&a), "slept 700 ms", "the in-flight call finished");
    stopping.await.unwrap().unwrap();
}
