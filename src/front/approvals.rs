//! The approval queue's admin API (admins only; `crate::approvals`): `GET /admin/approvals`
//! lists the calls held on this replica for an operator, `POST /admin/approvals/{id}/approve`
//! and `POST /admin/approvals/{id}/deny` decide one. Decisions are audited by
//! `Approvals::decide`, with the deciding admin.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;

use super::rescue::json;
use super::{Admin, Shared};
use crate::approvals::Decision;

/// Characters of an operator's note kept (on a denial).
const MAX_NOTE_CHARS: usize = 256;

fn answer(status: StatusCode, body: &serde_json::Value) -> Response {
    json(status, Bytes::from(body.to_string()))
}

/// `GET /admin/approvals`: `{"pending": [{"id", "caller", "tenant", "upstream", "tool",
/// "arguments_digest", "arguments", "reason", "held_at", "expires_in_ms"}, …], "max_pending",
/// "timeout_ms"}`, oldest first; only this replica's held calls. 401 or 403 for a caller that
/// is not an admin.
pub async fn list(State(shared): State<Arc<Shared>>, _: Admin) -> Response {
    let approvals = &shared.approvals;
    answer(
        StatusCode::OK,
        &serde_json::json!({
            "pending": approvals.list(),
            "max_pending": approvals.config.max_pending,
            "timeout_ms": approvals.config.timeout.as_millis() as u64,
        }),
    )
}

/// `POST /admin/approvals/{id}/{approve|deny}` (a denial may carry `{"note": "…"}`, at most
/// 256 characters kept, which the refused caller reads): `{"decision": "approved"|"denied",
/// "call": {…as listed}}`. 404 when `id` names no call held here (decided already, expired,
/// malformed, or held by another replica); 400 for another verb or a body that is not JSON.
pub async fn decide(
    State(shared): State<Arc<Shared>>,
    Admin(caller): Admin,
    Path((id, verb)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let note = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => v["note"].as_str().map(|n| n.chars().take(MAX_NOTE_CHARS).collect::<String>()),
            Err(_) => {
                return answer(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": "the body is not JSON" }));
            }
        }
    };
    let decision = match verb.as_str() {
        "approve" => Decision::Approved(caller),
        "deny" => Decision::Denied(caller, note),
        _ => {
            let error = "the decision is approve or deny";
            return answer(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": error }));
        }
    };
    let word = if matches!(decision, Decision::Approved(_)) { "approved" } else { "denied" };
    match shared.approvals.decide(&id, decision) {
        Some(call) => answer(StatusCode::OK, &serde_json::json!({ "decision": word, "call": call })),
        None => answer(
            StatusCode::NOT_FOUND,
            &serde_json::json!({
                "error": "no call with this id awaits approval here (decided, expired, or held by another replica)"
            }),
        ),
    }
}
