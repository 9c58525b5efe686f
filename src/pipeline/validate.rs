//! Middleware that checks a `tools/call`'s arguments against the tool's `inputSchema` (MCP
//! `server/tools`: "Servers MUST validate all tool inputs"; the gateway refuses what the tool
//! would refuse before the call leaves it) and refuses a mismatch naming the validator's
//! errors: for clients of 2025-11-25 and later (both eras) as a tool result with `isError:
//! true` (SEP-1303: input validation errors are tool execution errors the model can act on),
//! for earlier ones as -32602. Per upstream, `validate = false` turns it off.
//!
//! Validators are made once per change of a tool's definition, never per call: each upstream
//! has a table of its listed tools, made when a call first meets a new version of the
//! upstream's lists (resolve hands the call the lists of the snapshot it routed by), each tool's
//! validator compiled on its first call and kept while its definition stays the same. A schema
//! the gateway will not use (`crate::catalog::schema`) leaves the tool unvalidated, with one
//! warning per definition.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;
use jsonschema::Validator;
use tower::Service;

use super::ctx::Routed;
use super::parts::{Origin, Reply, ReplyFuture};
use super::routed::RoutedStep;
use super::steps::Named;
use crate::catalog::listing::ListKind;
use crate::catalog::{UpstreamLists, schema};
use crate::error::GatewayError;
use crate::upstream::request::Body;
use crate::wire::jsonrpc::Method;
use crate::wire::mcp::Era;

/// The validate step.
#[derive(Clone, Default)]
pub struct Validate {
    validators: Arc<Validators>,
}

impl Named for Validate {
    fn name(&self) -> &'static str {
        "validate"
    }
}

impl RoutedStep for Validate {
    fn serve<S>(&self, routed: Routed, _inner: S) -> Result<ReplyFuture, Routed>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
        S::Future: Send,
    {
        match self.validators.check_routed(&routed) {
            Ok(()) => Err(routed),
            // Only a schema mismatch is a tool execution error (SEP-1303); arguments that do
            // not parse (duplicate members, numbers out of range) are a malformed request.
            Err(GatewayError::InvalidParams(why))
                if routed.input_errors_as_results && why.starts_with(schema::MISMATCH) =>
            {
                let e = GatewayError::InvalidParams(why);
                Ok(Box::pin(std::future::ready(Ok(tool_error(&e, routed.client_era)))))
            }
            Err(e) => Ok(Box::pin(std::future::ready(Err(e)))),
        }
    }
}

/// The refusal `e` as a `tools/call` result with `isError: true` for a client of `era`.
fn tool_error(e: &GatewayError, era: Era) -> Reply {
    let text = match e {
        GatewayError::InvalidParams(why) => std::borrow::Cow::Borrowed(why.as_str()),
        other => other.client_message(),
    };
    let mut result = serde_json::json!({
        "content": [{"type": "text", "text": text}],
        "isError": true,
    });
    if era == Era::Modern {
        result["resultType"] = "complete".into();
    }
    Reply::Result { body: Bytes::from(result.to_string()), origin: Origin::Gateway }
}

/// Every upstream's table of validators, by namespace; read without a lock, replaced whole
/// when an upstream's lists change.
#[derive(Default)]
pub struct Validators {
    tables: ArcSwap<HashMap<Arc<str>, Arc<Table>>>,
    /// Held while a table is made, so two calls that meet the same new lists make it once.
    making: Mutex<()>,
}

/// One version of an upstream's lists and its tools' validators.
struct Table {
    /// The lists it was made from (held, so a pointer comparison cannot meet a reused address).
    lists: Arc<UpstreamLists>,
    tools: HashMap<Box<str>, Arc<Slot>>,
}

/// One listed tool: its definition and, from its first call on, its validator.
struct Slot {
    /// The tool's object from `tools/list`, verbatim.
    definition: Bytes,
    /// `None`: not validated (no `inputSchema`, or one the gateway will not use).
    validator: OnceLock<Option<Validator>>,
}

impl Validators {
    /// Check a routed call: a `tools/call` whose target carries its upstream's lists (an
    /// upstream with `validate = true`) against its tool's `inputSchema`; anything else passes.
    ///
    /// Errors: [`GatewayError::InvalidParams`] naming why (see [`schema::check`]).
    pub fn check_routed(&self, routed: &Routed) -> Result<(), GatewayError> {
        let (Some(lists), Some(tool)) = (&routed.target.lists, routed.name()) else { return Ok(()) };
        if routed.request.method != Method::ToolsCall {
            return Ok(());
        }
        let Body::Client { params, .. } = &routed.request.body else { return Ok(()) };
        self.check(&routed.target.upstream.name, lists, tool, params.get("arguments"))
    }

