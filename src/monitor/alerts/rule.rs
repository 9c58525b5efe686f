//! The indicators a rule can watch: how each is read from a [`Sample`] (gateway-wide, or one
//! upstream's entry with a rule's `scope`) and how its values are shown in alert texts.

use serde::{Deserialize, Serialize};

use crate::monitor::sample::Sample;

/// A sample indicator a rule compares (its name in `metric = "…"`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Median latency, ms (no value without calls). Gateway-wide only.
    LatencyP50Ms,
    /// 95th percentile latency, ms (no value without calls); with a scope, the upstream's.
    LatencyP95Ms,
    /// 99th percentile latency, ms (no value without calls). Gateway-wide only.
    LatencyP99Ms,
    /// Failed calls over calls, 0..1; with a scope, the upstream's.
    ErrorRate,
    /// Tool results marked `isError` over calls, 0..1; with a scope, the upstream's.
    ToolErrorRate,
    /// Cache hits over cacheable calls, 0..1 (no value without cache lookups).
    CacheHitRate,
    /// Calls finished per second.
    RequestsPerSec,
    /// Calls waiting in admission queues.
    Queued,
    /// Calls waiting on upstreams.
    InFlight,
    /// Live legacy sessions.
    Sessions,
    /// Open notification streams.
    Streams,
    /// Calls shed by admission control in the interval.
    Shed,
    /// Calls refused by rate limits in the interval.
    RateLimited,
    /// Replicas with an open breaker; with a scope, the upstream's.
    BreakersOpen,
    /// Upstreams not connected; with a scope, 1 while that upstream is down.
    UpstreamsDown,
    /// Resident memory of the gateway, bytes; with a scope, the upstream's stdio children's sum.
    RssBytes,
    /// CPU of the gateway, percent of one core; with a scope, the upstream's children's sum.
    CpuPercent,
    /// Dollars per hour upstream calls cost over the interval; with a scope, the upstream's.
    CostPerHour,
    /// A budget's spending over the trailing hour as a share of it (1: spent); the scope
    /// names the budget (`gateway`, `caller:<id>`, `tenant:<name>`; none: `gateway`).
    BudgetUsed,
}

