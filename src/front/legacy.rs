//! The legacy era over Streamable HTTP (2025-03-26 .. 2025-11-25 `basic/transports`):
//! `initialize` and sealed `Mcp-Session-Id` sessions, notifications and relayed answers (202),
//! requests answered with JSON or SSE, batches for 2025-03-26 sessions, the GET notification
//! stream, and `DELETE` to end a session.

use std::sync::Arc;
use std::time::Instant;

use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http::header::ACCEPT;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::mpsc;

use super::Shared;
use super::messages;
use super::rescue::{self, Answer, json, refuse, respond};
use super::respond::{Accepts, frames_response, notification_stream, sse_response};
use super::stream::spawn_call;
use crate::error::GatewayError;
use crate::pipeline::ctx::CallCtx;
use crate::pipeline::parts::{ClientEvent, ClientSide, LogLevel, Principal, Priority, Scope};
use crate::session::hub::Filter;
use crate::session::lifecycle;
use crate::session::registry::{SessionError, SessionState};
use crate::session::token::SessionClaims;
use crate::wire::batch::{is_batch, split_batch};
use crate::wire::jsonrpc::{self, FrameError, Kind, Message, Method};
use crate::wire::mcp::{self, Era};

/// Capacity of a request's event channel (progress, logs, relayed requests).
const EVENTS: usize = 64;

fn session_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(mcp::HEADER_SESSION_ID).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn session_refusal(e: SessionError) -> Response {
    refuse(&e.to_gateway(), None, Era::Legacy)
}

fn frame_refusal(e: FrameError) -> Response {
    let id = e.id().map(|id| id.as_bytes().to_vec());
    refuse(&GatewayError::from(e), id.as_deref(), Era::Legacy)
}

/// Handle a legacy POST.
pub async fn post(
    shared: Arc<Shared>,
    scope: Scope,
    principal: Principal,
    headers: &HeaderMap,
    body: Bytes,
    accept: Accepts,
) -> Response {
    if let Some(v) = headers.get(mcp::HEADER_PROTOCOL_VERSION).and_then(|v| v.to_str().ok())
        && mcp::era_of(v.trim()) != Some(Era::Legacy)
    {
        return refuse(&GatewayError::UnsupportedVersion { requested: v.to_string() }, None, Era::Legacy);
    }
    if is_batch(&body) {
        return batch(shared, scope, principal, headers, body).await;
    }
    let msg = match Message::parse(body) {
        Ok(m) => m,
        Err(e) => return frame_refusal(e),
    };
    if let Kind::Request { method: Method::Initialize, .. } = &msg.kind {
        return initialize(&shared, &scope, &principal, &msg);
    }
    let (claims, state) = match shared.sessions.resume(session_header(headers), &principal) {
        Ok(s) => s,
        Err(e) => return session_refusal(e),
    };
    match &msg.kind {
        Kind::Notification { method, params } => {
            notification(&state, method, params.as_ref().map(|p| msg.slice(p)));
            if *method == Method::RootsListChanged {
                // Its roots are its own: only its per-client upstream sessions hear of it.
                for up in shared.upstreams.iter() {
                    up.notify_client_session(state.link.key, method.as_str());
                }
            }
            accepted()
        }
        Kind::Response { outcome, .. } => {
            messages::deliver_answer(&state, &msg, outcome);
            accepted()
        }
        Kind::Request { .. } => {
            let streaming = accept.sse;
            let options = super::header_options(&shared, &principal, Some(headers));
            request(shared, scope, principal, options, claims, state, msg, streaming).await
        }
    }
}

fn accepted() -> Response {
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp
}

