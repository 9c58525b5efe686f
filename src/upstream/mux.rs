//! Request multiplexing over one upstream connection: the gateway's request ids, the calls
//! waiting for answers, and where each upstream notification or request goes.
//!
//! Ids and progress tokens are the same number: a call registered as `17` sends
//! `"_meta":{"progressToken":17}`, so a progress notification finds its caller in one lookup.
//! Late notifications for a call that finished or was cancelled find nothing and are dropped.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::conn::ConnError;
use super::signals::{ListKind, Signal, Signals};
use crate::detect::result::screen;
use crate::pipeline::parts::{ClientAnswer, ClientEvent, EventSink, LogLevel};
use crate::session::link::ClientLink;
use crate::wire::jsonrpc::{
    Kind, Message, Method, RawId, write_error, write_notification, write_raw_error, write_result,
};
use crate::wire::mcp::{Era, code};
use crate::wire::object::{ObjectView, ObjectWriter};

/// Where a call's notifications go, and what the client wants of them.
#[derive(Clone, Debug)]
pub struct Route {
    /// The client's own progress token, restored on relayed progress.
    pub client_token: Option<Bytes>,
    /// The client's event channel.
    pub events: EventSink,
    /// The client's era (modern clients get log messages only when they asked for a level).
    pub client_era: Era,
    /// The minimum log level to relay.
    pub log_level: Option<LogLevel>,
    /// The client's declared capabilities (a raw JSON object): an upstream's sampling,
    /// elicitation or roots request reaches the client only when it declared that capability.
    pub capabilities: Bytes,
    /// The call's `detect` policy, applied to what the upstream relays during it.
    pub detect: Option<crate::detect::result::ResultPolicy>,
}

/// Where the answer to a call goes: the response, or why there will be none.
pub type ReplyTx = oneshot::Sender<Result<Message, ConnError>>;

struct Pending {
    reply: Option<ReplyTx>,
    route: Option<Route>,
    /// The client the call is for (see [`Mux::register`]); `None` for the gateway's own.
    client: Option<u64>,
}

/// The client session a per-client upstream session belongs to: everything its upstream says
/// outside a call goes to this client alone.
#[derive(Clone, Debug)]
pub struct Owner {
    /// The client session.
    pub link: Arc<ClientLink>,
    /// The capabilities it declared (a raw JSON object), which the upstream session declared
    /// on its behalf.
    pub capabilities: Bytes,
}

/// What the transport must do after the mux has looked at an inbound message.
#[derive(Debug)]
pub enum Action {
    /// Nothing more.
    None,
    /// Send this complete message to the upstream (an answer to its request).
    Send(Bytes),
    /// Relay the upstream's request to a client, then send the client's answer upstream.
    Relay(Relay),
}

/// An upstream's request to be relayed to the client of the call it came with.
#[derive(Debug)]
pub struct Relay {
    /// The upstream's request id.
    pub id: RawId,
    /// The request method.
    pub method: String,
    /// Its params.
    pub params: Option<Bytes>,
    /// The client to ask.
    pub to: Asked,
}

/// Where a relayed request goes.
#[derive(Debug)]
pub enum Asked {
    /// This call's (or this stream's) events.
    Sink(EventSink),
    /// The standalone stream of the client owning a per-client session, which it has not
    /// opened yet: a per-client process asks its client (`roots/list`, typically) right after
    /// its handshake, while the client's first call may have just been answered and its GET
    /// stream be on its way. The request waits [`STREAM_WAIT`] for the stream.
    Standalone(Arc<ClientLink>),
}

/// How long a per-client session's request waits for its client's standalone stream.
pub const STREAM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The standalone stream of `link` once it is open, waiting at most `limit` for it.
async fn stream_of(link: &ClientLink, limit: std::time::Duration) -> Option<EventSink> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let attached = link.attention();
        tokio::pin!(attached);
        attached.as_mut().enable();
        if let Some(sink) = link.stream() {
            return Some(sink);
        }
        if tokio::time::timeout_at(deadline, attached).await.is_err() || link.ended.is_cancelled() {
            return link.stream();
        }
    }
}

