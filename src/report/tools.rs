//! The gateway's own MCP tools, in the `sekisho` namespace (`sekisho__performance`, …): so
//! an agent can ask the gateway how it is doing. [`TOOLS`] is the registry — a tool is one
//! entry: its name, words, input and output schemas ([`super::schemas`]) and the function
//! that answers it from a [`Reporter`]. `pipeline/resolve.rs` lists them (after the
//! upstreams' tools) and answers their calls, for the callers `[self_tools] visible_to`
//! names ([`SelfTools::visible_to`]); anyone else gets the unknown-tool error for their
//! names, as for any name the catalog does not hold, so their existence is not revealed.
//!
//! A call answers `structuredContent` (conforming to the tool's `outputSchema`) and the same
//! JSON as a text content block (MCP 2025-06-18, "Structured Content"); a bad argument is a
//! tool result with `isError: true`.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::config::{NAMESPACE, SelfToolsConfig, Visibility};
use super::{Reporter, parse_period, schemas};
use crate::pipeline::parts::Principal;
use crate::wire::mcp::Era;

/// Arguments of a call: the `arguments` object (empty when absent).
pub type Args = Map<String, Value>;

/// One of the gateway's own tools.
pub struct SelfTool {
    /// Its name within the `sekisho` namespace.
    pub name: &'static str,
    /// Its `title`.
    pub title: &'static str,
    /// Its `description`.
    pub description: &'static str,
    /// Its `inputSchema`.
    pub input_schema: fn() -> Value,
    /// Its `outputSchema`; every answer's `structuredContent` conforms to it.
    pub output_schema: fn() -> Value,
    /// Answer a call: the `structuredContent`, or the text of a bad argument.
    pub run: fn(&Reporter, &Args) -> Result<Value, String>,
}

/// The registry, in the order `tools/list` shows them. A new tool is one more entry.
pub static TOOLS: [SelfTool; 5] = [
    SelfTool {
        name: "performance",
        title: "Gateway performance",
        description: "How the sekisho gateway is doing over a period: overall health (healthy, degraded, \
                      unhealthy, with reasons), cache hit rate, average response time in ms, error rate, and \
                      cost efficiency (the share of upstream-bound calls answered without reaching an upstream).",
        input_schema: schemas::period_input,
        output_schema: schemas::performance,
        run: |r, args| Ok(json!(r.performance(parse_period(string(args, "period")?)?))),
    },
    SelfTool {
        name: "metrics",
        title: "Gateway metrics",
        description: "The gateway monitor's newest sample (requests/s, latency percentiles, errors, cache, \
                      queues, upstream health, memory, per upstream and method) and the totals of a period.",
        input_schema: schemas::period_input,
        output_schema: schemas::metrics,
        run: |r, args| Ok(json!(r.metrics(parse_period(string(args, "period")?)?))),
    },
    SelfTool {
        name: "alerts",
        title: "Gateway alerts",
        description: "The gateway's alerts firing and pending (severity, metric, current value, threshold), \
                      and with history=true the resolved ones kept.",
        input_schema: schemas::alerts_input,
        output_schema: schemas::alerts,
        run: |r, args| {
            let history = match args.get("history") {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err("history must be true or false".into()),
            };
            Ok(json!(r.alerts(history)))
        },
    },
    SelfTool {
        name: "health",
        title: "Gateway health",
        description: "The gateway's health: the verdict and its reasons, readiness, every upstream's and \
                      replica's state and circuit breaker, the store, Redis and the runtime switches.",
        input_schema: schemas::no_input,
        output_schema: schemas::health,
        run: |r, _| Ok(json!(r.health())),
    },
    SelfTool {
        name: "recommendations",
        title: "Gateway recommendations",
        description: "What the gateway's measurements and configuration say to change, most urgent first: \
                      each with category (performance, cost, reliability, security), priority, impact, effort, \
                      estimated improvement, action items, the measured evidence, and the configuration change \
                      that removes the cause.",
        input_schema: schemas::period_input,
        output_schema: schemas::recommendations,
        run: |r, args| Ok(json!(r.recommendations(parse_period(string(args, "period")?)?))),
    },
];

