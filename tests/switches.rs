//! Runtime switches (`sekisho::switches`), end to end over loopback with real upstream
//! processes and real Redis: caching switched off through the admin API passes calls through
//! to the upstream and on again caches; a client key cannot switch (403); `/readyz` names what
//! is off; rate limits off admit a key over its limit; retries off make one attempt; batching
//! off refuses batches; the `sekisho switch` CLI; and two gateways sharing Redis, where a
//! switch on one applies on the other within 2 s, a gateway started later takes the fleet's
//! state, and a forged state in Redis is ignored.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sekisho");
const ADMIN: &str = "admin-key-0123456789abcdef";
const APP: &str = "app-key-0123456789abcdef";

/// An admin key (`ops`) and a client key (`app`, with `own` extra settings).
fn keys(own: &str) -> String {
    format!(
        "[server]\napi_keys = [\n  {{ key = {ADMIN:?}, name = \"ops\", role = \"admin\" }},\n  \
         {{ key = {APP:?}, name = \"app\"{own} }},\n]\n"
    )
}

fn trusted(name: &str) -> String {
    format!("{}trusted = true\n", stdio_upstream(name, "legacy"))
}

/// A `tools/call` as the client key.
async fn call(gw: &Gateway, tool: &str, args: Value) -> Answer {
    modern_as(&gw.url("/mcp"), Some(APP), 1, "tools/call", json!({"name": tool, "arguments": args})).await
}

fn cache_status(a: &Answer) -> String {
    a.body.pointer("/result/_meta/io.sekisho~1cache/status").and_then(Value::as_str).unwrap_or("none").to_string()
}

/// How many tools/call the upstream has received, this one included.
async fn upstream_calls(gw: &Gateway) -> u64 {
    text(&call(gw, "up__count", json!({})).await).parse().unwrap()
}

/// `POST /admin/switches/{layer}/{state}` with `key`: the status and the JSON answer.
async fn switch(gw: &Gateway, key: Option<&str>, layer: &str, state: &str) -> (u16, Value) {
    let mut req = client().post(gw.url(&format!("/admin/switches/{layer}/{state}")));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or_default())
}

