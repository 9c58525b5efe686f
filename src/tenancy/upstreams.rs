//! Tenants' own upstreams: a server config of the store becomes an [`Upstream`] the first time
//! one of its tenant's keys needs it — started (stdio) or connected (Streamable HTTP) with that
//! tenant's environment variables or headers only — shared by the tenant's keys, never by
//! another tenant's, and stopped once idle. Each runs the same pool, bulkhead, retry, breaker
//! and timeout stack as a static upstream (`[resilience]` defaults), and has a catalog of its
//! own that follows its lists (docs/multi-tenant.md "Per-tenant upstreams").

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::catalog::CatalogState;
use crate::catalog::config::CatalogConfig;
use crate::error::GatewayError;
use crate::store::resolve::{Endpoint, TenantServer};
use crate::upstream::config::{ResilienceConfig, UpstreamConfig};
use crate::upstream::{Upstream, UpstreamSet};

pub use crate::catalog::naming::{TENANT_MARK, tenant_of};

/// Whether `upstream` names a tenant's own upstream (not a static one of the TOML file).
pub fn is_tenant_upstream(upstream: &str) -> bool {
    tenant_of(upstream).is_some()
}

/// The internal name of tenant `tenant`'s server config `server` (metrics, logs, cache keys):
/// unique per tenant id, so a deleted and re-created tenant of the same name never shares a
/// cached result with its predecessor.
pub fn internal_name(tenant: i64, server: &str) -> String {
    format!("t{tenant}{TENANT_MARK}{server}")
}

/// One tenant's running upstream.
pub struct TenantUpstream {
    /// The internal name ([`internal_name`]).
    pub name: Arc<str>,
    /// The tenant's id.
    pub tenant: i64,
    set: UpstreamSet,
    /// Its own catalog (one namespace, its internal name).
    pub catalog: Arc<CatalogState>,
    /// SHA-256 over its endpoint and secrets: a changed server config is a new upstream.
    fingerprint: [u8; 32],
    /// Milliseconds since the registry's epoch of its last use.
    last_used: AtomicU64,
    epoch: Instant,
    /// Cancelled when it is stopped (reaped, replaced, or the gateway stops).
    pub stopped: CancellationToken,
}

impl TenantUpstream {
    /// The upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        self.set.iter().next().expect("a tenant upstream set has one upstream")
    }

    /// Note a use (keeps it from being reaped for `tenant_idle_timeout`).
    pub fn touch(&self) {
        self.last_used.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Whether it has been stopped (a view holding it must be rebuilt).
    pub fn is_stopped(&self) -> bool {
        self.stopped.is_cancelled()
    }

    async fn stop(&self) {
        self.stopped.cancel();
        self.set.shutdown().await;
    }
}

/// What a new tenant upstream's catalog changes are handed to (the gateway's fan-out: cache
/// invalidation and `list_changed`).
pub type OnStart = Arc<dyn Fn(&Arc<TenantUpstream>) + Send + Sync>;

/// The registry of running tenant upstreams, keyed by (tenant id, server config id).
pub struct TenantUpstreams {
    running: Mutex<HashMap<(i64, i64), Arc<TenantUpstream>>>,
    /// Running tenant upstreams at most (`[store] max_tenant_upstreams`).
    max: usize,
    /// Unused this long, one is stopped (`[store] tenant_idle_timeout`).
    idle: Duration,
    resilience: ResilienceConfig,
    catalog: CatalogConfig,
    epoch: Instant,
    on_start: OnStart,
}

impl TenantUpstreams {
    /// An empty registry: at most `max` running, each stopped after `idle` unused; upstreams
    /// get the `resilience` defaults, catalogs the `catalog` settings; `on_start` is called with
    /// each new one (after its start).
    pub fn new(
        max: usize,
        idle: Duration,
        resilience: ResilienceConfig,
        catalog: CatalogConfig,
        on_start: OnStart,
    ) -> Self {
        TenantUpstreams {
            running: Mutex::new(HashMap::new()),
            max,
            idle,
            resilience,
            catalog,
            epoch: Instant::now(),
            on_start,
        }
    }

    /// The running upstream of `tenant`'s `server`, started now if there is none (or its
    /// server config changed since it started: the old one is stopped).
    ///
    /// Errors: [`GatewayError::LimitReached`] when `max` upstreams run and none is idle;
    /// [`GatewayError::UpstreamUnavailable`] when the server config cannot be an upstream (its
    /// reasons, which name no secret value).
    pub fn get(&self, tenant: i64, server: &TenantServer) -> Result<Arc<TenantUpstream>, GatewayError> {
        let fingerprint = fingerprint(server);
        let key = (tenant, server.id);
        let mut running = self.running.lock().expect("tenant upstreams lock");
        let mut replaced = None;
        if let Some(tu) = running.get(&key) {
            if tu.fingerprint == fingerprint && !tu.is_stopped() {
                tu.touch();
                return Ok(Arc::clone(tu));
            }
            replaced = running.remove(&key);
        }
        if running.len() >= self.max {
            // Make room by stopping what nobody used for a while (a quarter of the idle timeout).
            let oldest = running
                .iter()
                .filter(|(_, tu)| tu.idle_for() >= self.idle / 4)
                .max_by_key(|(_, tu)| tu.idle_for())
                .map(|(k, _)| *k);
            match oldest.and_then(|k| running.remove(&k)) {
                Some(old) => spawn_stop(old),
                None => {
                    return Err(GatewayError::LimitReached {
                        what: "running tenant upstreams",
                        key: "store.max_tenant_upstreams",
                        limit: self.max,
                    });
                }
            }
        }
        let name = internal_name(tenant, &server.name);
        let config = self.config_of(&name, server)?;
        let set = UpstreamSet::new([(&name, &config)]);
        let catalog = CatalogState::new(self.catalog.clone(), set.iter().map(|u| Arc::clone(&u.name)));
        let tu = Arc::new(TenantUpstream {
            name: Arc::from(name.as_str()),
            tenant,
            set,
            catalog,
            fingerprint,
            last_used: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            epoch: self.epoch,
            stopped: CancellationToken::new(),
        });
        for (_, signals) in tu.set.start() {
            let up = Arc::clone(tu.upstream());
            tokio::spawn(Arc::clone(&tu.catalog).follow(up, signals, tu.stopped.clone()));
        }
        tracing::info!(upstream = %tu.name, "started a tenant upstream");
        running.insert(key, Arc::clone(&tu));
        drop(running);
        if let Some(old) = replaced {
            tracing::info!(upstream = %old.name, "its server config changed; stopping the old one");
            spawn_stop(old);
        }
        (self.on_start)(&tu);
        Ok(tu)
    }

