//! The parts of a sample the recommendations read besides the indicators: per tool, what the
//! cache did and the uncached calls to read-only tools (top N by what a recommendation could
//! act on, plus `other`), and the gateway-wide admission queue.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::exposition::{Counts, ToolCounts};
use super::reading::Reading;

/// The name of the entry that sums what the top N leave out (in every breakdown of a sample).
pub const OTHER: &str = "other";

/// A tool: its upstream's namespace and its own name.
type ToolKey = (Arc<str>, Arc<str>);

/// One tool's cache and uncached calls over an interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolUse {
    /// Upstream namespace (`other` for the rest).
    pub upstream: Arc<str>,
    /// The upstream's own tool name (`resources/read` for resource reads; `other` for the rest).
    pub tool: Arc<str>,
    /// Cache hits.
    pub hits: u64,
    /// Cache misses.
    pub misses: u64,
    /// Of `misses`, those of a key whose entry had expired.
    pub expired_misses: u64,
    /// Calls that joined an identical call in flight.
    pub coalesced: u64,
    /// Calls to it (read-only by its annotation) that were not cached.
    pub uncached: u64,
    /// Of `uncached`, those identical to one within the repeat window (5 min).
    pub repeats: u64,
}

/// A queue in front of a concurrency limit over an interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Queueing {
    /// Calls that found no free slot and waited (or were shed).
    pub waited: u64,
    /// The longest the queue was.
    pub peak_queued: u64,
    /// Calls the limit lets run at once.
    pub max_concurrent: u64,
}

/// The gateway-wide admission queue between two readings (`None` with admission off).
pub fn admission(before: &Reading, now: &Reading) -> Option<Queueing> {
    let limit = now.admission?;
    Some(Queueing {
        waited: limit.waited.saturating_sub(before.admission.map_or(0, |b| b.waited)),
        peak_queued: limit.peak_queued,
        max_concurrent: limit.max_concurrent,
    })
}

/// The tools whose counts moved between two readings: the `top_n` by repeats, expired misses
/// and uncached calls (then by name), the rest summed as `other`.
pub fn tools(before: &Reading, now: &Reading, top_n: usize) -> Vec<ToolUse> {
    let mut moved: Vec<(&ToolKey, ToolCounts)> = now
        .totals
        .tools
        .iter()
        .map(|(k, c)| (k, c.since(before.totals.tools.get(k))))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    let weight = |c: &ToolCounts| (c.repeats + c.expired_misses, c.uncached + c.misses);
    moved.sort_by(|a, b| weight(&b.1).cmp(&weight(&a.1)).then_with(|| a.0.cmp(b.0)));
    let row = |upstream: Arc<str>, tool: Arc<str>, c: &ToolCounts| ToolUse {
        upstream,
        tool,
        hits: c.hits,
        misses: c.misses,
        expired_misses: c.expired_misses,
        coalesced: c.coalesced,
        uncached: c.uncached,
        repeats: c.repeats,
    };
    top_and_other(&moved, top_n, ToolCounts::add, |key, c| match key {
        Some((u, t)) => row(Arc::clone(u), Arc::clone(t), c),
        None => row(OTHER.into(), OTHER.into(), c),
    })
}

/// The rows of the first `top_n` of `sorted`, then one row of the rest summed with `add`
/// (`row` gets `None` for that key): every breakdown of a sample is bounded this way.
pub fn top_and_other<K, C: Default, R>(
    sorted: &[(K, C)],
    top_n: usize,
    add: impl Fn(&mut C, &C),
    row: impl Fn(Option<&K>, &C) -> R,
) -> Vec<R> {
    let mut out: Vec<R> = sorted.iter().take(top_n).map(|(k, c)| row(Some(k), c)).collect();
    if sorted.len() > top_n {
        let mut rest = C::default();
        for (_, c) in &sorted[top_n..] {
            add(&mut rest, c);
        }
        out.push(row(None, &rest));
    }
    out
}

/// One tool's calls over an interval (`Sample::by_tool`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCalls {
    /// Namespace of the upstream that owns it (`other` for the rest).
    pub upstream: Arc<str>,
    /// The upstream's own tool name (`other` for the rest, and past the metric's bound).
    pub tool: Arc<str>,
    /// Routed `tools/call`s finished.
    pub calls: u64,
    /// Of them, failed on the gateway's or the upstream's side.
    pub errors: u64,
    /// Of them, answered with a tool result marked `isError`.
    pub tool_errors: u64,
    /// Mean time from routing to answer, in milliseconds (`null` without calls).
    pub mean_ms: Option<f64>,
}

/// The tools called between two readings: the `top_n` by calls (then errors), plus `other`
/// summing the rest.
pub fn tool_calls(before: &Reading, now: &Reading, top_n: usize) -> Vec<ToolCalls> {
    let mut moved: Vec<(&ToolKey, Counts)> = now
        .totals
        .tool_calls
        .iter()
        .map(|(k, c)| (k, c.since(before.totals.tool_calls.get(k))))
        .filter(|(_, c)| c.calls > 0)
        .collect();
    moved.sort_by(|a, b| (b.1.calls, b.1.errors).cmp(&(a.1.calls, a.1.errors)).then_with(|| a.0.cmp(b.0)));
    let row = |upstream: Arc<str>, tool: Arc<str>, c: &Counts| ToolCalls {
        upstream,
        tool,
        calls: c.calls,
        errors: c.errors,
        tool_errors: c.tool_errors,
        mean_ms: (c.calls > 0).then(|| c.seconds * 1000.0 / c.calls as f64),
    };
    top_and_other(&moved, top_n, Counts::add, |key, c| match key {
        Some((u, t)) => row(Arc::clone(u), Arc::clone(t), c),
        None => row(OTHER.into(), OTHER.into(), c),
    })
}
