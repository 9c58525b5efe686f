//! The catalog: every upstream's tools, prompts, resources and resource templates merged
//! under namespaces, the map from catalog names back to `(upstream, original name)`, and the
//! refresh loop that keeps it current (on connect, on `list_changed`, and periodically).
//!
//! The merged catalog is an immutable snapshot swapped atomically on change, so the hot path
//! reads it without locks. While an upstream is down its last known items stay listed (calls
//! fail fast with a retryable error) and list results name it in `_meta`, so a failure is
//! never a silently shorter list.

pub mod config;
pub mod listing;
pub mod lists;
pub mod naming;
pub mod params;
pub mod schema;
pub mod startup;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use self::config::CatalogConfig;
use self::listing::{Entry, Hint, ListKind};
use self::params::ParamHeaders;
use self::startup::StartupGate;
use crate::error::GatewayError;
use crate::upstream::Upstream;
use crate::upstream::signals::{self, Signal, SignalReceiver};
use crate::wire::object::{ObjectView, ObjectWriter};

/// Where a catalog name leads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The upstream's namespace.
    pub upstream: Arc<str>,
    /// The name or URI as the upstream knows it.
    pub original: Arc<str>,
}

/// What a tool's annotations say about repeating it (MCP `ToolAnnotations`; hints, trusted
/// only when the upstream is configured `trusted`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToolHints {
    /// `readOnlyHint`.
    pub read_only: bool,
    /// `idempotentHint`.
    pub idempotent: bool,
    /// `destructiveHint` (absent means true in the spec; recorded as sent).
    pub destructive: bool,
}

impl ToolHints {
    fn of(raw: &[u8]) -> ToolHints {
        let v: serde_json::Value = serde_json::from_slice(raw).unwrap_or_default();
        let flag = |k: &str| v.pointer(&format!("/annotations/{k}")).and_then(|b| b.as_bool()) == Some(true);
        ToolHints {
            read_only: flag("readOnlyHint"),
            idempotent: flag("idempotentHint"),
            destructive: flag("destructiveHint"),
        }
    }
}

/// One upstream's lists as the catalog keeps them.
#[derive(Clone, Debug, Default)]
pub struct UpstreamLists {
    /// Items per [`ListKind`], verbatim.
    pub items: [Vec<Entry>; 4],
    /// Cache hints per kind.
    pub hints: [Hint; 4],
    /// Whether the upstream is connected now.
    pub up: bool,
    /// Whether any listing ever succeeded.
    pub listed: bool,
}

/// A merged list: pre-serialized items and the merged cache hint.
#[derive(Clone, Debug, Default)]
pub struct MergedList {
    /// Item objects, already renamed for the merged catalog.
    pub items: Vec<Bytes>,
    /// Minimum TTL and combined scope of the parts.
    pub hint: Hint,
}

/// An immutable catalog snapshot.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Bumped on every rebuild.
    pub generation: u64,
    /// The namespaced lists, per [`ListKind`].
    pub merged: [MergedList; 4],
    tools: HashMap<Box<str>, Target>,
    prompts: HashMap<Box<str>, Target>,
    /// Each upstream's own lists (for the unprefixed per-upstream route).
    pub upstreams: BTreeMap<Arc<str>, Arc<UpstreamLists>>,
    /// Upstreams that are down or were never listed.
    pub unavailable: Vec<Arc<str>>,
    hints: HashMap<Arc<str>, HashMap<Box<str>, ToolHints>>,
    /// Per upstream, its tools that declare `x-mcp-header` parameters (only those).
    params: HashMap<Arc<str>, HashMap<Box<str>, ParamHeaders>>,
}

