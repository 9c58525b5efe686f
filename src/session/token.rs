//! Sealed legacy session ids: an AEAD-encrypted token that carries what any replica needs to
//! resume a session (negotiated revision, client capabilities, expiry), so sessions need no
//! shared store (design.md §4).
//!
//! Format: base64url(no pad) of `nonce (24 bytes) || XChaCha20-Poly1305(payload) (50 bytes)`;
//! the payload is `version index (1) || capability flags (1) || expiry unix seconds (8, BE) ||
//! random id (8) || caller tag (16)`. The caller tag binds the session to the caller that
//! created it (design.md §8: every id a client can present is bound to its owner). The result
//! is visible ASCII (99 characters), as Streamable HTTP requires of session ids.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use crate::wire::mcp::LEGACY_VERSIONS;

/// Client capability flags remembered for a session (from `initialize` params).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientFlags {
    /// The client declared `sampling`.
    pub sampling: bool,
    /// The client declared `elicitation`.
    pub elicitation: bool,
    /// The client declared `roots`.
    pub roots: bool,
}

impl ClientFlags {
    fn to_byte(self) -> u8 {
        u8::from(self.sampling) | u8::from(self.elicitation) << 1 | u8::from(self.roots) << 2
    }

    fn from_byte(b: u8) -> Self {
        ClientFlags { sampling: b & 1 != 0, elicitation: b & 2 != 0, roots: b & 4 != 0 }
    }

