//! Prices (`[upstreams.<namespace>.price]`, `[upstreams.<namespace>.tools.<tool>.price]`) and
//! budgets (`[budgets]`): what a call costs in dollars and how much may be spent per hour.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The largest price (and the largest cost an upstream may report per call), in dollars: a
/// value above it is a typo or hostile.
pub const MAX_PRICE: f64 = 1_000_000.0;

/// The most budgets (`gateway`, callers and tenants together): each is checked on a priced
/// call and shown in every monitor sample.
pub const MAX_BUDGETS: usize = 1000;

/// The longest `meta_key`, in bytes.
pub const MAX_META_KEY: usize = 128;

/// What a call to an upstream (or to one of its tools) costs, in dollars. A tool's table
/// overrides its upstream's field by field: a field the tool leaves out is the upstream's.
///
/// ```toml
/// [upstreams.search.price]
/// per_call = 0.002          # $ per call answered
/// per_second = 0.0001       # $ per second from the call leaving the cache step to its answer
/// per_kib = 0.00001         # $ per KiB of the answer's result (or error) bytes
/// meta_key = "com.example/costUsd"  # the upstream reports its own cost in result._meta
///
/// [upstreams.search.tools.deep_search.price]
/// per_call = 0.05           # this tool costs more; per_second, per_kib and meta_key as above
/// ```
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Dollars per call answered by the upstream.
    pub per_call: Option<f64>,
    /// Dollars per second of upstream time (measured by the gateway from the cost step to
    /// the answer: bulkhead wait, retries and the upstream's own time).
    pub per_second: Option<f64>,
    /// Dollars per KiB (1024 bytes) of the answer's `result` (or `error`) bytes.
    pub per_kib: Option<f64>,
    /// A key of the result's `_meta` under which the upstream reports the call's own cost in
    /// dollars (a JSON number, finite, `0 ≤ cost ≤` [`MAX_PRICE`]); anything else there is
    /// ignored and counted (`sekisho_cost_meta_invalid_total`).
    pub meta_key: Option<String>,
}

impl Price {
    /// Problems with this price, at `at` (e.g. `upstreams.search.price`).
    pub fn validate(&self, at: &str) -> Vec<String> {
        let mut p = Vec::new();
        for (field, v) in [("per_call", self.per_call), ("per_second", self.per_second), ("per_kib", self.per_kib)] {
            if let Some(v) = v
                && !(v.is_finite() && (0.0..=MAX_PRICE).contains(&v))
            {
                p.push(format!("{at}.{field} = {v} must be a number of dollars from 0 to {MAX_PRICE}"));
            }
        }
        if let Some(k) = &self.meta_key
            && (k.is_empty() || k.len() > MAX_META_KEY)
        {
            p.push(format!("{at}.meta_key must be 1 to {MAX_META_KEY} bytes"));
        }
        p
    }
}

/// What happens to a priced call while a budget it counts against is spent (100 %).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Served as usual; the budget's alert says it (the default).
    #[default]
    Alert,
    /// Served by the upstream's `fallback` upstream when it has one, else as usual.
    Fallback,
    /// Calls of priority `low` are refused (-32013, as load shedding); others are served.
    ShedLow,
    /// Refused (-32017, HTTP 429 with `Retry-After: 60`).
    Deny,
}

impl Action {
    /// Its name in configuration and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Fallback => "fallback",
            Action::ShedLow => "shed-low",
            Action::Deny => "deny",
        }
    }
}

/// One budget: dollars per trailing hour.
///
/// ```toml
/// [budgets.gateway]
/// per_hour = 25.0     # $ spent over the trailing hour, this replica's calls
/// alert_at = 0.8      # the alert fires above 80 % (the default)
/// action = "shed-low" # at 100 %: alert | shed-low | fallback | deny
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Dollars that may be spent over the trailing hour (60 one-minute buckets).
    pub per_hour: f64,
    /// Share of `per_hour` above which the budget's alert fires, `(0, 1]` (default 0.8).
    #[serde(default = "default_alert_at")]
    pub alert_at: f64,
    /// What happens to priced calls while the whole budget is spent.
    #[serde(default)]
    pub action: Action,
}

fn default_alert_at() -> f64 {
    0.8
}

