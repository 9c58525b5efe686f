//! An upstream nobody called over the whole period (the monitor saw no call to it, cache hits
//! included, and no replica started one), once the monitor has watched the whole period.
//! Fallback upstreams are left out: they serve only while another is down. Patch:
//! `enabled = false`.

use super::model::{Category, Effort, Input, Priority, Recommendation, duration_text, ev};
use super::patch::Change;

/// The rule.
pub fn rules(input: &Input<'_>) -> Vec<Recommendation> {
    if !input.covers_period() {
        return Vec::new();
    }
    let period_ms = input.period.as_millis() as u64;
    let fallbacks: Vec<&str> = input.config.enabled_upstreams().filter_map(|(_, u)| u.fallback.as_deref()).collect();
    let mut out = Vec::new();
    for up in input.upstreams {
        let name = up.name.as_ref();
        if !input.config.upstreams.get(name).is_some_and(|c| c.enabled) || fallbacks.contains(&name) {
            continue;
        }
        let recent = up.last_call_ms.is_some_and(|t| t + period_ms > input.now_ms);
        let started = up.replicas.iter().any(|r| r.idle_for < input.period);
        if recent || (started && !up.per_client) {
            continue;
        }
        let rss: u64 = input
            .samples
            .last()
            .map(|s| s.children.iter().filter(|p| p.name.as_ref() == name).map(|p| p.rss_bytes).sum())
            .unwrap_or(0);
        let mut evidence = vec![ev("calls", 0.0, "calls"), ev("period", input.period.as_secs_f64(), "s")];
        if up.stdio {
            evidence.push(ev("processes", up.replicas.len() as f64, "processes"));
        }
        if rss > 0 {
            evidence.push(ev("rss", rss as f64, "bytes"));
        }
        out.push(Recommendation {
            id: format!("unused-upstream:{name}"),
            rule: "unused-upstream",
            category: Category::Cost,
            priority: Priority::Low,
            title: format!("Nobody called {name} in the last {}", duration_text(input.period)),
            description: format!(
                "No call reached {name} (cache hits included) in the last {}, yet it is started, probed and listed.",
                duration_text(input.period)
            ),
            impact: format!(
                "Its {} and its tools in every client's list cost{} for nothing.",
                if up.stdio { "processes" } else { "connections" },
                if rss > 0 { format!(" {} MiB of memory,", rss >> 20) } else { String::new() }
            ),
            implementation_effort: Effort::Low,
            estimated_improvement: format!(
                "One upstream fewer to run and list{}.",
                if rss > 0 { format!("; {} MiB freed", rss >> 20) } else { String::new() }
            ),
            action_items: vec![
                format!("Check that no client needs {name} at other times of day (look at a longer period)."),
                format!("Set enabled = false under [upstreams.{name}] (the patch), or remove it."),
            ],
            evidence,
            config_patch: vec![Change::set(&["upstreams", name, "enabled"], false)],
        });
    }
    out
}
