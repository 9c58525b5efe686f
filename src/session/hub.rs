//! Notification streams that outlive a request: legacy GET streams and modern
//! `subscriptions/listen` streams (and the stdio client). Catalog changes fan out here as
//! `notifications/{tools,prompts,resources}/list_changed`, each to the streams whose scope
//! and filter ask for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::catalog::Change;
use crate::catalog::listing::ListKind;
use crate::pipeline::parts::Scope;
use crate::store::notify::Change as StoreChange;
use crate::tenancy::{self, View};
use crate::wire::jsonrpc::write_notification;

/// Which list changes a stream wants (2026-07-28 `SubscriptionFilter`; legacy streams want all).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `notifications/tools/list_changed`.
    pub tools: bool,
    /// `notifications/prompts/list_changed`.
    pub prompts: bool,
    /// `notifications/resources/list_changed`.
    pub resources: bool,
}

impl Filter {
    /// Every list change.
    pub const ALL: Filter = Filter { tools: true, prompts: true, resources: true };

    fn wants(&self, kind: ListKind) -> bool {
        match kind {
            ListKind::Tools => self.tools,
            ListKind::Prompts => self.prompts,
            ListKind::Resources | ListKind::Templates => self.resources,
        }
    }
}

struct Listener {
    scope: Scope,
    filter: Filter,
    /// The modern subscription id (raw JSON of the listen request's id), tagged on notifications.
    subscription: Option<Bytes>,
    /// The legacy session behind the stream, whose resource subscriptions it carries.
    session: Option<Arc<crate::session::registry::SessionState>>,
    tx: mpsc::Sender<Bytes>,
    /// A store key's view: the stream hears of the changes of its view's upstreams only.
    view: Option<Arc<View>>,
    /// Its tenant changed in the store since it opened (its view may have grown): it hears of
    /// every change of its tenant's and the static upstreams, rather than miss one.
    widened: bool,
}

/// The registry of notification streams.
#[derive(Default)]
pub struct Hub {
    listeners: Mutex<HashMap<u64, Listener>>,
    next: AtomicU64,
    /// Open `subscriptions/listen` streams per caller tag (bounded by the configured keys).
    listens: Mutex<HashMap<[u8; 16], usize>>,
}

/// An open `subscriptions/listen` stream counted against its caller; dropping it frees its
/// place.
pub struct ListenSlot {
    hub: Arc<Hub>,
    caller: [u8; 16],
}

impl Drop for ListenSlot {
    fn drop(&mut self) {
        let mut listens = self.hub.listens.lock().expect("hub lock");
        if let Some(n) = listens.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                listens.remove(&self.caller);
            }
        }
    }
}

/// A registered stream; dropping it unregisters.
pub struct Registration {
    hub: Arc<Hub>,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.listeners.lock().expect("hub lock").remove(&self.key);
    }
}

impl Hub {
    /// Register a stream that receives complete JSON-RPC notification messages on `tx`.
    pub fn register(
        self: &Arc<Self>,
        scope: Scope,
        filter: Filter,
        subscription: Option<Bytes>,
        tx: mpsc::Sender<Bytes>,
        view: Option<Arc<View>>,
    ) -> Registration {
        self.register_session(scope, filter, subscription, None, tx, view)
    }

    /// Register a legacy session's stream, which also carries `notifications/resources/updated`
    /// for the resources the session subscribed to. `view` is a store key's: the stream then
    /// hears only of its view's upstreams (and of store changes of its tenant).
    pub fn register_session(
        self: &Arc<Self>,
        scope: Scope,
        filter: Filter,
        subscription: Option<Bytes>,
        session: Option<Arc<crate::session::registry::SessionState>>,
        tx: mpsc::Sender<Bytes>,
        view: Option<Arc<View>>,
    ) -> Registration {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let listener = Listener { scope, filter, subscription, session, tx, view, widened: false };
        self.listeners.lock().expect("hub lock").insert(key, listener);
        Registration { hub: Arc::clone(self), key }
    }

    /// Deliver an upstream resource update to the sessions subscribed to that resource, under
    /// the URI each one used (`sekisho://{namespace}/…` on `/mcp`, the original per upstream).
    /// An update from a per-client upstream session (`update.only`) reaches only its client.
    pub fn publish_update(&self, update: &crate::catalog::ResourceUpdate) {
        let gateway_uri = crate::catalog::naming::exposed_uri(&update.upstream, &update.uri);
        let listeners = self.listeners.lock().expect("hub lock");
        for l in listeners.values() {
            let Some(session) = &l.session else { continue };
            if update.only.is_some_and(|key| key != session.link.key) {
                continue;
            }
            let in_view;
            let uri = match (&l.view, &l.scope) {
                (Some(view), _) => match view.exposed_of(&update.upstream) {
                    Some(ns) => {
                        in_view = crate::catalog::naming::exposed_uri(ns, &update.uri);
                        in_view.as_str()
                    }
                    None => continue,
                },
                (None, Scope::Gateway) if tenancy::is_tenant_upstream(&update.upstream) => continue,
                (None, Scope::Gateway) => gateway_uri.as_str(),
                (None, Scope::Upstream(ns)) if *ns == update.upstream => update.uri.as_str(),
                (None, Scope::Upstream(_)) => continue,
            };
            if session.is_subscribed(uri) {
                let mut out = Vec::with_capacity(96 + uri.len());
                let params = serde_json::json!({ "uri": uri }).to_string();
                write_notification(&mut out, "notifications/resources/updated", Some(params.as_bytes()));
                let _ = l.tx.try_send(Bytes::from(out));
            }
        }
    }

