//! Cache rules: repeated identical calls to a read-only tool that is not cached, and a hit
//! rate held down by entries expiring.

use std::time::Duration;

use super::model::{Category, Effort, Input, Priority, Recommendation, Thresholds, duration_text, ev};
use super::patch::Change;
use super::period::Totals;

/// The longest TTL the expiry rule proposes.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// A tool that declares `readOnlyHint` but is not cached (its upstream is not `trusted`, or
/// `[cache]` is off), called again with identical arguments within 5 minutes at least
/// `min_repeats` times and in `min_repeat_share` of its uncached calls. Patch: `cache = true`
/// and `cache_ttl` = `[cache] ttl` for the tool (and `[cache] enabled = true` when off).
pub fn uncached_repeats(input: &Input<'_>, totals: &Totals, t: &Thresholds) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for ((upstream, tool), c) in &totals.tools {
        let share = if c.uncached == 0 { 0.0 } else { c.repeats as f64 / c.uncached as f64 };
        if c.repeats < t.min_repeats || share < t.min_repeat_share {
            continue;
        }
        let Some(up) = input.config.upstreams.get(upstream.as_ref()) else { continue };
        let ttl = input.config.cache.ttl;
        let mut patch = vec![
            Change::set(&["upstreams", upstream, "tools", tool, "cache"], true),
            Change::set(&["upstreams", upstream, "tools", tool, "cache_ttl"], duration_text(ttl)),
        ];
        if !input.config.cache.enabled {
            patch.insert(0, Change::set(&["cache", "enabled"], true));
        }
        let why = if !input.config.cache.enabled {
            "[cache] is off"
        } else if !up.trusted {
            "its upstream is not `trusted`, so its readOnlyHint is not believed"
        } else {
            "it is not cached by configuration"
        };
        let pct = share * 100.0;
        out.push(Recommendation {
            id: format!("uncached-repeats:{upstream}/{tool}"),
            rule: "uncached-repeats",
            category: Category::Performance,
            priority: if c.repeats >= 100 && share >= 0.5 { Priority::High } else { Priority::Medium },
            title: format!("Cache {upstream}/{tool}: {} of its calls repeated an identical call", c.repeats),
            description: format!(
                "{tool} of {upstream} declares readOnlyHint but is not cached ({why}). Of its {} calls in the \
                 last {}, {} ({pct:.0} %) had the same arguments as a call less than 5 minutes before, and \
                 each went to the upstream again.",
                c.uncached,
                duration_text(input.period),
                c.repeats
            ),
            impact: "Every repeat costs an upstream round trip, upstream capacity and, for paid APIs, money.".into(),
            implementation_effort: Effort::Low,
            estimated_improvement: format!(
                "Up to {} of {} calls ({pct:.0} %) answered from the cache within its TTL of {}.",
                c.repeats,
                c.uncached,
                duration_text(ttl)
            ),
            action_items: vec![
                format!("Check that {upstream}/{tool} really has no side effects and that results {} old are fine.", duration_text(ttl)),
                format!("Set cache = true and cache_ttl under [upstreams.{upstream}.tools.{tool}] (the patch), or trusted = true on the upstream to believe all its annotations."),
                "Watch the tool's cache hit rate in `sekisho recommendations` or /admin/monitor afterwards.".into(),
            ],
            evidence: vec![
                ev("uncached_calls", c.uncached as f64, "calls"),
                ev("repeats", c.repeats as f64, "calls"),
                ev("repeat_share", share, "ratio"),
                ev("period", input.period.as_secs_f64(), "s"),
            ],
            config_patch: patch,
        });
    }
    out
}

/// A cached tool whose misses of expired entries reach `min_expired_misses` and
/// `min_expired_share` of its lookups while its hit rate is under 80 %. Patch: `cache_ttl` ×4
/// (rounded up to a round duration, at most 24 h). Resource reads are left out (their
/// lifetime comes from the upstream's `ttlMs`).
pub fn ttl_expiry(input: &Input<'_>, totals: &Totals, t: &Thresholds) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for ((upstream, tool), c) in &totals.tools {
        let lookups = c.hits + c.misses;
        if lookups == 0 || tool.as_ref() == "resources/read" {
            continue;
        }
        let (share, hit_rate) = (c.expired_misses as f64 / lookups as f64, c.hits as f64 / lookups as f64);
        if c.expired_misses < t.min_expired_misses || share < t.min_expired_share || hit_rate >= 0.8 {
            continue;
        }
        let Some(up) = input.config.upstreams.get(upstream.as_ref()) else { continue };
        let ttl = up.tools.get(tool.as_ref()).and_then(|t| t.cache_ttl).unwrap_or(input.config.cache.ttl);
        let longer = super::model::nice_duration(ttl * 4).min(MAX_TTL);
        if longer <= ttl {
            continue;
        }
        let possible = (c.hits + c.expired_misses) as f64 / lookups as f64;
        out.push(Recommendation {
            id: format!("ttl-expiry:{upstream}/{tool}"),
            rule: "ttl-expiry",
            category: Category::Performance,
            priority: if share >= 0.5 { Priority::Medium } else { Priority::Low },
            title: format!("Longer TTL for {upstream}/{tool}: {:.0} % of its lookups found an expired entry", share * 100.0),
            description: format!(
                "Of {lookups} cache lookups of {upstream}/{tool} in the last {}, {} missed because the entry had \
                 expired (TTL {}), holding the hit rate at {:.0} %.",
                duration_text(input.period),
                c.expired_misses,
                duration_text(ttl),
                hit_rate * 100.0
            ),
            impact: "Each expired miss goes to the upstream for a result the cache had just dropped.".into(),
            implementation_effort: Effort::Low,
            estimated_improvement: format!(
                "Hit rate up to {:.0} % (from {:.0} %) if the results may be {} old.",
                possible * 100.0,
                hit_rate * 100.0,
                duration_text(longer)
            ),
            action_items: vec![
                format!("Check how long {upstream}/{tool}'s results stay valid."),
                format!("Set cache_ttl = \"{}\" under [upstreams.{upstream}.tools.{tool}] (the patch), or turn on [cache] adaptive_ttl.", duration_text(longer)),
            ],
            evidence: vec![
                ev("lookups", lookups as f64, "calls"),
                ev("expired_misses", c.expired_misses as f64, "calls"),
                ev("hit_rate", hit_rate, "ratio"),
                ev("ttl", ttl.as_secs_f64(), "s"),
            ],
            config_patch: vec![Change::set(&["upstreams", upstream, "tools", tool, "cache_ttl"], duration_text(longer))],
        });
    }
    out
}
