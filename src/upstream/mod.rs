//! The upstream set. Per upstream server: its replicas (a supervised pool of child processes,
//! or one HTTP session per URL), and the per-upstream call stack, written once in
//! [`Upstream::call`], outermost first:
//!
//! 1. **bulkhead** — this upstream's concurrency limit and priority queue, so one slow upstream
//!    cannot take every slot of the gateway;
//! 2. **retry** — safe calls are repeated after transport failures and timeouts, with full
//!    jitter backoff, within the retry budget;
//! 3. **balance** — least outstanding of two random live replicas whose breaker admits a call
//!    (power of two choices); the stdio pool grows here under load;
//! 4. **breaker** — per replica; failures are classified once in [`classify`];
//! 5. **timeout** — per attempt; an expired attempt is cancelled upstream.
//!
//! Fallback to another upstream (and the gradual return) is decided by the router, which knows
//! both upstreams.

pub mod breaker;
pub mod classify;
pub mod config;
pub mod conn;
pub mod handshake;
pub mod http;
pub mod mux;
pub mod replica;
pub mod retry;
pub mod stdio;
pub mod translate;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::breaker::{Breaker, BreakerConfig};
use self::classify::Verdict;
use self::config::{ResilienceConfig, Transport, UpstreamConfig};
use self::conn::{ConnError, Request, expect_result};
use self::handshake::Handshake;
use self::mux::{Signal, Signals};
use self::replica::{Replica, Supervision, Target};
use self::retry::{RetryBudget, RetryConfig};
use self::stdio::{Spawn, StdioConn};
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};
use crate::pipeline::admit::Admission;
use crate::pipeline::ctx::{Principal, Priority};
use crate::wire::jsonrpc::Message;
use crate::wire::mcp::Era;

/// A live connection to an upstream replica.
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

    async fn call(&self, req: &Request<'_>) -> Result<Message, ConnError> {
        match self {
            Connection::Stdio(c) => c.call(req).await,
            Connection::Http(c) => c.call(req).await,
        }
    }

    /// Calls waiting on this connection.
    pub fn in_flight(&self) -> usize {
        match self {
            Connection::Stdio(c) => c.mux.in_flight(),
            Connection::Http(c) => c.mux.in_flight(),
        }
    }

    /// The child's process id, for stdio connections.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Connection::Stdio(c) => c.pid(),
            Connection::Http(_) => None,
        }
    }
}

/// What an upstream (or one replica) is doing, as `/readyz` and metrics show it.
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

    /// Lowercase name (`/readyz`).
    pub fn name(&self) -> &'static str {
        match self {
            Status::Up { .. } => "up",
            Status::Down { .. } => "down",
            Status::Starting => "starting",
            Status::Stopped => "stopped",
        }
    }
}

/// How one call may be treated on its way to the upstream.
#[derive(Clone, Copy, Debug)]
pub struct CallPolicy<'a> {
    /// Admission priority in the bulkhead.
    pub priority: Priority,
    /// The caller, for fair sharing of the bulkhead.
    pub caller: &'a Principal,
    /// Whether repeating the call is safe (read-only or idempotent, or an idempotency key).
    pub retry_safe: bool,
    /// A per-tool deadline overriding the upstream's.
    pub timeout: Option<Duration>,
}

impl CallPolicy<'static> {
    /// The gateway's own requests (listing, probing): medium priority, safe to repeat.
    pub fn gateway() -> Self {
        CallPolicy { priority: Priority::Medium, caller: &Principal::Anonymous, retry_safe: true, timeout: None }
    }
}

/// What starts new replicas (the stdio pool grows while running).
struct Spawner {
    client: http::HttpClient,
    signals: Signals,
    shutdown: CancellationToken,
    tasks: Arc<tokio::sync::Mutex<tokio::task::JoinSet<()>>>,
}

#[derive(Debug, Default)]
struct FallbackState {
    /// Last time a call found the primary unhealthy; `None` while not degraded.
    unhealthy_seen: Option<Instant>,
}

