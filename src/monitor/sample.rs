//! A sample: what happened between two readings ([`super::reading::Reading`]), as rates,
//! percentiles and counts of the interval, with breakdowns bounded to the top N plus `other`.
//!
//! Latency percentiles come from the deltas of the `sekisho_request_duration_seconds`
//! histogram buckets over the interval: the bucket holding the rank `q × calls` is found, and
//! the value is interpolated linearly between its lower and upper bound (the first bucket's
//! lower bound is 0; a rank in the `+Inf` bucket reads as the largest finite bound). The
//! buckets double from 100 µs, so a percentile is exact to within its bucket's width.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::exposition::Counts;
use super::reading::Reading;
use super::usage::{Queueing, ToolCalls, ToolUse};
use crate::observe::proc::{ProcStat, cpu_percent};

pub use super::usage::OTHER;

/// The `upstream` label of the calls the gateway answers itself (lists, `ping`, its own tools).
pub const GATEWAY: &str = "gateway";

/// Latency percentiles of an interval, in milliseconds (`null` without calls).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Mean, from the histogram's sum.
    pub mean_ms: Option<f64>,
    /// Median.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
}

/// Calls of one upstream or method in an interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// Upstream namespace (`gateway`: answered by the gateway) or method; `other` for the rest.
    pub name: Arc<str>,
    /// Calls finished.
    pub calls: u64,
    /// Calls failed on the gateway's or upstream's side.
    pub errors: u64,
    /// Tool results marked `isError`.
    pub tool_errors: u64,
    /// Calls that failed by their deadline (also in `errors`).
    pub timeouts: u64,
    /// Retries refused by the retry budget (upstreams only).
    pub retry_budget_exhausted: u64,
    /// 95th percentile latency, in milliseconds (`null` without calls).
    pub p95_ms: Option<f64>,
    /// 99th percentile latency, in milliseconds (`null` without calls).
    pub p99_ms: Option<f64>,
    /// Dollars per hour its calls cost over the interval (upstreams only; absent for methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_per_hour: Option<f64>,
}

/// Upstream health at the end of an interval: one upstream, or `other` summing the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Upstream namespace, or `other`.
    pub name: Arc<str>,
    /// Upstreams connected (0 or 1 for one upstream).
    pub up: u32,
    /// Upstreams not connected.
    pub down: u32,
    /// Replicas with an open breaker.
    pub breakers_open: u32,
    /// Times its breakers opened in the interval.
    pub breaker_opens: u64,
    /// Calls that waited at its bulkhead in the interval.
    pub waited: u64,
    /// The longest its bulkhead queue was in the interval.
    pub peak_queued: u64,
    /// Its bulkhead's `max_concurrent` (0 without one; the largest for `other`).
    pub max_concurrent: u64,
}

/// Memory and CPU of a process over an interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// The upstream a child serves; `gateway` for the gateway; `other` for the rest.
    pub name: Arc<str>,
    /// Its process id (`null` for `other`).
    pub pid: Option<u32>,
    /// Processes counted (1, or how many `other` sums).
    pub count: u32,
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
    /// CPU over the interval, in percent of one core (0 for a process new in the interval).
    pub cpu_percent: f64,
}

/// One sample of the gateway's indicators over one interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sample {
    /// End of the interval, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Length of the interval, in milliseconds.
    pub interval_ms: u64,
    /// Calls finished per second.
    pub requests_per_sec: f64,
    /// Calls finished.
    pub calls: u64,
    /// Calls failed on the gateway's or upstream's side (`exposition::is_error`).
    pub errors: u64,
    /// Tool results marked `isError`.
    pub tool_errors: u64,
    /// `errors / calls` (0 without calls).
    pub error_rate: f64,
    /// Latency percentiles of every call.
    pub latency: Latency,
    /// Cache hits over cacheable calls (`null` without any).
    pub cache_hit_rate: Option<f64>,
    /// Cacheable calls that joined an identical call in flight, over cacheable calls.
    pub coalesced_share: Option<f64>,
    /// Cache lookups (cacheable calls): hits, misses and joins.
    pub cache_lookups: u64,
    /// Cache lookups that hit (L1 or L2).
    pub cache_hits: u64,
    /// Cache lookups that joined an identical call in flight.
    pub coalesced: u64,
    /// Calls bound for an upstream (every call but those the gateway answers itself), cache
    /// hits and joins included.
    pub upstream_calls: u64,
    /// Calls waiting in admission queues at the end.
    pub queued: u64,
    /// Calls waiting on upstreams at the end.
    pub in_flight: u64,
    /// Live legacy sessions at the end.
    pub sessions: u64,
    /// Open notification streams at the end.
    pub streams: u64,
    /// Calls shed by admission control.
    pub shed: u64,
    /// Calls refused by a rate limit.
    pub rate_limited: u64,
    /// Replicas with an open breaker, over all upstreams.
    pub breakers_open: u32,
    /// Replicas with a half-open breaker.
    pub breakers_half_open: u32,
    /// Upstreams connected.
    pub upstreams_up: u32,
    /// Upstreams not connected.
    pub upstreams_down: u32,
    /// Health per upstream: down ones first, then by name; top N plus `other`.
    pub health: Vec<Health>,
    /// The gateway process (`null` where `/proc` is absent).
    pub gateway: Option<Process>,
    /// Child processes by memory, top N plus `other`.
    pub children: Vec<Process>,
    /// Per upstream by calls, top N plus `other`.
    pub by_upstream: Vec<Breakdown>,
    /// Per JSON-RPC method by calls, top N plus `other`.
    pub by_method: Vec<Breakdown>,
    /// Per tool: routed `tools/call`s, errors, tool errors and mean latency; top N by calls,
    /// plus `other`.
    pub by_tool: Vec<ToolCalls>,
    /// The gateway-wide admission queue (`null` with `[admission] enabled = false`).
    pub admission: Option<Queueing>,
    /// Per tool: cache hits, misses, expired misses, uncached calls to read-only tools and
    /// their repeats; top N by repeats and expired misses, plus `other`.
    pub tools: Vec<ToolUse>,
    /// Dollars per hour upstream calls cost over the interval (`sekisho_cost_dollars_total`).
    pub cost_per_hour: f64,
    /// Every configured budget at the end of the interval: spent over the trailing hour.
    pub budgets: Vec<crate::cost::BudgetUse>,
}

