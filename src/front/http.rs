//! Streamable HTTP (MCP `basic/transports`): routes, edge checks, body limits, content
//! negotiation, and the operational endpoints `/healthz`, `/readyz`, `/metrics`.
//!
//! `/mcp` serves the merged catalog; `/servers/{name}/mcp` serves one upstream unprefixed.
//! Each request is routed to the legacy or the modern handler by its `MCP-Protocol-Version`
//! header, its session id, and whether its body carries the modern `_meta` envelope.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use http::header::{ACCEPT, ALLOW, CONTENT_TYPE, HOST, ORIGIN, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use tokio::sync::mpsc;

use super::Shared;
use super::guard::Refusal;
use super::rescue::{Answer, http_status, plain_error};
use super::stream::{Frame, KEEPALIVE};
use crate::observe::metrics::METRICS;
use crate::pipeline::ctx::{Principal, Scope};
use crate::wire::mcp::{self, Era, code};
use crate::wire::sse;

/// The gateway's HTTP routes over `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/mcp", get(get_gateway).post(post_gateway).delete(delete_gateway))
        .route("/servers/{name}/mcp", get(get_upstream).post(post_upstream).delete(delete_upstream))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/admin/cache/clear", axum::routing::post(clear_cache))
        .fallback(|| async {
            refuse(StatusCode::NOT_FOUND, code::METHOD_NOT_FOUND, "Not found: MCP is served at /mcp")
        })
        .with_state(shared)
}

/// DNS-rebinding and API-key checks, before anything else (a function the guarded handlers
/// call first, rather than a middleware layer: no extra boxed future per request).
///
/// Errors: a ready 403 or 401 response.
fn edge(shared: &Shared, headers: &HeaderMap) -> Result<Principal, Box<Response>> {
    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let verdict = shared
        .guard
        .check_site(header(HOST), header(ORIGIN))
        .and_then(|()| shared.guard.authenticate(header(http::header::AUTHORIZATION)));
    match verdict {
        Ok(principal) => Ok(principal),
        Err(Refusal::Forbidden) => {
            Err(Box::new(refuse(StatusCode::FORBIDDEN, code::FORBIDDEN, "Forbidden: Host or Origin is not allowed")))
        }
        Err(Refusal::Unauthorized) => {
            let mut resp =
                refuse(StatusCode::UNAUTHORIZED, code::FORBIDDEN, "Unauthorized: a valid bearer API key is required");
            resp.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(Box::new(resp))
        }
    }
}

/// An HTTP-level refusal with a JSON-RPC error body (`id: null`).
pub fn refuse(status: StatusCode, code: i64, message: &str) -> Response {
    METRICS.rejected(status.as_u16());
    json(status, plain_error(None, code, message, None).message)
}

