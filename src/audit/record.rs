//! One audit record as it is stored: who, what, outcome, when, and its place in its writer's
//! hash chain. The canonical form (what the hash covers) is the record's compact JSON without
//! `hash`, members in declaration order, absent members left out.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `prev_hash` of a chain's first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A `tools/call`, `resources/read` or `prompts/get`.
    Call,
    /// An admin action: a runtime switch, a cache clear, a drain, a store command.
    Admin,
    /// An approval decision on a held call (issue 15 item 3 writes these; `Audit::approval`).
    Approval,
    /// Records that found the buffer full and were dropped (`detail.count`), written once the
    /// sink takes records again (`on_audit_failure = "serve"`).
    Dropped,
    /// The chain head so far (`detail.head_seq`, `detail.head_hash`), every `anchor_every`
    /// records or `anchor_interval`; `detail.closed = true` for the writer's last record at
    /// a clean shutdown.
    Anchor,
}

impl Kind {
    /// The name stored in the `kind` column.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Admin => "admin",
            Kind::Approval => "approval",
            Kind::Dropped => "dropped",
            Kind::Anchor => "anchor",
        }
    }
}

/// One stored record. `seq` counts from 1 per `writer`; `prev_hash` is the previous record's
/// `hash` ([`GENESIS`] for seq 1); `hash` = SHA-256(`prev_hash` ‖ canonical record), in hex.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Record {
    /// The chain: `<replica name>@<start time, RFC 3339 ms>`.
    pub writer: String,
    /// Position in the writer's chain, from 1.
    pub seq: u64,
    /// The previous record's hash (hex).
    pub prev_hash: String,
    /// What it is about.
    pub kind: Kind,
    /// When the call or action finished (RFC 3339, UTC, ms).
    pub at: String,
    /// The caller's stable id (`Principal::label`: a key's name, `key:<hash>`, `sk:<tenant>:<key>`, `anon`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The caller's tenant (store keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The id of the key used (never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The JSON-RPC method (`tools/call`, …) or the admin action (`switch`, `cache/clear`,
    /// `drain`, `store/<kind>/<action>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The tool or prompt name, the resource URI, or the action's object (a switch's layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The upstream that answered, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// SHA-256 (hex) of the canonical JSON of the arguments (of the raw bytes when they are
    /// not JSON the gateway reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_digest: Option<String>,
    /// The arguments, redacted (secret-looking keys replaced, strings and size bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// `ok`, `tool_error`, `rpc_error`, or the gateway's outcome label (`unavailable`, `shed`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The JSON-RPC error code, for errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// From receipt to answer, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// The cache's word on the answer (`hit`, `miss`, `coalesced`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// The idempotency step's word (`replayed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<String>,
    /// The call's trace id (W3C `traceparent` in `_meta`), when the client sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Kind-specific detail (anchor head, dropped count, an admin action's parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

impl Record {
    /// A record of `kind` at `at` with every optional member absent (chain members empty:
    /// the writer fills them).
    pub fn new(kind: Kind, at: String) -> Record {
        Record {
            writer: String::new(),
            seq: 0,
            prev_hash: String::new(),
            kind,
            at,
            caller: None,
            tenant: None,
            key_id: None,
            method: None,
            name: None,
            upstream: None,
            args_digest: None,
            args: None,
            outcome: None,
            code: None,
            duration_ms: None,
            cache: None,
            idempotency: None,
            trace_id: None,
            detail: None,
        }
    }

    /// The canonical form the hash covers.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).expect("records serialize")
    }
}

/// SHA-256(`prev_hash` ‖ `canonical`) in lower-case hex.
pub fn chain_hash(prev_hash: &str, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// A JSON-lines line: the canonical record with `"hash"` as its last member.
pub fn file_line(canonical: &str, hash: &str) -> String {
    let body = canonical.strip_suffix('}').expect("a record is an object");
    format!("{body},\"hash\":\"{hash}\"}}")
}

/// The canonical record and hash of a JSON-lines line (the inverse of [`file_line`]).
///
/// Errors: a readable reason when the line does not end with a `"hash"` member of 64 hex digits.
pub fn split_line(line: &str) -> Result<(String, &str), String> {
    const TAIL: usize = ",\"hash\":\"".len() + 64 + "\"}".len();
    let line = line.trim_end();
    if line.len() < TAIL + 2 || !line.is_char_boundary(line.len() - TAIL) {
        return Err("the line does not end with a \"hash\" member".into());
    }
    let (head, tail) = line.split_at(line.len() - TAIL);
    let hash = tail
        .strip_prefix(",\"hash\":\"")
        .and_then(|t| t.strip_suffix("\"}"))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("the line does not end with a \"hash\" member of 64 hex digits")?;
    Ok((format!("{head}}}"), hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_splits_back_into_its_canonical_record_and_hash() {
        let mut r = Record::new(Kind::Call, "2026-01-01T00:00:00.000Z".into());
        r.caller = Some("ops".into());
        let canonical = r.canonical();
        let hash = chain_hash(GENESIS, &canonical);
        let line = file_line(&canonical, &hash);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["hash"], hash.as_str());
        let (c, h) = split_line(&line).unwrap();
        assert_eq!(c, canonical);
        assert_eq!(h, hash);
        assert!(split_line("{\"a\":1}").is_err());
    }
}
