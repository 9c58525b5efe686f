//! Multi-tenant serving (docs/multi-tenant.md): with `[store]` set, a bearer key that is not a
//! static one is looked up in the store ([`Tenancy::authenticate`]); a key found becomes an
//! [`Identity`] with its tenant, its rate limit and its instance's [`View`] — the catalog its
//! calls are routed through — and the tenant's own upstreams run on demand
//! ([`upstreams::TenantUpstreams`]). Store changes reach the sessions whose view they change
//! as `list_changed`, and a revoked key's notification streams end.

pub mod upstreams;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use self::upstreams::{TenantUpstream, TenantUpstreams, is_tenant_upstream, tenant_of};
pub use self::view::{Binding, View};
use crate::error::GatewayError;
use crate::pipeline::parts::{Identity, Principal, Priority, ViewSlot};
use crate::pipeline::quota::LimitConfig;
use crate::store::{Resolved, Store, StoreError};
use crate::upstream::UpstreamSet;

/// The store, the identities of its keys, and the tenants' running upstreams.
pub struct Tenancy {
    /// The store (config cache, change listener, `last_used_at`).
    pub store: Arc<Store>,
    /// The tenants' running upstreams.
    pub upstreams: Arc<TenantUpstreams>,
    /// Identities built per key id (each with its view), reused while the key's resolution is
    /// the same object.
    identities: moka::sync::Cache<i64, Arc<Identity>>,
    /// Views of instances named by OAuth claims, by [`crate::store::instance_digest`], reused
    /// while the instance's resolution is the same object.
    instance_views: moka::sync::Cache<[u8; 32], Arc<View>>,
    statics: Arc<UpstreamSet>,
    default_priority: Priority,
    /// Ended at drain (the reaper).
    stop: CancellationToken,
}

impl Tenancy {
    /// Serve store keys with `store`: views over `statics` (the TOML upstreams) and tenant
    /// upstreams from `upstreams`; keys get `default_priority`. Starts the idle reaper.
    pub fn new(
        store: Arc<Store>,
        upstreams: Arc<TenantUpstreams>,
        statics: Arc<UpstreamSet>,
        default_priority: Priority,
        capacity: u64,
        reap_every: Duration,
    ) -> Arc<Tenancy> {
        let stop = CancellationToken::new();
        tokio::spawn(Arc::clone(&upstreams).reap_every(reap_every, stop.clone()));
        Arc::new(Tenancy {
            store,
            upstreams,
            identities: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            instance_views: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            statics,
            default_priority,
            stop,
        })
    }

