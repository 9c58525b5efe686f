//! The samples of a period summed per upstream and per tool: what the rules compare with their
//! thresholds. Percentiles cannot be summed, so an upstream's p99 over the period is the
//! highest p99 of its intervals (`p99_ms_max`) and the median of them weighted by calls
//! (`p99_ms_typical`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::Sample;
use super::super::sample::OTHER;

/// One upstream over the period.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpstreamTotals {
    /// Calls finished.
    pub calls: u64,
    /// Calls failed on the gateway's or upstream's side.
    pub errors: u64,
    /// Calls failed by their deadline.
    pub timeouts: u64,
    /// Retries refused by the retry budget.
    pub retry_budget_exhausted: u64,
    /// The highest interval p99, in ms.
    pub p99_ms_max: Option<f64>,
    /// The intervals' p99s, each with its calls (for the weighted median).
    pub p99s: Vec<(f64, u64)>,
    /// Breaker openings.
    pub breaker_opens: u64,
    /// Calls that waited at its bulkhead.
    pub waited: u64,
    /// The longest its bulkhead queue was.
    pub peak_queued: u64,
    /// Its bulkhead's `max_concurrent` as last sampled.
    pub max_concurrent: u64,
}

impl UpstreamTotals {
    /// The median of the intervals' p99s weighted by their calls, in ms: the p99 of a typical
    /// call's interval.
    pub fn p99_ms_typical(&self) -> Option<f64> {
        let mut v = self.p99s.clone();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: u64 = v.iter().map(|(_, c)| c).sum();
        let mut seen = 0;
        for (p, c) in v {
            seen += c;
            if seen * 2 >= total {
                return Some(p);
            }
        }
        None
    }
}

/// One tool over the period (the sum of its `ToolUse` rows).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolTotals {
    /// Cache hits.
    pub hits: u64,
    /// Cache misses.
    pub misses: u64,
    /// Misses of expired entries.
    pub expired_misses: u64,
    /// Uncached calls (read-only tools).
    pub uncached: u64,
    /// Of those, repeats within the window.
    pub repeats: u64,
}

/// The period's sums.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Per upstream (the `other` rows left out: they name no upstream).
    pub upstreams: BTreeMap<Arc<str>, UpstreamTotals>,
    /// Per (upstream, tool) (`other` left out).
    pub tools: BTreeMap<(Arc<str>, Arc<str>), ToolTotals>,
    /// Calls that waited at the gateway-wide admission limit.
    pub admission_waited: u64,
    /// The longest the admission queue was.
    pub admission_peak: u64,
    /// The admission limit's `max_concurrent`.
    pub admission_max: u64,
    /// Calls over the period.
    pub calls: u64,
    /// Calls shed over the period.
    pub shed: u64,
}

impl Totals {
    /// Sum `samples`.
    pub fn of(samples: &[Sample]) -> Totals {
        let mut t = Totals::default();
        for s in samples {
            t.calls += s.calls;
            t.shed += s.shed;
            for b in s.by_upstream.iter().filter(|b| b.name.as_ref() != OTHER) {
                let u = t.upstreams.entry(Arc::clone(&b.name)).or_default();
                u.calls += b.calls;
                u.errors += b.errors;
                u.timeouts += b.timeouts;
                u.retry_budget_exhausted += b.retry_budget_exhausted;
                if let Some(p) = b.p99_ms {
                    u.p99_ms_max = Some(u.p99_ms_max.map_or(p, |m| m.max(p)));
                    u.p99s.push((p, b.calls));
                }
            }
            for h in s.health.iter().filter(|h| h.name.as_ref() != OTHER) {
                let u = t.upstreams.entry(Arc::clone(&h.name)).or_default();
                u.breaker_opens += h.breaker_opens;
                u.waited += h.waited;
                u.peak_queued = u.peak_queued.max(h.peak_queued);
                u.max_concurrent = h.max_concurrent;
            }
            for r in s.tools.iter().filter(|r| r.upstream.as_ref() != OTHER) {
                let tool = t.tools.entry((Arc::clone(&r.upstream), Arc::clone(&r.tool))).or_default();
                tool.hits += r.hits;
                tool.misses += r.misses;
                tool.expired_misses += r.expired_misses;
                tool.uncached += r.uncached;
                tool.repeats += r.repeats;
            }
            if let Some(a) = s.admission {
                t.admission_waited += a.waited;
                t.admission_peak = t.admission_peak.max(a.peak_queued);
                t.admission_max = a.max_concurrent;
            }
        }
        t
    }
}
