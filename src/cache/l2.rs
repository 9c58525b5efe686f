//! The shared level-2 store in Redis: a connection manager that is made in the background and
//! reconnects by itself, every operation under a deadline, and failures that never reach the
//! caller — they are counted, logged at most every 10 s, and the caller goes on without Redis.
//!
//! Whatever sits in Redis is hostile input (design.md §8): every cache entry and idempotency
//! record is stored as `HMAC-SHA-256(entry_secret, len(key) || key || value) || value`
//! (RFC 2104; the length is 8 bytes big-endian), so an entry written by anyone without the
//! secret, altered, or moved to another key is ignored like a miss, counted in
//! `sekisho_cache_l2_rejected_total{reason="mac"}` and logged (without its content), never served.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use hmac::{Hmac, Mac};
use redis::aio::ConnectionManager;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::config::RedisConfig;
use crate::observe::metrics::METRICS;

/// A Redis connection that may be absent or failing.
pub struct L2 {
    conn: ArcSwapOption<ConnectionManager>,
    /// Prefix of every key.
    pub prefix: String,
    timeout: Duration,
    failing: AtomicBool,
    last_warning_s: AtomicU64,
    /// HMAC keyed with `[redis] entry_secret`, cloned for each entry.
    mac: Hmac<Sha256>,
    last_rejection_s: AtomicU64,
}

