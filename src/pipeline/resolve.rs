//! Middleware that resolves each call once: methods the gateway answers itself (lists, `ping`,
//! `logging/setLevel`, and calls of its own tools, `crate::report::tools`, for the callers
//! that see them) are answered here; every other call gets its
//! [`Target`] (upstream, the upstream's own name, cache policy, retry safety, deadline) and
//! goes on as a [`Routed`] call, a `tools/call` with its `Mcp-Param-*` headers checked and
//! made for the upstream ([`param_headers`]). No later step looks the catalog up again. The
//! tasks extension's methods are routed by their sealed task id (`super::tasks`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::Either;
use tower::{Service, ServiceExt};

use super::ctx::{CachePolicy, Call, Routed, Target};
use super::param_headers;
use super::parts::{LogLevel, Origin, Reply, ReplyFuture, Scope};
use super::steps::{Named, Stepped};
use super::tasks::{self, Finish};

mod locate;
use crate::cache::config::CacheConfig;
use crate::catalog::listing::ListKind;
use crate::catalog::{Catalog, CatalogState, lists};
use crate::error::GatewayError;
use crate::report::tools::SelfTools;
use crate::session::task_id::TaskSealer;
use crate::upstream::mux::Route;
use crate::upstream::request::{Body, Outbound};
use crate::upstream::{Upstream, UpstreamSet};
use crate::wire::jsonrpc::{Method, write_json_str};
use crate::wire::mcp::{self, Era};

/// What resolve reads: the catalog, the upstreams, the cache defaults, the longest
/// resource URI a request may name, the sealer of task ids, and the gateway's own tools.
pub struct Resolver {
    catalog: Arc<CatalogState>,
    upstreams: Arc<UpstreamSet>,
    cache: CacheConfig,
    max_uri_bytes: usize,
    tasks: Arc<TaskSealer>,
    own: Option<Arc<SelfTools>>,
}

/// Answers gateway methods, routes the rest.
#[derive(Clone)]
pub struct Resolve {
    resolver: Arc<Resolver>,
}

impl Resolve {
    /// Resolve against `catalog` and `upstreams`, with `cache` deciding cache policies; a
    /// resource URI longer than `max_uri_bytes` is refused with -32602; task ids are sealed
    /// and opened with `tasks`; `own` (the gateway's own tools, when enabled) are listed and
    /// answered for the callers that see them.
    pub fn new(
        catalog: &Arc<CatalogState>,
        upstreams: &Arc<UpstreamSet>,
        cache: &CacheConfig,
        max_uri_bytes: usize,
        tasks: &Arc<TaskSealer>,
        own: Option<&Arc<SelfTools>>,
    ) -> Self {
        let resolver = Resolver {
            catalog: Arc::clone(catalog),
            upstreams: Arc::clone(upstreams),
            cache: cache.clone(),
            max_uri_bytes,
            tasks: Arc::clone(tasks),
            own: own.cloned(),
        };
        Resolve { resolver: Arc::new(resolver) }
    }
}

impl Named for Resolve {
    fn name(&self) -> &'static str {
        "resolve"
    }
}

impl<S> Service<Call> for Stepped<Resolve, S>
where
    S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = Either<Forwarded<S::Future>, ReplyFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let resolver = &self.step.resolver;
        if call.method == Method::ToolsCall
            && let Some(reply) = resolver.own_call(&call)
        {
            return Either::Right(Box::pin(std::future::ready(Ok(reply))));
        }
        if !forwarded(&call.method) {
            let resolver = Arc::clone(resolver);
            return Either::Right(Box::pin(async move { resolver.answer(call).await }));
        }
        let view_starting = crate::tenancy::view_of(&call.ctx.principal).is_some_and(|v| !v.started());
        if !resolver.catalog.startup().is_open() || view_starting {
            // Right after start (of the gateway, or of a store key's tenant upstreams) a name
            // may belong to an upstream still starting: wait for the catalog (bounded by
            // `initial_wait`) rather than answer "unknown tool".
            let (resolver, inner) = (Arc::clone(resolver), self.inner.clone());
            return Either::Right(Box::pin(async move {
                resolver.catalog.startup().wait().await;
                if let Some(view) = crate::tenancy::view_of(&call.ctx.principal) {
                    view.settle().await;
                }
                resolver.forward(call, inner).await
            }));
        }
        let finish = resolver.finish(&call);
        match resolver.route(call) {
            Ok(routed) => {
                let finish = finish.of(&routed.request);
                Either::Left(Forwarded { inner: self.inner.call(routed), finish })
            }
            Err(e) => Either::Right(Box::pin(std::future::ready(Err(e)))),
        }
    }
}

