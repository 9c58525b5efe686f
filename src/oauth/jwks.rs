//! One issuer's signing keys: its metadata discovered once (RFC 8414 §3, else OpenID Connect
//! Discovery 1.0 §4), its JWKS (RFC 7517) fetched, kept, and fetched again when a token names a
//! `kid` it does not hold or the set is older than `jwks_max_age` — at most once per
//! `jwks_refresh_interval`, one fetch at a time, so a flood of tokens with random `kid`s costs
//! the issuer one request per interval. At most [`MAX_KEYS`] keys are kept.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::config::IssuerConfig;
use super::fetch::{self, FetchError};

/// The most keys one issuer's set holds (the rest of a larger document is ignored).
pub const MAX_KEYS: usize = 32;

/// One usable verification key.
pub struct Key {
    kid: Option<String>,
    /// The JWK's own `alg`, when it names one.
    alg: Option<Algorithm>,
    kind: Kind,
    /// The key, ready for `jsonwebtoken::decode`.
    pub key: DecodingKey,
}

/// Key types, which decide the algorithms a key may verify (no HMAC: `oct` keys are dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Kind {
    fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Kind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Kind::P256 => alg == ES256,
            Kind::P384 => alg == ES384,
            Kind::Ed25519 => alg == EdDSA,
        }
    }
}

/// The keys of one fetch.
struct KeySet {
    keys: Vec<Arc<Key>>,
    fetched: Instant,
}

/// The endpoints discovered from the issuer's metadata.
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    /// `jwks_uri`.
    pub jwks_uri: String,
    /// `introspection_endpoint` (RFC 7662), if it advertises one.
    pub introspection_endpoint: String,
}

/// Why no key could be found for a token.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key of the set has the token's `kid` and fits its `alg` (after a refresh, when one
    /// was allowed).
    #[error("no signing key of the issuer matches the token's kid and alg")]
    Unknown,
    /// The issuer could not be reached and no key set is held.
    #[error("the issuer's keys cannot be fetched: {0}")]
    Unavailable(FetchError),
}

/// One issuer's discovered endpoints and key set.
pub struct IssuerKeys {
    config: IssuerConfig,
    http: fetch::Client,
    endpoints: Mutex<Option<Endpoints>>,
    set: Mutex<Option<Arc<KeySet>>>,
    /// When the last fetch was tried (the rate limit).
    last_try: Mutex<Option<Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    refresh_interval: Duration,
    max_age: Duration,
}

impl IssuerKeys {
    /// Keys of `config`'s issuer, nothing fetched yet.
    pub fn new(config: IssuerConfig, http: fetch::Client, refresh_interval: Duration, max_age: Duration) -> Self {
        IssuerKeys {
            config,
            http,
            endpoints: Mutex::new(None),
            set: Mutex::new(None),
            last_try: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            refresh_interval,
            max_age,
        }
    }

