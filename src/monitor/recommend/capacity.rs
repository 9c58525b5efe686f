//! Capacity rules: calls queuing at a concurrency cap (an upstream's bulkhead, the
//! gateway-wide admission limit), and warm processes that took no call over the period.

use super::model::{Category, Effort, Input, Priority, Recommendation, Thresholds, duration_text, ev};
use super::patch::Change;
use super::period::Totals;

/// An upstream's bulkhead (or the admission limit) where at least `min_waited` calls waited
/// for a slot. Patch: its `max_concurrent` raised by the longest queue seen, rounded up to 1, 2
/// or 5 × 10ⁿ.
pub fn queuing(input: &Input<'_>, totals: &Totals, t: &Thresholds) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for (name, u) in &totals.upstreams {
        if u.waited < t.min_waited || u.max_concurrent == 0 || !input.config.upstreams.contains_key(name.as_ref()) {
            continue;
        }
        let share = if u.calls == 0 { 1.0 } else { (u.waited as f64 / u.calls as f64).min(1.0) };
        let raised = super::model::round_up_nicely((u.max_concurrent + u.peak_queued.max(1)) as f64) as u64;
        let stdio = input.config.upstreams.get(name.as_ref()).is_some_and(|c| c.command.is_some());
        let mut actions = vec![
            format!("Check that {name} can take {raised} calls at once (its own limits, its rate limits)."),
            format!("Set max_concurrent = {raised} under [upstreams.{name}] (the patch)."),
        ];
        if stdio {
            actions
                .push(format!("For a stdio pool, also consider max_processes and grow_at under [upstreams.{name}]."));
        }
        out.push(queued(
            format!("queuing:{name}"),
            format!("{name}'s bulkhead"),
            (u.waited, u.calls, share, u.peak_queued, u.max_concurrent, raised),
            input,
            actions,
            vec![Change::set(&["upstreams", name.as_ref(), "max_concurrent"], raised)],
        ));
    }
    if totals.admission_waited >= t.min_waited && totals.admission_max > 0 {
        let share =
            if totals.calls == 0 { 1.0 } else { (totals.admission_waited as f64 / totals.calls as f64).min(1.0) };
        let raised = super::model::round_up_nicely((totals.admission_max + totals.admission_peak.max(1)) as f64) as u64;
        out.push(queued(
            "queuing:gateway".into(),
            "the gateway's admission limit".into(),
            (totals.admission_waited, totals.calls, share, totals.admission_peak, totals.admission_max, raised),
            input,
            vec![
                "Check the gateway's CPU and memory headroom in /admin/monitor.".into(),
                format!("Set [admission] max_concurrent = {raised} (the patch)."),
            ],
            vec![Change::set(&["admission", "max_concurrent"], raised)],
        ));
    }
    out
}

fn queued(
    id: String,
    what: String,
    (waited, calls, share, peak, cap, raised): (u64, u64, f64, u64, u64, u64),
    input: &Input<'_>,
    action_items: Vec<String>,
    config_patch: Vec<Change>,
) -> Recommendation {
    Recommendation {
        id,
        rule: "queuing",
        category: Category::Performance,
        priority: if share >= 0.25 { Priority::High } else { Priority::Medium },
        title: format!("Raise {what}: {waited} calls waited for a slot"),
        description: format!(
            "In the last {}, {waited} of {calls} calls ({:.0} %) found all {cap} slots of {what} taken and \
             waited; the queue held up to {peak} calls.",
            duration_text(input.period),
            share * 100.0
        ),
        impact: "Queued calls wait before they start, and past the queue's size or wait limit they are shed.".into(),
        implementation_effort: Effort::Low,
        estimated_improvement: format!("No queue at the load seen, with {raised} slots instead of {cap}."),
        action_items,
        evidence: vec![
            ev("waited", waited as f64, "calls"),
            ev("calls", calls as f64, "calls"),
            ev("peak_queued", peak as f64, "calls"),
            ev("max_concurrent", cap as f64, "calls"),
        ],
        config_patch,
    }
}

/// A stdio upstream's warm processes (those `min_processes` keeps) of which some took no call
/// over the whole period. Patch: `min_processes` = the processes that did take calls (at least
/// 1), `max_processes` kept as it is. Upstreams nobody called are left to [`super::unused`].
pub fn idle_warm(input: &Input<'_>) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for up in input.upstreams.iter().filter(|u| u.stdio && !u.per_client) {
        let Some(config) = input.config.upstreams.get(up.name.as_ref()) else { continue };
        let (min, max) = (config.settings.min_processes, config.settings.max_processes);
        let idle: Vec<_> = up.replicas.iter().filter(|r| r.idle_for >= input.period).collect();
        let busy = up.replicas.len() - idle.len();
        if min <= 1 || idle.is_empty() || busy == 0 {
            continue;
        }
        let lower = busy.max(1);
        if lower >= min {
            continue;
        }
        let rss: u64 = input
            .samples
            .last()
            .map(|s| {
                s.children
                    .iter()
                    .filter(|p| idle.iter().any(|r| r.pid.is_some() && r.pid == p.pid))
                    .map(|p| p.rss_bytes)
                    .sum()
            })
            .unwrap_or(0);
        let name = up.name.as_ref();
        let mut evidence = vec![
            ev("processes", up.replicas.len() as f64, "processes"),
            ev("idle_processes", idle.len() as f64, "processes"),
            ev("min_processes", min as f64, "processes"),
        ];
        if rss > 0 {
            evidence.push(ev("idle_rss", rss as f64, "bytes"));
        }
        out.push(Recommendation {
            id: format!("idle-warm:{name}"),
            rule: "idle-warm",
            category: Category::Cost,
            priority: Priority::Low,
            title: format!("Fewer warm processes for {name}: {} of {} took no call", idle.len(), up.replicas.len()),
            description: format!(
                "{name} keeps {min} processes running (min_processes), but {} of them took no call in the last {}.",
                idle.len(),
                duration_text(input.period)
            ),
            impact: format!(
                "Idle processes hold memory{} and restart work for nothing.",
                if rss > 0 { format!(" ({} MiB)", rss >> 20) } else { String::new() }
            ),
            implementation_effort: Effort::Low,
            estimated_improvement: format!(
                "{} fewer processes at rest; the pool still grows to {max} under load.",
                min - lower
            ),
            action_items: vec![format!(
                "Set min_processes = {lower} (and max_processes = {max}) under [upstreams.{name}] (the patch)."
            )],
            evidence,
            config_patch: vec![
                Change::set(&["upstreams", name, "min_processes"], lower as u64),
                Change::set(&["upstreams", name, "max_processes"], max as u64),
            ],
        });
    }
    out
}
