//! The tasks extension (`io.modelcontextprotocol/tasks`, ext-tasks 2026-07-28) through the
//! real binary, in front of two modern echo upstreams that mint the same task ids (`task-1`,
//! `task-2`, …) and a legacy one: task ids the clients see are sealed by the gateway and bound
//! to their caller, `tasks/get|update|cancel` reach the upstream that holds the task, another
//! caller or an altered id gets "not found" exactly as an unknown id does, and the extension
//! is declared to modern clients only.

#[path = "support/binary.rs"]
mod binary;
mod common;

use binary::Binary;
use common::*;
use serde_json::{Value, json};

const OPS: &str = "ops-0123456789abcdef0123";
const ALICE: &str = "alice-0123456789abcdef01";
const MALLORY: &str = "mallory-0123456789abcdef";
const EXT: &str = "io.modelcontextprotocol/tasks";

/// `_meta` declaring the tasks extension in the request's client capabilities.
fn with_tasks(mut params: Value) -> Value {
    params["_meta"] = json!({"io.modelcontextprotocol/clientCapabilities": {"extensions": {EXT: {}}}});
    params
}

async fn start() -> (Binary, HttpUpstream, HttpUpstream, HttpUpstream) {
    let a = HttpUpstream::start_with(&["--era", "modern", "--tasks"]).await;
    let b = HttpUpstream::start_with(&["--era", "modern", "--tasks"]).await;
    let l = HttpUpstream::start_with(&["--era", "legacy"]).await;
    let server = format!(
        "api_keys = [{{ key = {OPS:?}, name = \"ops\", role = \"admin\" }}, {{ key = {ALICE:?}, name = \"alice\" }}, \
         {{ key = {MALLORY:?}, name = \"mallory\" }}]"
    );
    let toml = format!("{}{}{}", a.table("a"), b.table("b"), l.table("l"));
    (Binary::start(&server, &toml, Some(OPS)).await, a, b, l)
}

/// A modern request as `key`, declaring the tasks extension.
async fn tasked(gw: &Binary, path: &str, key: &str, method: &str, params: Value) -> Answer {
    modern_as(&gw.url(path), Some(key), 1, method, with_tasks(params)).await
}

/// Create a task with `tool` echoing `text`, finishing after `ms`; its (sealed) id.
async fn create(gw: &Binary, key: &str, tool: &str, text: &str, ms: u64) -> String {
    let a = tasked(gw, "/mcp", key, "tools/call", json!({"name": tool, "arguments": {"text": text, "ms": ms}})).await;
    assert_eq!(a.body["result"]["resultType"], "task", "{}", a.raw);
    a.body["result"]["taskId"].as_str().unwrap().to_string()
}

