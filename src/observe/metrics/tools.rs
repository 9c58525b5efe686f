//! Metrics per tool (`pipeline::tool_meter`): every routed `tools/call` counted by upstream,
//! tool and outcome, and the time its calls took, so the monitor can break its samples down
//! by tool (`crate::monitor::sample::ToolCalls`). Tool names are bounded like the cost
//! metric's: the first [`super::MAX_LABELED`] distinct names keep their own label, later ones
//! count as `other`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::super::bounded::BoundedNames;
use super::Name;

/// Labels of one tool's finished calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolCallLabels {
    /// The upstream that owns the tool (tenants' upstreams bounded as in every metric).
    pub upstream: Name,
    /// The upstream's own name of the tool, or `other`.
    pub tool: Name,
    /// As in `sekisho_requests_total`: `ok`, `tool_error`, `rpc_error`, or the error class.
    pub outcome: &'static str,
}

/// Labels naming one tool.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    /// The upstream that owns the tool.
    pub upstream: Name,
    /// The tool, or `other`.
    pub tool: Name,
}

/// `sekisho_tool_calls_total` and `sekisho_tool_call_seconds_total`.
pub struct ToolMetrics {
    calls: Family<ToolCallLabels, Counter>,
    seconds: Family<ToolLabels, Counter<f64, AtomicU64>>,
    tools: BoundedNames,
}

impl ToolMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let calls = Family::<ToolCallLabels, Counter>::default();
        registry.register("tool_calls", "Routed tools/call requests by upstream, tool and outcome", calls.clone());
        let seconds = Family::<ToolLabels, Counter<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "tool_call",
            "Time routed tools/call requests took from routing to answer, by upstream and tool",
            Unit::Seconds,
            seconds.clone(),
        );
        ToolMetrics { calls, seconds, tools: BoundedNames::default() }
    }

    /// Count a call of `tool` of `upstream` that ended with `outcome` after `elapsed`.
    pub fn call(&self, upstream: Name, tool: Name, outcome: &'static str, elapsed: Duration) {
        let tool = if self.tools.keeps(tool.as_str()) { tool } else { Name::Static("other") };
        self.seconds
            .get_or_create(&ToolLabels { upstream: upstream.clone(), tool: tool.clone() })
            .inc_by(elapsed.as_secs_f64());
        self.calls.get_or_create(&ToolCallLabels { upstream, tool, outcome }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_upstreams_tool_names_stay_bounded() {
        let mut registry = Registry::default();
        let metrics = ToolMetrics::register(&mut registry);
        // An upstream listing 1000 tools, each called once; a second upstream's tool after them.
        for i in 0..1000 {
            metrics.call(Name::Static("flood"), Name::Shared(format!("t{i}").into()), "ok", Duration::from_millis(1));
        }
        metrics.call(Name::Static("calm"), Name::Shared("late".into()), "ok", Duration::from_millis(1));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let calls: Vec<&str> = text.lines().filter(|l| l.starts_with("tool_calls_total{")).collect();
        assert_eq!(calls.len(), super::super::MAX_LABELED + 2, "200 names, `other` for flood, `other` for calm");
        let other = calls.iter().find(|l| l.contains("upstream=\"flood\",tool=\"other\"")).unwrap();
        assert!(other.ends_with(" 800"), "{other}");
        assert!(calls.iter().any(|l| l.contains("upstream=\"calm\",tool=\"other\"")), "the bound is process-wide");
    }
}