/// A JSON response.
pub fn json(status: StatusCode, body: Bytes) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A JSON-RPC answer as a JSON response with the era's status mapping.
pub fn answer_response(answer: Answer, era: Era) -> Response {
    let overloaded = answer.error_code == Some(code::OVERLOADED);
    let mut resp = json(http_status(answer.error_code, era), answer.message);
    if overloaded {
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// What the client's `Accept` header allows.
#[derive(Clone, Copy, Debug)]
pub struct Accepts {
    /// `application/json`.
    pub json: bool,
    /// `text/event-stream`.
    pub sse: bool,
}

/// Read `Accept`; a missing header or a wildcard accepts both.
pub fn accepts(headers: &HeaderMap) -> Accepts {
    let all: Vec<&str> = headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
    if all.is_empty() {
        return Accepts { json: true, sse: true };
    }
    let all = all.join(",");
    let mut a = Accepts { json: false, sse: false };
    for part in all.split(',') {
        let media = part.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "*/*" => {
                return Accepts { json: true, sse: true };
            }
            "application/json" | "application/*" => a.json = true,
            "text/event-stream" | "text/*" => a.sse = true,
            _ => {}
        }
    }
    a
}

/// Answer from a running call's frames: JSON when the answer comes first, SSE when a message
/// must be streamed before it (or a keep-alive is due).
pub async fn frames_response(mut frames: mpsc::Receiver<Frame>, era: Era, sse_ok: bool) -> Response {
    let first = match frames.recv().await {
        Some(Frame::Final(answer)) => return answer_response(answer, era),
        // A cancelled request is owed no answer; an empty stream says so where the client
        // accepts streams, the -32800 error otherwise.
        Some(Frame::Cancelled(_)) if sse_ok => return sse_response(Body::empty()),
        Some(Frame::Cancelled(answer)) => return answer_response(answer, era),
        Some(frame) => frame,
        None => {
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL_ERROR, "the call ended without an answer");
        }
    };
    let head = futures::stream::once(async move { first });
    let rest = futures::stream::unfold(frames, |mut f| async move { f.recv().await.map(|frame| (frame, f)) });
    let body = head.chain(rest).scan(false, |done, frame| {
        let out = if *done {
            None
        } else {
            let mut buf = Vec::new();
            match frame {
                Frame::Event(data) => sse::write_event(&mut buf, &data, None),
                Frame::Final(answer) => {
                    *done = true;
                    sse::write_event(&mut buf, &answer.message, None);
                }
                Frame::Keepalive => buf.extend_from_slice(sse::KEEPALIVE),
                Frame::Cancelled(_) => *done = true,
            }
            Some(Ok::<_, Infallible>(Bytes::from(buf)))
        };
        futures::future::ready(out)
    });
    sse_response(Body::from_stream(body))
}

/// An SSE response around `body`.
pub fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// An SSE stream of standalone notifications (legacy GET stream, modern listen stream) that
/// ends when `end` fires; keep-alive comments keep idle proxies from closing it.
pub fn notification_stream(
    rx: mpsc::Receiver<Bytes>,
    first: Option<Bytes>,
    end: [tokio_util::sync::CancellationToken; 2],
    keep: impl Send + 'static,
) -> Body {
    struct State<K> {
        rx: mpsc::Receiver<Bytes>,
        first: Option<Bytes>,
        end: [tokio_util::sync::CancellationToken; 2],
        _keep: K,
    }
    let state = State { rx, first, end, _keep: keep };
    let stream = futures::stream::unfold(state, |mut s| async move {
        if let Some(first) = s.first.take() {
            let mut buf = Vec::new();
            sse::write_event(&mut buf, &first, None);
            return Some((Ok::<_, Infallible>(Bytes::from(buf)), s));
        }
        let next = tokio::select! {
            m = s.rx.recv() => m,
            () = s.end[0].cancelled() => None,
            () = s.end[1].cancelled() => None,
            () = tokio::time::sleep(KEEPALIVE) => Some(Bytes::new()),
        };
        let msg = next?;
        let mut buf = Vec::new();
        if msg.is_empty() {
            buf.extend_from_slice(sse::KEEPALIVE);
        } else {
            sse::write_event(&mut buf, &msg, None);
        }
        Some((Ok(Bytes::from(buf)), s))
    });
    Body::from_stream(stream)
}

/// Read a request body within the configured limit.
///
/// Errors: a ready 413 response when the body is too large, 400 when it cannot be read.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_REQUEST,
            &format!("Request body is larger than {limit} bytes"),
        )),
        Err(e) => Err(refuse(StatusCode::BAD_REQUEST, code::PARSE_ERROR, &format!("Unreadable request body: {e}"))),
    }
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
        None if has_envelope() && !crate::wire::jsonrpc::is_batch(body) => Era::Modern,
        None => Era::Legacy,
    }
}

fn modern_header(headers: &HeaderMap) -> bool {
    headers.get(mcp::HEADER_PROTOCOL_VERSION).and_then(|v| v.to_str().ok()).and_then(|v| mcp::era_of(v.trim()))
        == Some(Era::Modern)
}

