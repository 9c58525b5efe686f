//! Sealed task ids (the `io.modelcontextprotocol/tasks` extension, ext-tasks 2026-07-28): the
//! id a client holds for an upstream's task names the upstream, the upstream's own task id and
//! the caller, sealed with the session key, so `tasks/get|update|cancel` reach the right
//! upstream (and the replica of it that holds the task) from any gateway replica with no
//! shared store, and another caller presenting it is told "not found" exactly as for an
//! unknown task (design.md §8).
//!
//! Format: base64url(no pad) of `nonce (24) || XChaCha20-Poly1305(payload)`; the payload is
//! `format version (1) || caller tag (16) || upstream replica index (2, BE) || upstream name
//! length (1) || upstream name || upstream task id`. The cipher key and the nonce key are derived from the 32-byte session key
//! with HMAC-SHA256 under labels of their own (so they never equal the session-id key), and the
//! nonce is HMAC-SHA256 over the payload (a synthetic IV): sealing is deterministic, so the same
//! caller gets the same id for the same upstream task every time (`tasks/get` echoes it, a
//! relayed status notification names it), and equal ids reveal nothing but that equality.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};

/// The longest upstream task id the gateway seals, in bytes; an upstream that mints longer ids
/// gets its task results refused as invalid (they would make client ids unbounded).
pub const MAX_UPSTREAM_TASK_ID: usize = 256;

/// The longest sealed id the gateway will try to open, in characters: the longest it mints
/// (24 + 16 + 1 + 16 + 2 + 1 + 255 + 256 bytes, base64url) is 763.
pub const MAX_SEALED_LEN: usize = 768;

const VERSION: u8 = 1;
/// Associated data: a sealed task id is never mistaken for another sealed value.
const AAD: &[u8] = b"sekisho task id v1";

/// What a sealed task id stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskClaims {
    /// The namespace of the upstream that holds the task.
    pub upstream: String,
    /// The index of the upstream's replica that created it.
    pub replica: usize,
    /// The upstream's own task id.
    pub task_id: String,
}

/// Seals and opens task ids with keys derived from one 32-byte session key.
pub struct TaskSealer {
    cipher: XChaCha20Poly1305,
    nonce_key: [u8; 32],
}

