//! The recommendations report (`GET /admin/recommendations`, `sekisho__recommendations`,
//! `sekisho recommendations`): the rules of `crate::monitor::recommend` over the monitor's
//! samples of a period, the upstreams as they run and the configuration in force.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::Reporter;
use crate::config::Config;
use crate::monitor::Sample;
use crate::monitor::recommend::model::{CostView, UpstreamCost};
use crate::monitor::recommend::{self, Input, Priority, Recommendation, Thresholds};

/// How many recommendations there are of each priority.
#[derive(Clone, Debug, Serialize)]
pub struct Counts {
    /// All of them.
    pub total: usize,
    /// `critical` ones.
    pub critical: usize,
    /// `high` ones.
    pub high: usize,
    /// `medium` ones.
    pub medium: usize,
    /// `low` ones.
    pub low: usize,
}

/// The report: `{"period_ms", "samples", "history_ms", "summary", "recommendations"}`.
#[derive(Clone, Debug, Serialize)]
pub struct RecommendationsReport {
    /// The period judged, in ms.
    pub period_ms: u64,
    /// The monitor's samples in it.
    pub samples: usize,
    /// How long the monitor has watched, in ms (`null` with the monitor off).
    pub history_ms: Option<u64>,
    /// How many of each priority.
    pub summary: Counts,
    /// The recommendations, most urgent first (docs/operations.md, "Recommendations and
    /// optimize"). With the monitor off, only the configuration's findings.
    pub recommendations: Vec<Recommendation>,
}

impl Reporter {
    /// The recommendations over the last `period`.
    pub fn recommendations(&self, period: Duration) -> RecommendationsReport {
        let src = &self.src;
        let monitor = src.monitor.as_deref();
        let samples = monitor.map(|m| m.samples(period)).unwrap_or_default();
        let now_ms = monitor.map_or(0, |m| m.now_ms());
        let history_since_ms = monitor.and_then(|m| m.baseline_ms());
        let upstreams = recommend::live::gather(&src.upstreams, monitor);
        let cost = cost_view(&samples, &src.running.config);
        let input = Input {
            period,
            now_ms,
            samples: &samples,
            history_since_ms,
            config: &src.running.config,
            upstreams: &upstreams,
            inline_secrets: &src.running.inline_secrets,
            cost: cost.as_ref(),
        };
        let recs = recommend::recommend(&input, &Thresholds::default());
        let count = |p: Priority| recs.iter().filter(|r| r.priority == p).count();
        RecommendationsReport {
            period_ms: period.as_millis() as u64,
            samples: samples.len(),
            history_ms: history_since_ms.map(|since| now_ms.saturating_sub(since)),
            summary: Counts {
                total: recs.len(),
                critical: count(Priority::Critical),
                high: count(Priority::High),
                medium: count(Priority::Medium),
                low: count(Priority::Low),
            },
            recommendations: recs,
        }
    }
}

/// What the budget rule reads of cost accounting: the gateway budget's spend over the trailing
/// hour (the newest sample's), and each upstream's spend per hour and cost per call over the
/// period's samples (`other` left out). An upstream named as a `fallback` that had no calls
/// is priced at its configured `per_call`. `None` without a gateway budget.
fn cost_view(samples: &[Sample], config: &Config) -> Option<CostView> {
    let gateway = samples.last()?.budgets.iter().find(|b| &*b.name == "gateway")?;
    let ms: u64 = samples.iter().map(|s| s.interval_ms).sum();
    let hours = ms as f64 / 3_600_000.0;
    // Upstream → (dollars, calls) over the period.
    let mut spent: BTreeMap<&str, (f64, u64)> = BTreeMap::new();
    for s in samples {
        for b in s.by_upstream.iter().filter(|b| &*b.name != crate::monitor::sample::OTHER) {
            let entry = spent.entry(&b.name).or_default();
            entry.0 += b.cost_per_hour.unwrap_or(0.0) * s.interval_ms as f64 / 3_600_000.0;
            entry.1 += b.calls;
        }
    }
    let configured =
        |name: &str| config.upstreams.get(name).and_then(|u| u.price.as_ref()).and_then(|p| p.per_call).unwrap_or(0.0);
    let mut upstreams: Vec<UpstreamCost> = spent
        .iter()
        .map(|(name, (dollars, calls))| UpstreamCost {
            name: name.to_string(),
            spend_per_hour: if hours > 0.0 { dollars / hours } else { 0.0 },
            cost_per_call: if *calls > 0 { dollars / *calls as f64 } else { configured(name) },
        })
        .collect();
    for fallback in config.upstreams.values().filter_map(|u| u.fallback.as_deref()) {
        if !upstreams.iter().any(|u| u.name == fallback) {
            let cost_per_call = configured(fallback);
            upstreams.push(UpstreamCost { name: fallback.to_string(), spend_per_hour: 0.0, cost_per_call });
        }
    }
    Some(CostView { spend_per_hour: gateway.spent, budget_per_hour: gateway.per_hour, upstreams })
}
