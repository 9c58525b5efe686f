//! Rate limits (`pipeline::quota`), end to end over loopback: a burst over a key's limit gets
//! HTTP 429 with `Retry-After` and -32016 with `data.retryAfterMs` (inside a legacy batch the
//! items carry the error and the batch stays 200; `sekisho stdio` answers the JSON-RPC error);
//! one caller exhausting its limit leaves another alone; two replicas sharing real Redis
//! share one limit; and with Redis unreachable the local limits still apply and calls do not
//! fail.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const OPS: &str = "ops-key-0123456789abcdef";
const BOT: &str = "bot-key-0123456789abcdef";
const OTHER: &str = "other-key-0123456789abcdef";

/// Keys: an admin with room for the harness's own requests, and two callers whose own limits
/// are bursts only (one call per 100 s sustained, so nothing refills during a test).
fn keys(bot_burst: u32, other_burst: u32) -> String {
    format!(
        "[server]\napi_keys = [\n  {{ key = {OPS:?}, name = \"ops\", role = \"admin\", rps = 1000, burst = 1000 }},\n  \
         {{ key = {BOT:?}, name = \"bot\", rps = 0.01, burst = {bot_burst} }},\n  \
         {{ key = {OTHER:?}, name = \"other\", rps = 0.01, burst = {other_burst} }},\n]\n"
    )
}

/// A call answered by the gateway itself (2026-07-28 has no `ping`).
async fn list(gw: &Gateway, key: &str, id: i64) -> Answer {
    modern_as(&gw.url("/mcp"), Some(key), id, "tools/list", json!({})).await
}

/// How many of `n` lists as `key` are answered (the rest must be rate limited).
async fn admitted(gw: &Gateway, key: &str, n: i64) -> usize {
    let mut ok = 0;
    for id in 0..n {
        let a = list(gw, key, id).await;
        match a.status {
            200 => ok += 1,
            429 => assert_eq!(a.error_code(), Some(-32016), "{}", a.raw),
            other => panic!("unexpected {other}: {}", a.raw),
        }
    }
    ok
}

/// POST `body` as a legacy client of `version` with `key` and an optional session.
async fn legacy_post(gw: &Gateway, key: &str, version: &str, session: Option<&str>, body: &Value) -> Answer {
    let mut req = client()
        .post(gw.url("/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", version);
    if let Some(id) = session {
        req = req.header("mcp-session-id", id);
    }
    read(req.json(body).send().await.unwrap()).await
}

async fn legacy_session(gw: &Gateway, key: &str, version: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    let a = legacy_post(gw, key, version, None, &init).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    let session = a.headers["mcp-session-id"].to_str().unwrap().to_string();
    let done = legacy_post(
        gw,
        key,
        version,
        Some(&session),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(done.status, 202);
    session
}

#[tokio::test]
async fn a_burst_over_the_limit_gets_429_with_retry_after_and_the_error_data() {
    let toml = format!("{}{}", keys(3, 100), stdio_upstream("echo", "legacy"));
    let gw = Gateway::start(&toml).await;
    let call = async |id: i64| {
        modern_as(
            &gw.url("/mcp"),
            Some(BOT),
            id,
            "tools/call",
            json!({"name": "echo__echo", "arguments": {"message": "hi"}}),
        )
        .await
    };
    for id in 1..=3 {
        let a = call(id).await;
        assert_eq!((a.status, text(&a)), (200, "hi".to_string()), "within the burst: {}", a.raw);
    }
    let over = call(4).await;
    assert_eq!(over.status, 429, "{}", over.raw);
    assert_eq!(over.error_code(), Some(-32016));
    let retry_after: u64 = over.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((99..=100).contains(&retry_after), "one call per 100 s, in whole seconds rounded up: {retry_after}");
    let data = &over.body["error"]["data"];
    let wait_ms = data["retryAfterMs"].as_u64().unwrap();
    assert!((98_000..=100_000).contains(&wait_ms), "{data}");
    assert_eq!((data["limit"].as_str(), data["retryable"].as_bool()), (Some("key"), Some(true)));

    // A single legacy request: the same 429; inside a batch each item carries the error and
    // the batch itself is 200.
    let session = legacy_session(&gw, BOT, "2025-03-26").await;
    let single =
        legacy_post(&gw, BOT, "2025-03-26", Some(&session), &json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}))
            .await;
    assert_eq!((single.status, single.error_code()), (429, Some(-32016)), "{}", single.raw);
    assert!(single.headers.contains_key("retry-after"));
    let batch =
        json!([{"jsonrpc": "2.0", "id": 10, "method": "ping"}, {"jsonrpc": "2.0", "id": 11, "method": "tools/list"}]);
    let a = legacy_post(&gw, BOT, "2025-03-26", Some(&session), &batch).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    let items: Vec<Value> = serde_json::from_str(&a.raw).unwrap();
    assert_eq!(items.len(), 2, "{}", a.raw);
    for item in &items {
        assert_eq!(item["error"]["code"], -32016, "{item}");
        assert!(item["error"]["data"]["retryAfterMs"].as_u64().unwrap() > 90_000, "{item}");
    }

    // Counted per caller, within bounded labels.
    let metrics = client().get(gw.url("/metrics")).bearer_auth(OPS).send().await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("sekisho_rate_limited_total{") && l.contains("caller=\"bot\""))
        .unwrap_or_else(|| panic!("no rate_limited line for bot:\n{metrics}"));
    assert!(line.contains("tenant=\"none\"") && line.contains("limit=\"key\""), "{line}");
    assert!(line.ends_with(" 4"), "one call, one single request, two batch items: {line}");
    assert!(metrics.contains("outcome=\"rate_limited\""), "the call metric names the outcome");
}

