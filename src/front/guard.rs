//! Checks at the HTTP edge, before any MCP processing: DNS-rebinding protection (Host and
//! Origin, per MCP `basic/transports` "Security Warning") and static bearer API keys.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::ServerConfig;
use crate::pipeline::ctx::Principal;

/// Host, Origin and credential checks, built once from `[server]`.
pub struct Guard {
    allowed_hosts: Vec<String>,
    check_hosts: bool,
    allowed_origins: Vec<String>,
    any_origin: bool,
    key_hashes: Vec<[u8; 32]>,
}

/// Why a request was refused at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Host or Origin not allowed (HTTP 403).
    Forbidden,
    /// Missing or wrong bearer key (HTTP 401).
    Unauthorized,
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

impl Guard {
    /// Build from the server configuration. Host checks apply on loopback listeners (the
    /// DNS-rebinding case) and whenever `allowed_hosts` is set; `*` allows any host.
    pub fn new(config: &ServerConfig) -> Self {
        let loopback = config.listen_addr().ip().is_loopback();
        let any_host = config.allowed_hosts.iter().any(|h| h == "*");
        Guard {
            allowed_hosts: config.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            check_hosts: !any_host && (loopback || !config.allowed_hosts.is_empty()),
            allowed_origins: config
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            any_origin: config.allowed_origins.iter().any(|o| o == "*"),
            key_hashes: config.api_keys.iter().map(|k| Sha256::digest(k.secret().as_bytes()).into()).collect(),
        }
    }

    /// Whether API keys are required.
    pub fn requires_auth(&self) -> bool {
        !self.key_hashes.is_empty()
    }

    /// Check the `Host` and `Origin` headers.
    ///
    /// Errors: [`Refusal::Forbidden`] for a host or origin that could be a rebinding attack.
    pub fn check_site(&self, host: Option<&str>, origin: Option<&str>) -> Result<(), Refusal> {
        if self.check_hosts {
            let host = host.map(|h| host_part(h.trim()).to_ascii_lowercase()).ok_or(Refusal::Forbidden)?;
            if !LOCAL_HOSTS.contains(&host.as_str()) && !self.allowed_hosts.iter().any(|a| host_part(a) == host) {
                return Err(Refusal::Forbidden);
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
                return Err(Refusal::Forbidden);
            }
        }
        Ok(())
    }

    /// Check the `Authorization` header against the configured keys, in constant time
    /// (every key is compared; only SHA-256 digests are compared and kept).
    ///
    /// Errors: [`Refusal::Unauthorized`] when keys are configured and none matches.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, Refusal> {
        if self.key_hashes.is_empty() {
            return Ok(Principal::Anonymous);
        }
        let presented = authorization
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(Refusal::Unauthorized)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (i, key) in self.key_hashes.iter().enumerate() {
            if bool::from(key.ct_eq(&digest)) && found.is_none() {
                found = Some(i);
            }
        }
        found.map(Principal::ApiKey).ok_or(Refusal::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(listen: &str, keys: &[&str], origins: &[&str]) -> Guard {
        Guard::new(&ServerConfig {
            listen: listen.into(),
            api_keys: keys.iter().map(|s| crate::front::config::ApiKey::Plain(s.to_string())).collect(),
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn loopback_rejects_foreign_hosts_and_origins() {
        let g = guard("127.0.0.1:8080", &[], &[]);
        assert!(g.check_site(Some("localhost:8080"), None).is_ok());
        assert!(g.check_site(Some("127.0.0.1"), Some("http://localhost:3000")).is_ok());
        assert!(g.check_site(Some("[::1]:8080"), None).is_ok());
        assert_eq!(g.check_site(Some("evil.example.com"), None), Err(Refusal::Forbidden));
        assert_eq!(g.check_site(Some("localhost:8080"), Some("http://evil.example.com")), Err(Refusal::Forbidden));
        assert_eq!(g.check_site(None, None), Err(Refusal::Forbidden));
        let g = guard("127.0.0.1:8080", &[], &["https://app.example.com"]);
        assert!(g.check_site(Some("localhost"), Some("https://app.example.com")).is_ok());
    }

    #[test]
    fn keys_are_checked() {
        let g = guard("0.0.0.0:8080", &["k-0123456789abcdef", "k-fedcba9876543210"], &[]);
        assert!(g.check_site(Some("gateway.internal"), None).is_ok(), "no host check off loopback");
        assert_eq!(g.authenticate(Some("Bearer k-fedcba9876543210")), Ok(Principal::ApiKey(1)));
        assert_eq!(g.authenticate(Some("Bearer nope")), Err(Refusal::Unauthorized));
        assert_eq!(g.authenticate(None), Err(Refusal::Unauthorized));
        assert_eq!(guard("127.0.0.1:1", &[], &[]).authenticate(None), Ok(Principal::Anonymous));
    }
}