fn method_not_allowed() -> Response {
    let mut resp = refuse(
        StatusCode::METHOD_NOT_ALLOWED,
        code::METHOD_NOT_FOUND,
        "Method not allowed: the 2026-07-28 transport uses POST only",
    );
    resp.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
    resp
}

fn upstream_scope(shared: &Shared, name: &str) -> Result<Scope, Box<Response>> {
    match shared.router.upstreams().get(name) {
        Some(up) => Ok(Scope::Upstream(Arc::clone(&up.name))),
        None => Err(Box::new(refuse(
            StatusCode::NOT_FOUND,
            code::METHOD_NOT_FOUND,
            &format!("Not found: no upstream named {name:?}"),
        ))),
    }
}

async fn post(shared: Arc<Shared>, scope: Scope, principal: Principal, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    if shared.draining.is_cancelled() {
        let mut resp = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            code::OVERLOADED,
            "The gateway is shutting down; retry on another replica",
        );
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return resp;
    }
    let accept = accepts(&headers);
    if !accept.json && !accept.sse {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            code::INVALID_REQUEST,
            "Not Acceptable: accept application/json or text/event-stream",
        );
    }
    if let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !ct.trim().to_ascii_lowercase().starts_with("application/json")
    {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_REQUEST,
            "Unsupported Media Type: send application/json",
        );
    }
    let body = match read_body(body, shared.config.max_body_bytes).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    match era_of_request(&headers, &body) {
        Era::Modern => super::modern::post(shared, scope, principal, &headers, body, accept).await,
        Era::Legacy => super::legacy::post(shared, scope, principal, &headers, body, accept).await,
    }
}

async fn post_gateway(State(s): State<Arc<Shared>>, req: Request) -> Response {
    match edge(&s, req.headers()) {
        Ok(principal) => post(s, Scope::Gateway, principal, req).await,
        Err(resp) => *resp,
    }
}

async fn post_upstream(State(s): State<Arc<Shared>>, Path(name): Path<String>, req: Request) -> Response {
    let principal = match edge(&s, req.headers()) {
        Ok(p) => p,
        Err(resp) => return *resp,
    };
    match upstream_scope(&s, &name) {
        Ok(scope) => post(s, scope, principal, req).await,
        Err(resp) => *resp,
    }
}

async fn get_stream(shared: Arc<Shared>, scope: Scope, headers: HeaderMap) -> Response {
    if let Err(resp) = edge(&shared, &headers) {
        return *resp;
    }
    if modern_header(&headers) {
        return method_not_allowed();
    }
    super::legacy::get(shared, scope, &headers).await
}

async fn get_gateway(State(s): State<Arc<Shared>>, h: HeaderMap) -> Response {
    get_stream(s, Scope::Gateway, h).await
}

async fn get_upstream(State(s): State<Arc<Shared>>, Path(name): Path<String>, h: HeaderMap) -> Response {
    if let Err(resp) = edge(&s, &h) {
        return *resp;
    }
    match upstream_scope(&s, &name) {
        Ok(scope) => get_stream(s, scope, h).await,
        Err(resp) => *resp,
    }
}

async fn delete(shared: Arc<Shared>, headers: HeaderMap) -> Response {
    if let Err(resp) = edge(&shared, &headers) {
        return *resp;
    }
    if modern_header(&headers) {
        return method_not_allowed();
    }
    super::legacy::delete(&shared, &headers)
}

async fn delete_gateway(State(s): State<Arc<Shared>>, h: HeaderMap) -> Response {
    delete(s, h).await
}

async fn delete_upstream(State(s): State<Arc<Shared>>, Path(name): Path<String>, h: HeaderMap) -> Response {
    if let Err(resp) = edge(&s, &h) {
        return *resp;
    }
    match upstream_scope(&s, &name) {
        Ok(_) => delete(s, h).await,
        Err(resp) => *resp,
    }
}