impl Catalog {
    /// Merge per-upstream lists (iterated in namespace order, so the result is deterministic).
    pub fn build(generation: u64, lists: &BTreeMap<Arc<str>, Arc<UpstreamLists>>, separator: &str) -> Catalog {
        let mut c = Catalog { generation, upstreams: lists.clone(), ..Default::default() };
        for (ns, ul) in lists {
            // Connected but never listed is as missing from the lists as down.
            if !ul.up || !ul.listed {
                c.unavailable.push(Arc::clone(ns));
            }
            let hints = ul.items[ListKind::Tools.index()].iter().map(|e| (e.id.as_str().into(), ToolHints::of(&e.raw)));
            c.hints.insert(Arc::clone(ns), hints.collect());
            // The listing left out tools whose declarations are invalid; what remains parses.
            let declared = ul.items[ListKind::Tools.index()]
                .iter()
                .filter_map(|e| params::declared(&e.raw).ok().flatten().map(|d| (e.id.as_str().into(), d)));
            let declared: HashMap<Box<str>, ParamHeaders> = declared.collect();
            if !declared.is_empty() {
                c.params.insert(Arc::clone(ns), declared);
            }
            for kind in ListKind::ALL {
                let merged = &mut c.merged[kind.index()];
                for entry in &ul.items[kind.index()] {
                    let exposed = match kind {
                        ListKind::Tools | ListKind::Prompts => {
                            let index = if kind == ListKind::Tools { &mut c.tools } else { &mut c.prompts };
                            let mut name = naming::exposed_name(ns, separator, &entry.id);
                            if index.contains_key(name.as_str()) {
                                // Two originals met at one name: the hash suffix parts them.
                                let suffix = naming::hash_suffix(ns, &entry.id);
                                name.truncate(naming::MAX_NAME_LEN - suffix.len() - 1);
                                name = format!("{name}_{suffix}");
                                if index.contains_key(name.as_str()) {
                                    tracing::warn!(upstream = %ns, name = %entry.id, "dropped a duplicate {:?} name", kind);
                                    continue;
                                }
                            }
                            index.insert(
                                name.clone().into(),
                                Target { upstream: Arc::clone(ns), original: entry.id.as_str().into() },
                            );
                            name
                        }
                        ListKind::Resources | ListKind::Templates => naming::exposed_uri(ns, &entry.id),
                    };
                    merged.items.push(replace_member(&entry.raw, kind.id_key(), &exposed));
                }
                let hint = ul.hints[kind.index()];
                if let Some(ttl) = hint.ttl_ms {
                    merged.hint.ttl_ms = Some(merged.hint.ttl_ms.map_or(ttl, |t| t.min(ttl)));
                }
                merged.hint.private |= hint.private;
            }
        }
        c
    }

    /// The target of a catalog tool name.
    pub fn tool(&self, name: &str) -> Option<&Target> {
        self.tools.get(name)
    }

    /// The annotations of an upstream's tool, by its own name.
    pub fn hints(&self, upstream: &str, tool: &str) -> Option<&ToolHints> {
        self.hints.get(upstream)?.get(tool)
    }

    /// The `x-mcp-header` declarations of an upstream's tool, by its own name; `None` when it
    /// declares none (or is not listed).
    pub fn param_headers(&self, upstream: &str, tool: &str) -> Option<&ParamHeaders> {
        self.params.get(upstream)?.get(tool)
    }

    /// The target of a catalog prompt name.
    pub fn prompt(&self, name: &str) -> Option<&Target> {
        self.prompts.get(name)
    }

    /// The target of a resource URI: a gateway URI maps back by its prefix; a bare upstream URI
    /// (e.g. from a `resource_link` in a tool result) is found among listed resources, then
    /// among templates, and must be unambiguous.
    pub fn resource(&self, uri: &str) -> Option<Target> {
        if let Some((ns, original)) = naming::split_uri(uri)
            && let Some((name, _)) = self.upstreams.get_key_value(ns)
        {
            return Some(Target { upstream: Arc::clone(name), original: original.into() });
        }
        let owners = |kind: ListKind, hit: &dyn Fn(&Entry) -> bool| -> Vec<Arc<str>> {
            self.upstreams
                .iter()
                .filter(|(_, ul)| ul.items[kind.index()].iter().any(hit))
                .map(|(ns, _)| Arc::clone(ns))
                .collect()
        };
        let exact = owners(ListKind::Resources, &|e| e.id == uri);
        let found = if exact.is_empty() {
            owners(ListKind::Templates, &|e| naming::template_matches(&e.id, uri))
        } else {
            exact
        };
        match found.as_slice() {
            [one] => Some(Target { upstream: Arc::clone(one), original: uri.into() }),
            _ => None,
        }
    }
}