fn derive(key: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

impl TaskSealer {
    /// A sealer for `key` (`server.session_key`; `None`: a random key for this process, so ids
    /// are good only on this replica until it restarts).
    pub fn new(key: Option<[u8; 32]>) -> Self {
        let key = key.unwrap_or_else(rand::random);
        let cipher_key = derive(&key, b"sekisho/task-id/cipher");
        TaskSealer {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&cipher_key)),
            nonce_key: derive(&key, b"sekisho/task-id/nonce"),
        }
    }

    /// The id a client with caller tag `caller` holds for task `task_id` that replica
    /// `replica` of `upstream` created; `None` when the upstream's id is empty or longer than
    /// [`MAX_UPSTREAM_TASK_ID`], the upstream name is longer than 255 bytes, or the index does
    /// not fit 16 bits (pools hold at most 64).
    pub fn seal(&self, upstream: &str, replica: usize, task_id: &str, caller: [u8; 16]) -> Option<String> {
        if task_id.is_empty() || task_id.len() > MAX_UPSTREAM_TASK_ID || upstream.len() > 255 {
            return None;
        }
        let replica = u16::try_from(replica).ok()?;
        let mut payload = Vec::with_capacity(20 + upstream.len() + task_id.len());
        payload.push(VERSION);
        payload.extend_from_slice(&caller);
        payload.extend_from_slice(&replica.to_be_bytes());
        payload.push(upstream.len() as u8);
        payload.extend_from_slice(upstream.as_bytes());
        payload.extend_from_slice(task_id.as_bytes());
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.nonce_key).expect("HMAC takes any key length");
        mac.update(&payload);
        let nonce: [u8; 32] = mac.finalize().into_bytes().into();
        let nonce = &nonce[..24];
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(nonce), Payload { msg: &payload, aad: AAD })
            .expect("in-memory AEAD encryption");
        let mut token = Vec::with_capacity(24 + sealed.len());
        token.extend_from_slice(nonce);
        token.extend_from_slice(&sealed);
        Some(URL_SAFE_NO_PAD.encode(token))
    }

    /// Open a task id presented by the caller with tag `caller`. `None` when it was not sealed
    /// with this key, was altered, or belongs to another caller — the same answer for each, so
    /// a caller learns nothing about ids that are not its own.
    pub fn open(&self, token: &str, caller: [u8; 16]) -> Option<TaskClaims> {
        if token.len() > MAX_SEALED_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() < 24 {
            return None;
        }
        let (nonce, sealed) = raw.split_at(24);
        let payload = self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: AAD }).ok()?;
        let (&version, rest) = payload.split_first()?;
        if version != VERSION || rest.len() < 19 || rest[..16] != caller {
            return None;
        }
        let replica = u16::from_be_bytes([rest[16], rest[17]]) as usize;
        let name_len = rest[18] as usize;
        let rest = &rest[19..];
        if rest.len() <= name_len {
            return None;
        }
        let (upstream, task_id) = rest.split_at(name_len);
        Some(TaskClaims {
            upstream: String::from_utf8(upstream.to_vec()).ok()?,
            replica,
            task_id: String::from_utf8(task_id.to_vec()).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_deterministic_and_bound_to_its_caller() {
        let s = TaskSealer::new(Some([3; 32]));
        let t = s.seal("conf_modern", 2, "786512e2-9e0d", [1; 16]).unwrap();
        assert_eq!(s.seal("conf_modern", 2, "786512e2-9e0d", [1; 16]).as_deref(), Some(t.as_str()), "deterministic");
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "header-safe: {t}");
        let c = s.open(&t, [1; 16]).unwrap();
        assert_eq!((c.upstream.as_str(), c.replica, c.task_id.as_str()), ("conf_modern", 2, "786512e2-9e0d"));
        assert_ne!(s.seal("conf_modern", 3, "786512e2-9e0d", [1; 16]).unwrap(), t, "per replica");
        assert!(s.open(&t, [2; 16]).is_none(), "another caller");
        assert_ne!(s.seal("conf_modern", 2, "786512e2-9e0d", [2; 16]).unwrap(), t, "per caller");
        assert!(TaskSealer::new(Some([4; 32])).open(&t, [1; 16]).is_none(), "another key");
        assert!(TaskSealer::new(Some([3; 32])).open(&t, [1; 16]).is_some(), "another replica, same key");
    }

    #[test]
    fn tampered_oversized_and_foreign_ids_are_refused() {
        let s = TaskSealer::new(None);
        let t = s.seal("a", 0, "b", [0; 16]).unwrap();
        for i in 0..t.len() {
            let mut bad = t.clone().into_bytes();
            bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
            assert!(s.open(std::str::from_utf8(&bad).unwrap(), [0; 16]).is_none(), "flipped char {i}");
        }
        assert!(s.open("", [0; 16]).is_none());
        assert!(s.open("not a token!", [0; 16]).is_none());
        assert!(s.open(&"A".repeat(MAX_SEALED_LEN + 1), [0; 16]).is_none());
        assert!(s.seal("a", 0, "", [0; 16]).is_none());
        assert!(s.seal("a", 0, &"x".repeat(MAX_UPSTREAM_TASK_ID + 1), [0; 16]).is_none());
        let longest = s.seal(&"u".repeat(255), 63, &"x".repeat(MAX_UPSTREAM_TASK_ID), [0; 16]).unwrap();
        assert!(longest.len() <= MAX_SEALED_LEN, "{}", longest.len());
        assert!(s.open(&longest, [0; 16]).is_some());
    }
}
