//! One replica of an upstream: a child process or an HTTP endpoint, kept connected by a
//! supervisor task. The supervisor spawns and handshakes, probes liveness, reconnects with
//! exponential backoff and jitter, and damps crash loops (after `crash_limit` crashes within
//! `crash_window` it stops respawning for `crash_cooldown`, reporting the replica down).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::breaker::Breaker;
use super::config::{EraChoice, HttpTransport};
use super::conn::{ConnError, expect_result};
use super::connection::Connection;
use super::handshake::{self, Handshake};
use super::mux::Owner;
use super::request::Outbound;
use super::signals::{Signal, Signals};
use super::status::Status;
use super::stdio::{Spawn, StdioConn};
use super::{http, sse, stdio, translate};
use crate::error::{TransportError, TransportKind};
use crate::wire::mcp::Era;

/// Reconnect delays: from 250 ms, doubling to 30 s, with equal jitter (never at once, never in
/// step with the other replicas).
const RECONNECT: Backoff = Backoff::equal_jitter_const(Duration::from_millis(250), Duration::from_secs(30));

/// What a replica connects to.
#[derive(Clone, Debug)]
pub enum Target {
    /// A child process.
    Stdio(Spawn),
    /// An HTTP endpoint.
    Http {
        /// Its URL.
        url: ::http::Uri,
        /// Headers sent with every request.
        headers: ::http::HeaderMap,
        /// Its credentials (`auth`), when it has some.
        auth: Option<Arc<crate::upstream::auth::Credentials>>,
        /// Largest answer accepted (a JSON body, one SSE event), in bytes.
        max_response_bytes: usize,
        /// Streamable HTTP, or the legacy HTTP+SSE transport.
        flavor: HttpTransport,
    },
}

/// Supervision settings of a replica.
#[derive(Clone, Debug)]
pub struct Supervision {
    /// Deadline to start and handshake.
    pub startup: Duration,
    /// Liveness probe period (zero: off).
    pub health_interval: Duration,
    /// Crashes within `crash_window` that trigger the cooldown.
    pub crash_limit: u32,
    /// See `crash_limit`.
    pub crash_window: Duration,
    /// See `crash_limit`.
    pub crash_cooldown: Duration,
}

/// What the replicas of one upstream share.
#[derive(Debug, Default)]
pub struct Shared {
    /// The probed era, remembered so restarts skip the probe.
    pub era: Mutex<EraChoice>,
    /// The handshake of the last successful connection of any replica.
    pub last_handshake: ArcSwapOption<Handshake>,
    /// The upstream's own URIs of the resources some client session is subscribed to: a
    /// modern upstream's `subscriptions/listen` filter asks for their updates
    /// (`resourceSubscriptions`), reopened whenever the set changes.
    pub watched: tokio::sync::watch::Sender<std::collections::BTreeSet<Arc<str>>>,
}

/// One replica.
pub struct Replica {
    /// Position in the upstream's replica list when it was created (metric label).
    pub index: usize,
    upstream: Arc<str>,
    target: Target,
    supervision: Supervision,
    shared: Arc<Shared>,
    conn: ArcSwapOption<Connection>,
    status: Mutex<Status>,
    restarts: AtomicU64,
    /// Its circuit breaker (per-client sessions share one per base replica, see `pool`).
    pub breaker: Arc<Breaker>,
    outstanding: AtomicUsize,
    last_used: Mutex<Instant>,
    up_since: Mutex<Option<Instant>>,
    /// Cancelled to stop this replica alone (pool shrink) or with everything (shutdown).
    pub stop: CancellationToken,
    /// The client session this replica serves alone (a per-client upstream session).
    owner: Option<Owner>,
    /// Woken on every status change (first use of a per-client session waits for it).
    changed: tokio::sync::Notify,
}