/// Replace the string member `key` of a raw object with `value`, keeping everything else.
pub fn replace_member(raw: &Bytes, key: &str, value: &str) -> Bytes {
    let Ok(view) = ObjectView::parse(raw) else {
        return raw.clone();
    };
    let mut out = Vec::with_capacity(raw.len() + value.len());
    let mut w = ObjectWriter::begin(&mut out);
    for (k, span) in view.iter(raw) {
        if k == key {
            w.string(k, value);
        } else {
            w.raw(k, &raw[span]);
        }
    }
    w.end();
    Bytes::from(out)
}

/// Every upstream's lists, by namespace.
type ListsByUpstream = BTreeMap<Arc<str>, Arc<UpstreamLists>>;

/// A list of one upstream changed (clients in its scopes get `list_changed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The upstream whose list changed.
    pub upstream: Arc<str>,
    /// Which list.
    pub kind: ListKind,
    /// Whether this is the first listing of the upstream here (this replica knew nothing of
    /// it): nothing cached by this replica can be stale, and another replica's entries were
    /// made for the same list, so the shared cache is not invalidated.
    pub first: bool,
}

/// An upstream reported `notifications/resources/updated` for one of its resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceUpdate {
    /// The upstream.
    pub upstream: Arc<str>,
    /// The resource URI as the upstream knows it.
    pub uri: String,
    /// The client session (its `ClientLink::key`) whose per-client upstream session sent it:
    /// only that session hears of it. `None`: every subscribed session.
    pub only: Option<u64>,
}

/// The live catalog: the current snapshot, the per-upstream lists it is built from, and the
/// channel that announces changes.
pub struct CatalogState {
    current: ArcSwap<Catalog>,
    lists: Mutex<(u64, ListsByUpstream)>,
    config: CatalogConfig,
    changes: broadcast::Sender<Change>,
    updates: broadcast::Sender<ResourceUpdate>,
    startup: StartupGate,
}

