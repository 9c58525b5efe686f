//! The JSON Schemas of the gateway's own tools (`inputSchema`, `outputSchema`): what
//! `tools/list` declares and what each tool's `structuredContent` conforms to (a test
//! validates every answer against them). Top-level objects admit no other members, so a
//! report that grows a field must grow its schema with it.

use serde_json::{Value, json};

/// A number from 0 to 1, or `null` when there is nothing to divide.
fn ratio(what: &str) -> Value {
    json!({"type": ["number", "null"], "minimum": 0, "maximum": 1, "description": what})
}

/// Milliseconds, or `null` without calls.
fn millis(what: &str) -> Value {
    json!({"type": ["number", "null"], "minimum": 0, "description": format!("{what}, in milliseconds")})
}

fn count(what: &str) -> Value {
    json!({"type": "integer", "minimum": 0, "description": what})
}

fn verdict(what: &str) -> Value {
    json!({"type": "string", "enum": ["healthy", "degraded", "unhealthy"], "description": what})
}

fn strings(what: &str) -> Value {
    json!({"type": "array", "items": {"type": "string"}, "description": what})
}

/// An object with exactly `properties`, all required.
fn closed(properties: Value) -> Value {
    let required: Vec<&String> = properties.as_object().map(|p| p.keys().collect()).unwrap_or_default();
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// The `period` argument.
fn period() -> Value {
    json!({
        "type": "string",
        "description": "How far back to look: a duration from 1s to 7d such as 15m, 1h or 24h (default 1h).",
    })
}

/// Input of `performance` and `metrics`: an optional `period`.
pub fn period_input() -> Value {
    json!({"type": "object", "properties": {"period": period()}, "additionalProperties": false})
}

/// Input of `alerts`: an optional `history`.
pub fn alerts_input() -> Value {
    json!({
        "type": "object",
        "properties": {"history": {"type": "boolean", "description": "Also list the resolved alerts kept."}},
        "additionalProperties": false,
    })
}

/// Input of `health`: nothing.
pub fn no_input() -> Value {
    json!({"type": "object", "properties": {}, "additionalProperties": false})
}

/// Output of `performance` (`report::performance::Performance`).
pub fn performance() -> Value {
    closed(json!({
        "overall_health": verdict("The health verdict (see the health tool)."),
        "reasons": strings("Why it is not healthy, worst first."),
        "period_ms": count("The period the numbers cover, in milliseconds."),
        "monitor": {"type": "boolean", "description": "Whether the monitor runs; off, the numbers are empty."},
        "samples": count("Monitor samples in the period."),
        "calls": count("Calls finished in the period."),
        "requests_per_sec": {"type": "number", "minimum": 0},
        "cache_hit_rate": ratio("Cache hits over cacheable calls."),
        "average_response_time": millis("Mean time to answer a call"),
        "p95_ms_max": millis("The largest 95th percentile of the period's samples"),
        "error_rate": ratio("Calls failed by the gateway or an upstream, over calls."),
        "cost_efficiency": ratio("Share of upstream-bound calls answered without reaching an upstream (cache hits, coalesced calls)."),
        "cost": cost(),
    }))
}

/// `performance`'s `cost`: the period's spend and the budgets, or `null`.
fn cost() -> Value {
    let dollars = |what: &str| json!({"type": "number", "minimum": 0, "description": what});
    let budget = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "gateway, caller:<id> or tenant:<name>."},
            "per_hour": dollars("The budget, in $/h."),
            "spent": dollars("Spent over the trailing hour, in $."),
            "used": {"type": "number", "minimum": 0, "description": "spent / per_hour (1 and above: spent)."},
            "alert_at": {"type": "number", "minimum": 0, "maximum": 1},
            "action": {"type": "string", "enum": ["alert", "shed-low", "fallback", "deny"]},
        },
        "required": ["name", "per_hour", "spent", "used", "alert_at", "action"],
    });
    let mut schema = closed(json!({
        "spent_usd": dollars("Spent on upstream calls in the period, in $."),
        "per_hour_usd": dollars("The same per hour of the period, in $/h."),
        "budgets": {"type": "array", "items": budget, "description": "Every configured budget now."},
    }));
    schema["type"] = json!(["object", "null"]);
    schema["description"] = json!("Spending; null when no call is priced and no budget is configured.");
    schema
}

