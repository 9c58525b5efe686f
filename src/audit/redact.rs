//! Redaction of call arguments before they are recorded: values under keys that look secret
//! are replaced, long strings cut, the whole bounded. [`Redact`] is the hook the
//! sensitive-data detectors (issue 15 item 5) plug into: [`Detectors`], the default, runs them
//! on every string before [`KeyNames`].

use serde_json::Value;

/// What replaces a redacted value.
pub const REDACTED: &str = "<redacted>";

/// Turns arguments into what may be stored. Implementations must be cheap enough for the
/// audit writer's task (off the call path) and must never return more than `max_bytes` of JSON.
pub trait Redact: Send + Sync {
    /// The storable form of `args`, at most `max_bytes` of compact JSON.
    fn redact(&self, args: Value, max_bytes: usize) -> Value;
}

/// The default: secret-looking member names ([`is_secret_key`]) at any depth, strings cut to
/// `max_bytes / 8` bytes, and arguments still over `max_bytes` replaced by a note of their size.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyNames;

impl Redact for KeyNames {
    fn redact(&self, mut args: Value, max_bytes: usize) -> Value {
        scrub(&mut args, (max_bytes / 8).max(16));
        bounded(args, max_bytes)
    }
}

/// The default redaction: every string's sensitive data ([`crate::detect`], all kinds) replaced
/// with `[REDACTED:<kind>]` — before strings are cut, so no part of a secret survives a cut —
/// then [`KeyNames`]. Findings are counted with `where="audit"`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Detectors;

impl Redact for Detectors {
    fn redact(&self, mut args: Value, max_bytes: usize) -> Value {
        crate::detect::redact::value(&mut args, crate::detect::KindSet::ALL, crate::detect::redact::Place::Audit);
        KeyNames.redact(args, max_bytes)
    }
}

/// Whether a member named `key` holds a secret: its name, lower-cased without `-`, `_`, `.`
/// and spaces, contains `password`, `passwd`, `passphrase`, `secret`, `token`, `apikey`,
/// `authorization`, `credential`, `privatekey`, `cookie`, `bearer`, `accesskey` or
/// `sessionid`, or is `auth`, `pwd`, `pin`, `otp`, `jwt` or `key` itself.
pub fn is_secret_key(key: &str) -> bool {
    const CONTAINS: [&str; 13] = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "apikey",
        "authorization",
        "credential",
        "privatekey",
        "cookie",
        "bearer",
        "accesskey",
        "sessionid",
    ];
    const EXACT: [&str; 6] = ["auth", "pwd", "pin", "otp", "jwt", "key"];
    let folded: String =
        key.chars().filter(|c| !matches!(c, '-' | '_' | '.' | ' ')).flat_map(char::to_lowercase).collect();
    CONTAINS.iter().any(|s| folded.contains(s)) || EXACT.contains(&folded.as_str())
}

fn scrub(v: &mut Value, max_string: usize) {
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if is_secret_key(k) {
                    *child = Value::String(REDACTED.into());
                } else {
                    scrub(child, max_string);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| scrub(i, max_string)),
        Value::String(s) if s.len() > max_string => {
            let mut cut = max_string;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            let total = s.len();
            s.truncate(cut);
            s.push_str(&format!("…<cut, {total} bytes>"));
        }
        _ => {}
    }
}

fn bounded(v: Value, max_bytes: usize) -> Value {
    let len = serde_json::to_vec(&v).map_or(usize::MAX, |b| b.len());
    if len <= max_bytes {
        v
    } else {
        Value::String(format!("<{len} bytes of redacted arguments, over max_argument_bytes>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_looking_members_are_replaced_at_any_depth() {
        let args = json!({
            "query": "weather", "password": "hunter2", "nested": {"API_KEY": "sk-1", "list": [{"Authorization": "Bearer x"}]},
            "access-token": "t", "clientSecret": "c", "author": "Ann", "keyboard": "qwerty"
        });
        let out = KeyNames.redact(args, 4096);
        let text = out.to_string();
        for secret in ["hunter2", "sk-1", "Bearer x", "\"t\"", "\"c\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(out["query"], "weather");
        assert_eq!(out["author"], "Ann", "author is not auth");
        assert_eq!(out["keyboard"], "qwerty");
    }

    #[test]
    fn strings_and_the_whole_are_bounded() {
        let out = KeyNames.redact(json!({"text": "é".repeat(1000)}), 512);
        let s = out["text"].as_str().unwrap();
        assert!(s.len() < 120 && s.contains("<cut, 2000 bytes>"), "{s}");
        let many: Vec<String> = (0..500).map(|i| format!("item-{i}")).collect();
        let out = KeyNames.redact(json!({"items": many}), 512);
        assert!(out.as_str().unwrap().contains("over max_argument_bytes"), "{out}");
    }
}
