//! The config cache: resolved keys in memory (moka), keyed by the key's HMAC, loaded once per
//! key at a time (single flight), dropped by `NOTIFY sekisho_store`, and served past their TTL
//! up to `max_stale` while PostgreSQL does not answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::future::Cache;

use super::config::StoreConfig;
use super::error::StoreError;
use super::notify::Change;
use super::resolve::Resolved;

/// After a load finds PostgreSQL unavailable, loads are not tried again for this long: stale
/// entries are served and unknown keys refused at once, instead of every request waiting on a
/// database that is down.
pub const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_millis(500);

/// What a lookup found.
pub type Lookup = Option<Arc<Resolved>>;

/// Resolved keys: `fresh` for `cache_ttl` (known and unknown keys alike; moka's TinyLFU
/// admission keeps a flood of unknown keys from evicting hot ones), and a copy of each known
/// key's resolution in `stale` for `cache_ttl + max_stale`, used only while PostgreSQL is down.
pub struct KeyCache {
    fresh: Cache<[u8; 32], Lookup>,
    stale: Cache<[u8; 32], Arc<Resolved>>,
    /// Milliseconds since `epoch` before which no load is tried (0: try).
    quiet_until: AtomicU64,
    epoch: Instant,
    /// Whether the last load (or the listener) found PostgreSQL down.
    degraded: AtomicBool,
    /// Bumped by every invalidation: a load that overlapped one is not kept (it may have read
    /// the rows before the change committed).
    generation: AtomicU64,
    /// The budget of loads (`lookups_per_second`).
    loads: governor::DefaultDirectRateLimiter,
}

impl KeyCache {
    /// An empty cache sized and timed by `config`.
    pub fn new(config: &StoreConfig) -> Self {
        let fresh = Cache::builder()
            .max_capacity(config.cache_capacity)
            .time_to_live(config.cache_ttl)
            .support_invalidation_closures()
            .build();
        let stale = Cache::builder()
            .max_capacity(config.cache_capacity)
            .time_to_live(config.cache_ttl + config.max_stale)
            .support_invalidation_closures()
            .build();
        KeyCache {
            fresh,
            stale,
            quiet_until: AtomicU64::new(0),
            epoch: Instant::now(),
            degraded: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            loads: governor::RateLimiter::direct(governor::Quota::per_second(
                std::num::NonZeroU32::new(config.lookups_per_second).unwrap_or(std::num::NonZeroU32::MIN),
            )),
        }
    }

    /// The resolution of the key with HMAC `hash`: cached, else loaded by `load` (concurrent
    /// lookups of one key share one load). `prefix` (the key's first characters, not secret)
    /// names the key in the debug line of a miss.
    ///
    /// Errors: `load`'s error; [`StoreError::Unavailable`] (retryable) past the load budget
    /// (`lookups_per_second`). When the error is retryable, a stale resolution is served
    /// instead if one is younger than `cache_ttl + max_stale`.
    pub async fn get<F>(&self, hash: [u8; 32], prefix: &str, load: F) -> Result<Lookup, StoreError>
    where
        F: Future<Output = Result<Lookup, StoreError>>,
    {
        let metrics = &crate::observe::metrics::METRICS.store;
        if let Some(hit) = self.fresh.get(&hash).await {
            metrics.lookup("hit");
            return Ok(hit);
        }
        if self.quiet() {
            return self.fallback(hash, StoreError::Unavailable("not answering (retrying shortly)".into())).await;
        }
        if self.loads.check().is_err() {
            metrics.lookup("throttled");
            return self.fallback(hash, StoreError::Unavailable("too many lookups of keys not in memory".into())).await;
        }
        metrics.lookup("miss");
        tracing::debug!(key = prefix, "store: key not cached, loading it");
        let generation = self.generation.load(Ordering::SeqCst);
        match self.fresh.try_get_with(hash, load).await {
            Ok(found) => {
                self.set_degraded(false);
                if self.generation.load(Ordering::SeqCst) != generation {
                    self.fresh.invalidate(&hash).await;
                    return Ok(found);
                }
                if let Some(r) = &found {
                    self.stale.insert(hash, r.clone()).await;
                }
                Ok(found)
            }
            Err(e) if e.is_retryable() => {
                self.set_degraded(true);
                let until = self.epoch.elapsed() + RETRY_AFTER_UNAVAILABLE;
                self.quiet_until.store(until.as_millis() as u64, Ordering::Relaxed);
                self.fallback(hash, (*e).clone()).await
            }
            Err(e) => Err((*e).clone()),
        }
    }

    async fn fallback(&self, hash: [u8; 32], error: StoreError) -> Result<Lookup, StoreError> {
        match self.stale.get(&hash).await {
            Some(r) => {
                crate::observe::metrics::METRICS.store.lookup("stale");
                Ok(Some(r))
            }
            None => Err(error),
        }
    }

    fn quiet(&self) -> bool {
        self.epoch.elapsed().as_millis() < u128::from(self.quiet_until.load(Ordering::Relaxed))
    }

    /// Mark PostgreSQL as down (`true`) or answering.
    pub fn set_degraded(&self, down: bool) {
        self.degraded.store(down, Ordering::Relaxed);
        crate::observe::metrics::METRICS.store.degraded(down);
    }

    /// Whether PostgreSQL was last found down.
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Drop what `change` makes stale, fresh and stale copies alike (a revoked key must not be
    /// served from the stale copy during an outage either).
    pub async fn invalidate(&self, change: &Change) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match change {
            Change::Key(hash) => {
                self.fresh.invalidate(hash).await;
                self.stale.invalidate(hash).await;
            }
            Change::Tenant(id) => {
                let id = *id;
                // Unknown entries go too: one may be an instance this change just created.
                let _ = self.fresh.invalidate_entries_if(move |_, v| v.as_ref().is_none_or(|r| r.tenant.id == id));
                let _ = self.stale.invalidate_entries_if(move |_, r| r.tenant.id == id);
            }
            Change::All => {
                self.fresh.invalidate_all();
                self.stale.invalidate_all();
            }
        }
    }

    /// Entries in the fresh cache (approximate, as moka counts).
    pub fn len(&self) -> u64 {
        self.fresh.entry_count()
    }

    /// Whether the fresh cache is empty (approximate).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
