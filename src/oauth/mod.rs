//! The OAuth 2.1 resource server (MCP `basic/authorization`): access tokens from configured
//! issuers are accepted as callers — JWTs verified against the issuer's JWKS (`jwks`), opaque
//! tokens by RFC 7662 introspection (`introspect`) — and mapped to an identity, tenant and tool
//! groups (`claims`). A verified token is remembered by its SHA-256 digest until it expires, so
//! a repeated token costs a hash and a lookup.
//!
//! Telling tokens apart (the front's order): a static API key matches first; a `sks_` key goes
//! to the store; a token shaped like a JWS (three base64url segments, the first starting `eyJ`)
//! is verified as a JWT; anything else is introspected, when an issuer has introspection
//! credentials, else refused.

pub mod claims;
pub mod config;
pub mod fetch;
pub mod introspect;
pub mod jwks;
pub mod metadata;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, Validation};
use sha2::{Digest, Sha256};

use self::claims::{Mapper, Refusal};
use self::config::OAuthConfig;
use self::jwks::{IssuerKeys, KeyError};
use crate::pipeline::parts::{Identity, Principal, Priority, ViewSlot};
use crate::upstream::UpstreamSet;

/// Why a token was refused, as the challenge states it (RFC 6750 §3.1).
#[derive(Debug, PartialEq, Eq)]
pub enum OAuthError {
    /// HTTP 401, `error="invalid_token"`, with a fixed description (never token content).
    InvalidToken(&'static str),
    /// HTTP 403, `error="insufficient_scope"`.
    InsufficientScope,
    /// The issuer cannot be asked (HTTP 503 with `Retry-After`).
    Unavailable,
}

impl From<Refusal> for OAuthError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Invalid(why) => OAuthError::InvalidToken(why),
            Refusal::Scope => OAuthError::InsufficientScope,
        }
    }
}

/// A token's caller and how long it may be reused.
struct Verified {
    /// The caller; without its view when `bound` names a store instance.
    principal: Principal,
    /// The store instance its claims name, attached per request (so store changes apply).
    bound: Option<claims::Bound>,
    /// Unix seconds after which the token is not accepted (its `exp`, or the introspection
    /// cache's bound).
    until: u64,
    /// The audiences it was issued for (at most 16), checked per route on every use.
    audiences: Vec<Box<str>>,
}

/// The resource server.
pub struct OAuth {
    config: OAuthConfig,
    /// The configured resource URI, split for per-route URIs and metadata URLs.
    pub resource: metadata::Resource,
    issuers: Vec<IssuerKeys>,
    algorithms: Vec<Algorithm>,
    mapper: Mapper,
    verified: moka::sync::Cache<[u8; 32], Arc<Verified>>,
    /// Opaque tokens an issuer called inactive, for a minute (a flood of random tokens asks
    /// the issuer once each).
    inactive: moka::sync::Cache<[u8; 32], ()>,
    http: fetch::Client,
    /// The store, for callers whose claims name an instance (`instance_claim`).
    tenancy: Option<Arc<crate::tenancy::Tenancy>>,
}

