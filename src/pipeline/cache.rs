//! Middleware that answers cacheable calls from the response cache, with coalescing: a hit
//! never reaches the upstream, and identical concurrent misses share one upstream call. Tool
//! calls and resource reads both come through here (by their [`CachePolicy`]); results carry
//! their provenance in `_meta["io.sekisho/cache"]` (`hit`, `miss`, `coalesced`; level; age).
//! Never stored: errors, `isError` results, `input_required` results, results over
//! `max_entry_bytes`, and answers a fallback upstream gave.
//!
//! Runtime switches (`crate::switches`): with `cache` off a call passes through untouched
//! (no look-up, no store, no `_meta` mark); with `coalesce` off identical misses each go
//! upstream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tower::{Service, ServiceExt};

use super::ctx::{CachePolicy, Routed};
use super::parts::{Origin, Reply, ReplyFuture};
use super::routed::RoutedStep;
use super::steps::Named;
use crate::cache::coalesce::{Coalescer, Flight};
use crate::cache::config::CacheScope;
use crate::cache::entry::{Entry, Level};
use crate::cache::key::{canonical_arguments, resource_target};
use crate::cache::store::Store;
use crate::error::GatewayError;
use crate::observe::metrics::METRICS;
use crate::switches::{Layer, Switches};
use crate::upstream::request::Body;
use crate::wire::mcp;
use crate::wire::object::{ObjectView, set_meta_member};

/// Read-through cache with coalescing for routed calls that have a cache policy.
#[derive(Clone)]
pub struct ResponseCache {
    cache: Arc<Cached>,
}

struct Cached {
    store: Arc<Store>,
    /// `None` when `[cache] coalesce = false`.
    coalescer: Option<Arc<Coalescer>>,
    /// The `cache` and `coalesce` runtime switches.
    switches: Arc<Switches>,
}

impl ResponseCache {
    /// Cache through `store`, coalescing through `coalescer` when given, while `switches`
    /// leave `cache` (and `coalesce`) on.
    pub fn new(store: &Arc<Store>, coalescer: Option<Arc<Coalescer>>, switches: &Arc<Switches>) -> Self {
        let switches = Arc::clone(switches);
        ResponseCache { cache: Arc::new(Cached { store: Arc::clone(store), coalescer, switches }) }
    }
}

impl Named for ResponseCache {
    fn name(&self) -> &'static str {
        "cache"
    }
}

impl RoutedStep for ResponseCache {
    fn serve<S>(&self, routed: Routed, inner: S) -> Result<ReplyFuture, Routed>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
        S::Future: Send,
    {
        let Some(policy) = routed.target.cache else { return Err(routed) };
        if !self.cache.switches.on(Layer::Cache) {
            return Err(routed);
        }
        let cache = Arc::clone(&self.cache);
        Ok(Box::pin(async move { cache.serve(policy, routed, inner).await }))
    }
}

