//! Redaction: every finding replaced with `[REDACTED:<kind>]`, in text and in the strings of
//! JSON values, each counted in `sekisho_sensitive_findings_total{kind, where, action}`.

use std::borrow::Cow;

use serde_json::Value;

use super::{Finding, KindSet, scan};
use crate::observe::metrics::METRICS;

/// Where a finding was made (the `where` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Call arguments on their way into an audit record.
    Audit,
    /// A log line (an upstream's stderr, an upstream's error text).
    Log,
    /// A result on its way to the client.
    Result,
    /// A message an upstream relays to the client during a call (a log message, progress, a
    /// sampling or elicitation request).
    Relayed,
}

impl Place {
    /// The label value: `audit`, `log`, `result`, `relayed`.
    pub fn name(self) -> &'static str {
        match self {
            Place::Audit => "audit",
            Place::Log => "log",
            Place::Result => "result",
            Place::Relayed => "relayed",
        }
    }
}

/// `text` with `findings` (sorted, not overlapping, from [`scan`] of this text) replaced.
pub fn apply(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        out.push_str(&text[at..f.range.start]);
        out.push_str(f.kind.marker());
        at = f.range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// `text` with every finding of `kinds` replaced, each counted as found at `place` and
/// redacted; borrowed when nothing was found (no allocation on the common path).
pub fn text<'a>(text: &'a str, kinds: KindSet, place: Place) -> Cow<'a, str> {
    let found = scan(text, kinds);
    if found.is_empty() {
        return Cow::Borrowed(text);
    }
    count(&found, place, "redact");
    Cow::Owned(apply(text, &found))
}

/// How much of an upstream's text [`for_log`] looks through: a PEM block's worth, so a secret
/// that starts within the part logged is found whole.
const LOG_WINDOW: usize = 16 * 1024;

/// An upstream's own words (an error message, an error body, a line it printed) made fit for
/// the gateway's log and error texts: the first 16 KiB read as UTF-8 (lossy), every finding of
/// every kind replaced and counted (`where="log"`), then cut to at most `max` bytes on a
/// character boundary. Redacting before cutting leaves no part of a cut secret behind.
pub fn for_log(raw: &[u8], max: usize) -> String {
    let window = String::from_utf8_lossy(&raw[..raw.len().min(LOG_WINDOW)]);
    let mut out = text(&window, KindSet::ALL, Place::Log).into_owned();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Follow a PEM private key printed over several lines that are logged one by one (each
/// redacted alone would leave the key's body lines): `Some(replacement)` when `line` belongs
/// to a key an earlier line opened, updating `open`, which the caller keeps per stream. Body
/// lines (base64, blank, or `Proc-Type:`/`DEK-Info:` headers) and the `-----END` line become
/// the marker; a line that starts with base64 of 16 or more characters and goes on with
/// something else (a key cut short) loses that start and closes the key; any other line
/// closes it and is not the key's (`None`), so a key that never ends hides nothing after it.
pub fn inside_private_key(open: &mut bool, line: &[u8]) -> Option<String> {
    let find = |text: &[u8], needle: &[u8]| memchr::memmem::find(text, needle);
    if !*open {
        let begin = find(line, b"-----BEGIN ").filter(|_| find(line, b"PRIVATE KEY-----").is_some());
        *open = begin.is_some_and(|b| find(&line[b..], b"-----END ").is_none());
        return None;
    }
    let marker = super::Kind::PrivateKey.marker();
    let trimmed = line.trim_ascii();
    let base64 = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    let run = trimmed.iter().take_while(|b| base64(b)).count();
    let header = trimmed.starts_with(b"Proc-Type:") || trimmed.starts_with(b"DEK-Info:");
    let out = if find(line, b"-----END ").is_some() {
        *open = false;
        marker.to_string()
    } else if run == trimmed.len() || header {
        marker.to_string()
    } else if run >= 16 {
        *open = false;
        format!("{marker}{}", String::from_utf8_lossy(&trimmed[run..]))
    } else {
        *open = false;
        return None;
    };
    METRICS.detect.finding(super::Kind::PrivateKey.name(), Place::Log.name(), "redact");
    Some(out)
}

/// Count `found` in the metric with `action` (`redact` or `block`).
pub fn count(found: &[Finding], place: Place, action: &'static str) {
    for f in found {
        METRICS.detect.finding(f.kind.name(), place.name(), action);
    }
}

/// Redact every string of `value` (member names are kept: they are schema, not data); returns
/// how many findings were replaced.
pub fn value(value: &mut Value, kinds: KindSet, place: Place) -> usize {
    let mut n = 0;
    walk(value, &mut |s| {
        let found = scan(s, kinds);
        if !found.is_empty() {
            count(&found, place, "redact");
            n += found.len();
            *s = apply(s, &found);
        }
    });
    n
}

/// Every finding in the strings of `value`, scanning stops at the first string with one.
pub fn first_in(value: &Value, kinds: KindSet) -> Vec<Finding> {
    match value {
        Value::String(s) => scan(s, kinds),
        Value::Array(items) => items.iter().map(|i| first_in(i, kinds)).find(|f| !f.is_empty()).unwrap_or_default(),
        Value::Object(map) => map.values().map(|i| first_in(i, kinds)).find(|f| !f.is_empty()).unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn walk(value: &mut Value, f: &mut impl FnMut(&mut String)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(items) => items.iter_mut().for_each(|i| walk(i, f)),
        Value::Object(map) => map.values_mut().for_each(|i| walk(i, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_texts_are_redacted_before_they_are_cut() {
        let raw = format!("{}: token sk-FAKEfake0123456789abcdefFAKE é", "x".repeat(150));
        let out = for_log(raw.as_bytes(), 200);
        assert!(out.ends_with("token [REDACTED:api_key] é"), "{out}");
        let out = for_log(raw.as_bytes(), 158);
        assert!(out.len() <= 158 && !out.contains("sk-FAKE"), "{out}");
        assert_eq!(for_log("aé".as_bytes(), 2), "a", "cut on a character boundary");
    }

    #[test]
    fn a_private_key_over_many_lines_is_followed_to_its_end() {
        let mut open = false;
        let lines =
            ["k: -----BEGIN RSA PRIVATE KEY-----", "MIIEFAKE", "", "FAKE==", "-----END RSA PRIVATE KEY-----", "next"];
        let out: Vec<Option<String>> = lines.iter().map(|l| inside_private_key(&mut open, l.as_bytes())).collect();
        let m = || Some("[REDACTED:private_key]".to_string());
        assert_eq!(out, [None, m(), m(), m(), m(), None]);
        let cut = ["-----BEGIN OPENSSH PRIVATE KEY-----", "b3BlbnNzaC1rZXktdjEFAKE (cut)", "after"];
        let out: Vec<Option<String>> = cut.iter().map(|l| inside_private_key(&mut open, l.as_bytes())).collect();
        assert_eq!(out, [None, Some("[REDACTED:private_key] (cut)".into()), None], "a cut key ends");
        assert_eq!(inside_private_key(&mut open, b"-----BEGIN PRIVATE KEY-----MIIE-----END PRIVATE KEY-----"), None);
        assert!(!open, "a key on one line ends on it");
        let never = ["-----BEGIN PRIVATE KEY-----", "the-last-line"];
        let out: Vec<Option<String>> = never.iter().map(|l| inside_private_key(&mut open, l.as_bytes())).collect();
        assert_eq!(out, [None, None], "a key that never ends hides nothing after it");
    }
}
