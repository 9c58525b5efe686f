//! The admin API's reports and the drain (admins only): `GET /admin/performance[?period=P]`,
//! `GET /admin/health` (computed by `crate::report`, the same functions the `sekisho` tools
//! answer with), and `POST /admin/drain`, which starts the same graceful drain as SIGTERM.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;

use super::rescue::json;
use super::{Admin, Shared};

/// `GET /admin/performance[?period=P]`: `crate::report::performance::Performance` over the last
/// `P` (a duration from 1s to 7d, default 1h) as JSON: `overall_health`, `reasons`,
/// `cache_hit_rate`, `average_response_time` (ms), `error_rate`, `cost_efficiency`, … (docs/
/// operations.md, "Performance"). 400 for a period that does not parse; 401 or 403 for a
/// caller that is not an admin.
pub async fn performance(State(shared): State<Arc<Shared>>, _: Admin, uri: http::Uri) -> Response {
    let asked = uri.query().unwrap_or("").split('&').find_map(|p| p.strip_prefix("period="));
    match crate::report::parse_period(asked) {
        Ok(period) => json(StatusCode::OK, to_json(&shared.report.performance(period))),
        Err(why) => json(StatusCode::BAD_REQUEST, to_json(&serde_json::json!({ "error": why }))),
    }
}

/// `GET /admin/health`: `crate::report::HealthReport` as JSON — the verdict (`status`:
/// healthy, degraded, unhealthy) and its `reasons`, readiness, every upstream's and replica's
/// state (down ones first, at most 256), the store, Redis, the switches that are off and the
/// alerts firing. Always 200 when answered (the verdict is in the body; `/readyz` is the
/// probe). 401 or 403 for a caller that is not an admin.
pub async fn health(State(shared): State<Arc<Shared>>, _: Admin) -> Response {
    json(StatusCode::OK, to_json(&shared.report.health()))
}

/// `POST /admin/drain`: start draining, as on SIGTERM — stop accepting connections, refuse
/// new calls (503, -32012 shutting down), let calls in flight finish within `[server]
/// shutdown_grace`, stop the upstreams; then the process exits 0. Answers 202 `{"draining":
/// true, "grace_ms": …, "already": bool}` (`already`: a drain had begun; nothing more is
/// done). 401 or 403 for a caller that is not an admin.
pub async fn drain(State(shared): State<Arc<Shared>>, Admin(caller): Admin) -> Response {
    let already = shared.draining.is_cancelled();
    if !already {
        tracing::info!(caller = caller.label(), "drain requested through the admin API; draining");
        shared.draining.cancel();
    }
    let grace_ms = shared.config.shutdown_grace.as_millis() as u64;
    shared.audit_admin(&caller, "drain", None, "ok", serde_json::json!({ "already": already }));
    json(
        StatusCode::ACCEPTED,
        to_json(&serde_json::json!({ "draining": true, "grace_ms": grace_ms, "already": already })),
    )
}

fn to_json(value: &impl serde::Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("reports serialize"))
}
