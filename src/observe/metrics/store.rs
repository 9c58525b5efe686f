//! Metrics of the `[store]` config cache (`crate::store`): lookups by result, change
//! notifications, and whether PostgreSQL answers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of a config cache lookup: `hit`, `miss` (loaded from PostgreSQL), `stale` (served
/// past its TTL while PostgreSQL is down), `throttled` (refused past `lookups_per_second`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLookupLabels {
    pub result: &'static str,
}

/// Metrics of the `[store]` config cache (`crate::store`).
pub struct StoreMetrics {
    lookups: Family<StoreLookupLabels, Counter>,
    notifications: Counter,
    degraded: Gauge,
}

impl StoreMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let lookups = Family::<StoreLookupLabels, Counter>::default();
        for result in ["hit", "miss", "stale", "throttled"] {
            let _ = lookups.get_or_create(&StoreLookupLabels { result });
        }
        registry.register(
            "store_cache_lookups",
            "API key resolutions by result: hit, miss (loaded from PostgreSQL), stale (served while PostgreSQL is down), throttled (past lookups_per_second)",
            lookups.clone(),
        );
        let notifications = Counter::default();
        registry.register(
            "store_notifications",
            "Change notifications received on sekisho_store",
            notifications.clone(),
        );
        let degraded = Gauge::default();
        registry.register(
            "store_degraded",
            "1 while the configured PostgreSQL store is not answering",
            degraded.clone(),
        );
        StoreMetrics { lookups, notifications, degraded }
    }

    /// Count a config cache lookup (`hit`, `miss`, `stale`, `throttled`).
    pub fn lookup(&self, result: &'static str) {
        self.lookups.get_or_create(&StoreLookupLabels { result }).inc();
    }

    /// Count a change notification.
    pub fn notification(&self) {
        self.notifications.inc();
    }

    /// Set whether the store is degraded.
    pub fn degraded(&self, down: bool) {
        self.degraded.set(i64::from(down));
    }

    /// Lookups so far with `result` (for tests and the monitor).
    pub fn lookups(&self, result: &'static str) -> u64 {
        self.lookups.get_or_create(&StoreLookupLabels { result }).get()
    }
}