/// `GET /admin/switches` as an admin.
async fn switches(gw: &Gateway, key: Option<&str>) -> Value {
    let mut req = client().get(gw.url("/admin/switches"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn caching_switched_off_reaches_the_upstream_every_time_and_on_again_caches() {
    let gw = Gateway::start(&format!("{}{}", keys(""), trusted("up"))).await;
    let first = call(&gw, "up__add", json!({"a": 1, "b": 2})).await;
    let second = call(&gw, "up__add", json!({"a": 1, "b": 2})).await;
    assert_eq!((cache_status(&first).as_str(), cache_status(&second).as_str()), ("miss", "hit"));
    assert_eq!(upstream_calls(&gw).await, 2, "one add and this count reached the upstream");

    let (status, body) = switch(&gw, Some(APP), "cache", "off").await;
    assert_eq!(status, 403, "a client key cannot switch: {body}");
    let (status, body) = switch(&gw, Some(ADMIN), "cache", "off").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], json!({"layer": "cache", "on": false, "by": "ops", "seq": 1, "reach": "local"}));
    assert_eq!(body["switched_off"], json!(["cache"]));

    // Off: neither looked up nor stored, no `_meta` mark; every call reaches the upstream.
    for _ in 0..2 {
        let a = call(&gw, "up__add", json!({"a": 1, "b": 2})).await;
        assert_eq!((text(&a).as_str(), cache_status(&a).as_str()), ("3", "none"), "{}", a.raw);
    }
    assert_eq!(upstream_calls(&gw).await, 5, "both adds reached the upstream");

    // /readyz shows it: every switch to an admin, the names of those off to anyone.
    let ready = gw.readyz().await;
    assert_eq!(ready["switched_off"], json!(["cache"]));
    assert_eq!(ready["switches"]["cache"]["on"], false);
    assert_eq!(ready["switches"]["cache"]["by"], "ops");
    assert!(ready["switches"]["cache"]["at"].as_str().unwrap().ends_with('Z'), "{ready}");
    assert_eq!(ready["switches"]["retry"], json!({"on": true}));
    let open: Value = client().get(gw.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(open, json!({"ready": true, "switched_off": ["cache"]}));
    assert_eq!(switches(&gw, Some(ADMIN)).await["switches"]["cache"]["on"], false);

    // Unknown layers and states; no key at all.
    let (status, body) = switch(&gw, Some(ADMIN), "caches", "off").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("rate_limits"), "{body}");
    assert_eq!(switch(&gw, Some(ADMIN), "cache", "maybe").await.0, 400);
    assert_eq!(switch(&gw, None, "cache", "on").await.0, 401);

    // On again: cached as configured.
    let (status, body) = switch(&gw, Some(ADMIN), "cache", "on").await;
    assert_eq!((status, body["changed"]["seq"].as_u64()), (200, Some(2)), "{body}");
    let a = call(&gw, "up__add", json!({"a": 5, "b": 5})).await;
    let b = call(&gw, "up__add", json!({"a": 5, "b": 5})).await;
    assert_eq!((cache_status(&a).as_str(), cache_status(&b).as_str()), ("miss", "hit"));
    assert_eq!(upstream_calls(&gw).await, 7, "one add and this count");
    let open: Value = client().get(gw.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(open, json!({"ready": true}));
}

#[tokio::test]
async fn rate_limits_switched_off_admit_a_key_over_its_limit() {
    let gw = Gateway::start(&keys(", rps = 0.01, burst = 2")).await;
    let url = gw.url("/mcp");
    let list = |id| modern_as(&url, Some(APP), id, "tools/list", json!({}));
    assert_eq!(list(1).await.status, 200);
    assert_eq!(list(2).await.status, 200);
    assert_eq!(list(3).await.status, 429, "over its burst");
    assert_eq!(switch(&gw, Some(ADMIN), "rate_limits", "off").await.0, 200);
    for id in 4..10 {
        let a = list(id).await;
        assert_eq!(a.status, 200, "admitted while rate limits are off: {}", a.raw);
    }
    assert_eq!(switch(&gw, Some(ADMIN), "rate-limits", "on").await.0, 200);
    assert_eq!(list(10).await.status, 429, "limited again");
}

#[tokio::test]
async fn retries_switched_off_make_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects");
    // side_effect records an effect, then its process exits before answering; `retry = true`
    // makes it safe to repeat, so with retries on it is tried again on the other process.
    let toml = format!(
        "{}min_processes = 2\nenv = {{ ECHO_EFFECTS_FILE = {:?} }}\nretry = {{ max_attempts = 3, base_delay = \"1ms\" }}\n\
         [upstreams.io.tools.side_effect]\nretry = true\n",
        stdio_upstream("io", "legacy"),
        effects.display().to_string()
    );
    let gw = Gateway::start(&toml).await;
    let count = || std::fs::read_to_string(&effects).map(|t| t.lines().count()).unwrap_or(0);
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    assert_eq!(switch(&gw, None, "retry", "off").await.0, 200);
    let a = s.request(1, "tools/call", json!({"name": "io__side_effect", "arguments": {}})).await;
    assert!(a.error_code().is_some(), "{}", a.raw);
    assert_eq!(count(), 1, "one attempt while retries are off");
    eventually("the pool healed", Duration::from_secs(20), async || {
        let ready = gw.readyz().await;
        let replicas = ready["upstreams"]["io"]["replicas"].as_array().unwrap();
        let restarted = ready["upstreams"]["io"]["restarts"].as_u64() >= Some(1);
        if restarted && replicas.len() == 2 && replicas.iter().all(|r| r["status"] == "up") {
            Ok(())
        } else {
            Err(ready)
        }
    })
    .await;
    assert_eq!(switch(&gw, None, "retry", "on").await.0, 200);
    let a = s.request(2, "tools/call", json!({"name": "io__side_effect", "arguments": {}})).await;
    assert!(a.error_code().is_some(), "{}", a.raw);
    assert!(count() >= 2, "retried once retries are on again: {} effects; {}", count(), a.raw);
}

#[tokio::test]
async fn batching_switched_off_refuses_batches() {
    let gw = Gateway::start(&stdio_upstream("up", "legacy")).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-03-26").await;
    let batch = json!([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"}]);
    let a = s.post_raw(batch.clone()).await;
    assert_eq!((a.status, a.body.as_array().map(Vec::len)), (200, Some(2)), "{}", a.raw);
    assert_eq!(switch(&gw, None, "batching", "off").await.0, 200);
    let a = s.post_raw(batch.clone()).await;
    assert_eq!(a.error_code(), Some(-32600), "{}", a.raw);
    assert!(a.raw.contains("switched off"), "{}", a.raw);
    let one = s.request(3, "ping", json!({})).await;
    assert_eq!(one.status, 200, "single requests still work: {}", one.raw);
    assert_eq!(switch(&gw, None, "batching", "on").await.0, 200);
    assert_eq!(s.post_raw(batch).await.status, 200);
}

#[tokio::test]
async fn the_cli_shows_and_changes_switches() {
    let gw = Gateway::start(&keys("")).await;
    let run = async |args: &[&str], key: Option<&str>| {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("switch").args(args).args(["--url", &gw.base]).env_remove("SEKISHO_ADMIN_KEY");
        if let Some(k) = key {
            cmd.env("SEKISHO_ADMIN_KEY", k);
        }
        cmd.output().await.unwrap()
    };
    let out = run(&["coalesce", "off"], Some(ADMIN)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().any(|l| l.starts_with("coalesce") && l.contains("off") && l.contains("ops")), "{table}");
    assert!(table.contains("coalesce switched off"), "{table}");
    let out = run(&["--json"], Some(ADMIN)).await;
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["switched_off"], json!(["coalesce"]));
    let out = run(&["coalesce", "on"], Some(APP)).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["nothing", "on", "--key", ADMIN], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown layer"));
    assert_eq!(switches(&gw, Some(ADMIN)).await["switched_off"], json!(["coalesce"]));
}

fn redis_cli(args: &[&str]) -> Vec<String> {
    let out = Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", "6379"]).args(args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[tokio::test]
async fn a_switch_on_one_gateway_applies_on_every_gateway_sharing_redis() {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let prefix = format!("sekisho-sw-test-{}-{nanos}:", std::process::id());
    let upstream = HttpUpstream::start("legacy").await;
    let toml = format!(
        "[redis]\nurl = \"redis://127.0.0.1:6379\"\nprefix = {prefix:?}\ntimeout = \"2s\"\n\
         entry_secret = \"fleet-entry-secret-0123456789abcdef\"\n{}trusted = true\n",
        upstream.table("up")
    );
    let (one, two) = (Gateway::start(&toml).await, Gateway::start(&toml).await);
    for gw in [&one, &two] {
        eventually("connected to Redis", Duration::from_secs(10), async || {
            let ready = gw.readyz().await;
            if ready["redis"] == "up" { Ok(()) } else { Err(ready.to_string()) }
        })
        .await;
    }
    let two_mcp = two.url("/mcp");
    let echo = || modern(&two_mcp, 1, "tools/call", json!({"name": "up__echo", "arguments": {"message": "m"}}));
    assert_eq!(cache_status(&echo().await), "miss");
    assert_eq!(cache_status(&echo().await), "hit");

    let (status, body) = switch(&one, None, "cache", "off").await;
    assert_eq!((status, body["changed"]["reach"].as_str()), (200, Some("fleet")), "{body}");
    assert_eq!(switches(&one, None).await["fleet_wide"], true);
    // The issue's bound: the other gateway follows within 2 s.
    let started = std::time::Instant::now();
    eventually("the switch reaching the other gateway", Duration::from_secs(2), async || {
        let ready = two.readyz().await;
        if ready["switched_off"] == json!(["cache"]) { Ok(()) } else { Err(ready.to_string()) }
    })
    .await;
    assert!(started.elapsed() <= Duration::from_secs(2));
    assert_eq!(two.readyz().await["switches"]["cache"]["by"], "anon", "who switched it travels with it");
    assert_eq!(cache_status(&echo().await), "none", "not cached on the other gateway");

    // A gateway started later takes the fleet's state.
    let three = Gateway::start(&toml).await;
    eventually("the fleet's state on a new gateway", Duration::from_secs(10), async || {
        let ready = three.readyz().await;
        if ready["switched_off"] == json!(["cache"]) { Ok(()) } else { Err(ready.to_string()) }
    })
    .await;

    // A state written without the entry secret is ignored (and repaired by the replicas).
    let hash = format!("{prefix}switches");
    redis_cli(&["HSET", &hash, "retry", r#"{"on":false,"by":"mallory","at_ms":1,"seq":99}"#]);
    redis_cli(&[
        "HSET",
        &hash,
        "cache",
        &format!("{}{}", "0".repeat(32), r#"{"on":true,"by":"mallory","at_ms":1,"seq":99}"#),
    ]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for gw in [&one, &two, &three] {
        let ready = gw.readyz().await;
        assert_eq!(ready["switched_off"], json!(["cache"]), "{ready}");
        assert_eq!(ready["switches"]["retry"], json!({"on": true}), "{ready}");
    }

    // Back on from another gateway: everywhere again.
    assert_eq!(switch(&two, None, "cache", "on").await.0, 200);
    for gw in [&one, &three] {
        eventually("on again everywhere", Duration::from_secs(2), async || {
            let ready = gw.readyz().await;
            if ready.get("switched_off").is_none() { Ok(()) } else { Err(ready.to_string()) }
        })
        .await;
    }
    redis_cli(&["DEL", &hash]);
}
