//! Recommendations: what the monitor's history (the samples of a period) and the running
//! configuration say should change, each backed by the numbers that triggered it and, where
//! a configuration change removes the cause, the change as TOML key paths and values.
//!
//! [`model`] holds what the rules make and read. One module per rule family, each a pure
//! function of an [`Input`] and the [`Thresholds`]:
//! [`cache`] (repeated calls to uncached read-only tools, TTL expiry), [`capacity`] (queuing
//! at a concurrency cap, idle warm processes), [`timeouts`] (too tight, far above p99),
//! [`stability`] (flapping breakers, exhausted retry budgets), [`unused`] (upstreams nobody
//! calls), [`cost`] (spend near the budget with a cheaper fallback), [`security`] (findings in
//! the configuration; [`secrets`] reads the file for secrets written inline). [`patch`] turns
//! the changes into TOML and applies them to a copy of a file; [`live`] gathers what the rules
//! read from a running gateway. Served by `crate::front::recommend` at
//! `GET /admin/recommendations`; thresholds and rules are documented in docs/operations.md.

pub mod cache;
pub mod capacity;
pub mod cost;
pub mod live;
pub mod model;
pub mod patch;
pub mod period;
pub mod secrets;
pub mod security;
pub mod stability;
pub mod timeouts;
pub mod unused;

pub use self::live::{ReplicaLive, UpstreamLive};
pub use self::model::{
    Category, CostView, Effort, Evidence, Input, Priority, Recommendation, Thresholds, UpstreamCost, duration_text, ev,
    nice_duration, round_up_nicely,
};
pub use self::patch::Change;
use crate::config::Config;

/// What the rules read of the configuration in force, kept by the running gateway.
pub struct Running {
    /// The configuration.
    pub config: Config,
    /// Key paths of secrets written inline in its file, read once at start.
    pub inline_secrets: Vec<String>,
}

impl Running {
    /// Keep `config` and scan its file (when it came from one) for inline secrets.
    pub fn new(config: &Config) -> Running {
        let inline_secrets = config.source.as_deref().map(secrets::inline_secrets_in).unwrap_or_default();
        Running { config: config.clone(), inline_secrets }
    }
}

/// Every rule's recommendations for `input`, most urgent first (then by id).
pub fn recommend(input: &Input<'_>, t: &Thresholds) -> Vec<Recommendation> {
    let totals = period::Totals::of(input.samples);
    let mut out = Vec::new();
    out.extend(cache::uncached_repeats(input, &totals, t));
    out.extend(cache::ttl_expiry(input, &totals, t));
    out.extend(capacity::queuing(input, &totals, t));
    out.extend(capacity::idle_warm(input));
    out.extend(timeouts::rules(input, &totals, t));
    out.extend(stability::flapping(input, &totals, t));
    out.extend(stability::retry_budget(input, &totals, t));
    out.extend(unused::rules(input));
    out.extend(cost::rules(input, t));
    out.extend(security::rules(input));
    out.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.id.cmp(&b.id)));
    out
}

#[cfg(test)]
mod tests;
