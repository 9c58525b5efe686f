//! Prometheus metrics (text exposition format 0.0.4 / OpenMetrics via `prometheus-client`):
//! requests by method, upstream and outcome, latency histograms, upstream status.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::bounded::BoundedNames;
pub use super::bounded::{MAX_LABELED, Name, TENANT_OTHER};
mod advice;
mod audit;
mod cost;
mod detect;
mod labels;
mod store;
mod tools;
pub use advice::AdviceMetrics;
pub use audit::AuditMetrics;
pub use cost::CostMetrics;
pub use detect::DetectMetrics;
pub use labels::*;
pub use store::StoreMetrics;
pub use tools::ToolMetrics;

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    upstream_up: Family<UpstreamLabels, Gauge>,
    upstream_restarts: Family<UpstreamLabels, Gauge>,
    upstream_in_flight: Family<UpstreamLabels, Gauge>,
    upstream_client_sessions: Family<UpstreamLabels, Gauge>,
    catalog_refresh_failures: Family<UpstreamLabels, Counter>,
    rejections: Family<RejectLabels, Counter>,
    sessions: Gauge,
    streams: Gauge,
    shed: Family<ShedLabels, Counter>,
    retries: Family<UpstreamName, Counter>,
    retry_budget_exhausted: Family<UpstreamName, Counter>,
    fallbacks: Family<UpstreamName, Counter>,
    breaker_state: Family<ReplicaLabels, Gauge>,
    replica_up: Family<ReplicaLabels, Gauge>,
    admitted: Family<LimitLabels, Gauge>,
    queued: Family<LimitLabels, Gauge>,
    cache_lookups: Family<CacheLabels, Counter>,
    cache_evictions: Counter,
    cache_invalidations: Counter,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    idempotent_replays: Family<UpstreamName, Counter>,
    upstream_discarded: Family<DiscardLabels, Counter>,
    redis_errors: Family<OpLabels, Counter>,
    redis_degraded: Gauge,
    cache_l2_rejected: Family<L2RejectLabels, Counter>,
    rate_limited: Family<RateLimitedLabels, Counter>,
    rate_limited_callers: BoundedNames,
    rate_limited_tenants: BoundedNames,
    /// Tenants' upstreams with a label of their own ([`Metrics::upstream_name`]).
    tenant_upstreams: BoundedNames,
    /// Callers with a label of their own in `sekisho_shed_total`.
    shed_callers: BoundedNames,
    /// The `[store]` config cache.
    pub store: StoreMetrics,
    /// What the recommendations read (`crate::monitor::recommend`).
    pub advice: AdviceMetrics,
    /// Calls per tool (`pipeline::tool_meter`).
    pub tools: ToolMetrics,
    /// Cost and budgets.
    pub cost: CostMetrics,
    /// The audit log (`crate::audit`).
    pub audit: AuditMetrics,
    /// Sensitive-data detection (`crate::detect`).
    pub detect: DetectMetrics,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~105 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 21))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("sekisho");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register("requests", "MCP requests handled, by method, upstream and outcome", calls.clone());
        let latency = Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from receiving a request to having its answer",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let upstream_up = Family::<UpstreamLabels, Gauge>::default();
        registry.register("upstream_up", "1 when the upstream is connected, else 0", upstream_up.clone());
        let upstream_restarts = Family::<UpstreamLabels, Gauge>::default();
        registry.register("upstream_restarts", "Reconnections after a failure since start", upstream_restarts.clone());
        let upstream_in_flight = Family::<UpstreamLabels, Gauge>::default();
        registry.register("upstream_in_flight", "Calls waiting on the upstream", upstream_in_flight.clone());
        let upstream_client_sessions = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_client_sessions",
            "Live per-client upstream sessions (processes or HTTP sessions) of a session = \"per-client\" upstream",
            upstream_client_sessions.clone(),
        );
        let catalog_refresh_failures = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "catalog_refresh_failures",
            "Failed listings of an upstream",
            catalog_refresh_failures.clone(),
        );
        let rejections = Family::<RejectLabels, Counter>::default();
        registry.register("http_rejections", "HTTP requests refused before reaching the pipeline", rejections.clone());
        let sessions = Gauge::default();
        registry.register("sessions", "Legacy sessions with state on this replica", sessions.clone());
        let streams = Gauge::default();
        registry.register("notification_streams", "Open notification streams", streams.clone());
        let shed = Family::<ShedLabels, Counter>::default();
        registry.register("shed", "Calls refused by admission control, by limit, priority and caller", shed.clone());
        let retries = Family::<UpstreamName, Counter>::default();
        registry.register("retries", "Retried upstream calls", retries.clone());
        let retry_budget_exhausted = Family::<UpstreamName, Counter>::default();
        registry.register(
            "retry_budget_exhausted",
            "Retries refused by the retry budget",
            retry_budget_exhausted.clone(),
        );
        let fallbacks = Family::<UpstreamName, Counter>::default();
        registry.register("fallbacks", "Calls served by the upstream's fallback", fallbacks.clone());
        let breaker_state = Family::<ReplicaLabels, Gauge>::default();
        registry.register(
            "breaker_state",
            "Circuit breaker per replica: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        let replica_up = Family::<ReplicaLabels, Gauge>::default();
        registry.register("replica_up", "1 when the replica is connected", replica_up.clone());
        let admitted = Family::<LimitLabels, Gauge>::default();
        registry.register("admission_in_use", "Calls holding a slot of the limit", admitted.clone());
        let queued = Family::<LimitLabels, Gauge>::default();
        registry.register("admission_queued", "Calls waiting for a slot of the limit", queued.clone());
        let cache_lookups = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Cacheable calls by upstream, tool, level (l1, l2, none) and result (hit, miss, coalesced)",
            cache_lookups.clone(),
        );
        let cache_evictions = Counter::default();
        registry.register("cache_evictions", "L1 entries evicted by the size caps", cache_evictions.clone());
        let cache_invalidations = Counter::default();
        registry.register(
            "cache_invalidations",
            "Cache invalidations (list_changed, clear)",
            cache_invalidations.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register("cache_entries", "Entries in the L1 cache", cache_entries.clone());
        let cache_bytes = Gauge::default();
        registry.register("cache_bytes", "Weighted bytes in the L1 cache", cache_bytes.clone());
        let idempotent_replays = Family::<UpstreamName, Counter>::default();
        registry.register(
            "idempotent_replays",
            "Repeated idempotency keys answered from the stored result",
            idempotent_replays.clone(),
        );
        let upstream_discarded = Family::<DiscardLabels, Counter>::default();
        registry.register(
            "upstream_discarded",
            "What an upstream sent that the gateway dropped to stay bounded, by kind",
            upstream_discarded.clone(),
        );
        let redis_errors = Family::<OpLabels, Counter>::default();
        registry.register("redis_errors", "Redis operations that failed or timed out", redis_errors.clone());
        let redis_degraded = Gauge::default();
        registry.register("redis_degraded", "1 while a configured Redis is not answering", redis_degraded.clone());
        let cache_l2_rejected = Family::<L2RejectLabels, Counter>::default();
        // Shown as 0 from the start, so an alert can watch it rise.
        let _ = cache_l2_rejected.get_or_create(&L2RejectLabels { reason: "mac" });
        registry.register(
            "cache_l2_rejected",
            "Redis cache entries and idempotency records ignored because their MAC did not verify",
            cache_l2_rejected.clone(),
        );
        let rate_limited = Family::<RateLimitedLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Calls refused by a rate limit, by caller, tenant and the limit that refused (key, tenant)",
            rate_limited.clone(),
        );
        registry.register_collector(Box::new(super::proc::ProcessCollector));
        let store = StoreMetrics::register(&mut registry);
        let advice = AdviceMetrics::register(&mut registry);
        let tools = ToolMetrics::register(&mut registry);
        let audit = AuditMetrics::register(&mut registry);
        let cost = CostMetrics::register(&mut registry);
        let detect = DetectMetrics::register(&mut registry);
        Metrics {
            detect,
            store,
            advice,
            audit,
            tools,
            cost,
            rate_limited,
            rate_limited_callers: BoundedNames::default(),
            rate_limited_tenants: BoundedNames::default(),
            tenant_upstreams: BoundedNames::default(),
            shed_callers: BoundedNames::default(),
            cache_l2_rejected,
            cache_lookups,
            cache_evictions,
            cache_invalidations,
            cache_entries,
            cache_bytes,
            idempotent_replays,
            upstream_discarded,
            redis_errors,
            redis_degraded,
            shed,
            retries,
            retry_budget_exhausted,
            fallbacks,
            breaker_state,
            replica_up,
            admitted,
            queued,
            registry,
            calls,
            latency,
            upstream_up,
            upstream_restarts,
            upstream_in_flight,
            upstream_client_sessions,
            catalog_refresh_failures,
            rejections,
            sessions,
            streams,
        }
    }

    /// Record a finished call.
    pub fn call(&self, method: &'static str, upstream: Name, outcome: &'static str, elapsed: Duration) {
        self.latency
            .get_or_create(&LatencyLabels { method, upstream: upstream.clone() })
            .observe(elapsed.as_secs_f64());
        self.calls.get_or_create(&CallLabels { method, upstream, outcome }).inc();
    }

    /// Count a call of `caller` shed by admission control `limit` at `priority`.
    /// Callers past the first [`MAX_LABELED`] are counted as `other` (store keys are many).
    pub fn shed(&self, limit: Name, priority: &'static str, caller: Name) {
        let caller = if self.shed_callers.keeps(caller.as_str()) { caller } else { Name::Static("other") };
        self.shed.get_or_create(&ShedLabels { limit, priority, caller }).inc();
    }

    /// Count a call of `caller` (of `tenant`, if any) refused by its `limit` (`key` or
    /// `tenant`) bucket; caller and tenant names are bounded ([`MAX_LABELED`]).
    pub fn rate_limited(&self, caller: Name, tenant: Option<Arc<str>>, limit: &'static str) {
        let other = Name::Static("other");
        let caller = if self.rate_limited_callers.keeps(caller.as_str()) { caller } else { other.clone() };
        let tenant = match tenant {
            Some(t) if self.rate_limited_tenants.keeps(&t) => Name::Shared(t),
            Some(_) => other,
            None => Name::Static("none"),
        };
        self.rate_limited.get_or_create(&RateLimitedLabels { caller, tenant, limit }).inc();
    }

    /// The label of upstream `name`: its namespace, shared. A tenant's upstream
    /// (`t{tenant}.{server}`) keeps its own label only if it is one of the first
    /// [`MAX_LABELED`] seen, else it is counted as `tenant-other`: tenants come and go, and
    /// every label set stays in the exposition for good.
    pub fn upstream_name(&self, name: &Arc<str>) -> Name {
        match self.tenant_upstreams.keeps_upstream(name) {
            true => Name::Shared(Arc::clone(name)),
            false => Name::Static(TENANT_OTHER),
        }
    }

    /// [`Metrics::upstream_name`] as text (scrape-time gauges).
    fn upstream_text(&self, name: &str) -> String {
        if self.tenant_upstreams.keeps_upstream(name) { name } else { TENANT_OTHER }.into()
    }

    /// Count a retry of a call to `upstream`.
    pub fn retry(&self, upstream: Name) {
        self.retries.get_or_create(&UpstreamName { upstream }).inc();
    }

    /// Count a retry refused because the retry budget of `upstream` was spent.
    pub fn retry_budget_exhausted(&self, upstream: Name) {
        self.retry_budget_exhausted.get_or_create(&UpstreamName { upstream }).inc();
    }

    /// Count a cacheable call by its cache outcome.
    pub fn cache_lookup(&self, upstream: Name, tool: &str, level: &'static str, result: &'static str) {
        self.cache_lookups.get_or_create(&CacheLabels { upstream, tool: tool.to_string(), level, result }).inc();
    }

    /// Count an L1 eviction by size.
    pub fn cache_eviction(&self) {
        self.cache_evictions.inc();
    }

    /// Count an invalidation.
    pub fn cache_invalidation(&self) {
        self.cache_invalidations.inc();
    }

    /// Set the L1 size gauges and Redis health (at scrape time).
    pub fn cache_size(&self, entries: u64, bytes: u64, redis_degraded: bool) {
        self.cache_entries.set(entries as i64);
        self.cache_bytes.set(bytes as i64);
        self.redis_degraded.set(i64::from(redis_degraded));
    }

    /// Count an idempotent replay for `upstream`.
    pub fn idempotent_replay(&self, upstream: Name) {
        self.idempotent_replays.get_or_create(&UpstreamName { upstream }).inc();
    }

    /// Count something `upstream` sent that was dropped (see [`DiscardLabels`]).
    pub fn upstream_discarded(&self, upstream: Name, kind: &'static str) {
        self.upstream_discarded.get_or_create(&DiscardLabels { upstream, kind }).inc();
    }

    /// Count a failed Redis operation.
    pub fn redis_error(&self, op: &'static str) {
        self.redis_errors.get_or_create(&OpLabels { op }).inc();
    }

    /// Count an L2 entry that was ignored (`reason`: `mac`, the entry's MAC is missing or wrong).
    pub fn cache_l2_rejected(&self, reason: &'static str) {
        self.cache_l2_rejected.get_or_create(&L2RejectLabels { reason }).inc();
    }

    /// Count a call served by `upstream`'s fallback.
    pub fn fallback(&self, upstream: Name) {
        self.fallbacks.get_or_create(&UpstreamName { upstream }).inc();
    }

    /// Set one replica's breaker state (0 closed, 1 open, 2 half-open) and liveness (at scrape time).
    pub fn replica(&self, upstream: &str, replica: usize, breaker: i64, up: bool) {
        let l = ReplicaLabels { upstream: self.upstream_text(upstream), replica: replica as u64 };
        self.breaker_state.get_or_create(&l).set(breaker);
        self.replica_up.get_or_create(&l).set(i64::from(up));
    }

    /// Set admission gauges for `limit` (at scrape time).
    pub fn admission(&self, limit: &str, in_use: usize, queued: usize) {
        let l = LimitLabels { limit: self.upstream_text(limit) };
        self.admitted.get_or_create(&l).set(in_use as i64);
        self.queued.get_or_create(&l).set(queued as i64);
    }

    /// Record an HTTP-level rejection.
    pub fn rejected(&self, status: u16) {
        self.rejections.get_or_create(&RejectLabels { status }).inc();
    }

    /// Set an upstream's status gauges (called at scrape time).
    pub fn upstream(&self, name: &str, up: bool, restarts: u64, in_flight: usize) {
        let l = UpstreamLabels { upstream: self.upstream_text(name) };
        self.upstream_up.get_or_create(&l).set(i64::from(up));
        self.upstream_restarts.get_or_create(&l).set(restarts as i64);
        self.upstream_in_flight.get_or_create(&l).set(in_flight as i64);
    }

    /// Set a per-client upstream's live per-client sessions (called at scrape time).
    pub fn client_sessions(&self, name: &str, live: usize) {
        self.upstream_client_sessions
            .get_or_create(&UpstreamLabels { upstream: self.upstream_text(name) })
            .set(live as i64);
    }

    /// Set the session and stream gauges (called at scrape time).
    pub fn connections(&self, sessions: usize, streams: usize) {
        self.sessions.set(sessions as i64);
        self.streams.set(streams as i64);
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encoding to a String cannot fail");
        out
    }
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Count a failed catalog listing of `upstream`.
pub fn catalog_refresh_failed(upstream: &str) {
    METRICS.catalog_refresh_failures.get_or_create(&UpstreamLabels { upstream: METRICS.upstream_text(upstream) }).inc();
}