impl Metric {
    /// Its name in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::LatencyP50Ms => "latency_p50_ms",
            Metric::LatencyP95Ms => "latency_p95_ms",
            Metric::LatencyP99Ms => "latency_p99_ms",
            Metric::ErrorRate => "error_rate",
            Metric::ToolErrorRate => "tool_error_rate",
            Metric::CacheHitRate => "cache_hit_rate",
            Metric::RequestsPerSec => "requests_per_sec",
            Metric::Queued => "queued",
            Metric::InFlight => "in_flight",
            Metric::Sessions => "sessions",
            Metric::Streams => "streams",
            Metric::Shed => "shed",
            Metric::RateLimited => "rate_limited",
            Metric::BreakersOpen => "breakers_open",
            Metric::UpstreamsDown => "upstreams_down",
            Metric::RssBytes => "rss_bytes",
            Metric::CpuPercent => "cpu_percent",
            Metric::CostPerHour => "cost_per_hour",
            Metric::BudgetUsed => "budget_used",
        }
    }

    /// Whether it has a per-upstream value (a rule with a `scope`).
    pub fn scoped(self) -> bool {
        matches!(
            self,
            Metric::LatencyP95Ms
                | Metric::ErrorRate
                | Metric::ToolErrorRate
                | Metric::BreakersOpen
                | Metric::UpstreamsDown
                | Metric::RssBytes
                | Metric::CpuPercent
                | Metric::CostPerHour
                | Metric::BudgetUsed
        )
    }

    /// Its value in `sample`, for the whole gateway or the upstream `scope`, with the calls
    /// it is made of (for `min_calls`); `None` when the sample has none (no calls for a
    /// percentile, no cache lookups, the upstream not among the sample's top N).
    pub fn read(self, sample: &Sample, scope: Option<&str>) -> (Option<f64>, u64) {
        let calls = sample.calls;
        if self == Metric::BudgetUsed {
            let name = scope.unwrap_or("gateway");
            return (sample.budgets.iter().find(|b| &*b.name == name).map(|b| b.used), calls);
        }
        let Some(scope) = scope else {
            let v = match self {
                Metric::LatencyP50Ms => sample.latency.p50_ms,
                Metric::LatencyP95Ms => sample.latency.p95_ms,
                Metric::LatencyP99Ms => sample.latency.p99_ms,
                Metric::ErrorRate => Some(sample.error_rate),
                Metric::ToolErrorRate => Some(rate(sample.tool_errors, calls)),
                Metric::CacheHitRate => sample.cache_hit_rate,
                Metric::RequestsPerSec => Some(sample.requests_per_sec),
                Metric::Queued => Some(sample.queued as f64),
                Metric::InFlight => Some(sample.in_flight as f64),
                Metric::Sessions => Some(sample.sessions as f64),
                Metric::Streams => Some(sample.streams as f64),
                Metric::Shed => Some(sample.shed as f64),
                Metric::RateLimited => Some(sample.rate_limited as f64),
                Metric::BreakersOpen => Some(f64::from(sample.breakers_open)),
                Metric::UpstreamsDown => Some(f64::from(sample.upstreams_down)),
                Metric::RssBytes => sample.gateway.as_ref().map(|g| g.rss_bytes as f64),
                Metric::CpuPercent => sample.gateway.as_ref().map(|g| g.cpu_percent),
                Metric::CostPerHour => Some(sample.cost_per_hour),
                Metric::BudgetUsed => None,
            };
            return (v, calls);
        };
        let row = sample.by_upstream.iter().find(|b| &*b.name == scope);
        let health = sample.health.iter().find(|h| &*h.name == scope);
        let children = || sample.children.iter().filter(|c| &*c.name == scope);
        let v = match self {
            Metric::LatencyP95Ms => row.and_then(|r| r.p95_ms),
            Metric::ErrorRate => row.map(|r| rate(r.errors, r.calls)),
            Metric::ToolErrorRate => row.map(|r| rate(r.tool_errors, r.calls)),
            Metric::BreakersOpen => health.map(|h| f64::from(h.breakers_open)),
            Metric::UpstreamsDown => health.map(|h| f64::from(h.down)),
            Metric::RssBytes => children().next().map(|_| children().map(|c| c.rss_bytes as f64).sum()),
            Metric::CpuPercent => children().next().map(|_| children().map(|c| c.cpu_percent).sum()),
            Metric::CostPerHour => row.map(|r| r.cost_per_hour.unwrap_or(0.0)),
            _ => None,
        };
        (v, row.map_or(0, |r| r.calls))
    }

    /// `value` in the metric's unit, for alert texts: `3120 ms`, `4.2%`, `512.0 MiB`, `12`.
    pub fn show(self, value: f64) -> String {
        match self {
            Metric::LatencyP50Ms | Metric::LatencyP95Ms | Metric::LatencyP99Ms => format!("{value:.0} ms"),
            Metric::ErrorRate | Metric::ToolErrorRate | Metric::CacheHitRate | Metric::BudgetUsed => {
                format!("{:.1}%", value * 100.0)
            }
            Metric::CostPerHour => format!("${value:.4}/h"),
            Metric::RssBytes => format!("{:.1} MiB", value / (1024.0 * 1024.0)),
            Metric::CpuPercent => format!("{value:.1}% CPU"),
            Metric::RequestsPerSec => format!("{value:.2}/s"),
            _ => format!("{value}"),
        }
    }
}

fn rate(n: u64, calls: u64) -> f64 {
    if calls == 0 { 0.0 } else { n as f64 / calls as f64 }
}
