//! Detection over raw JSON text (a result or an error object on its way to a client), without
//! building a `serde_json::Value`: every string (member names too) is scanned as its decoded
//! content, and integers of 13–19 digits as card numbers; redaction splices
//! `[REDACTED:<kind>]` into the text and keeps it valid JSON.
//!
//! A string without escapes is scanned in place (its bytes are its content); one with escapes
//! (`\n` in a PEM block, `\u0040` for `@`) is decoded first, so escaping hides nothing. The
//! walk is one `memchr` pass over the text plus the scanners' own linear passes.

use std::borrow::Cow;

use super::{Finding, Kind, KindSet, redact, scan_bytes};

/// What a scan of one JSON text found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    /// The kinds found.
    pub kinds: KindSet,
    /// How many findings there were.
    pub count: usize,
    /// With redaction asked for and a finding made: the text with every finding replaced.
    pub redacted: Option<Vec<u8>>,
}

/// The text is not JSON this walk can read (an unterminated string, a bad escape).
#[derive(Debug, PartialEq, Eq)]
pub struct Unreadable;

/// Scan `json` (one JSON value) for `kinds`; with `rewrite`, also build the redacted text.
/// Each finding is counted in `sekisho_sensitive_findings_total` as found at `place` with
/// `action`.
///
/// # Errors
/// [`Unreadable`] when a string does not end or does not decode.
pub fn scan(
    json: &[u8],
    kinds: KindSet,
    rewrite: bool,
    place: redact::Place,
    action: &'static str,
) -> Result<Scanned, Unreadable> {
    let mut out = Scanned::default();
    let mut text: Vec<u8> = Vec::new();
    // `copied`: how much of `json` has gone into `text` (once the first finding is made).
    let mut copied = 0;
    let mut at = 0;
    let cards = kinds.contains(Kind::CardNumber);
    loop {
        let next = memchr::memchr(b'"', &json[at..]).map(|i| at + i);
        let gap_end = next.unwrap_or(json.len());
        if cards {
            for (start, end) in long_integers(json, at, gap_end) {
                let found = scan_bytes(&json[start..end], KindSet::NONE.with(Kind::CardNumber));
                if found.is_empty() {
                    continue;
                }
                note(&mut out, &found, place, action);
                if rewrite {
                    text.extend_from_slice(&json[copied..start]);
                    text.push(b'"');
                    text.extend_from_slice(Kind::CardNumber.marker().as_bytes());
                    text.push(b'"');
                    copied = end;
                }
            }
        }
        let Some(open) = next else { break };
        let (close, escaped) = string_end(json, open + 1)?;
        let raw = &json[open + 1..close];
        let content: Cow<'_, [u8]> = if escaped {
            let decoded: String = serde_json::from_slice(&json[open..=close]).map_err(|_| Unreadable)?;
            Cow::Owned(decoded.into_bytes())
        } else {
            Cow::Borrowed(raw)
        };
        let found = scan_bytes(&content, kinds);
        if !found.is_empty() {
            note(&mut out, &found, place, action);
            if rewrite {
                text.extend_from_slice(&json[copied..open]);
                if escaped {
                    // Decoded content is valid UTF-8 (it came from a `String`).
                    let s = std::str::from_utf8(&content).expect("decoded from a String");
                    let replaced = redact::apply(s, &found);
                    serde_json::to_writer(&mut text, &replaced).expect("writing to a Vec");
                } else {
                    text.push(b'"');
                    splice(&mut text, raw, &found);
                    text.push(b'"');
                }
                copied = close + 1;
            }
        }
        at = close + 1;
    }
    if rewrite && out.count > 0 {
        text.extend_from_slice(&json[copied..]);
        out.redacted = Some(text);
    }
    Ok(out)
}

/// Count `found` and add it to `out`.
fn note(out: &mut Scanned, found: &[Finding], place: redact::Place, action: &'static str) {
    redact::count(found, place, action);
    out.count += found.len();
    for f in found {
        out.kinds = out.kinds.with(f.kind);
    }
}

/// `raw` with `found` (ranges into `raw`) replaced by their markers, appended to `text`.
fn splice(text: &mut Vec<u8>, raw: &[u8], found: &[Finding]) {
    let mut at = 0;
    for f in found {
        text.extend_from_slice(&raw[at..f.range.start]);
        text.extend_from_slice(f.kind.marker().as_bytes());
        at = f.range.end;
    }
    text.extend_from_slice(&raw[at..]);
}

