//! Requests that name a member the gateway reads twice are refused before routing, on every
//! path, against the real binary: the attack where `arguments` appears twice (the upstream
//! reads the last, the cache key was made from the first) no longer poisons the cache, within
//! one caller or across callers under the `public` scope; arguments the gateway cannot read
//! exactly are refused (-32602), never keyed as `{}`. Top-level duplicates get -32600.

#[path = "support/binary.rs"]
mod binary;
mod common;

use binary::Binary;
use common::*;
use serde_json::{Value, json};

const KEY_A: &str = "dup-key-a-0123456789abcdef";
const KEY_B: &str = "dup-key-b-0123456789abcdef";

/// A trusted echo upstream (its `echo` is read-only, so cached) on a public-scope cache.
async fn gateway(keys: bool) -> (Binary, HttpUpstream) {
    let upstream = HttpUpstream::start("legacy").await;
    let server = if keys {
        format!(
            "api_keys = [{{ key = {KEY_A:?}, name = \"a\", role = \"admin\" }}, {{ key = {KEY_B:?}, name = \"b\" }}]"
        )
    } else {
        String::new()
    };
    let toml = format!("[cache]\ndefault_scope = \"public\"\n{}trusted = true\n", upstream.table("up"));
    let gw = Binary::start(&server, &toml, keys.then_some(KEY_A)).await;
    (gw, upstream)
}

fn meta() -> &'static str {
    r#"{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"0"}}"#
}

/// POST a raw modern request body to `url`, as `bearer`.
async fn modern_raw(url: &str, bearer: Option<&str>, name: &str, body: &str) -> Answer {
    let mut req = client()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", name);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    read(req.body(body.to_string()).send().await.unwrap()).await
}

/// A modern `tools/call` body of `name` whose params members are `members` (raw JSON text).
fn modern_call(name: &str, members: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}",{members},"_meta":{}}}}}"#,
        meta()
    )
}

/// The poisoning attack: `arguments` twice, TOKYO first (what the key was made of), PARIS last
/// (what the upstream reads).
const POISON: &str = r#""arguments":{"message":"TOKYO"},"arguments":{"message":"PARIS"}"#;

/// A legacy session's raw POST.
async fn legacy_raw(s: &Legacy, bearer: Option<&str>, body: &str) -> Answer {
    let mut req = client()
        .post(&s.endpoint)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &s.session)
        .header("mcp-protocol-version", &s.version);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    read(req.body(body.to_string()).send().await.unwrap()).await
}

fn echo_text(a: &Answer) -> String {
    text(a)
}

// Old code: the poisoned call was answered "PARIS" (status 200), and the clean TOKYO call that
// followed was an L1 hit answering "PARIS".
#[tokio::test]
async fn duplicate_arguments_are_refused_on_the_modern_front() {
    let (gw, _up) = gateway(false).await;
    let a = modern_raw(&gw.url("/mcp"), None, "up__echo", &modern_call("up__echo", POISON)).await;
    assert_eq!(a.error_code(), Some(-32602), "refused: {}", a.raw);
    assert!(a.raw.contains("duplicate member"), "{}", a.raw);
    let clean =
        modern(&gw.url("/mcp"), 2, "tools/call", json!({"name": "up__echo", "arguments": {"message": "TOKYO"}})).await;
    assert_eq!(echo_text(&clean), "TOKYO");
}

// Old code: as on the modern front, "PARIS" twice.
#[tokio::test]
async fn duplicate_arguments_are_refused_on_the_legacy_front_and_in_batches() {
    let (gw, _up) = gateway(false).await;
    let s = Legacy::open(&gw.url("/mcp"), "2025-11-25").await;
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"up__echo",{POISON}}}}}"#);
    let a = legacy_raw(&s, None, &body).await;
    assert_eq!(a.error_code(), Some(-32602), "refused: {}", a.raw);
    assert_eq!(
        echo_text(&s.request(2, "tools/call", json!({"name": "up__echo", "arguments": {"message": "TOKYO"}})).await),
        "TOKYO"
    );
    // A batch (2025-03-26): the poisoned element is refused, its neighbour is served.
    let b = Legacy::open(&gw.url("/mcp"), "2025-03-26").await;
    let body = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"up__echo","arguments":{"message":"OSLO"},"arguments":{"message":"ROME"}}},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
    let a = legacy_raw(&b, None, body).await;
    let items: Vec<Value> = serde_json::from_str(&a.raw).unwrap_or_else(|_| panic!("a batch answer: {}", a.raw));
    let first = items.iter().find(|i| i["id"] == 1).expect("answer 1");
    assert_eq!(first["error"]["code"], -32602, "{}", a.raw);
    assert!(items.iter().any(|i| i["id"] == 2 && i["result"].is_object()), "{}", a.raw);
    assert_eq!(
        echo_text(&b.request(3, "tools/call", json!({"name": "up__echo", "arguments": {"message": "OSLO"}})).await),
        "OSLO"
    );
}

