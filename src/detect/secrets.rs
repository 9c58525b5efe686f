//! The anchored detectors: one Aho–Corasick pass over the text finds every multi-byte trigger,
//! `memchr` finds every `@` and `+`, and a validator per trigger checks the characters that
//! follow (or, for `@`, surround) it. `@` stays out of the automaton: a one-byte pattern
//! disables its prefilter, and the pass over 16 KiB of JSON costs 28 µs instead of 1 µs
//! (BENCHMARKS.md, "Sensitive-data detection").

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;

use super::{Finding, Kind, KindSet, personal};

/// The triggers of the automaton, in the order `scan` matches on.
const PATTERNS: [&str; 18] = [
    "sk-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xoxb-",
    "xoxa-",
    "xoxp-",
    "xoxr-",
    "xoxs-",
    "AKIA",
    "ASIA",
    "AIza",
    "earer ",
    "eyJ",
    "-----BEGIN ",
];

static TRIGGERS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder().match_kind(MatchKind::LeftmostFirst).build(PATTERNS).expect("static patterns")
});

/// The longest token taken after a prefix, in bytes (longer runs are not tokens of these formats).
const MAX_TOKEN: usize = 512;
/// The longest PEM block looked through for its end line, in bytes.
const MAX_PEM: usize = 16 * 1024;

/// Append the anchored findings of `text` whose kind is in `kinds` to `found` (unordered:
/// the caller sorts), e-mail addresses and connection passwords around each `@`, and phone
/// numbers (their `+` is found by `memchr`).
pub fn scan(text: &[u8], kinds: KindSet, found: &mut Vec<Finding>) {
    for m in TRIGGERS.find_iter(text) {
        let (start, end) = (m.start(), m.end());
        let hit = match m.pattern().as_usize() {
            0 => token(text, start, end, Kind::ApiKey, 20, |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            1..=5 => exact(text, start, end, Kind::GithubToken, 36, |b| b.is_ascii_alphanumeric()),
            6 => token(text, start, end, Kind::GithubToken, 22, |b| b.is_ascii_alphanumeric() || b == b'_'),
            7..=11 => token(text, start, end, Kind::SlackToken, 10, |b| b.is_ascii_alphanumeric() || b == b'-'),
            12 | 13 => exact(text, start, end, Kind::AwsKeyId, 16, |b| b.is_ascii_uppercase() || b.is_ascii_digit()),
            14 => {
                exact(text, start, end, Kind::GoogleApiKey, 35, |b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }
            15 => bearer(text, start, end),
            16 => jwt(text, start),
            _ => pem(text, start, end),
        };
        if let Some(f) = hit.filter(|f| kinds.contains(f.kind)) {
            found.push(f);
        }
    }
    if kinds.contains(Kind::Email) || kinds.contains(Kind::ConnectionPassword) {
        for at in memchr::memchr_iter(b'@', text) {
            if let Some(f) = at_sign(text, at, kinds).filter(|f| kinds.contains(f.kind)) {
                found.push(f);
            }
        }
    }
    if kinds.contains(Kind::Phone) {
        for plus in memchr::memchr_iter(b'+', text) {
            if let Some(f) = personal::phone(text, plus) {
                found.push(f);
            }
        }
    }
}

/// Whether the byte before `start` allows a token to begin there (start of text or not a
/// word character).
fn starts_word(text: &[u8], start: usize) -> bool {
    start == 0 || !(text[start - 1].is_ascii_alphanumeric() || text[start - 1] == b'_')
}

/// Length of the run of `allowed` bytes at `from`, at most `max`.
fn run(text: &[u8], from: usize, max: usize, allowed: impl Fn(u8) -> bool) -> usize {
    text[from..].iter().take(max + 1).take_while(|b| allowed(**b)).count()
}

/// A prefix at `start..end` followed by at least `min` `allowed` bytes.
fn token(
    text: &[u8],
    start: usize,
    end: usize,
    kind: Kind,
    min: usize,
    allowed: impl Fn(u8) -> bool,
) -> Option<Finding> {
    let n = run(text, end, MAX_TOKEN, allowed);
    (starts_word(text, start) && n >= min && n <= MAX_TOKEN).then(|| Finding { kind, range: start..end + n })
}

/// A prefix at `start..end` followed by exactly `len` `allowed` bytes (and then not by another).
fn exact(
    text: &[u8],
    start: usize,
    end: usize,
    kind: Kind,
    len: usize,
    allowed: impl Fn(u8) -> bool,
) -> Option<Finding> {
    let n = run(text, end, len, &allowed);
    let after = text.get(end + n).copied();
    let ends = after.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'_'));
    (starts_word(text, start) && n == len && ends).then(|| Finding { kind, range: start..end + n })
}

