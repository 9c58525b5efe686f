//! The legacy HTTP+SSE transport (MCP 2024-11-05 `basic/transports`, "HTTP with SSE"):
//! `GET /sse` opens a session's stream, whose first event (`endpoint`) names the URI the
//! client POSTs its messages to (`/messages?sessionId=…`); each POST is answered 202 and its
//! answer travels on the stream as a `message` event, with the session's notifications and
//! the server-to-client requests relayed to it. Also served per upstream
//! (`/servers/{name}/sse`, `/servers/{name}/messages`).
//!
//! The session is an ordinary legacy session of the gateway (`session::registry`): its id is
//! the sealed, caller-bound session id (another caller presenting it gets 404, as for an
//! unknown id), it counts against `max_sessions_per_caller` and `max_streams_per_session`, and
//! it ends when its stream closes (per-client upstream sessions stop as after `DELETE`). What a
//! session can hold is bounded: [`OUT_BYTES`] of answers (and [`OUT_QUEUE`] notifications)
//! waiting for the stream, at most `max_calls_per_sse_session` calls running, and a client
//! that does not read its stream for `send_timeout` loses the session.

mod session;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

pub use session::{OUT_BYTES, OUT_QUEUE, SseSessions};
use session::{SseSession, open};

use super::rescue::{self, refuse};
use super::respond::{check_post, read_post_body};
use super::{Caller, Shared, legacy, messages};
use crate::error::GatewayError;
use crate::pipeline::ctx::CallCtx;
use crate::pipeline::parts::{ClientSide, Principal, Scope};
use crate::wire::batch::{is_batch, split_batch};
use crate::wire::jsonrpc::{self, Kind, Message, Method};
use crate::wire::mcp::Era;

/// Capacity of one call's event channel (progress, logs, relayed requests).
const EVENTS: usize = 64;

/// `GET /sse`.
pub async fn open_gateway(State(s): State<Arc<Shared>>, Caller(principal): Caller, h: HeaderMap) -> Response {
    open(s, Scope::Gateway, "/messages".into(), principal, &h)
}

/// `GET /servers/{name}/sse`.
pub async fn open_upstream(
    State(s): State<Arc<Shared>>,
    Caller(principal): Caller,
    Path(name): Path<String>,
    h: HeaderMap,
) -> Response {
    match s.upstream_scope(&name, &principal) {
        Ok(scope) => open(s, scope, format!("/servers/{name}/messages"), principal, &h),
        Err(e) => refuse(&e, None, Era::Legacy),
    }
}

/// `POST /messages?sessionId=…`.
pub async fn post_gateway(
    State(s): State<Arc<Shared>>,
    Caller(principal): Caller,
    RawQuery(q): RawQuery,
    req: Request,
) -> Response {
    post(s, Scope::Gateway, principal, q.as_deref(), req).await
}

/// `POST /servers/{name}/messages?sessionId=…`.
pub async fn post_upstream(
    State(s): State<Arc<Shared>>,
    Caller(principal): Caller,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    req: Request,
) -> Response {
    match s.upstream_scope(&name, &principal) {
        Ok(scope) => post(s, scope, principal, q.as_deref(), req).await,
        Err(e) => refuse(&e, None, Era::Legacy),
    }
}

/// The `sessionId` of a query string (sealed ids need no percent-decoding: one that does is
/// not ours).
fn session_id(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|pair| pair.strip_prefix("sessionId=")).filter(|v| !v.is_empty())
}

fn accepted() -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp
}

