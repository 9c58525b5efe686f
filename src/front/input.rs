//! A legacy upstream's server-to-client requests, carried to a modern client as
//! `input_required` results (2026-07-28 `basic/utilities/input-required`, the multi round-trip
//! request): a modern client has no stream the upstream could ask on, so when the upstream asks
//! (sampling, elicitation, roots) during a call, the gateway *parks* the call — it keeps running
//! in its own task, its upstream request still pending — and answers the client with
//! `resultType: "input_required"`, the upstream's requests under keys of the gateway's, and a
//! `requestState` that names the parked call. The client sends the same request again with
//! `inputResponses`; the gateway answers the upstream's pending requests with them and goes on
//! streaming the call: its result, or the next `input_required`.
//!
//! The `requestState` is sealed (XChaCha20-Poly1305 under the session key, like session ids)
//! and carries the parked call's 128-bit random id and its caller's tag: another caller, a
//! tampered state, or a state whose call is gone gets -32602. Parked calls are node-local (a
//! client must come back to the same replica) and bounded: [`MAX_PARKED_PER_CALLER`] per
//! caller, each for at most `[server] input_timeout`; a call whose client never comes back is
//! dropped, which cancels it upstream.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::rescue::{self, Answer};
use super::stream::{Frame, KEEPALIVE};
use crate::error::GatewayError;
use crate::pipeline::parts::{ClientAnswer, ClientEvent, Reply};
use crate::session::token::SessionSealer;
use crate::wire::jsonrpc::{Method, write_result};
use crate::wire::mcp::Era;
use crate::wire::object::{ObjectView, ObjectWriter};

/// Parked calls one caller may hold at once; one more is refused (the upstream's request gets
/// an error answer, so its call fails rather than waits).
pub const MAX_PARKED_PER_CALLER: usize = 32;
/// The sealing domain of `requestState` tokens (see [`SessionSealer::seal_blob`]).
const STATE_DOMAIN: u8 = 0x81;
/// How long after an upstream's request the gateway waits for more before it answers the
/// client: requests made together (concurrently) travel in one `input_required`.
const GATHER: Duration = Duration::from_millis(150);
/// Requests the upstream may have pending on one parked call.
const MAX_PENDING: usize = 16;

/// A parked call's identity: 128 random bits.
type ParkedId = [u8; 16];

/// The same request, sent again by its client with `inputResponses`.
struct Resume {
    /// The new request's JSON-RPC id (the answer carries it).
    id: Bytes,
    /// The raw `inputResponses` object, if the client sent one.
    responses: Option<Bytes>,
    /// Where the new request's frames go.
    out: mpsc::Sender<Frame>,
}

struct ParkedCall {
    caller: [u8; 16],
    method: Method,
    name: Option<String>,
    resume: mpsc::Sender<Resume>,
}

/// The parked calls of this replica.
#[derive(Default)]
pub struct Parked {
    calls: Mutex<HashMap<ParkedId, ParkedCall>>,
}

/// Why a continuation could not be resumed: -32602 to the client.
fn unknown_state() -> GatewayError {
    GatewayError::InvalidParams(
        "requestState does not name a call waiting for input here (it expired, was altered, belongs to another \
         caller, or was issued by another replica)"
            .into(),
    )
}

impl Parked {
    /// Whether `state` is a `requestState` of this gateway's (sealed with `sealer`'s key),
    /// whatever it names.
    pub fn is_ours(sealer: &SessionSealer, state: &str) -> bool {
        sealer.open_blob(STATE_DOMAIN, state).is_some()
    }

    /// Resume the parked call named by `state` for the request `id` of `caller`, which must be
    /// the same `method` on the same `name` as the parked one; returns the frames of the call
    /// from here on.
    ///
    /// Errors: [`GatewayError::InvalidParams`] when the state is not a live parked call of
    /// this caller's for this request.
    pub fn resume(
        &self,
        sealer: &SessionSealer,
        state: &str,
        caller: [u8; 16],
        (method, name): (&Method, Option<&str>),
        id: Bytes,
        responses: Option<Bytes>,
    ) -> Result<mpsc::Receiver<Frame>, GatewayError> {
        let opened = sealer.open_blob(STATE_DOMAIN, state).ok_or_else(unknown_state)?;
        let parked: ParkedId = opened.as_slice().try_into().map_err(|_| unknown_state())?;
        let calls = self.calls.lock().expect("parked lock");
        let call = calls.get(&parked).filter(|c| c.caller == caller).ok_or_else(unknown_state)?;
        if call.method != *method || call.name.as_deref() != name {
            return Err(GatewayError::InvalidParams(
                "requestState belongs to another request: send the same request again with inputResponses".into(),
            ));
        }
        let (out, frames) = mpsc::channel(64);
        call.resume.try_send(Resume { id, responses, out }).map_err(|_| unknown_state())?;
        Ok(frames)
    }

