//! Shallow views of JSON objects: top-level members as spans, read without re-typing values,
//! and a writer that re-emits members verbatim with targeted edits.
//!
//! Used for `params`, `_meta` and `result` objects on the hot path (design.md §2): routing
//! reads `params.name` or `params.uri`, the upstream hop rewrites `name` and `_meta`, and
//! everything else is copied byte for byte.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::jsonrpc::{Span, span_of, write_json_str};

/// A member name: a span of the source when it had no escapes, otherwise its decoded text.
#[derive(Clone, Debug)]
enum Key {
    Span(Span),
    Owned(Box<str>),
}

/// One top-level member of an object.
#[derive(Clone, Debug)]
struct Member {
    key: Key,
    value: Span,
}

/// A parsed object: member names and value spans, in source order, relative to its source.
///
/// Member names are unique: [`ObjectView::parse`] refuses an object that names a member twice
/// (after unescaping), because receivers disagree on which one counts (RFC 8259 §4: "names
/// within an object SHOULD be unique"; JavaScript and Python keep the last, this view would
/// read the first), and whatever the gateway decides from a message (routing, cache key,
/// idempotency hash) must come from exactly the member the upstream will read.
#[derive(Clone, Debug, Default)]
pub struct ObjectView {
    members: Vec<Member>,
}

/// Why bytes could not be read as a JSON object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotAnObject(pub String);

impl fmt::Display for NotAnObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ObjectView {
    /// Read the top-level members of the JSON object in `src`.
    ///
    /// Errors: [`NotAnObject`] when `src` is not a single JSON object, or when it names a
    /// member twice (the message names the member).
    pub fn parse(src: &[u8]) -> Result<ObjectView, NotAnObject> {
        let mut de = serde_json::Deserializer::from_slice(src);
        let members = de
            .deserialize_map(MembersVisitor { base: src })
            .and_then(|m| de.end().map(|()| m))
            .map_err(|e| NotAnObject(e.to_string()))?;
        Ok(ObjectView { members })
    }

    /// The raw value of the member named `key`, as a span of the source.
    pub fn get(&self, src: &[u8], key: &str) -> Option<Span> {
        self.members.iter().find(|m| key_str(&m.key, src) == key).map(|m| m.value.clone())
    }

    /// The value of member `key` when it is a JSON string, decoded.
    pub fn get_str<'s>(&self, src: &'s [u8], key: &str) -> Option<Cow<'s, str>> {
        let span = self.get(src, key)?;
        serde_json::from_slice::<Cow<'s, str>>(&src[span]).ok()
    }

    /// Iterate over `(name, value span)` in source order.
    pub fn iter<'v, 's: 'v>(&'v self, src: &'s [u8]) -> impl Iterator<Item = (&'v str, Span)> + 'v {
        self.members.iter().map(move |m| (key_str(&m.key, src), m.value.clone()))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the object has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

fn key_str<'a>(key: &'a Key, src: &'a [u8]) -> &'a str {
    match key {
        // The span was borrowed from a `&str` the deserializer validated as UTF-8.
        Key::Span(span) => std::str::from_utf8(&src[span.clone()]).unwrap_or(""),
        Key::Owned(s) => s,
    }
}

struct MembersVisitor<'b> {
    base: &'b [u8],
}

impl<'de> Visitor<'de> for MembersVisitor<'de> {
    type Value = Vec<Member>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Member>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let value: &'de RawValue = map.next_value()?;
            let key = match key {
                Cow::Borrowed(k) => Key::Span(span_of(self.base, k)),
                Cow::Owned(k) => Key::Owned(k.into()),
            };
            members.push(Member { key, value: span_of(self.base, value.get()) });
        }
        match first_duplicate(&members, self.base) {
            Some(name) => Err(serde::de::Error::custom(format_args!("duplicate member {name:?}"))),
            None => Ok(members),
        }
    }
}

/// Objects with at most this many members are checked pairwise (no allocation); larger ones
/// are sorted by name.
const PAIRWISE_MAX: usize = 16;