/// Counts a call as outstanding on a replica for as long as it lives.
pub struct Outstanding<'a>(&'a Replica);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Replica {
    /// A replica that is not started yet.
    pub fn new(
        index: usize,
        upstream: Arc<str>,
        target: Target,
        supervision: Supervision,
        shared: Arc<Shared>,
        breaker: Arc<Breaker>,
        stop: CancellationToken,
    ) -> Self {
        Replica {
            index,
            upstream,
            target,
            supervision,
            shared,
            conn: ArcSwapOption::empty(),
            status: Mutex::new(Status::Starting),
            restarts: AtomicU64::new(0),
            breaker,
            outstanding: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
            up_since: Mutex::new(None),
            stop,
            owner: None,
            changed: tokio::sync::Notify::new(),
        }
    }

    /// This replica as a per-client upstream session of `owner`: its handshake declares the
    /// owner's capabilities, and what its upstream says outside calls goes to the owner alone.
    pub fn owned_by(mut self, owner: Owner) -> Self {
        self.owner = Some(owner);
        self
    }

    /// The client session it serves alone, if it is a per-client upstream session.
    pub fn owner(&self) -> Option<&Owner> {
        self.owner.as_ref()
    }

    /// Wait until the replica is connected (`Ok`), or it failed to connect or stopped
    /// (`Err`), at most `limit`.
    ///
    /// Errors: `Err(())` when it is down or stopped, or `limit` passed.
    pub async fn connected(&self, limit: Duration) -> Result<Arc<Connection>, ()> {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if let Some(conn) = self.connection() {
                    return Ok(conn);
                }
                if matches!(self.status(), Status::Down { .. } | Status::Stopped) {
                    return Err(());
                }
                changed.await;
            }
        };
        tokio::time::timeout(limit, wait).await.unwrap_or(Err(()))
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.status.lock().expect("status lock").clone()
    }

    fn set_status(&self, s: Status) {
        *self.status.lock().expect("status lock") = s;
        self.changed.notify_waiters();
    }

    /// The live connection, if connected.
    pub fn connection(&self) -> Option<Arc<Connection>> {
        self.conn.load_full()
    }

    /// When the live connection was made; `None` while not connected.
    pub fn up_since(&self) -> Option<Instant> {
        *self.up_since.lock().expect("up_since lock")
    }

    /// Reconnections after a failure.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Calls in flight on this replica.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// How long since a call last started here.
    pub fn idle_for(&self) -> Duration {
        self.last_used.lock().expect("idle lock").elapsed()
    }

    /// Count a call until the returned guard drops.
    pub fn begin(&self) -> Outstanding<'_> {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        *self.last_used.lock().expect("idle lock") = Instant::now();
        Outstanding(self)
    }

    /// Connect, watch, reconnect, until `stop`; then stop the connection.
    pub async fn supervise(self: Arc<Self>, client: http::HttpClient, signals: Signals) {
        let mut failures = 0;
        let mut crashes: VecDeque<Instant> = VecDeque::new();
        let mut first = true;
        let stop = self.stop.clone();
        while !stop.is_cancelled() {
            if !first {
                self.restarts.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            self.set_status(Status::Starting);
            let started = Instant::now();
            let outcome = tokio::select! {
                // Boxed, like the probe and the stop below: the supervisor lives as long as the
                // replica, and an idle one should not carry the handshake's state.
                r = tokio::time::timeout(self.supervision.startup, Box::pin(self.connect(&client, &signals))) => r,
                () = stop.cancelled() => break,
            };
            let reason = match outcome {
                Ok(Ok(mut live)) => {
                    let h = live.conn.handshake().clone();
                    *self.shared.era.lock().expect("era lock") =
                        if h.era == Era::Modern { EraChoice::Modern } else { EraChoice::Legacy };
                    tracing::info!(upstream = %self.upstream, replica = self.index, era = ?h.era, version = h.version, "upstream connected");
                    self.shared.last_handshake.store(Some(Arc::new(h.clone())));
                    let conn = Arc::new(live.conn);
                    self.conn.store(Some(Arc::clone(&conn)));
                    *self.up_since.lock().expect("up_since lock") = Some(Instant::now());
                    self.set_status(Status::Up { era: h.era, version: h.version });
                    signals.send(Signal::Up);
                    let reason = self.watch(&mut live.watch, &conn, &stop).await;
                    self.conn.store(None);
                    *self.up_since.lock().expect("up_since lock") = None;
                    Box::pin(live.watch.stop(&conn)).await;
                    if stop.is_cancelled() {
                        break;
                    }
                    if started.elapsed() > Duration::from_secs(60) {
                        failures = 0;
                    }
                    reason
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no handshake within {:?}", self.supervision.startup),
            };
            let now = Instant::now();
            crashes.push_back(now);
            while crashes.front().is_some_and(|t| now.duration_since(*t) > self.supervision.crash_window) {
                crashes.pop_front();
            }
            let (wait, reason, brief) = if crashes.len() >= self.supervision.crash_limit as usize {
                crashes.clear();
                let cooldown = self.supervision.crash_cooldown;
                let reason = format!("{reason}; crash loop: not restarting for {} s", cooldown.as_secs());
                (cooldown, reason, "crash loop: restarts are paused")
            } else {
                failures += 1;
                (RECONNECT.delay(failures), reason, "it is down; reconnecting")
            };
            tracing::warn!(upstream = %self.upstream, replica = self.index, reason = %reason, "upstream down; reconnecting");
            self.set_status(Status::Down { reason, brief });
            signals.send(Signal::Down);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => break,
            }
        }
        self.conn.store(None);
        self.set_status(Status::Stopped);
    }

    /// Wait until the connection dies, fails its liveness probe, or `stop` fires.
    async fn watch(&self, watch: &mut Watch, conn: &Connection, stop: &CancellationToken) -> String {
        let interval = self.supervision.health_interval;
        let probe = async {
            if interval.is_zero() {
                return std::future::pending::<String>().await;
            }
            loop {
                tokio::time::sleep(interval).await;
                if let Err(e) = Box::pin(probe(conn, interval.min(Duration::from_secs(5)))).await {
                    return format!("liveness probe failed: {e}");
                }
            }
        };
        tokio::select! {
            reason = watch.wait(conn) => reason,
            reason = probe => reason,
            () = stop.cancelled() => String::new(),
        }
    }

    async fn connect(&self, client: &http::HttpClient, signals: &Signals) -> Result<Live, ConnError> {
        let choice = *self.shared.era.lock().expect("era lock");
        match &self.target {
            Target::Stdio(spec) => {
                let (conn, process) = StdioConn::spawn(&self.upstream, spec, signals.clone(), self.owner.clone())?;
                let mut watch = Watch::Process(Some(process));
                let capabilities = self.owner.as_ref().map_or(&b"{}"[..], |o| &o.capabilities[..]);
                match stdio_handshake(&conn, choice, capabilities, self.shared.watched.subscribe()).await {
                    Ok(()) => Ok(Live { conn: Connection::Stdio(conn), watch }),
                    Err(e) => {
                        watch.stop(&Connection::Stdio(conn)).await;
                        Err(e)
                    }
                }
            }
            Target::Http { url, headers, auth, max_response_bytes, flavor } => {
                let endpoint = http::Endpoint {
                    client: client.clone(),
                    url: url.clone(),
                    headers: headers.clone(),
                    auth: auth.clone(),
                    max_response_bytes: *max_response_bytes,
                };
                if *flavor == HttpTransport::Sse {
                    let conn =
                        sse::SseConn::connect(&self.upstream, endpoint, signals.clone(), self.owner.clone()).await?;
                    return Ok(Live { conn: Connection::Sse(conn), watch: Watch::Session });
                }
                let conn =
                    http::HttpConn::connect(&self.upstream, endpoint, choice, signals.clone(), self.owner.clone())
                        .await?;
                tokio::spawn(http::listen::listen(Arc::clone(&conn), self.shared.watched.subscribe()));
                Ok(Live { conn: Connection::Http(conn), watch: Watch::Session })
            }
        }
    }
}

