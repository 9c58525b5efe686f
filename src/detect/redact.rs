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
}

impl Place {
    /// The label value: `audit`, `log`, `result`.
    pub fn name(self) -> &'static str {
        match self {
            Place::Audit => "audit",
            Place::Log => "log",
            Place::Result => "result",
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
