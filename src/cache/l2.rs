//! The shared level-2 store in Redis: a connection manager that is made in the background and
//! reconnects by itself, every operation under a deadline, and failures that never reach the
//! caller — they are counted, logged at most every 10 s, and the caller goes on without Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
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
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl L2 {
    /// Start connecting to `url` in the background (retrying every second until it answers);
    /// until then every operation reports "unavailable".
    pub fn connect(url: String, config: &RedisConfig, stop: CancellationToken) -> Arc<L2> {
        let l2 = Arc::new(L2 {
            conn: ArcSwapOption::empty(),
            prefix: config.prefix.clone(),
            timeout: config.timeout,
            failing: AtomicBool::new(false),
            last_warning_s: AtomicU64::new(0),
        });
        let me = Arc::clone(&l2);
        tokio::spawn(async move {
            let client = match redis::Client::open(url.as_str()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "invalid Redis URL; the cache stays in process");
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

    /// `GET key` and `SET lease 1 NX PX ttl` in one round trip: the stored value, if any, and
    /// whether the lease was taken.
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
                Some((value, taken.is_some()))
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

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.run::<Option<Vec<u8>>>("get", redis::cmd("GET").arg(key)).await.flatten()
    }

    /// `SET key value PX ttl`; `nx` only when absent. Returns whether it was set; `None` when
    /// Redis did not answer.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration, nx: bool) -> Option<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(ttl.as_millis().max(1) as u64);
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