/// A liveness probe: `ping` for legacy upstreams, `server/discover` for modern ones (the
/// 2026-07-28 revision has no `ping`); also `sekisho test`'s ping.
///
/// Errors: [`ConnError`] when no answer arrives within `limit` (as a `TimedOut` transport
/// error), or the answer is an error.
pub async fn probe(conn: &Connection, limit: Duration) -> Result<(), ConnError> {
    let h = conn.handshake();
    let params = (h.era == Era::Modern).then(|| format!(r#"{{"_meta":{}}}"#, translate::gateway_envelope(h.version)));
    let method = if h.era == Era::Modern { "server/discover" } else { "ping" };
    let req = Outbound::raw(method, params.as_deref().map(str::as_bytes));
    match tokio::time::timeout(limit, conn.call(&req)).await {
        Ok(Ok(msg)) => expect_result(&msg).map(|_| ()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ConnError::Transport(TransportError::new(
            TransportKind::TimedOut,
            format!("no answer within {} ms", limit.as_millis()),
        ))),
    }
}

/// `capabilities`: what the gateway declares as the upstream's client (`{}` on a shared
/// process; a per-client process gets its client's, so it may ask that client for roots).
async fn stdio_handshake(
    conn: &Arc<StdioConn>,
    choice: EraChoice,
    capabilities: &[u8],
    watched: tokio::sync::watch::Receiver<std::collections::BTreeSet<Arc<str>>>,
) -> Result<(), ConnError> {
    if choice != EraChoice::Legacy {
        let params = handshake::discover_params();
        let answer = conn.call(&Outbound::raw("server/discover", Some(&params))).await?;
        if let Some(h) = expect_result(&answer).ok().and_then(|r| handshake::from_discover(&r)) {
            conn.set_handshake(h.clone());
            tokio::spawn(stdio_listen(Arc::clone(conn), h, watched));
            return Ok(());
        }
        if choice == EraChoice::Modern {
            return Err(ConnError::Protocol("the upstream did not accept server/discover".into()));
        }
    }
    let answer = conn
        .call(&Outbound::raw(
            "initialize",
            Some(&handshake::initialize_params(std::str::from_utf8(capabilities).unwrap_or("{}"))),
        ))
        .await?;
    let h = handshake::from_initialize(&expect_result(&answer)?).map_err(|e| ConnError::Protocol(e.0))?;
    conn.set_handshake(h);
    conn.notify("notifications/initialized", None);
    Ok(())
}

/// A modern process's `subscriptions/listen`: a long-lived request whose notifications carry
/// list changes and the updates of the watched resources; its answer only comes when the
/// upstream ends the subscription. Sent again (the old one cancelled) whenever the set of
/// watched resources changes; ends with the process.
async fn stdio_listen(
    conn: Arc<StdioConn>,
    h: Handshake,
    mut watched: tokio::sync::watch::Receiver<std::collections::BTreeSet<Arc<str>>>,
) {
    loop {
        let params = handshake::listen_params(&h, &watched.borrow_and_update());
        let changed = match params {
            Some(params) => {
                let req = Outbound::raw("subscriptions/listen", Some(params.as_bytes()));
                tokio::select! {
                    r = conn.call(&req) => { if r.is_err() { return } watched.changed().await.is_ok() }
                    r = watched.changed() => r.is_ok(),
                }
            }
            None => watched.changed().await.is_ok(),
        };
        if !changed || conn.closed().is_cancelled() {
            return;
        }
    }
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
    /// Wait until the connection dies; returns why.
    async fn wait(&mut self, conn: &Connection) -> String {
        match (self, conn) {
            (Watch::Process(Some(process)), Connection::Stdio(c)) => tokio::select! {
                status = process.wait() => format!("the process exited ({status})"),
                () = c.closed().cancelled() => "the process closed its stdout".to_string(),
            },
            (_, Connection::Http(c)) => {
                c.closed().cancelled().await;
                "the HTTP session ended or the upstream became unreachable".to_string()
            }
            (_, Connection::Sse(c)) => {
                c.closed().cancelled().await;
                "the SSE stream ended (its session with it) or the upstream became unreachable".to_string()
            }
            _ => std::future::pending().await,
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
            (_, Connection::Sse(c)) => c.close(),
            _ => {}
        }
    }
}
