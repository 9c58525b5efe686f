//! Era bridging in both directions (issue 12 item 2), end to end against real echo upstreams
//! over HTTP: a modern upstream's `input_required` asked of a legacy client on its call's
//! stream, and a legacy upstream's server-to-client request carried to a modern client as
//! `input_required`, with the `requestState` sealed and bound to its caller.

mod common;

use std::time::Duration;

use common::open_legacy_session as open;
use common::{Answer, Gateway, HttpUpstream, client, modern_as, next_event, read, text};
use serde_json::{Value, json};

const ALICE: &str = "alice-key-0123456789";
const MALLORY: &str = "mallory-key-0123456789";

fn keys() -> String {
    format!("[server]\napi_keys = [{ALICE:?}, {MALLORY:?}]\ninput_timeout = \"2s\"\n")
}

fn legacy(url: &str, session: &str) -> reqwest::RequestBuilder {
    client()
        .post(url)
        .bearer_auth(ALICE)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", session)
}

fn sampled(id: &Value, said: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"role": "assistant", "model": "m",
           "content": {"type": "text", "text": said}}})
}

#[tokio::test]
async fn a_legacy_client_is_asked_what_a_modern_upstream_needs_round_after_round() {
    let upstream = HttpUpstream::start("modern").await;
    let gw = Gateway::start(&format!("{}{}", keys(), upstream.table("m"))).await;
    let url = gw.url("/mcp");
    let session = open(&url, ALICE, json!({"sampling": {}})).await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "m__ask", "arguments": {"question": "who are you?", "rounds": 2}}});
    let resp = legacy(&url, &session).json(&call).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    for said in ["one", "two"] {
        let asked =
            next_event(&mut stream, &mut buf, Duration::from_secs(20), |e| e["method"] == "sampling/createMessage")
                .await
                .expect("the upstream's input request reached the client as a request on the call's stream");
        assert_eq!(asked.pointer("/params/messages/0/content/text"), Some(&json!("who are you?")), "{asked}");
        let posted = legacy(&url, &session).json(&sampled(&asked["id"], said)).send().await.unwrap();
        assert_eq!(posted.status(), 202);
    }
    let done = next_event(&mut stream, &mut buf, Duration::from_secs(20), |e| e["id"] == 7).await.expect("the answer");
    assert_eq!(
        done.pointer("/result/content/0/text"),
        Some(&json!("the client said: two")),
        "the answers went upstream as inputResponses with the upstream's requestState: {done}"
    );
    assert!(done["result"].get("resultType").is_none() || done["result"]["resultType"] == "complete", "{done}");

    // A client that did not declare sampling cannot be asked: a clear error, not a hang.
    let plain = open(&url, ALICE, json!({})).await;
    let refused = read(legacy(&url, &plain).json(&call).send().await.unwrap()).await;
    assert_eq!(refused.error_code(), Some(-32603), "{}", refused.raw);
    assert!(refused.raw.contains("did not declare the sampling capability"), "{}", refused.raw);
}

/// A modern `tools/call` of `name` as `bearer` declaring sampling, with extra params.
async fn ask_modern(url: &str, bearer: &str, id: i64, extra: Value) -> Answer {
    let mut params = json!({"name": "l__ask", "arguments": {"question": "who are you?"},
                            "_meta": {"io.modelcontextprotocol/clientCapabilities": {"sampling": {}}}});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    modern_as(url, Some(bearer), id, "tools/call", params).await
}

#[tokio::test]
async fn a_modern_client_answers_a_legacy_upstreams_request_through_input_required() {
    let upstream = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&format!("{}{}", keys(), upstream.table("l"))).await;
    let url = gw.url("/mcp");

    let first = ask_modern(&url, ALICE, 1, json!({})).await;
    assert_eq!(first.status, 200, "{}", first.raw);
    let result = &first.body["result"];
    assert_eq!(result["resultType"], "input_required", "{}", first.raw);
    let requests = result["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(requests.len(), 1, "{}", first.raw);
    let (key, request) = requests.iter().next().unwrap();
    assert_eq!(request["method"], "sampling/createMessage");
    assert_eq!(request.pointer("/params/messages/0/content/text"), Some(&json!("who are you?")));
    let state = result["requestState"].as_str().expect("requestState").to_string();
    let answer =
        json!({ key.clone(): {"role": "assistant", "model": "m", "content": {"type": "text", "text": "alice"}} });

    // Mallory, holding Alice's state, cannot answer in her place; a tampered state is refused.
    let stolen = ask_modern(&url, MALLORY, 2, json!({"inputResponses": answer, "requestState": state})).await;
    assert_eq!(stolen.error_code(), Some(-32602), "{}", stolen.raw);
    let mut bad = state.clone().into_bytes();
    bad[30] = if bad[30] == b'A' { b'B' } else { b'A' };
    let tampered =
        ask_modern(&url, ALICE, 3, json!({"inputResponses": answer, "requestState": String::from_utf8(bad).unwrap()}))
            .await;
    assert_eq!(tampered.error_code(), Some(-32602), "{}", tampered.raw);

    // Alice's answer reaches the upstream's pending request, and the call completes.
    let done = ask_modern(&url, ALICE, 4, json!({"inputResponses": answer, "requestState": state})).await;
    assert_eq!(done.body["id"], 4, "{}", done.raw);
    assert_eq!(text(&done), "the client said: alice", "{}", done.raw);
    assert_eq!(done.body["result"]["resultType"], "complete", "{}", done.raw);
    // The exchange is over: the same state again names nothing.
    let again = ask_modern(&url, ALICE, 5, json!({"inputResponses": answer, "requestState": state})).await;
    assert_eq!(again.error_code(), Some(-32602), "{}", again.raw);
}