/// One sample of the monitor (`monitor::Sample`): the members a reader relies on, typed.
fn sample() -> Value {
    let latency = json!({
        "type": "object",
        "properties": {
            "mean_ms": millis("Mean"), "p50_ms": millis("Median"),
            "p95_ms": millis("95th percentile"), "p99_ms": millis("99th percentile"),
        },
        "required": ["mean_ms", "p50_ms", "p95_ms", "p99_ms"],
    });
    let breakdown = json!({
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "calls": count("Calls"), "errors": count("Failed calls"),
                           "p95_ms": millis("95th percentile")},
            "required": ["name", "calls", "errors"],
        },
    });
    json!({
        "type": ["object", "null"],
        "description": "The newest sample (null before the first, one interval after start).",
        "properties": {
            "timestamp_ms": count("End of the interval, ms since the Unix epoch."),
            "interval_ms": count("Length of the interval, in milliseconds."),
            "requests_per_sec": {"type": "number", "minimum": 0},
            "calls": count("Calls finished."),
            "errors": count("Calls failed."),
            "error_rate": {"type": "number", "minimum": 0, "maximum": 1},
            "latency": latency,
            "cache_hit_rate": ratio("Cache hits over cacheable calls."),
            "queued": count("Calls waiting in admission queues."),
            "in_flight": count("Calls waiting on upstreams."),
            "upstreams_up": count("Upstreams connected."),
            "upstreams_down": count("Upstreams not connected."),
            "breakers_open": count("Replicas with an open breaker."),
            "by_upstream": breakdown,
            "by_method": breakdown,
        },
        "required": ["timestamp_ms", "interval_ms", "calls", "errors", "error_rate", "latency", "by_upstream"],
    })
}

/// Output of `metrics` (`report::MetricsReport`).
pub fn metrics() -> Value {
    let summary = closed(json!({
        "samples": count("Samples in the period."),
        "calls": count("Calls finished."),
        "errors": count("Calls failed."),
        "error_rate": {"type": "number", "minimum": 0, "maximum": 1},
        "requests_per_sec": {"type": "number", "minimum": 0},
        "average_response_ms": millis("Mean time to answer a call"),
        "p95_ms_max": millis("The largest 95th percentile"),
        "shed": count("Calls shed by admission control."),
        "rate_limited": count("Calls refused by a rate limit."),
        "cache_lookups": count("Cacheable calls."),
        "cache_hits": count("Cache hits."),
        "coalesced": count("Calls that joined an identical call in flight."),
        "upstream_calls": count("Calls bound for an upstream."),
        "cache_hit_rate": ratio("Cache hits over cacheable calls."),
        "cost_efficiency": ratio("Share of upstream-bound calls answered without an upstream."),
        "cost_usd": {"type": "number", "minimum": 0, "description": "Dollars spent on upstream calls."},
    }));
    closed(json!({
        "monitor": {"type": "boolean", "description": "Whether the monitor runs."},
        "period_ms": count("The period, in milliseconds."),
        "interval_ms": {"type": ["integer", "null"], "minimum": 0, "description": "Time between samples, in ms."},
        "latest": sample(),
        "summary": summary,
    }))
}

/// One alert (`monitor::alerts::Alert`).
fn alert() -> Value {
    let epoch = |what: &str| json!({"type": ["integer", "null"], "minimum": 0, "description": what});
    closed(json!({
        "id": {"type": "string"},
        "rule": {"type": "string"},
        "state": {"type": "string", "enum": ["pending", "firing", "resolved"]},
        "severity": {"type": "string", "enum": ["low", "warning", "medium", "high", "critical"]},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "metric": {"type": "string"},
        "scope": {"type": ["string", "null"], "description": "The upstream watched; null: the whole gateway."},
        "op": {"type": "string", "enum": [">", "<"]},
        "current_value": {"type": "number"},
        "threshold": {"type": "number"},
        "timestamp": count("When the condition began to hold, ms since the Unix epoch."),
        "fired_at": epoch("When it fired, ms since the Unix epoch."),
        "resolved": {"type": "boolean"},
        "resolved_at": epoch("When it resolved, ms since the Unix epoch."),
        "replica": {"type": "string"},
    }))
}

