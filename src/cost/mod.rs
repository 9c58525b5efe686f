//! Cost and budgets (docs/operations.md "Cost and budgets"): what each call answered by an
//! upstream costs in dollars ([`price`]: the configured `price` of the upstream or tool, and
//! the cost the upstream reports in the result's `_meta`), counted per upstream, tool and
//! caller (`sekisho_cost_dollars_total`), and summed over the trailing hour ([`window`]) per
//! budget (`[budgets]`: gateway-wide, per caller, per tenant) for the `cost` step
//! (`crate::pipeline::budget`) and the monitor.
//!
//! Only calls that reach an upstream cost anything: cache hits, coalesced joiners and
//! idempotent replays are answered above the `cost` step and are neither charged nor refused.
//! Budgets are per replica: each replica sums the calls it served (a fleet of N replicas with
//! a gateway budget of $B/h may spend up to N × B; give each replica B / N).

pub mod config;
pub mod price;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

pub use self::config::{Action, BudgetConfig, BudgetsConfig, Price};
use self::price::{Rate, Reported};
use self::window::{NANOS_PER_DOLLAR, Window, nanos};
use crate::observe::metrics::{METRICS, Name};
use crate::pipeline::parts::Principal;

/// The prices of one upstream: its own, and its tools' merged over it.
#[derive(Debug, Default)]
struct Rates {
    upstream: Option<Rate>,
    tools: HashMap<Box<str>, Rate>,
}

/// One budget and its trailing hour.
pub struct Budget {
    /// `gateway`, `caller:<id>` or `tenant:<name>`.
    pub name: Arc<str>,
    /// Dollars per trailing hour.
    pub per_hour: f64,
    /// `per_hour` in nanodollars.
    limit: u64,
    /// Share of `per_hour` above which its alert fires.
    pub alert_at: f64,
    /// What happens at 100 %.
    pub action: Action,
    window: Window,
}

impl Budget {
    fn new(name: String, c: &BudgetConfig) -> Budget {
        let name: Arc<str> = Arc::from(name);
        Budget {
            name,
            per_hour: c.per_hour,
            limit: nanos(c.per_hour),
            alert_at: c.alert_at,
            action: c.action,
            window: Window::default(),
        }
    }

    /// Whether the trailing hour's spending at `minute` has reached `per_hour`.
    pub fn spent_at(&self, minute: u64) -> bool {
        self.window.spent(minute) >= self.limit
    }
}

/// What an upstream answered, for the charge of its call.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    /// From the `cost` step to the answer.
    pub elapsed: Duration,
    /// Bytes of the answer's `result` or `error`.
    pub bytes: usize,
    /// The `result` bytes (where a `_meta` cost is read); `None` for an error.
    pub result: Option<&'a [u8]>,
}

/// A budget's state, as the monitor samples show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetUse {
    /// `gateway`, `caller:<id>` or `tenant:<name>`.
    pub name: Arc<str>,
    /// The budget, dollars per hour.
    pub per_hour: f64,
    /// Dollars spent over the trailing hour.
    pub spent: f64,
    /// `spent / per_hour` (1 and above: spent; the action applies).
    pub used: f64,
    /// Share at which its alert fires.
    pub alert_at: f64,
    /// What happens at 100 %: `alert`, `shed-low`, `fallback`, `deny`.
    pub action: Action,
}

/// Prices and budgets, built once from the configuration.
pub struct Cost {
    rates: HashMap<Box<str>, Rates>,
    gateway: Option<Budget>,
    callers: HashMap<Box<str>, Budget>,
    tenants: HashMap<Box<str>, Budget>,
    epoch: Instant,
}

