//! The response cache: L1 in process (`moka::sync::Cache`, per-entry TTL, caps by entries and
//! bytes), L2 in Redis when configured, and invalidation by generations that every replica
//! re-reads at most a second later (no `KEYS` scans). A failing Redis is skipped, never fatal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::config::{CacheConfig, CacheScope, RedisConfig};
use super::entry::{Entry, Level};
use super::l2::L2;
use crate::observe::metrics::METRICS;
use crate::pipeline::parts::Principal;

struct Generation {
    value: u64,
    fetched: Instant,
}

/// Re-read shared generations at most this often.
const GENERATION_REFRESH: Duration = Duration::from_secs(1);

/// The response cache of one gateway process.
pub struct Store {
    /// `[cache]`.
    pub cache: CacheConfig,
    l1: moka::sync::Cache<String, Arc<Entry>>,
    l2: Option<Arc<L2>>,
    generations: Mutex<HashMap<String, Generation>>,
    /// When stored entries expire, kept past their removal ([`Store::expired`]).
    expiries: super::expiries::Expiries,
}

/// L1 lifetimes: the entry's own TTL, or under `adaptive_ttl` a lifetime that starts at
/// `min` and doubles with every hit up to `max` (both counted from when it was stored).
struct PerEntryTtl {
    adaptive: Option<(Duration, Duration)>,
}

impl moka::Expiry<String, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, value: &Arc<Entry>, _created_at: Instant) -> Option<Duration> {
        match self.adaptive {
            Some((min, _)) if value.adaptive => Some(min.saturating_sub(value.age()).min(value.remaining())),
            _ => Some(value.remaining()),
        }
    }

    fn expire_after_read(
        &self,
        _key: &String,
        value: &Arc<Entry>,
        _read_at: Instant,
        until_expiry: Option<Duration>,
        _last_modified_at: Instant,
    ) -> Option<Duration> {
        match (self.adaptive, until_expiry) {
            (Some((_, max)), Some(left)) if value.adaptive => {
                let age = value.age();
                let lifetime = ((age + left) * 2).min(max);
                Some(lifetime.saturating_sub(age).max(left))
            }
            _ => until_expiry,
        }
    }
}