fn initialize(shared: &Shared, scope: &Scope, principal: &Principal, msg: &Message) -> Response {
    let id = msg.id().expect("requests have ids");
    let params = msg.params().map(|p| msg.slice(p)).unwrap_or_default();
    match lifecycle::initialize(&shared.upstreams, scope, params) {
        Ok(init) => {
            let session = match shared.sessions.create(init.version, init.flags, principal) {
                Ok(s) => s,
                Err(e) => return respond(rescue::error(Some(id.as_bytes()), &e.to_gateway(), Era::Legacy)),
            };
            let mut out = Vec::with_capacity(init.result.len() + 64);
            jsonrpc::write_result(&mut out, id.as_bytes(), &init.result);
            let mut resp = json(StatusCode::OK, Bytes::from(out));
            resp.headers_mut()
                .insert(mcp::HEADER_SESSION_ID, HeaderValue::try_from(session).expect("session ids are visible ASCII"));
            resp
        }
        Err(e) => respond(rescue::error(Some(id.as_bytes()), &e, Era::Legacy)),
    }
}

fn notification(state: &SessionState, method: &Method, params: Option<&[u8]>) {
    if *method == Method::NotificationsCancelled
        && let Some(id) = messages::cancelled_request(params)
    {
        state.cancel(&id);
    }
}

