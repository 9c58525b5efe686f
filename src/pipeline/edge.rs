//! The first step of every HTTP request, before its body is read: DNS-rebinding protection
//! (`Host` and `Origin`, per MCP `basic/transports` "Security Warning") and authentication
//! (static bearer API keys, compared as SHA-256 digests in constant time). It yields the
//! caller's [`Principal`] with the key's stable [`Identity`], which travels with the call.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use std::sync::Arc;

use super::parts::{Identity, Principal};
use crate::error::GatewayError;
use crate::front::config::ServerConfig;

/// Host, Origin and credential checks, built once from `[server]`.
pub struct Edge {
    allowed_hosts: Vec<String>,
    check_hosts: bool,
    allowed_origins: Vec<String>,
    any_origin: bool,
    /// Each key's SHA-256 digest and its identity (resolved when the configuration loaded).
    keys: Vec<([u8; 32], Arc<Identity>)>,
    /// Keys are required even without static ones (`[store]` keys are checked after these).
    required: bool,
}

const LOCAL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.rsplit_once(':').map_or(
        authority,
        |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) { h } else { authority }
        },
    )
}

impl Edge {
    /// Build from the server configuration. Host checks apply on loopback listeners (the
    /// DNS-rebinding case) and whenever `allowed_hosts` is set; `*` allows any host.
    ///
    /// Panics when the API keys' identities were not resolved (`ServerConfig::resolve_keys`,
    /// done by `Config::load`): unresolved keys would all share one empty id, and so one
    /// another's private cache entries and sessions.
    pub fn new(config: &ServerConfig) -> Self {
        assert!(
            config.api_keys.iter().all(|k| !k.identity.id.is_empty()),
            "API keys must be resolved (ServerConfig::resolve_keys) before the edge is built"
        );
        let loopback = config.listen_addr().ip().is_loopback();
        let any_host = config.allowed_hosts.iter().any(|h| h == "*");
        Edge {
            allowed_hosts: config.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            check_hosts: !any_host && (loopback || !config.allowed_hosts.is_empty()),
            allowed_origins: config
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            any_origin: config.allowed_origins.iter().any(|o| o == "*"),
            keys: config
                .api_keys
                .iter()
                .map(|k| (Sha256::digest(k.secret().as_bytes()).into(), Arc::clone(&k.identity)))
                .collect(),
            required: !config.api_keys.is_empty(),
        }
    }

    /// Require a key even when no static key is configured: with `[store]`, keys live in the
    /// store, and an anonymous caller would see every upstream.
    pub fn requiring_keys(mut self) -> Self {
        self.required = true;
        self
    }

    /// Check a request's `Host`, `Origin` and `Authorization` headers, in that order.
    ///
    /// Errors: [`GatewayError::SiteNotAllowed`] (HTTP 403) for a host or origin that could be a
    /// rebinding attack; [`GatewayError::Unauthorized`] (HTTP 401) for missing or wrong keys.
    pub fn check(
        &self,
        host: Option<&str>,
        origin: Option<&str>,
        authorization: Option<&str>,
    ) -> Result<Principal, GatewayError> {
        self.check_site(host, origin)?;
        self.authenticate(authorization)
    }

    /// Whether API keys are required.
    pub fn requires_auth(&self) -> bool {
        self.required
    }

    /// Check the `Host` and `Origin` headers.
    ///
    /// Errors: [`GatewayError::SiteNotAllowed`] for a host or origin that could be a rebinding attack.
    pub fn check_site(&self, host: Option<&str>, origin: Option<&str>) -> Result<(), GatewayError> {
        if self.check_hosts {
            let host = host.map(|h| host_part(h.trim()).to_ascii_lowercase()).ok_or(GatewayError::SiteNotAllowed)?;
            if !LOCAL_HOSTS.contains(&host.as_str()) && !self.allowed_hosts.iter().any(|a| host_part(a) == host) {
                return Err(GatewayError::SiteNotAllowed);
            }
        }
        if let Some(origin) = origin.map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            && !self.any_origin
            && !self.allowed_origins.contains(&origin)
        {
            let local = ["http://", "https://"].iter().any(|scheme| {
                origin.strip_prefix(scheme).is_some_and(|authority| LOCAL_HOSTS.contains(&host_part(authority)))
            });
            if !local {
                return Err(GatewayError::SiteNotAllowed);
            }
        }
        Ok(())
    }

