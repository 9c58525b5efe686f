//! Wiring and lifecycle: builds every part from the configuration, starts the upstreams and
//! the catalog, serves a front, and drains on shutdown. The one module that knows all others.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cache::idempotency::Idempotency;
use crate::cache::key::resource_target;
use crate::cache::store::Store;
use crate::catalog::CatalogState;
use crate::config::Config;
use crate::front::Shared;
use crate::pipeline::Parts;
use crate::session::hub::Hub;
use crate::session::registry::{SessionLimits, Sessions};
use crate::session::task_id::TaskSealer;
use crate::session::token::decode_key;
use crate::switches::fleet::Control;
use crate::upstream::UpstreamSet;

/// A started gateway: upstreams connecting, catalog following them, nothing served yet.
pub struct Gateway {
    /// State shared by the fronts.
    pub shared: Arc<Shared>,
    upstreams: Arc<UpstreamSet>,
    background: CancellationToken,
}

impl Gateway {
    /// Build everything from `config` and start the upstreams and background tasks; with
    /// `[store]`, open the store (degraded while PostgreSQL does not answer).
    ///
    /// Errors: the store's ([`crate::store::Store::open`]): settings, an unmigrated database.
    pub async fn start(config: &Config) -> Result<Gateway, crate::store::StoreError> {
        // Before any TLS client is made (upstream HTTPS, `rediss://`).
        crate::upstream::http::tls::install_provider();
        let upstreams = Arc::new(UpstreamSet::new(config.enabled_upstreams()));
        let catalog = CatalogState::new(config.catalog.clone(), upstreams.iter().map(|u| Arc::clone(&u.name)));
        let background = CancellationToken::new();
        let store = Store::new(&config.cache, &config.redis, background.clone());
        let idempotency = Idempotency::new(&config.idempotency, store.l2().cloned(), store.prefix());
        let tasks = Arc::new(TaskSealer::new(decode_key(&config.server.session_key)));
        // Runtime switches: every layer on at start; with Redis, the fleet's state within a second.
        let switches = Control::new(Arc::default(), store.l2().cloned());
        let hub = Arc::new(Hub::default());
        let tenancy = match config.store.enabled() {
            true => Some(open_tenancy(config, &upstreams, &hub, &store, &background).await?),
            false => None,
        };
        let monitor = config
            .monitor
            .enabled
            .then(|| Arc::new(crate::monitor::Monitor::new(&config.monitor).with_fleet(store.l2().cloned())));
        let alerts = (config.monitor.enabled && config.alerts.enabled).then(|| {
            let (m, stop) = (&config.monitor, &background);
            let rules = config.alerts.with_budgets(&config.budgets);
            Arc::new(crate::monitor::alerts::Alerts::new(&rules, &m.replica_name(), m.retention, stop))
        });
        let draining = CancellationToken::new();
        let report = Arc::new(crate::report::Reporter::new(crate::report::Sources {
            upstreams: Arc::clone(&upstreams),
            monitor: monitor.clone(),
            alerts: alerts.clone(),
            switches: Arc::clone(switches.switches()),
            cache: Arc::clone(&store),
            store: tenancy.as_ref().map(|t| Arc::clone(&t.store)),
            draining: draining.clone(),
            running: Arc::new(crate::monitor::recommend::Running::new(config)),
        }));
        let own_tools =
            crate::report::tools::SelfTools::new(Arc::clone(&report), &config.self_tools, &config.catalog.separator);
        let store_url = config.store.enabled().then_some(config.store.postgres_url.as_str());
        let audit = crate::audit::open(&config.audit, store_url, &config.monitor.replica_name())
            .map_err(crate::store::StoreError::Invalid)?;
        let approvals = crate::approvals::Approvals::new(&config.approvals, audit.clone());
        let parts = Parts {
            catalog: &catalog,
            upstreams: &upstreams,
            store: &store,
            idempotency: &idempotency,
            tasks: &tasks,
            switches: switches.switches(),
            own_tools: own_tools.as_ref(),
            audit: audit.as_ref(),
            approvals: &approvals,
        };
        let oauth = config.auth.oauth.as_ref().map(|o| {
            let (statics, priority) = (Arc::clone(&upstreams), config.admission.default_priority);
            Arc::new(crate::oauth::OAuth::new(o, statics, tenancy.clone(), priority))
        });
        let shared = Arc::new(Shared {
            stack: crate::pipeline::build(config, parts),
            catalog: Arc::clone(&catalog),
            upstreams: Arc::clone(&upstreams),
            store: Arc::clone(&store),
            sessions: Sessions::new(
                decode_key(&config.server.session_key),
                config.server.session_ttl,
                SessionLimits {
                    per_caller: config.server.max_sessions_per_caller,
                    ended_per_caller: config.server.max_ended_sessions_per_caller,
                },
            ),
            sse: Default::default(),
            hub: Arc::clone(&hub),
            parked: Default::default(),
            tasks: Arc::clone(&tasks),
            config: config.server.clone(),
            draining,
            default_priority: config.admission.default_priority,
            anonymous_ceiling: config.admission.anonymous_ceiling(),
            tenancy,
            oauth,
            monitor,
            alerts,
            switches: Arc::clone(&switches),
            report,
            audit,
            approvals,
        });
        tokio::spawn(switches.run(background.clone()));
        for (name, signals) in upstreams.start() {
            let up = Arc::clone(upstreams.get(&name).expect("started upstreams exist"));
            tokio::spawn(Arc::clone(&catalog).follow(up, signals, background.clone()));
        }
        tokio::spawn(fan_out_changes(Arc::clone(&catalog), Arc::clone(&shared.hub), store, background.clone()));
        tokio::spawn(sweep_sessions(Arc::clone(&shared), background.clone()));
        if let Some(monitor) = shared.monitor.clone() {
            let alerts = shared.alerts.clone();
            tokio::spawn(sample(monitor, Arc::downgrade(&shared), alerts, background.clone()));
        }
        Ok(Gateway { shared, upstreams, background })
    }

