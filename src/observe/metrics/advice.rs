//! Counters the recommendations read (`crate::monitor::recommend`): calls to read-only tools
//! that the cache does not serve, whether each repeated an identical call of the last few
//! minutes (`crate::observe::repeats`), and cache misses of entries that had expired.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Name;

/// Labels of an uncached call to a read-only tool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UncachedLabels {
    /// Upstream namespace.
    pub upstream: Name,
    /// The upstream's own tool name (from the catalog, so bounded by it).
    pub tool: String,
    /// `true` when an identical call (same upstream, tool and argument bytes) was seen within
    /// the repeat window.
    pub repeat: &'static str,
}

/// Labels naming one cached tool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    /// Upstream namespace.
    pub upstream: Name,
    /// The upstream's own tool name (`resources/read` for resource reads).
    pub tool: String,
}

/// The recommendations' counters.
pub struct AdviceMetrics {
    uncached: Family<UncachedLabels, Counter>,
    expired_misses: Family<ToolLabels, Counter>,
}

impl AdviceMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let uncached = Family::<UncachedLabels, Counter>::default();
        registry.register(
            "uncached_calls",
            "Calls to tools that declare readOnlyHint but are not cached, by upstream, tool and whether an identical call came within 5 minutes (repeat)",
            uncached.clone(),
        );
        let expired_misses = Family::<ToolLabels, Counter>::default();
        registry.register(
            "cache_expired_misses",
            "Cache misses of a key whose entry had been stored and had expired (its TTL ran out), by upstream and tool",
            expired_misses.clone(),
        );
        AdviceMetrics { uncached, expired_misses }
    }

    /// Count an uncached call of read-only `tool` of `upstream`; `repeat` when it repeated an
    /// identical recent call.
    pub fn uncached(&self, upstream: Name, tool: &str, repeat: bool) {
        let repeat = if repeat { "true" } else { "false" };
        self.uncached.get_or_create(&UncachedLabels { upstream, tool: tool.to_string(), repeat }).inc();
    }

    /// Count a cache miss of `tool` of `upstream` whose entry had expired.
    pub fn expired_miss(&self, upstream: Name, tool: &str) {
        self.expired_misses.get_or_create(&ToolLabels { upstream, tool: tool.to_string() }).inc();
    }
}
