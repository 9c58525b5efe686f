//! Resource subscriptions shared through an upstream (2025-11-25 `server/resources`,
//! "Subscriptions"): many client sessions may subscribe to one upstream resource over the one
//! shared upstream connection, so the gateway counts them. Every client's `resources/subscribe`
//! goes upstream (it gets the upstream's own answer), but `resources/unsubscribe` goes upstream
//! only when the last subscribed session leaves (unsubscribes, is deleted, or is dropped after
//! idling); before that one client's unsubscribe cannot end another's updates.
//!
//! A per-client upstream (`session = "per-client"`) gives each client session its own upstream
//! session: nothing is shared there, so a session's unsubscribe (or its end) goes to its own
//! upstream session at once, whatever other sessions hold.
//!
//! A modern upstream (2026-07-28) has no subscribe methods: there the first session's hold
//! adds the resource to the upstream's `subscriptions/listen` filter (`resourceSubscriptions`)
//! and the last one's release removes it; the updates come on the listen stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::upstream::Upstream;

/// One upstream resource: the upstream's namespace and its own URI for the resource.
type Resource = (Arc<str>, Arc<str>);

/// Sessions subscribed per upstream resource.
#[derive(Debug, Default)]
pub struct Subscriptions {
    counts: Mutex<HashMap<Resource, usize>>,
}

impl Subscriptions {
    /// Count one more session subscribed to `uri` (the upstream's own URI) at `upstream`. The
    /// returned guard counts it down when dropped. For a modern upstream the first session
    /// also adds the resource to the upstream's listen filter. `client`: the session's
    /// [`ClientLink::key`](super::link::ClientLink); on a per-client upstream the subscription
    /// is that session's own (not counted), and dropping it unsubscribes its upstream session.
    pub fn hold(self: &Arc<Self>, upstream: &Arc<Upstream>, uri: Arc<str>, client: u64) -> Subscription {
        if upstream.is_per_client() && !upstream.speaks_modern() {
            return Subscription { registry: Arc::clone(self), upstream: Arc::clone(upstream), uri, own: Some(client) };
        }
        let first = {
            let mut counts = self.counts.lock().expect("subscriptions lock");
            let n = counts.entry((Arc::clone(&upstream.name), Arc::clone(&uri))).or_default();
            *n += 1;
            *n == 1
        };
        if first && upstream.speaks_modern() {
            upstream.watch_resource(&uri, true);
        }
        Subscription { registry: Arc::clone(self), upstream: Arc::clone(upstream), uri, own: None }
    }

    /// Sessions subscribed to `uri` at `upstream` now.
    pub fn count(&self, upstream: &str, uri: &str) -> usize {
        let key = (Arc::from(upstream), Arc::from(uri));
        self.counts.lock().expect("subscriptions lock").get(&key).copied().unwrap_or(0)
    }

    /// Count one session less; returns whether it was the last.
    fn release(&self, upstream: &Arc<str>, uri: &Arc<str>) -> bool {
        let mut counts = self.counts.lock().expect("subscriptions lock");
        let key = (Arc::clone(upstream), Arc::clone(uri));
        let Some(n) = counts.get_mut(&key) else { return false };
        *n -= 1;
        if *n > 0 {
            return false;
        }
        counts.remove(&key);
        true
    }
}

/// One session's subscription to one upstream resource; dropping it unsubscribes the session,
/// and the last one leaving unsubscribes the gateway upstream.
pub struct Subscription {
    registry: Arc<Subscriptions>,
    upstream: Arc<Upstream>,
    uri: Arc<str>,
    /// The client key whose own (per-client) upstream session holds it.
    own: Option<u64>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subscription({}: {})", self.upstream.name, self.uri)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(key) = self.own {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
            let (upstream, uri) = (Arc::clone(&self.upstream), Arc::clone(&self.uri));
            runtime.spawn(async move {
                let params = serde_json::json!({ "uri": &*uri }).to_string();
                let sent = upstream.request_client_session(key, "resources/unsubscribe", Some(params.as_bytes()));
                if let Err(e) = sent.await {
                    tracing::debug!(upstream = %upstream.name, error = %e, "resources/unsubscribe was not accepted");
                }
            });
            return;
        }
        if !self.registry.release(&self.upstream.name, &self.uri) {
            return;
        }
        if self.upstream.speaks_modern() {
            // The modern era has no unsubscribe: the listen streams stop asking for it.
            self.upstream.watch_resource(&self.uri, false);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (registry, upstream, uri) = (Arc::clone(&self.registry), Arc::clone(&self.upstream), Arc::clone(&self.uri));
        runtime.spawn(async move {
            let params = Bytes::from(serde_json::json!({ "uri": &*uri }).to_string());
            if let Err(e) = upstream.request("resources/unsubscribe", Some(&params)).await {
                tracing::debug!(upstream = %upstream.name, error = %e, "resources/unsubscribe was not accepted");
            }
            // A session that subscribed while the unsubscribe was on its way must not lose
            // its updates: subscribe again.
            if registry.count(&upstream.name, &uri) > 0
                && let Err(e) = upstream.request("resources/subscribe", Some(&params)).await
            {
                tracing::debug!(upstream = %upstream.name, error = %e, "resources/subscribe was not accepted");
            }
        });
    }
}
