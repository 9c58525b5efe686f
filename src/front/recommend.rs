//! `GET /admin/recommendations?period=1h|24h` (admins only): the recommendations
//! (`crate::monitor::recommend`) from the monitor's samples of the period, the upstreams as
//! they run, and the configuration in force, as JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;

use super::rescue::json;
use super::{Admin, Shared};
use crate::monitor::recommend::{self, Input, Priority, Thresholds};

/// The longest `period`.
const MAX_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

/// `GET /admin/recommendations[?period=P]`: `P` is a duration (`1h`, the default; `24h`;
/// from 1s to 7d). The answer: `{"period_ms", "samples": n, "history_ms": how long the monitor
/// has watched (null with the monitor off), "summary": {"total", "critical", "high",
/// "medium", "low"}, "recommendations": [Recommendation…]}`, most urgent first. A
/// `Recommendation` is `crate::monitor::recommend::Recommendation` (docs/operations.md,
/// "Recommendations and optimize"). With `[monitor] enabled = false` only the configuration's
/// findings are made. 400 for a period that does not parse; 401 or 403 for a caller that is
/// not an admin.
pub async fn recommendations(State(shared): State<Arc<Shared>>, _: Admin, uri: http::Uri) -> Response {
    let asked = uri.query().unwrap_or("").split('&').find_map(|p| p.strip_prefix("period="));
    let period = match asked.map(humantime::parse_duration) {
        None => Duration::from_secs(3600),
        Some(Ok(p)) if !p.is_zero() && p <= MAX_PERIOD => p,
        Some(_) => {
            let body = serde_json::json!({ "error": "period must be a duration from 1s to 7d, such as 1h or 24h" });
            return json(StatusCode::BAD_REQUEST, Bytes::from(body.to_string()));
        }
    };
    let monitor = shared.monitor.as_deref();
    let samples = monitor.map(|m| m.samples(period)).unwrap_or_default();
    let now_ms = monitor.map_or(0, |m| m.now_ms());
    let history_since_ms = monitor.and_then(|m| m.baseline_ms());
    let upstreams = recommend::live::gather(&shared.upstreams, monitor);
    let input = Input {
        period,
        now_ms,
        samples: &samples,
        history_since_ms,
        config: &shared.running.config,
        upstreams: &upstreams,
        inline_secrets: &shared.running.inline_secrets,
        // Cost accounting's view, once it exists.
        cost: None,
    };
    let recs = recommend::recommend(&input, &Thresholds::default());
    let count = |p: Priority| recs.iter().filter(|r| r.priority == p).count();
    let body = serde_json::json!({
        "period_ms": period.as_millis() as u64,
        "samples": samples.len(),
        "history_ms": history_since_ms.map(|since| now_ms.saturating_sub(since)),
        "summary": {
            "total": recs.len(),
            "critical": count(Priority::Critical),
            "high": count(Priority::High),
            "medium": count(Priority::Medium),
            "low": count(Priority::Low),
        },
        "recommendations": recs,
    });
    json(StatusCode::OK, Bytes::from(body.to_string()))
}