impl Relay {
    /// Ask the client and wait for its answer; returns the response message to send upstream
    /// (an error response when the client could not be asked or did not answer). Both
    /// transports send exactly this.
    pub async fn answer(self) -> Vec<u8> {
        let (tx, rx) = oneshot::channel();
        let sink = match self.to {
            Asked::Sink(sink) => Some(sink),
            Asked::Standalone(link) => stream_of(&link, STREAM_WAIT).await,
        };
        let request = ClientEvent::Request { method: self.method, params: self.params, reply: tx };
        let asked = match sink {
            Some(sink) => sink.try_send(request).map_err(|_| ()),
            None => Err(()),
        };
        let answer = match asked {
            Ok(()) => rx.await.ok(),
            Err(()) => None,
        };
        let mut out = Vec::new();
        match answer {
            Some(ClientAnswer::Result(r)) => write_result(&mut out, self.id.as_bytes(), &r),
            Some(ClientAnswer::Error(e)) => write_raw_error(&mut out, Some(self.id.as_bytes()), &e),
            None => write_error(
                &mut out,
                Some(self.id.as_bytes()),
                code::INTERNAL_ERROR,
                "the client did not answer the relayed request",
                None,
            ),
        }
        out
    }
}

/// Tells the upstream a call was abandoned before its answer (timeout, client cancel, client
/// gone), as MCP `basic/utilities/cancellation` asks: while `armed`, dropping it forgets the
/// call and, unless the connection is `closed`, hands `notifications/cancelled` (a complete
/// message) to `send`. The call disarms it once its answer came.
pub struct CancelOnDrop<'a, F: Fn(Vec<u8>)> {
    mux: &'a Mux,
    closed: &'a tokio_util::sync::CancellationToken,
    id: u64,
    send: F,
    /// Whether dropping it cancels the call.
    pub armed: bool,
}

impl<'a, F: Fn(Vec<u8>)> CancelOnDrop<'a, F> {
    /// Armed for call `id` of `mux`, on a connection that is gone once `closed` fires.
    pub fn new(mux: &'a Mux, closed: &'a tokio_util::sync::CancellationToken, id: u64, send: F) -> Self {
        CancelOnDrop { mux, closed, id, send, armed: true }
    }
}

impl<F: Fn(Vec<u8>)> Drop for CancelOnDrop<'_, F> {
    fn drop(&mut self) {
        if self.armed && self.mux.forget(self.id) && !self.closed.is_cancelled() {
            let mut body = Vec::with_capacity(128);
            let params = format!(r#"{{"requestId":{},"reason":"cancelled by the gateway's client"}}"#, self.id);
            write_notification(&mut body, "notifications/cancelled", Some(params.as_bytes()));
            (self.send)(body);
        }
    }
}

/// The multiplexing state of one upstream connection.
pub struct Mux {
    upstream: String,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    signals: Signals,
    owner: Option<Owner>,
}

impl Mux {
    /// A mux for upstream `name` that reports list changes and resource updates to `signals`.
    pub fn new(upstream: &str, signals: Signals) -> Self {
        Mux::owned(upstream, signals, None)
    }

    /// A mux for a connection that belongs to `owner` (a per-client upstream session), or to
    /// every client (`None`).
    pub fn owned(upstream: &str, signals: Signals, owner: Option<Owner>) -> Self {
        Mux { upstream: upstream.to_string(), next_id: AtomicU64::new(1), pending: Mutex::default(), signals, owner }
    }

    /// Reserve an id for a call. `reply` receives the response (stdio); `route` receives the
    /// call's notifications; `client` names the client the call is for (`None` for the
    /// gateway's own requests), which is how a request the upstream makes outside any call
    /// finds the one client with calls in flight. Drop the entry with [`Mux::forget`].
    pub fn register(&self, reply: Option<ReplyTx>, route: Option<Route>, client: Option<u64>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.pending.lock().expect("mux lock").insert(id, Pending { reply, route, client });
        id
    }

    /// Forget a call (answered, timed out, or cancelled); returns whether it was still pending.
    pub fn forget(&self, id: u64) -> bool {
        self.pending.lock().expect("mux lock").remove(&id).is_some()
    }