/// The string argument `key`, if given.
///
/// Errors: it is given and not a string.
fn string<'a>(args: &'a Args, key: &str) -> Result<Option<&'a str>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} must be a string")),
    }
}

/// The tools as one gateway serves them: their catalog names and `tools/list` items, made
/// once, and who may see them.
pub struct SelfTools {
    reporter: Arc<Reporter>,
    visible_to: Visibility,
    /// Catalog name → index in [`TOOLS`].
    names: Vec<(String, usize)>,
    listed: Vec<Bytes>,
}

impl SelfTools {
    /// The tools of `config` answered from `reporter`, named with the catalog `separator`;
    /// `None` when `[self_tools] enabled = false`.
    pub fn new(reporter: Arc<Reporter>, config: &SelfToolsConfig, separator: &str) -> Option<Arc<SelfTools>> {
        if !config.enabled {
            return None;
        }
        let names: Vec<(String, usize)> = TOOLS
            .iter()
            .enumerate()
            .map(|(i, t)| (crate::catalog::naming::exposed_name(NAMESPACE, separator, t.name), i))
            .collect();
        let listed = names
            .iter()
            .map(|(name, i)| {
                let t = &TOOLS[*i];
                let item = json!({
                    "name": name,
                    "title": t.title,
                    "description": t.description,
                    "inputSchema": (t.input_schema)(),
                    "outputSchema": (t.output_schema)(),
                    "annotations": {
                        "title": t.title, "readOnlyHint": true, "destructiveHint": false,
                        "idempotentHint": true, "openWorldHint": false,
                    },
                });
                Bytes::from(item.to_string())
            })
            .collect();
        Some(Arc::new(SelfTools { reporter, visible_to: config.visible_to, names, listed }))
    }

    /// Whether `caller` sees the tools: an admin key (or, with `visible_to = "all"`, any
    /// caller of the static configuration); never a store key.
    pub fn visible_to(&self, caller: &Principal) -> bool {
        if caller.view_slot().is_some() {
            return false;
        }
        match self.visible_to {
            Visibility::All => true,
            Visibility::Admins => matches!(caller, Principal::ApiKey(identity) if identity.admin),
        }
    }

    /// The `tools/list` items, in registry order.
    pub fn listed(&self) -> &[Bytes] {
        &self.listed
    }

    /// The tool a catalog name names.
    pub fn find(&self, name: &str) -> Option<&'static SelfTool> {
        self.names.iter().find(|(n, _)| n == name).map(|(_, i)| &TOOLS[*i])
    }

    /// The `tools/call` result of `tool` with the raw `arguments` (absent: none) for a client
    /// of `era`.
    pub fn call(&self, tool: &SelfTool, arguments: Option<&[u8]>, era: Era) -> Bytes {
        let args = match arguments.map(serde_json::from_slice::<Value>) {
            None | Some(Ok(Value::Null)) => Ok(Args::new()),
            Some(Ok(Value::Object(map))) => Ok(map),
            Some(_) => Err("arguments must be an object".to_string()),
        };
        let known = |args: &Args| {
            let allowed = (tool.input_schema)();
            match args.keys().find(|k| allowed.pointer(&format!("/properties/{k}")).is_none()) {
                Some(k) => Err(format!("unknown argument {k:?}")),
                None => Ok(()),
            }
        };
        let outcome = args.and_then(|a| known(&a).and_then(|()| (tool.run)(&self.reporter, &a)));
        let mut result = match outcome {
            Ok(structured) => json!({
                "content": [{"type": "text", "text": structured.to_string()}],
                "structuredContent": structured,
                "isError": false,
            }),
            Err(why) => json!({"content": [{"type": "text", "text": why}], "isError": true}),
        };
        if era == Era::Modern {
            result["resultType"] = "complete".into();
        }
        Bytes::from(result.to_string())
    }
}
