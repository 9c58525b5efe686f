//! Rewrites a client's request params for an upstream, and an upstream's results for a client,
//! across the two protocol eras (design.md §3).
//!
//! Requests: namespaced names and URIs become the upstream's own, the progress token becomes
//! the gateway's (unique per upstream connection), and the modern `_meta` envelope is kept,
//! added, or stripped to match the upstream's era. Results: modern clients get `resultType`
//! (and cache hints on cacheable results) when a legacy upstream wrote them; legacy clients get
//! `-32002` for missing resources and never see `input_required`. Everything else is copied.

use bytes::Bytes;

use crate::pipeline::parts::{ClientSide, Params, Reply};
use crate::wire::jsonrpc::write_json_str;
use crate::wire::mcp::{self, Era};
use crate::wire::object::{ObjectView, ObjectWriter};

/// The `_meta` envelope keys of the modern era (2026-07-28 `basic/index`).
const ENVELOPE_KEYS: [&str; 4] =
    [mcp::META_PROTOCOL_VERSION, mcp::META_CLIENT_CAPABILITIES, mcp::META_CLIENT_INFO, mcp::META_LOG_LEVEL];

/// What a `tools/call` to a legacy upstream leaves out: `task`, the experimental task
/// augmentation of 2025-11-25. The gateway relays tasks only as the 2026-07-28 extension
/// (sealed ids, modern upstreams); on a shared legacy connection a task would be reachable by
/// every client of that connection, so the call runs as an ordinary one instead.
pub const LEGACY_DROPPED: [&str; 1] = ["task"];

/// The gateway's own client identity, sent to upstreams.
pub const CLIENT_INFO: &str = concat!(r#"{"name":"sekisho","version":""#, env!("CARGO_PKG_VERSION"), r#""}"#);

/// How to write one request's params for one upstream.
pub struct Outbound<'a> {
    /// The client's params.
    pub params: &'a Params,
    /// Members to replace (or add) with raw JSON values, e.g. `("name", "\"echo\"")`.
    pub replace: &'a [(&'a str, &'a [u8])],
    /// Members to leave out (the experimental 2025-11-25 `task` augmentation of a `tools/call`
    /// to a legacy upstream: see [`LEGACY_DROPPED`]).
    pub drop: &'a [&'a str],
    /// The gateway's progress token for this call, if the client asked for progress.
    pub progress_token: Option<u64>,
    /// An idempotency key to set as `_meta["io.sekisho/idempotencyKey"]` (replacing one the
    /// params carry), when the key the gateway honours is not already there.
    pub idempotency_key: Option<&'a str>,
    /// The calling client (its era decides what happens to the envelope).
    pub client: &'a ClientSide,
    /// The era and revision the upstream speaks.
    pub upstream: (Era, &'static str),
}

/// Append the rewritten params object to `out`.
pub fn write_params(out: &mut Vec<u8>, ob: &Outbound<'_>) {
    let src = &ob.params.bytes;
    if passes_verbatim(ob) {
        out.extend_from_slice(if src.is_empty() { b"{}" } else { src });
        return;
    }
    let mut w = ObjectWriter::begin(out);
    let mut wrote_meta = false;
    debug_assert!(ob.replace.len() <= 64);
    let mut replaced = 0u64;
    for (key, span) in ob.params.view.iter(src) {
        if key == "_meta" {
            if !wrote_meta {
                w.with("_meta", |out| write_meta(out, ob));
                wrote_meta = true;
            }
        } else if ob.drop.contains(&key) {
            // Left out.
        } else if let Some(i) = ob.replace.iter().position(|(k, _)| *k == key) {
            if replaced & (1 << i) == 0 {
                w.raw(key, ob.replace[i].1);
                replaced |= 1 << i;
            }
        } else {
            w.raw(key, &src[span]);
        }
    }
    for (i, (key, value)) in ob.replace.iter().enumerate() {
        if replaced & (1 << i) == 0 {
            w.raw(key, value);
        }
    }
    if !wrote_meta && needs_meta(ob) {
        w.with("_meta", |out| write_meta(out, ob));
    }
    w.end();
}