// Old code: the per-upstream endpoint answered "PARIS" and then served it for TOKYO.
#[tokio::test]
async fn duplicate_arguments_are_refused_on_the_per_upstream_endpoint() {
    let (gw, _up) = gateway(false).await;
    let url = gw.url("/servers/up/mcp");
    let a = modern_raw(&url, None, "echo", &modern_call("echo", POISON)).await;
    assert_eq!(a.error_code(), Some(-32602), "refused: {}", a.raw);
    let s = Legacy::open(&url, "2025-11-25").await;
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo",{POISON}}}}}"#);
    assert_eq!(legacy_raw(&s, None, &body).await.error_code(), Some(-32602));
    assert_eq!(
        echo_text(&s.request(2, "tools/call", json!({"name": "echo", "arguments": {"message": "TOKYO"}})).await),
        "TOKYO"
    );
}

// Old code: caller B's clean TOKYO call was a public-scope hit answering caller A's "PARIS".
#[tokio::test]
async fn one_caller_cannot_poison_another_through_the_public_scope() {
    let (gw, _up) = gateway(true).await;
    let a = modern_raw(&gw.url("/mcp"), Some(KEY_A), "up__echo", &modern_call("up__echo", POISON)).await;
    assert_eq!(a.error_code(), Some(-32602), "refused: {}", a.raw);
    let url = gw.url("/mcp");
    let b =
        modern_as(&url, Some(KEY_B), 2, "tools/call", json!({"name": "up__echo", "arguments": {"message": "TOKYO"}}))
            .await;
    assert_eq!(echo_text(&b), "TOKYO");
}

// Old code: every case here was routed and answered (200 with a result), except the top-level
// duplicates, which serde's derived envelope already refused with -32600 (kept as a guard).
#[tokio::test]
async fn every_member_the_gateway_reads_is_checked() {
    let (gw, _up) = gateway(false).await;
    let mcp = gw.url("/mcp");
    for (what, members) in [
        ("name", r#""name":"up__count","arguments":{"message":"x"}"#),
        ("nested arguments", r#""arguments":{"message":"TOKYO","message":"PARIS"}"#),
        ("escaped name", r#""argument\u0073":{"message":"x"},"arguments":{"message":"y"}"#),
    ] {
        let a = modern_raw(&mcp, None, "up__echo", &modern_call("up__echo", members)).await;
        assert_eq!(a.error_code(), Some(-32602), "{what}: {}", a.raw);
    }
    let twice_meta = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"up__echo","arguments":{{"message":"x"}},"_meta":{m},"_meta":{m}}}}}"#,
        m = meta()
    );
    assert_eq!(modern_raw(&mcp, None, "up__echo", &twice_meta).await.error_code(), Some(-32602), "_meta");
    let s = Legacy::open(&mcp, "2025-11-25").await;
    let uri = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"echo://a","uri":"echo://b"}}"#;
    assert_eq!(legacy_raw(&s, None, uri).await.error_code(), Some(-32602), "uri");
    for top in [
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"up__echo"},"params":{"name":"up__count"}}"#,
    ] {
        assert_eq!(legacy_raw(&s, None, top).await.error_code(), Some(-32600), "{top}");
    }
    // Still serving.
    assert_eq!(
        echo_text(&s.request(9, "tools/call", json!({"name": "up__echo", "arguments": {"message": "ok"}})).await),
        "ok"
    );
}

// Old code: arguments that serde_json could not read (a number beyond f64) were keyed as `{}`,
// so the second call here was a hit answering the first call's "A".
#[tokio::test]
async fn unreadable_arguments_are_refused_not_keyed_as_empty() {
    let (gw, _up) = gateway(false).await;
    let mcp = gw.url("/mcp");
    let a =
        modern_raw(&mcp, None, "up__echo", &modern_call("up__echo", r#""arguments":{"message":"A","n":1e400}"#)).await;
    assert_eq!(a.error_code(), Some(-32602), "{}", a.raw);
    let b =
        modern_raw(&mcp, None, "up__echo", &modern_call("up__echo", r#""arguments":{"message":"B","n":2e400}"#)).await;
    assert_eq!(b.error_code(), Some(-32602), "{}", b.raw);
    let deep = format!(r#""arguments":{{"message":"C","d":{}{}}}"#, "[".repeat(200), "]".repeat(200));
    assert_eq!(modern_raw(&mcp, None, "up__echo", &modern_call("up__echo", &deep)).await.error_code(), Some(-32602));
}
