//! What the cache and the idempotency records store: an upstream's answer with its provenance
//! and lifetime, and its byte-exact L2 (Redis) form.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::wire::mcp::Era;

/// A stored answer: a cached result, or the outcome recorded for an idempotency key.
#[derive(Debug)]
pub struct Entry {
    /// The raw `result` (or, for idempotency records, the raw `error` when `error` is set).
    pub body: Bytes,
    /// Whether `body` is a JSON-RPC error object.
    pub error: bool,
    /// The era of the upstream that wrote it.
    pub era: Era,
    /// The upstream's namespace.
    pub upstream: Arc<str>,
    /// The upstream's own tool name.
    pub tool: Arc<str>,
    /// When it was stored, in Unix milliseconds.
    pub stored_ms: u64,
    /// How long it lives from `stored_ms`.
    pub ttl: Duration,
    /// Whether `[cache] adaptive_ttl` may shorten and stretch its L1 lifetime (tool results;
    /// not resources, whose lifetime is the upstream's).
    pub adaptive: bool,
    /// When it was stored, on this process's monotonic clock (the adaptive L1 lifetime counts
    /// from here; `tokio::time`, so tests can pause it).
    pub born: tokio::time::Instant,
}

impl Entry {
    /// An entry stored now. `body` is copied: a reply's bytes are a slice of the whole upstream
    /// read buffer, which must not live on in the cache (~5 KB per small entry).
    pub fn new(
        body: &[u8],
        error: bool,
        era: Era,
        upstream: &Arc<str>,
        tool: &str,
        ttl: Duration,
        adaptive: bool,
    ) -> Self {
        Entry {
            body: Bytes::copy_from_slice(body),
            error,
            era,
            upstream: Arc::clone(upstream),
            tool: Arc::from(tool),
            stored_ms: now_ms(),
            born: tokio::time::Instant::now(),
            ttl,
            adaptive,
        }
    }

    /// Age on this process's monotonic clock.
    pub fn age(&self) -> Duration {
        self.born.elapsed()
    }

    /// Age now, in milliseconds (wall clock: comparable across replicas).
    pub fn age_ms(&self) -> u64 {
        now_ms().saturating_sub(self.stored_ms)
    }

    pub(crate) fn remaining(&self) -> Duration {
        self.ttl.saturating_sub(Duration::from_millis(self.age_ms()))
    }

    /// The L2 form: a JSON object whose `body` member is the stored JSON byte for byte.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let era = if self.era == Era::Modern { "modern" } else { "legacy" };
        let mut out = Vec::with_capacity(self.body.len() + 128);
        out.extend_from_slice(format!(r#"{{"era":"{era}","up":"#).as_bytes());
        serde_json::to_writer(&mut out, &*self.upstream).expect("JSON");
        out.extend_from_slice(b",\"tool\":");
        serde_json::to_writer(&mut out, &*self.tool).expect("JSON");
        let rest = format!(
            r#","at":{},"ttl":{},"err":{},"adaptive":{},"body":"#,
            self.stored_ms,
            self.ttl.as_millis(),
            self.error,
            self.adaptive
        );
        out.extend_from_slice(rest.as_bytes());
        out.extend_from_slice(if self.body.is_empty() { b"null" } else { &self.body });
        out.push(b'}');
        out
    }

    pub(crate) fn decode(raw: &[u8]) -> Option<Entry> {
        #[derive(serde::Deserialize)]
        struct Wire<'a> {
            era: &'a str,
            up: &'a str,
            tool: &'a str,
            at: u64,
            ttl: u64,
            err: bool,
            #[serde(default)]
            adaptive: bool,
            #[serde(borrow)]
            body: &'a RawValue,
        }
        let w: Wire<'_> = serde_json::from_slice(raw).ok()?;
        Some(Entry {
            body: Bytes::copy_from_slice(w.body.get().as_bytes()),
            error: w.err,
            era: if w.era == "modern" { Era::Modern } else { Era::Legacy },
            upstream: Arc::from(w.up),
            tool: Arc::from(w.tool),
            stored_ms: w.at,
            born: tokio::time::Instant::now()
                .checked_sub(Duration::from_millis(now_ms().saturating_sub(w.at)))
                .unwrap_or_else(tokio::time::Instant::now),
            ttl: Duration::from_millis(w.ttl),
            adaptive: w.adaptive,
        })
    }
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Where a cached answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// In process.
    L1,
    /// Redis.
    L2,
}

impl Level {
    /// `l1` / `l2`.
    pub fn label(self) -> &'static str {
        match self {
            Level::L1 => "l1",
            Level::L2 => "l2",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_the_l2_encoding() {
        let e = Entry {
            body: Bytes::from_static(br#"{"content":[{"type":"text","text":"x"}]}"#),
            error: false,
            era: Era::Modern,
            upstream: Arc::from("up"),
            tool: Arc::from("t"),
            stored_ms: 42,
            born: tokio::time::Instant::now(),
            ttl: Duration::from_secs(3),
            adaptive: true,
        };
        let d = Entry::decode(&e.encode()).unwrap();
        assert_eq!(
            (d.body, d.era, &*d.upstream, &*d.tool, d.stored_ms, d.ttl, d.adaptive),
            (e.body, e.era, "up", "t", 42, e.ttl, true)
        );
    }
}
