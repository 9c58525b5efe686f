//! The catalog of one instance (virtual server), as its keys see it: the tools its tool group
//! grants — of the tenant's own upstreams and of the static upstreams the operator shares —
//! under the instance's own namespaces (a server config's name, a shared upstream's
//! namespace), with the prompts, resources and templates of every source the group names.
//! Everything else is absent: not listed, and a call naming it is an unknown tool, prompt or
//! resource.
//!
//! The view's catalog is a [`Catalog`] built from its sources' current lists and rebuilt only
//! when one of them changed (the global catalog's generation, or a tenant upstream's), so a
//! call pays a few atomic loads to find it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::upstreams::TenantUpstream;
use crate::catalog::listing::ListKind;
use crate::catalog::{Catalog, CatalogState, UpstreamLists};
use crate::store::resolve::{Resolved, ToolSource};
use crate::upstream::{Upstream, UpstreamSet};

/// Where a view's namespace leads.
pub enum Source {
    /// A static upstream of the TOML file, shared by the operator.
    Shared(Arc<Upstream>),
    /// One of the tenant's own upstreams.
    Tenant(Arc<TenantUpstream>),
}

impl Source {
    /// The upstream.
    pub fn upstream(&self) -> &Arc<Upstream> {
        match self {
            Source::Shared(up) => up,
            Source::Tenant(tu) => tu.upstream(),
        }
    }
}

/// What a view is bound to, which says how a store change is checked against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// A store key: resolved again by its HMAC.
    Key,
    /// A store instance an OAuth token's claims name: resolved again by tenant and instance name.
    Instance,
    /// Static upstreams only (an OAuth caller's `[auth.oauth]` groups): no store change
    /// concerns it.
    Fixed,
}

/// One namespace of the view: its source and the tool patterns the group grants from it.
struct Part {
    /// The namespace clients see.
    exposed: Arc<str>,
    source: Source,
    patterns: Vec<String>,
}

/// A built catalog and the source generations it was built from.
struct Built {
    stamp: Vec<u64>,
    catalog: Arc<Catalog>,
}

/// One key's view of the gateway (its instance's catalog). Shared by the requests of that key
/// until its resolution changes.
pub struct View {
    /// What the key resolved to.
    pub resolved: Arc<Resolved>,
    /// What its resolution is cached under (a key's HMAC, an instance's
    /// [`crate::store::instance_digest`], zeros for a [`Binding::Fixed`] view): its streams
    /// are found, told of changes and ended by it.
    pub key_hash: [u8; 32],
    /// What the view is bound to.
    pub binding: Binding,
    parts: Vec<Part>,
    built: Mutex<Option<Built>>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("tenant", &self.resolved.tenant.name)
            .field("instance", &self.resolved.instance.name)
            .field("namespaces", &self.parts.iter().map(|p| &*p.exposed).collect::<Vec<_>>())
            .finish()
    }
}

/// Views are the same when they are the same object.
impl PartialEq for View {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for View {}

impl View {
    /// The view of `resolved`, cached under `key_hash` and bound as `binding`: its tool group's sources, the tenant's own upstreams taken from
    /// (or started by) `tenant_upstream`, shared ones looked up in `statics` (a grant naming a
    /// static namespace that is not configured is left out, with a warning).
    ///
    /// Errors: `tenant_upstream`'s.
    pub fn new(
        resolved: Arc<Resolved>,
        key_hash: [u8; 32],
        binding: Binding,
        statics: &UpstreamSet,
        mut tenant_upstream: impl FnMut(
            &crate::store::resolve::TenantServer,
        ) -> Result<Arc<TenantUpstream>, crate::error::GatewayError>,
    ) -> Result<View, crate::error::GatewayError> {
        let mut parts: Vec<Part> = Vec::new();
        // A tenant's server takes its own name; a shared namespace that meets one is renamed.
        for server in &resolved.servers {
            let patterns = patterns_of(&resolved, &ToolSource::Server(server.id));
            if patterns.is_empty() {
                continue;
            }
            let tu = tenant_upstream(server)?;
            parts.push(Part { exposed: Arc::from(server.name.as_str()), source: Source::Tenant(tu), patterns });
        }
        let mut shared: Vec<&str> = resolved
            .tools
            .iter()
            .filter_map(|g| match &g.source {
                ToolSource::Shared(ns) => Some(ns.as_str()),
                ToolSource::Server(_) => None,
            })
            .collect();
        shared.sort_unstable();
        shared.dedup();
        for ns in shared {
            let Some(up) = statics.get(ns) else {
                tracing::warn!(
                    tenant = %resolved.tenant.name, instance = %resolved.instance.name, namespace = ns,
                    "a tool group names a shared upstream that is not configured; left out"
                );
                continue;
            };
            let mut exposed = ns.to_string();
            while parts.iter().any(|p| *p.exposed == *exposed) {
                exposed.push_str("-shared");
            }
            let patterns = patterns_of(&resolved, &ToolSource::Shared(ns.to_string()));
            parts.push(Part { exposed: Arc::from(exposed), source: Source::Shared(Arc::clone(up)), patterns });
        }
        parts.sort_by(|a, b| a.exposed.cmp(&b.exposed));
        Ok(View { resolved, key_hash, binding, parts, built: Mutex::new(None) })
    }