    /// The upstream configuration of `server` under `[resilience]` defaults: its command and
    /// arguments with exactly its environment variables (plus the few every child gets), or
    /// its URL with exactly its headers and credentials (`auth`).
    fn config_of(&self, name: &str, server: &TenantServer) -> Result<UpstreamConfig, GatewayError> {
        let reveal = |m: &std::collections::BTreeMap<String, crate::store::secrets::Secret>| {
            m.iter().map(|(k, v)| (k.clone(), v.expose().to_string())).collect()
        };
        let mut config = match &server.endpoint {
            Endpoint::Command { command, args } => UpstreamConfig {
                command: Some(command.clone()),
                args: args.clone(),
                env: reveal(&server.secrets.env),
                ..UpstreamConfig::default()
            },
            Endpoint::Url(url) => UpstreamConfig {
                url: Some(url.clone()),
                headers: reveal(&server.secrets.headers),
                auth: server.secrets.auth.clone(),
                ..UpstreamConfig::default()
            },
        };
        config.enabled = true;
        if let Some(crate::upstream::auth::config::AuthConfig::ClientCredentials(c)) = &config.auth
            && c.private_key_file.is_some()
        {
            // Never read: a server config names no file of the gateway's.
            return Err(GatewayError::UpstreamUnavailable {
                upstream: name.to_string(),
                reason: "its server config names a private key file".into(),
            });
        }
        // The checks of a static upstream, under a stand-in namespace (the internal name has
        // the tenant mark, which namespaces may not).
        let problems = config.validate("tenant");
        if !problems.is_empty() {
            return Err(GatewayError::UpstreamUnavailable {
                upstream: name.to_string(),
                reason: format!("its server config is not usable: {}", problems.join("; ")),
            });
        }
        config.resolve(&self.resilience);
        Ok(config)
    }

    /// Stop the upstreams unused for `tenant_idle_timeout`; returns how many.
    pub async fn reap(&self) -> usize {
        let idle: Vec<Arc<TenantUpstream>> = {
            let mut running = self.running.lock().expect("tenant upstreams lock");
            let keys: Vec<_> = running.iter().filter(|(_, tu)| tu.idle_for() >= self.idle).map(|(k, _)| *k).collect();
            keys.iter().filter_map(|k| running.remove(k)).collect()
        };
        for tu in &idle {
            tracing::info!(upstream = %tu.name, idle_ms = tu.idle_for().as_millis() as u64, "stopping an idle tenant upstream");
            tu.stop().await;
        }
        idle.len()
    }

    /// Reap every `every` until `stop`.
    pub async fn reap_every(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tokio::select! { _ = tick.tick() => { self.reap().await; } () = stop.cancelled() => return }
        }
    }

    /// The running tenant upstreams now.
    pub fn running(&self) -> Vec<Arc<TenantUpstream>> {
        self.running.lock().expect("tenant upstreams lock").values().cloned().collect()
    }

    /// Stop every tenant upstream (at drain).
    pub async fn shutdown(&self) {
        let all: Vec<_> = self.running.lock().expect("tenant upstreams lock").drain().map(|(_, tu)| tu).collect();
        for tu in all {
            tu.stop().await;
        }
    }
}

fn spawn_stop(tu: Arc<TenantUpstream>) {
    tokio::spawn(async move { tu.stop().await });
}

/// SHA-256 over a server config's endpoint and secret values (length-prefixed fields).
fn fingerprint(server: &TenantServer) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    match &server.endpoint {
        Endpoint::Command { command, args } => {
            field(b"command");
            field(command.as_bytes());
            for a in args {
                field(a.as_bytes());
            }
        }
        Endpoint::Url(url) => {
            field(b"url");
            field(url.as_bytes());
        }
    }
    for (section, map) in [("env", &server.secrets.env), ("headers", &server.secrets.headers)] {
        field(section.as_bytes());
        for (k, v) in map {
            field(k.as_bytes());
            field(v.expose().as_bytes());
        }
    }
    if let Some(auth) = &server.secrets.auth {
        field(b"auth");
        field(&serde_json::to_vec(auth).expect("a credential serializes"));
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_never_look_like_static_namespaces() {
        let name = internal_name(7, "weather");
        assert_eq!(name, "t7.weather");
        assert!(is_tenant_upstream(&name));
        assert!(!is_tenant_upstream("time") && !is_tenant_upstream("t7-weather"));
        assert_eq!((tenant_of(&name), tenant_of("time"), tenant_of("tx.y")), (Some(7), None, None));
        assert!(!UpstreamConfig::default().validate(&name).iter().all(|p| !p.contains("namespace")));
    }
}