/// One upstream server.
pub struct Upstream {
    /// Its namespace.
    pub name: Arc<str>,
    /// Its configuration.
    pub config: Arc<UpstreamConfig>,
    label: Name,
    replicas: RwLock<Vec<Arc<Replica>>>,
    shared: Arc<replica::Shared>,
    bulkhead: Arc<Admission>,
    bulkhead_on: bool,
    timeout: Duration,
    retry: RetryConfig,
    budget: RetryBudget,
    breaker: BreakerConfig,
    supervision: Supervision,
    spawner: Mutex<Option<Spawner>>,
    growing: AtomicBool,
    next_index: std::sync::atomic::AtomicUsize,
    fallback: Mutex<FallbackState>,
    freshness: Arc<mux::Freshness>,
}

impl Upstream {
    fn new(name: &str, config: &UpstreamConfig, defaults: &ResilienceConfig) -> Self {
        let name: Arc<str> = Arc::from(name);
        let retry = config.retry.clone().unwrap_or_else(|| defaults.retry.clone());
        Upstream {
            label: Name::Shared(Arc::clone(&name)),
            bulkhead: Admission::new(
                Name::Shared(Arc::clone(&name)),
                config.max_concurrent.unwrap_or(256),
                config.queue_size.unwrap_or(256),
                Duration::from_secs(5),
                Duration::from_secs(1),
            ),
            bulkhead_on: defaults.bulkhead,
            timeout: config.timeout.unwrap_or(defaults.timeout),
            budget: RetryBudget::new(&retry),
            retry,
            breaker: config.breaker.clone().unwrap_or_else(|| defaults.breaker.clone()),
            supervision: Supervision {
                startup: config.startup_deadline(),
                health_interval: config.health_interval.unwrap_or(Duration::from_secs(30)),
                crash_limit: config.crash_limit.unwrap_or(5).max(1),
                crash_window: config.crash_window.unwrap_or(Duration::from_secs(60)),
                crash_cooldown: config.crash_cooldown.unwrap_or(Duration::from_secs(60)),
            },
            shared: Arc::new(replica::Shared { era: Mutex::new(config.era), ..Default::default() }),
            replicas: RwLock::new(Vec::new()),
            spawner: Mutex::new(None),
            growing: AtomicBool::new(false),
            next_index: std::sync::atomic::AtomicUsize::new(0),
            fallback: Mutex::new(FallbackState::default()),
            freshness: Arc::default(),
            config: Arc::new(config.clone()),
            name,
        }
    }

