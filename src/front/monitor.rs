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

/// The longest `period`.
const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

/// `GET /admin/monitor[?period=P]`: `P` is a duration (`1h`, `24h`, `15m`; default `1h`, at
/// most 7 days). The answer: `{"interval_ms", "retention_ms", "capacity", "period_ms",
/// "step", "latest": Sample|null, "summary": {…}, "samples": [Sample…]}`, the samples oldest
/// first, at most [`MAX_POINTS`] (every `step`-th when the period holds more). `summary`
/// totals the period: `samples`, `calls`, `errors`, `error_rate`, `requests_per_sec`
/// (average), `p95_ms_max`, `shed`, `rate_limited`. 400 for a period that does not parse; 401
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
    let period = match asked.map(humantime::parse_duration) {
        None => Duration::from_secs(3600),
        Some(Ok(p)) if !p.is_zero() && p <= MAX_PERIOD => p,
        Some(_) => {
            let body = serde_json::json!({ "error": "period must be a duration from 1s to 7d, such as 1h or 24h" });
            return json(StatusCode::BAD_REQUEST, Bytes::from(body.to_string()));
        }
    };
    if uri.query().unwrap_or("").split('&').any(|p| p == "fleet=1" || p == "fleet=true") {
        return fleet(monitor, period).await;
    }
    let samples = monitor.samples(period);
    let step = samples.len().div_ceil(MAX_POINTS).max(1);
    let summary = summary(&samples);
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

fn summary(samples: &[Sample]) -> serde_json::Value {
    let calls: u64 = samples.iter().map(|s| s.calls).sum();
    let errors: u64 = samples.iter().map(|s| s.errors).sum();
    let ms: u64 = samples.iter().map(|s| s.interval_ms).sum();
    let p95_max =
        samples.iter().filter_map(|s| s.latency.p95_ms).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    serde_json::json!({
        "samples": samples.len(),
        "calls": calls,
        "errors": errors,
        "error_rate": if calls == 0 { 0.0 } else { errors as f64 / calls as f64 },
        "requests_per_sec": if ms == 0 { 0.0 } else { calls as f64 * 1000.0 / ms as f64 },
        "p95_ms_max": p95_max,
        "shed": samples.iter().map(|s| s.shed).sum::<u64>(),
        "rate_limited": samples.iter().map(|s| s.rate_limited).sum::<u64>(),
    })
}
