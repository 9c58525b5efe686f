//! Callers stay apart, tried as an attacker would: a session id used by another API key is
//! unknown to it (and cannot be ended by it); relayed server-to-client request ids cannot be
//! guessed or answered from elsewhere; cached private results and idempotency records follow
//! the key, not its position in the list (two gateways sharing real Redis); a caller asking
//! above its priority ceiling is lowered; only admin keys clear the cache or see `/readyz` in
//! detail; and client-facing errors carry no upstream error text.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const ALICE: &str = "alice-key-0123456789abcdef";
const MALLORY: &str = "mallory-key-0123456789abcdef";

fn echo_call(id: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "up__echo", "arguments": {"message": message}}})
}

#[tokio::test]
async fn another_caller_cannot_use_or_end_a_session() {
    let toml = format!(
        "[server]\napi_keys = [{{ key = {ALICE:?}, name = \"alice\" }}, {MALLORY:?}]\n{}",
        stdio_upstream("up", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let url = gw.url("/mcp");
    let session = open_session(&url, ALICE, json!({})).await;
    assert_eq!(text(&legacy_post(&url, Some(ALICE), Some(&session), &echo_call(1, "mine")).await), "mine");
    // Mallory holds Alice's session id: every use is a 404, word for word as for an unknown id.
    let unknown = legacy_post(&url, Some(MALLORY), Some("no-such-session"), &echo_call(2, "x")).await;
    assert_eq!((unknown.status, unknown.error_code()), (404, Some(-32001)), "{}", unknown.raw);
    let stolen = legacy_post(&url, Some(MALLORY), Some(&session), &echo_call(2, "x")).await;
    assert_eq!((stolen.status, &stolen.raw), (404, &unknown.raw), "a stolen session id is an unknown one");
    let stream = client()
        .get(&url)
        .bearer_auth(MALLORY)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 404, "nor can it open the session's GET stream");
    let delete = client().delete(&url).bearer_auth(MALLORY).header("mcp-session-id", &session).send().await.unwrap();
    assert_eq!(delete.status(), 404, "nor end it");
    // Alice's session is untouched, and she can end it herself.
    assert_eq!(text(&legacy_post(&url, Some(ALICE), Some(&session), &echo_call(3, "still")).await), "still");
    let delete = client().delete(&url).bearer_auth(ALICE).header("mcp-session-id", &session).send().await.unwrap();
    assert_eq!(delete.status(), 200);
    assert_eq!(legacy_post(&url, Some(ALICE), Some(&session), &echo_call(4, "x")).await.status, 404);
}

#[tokio::test]
async fn relayed_request_ids_cannot_be_guessed_or_answered_by_another_caller() {
    let upstream = HttpUpstream::start("legacy").await;
    let toml = format!("[server]\napi_keys = [{ALICE:?}, {MALLORY:?}]\n{}", upstream.table("h"));
    let gw = Gateway::start(&toml).await;
    let url = gw.url("/mcp");
    let session = open_session(&url, ALICE, json!({"sampling": {}})).await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "h__ask", "arguments": {"question": "who are you?"}}});
    let resp = client()
        .post(&url)
        .bearer_auth(ALICE)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &session)
        .json(&call)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let asked = next_event(&mut stream, &mut buf, Duration::from_secs(20), |e| e["method"] == "sampling/createMessage")
        .await
        .expect("the event came");
    let id = asked["id"].as_str().unwrap_or_else(|| panic!("a string id: {asked}")).to_string();
    let random = id.strip_prefix("sekisho-").unwrap_or_else(|| panic!("{id}"));
    assert!(
        random.len() == 32 && random.bytes().all(|b| b.is_ascii_hexdigit()),
        "128 random bits, not a counter: {id}"
    );
    let answer = |said: &str| {
        json!({"jsonrpc": "2.0", "id": id, "result": {"role": "assistant", "model": "m",
               "content": {"type": "text", "text": said}}})
    };
    // Mallory, holding Alice's session id and the request id, cannot answer in her place.
    let forged = legacy_post(&url, Some(MALLORY), Some(&session), &answer("mallory here")).await;
    assert_eq!(forged.status, 404, "{}", forged.raw);
    // Nor does the id mean anything in another session, even Alice's own.
    let other = open_session(&url, ALICE, json!({"sampling": {}})).await;
    assert_eq!(legacy_post(&url, Some(ALICE), Some(&other), &answer("wrong session")).await.status, 202);
    // Alice's answer reaches the upstream, and only hers.
    assert_eq!(legacy_post(&url, Some(ALICE), Some(&session), &answer("alice here")).await.status, 202);
    let done =
        next_event(&mut stream, &mut buf, Duration::from_secs(20), |e| e["id"] == 7).await.expect("the event came");
    assert_eq!(done.pointer("/result/content/0/text"), Some(&json!("the client said: alice here")), "{done}");
}

