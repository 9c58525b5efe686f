//! Upstream session modes (`session = "shared"` / `"per-client"`): a per-client upstream gives
//! each client session its own process (or HTTP session), started on first use, capped by
//! `max_client_sessions` and stopped when the client session ends; what a per-client upstream
//! session asks outside a call reaches only its own client; and in shared mode a request tied
//! to no client request goes to the one client with a call in flight, or is refused.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A stdio echo upstream `name` with `extra` TOML lines.
fn stdio_with(name: &str, extra: &str) -> String {
    format!("{}{extra}\n", stdio_upstream(name, "legacy"))
}

async fn delete(s: &Legacy) -> u16 {
    client()
        .delete(&s.endpoint)
        .header("mcp-session-id", &s.session)
        .header("mcp-protocol-version", &s.version)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `/readyz`'s `client_sessions` of upstream `name`.
async fn client_sessions(gw: &Gateway, name: &str) -> Value {
    gw.readyz().await["upstreams"][name]["client_sessions"].clone()
}

fn alive(pid: u64) -> bool {
    // Signal 0 checks existence; a zombie awaiting its reaper would still count, but the
    // gateway waits for its children.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// A tools/call on session `s`, streamed: the response's byte stream.
async fn call_streaming(
    s: &Legacy,
    id: i64,
    name: &str,
    args: Value,
) -> impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin {
    client()
        .post(&s.endpoint)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &s.session)
        .header("mcp-protocol-version", &s.version)
        .json(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":args}}))
        .send()
        .await
        .unwrap()
        .bytes_stream()
}

/// Run a tools/call of session `s` in the background (its answer comes only when it is done),
/// and wait until upstream `up` has `n` calls in flight.
async fn in_flight(
    gw: &Gateway,
    up: &str,
    n: u64,
    s: &Legacy,
    id: i64,
    name: &str,
    args: Value,
) -> tokio::task::JoinHandle<Answer> {
    let s = Legacy { endpoint: s.endpoint.clone(), session: s.session.clone(), version: s.version.clone() };
    let (name, args) = (name.to_string(), args);
    let call = tokio::spawn(async move { s.request(id, "tools/call", json!({"name": name, "arguments": args})).await });
    eventually("the call is in flight upstream", Duration::from_secs(20), async || {
        let ready = gw.readyz().await;
        let now = ready["upstreams"][up]["in_flight"].as_u64().unwrap_or(0);
        if now >= n { Ok(()) } else { Err(ready.to_string()) }
    })
    .await;
    call
}

fn sampled(id: &Value, said: &str) -> Value {
    json!({"jsonrpc":"2.0","id":id,"result":{"role":"assistant","model":"m","content":{"type":"text","text":said}}})
}

#[tokio::test]
async fn per_client_processes_start_on_first_use_hold_the_cap_and_end_with_their_sessions() {
    let gw = Gateway::start(&stdio_with("pc", "session = \"per-client\"\nmax_client_sessions = 50")).await;
    let mcp = gw.url("/mcp");
    let mut sessions = Vec::new();
    for _ in 0..50 {
        sessions.push(Legacy::open(&mcp, "2025-11-25").await);
    }
    assert_eq!(client_sessions(&gw, "pc").await["live"], 0, "nothing starts before a session's first call");
    for (i, s) in sessions.iter().enumerate() {
        let a = s.request(i as i64 + 1, "tools/call", json!({"name": "pc__count", "arguments": {}})).await;
        // Each session's first call is the first its own process ever got.
        assert_eq!(text(&a), "1", "session {i}: {}", a.raw);
    }
    let live = client_sessions(&gw, "pc").await;
    assert_eq!(live["live"], 50, "{live}");
    let pids: Vec<u64> = live["pids"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
    assert_eq!(pids.iter().collect::<std::collections::BTreeSet<_>>().len(), 50, "50 processes: {live}");
    // The 51st client session is refused at once, with the overloaded error.
    let extra = Legacy::open(&mcp, "2025-11-25").await;
    let refused = extra.request(99, "tools/call", json!({"name": "pc__count", "arguments": {}})).await;
    assert_eq!(refused.error_code(), Some(-32013), "{}", refused.raw);
    assert_eq!(refused.status, 503, "{}", refused.raw);
    assert!(refused.headers.contains_key("retry-after"), "{:?}", refused.headers);
    // A session's second call goes to the same process.
    let again = sessions[0].request(100, "tools/call", json!({"name": "pc__count", "arguments": {}})).await;
    assert_eq!(text(&again), "2", "{}", again.raw);
    for s in &sessions {
        assert_eq!(delete(s).await, 200);
    }
    eventually("every per-client process exited", Duration::from_secs(30), async || {
        let live = client_sessions(&gw, "pc").await;
        let left: Vec<&u64> = pids.iter().filter(|p| alive(**p)).collect();
        if live["live"] == 0 && left.is_empty() { Ok(()) } else { Err(format!("{live}; alive: {left:?}")) }
    })
    .await;
    // Room again: the refused session now gets its own process.
    let now = extra.request(101, "tools/call", json!({"name": "pc__count", "arguments": {}})).await;
    assert_eq!(text(&now), "1", "{}", now.raw);
    let metrics = client().get(gw.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sekisho_upstream_client_sessions{upstream=\"pc\"} 1"), "{metrics}");
    assert_eq!(delete(&extra).await, 200);
}

#[tokio::test]
async fn a_per_client_sessions_requests_reach_its_own_client_only() {
    let gw = Gateway::start(&stdio_with("pc", "session = \"per-client\"")).await;
    let mcp = gw.url("/mcp");
    let alice = Legacy::open_declaring(&mcp, "2025-11-25", json!({"sampling": {}})).await;
    let bob = Legacy::open_declaring(&mcp, "2025-11-25", json!({"sampling": {}})).await;
    // Bob listens everywhere he can: his GET stream and a call of his in flight.
    let mut bob_get = bob.listen().await;
    let bob_call = in_flight(&gw, "pc", 1, &bob, 1, "pc__sleep_ms", json!({"ms": 3000})).await;
    // Alice's own process asks her (a stdio request carries no tie to her call).
    let mut alice_call = call_streaming(&alice, 2, "pc__ask", json!({"question": "who?"})).await;
    let mut buf = String::new();
    let asked =
        next_event(&mut alice_call, &mut buf, Duration::from_secs(20), |e| e["method"] == "sampling/createMessage")
            .await
            .expect("alice was asked");
    // Bob, who saw nothing, tries to answer it with the id anyway: nothing waits for it in his
    // session, so it goes nowhere.
    let mut b1 = String::new();
    let seen_by_bob = |e: &Value| e.get("method").is_some_and(|m| m != "notifications/tools/list_changed");
    assert!(next_event(&mut bob_get, &mut b1, Duration::from_millis(300), seen_by_bob).await.is_none());
    assert_eq!(bob.post_raw(sampled(&asked["id"], "bob here")).await.status, 202);
    assert_eq!(alice.post_raw(sampled(&asked["id"], "alice here")).await.status, 202);
    let done = next_event(&mut alice_call, &mut buf, Duration::from_secs(20), |e| e["id"] == 2).await.expect("answer");
    assert_eq!(done.pointer("/result/content/0/text"), Some(&json!("the client said: alice here")), "{done}");
    let bob_done = bob_call.await.unwrap();
    assert_eq!(text(&bob_done), "slept 3000 ms", "{}", bob_done.raw);
    assert!(
        !bob_done.events.iter().any(|e| e.get("method").is_some()),
        "bob's call got only its own answer: {}",
        bob_done.raw
    );
    assert!(next_event(&mut bob_get, &mut b1, Duration::from_millis(300), seen_by_bob).await.is_none());
    assert_eq!(client_sessions(&gw, "pc").await["live"], 2);
}

#[tokio::test]
async fn per_client_http_sessions_end_with_their_client_sessions() {
    let http = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&format!("{}session = \"per-client\"\n", http.table("web"))).await;
    let mcp = gw.url("/mcp");
    let (a, b) = (Legacy::open(&mcp, "2025-11-25").await, Legacy::open(&mcp, "2025-11-25").await);
    for (i, s) in [&a, &b].into_iter().enumerate() {
        let echo =
            s.request(i as i64, "tools/call", json!({"name": "web__echo", "arguments": {"message": "hi"}})).await;
        assert_eq!(text(&echo), "hi", "{}", echo.raw);
    }
    assert_eq!(client_sessions(&gw, "web").await["live"], 2);
    assert_eq!(delete(&a).await, 200);
    eventually("a's upstream session ended", Duration::from_secs(10), async || {
        let live = client_sessions(&gw, "web").await;
        if live["live"] == 1 { Ok(()) } else { Err(live.to_string()) }
    })
    .await;
    let echo = b.request(9, "tools/call", json!({"name": "web__echo", "arguments": {"message": "still"}})).await;
    assert_eq!(text(&echo), "still", "{}", echo.raw);
}

#[tokio::test]
async fn shared_mode_sends_an_untied_request_to_the_one_client_in_flight_or_refuses_it() {
    let gw = Gateway::start(&stdio_upstream("sh", "legacy")).await;
    let mcp = gw.url("/mcp");
    let alice = Legacy::open_declaring(&mcp, "2025-11-25", json!({"sampling": {}})).await;
    let bob = Legacy::open_declaring(&mcp, "2025-11-25", json!({"sampling": {}})).await;
    // Alice alone has a call in flight: the untied request is hers.
    let mut call = call_streaming(&alice, 1, "sh__ask", json!({"question": "who?"})).await;
    let mut buf = String::new();
    let asked = next_event(&mut call, &mut buf, Duration::from_secs(20), |e| e["method"] == "sampling/createMessage")
        .await
        .expect("alice was asked");
    assert_eq!(alice.post_raw(sampled(&asked["id"], "alice here")).await.status, 202);
    let done = next_event(&mut call, &mut buf, Duration::from_secs(20), |e| e["id"] == 1).await.expect("answer");
    assert_eq!(done.pointer("/result/content/0/text"), Some(&json!("the client said: alice here")), "{done}");
    // With Bob in flight too, nobody can tell whose it is: the upstream gets a clear error.
    let bob_call = in_flight(&gw, "sh", 1, &bob, 2, "sh__sleep_ms", json!({"ms": 3000})).await;
    let a = alice.request(3, "tools/call", json!({"name": "sh__ask", "arguments": {"question": "who?"}})).await;
    assert!(!a.events.iter().any(|e| e.get("method").is_some()), "nobody was asked: {}", a.raw);
    let answer: Value = serde_json::from_str(&text(&a)).unwrap_or_else(|_| panic!("{}", a.raw));
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("several clients have calls in flight"), "{message}");
    let bob_done = bob_call.await.unwrap();
    assert!(!bob_done.events.iter().any(|e| e.get("method").is_some()), "bob was not asked: {}", bob_done.raw);
}

#[tokio::test]
async fn a_per_client_sessions_resource_updates_reach_its_own_client_only() {
    let gw = Gateway::start(&stdio_with("pc", "session = \"per-client\"")).await;
    let mcp = gw.url("/mcp");
    let (alice, bob) = (Legacy::open(&mcp, "2025-11-25").await, Legacy::open(&mcp, "2025-11-25").await);
    let uri = "sekisho://pc/echo://static/hello";
    let mut streams = Vec::new();
    for s in [&alice, &bob] {
        let sub = s.request(1, "resources/subscribe", json!({"uri": uri})).await;
        assert_eq!(sub.body["result"], json!({}), "{}", sub.raw);
        streams.push((s.listen().await, String::new()));
    }
    // Alice's own process announces an update: her stream gets it, Bob's (subscribed to the
    // same resource through his own process) does not.
    let touched = alice
        .request(2, "tools/call", json!({"name": "pc__touch_subscribed", "arguments": {"uri": "echo://static/hello"}}))
        .await;
    assert_eq!(text(&touched), "touched echo://static/hello", "{}", touched.raw);
    let updated = |e: &Value| e["method"] == "notifications/resources/updated";
    let (a, b) = streams.split_at_mut(1);
    let got = next_event(&mut a[0].0, &mut a[0].1, Duration::from_secs(10), updated).await.expect("alice's update");
    assert_eq!(got["params"]["uri"], uri);
    assert!(
        next_event(&mut b[0].0, &mut b[0].1, Duration::from_millis(500), updated).await.is_none(),
        "bob heard alice's"
    );
    // Bob's own update reaches Bob.
    let touched = bob
        .request(3, "tools/call", json!({"name": "pc__touch_subscribed", "arguments": {"uri": "echo://static/hello"}}))
        .await;
    assert_eq!(text(&touched), "touched echo://static/hello", "{}", touched.raw);
    assert!(next_event(&mut b[0].0, &mut b[0].1, Duration::from_secs(10), updated).await.is_some(), "bob's own update");
    // Alice's unsubscribe reaches her own process at once (nothing is shared to wait for);
    // Bob's process keeps his.
    let unsub = alice.request(4, "resources/unsubscribe", json!({"uri": uri})).await;
    assert_eq!(unsub.body["result"], json!({}), "{}", unsub.raw);
    let held = async |s: &Legacy, id: i64| {
        let r = s.request(id, "tools/call", json!({"name": "pc__subscriptions", "arguments": {}})).await;
        text(&r)
    };
    let mut n = 10;
    eventually("alice's process unsubscribed", Duration::from_secs(10), async || {
        n += 1;
        match held(&alice, n).await {
            t if t == "[]" => Ok(()),
            t => Err(t),
        }
    })
    .await;
    assert_eq!(held(&bob, 99).await, r#"["echo://static/hello"]"#);
}

#[tokio::test]
async fn per_client_calls_still_pass_the_upstreams_bulkhead_and_breaker() {
    let toml = "session = \"per-client\"\nmax_concurrent = 1\nqueue_size = 0\n\
                [upstreams.pc.breaker]\nconsecutive_failures = 1\nopen_for = \"60s\"\n";
    let gw = Gateway::start(&stdio_with("pc", toml)).await;
    let mcp = gw.url("/mcp");
    let (alice, bob) = (Legacy::open(&mcp, "2025-11-25").await, Legacy::open(&mcp, "2025-11-25").await);
    // Each has its own process, but the upstream's one slot is shared: Bob is shed while
    // Alice's call runs.
    let first = in_flight(&gw, "pc", 1, &alice, 1, "pc__sleep_ms", json!({"ms": 1000})).await;
    let shed = bob.request(2, "tools/call", json!({"name": "pc__echo", "arguments": {"message": "x"}})).await;
    assert_eq!(shed.error_code(), Some(-32013), "{}", shed.raw);
    assert_eq!(text(&first.await.unwrap()), "slept 1000 ms");
    // A per-client process that dies mid-call opens the breaker the per-client sessions share:
    // Bob's next call fails fast instead of starting work on a broken upstream.
    let crashed = alice.request(3, "tools/call", json!({"name": "pc__crash", "arguments": {}})).await;
    assert!(crashed.error_code().is_some(), "{}", crashed.raw);
    let refused = bob.request(4, "tools/call", json!({"name": "pc__echo", "arguments": {"message": "x"}})).await;
    assert_eq!(refused.error_code(), Some(-32010), "{}", refused.raw);
    assert_eq!(refused.body.pointer("/error/data/breaker"), Some(&json!("open")), "{}", refused.raw);
}

#[tokio::test]
async fn an_idle_per_client_session_is_stopped_and_restarted_on_next_use() {
    let gw = Gateway::start(&stdio_with("pc", "session = \"per-client\"\nidle_timeout = \"300ms\"")).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let a = s.request(1, "tools/call", json!({"name": "pc__count", "arguments": {}})).await;
    assert_eq!(text(&a), "1", "{}", a.raw);
    let pid = client_sessions(&gw, "pc").await["pids"][0].as_u64().expect("a pid");
    eventually("the idle per-client process stopped", Duration::from_secs(20), async || {
        let live = client_sessions(&gw, "pc").await;
        if live["live"] == 0 && !alive(pid) { Ok(()) } else { Err(live.to_string()) }
    })
    .await;
    // The session itself lives on: its next call starts a fresh process.
    let b = s.request(2, "tools/call", json!({"name": "pc__count", "arguments": {}})).await;
    assert_eq!(text(&b), "1", "{}", b.raw);
}

/// A count of the HTTP echo upstream's `GET /stats`: `get_streams` (legacy standalone GET
/// streams open) or `listen_streams` (modern `subscriptions/listen` streams open).
async fn upstream_stat(http: &HttpUpstream, name: &str) -> u64 {
    let stats = http.url.replace("/mcp", "/stats");
    let v: Value = client().get(stats).send().await.unwrap().json().await.unwrap();
    v[name].as_u64().unwrap()
}

async fn upstream_get_streams(http: &HttpUpstream) -> u64 {
    upstream_stat(http, "get_streams").await
}

#[tokio::test]
async fn a_per_client_modern_session_listens_only_while_its_client_has_a_stream() {
    // A dual-era upstream spoken in 2026-07-28: per-client sessions have no session id, and
    // their `subscriptions/listen` (list changes) would hold a connection each.
    let http = HttpUpstream::start("dual").await;
    let gw = Gateway::start(&format!("{}session = \"per-client\"\n", http.table("web"))).await;
    let mcp = gw.url("/mcp");
    let base = eventually("the shared session listens", Duration::from_secs(10), async || {
        match upstream_stat(&http, "listen_streams").await {
            0 => Err("no stream yet"),
            n => Ok(n),
        }
    })
    .await;
    let alice = Legacy::open(&mcp, "2025-11-25").await;
    for i in 0..3 {
        let echo = alice.request(i, "tools/call", json!({"name": "web__echo", "arguments": {"message": "hi"}})).await;
        assert_eq!(text(&echo), "hi", "{}", echo.raw);
    }
    assert_eq!(client_sessions(&gw, "web").await["live"], 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(upstream_stat(&http, "listen_streams").await, base, "calls alone open no listen stream");
    // With her own stream open, what her upstream session says outside calls has somewhere to go.
    let get = alice.listen().await;
    eventually("alice's session listens", Duration::from_secs(10), async || {
        match upstream_stat(&http, "listen_streams").await {
            n if n == base + 1 => Ok(()),
            n => Err(format!("{n} streams")),
        }
    })
    .await;
    drop(get);
    eventually("and stops with her stream", Duration::from_secs(15), async || {
        match upstream_stat(&http, "listen_streams").await {
            n if n == base => Ok(()),
            n => Err(format!("{n} streams")),
        }
    })
    .await;
}

#[tokio::test]
async fn a_per_client_http_session_holds_its_get_stream_only_while_its_client_can_use_it() {
    let http = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&format!("{}session = \"per-client\"\n", http.table("web"))).await;
    let mcp = gw.url("/mcp");
    let alice = Legacy::open_declaring(&mcp, "2025-11-25", json!({"sampling": {}})).await;
    let bob = Legacy::open(&mcp, "2025-11-25").await;
    // The gateway's own (shared) session keeps its stream for list changes; what is above it
    // belongs to per-client sessions.
    let base =
        eventually("the shared session listens", Duration::from_secs(10), async || {
            match upstream_get_streams(&http).await {
                0 => Err("no stream yet"),
                n => Ok(n),
            }
        })
        .await;
    // Alice's first call starts her upstream session. The upstream asks her on its standalone
    // stream only (tied to nothing), and loses the request when none is open: her call is
    // answered only because the stream opened before the call's POST left.
    let ask = |n: i64, said: &'static str| {
        let alice = &alice;
        async move {
            let question = json!({"question": "who?", "untied": true, "wait_ms": 5000});
            let mut call = call_streaming(alice, n, "web__ask", question).await;
            let mut buf = String::new();
            let asked =
                next_event(&mut call, &mut buf, Duration::from_secs(10), |e| e["method"] == "sampling/createMessage")
                    .await
                    .expect("alice was asked on her call's stream");
            assert_eq!(alice.post_raw(sampled(&asked["id"], said)).await.status, 202);
            let done =
                next_event(&mut call, &mut buf, Duration::from_secs(10), |e| e["id"] == n).await.expect("answer");
            assert_eq!(
                done.pointer("/result/content/0/text"),
                Some(&json!(format!("the client said: {said}"))),
                "{done}"
            );
        }
    };
    ask(1, "alice here").await;
    // Bob listens on his own GET stream, then calls: his upstream session holds its stream
    // while he listens, however long he stays silent.
    let bob_get = bob.listen().await;
    let echo = bob.request(2, "tools/call", json!({"name": "web__echo", "arguments": {"message": "hi"}})).await;
    assert_eq!(text(&echo), "hi", "{}", echo.raw);
    // Past two lingers, Alice's idle session has let its stream go; Bob's has not.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(upstream_get_streams(&http).await, base + 1, "only bob's per-client session listens");
    assert_eq!(client_sessions(&gw, "web").await["live"], 2, "both upstream sessions live on");
    drop(bob_get);
    eventually("bob's stream let go after his own", Duration::from_secs(15), async || {
        match upstream_get_streams(&http).await {
            n if n == base => Ok(()),
            n => Err(format!("{n} streams open")),
        }
    })
    .await;
    // Alice's next call reopens hers first, on the same upstream session.
    ask(3, "alice again").await;
    assert_eq!(client_sessions(&gw, "web").await["live"], 2);
}

#[tokio::test]
async fn a_per_client_sessions_log_messages_outside_calls_follow_its_clients_level() {
    let gw = Gateway::start(&stdio_with("pc", "session = \"per-client\"")).await;
    let alice = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let mut get = alice.listen().await;
    let mut buf = String::new();
    let is_log = |e: &Value| e["method"] == "notifications/message";
    // A process's output carries no tie to a call: its log message goes to the standalone stream.
    let a = alice.request(1, "tools/call", json!({"name": "pc__log", "arguments": {}})).await;
    assert_eq!(text(&a), "logged", "{}", a.raw);
    let got = next_event(&mut get, &mut buf, Duration::from_secs(10), is_log).await.expect("the info message");
    assert_eq!(got["params"]["level"], "info", "{got}");
    // Errors only from now on: the process still logs at info, and the gateway holds it back.
    let set = alice.request(2, "logging/setLevel", json!({"level": "error"})).await;
    assert_eq!(set.body["result"], json!({}), "{}", set.raw);
    let a = alice.request(3, "tools/call", json!({"name": "pc__log", "arguments": {}})).await;
    assert_eq!(text(&a), "logged", "{}", a.raw);
    assert!(next_event(&mut get, &mut buf, Duration::from_millis(700), is_log).await.is_none(), "info got through");
}