    /// Stop the upstreams (children get stdin closed, SIGTERM, SIGKILL) and background tasks.
    pub async fn stop(self) {
        self.shared.draining.cancel();
        self.background.cancel();
        if let Some(tenancy) = &self.shared.tenancy {
            tenancy.shutdown().await;
        }
        self.upstreams.shutdown().await;
        // Last: the records of every call that ended, then the closing anchor.
        if let Some(audit) = &self.shared.audit {
            audit.shutdown().await;
        }
    }

    /// Wait until every upstream has left the `Starting` state (or `limit` passes).
    pub async fn settle(&self, limit: Duration) {
        let wait = async {
            while self.upstreams.iter().any(|u| matches!(u.status(), crate::upstream::status::Status::Starting)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}

/// The monitor's sampler: reads the gateway's cumulative sources every `[monitor] interval`
/// until `stop` (or until the gateway is dropped), evaluating the alert rules on each sample.
async fn sample(
    monitor: Arc<crate::monitor::Monitor>,
    shared: std::sync::Weak<Shared>,
    alerts: Option<Arc<crate::monitor::alerts::Alerts>>,
    stop: CancellationToken,
) {
    use crate::monitor::reading::{Reading, Sources};
    let read = || {
        let shared = shared.upgrade()?;
        Some(Reading::take(&Sources {
            upstreams: &shared.upstreams,
            admission: shared.stack.admission.as_deref(),
            sessions: shared.sessions.active(),
            streams: shared.hub.len(),
            cost: shared.stack.cost.as_deref(),
        }))
    };
    let then = |s: &crate::monitor::Sample| {
        if let Some(alerts) = &alerts {
            alerts.observe(s);
        }
    };
    monitor.run_then(read, then, stop).await;
}

/// Open the store and serve its keys: tenant upstreams whose catalog changes go through the
/// same fan-out as the static ones', and store changes reaching the sessions they concern.
///
/// Errors: [`crate::store::Store::open`]'s.
async fn open_tenancy(
    config: &Config,
    upstreams: &Arc<UpstreamSet>,
    hub: &Arc<Hub>,
    cache: &Arc<Store>,
    background: &CancellationToken,
) -> Result<Arc<crate::tenancy::Tenancy>, crate::store::StoreError> {
    use crate::tenancy::{Tenancy, TenantUpstreams};
    let store = crate::store::Store::open(&config.store).await?;
    let (fan_hub, fan_cache, fan_stop) = (Arc::clone(hub), Arc::clone(cache), background.clone());
    let on_start: crate::tenancy::upstreams::OnStart = Arc::new(move |tu| {
        let stop = tu.stopped.child_token();
        let gateway_stop = fan_stop.clone();
        let (catalog, hub, cache) = (Arc::clone(&tu.catalog), Arc::clone(&fan_hub), Arc::clone(&fan_cache));
        tokio::spawn(async move {
            tokio::select! {
                () = fan_out_changes(catalog, hub, cache, stop) => {}
                () = gateway_stop.cancelled() => {}
            }
        });
    });
    let s = &config.store;
    let registry = Arc::new(TenantUpstreams::new(
        s.max_tenant_upstreams,
        s.tenant_idle_timeout,
        config.resilience.clone(),
        config.catalog.clone(),
        on_start,
    ));
    let reap_every = (s.tenant_idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let tenancy = Tenancy::new(
        Arc::clone(&store),
        registry,
        Arc::clone(upstreams),
        config.admission.default_priority,
        s.cache_capacity,
        reap_every,
    );
    tokio::spawn(store_changes(store, Arc::clone(hub), background.clone()));
    Ok(tenancy)
}

/// Apply every store change to the open notification streams of store keys and of OAuth
/// callers bound to a store instance: each key (instance) the change may concern is resolved
/// again (the change already dropped it from the cache), and its streams get `list_changed`
/// only if its view is not the same as when they opened; a key (instance) that no longer
/// resolves has its streams unregistered. A key that cannot be resolved now
/// (PostgreSQL down) counts as changed: a spurious `list_changed` costs a list, a missed one
/// leaves a client with a stale list.
async fn store_changes(store: Arc<crate::store::Store>, hub: Arc<Hub>, stop: CancellationToken) {
    use crate::store::notify::Change;
    use tokio::sync::broadcast::error::RecvError;
    let mut changes = store.changes();
    let store = Arc::downgrade(&store);
    loop {
        let change = tokio::select! { c = changes.recv() => c, () = stop.cancelled() => return };
        let change = match change {
            Ok(c) => c,
            Err(RecvError::Lagged(_)) => Change::All,
            Err(RecvError::Closed) => return,
        };
        let Some(store) = store.upgrade() else { return };
        for (hash, opened) in hub.store_listeners(&change) {
            let now = match opened.binding {
                crate::tenancy::Binding::Instance => {
                    store.resolve_instance(&opened.resolved.tenant.name, &opened.resolved.instance.name).await
                }
                _ => store.resolve_hash(hash).await,
            };
            match now {
                Ok(Some(now)) if now.same_view(&opened.resolved) => {}
                Ok(Some(_)) | Err(_) => hub.view_changed(&hash),
                Ok(None) => hub.key_ended(&hash),
            }
        }
    }
}

/// Announce catalog changes and resource updates to clients, after dropping what they make
/// stale in the cache: a changed tool list drops that upstream's cached tool results, an updated
/// resource its cached reads (in every replica, through the shared generations).
async fn fan_out_changes(catalog: Arc<CatalogState>, hub: Arc<Hub>, store: Arc<Store>, stop: CancellationToken) {
    use tokio::sync::broadcast::error::RecvError;
    let mut changes = catalog.subscribe();
    let mut updates = catalog.subscribe_updates();
    loop {
        tokio::select! {
            c = changes.recv() => match c {
                Ok(change) => {
                    // A replica's first listing of an upstream is not a change for the fleet:
                    // invalidating then would drop the entries other replicas just made.
                    if change.kind == crate::catalog::listing::ListKind::Tools && !change.first {
                        tracing::info!(upstream = %change.upstream, "tool list changed; dropping its cached results");
                        store.invalidate(&change.upstream, None).await;
                    }
                    hub.publish(&change);
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            u = updates.recv() => match u {
                Ok(update) => {
                    store.invalidate(&update.upstream, Some(&resource_target(&update.uri))).await;
                    hub.publish_update(&update);
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            () = stop.cancelled() => return,
        }
    }
}

async fn sweep_sessions(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => shared.sessions.sweep(),
            () = stop.cancelled() => return,
        }
    }
}

/// Serve Streamable HTTP on `listener` (and `/metrics` on `[server] metrics_listen`, when set)
/// until `shutdown` resolves, then drain: stop accepting, end notification streams, give
/// in-flight calls `server.shutdown_grace`, stop upstreams.
///
/// Errors: I/O errors of the listeners (the metrics listener cannot be bound), TLS files that
/// cannot be loaded.
pub async fn run(
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use crate::front::serve::{Limits, serve};
    let limits = Arc::new(Limits::new(&config.server, true).map_err(std::io::Error::other)?);
    let metrics_listener = match config.server.metrics_addr() {
        Some(addr) => {
            let l = TcpListener::bind(addr).await?;
            tracing::info!(addr = %l.local_addr()?, "serving /metrics without keys");
            Some(l)
        }
        None => None,
    };
    let gateway = Gateway::start(config).await.map_err(std::io::Error::other)?;
    let draining = gateway.shared.draining.clone();
    let force = CancellationToken::new();
    let grace = config.server.shutdown_grace;
    let app = crate::front::routes::router(Arc::clone(&gateway.shared));
    if let Some(l) = metrics_listener {
        // Prometheus scrapes without credentials here; only /metrics and /healthz are served.
        let plain = Arc::new(Limits::new(&config.server, false).map_err(std::io::Error::other)?);
        let metrics = crate::front::routes::metrics_router(Arc::clone(&gateway.shared));
        tokio::spawn(serve(l, metrics, plain, draining.clone(), force.clone()));
    }
    let signal = draining.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested; draining");
        signal.cancel();
    });
    let mut server = tokio::spawn(serve(listener, app, limits, draining.clone(), force.clone()));
    let outcome = tokio::select! {
        r = &mut server => r,
        () = async { draining.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight requests outlived the grace period; closing them");
            force.cancel();
            server.await
        }
    };
    force.cancel();
    gateway.stop().await;
    tracing::info!("stopped");
    match outcome {
        Ok(r) => r,
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(std::io::Error::other(e)),
    }
}

/// Serve one client over stdin/stdout until the input ends or `shutdown` resolves.
///
/// Errors: I/O errors on stdin.
pub async fn run_stdio(config: &Config, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let gateway = Gateway::start(config).await.map_err(std::io::Error::other)?;
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    let result =
        crate::front::stdio::serve(Arc::clone(&gateway.shared), tokio::io::stdin(), tokio::io::stdout(), stop).await;
    gateway.stop().await;
    result
}