fn redis_prefix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("sekisho-callers-{}-{nanos}:", std::process::id())
}

/// A modern `tools/call` of `up__echo` as `bearer`, with an optional idempotency key.
async fn echo_as(url: &str, bearer: &str, message: &str, idempotency_key: Option<&str>) -> Answer {
    let mut params = json!({"name": "up__echo", "arguments": {"message": message}});
    if let Some(k) = idempotency_key {
        params["_meta"] = json!({"io.sekisho/idempotencyKey": k});
    }
    modern_as(url, Some(bearer), 1, "tools/call", params).await
}

fn meta_status(a: &Answer, member: &str) -> String {
    let pointer = format!("/result/_meta/io.sekisho~1{member}/status");
    a.body.pointer(&pointer).and_then(Value::as_str).unwrap_or("none").to_string()
}

#[tokio::test]
async fn private_results_and_idempotency_records_follow_the_key_not_its_position() {
    let prefix = redis_prefix();
    let gateway = |keys: [&str; 2]| {
        let toml = format!(
            "[server]\napi_keys = [{:?}, {:?}]\n[redis]\nurl = \"redis://127.0.0.1:6379\"\nprefix = {prefix:?}\nentry_secret = \"callers-entry-secret-0123456789abcdef\"\n{}trusted = true\n",
            keys[0],
            keys[1],
            stdio_upstream("up", "legacy")
        );
        async move { Gateway::start(&toml).await }
    };
    // Alice is the first key of one replica and the second of another (keys reordered, as
    // after removing or adding one). Both start first: a gateway's first listing of its
    // upstream invalidates that upstream's cached results fleet-wide.
    let one = gateway([ALICE, MALLORY]).await;
    let two = gateway([MALLORY, ALICE]).await;
    let first = echo_as(&one.url("/mcp"), ALICE, "alice's secret", None).await;
    assert_eq!(meta_status(&first, "cache"), "miss", "{}", first.raw);
    let keyed = echo_as(&one.url("/mcp"), ALICE, "alice's order", Some("order-1")).await;
    assert_eq!(text(&keyed), "alice's order");
    let url = two.url("/mcp");
    let mallory = echo_as(&url, MALLORY, "alice's secret", None).await;
    assert_eq!(meta_status(&mallory, "cache"), "miss", "Alice's private result is not Mallory's: {}", mallory.raw);
    let replay = echo_as(&url, MALLORY, "alice's order", Some("order-1")).await;
    assert_eq!(meta_status(&replay, "idempotency"), "none", "nor her idempotency record: {}", replay.raw);
    // Alice keeps hers on either replica: the id is the key's, not its position's.
    let alice = echo_as(&url, ALICE, "alice's secret", None).await;
    assert_eq!(
        (meta_status(&alice, "cache"), alice.body.pointer("/result/_meta/io.sekisho~1cache/level")),
        ("hit".into(), Some(&json!("l2")))
    );
    let again = echo_as(&url, ALICE, "alice's order", Some("order-1")).await;
    assert_eq!(meta_status(&again, "idempotency"), "replayed", "{}", again.raw);
}

/// The line of `/metrics` that starts with `series`, if any.
async fn metric(gw: &Gateway, series: &str) -> Option<String> {
    let mut req = client().get(gw.url("/metrics"));
    if let Some(key) = &gw.bearer {
        req = req.bearer_auth(key);
    }
    let text = req.send().await.unwrap().text().await.unwrap();
    text.lines().find(|l| l.starts_with(series)).map(str::to_string)
}

