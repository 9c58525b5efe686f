//! The results the gateway writes itself at the start of a conversation: `initialize`
//! (legacy, 2025-11-25 `basic/lifecycle`) and `server/discover` (2026-07-28), with the
//! capabilities and instructions the gateway declares from its upstreams'.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::token::ClientFlags;
use crate::error::GatewayError;
use crate::pipeline::parts::Scope;
use crate::upstream::UpstreamSet;
use crate::wire::mcp::{self, Era};
use crate::wire::object::ObjectWriter;

/// The gateway's `serverInfo`.
pub const SERVER_INFO: &str = concat!(r#"{"name":"sekisho","version":""#, env!("CARGO_PKG_VERSION"), r#""}"#);

#[derive(Deserialize)]
struct InitializeParams<'a> {
    #[serde(rename = "protocolVersion")]
    protocol_version: String,
    #[serde(borrow, default)]
    capabilities: Option<&'a RawValue>,
}

/// What `initialize` settled.
pub struct Initialized {
    /// The negotiated revision.
    pub version: &'static str,
    /// The client's declared capabilities.
    pub flags: ClientFlags,
    /// The raw result to send.
    pub result: Bytes,
}

/// Answer `initialize`: negotiate the revision and describe the gateway in `scope`.
///
/// Errors: [`GatewayError::InvalidParams`] when `protocolVersion` is missing or params are malformed.
pub fn initialize(upstreams: &UpstreamSet, scope: &Scope, params: &[u8]) -> Result<Initialized, GatewayError> {
    let p: InitializeParams<'_> = serde_json::from_slice(if params.is_empty() { b"{}" } else { params })
        .map_err(|e| GatewayError::InvalidParams(format!("initialize: {e}")))?;
    let version = mcp::negotiate_legacy(&p.protocol_version);
    let caps = p.capabilities.map(|c| c.get()).unwrap_or("{}");
    let caps: serde_json::Value = serde_json::from_str(caps).unwrap_or_default();
    let flags = ClientFlags {
        sampling: caps.get("sampling").is_some_and(|v| !v.is_null()),
        elicitation: caps.get("elicitation").is_some_and(|v| !v.is_null()),
        roots: caps.get("roots").is_some_and(|v| !v.is_null()),
    };
    let mut out = Vec::with_capacity(512);
    let mut w = ObjectWriter::begin(&mut out);
    w.string("protocolVersion", version);
    w.raw("capabilities", capabilities(upstreams, scope, Era::Legacy).as_bytes());
    w.raw("serverInfo", SERVER_INFO.as_bytes());
    if let Some(text) = instructions(upstreams, scope) {
        w.string("instructions", &text);
    }
    w.end();
    Ok(Initialized { version, flags, result: Bytes::from(out) })
}

/// Answer `server/discover` for `scope`; lists may be cached for `list_ttl_ms`.
pub fn discover(upstreams: &UpstreamSet, list_ttl_ms: u64, scope: &Scope) -> Bytes {
    let mut out = Vec::with_capacity(512);
    let mut w = ObjectWriter::begin(&mut out);
    w.string("resultType", "complete");
    w.raw("ttlMs", list_ttl_ms.to_string().as_bytes());
    w.string("cacheScope", "public");
    w.with("supportedVersions", |o| {
        serde_json::to_writer(&mut *o, &mcp::MODERN_VERSIONS).expect("writing JSON to a Vec cannot fail")
    });
    w.raw("capabilities", capabilities(upstreams, scope, Era::Modern).as_bytes());
    if let Some(text) = instructions(upstreams, scope) {
        w.string("instructions", &text);
    }
    w.with("_meta", |o| {
        let mut m = ObjectWriter::begin(o);
        m.raw(mcp::META_SERVER_INFO, SERVER_INFO.as_bytes());
        m.end();
    });
    w.end();
    Bytes::from(out)
}