    /// The upstream behind the view's namespace `exposed`, noting the use of a tenant's own.
    pub fn upstream(&self, exposed: &str) -> Option<&Arc<Upstream>> {
        let part = self.parts.iter().find(|p| *p.exposed == *exposed)?;
        if let Source::Tenant(tu) = &part.source {
            tu.touch();
        }
        Some(part.source.upstream())
    }

    /// The view's namespace of the upstream with internal name `upstream`, if it is a source.
    pub fn exposed_of(&self, upstream: &str) -> Option<&str> {
        self.parts.iter().find(|p| *p.source.upstream().name == *upstream).map(|p| &*p.exposed)
    }

    /// Whether the upstream with internal name `upstream` is one of the view's sources.
    pub fn has_upstream(&self, upstream: &str) -> bool {
        self.parts.iter().any(|p| *p.source.upstream().name == *upstream)
    }

    /// The view's sources, by exposed namespace.
    pub fn sources(&self) -> impl Iterator<Item = (&Arc<str>, &Source)> {
        self.parts.iter().map(|p| (&p.exposed, &p.source))
    }

    /// Whether one of its tenant upstreams was stopped since (the view must be rebuilt).
    pub fn is_stale(&self) -> bool {
        self.parts.iter().any(|p| matches!(&p.source, Source::Tenant(tu) if tu.is_stopped()))
    }

    /// Whether every tenant upstream of the view is past its first start (listed, or failed).
    pub fn started(&self) -> bool {
        self.parts.iter().all(|p| match &p.source {
            Source::Tenant(tu) => tu.catalog.startup().is_open(),
            Source::Shared(_) => true,
        })
    }

    /// Wait until [`View::started`] (each tenant catalog's `initial_wait` bounds it) and until
    /// the sources' lists reflect their announced changes.
    pub async fn settle(&self) {
        const LIMIT: std::time::Duration = std::time::Duration::from_secs(2);
        for p in &self.parts {
            if let Source::Tenant(tu) = &p.source {
                tu.catalog.startup().wait().await;
            }
            p.source.upstream().freshness().wait(LIMIT).await;
        }
    }

    /// The view's catalog now (rebuilt when a source's lists changed since the last build).
    /// Every request of the view's key reads it, so it also notes the use of the tenant
    /// upstreams (a key that only lists keeps them from being reaped).
    pub fn catalog(&self, statics: &CatalogState) -> Arc<Catalog> {
        let global = statics.snapshot();
        let stamp = |p: &Part| match &p.source {
            Source::Shared(_) => global.generation,
            Source::Tenant(tu) => {
                tu.touch();
                tu.catalog.snapshot().generation
            }
        };
        let mut built = self.built.lock().expect("view lock");
        if let Some(b) = built.as_ref()
            && b.stamp.len() == self.parts.len()
            && self.parts.iter().zip(&b.stamp).all(|(p, s)| stamp(p) == *s)
        {
            return Arc::clone(&b.catalog);
        }
        let mut lists: BTreeMap<Arc<str>, Arc<UpstreamLists>> = BTreeMap::new();
        let mut stamps = Vec::with_capacity(self.parts.len());
        for p in &self.parts {
            let (snap, name) = match &p.source {
                Source::Shared(up) => (None, &up.name),
                Source::Tenant(tu) => (Some(tu.catalog.snapshot()), &tu.name),
            };
            stamps.push(snap.as_ref().map_or(global.generation, |s| s.generation));
            let own = snap.as_ref().map_or(&global.upstreams, |s| &s.upstreams).get(name).cloned().unwrap_or_default();
            lists.insert(Arc::clone(&p.exposed), Arc::new(granted(&own, &p.patterns)));
        }
        let generation = stamps.iter().fold(0u64, |a, s| a.wrapping_mul(31).wrapping_add(*s));
        let catalog = Arc::new(Catalog::build(generation, &lists, &statics.config().separator));
        *built = Some(Built { stamp: stamps, catalog: Arc::clone(&catalog) });
        catalog
    }
}

/// The tool patterns the group grants from `source`.
fn patterns_of(resolved: &Resolved, source: &ToolSource) -> Vec<String> {
    resolved.tools.iter().filter(|g| &g.source == source).map(|g| g.pattern.clone()).collect()
}

/// `lists` with only the tools some pattern grants (prompts, resources and templates whole).
fn granted(lists: &UpstreamLists, patterns: &[String]) -> UpstreamLists {
    let mut out = lists.clone();
    let tools = &mut out.items[ListKind::Tools.index()];
    tools.retain(|e| patterns.iter().any(|p| crate::store::resolve::pattern_matches(p, &e.id)));
    out
}