/// Whether the client's params can go upstream byte for byte: nothing renamed, no progress
/// token to swap, and an envelope that is already right for the upstream's era.
fn passes_verbatim(ob: &Outbound<'_>) -> bool {
    if !ob.replace.is_empty() || !ob.drop.is_empty() || ob.progress_token.is_some() || ob.idempotency_key.is_some() {
        return false;
    }
    match (ob.client.era, ob.upstream.0) {
        // A progress token the gateway cannot route is never sent on (see `write_meta`).
        (Era::Modern, Era::Modern) => {
            ob.params.meta.as_ref().is_some_and(|m| m.get(mcp::META_PROGRESS_TOKEN).is_none())
        }
        (Era::Legacy, Era::Legacy) => ob.params.meta.is_none(),
        _ => false,
    }
}

fn needs_meta(ob: &Outbound<'_>) -> bool {
    ob.progress_token.is_some() || ob.idempotency_key.is_some() || ob.upstream.0 == Era::Modern
}

fn write_meta(out: &mut Vec<u8>, ob: &Outbound<'_>) {
    let mut w = ObjectWriter::begin(out);
    // A modern client talking to a modern upstream passes its own envelope through, so the
    // upstream sees the real client capabilities (and can answer -32021 or input_required).
    let keep_client_envelope = ob.client.era == Era::Modern && ob.upstream.0 == Era::Modern;
    if let Some(meta) = &ob.params.meta {
        for (key, span) in meta.view.iter(&meta.bytes) {
            if key == mcp::META_PROGRESS_TOKEN {
                if let Some(token) = ob.progress_token {
                    w.with(key, |out| out.extend_from_slice(token.to_string().as_bytes()));
                }
            } else if ENVELOPE_KEYS.contains(&key) && !keep_client_envelope {
                // Stripped for legacy upstreams; rebuilt below for modern ones.
            } else if key == mcp::META_IDEMPOTENCY_KEY && ob.idempotency_key.is_some() {
                // Replaced by the key the gateway honours, below.
            } else {
                w.raw(key, &meta.bytes[span]);
            }
        }
    }
    if let Some(token) = ob.progress_token
        && ob.params.meta.as_ref().is_none_or(|m| m.get(mcp::META_PROGRESS_TOKEN).is_none())
    {
        w.with(mcp::META_PROGRESS_TOKEN, |out| out.extend_from_slice(token.to_string().as_bytes()));
    }
    if let Some(key) = ob.idempotency_key {
        w.string(mcp::META_IDEMPOTENCY_KEY, key);
    }
    if ob.upstream.0 == Era::Modern && !keep_client_envelope {
        w.string(mcp::META_PROTOCOL_VERSION, ob.upstream.1);
        w.raw(mcp::META_CLIENT_CAPABILITIES, &ob.client.capabilities);
        w.raw(mcp::META_CLIENT_INFO, CLIENT_INFO.as_bytes());
    }
    w.end();
}

/// A missing resource in a modern client's terms: where a legacy upstream answered a
/// `resources/read` with -32002, a modern client gets -32602 with `data.uri` naming the URI it
/// asked for (2026-07-28 `server/resources`, "Error Handling"). Other replies pass unchanged.
pub fn resource_error_for_modern(reply: Reply, uri: &str) -> Reply {
    let Reply::Error { body, origin } = &reply else {
        return reply;
    };
    match crate::wire::jsonrpc::error_fields(body) {
        Some(e) if e.code == mcp::code::RESOURCE_NOT_FOUND => {
            Reply::Error { body: missing_resource(mcp::code::INVALID_PARAMS, &e.message, uri), origin: origin.clone() }
        }
        _ => reply,
    }
}

