//! The performance summary: the monitor's samples of a period totalled ([`Summary`], also the
//! `summary` of `GET /admin/monitor`), and the operator's one-screen view of it with the
//! overall health ([`Performance`]: `GET /admin/performance`, `sekisho__performance`,
//! `sekisho performance`).

use serde::Serialize;

use super::health::Verdict;
use crate::monitor::Sample;

/// The samples of a period, totalled. Rates are over the period's calls, not averages of the
/// samples' rates.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Samples in the period.
    pub samples: usize,
    /// Calls finished.
    pub calls: u64,
    /// Calls failed on the gateway's or the upstreams' side.
    pub errors: u64,
    /// `errors / calls` (0 without calls).
    pub error_rate: f64,
    /// Calls per second over the samples' intervals.
    pub requests_per_sec: f64,
    /// Mean time to answer a call, in milliseconds (`null` without calls).
    pub average_response_ms: Option<f64>,
    /// The largest of the samples' 95th percentiles, in milliseconds (`null` without calls).
    pub p95_ms_max: Option<f64>,
    /// Calls shed by admission control.
    pub shed: u64,
    /// Calls refused by a rate limit.
    pub rate_limited: u64,
    /// Cache lookups (cacheable calls).
    pub cache_lookups: u64,
    /// Lookups that hit.
    pub cache_hits: u64,
    /// Lookups that joined an identical call in flight.
    pub coalesced: u64,
    /// Calls bound for an upstream, hits and joins included.
    pub upstream_calls: u64,
    /// `cache_hits / cache_lookups` (`null` without lookups).
    pub cache_hit_rate: Option<f64>,
    /// `(cache_hits + coalesced) / upstream_calls`: the share of the calls bound for an
    /// upstream that the gateway answered without one (`null` without such calls).
    pub cost_efficiency: Option<f64>,
    /// Dollars spent on upstream calls over the samples (prices: `[upstreams.U.price]`).
    pub cost_usd: f64,
}

/// Total `samples` (oldest first, as `Monitor::samples` gives them).
pub fn summarize(samples: &[Sample]) -> Summary {
    let sum = |f: fn(&Sample) -> u64| samples.iter().map(f).sum::<u64>();
    let calls = sum(|s| s.calls);
    let errors = sum(|s| s.errors);
    let ms = sum(|s| s.interval_ms);
    let (cache_lookups, cache_hits, coalesced, upstream_calls) =
        (sum(|s| s.cache_lookups), sum(|s| s.cache_hits), sum(|s| s.coalesced), sum(|s| s.upstream_calls));
    // mean × calls is each sample's total time: exact, not an average of averages.
    let total_ms: f64 = samples.iter().filter_map(|s| s.latency.mean_ms.map(|m| m * s.calls as f64)).sum();
    let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    Summary {
        samples: samples.len(),
        calls,
        errors,
        error_rate: ratio(errors, calls).unwrap_or(0.0),
        requests_per_sec: if ms == 0 { 0.0 } else { calls as f64 * 1000.0 / ms as f64 },
        average_response_ms: (calls > 0).then(|| total_ms / calls as f64),
        p95_ms_max: samples.iter().filter_map(|s| s.latency.p95_ms).reduce(f64::max),
        shed: sum(|s| s.shed),
        rate_limited: sum(|s| s.rate_limited),
        cache_lookups,
        cache_hits,
        coalesced,
        upstream_calls,
        cache_hit_rate: ratio(cache_hits, cache_lookups),
        cost_efficiency: ratio(cache_hits + coalesced, upstream_calls),
        cost_usd: samples.iter().map(|s| s.cost_per_hour * s.interval_ms as f64 / 3_600_000.0).sum(),
    }
}

/// Spending over a period (`Performance::cost`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spend {
    /// Dollars spent on upstream calls in the period.
    pub spent_usd: f64,
    /// The same per hour of the period's samples, in $/h.
    pub per_hour_usd: f64,
    /// Every configured budget as the newest sample saw it: spent over the trailing hour.
    pub budgets: Vec<crate::cost::BudgetUse>,
}

impl Spend {
    /// The spend of `samples` (totalled as `summary`); `None` when nothing was spent and no
    /// budget is configured (no cost accounting in use).
    pub fn of(samples: &[Sample], summary: &Summary) -> Option<Spend> {
        let budgets = samples.last().map(|s| s.budgets.clone()).unwrap_or_default();
        if summary.cost_usd <= 0.0 && budgets.is_empty() {
            return None;
        }
        let hours = samples.iter().map(|s| s.interval_ms).sum::<u64>() as f64 / 3_600_000.0;
        let per_hour_usd = if hours > 0.0 { summary.cost_usd / hours } else { 0.0 };
        Some(Spend { spent_usd: summary.cost_usd, per_hour_usd, budgets })
    }
}

