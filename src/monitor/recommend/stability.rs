//! Stability rules: a breaker that keeps opening (flapping), and a retry budget that ran out.
//! A per-upstream `breaker` or `retry` table replaces `[resilience]`'s whole, so their patches
//! write every field of the table with the values in force, one changed.

use std::time::Duration;

use super::model::{Category, Effort, Input, Priority, Recommendation, Thresholds, duration_text, ev};
use super::patch::Change;
use super::period::Totals;
use crate::upstream::breaker::BreakerConfig;
use crate::upstream::retry::RetryConfig;

/// The longest `open_for` proposed.
const MAX_OPEN_FOR: Duration = Duration::from_secs(600);

/// An upstream whose breakers opened at least `flap_opens` times in the period. Patch: when its
/// error rate is under half the breaker's `error_rate` (short bursts trip it), twice the
/// `consecutive_failures`; else twice the `open_for` (rounded, at most 10 min), so it probes
/// less often.
pub fn flapping(input: &Input<'_>, totals: &Totals, t: &Thresholds) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for (name, u) in totals.upstreams.iter().filter(|(_, u)| u.breaker_opens >= t.flap_opens) {
        let Some(config) = input.config.upstreams.get(name.as_ref()) else { continue };
        let b = &config.settings.breaker;
        let error_rate = if u.calls == 0 { 0.0 } else { u.errors as f64 / u.calls as f64 };
        let mut new = b.clone();
        let change = if error_rate < b.error_rate / 2.0 {
            new.consecutive_failures = b.consecutive_failures.saturating_mul(2).max(2);
            format!("consecutive_failures = {} (from {})", new.consecutive_failures, b.consecutive_failures)
        } else {
            let longer = super::model::nice_duration(b.open_for * 2);
            new.open_for = longer.min(MAX_OPEN_FOR).max(b.open_for);
            format!("open_for = \"{}\" (from {})", duration_text(new.open_for), duration_text(b.open_for))
        };
        let mut actions = vec![
            format!("Find why {name} fails in bursts (its logs; `sekisho test`)."),
            format!("Set {change} under [upstreams.{name}.breaker] (the patch)."),
        ];
        if config.fallback.is_none() {
            actions.push(format!("Give {name} a fallback upstream to serve its calls while the breaker is open."));
        }
        out.push(Recommendation {
            id: format!("breaker-flapping:{name}"),
            rule: "breaker-flapping",
            category: Category::Reliability,
            priority: Priority::High,
            title: format!("{name}'s breaker is flapping: it opened {} times", u.breaker_opens),
            description: format!(
                "In the last {}, {name}'s circuit breaker opened {} times over {} calls ({:.1} % failed).",
                duration_text(input.period),
                u.breaker_opens,
                u.calls,
                error_rate * 100.0
            ),
            impact:
                "Each opening fails every call to it for open_for; each early close lets a burst of failures through."
                    .into(),
            implementation_effort: Effort::Medium,
            estimated_improvement: "Fewer openings; callers see steady answers or steady fast failures.".into(),
            action_items: actions,
            evidence: vec![
                ev("breaker_opens", u.breaker_opens as f64, "count"),
                ev("calls", u.calls as f64, "calls"),
                ev("error_rate", error_rate, "ratio"),
                ev("period", input.period.as_secs_f64(), "s"),
            ],
            config_patch: breaker_patch(name, &new),
        });
    }
    out
}

fn breaker_patch(name: &str, b: &BreakerConfig) -> Vec<Change> {
    let at = |key: &'static str| ["upstreams", name, "breaker", key];
    vec![
        Change::set(&at("enabled"), b.enabled),
        Change::set(&at("consecutive_failures"), b.consecutive_failures),
        Change::set(&at("error_rate"), b.error_rate),
        Change::set(&at("window"), duration_text(b.window)),
        Change::set(&at("min_calls"), b.min_calls),
        Change::set(&at("open_for"), duration_text(b.open_for)),
        Change::set(&at("half_open_probes"), b.half_open_probes),
    ]
}

fn retry_patch(name: &str, r: &RetryConfig) -> Vec<Change> {
    let at = |key: &'static str| ["upstreams", name, "retry", key];
    vec![
        Change::set(&at("enabled"), r.enabled),
        Change::set(&at("max_attempts"), r.max_attempts),
        Change::set(&at("base_delay"), duration_text(r.base_delay)),
        Change::set(&at("max_delay"), duration_text(r.max_delay)),
        Change::set(&at("budget_percent"), r.budget_percent),
        Change::set(&at("budget_floor_per_second"), r.budget_floor_per_second),
    ]
}

/// An upstream whose retry budget refused at least `min_budget_exhausted` retries. With an
/// error rate under 10 % (failures are rare but bunched) the patch doubles `budget_percent`
/// (at most 50); with more failures the budget is doing its job and there is no patch.
pub fn retry_budget(input: &Input<'_>, totals: &Totals, t: &Thresholds) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for (name, u) in totals.upstreams.iter().filter(|(_, u)| u.retry_budget_exhausted >= t.min_budget_exhausted) {
        let Some(config) = input.config.upstreams.get(name.as_ref()) else { continue };
        let r = &config.settings.retry;
        let error_rate = if u.calls == 0 { 0.0 } else { u.errors as f64 / u.calls as f64 };
        let raise = error_rate < 0.1 && r.budget_percent < 50;
        let mut new = r.clone();
        new.budget_percent = (r.budget_percent.max(5) * 2).min(50);
        let mut actions =
            vec![format!("Find why {name}'s calls fail ({:.1} % of them in the period).", error_rate * 100.0)];
        if raise {
            actions.push(format!(
                "Set budget_percent = {} under [upstreams.{name}.retry] (the patch).",
                new.budget_percent
            ));
        } else {
            actions.push("Leave the budget: it keeps retries from piling onto a failing upstream.".into());
        }
        if config.fallback.is_none() {
            actions.push(format!("Give {name} a fallback upstream."));
        }
        out.push(Recommendation {
            id: format!("retry-budget:{name}"),
            rule: "retry-budget",
            category: Category::Reliability,
            priority: Priority::High,
            title: format!("{name}'s retry budget ran out: {} retries refused", u.retry_budget_exhausted),
            description: format!(
                "In the last {}, {} retries of calls to {name} were refused by its retry budget \
                 ({}% of calls plus {}/s); {:.1} % of its {} calls failed.",
                duration_text(input.period),
                u.retry_budget_exhausted,
                r.budget_percent,
                r.budget_floor_per_second,
                error_rate * 100.0,
                u.calls
            ),
            impact: "Calls that a retry could have saved failed.".into(),
            implementation_effort: if raise { Effort::Low } else { Effort::High },
            estimated_improvement: if raise {
                format!("Up to twice the retries ({}% of calls) while failures stay rare.", new.budget_percent)
            } else {
                "Fewer failed calls once the upstream's failures are fixed.".into()
            },
            action_items: actions,
            evidence: vec![
                ev("retries_refused", u.retry_budget_exhausted as f64, "count"),
                ev("calls", u.calls as f64, "calls"),
                ev("error_rate", error_rate, "ratio"),
                ev("budget_percent", f64::from(r.budget_percent), "count"),
            ],
            config_patch: if raise { retry_patch(name, &new) } else { Vec::new() },
        });
    }
    out
}
