//! The replicas of one upstream: a supervised pool of child processes (started ahead to
//! `min_processes`, grown under load to `max_processes`, reaped when idle) or one HTTP session
//! per URL; and what they say together (status, restarts, calls in flight).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::breaker::{self, Breaker};
use super::clients::ClientSessions;
use super::config::{SessionMode, Settings, Transport, UpstreamConfig};
use super::connection::Connection;
use super::handshake::Handshake;
use super::http;
use super::mux::Owner;
use super::replica::{self, Replica, Supervision, Target};
use super::signals::Signals;
use super::status::Status;
use super::stderr::StderrLog;
use super::stdio::Spawn;
use crate::error::GatewayError;

/// What starts new replicas (the stdio pool grows while running).
pub struct Spawner {
    /// The shared HTTP client.
    pub client: http::HttpClient,
    /// Where replicas report list changes and their comings and goings.
    pub signals: Signals,
    /// Cancelled at shutdown; each replica's stop token is a child of it.
    pub shutdown: CancellationToken,
    /// The supervisors, joined at shutdown.
    pub tasks: Arc<tokio::sync::Mutex<tokio::task::JoinSet<()>>>,
}

/// The replicas of one upstream.
pub struct Pool {
    name: Arc<str>,
    settings: Settings,
    transport: Transport,
    replicas: RwLock<Vec<Arc<Replica>>>,
    shared: Arc<replica::Shared>,
    /// The stderr log budget all its processes share.
    stderr: Arc<StderrLog>,
    spawner: Mutex<Option<Spawner>>,
    growing: AtomicBool,
    next_index: AtomicUsize,
    /// `session = "per-client"`: the client sessions' own upstream sessions.
    clients: Option<Arc<ClientSessions>>,
}

impl Pool {
    /// An empty pool; nothing starts until [`Pool::start`].
    pub fn new(name: &Arc<str>, config: &UpstreamConfig) -> Self {
        Pool {
            name: Arc::clone(name),
            settings: config.settings.clone(),
            transport: config.transport(),
            replicas: RwLock::new(Vec::new()),
            shared: Arc::new(replica::Shared { era: Mutex::new(config.era), ..Default::default() }),
            stderr: Arc::new(StderrLog::new(name, config.settings.stderr_lines_per_second)),
            spawner: Mutex::new(None),
            growing: AtomicBool::new(false),
            next_index: AtomicUsize::new(0),
            clients: (config.settings.session == SessionMode::PerClient).then(|| {
                let s = &config.settings;
                let bases = match config.transport() {
                    Transport::Http { urls, .. } => urls.len(),
                    Transport::Stdio { .. } => 1,
                };
                Arc::new(ClientSessions::new(name, s.max_client_sessions, s.idle_timeout, bases, &s.breaker))
            }),
        }
    }

