//! What the store keeps secret: API keys (only an HMAC-SHA-256 under the pepper and a display
//! prefix are stored, RFC 2104) and server configs' environment and header values and upstream
//! credentials (sealed with XChaCha20-Poly1305, bound to their tenant and server config name).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::error::StoreError;
use crate::upstream::auth::config::AuthConfig;

/// What every API key starts with (`sks_` + 43 characters of base64url: 256 random bits).
pub const KEY_PREFIX: &str = "sks_";
/// Characters of a key shown as its display prefix (`sks_` and 8 more: 48 random bits).
pub const DISPLAY_PREFIX_LEN: usize = 12;
/// Longest bearer key the store hashes; anything longer is no key of ours.
pub const MAX_KEY_LEN: usize = 256;

/// A secret value: `Debug` prints `<redacted>`, there is no `Display` and no `Serialize`, so it
/// cannot reach a log, an error or an API answer by accident; [`Secret::expose`] is explicit.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value, for the one place that hands it to a child's environment or a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A server config's secret values: environment variables and HTTP headers by name, and the
/// credentials sekisho presents to an HTTP server (`Debug` shows names and the credential's
/// kind only).
#[derive(Clone, Default, PartialEq)]
pub struct SecretValues {
    /// Environment variables of the server's process.
    pub env: BTreeMap<String, Secret>,
    /// Headers of every request to the server's URL.
    pub headers: BTreeMap<String, Secret>,
    /// The upstream credentials of an HTTP server (a static bearer, or OAuth client
    /// credentials with a client secret), as `upstreams.<name>.auth` of the TOML file.
    pub auth: Option<AuthConfig>,
}

impl fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.auth.as_ref().map(|a| match a {
            AuthConfig::Bearer(_) => "bearer <redacted>",
            AuthConfig::ClientCredentials(_) => "oauth-client-credentials <redacted>",
        });
        f.debug_struct("SecretValues")
            .field("env", &self.env)
            .field("headers", &self.headers)
            .field("auth", &kind)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Plain {
    env: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<AuthConfig>,
}

/// Hashes API keys under the pepper and seals server secrets under the secret key.
pub struct Keys {
    /// HMAC-SHA-256 keyed with the pepper, cloned per key (the key schedule runs once).
    mac: Hmac<Sha256>,
    cipher: XChaCha20Poly1305,
}

impl Keys {
    /// Keys from `[store] key_pepper` (raw bytes, ≥ 32) and `[store] secret_key` (base64 of 32
    /// bytes).
    ///
    /// Errors: [`StoreError::Invalid`] naming the setting that is missing or malformed (never
    /// its value).
    pub fn new(key_pepper: &str, secret_key: &str) -> Result<Self, StoreError> {
        if key_pepper.len() < super::config::MIN_SECRET_BYTES {
            return Err(StoreError::Invalid("store.key_pepper must be at least 32 bytes".into()));
        }
        let key = crate::session::token::decode_key(secret_key)
            .ok_or_else(|| StoreError::Invalid("store.secret_key must be the base64 of 32 bytes".into()))?;
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key_pepper.as_bytes()).expect("HMAC takes any key length");
        Ok(Keys { mac, cipher: XChaCha20Poly1305::new(Key::from_slice(&key)) })
    }

    /// HMAC-SHA-256(pepper, key): what `api_keys.key_hash` holds and the config cache is keyed by.
    pub fn hash_key(&self, key: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Seal `values` for the server config `name` of tenant `tenant`: `nonce (24) ||
    /// XChaCha20-Poly1305(JSON)`, with the tenant and name as associated data, so a sealed
    /// value copied to another row or tenant does not open.
    pub fn seal(&self, tenant: i64, name: &str, values: &SecretValues) -> Vec<u8> {
        let plain = Plain {
            env: values.env.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect(),
            headers: values.headers.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect(),
            auth: values.auth.clone(),
        };
        let msg = serde_json::to_vec(&plain).expect("maps of strings and a credential serialize");
        let nonce: [u8; 24] = rand::random();
        let aad = associated_data(tenant, name);
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &msg, aad: &aad })
            .expect("in-memory AEAD encryption");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// Open what [`Keys::seal`] sealed for the same tenant and name.
    ///
    /// Errors: [`StoreError::Secret`] (naming the server config, never a value) when it was
    /// sealed under another key, for another row, or altered.
    pub fn open(&self, tenant: i64, name: &str, sealed: &[u8]) -> Result<SecretValues, StoreError> {
        let fail =
            || StoreError::Secret(format!("the secrets of server config {name:?} do not open with store.secret_key"));
        if sealed.len() < 24 + 16 {
            return Err(fail());
        }
        let aad = associated_data(tenant, name);
        let msg = self
            .cipher
            .decrypt(XNonce::from_slice(&sealed[..24]), Payload { msg: &sealed[24..], aad: &aad })
            .map_err(|_| fail())?;
        let plain: Plain = serde_json::from_slice(&msg).map_err(|_| fail())?;
        Ok(SecretValues {
            env: plain.env.into_iter().map(|(k, v)| (k, Secret(v))).collect(),
            headers: plain.headers.into_iter().map(|(k, v)| (k, Secret(v))).collect(),
            auth: plain.auth,
        })
    }
}

fn associated_data(tenant: i64, name: &str) -> Vec<u8> {
    let mut aad = b"sekisho/store/server-config/v1\0".to_vec();
    aad.extend_from_slice(&tenant.to_be_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// A new API key (`sks_` + base64url of 32 random bytes) and its display prefix.
pub fn new_key() -> (String, String) {
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()));
    let prefix = key[..DISPLAY_PREFIX_LEN].to_string();
    (key, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&"p".repeat(32), &base64::engine::general_purpose::STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn sealed_values_open_only_for_their_own_row_and_key() {
        let k = keys();
        let mut v = SecretValues::default();
        v.env.insert("TOKEN".into(), Secret::new("hunter2".into()));
        let sealed = k.seal(1, "weather", &v);
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(k.open(1, "weather", &sealed).unwrap(), v);
        assert!(k.open(2, "weather", &sealed).is_err(), "another tenant");
        assert!(k.open(1, "other", &sealed).is_err(), "another row");
        let other = Keys::new(&"p".repeat(32), &base64::engine::general_purpose::STANDARD.encode([8u8; 32])).unwrap();
        let err = other.open(1, "weather", &sealed).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        assert_eq!(format!("{v:?}").matches("<redacted>").count(), 1);
    }

    #[test]
    fn keys_are_random_and_hashed_under_the_pepper() {
        let (a, pa) = new_key();
        let (b, _) = new_key();
        assert_ne!(a, b);
        assert!(a.starts_with(&pa) && pa.len() == DISPLAY_PREFIX_LEN && a.len() == 4 + 43);
        let other = Keys::new(&"q".repeat(32), &base64::engine::general_purpose::STANDARD.encode([7u8; 32])).unwrap();
        assert_ne!(keys().hash_key(&a), other.hash_key(&a));
        assert!(Keys::new("short", "").is_err());
    }
}