    /// The caller a presented bearer key is, if the store knows it: `Ok(None)` for a key that
    /// is not ours, unknown or revoked (the edge answers 401).
    ///
    /// Errors: [`GatewayError::KeyStoreUnavailable`] (HTTP 503 + `Retry-After`) when the key
    /// is not cached and PostgreSQL does not answer, or its server configs cannot be opened;
    /// [`GatewayError::LimitReached`] when its tenant upstreams cannot be started for the cap
    /// on running tenant upstreams.
    pub async fn authenticate(&self, bearer: &str) -> Result<Option<Principal>, GatewayError> {
        let resolved = match self.store.resolve(bearer).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => return Err(unavailable(&e)),
        };
        if let Some(identity) = self.identities.get(&resolved.key.id)
            && let Some(view) = identity.view.as_ref().and_then(|s| s.0.downcast_ref::<View>())
            && Arc::ptr_eq(&view.resolved, &resolved)
            && !view.is_stale()
        {
            return Ok(Some(Principal::ApiKey(identity)));
        }
        let key_id = resolved.key.id;
        let identity = Arc::new(self.identity_of(resolved, self.store.hash_key(bearer))?);
        self.identities.insert(key_id, Arc::clone(&identity));
        Ok(Some(Principal::ApiKey(identity)))
    }

    /// The view of instance (virtual server) `instance` of tenant `tenant`, both by name, for a
    /// caller an OAuth token binds to it: `Ok(None)` when either does not exist. The same view
    /// is shared by every such caller until the instance's resolution changes.
    ///
    /// Errors: as [`Tenancy::authenticate`].
    pub async fn instance_view(&self, tenant: &str, instance: &str) -> Result<Option<Arc<View>>, GatewayError> {
        let resolved = match self.store.resolve_instance(tenant, instance).await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => return Err(unavailable(&e)),
        };
        let digest = crate::store::instance_digest(tenant, instance);
        if let Some(view) = self.instance_views.get(&digest)
            && Arc::ptr_eq(&view.resolved, &resolved)
            && !view.is_stale()
        {
            return Ok(Some(view));
        }
        let tenant_id = resolved.tenant.id;
        let upstreams = &self.upstreams;
        let view = View::new(resolved, digest, Binding::Instance, &self.statics, |s| upstreams.get(tenant_id, s))?;
        let view = Arc::new(view);
        self.instance_views.insert(digest, Arc::clone(&view));
        Ok(Some(view))
    }

    /// The identity of a resolved key: id `sk:{tenant id}:{key id}` (never a static key's:
    /// static names have no `:` and hashed ids start with `key:`), the default priority, the
    /// key's own rate limit when its record has a valid one, its tenant, and its view.
    fn identity_of(&self, resolved: Arc<Resolved>, key_hash: [u8; 32]) -> Result<Identity, GatewayError> {
        let id: Arc<str> = Arc::from(format!("sk:{}:{}", resolved.tenant.id, resolved.key.id));
        let rate_limit = resolved.key.rps.and_then(|rps| {
            let limit = LimitConfig { rps, burst: resolved.key.burst };
            // The record is the database's word: a limit it holds that is not one is ignored.
            if limit.validate("key").is_empty() {
                Some(limit.resolve())
            } else {
                tracing::warn!(key = %resolved.key.prefix, "the key's rate limit in the store is not valid; the defaults apply");
                None
            }
        });
        let tenant = Some(Arc::from(resolved.tenant.name.as_str()));
        let tenant_id = resolved.tenant.id;
        let upstreams = &self.upstreams;
        let view =
            View::new(resolved, key_hash, Binding::Key, &self.statics, |server| upstreams.get(tenant_id, server))?;
        Ok(Identity {
            tag: Identity::tag_of(&id),
            id,
            priority: self.default_priority,
            max_priority: self.default_priority,
            admin: false,
            rate_limit,
            tenant,
            view: Some(ViewSlot(Arc::new(view))),
        })
    }

    /// Whether the store is degraded (for `/readyz` and metrics).
    pub fn degraded(&self) -> bool {
        self.store.health().degraded
    }

    /// Stop the reaper and the tenant upstreams, and flush `last_used_at` (at drain).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        match self.store.shutdown().await {
            Ok(n) => tracing::info!(keys = n, "store: last_used_at written"),
            Err(e) => tracing::warn!(error = %e, "store: cannot write last_used_at at shutdown"),
        }
        self.upstreams.shutdown().await;
    }
}

/// The view of a store key's caller (`None` for static keys and the anonymous caller).
pub fn view_of(caller: &Principal) -> Option<&View> {
    caller.view_slot()?.0.downcast_ref::<View>()
}

/// [`view_of`], shared (for what outlives the request, such as a notification stream).
pub fn view_arc(caller: &Principal) -> Option<Arc<View>> {
    Arc::clone(&caller.view_slot()?.0).downcast::<View>().ok()
}

/// A store failure as the edge reports it: the message names no secret (store errors never do).
fn unavailable(e: &StoreError) -> GatewayError {
    if !e.is_retryable() {
        tracing::error!(error = %e, "store: a key could not be resolved");
    }
    GatewayError::KeyStoreUnavailable(e.to_string())
}