/// Percentile `q` (0..1) of histogram bucket deltas `buckets` (cumulative, the last being
/// `+Inf`) with upper `bounds` in seconds, in milliseconds; see the module doc.
pub fn percentile(bounds: &[f64], buckets: &[u64], q: f64) -> Option<f64> {
    let total = *buckets.last()?;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &count) in buckets.iter().enumerate() {
        if count as f64 >= rank && count > below {
            let Some(&upper) = bounds.get(i) else { return bounds.last().map(|b| b * 1000.0) };
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let within = (rank - below as f64) / (count - below) as f64;
            return Some((lower + (upper - lower) * within.clamp(0.0, 1.0)) * 1000.0);
        }
        below = count;
    }
    bounds.last().map(|b| b * 1000.0)
}

/// What `now` adds to `before` over `interval_ms`, ending at `timestamp_ms`; breakdowns keep
/// `top_n` entries plus `other`.
pub fn between(before: &Reading, now: &Reading, timestamp_ms: u64, interval_ms: u64, top_n: usize) -> Sample {
    let bounds = &now.totals.bounds;
    let delta = |now: &std::collections::BTreeMap<Arc<str>, Counts>,
                 before: &std::collections::BTreeMap<Arc<str>, Counts>| {
        now.iter()
            .map(|(k, c)| (Arc::clone(k), c.since(before.get(k))))
            .filter(|(_, c)| c.calls > 0 || c.retry_budget_exhausted > 0)
            .collect()
    };
    let upstreams: Vec<(Arc<str>, Counts)> = delta(&now.totals.upstreams, &before.totals.upstreams);
    let methods: Vec<(Arc<str>, Counts)> = delta(&now.totals.methods, &before.totals.methods);
    let mut all = Counts::default();
    for (_, c) in &upstreams {
        all.add(c);
    }
    let t = (&now.totals, &before.totals);
    let (hits, misses, coalesced) = (
        t.0.cache_hits.saturating_sub(t.1.cache_hits),
        t.0.cache_misses.saturating_sub(t.1.cache_misses),
        t.0.cache_coalesced.saturating_sub(t.1.cache_coalesced),
    );
    let lookups = hits + misses + coalesced;
    let share = |n: u64| (lookups > 0).then(|| n as f64 / lookups as f64);
    let secs = interval_ms.max(1) as f64 / 1000.0;
    Sample {
        timestamp_ms,
        interval_ms,
        requests_per_sec: all.calls as f64 / secs,
        calls: all.calls,
        errors: all.errors,
        tool_errors: all.tool_errors,
        error_rate: if all.calls == 0 { 0.0 } else { all.errors as f64 / all.calls as f64 },
        latency: Latency {
            mean_ms: (all.calls > 0).then(|| all.seconds * 1000.0 / all.calls as f64),
            p50_ms: percentile(bounds, &all.buckets, 0.50),
            p95_ms: percentile(bounds, &all.buckets, 0.95),
            p99_ms: percentile(bounds, &all.buckets, 0.99),
        },
        cache_hit_rate: share(hits),
        coalesced_share: share(coalesced),
        cache_lookups: lookups,
        cache_hits: hits,
        coalesced,
        upstream_calls: upstreams.iter().filter(|(n, _)| n.as_ref() != GATEWAY).map(|(_, c)| c.calls).sum(),
        queued: now.queued,
        in_flight: now.in_flight,
        sessions: now.sessions,
        streams: now.streams,
        shed: t.0.shed.saturating_sub(t.1.shed),
        rate_limited: t.0.rate_limited.saturating_sub(t.1.rate_limited),
        breakers_open: now.upstreams.iter().map(|u| u.breakers_open).sum(),
        breakers_half_open: now.upstreams.iter().map(|u| u.breakers_half_open).sum(),
        upstreams_up: now.upstreams.iter().filter(|u| u.up).count() as u32,
        upstreams_down: now.upstreams.iter().filter(|u| !u.up).count() as u32,
        health: health(before, now, top_n),
        gateway: now.gateway.map(|g| process("gateway".into(), None, g, before.gateway, interval_ms)),
        children: children(before, now, interval_ms, top_n),
        by_upstream: top(upstreams, bounds, top_n, Some(3600.0 / secs)),
        by_method: top(methods, bounds, top_n, None),
        admission: super::usage::admission(before, now),
        tools: super::usage::tools(before, now, top_n),
        by_tool: super::usage::tool_calls(before, now, top_n),
        cost_per_hour: (t.0.cost - t.1.cost).max(0.0) * 3600.0 / secs,
        budgets: now.budgets.clone(),
    }
}

