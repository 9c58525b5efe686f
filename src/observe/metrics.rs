//! Prometheus metrics (text exposition format 0.0.4 / OpenMetrics via `prometheus-client`):
//! requests by method, upstream and outcome, latency histograms, upstream status.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A label value that costs no allocation on the hot path: a literal, or a shared name.
#[derive(Clone, Debug)]
pub enum Name {
    /// A `'static` literal (method names, `gateway`).
    Static(&'static str),
    /// A shared string (upstream namespaces).
    Shared(Arc<str>),
}

impl Name {
    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Shared(s) => s,
        }
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Labels of a finished call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// JSON-RPC method (unknown methods are `other`).
    pub method: &'static str,
    /// Upstream namespace, or `gateway` when the gateway answered itself.
    pub upstream: Name,
    /// `ok`, `tool_error`, `rpc_error`, `client_error`, `unavailable`, `timeout`, `upstream_error`,
    /// `shutting_down`.
    pub outcome: &'static str,
}

/// Labels of per-method latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// JSON-RPC method.
    pub method: &'static str,
    /// Upstream namespace or `gateway`.
    pub upstream: Name,
}

/// Labels naming one upstream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// Upstream namespace.
    pub upstream: String,
}

/// Labels of HTTP-level rejections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// HTTP status sent.
    pub status: u16,
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    upstream_up: Family<UpstreamLabels, Gauge>,
    upstream_restarts: Family<UpstreamLabels, Gauge>,
    upstream_in_flight: Family<UpstreamLabels, Gauge>,
    catalog_refresh_failures: Family<UpstreamLabels, Counter>,
    rejections: Family<RejectLabels, Counter>,
    sessions: Gauge,
    streams: Gauge,
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
        Metrics {
            registry,
            calls,
            latency,
            upstream_up,
            upstream_restarts,
            upstream_in_flight,
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

    /// Record an HTTP-level rejection.
    pub fn rejected(&self, status: u16) {
        self.rejections.get_or_create(&RejectLabels { status }).inc();
    }

    /// Set an upstream's status gauges (called at scrape time).
    pub fn upstream(&self, name: &str, up: bool, restarts: u64, in_flight: usize) {
        let l = UpstreamLabels { upstream: name.into() };
        self.upstream_up.get_or_create(&l).set(i64::from(up));
        self.upstream_restarts.get_or_create(&l).set(restarts as i64);
        self.upstream_in_flight.get_or_create(&l).set(in_flight as i64);
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
    METRICS.catalog_refresh_failures.get_or_create(&UpstreamLabels { upstream: upstream.into() }).inc();
}
