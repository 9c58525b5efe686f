//! Streamable HTTP (MCP `basic/transports`): the routes (each guarded handler takes the edge
//! step's [`Caller`] first, so it runs before a body is read), the transport checks every POST
//! passes (drain, `Accept`, `Content-Type`, body size), and the choice of era that decides
//! which handler answers.
//!
//! `/mcp` serves the merged catalog; `/servers/{name}/mcp` serves one upstream unprefixed.
//! `/sse` + `/messages` (and `/servers/{name}/sse` + `/servers/{name}/messages`) serve the
//! same over the 2024-11-05 HTTP+SSE transport ([`legacy_sse`]).
//! Each request is routed to the legacy or the modern handler by its `MCP-Protocol-Version`
//! header, its session id, and whether its body carries the modern `_meta` envelope.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::HeaderMap;

use super::rescue::refuse;
use super::respond::{check_post, read_post_body};
use super::{Caller, Shared};
use super::{dashboard, legacy, legacy_sse, modern, ops};
use crate::error::GatewayError;
use crate::pipeline::parts::{Principal, Scope};
use crate::wire::mcp::{self, Era};

/// The gateway's HTTP routes over `shared`. `/healthz` and `/readyz` are open (probes carry no
/// credentials); every other handler takes a [`Caller`], so the edge runs before anything else.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/mcp", get(get_gateway).post(post_gateway).delete(delete_gateway))
        .route("/servers/{name}/mcp", get(get_upstream).post(post_upstream).delete(delete_upstream))
        .route("/sse", get(legacy_sse::open_gateway))
        .route("/messages", post(legacy_sse::post_gateway))
        .route("/servers/{name}/sse", get(legacy_sse::open_upstream))
        .route("/servers/{name}/messages", post(legacy_sse::post_upstream))
        .route("/metrics", get(ops::metrics))
        .route("/admin/cache/clear", post(ops::clear_cache))
        .route("/admin/monitor", get(super::monitor::monitor))
        .route("/admin/alerts", get(super::alerts::alerts))
        .route("/admin/recommendations", get(super::recommend::recommendations))
        .route("/admin/performance", get(super::report::performance))
        .route("/admin/health", get(super::report::health))
        .route("/admin/drain", post(super::report::drain))
        .route("/admin/store/{kind}/{action}", post(super::admin_store::run))
        .route("/admin/switches", get(super::switches::show))
        .route("/admin/switches/{layer}/{state}", post(super::switches::switch))
        .route("/admin/approvals", get(super::approvals::list))
        .route("/admin/approvals/{id}/{decision}", post(super::approvals::decide))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/dashboard", get(dashboard::page))
        .route("/dashboard/assets/{name}", get(dashboard::asset))
        .merge(super::oauth::metadata_routes())
        .fallback(|| async { refuse(&GatewayError::NotFound("MCP is served at /mcp".into()), None, Era::Legacy) })
        .with_state(shared)
}

/// The routes of `[server] metrics_listen`: `/metrics` without API keys (for Prometheus) and
/// `/healthz`; nothing else is served there (404).
pub fn metrics_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(ops::open_metrics))
        .route("/healthz", get(ops::healthz))
        .fallback(|| async {
            refuse(&GatewayError::NotFound("this listener serves /metrics".into()), None, Era::Legacy)
        })
        .with_state(shared)
}

/// Which era a request belongs to (see the module doc).
fn era_of_request(headers: &HeaderMap, body: &[u8]) -> Era {
    let has_envelope = || memchr::memmem::find(body, mcp::META_PROTOCOL_VERSION.as_bytes()).is_some();
    match headers.get(mcp::HEADER_PROTOCOL_VERSION).and_then(|v| v.to_str().ok()).map(str::trim) {
        Some(v) => match mcp::era_of(v) {
            Some(era) => era,
            None if has_envelope() => Era::Modern,
            None => Era::Legacy,
        },
        None if headers.contains_key(mcp::HEADER_SESSION_ID) => Era::Legacy,
        None if has_envelope() && !crate::wire::batch::is_batch(body) => Era::Modern,
        None => Era::Legacy,
    }
}

fn modern_header(headers: &HeaderMap) -> bool {
    headers.get(mcp::HEADER_PROTOCOL_VERSION).and_then(|v| v.to_str().ok()).and_then(|v| mcp::era_of(v.trim()))
        == Some(Era::Modern)
}

async fn post_in(shared: Arc<Shared>, scope: Scope, principal: Principal, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let accept = match check_post(&shared, &headers) {
        Ok(a) => a,
        Err(e) => return refuse(&e, None, Era::Legacy),
    };
    let body = match read_post_body(&shared, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match era_of_request(&headers, &body) {
        Era::Modern => modern::post(shared, scope, principal, &headers, body, accept).await,
        Era::Legacy => legacy::post(shared, scope, principal, &headers, body, accept).await,
    }
}

async fn post_gateway(State(s): State<Arc<Shared>>, Caller(principal): Caller, req: Request) -> Response {
    post_in(s, Scope::Gateway, principal, req).await
}

async fn post_upstream(
    State(s): State<Arc<Shared>>,
    Caller(principal): Caller,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    match s.upstream_scope(&name, &principal) {
        Ok(scope) => post_in(s, scope, principal, req).await,
        Err(e) => refuse(&e, None, Era::Legacy),
    }
}

async fn get_in(shared: Arc<Shared>, scope: Scope, principal: Principal, headers: HeaderMap) -> Response {
    if modern_header(&headers) {
        return refuse(&GatewayError::MethodNotAllowed, None, Era::Modern);
    }
    legacy::get(shared, scope, &principal, &headers).await
}

async fn get_gateway(State(s): State<Arc<Shared>>, Caller(principal): Caller, h: HeaderMap) -> Response {
    get_in(s, Scope::Gateway, principal, h).await
}

async fn get_upstream(
    State(s): State<Arc<Shared>>,
    Caller(principal): Caller,
    Path(name): Path<String>,
    h: HeaderMap,
) -> Response {
    match s.upstream_scope(&name, &principal) {
        Ok(scope) => get_in(s, scope, principal, h).await,
        Err(e) => refuse(&e, None, Era::Legacy),
    }
}

fn delete_in(shared: &Shared, principal: &Principal, headers: &HeaderMap) -> Response {
    if modern_header(headers) {
        return refuse(&GatewayError::MethodNotAllowed, None, Era::Modern);
    }
    legacy::delete(shared, principal, headers)
}

async fn delete_gateway(State(s): State<Arc<Shared>>, Caller(principal): Caller, h: HeaderMap) -> Response {
    delete_in(&s, &principal, &h)
}

async fn delete_upstream(
    State(s): State<Arc<Shared>>,
    Caller(principal): Caller,
    Path(name): Path<String>,
    h: HeaderMap,
) -> Response {
    match s.upstream_scope(&name, &principal) {
        Ok(_) => delete_in(&s, &principal, &h),
        Err(e) => refuse(&e, None, Era::Legacy),
    }
}
