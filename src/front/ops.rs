//! The operational endpoints: `/healthz` (liveness), `/readyz` (readiness; every upstream's and
//! replica's state and the runtime switches for admins only), `/metrics` (Prometheus), and
//! `POST /admin/cache/clear` (admins only).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::rescue::json;
use super::{Admin, Caller, Shared};
use crate::cache::key::ClearScope;
use crate::observe::metrics::METRICS;

/// The most of a probe's `User-Agent` or `X-Forwarded-For` written to the log, in bytes.
const PROBE_HEADER_MAX: usize = 200;

/// Logs a health probe's caller at debug level: its `User-Agent` and `X-Forwarded-For`
/// (the load balancer or orchestrator asking), each cut to [`PROBE_HEADER_MAX`] bytes and
/// `-` when absent or not visible ASCII. Probes carry no credentials, so nothing to redact.
fn log_probe(path: &'static str, headers: &HeaderMap) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let field = |name: &str| {
        // `to_str` admits visible ASCII only, so any byte index is a char boundary.
        let value = headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-");
        value[..value.len().min(PROBE_HEADER_MAX)].to_owned()
    };
    tracing::debug!(path, user_agent = %field("user-agent"), forwarded_for = %field("x-forwarded-for"), "health probe");
}

/// Liveness: the process serves HTTP. Never depends on upstreams. The caller is logged at
/// debug level ([`log_probe`]).
pub async fn healthz(headers: HeaderMap) -> Response {
    log_probe("/healthz", &headers);
    json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// Readiness: 200 when at least one upstream is connected (or none is configured), else 503;
/// `?strict=1` requires all. Probes carry no credentials, so anyone gets the verdict
/// (`{"ready": bool}`, plus `"degraded": ["store", "audit"]` while the `[store]` PostgreSQL
/// does not answer — known keys are served from memory, unknown ones fail — or the audit
/// sink's last append failed — records wait in the bounded buffer; still ready); an admin's
/// body also shows the audit log's `status`, `buffered`, `dropped_total` and `on_audit_failure`; the body lists every upstream's and replica's state (PIDs, breakers,
/// error texts, Redis, `alerts_firing`) only for an admin caller (an `admin` API key that passes the edge's
/// Host/Origin checks, or anyone where authentication is off). Every body names the runtime
/// switches that are off (`"switched_off": ["cache"]`, absent when none is: layer names only,
/// switching a layer off is no reason to be unready); an admin's shows every switch with who
/// changed it and when (`"switches"`).
pub async fn readyz(State(shared): State<Arc<Shared>>, headers: HeaderMap, uri: http::Uri) -> Response {
    log_probe("/readyz", &headers);
    let strict = uri.query().is_some_and(|q| q.split('&').any(|p| p == "strict=1" || p == "strict=true"));
    let total = shared.upstreams.iter().count();
    let up_count = shared.upstreams.iter().filter(|u| u.status().is_up()).count();
    let draining = shared.draining.is_cancelled();
    let ready = crate::report::health::ready(draining, total, up_count, strict);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let admin =
        shared.stack.edge.check(header(HOST), header(ORIGIN), header(AUTHORIZATION)).is_ok_and(|p| p.is_admin());
    let store = shared.tenancy.as_ref().map(|t| t.store.health());
    let off = shared.switches.switches().off();
    let degraded: Vec<&str> = [
        ("store", store.as_ref().is_some_and(|h| h.degraded)),
        ("audit", shared.audit.as_ref().is_some_and(|a| a.failing())),
    ]
    .into_iter()
    .filter_map(|(name, down)| down.then_some(name))
    .collect();
    if !admin {
        let mut body = serde_json::json!({ "ready": ready });
        if !degraded.is_empty() {
            body["degraded"] = degraded.into();
        }
        if !off.is_empty() {
            body["switched_off"] = off.into();
        }
        return json(status, Bytes::from(body.to_string()));
    }
    let upstreams: serde_json::Map<String, serde_json::Value> =
        shared.upstreams.iter().map(|up| (up.name.to_string(), crate::report::health::upstream_detail(up))).collect();
    let mut body = serde_json::json!({ "ready": ready, "draining": draining, "upstreams": upstreams });
    if !off.is_empty() {
        body["switched_off"] = off.into();
    }
    body["switches"] = shared.switches.switches().state();
    if let (Some(h), Some(tenancy)) = (store, &shared.tenancy) {
        let running: serde_json::Map<String, serde_json::Value> = tenancy
            .upstreams
            .running()
            .iter()
            .map(|tu| (tu.name.to_string(), crate::report::health::upstream_detail(tu.upstream())))
            .collect();
        body["store"] = serde_json::json!({
            "status": if h.degraded { "degraded" } else { "up" }, "listening": h.listening,
            "cached_keys": h.cached, "pending_last_used": h.pending_last_used, "tenant_upstreams": running,
        });
    }
    if let Some(audit) = &shared.audit {
        body["audit"] = serde_json::json!({
            "status": if audit.failing() { "failing" } else { "up" }, "buffered": audit.depth(),
            "dropped_total": audit.dropped_total(), "on_audit_failure": audit.policy(),
        });
    }
    if !degraded.is_empty() {
        body["degraded"] = degraded.into();
    }
    if let Some(alerts) = &shared.alerts {
        body["alerts_firing"] = alerts.firing().into();
    }
    if let Some(degraded) = shared.store.redis_degraded() {
        // Redis is an optimisation: its absence is reported, never a reason to be unready.
        body["redis"] = if degraded { "degraded" } else { "up" }.into();
    }
    json(status, Bytes::from(body.to_string()))
}

/// `POST /admin/cache/clear[?upstream=U[&tool=T]]`: drop cached results — of one tool, of one
/// upstream, or all — here and, through the shared generations, on every replica within a
/// second. Needs an admin caller ([`Admin`]: 401 without a key, 403 for a client key). 404 for
/// an unknown upstream.
pub async fn clear_cache(
    State(shared): State<Arc<Shared>>,
    Admin(caller): Admin,
    Query(q): Query<ClearScope>,
) -> Response {
    let store = &shared.store;
    let upstreams = &shared.upstreams;
    match (&q.upstream, &q.tool) {
        (Some(up), tool) => {
            if upstreams.get(up).is_none() {
                let body = serde_json::json!({ "error": format!("unknown upstream {up:?}") });
                return json(StatusCode::NOT_FOUND, Bytes::from(body.to_string()));
            }
            store.invalidate(up, tool.as_deref()).await;
        }
        (None, Some(_)) => {
            let body = serde_json::json!({ "error": "tool needs upstream" });
            return json(StatusCode::BAD_REQUEST, Bytes::from(body.to_string()));
        }
        (None, None) => store.clear(upstreams.iter().map(|u| Arc::clone(&u.name))).await,
    }
    tracing::info!(caller = caller.label(), upstream = ?q.upstream, tool = ?q.tool, "cache cleared");
    let detail = serde_json::json!({ "upstream": q.upstream, "tool": q.tool });
    shared.audit_admin(&caller, "cache/clear", q.upstream.as_deref(), "ok", detail);
    let body = serde_json::json!({ "cleared": { "upstream": q.upstream, "tool": q.tool } });
    json(StatusCode::OK, Bytes::from(body.to_string()))
}

/// Prometheus metrics on the main listener, for a caller that passes the edge (an API key
/// when keys are configured).
pub async fn metrics(State(shared): State<Arc<Shared>>, _: Caller) -> Response {
    render_metrics(&shared)
}

/// Prometheus metrics on `[server] metrics_listen`, which asks for no key: keep that address
/// where only the scraper reaches it.
pub async fn open_metrics(State(shared): State<Arc<Shared>>) -> Response {
    render_metrics(&shared)
}

fn render_metrics(shared: &Shared) -> Response {
    for up in shared.upstreams.iter() {
        METRICS.upstream(&up.name, up.status().is_up(), up.restarts(), up.in_flight());
        if let Some((live, _)) = up.client_sessions() {
            METRICS.client_sessions(&up.name, live);
        }
        if let Some(bulkhead) = up.bulkhead() {
            METRICS.admission(&up.name, bulkhead.in_use(), bulkhead.queued());
        }
        for r in up.replicas() {
            METRICS.replica(&up.name, r.index, r.breaker.state().gauge(), r.status().is_up());
        }
    }
    if let Some(admission) = &shared.stack.admission {
        METRICS.admission("gateway", admission.in_use(), admission.queued());
    }
    METRICS.connections(shared.sessions.active(), shared.hub.len());
    let store = &shared.store;
    let (entries, bytes) = store.l1_size();
    METRICS.cache_size(entries, bytes, store.redis_degraded().unwrap_or(false));
    let mut resp = METRICS.encode().into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    resp
}