    /// Check `arguments` (raw `params.arguments`, if any) of a call of `tool` (the upstream's
    /// own name) on upstream `ns`, whose lists are `lists`. A tool that is not listed there, or
    /// whose schema is not used, passes.
    ///
    /// Errors: [`GatewayError::InvalidParams`] naming why (see [`schema::check`]).
    pub fn check(
        &self,
        ns: &Arc<str>,
        lists: &Arc<UpstreamLists>,
        tool: &str,
        arguments: Option<&[u8]>,
    ) -> Result<(), GatewayError> {
        let tables = self.tables.load();
        let made;
        let table = match tables.get(ns) {
            Some(t) if Arc::ptr_eq(&t.lists, lists) => t,
            _ => {
                made = self.table(ns, lists);
                &made
            }
        };
        let Some(slot) = table.tools.get(tool) else { return Ok(()) };
        match slot.validator(ns, tool) {
            Some(validator) => schema::check(validator, arguments).map_err(GatewayError::InvalidParams),
            None => Ok(()),
        }
    }

    /// The table of `ns` for `lists`, made now. Tools whose definitions did not change keep
    /// their validators (and their one warning). Tables whose lists no snapshot holds any
    /// more (their upstream was re-listed or removed) are dropped.
    #[cold]
    fn table(&self, ns: &Arc<str>, lists: &Arc<UpstreamLists>) -> Arc<Table> {
        let _making = self.making.lock().unwrap_or_else(|e| e.into_inner());
        let tables = self.tables.load_full();
        let previous = tables.get(ns);
        if let Some(t) = previous.filter(|t| Arc::ptr_eq(&t.lists, lists)) {
            return Arc::clone(t);
        }
        let tools = lists.items[ListKind::Tools.index()].iter().map(|entry| {
            let kept = previous.and_then(|t| t.tools.get(entry.id.as_str())).filter(|s| s.definition == entry.raw);
            let slot = kept
                .cloned()
                .unwrap_or_else(|| Arc::new(Slot { definition: entry.raw.clone(), validator: OnceLock::new() }));
            (Box::from(entry.id.as_str()), slot)
        });
        let table = Arc::new(Table { lists: Arc::clone(lists), tools: tools.collect() });
        let mut next: HashMap<Arc<str>, Arc<Table>> = tables
            .iter()
            .filter(|(name, t)| *name != ns && Arc::strong_count(&t.lists) > 1)
            .map(|(name, t)| (Arc::clone(name), Arc::clone(t)))
            .collect();
        next.insert(Arc::clone(ns), Arc::clone(&table));
        self.tables.store(Arc::new(next));
        table
    }
}

impl Slot {
    /// The tool's validator, compiled on first use; `None` when it is not validated.
    fn validator(&self, ns: &str, tool: &str) -> Option<&Validator> {
        self.validator
            .get_or_init(|| match schema::compile(&self.definition) {
                Ok(validator) => validator,
                Err(reason) => {
                    tracing::warn!(upstream = %ns, tool = %tool, %reason, "the tool's inputSchema is not used: its calls are not validated");
                    None
                }
            })
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::listing::Entry;
    use serde_json::json;

    fn lists(tools: &[serde_json::Value]) -> Arc<UpstreamLists> {
        let mut ul = UpstreamLists { up: true, listed: true, ..Default::default() };
        ul.items[0] = tools
            .iter()
            .map(|t| Entry { id: t["name"].as_str().unwrap().into(), raw: Bytes::from(t.to_string()) })
            .collect();
        Arc::new(ul)
    }

    fn add(kind: &str) -> serde_json::Value {
        json!({"name": "add", "inputSchema": {"type": "object", "properties": {"a": {"type": kind}}, "required": ["a"]}})
    }

    #[test]
    fn validators_follow_the_lists_and_are_kept_while_a_definition_stays() {
        let v = Validators::default();
        let ns: Arc<str> = Arc::from("up");
        let first = lists(&[add("number"), json!({"name": "free"})]);
        assert!(v.check(&ns, &first, "add", Some(br#"{"a": 1}"#)).is_ok());
        let e = v.check(&ns, &first, "add", Some(br#"{"a": "x"}"#)).unwrap_err();
        assert!(matches!(&e, GatewayError::InvalidParams(m) if m.contains("arguments/a")), "{e}");
        assert!(v.check(&ns, &first, "free", Some(br#"{"anything": 1}"#)).is_ok(), "no schema: not validated");
        assert!(v.check(&ns, &first, "unlisted", Some(b"5")).is_ok(), "not listed: not validated");
        let compiled = |v: &Validators| Arc::clone(&v.tables.load()[&ns].tools["add"]);
        let before = compiled(&v);
        // Re-listed with the same definition: the validator is kept.
        let same = lists(&[add("number")]);
        v.check(&ns, &same, "add", Some(br#"{"a": 1}"#)).unwrap();
        assert!(Arc::ptr_eq(&before, &compiled(&v)));
        // Changed: the new schema applies.
        let changed = lists(&[add("string")]);
        assert!(v.check(&ns, &changed, "add", Some(br#"{"a": "x"}"#)).is_ok());
        assert!(v.check(&ns, &changed, "add", Some(br#"{"a": 1}"#)).is_err());
    }

    #[test]
    fn tables_of_lists_no_snapshot_holds_are_dropped() {
        let v = Validators::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let gone = lists(&[add("number")]);
        v.check(&a, &gone, "add", Some(br#"{"a": 1}"#)).unwrap();
        drop(gone);
        v.check(&b, &lists(&[add("number")]), "add", Some(br#"{"a": 1}"#)).unwrap();
        assert!(!v.tables.load().contains_key(&a));
    }
}
