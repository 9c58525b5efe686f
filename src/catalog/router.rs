//! The end of the pipeline: answers catalog methods from the merged catalog, and forwards
//! `tools/call`, `prompts/get`, `resources/read`, `completion/complete` (and, per upstream,
//! anything else) to the owning upstream with the upstream's own name.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::listing::ListKind;
use super::{CatalogState, decode_cursor, encode_cursor};
use crate::cache::config::CacheScope;
use crate::cache::{self, Begin, Entry, Flight, Level, Store};
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};
use crate::pipeline::ctx::{Call, Origin, Reply, Scope};
use crate::upstream::conn::{Body, Request};
use crate::upstream::mux::Route;
use crate::upstream::{CallPolicy, Upstream, UpstreamSet};
use crate::wire::jsonrpc::{Kind, Message, Method, Outcome, error_fields, write_json_str};
use crate::wire::mcp::{self, Era, code};
use crate::wire::object::{ObjectView, ObjectWriter, set_meta_member};

/// Routes calls to the catalog or an upstream.
pub struct Router {
    catalog: Arc<CatalogState>,
    upstreams: Arc<UpstreamSet>,
    store: Arc<Store>,
}

fn gateway_result(body: impl Into<Bytes>) -> Reply {
    Reply::Result { body: body.into(), origin: Origin::Gateway }
}

impl Router {
    /// A router over the live catalog and the upstream set, caching through `store`.
    pub fn new(catalog: Arc<CatalogState>, upstreams: Arc<UpstreamSet>, store: Arc<Store>) -> Self {
        Router { catalog, upstreams, store }
    }

    /// The cache and idempotency store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The live catalog.
    pub fn catalog(&self) -> &Arc<CatalogState> {
        &self.catalog
    }

    /// The upstream set.
    pub fn upstreams(&self) -> &Arc<UpstreamSet> {
        &self.upstreams
    }

    /// Answer one call.
    ///
    /// Errors: [`GatewayError::MethodNotFound`] for methods the client's era does not have or
    /// the gateway does not serve; [`GatewayError::UnknownTool`], [`GatewayError::UnknownPrompt`],
    /// [`GatewayError::ResourceNotFound`], [`GatewayError::InvalidParams`] for bad targets; the
    /// upstream errors of [`Upstream::call`].
    pub async fn route(&self, call: &Call) -> Result<Reply, GatewayError> {
        let modern = call.ctx.client.era == Era::Modern;
        match &call.method {
            Method::Ping if !modern => Ok(gateway_result(Bytes::from_static(b"{}"))),
            Method::ToolsList | Method::PromptsList | Method::ResourcesList | Method::ResourcesTemplatesList => {
                let kind = ListKind::from_method(call.method.as_str()).expect("list method");
                self.list(kind, call).await
            }
            Method::ToolsCall => self.forward_named(call, ListKind::Tools).await,
            Method::PromptsGet => self.forward_named(call, ListKind::Prompts).await,
            Method::ResourcesRead => self.forward_uri(call).await,
            Method::ResourcesSubscribe | Method::ResourcesUnsubscribe if !modern => self.forward_uri(call).await,
            Method::CompletionComplete => self.forward_completion(call).await,
            Method::LoggingSetLevel if !modern => self.set_level(call).await,
            Method::Other(_) if matches!(call.ctx.scope, Scope::Upstream(_)) => {
                let up = self.scoped_upstream(&call.ctx.scope)?;
                self.forward(call, up, &[], None).await
            }
            other => Err(GatewayError::MethodNotFound(other.as_str().to_string())),
        }
    }