    /// Fail the pending call `id` with `e` (its answer could not be read); returns whether a
    /// call was waiting for it.
    pub fn fail(&self, id: u64, e: ConnError) -> bool {
        let reply = self.pending.lock().expect("mux lock").get_mut(&id).and_then(|p| p.reply.take());
        reply.is_some_and(|tx| tx.send(Err(e)).is_ok())
    }

    /// Fail every pending call (the connection is gone): their reply channels close.
    pub fn close_all(&self) {
        self.pending.lock().expect("mux lock").clear();
    }

    /// Number of calls in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.lock().expect("mux lock").len()
    }

    /// Look at one inbound message. `via_call` is the call whose response stream carried it
    /// (HTTP), which ties log messages and server-to-client requests to a client.
    pub fn dispatch(&self, msg: Message, via_call: Option<u64>) -> Action {
        match &msg.kind {
            Kind::Response { .. } => {
                let id = msg.id().and_then(|id| std::str::from_utf8(id.as_bytes()).ok()?.parse::<u64>().ok());
                let reply = id.and_then(|id| self.pending.lock().expect("mux lock").get_mut(&id)?.reply.take());
                match reply {
                    Some(tx) => {
                        let _ = tx.send(Ok(msg));
                    }
                    None => {
                        tracing::debug!(upstream = %self.upstream, "dropped a response to no pending call")
                    }
                }
                Action::None
            }
            Kind::Notification { method, params } => {
                let params = params.as_ref().map(|p| msg.src.slice(p.clone()));
                self.on_notification(method, params, via_call);
                Action::None
            }
            Kind::Request { method, params, .. } => {
                let id = msg.id().expect("requests carry ids");
                let params = params.as_ref().map(|p| msg.src.slice(p.clone()));
                self.on_request(id, method, params, via_call)
            }
        }
    }

    fn route_of(&self, id: u64) -> Option<Route> {
        self.pending.lock().expect("mux lock").get(&id)?.route.clone()
    }

    fn on_notification(&self, method: &Method, params: Option<Bytes>, via_call: Option<u64>) {
        match method {
            Method::NotificationsProgress => self.relay_progress(params),
            Method::NotificationsMessage => {
                let route = via_call.and_then(|id| self.route_of(id));
                match (route, params) {
                    (Some(route), Some(params)) if wants_log(&route, &params) => {
                        let Ok(params) = screen(route.detect, params) else { return };
                        let mut out = Vec::with_capacity(params.len() + 64);
                        write_notification(&mut out, "notifications/message", Some(&params));
                        let _ = route.events.try_send(ClientEvent::Notification(Bytes::from(out)));
                    }
                    // A per-client session's log message outside a call: its own client's
                    // stream, at the level that client set.
                    (None, Some(params))
                        if self.owner.as_ref().is_some_and(|o| at_level(o.link.log_level(), &params)) =>
                    {
                        let mut out = Vec::with_capacity(params.len() + 64);
                        write_notification(&mut out, "notifications/message", Some(&params));
                        let owner = self.owner.as_ref().expect("checked");
                        let _ = owner.link.send(ClientEvent::Notification(Bytes::from(out)));
                    }
                    (_, params) => tracing::debug!(
                        upstream = %self.upstream,
                        message = %crate::detect::redact::for_log(params.as_deref().unwrap_or_default(), 4096),
                        "upstream log message"
                    ),
                }
            }
            Method::ToolsListChanged => self.signal(Signal::ListChanged(ListKind::Tools)),
            Method::PromptsListChanged => self.signal(Signal::ListChanged(ListKind::Prompts)),
            Method::ResourcesListChanged => self.signal(Signal::ListChanged(ListKind::Resources)),
            Method::ResourcesUpdated => {
                if let Some(p) = params {
                    self.signal(Signal::ResourceUpdated(p, self.owner.as_ref().map(|o| o.link.key)));
                }
            }
            other => {
                tracing::debug!(upstream = %self.upstream, method = other.as_str(), "ignored upstream notification")
            }
        }
    }

    fn signal(&self, s: Signal) {
        self.signals.send(s);
    }

    fn relay_progress(&self, params: Option<Bytes>) {
        let Some(params) = params else { return };
        let Ok(view) = ObjectView::parse(&params) else {
            return;
        };
        let Some(token) = view.get(&params, "progressToken").map(|s| &params[s]) else {
            return;
        };
        let Some(id) = std::str::from_utf8(token).ok().and_then(|t| t.parse::<u64>().ok()) else {
            return;
        };
        let Some(route) = self.route_of(id) else {
            return;
        };
        let Some(client_token) = &route.client_token else {
            return;
        };
        let mut p = Vec::with_capacity(params.len() + client_token.len());
        let mut w = ObjectWriter::begin(&mut p);
        for (key, span) in view.iter(&params) {
            if key == "progressToken" {
                w.raw(key, client_token);
            } else {
                w.raw(key, &params[span]);
            }
        }
        w.end();
        let Ok(p) = screen(route.detect, Bytes::from(p)) else { return };
        let mut out = Vec::with_capacity(p.len() + 64);
        write_notification(&mut out, "notifications/progress", Some(&p));
        if route.events.try_send(ClientEvent::Notification(Bytes::from(out))).is_err() {
            tracing::debug!(upstream = %self.upstream, "dropped a progress notification for a slow or gone client");
        }
    }

    fn on_request(&self, id: RawId, method: &Method, params: Option<Bytes>, via_call: Option<u64>) -> Action {
        if *method == Method::Ping {
            let mut out = Vec::new();
            write_result(&mut out, id.as_bytes(), b"{}");
            return Action::Send(Bytes::from(out));
        }
        let route = via_call.and_then(|c| self.route_of(c));
        let detect = route.as_ref().and_then(|r| r.detect);
        let target = match route {
            Some(route) => relay_target(Some(route), method.as_str()).map(|r| Asked::Sink(r.events)),
            None => self.untied_target(method.as_str()),
        };
        let Ok(params) = params.map(|p| screen(detect, p)).transpose() else {
            let mut out = Vec::new();
            let msg = "the request holds sensitive data and was not relayed";
            write_error(&mut out, Some(id.as_bytes()), code::SENSITIVE_DATA_BLOCKED, msg, None);
            return Action::Send(Bytes::from(out));
        };
        match target {
            Ok(to) => Action::Relay(Relay { id, method: method.as_str().to_string(), params, to }),
            Err(msg) => {
                tracing::debug!(upstream = %self.upstream, method = method.as_str(), reason = %msg, "refused an upstream request");
                let mut out = Vec::new();
                write_error(&mut out, Some(id.as_bytes()), code::METHOD_NOT_FOUND, &msg, None);
                Action::Send(Bytes::from(out))
            }
        }
    }
}

