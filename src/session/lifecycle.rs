//! The results the gateway writes itself at the start of a conversation: `initialize`
//! (legacy, 2025-11-25 `basic/lifecycle`) and `server/discover` (2026-07-28).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::token::ClientFlags;
use crate::catalog::router::Router;
use crate::error::GatewayError;
use crate::pipeline::ctx::Scope;
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
pub fn initialize(router: &Router, scope: &Scope, params: &[u8]) -> Result<Initialized, GatewayError> {
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
    w.raw("capabilities", router.capabilities(scope, Era::Legacy).as_bytes());
    w.raw("serverInfo", SERVER_INFO.as_bytes());
    if let Some(text) = router.instructions(scope) {
        w.string("instructions", &text);
    }
    w.end();
    Ok(Initialized { version, flags, result: Bytes::from(out) })
}

/// Answer `server/discover` for `scope`.
pub fn discover(router: &Router, scope: &Scope) -> Bytes {
    let mut out = Vec::with_capacity(512);
    let mut w = ObjectWriter::begin(&mut out);
    w.string("resultType", "complete");
    w.raw("ttlMs", router.catalog().config().list_ttl_ms.to_string().as_bytes());
    w.string("cacheScope", "public");
    w.with("supportedVersions", |o| {
        serde_json::to_writer(&mut *o, &mcp::MODERN_VERSIONS).expect("writing JSON to a Vec cannot fail")
    });
    w.raw("capabilities", router.capabilities(scope, Era::Modern).as_bytes());
    if let Some(text) = router.instructions(scope) {
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
