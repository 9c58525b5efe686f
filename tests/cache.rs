//! The response cache, coalescing and idempotency keys, end to end with real upstream processes
//! and real Redis: what is cached and what is not, keys that ignore argument order, private
//! results, TTL expiry, invalidation on a tool-list change and by the admin endpoint, identical
//! concurrent calls coalesced, idempotency keys that replay, and two `sekisho` processes sharing
//! one Redis (cache hits, replays and coalescing across them), including Redis dying mid-test.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sekisho");
const KEY_A: &str = "key-a-0123456789abcdef";
const KEY_B: &str = "key-b-0123456789abcdef";

/// A modern `tools/call` with an optional bearer key and idempotency key.
async fn call(url: &str, bearer: Option<&str>, tool: &str, args: Value, idem: Option<&str>) -> Answer {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "0"},
    });
    if let Some(k) = idem {
        meta["io.sekisho/idempotencyKey"] = k.into();
    }
    let mut req = client()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": tool, "arguments": args, "_meta": meta}});
    read(req.json(&body).send().await.unwrap()).await
}

/// The same call as [`call`], sent on a connection that may die before the answer: whatever
/// comes back (an answer or a transport error) is dropped.
async fn call_unread(url: &str, tool: &str, args: Value, idem: &str) {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "0"},
        "io.sekisho/idempotencyKey": idem,
    });
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": tool, "arguments": args, "_meta": meta}});
    let _ = client()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&body)
        .send()
        .await;
}

fn cache_status(a: &Answer) -> String {
    a.body.pointer("/result/_meta/io.sekisho~1cache/status").and_then(Value::as_str).unwrap_or("none").to_string()
}

fn cache_level(a: &Answer) -> String {
    a.body.pointer("/result/_meta/io.sekisho~1cache/level").and_then(Value::as_str).unwrap_or("none").to_string()
}

/// How many tools/call the upstream behind `tool` (its `count` tool) has received, this one included.
async fn upstream_calls(url: &str, count_tool: &str) -> u64 {
    text(&call(url, None, count_tool, json!({}), None).await).parse().unwrap()
}

/// Wait until the upstream of `gw` has the call of `task` in flight; fails at once if the call
/// ended before it was seen.
async fn in_flight(gw: &Gateway, task: &tokio::task::JoinHandle<Answer>) {
    eventually("the first call in flight", Duration::from_secs(10), async || {
        assert!(!task.is_finished(), "the first call ended before it was seen in flight");
        let n = gw.readyz().await["upstreams"]["up"]["in_flight"].clone();
        if n.as_u64() > Some(0) { Ok(()) } else { Err(n) }
    })
    .await;
}

fn trusted(name: &str) -> String {
    format!("{}trusted = true\n", stdio_upstream(name, "legacy"))
}

#[tokio::test]
async fn a_read_only_tool_is_answered_from_the_cache_whatever_the_argument_order() {
    let gw = Gateway::start(&trusted("up")).await;
    let url = gw.url("/mcp");
    let first = call(&url, None, "up__add", json!({"a": 1, "b": 2}), None).await;
    assert_eq!(text(&first), "3");
    assert_eq!(cache_status(&first), "miss");
    let second = call(&url, None, "up__add", json!({"b": 2, "a": 1}), None).await;
    assert_eq!(text(&second), "3");
    assert_eq!(cache_status(&second), "hit", "{}", second.raw);
    assert_eq!(cache_level(&second), "l1");
    assert!(second.body.pointer("/result/_meta/io.sekisho~1cache/ageMs").is_some());
    let other = call(&url, None, "up__add", json!({"a": 2, "b": 2}), None).await;
    assert_eq!((text(&other).as_str(), cache_status(&other).as_str()), ("4", "miss"));
    // add ×2 reached the upstream, plus this count: the hit did not.
    assert_eq!(upstream_calls(&url, "up__count").await, 3);
    // Not cached: a tool without readOnlyHint, and any tool of an untrusted upstream.
    let c = call(&url, None, "up__count", json!({}), None).await;
    assert_eq!(cache_status(&c), "none");
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"sekisho_cache_lookups_total{upstream="up",tool="add",level="l1",result="hit"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("sekisho_cache_entries"));
}

