//! What one answered call costs: the configured rate (a tool's price over its upstream's)
//! applied to the call's time and answer bytes, plus the cost the upstream reported in the
//! result's `_meta`, read as hostile input.

use std::time::Duration;

use super::config::{MAX_PRICE, Price};
use crate::wire::object::ObjectView;

/// The price in force for calls of one tool (or of an upstream's other calls), in dollars.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rate {
    /// Per call answered.
    pub per_call: f64,
    /// Per second of measured time.
    pub per_second: f64,
    /// Per KiB of answer bytes.
    pub per_kib: f64,
    /// The `_meta` key of the upstream's own reported cost.
    pub meta_key: Option<Box<str>>,
}

impl Rate {
    /// The rate of `tool` (field by field) over `upstream`; `None` when neither has a price.
    pub fn of(upstream: Option<&Price>, tool: Option<&Price>) -> Option<Rate> {
        if upstream.is_none() && tool.is_none() {
            return None;
        }
        let pick = |f: fn(&Price) -> Option<f64>| tool.and_then(f).or_else(|| upstream.and_then(f)).unwrap_or(0.0);
        let key = tool.and_then(|t| t.meta_key.as_deref()).or_else(|| upstream.and_then(|u| u.meta_key.as_deref()));
        Some(Rate {
            per_call: pick(|p| p.per_call),
            per_second: pick(|p| p.per_second),
            per_kib: pick(|p| p.per_kib),
            meta_key: key.map(Box::from),
        })
    }

    /// The configured part of a call's cost: `per_call + per_second × elapsed + per_kib ×
    /// bytes / 1024`, in dollars.
    pub fn fixed(&self, elapsed: Duration, bytes: usize) -> f64 {
        self.per_call + self.per_second * elapsed.as_secs_f64() + self.per_kib * bytes as f64 / 1024.0
    }
}

/// The cost an upstream reported under `meta_key` in a result's `_meta`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reported {
    /// No `_meta`, or no such key in it.
    Absent,
    /// A finite number of dollars within `0..=MAX_PRICE`.
    Dollars(f64),
    /// Something else under the key (a string, a negative or huge number, an object, a
    /// malformed `_meta`): ignored, counted.
    Invalid,
}

/// Read `result._meta[meta_key]` from the result bytes `body` (see [`Reported`]).
pub fn reported(body: &[u8], meta_key: &str) -> Reported {
    if !crate::upstream::translate::has_top_level_key(body, "_meta") {
        return Reported::Absent;
    }
    let Ok(result) = ObjectView::parse(body) else { return Reported::Absent };
    let Some(span) = result.get(body, "_meta") else { return Reported::Absent };
    let meta = &body[span];
    let Ok(view) = ObjectView::parse(meta) else { return Reported::Invalid };
    let Some(span) = view.get(meta, meta_key) else { return Reported::Absent };
    match serde_json::from_slice::<f64>(&meta[span]) {
        Ok(v) if v.is_finite() && (0.0..=MAX_PRICE).contains(&v) => Reported::Dollars(v),
        _ => Reported::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_overrides_its_upstream_field_by_field() {
        let up = Price { per_call: Some(1.0), per_kib: Some(0.5), meta_key: Some("c".into()), ..Price::default() };
        let tool = Price { per_call: Some(3.0), per_second: Some(2.0), ..Price::default() };
        let r = Rate::of(Some(&up), Some(&tool)).unwrap();
        assert_eq!((r.per_call, r.per_second, r.per_kib, r.meta_key.as_deref()), (3.0, 2.0, 0.5, Some("c")));
        assert_eq!(Rate::of(None, None), None);
        let fixed = r.fixed(Duration::from_millis(1500), 2048);
        assert!((fixed - (3.0 + 3.0 + 1.0)).abs() < 1e-12, "{fixed}");
    }

    #[test]
    fn reported_costs_are_read_as_hostile_input() {
        let read = |body: &str| reported(body.as_bytes(), "cost");
        assert_eq!(read(r#"{"content":[],"_meta":{"cost":0.25}}"#), Reported::Dollars(0.25));
        assert_eq!(read(r#"{"content":[],"_meta":{"other":1}}"#), Reported::Absent);
        assert_eq!(read(r#"{"content":[]}"#), Reported::Absent);
        assert_eq!(read(r#"{"content":[{"text":"\"_meta\""}]}"#), Reported::Absent, "only the result's own _meta");
        for hostile in [
            r#"{"_meta":{"cost":-1}}"#,
            r#"{"_meta":{"cost":"0.5"}}"#,
            r#"{"_meta":{"cost":1e400}}"#,
            r#"{"_meta":{"cost":1e12}}"#,
            r#"{"_meta":{"cost":{"usd":1}}}"#,
            r#"{"_meta":{"cost":null}}"#,
            r#"{"_meta":{"cost":1,"cost":0}}"#,
            r#"{"_meta":7}"#,
        ] {
            assert_eq!(read(hostile), Reported::Invalid, "{hostile}");
        }
    }
}
