//! The stdio front (`sekisho stdio`): the gateway as a local MCP server that a desktop client
//! launches, speaking newline-delimited JSON-RPC on stdin/stdout (MCP `basic/transports`,
//! "stdio"). The first message decides the era: `initialize` (legacy) or a request carrying
//! the modern `_meta` envelope. Logs never touch stdout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::messages;
use super::rescue::{self, Answer};
use crate::error::GatewayError;
use crate::pipeline::ctx::CallCtx;
use crate::pipeline::parts::{ClientEvent, ClientSide, LogLevel, Principal, Scope};
use crate::session::hub::{Filter, Registration};
use crate::session::lifecycle;
use crate::session::registry::SessionState;
use crate::wire::jsonrpc::{self, Kind, Message, Method};
use crate::wire::lines::LineCodec;
use crate::wire::mcp::{self, Era};
use crate::wire::object::ObjectView;

struct Conversation {
    shared: Arc<Shared>,
    out: mpsc::Sender<Bytes>,
    state: Arc<SessionState>,
    legacy: Mutex<Option<ClientSide>>,
    listens: Mutex<HashMap<Bytes, Registration>>,
}

/// Serve one client on `input`/`output` until the input ends or `shutdown` fires.
///
/// Errors: I/O errors reading the input (a malformed line is answered, not fatal).
pub async fn serve(
    shared: Arc<Shared>,
    input: impl AsyncRead + Unpin + Send + 'static,
    output: impl AsyncWrite + Unpin + Send + 'static,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (out, rx) = mpsc::channel::<Bytes>(256);
    let writer = tokio::spawn(write_loop(output, rx));
    let max = shared.config.max_body_bytes;
    let convo = Arc::new(Conversation {
        shared,
        out,
        state: Arc::new(SessionState::default()),
        legacy: Mutex::new(None),
        listens: Mutex::new(HashMap::new()),
    });
    let mut lines = FramedRead::new(input, LineCodec::new(max));
    let mut legacy_stream: Option<Registration> = None;
    loop {
        let line = tokio::select! {
            l = lines.next() => l,
            () = shutdown.cancelled() => None,
        };
        let Some(line) = line else { break };
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                convo
                    .send(rescue::error(None, &GatewayError::InvalidRequest(e.to_string()), Era::Legacy).message)
                    .await;
                continue;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let msg = match Message::parse(line) {
            Ok(m) => m,
            Err(e) => {
                let id = e.id().map(|id| id.as_bytes().to_vec());
                convo.send(rescue::error(id.as_deref(), &GatewayError::from(e), Era::Legacy).message).await;
                continue;
            }
        };
        convo.handle(msg, &mut legacy_stream).await;
    }
    drop(legacy_stream);
    // The conversation is over: its per-client upstream sessions stop, its stream detaches.
    convo.state.end();
    convo.listens.lock().expect("listens lock").clear();
    drop(convo);
    let _ = writer.await;
    Ok(())
}

