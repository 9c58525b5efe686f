//! The recommendations report (`GET /admin/recommendations`, `sekisho__recommendations`,
//! `sekisho recommendations`): the rules of `crate::monitor::recommend` over the monitor's
//! samples of a period, the upstreams as they run and the configuration in force.

use std::time::Duration;

use serde::Serialize;

use super::Reporter;
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
        let input = Input {
            period,
            now_ms,
            samples: &samples,
            history_since_ms,
            config: &src.running.config,
            upstreams: &upstreams,
            inline_secrets: &src.running.inline_secrets,
            // Cost accounting's view, once it exists.
            cost: None,
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