#[tokio::test]
async fn untrusted_annotations_do_not_make_a_tool_cacheable() {
    let gw = Gateway::start(&stdio_upstream("up", "legacy")).await;
    let url = gw.url("/mcp");
    for _ in 0..2 {
        let a = call(&url, None, "up__echo", json!({"message": "m"}), None).await;
        assert_eq!(cache_status(&a), "none");
    }
    assert_eq!(upstream_calls(&url, "up__count").await, 3);
}

#[tokio::test]
async fn a_private_result_is_never_served_to_another_caller() {
    let toml = format!(
        "[server]\napi_keys = [{KEY_A:?}, {KEY_B:?}]\n{}{}[upstreams.pub.tools.echo]\ncache_scope = \"public\"\n",
        trusted("priv"),
        trusted("pub")
    );
    let gw = Gateway::start(&toml).await;
    let url = gw.url("/mcp");
    let a1 = call(&url, Some(KEY_A), "priv__echo", json!({"message": "mine"}), None).await;
    let a2 = call(&url, Some(KEY_A), "priv__echo", json!({"message": "mine"}), None).await;
    let b1 = call(&url, Some(KEY_B), "priv__echo", json!({"message": "mine"}), None).await;
    assert_eq!(
        [cache_status(&a1), cache_status(&a2), cache_status(&b1)],
        ["miss", "hit", "miss"],
        "private (the default): per caller"
    );
    let a = call(&url, Some(KEY_A), "pub__echo", json!({"message": "ours"}), None).await;
    let b = call(&url, Some(KEY_B), "pub__echo", json!({"message": "ours"}), None).await;
    assert_eq!([cache_status(&a), cache_status(&b)], ["miss", "hit"], "public: shared");
}

#[tokio::test]
async fn tool_errors_are_not_cached_and_entries_expire() {
    let toml = format!(
        "{}[upstreams.up.tools.fail]\ncache = true\n[upstreams.up.tools.echo]\ncache_ttl = \"400ms\"\n",
        trusted("up")
    );
    let gw = Gateway::start(&toml).await;
    let url = gw.url("/mcp");
    for _ in 0..2 {
        let a = call(&url, None, "up__fail", json!({}), None).await;
        assert_eq!(a.body["result"]["isError"], true);
        assert_eq!(cache_status(&a), "miss", "an isError result is never stored");
    }
    let a = call(&url, None, "up__echo", json!({"message": "t"}), None).await;
    let b = call(&url, None, "up__echo", json!({"message": "t"}), None).await;
    assert_eq!([cache_status(&a), cache_status(&b)], ["miss", "hit"]);
    // Reading a plain entry does not extend it (only adaptive_ttl does), and hits do not reach
    // the upstream, so reading until it is no longer a hit changes nothing asserted.
    let c = eventually("the entry expired", Duration::from_secs(10), async || {
        let c = call(&url, None, "up__echo", json!({"message": "t"}), None).await;
        if cache_status(&c) == "hit" { Err(c.raw) } else { Ok(c) }
    })
    .await;
    assert_eq!(cache_status(&c), "miss", "expired after its TTL");
    assert_eq!(upstream_calls(&url, "up__count").await, 5);
}

