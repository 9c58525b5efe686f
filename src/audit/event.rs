//! What the call path hands the audit writer: a [`CallEvent`] made of cheap clones (the params'
//! bytes, the caller's `Arc`s, a few labels), turned into a [`Record`] on the writer's task —
//! parsing, digesting and redacting happen there, never on the call path.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::record::{Kind, Record};
use super::redact::Redact;
use crate::cache::key::{canonical_json, strict_json};
use crate::pipeline::parts::Principal;
use crate::wire::object::ObjectView;

/// How a call ended, as the audit step saw it.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A result.
    Ok,
    /// A tool result with `isError: true`.
    ToolError,
    /// An upstream's JSON-RPC error object (its code is read on the writer's task).
    RpcError(Bytes),
    /// A gateway error: its JSON-RPC code and outcome label (`GatewayError::class`).
    Error {
        /// The JSON-RPC code.
        code: i64,
        /// The metric outcome label.
        label: &'static str,
    },
}

/// One finished audited call.
#[derive(Clone, Debug)]
pub struct CallEvent {
    /// The method (`tools/call`, `resources/read`, `prompts/get`).
    pub method: &'static str,
    /// The raw params object.
    pub params: Bytes,
    /// Who called.
    pub principal: Principal,
    /// When it finished.
    pub at: SystemTime,
    /// From receipt to answer.
    pub duration: Duration,
    /// The upstream that answered (or failed), where known.
    pub upstream: Option<Arc<str>>,
    /// How it ended.
    pub outcome: Outcome,
    /// The cache's mark on the answer (`hit`, `miss`, `coalesced`).
    pub cache: Option<&'static str>,
    /// The idempotency step's mark (`replayed`).
    pub idempotency: Option<&'static str>,
}

/// What the writer receives.
#[derive(Debug)]
pub enum Event {
    /// A call, to be turned into a record off the call path.
    Call(CallEvent),
    /// A record made by its source (admin actions, approval decisions: not on the call path).
    Record(Box<Record>),
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

impl CallEvent {
    /// The record of this call: arguments digested and redacted by `redact` within
    /// `max_argument_bytes`, `_meta.traceparent`'s trace id, the upstream's error code.
    pub fn into_record(self, redact: &dyn Redact, max_argument_bytes: usize) -> Record {
        let mut r = Record::new(Kind::Call, timestamp(self.at));
        r.caller = Some(self.principal.label().to_string());
        if let Principal::ApiKey(identity) = &self.principal {
            r.key_id = Some(identity.id.to_string());
            r.tenant = identity.tenant.as_deref().map(str::to_string);
        }
        r.method = Some(self.method.to_string());
        r.upstream = self.upstream.as_deref().map(str::to_string);
        r.duration_ms = Some((self.duration.as_secs_f64() * 1e6).round() / 1e3);
        r.cache = self.cache.map(str::to_string);
        r.idempotency = self.idempotency.map(str::to_string);
        let (outcome, code) = match &self.outcome {
            Outcome::Ok => ("ok", None),
            Outcome::ToolError => ("tool_error", None),
            Outcome::RpcError(body) => ("rpc_error", error_code(body)),
            Outcome::Error { code, label } => (*label, Some(*code)),
        };
        r.outcome = Some(outcome.to_string());
        r.code = code;
        let Ok(view) = ObjectView::parse(&self.params) else { return r };
        let member = |key: &str| view.get(&self.params, key).map(|s| &self.params[s]);
        let name_key = if self.method == "resources/read" { "uri" } else { "name" };
        // A resource's URI (or a name) can carry a secret (`postgres://user:pw@…`) too.
        r.name = view.get_str(&self.params, name_key).map(|s| {
            crate::detect::redact::text(&s, crate::detect::KindSet::ALL, crate::detect::redact::Place::Audit)
                .into_owned()
        });
        let args_key = if self.method == "resources/read" { None } else { Some("arguments") };
        if let Some(raw) = args_key.and_then(member) {
            let (digest, args) = match strict_json(raw) {
                Ok(v) => {
                    let mut canonical = Vec::with_capacity(raw.len());
                    canonical_json(&v, &mut canonical);
                    (Sha256::digest(&canonical), redact.redact(v, max_argument_bytes))
                }
                Err(_) => (Sha256::digest(raw), serde_json::Value::String("<arguments that are not JSON>".into())),
            };
            r.args_digest = Some(hex::encode(digest));
            r.args = Some(args);
        }
        r.trace_id = member("_meta").and_then(trace_id);
        r
    }
}

/// The `code` of a JSON-RPC error object.
fn error_code(body: &[u8]) -> Option<i64> {
    let view = ObjectView::parse(body).ok()?;
    std::str::from_utf8(&body[view.get(body, "code")?]).ok()?.parse().ok()
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) in `_meta`.
fn trace_id(meta: &[u8]) -> Option<String> {
    let view = ObjectView::parse(meta).ok()?;
    let parent = view.get_str(meta, "traceparent")?;
    let id = parent.split('-').nth(1)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::redact::KeyNames;
    use crate::pipeline::parts::Identity;

    fn call(params: &str) -> CallEvent {
        let identity = Identity { id: "ops".into(), tenant: Some("acme".into()), ..Default::default() };
        CallEvent {
            method: "tools/call",
            params: Bytes::from(params.to_string()),
            principal: Principal::ApiKey(Arc::new(identity)),
            at: SystemTime::UNIX_EPOCH,
            duration: Duration::from_micros(1500),
            upstream: Some("echo".into()),
            outcome: Outcome::RpcError(Bytes::from_static(br#"{"code":-32602,"message":"no"}"#)),
            cache: None,
            idempotency: None,
        }
    }

    #[test]
    fn a_call_becomes_a_redacted_digested_record() {
        let params = r#"{"name":"echo__echo","arguments":{"b":1,"a":"x","token":"s3cr3t"},
            "_meta":{"traceparent":"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"}}"#;
        let r = call(params).into_record(&KeyNames, 4096);
        assert_eq!(r.name.as_deref(), Some("echo__echo"));
        assert_eq!((r.caller.as_deref(), r.tenant.as_deref()), (Some("ops"), Some("acme")));
        assert_eq!((r.outcome.as_deref(), r.code), (Some("rpc_error"), Some(-32602)));
        assert_eq!(r.duration_ms, Some(1.5));
        assert_eq!(r.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
        assert!(!r.canonical().contains("s3cr3t"));
        // The digest is over the canonical arguments: key order does not change it.
        let same = call(r#"{"name":"echo__echo","arguments":{"a":"x","token":"s3cr3t","b":1}}"#);
        assert_eq!(same.into_record(&KeyNames, 4096).args_digest, r.args_digest);
        assert_eq!(r.at, "1970-01-01T00:00:00.000Z");
    }
}
