//! Reads the cumulative counters the monitor needs out of the gateway's own metrics text
//! (`crate::observe::metrics::Metrics::encode`, OpenMetrics text). `prometheus-client` keeps
//! its families' label sets and histogram buckets private, so the monitor reads the text it
//! exports, on its timer only: the per-call path is not touched.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Calls, failures and latency of one group of calls (an upstream, a method), cumulative.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    /// Calls finished.
    pub calls: u64,
    /// Calls that failed on the gateway's or the upstream's side (see [`is_error`]).
    pub errors: u64,
    /// Calls answered with a tool result marked `isError`.
    pub tool_errors: u64,
    /// Calls that failed by their deadline (outcome `timeout`; also counted in `errors`).
    pub timeouts: u64,
    /// Retries refused by the upstream's retry budget (`sekisho_retry_budget_exhausted_total`).
    pub retry_budget_exhausted: u64,
    /// Latency histogram: calls at or under each of [`Totals::bounds`] (cumulative, as
    /// Prometheus buckets), then the `+Inf` bucket.
    pub buckets: Vec<u64>,
    /// The histogram's sum: time taken by all the calls, in seconds.
    pub seconds: f64,
    /// Dollars spent on its calls (`sekisho_cost_dollars_total`; by upstream only).
    pub cost: f64,
}

impl Counts {
    /// Add `other` into `self` (buckets element-wise).
    pub fn add(&mut self, other: &Counts) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.tool_errors += other.tool_errors;
        self.timeouts += other.timeouts;
        self.retry_budget_exhausted += other.retry_budget_exhausted;
        self.seconds += other.seconds;
        self.cost += other.cost;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    /// `self - before`, counter by counter (a counter that went down counts 0).
    pub fn since(&self, before: Option<&Counts>) -> Counts {
        let Some(b) = before else { return self.clone() };
        Counts {
            calls: self.calls.saturating_sub(b.calls),
            errors: self.errors.saturating_sub(b.errors),
            tool_errors: self.tool_errors.saturating_sub(b.tool_errors),
            timeouts: self.timeouts.saturating_sub(b.timeouts),
            retry_budget_exhausted: self.retry_budget_exhausted.saturating_sub(b.retry_budget_exhausted),
            seconds: (self.seconds - b.seconds).max(0.0),
            cost: (self.cost - b.cost).max(0.0),
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, v)| v.saturating_sub(b.buckets.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }
}

/// The cumulative counters of the whole process.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Upper bounds of the latency buckets, in seconds (the `+Inf` bucket is not listed).
    pub bounds: Vec<f64>,
    /// By upstream label (`gateway` for the calls the gateway answered itself).
    pub upstreams: BTreeMap<Arc<str>, Counts>,
    /// By JSON-RPC method label.
    pub methods: BTreeMap<Arc<str>, Counts>,
    /// Cache lookups that hit (L1 or L2).
    pub cache_hits: u64,
    /// Cache lookups that missed.
    pub cache_misses: u64,
    /// Cache lookups that joined a call in flight.
    pub cache_coalesced: u64,
    /// Calls shed by admission control.
    pub shed: u64,
    /// Calls refused by a rate limit.
    pub rate_limited: u64,
    /// Cache and uncached-call counts by (upstream, tool), for the recommendations.
    pub tools: BTreeMap<(Arc<str>, Arc<str>), ToolCounts>,
    /// Routed `tools/call`s by (upstream, tool): calls, errors, tool errors and seconds
    /// (`sekisho_tool_calls_total`, `sekisho_tool_call_seconds_total`; no histogram).
    pub tool_calls: BTreeMap<(Arc<str>, Arc<str>), Counts>,
    /// Dollars spent on upstream calls (`sekisho_cost_dollars_total`).
    pub cost: f64,
}

