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
use tokio_util::codec::{AnyDelimiterCodec, FramedRead};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::rescue::{self, Answer};
use crate::pipeline::ctx::{CallCtx, ClientAnswer, ClientEvent, ClientSide, LogLevel, Principal, Scope};
use crate::session::hub::{Filter, Registration};
use crate::session::lifecycle;
use crate::session::registry::SessionState;
use crate::wire::jsonrpc::{self, Kind, Message, Method, Outcome};
use crate::wire::mcp::{self, Era, code};
use crate::wire::object::ObjectView;

struct Conversation {
    shared: Arc<Shared>,
    out: mpsc::Sender<Bytes>,
    state: Arc<SessionState>,
    legacy: Mutex<Option<ClientSide>>,
    listens: Mutex<HashMap<Bytes, Registration>>,
    relay_ids: std::sync::atomic::AtomicU64,
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
        relay_ids: std::sync::atomic::AtomicU64::new(1),
    });
    let mut lines = FramedRead::new(input, AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), max));
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
                    .send(
                        rescue::plain_error(None, code::INVALID_REQUEST, &format!("Invalid request: {e}"), None)
                            .message,
                    )
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
                let id = match &e {
                    jsonrpc::FrameError::Invalid { id: Some(id), .. } => Some(id.as_bytes().to_vec()),
                    _ => None,
                };
                convo.send(rescue::plain_error(id.as_deref(), e.code(), e.reason(), None).message).await;
                continue;
            }
        };
        convo.handle(msg, &mut legacy_stream).await;
    }
    drop(legacy_stream);
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
                    && let Some(p) = params
                {
                    let p = msg.slice(p);
                    if let Ok(v) = ObjectView::parse(p)
                        && let Some(id) = v.get(p, "requestId")
                    {
                        let id = Bytes::copy_from_slice(&p[id]);
                        self.state.cancel(&id);
                        self.listens.lock().expect("listens lock").remove(&id);
                    }
                }
            }
            Kind::Response { outcome, .. } => {
                let Some(id) = msg.id().and_then(|i| serde_json::from_slice::<String>(i.as_bytes()).ok()) else {
                    return;
                };
                let answer = match outcome {
                    Outcome::Result(s) => ClientAnswer::Result(msg.src.slice(s.clone())),
                    Outcome::Error(s) => ClientAnswer::Error(msg.src.slice(s.clone())),
                };
                self.state.answer(&id, answer);
            }
            Kind::Request { id, method, params } => {
                let id = msg.src.slice(id.0.clone());
                let params = params.as_ref().map(|p| msg.src.slice(p.clone())).unwrap_or_default();
                if *method == Method::Initialize {
                    let answer = self.initialize(&id, &params);
                    if legacy_stream.is_none() && self.legacy.lock().expect("era lock").is_some() {
                        let (tx, rx) = mpsc::channel(64);
                        *legacy_stream = Some(self.shared.hub.register(Scope::Gateway, Filter::ALL, None, tx));
                        tokio::spawn(forward(rx, self.out.clone()));
                    }
                    return self.send(answer).await;
                }
                let modern = memchr::memmem::find(&params, mcp::META_PROTOCOL_VERSION.as_bytes()).is_some();
                let client = match self.client_for(modern, &params) {
                    Ok(c) => c,
                    Err(answer) => return self.send(answer.message_for(&id)).await,
                };
                match method {
                    Method::ServerDiscover => {
                        let mut out = Vec::new();
                        jsonrpc::write_result(
                            &mut out,
                            &id,
                            &lifecycle::discover(&self.shared.router, &Scope::Gateway),
                        );
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
        match lifecycle::initialize(&self.shared.router, &Scope::Gateway, params) {
            Ok(init) => {
                *self.legacy.lock().expect("era lock") =
                    Some(ClientSide::legacy(init.version, Bytes::from(init.flags.to_json())));
                let mut out = Vec::new();
                jsonrpc::write_result(&mut out, id, &init.result);
                Bytes::from(out)
            }
            Err(e) => rescue::error(id, &e, false).message,
        }
    }

    /// The client side of one request: the initialized legacy session, or a modern envelope.
    fn client_for(&self, modern: bool, params: &[u8]) -> Result<ClientSide, Rejected> {
        if !modern {
            let legacy = self.legacy.lock().expect("era lock").clone();
            let mut client =
                legacy.unwrap_or_else(|| ClientSide::legacy(mcp::LATEST_LEGACY, Bytes::from_static(b"{}")));
            client.log_level = self.state.log_level();
            return Ok(client);
        }
        let view = ObjectView::parse(params)
            .map_err(|_| Rejected(code::INVALID_PARAMS, "params must be an object".into(), None))?;
        let meta = view.get(params, "_meta").map(|s| &params[s]).unwrap_or_default();
        let meta_view = ObjectView::parse(meta)
            .map_err(|_| Rejected(code::INVALID_PARAMS, "params._meta must be an object".into(), None))?;
        let version = meta_view.get_str(meta, mcp::META_PROTOCOL_VERSION).map(|v| v.into_owned());
        let caps = meta_view.get(meta, mcp::META_CLIENT_CAPABILITIES).map(|s| Bytes::copy_from_slice(&meta[s]));
        let (Some(version), Some(capabilities)) = (version, caps) else {
            return Err(Rejected(
                code::INVALID_PARAMS,
                "params._meta is missing the protocol version or client capabilities".into(),
                None,
            ));
        };
        let Some(version) = mcp::known_version(&version).filter(|v| mcp::era_of(v) == Some(Era::Modern)) else {
            let data = serde_json::json!({ "supported": mcp::MODERN_VERSIONS, "requested": version });
            return Err(Rejected(
                code::UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version".into(),
                Some(data),
            ));
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
                let id = format!("sekisho-{}", self.relay_ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                let rx = self.state.expect_answer(id.clone());
                tokio::spawn(async move {
                    if let Ok(Ok(a)) = tokio::time::timeout(super::stream::RELAY_TIMEOUT, rx).await {
                        let _ = reply.send(a);
                    }
                });
                let mut out = Vec::new();
                jsonrpc::write_request(&mut out, format!("\"{id}\"").as_bytes(), &method, params.as_deref());
                self.send(Bytes::from(out)).await;
            }
        }
    }

    async fn listen(&self, id: Bytes, params: &[u8]) {
        let requested: serde_json::Value = ObjectView::parse(params)
            .ok()
            .and_then(|v| v.get(params, "notifications"))
            .and_then(|s| serde_json::from_slice(&params[s]).ok())
            .unwrap_or_default();
        let on = |k: &str| requested.get(k).and_then(|v| v.as_bool()) == Some(true);
        let filter = Filter {
            tools: on("toolsListChanged"),
            prompts: on("promptsListChanged"),
            resources: on("resourcesListChanged"),
        };
        let agreed: serde_json::Map<String, serde_json::Value> = [
            ("toolsListChanged", filter.tools),
            ("promptsListChanged", filter.prompts),
            ("resourcesListChanged", filter.resources),
        ]
        .into_iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| (k.to_string(), true.into()))
        .collect();
        let ack = serde_json::json!({
            "notifications": agreed,
            "_meta": { "io.modelcontextprotocol/subscriptionId": serde_json::from_slice::<serde_json::Value>(&id).unwrap_or_default() },
        });
        let mut out = Vec::new();
        jsonrpc::write_notification(
            &mut out,
            "notifications/subscriptions/acknowledged",
            Some(ack.to_string().as_bytes()),
        );
        self.send(Bytes::from(out)).await;
        let (tx, rx) = mpsc::channel(64);
        let reg = self.shared.hub.register(Scope::Gateway, filter, Some(id.clone()), tx);
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

/// A request refused before it reached the pipeline.
struct Rejected(i64, String, Option<serde_json::Value>);

impl Rejected {
    fn message_for(&self, id: &[u8]) -> Bytes {
        rescue::plain_error(Some(id), self.0, &self.1, self.2.as_ref()).message
    }
}