/// Output of `alerts` (`report::AlertsReport`); `history` only when asked for.
pub fn alerts() -> Value {
    let mut schema = closed(json!({
        "enabled": {"type": "boolean", "description": "Whether alert rules are evaluated."},
        "firing": count("Alerts firing now."),
        "active": {"type": "array", "items": alert(), "description": "Firing alerts (worst first), then pending."},
        "history": {"type": "array", "items": alert(), "description": "Resolved alerts, newest first."},
    }));
    schema["required"] = json!(["enabled", "firing", "active"]);
    schema
}

/// Output of `health` (`report::HealthReport`).
pub fn health() -> Value {
    let replica = json!({
        "type": "object",
        "properties": {
            "replica": count("Index."), "status": {"type": "string"},
            "breaker": {"type": "string", "enum": ["closed", "open", "half_open"]},
            "in_flight": count("Calls outstanding."), "restarts": count("Restarts."), "pid": count("Process id."),
        },
        "required": ["replica", "status", "breaker", "in_flight", "restarts"],
    });
    let upstream = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "status": {"type": "string", "enum": ["starting", "up", "down", "stopped"]},
            "era": {"type": "string"}, "version": {"type": "string"},
            "reason": {"type": "string", "description": "Why it is down."},
            "restarts": count("Reconnections after a failure."), "in_flight": count("Calls waiting on it."),
            "replicas": {"type": "array", "items": replica},
        },
        "required": ["name", "status", "restarts", "in_flight", "replicas"],
    });
    closed(json!({
        "status": verdict("The verdict."),
        "reasons": strings("Why it is not healthy, worst first."),
        "ready": {"type": "boolean", "description": "Whether /readyz answers 200."},
        "draining": {"type": "boolean"},
        "upstreams_total": count("Upstreams configured."),
        "upstreams_up": count("Upstreams connected."),
        "breakers_open": count("Replicas whose breaker is open."),
        "upstreams": {"type": "array", "items": upstream, "description": "Down ones first."},
        "store": {"type": ["object", "null"], "description": "The [store] PostgreSQL; null without one."},
        "redis": {"enum": ["up", "degraded", null], "description": "null without [redis]."},
        "switched_off": strings("Runtime switches that are off."),
        "alerts_firing": {"type": ["integer", "null"], "minimum": 0, "description": "null when alerts are off."},
    }))
}

/// Output of `recommendations`: `crate::report::recommendations::RecommendationsReport`.
pub fn recommendations() -> Value {
    let words = |what: &str, values: &[&str]| json!({"type": "string", "enum": values, "description": what});
    let evidence = closed(json!({
        "name": {"type": "string", "description": "What was measured."},
        "value": {"type": "number", "description": "Its value."},
        "unit": {"type": "string", "description": "Its unit: calls, ms, ratio, count, processes, bytes, $/h, s."},
    }));
    let change = closed(json!({
        "path": strings("The key's path, table by table."),
        "key": {"type": "string", "description": "The same as a TOML dotted key."},
        "value": {"description": "Its new value: a string, number, boolean or array."},
    }));
    let recommendation = closed(json!({
        "id": {"type": "string", "description": "Stable id: the rule and its subject."},
        "rule": {"type": "string"},
        "category": words("What it is about.", &["performance", "cost", "reliability", "security"]),
        "priority": words("How urgent it is.", &["critical", "high", "medium", "low"]),
        "title": {"type": "string"},
        "description": {"type": "string", "description": "What was seen, with its numbers."},
        "impact": {"type": "string"},
        "implementation_effort": words("How much work it is.", &["low", "medium", "high"]),
        "estimated_improvement": {"type": "string"},
        "action_items": strings("What to do, step by step."),
        "evidence": {"type": "array", "items": evidence, "description": "The measured numbers that triggered it."},
        "config_patch": {"type": "array", "items": change, "description": "The configuration change that removes the cause."},
    }));
    closed(json!({
        "period_ms": count("The period judged, in milliseconds."),
        "samples": count("The monitor's samples in it."),
        "history_ms": {"type": ["integer", "null"], "minimum": 0, "description": "How long the monitor has watched, in ms."},
        "summary": closed(json!({
            "total": count("All recommendations."),
            "critical": count("Critical ones."),
            "high": count("High ones."),
            "medium": count("Medium ones."),
            "low": count("Low ones."),
        })),
        "recommendations": {"type": "array", "items": recommendation, "description": "Most urgent first."},
    }))
}