fn process(name: Arc<str>, pid: Option<u32>, now: ProcStat, before: Option<ProcStat>, interval_ms: u64) -> Process {
    let cpu = before.map_or(0.0, |b| cpu_percent(b.cpu_ticks, now.cpu_ticks, interval_ms));
    Process { name, pid, count: 1, rss_bytes: now.rss_bytes, cpu_percent: cpu }
}

/// The `top_n` groups by calls (ties by name), the rest summed as `other`.
/// `per_hour`: the factor from the interval's dollars to dollars per hour (upstreams only).
fn top(mut groups: Vec<(Arc<str>, Counts)>, bounds: &[f64], top_n: usize, per_hour: Option<f64>) -> Vec<Breakdown> {
    groups.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then_with(|| a.0.cmp(&b.0)));
    let row = |name: Arc<str>, c: &Counts| Breakdown {
        name,
        calls: c.calls,
        errors: c.errors,
        tool_errors: c.tool_errors,
        timeouts: c.timeouts,
        retry_budget_exhausted: c.retry_budget_exhausted,
        p95_ms: percentile(bounds, &c.buckets, 0.95),
        p99_ms: percentile(bounds, &c.buckets, 0.99),
        cost_per_hour: per_hour.map(|f| c.cost * f),
    };
    super::usage::top_and_other(&groups, top_n, Counts::add, |name, c| {
        row(name.map_or_else(|| OTHER.into(), Arc::clone), c)
    })
}

/// Health per upstream: down ones first, then those whose breakers opened or whose bulkhead
/// queued in the interval (most first), then by name; top N plus `other`.
fn health(before: &Reading, now: &Reading, top_n: usize) -> Vec<Health> {
    let earlier: HashMap<&str, &super::reading::UpstreamState> =
        before.upstreams.iter().map(|u| (u.name.as_ref(), u)).collect();
    let mut rows: Vec<Health> = now
        .upstreams
        .iter()
        .map(|u| {
            let b = earlier.get(u.name.as_ref());
            Health {
                name: Arc::clone(&u.name),
                up: u32::from(u.up),
                down: u32::from(!u.up),
                breakers_open: u.breakers_open,
                breaker_opens: u.breaker_opens.saturating_sub(b.map_or(0, |b| b.breaker_opens)),
                waited: u.waited.saturating_sub(b.map_or(0, |b| b.waited)),
                peak_queued: u.peak_queued,
                max_concurrent: u.max_concurrent,
            }
        })
        .collect();
    let events = |h: &Health| h.breaker_opens + h.waited;
    rows.sort_by(|a, b| b.down.cmp(&a.down).then(events(b).cmp(&events(a))).then_with(|| a.name.cmp(&b.name)));
    if rows.len() > top_n {
        let rest = rows.split_off(top_n);
        let mut other = Health {
            name: OTHER.into(),
            up: 0,
            down: 0,
            breakers_open: 0,
            breaker_opens: 0,
            waited: 0,
            peak_queued: 0,
            max_concurrent: 0,
        };
        for h in rest {
            other.up += h.up;
            other.down += h.down;
            other.breakers_open += h.breakers_open;
            other.breaker_opens += h.breaker_opens;
            other.waited += h.waited;
            other.peak_queued = other.peak_queued.max(h.peak_queued);
            other.max_concurrent = other.max_concurrent.max(h.max_concurrent);
        }
        rows.push(other);
    }
    rows
}

fn children(before: &Reading, now: &Reading, interval_ms: u64, top_n: usize) -> Vec<Process> {
    let earlier: HashMap<u32, ProcStat> = before.children.iter().map(|c| (c.pid, c.stat)).collect();
    let mut all: Vec<Process> = now
        .children
        .iter()
        .map(|c| process(Arc::clone(&c.upstream), Some(c.pid), c.stat, earlier.get(&c.pid).copied(), interval_ms))
        .collect();
    all.sort_by(|a, b| b.rss_bytes.cmp(&a.rss_bytes).then_with(|| a.pid.cmp(&b.pid)));
    if all.len() > top_n {
        let rest = all.split_off(top_n);
        let mut other = Process { name: OTHER.into(), pid: None, count: 0, rss_bytes: 0, cpu_percent: 0.0 };
        for p in rest {
            other.count += 1;
            other.rss_bytes += p.rss_bytes;
            other.cpu_percent += p.cpu_percent;
        }
        all.push(other);
    }
    all
}