    /// The replicas now.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        self.replicas.read().expect("replicas lock").clone()
    }

    /// The aggregate status: up when any replica is up.
    pub fn status(&self) -> Status {
        let replicas = self.replicas.read().expect("replicas lock");
        let mut down = None;
        let mut starting = false;
        for r in replicas.iter() {
            match r.status() {
                s @ Status::Up { .. } => return s,
                Status::Down { reason } => down = Some(reason),
                Status::Starting => starting = true,
                Status::Stopped => {}
            }
        }
        match (starting, down) {
            (true, _) => Status::Starting,
            (false, Some(reason)) => Status::Down { reason },
            (false, None) if replicas.is_empty() => Status::Starting,
            (false, None) => Status::Stopped,
        }
    }

    /// Reconnections after failures, over all replicas.
    pub fn restarts(&self) -> u64 {
        self.replicas().iter().map(|r| r.restarts()).sum()
    }

    /// Calls waiting on this upstream.
    pub fn in_flight(&self) -> usize {
        self.replicas().iter().map(|r| r.outstanding()).sum()
    }

    /// The bulkhead (for metrics).
    pub fn bulkhead(&self) -> &Admission {
        &self.bulkhead
    }

    /// The handshake of a live connection.
    pub fn handshake(&self) -> Option<Handshake> {
        self.replicas().iter().find_map(|r| r.connection().map(|c| c.handshake().clone()))
    }

    /// How current the catalog is with this upstream's announced list changes.
    pub fn freshness(&self) -> &mux::Freshness {
        &self.freshness
    }

    /// The handshake of the last successful connection, kept while the upstream is down so
    /// the gateway's advertised capabilities do not flap during a restart.
    pub fn last_handshake(&self) -> Option<Arc<Handshake>> {
        self.shared.last_handshake.load_full()
    }

    /// Send a request through this upstream's stack (see the module documentation).
    ///
    /// Errors: [`GatewayError::Overloaded`] from the bulkhead; [`GatewayError::UpstreamUnavailable`]
    /// when no replica is connected or the connection died during the call;
    /// [`GatewayError::CircuitOpen`] when every live replica's breaker is open;
    /// [`GatewayError::UpstreamTimeout`] when the last attempt's deadline passed (it is cancelled
    /// upstream); [`GatewayError::UpstreamTransport`] / [`GatewayError::UpstreamProtocol`] for
    /// transport and framing failures.
    pub async fn call(&self, req: &Request<'_>, policy: CallPolicy<'_>) -> Result<(Message, Era), GatewayError> {
        // 1. bulkhead
        let _slot = if !self.bulkhead_on {
            None
        } else if let Some(slot) = self.bulkhead.try_acquire(policy.caller) {
            Some(slot)
        } else {
            Some(self.bulkhead.acquire(policy.priority, policy.caller).await?)
        };
        let deadline = policy.timeout.unwrap_or(self.timeout);
        self.budget.record_call();
        let mut attempt = 1;
        let mut last_replica = None;
        loop {
            // 3. balance + 4. breaker
            let (replica, conn, ticket) = self.pick(last_replica)?;
            let busy = replica.begin();
            let ticket = TicketGuard { breaker: &replica.breaker, ticket: Some(ticket) };
            // 5. timeout
            let outcome = tokio::time::timeout(deadline, conn.call(req)).await;
            drop(busy);
            let (result, verdict) = match outcome {
                Ok(Ok(msg)) => {
                    let verdict = classify::answered(&msg);
                    (Ok((msg, conn.handshake().era)), verdict)
                }
                Ok(Err(e)) => {
                    let verdict = classify::unanswered(&e);
                    (Err(self.call_failed(&conn, e)), verdict)
                }
                Err(_) => (
                    Err(GatewayError::UpstreamTimeout { upstream: self.name.to_string(), after: deadline }),
                    classify::TIMED_OUT,
                ),
            };
            ticket.record(verdict);
            // 2. retry
            let retryable = matches!(verdict, Verdict::Failed { retryable: true });
            if !retryable || !policy.retry_safe || !self.retry.enabled || attempt >= self.retry.max_attempts {
                return result;
            }
            if !self.budget.try_retry() {
                METRICS.retry_budget_exhausted(self.label.clone());
                return result;
            }
            METRICS.retry(self.label.clone());
            tokio::time::sleep(self.retry.backoff(attempt)).await;
            attempt += 1;
            last_replica = Some(replica.index);
        }
    }

    /// The longest one call can take through the retry layer: every attempt to its deadline
    /// (`per_attempt`, else the upstream's timeout) plus the longest backoffs between them.
    pub fn longest_call(&self, per_attempt: Option<Duration>) -> Duration {
        let attempts = if self.retry.enabled { self.retry.max_attempts.max(1) } else { 1 };
        per_attempt.unwrap_or(self.timeout) * attempts + self.retry.max_delay * (attempts - 1)
    }

    /// A gateway-originated request (listing, probing); returns the raw result.
    ///
    /// Errors: as [`Upstream::call`], plus [`GatewayError::UpstreamProtocol`] for an error answer.
    pub async fn request(&self, method: &str, params: Option<&[u8]>) -> Result<Bytes, GatewayError> {
        let (msg, _) = self.call(&Request::raw(method, params), CallPolicy::gateway()).await?;
        expect_result(&msg)
            .map_err(|e| GatewayError::UpstreamProtocol { upstream: self.name.to_string(), reason: e.to_string() })
    }

    /// Choose a replica: among live replicas whose breaker is not open, the one with fewer calls
    /// in flight of two picked at random, preferring one other than `avoid` (a retry goes
    /// elsewhere when it can).
    #[allow(clippy::type_complexity)]
    fn pick(&self, avoid: Option<usize>) -> Result<(Arc<Replica>, Arc<Connection>, breaker::Ticket), GatewayError> {
        let replicas = self.replicas.read().expect("replicas lock");
        let mut live: Vec<(&Arc<Replica>, Arc<Connection>)> =
            replicas.iter().filter_map(|r| r.connection().map(|c| (r, c))).collect();
        if live.is_empty() {
            drop(replicas);
            return Err(self.unavailable());
        }
        if live.len() > 1 && avoid.is_some() {
            live.retain(|(r, _)| Some(r.index) != avoid);
        }
        // Power of two choices, then the rest in order as fallbacks if breakers refuse.
        if live.len() > 1 {
            let a = rand::random_range(0..live.len());
            let mut b = rand::random_range(0..live.len() - 1);
            if b >= a {
                b += 1;
            }
            let better = if live[b].0.outstanding() < live[a].0.outstanding() { b } else { a };
            live.swap(0, better);
        }
        let mut soonest: Option<Duration> = None;
        let mut chosen = None;
        for (r, c) in live {
            match r.breaker.admit() {
                Ok(ticket) => {
                    chosen = Some((Arc::clone(r), c, ticket));
                    break;
                }
                Err(wait) => soonest = Some(soonest.map_or(wait, |s| s.min(wait))),
            }
        }
        // Growing takes the replica list's write lock: release the read lock first.
        drop(replicas);
        if let Some((r, c, ticket)) = chosen {
            self.maybe_grow(&r);
            return Ok((r, c, ticket));
        }
        Err(GatewayError::CircuitOpen { upstream: self.name.to_string(), retry_after: soonest.unwrap_or_default() })
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

    /// Whether some replica is connected with a breaker that is not open.
    pub fn healthy(&self) -> bool {
        self.replicas().iter().any(|r| r.connection().is_some() && r.breaker.state() != breaker::State::Open)
    }

    /// Whether this call should go to the fallback: always while no replica is healthy, and,
    /// after recovery, with a share that falls linearly to zero over `fallback_return`.
    ///
    /// Recovery dates from when a healthy replica connected, or, when it was connected all along
    /// (an open breaker), from the last call that found the upstream unhealthy.
    pub fn route_to_fallback(&self) -> bool {
        let healthy_since = self
            .replicas()
            .iter()
            .filter(|r| r.breaker.state() != breaker::State::Open)
            .filter_map(|r| r.up_since())
            .min();
        let mut st = self.fallback.lock().expect("fallback lock");
        let Some(up) = healthy_since else {
            st.unhealthy_seen = Some(Instant::now());
            return true;
        };
        let Some(seen) = st.unhealthy_seen else { return false };
        let period = self.config.fallback_return.unwrap_or(Duration::from_secs(30));
        let since = up.max(seen).elapsed();
        if since >= period {
            st.unhealthy_seen = None;
            return false;
        }
        rand::random::<f64>() >= since.as_secs_f64() / period.as_secs_f64()
    }

    /// Note that the primary failed a call the fallback then served.
    pub fn mark_degraded(&self) {
        self.fallback.lock().expect("fallback lock").unhealthy_seen = Some(Instant::now());
    }

    fn start_replica(&self, target: Target, spawner: &Spawner) {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let replica = Arc::new(Replica::new(
            index,
            Arc::clone(&self.name),
            target,
            self.supervision.clone(),
            Arc::clone(&self.shared),
            Breaker::new(self.breaker.clone()),
            spawner.shutdown.child_token(),
        ));
        self.replicas.write().expect("replicas lock").push(Arc::clone(&replica));
        let (client, signals, tasks) = (spawner.client.clone(), spawner.signals.clone(), Arc::clone(&spawner.tasks));
        tokio::spawn(async move { tasks.lock().await.spawn(replica.supervise(client, signals)) });
    }

    fn stdio_target(&self) -> Option<Target> {
        match self.config.transport() {
            Transport::Stdio { command, args, env, cwd } => Some(Target::Stdio(Spawn { command, args, env, cwd })),
            Transport::Http { .. } => None,
        }
    }

    /// Grow the stdio pool when the chosen process is busy and the pool may grow.
    fn maybe_grow(&self, chosen: &Replica) {
        let grow_at = self.config.grow_at.unwrap_or(8);
        if chosen.outstanding() + 1 < grow_at || self.config.command.is_none() {
            return;
        }
        let count = self.replicas.read().expect("replicas lock").len();
        if count >= self.config.max_processes().min(config::MAX_PROCESSES_CAP) {
            return;
        }
        if self.growing.swap(true, Ordering::AcqRel) {
            return;
        }
        if let (Some(target), Some(spawner)) =
            (self.stdio_target(), self.spawner.lock().expect("spawner lock").as_ref())
        {
            tracing::info!(upstream = %self.name, processes = count + 1, "growing the process pool");
            self.start_replica(target, spawner);
        }
        self.growing.store(false, Ordering::Release);
    }

    /// Stop processes above `min_processes` that have been idle for `idle_timeout`.
    fn reap_idle(&self) {
        let idle = self.config.idle_timeout.unwrap_or(Duration::from_secs(300));
        let min = self.config.min_processes();
        let mut replicas = self.replicas.write().expect("replicas lock");
        while replicas.len() > min {
            let Some(pos) = replicas.iter().rposition(|r| r.outstanding() == 0 && r.idle_for() >= idle) else { break };
            let r = replicas.remove(pos);
            tracing::info!(upstream = %self.name, replica = r.index, "stopping an idle process");
            r.stop.cancel();
        }
    }
}