impl Store {
    /// A store with these settings; with a Redis URL (config or `REDIS_URL`) it connects in the
    /// background and works without Redis until then.
    pub fn new(cache: &CacheConfig, redis: &RedisConfig, stop: CancellationToken) -> Arc<Store> {
        // Weights are in KiB (moka sizes its internal structures by capacity, so byte units would
        // cost memory); each entry weighs at least capacity / max_entries, so both caps hold.
        let capacity_kib = (cache.max_bytes / 1024).max(1);
        let floor = (capacity_kib / cache.max_entries.max(1)).clamp(1, u64::from(u32::MAX)) as u32;
        let l1 = moka::sync::Cache::builder()
            .max_capacity(capacity_kib)
            .weigher(move |k: &String, v: &Arc<Entry>| {
                u32::try_from((v.body.len() + k.len() + 128).div_ceil(1024)).unwrap_or(u32::MAX).max(floor)
            })
            .expire_after(PerEntryTtl {
                adaptive: cache.adaptive_ttl.then_some((cache.adaptive_min, cache.adaptive_max)),
            })
            .eviction_listener(|_k, _v, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    METRICS.cache_eviction();
                }
            })
            .support_invalidation_closures()
            .build();
        let l2 = redis.resolved_url().map(|url| L2::connect(url, redis, stop));
        Arc::new(Store { cache: cache.clone(), l1, l2, generations: Mutex::default(), expiries: Default::default() })
    }

    /// Whether a Redis store is configured and currently failing or not yet connected.
    pub fn redis_degraded(&self) -> Option<bool> {
        self.l2.as_ref().map(|l| l.degraded())
    }

    /// L1 entries and weighted bytes (for metrics).
    pub fn l1_size(&self) -> (u64, u64) {
        (self.l1.entry_count(), self.l1.weighted_size())
    }

    async fn generations(&self, names: [String; 2]) -> [u64; 2] {
        let Some(l2) = &self.l2 else { return [0, 0] };
        {
            let g = self.generations.lock().expect("generations lock");
            let fresh = |n: &String| g.get(n).filter(|x| x.fetched.elapsed() < GENERATION_REFRESH).map(|x| x.value);
            if let (Some(a), Some(b)) = (fresh(&names[0]), fresh(&names[1])) {
                return [a, b];
            }
        }
        let keys: Vec<String> = names.iter().map(|n| format!("{}gen:{n}", l2.prefix)).collect();
        let fetched = l2.counters(&keys).await.filter(|v| v.len() == 2);
        let mut g = self.generations.lock().expect("generations lock");
        // On a Redis failure keep the last known values (a missed invalidation lasts until Redis answers).
        if let Some(values) = fetched {
            for (n, v) in names.iter().zip(&values) {
                g.insert(n.clone(), Generation { value: *v, fetched: Instant::now() });
            }
        }
        [g.get(&names[0]).map_or(0, |x| x.value), g.get(&names[1]).map_or(0, |x| x.value)]
    }

    /// The cache key (also the Redis key) of a call: scope, upstream, tool, generations,
    /// canonical arguments.
    pub async fn key(
        &self,
        principal: &Principal,
        scope: CacheScope,
        upstream: &str,
        tool: &str,
        canonical_args: &[u8],
    ) -> String {
        let [gu, gt] = self.generations([format!("u:{upstream}"), format!("t:{upstream}/{tool}")]).await;
        let mut h = Sha256::new();
        match scope {
            CacheScope::Public => h.update(b"public"),
            // The caller's stable id (a key's name or keyed hash), never its position in the
            // key list: reordering or removing keys must not hand one caller another's results.
            CacheScope::Private => {
                h.update(b"private:");
                h.update(principal.label());
            }
        }
        for part in [upstream.as_bytes(), tool.as_bytes(), &gu.to_be_bytes(), &gt.to_be_bytes(), canonical_args] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        format!("{}c:{}", self.prefix(), hex::encode(h.finalize()))
    }

    /// The prefix of every key: `[redis] prefix` (in process too, where it is only a name).
    pub fn prefix(&self) -> &str {
        self.l2.as_ref().map_or("sekisho:", |l| l.prefix.as_str())
    }

    /// The Redis store, when one is configured.
    pub fn l2(&self) -> Option<&Arc<L2>> {
        self.l2.as_ref()
    }

    /// Put `entry` in L1 only (an entry found in L2 or handed over by a coalescing leader).
    pub fn fill_l1(&self, key: &str, entry: Arc<Entry>) {
        self.l1.insert(key.to_string(), entry);
    }

    /// Look `key` up in L1 only.
    pub fn lookup_l1(&self, key: &str) -> Option<Arc<Entry>> {
        self.l1.get(key)
    }

    /// Look `key` up in L1, then L2 (an L2 hit fills L1).
    pub async fn lookup(&self, key: &str) -> Option<(Arc<Entry>, Level)> {
        if let Some(e) = self.l1.get(key) {
            return Some((e, Level::L1));
        }
        let raw = self.l2.as_ref()?.get(key).await?;
        let entry = Arc::new(Entry::decode(&raw)?);
        if entry.remaining().is_zero() {
            return None;
        }
        self.l1.insert(key.to_string(), Arc::clone(&entry));
        Some((entry, Level::L2))
    }

    /// Store `entry` under `key` in both levels.
    pub async fn put(&self, key: &str, entry: Arc<Entry>) {
        if let Some(l2) = &self.l2 {
            let _ = l2.set(key, &entry.encode(), entry.ttl, false).await;
        }
        self.expiries.stored(key, entry.remaining());
        self.l1.insert(key.to_string(), entry);
    }

    /// Whether `key` missed because the entry stored under it expired (its TTL ran out), as
    /// far as the bounded record of expiries ([`super::expiries`]) remembers.
    pub fn expired(&self, key: &str) -> bool {
        self.expiries.expired(key)
    }

    /// Drop cached results of `upstream` (or of one of its tools): matching L1 entries now,
    /// and everything in Redis by bumping the generation that every key includes.
    pub async fn invalidate(&self, upstream: &str, tool: Option<&str>) {
        let (up, t): (Arc<str>, Option<Arc<str>>) = (Arc::from(upstream), tool.map(Arc::from));
        let _ =
            self.l1.invalidate_entries_if(move |_, e| *e.upstream == *up && t.as_deref().is_none_or(|t| *e.tool == *t));
        let name = match tool {
            Some(t) => format!("t:{upstream}/{t}"),
            None => format!("u:{upstream}"),
        };
        if let Some(l2) = &self.l2
            && let Some(v) = l2.incr(&format!("{}gen:{name}", l2.prefix)).await
        {
            self.generations
                .lock()
                .expect("generations lock")
                .insert(name, Generation { value: v, fetched: Instant::now() });
        }
        METRICS.cache_invalidation();
    }

    /// Drop every cached result.
    pub async fn clear(&self, upstreams: impl Iterator<Item = Arc<str>>) {
        for up in upstreams {
            self.invalidate(&up, None).await;
        }
        self.l1.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use moka::Expiry;

    use super::*;
    use crate::wire::mcp::Era;

    #[tokio::test(start_paused = true)]
    async fn adaptive_lifetimes_start_short_and_double_with_each_hit() {
        let policy = PerEntryTtl { adaptive: Some((Duration::from_secs(60), Duration::from_secs(300))) };
        let (key, now) = (String::from("k"), Instant::now());
        let up: Arc<str> = Arc::from("u");
        let ttl = Duration::from_secs(3600);
        let hot = Arc::new(Entry::new(b"{}", false, Era::Legacy, &up, "t", ttl, true));
        assert_eq!(policy.expire_after_create(&key, &hot, now), Some(Duration::from_secs(60)), "starts at min");
        tokio::time::advance(Duration::from_secs(40)).await;
        // A hit with 20 s left: the lifetime doubles from 60 s to 120 s, so 80 s remain.
        let left = policy.expire_after_read(&key, &hot, now, Some(Duration::from_secs(20)), now);
        assert_eq!(left, Some(Duration::from_secs(80)));
        tokio::time::advance(Duration::from_secs(60)).await;
        // Age 100 s with 20 s left: the lifetime doubles from 120 s to 240 s, so 140 s remain.
        let left = policy.expire_after_read(&key, &hot, now, Some(Duration::from_secs(20)), now);
        assert_eq!(left, Some(Duration::from_secs(140)));
        tokio::time::advance(Duration::from_secs(130)).await;
        // Age 230 s with 10 s left: doubling would give 480 s; it stops at max (300 s).
        let left = policy.expire_after_read(&key, &hot, now, Some(Duration::from_secs(10)), now);
        assert_eq!(left, Some(Duration::from_secs(70)));
        // Entries that are not adaptive (resources) and the fixed policy keep their own time.
        let plain = Arc::new(Entry::new(b"{}", false, Era::Legacy, &up, "r", ttl, false));
        assert_eq!(
            policy.expire_after_read(&key, &plain, now, Some(Duration::from_secs(7)), now),
            Some(Duration::from_secs(7))
        );
        let fixed = PerEntryTtl { adaptive: None };
        assert!(fixed.expire_after_create(&key, &hot, now).is_some_and(|d| d > Duration::from_secs(3500)));
    }
}