/// What the cache saw of one tool (or of `resources/read`), cumulative.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolCounts {
    /// Cache hits (L1 or L2).
    pub hits: u64,
    /// Cache misses (the upstream answered).
    pub misses: u64,
    /// Misses of a key whose entry had expired (`sekisho_cache_expired_misses_total`).
    pub expired_misses: u64,
    /// Calls that joined an identical call in flight.
    pub coalesced: u64,
    /// Calls to the tool, read-only by its annotation, that were not cached
    /// (`sekisho_uncached_calls_total`).
    pub uncached: u64,
    /// Of `uncached`, those identical to one within the repeat window.
    pub repeats: u64,
}

impl ToolCounts {
    /// `self - before`, counter by counter.
    pub fn since(&self, before: Option<&ToolCounts>) -> ToolCounts {
        let Some(b) = before else { return self.clone() };
        ToolCounts {
            hits: self.hits.saturating_sub(b.hits),
            misses: self.misses.saturating_sub(b.misses),
            expired_misses: self.expired_misses.saturating_sub(b.expired_misses),
            coalesced: self.coalesced.saturating_sub(b.coalesced),
            uncached: self.uncached.saturating_sub(b.uncached),
            repeats: self.repeats.saturating_sub(b.repeats),
        }
    }

    /// Add `other` into `self`.
    pub fn add(&mut self, other: &ToolCounts) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.expired_misses += other.expired_misses;
        self.coalesced += other.coalesced;
        self.uncached += other.uncached;
        self.repeats += other.repeats;
    }

    /// Whether every counter is 0.
    pub fn is_empty(&self) -> bool {
        *self == ToolCounts::default()
    }
}

/// Whether a `sekisho_requests_total` outcome counts as an error: the call failed on the
/// gateway's or the upstream's side (`rpc_error`, `upstream_error`, `timeout`, `unavailable`,
/// `internal`). Tool errors are counted apart; refusals of the caller (`client_error`,
/// `unauthorized`, `forbidden`, `limited`, `rate_limited`, `budget_exceeded`, `shed`, `shutting_down`,
/// `in_progress`) and `cancelled` are not errors.
pub fn is_error(outcome: &str) -> bool {
    matches!(outcome, "rpc_error" | "upstream_error" | "timeout" | "unavailable" | "internal")
}

/// Parse the metrics text. Lines it does not know are skipped; a value that does not parse
/// counts 0.
pub fn parse(text: &str) -> Totals {
    let mut t = Totals::default();
    let mut bounds_done = false;
    // Histogram buckets of one (method, upstream) series arrive in `le` order.
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((name, labels, value)) = split_line(line) else { continue };
        let label = |key: &str| labels.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str()).unwrap_or("");
        let count = value.parse::<f64>().map_or(0, |v| if v.is_finite() && v > 0.0 { v as u64 } else { 0 });
        match name {
            "sekisho_requests_total" => {
                let outcome = label("outcome");
                for c in [entry(&mut t.upstreams, label("upstream")), entry(&mut t.methods, label("method"))] {
                    c.calls += count;
                    if outcome == "timeout" {
                        c.timeouts += count;
                    }
                    if is_error(outcome) {
                        c.errors += count;
                    } else if outcome == "tool_error" {
                        c.tool_errors += count;
                    }
                }
            }
            "sekisho_request_duration_seconds_bucket" => {
                let le = label("le");
                let Some(index) = bucket_index(&mut t.bounds, &mut bounds_done, le) else { continue };
                for c in [entry(&mut t.upstreams, label("upstream")), entry(&mut t.methods, label("method"))] {
                    if c.buckets.len() <= index {
                        c.buckets.resize(index + 1, 0);
                    }
                    c.buckets[index] += count;
                }
            }
            "sekisho_request_duration_seconds_sum" => {
                let seconds = value.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0).unwrap_or(0.0);
                for c in [entry(&mut t.upstreams, label("upstream")), entry(&mut t.methods, label("method"))] {
                    c.seconds += seconds;
                }
            }
            "sekisho_cache_lookups_total" => {
                let tool = tool_entry(&mut t.tools, label("upstream"), label("tool"));
                match label("result") {
                    "hit" => (t.cache_hits, tool.hits) = (t.cache_hits + count, tool.hits + count),
                    "miss" => (t.cache_misses, tool.misses) = (t.cache_misses + count, tool.misses + count),
                    "coalesced" => {
                        (t.cache_coalesced, tool.coalesced) = (t.cache_coalesced + count, tool.coalesced + count)
                    }
                    _ => {}
                }
            }
            "sekisho_tool_calls_total" => {
                let outcome = label("outcome");
                let c = t.tool_calls.entry((Arc::from(label("upstream")), Arc::from(label("tool")))).or_default();
                c.calls += count;
                if is_error(outcome) {
                    c.errors += count;
                } else if outcome == "tool_error" {
                    c.tool_errors += count;
                }
            }
            "sekisho_tool_call_seconds_total" => {
                let seconds = value.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0).unwrap_or(0.0);
                t.tool_calls.entry((Arc::from(label("upstream")), Arc::from(label("tool")))).or_default().seconds +=
                    seconds;
            }
            "sekisho_cache_expired_misses_total" => {
                tool_entry(&mut t.tools, label("upstream"), label("tool")).expired_misses += count
            }
            "sekisho_uncached_calls_total" => {
                let tool = tool_entry(&mut t.tools, label("upstream"), label("tool"));
                tool.uncached += count;
                if label("repeat") == "true" {
                    tool.repeats += count;
                }
            }
            "sekisho_retry_budget_exhausted_total" => {
                entry(&mut t.upstreams, label("upstream")).retry_budget_exhausted += count
            }
            "sekisho_shed_total" => t.shed += count,
            "sekisho_rate_limited_total" => t.rate_limited += count,
            "sekisho_cost_dollars_total" => {
                let dollars = value.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0).unwrap_or(0.0);
                entry(&mut t.upstreams, label("upstream")).cost += dollars;
                t.cost += dollars;
            }
            _ => {}
        }
    }
    t
}