/// Records a breaker verdict, or releases the probe slot if the call was abandoned.
struct TicketGuard<'a> {
    breaker: &'a Breaker,
    ticket: Option<breaker::Ticket>,
}

impl TicketGuard<'_> {
    fn record(mut self, verdict: Verdict) {
        if let Some(t) = self.ticket.take() {
            self.breaker.record(t, verdict);
        }
    }
}

impl Drop for TicketGuard<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.breaker.abandon(t);
        }
    }
}

/// All configured upstreams, by namespace.
pub struct UpstreamSet {
    upstreams: BTreeMap<Arc<str>, Arc<Upstream>>,
    shutdown: CancellationToken,
    tasks: Arc<tokio::sync::Mutex<tokio::task::JoinSet<()>>>,
    client: http::HttpClient,
}

impl UpstreamSet {
    /// Upstreams for the enabled entries of `configs`; nothing starts until [`UpstreamSet::start`].
    pub fn new<'a>(
        configs: impl IntoIterator<Item = (&'a String, &'a UpstreamConfig)>,
        defaults: &ResilienceConfig,
    ) -> Self {
        let upstreams = configs
            .into_iter()
            .map(|(name, cfg)| (Arc::<str>::from(name.as_str()), Arc::new(Upstream::new(name, cfg, defaults))))
            .collect();
        UpstreamSet {
            upstreams,
            shutdown: CancellationToken::new(),
            tasks: Arc::new(tokio::sync::Mutex::new(tokio::task::JoinSet::new())),
            client: http::client(),
        }
    }

    /// Start every upstream's replicas and its pool keeper; each upstream reports on its own
    /// signal channel.
    pub async fn start(&self) -> BTreeMap<Arc<str>, mpsc::UnboundedReceiver<Signal>> {
        let mut receivers = BTreeMap::new();
        for (name, up) in &self.upstreams {
            let (tx, rx) = mpsc::unbounded_channel();
            receivers.insert(Arc::clone(name), rx);
            let spawner = Spawner {
                client: self.client.clone(),
                signals: Signals { tx, freshness: Arc::clone(&up.freshness) },
                shutdown: self.shutdown.clone(),
                tasks: Arc::clone(&self.tasks),
            };
            let targets: Vec<Target> = match up.config.transport() {
                Transport::Stdio { command, args, env, cwd } => {
                    let spawn = Spawn { command, args, env, cwd };
                    (0..up.config.min_processes()).map(|_| Target::Stdio(spawn.clone())).collect()
                }
                Transport::Http { urls, headers } => {
                    urls.into_iter().map(|url| Target::Http { url, headers: headers.clone() }).collect()
                }
            };
            for target in targets {
                up.start_replica(target, &spawner);
            }
            *up.spawner.lock().expect("spawner lock") = Some(spawner);
            if up.config.max_processes() > up.config.min_processes() {
                let (up, stop) = (Arc::clone(up), self.shutdown.clone());
                let every = up.config.idle_timeout.unwrap_or(Duration::from_secs(300)).min(Duration::from_secs(30)) / 2;
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep(every.max(Duration::from_millis(50))) => up.reap_idle(),
                            () = stop.cancelled() => return,
                        }
                    }
                });
            }
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