#[tokio::test]
async fn one_caller_exhausting_its_limit_does_not_limit_another() {
    let gw = Gateway::start(&keys(2, 2)).await;
    assert_eq!(admitted(&gw, BOT, 6).await, 2, "bot's burst");
    assert_eq!(admitted(&gw, OTHER, 6).await, 2, "other has its own bucket, untouched by bot");
    assert_eq!(admitted(&gw, OPS, 20).await, 20, "a key's own higher limit");
}

#[tokio::test]
async fn the_default_limit_applies_to_keys_without_their_own() {
    let toml = format!(
        "[rate_limits]\nper_key = {{ rps = 0.01, burst = 2 }}\n[server]\napi_keys = [\n  \
         {{ key = {OPS:?}, name = \"ops\", role = \"admin\", rps = 1000 }},\n  {{ key = {BOT:?}, name = \"bot\" }},\n  \
         {{ key = {OTHER:?} }},\n]\n"
    );
    let gw = Gateway::start(&toml).await;
    assert_eq!(admitted(&gw, BOT, 5).await, 2);
    assert_eq!(admitted(&gw, OTHER, 5).await, 2, "an unnamed key: its own bucket under its hashed id");
    assert_eq!(admitted(&gw, OPS, 10).await, 10);
}

#[test]
fn stdio_answers_the_json_rpc_error_with_retry_after_ms() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, "[rate_limits]\nper_key = { rps = 0.01, burst = 2 }\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sekisho"))
        .args(["stdio", "--config"])
        .arg(&cfg)
        .env_remove("REDIS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut ask = |v: Value| -> Value {
        writeln!(stdin, "{v}").unwrap();
        loop {
            let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
            if line["id"] == v["id"] {
                return line;
            }
        }
    };
    let init = ask(json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18",
        "capabilities":{},"clientInfo":{"name":"desk","version":"1"}}}));
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18", "initialize is not a call: not counted");
    let answers: Vec<Value> = (2..6).map(|id| ask(json!({"jsonrpc":"2.0","id":id,"method":"ping"}))).collect();
    assert!(answers[..2].iter().all(|a| a.get("result").is_some()), "the burst of the key-less caller: {answers:?}");
    for a in &answers[2..] {
        assert_eq!(a["error"]["code"], -32016, "{a}");
        let wait = a["error"]["data"]["retryAfterMs"].as_u64().unwrap();
        assert!((90_000..=100_000).contains(&wait), "{a}");
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

fn prefix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("sekisho-rl-test-{}-{nanos}:", std::process::id())
}

/// `[redis]` at `url` with a generous rate-limit deadline: on a loaded machine a check past a
/// few ms would (rightly) fall back to the local limit, which is not what these tests are about.
fn redis_toml(url: &str, prefix: &str) -> String {
    format!(
        "[redis]\nurl = {url:?}\nprefix = {prefix:?}\nentry_secret = \"fleet-entry-secret-0123456789abcdef\"\n\
         [rate_limits]\nredis_timeout = \"1s\"\n"
    )
}

async fn redis_up(gw: &Gateway) {
    eventually("the gateway connected to Redis", Duration::from_secs(10), async || {
        let ready = gw.readyz().await;
        if ready["redis"] == "up" { Ok(()) } else { Err(ready.to_string()) }
    })
    .await;
}

