//! Fleet-wide rate limits in Redis: one round trip per call runs GCRA over the call's buckets
//! in a server-side Lua script (`EVALSHA`, falling back to `EVAL` when the server does not
//! hold the script: `NOSCRIPT`), on Redis's own clock (`TIME`), so every replica shares one
//! bucket per caller and tenant. A failed or late check (past `rate_limits.redis_timeout`)
//! answers nothing: the caller uses its local limit, and Redis is tried again after
//! [`RETRY_AFTER_FAILURE`]. A call never fails because Redis is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cache::l2::L2;
use crate::observe::metrics::METRICS;
use crate::pipeline::parts::RateLimit;

/// How long the local limits decide alone after a Redis check failed or was late.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// GCRA over every bucket in `KEYS`, all or nothing: the call is admitted only when each has
/// room, and then takes one emission interval from each. `ARGV[2i-1]`, `ARGV[2i]`: bucket i's
/// emission interval and burst (µs, count). A bucket's value is its theoretical arrival time
/// (µs on the server's clock); a value that is not a number or lies further ahead than any
/// this script writes (burst × interval) is treated as a full bucket. Each key expires once
/// its bucket is full again. Returns `{0, 0}` when admitted, else `{i, µs until room}` for the
/// first bucket that refused.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat == nil or tat < now or tat > now + burst * interval then tat = now end
  local allow_at = tat + interval - burst * interval
  if allow_at > now then return {i, allow_at - now} end
  tats[i] = tat + interval
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000) + 1)
end
return {0, 0}
";

/// One bucket to check: `<prefix>rl:<tag>:<id>` under `limit`.
pub(super) struct Bucket<'a> {
    /// `k` (a caller's key) or `t` (a tenant).
    pub tag: &'static str,
    /// The caller's id or the tenant's name.
    pub id: &'a str,
    /// Its limit.
    pub limit: RateLimit,
}

/// The Redis side of the limiter.
pub(super) struct Fleet {
    l2: Arc<L2>,
    timeout: Duration,
    sha: String,
    /// Milliseconds since `epoch` before which Redis is not asked (after a failure).
    retry_at_ms: AtomicU64,
    epoch: Instant,
    last_warning_s: AtomicU64,
}

impl Fleet {
    pub(super) fn new(l2: Arc<L2>, timeout: Duration) -> Fleet {
        Fleet {
            l2,
            timeout,
            sha: redis::Script::new(GCRA).get_hash().to_string(),
            retry_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            last_warning_s: AtomicU64::new(0),
        }
    }

    /// The Redis key of a bucket: `<prefix>rl:k:<caller id>` or `<prefix>rl:t:<tenant>`.
    fn key_of(&self, bucket: &Bucket<'_>) -> String {
        format!("{}rl:{}:{}", self.l2.prefix, bucket.tag, bucket.id)
    }

    /// Check `buckets` in one round trip, all or nothing: `Some(Ok)` admitted,
    /// `Some(Err((i, wait)))` refused by `buckets[i]` for `wait`; `None` when Redis is absent,
    /// failing, late, or resting after a failure.
    pub(super) async fn check(&self, buckets: &[Bucket<'_>]) -> Option<Result<(), (usize, Duration)>> {
        let since = self.epoch.elapsed().as_millis() as u64;
        if since < self.retry_at_ms.load(Ordering::Relaxed) {
            return None;
        }
        // Not connected yet (or never: a closed port): local limits until it is.
        let mut conn = self.l2.connection()?;
        let keys: Vec<String> = buckets.iter().map(|b| self.key_of(b)).collect();
        let mut args: Vec<u64> = Vec::with_capacity(2 * buckets.len());
        for b in buckets {
            args.push(b.limit.interval.as_micros().max(1) as u64);
            args.push(u64::from(b.limit.burst));
        }
        let run = async {
            let mut evalsha = redis::cmd("EVALSHA");
            evalsha.arg(&self.sha).arg(keys.len()).arg(&keys).arg(&args);
            match evalsha.query_async::<(u64, u64)>(&mut conn).await {
                Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    let mut eval = redis::cmd("EVAL");
                    eval.arg(GCRA).arg(keys.len()).arg(&keys).arg(&args);
                    eval.query_async::<(u64, u64)>(&mut conn).await
                }
                other => other,
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok((0, _))) => Some(Ok(())),
            Ok(Ok((i, wait_us))) => {
                Some(Err(((i as usize - 1).min(buckets.len() - 1), Duration::from_micros(wait_us))))
            }
            Ok(Err(e)) => self.failed(&e.to_string()),
            Err(_) => self.failed("timed out"),
        }
    }

    /// Count and log (at most every 10 s) a failed check, and rest Redis for a while.
    fn failed<T>(&self, error: &str) -> Option<T> {
        METRICS.redis_error("rate_limit");
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        self.retry_at_ms.store(now_ms + RETRY_AFTER_FAILURE.as_millis() as u64, Ordering::Relaxed);
        let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.last_warning_s.load(Ordering::Relaxed);
        if now_s >= last + 10
            && self.last_warning_s.compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(error, "a Redis rate-limit check failed; local rate limits apply for now");
        }
        None
    }
}
