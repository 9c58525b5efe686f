//! Metrics of sensitive-data detection (`crate::detect`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of one finding: its kind (12 values), where it was found (`audit`, `log`, `result`,
/// `relayed`) and what was done (`redact`, `block`): at most 96 series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub kind: &'static str,
    pub r#where: &'static str,
    pub action: &'static str,
}

/// Metrics of sensitive-data detection.
pub struct DetectMetrics {
    findings: Family<FindingLabels, Counter>,
}

impl DetectMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let findings = Family::<FindingLabels, Counter>::default();
        registry.register(
            "sensitive_findings",
            "Sensitive data found, by kind, where (audit, log, result, relayed) and action (redact, block)",
            findings.clone(),
        );
        DetectMetrics { findings }
    }

    /// Count one finding (static label values only, so the series stay bounded).
    pub fn finding(&self, kind: &'static str, place: &'static str, action: &'static str) {
        self.findings.get_or_create(&FindingLabels { kind, r#where: place, action }).inc();
    }

    /// Findings counted so far with these labels (tests).
    pub fn findings(&self, kind: &'static str, place: &'static str, action: &'static str) -> u64 {
        self.findings.get_or_create(&FindingLabels { kind, r#where: place, action }).get()
    }
}