fn entry<'a>(map: &'a mut BTreeMap<Arc<str>, Counts>, key: &str) -> &'a mut Counts {
    if !map.contains_key(key) {
        map.insert(Arc::from(key), Counts::default());
    }
    map.get_mut(key).expect("just inserted")
}

fn tool_entry<'a>(
    map: &'a mut BTreeMap<(Arc<str>, Arc<str>), ToolCounts>,
    upstream: &str,
    tool: &str,
) -> &'a mut ToolCounts {
    map.entry((Arc::from(upstream), Arc::from(tool))).or_default()
}

/// The index of bucket `le` in `bounds`, learning the bounds from the first series (every
/// series of the family has the same buckets).
fn bucket_index(bounds: &mut Vec<f64>, done: &mut bool, le: &str) -> Option<usize> {
    if le == "+Inf" {
        *done = true;
        return Some(bounds.len());
    }
    let v: f64 = le.parse().ok()?;
    if let Some(i) = bounds.iter().position(|b| (b - v).abs() <= f64::EPSILON * b.abs().max(1.0)) {
        return Some(i);
    }
    if *done {
        return None;
    }
    bounds.push(v);
    Some(bounds.len() - 1)
}

/// A sample line's parts: metric name, labels (key, unescaped value), value text.
type Line<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);

