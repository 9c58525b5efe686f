//! Runtime switches: one flag per layer of the call stack that an operator may turn off while
//! the gateway runs (an incident: a cache serving stale answers, retries amplifying an
//! outage, a breaker stuck open) and on again, without a restart or a rebuilt stack.
//!
//! Every flag is on at start. A step reads its flag with one relaxed atomic load per call and,
//! when it is off, passes the call through untouched (docs/operations.md "Runtime switches"
//! says what "off" means for each). A switch only turns off a step the configuration built:
//! switching `cache` on where `[cache] enabled = false` changes nothing. Each change records
//! who made it and when (a sequence number orders changes across replicas: [`fleet`]).

pub mod fleet;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A layer that can be switched off at runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The response cache step (no look-up, no store).
    Cache,
    /// Coalescing of identical concurrent misses in the cache step (no sharing).
    Coalesce,
    /// Upstream retries (one attempt per call).
    Retry,
    /// Upstream circuit breakers (every attempt admitted, nothing recorded).
    Breaker,
    /// The global admission step (no limit, no queue).
    Admission,
    /// The quota step (every call admitted).
    RateLimits,
    /// JSON-RPC batches (refused as unsupported).
    Batching,
}

impl Layer {
    /// Every layer, in the call stack's order.
    pub const ALL: [Layer; 7] = [
        Layer::RateLimits,
        Layer::Admission,
        Layer::Cache,
        Layer::Coalesce,
        Layer::Retry,
        Layer::Breaker,
        Layer::Batching,
    ];