impl CatalogState {
    /// An empty catalog over the given upstream namespaces (all unavailable until listed).
    pub fn new(config: CatalogConfig, namespaces: impl IntoIterator<Item = Arc<str>>) -> Arc<Self> {
        let lists: BTreeMap<_, _> = namespaces.into_iter().map(|n| (n, Arc::new(UpstreamLists::default()))).collect();
        let catalog = Catalog::build(0, &lists, &config.separator);
        Arc::new(CatalogState {
            current: ArcSwap::from_pointee(catalog),
            startup: StartupGate::new(lists.keys().map(|n| n.as_ref()), config.initial_wait),
            lists: Mutex::new((0, lists)),
            config,
            changes: broadcast::channel(256).0,
            updates: broadcast::channel(256).0,
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Catalog>> {
        self.current.load()
    }

    /// The start-up gate: list requests and calls to unknown names wait on it right after start.
    pub fn startup(&self) -> &StartupGate {
        &self.startup
    }

    /// The catalog configuration.
    pub fn config(&self) -> &CatalogConfig {
        &self.config
    }

    /// Subscribe to list changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Subscribe to upstream resource updates.
    pub fn subscribe_updates(&self) -> broadcast::Receiver<ResourceUpdate> {
        self.updates.subscribe()
    }

    /// Apply an update to one upstream's lists and rebuild; announces the kinds whose items changed.
    fn update(&self, upstream: &Arc<str>, f: impl FnOnce(&mut UpstreamLists)) {
        let mut guard = self.lists.lock().expect("catalog lock");
        let (generation, lists) = &mut *guard;
        let before = lists.get(upstream).cloned().unwrap_or_default();
        let mut after = (*before).clone();
        f(&mut after);
        let changed: Vec<ListKind> =
            ListKind::ALL.into_iter().filter(|k| before.items[k.index()] != after.items[k.index()]).collect();
        if changed.is_empty() && before.up == after.up && before.listed == after.listed && before.hints == after.hints {
            return;
        }
        lists.insert(Arc::clone(upstream), Arc::new(after));
        *generation += 1;
        self.current.store(Arc::new(Catalog::build(*generation, lists, &self.config.separator)));
        drop(guard);
        let first = !before.listed;
        for kind in changed {
            let _ = self.changes.send(Change { upstream: Arc::clone(upstream), kind, first });
        }
    }

    /// Re-list the given kinds of one upstream. Kinds that fail keep their last known items.
    pub async fn refresh(&self, up: &Upstream, kinds: &[ListKind]) {
        let mut fetched = Vec::new();
        for &kind in kinds {
            match listing::fetch(up, kind).await {
                Ok(list) => fetched.push((kind, list)),
                Err(e) => {
                    crate::observe::metrics::catalog_refresh_failed(&up.name);
                    tracing::warn!(upstream = %up.name, list = kind.method(), error = %e, "listing failed; keeping the last known items");
                }
            }
        }
        let up_now = up.status().is_up();
        self.update(&up.name, |ul| {
            for (kind, (items, hint)) in fetched {
                ul.items[kind.index()] = items;
                ul.hints[kind.index()] = hint;
                ul.listed = true;
            }
            ul.up = up_now;
        });
    }

    /// Mark an upstream down (its items stay listed; list results name it as unavailable).
    pub fn mark_down(&self, upstream: &Arc<str>) {
        self.update(upstream, |ul| ul.up = false);
    }

    /// Keep one upstream's lists current until `shutdown`: on connect, on `list_changed`
    /// (coalesced over a short window), and every `refresh_interval`.
    pub async fn follow(self: Arc<Self>, up: Arc<Upstream>, mut signals: SignalReceiver, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.refresh_interval);
        tick.tick().await;
        loop {
            let signal = tokio::select! {
                s = signals.recv() => match s { Some(s) => s, None => return },
                _ = tick.tick() => Signal::Up,
                () = shutdown.cancelled() => return,
            };
            let (mut kinds, mut resync) = (Vec::new(), false);
            let mut pending = Some(signal);
            // Upstreams often announce several changes at once; take them together.
            tokio::time::sleep(Duration::from_millis(20)).await;
            while let Some(s) = pending.take().or_else(|| signals.try_recv()) {
                match s {
                    Signal::Up => kinds.extend(ListKind::ALL),
                    Signal::Resync => resync = true,
                    // One replica going down leaves the upstream up while others serve.
                    Signal::Down if !up.status().is_up() => self.mark_down(&up.name),
                    Signal::Down => {}
                    Signal::ListChanged(signals::ListKind::Tools) => kinds.push(ListKind::Tools),
                    Signal::ListChanged(signals::ListKind::Prompts) => kinds.push(ListKind::Prompts),
                    Signal::ListChanged(signals::ListKind::Resources) => {
                        kinds.extend([ListKind::Resources, ListKind::Templates])
                    }
                    Signal::ResourceUpdated(params, only) => {
                        if let Some(uri) = ObjectView::parse(&params)
                            .ok()
                            .and_then(|v| v.get_str(&params, "uri").map(|u| u.into_owned()))
                        {
                            let _ = self.updates.send(ResourceUpdate { upstream: Arc::clone(&up.name), uri, only });
                        }
                    }
                }
            }
            // Signals were dropped: whatever they said, re-listing and re-reading the status
            // covers it.
            if signals.overflowed() || resync {
                kinds.extend(ListKind::ALL);
                if !up.status().is_up() {
                    self.mark_down(&up.name);
                }
            }
            kinds.sort();
            kinds.dedup();
            // Every announcement counted by now has its signal drained above or still queued
            // (which brings another round), so this refresh covers it.
            let announced = up.freshness().announced();
            if !kinds.is_empty() && up.status().is_up() {
                self.refresh(&up, &kinds).await;
            }
            up.freshness().caught_up_to(announced);
            // The first round ends this upstream's start: it was listed, or it failed to start.
            self.startup.settled(&up.name);
        }
    }
}

/// A pagination cursor the gateway mints: base64url of `{kind}:{offset}`.
pub fn encode_cursor(kind: ListKind, offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{offset}", kind.index()))
}

/// Read a cursor for `kind`.
///
/// Errors: [`GatewayError::InvalidCursor`] for a cursor the gateway did not mint for this list.
pub fn decode_cursor(kind: ListKind, cursor: &str) -> Result<usize, GatewayError> {
    let raw = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| GatewayError::InvalidCursor)?;
    let text = std::str::from_utf8(&raw).map_err(|_| GatewayError::InvalidCursor)?;
    let (k, offset) = text.split_once(':').ok_or(GatewayError::InvalidCursor)?;
    if k != kind.index().to_string() {
        return Err(GatewayError::InvalidCursor);
    }
    offset.parse().map_err(|_| GatewayError::InvalidCursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, key: &str) -> Entry {
        Entry { id: id.into(), raw: Bytes::from(format!(r#"{{"{key}":"{id}","description":"d"}}"#)) }
    }

    fn lists() -> BTreeMap<Arc<str>, Arc<UpstreamLists>> {
        let mut a = UpstreamLists { up: true, listed: true, ..Default::default() };
        a.items[0] = vec![entry("echo", "name"), entry("add", "name")];
        a.items[2] = vec![entry("test://static/1", "uri")];
        a.items[3] = vec![entry("test://t/{id}", "uriTemplate")];
        a.hints[0] = Hint { ttl_ms: Some(5000), private: false };
        let mut b = UpstreamLists { up: false, listed: true, ..Default::default() };
        b.items[0] = vec![entry("echo", "name"), entry("odd.name", "name")];
        b.hints[0] = Hint { ttl_ms: Some(1000), private: true };
        [(Arc::from("alpha"), Arc::new(a)), (Arc::from("beta"), Arc::new(b))].into_iter().collect()
    }

    #[test]
    fn merges_namespaced_in_deterministic_order() {
        let c = Catalog::build(1, &lists(), "__");
        let names: Vec<String> = c.merged[0]
            .items
            .iter()
            .map(|b| serde_json::from_slice::<serde_json::Value>(b).unwrap()["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names[..3], ["alpha__echo", "alpha__add", "beta__echo"]);
        assert!(names[3].starts_with("beta__odd_name_"));
        assert_eq!(c.tool("beta__echo").unwrap().original.as_ref(), "echo");
        assert_eq!(c.tool(&names[3]).unwrap().original.as_ref(), "odd.name");
        assert_eq!(c.merged[0].hint, Hint { ttl_ms: Some(1000), private: true });
        assert_eq!(c.unavailable, vec![Arc::<str>::from("beta")]);
    }

    #[test]
    fn an_upstream_that_is_up_but_never_listed_is_named_unavailable() {
        let mut lists = lists();
        lists.insert(Arc::from("gamma"), Arc::new(UpstreamLists { up: true, listed: false, ..Default::default() }));
        let c = Catalog::build(1, &lists, "__");
        assert_eq!(c.unavailable, vec![Arc::<str>::from("beta"), Arc::from("gamma")]);
    }

    #[test]
    fn resources_map_both_ways() {
        let c = Catalog::build(1, &lists(), "__");
        let uri: serde_json::Value = serde_json::from_slice(&c.merged[2].items[0]).unwrap();
        assert_eq!(uri["uri"], "sekisho://alpha/test://static/1");
        assert_eq!(c.resource("sekisho://alpha/test://static/1").unwrap().original.as_ref(), "test://static/1");
        assert_eq!(c.resource("test://static/1").unwrap().upstream.as_ref(), "alpha");
        assert_eq!(c.resource("test://t/42").unwrap().upstream.as_ref(), "alpha");
        assert!(c.resource("nope://x").is_none());
        assert!(c.resource("sekisho://gamma/x").is_none());
    }

    #[test]
    fn cursors_round_trip_and_reject_foreign_ones() {
        let c = encode_cursor(ListKind::Resources, 200);
        assert_eq!(decode_cursor(ListKind::Resources, &c).unwrap(), 200);
        assert!(decode_cursor(ListKind::Tools, &c).is_err());
        assert!(decode_cursor(ListKind::Tools, "garbage!").is_err());
    }
}