async fn write_loop(output: impl AsyncWrite + Unpin, mut rx: mpsc::Receiver<Bytes>) {
    let mut w = BufWriter::new(output);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        for msg in batch {
            if w.write_all(&msg).await.is_err() || w.write_all(b"\n").await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
}

impl Conversation {
    async fn send(&self, msg: Bytes) {
        let _ = self.out.send(msg).await;
    }

    async fn handle(self: &Arc<Self>, msg: Message, legacy_stream: &mut Option<Registration>) {
        match &msg.kind {
            Kind::Notification { method, params } => {
                if *method == Method::NotificationsCancelled
                    && let Some(id) = messages::cancelled_request(params.as_ref().map(|p| msg.slice(p)))
                {
                    self.state.cancel(&id);
                    self.listens.lock().expect("listens lock").remove(&id);
                }
            }
            Kind::Response { outcome, .. } => {
                messages::deliver_answer(&self.state, &msg, outcome);
            }
            Kind::Request { id, method, params } => {
                let id = msg.src.slice(id.0.clone());
                let params = params.as_ref().map(|p| msg.src.slice(p.clone())).unwrap_or_default();
                if *method == Method::Initialize {
                    let answer = self.initialize(&id, &params);
                    if legacy_stream.is_none() && self.legacy.lock().expect("era lock").is_some() {
                        let (tx, rx) = mpsc::channel(64);
                        // The stream carries list changes and updates of the subscribed resources.
                        let state = Some(Arc::clone(&self.state));
                        *legacy_stream =
                            Some(self.shared.hub.register_session(Scope::Gateway, Filter::ALL, None, state, tx, None));
                        tokio::spawn(forward(rx, self.out.clone()));
                        // What per-client upstream sessions say outside a call (roots requests,
                        // log messages) reaches this client like its calls' events.
                        let (events, mut rx) = mpsc::channel(64);
                        self.state.link.attach(events);
                        let convo = Arc::clone(self);
                        tokio::spawn(async move {
                            while let Some(event) = rx.recv().await {
                                convo.relay(event).await;
                            }
                        });
                    }
                    return self.send(answer).await;
                }
                let modern = memchr::memmem::find(&params, mcp::META_PROTOCOL_VERSION.as_bytes()).is_some();
                let client = match self.client_for(modern, &params) {
                    Ok(c) => c,
                    Err(e) => return self.send(rescue::error(Some(&id), &e, Era::Modern).message).await,
                };
                match method {
                    Method::ServerDiscover => {
                        let mut out = Vec::new();
                        let shared = &self.shared;
                        let discovered = lifecycle::discover(
                            &shared.upstreams,
                            shared.catalog.config().list_ttl_ms,
                            &Scope::Gateway,
                        );
                        jsonrpc::write_result(&mut out, &id, &discovered);
                        self.send(Bytes::from(out)).await;
                    }
                    Method::SubscriptionsListen if client.era == Era::Modern => self.listen(id, &params).await,
                    Method::LoggingSetLevel => {
                        if let Some(level) = ObjectView::parse(&params)
                            .ok()
                            .and_then(|v| v.get_str(&params, "level").and_then(|l| LogLevel::parse(&l)))
                        {
                            self.state.set_log_level(level);
                        }
                        self.spawn_call(id, method.clone(), params, client);
                    }
                    _ => self.spawn_call(id, method.clone(), params, client),
                }
            }
        }
    }

    fn initialize(&self, id: &[u8], params: &[u8]) -> Bytes {
        match lifecycle::initialize(&self.shared.upstreams, &Scope::Gateway, params) {
            Ok(init) => {
                *self.legacy.lock().expect("era lock") =
                    Some(ClientSide::legacy(init.version, Bytes::from(init.flags.to_json())));
                let mut out = Vec::new();
                jsonrpc::write_result(&mut out, id, &init.result);
                Bytes::from(out)
            }
            Err(e) => rescue::error(Some(id), &e, Era::Legacy).message,
        }
    }

    /// The client side of one request: the initialized legacy session, or a modern envelope.
    ///
    /// Errors: [`GatewayError::InvalidParams`] for a malformed envelope,
    /// [`GatewayError::UnsupportedVersion`] for a revision the gateway does not speak.
    fn client_for(&self, modern: bool, params: &[u8]) -> Result<ClientSide, GatewayError> {
        if !modern {
            let legacy = self.legacy.lock().expect("era lock").clone();
            let mut client =
                legacy.unwrap_or_else(|| ClientSide::legacy(mcp::LATEST_LEGACY, Bytes::from_static(b"{}")));
            client.log_level = self.state.log_level();
            return Ok(client);
        }
        let view =
            ObjectView::parse(params).map_err(|_| GatewayError::InvalidParams("params must be an object".into()))?;
        let meta = view.get(params, "_meta").map(|s| &params[s]).unwrap_or_default();
        let meta_view = ObjectView::parse(meta)
            .map_err(|_| GatewayError::InvalidParams("params._meta must be an object".into()))?;
        let version = meta_view.get_str(meta, mcp::META_PROTOCOL_VERSION).map(|v| v.into_owned());
        let caps = meta_view.get(meta, mcp::META_CLIENT_CAPABILITIES).map(|s| Bytes::copy_from_slice(&meta[s]));
        let (Some(version), Some(capabilities)) = (version, caps) else {
            return Err(GatewayError::InvalidParams(
                "params._meta is missing the protocol version or client capabilities".into(),
            ));
        };
        let Some(version) = mcp::known_version(&version).filter(|v| mcp::era_of(v) == Some(Era::Modern)) else {
            return Err(GatewayError::UnsupportedVersion { requested: version });
        };
        let log_level = meta_view.get_str(meta, mcp::META_LOG_LEVEL).and_then(|l| LogLevel::parse(&l));
        Ok(ClientSide { era: Era::Modern, version, capabilities, log_level })
    }

    fn spawn_call(self: &Arc<Self>, id: Bytes, method: Method, params: Bytes, client: ClientSide) {
        let convo = Arc::clone(self);
        tokio::spawn(async move {
            let era = client.era;
            let (tx, mut rx) = mpsc::channel(64);
            let ctx = CallCtx {
                client,
                scope: Scope::Gateway,
                principal: Principal::Anonymous,
                events: Some(tx),
                received: Instant::now(),
                priority: convo.shared.default_priority,
                idempotency_key: None,
                session: Some(Arc::clone(&convo.state)),
                param_headers: None,
            };
            let flight = convo.state.track(id.clone());
            let name = method.as_str().to_string();
            let call = convo.shared.call(method, params, ctx);
            tokio::pin!(call);
            let answer: Answer = loop {
                tokio::select! {
                    biased;
                    () = flight.token.cancelled() => return,
                    Some(event) = rx.recv() => convo.relay(event).await,
                    outcome = &mut call => break rescue::answer(&id, &name, outcome, era),
                }
            };
            while let Ok(event) = rx.try_recv() {
                convo.relay(event).await;
            }
            convo.send(answer.message).await;
        });
    }

    async fn relay(&self, event: ClientEvent) {
        match event {
            ClientEvent::Notification(n) => self.send(n).await,
            ClientEvent::Request { method, params, reply } => {
                self.send(messages::relay_request(&self.state, &method, params.as_deref(), reply)).await;
            }
        }
    }

    async fn listen(&self, id: Bytes, params: &[u8]) {
        let (filter, ack) = messages::listen(&id, params, &[]);
        self.send(ack).await;
        let (tx, rx) = mpsc::channel(64);
        let reg = self.shared.hub.register(Scope::Gateway, filter, Some(id.clone()), tx, None);
        self.listens.lock().expect("listens lock").insert(id, reg);
        tokio::spawn(forward(rx, self.out.clone()));
    }
}

async fn forward(mut rx: mpsc::Receiver<Bytes>, out: mpsc::Sender<Bytes>) {
    while let Some(m) = rx.recv().await {
        if out.send(m).await.is_err() {
            return;
        }
    }
}