    fn park(
        &self,
        caller: [u8; 16],
        method: &Method,
        name: Option<&str>,
    ) -> Option<(ParkedId, mpsc::Receiver<Resume>)> {
        let mut calls = self.calls.lock().expect("parked lock");
        if calls.values().filter(|c| c.caller == caller).count() >= MAX_PARKED_PER_CALLER {
            return None;
        }
        let id: ParkedId = rand::random();
        let (resume, rx) = mpsc::channel(1);
        calls.insert(id, ParkedCall { caller, method: method.clone(), name: name.map(str::to_string), resume });
        Some((id, rx))
    }

    fn unpark(&self, id: &ParkedId) {
        self.calls.lock().expect("parked lock").remove(id);
    }

    /// Parked calls now (for tests and `/readyz`).
    pub fn len(&self) -> usize {
        self.calls.lock().expect("parked lock").len()
    }

    /// Whether no call is parked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The tool or prompt name, or the resource URI, of a request that can be answered with
/// `input_required` (`tools/call`, `prompts/get`, `resources/read`); `None` for any other.
pub fn request_name(method: &Method, params: &crate::pipeline::parts::Params) -> Option<String> {
    let key = match method {
        Method::ToolsCall | Method::PromptsGet => "name",
        Method::ResourcesRead => "uri",
        _ => return None,
    };
    params.str(key).map(|n| n.into_owned())
}

/// Whether a client that declared `capabilities` (raw JSON object) can be asked anything:
/// it declared sampling, elicitation or roots.
pub fn may_be_asked(capabilities: &[u8]) -> bool {
    ["sampling", "elicitation", "roots"].iter().any(|c| crate::upstream::mux::declared(capabilities, c))
}

/// What one call being run for a modern client needs to be parked.
pub struct Askable {
    /// The front (its parked calls, its sealer, `[server] input_timeout`).
    pub shared: Arc<super::Shared>,
    /// The caller's tag.
    pub caller: [u8; 16],
    /// The request's method and tool/prompt name or URI (a continuation must name the same).
    pub request: (Method, Option<String>),
    /// Whether the client accepts an SSE answer (else notifications during the call are
    /// dropped and nothing but the answer is sent).
    pub stream: bool,
}

/// Run `call` (a modern client's request `id`) on its own task and return its frames, like
/// `stream::spawn_call`, except that a server-to-client request from the upstream parks the
/// call and answers the client with `input_required` (see the module docs).
pub fn spawn_askable(
    id: Bytes,
    call: impl Future<Output = Result<Reply, GatewayError>> + Send + 'static,
    mut events: mpsc::Receiver<ClientEvent>,
    ask: Askable,
) -> mpsc::Receiver<Frame> {
    let (out, frames) = mpsc::channel(64);
    tokio::spawn(async move {
        let method = ask.request.0.as_str();
        tokio::pin!(call);
        let (mut id, mut out) = (id, out);
        let mut parked: Option<(ParkedId, mpsc::Receiver<Resume>)> = None;
        let mut pending: Vec<(String, oneshot::Sender<ClientAnswer>, Bytes)> = Vec::new();
        let mut asked = 0u32;
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        let (registry, timeout) = (&ask.shared.parked, ask.shared.config.input_timeout);
        let finish = |parked: &Option<(ParkedId, mpsc::Receiver<Resume>)>| {
            if let Some((pid, _)) = parked {
                registry.unpark(pid);
            }
        };
        loop {
            let frame = tokio::select! {
                biased;
                () = out.closed() => { finish(&parked); return }
                Some(event) = events.recv() => match event {
                    ClientEvent::Notification(n) if ask.stream => Frame::Event(n),
                    ClientEvent::Notification(_) => continue,
                    ClientEvent::Request { method: asked_method, params, reply } => {
                        // Requests the upstream makes together (e.g. concurrently) travel in
                        // one input_required: gather those that follow within GATHER.
                        // The call is polled meanwhile: its upstream answer reader is what
                        // reads the next requests off the upstream's stream.
                        let mut new = vec![(asked_method, params, reply)];
                        let mut done: Option<Result<Reply, GatewayError>> = None;
                        let gather = tokio::time::sleep(GATHER);
                        tokio::pin!(gather);
                        loop {
                            tokio::select! {
                                outcome = &mut call, if done.is_none() => done = Some(outcome),
                                Some(e) = events.recv() => match e {
                                    ClientEvent::Request { method, params, reply } => new.push((method, params, reply)),
                                    ClientEvent::Notification(n) if ask.stream => { let _ = out.send(Frame::Event(n)).await; }
                                    ClientEvent::Notification(_) => {}
                                },
                                () = &mut gather => break,
                            }
                        }
                        if let Some(outcome) = done.take() {
                            // The call ended meanwhile (its upstream gave up on the answers):
                            // nothing to ask.
                            let _ = out.send(Frame::Final(rescue::answer(&id, method, outcome, Era::Modern))).await;
                            finish(&parked);
                            return;
                        }
                        for (m, params, reply) in new {
                            if pending.len() >= MAX_PENDING {
                                continue; // dropping `reply` answers the upstream with an error
                            }
                            asked += 1;
                            let mut request = Vec::with_capacity(64 + params.as_ref().map_or(0, Bytes::len));
                            let mut w = ObjectWriter::begin(&mut request);
                            w.string("method", &m);
                            if let Some(p) = &params {
                                w.raw("params", p);
                            }
                            w.end();
                            pending.push((format!("sekisho-{asked}"), reply, Bytes::from(request)));
                        }
                        if parked.is_none() {
                            let Some((pid, rx)) = registry.park(ask.caller, &ask.request.0, ask.request.1.as_deref()) else {
                                pending.clear();
                                continue;
                            };
                            parked = Some((pid, rx));
                        }
                        let (pid, resume) = parked.as_mut().expect("parked above");
                        let pid = *pid;
                        // A fresh requestState each round (the same parked call, a new token).
                        let state = || ask.shared.sessions.sealer().seal_blob(STATE_DOMAIN, &pid, timeout + Duration::from_secs(60));
                        let _ = out.send(Frame::Final(input_required(&id, &pending, &state()))).await;
                        // Wait for the client to come back (or the call to end, or time to run out).
                        let deadline = tokio::time::sleep(timeout);
                        tokio::pin!(deadline);
                        loop {
                            tokio::select! {
                                r = resume.recv() => {
                                    let Some(r) = r else { registry.unpark(&pid); return };
                                    (id, out) = (r.id, r.out);
                                    answer_pending(&mut pending, r.responses.as_deref());
                                    if let Some(outcome) = done.take() {
                                        let _ = out.send(Frame::Final(rescue::answer(&id, method, outcome, Era::Modern))).await;
                                        registry.unpark(&pid);
                                        return;
                                    }
                                    if pending.is_empty() {
                                        break;
                                    }
                                    // Some requests are still unanswered: ask for those again.
                                    let _ = out.send(Frame::Final(input_required(&id, &pending, &state()))).await;
                                }
                                outcome = &mut call, if done.is_none() => done = Some(outcome),
                                () = &mut deadline => { registry.unpark(&pid); return }
                            }
                        }
                        continue;
                    }
                },
                outcome = &mut call => Frame::Final(rescue::answer(&id, method, outcome, Era::Modern)),
                _ = keepalive.tick(), if ask.stream => Frame::Keepalive,
            };
            let last = matches!(frame, Frame::Final(_));
            if out.send(frame).await.is_err() || last {
                finish(&parked);
                return;
            }
        }
    });
    frames
}

/// Send each pending request the answer the client gave under its key (an object: the
/// request's result); keep the ones it did not answer.
fn answer_pending(pending: &mut Vec<(String, oneshot::Sender<ClientAnswer>, Bytes)>, responses: Option<&[u8]>) {
    let Some(raw) = responses else { return };
    let Ok(view) = ObjectView::parse(raw) else { return };
    let mut still = Vec::with_capacity(pending.len());
    for (key, reply, request) in pending.drain(..) {
        match view.get(raw, &key).map(|s| &raw[s]) {
            Some(value) if value.starts_with(b"{") => {
                let _ = reply.send(ClientAnswer::Result(Bytes::copy_from_slice(value)));
            }
            _ => still.push((key, reply, request)),
        }
    }
    *pending = still;
}

/// The `input_required` answer to request `id`: every pending request under its key, and the
/// parked call's `requestState`.
fn input_required(id: &[u8], pending: &[(String, oneshot::Sender<ClientAnswer>, Bytes)], state: &str) -> Answer {
    let mut result = Vec::with_capacity(128 + pending.iter().map(|(_, _, r)| r.len() + 16).sum::<usize>());
    let mut w = ObjectWriter::begin(&mut result);
    w.string("resultType", "input_required");
    w.with("inputRequests", |o| {
        let mut r = ObjectWriter::begin(o);
        for (key, _, request) in pending {
            r.raw(key, request);
        }
        r.end();
    });
    w.string("requestState", state);
    w.end();
    let mut out = Vec::with_capacity(result.len() + id.len() + 40);
    write_result(&mut out, id, &result);
    Answer { message: Bytes::from(out), error_code: None, status: http::StatusCode::OK, retry_after: None }
}
