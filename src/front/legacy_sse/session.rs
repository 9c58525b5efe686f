//! An open HTTP+SSE session: the table of open sessions, what waits for a session's stream
//! (bounded in bytes for call messages, in count for notifications), opening one on
//! `GET /sse`, and its stream, whose end ends the session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use http::header::ACCEPT;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::GatewayError;
use crate::front::rescue::refuse;
use crate::front::respond::sse_response;
use crate::front::stream::KEEPALIVE;
use crate::front::{Shared, legacy, messages};
use crate::pipeline::parts::{ClientEvent, ClientSide, Principal, Scope};
use crate::session::hub::{Filter, Registration};
use crate::session::registry::{SessionState, StreamSlot};
use crate::session::token::ClientFlags;
use crate::wire::mcp::{self, Era};
use crate::wire::sse;

/// Bytes of call answers and events waiting for a session's stream at most (an answer larger
/// than this waits for the queue to empty); a message waits for room at most `send_timeout`,
/// then the session ends (its client does not read).
pub const OUT_BYTES: usize = 8 << 20;
/// Notifications not tied to a call (list changes, what per-client upstream sessions say)
/// waiting for a session's stream at most; more are dropped.
pub const OUT_QUEUE: usize = 64;
/// How often a draining stream looks whether its calls are done.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// The open HTTP+SSE sessions of this replica, by session id. Each entry lives exactly as long
/// as its stream, so the table is bounded by the callers' session caps.
#[derive(Default)]
pub struct SseSessions {
    open: Mutex<HashMap<String, Arc<SseSession>>>,
}

/// One open HTTP+SSE session.
pub(super) struct SseSession {
    /// The catalog it addresses (`/sse` or `/servers/{name}/sse`); its POSTs must use the same.
    pub(super) scope: Scope,
    pub(super) state: Arc<SessionState>,
    /// Complete JSON-RPC messages of calls for the stream, each holding its bytes of
    /// [`OUT_BYTES`] until the stream takes it.
    out: mpsc::Sender<(Bytes, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    /// The client side settled by `initialize`; `None` before it.
    pub(super) client: Mutex<Option<ClientSide>>,
    pub(super) calls: Arc<Semaphore>,
    send_timeout: Duration,
}

impl SseSessions {
    pub(super) fn get(&self, id: &str) -> Option<Arc<SseSession>> {
        self.open.lock().expect("sse lock").get(id).cloned()
    }