/// Liveness: the process serves HTTP. Never depends on upstreams.
async fn healthz() -> Response {
    json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// Readiness: 200 when at least one upstream is connected (or none is configured), else 503;
/// `?strict=1` requires all. The body lists every upstream's status.
async fn readyz(State(shared): State<Arc<Shared>>, uri: http::Uri) -> Response {
    let strict = uri.query().is_some_and(|q| q.split('&').any(|p| p == "strict=1" || p == "strict=true"));
    let mut upstreams = serde_json::Map::new();
    let (mut total, mut up_count) = (0, 0);
    for up in shared.router.upstreams().iter() {
        total += 1;
        let status = up.status();
        let mut entry = serde_json::json!({
            "status": status.name(), "restarts": up.restarts(), "in_flight": up.in_flight()
        });
        match &status {
            crate::upstream::Status::Up { era, version } => {
                up_count += 1;
                entry["era"] = format!("{era:?}").to_lowercase().into();
                entry["version"] = (*version).into();
            }
            crate::upstream::Status::Down { reason } => entry["reason"] = reason.clone().into(),
            crate::upstream::Status::Starting | crate::upstream::Status::Stopped => {}
        }
        let replicas: Vec<serde_json::Value> = up
            .replicas()
            .iter()
            .map(|r| {
                let mut v = serde_json::json!({
                    "replica": r.index, "status": r.status().name(), "breaker": r.breaker.state().name(),
                    "in_flight": r.outstanding(), "restarts": r.restarts(),
                });
                if let Some(pid) = r.connection().and_then(|c| c.pid()) {
                    v["pid"] = pid.into();
                }
                v
            })
            .collect();
        entry["replicas"] = replicas.into();
        upstreams.insert(up.name.to_string(), entry);
    }
    let draining = shared.draining.is_cancelled();
    let ready = !draining && (total == 0 || if strict { up_count == total } else { up_count > 0 });
    let mut body = serde_json::json!({ "ready": ready, "draining": draining, "upstreams": upstreams });
    if let Some(degraded) = shared.router.store().redis_degraded() {
        // Redis is an optimisation: its absence is reported, never a reason to be unready.
        body["redis"] = if degraded { "degraded" } else { "up" }.into();
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json(status, Bytes::from(body.to_string()))
}

/// `POST /admin/cache/clear[?upstream=U[&tool=T]]`: drop cached results — of one tool, of one
/// upstream, or all — here and, through the shared generations, on every replica within a
/// second. Guarded like `/mcp` (bearer key when keys are configured). 404 for an unknown upstream.
async fn clear_cache(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<crate::cache::ClearScope>,
) -> Response {
    if let Err(resp) = edge(&shared, &headers) {
        return *resp;
    }
    let store = shared.router.store();
    let upstreams = shared.router.upstreams();
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
    tracing::info!(upstream = ?q.upstream, tool = ?q.tool, "cache cleared");
    let body = serde_json::json!({ "cleared": { "upstream": q.upstream, "tool": q.tool } });
    json(StatusCode::OK, Bytes::from(body.to_string()))
}

/// Prometheus metrics.
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(resp) = edge(&shared, &headers) {
        return *resp;
    }
    for up in shared.router.upstreams().iter() {
        METRICS.upstream(&up.name, up.status().is_up(), up.restarts(), up.in_flight());
        METRICS.admission(&up.name, up.bulkhead().in_use(), up.bulkhead().queued());
        for r in up.replicas() {
            METRICS.replica(&up.name, r.index, r.breaker.state().gauge(), r.status().is_up());
        }
    }
    METRICS.connections(shared.sessions.active(), shared.hub.len());
    let store = shared.router.store();
    let (entries, bytes) = store.l1_size();
    METRICS.cache_size(entries, bytes, store.redis_degraded().unwrap_or(false));
    let mut resp = METRICS.encode().into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    resp
}
