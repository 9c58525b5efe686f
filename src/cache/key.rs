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

/// The canonical form of raw JSON arguments (`{}` when absent or not JSON).
pub fn canonical_arguments(raw: Option<&[u8]>) -> Vec<u8> {
    let v: serde_json::Value = raw.and_then(|r| serde_json::from_slice(r).ok()).unwrap_or(serde_json::json!({}));
    let mut out = Vec::with_capacity(raw.map_or(2, <[u8]>::len));
    canonical_json(&v, &mut out);
    out
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
        let a = canonical_arguments(Some(br#"{"b": [1, {"y":2,"x":1}], "a": "s"}"#));
        let b = canonical_arguments(Some(br#"{"a":"s","b":[1,{"x":1,"y":2}]}"#));
        assert_eq!(a, b);
        assert_eq!(a, br#"{"a":"s","b":[1,{"x":1,"y":2}]}"#);
        assert_ne!(canonical_arguments(Some(br#"{"b":[2,1]}"#)), canonical_arguments(Some(br#"{"b":[1,2]}"#)));
        assert_eq!(canonical_arguments(None), b"{}");
    }
}
