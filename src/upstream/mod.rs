//! The upstream set: per upstream server, its supervised connection (a child process or an
//! HTTP session), its status, and the call path with its deadline.
//!
//! A supervisor task per upstream connects (spawn + handshake), watches the connection, and
//! reconnects with exponential backoff and jitter when it dies; a dead upstream only ever
//! fails its own calls. The probed era is remembered, so restarts skip the probe.

pub mod config;
pub mod conn;
pub mod handshake;
pub mod http;
pub mod mux;
pub mod stdio;
pub mod translate;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use self::config::{EraChoice, Transport, UpstreamConfig};
use self::conn::{ConnError, Request, expect_result};
use self::handshake::Handshake;
use self::mux::{Signal, Signals};
use self::stdio::{Spawn, StdioConn};
use crate::error::GatewayError;
use crate::wire::jsonrpc::Message;
use crate::wire::mcp::Era;

/// A live connection to an upstream.
pub enum Connection {
    /// A child process.
    Stdio(Arc<StdioConn>),
    /// An HTTP session.
    Http(Arc<http::HttpConn>),
}

impl Connection {
    /// The handshake of this connection.
    pub fn handshake(&self) -> &Handshake {
        match self {
            Connection::Stdio(c) => c.handshake().expect("published conns completed their handshake"),
            Connection::Http(c) => c.handshake(),
        }
    }

    async fn call(&self, req: Request<'_>) -> Result<Message, ConnError> {
        match self {
            Connection::Stdio(c) => c.call(req).await,
            Connection::Http(c) => c.call(req).await,
        }
    }

    fn in_flight(&self) -> usize {
        match self {
            Connection::Stdio(c) => c.mux.in_flight(),
            Connection::Http(c) => c.mux.in_flight(),
        }
    }
}

/// What an upstream is doing, as `/readyz` and metrics show it.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    /// Connecting for the first time or after a failure.
    Starting,
    /// Connected.
    Up {
        /// Protocol era spoken.
        era: Era,
        /// Revision in use.
        version: &'static str,
    },
    /// Not connected; the supervisor will retry.
    Down {
        /// Why.
        reason: String,
    },
    /// Stopped for shutdown.
    Stopped,
}

impl Status {
    /// Whether calls can be sent now.
    pub fn is_up(&self) -> bool {
        matches!(self, Status::Up { .. })
    }
}

/// One upstream server.
pub struct Upstream {
    /// Its namespace.
    pub name: Arc<str>,
    /// Its configuration.
    pub config: UpstreamConfig,
    conn: ArcSwapOption<Connection>,
    status: watch::Sender<Status>,
    remembered_era: Mutex<EraChoice>,
    last_handshake: ArcSwapOption<Handshake>,
    restarts: std::sync::atomic::AtomicU64,
    freshness: Arc<mux::Freshness>,
}

/// Reconnect delays: exponential from 250 ms to 30 s, with full jitter over the upper half.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    fn step(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        base / 2 + base.mul_f64(rand::random::<f64>() / 2.0)
    }
}