    /// The capabilities object the gateway declares in `scope` to a client of `era`.
    ///
    /// The merged catalog always offers tools, prompts and resources with `listChanged` (the
    /// gateway announces every catalog change, including upstreams coming and going);
    /// `completions` when any upstream offers it; `logging` and `resources.subscribe` only to
    /// legacy clients (the modern era has neither). A per-upstream scope mirrors that
    /// upstream's last known capabilities under the same era rules.
    pub fn capabilities(&self, scope: &Scope, era: Era) -> String {
        let known: Vec<serde_json::Value> = match scope {
            Scope::Gateway => self.upstreams.iter().filter_map(|u| u.last_handshake()).collect::<Vec<_>>(),
            Scope::Upstream(ns) => self.upstreams.get(ns).and_then(|u| u.last_handshake()).into_iter().collect(),
        }
        .iter()
        .filter_map(|h| serde_json::from_slice(&h.capabilities).ok())
        .collect();
        let any = |cap: &str| known.iter().any(|c| c.get(cap).is_some_and(|v| !v.is_null()));
        let subscribe = known.iter().any(|c| c.pointer("/resources/subscribe").and_then(|v| v.as_bool()) == Some(true));
        let per_upstream = matches!(scope, Scope::Upstream(_));
        let mut caps = serde_json::Map::new();
        for list in ["tools", "prompts"] {
            if !per_upstream || any(list) {
                caps.insert(list.into(), serde_json::json!({ "listChanged": true }));
            }
        }
        if !per_upstream || any("resources") {
            let mut r = serde_json::json!({ "listChanged": true });
            if era == Era::Legacy && subscribe {
                r["subscribe"] = true.into();
            }
            caps.insert("resources".into(), r);
        }
        if any("completions") {
            caps.insert("completions".into(), serde_json::json!({}));
        }
        if era == Era::Legacy && (!per_upstream || any("logging")) {
            caps.insert("logging".into(), serde_json::json!({}));
        }
        if per_upstream {
            for extra in ["extensions", "experimental"] {
                if let Some(v) = known.first().and_then(|c| c.get(extra)) {
                    caps.insert(extra.into(), v.clone());
                }
            }
        }
        serde_json::Value::Object(caps).to_string()
    }

    /// Instructions for `scope`: one upstream's own, or every upstream's under a heading.
    pub fn instructions(&self, scope: &Scope) -> Option<String> {
        match scope {
            Scope::Upstream(ns) => self.upstreams.get(ns)?.last_handshake()?.instructions.clone(),
            Scope::Gateway => {
                let parts: Vec<String> = self
                    .upstreams
                    .iter()
                    .filter_map(|u| Some(format!("## {}\n{}", u.name, u.last_handshake()?.instructions.clone()?)))
                    .collect();
                (!parts.is_empty()).then(|| parts.join("\n\n"))
            }
        }
    }

    fn scoped_upstream(&self, scope: &Scope) -> Result<&Arc<Upstream>, GatewayError> {
        match scope {
            Scope::Upstream(ns) => self.upstream(ns),
            Scope::Gateway => Err(GatewayError::MethodNotFound("no upstream in scope".into())),
        }
    }

    fn upstream(&self, ns: &str) -> Result<&Arc<Upstream>, GatewayError> {
        self.upstreams.get(ns).ok_or_else(|| GatewayError::UpstreamUnavailable {
            upstream: ns.to_string(),
            reason: "no such upstream".into(),
        })
    }

    /// Wait until the catalog reflects the list changes the upstreams in `scope` announced
    /// (bounded; normally already true, so this is two atomic loads per upstream).
    async fn fresh(&self, scope: &Scope) {
        const LIMIT: std::time::Duration = std::time::Duration::from_secs(2);
        match scope {
            Scope::Upstream(ns) => {
                if let Some(up) = self.upstreams.get(ns) {
                    up.freshness().wait(LIMIT).await;
                }
            }
            Scope::Gateway => {
                for up in self.upstreams.iter() {
                    up.freshness().wait(LIMIT).await;
                }
            }
        }
    }

