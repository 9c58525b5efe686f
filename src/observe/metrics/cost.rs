//! Metrics of cost and budgets (`crate::cost`): dollars spent by upstream, tool and caller,
//! upstream-reported costs that were ignored, and calls an exhausted budget acted on.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::super::bounded::BoundedNames;
use super::{Name, UpstreamName};

/// Labels of money spent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CostLabels {
    /// The upstream that answered (tenants' upstreams bounded as in every metric).
    pub upstream: Name,
    /// The tool (the upstream's own name), or the method of a call without one; past
    /// [`super::MAX_LABELED`] distinct tools, `other`.
    pub tool: Name,
    /// The caller's stable id, or `anon`; past [`super::MAX_LABELED`] distinct callers, `other`.
    pub caller: Name,
}

/// Labels of calls an exhausted budget acted on.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// The budget (`gateway`, `caller:<id>`, `tenant:<name>`; configured ones only).
    pub budget: Name,
    /// What happened to the call: `served` (action `alert`, a `shed-low` budget's call of
    /// higher priority, a `fallback` budget's call whose upstream has none), `fallback`,
    /// `shed`, `denied`.
    pub action: &'static str,
}

/// Metrics of `crate::cost`.
pub struct CostMetrics {
    dollars: Family<CostLabels, Counter<f64, AtomicU64>>,
    meta_invalid: Family<UpstreamName, Counter>,
    budget: Family<BudgetLabels, Counter>,
    tools: BoundedNames,
    callers: BoundedNames,
}

impl CostMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let dollars = Family::<CostLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "cost_dollars",
            "Dollars spent on upstream calls (configured prices and upstream-reported costs), by upstream, tool and caller",
            dollars.clone(),
        );
        let meta_invalid = Family::<UpstreamName, Counter>::default();
        registry.register(
            "cost_meta_invalid",
            "Upstream-reported costs in a result's _meta that were ignored (not a number of dollars within 0..=1e6)",
            meta_invalid.clone(),
        );
        let budget = Family::<BudgetLabels, Counter>::default();
        registry.register(
            "budget_exceeded",
            "Priced calls made while a budget was spent, by budget and what happened (served, fallback, shed, denied)",
            budget.clone(),
        );
        CostMetrics { dollars, meta_invalid, budget, tools: BoundedNames::default(), callers: BoundedNames::default() }
    }

    /// Add `dollars` spent on a call of `caller` to `tool` of `upstream`.
    pub fn spent(&self, upstream: Name, tool: Name, caller: Name, dollars: f64) {
        let other = || Name::Static("other");
        let tool = if self.tools.keeps(tool.as_str()) { tool } else { other() };
        let caller = if self.callers.keeps(caller.as_str()) { caller } else { other() };
        self.dollars.get_or_create(&CostLabels { upstream, tool, caller }).inc_by(dollars);
    }

    /// Dollars counted so far for these labels (tests and benchmarks).
    pub fn dollars(&self, upstream: &str, tool: &str, caller: &str) -> f64 {
        let l = |s: &str| Name::Shared(s.into());
        self.dollars.get_or_create(&CostLabels { upstream: l(upstream), tool: l(tool), caller: l(caller) }).get()
    }

    /// Count an upstream-reported cost of `upstream` that was ignored.
    pub fn meta_invalid(&self, upstream: Name) {
        self.meta_invalid.get_or_create(&UpstreamName { upstream }).inc();
    }

    /// Count a call `budget` (spent) acted on with `action`.
    pub fn budget(&self, budget: Name, action: &'static str) {
        self.budget.get_or_create(&BudgetLabels { budget, action }).inc();
    }
}