/// `Bearer <credential>` (`earer ` matched; the `B` or `b` before it checked here): the
/// credential alone, at least 16 RFC 6750 token characters.
fn bearer(text: &[u8], start: usize, end: usize) -> Option<Finding> {
    if start == 0 || !matches!(text[start - 1], b'B' | b'b') || !starts_word(text, start - 1) {
        return None;
    }
    let n = run(text, end, MAX_TOKEN, |b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    (16..=MAX_TOKEN).contains(&n).then(|| Finding { kind: Kind::BearerToken, range: end..end + n })
}

fn base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `eyJ…`: header `.` payload `.` signature, base64url, the header decoding to a JSON object
/// with an `alg` member.
fn jwt(text: &[u8], start: usize) -> Option<Finding> {
    if !starts_word(text, start) {
        return None;
    }
    let header = run(text, start, 1024, base64url);
    let mut at = start + header;
    for _ in 0..2 {
        if text.get(at) != Some(&b'.') {
            return None;
        }
        let n = run(text, at + 1, 8 * 1024, base64url);
        if n == 0 {
            return None;
        }
        at += 1 + n;
    }
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&text[start..start + header]).ok()?;
    let value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&decoded).ok()?;
    value.contains_key("alg").then_some(Finding { kind: Kind::Jwt, range: start..at })
}

/// `-----BEGIN <words> PRIVATE KEY-----` through its `-----END …-----` line, or through the
/// base64 body when the end line is missing (a cut key is still a key).
fn pem(text: &[u8], start: usize, end: usize) -> Option<Finding> {
    let label = run(text, end, 40, |b| b.is_ascii_uppercase() || b == b' ');
    let after_label = end + label;
    if !text[end..after_label].ends_with(b"PRIVATE KEY") || !text[after_label..].starts_with(b"-----") {
        return None;
    }
    let body = after_label + 5;
    let window = &text[body..text.len().min(body + MAX_PEM)];
    let stop = match memchr::memmem::find(window, b"-----END ") {
        Some(i) => {
            let tail = &window[i + 9..];
            let close = memchr::memmem::find(&tail[..tail.len().min(64)], b"-----").map_or(0, |j| j + 5);
            body + i + 9 + close
        }
        None => body + run(text, body, MAX_PEM, |b| b.is_ascii_alphanumeric() || b"+/=\\\r\n\t ".contains(&b)),
    };
    Some(Finding { kind: Kind::PrivateKey, range: start..stop })
}

/// Around an `@`: the password of `scheme://user:password@host`, else an e-mail address.
fn at_sign(text: &[u8], at: usize, kinds: KindSet) -> Option<Finding> {
    if let Some(f) = connection_password(text, at) {
        return Some(f);
    }
    if kinds.contains(Kind::Email) { personal::email(text, at) } else { None }
}

/// The authority before `at` back to `://` (at most 256 bytes, no `/`, space or quote in it):
/// its password, between the first `:` and `at`.
fn connection_password(text: &[u8], at: usize) -> Option<Finding> {
    let from = at.saturating_sub(256);
    let back = &text[from..at];
    let stop = back.iter().rposition(|b| matches!(b, b'/' | b' ' | b'"' | b'\'' | b'\n' | b'<' | b'>' | b'@'))?;
    if stop < 2 || &back[stop - 2..=stop] != b"://" {
        return None;
    }
    let userinfo = from + stop + 1;
    let colon = text[userinfo..at].iter().position(|b| *b == b':')?;
    let password = userinfo + colon + 1;
    let host_ok = text.get(at + 1).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'[');
    (password < at && host_ok).then_some(Finding { kind: Kind::ConnectionPassword, range: password..at })
}