/// Bytes of the MAC in front of every stored value.
pub const MAC_BYTES: usize = 32;

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl L2 {
    /// Start connecting to `url` in the background (retrying every second until it answers);
    /// until then every operation reports "unavailable".
    ///
    /// `rediss://` URLs connect with TLS, trusting `config.ca_file` when set, else the system
    /// store. Validation has made sure `config.entry_secret` is set.
    pub fn connect(url: String, config: &RedisConfig, stop: CancellationToken) -> Arc<L2> {
        let l2 = Arc::new(L2::new(config));
        let me = Arc::clone(&l2);
        let ca_file = config.ca_file.clone();
        tokio::spawn(async move {
            let client = match open_client(&url, &ca_file) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "unusable Redis settings; the cache stays in process");
                    return;
                }
            };
            let cfg = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(me.timeout))
                .set_number_of_retries(2)
                .set_max_delay(Duration::from_secs(1));
            loop {
                let attempt = tokio::select! {
                    r = client.get_connection_manager_with_config(cfg.clone()) => r,
                    () = stop.cancelled() => return,
                };
                match attempt {
                    Ok(conn) => {
                        tracing::info!("connected to Redis");
                        me.conn.store(Some(Arc::new(conn)));
                        return;
                    }
                    Err(e) => me.failed("connect", &e.to_string()),
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
        l2
    }

    /// An unconnected store with `config`'s prefix, deadline and entry secret.
    fn new(config: &RedisConfig) -> L2 {
        L2 {
            conn: ArcSwapOption::empty(),
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            failing: AtomicBool::new(false),
            last_warning_s: AtomicU64::new(0),
            mac: Hmac::new_from_slice(config.entry_secret.as_bytes()).expect("HMAC takes keys of any length"),
            last_rejection_s: AtomicU64::new(0),
        }
    }

    fn mac_of(&self, key: &str, value: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(&(key.len() as u64).to_be_bytes());
        mac.update(key.as_bytes());
        mac.update(value);
        mac
    }

    /// The stored form of `value` under `key`: its MAC, then the value.
    pub fn seal(&self, key: &str, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAC_BYTES + value.len());
        out.extend_from_slice(&self.mac_of(key, value).finalize().into_bytes());
        out.extend_from_slice(value);
        out
    }

    /// The value of a stored entry of `key`, when its MAC verifies (in constant time); else
    /// `None`, counted and logged (at most every 10 s, without the content).
    pub fn unseal(&self, key: &str, mut stored: Vec<u8>) -> Option<Vec<u8>> {
        let verified = stored.len() >= MAC_BYTES && {
            let (tag, value) = stored.split_at(MAC_BYTES);
            self.mac_of(key, value).verify_slice(tag).is_ok()
        };
        if !verified {
            METRICS.cache_l2_rejected("mac");
            let now = now_s();
            let last = self.last_rejection_s.load(Ordering::Relaxed);
            if now >= last + 10
                && self.last_rejection_s.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                tracing::warn!(
                    key,
                    bytes = stored.len(),
                    "ignored a Redis entry whose MAC does not verify (written without redis.entry_secret, altered, or moved)"
                );
            }
            return None;
        }
        stored.drain(..MAC_BYTES);
        Some(stored)
    }

    fn failed(&self, op: &'static str, error: &str) {
        METRICS.redis_error(op);
        self.failing.store(true, Ordering::Relaxed);
        let now = now_s();
        let last = self.last_warning_s.load(Ordering::Relaxed);
        if now >= last + 10
            && self.last_warning_s.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(op, error, "Redis failed; serving from the in-process cache and upstreams");
        }
    }

    fn succeeded(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("Redis answers again");
        }
    }

    /// Whether the last operation failed (for `/readyz`).
    pub fn degraded(&self) -> bool {
        self.failing.load(Ordering::Relaxed) || self.conn.load().is_none()
    }

    /// The connection, once made (a multiplexed handle, cheap to clone), for callers that run
    /// their own commands under their own deadline (fleet-wide rate limits); `None` until
    /// Redis has answered once.
    pub fn connection(&self) -> Option<ConnectionManager> {
        self.conn.load_full().map(|c| (*c).clone())
    }

    /// Run one command under the deadline; `None` when Redis is absent, failing or late.
    pub async fn run<T: redis::FromRedisValue>(&self, op: &'static str, cmd: &redis::Cmd) -> Option<T> {
        let Some(conn) = self.conn.load_full() else {
            METRICS.redis_error(op);
            return None;
        };
        let mut conn = (*conn).clone();
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(op, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(op, "timed out");
                None
            }
        }
    }

    /// `GET key` and `SET lease 1 NX PX ttl` in one round trip: the stored value, if any and
    /// authentic ([`L2::unseal`]), and whether the lease was taken.
    pub async fn get_and_lease(&self, key: &str, lease: &str, ttl: Duration) -> Option<(Option<Vec<u8>>, bool)> {
        let Some(conn) = self.conn.load_full() else {
            METRICS.redis_error("get_lease");
            return None;
        };
        let mut conn = (*conn).clone();
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key).cmd("SET").arg(lease).arg(1).arg("NX").arg("PX").arg(ttl.as_millis().max(1) as u64);
        match tokio::time::timeout(self.timeout, pipe.query_async::<(Option<Vec<u8>>, Option<String>)>(&mut conn)).await
        {
            Ok(Ok((value, taken))) => {
                self.succeeded();
                Some((value.and_then(|v| self.unseal(key, v)), taken.is_some()))
            }
            Ok(Err(e)) => {
                self.failed("get_lease", &e.to_string());
                None
            }
            Err(_) => {
                self.failed("get_lease", "timed out");
                None
            }
        }
    }

    /// `GET key` of a value that carries no data (a lease); its content is not trusted.
    pub async fn get_raw(&self, key: &str) -> Option<Vec<u8>> {
        self.run::<Option<Vec<u8>>>("get", redis::cmd("GET").arg(key)).await.flatten()
    }

    /// `GET key` of a sealed entry: its value when present and authentic ([`L2::unseal`]).
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let stored = self.get_raw(key).await?;
        self.unseal(key, stored)
    }

    /// `SET key sealed-value PX ttl` ([`L2::seal`]); `nx` only when absent. Returns whether it
    /// was set; `None` when Redis did not answer.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration, nx: bool) -> Option<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(self.seal(key, value)).arg("PX").arg(ttl.as_millis().max(1) as u64);
        if nx {
            cmd.arg("NX");
        }
        self.run::<Option<String>>("set", &cmd).await.map(|r| r.is_some())
    }

    /// `DEL key`.
    pub async fn del(&self, key: &str) {
        let _ = self.run::<i64>("del", redis::cmd("DEL").arg(key)).await;
    }

    /// `MGET keys` as integers (absent = 0).
    pub async fn counters(&self, keys: &[String]) -> Option<Vec<u64>> {
        let v = self.run::<Vec<Option<u64>>>("mget", redis::cmd("MGET").arg(keys)).await?;
        Some(v.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// `INCR key`.
    pub async fn incr(&self, key: &str) -> Option<u64> {
        self.run::<u64>("incr", redis::cmd("INCR").arg(key)).await
    }
}

/// A Redis client for `url`: with TLS (`rediss://`) trusting the CAs of `ca_file` when set.
fn open_client(url: &str, ca_file: &str) -> Result<redis::Client, String> {
    if ca_file.is_empty() {
        return redis::Client::open(url).map_err(|e| e.to_string());
    }
    let pem = std::fs::read(ca_file).map_err(|e| format!("cannot read redis.ca_file {ca_file}: {e}"))?;
    let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
    redis::Client::build_with_tls(url, certs).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(secret: &str) -> L2 {
        L2::new(&RedisConfig { entry_secret: secret.into(), ..RedisConfig::default() })
    }

    #[test]
    fn sealed_entries_open_only_under_their_key_and_secret() {
        let l2 = store("0123456789abcdef0123456789abcdef");
        let sealed = l2.seal("sekisho:c:1", b"{\"body\":1}");
        assert_eq!(l2.unseal("sekisho:c:1", sealed.clone()).as_deref(), Some(&b"{\"body\":1}"[..]));
        assert!(l2.unseal("sekisho:c:2", sealed.clone()).is_none(), "moved to another key");
        assert!(store("another-secret-of-thirty-two-bytes!").unseal("sekisho:c:1", sealed.clone()).is_none());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(l2.unseal("sekisho:c:1", altered).is_none(), "altered value");
        assert!(l2.unseal("sekisho:c:1", b"{\"body\":1}".to_vec()).is_none(), "unsealed value");
        assert!(l2.unseal("sekisho:c:1", Vec::new()).is_none(), "empty value");
    }
}
