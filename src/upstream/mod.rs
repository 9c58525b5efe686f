//! The upstream set. Per upstream server: its replicas (a supervised pool of child processes,
//! or one HTTP session per URL, in [`pool`]), its call stack (bulkhead → retry → balance →
//! breaker → timeout → attempt, built once in [`stack::build`]), and its fallback state.

pub mod attempt;
pub mod auth;
pub mod backoff;
pub mod balance;
pub mod breaker;
pub mod classify;
pub mod clients;
pub mod config;
pub mod conn;
pub mod connection;
pub mod dispatch;
pub mod environment;
pub mod fallback;
pub mod handshake;
pub mod http;
pub mod mux;
pub mod pool;
pub mod replica;
pub mod request;
pub mod retry;
pub mod session_mode;
pub mod signals;
pub mod sse;
pub mod stack;
pub mod status;
pub mod stderr;
pub mod stdio;
pub mod timeout;
pub mod tool_config;
pub mod translate;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use self::config::UpstreamConfig;
use self::dispatch::{CallPolicy, Dispatch};
use self::fallback::FallbackState;
use self::handshake::Handshake;
use self::pool::{Pool, Spawner};
use self::replica::Replica;
use self::request::Outbound;
use self::signals::{SignalReceiver, Signals};
use self::status::Status;
use crate::error::GatewayError;
use crate::pipeline::admit::Admission;
use crate::pipeline::parts::{Reply, ReplyFuture};

/// One upstream server.
pub struct Upstream {
    /// Its namespace.
    pub name: Arc<str>,
    /// Its configuration, with the settings in force.
    pub config: Arc<UpstreamConfig>,
    pool: Arc<Pool>,
    stack: stack::Stack,
    steps: Vec<&'static str>,
    bulkhead: Option<Arc<Admission>>,
    fallback: FallbackState,
    freshness: Arc<signals::Freshness>,
}

impl Upstream {
    fn new(name: &str, config: &UpstreamConfig) -> Self {
        let name: Arc<str> = Arc::from(name);
        let s = &config.settings;
        let pool = Arc::new(Pool::new(&name, config));
        let bulkhead = s.bulkhead.then(|| {
            Admission::new(
                crate::observe::metrics::METRICS.upstream_name(&name),
                s.max_concurrent,
                s.queue_size,
                s.queue_timeout,
                s.aging,
            )
        });
        let (stack, steps) = stack::build(&name, s, &pool, bulkhead.clone());
        Upstream {
            fallback: FallbackState::new(s.fallback_return),
            config: Arc::new(config.clone()),
            pool,
            stack,
            steps,
            bulkhead,
            freshness: Arc::default(),
            name,
        }
    }

    /// Send a call through this upstream's stack.
    ///
    /// Errors: [`GatewayError::Overloaded`] from the bulkhead; [`GatewayError::UpstreamUnavailable`]
    /// when no replica is connected; [`GatewayError::CircuitOpen`] when every live replica's
    /// breaker is open; [`GatewayError::UpstreamTimeout`] when the last attempt's deadline passed
    /// (it is cancelled upstream); [`GatewayError::UpstreamTransport`] when the connection
    /// failed during the call; [`GatewayError::UpstreamProtocol`] for an answer that is not a
    /// response.
    pub fn call(&self, dispatch: Arc<Dispatch>) -> ReplyFuture {
        self.stack.call(dispatch)
    }

    /// The steps of this upstream's stack, outermost first.
    pub fn steps(&self) -> &[&'static str] {
        &self.steps
    }

