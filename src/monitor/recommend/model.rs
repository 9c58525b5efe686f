//! What the rules make and read: a [`Recommendation`] and its parts, the rules' [`Input`] and
//! [`Thresholds`], cost accounting's [`CostView`], and the helpers that round what they propose.

use std::time::Duration;

use serde::Serialize;

use super::super::Sample;
use super::live::UpstreamLive;
use super::patch::Change;
use crate::config::Config;

/// What a recommendation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Latency and throughput.
    Performance,
    /// Money and resources.
    Cost,
    /// Failures and recovery.
    Reliability,
    /// Exposure of the gateway and its secrets.
    Security,
}

/// How urgent it is, most urgent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Act now.
    Critical,
    /// Act soon.
    High,
    /// Worth doing.
    Medium,
    /// When convenient.
    Low,
}

/// How much work acting on it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effort {
    /// A configuration change.
    Low,
    /// A change and a check of its effects.
    Medium,
    /// Work outside the gateway.
    High,
}

/// One measured number behind a recommendation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evidence {
    /// What was measured (`repeats`, `p99_ms`, …).
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Its unit: `calls`, `ms`, `ratio` (0–1), `count`, `processes`, `bytes`, `$/h`, `s`.
    pub unit: &'static str,
}

/// One recommendation (docs/operations.md, "Recommendations and optimize").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    /// Stable id: the rule and its subject (`uncached-repeats:weather/forecast`).
    pub id: String,
    /// The rule that made it.
    pub rule: &'static str,
    /// What it is about.
    pub category: Category,
    /// How urgent it is.
    pub priority: Priority,
    /// One line.
    pub title: String,
    /// What was seen, with its numbers.
    pub description: String,
    /// What it costs to leave it.
    pub impact: String,
    /// How much work it is.
    pub implementation_effort: Effort,
    /// What acting on it should bring, in measured terms where possible.
    pub estimated_improvement: String,
    /// What to do, step by step.
    pub action_items: Vec<String>,
    /// The measured numbers that triggered it.
    pub evidence: Vec<Evidence>,
    /// The configuration change that removes the cause (empty when none does).
    pub config_patch: Vec<Change>,
}

/// Everything the rules read.
pub struct Input<'a> {
    /// The period judged.
    pub period: Duration,
    /// Now, in ms since the Unix epoch on the monitor's clock.
    pub now_ms: u64,
    /// The monitor's samples of the period, oldest first.
    pub samples: &'a [Sample],
    /// When the monitor's first reading was taken (`None`: no history at all).
    pub history_since_ms: Option<u64>,
    /// The configuration in force.
    pub config: &'a Config,
    /// The upstreams as they run now.
    pub upstreams: &'a [UpstreamLive],
    /// Key paths of secrets written inline in the configuration file ([`secrets::inline`]).
    pub inline_secrets: &'a [String],
    /// Spend against the budget, once cost accounting exists (`None` until then).
    pub cost: Option<&'a CostView>,
}

impl Input<'_> {
    /// Whether the monitor has watched the whole period.
    pub fn covers_period(&self) -> bool {
        self.history_since_ms.is_some_and(|since| since + self.period.as_millis() as u64 <= self.now_ms)
    }
}

/// The thresholds of the rules; the defaults are documented in docs/operations.md.
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Repeated identical calls to an uncached read-only tool before it is named.
    pub min_repeats: u64,
    /// … and their share of its uncached calls.
    pub min_repeat_share: f64,
    /// Misses of expired entries before a TTL is called short.
    pub min_expired_misses: u64,
    /// … and their share of the tool's lookups.
    pub min_expired_share: f64,
    /// Calls that waited at a concurrency cap before it is called tight.
    pub min_waited: u64,
    /// Calls needed before a timeout is compared with p99.
    pub min_timeout_calls: u64,
    /// Timeouts that fired before a timeout is called tight (with at least 1 % of calls).
    pub min_timeouts: u64,
    /// A p99 above this share of the timeout is close to it.
    pub tight_share: f64,
    /// A timeout above this multiple of p99 is far above it.
    pub far_factor: f64,
    /// Breaker openings in the period that make it flapping.
    pub flap_opens: u64,
    /// Retries refused by the budget before it is called exhausted.
    pub min_budget_exhausted: u64,
    /// Spend as a share of the budget that counts as near it.
    pub spend_share: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_repeats: 20,
            min_repeat_share: 0.2,
            min_expired_misses: 20,
            min_expired_share: 0.2,
            min_waited: 10,
            min_timeout_calls: 100,
            min_timeouts: 3,
            tight_share: 0.8,
            far_factor: 10.0,
            flap_opens: 3,
            min_budget_exhausted: 10,
            spend_share: 0.8,
        }
    }
}

/// What cost accounting knows over the period.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CostView {
    /// Spend, in $/h.
    pub spend_per_hour: f64,
    /// The gateway-wide budget, in $/h.
    pub budget_per_hour: f64,
    /// Per upstream.
    pub upstreams: Vec<UpstreamCost>,
}

/// One upstream's cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UpstreamCost {
    /// Namespace.
    pub name: String,
    /// Its spend, in $/h.
    pub spend_per_hour: f64,
    /// What one of its calls costs on average, in $.
    pub cost_per_call: f64,
}

/// A duration as the configuration writes it (`90s`, `5m`, `250ms`).
pub fn duration_text(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `n` rounded up to 1, 2 or 5 times a power of ten (a value an operator would write).
pub fn round_up_nicely(n: f64) -> f64 {
    if n <= 0.0 || !n.is_finite() {
        return 0.0;
    }
    let base = 10f64.powf(n.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * base).find(|v| *v >= n * (1.0 - 1e-9)).unwrap_or(10.0 * base)
}

/// `d` rounded up to a duration an operator would write (1s, 2s, 5s, 10s, 15s, 30s, 1m, 2m,
/// 5m, 10m, 15m, 30m, 1h, 2h, 6h, 12h, 24h; beyond, whole days).
pub fn nice_duration(d: Duration) -> Duration {
    const STEPS: [u64; 17] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21_600, 43_200, 86_400];
    let secs = d.as_secs_f64();
    let pick = STEPS.iter().find(|s| **s as f64 >= secs - 1e-9).copied();
    Duration::from_secs(pick.unwrap_or_else(|| (secs / 86_400.0).ceil() as u64 * 86_400))
}

/// Evidence `name` = `value` in `unit`.
pub fn ev(name: &str, value: f64, unit: &'static str) -> Evidence {
    Evidence { name: name.to_string(), value, unit }
}