/// A modern `tools/call` of `work__sleep_ms` as `key`, asking for `priority` in `_meta` or, with
/// `header`, in the `Sekisho-Priority` header.
async fn sleep_as(url: &str, key: Option<&str>, id: i64, ms: u64, priority: Option<&str>, header: bool) -> Answer {
    let mut params = json!({"name": "work__sleep_ms", "arguments": {"ms": ms}, "_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}}});
    let mut req = client()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", "work__sleep_ms");
    match (priority, header) {
        (Some(p), true) => req = req.header("sekisho-priority", p),
        (Some(p), false) => params["_meta"]["io.sekisho/priority"] = p.into(),
        (None, _) => {}
    }
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
    read(req.json(&body).send().await.unwrap()).await
}

/// Hold the gateway's only slot with a long call of `holder`, queue a call of `asker` that asks
/// for `ask` (in `_meta`, or with `header` in the `Sekisho-Priority` header), then send a call
/// of `third` asking for `then`: the queue holds one call, so the lower of the two waiting is
/// shed (the newcomer when neither is lower). Returns the asker's and the third's answers.
async fn contend(
    gw: &Gateway,
    callers: [Option<&str>; 3],
    ask: &str,
    then: Option<&str>,
    header: bool,
) -> (Answer, Answer) {
    let url = gw.url("/mcp");
    let held = {
        let (url, key) = (url.clone(), callers[0].map(str::to_string));
        tokio::spawn(async move { sleep_as(&url, key.as_deref(), 1, 3000, None, false).await })
    };
    eventually("the holder in flight", Duration::from_secs(10), async || {
        let n = gw.readyz().await["upstreams"]["work"]["in_flight"].clone();
        if n == 1 { Ok(()) } else { Err(n) }
    })
    .await;
    let asked = {
        let (url, key, ask) = (url.clone(), callers[1].map(str::to_string), ask.to_string());
        tokio::spawn(async move { sleep_as(&url, key.as_deref(), 2, 10, Some(&ask), header).await })
    };
    eventually("the asker queued", Duration::from_secs(10), async || {
        let queued = metric(gw, "sekisho_admission_queued{limit=\"gateway\"}").await.unwrap_or_default();
        if queued.ends_with(" 1") { Ok(()) } else { Err(queued) }
    })
    .await;
    let third = sleep_as(&url, callers[2], 3, 10, then, header).await;
    let asked = asked.await.unwrap();
    assert!(held.await.unwrap().error_code().is_none());
    (asked, third)
}

const ADMISSION: &str = "[admission]\nmax_concurrent = 1\nqueue_size = 1\nqueue_timeout = \"20s\"\naging = \"1h\"\n";

#[tokio::test]
async fn a_caller_asking_above_its_ceiling_is_lowered_not_refused() {
    const BOSS: &str = "boss-key-0123456789abcdef";
    const BATCH: &str = "batch-key-0123456789abcdef";
    const STD: &str = "std-key-0123456789abcdef";
    let toml = format!(
        "[server]\napi_keys = [{{ key = {BOSS:?}, name = \"boss\", role = \"admin\", priority = \"critical\" }}, \
         {{ key = {BATCH:?}, name = \"batch\", priority = \"low\" }}, {{ key = {STD:?}, name = \"std\" }}]\n{ADMISSION}{}",
        stdio_upstream("work", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    // A low key asking for critical runs at low: a medium call that comes later displaces it,
    // whether it asked in `_meta` or in the header.
    for (round, header) in [(1, false), (2, true)] {
        let (batch, std) = contend(&gw, [Some(BOSS), Some(BATCH), Some(STD)], "critical", None, header).await;
        assert_eq!(batch.error_code(), Some(-32013), "round {round}: the batch call was shed: {}", batch.raw);
        assert!(std.error_code().is_none(), "round {round}: the medium call ran: {}", std.raw);
        let series = "sekisho_shed_total{limit=\"gateway\",priority=\"low\",caller=\"batch\"}";
        assert_eq!(metric(&gw, series).await, Some(format!("{series} {round}")));
    }
    // Lowered, not refused: with room to run, the ask is served.
    assert!(sleep_as(&gw.url("/mcp"), Some(BATCH), 4, 1, Some("critical"), false).await.error_code().is_none());
}

#[tokio::test]
async fn anonymous_callers_may_ask_for_medium_at_most() {
    let gw = Gateway::start(&format!("{ADMISSION}{}", stdio_upstream("work", "legacy"))).await;
    // The queued "critical" ask runs at medium; the "high" ask that follows also runs at
    // medium, so it finds no lower waiter to displace and is the one shed, as medium.
    let (queued, high) = contend(&gw, [None, None, None], "critical", Some("high"), false).await;
    assert!(queued.error_code().is_none(), "{}", queued.raw);
    assert_eq!(high.error_code(), Some(-32013), "{}", high.raw);
    let shed = metric(&gw, "sekisho_shed_total{").await.unwrap_or_default();
    assert_eq!(shed, "sekisho_shed_total{limit=\"gateway\",priority=\"medium\",caller=\"anon\"} 1");
}

#[tokio::test]
async fn only_admin_keys_clear_the_cache_or_see_readyz_in_detail() {
    const OPS: &str = "ops-key-0123456789abcdef";
    const APP: &str = "app-key-0123456789abcdef";
    let toml = format!(
        "[server]\napi_keys = [{{ key = {OPS:?}, name = \"ops\", role = \"admin\" }}, {{ key = {APP:?}, name = \"app\" }}]\n{}",
        stdio_upstream("up", "legacy")
    );
    let gw = Gateway::start(&toml).await;
    let clear = |key: Option<&'static str>| {
        let mut req = client().post(gw.url("/admin/cache/clear"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(clear(None).await, 401);
    assert_eq!(clear(Some(APP)).await, 403, "a client key is not an admin");
    assert_eq!(clear(Some(OPS)).await, 200);
    let readyz = |key: Option<&'static str>, host: Option<&'static str>| {
        let mut req = client().get(gw.url("/readyz"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(h) = host {
            req = req.header("host", h);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // Probes (no key) and client keys learn ready or not, nothing about upstreams or PIDs.
    assert_eq!(readyz(None, None).await, (200, json!({"ready": true})));
    assert_eq!(readyz(Some(APP), None).await, (200, json!({"ready": true})));
    assert_eq!(readyz(Some("wrong-key-0123456789abcdef"), None).await, (200, json!({"ready": true})));
    assert_eq!(
        readyz(Some(OPS), Some("evil.example.com")).await,
        (200, json!({"ready": true})),
        "a rebinding page learns nothing"
    );
    let (status, detail) = readyz(Some(OPS), None).await;
    assert_eq!(status, 200);
    assert!(detail["upstreams"]["up"]["replicas"][0]["pid"].is_u64(), "admins see everything: {detail}");
}

#[tokio::test]
async fn clients_get_a_short_reason_not_the_upstreams_error_text() {
    let upstream = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&upstream.table("h")).await;
    let url = gw.url("/mcp");
    let a = modern(&url, 1, "tools/call", json!({"name": "h__http_error", "arguments": {}})).await;
    let message = a.body.pointer("/error/message").and_then(Value::as_str).unwrap_or_else(|| panic!("{}", a.raw));
    assert_eq!(message, "upstream \"h\" connection failed: HTTP 500", "{}", a.raw);
    assert!(!a.raw.contains("db.internal.corp") && !a.raw.contains("hunter2"), "{}", a.raw);
    let a = modern(&url, 2, "tools/call", json!({"name": "h__garbage", "arguments": {}})).await;
    let message = a.body.pointer("/error/message").and_then(Value::as_str).unwrap_or_else(|| panic!("{}", a.raw));
    assert_eq!(message, "upstream \"h\" sent an invalid response", "{}", a.raw);
    assert!(!a.raw.contains("10.1.2.3") && !a.raw.contains("secret.py"), "{}", a.raw);
}
