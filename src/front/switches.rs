//! The runtime switches' admin API (admins only): `GET /admin/switches` shows every switch,
//! `POST /admin/switches/{layer}/{on|off}` turns one layer on or off, here at once and, with
//! `[redis]`, on every replica within about a second (`crate::switches::fleet`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;

use super::rescue::json;
use super::{Admin, Shared};
use crate::switches::Layer;

fn answer(status: StatusCode, body: &serde_json::Value) -> Response {
    json(status, Bytes::from(body.to_string()))
}

/// `GET /admin/switches`: `{"fleet_wide": bool, "switched_off": ["cache", …], "switches":
/// {"cache": {"on": false, "by": "ops", "at": "2025-…Z", "seq": 2}, "retry": {"on": true}, …}}`
/// (`by`, `at`, `seq` for a switch that was ever changed). 401 or 403 for a caller that is not
/// an admin.
pub async fn show(State(shared): State<Arc<Shared>>, _: Admin) -> Response {
    answer(StatusCode::OK, &body(&shared))
}

fn body(shared: &Shared) -> serde_json::Value {
    let control = &shared.switches;
    serde_json::json!({
        "fleet_wide": control.fleet_wide(),
        "switched_off": control.switches().off(),
        "switches": control.switches().state(),
    })
}

/// `POST /admin/switches/{layer}/{on|off}`: switch `layer` (`cache`, `coalesce`, `retry`,
/// `breaker`, `admission`, `rate_limits`, `batching`) as the calling admin (its
/// `Principal::label`, logged at warn level). The answer is [`show`]'s, with `"changed":
/// {"layer", "on", "by", "seq", "reach"}`; `reach` is `local` (no Redis), `fleet` (stored in
/// Redis) or `pending` (Redis did not answer: this replica only, written back once it does).
/// 404 for an unknown layer, 400 for a state other than `on` or `off`.
pub async fn switch(
    State(shared): State<Arc<Shared>>,
    Admin(caller): Admin,
    Path((layer, state)): Path<(String, String)>,
) -> Response {
    let Some(layer) = Layer::parse(&layer) else {
        let names: Vec<&str> = Layer::ALL.iter().map(|l| l.name()).collect();
        let error = format!("unknown layer; the switches are {}", names.join(", "));
        return answer(StatusCode::NOT_FOUND, &serde_json::json!({ "error": error }));
    };
    let on = match state.as_str() {
        "on" => true,
        "off" => false,
        _ => return answer(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": "the state is on or off" })),
    };
    let (change, reach) = shared.switches.switch(layer, on, caller.label()).await;
    let detail = serde_json::json!({ "on": change.on, "seq": change.seq, "reach": reach.name() });
    shared.audit_admin(&caller, "switch", Some(layer.name()), "ok", detail);
    let mut out = body(&shared);
    out["changed"] = serde_json::json!({
        "layer": layer.name(), "on": change.on, "by": change.by, "seq": change.seq, "reach": reach.name(),
    });
    answer(StatusCode::OK, &out)
}