    /// Sessions with an open stream.
    pub fn len(&self) -> usize {
        self.open.lock().expect("sse lock").len()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SseSession {
    /// Queue `msg` for the stream, waiting at most `send_timeout` for room; a client that
    /// leaves it full that long does not read, and its session ends.
    pub(super) async fn send(&self, msg: Bytes) {
        let need = msg.len().clamp(1, OUT_BYTES) as u32;
        let queued = async {
            let Ok(permit) = Arc::clone(&self.budget).acquire_many_owned(need).await else { return };
            let _ = self.out.send((msg, permit)).await;
        };
        if tokio::time::timeout(self.send_timeout, queued).await.is_err() {
            tracing::debug!("an HTTP+SSE client did not read its stream within send_timeout; ending its session");
            self.state.end();
        }
    }

    pub(super) async fn event(&self, event: ClientEvent) {
        let msg = match event {
            ClientEvent::Notification(n) => n,
            ClientEvent::Request { method, params, reply } => {
                messages::relay_request(&self.state, &method, params.as_deref(), reply)
            }
        };
        self.send(msg).await;
    }

    pub(super) fn client(&self) -> ClientSide {
        let settled = self.client.lock().expect("client lock").clone();
        let mut client = settled.unwrap_or_else(|| ClientSide::legacy(TRANSPORT_VERSION, Bytes::from_static(b"{}")));
        client.log_level = self.state.log_level();
        client
    }
}

/// The revision that defined this transport; sealed into the session id until `initialize`
/// settles the one in use (kept node-local: the stream is too).
const TRANSPORT_VERSION: &str = mcp::LEGACY_VERSIONS[0];

/// Open a session and its stream; `messages` is the path its POSTs go to.
pub(super) fn open(
    shared: Arc<Shared>,
    scope: Scope,
    messages: String,
    principal: Principal,
    headers: &HeaderMap,
) -> Response {
    if shared.draining.is_cancelled() {
        return refuse(&GatewayError::ShuttingDown, None, Era::Legacy);
    }
    let accept: Vec<&str> = headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
    if !accept.is_empty() && !accept.iter().any(|v| v.contains("text/event-stream") || v.contains("*/*")) {
        return refuse(&GatewayError::NotAcceptable("the HTTP+SSE stream is text/event-stream"), None, Era::Legacy);
    }
    let session = shared
        .sessions
        .create(TRANSPORT_VERSION, ClientFlags::default(), &principal)
        .and_then(|id| shared.sessions.resume(Some(&id), &principal).map(|(_, state)| (id, state)));
    let (id, state) = match session {
        Ok(s) => s,
        Err(e) => return refuse(&e.to_gateway(), None, Era::Legacy),
    };
    let max = shared.config.max_streams_per_session;
    let Some(slot) = state.open_stream(max) else {
        let _ = shared.sessions.delete(Some(&id), &principal);
        let e = GatewayError::LimitReached {
            what: "this session has too many streams open",
            key: "max_streams_per_session",
            limit: max,
        };
        return refuse(&e, None, Era::Legacy);
    };
    let (out, rx) = mpsc::channel(OUT_QUEUE);
    let (notes, notes_rx) = mpsc::channel(OUT_QUEUE);
    // List changes, resource updates, and what its per-client upstream sessions say outside
    // a call: all on this stream, dropped (never queued without bound) when it is full.
    let registration = shared.hub.register_session(
        scope.clone(),
        Filter::ALL,
        None,
        Some(Arc::clone(&state)),
        notes.clone(),
        crate::tenancy::view_arc(&principal),
    );
    legacy::attach_stream(&state, notes);
    let session = Arc::new(SseSession {
        scope,
        state: Arc::clone(&state),
        out,
        budget: Arc::new(Semaphore::new(OUT_BYTES)),
        client: Mutex::new(None),
        calls: Arc::new(Semaphore::new(shared.config.max_calls_per_sse_session)),
        send_timeout: shared.config.send_timeout,
    });
    shared.sse.open.lock().expect("sse lock").insert(id.clone(), Arc::clone(&session));
    let mut first = Vec::new();
    sse::write_typed_event(&mut first, "endpoint", format!("{messages}?sessionId={id}").as_bytes(), None);
    let open = Open { shared, id, principal, session, _registration: registration, _slot: slot };
    sse_response(stream_body(Bytes::from(first), (rx, notes_rx), open))
}

/// What an open stream holds; dropping it (the client went away, the session ended, the
/// gateway drained) ends the session as `DELETE` would.
struct Open {
    shared: Arc<Shared>,
    id: String,
    principal: Principal,
    session: Arc<SseSession>,
    _registration: Registration,
    _slot: StreamSlot,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.shared.sse.open.lock().expect("sse lock").remove(&self.id);
        // Past `max_ended_sessions_per_caller` the id is not revoked, but its state ends here
        // and no stream serves it any more, so `/messages` answers 404 all the same.
        let _ = self.shared.sessions.delete(Some(&self.id), &self.principal);
        self.session.state.end();
    }
}

/// The stream: the `endpoint` event, then the session's messages, keep-alives while idle;
/// it ends with the session, or once the gateway drains and the session's calls are done.
fn stream_body(first: Bytes, (rx, notes): (Queue, mpsc::Receiver<Bytes>), open: Open) -> Body {
    struct S {
        first: Option<Bytes>,
        rx: Queue,
        notes: mpsc::Receiver<Bytes>,
        open: Open,
    }
    let stream = futures::stream::unfold(S { first: Some(first), rx, notes, open }, |mut s| async move {
        if let Some(first) = s.first.take() {
            return Some((Ok::<_, std::convert::Infallible>(first), s));
        }
        let ended = s.open.session.state.ended.clone();
        let draining = s.open.shared.draining.clone();
        let max_calls = s.open.shared.config.max_calls_per_sse_session;
        loop {
            let idle = if draining.is_cancelled() { DRAIN_POLL } else { KEEPALIVE };
            let mut buf = Vec::new();
            tokio::select! {
                m = s.rx.recv() => sse::write_event(&mut buf, &m?.0, None),
                Some(m) = s.notes.recv() => sse::write_event(&mut buf, &m, None),
                () = ended.cancelled() => return None,
                () = draining.cancelled(), if idle == KEEPALIVE => continue,
                () = tokio::time::sleep(idle) => {
                    if !draining.is_cancelled() {
                        buf.extend_from_slice(sse::KEEPALIVE);
                    } else if s.open.session.calls.available_permits() == max_calls && s.rx.is_empty() {
                        return None;
                    } else {
                        continue;
                    }
                }
            }
            return Some((Ok(Bytes::from(buf)), s));
        }
    });
    Body::from_stream(stream)
}

/// The receiving end of [`SseSession::out`].
type Queue = mpsc::Receiver<(Bytes, OwnedSemaphorePermit)>;
