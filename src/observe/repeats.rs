//! A bounded record of recent call fingerprints for read-only tools the cache does not serve:
//! whether an identical call (same upstream, tool and argument bytes) came within the last
//! [`WINDOW`], counted in `sekisho_uncached_calls_total{repeat}` for the recommendations
//! (`crate::monitor::recommend`).
//!
//! The record is a direct-mapped table of [`SLOTS`] atomic words (32 KiB, fixed): a word holds
//! the fingerprint's upper 44 bits and the second it was last seen (20 bits, wrapping every
//! ~12 days). A call hashes its fingerprint with keys chosen at start (so a client cannot aim
//! at a slot), reads and writes one word; a different fingerprint in the slot is overwritten.
//! The count is therefore a lower bound when many distinct calls compete for slots, never an
//! overcount (two fingerprints sharing a slot and 44 bits aside). Cost: one keyed hash of the
//! argument bytes, one clock read, one atomic swap, one counter increment.

use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::metrics::{METRICS, Name};

/// Slots of the table (a power of two).
pub const SLOTS: usize = 4096;

/// An identical call within this long counts as a repeat: the default `[cache] ttl`, so a
/// repeat is a call that caching with that TTL would have answered.
pub const WINDOW: Duration = Duration::from_secs(300);

const STAMP_BITS: u32 = 20;
const STAMP_MASK: u64 = (1 << STAMP_BITS) - 1;

/// The table and its hash keys.
pub struct Repeats {
    slots: Box<[AtomicU64]>,
    keys: std::collections::hash_map::RandomState,
    epoch: Instant,
}

/// The process-wide record.
pub static REPEATS: LazyLock<Repeats> = LazyLock::new(Repeats::new);

impl Default for Repeats {
    fn default() -> Self {
        Repeats::new()
    }
}

impl Repeats {
    /// An empty table.
    pub fn new() -> Repeats {
        Repeats {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            keys: std::collections::hash_map::RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Record a call of `tool` of `upstream` with argument bytes `args`, seen at `secs` seconds
    /// after the table's start; whether it repeats one seen within [`WINDOW`].
    pub fn seen_at(&self, upstream: &str, tool: &str, args: &[u8], secs: u64) -> bool {
        let mut h = self.keys.build_hasher();
        h.write(upstream.as_bytes());
        h.write_u8(0xff);
        h.write(tool.as_bytes());
        h.write_u8(0xff);
        h.write(args);
        let hash = h.finish();
        let tag = hash & !STAMP_MASK;
        // The slot comes from the bits below the tag's, so the tag still tells slot-mates apart.
        let slot = &self.slots[(hash >> 4) as usize & (SLOTS - 1)];
        // Stamp 0 means "empty": a call seen at second 0 is recorded at second 1.
        let stamp = (secs & STAMP_MASK).max(1);
        let before = slot.swap(tag | stamp, Ordering::Relaxed);
        let age = stamp.wrapping_sub(before & STAMP_MASK) & STAMP_MASK;
        before != 0 && before & !STAMP_MASK == tag && age <= WINDOW.as_secs()
    }

    /// Record a call now and count it in `sekisho_uncached_calls_total`.
    pub fn note(&self, upstream: Name, tool: &str, args: &[u8]) {
        let secs = self.epoch.elapsed().as_secs();
        let repeat = self.seen_at(upstream.as_str(), tool, args, secs);
        METRICS.advice.uncached(upstream, tool, repeat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_calls_within_the_window_repeat_and_others_do_not() {
        let r = Repeats::new();
        assert!(!r.seen_at("a", "t", b"{\"x\":1}", 10), "first sight");
        assert!(r.seen_at("a", "t", b"{\"x\":1}", 20));
        assert!(!r.seen_at("a", "t", b"{\"x\":2}", 21), "other arguments");
        assert!(!r.seen_at("b", "t", b"{\"x\":1}", 22), "other upstream");
        assert!(!r.seen_at("a", "u", b"{\"x\":1}", 23), "other tool");
        assert!(r.seen_at("a", "t", b"{\"x\":1}", 20 + WINDOW.as_secs()), "at the window's end");
        assert!(!r.seen_at("a", "t", b"{\"x\":1}", 21 + 2 * WINDOW.as_secs() + 1), "after it");
    }

    #[test]
    fn many_distinct_calls_never_count_as_repeats() {
        let r = Repeats::new();
        let repeats = (0..20_000u32).filter(|i| r.seen_at("a", "t", &i.to_le_bytes(), 5)).count();
        assert_eq!(repeats, 0);
    }
}