/// A cached entry as this call's reply, marked with `_meta["io.sekisho/cache"]`.
fn from_cache(entry: &Entry, status: &str, level: Level) -> Reply {
    let meta = format!(r#"{{"status":"{status}","ageMs":{},"level":"{}"}}"#, entry.age_ms(), level.label());
    Reply::Result {
        body: Bytes::from(set_meta_member(&entry.body, mcp::META_CACHE, meta.as_bytes())),
        origin: Origin::Upstream(entry.era, Arc::clone(&entry.upstream)),
    }
}

/// A cacheable call's fresh result, marked `_meta["io.sekisho/cache"] = {"status": "miss"}`.
fn marked_miss(reply: Reply) -> Reply {
    match reply {
        Reply::Result { body, origin } => Reply::Result {
            body: Bytes::from(set_meta_member(&body, mcp::META_CACHE, br#"{"status":"miss"}"#)),
            origin,
        },
        other => other,
    }
}

/// Whether a result may be cached: not a tool error (`isError`), not `input_required`.
fn storable(result: &[u8]) -> bool {
    let Ok(view) = ObjectView::parse(result) else { return false };
    view.get(result, "isError").is_none_or(|s| &result[s] != b"true")
        && view.get_str(result, "resultType").is_none_or(|t| t != "input_required")
}

impl Cached {
    async fn serve<S>(&self, policy: CachePolicy, routed: Routed, inner: S) -> Result<Reply, GatewayError>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError>,
    {
        let up = Arc::clone(&routed.target.upstream);
        let label = || METRICS.upstream_name(&up.name);
        // The metric's `tool` label: a tool's name (resolve found it in the catalog, so the
        // labels are bounded by the catalog), never a resource URI, which the client chooses
        // freely within a template: every URI would be a new series.
        let tool_label = match &policy {
            CachePolicy::Fixed { .. } => routed.name().unwrap_or_default().to_string(),
            CachePolicy::Hinted { .. } => "resources/read".to_string(),
        };
        let name = routed.name().unwrap_or_default().to_string();
        let store = &self.store;
        let (target, keys) = match policy {
            CachePolicy::Fixed { scope, .. } => {
                let args = match &routed.request.body {
                    Body::Client { params, .. } => canonical_arguments(params.get("arguments")),
                    Body::Raw(_) => canonical_arguments(None),
                }
                .map_err(GatewayError::InvalidParams)?;
                let key = store.key(&routed.caller, scope, &up.name, &name, &args).await;
                (name, vec![key])
            }
            // The scope of a resource is known only from its result (`cacheScope`): look under
            // both keys; coalesce on the caller's own, so only the same caller ever waits for it.
            CachePolicy::Hinted { .. } => {
                let target = resource_target(&name);
                let public = store.key(&routed.caller, CacheScope::Public, &up.name, &target, b"").await;
                let private = store.key(&routed.caller, CacheScope::Private, &up.name, &target, b"").await;
                (target, vec![public, private])
            }
        };
        let flight_key = keys.last().expect("at least one key").clone();
        let hit = |entry: &Entry, level: Level| {
            METRICS.cache_lookup(label(), &tool_label, level.label(), "hit");
            from_cache(entry, "hit", level)
        };
        let coalescer = self.coalescer.as_ref().filter(|_| self.switches.on(Layer::Coalesce));
        let leader = match coalescer {
            Some(coalescer) => {
                for k in &keys[..keys.len() - 1] {
                    if let Some((entry, level)) = store.lookup(k).await {
                        return Ok(hit(&entry, level));
                    }
                }
                if let Some(entry) = store.lookup_l1(&flight_key) {
                    return Ok(hit(&entry, Level::L1));
                }
                // Coalescing looks in L2 itself, in the same round trip as the lease.
                match coalescer.coalesce(store, &flight_key).await {
                    Flight::Stored(entry) => return Ok(hit(&entry, Level::L2)),
                    Flight::Shared(entry, level) => {
                        METRICS.cache_lookup(label(), &tool_label, level.label(), "coalesced");
                        return Ok(from_cache(&entry, "coalesced", level));
                    }
                    Flight::Leader(leader) => {
                        // The previous leader may have stored its result just before this call led.
                        if let Some(entry) = keys.iter().find_map(|k| store.lookup_l1(k)) {
                            leader.finish(Some(Arc::clone(&entry)));
                            return Ok(hit(&entry, Level::L1));
                        }
                        Some(leader)
                    }
                    Flight::Alone => None,
                }
            }
            None => {
                for k in &keys {
                    if let Some((entry, level)) = store.lookup(k).await {
                        return Ok(hit(&entry, level));
                    }
                }
                None
            }
        };
        let reply = inner.oneshot(routed).await;
        let entry = match &reply {
            Ok(Reply::Result { body, origin: Origin::Upstream(era, ns) })
                if *ns == up.name && body.len() <= store.cache.max_entry_bytes && storable(body) =>
            {
                match policy {
                    CachePolicy::Fixed { ttl, .. } => {
                        Some((Arc::new(Entry::new(body, false, *era, &up.name, &target, ttl, true)), &keys[0]))
                    }
                    CachePolicy::Hinted { ttl } => {
                        resource_entry(body, *era, &up.name, &target, ttl, store.cache.default_scope).map(
                            |(entry, scope)| (entry, if scope == CacheScope::Public { &keys[0] } else { &keys[1] }),
                        )
                    }
                }
            }
            _ => None,
        };
        // A tool's answer is always a miss; a resource read only when it was stored.
        let miss = matches!(policy, CachePolicy::Fixed { .. }) || entry.is_some();
        if miss {
            METRICS.cache_lookup(label(), &tool_label, "none", "miss");
            // An expired entry's miss, told apart for the recommendations (a TTL too short).
            if store.expired(&keys[0]) {
                METRICS.advice.expired_miss(label(), &tool_label);
            }
        }
        if let Some((e, key)) = &entry {
            store.put(key, Arc::clone(e)).await;
        }
        if let Some(leader) = leader {
            leader.finish(entry.map(|(e, _)| e));
        }
        if miss { reply.map(marked_miss) } else { reply }
    }
}

/// The entry for a resource read's result: for the upstream's `ttlMs` (2026-07-28 caching
/// hints) else `fallback_ttl`, under its `cacheScope` else `default_scope`; `None` when
/// neither lifetime is given or `ttlMs` is 0.
fn resource_entry(
    body: &[u8],
    era: crate::wire::mcp::Era,
    upstream: &Arc<str>,
    target: &str,
    fallback_ttl: Option<Duration>,
    default_scope: CacheScope,
) -> Option<(Arc<Entry>, CacheScope)> {
    let view = ObjectView::parse(body).ok();
    let hinted = view
        .as_ref()
        .and_then(|v| v.get(body, "ttlMs"))
        .and_then(|s| std::str::from_utf8(&body[s]).ok()?.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);
    let ttl = hinted.or(fallback_ttl)?;
    let scope = match view.as_ref().and_then(|v| v.get_str(body, "cacheScope")).as_deref() {
        Some("public") => CacheScope::Public,
        Some("private") => CacheScope::Private,
        _ => default_scope,
    };
    Some((Arc::new(Entry::new(body, false, era, upstream, target, ttl, false)), scope))
}
