//! Sensitive-data detection (issue 15 item 5): linear-time scanners over text that find
//! secrets (API-key and token formats, PEM private keys, JWTs, passwords in connection strings)
//! and personal data (e-mail addresses, Luhn-valid card numbers, `+`-prefixed phone numbers),
//! and redaction that replaces each finding with `[REDACTED:<kind>]`.
//!
//! One Aho–Corasick pass ([`secrets`]) finds every anchored trigger (`sk-`, `ghp_`, `AKIA`,
//! `eyJ`, `-----BEGIN `, `@`, `+`, …) and a strided probe ([`personal::cards`]) finds digit runs;
//! each candidate is then checked by a small hand-written validator. No backtracking: the work is
//! O(text length) plus O(candidate length) per candidate, each candidate bounded.
//! Applied to audit records ([`crate::audit::redact`]), logged upstream stderr lines and error
//! texts ([`crate::upstream::stderr`]), and optionally to results ([`result`]).

pub mod json;
pub mod kind;
pub mod personal;
pub mod redact;
pub mod result;
pub mod secrets;

pub use kind::{Kind, KindSet};

/// One finding: what was found and where, as a byte range of the scanned text (always on
/// UTF-8 character boundaries: every range starts and ends at ASCII bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What was found.
    pub kind: Kind,
    /// Byte range in the scanned text.
    pub range: std::ops::Range<usize>,
}

/// Every finding in `text` of a kind in `kinds`, sorted by start and not overlapping (of two
/// overlapping findings the earlier-starting, then longer, is kept).
pub fn scan(text: &str, kinds: KindSet) -> Vec<Finding> {
    scan_bytes(text.as_bytes(), kinds)
}

/// [`scan`] over bytes that need not be UTF-8 (the raw content of a JSON string): every
/// trigger and validator is ASCII, so ranges still start and end at ASCII bytes.
pub fn scan_bytes(text: &[u8], kinds: KindSet) -> Vec<Finding> {
    let mut found = Vec::new();
    if text.len() < kind::SHORTEST {
        return found;
    }
    secrets::scan(text, kinds, &mut found);
    if kinds.contains(Kind::CardNumber) {
        personal::cards(text, &mut found);
    }
    if found.len() > 1 {
        found.sort_by(|a, b| a.range.start.cmp(&b.range.start).then(b.range.end.cmp(&a.range.end)));
        let mut end = 0;
        found.retain(|f| {
            let keep = f.range.start >= end;
            if keep {
                end = f.range.end;
            }
            keep
        });
    }
    found
}
