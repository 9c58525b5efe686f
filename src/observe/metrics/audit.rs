//! Metrics of the audit log (`crate::audit`): records written and dropped, calls refused,
//! sink errors, and the records waiting in the buffer.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Metrics of the audit log.
pub struct AuditMetrics {
    written: Counter,
    dropped: Counter,
    refused: Counter,
    sink_errors: Counter,
    depth: Gauge,
}

impl AuditMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let m = AuditMetrics {
            written: Counter::default(),
            dropped: Counter::default(),
            refused: Counter::default(),
            sink_errors: Counter::default(),
            depth: Gauge::default(),
        };
        registry.register("audit_records_written", "Audit records appended to the sink", m.written.clone());
        registry.register(
            "audit_records_dropped",
            "Audit records dropped because the buffer was full (on_audit_failure = serve)",
            m.dropped.clone(),
        );
        registry.register(
            "audit_calls_refused",
            "Calls refused because the audit buffer was full (on_audit_failure = refuse)",
            m.refused.clone(),
        );
        registry.register(
            "audit_sink_errors",
            "Failed appends to the audit sink (each retried)",
            m.sink_errors.clone(),
        );
        registry.register("audit_buffer_depth", "Audit records waiting to be written", m.depth.clone());
        m
    }

    /// Count `n` records appended.
    pub fn written(&self, n: u64) {
        self.written.inc_by(n);
    }

    /// Count a dropped record.
    pub fn dropped(&self) {
        self.dropped.inc();
    }

    /// Count a refused call.
    pub fn refused(&self) {
        self.refused.inc();
    }

    /// Count a failed append.
    pub fn sink_error(&self) {
        self.sink_errors.inc();
    }

    /// Set the records waiting.
    pub fn depth(&self, n: i64) {
        self.depth.set(n);
    }

    /// Records written so far (tests).
    pub fn written_total(&self) -> u64 {
        self.written.get()
    }
}
