//! Answers to the list methods (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`) from the catalog snapshot: one page with the gateway's own
//! cursor, the modern era's cache hints, and the upstreams missing from the list named in
//! `_meta["io.sekisho/unavailableUpstreams"]`.

use bytes::Bytes;

use super::config::CatalogConfig;
use super::listing::ListKind;
use super::{Catalog, decode_cursor, encode_cursor};
use crate::error::GatewayError;
use crate::pipeline::parts::Scope;
use crate::wire::mcp::{self, Era};
use crate::wire::object::ObjectWriter;

/// One page of the `kind` list of `snap` (the whole catalog, or a store key's view) in
/// `scope`, followed in the gateway's scope by `own` (the gateway's own tools the caller sees,
/// `report::tools`), for a client of `era`, after `cursor`; pages of `config.page_size` items.
///
/// Errors: [`GatewayError::InvalidCursor`] for a cursor the gateway did not mint for this
/// list; [`GatewayError::MethodNotFound`] for an upstream scope the catalog does not know.
pub fn page(
    snap: &Catalog,
    own: &[Bytes],
    config: &CatalogConfig,
    kind: ListKind,
    scope: &Scope,
    era: Era,
    cursor: Option<&str>,
) -> Result<Bytes, GatewayError> {
    let offset = match cursor {
        Some(c) => decode_cursor(kind, c)?,
        None => 0,
    };
    let (items, hint, unavailable): (Vec<&[u8]>, _, Vec<&str>) = match scope {
        Scope::Gateway => (
            snap.merged[kind.index()].items.iter().chain(own).map(|b| b.as_ref()).collect(),
            snap.merged[kind.index()].hint,
            snap.unavailable.iter().map(|s| s.as_ref()).collect(),
        ),
        Scope::Upstream(ns) => {
            let ul =
                snap.upstreams.get(ns.as_ref()).ok_or_else(|| GatewayError::MethodNotFound(kind.method().into()))?;
            (
                ul.items[kind.index()].iter().map(|e| e.raw.as_ref()).collect(),
                ul.hints[kind.index()],
                if ul.up && ul.listed { Vec::new() } else { vec![ns.as_ref()] },
            )
        }
    };
    // A cursor is the client's text: an offset past the list (or near `usize::MAX`) is one the
    // gateway never minted.
    if offset > items.len() {
        return Err(GatewayError::InvalidCursor);
    }
    let end = offset.saturating_add(config.page_size).min(items.len());
    let page = &items[offset..end];
    let mut out = Vec::with_capacity(page.iter().map(|i| i.len() + 1).sum::<usize>() + 160);
    let mut w = ObjectWriter::begin(&mut out);
    if era == Era::Modern {
        w.string("resultType", "complete");
        w.with("ttlMs", |o| o.extend_from_slice(hint.ttl_ms.unwrap_or(config.list_ttl_ms).to_string().as_bytes()));
        w.string("cacheScope", if hint.private { "private" } else { "public" });
    }
    w.with(kind.items_key(), |o| {
        o.push(b'[');
        for (i, item) in page.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            o.extend_from_slice(item);
        }
        o.push(b']');
    });
    if end < items.len() {
        w.string("nextCursor", &encode_cursor(kind, end));
    }
    if !unavailable.is_empty() {
        w.with("_meta", |o| {
            let mut m = ObjectWriter::begin(o);
            m.with(mcp::META_UNAVAILABLE, |o| {
                serde_json::to_writer(&mut *o, &unavailable).expect("writing JSON to a Vec cannot fail");
            });
            m.end();
        });
    }
    w.end();
    Ok(Bytes::from(out))
}