impl Cost {
    /// The prices of `upstreams` (namespace, configuration) and the `budgets`; `None` when
    /// nothing is priced and no budget is set (the `cost` step is then absent).
    pub fn new<'a>(
        upstreams: impl Iterator<Item = (&'a String, &'a crate::upstream::config::UpstreamConfig)>,
        budgets: &BudgetsConfig,
    ) -> Option<Cost> {
        let mut rates = HashMap::new();
        for (name, up) in upstreams {
            let base = up.price.as_ref();
            let tools: HashMap<Box<str>, Rate> = up
                .tools
                .iter()
                .filter_map(|(t, c)| Some((Box::from(t.as_str()), Rate::of(base, Some(c.price.as_ref()?))?)))
                .collect();
            if base.is_some() || !tools.is_empty() {
                rates.insert(Box::from(name.as_str()), Rates { upstream: Rate::of(base, None), tools });
            }
        }
        if rates.is_empty() && !budgets.any() {
            return None;
        }
        let named = |prefix: &str, map: &std::collections::BTreeMap<String, BudgetConfig>| {
            map.iter().map(|(k, c)| (Box::from(k.as_str()), Budget::new(format!("{prefix}:{k}"), c))).collect()
        };
        Some(Cost {
            rates,
            gateway: budgets.gateway.as_ref().map(|c| Budget::new("gateway".into(), c)),
            callers: named("caller", &budgets.callers),
            tenants: named("tenant", &budgets.tenants),
            epoch: Instant::now(),
        })
    }

    /// The rate of a call to `upstream`, of tool `tool` (`None` for methods without a tool):
    /// the tool's merged price, else the upstream's; `None` when it is free.
    pub fn rate(&self, upstream: &str, tool: Option<&str>) -> Option<&Rate> {
        let r = self.rates.get(upstream)?;
        tool.and_then(|t| r.tools.get(t)).or(r.upstream.as_ref())
    }

    /// Minutes since this was built, on tokio's clock (paused time in tests).
    pub fn minute(&self) -> u64 {
        self.epoch.elapsed().as_secs() / 60
    }

    /// The budgets `caller`'s calls count against whose trailing hour is spent, in the
    /// order gateway, caller, tenant.
    pub fn spent_budgets<'a>(&'a self, caller: &'a Principal) -> impl Iterator<Item = &'a Budget> + 'a {
        let minute = self.minute();
        self.budgets_of(caller).filter(move |b| b.spent_at(minute))
    }

    fn budgets_of<'a>(&'a self, caller: &'a Principal) -> impl Iterator<Item = &'a Budget> + 'a {
        let (own, tenant) = match caller {
            Principal::Anonymous => (self.callers.get(crate::pipeline::parts::ANONYMOUS), None),
            Principal::ApiKey(id) => {
                (self.callers.get(&*id.id), id.tenant.as_deref().and_then(|t| self.tenants.get(t)))
            }
        };
        self.gateway.iter().chain(own).chain(tenant)
    }

    /// Charge a call of `caller` to `tool` (the metric label: the tool, or the method) that
    /// `upstream` answered at `rate`: count the dollars and add them to the caller's budgets.
    /// Returns the dollars charged.
    pub fn charge(&self, rate: &Rate, upstream: &Arc<str>, tool: Name, caller: &Principal, answer: Answer<'_>) -> f64 {
        let mut dollars = rate.fixed(answer.elapsed, answer.bytes);
        if let (Some(key), Some(body)) = (rate.meta_key.as_deref(), answer.result) {
            match price::reported(body, key) {
                Reported::Dollars(d) => dollars += d,
                Reported::Invalid => METRICS.cost.meta_invalid(METRICS.upstream_name(upstream)),
                Reported::Absent => {}
            }
        }
        let n = nanos(dollars);
        if n == 0 {
            return 0.0;
        }
        let who = match caller {
            Principal::Anonymous => Name::Static(crate::pipeline::parts::ANONYMOUS),
            Principal::ApiKey(identity) => Name::Shared(Arc::clone(&identity.id)),
        };
        METRICS.cost.spent(METRICS.upstream_name(upstream), tool, who, dollars);
        let minute = self.minute();
        for b in self.budgets_of(caller) {
            b.window.add(minute, n);
        }
        dollars
    }

    /// Every budget's state now (configured budgets only: bounded by the configuration).
    pub fn usage(&self) -> Vec<BudgetUse> {
        let minute = self.minute();
        let all = self.gateway.iter().chain(self.callers.values()).chain(self.tenants.values());
        let mut out: Vec<BudgetUse> = all
            .map(|b| {
                let spent = b.window.spent(minute) as f64 / NANOS_PER_DOLLAR;
                BudgetUse {
                    name: Arc::clone(&b.name),
                    per_hour: b.per_hour,
                    spent,
                    used: spent / b.per_hour,
                    alert_at: b.alert_at,
                    action: b.action,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests;
