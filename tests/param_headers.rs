//! Custom parameter headers (2026-07-28 `basic/transports`, SEP-2243) end to end, against the
//! real binary in front of a real modern HTTP upstream (the echo upstream's `routed` tool,
//! whose arguments carry `x-mcp-header`, and which checks its `Mcp-Param-*` headers as a strict
//! server does): a modern client's headers that agree with the body pass; a mismatched,
//! missing, badly encoded, duplicated or argument-less header is refused by the gateway with
//! HTTP 400 and -32020 before the upstream sees the call; the gateway sets the headers on the
//! upstream request itself (Base64 where the value is not plain header text), also for legacy
//! clients that send none; a tool with invalid declarations is left out of the catalog.

#[path = "support/binary.rs"]
mod binary;
mod common;

use binary::Binary;
use common::*;
use serde_json::{Value, json};

async fn gateway() -> (Binary, HttpUpstream) {
    // `--invalid-tool`: it also lists a tool whose `x-mcp-header` declaration breaks the rules.
    let upstream = HttpUpstream::start_with(&["--era", "modern", "--invalid-tool"]).await;
    let gw = Binary::start("", &upstream.table("up"), None).await;
    (gw, upstream)
}

/// A modern `tools/call` of `name` with `arguments`, the routing headers and `extra` headers.
async fn call(url: &str, name: &str, arguments: Value, extra: &[(&str, &str)]) -> Answer {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": name, "arguments": arguments,
        "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}}});
    let mut req = client()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/call")
        .header("mcp-name", name);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    read(req.json(&body).send().await.unwrap()).await
}

/// How many `tools/call` requests the upstream has received (its `count` tool counts itself).
async fn upstream_calls(gw: &Binary) -> u64 {
    let a = call(&format!("{}/mcp", gw.base), "up__count", json!({}), &[]).await;
    text(&a).parse().unwrap_or_else(|_| panic!("a count: {}", a.raw))
}

