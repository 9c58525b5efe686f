//! `[store]`: the PostgreSQL store of tenants, server configs, instances and API keys.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[store]`: with `postgres_url` set, API keys and what they may reach come from PostgreSQL
/// (docs/multi-tenant.md); without it nothing changes and the TOML file is the whole
/// configuration.
///
/// ```toml
/// [store]
/// postgres_url = "postgres://sekisho@db.internal/sekisho"
/// key_pepper = "…"        # at least 32 bytes; the same on every replica (SEKISHO_STORE__KEY_PEPPER)
/// secret_key = "…"        # base64 of 32 bytes (SEKISHO_STORE__SECRET_KEY)
/// cache_ttl = "60s"       # how long a resolved key is served from memory
/// max_stale = "5m"        # how much longer it is served while PostgreSQL is down
/// last_used_flush = "15s" # how often last_used_at is written
/// max_tenant_upstreams = 64     # tenants' own upstreams running at once
/// tenant_idle_timeout = "10m"   # one unused this long is stopped
/// lookups_per_second = 200      # loads of keys not in memory, at most
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `postgres://user@host:port/db` (libpq URL form); empty means no store. Never printed
    /// (it may carry a password).
    #[serde(skip_serializing)]
    pub postgres_url: String,
    /// Key of the HMAC-SHA-256 (RFC 2104) under which API keys are stored: a stolen table
    /// without it cannot be searched for keys. At least [`MIN_SECRET_BYTES`] bytes; the same
    /// on every replica and for the CLI. Never printed.
    #[serde(skip_serializing)]
    pub key_pepper: String,
    /// Base64 of the 32-byte XChaCha20-Poly1305 key that seals server configs' environment
    /// and header values at rest. The same on every replica and for the CLI. Never printed.
    #[serde(skip_serializing)]
    pub secret_key: String,
    /// How long a resolved key (its instance, tool group and server configs) is served from
    /// memory without asking PostgreSQL again; NOTIFY drops it earlier when it changes.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// How long past `cache_ttl` a resolved key is still served while PostgreSQL does not
    /// answer (then the key fails with a retryable error).
    #[serde(with = "humantime_serde")]
    pub max_stale: Duration,
    /// How often the buffered `last_used_at` times are written (one statement), and at drain.
    #[serde(with = "humantime_serde")]
    pub last_used_flush: Duration,
    /// Deadline of one database operation made for a request (acquiring a connection and the
    /// query); past it the database counts as unavailable for that request.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Connections in the pool at most.
    pub max_connections: u32,
    /// Resolved keys kept in memory at most (each with its instance's tool group).
    pub cache_capacity: u64,
    /// Tenants' own upstreams (server configs) running at once at most; past it, the one idle
    /// longest (at least a quarter of `tenant_idle_timeout`) is stopped, else the key that
    /// needs a new one gets HTTP 429 (-32015).
    pub max_tenant_upstreams: usize,
    /// A tenant's upstream unused this long is stopped (started again on its next use).
    #[serde(with = "humantime_serde")]
    pub tenant_idle_timeout: Duration,
    /// Loads from PostgreSQL per second at most (burst: as many) for keys and instances not in
    /// memory: a flood of made-up `sks_` keys costs the database this much and no more. Past
    /// it a lookup is answered from the stale copy when there is one, else with a retryable
    /// 503; cached keys are not affected. 1–100000.
    pub lookups_per_second: u32,
}

/// Shortest `key_pepper`, in bytes (the HMAC-SHA-256 output size; RFC 2104 §3).
pub const MIN_SECRET_BYTES: usize = 32;

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            postgres_url: String::new(),
            key_pepper: String::new(),
            secret_key: String::new(),
            cache_ttl: Duration::from_secs(60),
            max_stale: Duration::from_secs(300),
            last_used_flush: Duration::from_secs(15),
            timeout: Duration::from_secs(2),
            max_connections: 8,
            cache_capacity: 100_000,
            max_tenant_upstreams: 64,
            tenant_idle_timeout: Duration::from_secs(600),
            lookups_per_second: 200,
        }
    }
}

impl StoreConfig {
    /// Whether a store is configured.
    pub fn enabled(&self) -> bool {
        !self.postgres_url.is_empty()
    }

    /// Problems with these settings (none when no store is configured).
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !self.enabled() {
            return p;
        }
        if !self.postgres_url.starts_with("postgres://") && !self.postgres_url.starts_with("postgresql://") {
            p.push("store.postgres_url must be a postgres:// or postgresql:// URL".into());
        }
        if self.key_pepper.len() < MIN_SECRET_BYTES {
            p.push(format!(
                "store.key_pepper must be set (at least {MIN_SECRET_BYTES} bytes, the same on every replica) \
                 when the store is used"
            ));
        }
        if !(1..=100_000).contains(&self.lookups_per_second) {
            p.push("store.lookups_per_second must be 1-100000".into());
        }
        if crate::session::token::decode_key(&self.secret_key).is_none() {
            p.push("store.secret_key must be the base64 of 32 bytes when the store is used".into());
        }
        if self.cache_ttl.is_zero() || self.last_used_flush.is_zero() || self.timeout.is_zero() {
            p.push("store.cache_ttl, store.last_used_flush and store.timeout must be positive".into());
        }
        if self.max_connections == 0 || self.cache_capacity == 0 || self.max_tenant_upstreams == 0 {
            p.push(
                "store.max_connections, store.cache_capacity and store.max_tenant_upstreams must be at least 1".into(),
            );
        }
        if self.tenant_idle_timeout < Duration::from_secs(1) {
            p.push("store.tenant_idle_timeout must be at least 1s".into());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::StoreConfig;

    #[test]
    fn a_store_needs_its_secrets_and_nothing_is_checked_without_one() {
        assert!(StoreConfig::default().validate().is_empty());
        let bare = StoreConfig { postgres_url: "postgres://h/db".into(), ..StoreConfig::default() };
        let problems = bare.validate().join("\n");
        assert!(problems.contains("store.key_pepper") && problems.contains("store.secret_key"), "{problems}");
        let good = StoreConfig {
            key_pepper: "p".repeat(32),
            secret_key: "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=".into(),
            ..bare.clone()
        };
        assert!(good.validate().is_empty(), "{:?}", good.validate());
        let wrong = StoreConfig { postgres_url: "mysql://h/db".into(), ..good };
        assert!(wrong.validate().join("").contains("postgres://"));
        // Secrets and the URL never serialize (`sekisho check`, logs of the config).
        let shown = toml::to_string(&StoreConfig { key_pepper: "pepper-value".into(), ..bare }).unwrap();
        assert!(!shown.contains("pepper-value") && !shown.contains("postgres://"), "{shown}");
    }
}