    /// Count one more `subscriptions/listen` stream of `caller` (its tag) unless it has `max`
    /// open.
    pub fn open_listen(self: &Arc<Self>, caller: [u8; 16], max: usize) -> Option<ListenSlot> {
        let mut listens = self.listens.lock().expect("hub lock");
        let n = listens.entry(caller).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ListenSlot { hub: Arc::clone(self), caller })
    }

    /// Number of open streams.
    pub fn len(&self) -> usize {
        self.listeners.lock().expect("hub lock").len()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deliver one catalog change to every stream that wants it. Slow streams lose it
    /// (a later list call still shows the truth).
    pub fn publish(&self, change: &Change) {
        let method = match change.kind {
            ListKind::Tools => "notifications/tools/list_changed",
            ListKind::Prompts => "notifications/prompts/list_changed",
            ListKind::Resources | ListKind::Templates => "notifications/resources/list_changed",
        };
        let listeners = self.listeners.lock().expect("hub lock");
        for l in listeners.values() {
            let in_scope = match (&l.view, &l.scope) {
                (Some(view), _) => {
                    view.has_upstream(&change.upstream)
                        || (l.widened
                            && tenancy::tenant_of(&change.upstream).is_none_or(|t| t == view.resolved.tenant.id))
                }
                (None, Scope::Gateway) => !tenancy::is_tenant_upstream(&change.upstream),
                (None, Scope::Upstream(ns)) => *ns == change.upstream,
            };
            if !in_scope || !l.filter.wants(change.kind) {
                continue;
            }
            let _ = l.tx.try_send(notification(method, l.subscription.as_deref()));
        }
    }
}

impl Hub {
    /// The keys (HMAC, and the view their streams opened with) of the store keys with streams
    /// open that `change` may concern: those of its tenant, of the key, or all.
    pub fn store_listeners(&self, change: &StoreChange) -> Vec<([u8; 32], Arc<View>)> {
        let listeners = self.listeners.lock().expect("hub lock");
        let mut found: Vec<([u8; 32], Arc<View>)> = Vec::new();
        // Views of static groups (OAuth) are no store's: no change concerns them.
        for view in listeners.values().filter_map(|l| l.view.as_ref()).filter(|v| v.binding != tenancy::Binding::Fixed)
        {
            let concerned = match change {
                StoreChange::Tenant(id) => *id == view.resolved.tenant.id,
                StoreChange::Key(hash) => *hash == view.key_hash,
                StoreChange::All => true,
            };
            if concerned && !found.iter().any(|(h, _)| *h == view.key_hash) {
                found.push((view.key_hash, Arc::clone(view)));
            }
        }
        found
    }

    /// The view of store key `key_hash` changed: its streams get `list_changed` for every list
    /// and are widened (see [`Listener`]).
    pub fn view_changed(&self, key_hash: &[u8; 32]) {
        let mut listeners = self.listeners.lock().expect("hub lock");
        for l in listeners.values_mut().filter(|l| l.view.as_ref().is_some_and(|v| v.key_hash == *key_hash)) {
            l.widened = true;
            for (kind, method) in [
                (ListKind::Tools, "notifications/tools/list_changed"),
                (ListKind::Prompts, "notifications/prompts/list_changed"),
                (ListKind::Resources, "notifications/resources/list_changed"),
            ] {
                if l.filter.wants(kind) {
                    let _ = l.tx.try_send(notification(method, l.subscription.as_deref()));
                }
            }
        }
    }

    /// Store key `key_hash` was revoked or deleted: its streams are unregistered (they hear
    /// nothing more; its next request is refused).
    pub fn key_ended(&self, key_hash: &[u8; 32]) {
        self.listeners.lock().expect("hub lock").retain(|_, l| l.view.as_ref().is_none_or(|v| v.key_hash != *key_hash));
    }
}

/// A list-changed notification, tagged with a modern subscription id when given.
pub fn notification(method: &str, subscription: Option<&[u8]>) -> Bytes {
    let mut out = Vec::with_capacity(96);
    match subscription {
        Some(id) => {
            let mut params = Vec::with_capacity(64);
            params.extend_from_slice(br#"{"_meta":{"io.modelcontextprotocol/subscriptionId":"#);
            params.extend_from_slice(id);
            params.extend_from_slice(b"}}");
            write_notification(&mut out, method, Some(&params));
        }
        None => write_notification(&mut out, method, None),
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publishes_by_scope_and_filter() {
        let hub = Arc::new(Hub::default());
        let (tx_all, mut rx_all) = mpsc::channel(4);
        let (tx_a, mut rx_a) = mpsc::channel(4);
        let (tx_p, mut rx_p) = mpsc::channel(4);
        let _r1 = hub.register(Scope::Gateway, Filter::ALL, None, tx_all, None);
        let _r2 = hub.register(Scope::Upstream("a".into()), Filter::ALL, None, tx_a, None);
        let r3 = hub.register(
            Scope::Gateway,
            Filter { prompts: true, ..Default::default() },
            Some(Bytes::from_static(b"9")),
            tx_p,
            None,
        );
        hub.publish(&Change { upstream: "b".into(), kind: ListKind::Tools, first: false });
        assert!(
            rx_all.try_recv().unwrap().starts_with(br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed""#)
        );
        assert!(rx_a.try_recv().is_err(), "other upstream's change");
        assert!(rx_p.try_recv().is_err(), "filtered out");
        hub.publish(&Change { upstream: "a".into(), kind: ListKind::Prompts, first: false });
        let tagged: serde_json::Value = serde_json::from_slice(&rx_p.try_recv().unwrap()).unwrap();
        assert_eq!(tagged["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], 9);
        assert!(rx_a.try_recv().is_ok());
        drop(r3);
        assert_eq!(hub.len(), 2);
    }
}
