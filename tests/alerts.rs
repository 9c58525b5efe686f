//! Alerts end to end: a real gateway sampling every second with a stdio echo upstream. Slow
//! calls fire a latency alert that resolves when calls are fast again, and a webhook receiver
//! (a real HTTP server on loopback) gets each state change exactly once although it answers
//! the first delivery attempt 500; failing calls fire an error-rate alert; `/admin/alerts`
//! shows the active ones and the history to admins only.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Gateway, client, eventually, modern_as, stdio_upstream};
use serde_json::{Value, json};

const ADMIN: &str = "alerts-admin-key-0123456789abcdef";
const APP: &str = "alerts-app-key-0123456789abcdefgh";

/// What the receiver saw: (status it answered, `Idempotency-Key`, `Authorization`, body).
type Seen = Arc<Mutex<Vec<(u16, String, String, Value)>>>;

/// A webhook receiver on 127.0.0.1: answers its first request 500, every later one 200.
async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let state = Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: bytes::Bytes| {
            let state = Arc::clone(&state);
            async move {
                let mut seen = state.lock().unwrap();
                let status = if seen.is_empty() { 500 } else { 200 };
                let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                seen.push((status, h("idempotency-key"), h("authorization"), body));
                http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn config(rules: &str, webhook: Option<&str>) -> String {
    let hooks = webhook
        .map(|u| format!("webhooks = [{{ url = {u:?}, headers = {{ authorization = \"Bearer hook-secret\" }} }}]\n"))
        .unwrap_or_default();
    format!(
        "[server]\napi_keys = [{{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }}, {{ key = {APP:?}, name = \"app\" }}]\n\
         [monitor]\ninterval = \"1s\"\n[alerts]\nbackoff = \"100ms\"\n{hooks}rules = [{rules}]\n{}",
        stdio_upstream("e", "legacy")
    )
}

async fn alerts(gw: &Gateway, query: &str, key: &str) -> (u16, Value) {
    let resp = client().get(gw.url(&format!("/admin/alerts{query}"))).bearer_auth(key).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn call(gw: &Gateway, tool: &str, arguments: Value) -> Value {
    let params = json!({"name": format!("e__{tool}"), "arguments": arguments});
    modern_as(&gw.url("/mcp"), Some(ADMIN), 1, "tools/call", params).await.body
}

/// Keep calling `tool` until `/admin/alerts` shows the alert of `rule` in `state` (`firing`,
/// or `resolved` in the history); returns that alert.
async fn call_until(gw: &Gateway, tool: &str, arguments: Value, rule: &str, state: &str) -> Value {
    eventually(&format!("{rule} {state}"), Duration::from_secs(20), async || {
        call(gw, tool, arguments.clone()).await;
        let (_, body) = alerts(gw, "?history=1", ADMIN).await;
        let list = if state == "resolved" { &body["history"] } else { &body["active"] };
        let found = list.as_array().into_iter().flatten().find(|a| a["rule"] == rule && a["state"] == state);
        found.cloned().ok_or_else(|| body.to_string())
    })
    .await
}

#[tokio::test]
async fn slow_calls_fire_the_latency_alert_which_resolves_and_each_change_reaches_the_webhook_once() {
    let (url, seen) = receiver().await;
    let rule = "{ name = \"slow\", metric = \"latency_p95_ms\", op = \">\", threshold = 150, severity = \"high\", scope = \"e\" }";
    let gw = Gateway::start(&config(rule, Some(&url))).await;

    let fired = call_until(&gw, "sleep_ms", json!({"ms": 400}), "slow", "firing").await;
    assert_eq!((fired["severity"].as_str(), fired["scope"].as_str()), (Some("high"), Some("e")));
    assert!(fired["current_value"].as_f64().unwrap() > 150.0, "{fired}");
    assert_eq!((fired["threshold"].as_f64(), fired["resolved"].as_bool()), (Some(150.0), Some(false)));
    assert!(fired["id"].as_str().unwrap().contains(":slow:"), "{fired}");
    assert_eq!(gw.readyz().await["alerts_firing"], 1);
    let (status, _) = alerts(&gw, "", APP).await;
    assert_eq!(status, 403, "a client key is not an admin");
    let status = client().get(gw.url("/admin/alerts")).send().await.unwrap().status().as_u16();
    assert_eq!(status, 401);

    let resolved = call_until(&gw, "echo", json!({"message": "fast"}), "slow", "resolved").await;
    assert_eq!((resolved["id"].as_str(), resolved["resolved"].as_bool()), (fired["id"].as_str(), Some(true)));
    assert!(resolved["resolved_at"].as_u64().unwrap() >= resolved["fired_at"].as_u64().unwrap());
    assert!(resolved["current_value"].as_f64().unwrap() <= 135.0, "past the 10 % margin: {resolved}");
    assert_eq!(gw.readyz().await["alerts_firing"], 0);

    // Every state change the gateway made, delivered once (after one 500 and a retry).
    let (_, body) = alerts(&gw, "?history=1", ADMIN).await;
    let history = body["history"].as_array().unwrap().clone();
    let mut expected: Vec<String> = history
        .iter()
        .flat_map(|a| {
            [format!("{}:firing", a["id"].as_str().unwrap()), format!("{}:resolved", a["id"].as_str().unwrap())]
        })
        .collect();
    expected.sort();
    let delivered = eventually("every change delivered", Duration::from_secs(10), async || {
        let seen = seen.lock().unwrap().clone();
        let mut ok: Vec<String> = seen.iter().filter(|s| s.0 == 200).map(|s| s.1.clone()).collect();
        ok.sort();
        if ok == expected { Ok(seen) } else { Err(format!("delivered {ok:?}, expected {expected:?}")) }
    })
    .await;
    assert_eq!(delivered[0].0, 500, "the first attempt failed");
    assert_eq!(delivered.len(), expected.len() + 1, "one retry, no duplicates: {delivered:?}");
    assert_eq!(delivered[1].1, delivered[0].1, "the retry is the failed delivery");
    let first = &delivered[1];
    assert_eq!(first.1, format!("{}:firing", fired["id"].as_str().unwrap()));
    assert_eq!(first.2, "Bearer hook-secret");
    assert_eq!((first.3["rule"].as_str(), first.3["state"].as_str()), (Some("slow"), Some("firing")));
    for field in
        ["id", "severity", "title", "description", "metric", "current_value", "threshold", "timestamp", "resolved"]
    {
        assert!(first.3.get(field).is_some(), "{field} missing from {}", first.3);
    }
    let webhooks = &body["webhooks"][0];
    assert_eq!(webhooks["url"].as_str(), Some(url.as_str()));
    assert_eq!(webhooks["delivered"].as_u64(), Some(expected.len() as u64));
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn erroring_calls_fire_the_error_rate_alert() {
    let rule = "{ name = \"errors\", metric = \"error_rate\", op = \">\", threshold = 0.2, severity = \"critical\" }";
    // The breaker off: otherwise it opens on the failures, and the echo calls meant to resolve
    // the alert fail fast (and count as errors) until it half-opens.
    let gw = Gateway::start(&format!("{}[resilience.breaker]\nenabled = false\n", config(rule, None))).await;
    let (status, body) = alerts(&gw, "", ADMIN).await;
    assert_eq!((status, body["firing"].as_u64(), body["rules"].as_u64()), (200, Some(0), Some(1)));

    let fired = call_until(&gw, "rpc_error", json!({}), "errors", "firing").await;
    assert_eq!((fired["severity"].as_str(), fired["metric"].as_str()), (Some("critical"), Some("error_rate")));
    assert!(fired["current_value"].as_f64().unwrap() > 0.2, "{fired}");
    assert!(fired["description"].as_str().unwrap().contains('%'), "{fired}");
    let resolved = call_until(&gw, "echo", json!({"message": "ok"}), "errors", "resolved").await;
    assert_eq!(resolved["id"], fired["id"]);
    gw.shutdown().await.unwrap();
}