impl Mux {
    /// Where a request the upstream made outside any call goes (older SDKs send sampling or
    /// elicitation this way during a tool call; `roots/list` usually comes so). On a
    /// per-client session: the owner's standalone stream, else a call of its owner in flight,
    /// else the standalone stream the owner opens within [`STREAM_WAIT`].
    /// On a shared connection: the one client with calls in flight on it, when there is
    /// exactly one. Either way only a legacy client that declared the capability.
    fn untied_target(&self, method: &str) -> Result<Asked, String> {
        let Some(cap) = required_capability(method) else {
            return Err(format!("{method} is not a request the gateway relays to clients"));
        };
        let (routes, clients) = {
            let pending = self.pending.lock().expect("mux lock");
            let routes: Vec<(Option<u64>, Route)> =
                pending.values().filter_map(|p| Some((p.client, p.route.clone()?))).collect();
            let clients: HashSet<u64> = pending.values().filter_map(|p| p.client).collect();
            (routes, clients)
        };
        let able = |r: &Route| declared(&r.capabilities, cap);
        if let Some(owner) = &self.owner {
            // A request unrelated to any call belongs on the client's standalone stream (MCP
            // `basic/transports`: what the server sends on the GET stream SHOULD be unrelated
            // to the client's concurrent requests); a call's stream ends with the call, and a
            // request queued on it just before its answer would be lost.
            if declared(&owner.capabilities, cap)
                && let Some(sink) = owner.link.stream()
            {
                return Ok(Asked::Sink(sink));
            }
            if let Some((_, r)) = routes.into_iter().find(|(_, r)| able(r)) {
                return Ok(Asked::Sink(r.events));
            }
            if !declared(&owner.capabilities, cap) {
                return Err(format!("{method} cannot be relayed: the client did not declare the {cap} capability"));
            }
            // No stream and no call: the stream it opens within STREAM_WAIT.
            return Ok(Asked::Standalone(Arc::clone(&owner.link)));
        }
        let mut clients = clients.into_iter();
        match (clients.next(), clients.next()) {
            (None, _) => Err(format!(
                "{method} cannot be relayed: it is not tied to a client request, and no client has a call in flight on this connection"
            )),
            (Some(_), Some(_)) => Err(format!(
                "{method} cannot be relayed: it is not tied to a client request, and several clients have calls in flight on this connection"
            )),
            (Some(client), None) => {
                let mine = routes.into_iter().filter(|(c, _)| *c == Some(client)).map(|(_, r)| r);
                relay_target(mine.reduce(|a, b| if able(&a) { a } else { b }), method).map(|r| Asked::Sink(r.events))
            }
        }
    }
}