/// `tasks/get` until the task is terminal.
async fn settle(gw: &Binary, key: &str, id: &str) -> Value {
    eventually("the task reached a terminal status", std::time::Duration::from_secs(10), async || {
        let a = tasked(gw, "/mcp", key, "tasks/get", json!({"taskId": id})).await;
        let status = a.body["result"]["status"].as_str().unwrap_or_default().to_string();
        if ["completed", "cancelled", "failed"].contains(&status.as_str()) { Ok(a.body) } else { Err(a.raw) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_ids_are_sealed_routed_to_their_upstream_and_bound_to_their_caller() {
    let (gw, _a, _b, _l) = start().await;
    let from_a = create(&gw, ALICE, "a__task_echo", "from-a", 0).await;
    let from_b = create(&gw, ALICE, "b__task_echo", "from-b", 0).await;
    // Both upstreams called their task `task-1`; the client holds two different sealed ids.
    assert!(!from_a.starts_with("task-") && !from_b.starts_with("task-"), "{from_a} {from_b}");
    assert_ne!(from_a, from_b);

    // tasks/update reaches the task's own upstream (its result counts the updates).
    let ack = tasked(&gw, "/mcp", ALICE, "tasks/update", json!({"taskId": from_b, "inputResponses": {}})).await;
    assert_eq!(ack.body["result"], json!({"resultType": "complete"}), "{}", ack.raw);

    let done_a = settle(&gw, ALICE, &from_a).await;
    assert_eq!(done_a["result"]["taskId"], from_a.as_str(), "tasks/get echoes the id the client holds");
    assert_eq!(done_a["result"]["status"], "completed");
    assert_eq!(done_a["result"]["result"]["content"][0]["text"], "echo: from-a (updates: 0)");
    let done_b = settle(&gw, ALICE, &from_b).await;
    assert_eq!(done_b["result"]["result"]["content"][0]["text"], "echo: from-b (updates: 1)");

    // Another caller, an altered id and an unknown id get the same answer.
    let unknown = tasked(&gw, "/mcp", ALICE, "tasks/get", json!({"taskId": "task-1"})).await;
    assert_eq!(unknown.error_code(), Some(-32602), "{}", unknown.raw);
    let foreign = tasked(&gw, "/mcp", MALLORY, "tasks/get", json!({"taskId": from_a})).await;
    assert_eq!(foreign.body["error"], unknown.body["error"], "another caller's id is unknown to it");
    assert_eq!(foreign.status, unknown.status);
    for method in ["tasks/cancel", "tasks/update"] {
        let a = tasked(&gw, "/mcp", MALLORY, method, json!({"taskId": from_a, "inputResponses": {}})).await;
        assert_eq!(a.body["error"], unknown.body["error"], "{method}: {}", a.raw);
    }
    let mut altered = from_a.clone().into_bytes();
    let mid = altered.len() / 2;
    altered[mid] = if altered[mid] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let tampered = tasked(&gw, "/mcp", ALICE, "tasks/get", json!({"taskId": altered})).await;
    assert_eq!(tampered.body["error"], unknown.body["error"], "{}", tampered.raw);

    // Per-upstream routes: the id is good on its own upstream's route only.
    let own = tasked(&gw, "/servers/a/mcp", ALICE, "tasks/get", json!({"taskId": from_a})).await;
    assert_eq!(own.body["result"]["status"], "completed", "{}", own.raw);
    let other = tasked(&gw, "/servers/b/mcp", ALICE, "tasks/get", json!({"taskId": from_a})).await;
    assert_eq!(other.body["error"], unknown.body["error"], "{}", other.raw);

    // Cancellation reaches the task's upstream.
    let slow = create(&gw, ALICE, "a__task_echo", "slow", 60_000).await;
    let ack = tasked(&gw, "/mcp", ALICE, "tasks/cancel", json!({"taskId": slow})).await;
    assert_eq!(ack.body["result"], json!({"resultType": "complete"}), "{}", ack.raw);
    assert_eq!(settle(&gw, ALICE, &slow).await["result"]["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extension_is_negotiated_and_refused_as_the_extension_says() {
    let (gw, _a, _b, _l) = start().await;
    let discover = modern_as(&gw.url("/mcp"), Some(ALICE), 1, "server/discover", json!({})).await;
    assert_eq!(discover.body["result"]["capabilities"]["extensions"][EXT], json!({}), "{}", discover.raw);
    for path in ["/servers/a/mcp", "/servers/l/mcp"] {
        let d = modern_as(&gw.url(path), Some(ALICE), 1, "server/discover", json!({})).await;
        let declared = d.body["result"]["capabilities"].pointer(&format!("/extensions/{}", EXT.replace('/', "~1")));
        assert_eq!(declared.is_some(), path == "/servers/a/mcp", "{path}: {}", d.raw);
    }

    // Without the extension in the request's capabilities: -32021 naming it; and the tool runs
    // as an ordinary call.
    let id = create(&gw, ALICE, "a__task_echo", "x", 0).await;
    let undeclared = modern_as(&gw.url("/mcp"), Some(ALICE), 1, "tasks/get", json!({"taskId": id})).await;
    assert_eq!(undeclared.error_code(), Some(-32021), "{}", undeclared.raw);
    assert_eq!(undeclared.body["error"]["data"]["requiredCapabilities"]["extensions"][EXT], json!({}));
    let plain = modern_as(
        &gw.url("/mcp"),
        Some(ALICE),
        1,
        "tools/call",
        json!({"name": "a__task_echo", "arguments": {"text": "y"}}),
    )
    .await;
    assert_eq!(text(&plain), "echo: y");
    let listen = client()
        .post(gw.url("/mcp"))
        .bearer_auth(ALICE)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "subscriptions/listen")
        .json(&json!({"jsonrpc": "2.0", "id": 9, "method": "subscriptions/listen", "params": {
            "notifications": {"taskIds": [id]},
            "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(read(listen).await.error_code(), Some(-32021));

    // The routing header must name the task id the body names (-32020).
    let wrong_name = client()
        .post(gw.url("/mcp"))
        .bearer_auth(ALICE)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tasks/get")
        .header("mcp-name", "someone-else")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": {"taskId": id, "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {"extensions": {EXT: {}}}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(read(wrong_name).await.error_code(), Some(-32020));

    // The 2025-11-25 experimental methods are gone from the extension.
    for method in ["tasks/result", "tasks/list"] {
        let a = tasked(&gw, "/mcp", ALICE, method, json!({"taskId": id})).await;
        assert_eq!(a.error_code(), Some(-32601), "{method}: {}", a.raw);
        let a = tasked(&gw, "/servers/a/mcp", ALICE, method, json!({"taskId": id})).await;
        assert_eq!(a.error_code(), Some(-32601), "{method} on a per-upstream route: {}", a.raw);
    }

    // Legacy clients: never declared, the methods do not exist, and no call becomes a task
    // (a legacy upstream's call loses its experimental `task` augmentation).
    let (session, init) = legacy_open(&gw, ALICE).await;
    assert!(init["result"]["capabilities"].pointer("/extensions/io.modelcontextprotocol~1tasks").is_none(), "{init}");
    let get = legacy_request(&gw, ALICE, &session, "tasks/get", json!({"taskId": id})).await;
    assert_eq!(get.error_code(), Some(-32601), "{}", get.raw);
    let call =
        legacy_request(&gw, ALICE, &session, "tools/call", json!({"name": "a__task_echo", "arguments": {"text": "z"}}))
            .await;
    assert_eq!(text(&call), "echo: z");
    let params = json!({"name": "l__echo", "arguments": {"message": "m"}, "task": {"ttl": 1000}});
    let call = legacy_request(&gw, ALICE, &session, "tools/call", params).await;
    assert!(call.body["result"]["content"].is_array(), "{}", call.raw);
}

/// A legacy session of `key` on `/mcp`: its id and the `initialize` answer.
async fn legacy_open(gw: &Binary, key: &str) -> (String, Value) {
    let a = read(
        client()
            .post(gw.url("/mcp"))
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {"extensions": {EXT: {}}},
                "clientInfo": {"name": "test", "version": "0"}}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let session = a.headers.get("mcp-session-id").expect("session id").to_str().unwrap().to_string();
    let n = legacy_post(gw, key, &session, json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    assert_eq!(n.status, 202);
    (session, a.body)
}

async fn legacy_post(gw: &Binary, key: &str, session: &str, body: Value) -> Answer {
    read(
        client()
            .post(gw.url("/mcp"))
            .bearer_auth(key)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn legacy_request(gw: &Binary, key: &str, session: &str, method: &str, params: Value) -> Answer {
    legacy_post(gw, key, session, json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_polled_on_the_replica_that_created_it() {
    // One upstream with two replicas that share nothing (each mints task-1, task-2, …).
    let r1 = HttpUpstream::start_with(&["--era", "modern", "--tasks"]).await;
    let r2 = HttpUpstream::start_with(&["--era", "modern", "--tasks"]).await;
    let server = format!(
        "api_keys = [{{ key = {OPS:?}, name = \"ops\", role = \"admin\" }}, {{ key = {ALICE:?}, name = \"alice\" }}]"
    );
    let toml = format!("[upstreams.r]\nurls = [{:?}, {:?}]\n", r1.url, r2.url);
    let gw = Binary::start(&server, &toml, Some(OPS)).await;
    let mut ids = Vec::new();
    for n in 0..8 {
        ids.push((n, create(&gw, ALICE, "r__task_echo", &format!("n{n}"), 0).await));
    }
    for (n, id) in ids {
        for _ in 0..3 {
            let done = settle(&gw, ALICE, &id).await;
            assert_eq!(done["result"]["result"]["content"][0]["text"], format!("echo: n{n} (updates: 0)"), "{done}");
        }
    }
}

/// A `subscriptions/listen` of `key` at `/mcp` asking for the status of `task_ids` (declaring
/// the extension): its SSE stream and the acknowledgement's `notifications`.
async fn listen_for(
    gw: &Binary,
    key: &str,
    task_ids: &[&str],
) -> (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin + use<>, String, Value) {
    let resp = client()
        .post(gw.url("/mcp"))
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "subscriptions/listen")
        .json(&json!({"jsonrpc": "2.0", "id": "sub-1", "method": "subscriptions/listen", "params": {
            "notifications": {"taskIds": task_ids},
            "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                      "io.modelcontextprotocol/clientCapabilities": {"extensions": {EXT: {}}}}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let limit = std::time::Duration::from_secs(10);
    let ack = next_event(&mut stream, &mut buf, limit, |e| e["method"] == "notifications/subscriptions/acknowledged")
        .await
        .expect("acknowledged");
    (stream, buf, ack["params"]["notifications"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_status_notifications_are_relayed_to_their_caller_only() {
    let (gw, _a, _b, _l) = start().await;
    let id = create(&gw, ALICE, "a__task_echo", "watched", 400).await;
    // Mallory names Alice's task: not agreed to, and nothing comes.
    let (mut theirs, mut their_buf, their_ack) = listen_for(&gw, MALLORY, &[&id]).await;
    assert!(their_ack.get("taskIds").is_none(), "{their_ack}");
    let (mut mine, mut buf, ack) = listen_for(&gw, ALICE, &[&id, "not-a-task-id"]).await;
    assert_eq!(ack["taskIds"], json!([id]), "only the caller's own ids are agreed to");
    let limit = std::time::Duration::from_secs(10);
    let done =
        next_event(&mut mine, &mut buf, limit, |e| e["method"] == "notifications/tasks").await.expect("a status");
    assert_eq!(done["params"]["taskId"], id.as_str(), "the client's id, not the upstream's: {done}");
    assert_eq!(done["params"]["status"], "completed");
    assert_eq!(done["params"]["result"]["content"][0]["text"], "echo: watched (updates: 0)");
    assert_eq!(done["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-1");
    // The task has completed and its notification went out; Mallory's stream carries none.
    let leaked = next_event(&mut theirs, &mut their_buf, std::time::Duration::from_millis(500), |e| {
        e["method"] == "notifications/tasks"
    })
    .await;
    assert!(leaked.is_none(), "{leaked:?}");
}