/// A missing resource in a legacy client's terms: where a modern upstream answered a
/// `resources/read` with -32602 carrying `data.uri` (2026-07-28 `server/resources`, "Error
/// Handling"), a legacy client gets -32002 "Resource not found" with `data.uri` naming the URI
/// it asked for (2025-11-25 `server/resources`). Other replies pass unchanged.
pub fn resource_error_for_legacy(reply: Reply, uri: &str) -> Reply {
    let Reply::Error { body, origin: origin @ crate::pipeline::parts::Origin::Upstream(Era::Modern, _) } = &reply
    else {
        return reply;
    };
    let names_uri = || {
        ObjectView::parse(body)
            .ok()
            .and_then(|v| v.get(body, "data").map(|s| body.slice(s)))
            .is_some_and(|d| ObjectView::parse(&d).is_ok_and(|v| v.get(&d, "uri").is_some()))
    };
    match crate::wire::jsonrpc::error_fields(body) {
        Some(e) if e.code == mcp::code::INVALID_PARAMS && names_uri() => Reply::Error {
            body: missing_resource(mcp::code::RESOURCE_NOT_FOUND, &e.message, uri),
            origin: origin.clone(),
        },
        _ => reply,
    }
}

/// The `error` object of a missing resource: `code`, the upstream's `message`, `data.uri`.
fn missing_resource(code: i64, message: &str, uri: &str) -> Bytes {
    let mut out = Vec::new();
    let mut w = ObjectWriter::begin(&mut out);
    w.with("code", |o| o.extend_from_slice(code.to_string().as_bytes()));
    w.string("message", message);
    w.with("data", |o| {
        serde_json::to_writer(&mut *o, &serde_json::json!({ "uri": uri })).expect("writing JSON to a Vec cannot fail")
    });
    w.end();
    Bytes::from(out)
}