/// Whether calls of `method` go to an upstream (when their target resolves).
fn forwarded(method: &Method) -> bool {
    matches!(
        method,
        Method::ToolsCall
            | Method::PromptsGet
            | Method::ResourcesRead
            | Method::CompletionComplete
            | Method::ResourcesSubscribe
            | Method::ResourcesUnsubscribe
            | Method::TasksGet
            | Method::TasksUpdate
            | Method::TasksCancel
            | Method::Other(_)
    )
}

pin_project_lite::pin_project! {
    /// A routed call on its way: the next step's future, and what to do to its reply.
    pub struct Forwarded<F> {
        #[pin]
        inner: F,
        finish: Finish,
    }
}

impl<F> Future for Forwarded<F>
where
    F: Future<Output = Result<Reply, GatewayError>>,
{
    type Output = Result<Reply, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let reply = std::task::ready!(this.inner.poll(cx))?;
        Poll::Ready(this.finish.apply(reply))
    }
}

/// Where a call's name leads.
struct Located {
    upstream: Arc<Upstream>,
    /// The catalog's namespace of it (the upstream's name, or a store key's view's name for it).
    ns: Arc<str>,
    /// The upstream's own name or URI.
    name: Option<Arc<str>>,
    /// The params member rewritten to it, as raw JSON.
    rewrite: Option<(&'static str, Bytes)>,
}

/// The namespace of a per-upstream scope (empty for the gateway's, which never gets here).
fn scope_name(scope: &Scope) -> &str {
    match scope {
        Scope::Upstream(ns) => ns,
        Scope::Gateway => "",
    }
}

fn gateway_result(body: impl Into<Bytes>) -> Reply {
    Reply::Result { body: body.into(), origin: Origin::Gateway }
}

impl Resolver {
    /// Route `call` and send it on through `inner` (the path of calls made during start-up).
    async fn forward<S>(&self, call: Call, inner: S) -> Result<Reply, GatewayError>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError>,
    {
        let finish = self.finish(&call);
        let routed = self.route(call)?;
        let finish = finish.of(&routed.request);
        Forwarded { inner: inner.oneshot(routed), finish }.await
    }

    /// What to do to `call`'s reply: a modern client's missing resource is reported in its own
    /// terms, under its own URI; task ids are sealed for (and echoed to) their caller.
    fn finish(&self, call: &Call) -> Finish {
        let modern = call.ctx.client.era == Era::Modern;
        let str_param = |key: &str| modern.then(|| call.params.str(key).map(|v| v.into_owned())).flatten();
        // A missing resource is reported in the client's era's terms, under its own URI.
        let uri = (call.method == Method::ResourcesRead)
            .then(|| call.params.str("uri").map(|u| (u.into_owned(), call.ctx.client.era)))
            .flatten();
        let presented = (call.method == Method::TasksGet).then(|| str_param("taskId")).flatten();
        let capabilities = modern.then_some(&call.ctx.client.capabilities[..]);
        Finish::for_call(&call.method, capabilities, &self.tasks, &call.ctx.principal, presented, uri)
    }

    /// Answer a call the gateway answers itself: lists, and in the legacy era `ping` and
    /// `logging/setLevel`.
    ///
    /// Errors: [`GatewayError::MethodNotFound`] for methods the client's era does not have or
    /// the gateway does not serve; [`GatewayError::InvalidCursor`], [`GatewayError::InvalidParams`].
    async fn answer(&self, call: Call) -> Result<Reply, GatewayError> {
        let modern = call.ctx.client.era == Era::Modern;
        match &call.method {
            Method::Ping if !modern => Ok(gateway_result(Bytes::from_static(b"{}"))),
            Method::ToolsList | Method::PromptsList | Method::ResourcesList | Method::ResourcesTemplatesList => {
                let kind = ListKind::from_method(call.method.as_str()).expect("list method");
                // A client that reads the list once at start must see every upstream's items.
                self.catalog.startup().wait().await;
                let cursor = call.params.str("cursor");
                let (scope, era, config) = (&call.ctx.scope, call.ctx.client.era, self.catalog.config());
                let own = match &self.own {
                    Some(own) if kind == ListKind::Tools && own.visible_to(&call.ctx.principal) => own.listed(),
                    _ => &[],
                };
                let page = match crate::tenancy::view_of(&call.ctx.principal) {
                    Some(view) => {
                        view.settle().await;
                        let snap = view.catalog(&self.catalog);
                        lists::page(&snap, own, config, kind, scope, era, cursor.as_deref())?
                    }
                    None => {
                        self.fresh(scope).await;
                        lists::page(&self.catalog.snapshot(), own, config, kind, scope, era, cursor.as_deref())?
                    }
                };
                Ok(gateway_result(page))
            }
            Method::LoggingSetLevel if !modern => self.set_level(&call),
            other => Err(GatewayError::MethodNotFound(other.as_str().to_string())),
        }
    }

