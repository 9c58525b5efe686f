//! Timeout rules: an upstream's `timeout` too tight for its latency (timeouts fire, or the
//! typical interval's p99 is over `tight_share` of it), or far above it (over `far_factor` ×
//! the highest interval p99, over at least `min_timeout_calls` calls). Patch: `timeout` ≈ 3 ×
//! p99, rounded up to a round duration, at least [`FLOOR`] (and at least twice the old one when
//! it was too tight).

use std::time::Duration;

use super::model::{Category, Effort, Input, Priority, Recommendation, Thresholds, duration_text, ev};
use super::patch::Change;
use super::period::{Totals, UpstreamTotals};

/// The shortest timeout proposed: below it a pause of the upstream's host fails calls.
pub const FLOOR: Duration = Duration::from_secs(1);

/// The proposed timeout for a p99 of `p99_ms`.
pub fn proposed(p99_ms: f64) -> Duration {
    super::model::nice_duration(Duration::from_secs_f64(p99_ms.max(0.0) * 3.0 / 1000.0)).max(FLOOR)
}

/// Every upstream's timeout checked against its latency.
pub fn rules(input: &Input<'_>, totals: &Totals, t: &Thresholds) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for (name, u) in &totals.upstreams {
        let Some(config) = input.config.upstreams.get(name.as_ref()) else { continue };
        let timeout = config.settings.timeout;
        if let Some(r) = tight(input, name, u, timeout, t) {
            out.push(r);
        } else if let Some(r) = far(input, name, u, timeout, t) {
            out.push(r);
        }
    }
    out
}

fn tight(
    input: &Input<'_>,
    name: &str,
    u: &UpstreamTotals,
    timeout: Duration,
    t: &Thresholds,
) -> Option<Recommendation> {
    let timeout_ms = timeout.as_secs_f64() * 1000.0;
    let typical = u.p99_ms_typical()?;
    let firing = u.timeouts >= t.min_timeouts && u.timeouts * 100 >= u.calls;
    if !firing && typical <= t.tight_share * timeout_ms {
        return None;
    }
    let p99 = u.p99_ms_max.unwrap_or(typical).max(typical);
    let longer = proposed(p99).max(super::model::nice_duration(timeout * 2));
    let seen = if firing {
        format!("{} of its {} calls timed out", u.timeouts, u.calls)
    } else {
        format!("its p99 latency ({typical:.0} ms) is {:.0} % of it", typical / timeout_ms * 100.0)
    };
    Some(Recommendation {
        id: format!("timeout-tight:{name}"),
        rule: "timeout-tight",
        category: Category::Reliability,
        priority: if firing { Priority::High } else { Priority::Medium },
        title: format!("{name}'s timeout of {} is too tight: {seen}", duration_text(timeout)),
        description: format!(
            "In the last {}, {seen}; the highest interval p99 was {p99:.0} ms against a timeout of {}.",
            duration_text(input.period),
            duration_text(timeout)
        ),
        impact: "Calls that would have succeeded fail as timeouts (and their work upstream is cancelled).".into(),
        implementation_effort: Effort::Low,
        estimated_improvement: format!("Calls up to {} finish instead of timing out.", duration_text(longer)),
        action_items: vec![
            format!("Check whether {name} is slow by nature or slowed down (its own metrics)."),
            format!(
                "Set timeout = \"{}\" under [upstreams.{name}] (the patch); per-tool timeouts override it.",
                duration_text(longer)
            ),
        ],
        evidence: evidence(input, u, typical, p99, timeout),
        config_patch: vec![Change::set(&["upstreams", name, "timeout"], duration_text(longer))],
    })
}

fn far(input: &Input<'_>, name: &str, u: &UpstreamTotals, timeout: Duration, t: &Thresholds) -> Option<Recommendation> {
    let p99 = u.p99_ms_max?;
    let timeout_ms = timeout.as_secs_f64() * 1000.0;
    let shorter = proposed(p99);
    if u.calls < t.min_timeout_calls || timeout_ms <= t.far_factor * p99 || shorter * 2 > timeout {
        return None;
    }
    let typical = u.p99_ms_typical().unwrap_or(p99);
    Some(Recommendation {
        id: format!("timeout-far:{name}"),
        rule: "timeout-far",
        category: Category::Reliability,
        priority: Priority::Low,
        title: format!("{name}'s timeout of {} is {:.0}× its p99", duration_text(timeout), timeout_ms / p99),
        description: format!(
            "Over {} calls in the last {}, {name}'s highest interval p99 was {p99:.1} ms; its timeout is {}.",
            u.calls,
            duration_text(input.period),
            duration_text(timeout)
        ),
        impact: format!(
            "A hung call holds a slot, a connection and the caller for up to {} before it fails.",
            duration_text(timeout)
        ),
        implementation_effort: Effort::Low,
        estimated_improvement: format!(
            "Hung calls fail after {} instead of {}.",
            duration_text(shorter),
            duration_text(timeout)
        ),
        action_items: vec![
            format!("Check that no tool of {name} is legitimately slow (give it a per-tool timeout)."),
            format!("Set timeout = \"{}\" under [upstreams.{name}] (the patch).", duration_text(shorter)),
        ],
        evidence: evidence(input, u, typical, p99, timeout),
        config_patch: vec![Change::set(&["upstreams", name, "timeout"], duration_text(shorter))],
    })
}

fn evidence(
    input: &Input<'_>,
    u: &UpstreamTotals,
    typical: f64,
    p99: f64,
    timeout: Duration,
) -> Vec<super::model::Evidence> {
    vec![
        ev("calls", u.calls as f64, "calls"),
        ev("timeouts", u.timeouts as f64, "calls"),
        ev("p99_ms", typical, "ms"),
        ev("p99_ms_max", p99, "ms"),
        ev("timeout_ms", timeout.as_secs_f64() * 1000.0, "ms"),
        ev("period", input.period.as_secs_f64(), "s"),
    ]
}