#[tokio::test]
async fn a_parked_call_whose_client_never_returns_is_cancelled_after_input_timeout() {
    let upstream = HttpUpstream::start("legacy").await;
    let gw = Gateway::start(&format!("{}{}", keys(), upstream.table("l"))).await;
    let url = gw.url("/mcp");
    let first = ask_modern(&url, ALICE, 1, json!({})).await;
    let state = first.body["result"]["requestState"].as_str().expect("requestState").to_string();
    let key = first.body["result"]["inputRequests"].as_object().unwrap().keys().next().unwrap().clone();
    common::eventually("the parked call expired (input_timeout 2s)", Duration::from_secs(15), async || {
        let late = ask_modern(
            &url,
            ALICE,
            2,
            json!({"inputResponses": {key.clone(): {"role": "assistant", "model": "m", "content": {"type": "text", "text": "late"}}},
                   "requestState": state}),
        )
        .await;
        if late.error_code() == Some(-32602) { Ok(()) } else { Err(late.raw) }
    })
    .await;
    // A client without sampling never gets input_required: the upstream's request is refused
    // and its call answers for itself.
    let plain =
        modern_as(&url, Some(ALICE), 3, "tools/call", json!({"name": "l__ask", "arguments": {"question": "q"}})).await;
    assert!(text(&plain).contains("cannot be relayed"), "{}", plain.raw);
}

#[tokio::test]
async fn legacy_subscriptions_to_a_modern_upstream_ride_one_shared_listen_stream() {
    use common::Legacy;
    let upstream = HttpUpstream::start("modern").await;
    let gw = Gateway::start(&upstream.table("m")).await;
    let url = gw.url("/servers/m/mcp");
    let watched = async || {
        let a = common::modern(&url, 90, "tools/call", json!({"name": "subscriptions", "arguments": {}})).await;
        text(&a)
    };
    let (a, b) = (Legacy::open(&url, "2025-11-25").await, Legacy::open(&url, "2025-11-25").await);
    let (mut a_events, mut b_events) = (a.listen().await, b.listen().await);
    let (mut a_buf, mut b_buf) = (String::new(), String::new());
    let uri = "echo://static/hello";
    for s in [&a, &b] {
        let sub = s.request(1, "resources/subscribe", json!({"uri": uri})).await;
        assert_eq!(sub.body["result"], json!({}), "the subscribe is answered, not refused: {}", sub.raw);
    }
    common::eventually("the upstream's listen filter watches the resource", Duration::from_secs(15), async || {
        let now = watched().await;
        if now == format!("[{uri:?}]") { Ok(()) } else { Err(now) }
    })
    .await;
    let touch = async || {
        let t = common::modern(&url, 91, "tools/call", json!({"name": "touch", "arguments": {"uri": uri}})).await;
        assert_eq!(text(&t), format!("touched {uri}"), "{}", t.raw);
    };
    touch().await;
    let updated = |e: &Value| e["method"] == "notifications/resources/updated" && e["params"]["uri"] == uri;
    assert!(next_event(&mut a_events, &mut a_buf, Duration::from_secs(15), updated).await.is_some(), "A's update");
    assert!(next_event(&mut b_events, &mut b_buf, Duration::from_secs(15), updated).await.is_some(), "B's update");
    // A leaves; B still gets updates, and the upstream still watches the resource.
    assert_eq!(a.request(2, "resources/unsubscribe", json!({"uri": uri})).await.body["result"], json!({}));
    assert_eq!(watched().await, format!("[{uri:?}]"), "one unsubscribe does not end another's updates");
    touch().await;
    assert!(next_event(&mut b_events, &mut b_buf, Duration::from_secs(15), updated).await.is_some(), "B's update");
    assert!(
        next_event(&mut a_events, &mut a_buf, Duration::from_millis(500), updated).await.is_none(),
        "A unsubscribed"
    );
    // The last one leaves: the upstream stops watching.
    assert_eq!(b.request(3, "resources/unsubscribe", json!({"uri": uri})).await.body["result"], json!({}));
    common::eventually("the upstream's listen filter dropped the resource", Duration::from_secs(15), async || {
        let now = watched().await;
        if now == "[]" { Ok(()) } else { Err(now) }
    })
    .await;
}
