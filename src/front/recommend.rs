//! `GET /admin/recommendations?period=1h|24h` (admins only): the recommendations
//! (`crate::monitor::recommend`) from the monitor's samples of the period, the upstreams as
//! they run, and the configuration in force, as JSON: `crate::report::recommendations`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;

use super::rescue::json;
use super::{Admin, Shared};

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
    match crate::report::parse_period(asked) {
        Ok(period) => {
            let body = serde_json::to_string(&shared.report.recommendations(period)).unwrap_or_default();
            json(StatusCode::OK, Bytes::from(body))
        }
        Err(error) => json(StatusCode::BAD_REQUEST, Bytes::from(serde_json::json!({ "error": error }).to_string())),
    }
}