    /// A gateway-originated request (listing, probing); returns the raw result.
    ///
    /// Errors: as [`Upstream::call`], plus [`GatewayError::UpstreamProtocol`] for an error answer.
    pub async fn request(&self, method: &str, params: Option<&[u8]>) -> Result<Bytes, GatewayError> {
        let dispatch = Dispatch::new(Arc::new(Outbound::raw(method, params)), CallPolicy::gateway());
        match self.call(dispatch).await? {
            Reply::Result { body, .. } => Ok(body),
            Reply::Error { body, .. } => Err(GatewayError::UpstreamProtocol {
                upstream: self.name.to_string(),
                // The upstream's words, redacted before they reach logs and `/readyz`.
                reason: format!("{method} failed: {}", crate::detect::redact::for_log(&body, 4096)),
            }),
        }
    }

    /// The longest one call can take through the retry layer: every attempt to its deadline
    /// (`per_attempt`, else the upstream's timeout) plus the longest backoffs between them.
    pub fn longest_call(&self, per_attempt: Option<Duration>) -> Duration {
        let s = &self.config.settings;
        let attempts = if s.retry.enabled { s.retry.max_attempts.max(1) } else { 1 };
        per_attempt.unwrap_or(s.timeout) * attempts + s.retry.max_delay * (attempts - 1)
    }

    /// The replicas now.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        self.pool.replicas()
    }

    /// The aggregate status: up when any replica is up.
    pub fn status(&self) -> Status {
        self.pool.status()
    }

    /// Reconnections after failures, over all replicas.
    pub fn restarts(&self) -> u64 {
        self.pool.restarts()
    }

    /// Calls waiting on this upstream.
    pub fn in_flight(&self) -> usize {
        self.pool.in_flight()
    }

    /// Live per-client upstream sessions and their cap (`max_client_sessions`), when this
    /// upstream has `session = "per-client"`.
    pub fn client_sessions(&self) -> Option<(usize, usize)> {
        self.pool.clients().map(|c| (c.len(), c.max()))
    }

    /// The process ids of the live per-client upstream sessions (stdio; for admins' `/readyz`).
    pub fn client_pids(&self) -> Vec<u32> {
        let replicas = self.pool.clients().map(|c| c.replicas()).unwrap_or_default();
        replicas.iter().filter_map(|r| r.connection()?.pid()).collect()
    }

    /// Tell client `key`'s own upstream session, if it has one, the client's notification
    /// `method` (`notifications/roots/list_changed`: the upstream asks that client again).
    pub fn notify_client_session(&self, key: u64, method: &str) {
        if let Some(conn) = self.pool.clients().and_then(|c| c.get(key)).and_then(|r| r.connection()) {
            conn.notify(method);
        }
    }

    /// Whether client sessions get upstream sessions of their own (`session = "per-client"`).
    pub fn is_per_client(&self) -> bool {
        self.pool.clients().is_some()
    }

    /// Send a gateway-originated `method` to client `key`'s own upstream session, if it has a
    /// live one (a per-client `resources/unsubscribe`); best effort, without retries.
    ///
    /// Errors: the connection's failure or the upstream's error answer, as text (for the log).
    pub async fn request_client_session(&self, key: u64, method: &str, params: Option<&[u8]>) -> Result<(), String> {
        let Some(session) = self.pool.clients().and_then(|c| c.get(key)).and_then(|r| r.connection()) else {
            return Ok(());
        };
        let answer = session.call(&Outbound::raw(method, params)).await.map_err(|e| e.to_string())?;
        conn::expect_result(&answer).map(|_| ()).map_err(|e| e.to_string())
    }

    /// The bulkhead, when it is on (for metrics).
    pub fn bulkhead(&self) -> Option<&Admission> {
        self.bulkhead.as_deref()
    }

    /// The handshake of a live connection.
    pub fn handshake(&self) -> Option<Handshake> {
        self.pool.handshake()
    }

    /// How current the catalog is with this upstream's announced list changes.
    pub fn freshness(&self) -> &signals::Freshness {
        &self.freshness
    }

    /// The handshake of the last successful connection (kept while the upstream is down).
    pub fn last_handshake(&self) -> Option<Arc<Handshake>> {
        self.pool.last_handshake()
    }

    /// Whether this upstream speaks the modern era (configured so, or its last handshake did).
    pub fn speaks_modern(&self) -> bool {
        self.config.era == config::EraChoice::Modern
            || self.last_handshake().is_some_and(|h| h.era == crate::wire::mcp::Era::Modern)
    }

    /// Watch (`on`) or stop watching the upstream's resource `uri` on its modern
    /// `subscriptions/listen` streams (`resourceSubscriptions`): the modern era's form of
    /// `resources/subscribe` and `resources/unsubscribe`.
    pub fn watch_resource(&self, uri: &Arc<str>, on: bool) {
        self.pool.watch_resource(uri, on);
    }

    /// Whether this call should go to the fallback (see [`FallbackState::route_to_fallback`]).
    pub fn route_to_fallback(&self) -> bool {
        self.fallback.route_to_fallback(&self.pool)
    }

    /// The share of this upstream's calls its fallback takes now (see [`FallbackState::share`]).
    pub fn fallback_share(&self) -> f64 {
        self.fallback.share(&self.pool)
    }

    /// Note that the primary failed a call the fallback then served.
    pub fn mark_degraded(&self) {
        self.fallback.mark_degraded();
    }
}