/// The `_meta` envelope the gateway sends on its own requests to a modern upstream.
pub fn gateway_envelope(version: &str) -> String {
    let mut out = Vec::new();
    let mut w = ObjectWriter::begin(&mut out);
    w.string(mcp::META_PROTOCOL_VERSION, version);
    w.raw(mcp::META_CLIENT_CAPABILITIES, b"{}");
    w.raw(mcp::META_CLIENT_INFO, CLIENT_INFO.as_bytes());
    w.end();
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// Results whose modern form carries `ttlMs` and `cacheScope` (2026-07-28 `CacheableResult`).
pub fn is_cacheable_method(method: &str) -> bool {
    matches!(
        method,
        "server/discover"
            | "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
    )
}

/// What adapting an upstream result for a client produced.
pub enum Adapted {
    /// The result, ready to send (possibly the input unchanged).
    Result(Bytes),
    /// The result cannot be expressed in the client's era.
    InputRequiredForLegacy,
}

/// Adapt an upstream's raw `result` to the client's era.
///
/// Modern client, legacy upstream: prepend `resultType: "complete"` (and `ttlMs: 0`,
/// `cacheScope: "private"` on cacheable results, since a legacy upstream gives no hint).
/// Legacy client, modern upstream: an `input_required` result cannot be relayed.
pub fn adapt_result(result: Bytes, method: &str, client: Era, upstream: Era) -> Adapted {
    match (client, upstream) {
        (Era::Modern, Era::Legacy) => {
            if !result.starts_with(b"{") || has_top_level_key(&result, "resultType") {
                return Adapted::Result(result);
            }
            let mut members = Vec::with_capacity(64);
            members.extend_from_slice(br#""resultType":"complete""#);
            if is_cacheable_method(method) {
                members.extend_from_slice(br#","ttlMs":0,"cacheScope":"private""#);
            }
            let mut out = Vec::with_capacity(result.len() + members.len() + 2);
            crate::wire::object::prepend_members(&mut out, &result, &members);
            Adapted::Result(Bytes::from(out))
        }
        (Era::Legacy, Era::Modern) => {
            if memchr::memmem::find(&result, b"input_required").is_some()
                && ObjectView::parse(&result)
                    .ok()
                    .and_then(|v| v.get_str(&result, "resultType").map(|s| s == "input_required"))
                    == Some(true)
            {
                Adapted::InputRequiredForLegacy
            } else {
                Adapted::Result(result)
            }
        }
        _ => Adapted::Result(result),
    }
}

/// Whether the object `raw` has a top-level member `key`, without parsing it when the key's
/// text does not occur at all (the common case).
pub fn has_top_level_key(raw: &[u8], key: &str) -> bool {
    let mut quoted = Vec::with_capacity(key.len() + 2);
    write_json_str(&mut quoted, key);
    if memchr::memmem::find(raw, &quoted).is_none() {
        return false;
    }
    ObjectView::parse(raw).is_ok_and(|v| v.get(raw, key).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modern_missing_resource_is_32002_for_a_legacy_client() {
        use crate::pipeline::parts::Origin;
        let missing =
            Bytes::from_static(br#"{"code":-32602,"message":"Resource not found","data":{"uri":"test://x"}}"#);
        let modern = Reply::Error { body: missing.clone(), origin: Origin::Upstream(Era::Modern, "u".into()) };
        let Reply::Error { body, .. } = resource_error_for_legacy(modern, "sekisho://u/test://x") else { panic!() };
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((v["code"].as_i64(), v["data"]["uri"].as_str()), (Some(-32002), Some("sekisho://u/test://x")));
        // Other invalid params, and a legacy upstream's own errors, pass unchanged.
        let plain = Bytes::from_static(br#"{"code":-32602,"message":"bad"}"#);
        let other = Reply::Error { body: plain.clone(), origin: Origin::Upstream(Era::Modern, "u".into()) };
        assert!(matches!(resource_error_for_legacy(other, "u"), Reply::Error { body, .. } if body == plain));
        let legacy = Reply::Error { body: missing.clone(), origin: Origin::Upstream(Era::Legacy, "u".into()) };
        assert!(matches!(resource_error_for_legacy(legacy, "u"), Reply::Error { body, .. } if body == missing));
    }

    fn params(s: &str) -> Params {
        Params::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn client(era: Era) -> ClientSide {
        ClientSide {
            era,
            version: if era == Era::Modern { "2026-07-28" } else { "2025-11-25" },
            capabilities: Bytes::from_static(b"{\"sampling\":{}}"),
            log_level: None,
        }
    }

    fn rewrite(p: &Params, replace: &[(&str, &[u8])], token: Option<u64>, c: Era, u: Era) -> serde_json::Value {
        let client = client(c);
        let ob = Outbound {
            params: p,
            replace,
            drop: &[],
            progress_token: token,
            idempotency_key: None,
            client: &client,
            upstream: (u, if u == Era::Modern { "2026-07-28" } else { "2025-11-25" }),
        };
        let mut out = Vec::new();
        write_params(&mut out, &ob);
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn renames_and_swaps_progress_token_keeping_unknown_members() {
        let p = params(
            r#"{"name":"ns__echo","arguments":{"b":1,"a":2},"x-vendor":[1],"_meta":{"progressToken":"abc","com.example/k":1}}"#,
        );
        let v = rewrite(&p, &[("name", br#""echo""#)], Some(17), Era::Legacy, Era::Legacy);
        assert_eq!(v["name"], "echo");
        assert_eq!(v["arguments"], serde_json::json!({"b":1,"a":2}));
        assert_eq!(v["x-vendor"], serde_json::json!([1]));
        assert_eq!(v["_meta"]["progressToken"], 17);
        assert_eq!(v["_meta"]["com.example/k"], 1);
    }

    #[test]
    fn envelope_follows_the_upstream_era() {
        let modern = params(
            r#"{"name":"t","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}}"#,
        );
        let v = rewrite(&modern, &[], None, Era::Modern, Era::Legacy);
        assert!(v["_meta"].get(mcp::META_PROTOCOL_VERSION).is_none(), "stripped for legacy upstreams");
        let v = rewrite(&modern, &[], None, Era::Modern, Era::Modern);
        assert_eq!(v["_meta"][mcp::META_CLIENT_CAPABILITIES], serde_json::json!({"elicitation":{}}));
        let legacy = params(r#"{"name":"t"}"#);
        let v = rewrite(&legacy, &[], Some(3), Era::Legacy, Era::Modern);
        assert_eq!(v["_meta"][mcp::META_PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(v["_meta"][mcp::META_CLIENT_CAPABILITIES], serde_json::json!({"sampling":{}}));
        assert_eq!(v["_meta"]["progressToken"], 3);
        let v = rewrite(&Params::default(), &[], None, Era::Legacy, Era::Legacy);
        assert_eq!(v, serde_json::json!({}));
    }

    #[test]
    fn the_idempotency_key_the_gateway_honours_reaches_the_upstream() {
        let client = client(Era::Legacy);
        for raw in [r#"{"name":"t"}"#, r#"{"name":"t","_meta":{"io.sekisho/idempotencyKey":"","x":1}}"#] {
            let p = params(raw);
            let ob = Outbound {
                params: &p,
                replace: &[],
                drop: &[],
                progress_token: None,
                idempotency_key: Some("k-1"),
                client: &client,
                upstream: (Era::Legacy, "2025-11-25"),
            };
            let mut out = Vec::new();
            write_params(&mut out, &ob);
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.matches(mcp::META_IDEMPOTENCY_KEY).count(), 1, "one key member: {text}");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["_meta"][mcp::META_IDEMPOTENCY_KEY], "k-1", "{text}");
            assert_eq!(v["name"], "t");
        }
    }

    #[test]
    fn dropped_members_are_left_out() {
        let client = client(Era::Modern);
        let p = params(r#"{"name":"t","task":{"ttl":60000},"arguments":{"task":1}}"#);
        let ob = Outbound {
            params: &p,
            replace: &[],
            drop: &LEGACY_DROPPED,
            progress_token: None,
            idempotency_key: None,
            client: &client,
            upstream: (Era::Legacy, "2025-11-25"),
        };
        let mut out = Vec::new();
        write_params(&mut out, &ob);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("task").is_none(), "{v}");
        assert_eq!(v["arguments"], serde_json::json!({"task":1}));
    }

    #[test]
    fn results_gain_result_type_for_modern_clients() {
        let r = |s: &str, m: &str, c, u| match adapt_result(Bytes::copy_from_slice(s.as_bytes()), m, c, u) {
            Adapted::Result(b) => serde_json::from_slice::<serde_json::Value>(&b).unwrap(),
            Adapted::InputRequiredForLegacy => serde_json::json!("IR"),
        };
        let v = r(r#"{"content":[]}"#, "tools/call", Era::Modern, Era::Legacy);
        assert_eq!(v["resultType"], "complete");
        assert!(v.get("ttlMs").is_none());
        let v = r(r#"{"contents":[]}"#, "resources/read", Era::Modern, Era::Legacy);
        assert_eq!(v["ttlMs"], 0);
        assert_eq!(v["cacheScope"], "private");
        let v = r("{}", "ping", Era::Modern, Era::Legacy);
        assert_eq!(v, serde_json::json!({"resultType":"complete"}));
        let v = r(r#"{"resultType":"input_required","requestState":"s"}"#, "tools/call", Era::Legacy, Era::Modern);
        assert_eq!(v, "IR");
        let v = r(
            r#"{"resultType":"complete","content":[{"type":"text","text":"input_required"}]}"#,
            "tools/call",
            Era::Legacy,
            Era::Modern,
        );
        assert_eq!(v["resultType"], "complete");
    }
}