    /// The answer to `call` (a `tools/call`) when it names one of the gateway's own tools and
    /// its caller sees them, in the gateway's scope; `None` sends it on to be routed (where a
    /// caller who does not see them meets the unknown-tool error).
    fn own_call(&self, call: &Call) -> Option<Reply> {
        let own = self.own.as_ref()?;
        if !matches!(call.ctx.scope, Scope::Gateway) || !own.visible_to(&call.ctx.principal) {
            return None;
        }
        let tool = own.find(&call.params.str("name")?)?;
        Some(gateway_result(own.call(tool, call.params.get("arguments"), call.ctx.client.era)))
    }

    /// Decide where `call` goes and how it may be treated.
    fn route(&self, call: Call) -> Result<Routed, GatewayError> {
        let Call { method, params, ctx } = call;
        // A store key's calls go through its instance's view; everyone else's through the
        // whole catalog.
        let view = crate::tenancy::view_of(&ctx.principal);
        let (global, viewed);
        let snap: &Catalog = match view {
            Some(v) => {
                viewed = v.catalog(&self.catalog);
                &viewed
            }
            None => {
                global = self.catalog.snapshot();
                &global
            }
        };
        let task_method = tasks::is_task_method(&method);
        let mut replica = None;
        let Located { upstream: up, ns, name, rewrite } = if task_method {
            if view.is_some() {
                // Task ids name static upstreams; a store key's tasks are not served.
                return Err(GatewayError::MethodNotFound(method.as_str().to_string()));
            }
            let client = (ctx.client.era, &ctx.client.capabilities[..]);
            let t = tasks::target(&self.tasks, &self.upstreams, &method, &params, client, &ctx.scope, &ctx.principal)?;
            replica = Some(t.replica);
            let rewrite = Some(("taskId", json_str(&t.task_id)));
            Located {
                upstream: Arc::clone(t.upstream),
                ns: Arc::clone(&t.upstream.name),
                name: Some(t.task_id),
                rewrite,
            }
        } else {
            self.locate(&method, &params, &ctx.scope, ctx.client.era, snap, view)?
        };
        let tool = (method == Method::ToolsCall).then_some(name.as_deref()).flatten();
        let per_tool = tool.and_then(|t| up.config.tools.get(t));
        // Annotations count only from a trusted upstream (and are not looked up otherwise).
        let hints = tool.filter(|_| up.config.trusted).and_then(|t| snap.hints(&ns, t).copied());
        // `Mcp-Param-*` (SEP-2243): the client's headers agree with the arguments, and the
        // upstream gets the same arguments mirrored.
        let param_headers = match tool.and_then(|t| snap.param_headers(&ns, t)) {
            Some(declared) => param_headers::mirror(declared, &params, ctx.param_headers.as_ref())?,
            None => Vec::new(),
        };
        // An idempotency key does not make a call safe to repeat: the key keeps the gateway
        // from running it twice, so a keyed call goes again only when it never reached the
        // upstream (the retry and fallback steps ask `classify::never_sent`).
        let retry_safe = match &method {
            Method::ToolsCall => match per_tool.and_then(|t| t.retry) {
                Some(configured) => configured,
                None => hints.is_some_and(|h| h.read_only || h.idempotent),
            },
            // An update delivers answers that the upstream acts on: not twice.
            Method::Other(_) | Method::TasksUpdate => false,
            _ => true,
        };
        let cache = match &method {
            _ if !self.cache.enabled => None,
            // A continuation of an `input_required` exchange is never answered from the cache.
            Method::ToolsCall if params.get("requestState").is_some() || params.get("inputResponses").is_some() => None,
            // A task handle is the caller's own (its id is sealed for it): never shared, never
            // coalesced with another caller's call.
            Method::ToolsCall
                if ctx.client.era == Era::Modern
                    && tasks::client_declares_tasks(&ctx.client.capabilities)
                    && up.last_handshake().is_some_and(|h| h.declares_tasks()) =>
            {
                None
            }
            Method::ToolsCall => {
                let on = per_tool
                    .and_then(|t| t.cache)
                    .unwrap_or_else(|| hints.is_some_and(|h| h.read_only && !h.destructive));
                on.then(|| CachePolicy::Fixed {
                    ttl: per_tool.and_then(|t| t.cache_ttl).unwrap_or(self.cache.ttl),
                    scope: per_tool.and_then(|t| t.cache_scope).unwrap_or(self.cache.default_scope),
                })
            }
            Method::ResourcesRead => Some(CachePolicy::Hinted { ttl: up.config.resource_ttl }),
            _ => None,
        };
        if cache.is_none()
            && let Some(t) = tool
        {
            note_uncached(snap, &ns, &up, t, per_tool, &params);
        }
        // A task lives on the upstream that created it: its methods never go to a fallback.
        let fallback =
            up.config.fallback.as_deref().filter(|_| !task_method).and_then(|f| self.upstreams.get(f)).cloned();
        let timeout = per_tool.and_then(|t| t.timeout);
        // The validate step checks the arguments against the schema of this very snapshot.
        let lists = tool.filter(|_| up.config.settings.validate).and_then(|_| snap.upstreams.get(&ns).cloned());
        // The approval step's hint, from any upstream: it only ever asks for more caution.
        let destructive = tool.and_then(|t| snap.hints(&ns, t)).is_some_and(|h| h.destructive);
        // What the upstream relays during the call is screened under the call's `detect` policy
        // (the tool's own table replaces its upstream's, as for the result).
        let detect =
            per_tool.and_then(|t| t.detect.as_ref()).or(up.config.detect.as_ref()).and_then(|d| d.policy().ok());
        let target = Target { upstream: up, fallback, cache, retry_safe, timeout, lists, destructive };
        let route = ctx.events.map(|events| Route {
            client_token: params.meta.as_ref().and_then(|m| m.progress_token()),
            events,
            client_era: ctx.client.era,
            log_level: ctx.client.log_level,
            capabilities: ctx.client.capabilities.clone(),
            detect,
        });
        let client_era = ctx.client.era;
        let input_errors_as_results = client_era == Era::Modern || mcp::at_least(ctx.client.version, "2025-11-25");
        // The key the gateway honours reaches the upstream too (so an idempotency-aware server
        // can dedupe), also when it came from the `Idempotency-Key` header.
        let idempotency_key = ctx.idempotency_key.as_ref().filter(|key| {
            method == Method::ToolsCall
                && params.meta.as_ref().and_then(|m| m.str(mcp::META_IDEMPOTENCY_KEY)).as_deref() != Some(&***key)
        });
        let body = Body::Client { params, rewrite, client: ctx.client, idempotency_key: idempotency_key.cloned() };
        // Tells clients apart on a shared connection (an upstream request outside any call
        // goes to the one client with calls in flight); a call without a session is a client
        // of its own.
        let client = Some(ctx.session.as_ref().map_or_else(rand::random, |s| s.link.key));
        let answered_by = std::sync::atomic::AtomicUsize::new(usize::MAX);
        let request = Outbound { method, body, name, route, client, param_headers, replica, answered_by };
        Ok(Routed {
            request: Arc::new(request),
            target,
            caller: ctx.principal,
            priority: ctx.priority,
            idempotency_key: ctx.idempotency_key,
            client_era,
            input_errors_as_results,
            session: ctx.session,
        })
    }