/// The client of an upstream with a `ca_file`. Validation has read the file once; should it be
/// unreadable now, the upstream gets a client trusting nothing beyond the system store, so its
/// connections fail closed (and say why in the log) rather than trust less carefully.
fn own_client(name: &str, path: &std::path::Path) -> http::HttpClient {
    match http::tls::read_pem_certs(path).and_then(|certs| http::client_trusting(&certs)) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(upstream = name, error = %e, "ca_file unusable; trusting only the system CA store");
            http::client()
        }
    }
}

/// All configured upstreams, by namespace.
pub struct UpstreamSet {
    upstreams: BTreeMap<Arc<str>, Arc<Upstream>>,
    shutdown: CancellationToken,
    tasks: Arc<tokio::sync::Mutex<tokio::task::JoinSet<()>>>,
    client: http::HttpClient,
    /// Clients of the upstreams with a `ca_file` (each trusts its own CAs besides the system's).
    own_clients: BTreeMap<Arc<str>, http::HttpClient>,
}

impl UpstreamSet {
    /// Upstreams for the enabled entries of `configs` (with their settings resolved); nothing
    /// starts until [`UpstreamSet::start`].
    pub fn new<'a>(configs: impl IntoIterator<Item = (&'a String, &'a UpstreamConfig)>) -> Self {
        let mut upstreams = BTreeMap::new();
        let mut own_clients = BTreeMap::new();
        for (name, cfg) in configs {
            let name = Arc::<str>::from(name.as_str());
            if let Some(path) = &cfg.ca_file {
                own_clients.insert(Arc::clone(&name), own_client(&name, path));
            }
            upstreams.insert(Arc::clone(&name), Arc::new(Upstream::new(&name, cfg)));
        }
        UpstreamSet {
            upstreams,
            shutdown: CancellationToken::new(),
            tasks: Arc::new(tokio::sync::Mutex::new(tokio::task::JoinSet::new())),
            client: http::client(),
            own_clients,
        }
    }

    /// Start every upstream's replicas and its pool keeper; each upstream reports on its own
    /// signal channel.
    pub fn start(&self) -> BTreeMap<Arc<str>, SignalReceiver> {
        let mut receivers = BTreeMap::new();
        for (name, up) in &self.upstreams {
            let (signals, rx) = Signals::channel(name, Arc::clone(&up.freshness));
            receivers.insert(Arc::clone(name), rx);
            up.pool.start(Spawner {
                client: self.own_clients.get(name).unwrap_or(&self.client).clone(),
                signals,
                shutdown: self.shutdown.clone(),
                tasks: Arc::clone(&self.tasks),
            });
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
        // Supervisors are registered from spawned tasks; let those land first.
        tokio::task::yield_now().await;
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
    }
}
