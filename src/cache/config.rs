//! `[cache]`, `[idempotency]` and `[redis]`: the response cache, idempotency keys, and the
//! shared store that makes both work across replicas.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Who may receive a cached result (MCP 2026-07-28 `cacheScope`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    /// Only the caller that produced it (keyed by the authenticated principal).
    #[default]
    Private,
    /// Every caller.
    Public,
}

/// `[cache]`: the two-level response cache.
///
/// ```toml
/// [cache]
/// ttl = "5m"                 # default TTL of a cacheable tool result
/// max_entries = 10000        # L1 entries at most
/// max_bytes = 67108864       # L1 bytes at most (64 MiB)
/// max_entry_bytes = 1048576  # larger results are not cached
/// default_scope = "private"  # results of tools that say nothing are per caller
/// coalesce = true            # identical concurrent calls share one upstream call
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Whether results are cached at all.
    pub enabled: bool,
    /// Time to live of a cached tool result, unless the tool's own `cache_ttl` says otherwise.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// L1 (in-process) entries at most.
    pub max_entries: u64,
    /// L1 bytes at most (result bodies).
    pub max_bytes: u64,
    /// Results larger than this (bytes) are not cached.
    pub max_entry_bytes: usize,
    /// Scope of results whose tool configuration names none.
    pub default_scope: CacheScope,
    /// Identical concurrent cacheable calls share one upstream call (in process, and across
    /// replicas through a Redis lease).
    pub coalesce: bool,
    /// How long other replicas wait for the replica holding the lease before calling themselves.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Adaptive TTL for tool results in L1: an entry starts with `adaptive_min` and every hit
    /// doubles its lifetime (counted from when it was stored) up to `adaptive_max`, so hot keys
    /// live longer and cold ones shorter. Off by default; L2 always uses the fixed TTL, and
    /// resources keep their upstream's `ttlMs`.
    pub adaptive_ttl: bool,
    /// Lifetime of a new entry under `adaptive_ttl`.
    #[serde(with = "humantime_serde")]
    pub adaptive_min: Duration,
    /// Longest lifetime under `adaptive_ttl`.
    #[serde(with = "humantime_serde")]
    pub adaptive_max: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            ttl: Duration::from_secs(300),
            max_entries: 10_000,
            max_bytes: 64 << 20,
            max_entry_bytes: 1 << 20,
            default_scope: CacheScope::Private,
            coalesce: true,
            lease: Duration::from_secs(5),
            adaptive_ttl: false,
            adaptive_min: Duration::from_secs(60),
            adaptive_max: Duration::from_secs(1800),
        }
    }
}

/// `[idempotency]`: idempotency keys (`_meta["io.sekisho/idempotencyKey"]`, `Idempotency-Key`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    /// Whether repeated keys replay the stored result.
    pub enabled: bool,
    /// How long a key and its result are kept.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long a repeat waits for the first call with its key to finish before failing with
    /// "in progress" (-32014).
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
}

impl CacheConfig {
    /// Problems with these settings.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.max_entries == 0 || self.max_bytes < 1024 {
            p.push("cache.max_entries must be at least 1 and cache.max_bytes at least 1024".into());
        }
        if self.adaptive_ttl && (self.adaptive_min.is_zero() || self.adaptive_min > self.adaptive_max) {
            p.push("cache.adaptive_min must be positive and at most cache.adaptive_max".into());
        }
        p
    }
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig { enabled: true, window: Duration::from_secs(300), wait: Duration::from_secs(10) }
    }
}

/// `[redis]`: the shared level-2 store. Without a URL (here or in `REDIS_URL`) everything stays
/// in process.
///
/// ```toml
/// [redis]
/// url = "rediss://cache.internal:6380/0"   # rediss:// is TLS
/// entry_secret = "…"                       # at least 32 bytes; the same on every replica
/// ca_file = "/etc/sekisho/redis-ca.pem"    # trust this CA instead of the system store
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db`, or `rediss://…` for TLS; empty means `REDIS_URL` from the
    /// environment, or no Redis.
    pub url: String,
    /// Prefix of every key sekisho writes (share it between replicas of one fleet).
    pub prefix: String,
    /// Deadline of one Redis operation; on expiry the cache degrades to L1 for that call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Key of the HMAC-SHA-256 that authenticates every cache entry and idempotency record
    /// sekisho stores in Redis (RFC 2104), over the Redis key and the value: an entry written
    /// or moved by anyone without it is ignored (a miss) and counted, never served. Required
    /// whenever Redis is used; at least [`MIN_ENTRY_SECRET_BYTES`] bytes, the same on every
    /// replica of a fleet. Never printed by `sekisho check`.
    #[serde(skip_serializing)]
    pub entry_secret: String,
    /// PEM file of the CA(s) that sign a `rediss://` server's certificate, trusted instead of the
    /// system store; empty uses the system store.
    pub ca_file: String,
}

/// Shortest `[redis] entry_secret`, in bytes (the HMAC-SHA-256 output size; RFC 2104 §3).
pub const MIN_ENTRY_SECRET_BYTES: usize = 32;

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: String::new(),
            prefix: "sekisho:".into(),
            timeout: Duration::from_millis(200),
            entry_secret: String::new(),
            ca_file: String::new(),
        }
    }
}

impl RedisConfig {
    /// The URL to use: the configured one, else `REDIS_URL`, else none.
    pub fn resolved_url(&self) -> Option<String> {
        if !self.url.is_empty() {
            return Some(self.url.clone());
        }
        std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty())
    }

    /// Problems with these settings.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(url) = self.resolved_url() {
            if redis::Client::open(url.as_str()).is_err() {
                p.push("redis.url is not a valid redis:// or rediss:// URL".into());
            }
            if self.entry_secret.len() < MIN_ENTRY_SECRET_BYTES {
                p.push(format!(
                    "redis.entry_secret must be set (at least {MIN_ENTRY_SECRET_BYTES} bytes, the same on every replica) \
                     when Redis is used: without it a forged or altered Redis entry could be served"
                ));
            }
            if !self.ca_file.is_empty() && !url.starts_with("rediss://") {
                p.push("redis.ca_file needs a rediss:// URL".into());
            }
        }
        if !self.ca_file.is_empty()
            && let Err(e) = crate::upstream::http::tls::read_pem_certs(std::path::Path::new(&self.ca_file))
        {
            p.push(format!("redis.ca_file: {e}"));
        }
        if self.timeout < Duration::from_millis(1) {
            p.push("redis.timeout must be at least 1ms".into());
        }
        p
    }
}