#[tokio::test]
async fn a_tool_list_change_and_the_admin_endpoint_drop_cached_results() {
    let gw = Gateway::start(&trusted("up")).await;
    let url = gw.url("/mcp");
    let cached = || async { cache_status(&call(&url, None, "up__echo", json!({"message": "x"}), None).await) };
    assert_eq!(cached().await, "miss");
    assert_eq!(cached().await, "hit");
    // The upstream adds a tool and announces list_changed.
    call(&url, None, "up__change_tools", json!({}), None).await;
    eventually("the new tool in the catalog", Duration::from_secs(10), async || {
        let names = tool_names(&modern(&url, 9, "tools/list", json!({})).await);
        if names.iter().any(|n| n.starts_with("up__dynamic")) { Ok(()) } else { Err(format!("{names:?}")) }
    })
    .await;
    assert_eq!(cached().await, "miss", "list_changed dropped the upstream's results");
    assert_eq!(cached().await, "hit");
    let r = client().post(gw.url("/admin/cache/clear?upstream=up&tool=echo")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(cached().await, "miss", "cleared by the admin endpoint");
    let r = client().post(gw.url("/admin/cache/clear?upstream=nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn identical_concurrent_calls_share_one_upstream_call() {
    let gw = Gateway::start(&trusted("up")).await;
    let url = Arc::new(gw.url("/mcp"));
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let url = Arc::clone(&url);
            tokio::spawn(async move { call(&url, None, "up__sleep_ms", json!({"ms": 400}), None).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        let a = c.await.unwrap();
        assert_eq!(text(&a), "slept 400 ms");
        statuses.push(cache_status(&a));
    }
    statuses.sort();
    assert_eq!(statuses.iter().filter(|s| *s == "miss").count(), 1, "{statuses:?}");
    assert_eq!(upstream_calls(&url, "up__count").await, 2, "one sleep_ms reached the upstream");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_runs_the_side_effect_once() {
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects");
    let toml = format!(
        "{}env = {{ ECHO_EFFECTS_FILE = {:?} }}\n",
        stdio_upstream("io", "legacy"),
        effects.display().to_string()
    );
    let gw = Gateway::start(&toml).await;
    let url = gw.url("/mcp");
    let effects_count = || std::fs::read_to_string(&effects).map(|t| t.lines().count()).unwrap_or(0);
    let args = json!({"crash": false});
    let first = call(&url, None, "io__side_effect", args.clone(), Some("order-1")).await;
    assert_eq!(text(&first), "effect recorded");
    let again = call(&url, None, "io__side_effect", args.clone(), Some("order-1")).await;
    assert_eq!(text(&again), "effect recorded");
    assert_eq!(again.body.pointer("/result/_meta/io.sekisho~1idempotency/status"), Some(&json!("replayed")));
    assert_eq!(effects_count(), 1, "the side effect ran once");
    // The same key for a different request is refused; another key runs again.
    let other = call(&url, None, "io__side_effect", json!({"crash": false, "x": 1}), Some("order-1")).await;
    assert_eq!(other.error_code(), Some(-32602), "{}", other.raw);
    let fresh = call(&url, None, "io__side_effect", args.clone(), Some("order-2")).await;
    assert_eq!(text(&fresh), "effect recorded");
    assert_eq!(effects_count(), 2);
    // The HTTP header works like the _meta key.
    let with_header = |n: i64| {
        client()
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("idempotency-key", "order-3")
            .json(&json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "io__side_effect", "arguments": {"crash": false}}}))
    };
    let s = Legacy::open(&url, "2025-11-25").await;
    for i in 0..2 {
        let a = read(
            with_header(i)
                .header("mcp-session-id", &s.session)
                .header("mcp-protocol-version", &s.version)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(text(&a), "effect recorded");
    }
    assert_eq!(effects_count(), 3, "Idempotency-Key: once");
}

// ---------------------------------------------------------------------------------------------
// Two sekisho processes sharing Redis.

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `sekisho serve` process; killed on drop.
struct Process {
    child: Child,
    url: String,
    cfg: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    async fn readyz(&self) -> Value {
        client().get(self.url.replace("/mcp", "/readyz")).send().await.unwrap().json().await.unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(toml: &str) -> Process {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("sekisho.toml");
    std::fs::write(&cfg, format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[log]\nlevel = \"warn\"\n{toml}")).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    eventually("sekisho ready with Redis, its upstreams up and listed", Duration::from_secs(30), async || {
        let ready = settled(&base, None).await?;
        let all_up = ready["upstreams"].as_object().is_some_and(|u| u.values().all(|u| u["status"] == "up"));
        if all_up && ready["redis"] == "up" { Ok(()) } else { Err(ready.to_string()) }
    })
    .await;
    Process { child, url: format!("{base}/mcp"), cfg, _dir: dir }
}

fn prefix() -> String {
    format!("sekisho-test-{}-{}:", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 % 1_000_000_007
}

/// Two replicas' shared configuration. The Redis timeout is generous: on a loaded machine the
/// default 200 ms can pass, and a timed-out Redis read is (rightly) a miss, not what these tests
/// are about.
fn fleet_toml(redis: &str, prefix: &str, upstream: &HttpUpstream) -> String {
    format!(
        "[redis]\nurl = {redis:?}\nprefix = {prefix:?}\ntimeout = \"2s\"\nentry_secret = \"fleet-entry-secret-0123456789abcdef\"\n{}trusted = true\n",
        upstream.table("up")
    )
}

#[tokio::test]
async fn two_gateways_share_cache_idempotency_and_coalescing_through_redis() {
    let upstream = HttpUpstream::start("legacy").await;
    let toml = fleet_toml("redis://127.0.0.1:6379", &prefix(), &upstream);
    let (one, two) = (serve(&toml).await, serve(&toml).await);
    // A result cached by one replica is a hit on the other, from L2.
    let a = call(&one.url, None, "up__echo", json!({"message": "fleet"}), None).await;
    assert_eq!(cache_status(&a), "miss");
    let b = call(&two.url, None, "up__echo", json!({"message": "fleet"}), None).await;
    assert_eq!((cache_status(&b).as_str(), cache_level(&b).as_str()), ("hit", "l2"), "{}", b.raw);
    let c = call(&two.url, None, "up__echo", json!({"message": "fleet"}), None).await;
    assert_eq!(cache_level(&c), "l1", "an L2 hit filled L1");
    // An idempotency key used on one replica replays on the other.
    let first = call(&one.url, None, "up__count", json!({}), Some("k-1")).await;
    let replay = call(&two.url, None, "up__count", json!({}), Some("k-1")).await;
    assert_eq!(text(&replay), text(&first));
    assert_eq!(replay.body.pointer("/result/_meta/io.sekisho~1idempotency/status"), Some(&json!("replayed")));
    let before: u64 = text(&call(&one.url, None, "up__count", json!({}), None).await).parse().unwrap();
    assert_eq!(before, text(&first).parse::<u64>().unwrap() + 1, "the replay did not reach the upstream");
    // N identical concurrent calls across both replicas reach the upstream once.
    let urls = [Arc::new(one.url.clone()), Arc::new(two.url.clone())];
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let url = Arc::clone(&urls[i % 2]);
            tokio::spawn(async move { call(&url, None, "up__sleep_ms", json!({"ms": 500}), None).await })
        })
        .collect();
    for c in calls {
        assert_eq!(text(&c.await.unwrap()), "slept 500 ms");
    }
    let after: u64 = text(&call(&one.url, None, "up__count", json!({}), None).await).parse().unwrap();
    assert_eq!(after - before, 2, "one sleep_ms and this count reached the upstream");
    // Clearing on one replica reaches the other within a second.
    let r = client().post(one.url.replace("/mcp", "/admin/cache/clear?upstream=up")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The other replica re-reads the generations when its copy is a second old; until then it
    // answers from L1, which reading does not change. The deadline leaves room for a loaded machine.
    let d = eventually("the clear reaching the other replica", Duration::from_secs(3), async || {
        let d = call(&two.url, None, "up__echo", json!({"message": "fleet"}), None).await;
        if cache_status(&d) == "hit" { Err(d.raw) } else { Ok(d) }
    })
    .await;
    assert_eq!(cache_status(&d), "miss", "cleared everywhere: {}", d.raw);
}

#[tokio::test]
async fn redis_dying_mid_test_degrades_to_l1_and_the_cache_comes_back() {
    let port = free_port();
    let mut redis = OwnRedis::start(port).await;
    let upstream = HttpUpstream::start("legacy").await;
    let gw = serve(&fleet_toml(&format!("redis://127.0.0.1:{port}"), "r:", &upstream)).await;
    let a = call(&gw.url, None, "up__echo", json!({"message": "before"}), None).await;
    assert_eq!(cache_status(&a), "miss");
    assert_eq!(redis.keys("r:c:*"), 1, "stored in Redis");
    redis.stop();
    // Requests keep working: hits from L1, misses from the upstream, no errors.
    let b = call(&gw.url, None, "up__echo", json!({"message": "before"}), None).await;
    assert_eq!((cache_status(&b).as_str(), cache_level(&b).as_str()), ("hit", "l1"));
    for i in 0..3 {
        let c = call(&gw.url, None, "up__echo", json!({"message": format!("during {i}")}), None).await;
        assert_eq!(text(&c), format!("during {i}"));
    }
    let again = call(&gw.url, None, "up__echo", json!({"message": "during 0"}), None).await;
    assert_eq!(cache_status(&again), "hit", "L1 still caches while Redis is down");
    let base = gw.url.replace("/mcp", "");
    let ready: Value = client().get(format!("{base}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["redis"], "degraded");
    assert_eq!(ready["ready"], true, "Redis is not a readiness dependency");
    let metrics = client().get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sekisho_redis_errors_total"), "{metrics}");
    // Redis returns (empty): the cache writes to it again by itself.
    let redis = OwnRedis::start(port).await;
    let mut n = 0;
    eventually("the cache writing to Redis again", Duration::from_secs(15), async || {
        n += 1;
        call(&gw.url, None, "up__echo", json!({"message": format!("after {n}")}), None).await;
        match redis.keys("r:c:*") {
            0 => Err(0),
            keys => Ok(keys),
        }
    })
    .await;
}

#[tokio::test]
async fn resource_reads_are_cached_for_their_ttl_and_dropped_when_updated() {
    let toml = format!("{}resource_ttl = \"30s\"\n{}", trusted("res"), stdio_upstream("plain", "legacy"));
    let gw = Gateway::start(&toml).await;
    let url = gw.url("/mcp");
    let read = |uri: &'static str| {
        let url = url.clone();
        async move {
            let a = modern(&url, 3, "resources/read", json!({"uri": uri})).await;
            assert!(a.body["result"]["contents"].is_array(), "{}", a.raw);
            cache_status(&a)
        }
    };
    assert_eq!(read("sekisho://res/echo://items/1").await, "miss");
    assert_eq!(read("sekisho://res/echo://items/1").await, "hit");
    assert_eq!(read("sekisho://res/echo://items/2").await, "miss", "one entry per URI");
    // No ttlMs from the upstream and no resource_ttl: not cached.
    assert_eq!(read("sekisho://plain/echo://items/1").await, "none");
    assert_eq!(read("sekisho://plain/echo://items/1").await, "none");
    // notifications/resources/updated drops exactly that resource's entry.
    call(&url, None, "res__touch", json!({"uri": "echo://items/1"}), None).await;
    eventually("the entry dropped by the update", Duration::from_secs(5), async || {
        let status = read("sekisho://res/echo://items/1").await;
        if status == "miss" { Ok(()) } else { Err(status) }
    })
    .await;
    assert_eq!(read("sekisho://res/echo://items/2").await, "hit", "other resources stay cached");
}

#[tokio::test]
async fn a_repeat_while_the_first_call_runs_waits_or_is_told_it_is_in_progress() {
    let toml = format!("[idempotency]\nwait = \"250ms\"\n{}", stdio_upstream("up", "legacy"));
    let gw = Gateway::start(&toml).await;
    let url = Arc::new(gw.url("/mcp"));
    let slow = |key: &'static str, ms: u64| {
        let url = Arc::clone(&url);
        tokio::spawn(async move { call(&url, None, "up__sleep_ms", json!({"ms": ms}), Some(key)).await })
    };
    // A repeat that outlives `wait` gets a clear, retryable "in progress" error.
    let first = slow("long", 1200);
    in_flight(&gw, &first).await;
    let started = Instant::now();
    let busy = slow("long", 1200).await.unwrap();
    assert_eq!(busy.error_code(), Some(-32014), "{}", busy.raw);
    assert_eq!(busy.body["error"]["data"]["retryable"], true);
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(text(&first.await.unwrap()), "slept 1200 ms");
    // A repeat within `wait` waits for the first call and gets its answer.
    let first = slow("short", 150);
    in_flight(&gw, &first).await;
    let waited = slow("short", 150).await.unwrap();
    assert_eq!(text(&waited), "slept 150 ms");
    assert_eq!(waited.body.pointer("/result/_meta/io.sekisho~1idempotency/status"), Some(&json!("replayed")));
    assert_eq!(text(&first.await.unwrap()), "slept 150 ms");
    // Two sleeps and this count reached the upstream.
    assert_eq!(upstream_calls(&url, "up__count").await, 3);
}

#[tokio::test]
async fn adaptive_ttl_keeps_hot_keys_longer_and_cold_keys_shorter() {
    let toml = format!(
        "[cache]\nttl = \"600ms\"\nadaptive_ttl = true\nadaptive_min = \"600ms\"\nadaptive_max = \"5s\"\n{}",
        trusted("up")
    );
    let gw = Gateway::start(&toml).await;
    let url = gw.url("/mcp");
    let status = |m: &'static str| {
        let url = url.clone();
        async move { cache_status(&call(&url, None, "up__echo", json!({"message": m}), None).await) }
    };
    // The cold key first, so it is at least as old as the hot key.
    assert_eq!(status("cold").await, "miss");
    assert_eq!(status("hot").await, "miss");
    // Read the hot key until the age it reports is past the 600 ms a cold key gets; every read
    // is a hit, as each doubles its lifetime: 600 ms → 1.2 s → 2.4 s → … (at most 5 s). The
    // cold key is not read meanwhile, since a read would stretch it too.
    eventually("the hot key older than the base TTL", Duration::from_secs(4), async || {
        let a = call(&url, None, "up__echo", json!({"message": "hot"}), None).await;
        assert_eq!(cache_status(&a), "hit", "{}", a.raw);
        let age = a.body.pointer("/result/_meta/io.sekisho~1cache/ageMs").and_then(Value::as_u64).unwrap();
        if age > 700 { Ok(()) } else { Err(age) }
    })
    .await;
    assert_eq!(status("hot").await, "hit", "a hot key outlives the base TTL");
    assert_eq!(status("cold").await, "miss", "a key nobody read expired at adaptive_min");
}

#[tokio::test]
async fn a_key_whose_replica_died_mid_call_is_released_after_the_calls_deadline() {
    let upstream = HttpUpstream::start("legacy").await;
    let toml = format!(
        "[idempotency]\nwait = \"300ms\"\n[resilience.retry]\nenabled = false\n{}timeout = \"3s\"\n",
        fleet_toml("redis://127.0.0.1:6379", &prefix(), &upstream)
    );
    let (mut one, two) = (serve(&toml).await, serve(&toml).await);
    let url = one.url.clone();
    let started = Instant::now();
    // The first call's connection dies with its replica: its answer (an error) is not read.
    let first = tokio::spawn(async move {
        let _ =
            tokio::time::timeout(Duration::from_secs(20), call_unread(&url, "up__sleep_ms", json!({"ms": 10000}), "k"))
                .await;
    });
    eventually("the call in flight on the first replica", Duration::from_secs(10), async || {
        let n = one.readyz().await["upstreams"]["up"]["in_flight"].clone();
        if n.as_u64() > Some(0) { Ok(()) } else { Err(n) }
    })
    .await;
    // The replica running the call dies: its record stays "in progress" for now…
    let _ = one.child.kill();
    let _ = one.child.wait();
    let _ = first.await;
    let busy = call(&two.url, None, "up__sleep_ms", json!({"ms": 10000}), Some("k")).await;
    // (Its record lives 4 s from the first call's start: the call's deadline, 3 s, plus a second.
    // On a machine too loaded to get here by then, this fails, and says so.)
    assert_eq!(busy.error_code(), Some(-32014), "{} after {:?}", busy.raw, started.elapsed());
    // …until the call's own deadline (3 s, one attempt) plus a second has passed. Asking again
    // meanwhile changes nothing: each repeat is told "in progress" after `wait`, and the first
    // one that finds the key free runs the call.
    let ran = eventually("the key released", Duration::from_secs(10), async || {
        let a = call(&two.url, None, "up__sleep_ms", json!({"ms": 10000}), Some("k")).await;
        if a.error_code() == Some(-32014) { Err(a.raw) } else { Ok(a) }
    })
    .await;
    assert_eq!(ran.error_code(), Some(-32011), "the key was free again, so the call ran (and timed out): {}", ran.raw);
}

#[tokio::test]
async fn sekisho_cache_clear_drops_results_in_the_running_gateway() {
    let upstream = HttpUpstream::start("legacy").await;
    let gw = serve(&fleet_toml("redis://127.0.0.1:6379", &prefix(), &upstream)).await;
    let echo = || call(&gw.url, None, "up__echo", json!({"message": "cli"}), None);
    assert_eq!(cache_status(&echo().await), "miss");
    assert_eq!(cache_status(&echo().await), "hit");
    let clear = |args: &[&str]| {
        Command::new(BIN).args(["cache", "clear", "--config"]).arg(&gw.cfg).args(args).output().unwrap()
    };
    let out = clear(&["--upstream", "up", "--tool", "echo", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["cleared"], json!({"upstream": "up", "tool": "echo"}));
    assert_eq!(cache_status(&echo().await), "miss", "cleared by the CLI");
    let out = clear(&["--upstream", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn resource_reads_follow_the_upstreams_ttl_ms_and_cache_scope() {
    let toml = format!("[server]\napi_keys = [{KEY_A:?}, {KEY_B:?}]\n{}", stdio_upstream("m", "modern"));
    let gw = Gateway::start(&toml).await;
    let url = gw.url("/mcp");
    let read_as = |key: &'static str, uri: &'static str| {
        let url = url.clone();
        async move {
            let meta = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
                "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "0"},
            });
            let body =
                json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": uri, "_meta": meta}});
            let a = read(
                client()
                    .post(&url)
                    .bearer_auth(key)
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", "resources/read")
                    .header("mcp-name", uri)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert!(a.body["result"]["contents"].is_array(), "{}", a.raw);
            cache_status(&a)
        }
    };
    // ttlMs 60000, cacheScope public: cached, and shared between callers.
    assert_eq!(read_as(KEY_A, "sekisho://m/echo://cached/1").await, "miss");
    assert_eq!(read_as(KEY_A, "sekisho://m/echo://cached/1").await, "hit");
    assert_eq!(read_as(KEY_B, "sekisho://m/echo://cached/1").await, "hit", "public: another caller hits");
    // ttlMs 0 and no resource_ttl: never cached.
    assert_eq!(read_as(KEY_A, "sekisho://m/echo://items/1").await, "none");
    assert_eq!(read_as(KEY_A, "sekisho://m/echo://items/1").await, "none");
}