/// `name{k="v",…} value` into its parts (label values unescaped: `\\`, `\"`, `\n`).
fn split_line(line: &str) -> Option<Line<'_>> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            r = r.trim_start_matches(',');
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = r.find('=')?;
            let key = &r[..eq];
            let mut chars = r[eq + 1..].strip_prefix('"')?.char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            labels.push((key, value));
            r = &r[eq + 1 + 1 + end + 1..];
        }
    }
    let value = rest.split_whitespace().next()?;
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_calls_buckets_cache_and_refusals() {
        let text = "# HELP x\n\
            sekisho_requests_total{method=\"tools/call\",upstream=\"a\\\"b\",outcome=\"ok\"} 3\n\
            sekisho_requests_total{method=\"tools/call\",upstream=\"a\\\"b\",outcome=\"timeout\"} 1\n\
            sekisho_requests_total{method=\"ping\",upstream=\"gateway\",outcome=\"tool_error\"} 2\n\
            sekisho_request_duration_seconds_bucket{le=\"0.1\",method=\"tools/call\",upstream=\"a\\\"b\"} 1\n\
            sekisho_request_duration_seconds_bucket{le=\"0.2\",method=\"tools/call\",upstream=\"a\\\"b\"} 4\n\
            sekisho_request_duration_seconds_bucket{le=\"+Inf\",method=\"tools/call\",upstream=\"a\\\"b\"} 4\n\
            sekisho_request_duration_seconds_sum{method=\"tools/call\",upstream=\"a\\\"b\"} 0.5\n\
            sekisho_cache_lookups_total{upstream=\"a\",tool=\"t\",level=\"l1\",result=\"hit\"} 5\n\
            sekisho_cache_lookups_total{upstream=\"a\",tool=\"t\",level=\"none\",result=\"coalesced\"} 1\n\
            sekisho_shed_total{limit=\"gateway\",priority=\"low\",caller=\"anon\"} 7\n\
            sekisho_rate_limited_total{caller=\"x\",tenant=\"none\",limit=\"key\"} 2\n\
            sekisho_cache_lookups_total{upstream=\"a\",tool=\"t\",level=\"none\",result=\"miss\"} 4\n\
            sekisho_cache_expired_misses_total{upstream=\"a\",tool=\"t\"} 3\n\
            sekisho_uncached_calls_total{upstream=\"a\",tool=\"u\",repeat=\"true\"} 6\n\
            sekisho_uncached_calls_total{upstream=\"a\",tool=\"u\",repeat=\"false\"} 2\n\
            sekisho_retry_budget_exhausted_total{upstream=\"a\\\"b\"} 9\n\
            sekisho_tool_calls_total{upstream=\"a\",tool=\"t\",outcome=\"ok\"} 7\n\
            sekisho_tool_calls_total{upstream=\"a\",tool=\"t\",outcome=\"timeout\"} 2\n\
            sekisho_tool_calls_total{upstream=\"a\",tool=\"t\",outcome=\"tool_error\"} 1\n\
            sekisho_tool_call_seconds_total{upstream=\"a\",tool=\"t\"} 1.5\n\
            sekisho_cost_dollars_total{upstream=\"a\",tool=\"t\",caller=\"x\"} 0.25\n\
            sekisho_cost_dollars_total{upstream=\"a\",tool=\"u\",caller=\"y\"} 0.5\n# EOF\n";
        let t = parse(text);
        let ab = &t.upstreams["a\"b"];
        assert_eq!((ab.calls, ab.errors, ab.tool_errors), (4, 1, 0));
        assert_eq!(ab.buckets, vec![1, 4, 4]);
        assert_eq!((ab.seconds, t.methods["tools/call"].seconds), (0.5, 0.5));
        assert_eq!(t.bounds, vec![0.1, 0.2]);
        assert_eq!(t.methods["ping"].tool_errors, 2);
        assert_eq!((t.cache_hits, t.cache_misses, t.cache_coalesced, t.shed, t.rate_limited), (5, 4, 1, 7, 2));
        assert_eq!((ab.timeouts, ab.retry_budget_exhausted), (1, 9));
        let tool = &t.tools[&(Arc::from("a"), Arc::from("t"))];
        assert_eq!((tool.hits, tool.misses, tool.expired_misses, tool.coalesced), (5, 4, 3, 1));
        let u = &t.tools[&(Arc::from("a"), Arc::from("u"))];
        assert_eq!((u.uncached, u.repeats), (8, 6));
        assert_eq!((t.cost, t.upstreams["a"].cost), (0.75, 0.75));
        let at = &t.tool_calls[&(Arc::from("a"), Arc::from("t"))];
        assert_eq!((at.calls, at.errors, at.tool_errors, at.seconds), (10, 2, 1, 1.5));
    }

    #[test]
    fn hostile_lines_are_skipped() {
        let t =
            parse("sekisho_requests_total{method=\"x 1\nsekisho_shed_total{a=\"\\\n{\n}} 1\nsekisho_shed_total 2\n");
        assert_eq!(t.shed, 2);
        assert!(t.upstreams.is_empty());
    }
}
