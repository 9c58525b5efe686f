//! The value encoding of the 2026-07-28 mirrored headers (`Mcp-Name`, `Mcp-Param-*`;
//! `basic/transports` "Value Encoding", SEP-2243): visible ASCII as it is, anything else as
//! `=?base64?{standard base64 of the UTF-8 bytes}?=`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;

/// The opening marker of the Base64 form (case-sensitive).
const PREFIX: &str = "=?base64?";
/// The closing marker of the Base64 form (case-sensitive).
const SUFFIX: &str = "?=";

/// Decode a received header value: optional whitespace around it trimmed (RFC 9110 §5.5), and
/// the `=?base64?…?=` form decoded. A value that lacks either marker is literal text.
///
/// `None` when the Base64 form is malformed: a payload outside the standard alphabet, without
/// its padding, not canonical, or not UTF-8 once decoded (the spec's test-case table refuses
/// each of these).
pub fn decode(raw: &str) -> Option<String> {
    let v = raw.trim();
    match v.strip_prefix(PREFIX).and_then(|r| r.strip_suffix(SUFFIX)) {
        Some(payload) => {
            let bytes = STANDARD.decode(payload).ok()?;
            if STANDARD.encode(&bytes) != payload {
                return None;
            }
            String::from_utf8(bytes).ok()
        }
        None => Some(v.to_string()),
    }
}

/// Whether a received header value carries `value` (trimmed; the Base64 form decoded). The
/// plain case compares without allocating.
pub fn matches(header: &str, value: &str) -> bool {
    let trimmed = header.trim();
    if !trimmed.starts_with(PREFIX) {
        return trimmed == value;
    }
    decode(trimmed).as_deref() == Some(value)
}

/// Encode `value` for a header: verbatim when it is visible ASCII (spaces inside allowed)
/// without surrounding whitespace, else the Base64 form. A value that begins with the Base64
/// marker is encoded too, so the receiver never reads literal text as an encoding.
pub fn encode(value: &str) -> HeaderValue {
    let plain = !value.is_empty() && value.bytes().all(|b| (0x20..0x7f).contains(&b)) && value.trim() == value;
    if plain
        && !value.starts_with(PREFIX)
        && let Ok(v) = HeaderValue::from_str(value)
    {
        return v;
    }
    if value.is_empty() {
        return HeaderValue::from_static("");
    }
    let text = format!("{PREFIX}{}{SUFFIX}", STANDARD.encode(value));
    HeaderValue::try_from(text).expect("base64 text is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_literal_and_base64_and_refuses_malformed() {
        assert_eq!(decode("  echo "), Some("echo".into()));
        assert_eq!(decode("=?base64?SGVsbG8=?="), Some("Hello".into()));
        assert_eq!(decode("=?base64?SGVsbG8?="), None, "bad padding");
        assert_eq!(decode("=?base64?SGVs!!!bG8=?="), None, "outside the alphabet");
        assert_eq!(decode("=?base64?//8=?="), None, "not UTF-8");
        assert_eq!(decode("=?base64?SGVsbG8="), Some("=?base64?SGVsbG8=".into()), "no suffix: literal");
        assert_eq!(decode("SGVsbG8="), Some("SGVsbG8=".into()), "no prefix: literal");
        assert_eq!(decode("=?BASE64?SGVsbG8=?="), Some("=?BASE64?SGVsbG8=?=".into()), "markers are case-sensitive");
        assert!(matches(" echo ", "echo"));
        assert!(matches("=?base64?Y2Fmw6k=?=", "café"));
        assert!(!matches("=?base64?Y2Fmw6k?=", "café"));
    }

    #[test]
    fn encodes_base64_only_when_needed() {
        assert_eq!(encode("get_weather"), "get_weather");
        assert_eq!(encode("us west"), "us west");
        assert_eq!(encode("café"), "=?base64?Y2Fmw6k=?=");
        assert_eq!(encode(" x"), "=?base64?IHg=?=");
        assert_eq!(encode("a\r\nb"), "=?base64?YQ0KYg==?=");
        assert_eq!(encode("=?base64?SGVsbG8="), "=?base64?PT9iYXNlNjQ/U0dWc2JHOD0=?=");
        assert_eq!(encode(""), "");
        for v in ["café", " x", "=?base64?x?=", "tab\there", "plain"] {
            assert_eq!(decode(encode(v).to_str().unwrap()).as_deref(), Some(v), "round trip of {v:?}");
        }
    }
}
