//! Reading an upstream's lists: every page of `tools/list`, `prompts/list`, `resources/list`
//! and `resources/templates/list`, with the cache hints a modern upstream attaches.

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::error::GatewayError;
use crate::upstream::Upstream;
use crate::upstream::translate::gateway_envelope;
use crate::wire::mcp::Era;
use crate::wire::object::ObjectView;

/// At most this many pages are followed per list (a looping paginator cannot hang a refresh).
const MAX_PAGES: usize = 100;

/// The four lists the catalog merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl ListKind {
    /// All kinds, in catalog order.
    pub const ALL: [ListKind; 4] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources, ListKind::Templates];

    /// The list method.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }

    /// The member of the result holding the items.
    pub fn items_key(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    /// The member of each item that identifies it.
    pub fn id_key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::Templates => "uriTemplate",
        }
    }

    /// The server capability that announces this list.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::Templates => "resources",
        }
    }

    /// The list for a list method name.
    pub fn from_method(method: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| k.method() == method)
    }

    /// Index into per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One listed item: its identifying member and its raw JSON object.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The `name`, `uri` or `uriTemplate`.
    pub id: String,
    /// The item object, verbatim.
    pub raw: Bytes,
}

/// A modern upstream's cache hints for a list (2026-07-28 `CacheableResult`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hint {
    /// `ttlMs`, when sent.
    pub ttl_ms: Option<u64>,
    /// `cacheScope` was `private`.
    pub private: bool,
}

/// Read every page of one list from an upstream.
///
/// Errors: the upstream's call errors, or [`GatewayError::UpstreamProtocol`] for a malformed page.
pub async fn fetch(up: &Upstream, kind: ListKind) -> Result<(Vec<Entry>, Hint), GatewayError> {
    let Some(h) = up.handshake() else {
        return Err(GatewayError::UpstreamUnavailable {
            upstream: up.name.to_string(),
            reason: "not connected".into(),
        });
    };
    if !h.has_capability(kind.capability()) {
        return Ok((Vec::new(), Hint::default()));
    }
    let bad = |reason: String| GatewayError::UpstreamProtocol { upstream: up.name.to_string(), reason };
    let envelope = (h.era == Era::Modern).then(|| gateway_envelope(h.version));
    let mut entries = Vec::new();
    let mut hint = Hint::default();
    let mut cursor: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..MAX_PAGES {
        let params = match (&cursor, &envelope) {
            (None, None) => None,
            (c, e) => {
                let mut map = serde_json::Map::new();
                if let Some(c) = c {
                    map.insert("cursor".into(), c.clone().into());
                }
                if let Some(e) = e {
                    map.insert("_meta".into(), serde_json::from_str(e).expect("envelope is JSON"));
                }
                Some(serde_json::Value::Object(map).to_string())
            }
        };
        let result = up.request(kind.method(), params.as_deref().map(str::as_bytes)).await?;
        let page = ObjectView::parse(&result).map_err(|e| bad(format!("{}: {e}", kind.method())))?;
        let items = page
            .get(&result, kind.items_key())
            .ok_or_else(|| bad(format!("{} lacks {}", kind.method(), kind.items_key())))?;
        let items: Vec<&RawValue> =
            serde_json::from_slice(&result[items]).map_err(|e| bad(format!("{}: {e}", kind.items_key())))?;
        for item in items {
            let raw = Bytes::copy_from_slice(item.get().as_bytes());
            let Some(id) =
                ObjectView::parse(&raw).ok().and_then(|v| v.get_str(&raw, kind.id_key()).map(|s| s.into_owned()))
            else {
                tracing::warn!(upstream = %up.name, list = kind.method(), "skipped an item without a string {}", kind.id_key());
                continue;
            };
            if kind == ListKind::Tools
                && let Err(why) = super::params::declared(&raw)
            {
                // 2026-07-28 `basic/transports`: a client MUST exclude a tool whose
                // `x-mcp-header` declarations break the rules; the catalog is that client.
                tracing::warn!(upstream = %up.name, tool = %id, reason = %why, "left out a tool with invalid x-mcp-header declarations");
                continue;
            }
            entries.push(Entry { id, raw });
        }
        if let Some(ttl) = page.get(&result, "ttlMs").and_then(|s| serde_json::from_slice::<u64>(&result[s]).ok()) {
            hint.ttl_ms = Some(hint.ttl_ms.map_or(ttl, |t| t.min(ttl)));
        }
        hint.private |= page.get_str(&result, "cacheScope").as_deref() == Some("private");
        let next_cursor = page.get_str(&result, "nextCursor").map(|c| c.into_owned());
        match next_cursor {
            Some(next) if !next.is_empty() && seen.insert(next.clone()) => cursor = Some(next),
            _ => return Ok((entries, hint)),
        }
    }
    tracing::warn!(upstream = %up.name, list = kind.method(), "stopped following pagination after {MAX_PAGES} pages");
    Ok((entries, hint))
}