/// The client an upstream's request may be relayed to: the client of the call whose stream
/// carried it, when that client declared the capability the request needs (a legacy client
/// is asked on its stream; a modern one gets `input_required`, `front::input`). `Err`: why
/// not, for the error answer the upstream gets instead.
fn relay_target(route: Option<Route>, method: &str) -> Result<Route, String> {
    let Some(cap) = required_capability(method) else {
        return Err(format!("{method} is not a request the gateway relays to clients"));
    };
    match route {
        Some(r) if declared(&r.capabilities, cap) => Ok(r),
        Some(_) => Err(format!("{method} cannot be relayed: the client did not declare the {cap} capability")),
        _ => Err(format!("{method} cannot be relayed: its client cannot receive requests on this call")),
    }
}

/// The client capability a server-to-client request needs (2025-11-25 `client/*`): `None` for
/// a method the gateway does not relay.
pub fn required_capability(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// Whether the raw capabilities object declares `capability` (as an object).
pub fn declared(capabilities: &[u8], capability: &str) -> bool {
    ObjectView::parse(capabilities)
        .ok()
        .and_then(|v| v.get(capabilities, capability))
        .is_some_and(|span| capabilities[span].starts_with(b"{"))
}

fn wants_log(route: &Route, params: &[u8]) -> bool {
    match (route.client_era, route.log_level) {
        (Era::Modern, None) => false,
        (_, min) => at_level(min, params),
    }
}

/// Whether log message `params` is at `min` or above (everything when no level was set, or
/// the message names none).
fn at_level(min: Option<LogLevel>, params: &[u8]) -> bool {
    let level =
        ObjectView::parse(params).ok().and_then(|v| v.get_str(params, "level").and_then(|l| LogLevel::parse(&l)));
    match (min, level) {
        (Some(min), Some(level)) => level >= min,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::*;

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    #[tokio::test]
    async fn responses_reach_their_call_and_progress_gets_the_client_token() {
        let (signals, _rx) = Signals::channel(&Arc::from("t"), Default::default());
        let mux = Mux::new("t", signals);
        let (tx, rx) = oneshot::channel();
        let (ev_tx, mut ev_rx) = mpsc::channel(8);
        let route = Route {
            client_token: Some(Bytes::from_static(b"\"tok\"")),
            events: ev_tx,
            client_era: Era::Legacy,
            log_level: None,
            capabilities: Bytes::from_static(b"{}"),
            detect: None,
        };
        let id = mux.register(Some(tx), Some(route), Some(1));
        mux.dispatch(msg(&format!(r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{id},"progress":1}}}}"#)), None);
        let Some(ClientEvent::Notification(n)) = ev_rx.recv().await else { panic!("no progress") };
        let v: serde_json::Value = serde_json::from_slice(&n).unwrap();
        assert_eq!(v["params"]["progressToken"], "tok");
        mux.dispatch(msg(&format!(r#"{{"result":{{}},"jsonrpc":"2.0","id":{id}}}"#)), None);
        assert!(rx.await.is_ok());
        assert!(mux.forget(id));
        // Late progress for a finished call is dropped.
        mux.dispatch(msg(&format!(r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{id},"progress":2}}}}"#)), None);
        assert!(ev_rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn server_requests_reach_only_a_client_that_declared_the_capability() {
        let (signals, _rx) = Signals::channel(&Arc::from("t"), Default::default());
        let mux = Mux::new("t", signals);
        let (ev_tx, _ev_rx) = mpsc::channel(8);
        let route = |caps: &'static [u8]| Route {
            client_token: None,
            events: ev_tx.clone(),
            client_era: Era::Legacy,
            log_level: None,
            capabilities: Bytes::from_static(caps),
            detect: None,
        };
        let sampling = mux.register(None, Some(route(br#"{"sampling":{}}"#)), Some(1));
        let nothing = mux.register(None, Some(route(b"{}")), Some(2));
        let ask = |m: &str| msg(&format!(r#"{{"jsonrpc":"2.0","id":"s1","method":"{m}","params":{{}}}}"#));
        assert!(matches!(mux.dispatch(ask("sampling/createMessage"), Some(sampling)), Action::Relay(_)));
        for (method, call) in [("sampling/createMessage", nothing), ("roots/list", sampling), ("x/y", sampling)] {
            let Action::Send(b) = mux.dispatch(ask(method), Some(call)) else { panic!("{method} relayed") };
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!((v["id"].as_str(), v["error"]["code"].as_i64()), (Some("s1"), Some(-32601)), "{method}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_per_client_request_waits_for_its_clients_stream_and_gives_up_after_the_wait() {
        let (signals, _rx) = Signals::channel(&Arc::from("t"), Default::default());
        let link = Arc::new(ClientLink::default());
        let owner = Owner { link: Arc::clone(&link), capabilities: Bytes::from_static(br#"{"roots":{}}"#) };
        let mux = Mux::owned("t", signals, Some(owner));
        let ask = || msg(r#"{"jsonrpc":"2.0","id":7,"method":"roots/list","params":{}}"#);
        // No call in flight, no stream yet: the request waits for the stream.
        let Action::Relay(relay) = mux.dispatch(ask(), None) else { panic!("refused at once") };
        let answered = tokio::spawn(relay.answer());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let (tx, mut rx) = mpsc::channel(4);
        link.attach(tx);
        let Some(ClientEvent::Request { method, reply, .. }) = rx.recv().await else { panic!("not asked") };
        assert_eq!(method, "roots/list");
        let _ = reply.send(ClientAnswer::Result(Bytes::from_static(br#"{"roots":[]}"#)));
        let v: serde_json::Value = serde_json::from_slice(&answered.await.unwrap()).unwrap();
        assert_eq!((v["id"].as_i64(), v["result"]["roots"].as_array().map(Vec::len)), (Some(7), Some(0)));
        // A client that never opens its stream: an error answer once the wait is over.
        link.detach();
        drop(rx);
        let Action::Relay(relay) = mux.dispatch(ask(), None) else { panic!("refused at once") };
        let started = tokio::time::Instant::now();
        let v: serde_json::Value = serde_json::from_slice(&relay.answer().await).unwrap();
        assert_eq!(v["error"]["code"].as_i64(), Some(code::INTERNAL_ERROR));
        assert_eq!(started.elapsed(), STREAM_WAIT);
    }

    #[test]
    fn list_changed_signals_and_unroutable_requests_are_refused() {
        let (signals, mut sig_rx) = Signals::channel(&Arc::from("t"), Default::default());
        let mux = Mux::new("t", signals);
        mux.dispatch(msg(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#), None);
        assert_eq!(sig_rx.try_recv().unwrap(), Signal::ListChanged(ListKind::Tools));
        let Action::Send(b) = mux.dispatch(msg(r#"{"jsonrpc":"2.0","id":0,"method":"roots/list"}"#), None) else {
            panic!("expected a refusal")
        };
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["code"], -32601);
        let Action::Send(b) = mux.dispatch(msg(r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#), None) else {
            panic!("expected a pong")
        };
        assert_eq!(&b[..], br#"{"jsonrpc":"2.0","id":"p","result":{}}"#);
    }
}