/// A POSTed message of an open session: checked like any legacy POST (drain, `Content-Type`,
/// session, body size), answered 202, its answer sent on the stream.
async fn post(shared: Arc<Shared>, scope: Scope, principal: Principal, query: Option<&str>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(e) = check_post(&shared, &parts.headers) {
        return refuse(&e, None, Era::Legacy);
    }
    let Some(id) = session_id(query) else {
        return refuse(&GatewayError::SessionRequired, None, Era::Legacy);
    };
    // A session of another transport, another scope, or whose stream is gone: not found, the
    // same answer as for an id that never existed (looked up first, so an id without a stream
    // never gets node-local state here).
    let Some(session) = shared.sse.get(id).filter(|s| s.scope == scope && !s.state.ended.is_cancelled()) else {
        return refuse(&GatewayError::SessionNotFound, None, Era::Legacy);
    };
    // Only its own caller may use it (another gets the same 404); keeps it from idling out.
    if let Err(e) = shared.sessions.resume(Some(id), &principal) {
        return refuse(&e.to_gateway(), None, Era::Legacy);
    }
    let body = match read_post_body(&shared, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let options = super::header_options(&shared, &principal, Some(&parts.headers));
    if is_batch(&body) {
        return batch(shared, session, (scope, principal, options.0), body);
    }
    let msg = match Message::parse(body) {
        Ok(m) => m,
        Err(e) => {
            let id = e.id().map(|id| id.as_bytes().to_vec());
            return refuse(&GatewayError::from(e), id.as_deref(), Era::Legacy);
        }
    };
    match &msg.kind {
        Kind::Notification { method, params } => {
            if *method == Method::NotificationsCancelled
                && let Some(id) = messages::cancelled_request(params.as_ref().map(|p| msg.slice(p)))
            {
                session.state.cancel(&id);
            }
            if *method == Method::RootsListChanged {
                for up in shared.upstreams.iter() {
                    up.notify_client_session(session.state.link.key, method.as_str());
                }
            }
        }
        Kind::Response { outcome, .. } => {
            messages::deliver_answer(&session.state, &msg, outcome);
        }
        Kind::Request { method: Method::Initialize, .. } => {
            let answer = initialize(&shared, &session, &msg);
            tokio::spawn(async move { session.send(answer).await });
        }
        Kind::Request { .. } => {
            let Ok(permit) = Arc::clone(&session.calls).try_acquire_owned() else {
                return too_many_calls(&shared, msg.id().map(|i| i.as_bytes().to_vec()));
            };
            spawn_call(shared, session, (scope, principal, options), msg, permit);
        }
    }
    accepted()
}

fn too_many_calls(shared: &Shared, id: Option<Vec<u8>>) -> Response {
    let e = GatewayError::LimitReached {
        what: "this HTTP+SSE session has too many calls running; wait for an answer first",
        key: "max_calls_per_sse_session",
        limit: shared.config.max_calls_per_sse_session,
    };
    refuse(&e, id.as_deref(), Era::Legacy)
}

/// Answer `initialize` (once per session): settle the revision and capabilities the session's
/// calls carry.
fn initialize(shared: &Shared, session: &SseSession, msg: &Message) -> Bytes {
    let id = msg.id().expect("requests have ids");
    let params = msg.params().map(|p| msg.slice(p)).unwrap_or_default();
    let mut settled = session.client.lock().expect("client lock");
    if settled.is_some() {
        let e = GatewayError::InvalidRequest("this session is initialized already".into());
        return rescue::error(Some(id.as_bytes()), &e, Era::Legacy).message;
    }
    match crate::session::lifecycle::initialize(&shared.upstreams, &session.scope, params) {
        Ok(init) => {
            *settled = Some(ClientSide::legacy(init.version, Bytes::from(init.flags.to_json())));
            let mut out = Vec::with_capacity(init.result.len() + 64);
            jsonrpc::write_result(&mut out, id.as_bytes(), &init.result);
            Bytes::from(out)
        }
        Err(e) => rescue::error(Some(id.as_bytes()), &e, Era::Legacy).message,
    }
}

type Options = (Scope, Principal, (crate::pipeline::parts::Priority, Option<Arc<str>>));

/// Run one request on its own task: its events and then its answer go to the stream; a
/// cancelled request (or an ended session) gets no answer.
fn spawn_call(
    shared: Arc<Shared>,
    session: Arc<SseSession>,
    options: Options,
    msg: Message,
    permit: OwnedSemaphorePermit,
) {
    let (scope, principal, (priority, idempotency_key)) = options;
    let Kind::Request { id, method, params } = msg.kind.clone() else { return };
    let id = msg.src.slice(id.0);
    let params = params.map(|p| msg.src.slice(p)).unwrap_or_default();
    if method == Method::LoggingSetLevel
        && let Some(level) = crate::wire::object::ObjectView::parse(&params)
            .ok()
            .and_then(|v| v.get_str(&params, "level").and_then(|l| crate::pipeline::parts::LogLevel::parse(&l)))
    {
        session.state.set_log_level(level);
    }
    tokio::spawn(async move {
        let _permit = permit;
        let (tx, mut rx) = mpsc::channel(EVENTS);
        let state = Arc::clone(&session.state);
        let ctx = CallCtx {
            client: session.client(),
            scope,
            principal,
            events: Some(tx),
            received: Instant::now(),
            priority,
            idempotency_key,
            session: Some(Arc::clone(&state)),
            param_headers: None,
        };
        let flight = state.track(id.clone());
        let name = method.as_str().to_string();
        let call = shared.call(method, params, ctx);
        tokio::pin!(call);
        let answer = loop {
            tokio::select! {
                biased;
                () = flight.token.cancelled() => return,
                () = state.ended.cancelled() => return,
                Some(event) = rx.recv() => session.event(event).await,
                outcome = &mut call => break rescue::answer(&id, &name, outcome, Era::Legacy),
            }
        };
        while let Ok(event) = rx.try_recv() {
            session.event(event).await;
        }
        session.send(answer.message).await;
    });
}

/// A JSON-RPC batch (2025-03-26 sessions): run like a Streamable HTTP batch, within the same
/// caps; its answers go to the stream as one array.
fn batch(
    shared: Arc<Shared>,
    session: Arc<SseSession>,
    who: (Scope, Principal, crate::pipeline::parts::Priority),
    body: Bytes,
) -> Response {
    let spans = match split_batch(&body, shared.config.max_batch_size) {
        Ok(s) if s.is_empty() => return refuse(&GatewayError::InvalidRequest("empty batch".into()), None, Era::Legacy),
        Ok(s) => s,
        Err(e) => return refuse(&GatewayError::from(e), None, Era::Legacy),
    };
    let client = session.client();
    if let Err(e) = legacy::batch_allowed(&shared, &client) {
        return refuse(&e, None, Era::Legacy);
    }
    let Ok(permits) = Arc::clone(&session.calls).try_acquire_many_owned(spans.len() as u32) else {
        return too_many_calls(&shared, None);
    };
    tokio::spawn(async move {
        let _permits = permits;
        let state = Arc::clone(&session.state);
        let run = legacy::run_batch(shared, who, client, Arc::clone(&state), body, spans);
        let answers = tokio::select! {
            a = run => a,
            () = state.ended.cancelled() => return,
        };
        match answers {
            Ok(Some(answers)) => session.send(answers).await,
            Ok(None) => {}
            Err(e) => session.send(rescue::error(None, &e, Era::Legacy).message).await,
        }
    });
    accepted()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_id_is_read_from_the_query() {
        assert_eq!(session_id(Some("sessionId=abc")), Some("abc"));
        assert_eq!(session_id(Some("x=1&sessionId=abc&y=2")), Some("abc"));
        assert_eq!(session_id(Some("sessionId=")), None);
        assert_eq!(session_id(Some("session_id=abc")), None);
        assert_eq!(session_id(None), None);
    }
}