    /// Start the first replicas (`min_processes` children, or one session per URL) and, for a
    /// pool that may grow, the task that reaps idle processes.
    pub fn start(self: &Arc<Self>, spawner: Spawner) {
        let targets: Vec<Target> = match (&self.transport, self.spawn()) {
            (_, Some(spawn)) => (0..self.settings.min_processes).map(|_| Target::Stdio(spawn.clone())).collect(),
            (Transport::Http { urls, headers, flavor, credentials }, None) => urls
                .iter()
                .enumerate()
                .map(|(i, url)| Target::Http {
                    url: url.clone(),
                    headers: headers.clone(),
                    auth: credentials.get(i).cloned(),
                    max_response_bytes: self.settings.max_response_bytes,
                    flavor: *flavor,
                })
                .collect(),
            (Transport::Stdio { .. }, None) => unreachable!("a stdio transport has a spawn"),
        };
        for target in targets {
            self.start_replica(target, &spawner);
        }
        let stop = spawner.shutdown.clone();
        *self.spawner.lock().expect("spawner lock") = Some(spawner);
        if self.settings.max_processes > self.settings.min_processes {
            let pool = Arc::clone(self);
            let every = (self.settings.idle_timeout.min(Duration::from_secs(30)) / 2).max(Duration::from_millis(50));
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(every) => pool.reap_idle(),
                        () = stop.cancelled() => return,
                    }
                }
            });
        }
    }

    /// How to start one process of a stdio upstream (`None` for HTTP).
    fn spawn(&self) -> Option<Spawn> {
        let Transport::Stdio { command, args, env, inherit_env, cwd } = &self.transport else { return None };
        Some(Spawn {
            command: command.clone(),
            args: args.clone(),
            env: env.clone(),
            inherit_env: *inherit_env,
            cwd: cwd.clone(),
            max_message_bytes: self.settings.max_response_bytes,
            stderr: Arc::clone(&self.stderr),
        })
    }

    fn start_replica(&self, target: Target, spawner: &Spawner) {
        let replica =
            Arc::new(self.new_replica(target, Arc::new(Breaker::new(self.settings.breaker.clone())), spawner));
        self.replicas.write().expect("replicas lock").push(Arc::clone(&replica));
        supervise(replica, spawner, spawner.signals.clone());
    }

    fn new_replica(&self, target: Target, breaker: Arc<Breaker>, spawner: &Spawner) -> Replica {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let s = &self.settings;
        Replica::new(
            index,
            Arc::clone(&self.name),
            target,
            Supervision {
                startup: s.startup_timeout,
                health_interval: s.health_interval,
                crash_limit: s.crash_limit,
                crash_window: s.crash_window,
                crash_cooldown: s.crash_cooldown,
            },
            Arc::clone(&self.shared),
            breaker,
            spawner.shutdown.child_token(),
        )
    }

    /// The target of base replica `base`: the process to start, or the `base`-th URL.
    fn target(&self, base: usize) -> Target {
        match (&self.transport, self.spawn()) {
            (_, Some(spawn)) => Target::Stdio(spawn),
            (Transport::Http { urls, headers, flavor, credentials }, None) => Target::Http {
                url: urls[base % urls.len()].clone(),
                headers: headers.clone(),
                auth: credentials.get(base % urls.len()).cloned(),
                max_response_bytes: self.settings.max_response_bytes,
                flavor: *flavor,
            },
            (Transport::Stdio { .. }, None) => unreachable!("a stdio transport has a spawn"),
        }
    }

    /// The per-client sessions, when this upstream has them (`session = "per-client"`).
    pub fn clients(&self) -> Option<&ClientSessions> {
        self.clients.as_deref()
    }

    /// The connection of `owner`'s own upstream session: the live one, or a new one started
    /// now (its first use) and waited for, at most `startup_timeout`.
    ///
    /// Errors: [`GatewayError::Overloaded`] when `max_client_sessions` are live;
    /// [`GatewayError::UpstreamUnavailable`] when it cannot connect, or the gateway is not
    /// started or is stopping.
    pub async fn client_connection(
        self: &Arc<Self>,
        owner: Owner,
    ) -> Result<(Arc<Replica>, Arc<Connection>), GatewayError> {
        let Some(clients) = &self.clients else { return Err(self.unavailable()) };
        let key = owner.link.key;
        let replica = match clients.get(key) {
            Some(r) => r,
            None => {
                let spawner = self.spawner.lock().expect("spawner lock");
                let Some(spawner) = spawner.as_ref().filter(|s| !s.shutdown.is_cancelled()) else {
                    return Err(self.unavailable());
                };
                let (replica, started) = clients.get_or_start(key, |base, breaker| {
                    Arc::new(self.new_replica(self.target(base), breaker, spawner).owned_by(owner))
                })?;
                if started {
                    tracing::info!(upstream = %self.name, replica = replica.index, "starting a per-client upstream session");
                    supervise(Arc::clone(&replica), spawner, spawner.signals.quiet());
                    tokio::spawn(Arc::clone(clients).reap_when_done(key, Arc::clone(&replica)));
                }
                replica
            }
        };
        match replica.connected(self.settings.startup_timeout).await {
            Ok(conn) => Ok((replica, conn)),
            Err(()) => {
                let reason = match replica.status() {
                    Status::Down { brief, .. } => brief,
                    _ => "its per-client session is not connected",
                };
                Err(GatewayError::UpstreamUnavailable { upstream: self.name.to_string(), reason: reason.to_string() })
            }
        }
    }

    /// The replicas now.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        self.replicas.read().expect("replicas lock").clone()
    }

    /// Replicas with a live connection, in list order.
    pub fn live(&self) -> Vec<(Arc<Replica>, Arc<Connection>)> {
        let replicas = self.replicas.read().expect("replicas lock");
        replicas.iter().filter_map(|r| r.connection().map(|c| (Arc::clone(r), c))).collect()
    }

    /// The aggregate status: up when any replica is up.
    pub fn status(&self) -> Status {
        let replicas = self.replicas.read().expect("replicas lock");
        let mut down = None;
        let mut starting = false;
        for r in replicas.iter() {
            match r.status() {
                s @ Status::Up { .. } => return s,
                s @ Status::Down { .. } => down = Some(s),
                Status::Starting => starting = true,
                Status::Stopped => {}
            }
        }
        match (starting, down) {
            (true, _) => Status::Starting,
            (false, Some(down)) => down,
            (false, None) if replicas.is_empty() => Status::Starting,
            (false, None) => Status::Stopped,
        }
    }

    /// The error for a call that found no live replica. Its reason is the gateway's own few
    /// words (clients see it); the underlying error's text stays in logs and admins' `/readyz`.
    pub fn unavailable(&self) -> GatewayError {
        let reason = match self.status() {
            Status::Starting => "it is starting",
            Status::Down { brief, .. } => brief,
            Status::Stopped => "it is stopped",
            Status::Up { .. } => "it is reconnecting",
        };
        GatewayError::UpstreamUnavailable { upstream: self.name.to_string(), reason: reason.to_string() }
    }

    /// The error for a call that every live replica's breaker refused; `retry_after` is the
    /// soonest a breaker lets a probe through.
    pub fn circuit_open(&self, retry_after: Duration) -> GatewayError {
        GatewayError::CircuitOpen { upstream: self.name.to_string(), retry_after }
    }

    /// Reconnections after failures, over all replicas.
    pub fn restarts(&self) -> u64 {
        self.replicas().iter().map(|r| r.restarts()).sum()
    }

    /// Calls waiting on this upstream (per-client sessions included).
    pub fn in_flight(&self) -> usize {
        let clients = self.clients.as_ref().map_or(0, |c| c.replicas().iter().map(|r| r.outstanding()).sum());
        self.replicas().iter().map(|r| r.outstanding()).sum::<usize>() + clients
    }

    /// The handshake of a live connection.
    pub fn handshake(&self) -> Option<Handshake> {
        self.replicas().iter().find_map(|r| r.connection().map(|c| c.handshake().clone()))
    }

    /// The handshake of the last successful connection, kept while the upstream is down so
    /// the gateway's advertised capabilities do not flap during a restart.
    pub fn last_handshake(&self) -> Option<Arc<Handshake>> {
        self.shared.last_handshake.load_full()
    }

    /// Add (`on`) or remove the upstream's resource `uri` from the set its modern
    /// `subscriptions/listen` streams watch; every replica's stream reopens with the new set.
    pub fn watch_resource(&self, uri: &Arc<str>, on: bool) {
        self.shared.watched.send_if_modified(|set| if on { set.insert(Arc::clone(uri)) } else { set.remove(uri) });
    }

    /// Since when a connected replica whose breaker is not open has been up; `None` while
    /// there is none (the upstream is unhealthy).
    pub fn healthy_since(&self) -> Option<Instant> {
        self.replicas().iter().filter(|r| r.breaker.state() != breaker::State::Open).filter_map(|r| r.up_since()).min()
    }

    /// Grow the stdio pool when the chosen process is busy and the pool may grow.
    pub fn maybe_grow(&self, chosen: &Replica) {
        if !matches!(self.transport, Transport::Stdio { .. }) || chosen.outstanding() + 1 < self.settings.grow_at {
            return;
        }
        let count = self.replicas.read().expect("replicas lock").len();
        if count >= self.settings.max_processes || self.growing.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(spawner) = self.spawner.lock().expect("spawner lock").as_ref() {
            tracing::info!(upstream = %self.name, processes = count + 1, "growing the process pool");
            if let Some(spawn) = self.spawn() {
                self.start_replica(Target::Stdio(spawn), spawner);
            }
        }
        self.growing.store(false, Ordering::Release);
    }

    /// Stop processes above `min_processes` that have been idle for `idle_timeout`.
    fn reap_idle(&self) {
        let mut replicas = self.replicas.write().expect("replicas lock");
        while replicas.len() > self.settings.min_processes {
            let Some(pos) =
                replicas.iter().rposition(|r| r.outstanding() == 0 && r.idle_for() >= self.settings.idle_timeout)
            else {
                break;
            };
            let r = replicas.remove(pos);
            tracing::info!(upstream = %self.name, replica = r.index, "stopping an idle process");
            r.stop.cancel();
        }
    }
}

/// Run `replica`'s supervisor among the upstream set's tasks (joined at shutdown), reporting
/// to `signals`. Finished supervisors are collected first, so per-client sessions coming and
/// going do not pile up.
fn supervise(replica: Arc<Replica>, spawner: &Spawner, signals: Signals) {
    let (client, tasks) = (spawner.client.clone(), Arc::clone(&spawner.tasks));
    tokio::spawn(async move {
        let mut tasks = tasks.lock().await;
        while tasks.try_join_next().is_some() {}
        tasks.spawn(replica.supervise(client, signals));
    });
}