/// What a refusal case is named, its arguments and its `Mcp-Param-*` headers.
type Case = (&'static str, Value, Vec<(&'static str, &'static str)>);

fn assert_refused(a: &Answer, what: &str) {
    assert_eq!(a.status, 400, "{what}: {}", a.raw);
    assert_eq!(a.error_code(), Some(-32020), "{what}: {}", a.raw);
}

#[tokio::test]
async fn matching_headers_pass_and_the_upstream_gets_them() {
    let (gw, _up) = gateway().await;
    let url = format!("{}/mcp", gw.base);
    let args = json!({"region": "eu-west-1", "tenant": 42, "dry": true, "note": "not mirrored"});
    let sent = [("Mcp-Param-Region", "eu-west-1"), ("mcp-param-tenant", "42"), ("MCP-PARAM-DRY", "true")];
    let a = call(&url, "up__routed", args, &sent).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(text(&a), "headers: mcp-param-region=eu-west-1 mcp-param-tenant=42 mcp-param-dry=true");
    // An argument left out travels without its header.
    let a = call(&url, "up__routed", json!({"region": "us"}), &[("Mcp-Param-Region", " us ")]).await;
    assert_eq!(text(&a), "headers: mcp-param-region=us");
    // A null one needs no header either, but `dry` is a boolean: argument validation refuses it
    // (a tool error result, SEP-1303).
    let a = call(&url, "up__routed", json!({"region": "us", "dry": null}), &[("Mcp-Param-Region", " us ")]).await;
    assert_eq!(a.body["result"]["isError"], json!(true), "{}", a.raw);
    assert!(a.raw.contains(r#"arguments/dry: null is not of type \"boolean\""#), "{}", a.raw);
    // Headers of tools that declare none are not looked at.
    let a = call(&url, "up__echo", json!({"message": "hi"}), &[("Mcp-Param-Region", "nowhere")]).await;
    assert_eq!(text(&a), "hi");
}

#[tokio::test]
async fn the_base64_form_is_decoded_and_the_upstream_gets_it_encoded() {
    let (gw, _up) = gateway().await;
    let url = format!("{}/mcp", gw.base);
    // "café 東京" as the client encodes it.
    let a = call(
        &url,
        "up__routed",
        json!({"region": "café 東京"}),
        &[("Mcp-Param-Region", "=?base64?Y2Fmw6kg5p2x5Lqs?=")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(text(&a), "headers: mcp-param-region==?base64?Y2Fmw6kg5p2x5Lqs?=");
    // Plain text may come encoded too; the gateway sends it plain.
    let a = call(&url, "up__routed", json!({"region": "Hello"}), &[("Mcp-Param-Region", "=?base64?SGVsbG8=?=")]).await;
    assert_eq!(text(&a), "headers: mcp-param-region=Hello");
    // Without both markers a value is literal text.
    for literal in ["SGVsbG8=", "=?base64?SGVsbG8="] {
        let a = call(&url, "up__routed", json!({"region": literal}), &[("Mcp-Param-Region", literal)]).await;
        assert_eq!(a.status, 200, "{literal}: {}", a.raw);
    }
}

#[tokio::test]
async fn disagreeing_headers_are_refused_before_the_upstream_sees_the_call() {
    let (gw, _up) = gateway().await;
    let url = format!("{}/mcp", gw.base);
    let before = upstream_calls(&gw).await;
    let eu = json!({"region": "eu"});
    let cases: [Case; 9] = [
        ("a mismatched value", eu.clone(), vec![("Mcp-Param-Region", "us")]),
        ("a missing header", eu.clone(), vec![]),
        ("Base64 without its padding", json!({"region": "Hello"}), vec![("Mcp-Param-Region", "=?base64?SGVsbG8?=")]),
        (
            "Base64 outside its alphabet",
            json!({"region": "Hello"}),
            vec![("Mcp-Param-Region", "=?base64?SGVs!!!bG8=?=")],
        ),
        ("a header without its argument", json!({}), vec![("Mcp-Param-Region", "eu")]),
        ("a header sent twice", eu.clone(), vec![("Mcp-Param-Region", "eu"), ("Mcp-Param-Region", "eu")]),
        (
            "another integer",
            json!({"region": "eu", "tenant": 42}),
            vec![("Mcp-Param-Region", "eu"), ("Mcp-Param-Tenant", "43")],
        ),
        (
            "a boolean's case",
            json!({"region": "eu", "dry": true}),
            vec![("Mcp-Param-Region", "eu"), ("Mcp-Param-Dry", "TRUE")],
        ),
        ("whitespace the value needs", json!({"region": " eu"}), vec![("Mcp-Param-Region", " eu")]),
    ];
    for (what, args, headers) in cases {
        assert_refused(&call(&url, "up__routed", args, &headers).await, what);
    }
    assert_eq!(upstream_calls(&gw).await, before + 1, "only the count call itself reached the upstream");
}

#[tokio::test]
async fn the_per_upstream_route_checks_them_too() {
    let (gw, _up) = gateway().await;
    let url = format!("{}/servers/up/mcp", gw.base);
    assert_refused(&call(&url, "routed", json!({"region": "eu"}), &[("Mcp-Param-Region", "us")]).await, "mismatch");
    assert_refused(&call(&url, "routed", json!({"region": "eu"}), &[]).await, "missing");
    let a = call(
        &url,
        "routed",
        json!({"region": "eu", "tenant": -7}),
        &[("Mcp-Param-Region", "eu"), ("Mcp-Param-Tenant", "-7")],
    )
    .await;
    assert_eq!(text(&a), "headers: mcp-param-region=eu mcp-param-tenant=-7");
}

#[tokio::test]
async fn legacy_clients_send_none_and_the_gateway_sets_them_for_the_upstream() {
    let (gw, _up) = gateway().await;
    let s = Legacy::open(&format!("{}/mcp", gw.base), "2025-11-25").await;
    let a = s
        .request(
            1,
            "tools/call",
            json!({"name": "up__routed", "arguments": {"region": " padded", "tenant": 7, "dry": false}}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(text(&a), "headers: mcp-param-region==?base64?IHBhZGRlZA==?= mcp-param-tenant=7 mcp-param-dry=false");
}

#[tokio::test]
async fn a_tool_with_invalid_declarations_is_left_out() {
    let (gw, _up) = gateway().await;
    let url = format!("{}/mcp", gw.base);
    let names = tool_names(&modern(&url, 1, "tools/list", json!({})).await);
    assert!(names.contains(&"up__routed".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("bad_header")), "x-mcp-header on a number: {names:?}");
    let per_upstream = tool_names(&modern(&format!("{}/servers/up/mcp", gw.base), 2, "tools/list", json!({})).await);
    assert!(per_upstream.contains(&"routed".to_string()) && !per_upstream.contains(&"bad_header".to_string()));
    let a = call(&url, "up__bad_header", json!({"score": 1.5}), &[("Mcp-Param-Score", "1.5")]).await;
    assert!(a.body.get("error").is_some(), "not callable through the merged catalog: {}", a.raw);
}