/// `[budgets]`: spending limits in dollars per hour, gateway-wide and per caller or tenant.
///
/// ```toml
/// [budgets.gateway]
/// per_hour = 25.0
/// action = "shed-low"
/// [budgets.callers.ci-bot]      # an API key's id: its `name`, or `key:…` as logs show it
/// per_hour = 2.0
/// action = "deny"
/// [budgets.tenants.acme]        # a store tenant's name
/// per_hour = 10.0
/// action = "fallback"
/// ```
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// Every priced call counts against it.
    pub gateway: Option<BudgetConfig>,
    /// By caller id (`Identity::id`): the calls of that API key.
    pub callers: BTreeMap<String, BudgetConfig>,
    /// By tenant name: the calls of that tenant's store keys.
    pub tenants: BTreeMap<String, BudgetConfig>,
}

impl BudgetsConfig {
    /// Every budget with its name (`gateway`, `caller:<id>`, `tenant:<name>`).
    pub fn all(&self) -> impl Iterator<Item = (String, &BudgetConfig)> {
        let gateway = self.gateway.iter().map(|b| ("gateway".to_string(), b));
        let callers = self.callers.iter().map(|(k, b)| (format!("caller:{k}"), b));
        gateway.chain(callers).chain(self.tenants.iter().map(|(k, b)| (format!("tenant:{k}"), b)))
    }

    /// Whether any budget is configured.
    pub fn any(&self) -> bool {
        self.gateway.is_some() || !self.callers.is_empty() || !self.tenants.is_empty()
    }

    /// Problems with these settings.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        let count = self.callers.len() + self.tenants.len() + usize::from(self.gateway.is_some());
        if count > MAX_BUDGETS {
            p.push(format!("budgets: {count} budgets; at most {MAX_BUDGETS}"));
        }
        for (name, b) in self.all() {
            let at = format!("budgets.{}", name.replacen(':', "s.", 1));
            if !(b.per_hour.is_finite() && b.per_hour > 0.0 && b.per_hour <= MAX_PRICE) {
                p.push(format!(
                    "{at}.per_hour = {} must be a number of dollars above 0, at most {MAX_PRICE}",
                    b.per_hour
                ));
            }
            if !(b.alert_at.is_finite() && b.alert_at > 0.0 && b.alert_at <= 1.0) {
                p.push(format!("{at}.alert_at = {} must be above 0 and at most 1", b.alert_at));
            }
            if name.len() > 200 {
                p.push(format!("{at}: the name is longer than 200 bytes"));
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_and_nan_prices_and_bad_budgets_are_named() {
        let e = crate::config::Config::from_toml(
            "[upstreams.a]\ncommand = \"x\"\nprice = { per_call = -1.0, per_second = nan, meta_key = \"\" }\n\
             [upstreams.a.tools.t]\nprice = { per_kib = inf }\n\
             [budgets.gateway]\nper_hour = 0.0\nalert_at = 1.5\n[budgets.callers.bob]\nper_hour = -3.0\naction = \"deny\"\n",
        )
        .unwrap_err()
        .problems;
        let all = e.join("\n");
        for needle in [
            "upstreams.a.price.per_call = -1",
            "upstreams.a.price.per_second = NaN",
            "upstreams.a.price.meta_key",
            "upstreams.a.tools.t.price.per_kib = inf",
            "budgets.gateway.per_hour = 0",
            "budgets.gateway.alert_at = 1.5",
            "budgets.callers.bob.per_hour = -3",
        ] {
            assert!(all.contains(needle), "{needle:?} not in {all}");
        }
        assert_eq!(e.len(), 7, "{all}");
        let e = crate::config::Config::from_toml("[budgets.gateway]\nper_hour = 1.0\naction = \"maybe\"\n");
        assert!(e.is_err(), "unknown actions are refused");
    }

    #[test]
    fn budgets_parse_with_defaults() {
        let c = crate::config::Config::from_toml(
            "[budgets.gateway]\nper_hour = 2.5\n[budgets.tenants.acme]\nper_hour = 1\naction = \"shed-low\"\nalert_at = 0.5\n",
        )
        .unwrap()
        .budgets;
        let g = c.gateway.as_ref().unwrap();
        assert_eq!((g.per_hour, g.alert_at, g.action), (2.5, 0.8, Action::Alert));
        let names: Vec<String> = c.all().map(|(n, _)| n).collect();
        assert_eq!(names, ["gateway", "tenant:acme"]);
        assert_eq!(c.tenants["acme"].action, Action::ShedLow);
    }
}