impl Upstream {
    fn new(name: &str, config: UpstreamConfig) -> Self {
        Upstream {
            name: name.into(),
            remembered_era: Mutex::new(config.era),
            config,
            conn: ArcSwapOption::empty(),
            last_handshake: ArcSwapOption::empty(),
            freshness: Arc::default(),
            status: watch::channel(Status::Starting).0,
            restarts: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Subscribe to status changes.
    pub fn watch_status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// How many times the connection was re-established after a failure.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Calls currently waiting on this upstream.
    pub fn in_flight(&self) -> usize {
        self.conn.load().as_ref().map_or(0, |c| c.in_flight())
    }

    /// The handshake of the live connection.
    pub fn handshake(&self) -> Option<Handshake> {
        self.conn.load().as_ref().map(|c| c.handshake().clone())
    }

    /// How current the catalog is with this upstream's announced list changes.
    pub fn freshness(&self) -> &mux::Freshness {
        &self.freshness
    }

    /// The handshake of the last successful connection, kept while the upstream is down so
    /// the gateway's advertised capabilities do not flap during a restart.
    pub fn last_handshake(&self) -> Option<Arc<Handshake>> {
        self.last_handshake.load_full()
    }

    /// Send a request and wait for the upstream's answer, within the upstream's deadline.
    ///
    /// Errors: [`GatewayError::UpstreamUnavailable`] when not connected or the connection died
    /// during the call; [`GatewayError::UpstreamTimeout`] when the deadline passed (the call is
    /// cancelled upstream); [`GatewayError::UpstreamTransport`] / [`GatewayError::UpstreamProtocol`]
    /// for transport and framing failures.
    pub async fn call(&self, req: Request<'_>) -> Result<(Message, Era), GatewayError> {
        let Some(conn) = self.conn.load_full() else {
            return Err(self.unavailable());
        };
        let era = conn.handshake().era;
        let deadline = self.config.call_timeout();
        match tokio::time::timeout(deadline, conn.call(req)).await {
            Ok(Ok(msg)) => Ok((msg, era)),
            Err(_) => Err(GatewayError::UpstreamTimeout { upstream: self.name.to_string(), after: deadline }),
            Ok(Err(e)) => Err(self.call_failed(&conn, e)),
        }
    }

    /// A gateway-originated request (listing, probing); returns the raw result.
    ///
    /// Errors: as [`Upstream::call`], plus [`GatewayError::UpstreamProtocol`] for an error answer.
    pub async fn request(&self, method: &str, params: Option<&[u8]>) -> Result<Bytes, GatewayError> {
        let (msg, _) = self.call(Request::raw(method, params)).await?;
        expect_result(&msg)
            .map_err(|e| GatewayError::UpstreamProtocol { upstream: self.name.to_string(), reason: e.to_string() })
    }

    fn unavailable(&self) -> GatewayError {
        let reason = match self.status() {
            Status::Starting => "it is starting".to_string(),
            Status::Down { reason } => reason,
            Status::Stopped => "it is stopped".to_string(),
            Status::Up { .. } => "it is reconnecting".to_string(),
        };
        GatewayError::UpstreamUnavailable { upstream: self.name.to_string(), reason }
    }

    fn call_failed(&self, conn: &Connection, e: ConnError) -> GatewayError {
        let upstream = self.name.to_string();
        match e {
            ConnError::Closed | ConnError::SessionExpired => {
                GatewayError::UpstreamUnavailable { upstream, reason: "the connection closed during the call".into() }
            }
            ConnError::Transport(reason) => {
                // An unreachable HTTP upstream is reconnected (and shown down) by its supervisor.
                if let Connection::Http(c) = conn {
                    c.closed().cancel();
                }
                GatewayError::UpstreamTransport { upstream, reason }
            }
            ConnError::Status { status, detail } => {
                GatewayError::UpstreamTransport { upstream, reason: format!("HTTP {status}: {detail}") }
            }
            ConnError::Protocol(reason) => GatewayError::UpstreamProtocol { upstream, reason },
        }
    }

    fn set_status(&self, s: Status) {
        self.status.send_replace(s);
    }

    /// Connect, watch, reconnect, until `shutdown`; then stop the connection.
    async fn supervise(self: Arc<Self>, client: http::HttpClient, signals: Signals, shutdown: CancellationToken) {
        let mut backoff = Backoff::new();
        let mut first = true;
        while !shutdown.is_cancelled() {
            if !first {
                self.restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            first = false;
            self.set_status(Status::Starting);
            let started = Instant::now();
            let outcome = tokio::select! {
                r = tokio::time::timeout(self.config.startup_deadline(), self.connect(&client, &signals)) => r,
                () = shutdown.cancelled() => break,
            };
            let reason = match outcome {
                Ok(Ok(mut live)) => {
                    let h = live.conn.handshake().clone();
                    *self.remembered_era.lock().expect("era lock") =
                        if h.era == Era::Modern { EraChoice::Modern } else { EraChoice::Legacy };
                    tracing::info!(upstream = %self.name, era = ?h.era, version = h.version, "upstream connected");
                    self.last_handshake.store(Some(Arc::new(h.clone())));
                    let conn = Arc::new(live.conn);
                    self.conn.store(Some(Arc::clone(&conn)));
                    self.set_status(Status::Up { era: h.era, version: h.version });
                    signals.send(Signal::Up);
                    let reason = live.watch.wait(&conn, &shutdown).await;
                    self.conn.store(None);
                    if shutdown.is_cancelled() {
                        live.watch.stop(&conn).await;
                        break;
                    }
                    live.watch.stop(&conn).await;
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff.reset();
                    }
                    reason
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no handshake within {:?}", self.config.startup_deadline()),
            };
            tracing::warn!(upstream = %self.name, reason = %reason, "upstream down; reconnecting");
            self.set_status(Status::Down { reason });
            signals.send(Signal::Down);
            tokio::select! {
                () = tokio::time::sleep(backoff.step()) => {}
                () = shutdown.cancelled() => break,
            }
        }
        self.conn.store(None);
        self.set_status(Status::Stopped);
    }

    async fn connect(&self, client: &http::HttpClient, signals: &Signals) -> Result<Live, ConnError> {
        let choice = *self.remembered_era.lock().expect("era lock");
        match self.config.transport() {
            Transport::Stdio { command, args, env, cwd } => {
                let spec = Spawn { command, args, env, cwd };
                let (conn, process) = StdioConn::spawn(&self.name, &spec, signals.clone())?;
                let mut watch = Watch::Process(Some(process));
                match stdio_handshake(&conn, choice).await {
                    Ok(()) => Ok(Live { conn: Connection::Stdio(conn), watch }),
                    Err(e) => {
                        watch.stop(&Connection::Stdio(conn)).await;
                        Err(e)
                    }
                }
            }
            Transport::Http { url, headers } => {
                let conn =
                    http::HttpConn::connect(&self.name, client.clone(), url, headers, choice, signals.clone()).await?;
                tokio::spawn(Arc::clone(&conn).listen());
                Ok(Live { conn: Connection::Http(conn), watch: Watch::Session })
            }
        }
    }
}

async fn stdio_handshake(conn: &Arc<StdioConn>, choice: EraChoice) -> Result<(), ConnError> {
    if choice != EraChoice::Legacy {
        let params = handshake::discover_params();
        let answer = conn.call(Request::raw("server/discover", Some(&params))).await?;
        if let Some(h) = expect_result(&answer).ok().and_then(|r| handshake::from_discover(&r)) {
            let filter = listen_filter_stdio(&h);
            conn.set_handshake(h.clone());
            if let Some(params) = filter {
                // A long-lived request: its notifications carry list changes; its answer only
                // comes when the upstream ends the subscription.
                let conn = Arc::clone(conn);
                tokio::spawn(
                    async move { conn.call(Request::raw("subscriptions/listen", Some(params.as_bytes()))).await },
                );
            }
            return Ok(());
        }
        if choice == EraChoice::Modern {
            return Err(ConnError::Protocol("the upstream did not accept server/discover".into()));
        }
    }
    let answer = conn.call(Request::raw("initialize", Some(&handshake::initialize_params("{}")))).await?;
    let h = handshake::from_initialize(&expect_result(&answer)?).map_err(|e| ConnError::Protocol(e.0))?;
    conn.set_handshake(h);
    conn.notify("notifications/initialized", None);
    Ok(())
}

fn listen_filter_stdio(h: &Handshake) -> Option<String> {
    let caps: serde_json::Value = serde_json::from_slice(&h.capabilities).ok()?;
    let mut filter = serde_json::Map::new();
    for (cap, key) in
        [("tools", "toolsListChanged"), ("prompts", "promptsListChanged"), ("resources", "resourcesListChanged")]
    {
        if caps.get(cap).and_then(|c| c.get("listChanged")).and_then(|v| v.as_bool()) == Some(true) {
            filter.insert(key.into(), true.into());
        }
    }
    if filter.is_empty() {
        return None;
    }
    Some(format!(
        r#"{{"notifications":{},"_meta":{}}}"#,
        serde_json::Value::Object(filter),
        translate::gateway_envelope(h.version)
    ))
}

/// A connection plus what must be watched to know it died.
struct Live {
    conn: Connection,
    watch: Watch,
}

enum Watch {
    Process(Option<stdio::Process>),
    Session,
}

impl Watch {
    /// Wait until the connection dies or shutdown starts; returns why it died.
    async fn wait(&mut self, conn: &Connection, shutdown: &CancellationToken) -> String {
        match (self, conn) {
            (Watch::Process(Some(process)), Connection::Stdio(c)) => tokio::select! {
                status = process.wait() => format!("the process exited ({status})"),
                () = c.closed().cancelled() => "the process closed its stdout".to_string(),
                () = shutdown.cancelled() => String::new(),
            },
            (_, Connection::Http(c)) => tokio::select! {
                () = c.closed().cancelled() => "the HTTP session ended or the upstream became unreachable".to_string(),
                () = shutdown.cancelled() => String::new(),
            },
            _ => String::new(),
        }
    }

    async fn stop(&mut self, conn: &Connection) {
        match (self, conn) {
            (Watch::Process(process), Connection::Stdio(c)) => {
                if let Some(p) = process.take() {
                    p.stop(c).await;
                }
            }
            (_, Connection::Http(c)) => c.close().await,
            _ => {}
        }
    }
}

/// All configured upstreams, by namespace.
pub struct UpstreamSet {
    upstreams: BTreeMap<Arc<str>, Arc<Upstream>>,
    shutdown: CancellationToken,
    tasks: tokio::sync::Mutex<tokio::task::JoinSet<()>>,
    client: http::HttpClient,
}

impl UpstreamSet {
    /// Upstreams for the enabled entries of `configs`; nothing starts until [`UpstreamSet::start`].
    pub fn new<'a>(configs: impl IntoIterator<Item = (&'a String, &'a UpstreamConfig)>) -> Self {
        let upstreams = configs
            .into_iter()
            .map(|(name, cfg)| (Arc::<str>::from(name.as_str()), Arc::new(Upstream::new(name, cfg.clone()))))
            .collect();
        UpstreamSet {
            upstreams,
            shutdown: CancellationToken::new(),
            tasks: tokio::sync::Mutex::new(tokio::task::JoinSet::new()),
            client: http::client(),
        }
    }

    /// Start every upstream's supervisor; each reports on its own signal channel.
    pub async fn start(&self) -> BTreeMap<Arc<str>, mpsc::UnboundedReceiver<Signal>> {
        let mut receivers = BTreeMap::new();
        let mut tasks = self.tasks.lock().await;
        for (name, up) in &self.upstreams {
            let (tx, rx) = mpsc::unbounded_channel();
            receivers.insert(Arc::clone(name), rx);
            let signals = Signals { tx, freshness: Arc::clone(&up.freshness) };
            tasks.spawn(Arc::clone(up).supervise(self.client.clone(), signals, self.shutdown.clone()));
        }
        receivers
    }

    /// The upstream with namespace `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.upstreams.get(name)
    }

    /// All upstreams in namespace order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Upstream>> {
        self.upstreams.values()
    }

    /// Stop every upstream (close stdin / SIGTERM / SIGKILL children, end HTTP sessions) and
    /// wait for the supervisors to finish.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
    }
}
