//! JSON-RPC 2.0 batches (§6): telling a batch from one message, and splitting one into its
//! messages' spans without reading past the gateway's limit.

use std::fmt;

use serde::de::Deserializer;
use serde_json::value::RawValue;

use super::jsonrpc::{FrameError, Span, classify, span_of};

/// Whether a body is a JSON array (a JSON-RPC batch), judged by its first non-space byte.
pub fn is_batch(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
}

/// The start of the error text that stops [`split_batch`] at its limit.
const TOO_MANY: &str = "sekisho: batch over its limit";

/// Split a batch body into its elements' spans, reading no further than `max` elements
/// (JSON-RPC 2.0 §6 batches; the limit is the gateway's).
///
/// Errors: [`FrameError::Parse`] when it is not JSON; [`FrameError::Invalid`] (no id) when it
/// is not an array, or holds more than `max` elements — then nothing of it is kept.
pub fn split_batch(body: &[u8], max: usize) -> Result<Vec<Span>, FrameError> {
    struct Elements {
        max: usize,
    }
    impl<'de> serde::de::Visitor<'de> for Elements {
        type Value = Vec<&'de RawValue>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON array")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
            while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                if out.len() == self.max {
                    return Err(serde::de::Error::custom(TOO_MANY));
                }
                out.push(raw);
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let items = (&mut de).deserialize_seq(Elements { max }).and_then(|items| de.end().map(|()| items));
    match items {
        Ok(items) => Ok(items.iter().map(|raw| span_of(body, raw.get())).collect()),
        Err(e) if e.to_string().starts_with(TOO_MANY) => Err(FrameError::Invalid {
            reason: format!("Invalid request: a batch may hold at most {max} messages (server.max_batch_size)"),
            id: None,
        }),
        Err(e) => Err(classify(body, e, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split() {
        assert!(is_batch(b"  [1]"));
        let body = br#"[{"a":1}, {"b":2}]"#;
        let spans = split_batch(body, 2).unwrap();
        assert_eq!(&body[spans[1].clone()], br#"{"b":2}"#);
        assert!(matches!(split_batch(body, 1), Err(FrameError::Invalid { id: None, .. })));
        assert!(matches!(split_batch(b"[1,", 1), Err(FrameError::Parse(_))));
        assert!(matches!(split_batch(b"[1] x", 5), Err(FrameError::Parse(_))));
    }
}