    /// Check the `Authorization` header against the configured keys, in constant time
    /// (every key is compared; only SHA-256 digests are compared and kept).
    ///
    /// Errors: [`GatewayError::Unauthorized`] when keys are required and no static key
    /// matches (the caller then asks the store, [`bearer`]).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, GatewayError> {
        if !self.required {
            return Ok(Principal::Anonymous);
        }
        let presented = bearer(authorization).ok_or(GatewayError::Unauthorized)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (hash, identity) in &self.keys {
            if bool::from(hash.ct_eq(&digest)) && found.is_none() {
                found = Some(identity);
            }
        }
        found.map(|identity| Principal::ApiKey(Arc::clone(identity))).ok_or(GatewayError::Unauthorized)
    }
}

/// The key of an `Authorization: Bearer …` header value (RFC 6750 §2.1), trimmed.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    authorization.and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(listen: &str, keys: &[&str], origins: &[&str]) -> Edge {
        let mut config = ServerConfig {
            listen: listen.into(),
            api_keys: keys.iter().map(|s| crate::front::config::ApiKey::plain(s)).collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        config.resolve_keys(crate::pipeline::parts::Priority::Medium);
        Edge::new(&config)
    }

    #[test]
    fn loopback_rejects_foreign_hosts_and_origins() {
        let g = guard("127.0.0.1:8080", &[], &[]);
        assert!(g.check_site(Some("localhost:8080"), None).is_ok());
        assert!(g.check_site(Some("127.0.0.1"), Some("http://localhost:3000")).is_ok());
        assert!(g.check_site(Some("[::1]:8080"), None).is_ok());
        assert_eq!(g.check_site(Some("evil.example.com"), None), Err(GatewayError::SiteNotAllowed));
        assert_eq!(
            g.check_site(Some("localhost:8080"), Some("http://evil.example.com")),
            Err(GatewayError::SiteNotAllowed)
        );
        assert_eq!(g.check_site(None, None), Err(GatewayError::SiteNotAllowed));
        let g = guard("127.0.0.1:8080", &[], &["https://app.example.com"]);
        assert!(g.check_site(Some("localhost"), Some("https://app.example.com")).is_ok());
    }

    #[test]
    fn keys_are_checked() {
        let g = guard("0.0.0.0:8080", &["k-0123456789abcdef", "k-fedcba9876543210"], &[]);
        assert!(g.check_site(Some("gateway.internal"), None).is_ok(), "no host check off loopback");
        let second = g.authenticate(Some("Bearer k-fedcba9876543210")).unwrap();
        assert!(second.label().starts_with("key:") && second.label().len() == 20, "{}", second.label());
        assert_ne!(g.authenticate(Some("Bearer k-0123456789abcdef")).unwrap(), second);
        // The id follows the key, not its position: the same key listed second elsewhere.
        let reordered = guard("0.0.0.0:8080", &["k-fedcba9876543210", "k-0123456789abcdef"], &[]);
        assert_eq!(reordered.authenticate(Some("Bearer k-fedcba9876543210")).unwrap(), second);
        assert_eq!(g.authenticate(Some("Bearer nope")), Err(GatewayError::Unauthorized));
        assert_eq!(g.authenticate(None), Err(GatewayError::Unauthorized));
        assert_eq!(guard("127.0.0.1:1", &[], &[]).authenticate(None), Ok(Principal::Anonymous));
    }
}