/// The index of the `"` that ends the string whose content starts at `from`, and whether the
/// string has escapes.
fn string_end(json: &[u8], mut from: usize) -> Result<(usize, bool), Unreadable> {
    let mut escaped = false;
    loop {
        let i = from + memchr::memchr2(b'"', b'\\', &json[from..]).ok_or(Unreadable)?;
        if json[i] == b'"' {
            return Ok((i, escaped));
        }
        escaped = true;
        from = i + 2;
        if from > json.len() {
            return Err(Unreadable);
        }
    }
}

/// The integers of 13–19 digits between `from` and `to` (outside strings): the card numbers a
/// result may carry as JSON numbers. A fraction or an exponent is not an integer.
fn long_integers(json: &[u8], from: usize, to: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let gap = &json[from..to];
    let number = |b: u8| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-');
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < gap.len() {
            if !gap[i].is_ascii_digit() || (i > 0 && number(gap[i - 1])) {
                i += 1;
                continue;
            }
            let start = i;
            while i < gap.len() && number(gap[i]) {
                i += 1;
            }
            let token = &gap[start..i];
            if (13..=19).contains(&token.len()) && token.iter().all(u8::is_ascii_digit) {
                return Some((from + start, from + i));
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::redact::Place;
    use serde_json::{Value, json};

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvFAKEFAKEFAKE\n-----END PRIVATE KEY-----";

    fn redacted(v: &Value) -> Value {
        let raw = serde_json::to_vec(v).unwrap();
        let s = scan(&raw, KindSet::ALL, true, Place::Result, "redact").unwrap();
        serde_json::from_slice(&s.redacted.unwrap_or(raw)).expect("still JSON")
    }

    #[test]
    fn strings_escaped_or_not_and_member_names_are_redacted() {
        let v = json!({"content": [{"type": "text", "text": format!("key: {KEY} ok")}],
                       "structuredContent": {"jane@example.com": {"card": 4111111111111111u64, "f": 0.4111111111111111}},
                       "plain": "mail jane@example.com now", "n": 12});
        let out = redacted(&v);
        assert_eq!(out["content"][0]["text"], "key: [REDACTED:private_key] ok");
        assert_eq!(out["structuredContent"]["[REDACTED:email]"]["card"], "[REDACTED:card_number]");
        assert_eq!(out["structuredContent"]["[REDACTED:email]"]["f"], 0.4111111111111111, "a fraction is no card");
        assert_eq!(out["plain"], "mail [REDACTED:email] now");
        assert_eq!(out["n"], 12);
    }

    #[test]
    fn escapes_hide_nothing_and_clean_text_is_not_copied() {
        let raw = br#"{"t":"ask jane\u0040example.com \"quoted\""}"#;
        let s = scan(raw, KindSet::ALL, true, Place::Result, "redact").unwrap();
        assert_eq!(s.kinds, KindSet::NONE.with(Kind::Email));
        let out: Value = serde_json::from_slice(&s.redacted.unwrap()).unwrap();
        assert_eq!(out["t"], "ask [REDACTED:email] \"quoted\"");
        let clean =
            scan(br#"{"t":"nothing here \" at all","n":[1,2.5e3]}"#, KindSet::ALL, true, Place::Result, "redact");
        assert_eq!(clean, Ok(Scanned::default()));
    }

    #[test]
    fn kinds_are_filtered_and_broken_json_is_unreadable() {
        let raw = serde_json::to_vec(&json!({"a": "jane@example.com", "b": KEY})).unwrap();
        let s = scan(&raw, KindSet::secrets(), false, Place::Result, "block").unwrap();
        assert_eq!((s.kinds, s.count, s.redacted), (KindSet::NONE.with(Kind::PrivateKey), 1, None));
        for bad in [&br#"{"a":"open"#[..], &br#"{"a":"x\"#[..], &br#"["\q jane@example.com"]"#[..]] {
            assert_eq!(scan(bad, KindSet::ALL, true, Place::Result, "redact"), Err(Unreadable), "{bad:?}");
        }
    }
}
