//! How upstream names become catalog names: `{namespace}{separator}{name}`, kept within the
//! strictest client rule `^[A-Za-z0-9_-]{1,64}$` (shortened with a stable hash suffix when
//! needed), and how upstream resource URIs become gateway URIs and back.

use sha2::{Digest, Sha256};

/// The longest name every known client accepts.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` satisfies `^[A-Za-z0-9_-]{1,64}$`.
pub fn is_portable(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Eight hex digits of SHA-256 over the namespace and the original name: stable across
/// restarts and replicas, so a shortened name never changes while its tool exists.
pub fn hash_suffix(namespace: &str, original: &str) -> String {
    let digest = Sha256::new().chain_update(namespace).chain_update([0u8]).chain_update(original).finalize();
    hex::encode(&digest[..4])
}

/// The catalog name of `original` in `namespace`.
///
/// Portable names pass as `{namespace}{separator}{original}`. Otherwise characters outside
/// `[A-Za-z0-9_-]` become `_`, the result is cut to leave room, and `_` plus
/// [`hash_suffix`] is appended, so distinct originals stay distinct.
pub fn exposed_name(namespace: &str, separator: &str, original: &str) -> String {
    let plain = format!("{namespace}{separator}{original}");
    if is_portable(&plain) {
        return plain;
    }
    let sanitized: String =
        plain.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    let suffix = hash_suffix(namespace, original);
    let keep = MAX_NAME_LEN - suffix.len() - 1;
    let mut cut = sanitized;
    cut.truncate(keep);
    format!("{cut}_{suffix}")
}

/// The scheme-and-authority prefix of gateway resource URIs for `namespace`.
pub fn uri_prefix(namespace: &str) -> String {
    format!("sekisho://{namespace}/")
}

/// The gateway URI (or URI template) for an upstream's: `sekisho://{namespace}/{original}`.
/// The original is kept verbatim so templates still expand, and the prefix has no variables.
pub fn exposed_uri(namespace: &str, original: &str) -> String {
    format!("{}{original}", uri_prefix(namespace))
}

/// Split a gateway URI into `(namespace, original)`; `None` when it is not one.
pub fn split_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("sekisho://")?;
    let slash = rest.find('/')?;
    Some((&rest[..slash], &rest[slash + 1..]))
}

/// Whether `uri` could be an expansion of RFC 6570 `template`: literal parts must match
/// exactly and each `{…}` expression must expand to at least one character.
pub fn template_matches(template: &str, uri: &str) -> bool {
    enum Part<'a> {
        Lit(&'a str),
        Var,
    }
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        if open > 0 {
            parts.push(Part::Lit(&rest[..open]));
        }
        parts.push(Part::Var);
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Lit(rest));
    }
    // Backtracking is bounded: templates have few expressions and URIs are short.
    fn matches(parts: &[Part<'_>], s: &str, budget: &mut u32) -> bool {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        match parts.split_first() {
            None => s.is_empty(),
            Some((Part::Lit(lit), rest)) => s.strip_prefix(lit).is_some_and(|r| matches(rest, r, budget)),
            Some((Part::Var, rest)) => {
                (1..=s.len()).filter(|i| s.is_char_boundary(*i)).any(|i| matches(rest, &s[i..], budget))
            }
        }
    }
    let mut budget = 10_000;
    uri.len() <= 8192 && matches(&parts, uri, &mut budget)
}

/// The separator of a tenant upstream's internal name, `t{tenant id}.{server config name}`
/// (`tenancy::upstreams`). Static namespaces are `A-Za-z0-9_-` only, so none contains it.
pub const TENANT_MARK: char = '.';

/// The tenant id in a tenant upstream's internal name; `None` for a static upstream's.
pub fn tenant_of(upstream: &str) -> Option<i64> {
    upstream.strip_prefix('t')?.split_once(TENANT_MARK)?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_names_pass_through() {
        assert_eq!(exposed_name("time", "__", "get_current_time"), "time__get_current_time");
        assert!(is_portable("a-b_C9"));
        assert!(!is_portable("a.b"));
        assert!(!is_portable(""));
    }

    #[test]
    fn unportable_names_are_sanitized_and_hashed_stably() {
        let a = exposed_name("fs", "__", "read.file");
        assert!(is_portable(&a), "{a}");
        assert!(a.starts_with("fs__read_file_"));
        assert_eq!(a, exposed_name("fs", "__", "read.file"), "stable");
        assert_ne!(a, exposed_name("fs", "__", "read/file"), "distinct originals stay distinct");
        let long = "x".repeat(100);
        let b = exposed_name("ns", "__", &long);
        assert_eq!(b.len(), 64);
        assert!(is_portable(&b));
        assert_ne!(b, exposed_name("ns", "__", &"x".repeat(101)));
    }

    #[test]
    fn uris_round_trip() {
        let u = exposed_uri("everything", "test://static/resource/1");
        assert_eq!(u, "sekisho://everything/test://static/resource/1");
        assert_eq!(split_uri(&u), Some(("everything", "test://static/resource/1")));
        assert_eq!(split_uri("file:///x"), None);
    }

    #[test]
    fn templates_match_expansions() {
        assert!(template_matches("test://template/{id}/data", "test://template/123/data"));
        assert!(!template_matches("test://template/{id}/data", "test://template//data"));
        assert!(!template_matches("test://template/{id}/data", "test://other/123/data"));
        assert!(template_matches("file:///{path}", "file:///a/b.txt"));
        assert!(!template_matches("file:///{path}", "file:///"));
        assert!(template_matches("x://{a}-{b}", "x://1-2"));
        assert!(template_matches("plain://uri", "plain://uri"));
        assert!(!template_matches("plain://uri", "plain://urix"));
    }
}
