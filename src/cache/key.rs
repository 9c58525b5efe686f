//! Cache keys and idempotency hashes: the canonical JSON of arguments (equal values, equal
//! bytes), and SHA-256 digests over length-prefixed parts so no two different calls share one.

use sha2::{Digest, Sha256};

/// Write the canonical JSON of `v`: object keys sorted by code point, no insignificant
/// whitespace, numbers and strings as `serde_json` writes them. Equal JSON values have equal
/// canonical forms whatever their key order or spacing.
pub fn canonical_json(v: &serde_json::Value, out: &mut Vec<u8>) {
    match v {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("JSON");
                out.push(b':');
                canonical_json(&map[k], out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("JSON"),
    }
}

/// The canonical form of raw JSON arguments (`{}` when absent).
///
/// Errors: a readable reason when `raw` is not JSON the gateway can read exactly as an upstream
/// would: not JSON, nested deeper than 128 levels, a number outside the range of an `f64`, or
/// an object (at any depth) that names a member twice. Such arguments are refused (-32602),
/// never keyed as something else: two different calls must never share a cache key or an
/// idempotency hash.
pub fn canonical_arguments(raw: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let Some(raw) = raw else { return Ok(b"{}".to_vec()) };
    let v = strict_json(raw).map_err(|e| format!("params.arguments: {e}"))?;
    let mut out = Vec::with_capacity(raw.len());
    canonical_json(&v, &mut out);
    Ok(out)
}

/// Raw JSON read as a [`serde_json::Value`] exactly as an upstream reads it (the argument
/// validation reads arguments so too).
///
/// Errors: a readable reason, as [`canonical_arguments`] gives: not JSON, nested deeper than
/// 128 levels, a number outside the range of an `f64`, or an object that names a member twice.
pub fn strict_json(raw: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice::<Strict>(raw).map(|v| v.0).map_err(|e| e.to_string())
}

/// A JSON value read like [`serde_json::Value`], except that an object naming a member twice
/// is an error (a `Value` keeps the last silently).
struct Strict(serde_json::Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        serde_json::Number::from_f64(v).map(Into::into).ok_or_else(|| E::custom("a number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if members.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!("duplicate member {key:?}")));
            }
            members.insert(key, value);
        }
        Ok(serde_json::Value::Object(members))
    }
}

/// What `POST /admin/cache/clear` (and `sekisho cache clear`) drops: everything, one upstream's
/// results, or one tool's (the query string `?upstream=U&tool=T`).
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct ClearScope {
    /// Only this upstream's results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Only this tool's results (the upstream's own name; needs `upstream`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

/// The name cached reads of resource `uri` are keyed and invalidated under, in place of a tool.
pub fn resource_target(uri: &str) -> String {
    format!("resource:{uri}")
}

/// The hash an idempotency key is bound to: method, upstream, target and canonical arguments.
pub fn request_hash(method: &str, upstream: &str, target: &str, canonical_args: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), upstream.as_bytes(), target.as_bytes(), canonical_args] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order_and_whitespace() {
        let a = canonical_arguments(Some(br#"{"b": [1, {"y":2,"x":1}], "a": "s"}"#)).unwrap();
        let b = canonical_arguments(Some(br#"{"a":"s","b":[1,{"x":1,"y":2}]}"#)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, br#"{"a":"s","b":[1,{"x":1,"y":2}]}"#);
        assert_ne!(canonical_arguments(Some(br#"{"b":[2,1]}"#)), canonical_arguments(Some(br#"{"b":[1,2]}"#)));
        assert_eq!(canonical_arguments(None).unwrap(), b"{}");
    }

    #[test]
    fn unreadable_arguments_are_refused_never_keyed_as_empty() {
        for raw in
            [&br#"{"m":"TOKYO","m":"PARIS"}"#[..], br#"{"a":{"b":[{"c":1,"c":2}]}}"#, br#"{"n":1e400}"#, b"{not json"]
        {
            assert!(canonical_arguments(Some(raw)).is_err(), "{}", String::from_utf8_lossy(raw));
        }
        // Fuzzing found (`fuzz/regressions/envelope/`): a long literal read as a neighbouring
        // double by a best-effort parse, whose canonical form then read back differently.
        let long = format!("{{\"n\":33{}0}}", "5".repeat(125));
        let once = canonical_arguments(Some(long.as_bytes())).unwrap();
        assert_eq!(canonical_arguments(Some(&once)).unwrap(), once, "canonical form is a fixed point");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(canonical_arguments(Some(deep.as_bytes())).is_err());
    }
}