/// The first member name that occurs twice, if any: O(n²) compares for the few members of a
/// typical params or `_meta` object, O(n log n) for an object with many.
fn first_duplicate<'m>(members: &'m [Member], src: &'m [u8]) -> Option<&'m str> {
    if members.len() <= PAIRWISE_MAX {
        return members.iter().enumerate().find_map(|(i, a)| {
            let name = key_str(&a.key, src);
            members[..i].iter().any(|b| key_str(&b.key, src) == name).then_some(name)
        });
    }
    let mut names: Vec<&str> = members.iter().map(|m| key_str(&m.key, src)).collect();
    names.sort_unstable();
    names.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

/// Writes a JSON object member by member into a buffer.
pub struct ObjectWriter<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    /// Start an object (`{`).
    pub fn begin(out: &'o mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    fn comma(&mut self) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
    }

    /// A member whose value is raw JSON text.
    pub fn raw(&mut self, key: &str, value: &[u8]) -> &mut Self {
        self.comma();
        write_json_str(self.out, key);
        self.out.push(b':');
        self.out.extend_from_slice(value);
        self
    }

    /// A member whose value is a string, escaped as needed.
    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        self.comma();
        write_json_str(self.out, key);
        self.out.push(b':');
        write_json_str(self.out, value);
        self
    }

    /// A member whose value is written by `f` (which must write exactly one JSON value).
    pub fn with(&mut self, key: &str, f: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        self.comma();
        write_json_str(self.out, key);
        self.out.push(b':');
        f(self.out);
        self
    }

    /// Whether no member has been written yet.
    pub fn is_empty(&self) -> bool {
        self.first
    }

    /// Close the object (`}`).
    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// Whether the capabilities object `caps` (raw JSON, either side's) declares extension `id`:
/// `extensions` is an object with a non-null member `id` (2026-07-28 extension negotiation).
/// Reads no further than that; skips parsing when the id's text does not occur at all.
pub fn declares_extension(caps: &[u8], id: &str) -> bool {
    if memchr::memmem::find(caps, id.as_bytes()).is_none() {
        return false;
    }
    let Ok(view) = ObjectView::parse(caps) else { return false };
    let Some(span) = view.get(caps, "extensions") else { return false };
    let ext = &caps[span];
    ObjectView::parse(ext).ok().and_then(|v| v.get(ext, id)).is_some_and(|s| &ext[s] != b"null")
}