fn client_side(claims: &SessionClaims, state: &SessionState) -> ClientSide {
    ClientSide {
        era: Era::Legacy,
        version: claims.version,
        capabilities: Bytes::from(claims.flags.to_json()),
        log_level: state.log_level(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn request(
    shared: Arc<Shared>,
    scope: Scope,
    principal: Principal,
    (priority, idempotency_key): (Priority, Option<Arc<str>>),
    claims: SessionClaims,
    state: Arc<SessionState>,
    msg: Message,
    streaming: bool,
) -> Response {
    let Kind::Request { id, method, params } = msg.kind.clone() else { unreachable!("checked by the caller") };
    let id = msg.src.slice(id.0);
    let params = params.map(|p| msg.src.slice(p)).unwrap_or_default();
    if method == Method::LoggingSetLevel
        && let Some(level) = crate::wire::object::ObjectView::parse(&params)
            .ok()
            .and_then(|v| v.get_str(&params, "level").and_then(|l| LogLevel::parse(&l)))
    {
        state.set_log_level(level);
    }
    let (tx, rx) = mpsc::channel(EVENTS);
    let ctx = CallCtx {
        client: client_side(&claims, &state),
        scope,
        principal,
        events: streaming.then_some(tx),
        received: Instant::now(),
        priority,
        idempotency_key,
        session: Some(Arc::clone(&state)),
        param_headers: None,
    };
    let flight = state.track(id.clone());
    let cancel = flight.token.clone();
    let method_name = method.as_str().to_string();
    let id_for_answer = id.clone();
    let run = async move {
        let _flight = flight;
        let outcome = shared.call(method, params, ctx).await;
        rescue::answer(&id_for_answer, &method_name, outcome, Era::Legacy)
    };
    let frames = spawn_call(id, Era::Legacy, run, rx, Some(state), Some(cancel));
    frames_response(frames, Era::Legacy, streaming).await
}

/// A JSON-RPC batch: allowed only in sessions that negotiated 2025-03-26; requests run
/// concurrently and their answers come back as one JSON array. Bounded both ways: more than
/// `server.max_batch_size` messages is refused whole before anything runs, and answers
/// adding up to more than `server.max_batch_response_bytes` end the batch with one error
/// (calls still running are cancelled; those already answered have run).
async fn batch(shared: Arc<Shared>, scope: Scope, principal: Principal, headers: &HeaderMap, body: Bytes) -> Response {
    let spans = match split_batch(&body, shared.config.max_batch_size) {
        Ok(s) => s,
        Err(e) => return frame_refusal(e),
    };
    if spans.is_empty() {
        return refuse(&GatewayError::InvalidRequest("empty batch".into()), None, Era::Legacy);
    }
    let (claims, state) = match shared.sessions.resume(session_header(headers), &principal) {
        Ok(s) => s,
        Err(e) => return session_refusal(e),
    };
    let (priority, _) = super::header_options(&shared, &principal, Some(headers));
    let client = client_side(&claims, &state);
    if let Err(e) = batch_allowed(&shared, &client) {
        return refuse(&e, None, Era::Legacy);
    }
    match run_batch(shared, (scope, principal, priority), client, state, body, spans).await {
        Ok(Some(answers)) => json(StatusCode::OK, answers),
        Ok(None) => accepted(),
        Err(e) => refuse(&e, None, Era::Legacy),
    }
}

/// Whether a session speaking `client`'s revision may send batches (2025-03-26 only, while the
/// `batching` runtime switch is on).
///
/// Errors: [`GatewayError::InvalidRequest`] naming the revision that allows them, or that the
/// switch is off (the client's 2025-03-26 SDK then sends its requests one at a time).
pub(super) fn batch_allowed(shared: &Shared, client: &ClientSide) -> Result<(), GatewayError> {
    if !shared.switches.switches().on(crate::switches::Layer::Batching) {
        let reason = "JSON-RPC batches are switched off on this gateway (runtime switch `batching`); send each request on its own";
        return Err(GatewayError::InvalidRequest(reason.into()));
    }
    if client.version == mcp::BATCH_VERSION {
        return Ok(());
    }
    let reason = format!("JSON-RPC batches are only supported for protocol version {}", mcp::BATCH_VERSION);
    Err(GatewayError::InvalidRequest(reason))
}

/// Run the messages of a batch (`spans` of `body`, already split within `max_batch_size`) for
/// session `state` and return its answers as one JSON array (`None`: nothing to answer).
///
/// Errors: [`GatewayError::InvalidRequest`] when the answers add up to more than
/// `max_batch_response_bytes` (the calls still running are cancelled).
pub(super) async fn run_batch(
    shared: Arc<Shared>,
    (scope, principal, priority): (Scope, Principal, Priority),
    client: ClientSide,
    state: Arc<SessionState>,
    body: Bytes,
    spans: Vec<std::ops::Range<usize>>,
) -> Result<Option<Bytes>, GatewayError> {
    let mut calls = Vec::new();
    let mut answers: Vec<Answer> = Vec::new();
    for span in spans {
        match Message::parse(body.slice(span)) {
            Err(e) => {
                let id = e.id().map(|id| id.as_bytes().to_vec());
                answers.push(rescue::error(id.as_deref(), &GatewayError::from(e), Era::Legacy))
            }
            Ok(msg) => match &msg.kind {
                Kind::Request { method: Method::Initialize, id, .. } => answers.push(rescue::error(
                    Some(msg.slice(&id.0)),
                    &GatewayError::InvalidRequest("initialize cannot be part of a batch".into()),
                    Era::Legacy,
                )),
                Kind::Notification { method, params } => {
                    notification(&state, method, params.as_ref().map(|p| msg.slice(p)))
                }
                Kind::Response { outcome, .. } => {
                    messages::deliver_answer(&state, &msg, outcome);
                }
                Kind::Request { id, method, params } => {
                    let id = msg.src.slice(id.0.clone());
                    let params = params.as_ref().map(|p| msg.src.slice(p.clone())).unwrap_or_default();
                    let ctx = CallCtx {
                        client: ClientSide { log_level: state.log_level(), ..client.clone() },
                        scope: scope.clone(),
                        principal: principal.clone(),
                        events: None,
                        received: Instant::now(),
                        priority,
                        // One header cannot key several requests; keys come from each `_meta`.
                        idempotency_key: None,
                        session: Some(Arc::clone(&state)),
                        param_headers: None,
                    };
                    let shared = Arc::clone(&shared);
                    let method = method.clone();
                    let flight = state.track(id.clone());
                    calls.push(async move {
                        let name = method.as_str().to_string();
                        let outcome = tokio::select! {
                            o = shared.call(method, params, ctx) => o,
                            () = flight.token.cancelled() => return rescue::cancelled(&id, Era::Legacy),
                        };
                        rescue::answer(&id, &name, outcome, Era::Legacy)
                    });
                }
            },
        }
    }
    let limit = shared.config.max_batch_response_bytes;
    let mut total: usize = answers.iter().map(|a| a.message.len() + 1).sum();
    // Counted as they finish (not in order), so answers waiting behind a slow one count too.
    let mut running: FuturesUnordered<_> =
        calls.into_iter().enumerate().map(|(i, call)| async move { (i, call.await) }).collect();
    let mut finished = Vec::with_capacity(running.len());
    while let Some((i, answer)) = running.next().await {
        total += answer.message.len() + 1;
        if total > limit {
            // Dropping the rest cancels them (upstream too); nothing partial is sent.
            drop(running);
            let reason = format!(
                "the batch's answers exceed {limit} bytes (server.max_batch_response_bytes); send fewer requests per batch"
            );
            return Err(GatewayError::InvalidRequest(reason));
        }
        finished.push((i, answer));
    }
    finished.sort_unstable_by_key(|(i, _)| *i);
    answers.extend(finished.into_iter().map(|(_, a)| a));
    if answers.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(total + 2);
    out.push(b'[');
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&a.message);
    }
    out.push(b']');
    Ok(Some(Bytes::from(out)))
}

/// The standalone GET stream of a session of `principal`: list changes for its scope, until
/// the session ends or the gateway drains.
pub async fn get(shared: Arc<Shared>, scope: Scope, principal: &Principal, headers: &HeaderMap) -> Response {
    let wants_sse = headers
        .get_all(ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.contains("text/event-stream") || s.contains("*/*")));
    if !wants_sse {
        return refuse(&GatewayError::NotAcceptable("the GET stream is text/event-stream"), None, Era::Legacy);
    }
    let (_, state) = match shared.sessions.resume(session_header(headers), principal) {
        Ok(s) => s,
        Err(e) => return session_refusal(e),
    };
    let max = shared.config.max_streams_per_session;
    let Some(slot) = state.open_stream(max) else {
        let e = GatewayError::LimitReached {
            what: "this session has too many GET streams open; close one first",
            key: "max_streams_per_session",
            limit: max,
        };
        return refuse(&e, None, Era::Legacy);
    };
    let (tx, rx) = mpsc::channel(64);
    attach_stream(&state, tx.clone());
    let registration = shared.hub.register_session(
        scope,
        Filter::ALL,
        None,
        Some(Arc::clone(&state)),
        tx,
        crate::tenancy::view_arc(principal),
    );
    sse_response(notification_stream(rx, None, [state.ended.clone(), shared.draining.clone()], (registration, slot)))
}