    /// Wait until the catalog reflects the list changes the upstreams in `scope` announced
    /// (bounded; normally already true, so this is two atomic loads per upstream).
    async fn fresh(&self, scope: &Scope) {
        const LIMIT: Duration = Duration::from_secs(2);
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

    /// `logging/setLevel`: the level applies to this client's log notifications only (the
    /// front keeps it with the session, and the upstreams' messages are filtered per client);
    /// it is never passed on, since an upstream's level is shared by every client behind it.
    ///
    /// Errors: [`GatewayError::InvalidParams`] for a missing or unknown level.
    fn set_level(&self, call: &Call) -> Result<Reply, GatewayError> {
        let level = call.params.required_str("level")?;
        if LogLevel::parse(&level).is_none() {
            return Err(GatewayError::InvalidParams(format!("unknown log level {level:?}")));
        }
        Ok(gateway_result(Bytes::from_static(b"{}")))
    }
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> Bytes {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_json_str(&mut out, s);
    Bytes::from(out)
}

/// Count an uncached `tools/call` of `tool` that declares `readOnlyHint` (and not
/// `destructiveHint`), whether its upstream is trusted or not, unless the configuration turned
/// its caching off on purpose (`cache = false`): the recommendations read these counts
/// (`crate::observe::repeats`). Continuations of `input_required` exchanges are not counted.
fn note_uncached(
    snap: &Catalog,
    ns: &str,
    up: &Upstream,
    tool: &str,
    per_tool: Option<&crate::upstream::config::ToolConfig>,
    params: &super::parts::Params,
) {
    if per_tool.is_some_and(|t| t.cache == Some(false))
        || params.get("requestState").is_some()
        || params.get("inputResponses").is_some()
    {
        return;
    }
    if snap.hints(ns, tool).is_some_and(|h| h.read_only && !h.destructive) {
        let label = crate::observe::metrics::METRICS.upstream_name(&up.name);
        crate::observe::repeats::REPEATS.note(label, tool, params.get("arguments").unwrap_or(b"{}"));
    }
}