    /// The layer's name in the admin API, the CLI, the log and Redis (`rate_limits`, …).
    pub fn name(self) -> &'static str {
        match self {
            Layer::Cache => "cache",
            Layer::Coalesce => "coalesce",
            Layer::Retry => "retry",
            Layer::Breaker => "breaker",
            Layer::Admission => "admission",
            Layer::RateLimits => "rate_limits",
            Layer::Batching => "batching",
        }
    }

    /// The layer named `name` (`rate-limits` is accepted for `rate_limits`); `None` for any
    /// other text.
    pub fn parse(name: &str) -> Option<Layer> {
        let name = if name == "rate-limits" { "rate_limits" } else { name };
        Layer::ALL.into_iter().find(|l| l.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The last change of one switch: its state, who set it (`Principal::label`, or a replica's
/// note), when (Unix milliseconds) and its sequence number (greater on every change of the
/// switch, fleet-wide: [`fleet`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// Whether the layer is on.
    pub on: bool,
    /// Who switched it (at most [`MAX_BY_BYTES`] bytes).
    pub by: String,
    /// When, in Unix milliseconds.
    pub at_ms: u64,
    /// Its sequence number: 1 for the first change of the switch, then one more each time.
    pub seq: u64,
}

/// The longest `by` a change keeps, in bytes (longer names are cut at a character boundary).
pub const MAX_BY_BYTES: usize = 128;

/// The switches of one gateway: every layer's flag (read on the call path) and its last change.
pub struct Switches {
    flags: [AtomicBool; 7],
    changes: Mutex<[Option<Change>; 7]>,
}

impl Default for Switches {
    fn default() -> Self {
        Switches { flags: std::array::from_fn(|_| AtomicBool::new(true)), changes: Mutex::new(Default::default()) }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn bounded(by: &str) -> String {
    let mut end = by.len().min(MAX_BY_BYTES);
    while !by.is_char_boundary(end) {
        end -= 1;
    }
    by[..end].to_string()
}

impl Switches {
    /// Whether `layer` is on: one relaxed load (a switch reaches calls already running at their
    /// next check; nothing orders it with other memory).
    #[inline]
    pub fn on(&self, layer: Layer) -> bool {
        self.flags[layer.index()].load(Ordering::Relaxed)
    }

    /// Switch `layer` on or off here, as `by`; logged at warn level. Returns the change, with
    /// the sequence number after the last one this replica knows of.
    pub fn set(&self, layer: Layer, on: bool, by: &str) -> Change {
        let mut changes = self.changes.lock().expect("switches lock");
        let seq = changes[layer.index()].as_ref().map_or(0, |c| c.seq) + 1;
        let change = Change { on, by: bounded(by), at_ms: now_ms(), seq };
        changes[layer.index()] = Some(change.clone());
        self.flags[layer.index()].store(on, Ordering::Relaxed);
        drop(changes);
        tracing::warn!(layer = layer.name(), on, by = change.by, seq, "runtime switch changed");
        change
    }

    /// Apply a change made on another replica (read from Redis): taken when its sequence
    /// number is greater than the one known here, or equal with another content (two replicas
    /// switched at once; the one stored last wins everywhere). Returns whether it was taken.
    pub fn apply(&self, layer: Layer, change: Change) -> bool {
        let mut changes = self.changes.lock().expect("switches lock");
        let newer = match &changes[layer.index()] {
            None => true,
            Some(known) => change.seq > known.seq || (change.seq == known.seq && change != *known),
        };
        if !newer {
            return false;
        }
        let (on, seq, by) = (change.on, change.seq, bounded(&change.by));
        changes[layer.index()] = Some(Change { by: by.clone(), ..change });
        let was = self.flags[layer.index()].swap(on, Ordering::Relaxed);
        drop(changes);
        if was != on {
            tracing::warn!(layer = layer.name(), on, by, seq, "runtime switch changed on another replica");
        }
        true
    }

    /// The last change of `layer` known here, if it was ever switched.
    pub fn last(&self, layer: Layer) -> Option<Change> {
        self.changes.lock().expect("switches lock")[layer.index()].clone()
    }

    /// The layers switched off, in the stack's order.
    pub fn off(&self) -> Vec<&'static str> {
        Layer::ALL.into_iter().filter(|l| !self.on(*l)).map(Layer::name).collect()
    }

    /// Every switch as JSON (`GET /admin/switches`, the admin `/readyz`): `{"cache": {"on":
    /// true}, "retry": {"on": false, "by": "ops", "at": "2025-…Z", "seq": 3}, …}`; `by`, `at`
    /// and `seq` for a switch that was ever changed.
    pub fn state(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for layer in Layer::ALL {
            let mut entry = serde_json::json!({ "on": self.on(layer) });
            if let Some(c) = self.last(layer) {
                let at = UNIX_EPOCH + Duration::from_millis(c.at_ms);
                entry["by"] = c.by.into();
                entry["at"] = humantime::format_rfc3339_millis(at).to_string().into();
                entry["seq"] = c.seq.into();
            }
            out.insert(layer.name().to_string(), entry);
        }
        serde_json::Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_switch_is_on_until_switched_off_and_back() {
        let s = Switches::default();
        assert!(Layer::ALL.iter().all(|l| s.on(*l)));
        assert!(s.off().is_empty());
        let change = s.set(Layer::Cache, false, "ops");
        assert_eq!((change.on, change.seq, change.by.as_str()), (false, 1, "ops"));
        assert!(!s.on(Layer::Cache) && s.on(Layer::Coalesce));
        assert_eq!(s.off(), ["cache"]);
        assert_eq!(s.state()["cache"]["by"], "ops");
        assert_eq!(s.state()["retry"], serde_json::json!({ "on": true }));
        assert_eq!(s.set(Layer::Cache, true, "ops").seq, 2);
        assert!(s.on(Layer::Cache) && s.off().is_empty());
    }

    #[test]
    fn names_parse_back() {
        for layer in Layer::ALL {
            assert_eq!(Layer::parse(layer.name()), Some(layer));
        }
        assert_eq!(Layer::parse("rate-limits"), Some(Layer::RateLimits));
        assert_eq!(Layer::parse("caches"), None);
        assert_eq!(Layer::parse(""), None);
    }

    #[test]
    fn a_fleet_change_is_taken_only_when_newer() {
        let s = Switches::default();
        let change = |on, seq, by: &str| Change { on, by: by.into(), at_ms: 1, seq };
        assert!(s.apply(Layer::Retry, change(false, 3, "a")));
        assert!(!s.on(Layer::Retry));
        assert!(!s.apply(Layer::Retry, change(true, 2, "old")), "an older change is not taken");
        assert!(!s.on(Layer::Retry));
        assert!(!s.apply(Layer::Retry, change(false, 3, "a")), "the same change again");
        assert!(s.apply(Layer::Retry, change(true, 3, "b")), "equal sequence, another content: Redis wins");
        assert!(s.on(Layer::Retry));
        assert_eq!(s.set(Layer::Retry, false, "c").seq, 4, "a local change follows the fleet's");
    }

    #[test]
    fn a_long_name_is_cut_at_a_character_boundary() {
        let s = Switches::default();
        let name = "é".repeat(100);
        let by = s.set(Layer::Batching, false, &name).by;
        assert!(by.len() <= MAX_BY_BYTES && name.starts_with(&by));
    }
}