    /// The issuer's configuration.
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// The key for a token of this issuer with header `kid` and `alg`: from the held set, else
    /// after a refresh when one is allowed now.
    ///
    /// Errors: [`KeyError::Unknown`] when no key fits; [`KeyError::Unavailable`] when no set
    /// is held and the issuer cannot be reached.
    pub async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<Key>, KeyError> {
        let held = self.set.lock().expect("jwks lock").clone();
        if let Some(set) = &held
            && set.fetched.elapsed() < self.max_age
            && let Some(k) = find(set, kid, alg)
        {
            return Ok(k);
        }
        let _one = self.fetching.lock().await;
        // Another caller may have refreshed while this one waited.
        let newer = self.set.lock().expect("jwks lock").clone();
        if let Some(set) = &newer
            && !held.as_ref().is_some_and(|h| Arc::ptr_eq(h, set))
            && let Some(k) = find(set, kid, alg)
        {
            return Ok(k);
        }
        let allowed = {
            let mut last = self.last_try.lock().expect("jwks lock");
            let ok = last.is_none_or(|t| t.elapsed() >= self.refresh_interval);
            if ok {
                *last = Some(Instant::now());
            }
            ok
        };
        if allowed {
            match self.fetch().await {
                Ok(set) => {
                    let set = Arc::new(set);
                    *self.set.lock().expect("jwks lock") = Some(Arc::clone(&set));
                    return find(&set, kid, alg).ok_or(KeyError::Unknown);
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.config.issuer, error = %e, "oauth: cannot fetch the issuer's keys");
                    if newer.is_none() {
                        return Err(KeyError::Unavailable(e));
                    }
                }
            }
        }
        // Refresh not allowed yet (or failed): what is held still counts, even when old.
        newer.as_ref().and_then(|s| find(s, kid, alg)).ok_or(KeyError::Unknown)
    }

    /// The discovered endpoints (discovered on first need; a failure is retried next time).
    ///
    /// Errors: the discovery's [`FetchError`].
    pub async fn endpoints(&self) -> Result<Endpoints, FetchError> {
        if let Some(e) = self.endpoints.lock().expect("jwks lock").clone() {
            return Ok(e);
        }
        let found = self.discover().await?;
        *self.endpoints.lock().expect("jwks lock") = Some(found.clone());
        Ok(found)
    }

    async fn discover(&self) -> Result<Endpoints, FetchError> {
        let issuer = self.config.issuer.trim_end_matches('/');
        // RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path.
        let (origin, path) = split_origin(issuer);
        let candidates = [
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{issuer}/.well-known/openid-configuration"),
        ];
        let mut last = None;
        for url in candidates {
            match fetch::get(&self.http, &url).await {
                Ok(doc) => {
                    let text = |k: &str| doc.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                    // RFC 8414 §3.3: the document must name the issuer it was fetched for.
                    if text("issuer").trim_end_matches('/') != issuer {
                        return Err(FetchError::Document {
                            url,
                            reason: "its issuer is not the configured one".into(),
                        });
                    }
                    return Ok(Endpoints {
                        jwks_uri: text("jwks_uri"),
                        introspection_endpoint: text("introspection_endpoint"),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("two candidates"))
    }

    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let url = if self.config.jwks_uri.is_empty() {
            let found = self.endpoints().await?.jwks_uri;
            if found.is_empty() {
                return Err(FetchError::Document { url: self.config.issuer.clone(), reason: "no jwks_uri".into() });
            }
            found
        } else {
            self.config.jwks_uri.clone()
        };
        let doc = fetch::get(&self.http, &url).await?;
        let keys = doc.get("keys").and_then(|k| k.as_array()).cloned().unwrap_or_default();
        let keys: Vec<Arc<Key>> = keys.into_iter().filter_map(usable).take(MAX_KEYS).map(Arc::new).collect();
        tracing::info!(issuer = %self.config.issuer, keys = keys.len(), "oauth: issuer keys fetched");
        Ok(KeySet { keys, fetched: Instant::now() })
    }
}

/// A JWK as a verification key, if it is one: a signing key (`use` absent or `sig`) of type
/// RSA, EC P-256/P-384 or OKP Ed25519; `oct` (HMAC) and unparsable keys are dropped.
fn usable(value: serde_json::Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Kind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Kind::P256,
            EllipticCurve::P384 => Kind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Kind::Ed25519,
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key { kid: jwk.common.key_id.clone(), alg, kind, key })
}

/// The key with `kid` that fits `alg`; without a `kid`, the only key that fits.
fn find(set: &KeySet, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
    let fits = |k: &&Arc<Key>| k.kind.fits(alg) && k.alg.is_none_or(|a| a == alg);
    match kid {
        Some(kid) => set.keys.iter().filter(fits).find(|k| k.kid.as_deref() == Some(kid)).cloned(),
        None => {
            let mut it = set.keys.iter().filter(fits);
            let only = it.next()?;
            it.next().is_none().then(|| Arc::clone(only))
        }
    }
}

/// `https://host:port` and the rest (`/path`, or empty) of a URL.
fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_split_for_rfc8414() {
        assert_eq!(split_origin("https://a.example"), ("https://a.example", ""));
        assert_eq!(split_origin("https://a.example/tenant/1"), ("https://a.example", "/tenant/1"));
    }

    #[test]
    fn hmac_and_encryption_keys_are_dropped() {
        assert!(usable(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"})).is_none());
        let rsa = serde_json::json!({"kty": "RSA", "n": "sXch", "e": "AQAB", "kid": "r", "use": "enc"});
        assert!(usable(rsa).is_none());
        let rsa = serde_json::json!({"kty": "RSA", "n": "sXch", "e": "AQAB", "kid": "r", "alg": "RS256"});
        let key = usable(rsa).expect("an RSA signing key");
        let set = KeySet { keys: vec![Arc::new(key)], fetched: Instant::now() };
        assert!(find(&set, Some("r"), Algorithm::RS256).is_some());
        assert!(find(&set, Some("r"), Algorithm::PS256).is_none(), "the JWK's own alg binds");
        assert!(find(&set, Some("r"), Algorithm::HS256).is_none());
        assert!(find(&set, Some("x"), Algorithm::RS256).is_none());
        assert!(find(&set, None, Algorithm::RS256).is_some());
    }
}