/// Insert members at the front of the raw JSON object `obj` (which must be an object) without
/// parsing it: `{` + members + `,` + rest. Used to add `resultType` and cache hints to results.
pub fn prepend_members(out: &mut Vec<u8>, obj: &[u8], members: &[u8]) {
    let start = obj.iter().position(|b| *b == b'{').map_or(0, |p| p + 1);
    let rest = &obj[start..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    out.reserve(obj.len() + members.len() + 2);
    out.push(b'{');
    out.extend_from_slice(members);
    if empty {
        out.push(b'}');
    } else {
        out.push(b',');
        out.extend_from_slice(rest);
    }
}

/// The raw JSON object `obj` with `_meta[key]` set to the raw JSON `value`: other `_meta`
/// members and every other member are kept byte for byte. Returns `obj` unchanged when it is
/// not an object. Used to mark cached and replayed results.
pub fn set_meta_member(obj: &[u8], key: &str, value: &[u8]) -> Vec<u8> {
    let Ok(view) = ObjectView::parse(obj) else { return obj.to_vec() };
    let mut member = Vec::with_capacity(key.len() + value.len() + 4);
    write_json_str(&mut member, key);
    member.push(b':');
    member.extend_from_slice(value);
    let mut out = Vec::with_capacity(obj.len() + member.len() + 12);
    let mut w = ObjectWriter::begin(&mut out);
    let mut done = false;
    for (k, span) in view.iter(obj) {
        let raw = &obj[span];
        if k == "_meta"
            && let Ok(m) = ObjectView::parse(raw)
        {
            w.with("_meta", |o| {
                if m.get(raw, key).is_none() {
                    prepend_members(o, raw, &member);
                    return;
                }
                // Replace the existing member of the same key.
                let mut inner = ObjectWriter::begin(o);
                for (mk, ms) in m.iter(raw) {
                    inner.raw(mk, if mk == key { value } else { &raw[ms] });
                }
                inner.end();
            });
            done = true;
        } else {
            w.raw(k, raw);
        }
    }
    if !done {
        w.with("_meta", |o| {
            o.push(b'{');
            o.extend_from_slice(&member);
            o.push(b'}');
        });
    }
    w.end();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_meta_member_adds_replaces_and_keeps_the_rest() {
        let add = set_meta_member(br#"{"content":[],"isError":false}"#, "k", b"1");
        let v: serde_json::Value = serde_json::from_slice(&add).unwrap();
        assert_eq!(v, serde_json::json!({"content": [], "isError": false, "_meta": {"k": 1}}));
        let merge = set_meta_member(br#"{"_meta":{"a":"b"},"x":2}"#, "k", br#"{"s":"hit"}"#);
        let v: serde_json::Value = serde_json::from_slice(&merge).unwrap();
        assert_eq!(v, serde_json::json!({"_meta": {"k": {"s": "hit"}, "a": "b"}, "x": 2}));
        let replace = set_meta_member(br#"{"_meta":{"k":0,"a":1}}"#, "k", b"2");
        let v: serde_json::Value = serde_json::from_slice(&replace).unwrap();
        assert_eq!(v, serde_json::json!({"_meta": {"k": 2, "a": 1}}));
    }

    #[test]
    fn reads_members_in_order_with_spans() {
        let src = br#" {"name":"a__b", "arguments":{"x":[1,{"y":2}]}, "_meta":{"progressToken":5}} "#;
        let v = ObjectView::parse(src).unwrap();
        let keys: Vec<_> = v.iter(src).map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, ["name", "arguments", "_meta"]);
        assert_eq!(v.get_str(src, "name").unwrap(), "a__b");
        assert_eq!(&src[v.get(src, "arguments").unwrap()], br#"{"x":[1,{"y":2}]}"#);
        assert!(v.get(src, "missing").is_none());
    }

    #[test]
    fn escaped_keys_are_decoded() {
        let src = br#"{"na\u006de":"x"}"#;
        let v = ObjectView::parse(src).unwrap();
        assert_eq!(v.get_str(src, "name").unwrap(), "x");
    }

    #[test]
    fn refuses_duplicate_members_even_when_escaped() {
        for src in [
            &br#"{"arguments":{"m":"TOKYO"},"arguments":{"m":"PARIS"}}"#[..],
            br#"{"name":"a","na\u006de":"b"}"#,
            br#"{"_meta":{},"x":1,"_meta":{}}"#,
        ] {
            let err = ObjectView::parse(src).unwrap_err();
            assert!(err.0.contains("duplicate member"), "{err}");
        }
        // Many members take the sorting path.
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        assert!(ObjectView::parse(format!("{{{many}\"k7\":0}}").as_bytes()).is_err());
        assert_eq!(ObjectView::parse(format!("{{{many}\"z\":0}}").as_bytes()).unwrap().len(), 41);
        // The same name at different depths is no duplicate.
        assert!(ObjectView::parse(br#"{"a":{"a":1},"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn rejects_non_objects() {
        assert!(ObjectView::parse(b"[1]").is_err());
        assert!(ObjectView::parse(b"{} x").is_err());
        assert!(ObjectView::parse(b"{\"a\":").is_err());
    }

    #[test]
    fn writer_and_prepend() {
        let mut out = Vec::new();
        let mut w = ObjectWriter::begin(&mut out);
        w.string("name", "q\"uote").raw("n", b"1");
        w.end();
        assert_eq!(out, br#"{"name":"q\"uote","n":1}"#);
        let mut out = Vec::new();
        prepend_members(&mut out, br#"{"a":1}"#, br#""resultType":"complete""#);
        assert_eq!(out, br#"{"resultType":"complete","a":1}"#);
        let mut out = Vec::new();
        prepend_members(&mut out, b"{ }", br#""resultType":"complete""#);
        assert_eq!(out, br#"{"resultType":"complete"}"#);
    }
}
