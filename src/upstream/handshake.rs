//! Meeting an upstream: probe its era with `server/discover`, fall back to `initialize`, and
//! remember what it offers (revision, capabilities, identity, instructions).
//!
//! Source: 2026-07-28 `server/discover` (DiscoverResult) and 2025-11-25 `basic/lifecycle`
//! (InitializeRequest/InitializeResult).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::translate::{CLIENT_INFO, gateway_envelope};
use crate::wire::mcp::{self, Era};

/// What the gateway learned when it met an upstream.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// The era the upstream is spoken to in.
    pub era: Era,
    /// The revision in use.
    pub version: &'static str,
    /// The upstream's capabilities object, raw.
    pub capabilities: Bytes,
    /// The upstream's `serverInfo`, raw, if it sent one.
    pub server_info: Option<Bytes>,
    /// The upstream's instructions, if any.
    pub instructions: Option<String>,
}

impl Handshake {
    /// Whether the upstream declared capability `name` (e.g. `tools`, `logging`).
    pub fn has_capability(&self, name: &str) -> bool {
        crate::wire::object::ObjectView::parse(&self.capabilities)
            .map(|v| v.get(&self.capabilities, name).is_some_and(|s| &self.capabilities[s] != b"null"))
            .unwrap_or(false)
    }

    /// Whether the upstream takes part in the tasks extension: a modern upstream that declared
    /// `io.modelcontextprotocol/tasks` under `capabilities.extensions`. Legacy upstreams never
    /// do, whatever they declare (their experimental 2025-11-25 tasks are not relayed).
    pub fn declares_tasks(&self) -> bool {
        self.era == Era::Modern && crate::wire::object::declares_extension(&self.capabilities, mcp::EXT_TASKS)
    }
}

/// The params of the gateway's modern `subscriptions/listen` to an upstream that completed
/// `h`: a filter asking for every list the upstream says changes (its `listChanged`
/// capabilities) and for updates of the `watched` resources (`resourceSubscriptions`, the
/// 2026-07-28 replacement of `resources/subscribe`), and the gateway's envelope. `None` when
/// there is nothing to ask for.
pub fn listen_params(h: &Handshake, watched: &std::collections::BTreeSet<std::sync::Arc<str>>) -> Option<String> {
    let caps: serde_json::Value = serde_json::from_slice(&h.capabilities).ok()?;
    let mut filter = serde_json::Map::new();
    for (cap, key) in
        [("tools", "toolsListChanged"), ("prompts", "promptsListChanged"), ("resources", "resourcesListChanged")]
    {
        if caps.get(cap).and_then(|c| c.get("listChanged")).and_then(|v| v.as_bool()) == Some(true) {
            filter.insert(key.into(), true.into());
        }
    }
    if !watched.is_empty() {
        filter.insert("resourceSubscriptions".into(), watched.iter().map(|u| serde_json::Value::from(&**u)).collect());
    }
    if filter.is_empty() {
        return None;
    }
    Some(format!(
        r#"{{"notifications":{},"_meta":{}}}"#,
        serde_json::Value::Object(filter),
        gateway_envelope(h.version)
    ))
}

/// Params of the gateway's `server/discover` probe.
pub fn discover_params() -> Bytes {
    Bytes::from(format!(r#"{{"_meta":{}}}"#, gateway_envelope(mcp::LATEST_MODERN)))
}

/// Params of the gateway's `initialize`, declaring the given client capabilities (raw JSON).
pub fn initialize_params(capabilities: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"protocolVersion":"{}","capabilities":{capabilities},"clientInfo":{CLIENT_INFO}}}"#,
        mcp::LATEST_LEGACY
    ))
}

#[derive(Deserialize)]
struct DiscoverFields<'a> {
    #[serde(rename = "supportedVersions", default)]
    supported_versions: Vec<String>,
    #[serde(borrow)]
    capabilities: Option<&'a RawValue>,
    instructions: Option<String>,
    #[serde(rename = "_meta", borrow)]
    meta: Option<std::collections::HashMap<String, &'a RawValue>>,
}

