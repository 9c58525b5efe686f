//! Spend near the budget while an upstream that costs the most has a cheaper fallback. Cost
//! accounting (prices, budgets) is built apart; this rule reads a `CostView` of it, `None`
//! until it exists, so hooking it up is one line in `crate::front::recommend`.

use super::model::{Category, Effort, Input, Priority, Recommendation, Thresholds, ev};

/// The rule: with spend at `spend_share` of the budget or more, each upstream with spend
/// whose configured `fallback` costs less per call.
pub fn rules(input: &Input<'_>, t: &Thresholds) -> Vec<Recommendation> {
    let Some(cost) = input.cost else { return Vec::new() };
    if cost.budget_per_hour <= 0.0 || cost.spend_per_hour < t.spend_share * cost.budget_per_hour {
        return Vec::new();
    }
    let share = cost.spend_per_hour / cost.budget_per_hour;
    let mut out = Vec::new();
    for up in cost.upstreams.iter().filter(|u| u.spend_per_hour > 0.0) {
        let Some(fallback) = input.config.upstreams.get(&up.name).and_then(|c| c.fallback.as_deref()) else { continue };
        let Some(cheaper) = cost.upstreams.iter().find(|u| u.name == fallback && u.cost_per_call < up.cost_per_call)
        else {
            continue;
        };
        let saved = up.spend_per_hour * (1.0 - cheaper.cost_per_call / up.cost_per_call);
        out.push(Recommendation {
            id: format!("budget-fallback:{}", up.name),
            rule: "budget-fallback",
            category: Category::Cost,
            priority: if share >= 1.0 { Priority::Critical } else { Priority::High },
            title: format!("Spend is at {:.0} % of the budget; {} has a cheaper fallback", share * 100.0, up.name),
            description: format!(
                "The gateway spends ${:.2}/h of its ${:.2}/h budget. {} costs ${:.2}/h at ${:.4} a call; its \
                 fallback {fallback} costs ${:.4} a call.",
                cost.spend_per_hour,
                cost.budget_per_hour,
                up.name,
                up.spend_per_hour,
                up.cost_per_call,
                cheaper.cost_per_call
            ),
            impact: "At 100 % of the budget its action applies (alert, shed-low, fallback or deny).".into(),
            implementation_effort: Effort::Medium,
            estimated_improvement: format!("About ${saved:.2}/h less with {}'s calls on {fallback}.", up.name),
            action_items: vec![
                format!("Check that {fallback} answers {}'s tools well enough.", up.name),
                "Set the budget's action to fallback, so calls move to the fallback before the budget runs out.".into(),
            ],
            evidence: vec![
                ev("spend", cost.spend_per_hour, "$/h"),
                ev("budget", cost.budget_per_hour, "$/h"),
                ev("spend_share", share, "ratio"),
                ev("cost_per_call", up.cost_per_call, "$"),
                ev("fallback_cost_per_call", cheaper.cost_per_call, "$"),
            ],
            config_patch: Vec::new(),
        });
    }
    out
}