    async fn list(&self, kind: ListKind, call: &Call) -> Result<Reply, GatewayError> {
        self.fresh(&call.ctx.scope).await;
        let snap = self.catalog.snapshot();
        let config = self.catalog.config();
        let offset = match call.params.str("cursor") {
            Some(c) => decode_cursor(kind, &c)?,
            None => 0,
        };
        let (items, hint, unavailable): (Vec<&[u8]>, _, Vec<&str>) = match &call.ctx.scope {
            Scope::Gateway => (
                snap.merged[kind.index()].items.iter().map(|b| b.as_ref()).collect(),
                snap.merged[kind.index()].hint,
                snap.unavailable.iter().map(|s| s.as_ref()).collect(),
            ),
            Scope::Upstream(ns) => {
                let ul = snap
                    .upstreams
                    .get(ns.as_ref())
                    .ok_or_else(|| GatewayError::MethodNotFound(call.method.as_str().into()))?;
                (
                    ul.items[kind.index()].iter().map(|e| e.raw.as_ref()).collect(),
                    ul.hints[kind.index()],
                    if ul.up { Vec::new() } else { vec![ns.as_ref()] },
                )
            }
        };
        let end = (offset + config.page_size).min(items.len());
        let page = items.get(offset.min(items.len())..end).unwrap_or_default();
        let mut out = Vec::with_capacity(page.iter().map(|i| i.len() + 1).sum::<usize>() + 160);
        let mut w = ObjectWriter::begin(&mut out);
        if call.ctx.client.era == Era::Modern {
            w.string("resultType", "complete");
            w.with("ttlMs", |o| o.extend_from_slice(hint.ttl_ms.unwrap_or(config.list_ttl_ms).to_string().as_bytes()));
            w.string("cacheScope", if hint.private { "private" } else { "public" });
        }
        w.with(kind.items_key(), |o| {
            o.push(b'[');
            for (i, item) in page.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                o.extend_from_slice(item);
            }
            o.push(b']');
        });
        if end < items.len() {
            w.string("nextCursor", &encode_cursor(kind, end));
        }
        if !unavailable.is_empty() {
            w.with("_meta", |o| {
                let mut m = ObjectWriter::begin(o);
                m.with(mcp::META_UNAVAILABLE, |o| {
                    serde_json::to_writer(&mut *o, &unavailable).expect("writing JSON to a Vec cannot fail");
                });
                m.end();
            });
        }
        w.end();
        Ok(gateway_result(out))
    }

    async fn forward_named(&self, call: &Call, kind: ListKind) -> Result<Reply, GatewayError> {
        let name = call.params.required_str("name")?;
        let target = match &call.ctx.scope {
            // Unprefixed: the name is already the upstream's own.
            Scope::Upstream(ns) if kind == ListKind::Tools => {
                return self.forward_tool(call, self.upstream(ns)?, &[], &name).await;
            }
            Scope::Upstream(ns) => return self.forward(call, self.upstream(ns)?, &[], Some(&name)).await,
            Scope::Gateway => {
                let snap = self.catalog.snapshot();
                let target = if kind == ListKind::Tools { snap.tool(&name) } else { snap.prompt(&name) };
                target.cloned().ok_or_else(|| match kind {
                    ListKind::Tools => GatewayError::UnknownTool(name.to_string()),
                    _ => GatewayError::UnknownPrompt(name.to_string()),
                })?
            }
        };
        let mut value = Vec::with_capacity(target.original.len() + 2);
        write_json_str(&mut value, &target.original);
        let up = self.upstream(&target.upstream)?;
        if kind == ListKind::Tools {
            return self.forward_tool(call, up, &[("name", &value)], &target.original).await;
        }
        self.forward(call, up, &[("name", &value)], Some(&target.original)).await
    }

    /// Whether and how results of `tool` are cached: `(ttl, scope)`, or `None` when they are not.
    fn cache_policy(&self, up: &Upstream, tool: &str) -> Option<(Duration, CacheScope)> {
        let config = &self.store.cache;
        if !config.enabled {
            return None;
        }
        let per_tool = up.config.tools.get(tool);
        let on = per_tool.and_then(|t| t.cache).unwrap_or_else(|| {
            up.config.trusted
                && self.catalog.snapshot().hints(&up.name, tool).is_some_and(|h| h.read_only && !h.destructive)
        });
        on.then(|| {
            (
                per_tool.and_then(|t| t.cache_ttl).unwrap_or(config.ttl),
                per_tool.and_then(|t| t.cache_scope).unwrap_or(config.default_scope),
            )
        })
    }

    /// `tools/call` through idempotency keys and the cache (module `cache`), then upstream.
    async fn forward_tool(
        &self,
        call: &Call,
        up: &Arc<Upstream>,
        replace: &[(&str, &[u8])],
        tool: &str,
    ) -> Result<Reply, GatewayError> {
        let key = call.ctx.idempotency_key.as_deref().filter(|_| self.store.idempotency_enabled());
        let policy = self.cache_policy(up, tool);
        // A continuation of an `input_required` exchange is never answered from the cache.
        let continuation = call.params.get("requestState").is_some() || call.params.get("inputResponses").is_some();
        if key.is_none() && (policy.is_none() || continuation) {
            return self.forward(call, up, replace, Some(tool)).await;
        }
        let args = cache::canonical_arguments(call.params.get("arguments"));
        let claim = match key {
            None => None,
            Some(k) => {
                let hash = cache::request_hash("tools/call", &up.name, tool, &args);
                let per_attempt = up.config.tools.get(tool).and_then(|t| t.timeout);
                let running_for = up.longest_call(per_attempt);
                match self.store.idempotency_begin(&call.ctx.principal, k, &hash, running_for).await? {
                    Begin::Replay(entry) => {
                        METRICS.idempotent_replay(Name::Shared(Arc::clone(&up.name)));
                        return Ok(replayed(&entry));
                    }
                    Begin::Run(claim) => Some(claim),
                }
            }
        };
        let reply = match policy.filter(|_| !continuation) {
            Some((ttl, scope)) => self.cached_call(call, up, replace, tool, &args, ttl, scope).await,
            None => self.forward(call, up, replace, Some(tool)).await,
        };
        if let (Some(claim), Ok(r)) = (claim, &reply) {
            let (body, error, origin) = match r {
                Reply::Result { body, origin } => (body, false, origin),
                Reply::Error { body, origin } => (body, true, origin),
            };
            let era = match origin {
                Origin::Upstream(era, _) => *era,
                Origin::Gateway => call.ctx.client.era,
            };
            claim.complete(Arc::new(Entry::new(body, error, era, &up.name, tool, Duration::ZERO, false))).await;
        }
        reply
    }

    #[allow(clippy::too_many_arguments)]
    async fn cached_call(
        &self,
        call: &Call,
        up: &Arc<Upstream>,
        replace: &[(&str, &[u8])],
        tool: &str,
        args: &[u8],
        ttl: Duration,
        scope: CacheScope,
    ) -> Result<Reply, GatewayError> {
        let store = &self.store;
        let label = || Name::Shared(Arc::clone(&up.name));
        let key = store.key(&call.ctx.principal, scope, &up.name, tool, args).await;
        let hit = |entry: &Entry, level: Level| {
            METRICS.cache_lookup(label(), tool, level.label(), "hit");
            from_cache(entry, "hit", level)
        };
        if let Some(entry) = store.lookup_l1(&key) {
            return Ok(hit(&entry, Level::L1));
        }
        let leader = if store.cache.coalesce {
            // Coalescing looks in L2 itself, in the same round trip as the lease.
            match store.coalesce(&key).await {
                Flight::Stored(entry) => return Ok(hit(&entry, Level::L2)),
                Flight::Shared(entry, level) => {
                    METRICS.cache_lookup(label(), tool, level.label(), "coalesced");
                    return Ok(from_cache(&entry, "coalesced", level));
                }
                Flight::Leader(leader) => {
                    // The previous leader may have stored its result just before this call led.
                    if let Some(entry) = store.lookup_l1(&key) {
                        leader.finish(Some(Arc::clone(&entry)));
                        return Ok(hit(&entry, Level::L1));
                    }
                    Some(leader)
                }
                Flight::Alone => None,
            }
        } else {
            if let Some((entry, level)) = store.lookup(&key).await {
                return Ok(hit(&entry, level));
            }
            None
        };
        METRICS.cache_lookup(label(), tool, "none", "miss");
        let reply = self.forward(call, up, replace, Some(tool)).await;
        let entry = match &reply {
            Ok(Reply::Result { body, origin: Origin::Upstream(era, ns) })
                if *ns == up.name && body.len() <= store.cache.max_entry_bytes && storable(body) =>
            {
                Some(Arc::new(Entry::new(body, false, *era, &up.name, tool, ttl, true)))
            }
            _ => None,
        };
        if let Some(e) = &entry {
            store.put(&key, Arc::clone(e)).await;
        }
        if let Some(leader) = leader {
            leader.finish(entry);
        }
        reply.map(marked_miss)
    }

    async fn forward_uri(&self, call: &Call) -> Result<Reply, GatewayError> {
        let uri = call.params.required_str("uri")?;
        let (up, original) = match &call.ctx.scope {
            Scope::Upstream(ns) => (self.upstream(ns)?, uri.to_string()),
            Scope::Gateway => {
                let target = self
                    .catalog
                    .snapshot()
                    .resource(&uri)
                    .ok_or_else(|| GatewayError::ResourceNotFound(uri.to_string()))?;
                (self.upstream(&target.upstream)?, target.original.to_string())
            }
        };
        let mut value = Vec::with_capacity(original.len() + 2);
        write_json_str(&mut value, &original);
        let reply = if call.method == Method::ResourcesRead && self.store.cache.enabled {
            self.read_resource(call, up, &[("uri", &value)], &original).await?
        } else {
            self.forward(call, up, &[("uri", &value)], Some(&original)).await?
        };
        Ok(resource_error_for(call, reply, &uri))
    }

    /// `resources/read` through the cache: stored for the upstream's `ttlMs` with its
    /// `cacheScope` (MCP 2026-07-28 caching hints), else for the upstream's `resource_ttl`
    /// with `[cache] default_scope`; not stored without either. Keyed like a tool named
    /// `resource:{uri}`, so `notifications/resources/updated` drops exactly that entry.
    async fn read_resource(
        &self,
        call: &Call,
        up: &Arc<Upstream>,
        replace: &[(&str, &[u8])],
        uri: &str,
    ) -> Result<Reply, GatewayError> {
        let store = &self.store;
        let target = cache::resource_target(uri);
        let principal = &call.ctx.principal;
        let key = |scope| store.key(principal, scope, &up.name, &target, b"");
        let (public, private) = (key(CacheScope::Public).await, key(CacheScope::Private).await);
        for k in [&public, &private] {
            if let Some((entry, level)) = store.lookup(k).await {
                METRICS.cache_lookup(Name::Shared(Arc::clone(&up.name)), &target, level.label(), "hit");
                return Ok(from_cache(&entry, "hit", level));
            }
        }
        let reply = self.forward(call, up, replace, Some(uri)).await?;
        let Reply::Result { body, origin: Origin::Upstream(era, ns) } = &reply else { return Ok(reply) };
        let view = ObjectView::parse(body).ok();
        let hinted_ttl = view
            .as_ref()
            .and_then(|v| v.get(body, "ttlMs"))
            .and_then(|s| std::str::from_utf8(&body[s]).ok()?.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        let Some(ttl) = hinted_ttl.or(up.config.resource_ttl) else { return Ok(reply) };
        let scope = match view.as_ref().and_then(|v| v.get_str(body, "cacheScope")).as_deref() {
            Some("public") => CacheScope::Public,
            Some("private") => CacheScope::Private,
            _ => store.cache.default_scope,
        };
        if *ns != up.name || body.len() > store.cache.max_entry_bytes || !storable(body) {
            return Ok(reply);
        }
        METRICS.cache_lookup(Name::Shared(Arc::clone(&up.name)), &target, "none", "miss");
        let entry = Arc::new(Entry::new(body, false, *era, &up.name, &target, ttl, false));
        store.put(if scope == CacheScope::Public { &public } else { &private }, entry).await;
        Ok(marked_miss(reply))
    }

    async fn forward_completion(&self, call: &Call) -> Result<Reply, GatewayError> {
        let raw_ref = call
            .params
            .get_bytes("ref")
            .ok_or_else(|| GatewayError::InvalidParams("params.ref must be an object".into()))?;
        let view = ObjectView::parse(&raw_ref)
            .map_err(|_| GatewayError::InvalidParams("params.ref must be an object".into()))?;
        let ref_type = view.get_str(&raw_ref, "type").unwrap_or_default().into_owned();
        let (key, kind) = match ref_type.as_str() {
            "ref/prompt" => ("name", ListKind::Prompts),
            "ref/resource" => ("uri", ListKind::Resources),
            other => {
                return Err(GatewayError::InvalidParams(format!("unknown ref type {other:?}")));
            }
        };
        let value = view
            .get_str(&raw_ref, key)
            .ok_or_else(|| GatewayError::InvalidParams(format!("params.ref.{key} must be a string")))?;
        let (up, original) = match &call.ctx.scope {
            Scope::Upstream(ns) => (self.upstream(ns)?, value.to_string()),
            Scope::Gateway => {
                let snap = self.catalog.snapshot();
                let target = match kind {
                    ListKind::Prompts => {
                        snap.prompt(&value).cloned().ok_or_else(|| GatewayError::UnknownPrompt(value.to_string()))?
                    }
                    _ => snap.resource(&value).ok_or_else(|| GatewayError::ResourceNotFound(value.to_string()))?,
                };
                (self.upstream(&target.upstream)?, target.original.to_string())
            }
        };
        let new_ref = super::replace_member(&raw_ref, key, &original);
        self.forward(call, up, &[("ref", &new_ref)], None).await
    }

    async fn set_level(&self, call: &Call) -> Result<Reply, GatewayError> {
        let level = call.params.required_str("level")?;
        if crate::pipeline::ctx::LogLevel::parse(&level).is_none() {
            return Err(GatewayError::InvalidParams(format!("unknown log level {level:?}")));
        }
        let targets: Vec<&Arc<Upstream>> = match &call.ctx.scope {
            Scope::Upstream(ns) => vec![self.upstream(ns)?],
            Scope::Gateway => self.upstreams.iter().collect(),
        };
        let params = Bytes::from(format!(r#"{{"level":{}}}"#, serde_json::Value::from(level.as_ref())));
        let sends = targets
            .into_iter()
            .filter(|up| up.handshake().is_some_and(|h| h.era == Era::Legacy && h.has_capability("logging")))
            .map(|up| {
                let params = params.clone();
                async move {
                    if let Err(e) = up.request("logging/setLevel", Some(&params)).await {
                        tracing::debug!(upstream = %up.name, error = %e, "logging/setLevel was not accepted");
                    }
                }
            });
        futures::future::join_all(sends).await;
        Ok(gateway_result(Bytes::from_static(b"{}")))
    }

    async fn forward(
        &self,
        call: &Call,
        up: &Arc<Upstream>,
        replace: &[(&str, &[u8])],
        name_header: Option<&str>,
    ) -> Result<Reply, GatewayError> {
        let route = call.ctx.events.clone().map(|events| Route {
            client_token: call.params.meta.as_ref().and_then(|m| m.progress_token()),
            events,
            client_era: call.ctx.client.era,
            log_level: call.ctx.client.log_level,
        });
        let req = Request {
            method: call.method.as_str(),
            body: Body::Client { params: &call.params, replace, client: &call.ctx.client },
            name_header,
            route,
        };
        let tool = if call.method == Method::ToolsCall { name_header } else { None };
        let policy = CallPolicy {
            priority: call.ctx.priority,
            caller: &call.ctx.principal,
            retry_safe: self.retry_safe(call, up, tool),
            timeout: tool.and_then(|t| up.config.tools.get(t)).and_then(|t| t.timeout),
        };
        let fallback = up.config.fallback.as_deref().and_then(|f| self.upstreams.get(f));
        let Some(fallback) = fallback else {
            let (msg, era) = up.call(&req, policy).await?;
            return reply_of(&up.name, msg, era);
        };
        // While the primary is down (and, after it recovers, for a shrinking share of calls
        // during `fallback_return`) its fallback serves. A primary that fails a call hands it over
        // when the call never left (open breakers) or repeating it is safe: a call that may have
        // run upstream is not run a second time on the fallback.
        if up.route_to_fallback() {
            METRICS.fallback(Name::Shared(Arc::clone(&up.name)));
            let (msg, era) = fallback.call(&req, policy).await?;
            return reply_of(&fallback.name, msg, era);
        }
        let outcome = up.call(&req, policy).await;
        let hand_over = match &outcome {
            Err(GatewayError::CircuitOpen { .. }) => true,
            Err(GatewayError::UpstreamUnavailable { .. } | GatewayError::UpstreamTransport { .. }) => policy.retry_safe,
            _ => false,
        };
        match outcome {
            Err(_) if hand_over => {
                up.mark_degraded();
                METRICS.fallback(Name::Shared(Arc::clone(&up.name)));
                let (msg, era) = fallback.call(&req, policy).await?;
                reply_of(&fallback.name, msg, era)
            }
            other => {
                let (msg, era) = other?;
                reply_of(&up.name, msg, era)
            }
        }
    }

    /// Whether a call may be repeated after a transport failure: it carries an idempotency
    /// key; or configuration says so for the tool; or a trusted upstream annotated the tool
    /// `readOnlyHint` or `idempotentHint`. Reads (prompts, resources, completions) always may;
    /// methods the gateway does not know never may.
    fn retry_safe(&self, call: &Call, up: &Upstream, tool: Option<&str>) -> bool {
        if call.ctx.idempotency_key.is_some() {
            return true;
        }
        match &call.method {
            Method::ToolsCall => {
                let Some(tool) = tool else { return false };
                if let Some(configured) = up.config.tools.get(tool).and_then(|t| t.retry) {
                    return configured;
                }
                up.config.trusted
                    && self.catalog.snapshot().hints(&up.name, tool).is_some_and(|h| h.read_only || h.idempotent)
            }
            Method::PromptsGet
            | Method::ResourcesRead
            | Method::CompletionComplete
            | Method::ResourcesSubscribe
            | Method::ResourcesUnsubscribe
            | Method::LoggingSetLevel => true,
            _ => false,
        }
    }
}

/// Whether a result may be cached: not a tool error (`isError`), not `input_required`.
fn storable(result: &[u8]) -> bool {
    let Ok(view) = ObjectView::parse(result) else { return false };
    view.get(result, "isError").is_none_or(|s| &result[s] != b"true")
        && view.get_str(result, "resultType").is_none_or(|t| t != "input_required")
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

/// A cached entry as this call's reply, marked with `_meta["io.sekisho/cache"]`.
fn from_cache(entry: &Entry, status: &str, level: Level) -> Reply {
    let meta = format!(r#"{{"status":"{status}","ageMs":{},"level":"{}"}}"#, entry.age_ms(), level.label());
    Reply::Result {
        body: Bytes::from(set_meta_member(&entry.body, mcp::META_CACHE, meta.as_bytes())),
        origin: Origin::Upstream(entry.era, Arc::clone(&entry.upstream)),
    }
}

/// The stored answer of an idempotency key, marked with `_meta["io.sekisho/idempotency"]`.
fn replayed(entry: &Entry) -> Reply {
    let origin = Origin::Upstream(entry.era, Arc::clone(&entry.upstream));
    if entry.error {
        return Reply::Error { body: entry.body.clone(), origin };
    }
    let meta = format!(r#"{{"status":"replayed","ageMs":{}}}"#, entry.age_ms());
    Reply::Result { body: Bytes::from(set_meta_member(&entry.body, mcp::META_IDEMPOTENCY, meta.as_bytes())), origin }
}

/// Turn an upstream response into a reply.
///
/// Errors: [`GatewayError::UpstreamProtocol`] when the message is not a response.
pub fn reply_of(upstream: &Arc<str>, msg: Message, era: Era) -> Result<Reply, GatewayError> {
    match &msg.kind {
        Kind::Response { outcome: Outcome::Result(span), .. } => {
            Ok(Reply::Result { body: msg.src.slice(span.clone()), origin: Origin::Upstream(era, Arc::clone(upstream)) })
        }
        Kind::Response { outcome: Outcome::Error(span), .. } => {
            Ok(Reply::Error { body: msg.src.slice(span.clone()), origin: Origin::Upstream(era, Arc::clone(upstream)) })
        }
        _ => {
            Err(GatewayError::UpstreamProtocol { upstream: upstream.to_string(), reason: "expected a response".into() })
        }
    }
}

/// Resource errors in the client's era: modern clients get `-32602` with `data.uri` where a
/// legacy upstream said `-32002` (2026-07-28 `server/resources`, "Error Handling").
fn resource_error_for(call: &Call, reply: Reply, uri: &str) -> Reply {
    let Reply::Error { body, origin } = &reply else {
        return reply;
    };
    if call.ctx.client.era != Era::Modern || call.method != Method::ResourcesRead {
        return reply;
    }
    match error_fields(body) {
        Some(e) if e.code == code::RESOURCE_NOT_FOUND => {
            let mut out = Vec::new();
            let mut w = ObjectWriter::begin(&mut out);
            w.with("code", |o| o.extend_from_slice(code::INVALID_PARAMS.to_string().as_bytes()));
            w.string("message", &e.message);
            w.with("data", |o| {
                serde_json::to_writer(&mut *o, &serde_json::json!({ "uri": uri }))
                    .expect("writing JSON to a Vec cannot fail")
            });
            w.end();
            Reply::Error { body: Bytes::from(out), origin: origin.clone() }
        }
        _ => reply,
    }
}
