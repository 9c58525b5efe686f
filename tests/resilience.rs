//! Chaos tests of the resilience stack, with real child processes and real HTTP upstreams: a
//! process pool that grows and recovers from a killed child without leaking processes; a hung
//! upstream whose timeouts open the breaker, which half-opens and closes after recovery; an
//! upstream that fails every call, served by its fallback; overload with mixed priorities;
//! side-effecting tools that are never run twice, with or without an idempotency key (which
//! reaches the upstream in `_meta`); per-tool timeouts that cancel upstream; and crash-loop
//! damping of a process that keeps dying.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

async fn metrics(gw: &Gateway) -> String {
    client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap()
}

/// Whether `pid` is a running process. A zombie (state Z) has exited; the runtime reaps it
/// soon after, so it does not count as alive.
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

fn pids(ready: &Value, upstream: &str) -> Vec<u64> {
    ready["upstreams"][upstream]["replicas"].as_array().unwrap().iter().filter_map(|r| r["pid"].as_u64()).collect()
}

#[tokio::test]
async fn pool_grows_spreads_recovers_and_leaks_nothing() {
    let toml = format!(
        "{}min_processes = 2\nmax_processes = 3\ngrow_at = 2\nidle_timeout = \"1s\"\n",
        stdio_upstream("pool", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let before = pids(&gw.readyz().await, "pool");
    assert_eq!(before.len(), 2, "min_processes started ahead of time");
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let s = std::sync::Arc::new(s);
    let mut calls = Vec::new();
    for i in 0..6 {
        let s = std::sync::Arc::clone(&s);
        calls.push(tokio::spawn(async move {
            s.request(i, "tools/call", json!({"name": "pool__sleep_ms", "arguments": {"ms": 600}})).await
        }));
    }
    // Wait until the pool has grown and the calls are spread, some on the process killed below.
    let victim = before[0];
    let grown = eventually("the pool grown with calls spread", Duration::from_secs(10), async || {
        let ready = gw.readyz().await;
        let replicas = ready["upstreams"]["pool"]["replicas"].as_array().unwrap();
        let busy: Vec<&Value> = replicas.iter().filter(|r| r["in_flight"].as_u64() > Some(0)).collect();
        if replicas.len() == 3 && busy.len() >= 2 && busy.iter().any(|r| r["pid"] == victim) {
            Ok(ready)
        } else {
            Err(ready)
        }
    })
    .await;
    assert_eq!(grown["upstreams"]["pool"]["replicas"].as_array().unwrap().len(), 3, "grew under load: {grown}");
    let busy: Vec<u64> = grown["upstreams"]["pool"]["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["in_flight"].as_u64().unwrap())
        .collect();
    assert!(busy.iter().filter(|n| **n > 0).count() >= 2, "calls spread over processes: {busy:?}");
    // Kill one child with calls in flight.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let mut failed = 0;
    for c in calls {
        let a = c.await.unwrap();
        match a.error_code() {
            None => assert_eq!(text(&a), "slept 600 ms"),
            Some(code) => {
                assert_eq!(code, -32010, "in-flight calls on the killed child fail as unavailable: {}", a.raw);
                failed += 1;
            }
        }
    }
    assert!(failed >= 1, "some call was on the killed process");
    // The pool replaces the child and later shrinks back to min_processes; nothing leaks.
    eventually("the pool settled at min_processes", Duration::from_secs(15), async || {
        let ready = gw.readyz().await;
        let now = pids(&ready, "pool");
        if now.len() == 2
            && !now.contains(&victim)
            && ready["upstreams"]["pool"]["replicas"].as_array().unwrap().len() == 2
        {
            Ok(())
        } else {
            Err(ready)
        }
    })
    .await;
    assert!(!alive(victim), "the killed child was reaped");
    let all_seen: Vec<u64> = pids(&gw.readyz().await, "pool");
    let ok = s.request(10, "tools/call", json!({"name": "pool__echo", "arguments": {"message": "after"}})).await;
    assert_eq!(text(&ok), "after");
    gw.shutdown().await.unwrap();
    for pid in all_seen.into_iter().chain(before) {
        assert!(!alive(pid), "process {pid} outlived the gateway");
    }
}

#[tokio::test]
async fn a_hung_upstream_opens_the_breaker_which_closes_after_recovery() {
    let toml = format!(
        "{}timeout = \"200ms\"\nbreaker = {{ consecutive_failures = 3, open_for = \"600ms\" }}\n",
        stdio_upstream("hang", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    for i in 0..3 {
        let a = s.request(i, "tools/call", json!({"name": "hang__sleep_ms", "arguments": {"ms": 2000}})).await;
        assert_eq!(a.error_code(), Some(-32011), "timeout {i}: {}", a.raw);
    }
    let started = Instant::now();
    let open = s.request(5, "tools/call", json!({"name": "hang__echo", "arguments": {"message": "x"}})).await;
    assert_eq!(open.error_code(), Some(-32010), "{}", open.raw);
    assert_eq!(open.body["error"]["data"]["breaker"], "open");
    assert!(started.elapsed() < Duration::from_millis(150), "fails fast while open");
    assert!(metrics(&gw).await.contains("sekisho_breaker_state{upstream=\"hang\",replica=\"0\"} 1"));
    assert_eq!(gw.readyz().await["upstreams"]["hang"]["replicas"][0]["breaker"], "open");
    eventually("the breaker half-open after open_for", Duration::from_secs(10), async || {
        let breaker = gw.readyz().await["upstreams"]["hang"]["replicas"][0]["breaker"].clone();
        if breaker == "open" { Err(breaker) } else { Ok(()) }
    })
    .await;
    assert_eq!(gw.readyz().await["upstreams"]["hang"]["replicas"][0]["breaker"], "half_open");
    let probe = s.request(6, "tools/call", json!({"name": "hang__echo", "arguments": {"message": "probe"}})).await;
    assert_eq!(text(&probe), "probe", "the half-open probe goes through");
    assert_eq!(gw.readyz().await["upstreams"]["hang"]["replicas"][0]["breaker"], "closed");
    assert!(metrics(&gw).await.contains("sekisho_breaker_state{upstream=\"hang\",replica=\"0\"} 0"));
}

#[tokio::test]
async fn an_upstream_failing_every_call_fails_fast_and_its_fallback_serves() {
    let primary = HttpUpstream::start("legacy").await;
    let toml = format!(
        "{}fallback = \"backup\"\nbreaker = {{ consecutive_failures = 2, open_for = \"60s\" }}\n{}",
        primary.table("main"),
        stdio_upstream("backup", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/servers/main/mcp"), "2025-11-25").await;
    // Every call of rpc_error is an internal error: a breaker failure (not retried).
    for i in 0..2 {
        let a = s.request(i, "tools/call", json!({"name": "rpc_error", "arguments": {}})).await;
        assert_eq!(a.error_code(), Some(-32603));
    }
    // Open now: calls go to the fallback (same tool names), fast.
    let started = Instant::now();
    let a = s.request(3, "tools/call", json!({"name": "echo", "arguments": {"message": "served by backup"}})).await;
    assert_eq!(text(&a), "served by backup");
    assert!(started.elapsed() < Duration::from_millis(500));
    let m = metrics(&gw).await;
    assert!(m.contains("sekisho_fallbacks_total{upstream=\"main\"} 1"), "{m}");
    assert!(m.contains("sekisho_requests_total{method=\"tools/call\",upstream=\"backup\",outcome=\"ok\"} 1"), "{m}");
}

#[tokio::test]
async fn a_dead_upstream_is_served_by_its_fallback_until_it_returns_gradually() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let toml = format!(
        "[upstreams.main]\nurl = \"http://127.0.0.1:{port}/mcp\"\nera = \"legacy\"\nfallback = \"backup\"\nfallback_return = \"1s\"\n{}",
        stdio_upstream("backup", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let names = tool_names(&s.request(1, "tools/list", json!({})).await);
    assert!(names.contains(&"backup__echo".to_string()));
    let a = s.request(2, "tools/call", json!({"name": "backup__echo", "arguments": {"message": "direct"}})).await;
    assert_eq!(text(&a), "direct");
    // main has never been up: a per-upstream call is served by the fallback.
    let m = Legacy::open(&gw.url("/servers/main/mcp"), "2025-11-25").await;
    let a = m.request(3, "tools/call", json!({"name": "echo", "arguments": {"message": "via fallback"}})).await;
    assert_eq!(text(&a), "via fallback");
    // Bring main up on its port; once connected, traffic returns to it within fallback_return.
    let mut main = tokio::process::Command::new(echo_upstream())
        .args(["http", "--listen", &format!("127.0.0.1:{port}"), "--era", "legacy"])
        .kill_on_drop(true)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    eventually("main connected", Duration::from_secs(40), async || {
        let status = gw.readyz().await["upstreams"]["main"]["status"].clone();
        if status == "up" { Ok(()) } else { Err(status) }
    })
    .await;
    // The fallback's share falls to zero over fallback_return (1 s) from when main connected;
    // until then calls are routed by a random draw, so wait for /readyz to show it at zero.
    eventually("traffic back on main", Duration::from_secs(10), async || {
        let percent = gw.readyz().await["upstreams"]["main"]["fallback_percent"].clone();
        if percent == 0 { Ok(()) } else { Err(percent) }
    })
    .await;
    let before = metrics(&gw).await;
    for i in 0..5 {
        let a = m.request(10 + i, "tools/call", json!({"name": "echo", "arguments": {"message": "home"}})).await;
        assert_eq!(text(&a), "home");
    }
    let after = metrics(&gw).await;
    let count = |text: &str, up: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!(
                    "sekisho_requests_total{{method=\"tools/call\",upstream=\"{up}\",outcome=\"ok\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(count(&after, "main") - count(&before, "main"), 5, "all traffic is back on main:\n{after}");
    let _ = main.kill().await;
}

#[tokio::test]
async fn overload_serves_critical_calls_and_sheds_low_ones_first() {
    let toml = format!(
        "[admission]\nmax_concurrent = 2\nqueue_size = 3\nqueue_timeout = \"10s\"\naging = \"60s\"\n{}",
        stdio_upstream("work", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let url = gw.url("/mcp");
    let s = std::sync::Arc::new(Legacy::open(&url, "2025-11-25").await);
    // An anonymous caller's "critical" is lowered to its ceiling, medium: still above low.
    let call = |priority: &'static str, id: i64, ms: u64| {
        let s = std::sync::Arc::clone(&s);
        tokio::spawn(async move {
            read(
                client()
                    .post(&s.endpoint)
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-session-id", &s.session)
                    .header("sekisho-priority", priority)
                    .json(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"work__sleep_ms","arguments":{"ms":ms}}}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        })
    };
    let holders = [call("critical", 1, 800), call("critical", 2, 800)];
    eventually("both holders in flight", Duration::from_secs(10), async || {
        let n = gw.readyz().await["upstreams"]["work"]["in_flight"].clone();
        if n == 2 { Ok(()) } else { Err(n) }
    })
    .await;
    let lows: Vec<_> = (0..3).map(|i| call("low", 10 + i, 10)).collect();
    eventually("the lows queued at the gateway's limit", Duration::from_secs(10), async || {
        let m = metrics(&gw).await;
        let queued =
            m.lines().find(|l| l.starts_with("sekisho_admission_queued{limit=\"gateway\"}")).map(str::to_string);
        if queued.as_deref().is_some_and(|l| l.ends_with(" 3")) { Ok(()) } else { Err(queued.unwrap_or_default()) }
    })
    .await;
    let criticals: Vec<_> = (0..3).map(|i| call("critical", 20 + i, 10)).collect();
    for low in lows {
        let a = low.await.unwrap();
        assert_eq!(a.status, 503, "{}", a.raw);
        assert_eq!(a.error_code(), Some(-32013));
        assert_eq!(a.headers.get("retry-after").unwrap(), "1");
    }
    for c in criticals.into_iter().chain(holders) {
        let a = c.await.unwrap();
        assert!(a.error_code().is_none(), "critical calls are served: {}", a.raw);
    }
    assert!(metrics(&gw).await.contains("sekisho_shed_total{limit=\"gateway\",priority=\"low\",caller=\"anon\"} 3"));
}

#[tokio::test]
async fn side_effecting_tools_run_once_even_with_an_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects");
    let toml = format!(
        "{}min_processes = 3\ntrusted = true\nenv = {{ ECHO_EFFECTS_FILE = {:?} }}\nretry = {{ max_attempts = 3, base_delay = \"1ms\" }}\n",
        stdio_upstream("io", "legacy"),
        effects.display().to_string()
    );
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let count = || std::fs::read_to_string(&effects).map(|t| t.lines().count()).unwrap_or(0);
    let a = s.request(1, "tools/call", json!({"name": "io__side_effect", "arguments": {}})).await;
    assert_eq!(a.error_code(), Some(-32010), "{}", a.raw);
    assert_eq!(count(), 1, "a destructive tool runs once without an idempotency key");
    // Let the pool heal, then the same call with a key: the process died after the effect, so
    // the call may have run; a key does not make it safe to repeat.
    eventually("the pool healed", Duration::from_secs(10), async || {
        let ready = gw.readyz().await;
        let replicas = ready["upstreams"]["io"]["replicas"].as_array().unwrap();
        let restarted = ready["upstreams"]["io"]["restarts"].as_u64() >= Some(1);
        if restarted && replicas.len() == 3 && replicas.iter().all(|r| r["status"] == "up") {
            Ok(())
        } else {
            Err(ready)
        }
    })
    .await;
    let a = s
        .request(
            2,
            "tools/call",
            json!({"name": "io__side_effect", "arguments": {}, "_meta": {"io.sekisho/idempotencyKey": "op-1"}}),
        )
        .await;
    assert_eq!(a.error_code(), Some(-32010), "{}", a.raw);
    assert_eq!(count(), 2, "not run again on another process");
    assert!(!metrics(&gw).await.contains("sekisho_retries_total{upstream=\"io\"}"));
}

#[tokio::test]
async fn a_keyed_call_that_timed_out_is_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects");
    let toml = format!(
        "{}min_processes = 2\nenv = {{ ECHO_EFFECTS_FILE = {:?} }}\nretry = {{ max_attempts = 3, base_delay = \"1ms\" }}\n\
         [upstreams.io.tools.side_effect]\ntimeout = \"300ms\"\n",
        stdio_upstream("io", "legacy"),
        effects.display().to_string()
    );
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let call = json!({"name": "io__side_effect", "arguments": {"crash": false, "ms": 2000},
        "_meta": {"io.sekisho/idempotencyKey": "slow-1"}});
    let a = s.request(1, "tools/call", call).await;
    assert_eq!(a.error_code(), Some(-32011), "{}", a.raw);
    // Every attempt records its effect before it sleeps, and the answer comes after the last.
    let effects = std::fs::read_to_string(&effects).map(|t| t.lines().count()).unwrap_or(0);
    assert_eq!(effects, 1, "a call that timed out may have run: it is not repeated");
}

#[tokio::test]
async fn the_idempotency_key_reaches_the_upstream_also_from_the_header() {
    let gw = Gateway::start(&stdio_upstream("io", "legacy")).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let a = read(
        client()
            .post(&s.endpoint)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &s.session)
            .header("mcp-protocol-version", &s.version)
            .header("idempotency-key", "hdr-1")
            .json(&json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"io__meta","arguments":{}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let meta: Value = serde_json::from_str(&text(&a)).unwrap();
    assert_eq!(meta["io.sekisho/idempotencyKey"], "hdr-1", "{meta}");
    // A key in `_meta` wins over the header and reaches the upstream as it is.
    let a = s
        .request(
            2,
            "tools/call",
            json!({"name": "io__meta", "arguments": {}, "_meta": {"io.sekisho/idempotencyKey": "m-1"}}),
        )
        .await;
    let meta: Value = serde_json::from_str(&text(&a)).unwrap();
    assert_eq!(meta["io.sekisho/idempotencyKey"], "m-1", "{meta}");
}

#[tokio::test]
async fn read_only_tools_of_trusted_upstreams_are_retried_after_transport_failures() {
    let toml = format!("{}min_processes = 2\ntrusted = true\n", stdio_upstream("ro", "legacy"));
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let call = tokio::spawn(async move {
        s.request(1, "tools/call", json!({"name": "ro__sleep_ms", "arguments": {"ms": 400}})).await
    });
    // Kill whichever process holds the call.
    let target = eventually("the call in flight on a process", Duration::from_secs(10), async || {
        let ready = gw.readyz().await;
        let busy = ready["upstreams"]["ro"]["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["in_flight"].as_u64() == Some(1))
            .find_map(|r| r["pid"].as_u64());
        busy.ok_or(ready)
    })
    .await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(target as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let a = call.await.unwrap();
    assert_eq!(text(&a), "slept 400 ms", "retried on the other process: {}", a.raw);
    assert!(metrics(&gw).await.contains("sekisho_retries_total{upstream=\"ro\"} 1"));
}

#[tokio::test]
async fn a_per_tool_timeout_fires_and_cancels_the_call_upstream() {
    let toml = format!(
        "{}timeout = \"30s\"\n[upstreams.slow.tools.sleep_ms]\ntimeout = \"200ms\"\nretry = false\n",
        stdio_upstream("slow", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let started = Instant::now();
    let a = s.request(1, "tools/call", json!({"name": "slow__sleep_ms", "arguments": {"ms": 5000}})).await;
    assert_eq!(a.error_code(), Some(-32011), "{}", a.raw);
    assert!(started.elapsed() < Duration::from_secs(3), "the tool's own deadline applies, not the upstream's 30 s");
    let a = s.request(2, "tools/call", json!({"name": "slow__sleep_ms", "arguments": {"ms": 20}})).await;
    assert_eq!(text(&a), "slept 20 ms");
    // Another tool of the same upstream keeps the upstream deadline.
    let a = s.request(3, "tools/call", json!({"name": "slow__progress", "arguments": {"steps": 1, "ms": 400}})).await;
    assert_eq!(text(&a), "done after 1 steps");
    // The timed-out call was cancelled upstream with notifications/cancelled.
    let a = s.request(4, "tools/call", json!({"name": "slow__cancelled", "arguments": {}})).await;
    assert_eq!(text(&a), "1");
    assert!(metrics(&gw).await.contains("outcome=\"timeout\""));
}

#[tokio::test]
async fn a_crash_looping_process_is_damped_then_restarted_after_the_cooldown() {
    let toml = format!(
        "{}crash_limit = 2\ncrash_window = \"60s\"\ncrash_cooldown = \"2s\"\n",
        stdio_upstream("flaky", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    // Up again after its `n`th restart (right after a crash it may still read up).
    let wait_up = |n: u64| {
        let gw = &gw;
        eventually("flaky back up", Duration::from_secs(10), async move || {
            let flaky = gw.readyz().await["upstreams"]["flaky"].clone();
            if flaky["status"] == "up" && flaky["restarts"].as_u64() >= Some(n) { Ok(()) } else { Err(flaky) }
        })
    };
    // First crash: restarted after a short backoff.
    let a = s.request(1, "tools/call", json!({"name": "flaky__crash", "arguments": {}})).await;
    assert_eq!(a.error_code(), Some(-32010), "the call in flight fails as unavailable: {}", a.raw);
    let crashed = Instant::now();
    wait_up(1).await;
    assert!(crashed.elapsed() < Duration::from_secs(2));
    // Second crash inside the window: the crash loop is damped, the upstream reported down.
    let a = s.request(2, "tools/call", json!({"name": "flaky__crash", "arguments": {}})).await;
    assert_eq!(a.error_code(), Some(-32010));
    let ready = eventually("flaky reported down", Duration::from_secs(10), async || {
        let ready = gw.readyz().await;
        if ready["upstreams"]["flaky"]["status"] == "up" { Err(ready) } else { Ok(ready) }
    })
    .await;
    assert_eq!(ready["upstreams"]["flaky"]["status"], "down", "{ready}");
    assert!(ready["upstreams"]["flaky"]["reason"].as_str().unwrap().contains("crash loop"), "{ready}");
    let a = s.request(3, "tools/call", json!({"name": "flaky__echo", "arguments": {"message": "x"}})).await;
    assert_eq!(a.error_code(), Some(-32010), "no process during the cooldown: {}", a.raw);
    assert!(a.raw.contains("crash loop"), "the error says why: {}", a.raw);
    // After the cooldown (2 s) it is started again and serves.
    wait_up(2).await;
    let a = s.request(4, "tools/call", json!({"name": "flaky__echo", "arguments": {"message": "back"}})).await;
    assert_eq!(text(&a), "back");
    assert_eq!(gw.readyz().await["upstreams"]["flaky"]["restarts"], 2);
}

/// Stdio upstream `io` with the fallback `spare`, both writing their side effects to `effects`;
/// a legacy session on `/servers/io/mcp`.
async fn io_with_spare_fallback(effects: &std::path::Path) -> (Gateway, Legacy) {
    let env = format!("env = {{ ECHO_EFFECTS_FILE = {:?} }}\n", effects.display().to_string());
    let toml = format!(
        "{}{env}fallback = \"spare\"\n{}{env}",
        stdio_upstream("io", "legacy"),
        stdio_upstream("spare", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let s = Legacy::open(&gw.url("/servers/io/mcp"), "2025-11-25").await;
    (gw, s)
}

#[tokio::test]
async fn a_call_that_may_have_run_is_not_run_again_on_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects");
    let (_gw, s) = io_with_spare_fallback(&effects).await;
    let count = || std::fs::read_to_string(&effects).map(|t| t.lines().count()).unwrap_or(0);
    // The primary's process dies during the call, after the effect: the fallback must not repeat it.
    let a = s.request(1, "tools/call", json!({"name": "side_effect", "arguments": {}})).await;
    assert_eq!(a.error_code(), Some(-32010), "{}", a.raw);
    assert_eq!(count(), 1, "the side effect ran once");
    // A read-only call in the same situation is handed over (safe to repeat): the primary is
    // restarting, so the fallback serves it.
    let a = s.request(2, "tools/call", json!({"name": "echo", "arguments": {"message": "spare"}})).await;
    assert_eq!(text(&a), "spare");
}

#[tokio::test]
async fn a_keyed_call_that_may_have_run_is_not_run_again_on_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("effects");
    let (_gw, s) = io_with_spare_fallback(&effects).await;
    let call = json!({"name": "side_effect", "arguments": {}, "_meta": {"io.sekisho/idempotencyKey": "k-1"}});
    let a = s.request(1, "tools/call", call).await;
    assert_eq!(a.error_code(), Some(-32010), "{}", a.raw);
    let count = std::fs::read_to_string(&effects).map(|t| t.lines().count()).unwrap_or(0);
    assert_eq!(count, 1, "the primary died after the effect; the fallback must not repeat it");
}

#[tokio::test]
async fn an_upstream_bulkhead_limits_only_its_own_calls_and_can_be_switched_off() {
    let upstreams = format!(
        "{}max_concurrent = 1\nqueue_size = 0\n{}",
        stdio_upstream("narrow", "legacy"),
        stdio_upstream("wide", "legacy")
    );
    for (switch, shed_expected) in [("", true), ("[resilience]\nbulkhead = false\n", false)] {
        let gw = Gateway::start(&format!("{switch}{upstreams}")).await;
        let s = std::sync::Arc::new(Legacy::open(&gw.url("/mcp"), "2025-11-25").await);
        let slow = |tool: &'static str, id: i64| {
            let s = std::sync::Arc::clone(&s);
            tokio::spawn(
                async move { s.request(id, "tools/call", json!({"name": tool, "arguments": {"ms": 400}})).await },
            )
        };
        let first = slow("narrow__sleep_ms", 1);
        eventually("the first call in flight", Duration::from_secs(10), async || {
            let n = gw.readyz().await["upstreams"]["narrow"]["in_flight"].clone();
            if n.as_u64() > Some(0) { Ok(()) } else { Err(n) }
        })
        .await;
        let (second, other) = (slow("narrow__sleep_ms", 2), slow("wide__sleep_ms", 3));
        assert_eq!(text(&first.await.unwrap()), "slept 400 ms");
        assert_eq!(text(&other.await.unwrap()), "slept 400 ms", "another upstream is not limited");
        let second = second.await.unwrap();
        if shed_expected {
            assert_eq!(second.error_code(), Some(-32013), "narrow's one slot is taken: {}", second.raw);
            assert!(metrics(&gw).await.contains("sekisho_shed_total{limit=\"narrow\""));
        } else {
            assert_eq!(text(&second), "slept 400 ms", "bulkhead = false: no per-upstream limit");
        }
    }
}