    /// The capabilities object these flags stand for, as raw JSON.
    pub fn to_json(self) -> String {
        let mut parts = Vec::new();
        if self.sampling {
            parts.push(r#""sampling":{}"#);
        }
        if self.elicitation {
            parts.push(r#""elicitation":{}"#);
        }
        if self.roots {
            parts.push(r#""roots":{}"#);
        }
        format!("{{{}}}", parts.join(","))
    }
}

/// What a session id carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionClaims {
    /// The negotiated legacy revision.
    pub version: &'static str,
    /// The client's declared capabilities.
    pub flags: ClientFlags,
    /// Unix time (seconds) after which the session is expired.
    pub expires_at: u64,
    /// The creating caller's tag (`crate::pipeline::parts::Identity::tag`); any other caller
    /// is treated as if the session did not exist.
    pub caller: [u8; 16],
}

/// Payload bytes: version, flags, expiry, random id, caller tag.
const PAYLOAD: usize = 1 + 1 + 8 + 8 + 16;

/// Seals and opens session ids with one 32-byte key.
pub struct SessionSealer {
    cipher: XChaCha20Poly1305,
    ttl: Duration,
}

/// Decode a configured key: base64 (standard or URL-safe) of exactly 32 bytes.
pub fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = STANDARD.decode(text.trim()).or_else(|_| URL_SAFE_NO_PAD.decode(text.trim())).ok()?;
    bytes.try_into().ok()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl SessionSealer {
    /// A sealer with the given key (`None`: a random key for this process) and session lifetime.
    pub fn new(key: Option<[u8; 32]>, ttl: Duration) -> Self {
        let key = key.unwrap_or_else(rand::random);
        SessionSealer { cipher: XChaCha20Poly1305::new(Key::from_slice(&key)), ttl }
    }

    /// Mint a session id for a newly initialized session of the caller with tag `caller`.
    pub fn seal(&self, version: &'static str, flags: ClientFlags, caller: [u8; 16]) -> String {
        let index = LEGACY_VERSIONS.iter().position(|v| *v == version).unwrap_or(LEGACY_VERSIONS.len() - 1);
        let mut payload = [0u8; PAYLOAD];
        payload[0] = index as u8;
        payload[1] = flags.to_byte();
        payload[2..10].copy_from_slice(&(now_secs() + self.ttl.as_secs()).to_be_bytes());
        payload[10..18].copy_from_slice(&rand::random::<[u8; 8]>());
        payload[18..34].copy_from_slice(&caller);
        self.encrypt(&payload)
    }

    /// Open a session id. `None` when it was not sealed with this key, was altered, or expired.
    pub fn open(&self, token: &str) -> Option<SessionClaims> {
        let payload = self.decrypt(token, 128)?;
        if payload.len() != PAYLOAD {
            return None;
        }
        let expires_at = u64::from_be_bytes(payload[2..10].try_into().ok()?);
        if expires_at <= now_secs() {
            return None;
        }
        Some(SessionClaims {
            version: LEGACY_VERSIONS.get(payload[0] as usize)?,
            flags: ClientFlags::from_byte(payload[1]),
            expires_at,
            caller: payload[18..34].try_into().ok()?,
        })
    }
}

impl SessionSealer {
    /// Seal `payload` (at most 64 bytes) under `domain` (one byte naming what it is, never 0..=
    /// the session payload's first byte values): base64url of `nonce || AEAD(domain || expiry ||
    /// payload)`, expiring after `ttl`. For other ids the gateway hands clients (e.g. the
    /// `requestState` of a bridged `input_required`), so any replica with the key can read them.
    pub fn seal_blob(&self, domain: u8, payload: &[u8], ttl: Duration) -> String {
        debug_assert!(payload.len() <= 64 && domain >= 0x80);
        let mut plain = Vec::with_capacity(9 + payload.len());
        plain.push(domain);
        plain.extend_from_slice(&(now_secs() + ttl.as_secs()).to_be_bytes());
        plain.extend_from_slice(payload);
        self.encrypt(&plain)
    }

    /// Open a blob sealed by [`SessionSealer::seal_blob`] under `domain`. `None` when it was
    /// sealed with another key or domain, altered, expired, or is not a token at all.
    pub fn open_blob(&self, domain: u8, token: &str) -> Option<Vec<u8>> {
        let plain = self.decrypt(token, 192)?;
        if plain.len() < 9 || plain[0] != domain {
            return None;
        }
        let expires_at = u64::from_be_bytes(plain[1..9].try_into().ok()?);
        (expires_at > now_secs()).then(|| plain[9..].to_vec())
    }
}

impl SessionSealer {
    /// base64url(no pad) of `nonce (24 bytes) || XChaCha20-Poly1305(plain)`.
    fn encrypt(&self, plain: &[u8]) -> String {
        let nonce: [u8; 24] = rand::random();
        let sealed = self.cipher.encrypt(XNonce::from_slice(&nonce), plain).expect("in-memory AEAD encryption");
        let mut token = Vec::with_capacity(24 + sealed.len());
        token.extend_from_slice(&nonce);
        token.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The plaintext of a token made by [`SessionSealer::encrypt`] with this key; `None` for a
    /// token longer than `max_len` characters, not base64url, or not sealed with this key.
    fn decrypt(&self, token: &str, max_len: usize) -> Option<Vec<u8>> {
        if token.len() > max_len {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() < 24 {
            return None;
        }
        let (nonce, sealed) = raw.split_at(24);
        self.cipher.decrypt(XNonce::from_slice(nonce), sealed).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let s = SessionSealer::new(None, Duration::from_secs(60));
        let flags = ClientFlags { sampling: true, elicitation: false, roots: true };
        let t = s.seal("2025-03-26", flags, [9; 16]);
        assert!(t.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert!(t.len() <= 128, "{}", t.len());
        let c = s.open(&t).unwrap();
        assert_eq!(c.version, "2025-03-26");
        assert_eq!(c.flags, flags);
        assert_eq!(c.caller, [9; 16]);
        let mut bad = t.clone().into_bytes();
        let last = bad.len() - 3;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(s.open(std::str::from_utf8(&bad).unwrap()).is_none());
        assert!(SessionSealer::new(None, Duration::from_secs(60)).open(&t).is_none(), "other key");
        assert!(s.open("not-a-token").is_none());
    }

    #[test]
    fn shared_key_works_across_instances_and_expiry_is_enforced() {
        let key = decode_key(&STANDARD.encode([7u8; 32])).unwrap();
        let a = SessionSealer::new(Some(key), Duration::from_secs(60));
        let b = SessionSealer::new(Some(key), Duration::from_secs(60));
        assert!(b.open(&a.seal("2025-11-25", ClientFlags::default(), [0; 16])).is_some());
        let expired = SessionSealer::new(Some(key), Duration::from_secs(0));
        assert!(a.open(&expired.seal("2025-11-25", ClientFlags::default(), [0; 16])).is_none());
        assert!(decode_key("c2hvcnQ=").is_none());
    }

    #[test]
    fn blobs_are_bound_to_their_domain_key_and_lifetime() {
        let s = SessionSealer::new(None, Duration::from_secs(60));
        let t = s.seal_blob(0x81, b"payload", Duration::from_secs(60));
        assert_eq!(s.open_blob(0x81, &t).as_deref(), Some(&b"payload"[..]));
        assert!(s.open_blob(0x82, &t).is_none(), "another domain");
        assert!(s.open(&t).is_none(), "not a session id");
        assert!(s.open_blob(0x81, &s.seal("2025-11-25", ClientFlags::default(), [0; 16])).is_none());
        assert!(SessionSealer::new(None, Duration::from_secs(60)).open_blob(0x81, &t).is_none(), "other key");
        assert!(s.open_blob(0x81, &s.seal_blob(0x81, b"x", Duration::ZERO)).is_none(), "expired");
    }
}