/// Now, in Unix seconds.
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Whether `token` is shaped like a JWS compact serialization (RFC 7515 §7.1).
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ")
        && token.split('.').count() == 3
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl OAuth {
    /// The resource server of `config` (validated), granting tools of `statics` (and, with
    /// `tenancy`, store instances named by `instance_claim`); its callers get `priority`.
    /// Nothing is fetched until the first token.
    pub fn new(
        config: &OAuthConfig,
        statics: Arc<UpstreamSet>,
        tenancy: Option<Arc<crate::tenancy::Tenancy>>,
        priority: Priority,
    ) -> Self {
        let http = fetch::client();
        let issuers = config
            .issuers
            .iter()
            .map(|i| IssuerKeys::new(i.clone(), http.clone(), config.jwks_refresh_interval, config.jwks_max_age))
            .collect();
        OAuth {
            issuers,
            algorithms: config.algorithms.iter().filter_map(|a| a.parse().ok()).collect(),
            mapper: Mapper::new(config.clone(), statics, priority),
            verified: moka::sync::Cache::builder()
                .max_capacity(config.token_cache_size)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            inactive: moka::sync::Cache::builder()
                .max_capacity(config.token_cache_size)
                .time_to_live(Duration::from_secs(60))
                .build(),
            http,
            tenancy,
            resource: metadata::Resource::new(&config.resource),
            config: config.clone(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// The caller of bearer `token` presented at a route whose resource URI is `route_resource`
    /// ([`metadata::Resource::of_path`]): the token must be issued for the gateway's resource
    /// or for that route's (RFC 8707), by a configured issuer, unexpired, with the required
    /// scopes.
    ///
    /// Errors: [`OAuthError`].
    pub async fn authenticate(&self, token: &str, route_resource: &str) -> Result<Principal, OAuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let v = match self.verified.get(&digest) {
            Some(v) => v,
            None => {
                if self.inactive.contains_key(&digest) {
                    return Err(OAuthError::InvalidToken("the token is not active"));
                }
                let v = Arc::new(if looks_like_jwt(token) {
                    self.verify_jwt(token).await?
                } else {
                    self.introspect(token, digest).await?
                });
                self.verified.insert(digest, Arc::clone(&v));
                v
            }
        };
        if now() > v.until.saturating_add(self.config.leeway.as_secs()) {
            self.verified.invalidate(&digest);
            return Err(OAuthError::InvalidToken("the token has expired"));
        }
        if !v.audiences.iter().any(|a| **a == *self.config.resource || **a == *route_resource) {
            return Err(OAuthError::InvalidToken("the token is not issued for this resource"));
        }
        match &v.bound {
            None => Ok(v.principal.clone()),
            Some(bound) => self.bound_caller(&v.principal, bound).await,
        }
    }

    /// `template` (a caller without a view) with the current view of the store instance
    /// `bound` names, as a key of that instance would be served.
    ///
    /// Errors: [`OAuthError::InvalidToken`] when the instance does not exist (or no store is
    /// configured); [`OAuthError::Unavailable`] when the store cannot be asked.
    async fn bound_caller(&self, template: &Principal, bound: &claims::Bound) -> Result<Principal, OAuthError> {
        let Some(tenancy) = &self.tenancy else {
            return Err(OAuthError::InvalidToken("the token's virtual server is not served here"));
        };
        let view = match tenancy.instance_view(&bound.tenant, &bound.instance).await {
            Ok(Some(view)) => view,
            Ok(None) => return Err(OAuthError::InvalidToken("the token's virtual server is not served here")),
            Err(e) => {
                tracing::warn!(error = %e, "oauth: the token's virtual server cannot be resolved");
                return Err(OAuthError::Unavailable);
            }
        };
        match template {
            Principal::ApiKey(identity) => Ok(Principal::ApiKey(Arc::new(Identity {
                tenant: Some(Arc::from(view.resolved.tenant.name.as_str())),
                view: Some(ViewSlot(view)),
                ..(**identity).clone()
            }))),
            Principal::Anonymous => Err(OAuthError::InvalidToken("the token names no caller")),
        }
    }

    /// The caller of JWT `token` verified now, without the verified-token cache (every call
    /// checks the signature; keys are still cached): what a cache miss costs, for benches.
    ///
    /// Errors: [`OAuthError`], as [`OAuth::authenticate`] (the audience is not checked here).
    pub async fn verify_uncached(&self, token: &str) -> Result<Principal, OAuthError> {
        Ok(self.verify_jwt(token).await?.principal)
    }

    /// Verify a JWT: its `alg` accepted, its `iss` a configured issuer, its signature by that
    /// issuer's key for `kid`, `exp` (required) and `nbf` within the leeway.
    async fn verify_jwt(&self, token: &str) -> Result<Verified, OAuthError> {
        // `alg: none` and unknown algorithms fail here: they are no `Algorithm`.
        let header = jsonwebtoken::decode_header(token).map_err(|_| OAuthError::InvalidToken("malformed token"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(OAuthError::InvalidToken("the token's algorithm is not accepted"));
        }
        let unverified: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| OAuthError::InvalidToken("malformed token"))?;
        let iss = unverified.get("iss").and_then(|v| v.as_str()).unwrap_or_default();
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config().issuer.trim_end_matches('/') == iss.trim_end_matches('/'))
            .ok_or(OAuthError::InvalidToken("the token's issuer is not trusted"))?;
        let key = issuer.key_for(header.kid.as_deref(), header.alg).await.map_err(|e| match e {
            KeyError::Unknown => OAuthError::InvalidToken("the token's signing key is unknown"),
            KeyError::Unavailable(_) => OAuthError::Unavailable,
        })?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.validate_aud = false; // checked per route, on every use
        validation.set_issuer(&[iss]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            OAuthError::InvalidToken(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                _ => "the token is invalid",
            })
        })?;
        let claims = data.claims;
        let until = claims.get("exp").and_then(|v| v.as_u64()).unwrap_or(0);
        let (principal, bound) = self.mapper.principal(issuer.config(), &claims)?;
        Ok(Verified { principal, bound, until, audiences: audiences(&claims) })
    }
}

/// The `aud` claim (a string or an array of strings, RFC 7519 §4.1.3), at most 16 entries.
fn audiences(claims: &serde_json::Value) -> Vec<Box<str>> {
    match claims.get("aud") {
        Some(serde_json::Value::String(s)) => vec![Box::from(s.as_str())],
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).take(16).map(Box::from).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("sks_abcdefgh"));
        assert!(!looks_like_jwt("eyJh.b"));
        assert!(!looks_like_jwt("eyJh.b.c d"));
        assert_eq!(audiences(&serde_json::json!({"aud": ["a", "b"]})).len(), 2);
        assert_eq!(audiences(&serde_json::json!({"aud": "a"})), vec![Box::from("a")]);
    }
}
