//! `GET /admin/alerts[?history=1]` (admins only): the alerts pending and firing, and with
//! `history=1` the resolved ones kept, as JSON. 404 when the monitor or the alerts are off.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;

use super::rescue::json;
use super::{Admin, Shared};

/// `GET /admin/alerts`: `{"firing": n, "active": [Alert…], "rules": n, "webhooks": [{"url",
/// "delivered", "failed", "dropped"}]}`, `active` holding the firing alerts first (worst
/// severity first), then the pending ones; with `history=1` (or `true`) also `"history":
/// [Alert…]`, the resolved alerts kept, newest first. An `Alert` is
/// `crate::monitor::alerts::Alert` (docs/operations.md, "Alerts"). 401 or 403 for a caller
/// that is not an admin.
pub async fn alerts(State(shared): State<Arc<Shared>>, _: Admin, uri: http::Uri) -> Response {
    let Some(alerts) = &shared.alerts else {
        let body = serde_json::json!({ "error": "alerts are off ([alerts] or [monitor] enabled = false)" });
        return json(StatusCode::NOT_FOUND, Bytes::from(body.to_string()));
    };
    let history = uri.query().unwrap_or("").split('&').any(|p| p == "history=1" || p == "history=true");
    let mut body = serde_json::json!({
        "firing": alerts.firing(),
        "active": alerts.active(),
        "rules": alerts.rules().len(),
        "webhooks": alerts.deliveries(),
    });
    if history {
        body["history"] = serde_json::json!(alerts.history());
    }
    json(StatusCode::OK, Bytes::from(body.to_string()))
}