/// Make `stream` the session's standalone stream for what its per-client upstream sessions
/// (or a shared one, for the one client with a call in flight) say outside a call: their
/// requests get the gateway's own unguessable id ([`messages::relay_request`]) and are
/// answered by a POST of this session, like requests relayed on a call's stream.
pub(super) fn attach_stream(state: &Arc<SessionState>, stream: mpsc::Sender<Bytes>) {
    let (events, mut rx) = mpsc::channel(EVENTS);
    state.link.attach(events);
    let state = Arc::clone(state);
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = rx.recv() => e,
                () = stream.closed() => None,
            };
            let msg = match event {
                None => return,
                Some(ClientEvent::Notification(n)) => n,
                Some(ClientEvent::Request { method, params, reply }) => {
                    messages::relay_request(&state, &method, params.as_deref(), reply)
                }
            };
            if stream.try_send(msg).is_err() {
                tracing::debug!("dropped a message for a slow or gone session stream");
            }
        }
    });
}

/// `DELETE`: end the session (only its own caller can).
pub fn delete(shared: &Shared, principal: &Principal, headers: &HeaderMap) -> Response {
    match shared.sessions.delete(session_header(headers), principal) {
        Ok(()) => {
            let mut resp = Response::new(axum::body::Body::empty());
            *resp.status_mut() = StatusCode::OK;
            resp
        }
        Err(e) => session_refusal(e),
    }
}