#[tokio::test]
async fn two_replicas_sharing_redis_share_one_limit() {
    const BURST: usize = 20;
    // The first check finds no script on the server (NOSCRIPT) and falls back to EVAL.
    redis_cli(&["SCRIPT", "FLUSH"]);
    let prefix = prefix();
    let toml = format!("{}{}", keys(BURST as u32, 100), redis_toml("redis://127.0.0.1:6379", &prefix));
    let (one, two) = (Gateway::start(&toml).await, Gateway::start(&toml).await);
    redis_up(&one).await;
    redis_up(&two).await;
    // 60 calls, alternating and concurrent in pairs; each replica alone would admit the whole
    // burst.
    let mut ok = 0;
    for id in 0..30 {
        let (a, b) = tokio::join!(list(&one, BOT, id), list(&two, BOT, id));
        for x in [a, b] {
            match x.status {
                200 => ok += 1,
                429 => assert_eq!(x.error_code(), Some(-32016), "{}", x.raw),
                other => panic!("unexpected {other}: {}", x.raw),
            }
        }
    }
    let (low, high) = (BURST * 9 / 10, BURST * 11 / 10);
    assert!((low..=high).contains(&ok), "admitted {ok} of 60 across two replicas; the shared limit is {BURST}");
    // Another caller's bucket is its own in Redis too.
    assert_eq!(admitted(&one, OTHER, 3).await, 3);
    // One key per bucket under the fleet's prefix, expiring once the bucket is full again.
    let mut found = redis_cli(&["--scan", "--pattern", &format!("{prefix}rl:*")]);
    found.sort();
    assert_eq!(found, [format!("{prefix}rl:k:bot"), format!("{prefix}rl:k:other")]);
    let ttl: i64 = redis_cli(&["PTTL", &format!("{prefix}rl:k:bot")])[0].parse().unwrap();
    assert!(ttl > 0 && ttl <= 20 * 100_000 + 1, "{ttl}");
    redis_cli(&["DEL", &format!("{prefix}rl:k:bot"), &format!("{prefix}rl:k:other")]);
}

/// Run `redis-cli` against the shared Redis; its output lines.
fn redis_cli(args: &[&str]) -> Vec<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", "6379"])
        .args(args)
        .output()
        .expect("redis-cli on PATH");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

#[tokio::test]
async fn with_redis_unreachable_local_limits_apply_and_calls_do_not_fail() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let toml = format!(
        "{}{}{}",
        keys(3, 100),
        redis_toml(&format!("redis://127.0.0.1:{closed}"), &prefix()),
        stdio_upstream("echo", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    assert_eq!(gw.readyz().await["redis"], "degraded");
    for id in 1..=3 {
        let a = modern_as(
            &gw.url("/mcp"),
            Some(BOT),
            id,
            "tools/call",
            json!({"name": "echo__add", "arguments": {"a": id, "b": 1}}),
        )
        .await;
        assert_eq!(a.status, 200, "Redis being down fails no call: {}", a.raw);
    }
    assert_eq!(admitted(&gw, BOT, 3).await, 0, "the local limit holds the same burst");
    assert_eq!(admitted(&gw, OTHER, 5).await, 5);
}

#[tokio::test]
async fn redis_dying_mid_run_falls_back_to_local_limits_and_is_used_again_when_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = OwnRedis::start(port).await;
    let prefix = prefix();
    let toml = format!("{}{}", keys(5, 100), redis_toml(&format!("redis://127.0.0.1:{port}"), &prefix));
    let gw = Gateway::start(&toml).await;
    redis_up(&gw).await;
    assert_eq!(admitted(&gw, BOT, 2).await, 2);
    assert!(redis.has(&format!("{prefix}rl:k:bot")), "the bucket is in Redis");
    drop(redis);
    // Every call is answered or rate limited (`admitted` panics on anything else); the
    // replica's own bucket, untouched while Redis decided, holds the whole burst.
    assert_eq!(admitted(&gw, BOT, 8).await, 5, "the local limit while Redis is down");
    // Redis returns (empty): after its rest the limiter uses it again by itself.
    let redis = OwnRedis::start(port).await;
    let mut id = 100;
    eventually("rate limits decided in Redis again", Duration::from_secs(15), async || {
        id += 1;
        let a = list(&gw, OTHER, id).await;
        assert!(a.status == 200 || a.error_code() == Some(-32016), "{}", a.raw);
        if redis.has(&format!("{prefix}rl:k:other")) { Ok(()) } else { Err("no bucket in Redis yet") }
    })
    .await;
}