/// How the gateway is doing over a period (docs/operations.md, "Performance").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Performance {
    /// `healthy`, `degraded` or `unhealthy`: the verdict of [`super::health::Health`].
    pub overall_health: Verdict,
    /// Why it is not healthy (empty when it is).
    pub reasons: Vec<String>,
    /// The period the numbers cover, in milliseconds.
    pub period_ms: u64,
    /// Whether the monitor runs (off: every number below is `null` or 0).
    pub monitor: bool,
    /// Samples in the period (the first comes one `[monitor] interval` after start).
    pub samples: usize,
    /// Calls finished in the period.
    pub calls: u64,
    /// Calls per second.
    pub requests_per_sec: f64,
    /// Cache hits over cacheable calls (`null` without any).
    pub cache_hit_rate: Option<f64>,
    /// Mean time to answer a call, in milliseconds (`null` without calls).
    pub average_response_time: Option<f64>,
    /// The largest 95th percentile of the period's samples, in milliseconds.
    pub p95_ms_max: Option<f64>,
    /// Failed calls over calls (`null` without calls).
    pub error_rate: Option<f64>,
    /// The share of upstream-bound calls answered without reaching an upstream (cache hits
    /// and coalesced joins; `null` without such calls).
    pub cost_efficiency: Option<f64>,
    /// Spending: dollars in the period, per hour, and the budgets (`null` when no call was
    /// priced and no budget is configured).
    pub cost: Option<Spend>,
}

impl Performance {
    /// The summary of `summary` (over `period_ms`) under the `verdict` and its `reasons`.
    pub fn new(verdict: Verdict, reasons: Vec<String>, period_ms: u64, monitor: bool, summary: &Summary) -> Self {
        Self::with_cost(verdict, reasons, period_ms, monitor, summary, None)
    }

    /// [`Performance::new`] with the period's spend.
    pub fn with_cost(
        verdict: Verdict,
        reasons: Vec<String>,
        period_ms: u64,
        monitor: bool,
        summary: &Summary,
        cost: Option<Spend>,
    ) -> Self {
        Performance {
            overall_health: verdict,
            reasons,
            period_ms,
            monitor,
            samples: summary.samples,
            calls: summary.calls,
            requests_per_sec: summary.requests_per_sec,
            cache_hit_rate: summary.cache_hit_rate,
            average_response_time: summary.average_response_ms,
            p95_ms_max: summary.p95_ms_max,
            error_rate: (summary.calls > 0).then_some(summary.error_rate),
            cost_efficiency: summary.cost_efficiency,
            cost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::sample::Latency;

    fn sample(calls: u64, errors: u64, mean: f64, hits: u64, joins: u64, upstream: u64) -> Sample {
        Sample {
            interval_ms: 30_000,
            calls,
            errors,
            latency: Latency { mean_ms: Some(mean), p95_ms: Some(mean * 2.0), ..Latency::default() },
            cache_lookups: hits + joins + 1,
            cache_hits: hits,
            coalesced: joins,
            upstream_calls: upstream,
            ..Sample::default()
        }
    }

    #[test]
    fn totals_weigh_each_sample_by_its_calls() {
        let s = summarize(&[sample(10, 1, 100.0, 4, 1, 8), sample(30, 0, 20.0, 0, 0, 30)]);
        assert_eq!((s.samples, s.calls, s.errors), (2, 40, 1));
        assert_eq!(s.error_rate, 1.0 / 40.0);
        // (10 × 100 + 30 × 20) / 40, not (100 + 20) / 2.
        assert_eq!(s.average_response_ms, Some(40.0));
        assert_eq!(s.p95_ms_max, Some(200.0));
        assert_eq!(s.requests_per_sec, 40.0 / 60.0);
        assert_eq!(s.cache_hit_rate, Some(4.0 / 7.0));
        assert_eq!(s.cost_efficiency, Some(5.0 / 38.0));
    }

    #[test]
    fn no_calls_is_unknown_not_zero() {
        let s = summarize(&[]);
        assert_eq!((s.average_response_ms, s.cache_hit_rate, s.cost_efficiency), (None, None, None));
        let p = Performance::new(Verdict::Healthy, Vec::new(), 3_600_000, true, &s);
        assert_eq!((p.error_rate, p.average_response_time, p.cost), (None, None, None));
        let s = summarize(&[sample(4, 0, 5.0, 0, 0, 0)]);
        let p = Performance::new(Verdict::Healthy, Vec::new(), 3_600_000, true, &s);
        assert_eq!(p.error_rate, Some(0.0));
    }
}