/// Read a `server/discover` result; `None` when the upstream offers no modern revision we speak.
pub fn from_discover(result: &[u8]) -> Option<Handshake> {
    let d: DiscoverFields<'_> = serde_json::from_slice(result).ok()?;
    let version = d.supported_versions.iter().rev().find_map(|v| {
        let v = mcp::known_version(v)?;
        (mcp::era_of(v) == Some(Era::Modern)).then_some(v)
    })?;
    Some(Handshake {
        era: Era::Modern,
        version,
        capabilities: raw_or_empty(d.capabilities),
        server_info: d
            .meta
            .as_ref()
            .and_then(|m| m.get(mcp::META_SERVER_INFO))
            .map(|r| Bytes::copy_from_slice(r.get().as_bytes())),
        instructions: d.instructions,
    })
}

#[derive(Deserialize)]
struct InitializeFields<'a> {
    #[serde(rename = "protocolVersion")]
    protocol_version: String,
    #[serde(borrow)]
    capabilities: Option<&'a RawValue>,
    #[serde(rename = "serverInfo", borrow)]
    server_info: Option<&'a RawValue>,
    instructions: Option<String>,
}

/// Why an `initialize` result cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInitialize(pub String);

/// Read an `initialize` result.
///
/// Errors: [`BadInitialize`] when it is malformed or names a revision the gateway does not speak.
pub fn from_initialize(result: &[u8]) -> Result<Handshake, BadInitialize> {
    let r: InitializeFields<'_> =
        serde_json::from_slice(result).map_err(|e| BadInitialize(format!("malformed initialize result: {e}")))?;
    let version = mcp::known_version(&r.protocol_version)
        .filter(|v| mcp::era_of(v) == Some(Era::Legacy))
        .ok_or_else(|| BadInitialize(format!("unsupported protocol version {:?}", r.protocol_version)))?;
    Ok(Handshake {
        era: Era::Legacy,
        version,
        capabilities: raw_or_empty(r.capabilities),
        server_info: r.server_info.map(|r| Bytes::copy_from_slice(r.get().as_bytes())),
        instructions: r.instructions,
    })
}

fn raw_or_empty(raw: Option<&RawValue>) -> Bytes {
    match raw {
        Some(r) if r.get().starts_with('{') => Bytes::copy_from_slice(r.get().as_bytes()),
        _ => Bytes::from_static(b"{}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_picks_a_modern_revision() {
        let h = from_discover(br#"{"resultType":"complete","ttlMs":0,"cacheScope":"private","supportedVersions":["2026-07-28"],"capabilities":{"tools":{"listChanged":false}},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"mcp-time","version":"1"}}}"#).unwrap();
        assert_eq!(h.era, Era::Modern);
        assert!(h.has_capability("tools"));
        assert!(!h.has_capability("prompts"));
        assert!(h.server_info.is_some());
        assert!(from_discover(br#"{"supportedVersions":["2025-11-25"],"capabilities":{}}"#).is_none());
    }

    #[test]
    fn initialize_is_validated() {
        let h = from_initialize(br#"{"protocolVersion":"2025-06-18","capabilities":{"logging":{}},"serverInfo":{"name":"x","version":"1"},"instructions":"hi"}"#).unwrap();
        assert_eq!(h.version, "2025-06-18");
        assert!(h.has_capability("logging"));
        assert!(from_initialize(br#"{"protocolVersion":"1999-01-01","capabilities":{}}"#).is_err());
        let p = initialize_params("{}");
        let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["protocolVersion"], "2025-11-25");
        let d: serde_json::Value = serde_json::from_slice(&discover_params()).unwrap();
        assert_eq!(d["_meta"][mcp::META_PROTOCOL_VERSION], "2026-07-28");
    }
}
