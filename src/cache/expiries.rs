//! When the cache's entries expire, remembered after they are gone, so a miss can tell an
//! entry whose TTL ran out (`sekisho_cache_expired_misses_total`, read by the
//! recommendations) from a key never stored, evicted, or invalidated.
//!
//! A direct-mapped table of [`SLOTS`] atomic words (64 KiB, fixed): each holds 32 bits of the
//! key's hash and its entry's expiry in tenths of a second since the table's start. A store
//! writes one word; a miss reads one. A key whose slot another key took since is counted as
//! absent: the count of expired misses is a lower bound.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Slots of the table (a power of two).
pub const SLOTS: usize = 8192;

/// The table.
pub struct Expiries {
    slots: Box<[AtomicU64]>,
    keys: std::collections::hash_map::RandomState,
    epoch: Instant,
}

impl Default for Expiries {
    fn default() -> Self {
        Expiries {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            keys: std::collections::hash_map::RandomState::new(),
            epoch: Instant::now(),
        }
    }
}

impl Expiries {
    fn locate(&self, key: &str) -> (&AtomicU64, u64) {
        let mut h = self.keys.build_hasher();
        h.write(key.as_bytes());
        let hash = h.finish();
        (&self.slots[hash as usize & (SLOTS - 1)], (hash >> 32) << 32)
    }

    fn tenths(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.epoch).as_millis() / 100) as u64
    }

    /// Remember that `key`'s entry, stored now, expires after `ttl`.
    pub fn stored(&self, key: &str, ttl: Duration) {
        let (slot, tag) = self.locate(key);
        let expiry = self.tenths(Instant::now()) + ttl.as_millis().div_ceil(100) as u64;
        slot.store(tag | (expiry & 0xffff_ffff), Ordering::Relaxed);
    }

    /// Whether `key` was stored and its entry has expired by `now`.
    pub fn expired_at(&self, key: &str, now: Instant) -> bool {
        let (slot, tag) = self.locate(key);
        let word = slot.load(Ordering::Relaxed);
        word != 0 && word & !0xffff_ffff == tag && self.tenths(now) & 0xffff_ffff >= word & 0xffff_ffff
    }

    /// Whether `key` was stored and its entry has expired by now.
    pub fn expired(&self, key: &str) -> bool {
        self.expired_at(key, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_key_reads_expired_only_after_its_ttl() {
        let e = Expiries::default();
        e.stored("k", Duration::from_secs(2));
        assert!(!e.expired("k"), "still fresh");
        assert!(!e.expired("other"), "never stored");
        let later = Instant::now() + Duration::from_millis(2200);
        assert!(e.expired_at("k", later));
        assert!(!e.expired_at("never", later));
        e.stored("k", Duration::from_secs(60));
        assert!(!e.expired_at("k", later), "stored again");
    }
}