/// The capabilities object the gateway declares in `scope` to a client of `era`.
///
/// The merged catalog always offers tools, prompts and resources with `listChanged` (the
/// gateway announces every catalog change, including upstreams coming and going);
/// `completions` when any upstream offers it; `logging` and `resources.subscribe` only to
/// legacy clients (the modern era has neither); the tasks extension to modern clients when
/// an upstream in scope takes part in it. A per-upstream scope mirrors that upstream's last
/// known capabilities (its `extensions` and `experimental` too) under the same era rules.
pub fn capabilities(upstreams: &UpstreamSet, scope: &Scope, era: Era) -> String {
    let known: Vec<serde_json::Value> = match scope {
        Scope::Gateway => upstreams.iter().filter_map(|u| u.last_handshake()).collect::<Vec<_>>(),
        Scope::Upstream(ns) => upstreams.get(ns).and_then(|u| u.last_handshake()).into_iter().collect(),
    }
    .iter()
    .filter_map(|h| serde_json::from_slice(&h.capabilities).ok())
    .collect();
    let any = |cap: &str| known.iter().any(|c| c.get(cap).is_some_and(|v| !v.is_null()));
    let subscribe = known.iter().any(|c| c.pointer("/resources/subscribe").and_then(|v| v.as_bool()) == Some(true));
    let per_upstream = matches!(scope, Scope::Upstream(_));
    let mut caps = serde_json::Map::new();
    for list in ["tools", "prompts"] {
        if !per_upstream || any(list) {
            caps.insert(list.into(), serde_json::json!({ "listChanged": true }));
        }
    }
    if !per_upstream || any("resources") {
        let mut r = serde_json::json!({ "listChanged": true });
        if era == Era::Legacy && subscribe {
            r["subscribe"] = true.into();
        }
        caps.insert("resources".into(), r);
    }
    if any("completions") {
        caps.insert("completions".into(), serde_json::json!({}));
    }
    if era == Era::Legacy && (!per_upstream || any("logging")) {
        caps.insert("logging".into(), serde_json::json!({}));
    }
    if per_upstream {
        for extra in ["extensions", "experimental"] {
            if let Some(v) = known.first().and_then(|c| c.get(extra)) {
                caps.insert(extra.into(), v.clone());
            }
        }
    }
    // The tasks extension is the gateway's to declare: to modern clients only, when an upstream
    // in scope takes part in it (`Handshake::declares_tasks`: a modern upstream that declared
    // it), since the gateway seals the task ids and routes the tasks methods itself.
    let declare = era == Era::Modern && tasks_in_scope(upstreams, scope);
    match caps.get_mut("extensions").and_then(|e| e.as_object_mut()) {
        Some(ext) => {
            ext.remove(mcp::EXT_TASKS);
            if declare {
                ext.insert(mcp::EXT_TASKS.into(), serde_json::json!({}));
            }
        }
        None if declare => {
            let mut ext = serde_json::Map::new();
            ext.insert(mcp::EXT_TASKS.into(), serde_json::json!({}));
            caps.insert("extensions".into(), serde_json::Value::Object(ext));
        }
        None => {}
    }
    serde_json::Value::Object(caps).to_string()
}

/// Whether an upstream in `scope` takes part in the tasks extension.
fn tasks_in_scope(upstreams: &UpstreamSet, scope: &Scope) -> bool {
    match scope {
        Scope::Gateway => upstreams.iter().any(|u| u.last_handshake().is_some_and(|h| h.declares_tasks())),
        Scope::Upstream(ns) => upstreams.get(ns).and_then(|u| u.last_handshake()).is_some_and(|h| h.declares_tasks()),
    }
}

/// Instructions for `scope`: one upstream's own, or every upstream's under a heading.
pub fn instructions(upstreams: &UpstreamSet, scope: &Scope) -> Option<String> {
    match scope {
        Scope::Upstream(ns) => upstreams.get(ns)?.last_handshake()?.instructions.clone(),
        Scope::Gateway => {
            let parts: Vec<String> = upstreams
                .iter()
                .filter_map(|u| Some(format!("## {}\n{}", u.name, u.last_handshake()?.instructions.clone()?)))
                .collect();
            (!parts.is_empty()).then(|| parts.join("\n\n"))
        }
    }
}
