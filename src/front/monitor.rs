//! `GET /admin/monitor?period=1h|24h` (admins only): the monitor's samples of the period and a
//! summary of the newest one, as JSON. 404 when `[monitor] enabled = false`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;

use super::rescue::json;
use super::{Admin, Shared};
use crate::monitor::Sample;

/// Samples in one answer at most; a longer period is thinned to every k-th sample (`step`).
pub const MAX_POINTS: usize = 1440;

/// `GET /admin/monitor[?period=P]`: `P` is a duration (`1h`, `24h`, `15m`; default `1h`, at
/// most 7 days). The answer: `{"interval_ms", "retention_ms", "capacity", "period_ms",
/// "step", "latest": Sample|null, "summary": {…}, "samples": [Sample…]}`, the samples oldest
/// first, at most [`MAX_POINTS`] (every `step`-th when the period holds more). `summary`
/// totals the period (`crate::report::performance::Summary`: `samples`, `calls`, `errors`,
/// `error_rate`, `requests_per_sec` (average), `average_response_ms`, `p95_ms_max`, `shed`,
/// `rate_limited`, the cache's counts, `cache_hit_rate`, `cost_efficiency`). 400 for a period that does not parse; 401
/// or 403 for a caller that is not an admin.
///
/// With `fleet=1` (and `[redis]`): `{"replica": this one's name, "period_ms", "replicas":
/// [{"replica", "samples": [Sample…]}]}`, every replica's samples of the period from Redis
/// (`crate::monitor::fleet`: at most 32 replicas, the newest 120 samples each); 404 without
/// `[redis]`, 503 when Redis does not answer.
pub async fn monitor(State(shared): State<Arc<Shared>>, _: Admin, uri: http::Uri) -> Response {
    let Some(monitor) = &shared.monitor else {
        let body = serde_json::json!({ "error": "the monitor is off ([monitor] enabled = false)" });
        return json(StatusCode::NOT_FOUND, Bytes::from(body.to_string()));
    };
    let asked = uri.query().unwrap_or("").split('&').find_map(|p| p.strip_prefix("period="));
    let period = match crate::report::parse_period(asked) {
        Ok(p) => p,
        Err(why) => {
            let body = serde_json::json!({ "error": why });
            return json(StatusCode::BAD_REQUEST, Bytes::from(body.to_string()));
        }
    };
    if uri.query().unwrap_or("").split('&').any(|p| p == "fleet=1" || p == "fleet=true") {
        return fleet(monitor, period).await;
    }
    let samples = monitor.samples(period);
    let step = samples.len().div_ceil(MAX_POINTS).max(1);
    let summary = crate::report::performance::summarize(&samples);
    let shown: Vec<&Sample> = samples.iter().rev().step_by(step).collect::<Vec<_>>().into_iter().rev().collect();
    let config = monitor.config();
    let body = serde_json::json!({
        "interval_ms": config.interval.as_millis() as u64,
        "retention_ms": config.retention.as_millis() as u64,
        "capacity": monitor.capacity(),
        "period_ms": period.as_millis() as u64,
        "step": step,
        "latest": samples.last(),
        "summary": summary,
        "samples": shown,
    });
    json(StatusCode::OK, Bytes::from(body.to_string()))
}

/// The fleet view: every replica's samples of `period` from Redis.
async fn fleet(monitor: &crate::monitor::Monitor, period: Duration) -> Response {
    let Some(fleet) = monitor.fleet() else {
        let body = serde_json::json!({ "error": "the fleet view needs [redis]" });
        return json(StatusCode::NOT_FOUND, Bytes::from(body.to_string()));
    };
    let since = monitor.now_ms().saturating_sub(period.as_millis() as u64);
    match fleet.read(since).await {
        Some(replicas) => {
            let body = serde_json::json!({
                "replica": fleet.replica(),
                "period_ms": period.as_millis() as u64,
                "replicas": replicas,
            });
            json(StatusCode::OK, Bytes::from(body.to_string()))
        }
        None => {
            let body = serde_json::json!({ "error": "Redis did not answer" });
            json(StatusCode::SERVICE_UNAVAILABLE, Bytes::from(body.to_string()))
        }
    }
}
