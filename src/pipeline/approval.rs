//! Middleware that applies the approval policy (`crate::approvals`) to each `tools/call`:
//! `allow` passes it on, `deny` refuses it (-32012), `approve` asks for approval first. The
//! calling client is asked when it can be: a client that declared the `elicitation` capability
//! and has a stream for the call gets the gateway's own `elicitation/create` (form mode: the
//! tool, its upstream and its arguments, redacted by `crate::detect`) — on the call's stream
//! for a legacy client, as an `input_required` result with a sealed `requestState` for a
//! modern one (`front::input` parks the call and binds it to the caller). Otherwise the call is
//! held for an operator (`sekisho approvals`, the admin API, the dashboard). Either way, no
//! answer within `approvals.timeout` refuses it (-32024); a decline or a denial refuses it
//! (-32023). Decisions are audited (`Audit::approval`).
//!
//! A call with `_meta["io.sekisho/dryRun"] = true` goes through everything up to here —
//! validated, authorised, approved — and is answered by the gateway without being sent.
//!
//! ```toml
//! [approvals]
//! destructive = "approve"
//! ```

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tower::{Service, ServiceExt};

use super::ctx::Routed;
use super::parts::{ClientAnswer, ClientEvent, Origin, Params, Principal, Reply, ReplyFuture};
use super::routed::RoutedStep;
use super::steps::Named;
use crate::approvals::{Action, Approvals, Decision, Pending, detail, id_text};
use crate::audit::redact::{Detectors, Redact};
use crate::error::GatewayError;
use crate::upstream::mux::declared;
use crate::upstream::request::Body;
use crate::wire::jsonrpc::Method;
use crate::wire::mcp::{self, Era};

/// The `approval` step.
#[derive(Clone)]
pub struct Approval {
    approvals: Arc<Approvals>,
}

impl Approval {
    /// The step over `approvals`' policy and held calls.
    pub fn new(approvals: &Arc<Approvals>) -> Self {
        Approval { approvals: Arc::clone(approvals) }
    }
}

impl Named for Approval {
    fn name(&self) -> &'static str {
        "approval"
    }
}

/// Whether the call asks for a dry run (`_meta["io.sekisho/dryRun"]` is `true`).
fn dry_run(params: &Params) -> bool {
    params.meta.as_ref().and_then(|m| m.get(mcp::META_DRY_RUN)) == Some(b"true".as_slice())
}

fn ready(out: Result<Reply, GatewayError>) -> ReplyFuture {
    Box::pin(std::future::ready(out))
}

impl RoutedStep for Approval {
    fn serve<S>(&self, routed: Routed, inner: S) -> Result<ReplyFuture, Routed>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
        S::Future: Send,
    {
        if routed.request.method != Method::ToolsCall {
            return Err(routed);
        }
        let Body::Client { params, .. } = &routed.request.body else { return Err(routed) };
        let dry = dry_run(params);
        let tenant = routed.caller.tenant();
        let upstream = &routed.target.upstream.name;
        let tool = routed.name().unwrap_or_default();
        match self.approvals.config.action(upstream, tool, tenant, routed.target.destructive) {
            Action::Deny => {
                let why = format!("the approval policy denies tool {tool:?} of upstream {upstream:?}");
                Ok(ready(Err(GatewayError::Forbidden(why))))
            }
            Action::Allow if !dry => Err(routed),
            Action::Allow => Ok(ready(Ok(dry_run_reply(&routed, "not_required")))),
            Action::Approve => {
                let approvals = Arc::clone(&self.approvals);
                Ok(Box::pin(async move {
                    approve(&approvals, &routed).await?;
                    if dry {
                        return Ok(dry_run_reply(&routed, "approved"));
                    }
                    inner.oneshot(routed).await
                }))
            }
        }
    }
}

/// The call as its approver sees it: the tool as the caller named it, its upstream, the
/// digest of its canonical arguments and the arguments redacted within `max_shown_bytes`.
fn describe(approvals: &Approvals, routed: &Routed) -> Pending {
    let params = match &routed.request.body {
        Body::Client { params, .. } => Some(params),
        Body::Raw(_) => None,
    };
    let arguments: serde_json::Value = params
        .and_then(|p| p.get("arguments"))
        .and_then(|raw| serde_json::from_slice(raw).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    let mut canonical = Vec::with_capacity(64);
    crate::cache::key::canonical_json(&arguments, &mut canonical);
    let tool = params.and_then(|p| p.str("name")).map(|n| n.into_owned());
    Pending {
        id: String::new(),
        caller: routed.caller.label().to_string(),
        tenant: routed.caller.tenant().map(str::to_string),
        upstream: routed.target.upstream.name.to_string(),
        tool: tool.unwrap_or_else(|| routed.name().unwrap_or_default().to_string()),
        arguments_digest: hex::encode(Sha256::digest(&canonical)),
        arguments: Detectors.redact(arguments, approvals.config.max_shown_bytes),
        reason: if routed.target.destructive { "destructive" } else { "rule" },
        held_at: String::new(),
        expires_in_ms: 0,
    }
}

/// Ask for approval of `routed`: of the client through elicitation when it can be asked, else
/// of an operator. `Ok` once approved.
///
/// Errors: [`GatewayError::ApprovalRefused`] (declined, denied, the client could not be asked,
/// too many calls held) and [`GatewayError::ApprovalTimedOut`].
async fn approve(approvals: &Arc<Approvals>, routed: &Routed) -> Result<(), GatewayError> {
    let mut shown = describe(approvals, routed);
    let timeout = approvals.config.timeout;
    let audit = |shown: &Pending, decider: &Principal, outcome: &str, via: &str| {
        if let Some(audit) = approvals.audit() {
            audit.approval(decider, &shown.tool, outcome, detail(shown, via, None));
        }
    };
    let caller = &routed.caller;
    if let Some(route) = routed.request.route.as_ref().filter(|r| declared(&r.capabilities, "elicitation")) {
        let (reply, answer) = oneshot::channel();
        let params = elicitation(&shown, timeout, routed.input_errors_as_results);
        let event = ClientEvent::Request { method: "elicitation/create".into(), params: Some(params), reply };
        if route.events.try_send(event).is_ok() {
            let (outcome, result) = match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(ClientAnswer::Result(r))) if accepted(&r) => ("approved", Ok(())),
                Ok(Ok(_)) => ("declined", Err(refused("declined", "the client declined the call"))),
                Ok(Err(_)) => ("unreachable", Err(refused("unreachable", "the client could not be asked"))),
                Err(_) => ("expired", Err(GatewayError::ApprovalTimedOut(timeout))),
            };
            audit(&shown, caller, outcome, "elicitation");
            return result;
        }
    }
    let mut ticket = approvals.hold(caller, shown.clone()).map_err(|e| refused("full", &e.to_string()))?;
    shown.id = id_text(&ticket.id);
    tracing::warn!(id = %shown.id, caller = %shown.caller, tool = %shown.tool, "a call awaits an operator's approval");
    match tokio::time::timeout(timeout, &mut ticket.decision).await {
        // Audited by `Approvals::decide`, with the operator who decided.
        Ok(Ok(Decision::Approved(_))) => Ok(()),
        Ok(Ok(Decision::Denied(_, note))) => {
            let note = note.map(|n| format!(": {n}")).unwrap_or_default();
            Err(refused("denied", &format!("an operator denied the call{note}")))
        }
        Ok(Err(_)) | Err(_) => {
            audit(&shown, caller, "expired", "operator");
            Err(GatewayError::ApprovalTimedOut(timeout))
        }
    }
}

fn refused(reason: &'static str, message: &str) -> GatewayError {
    GatewayError::ApprovalRefused(reason, message.to_string())
}

/// Whether an `elicitation/create` result approves: `action` is `accept` and its
/// `content.approve` is not `false`.
fn accepted(result: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(result) else { return false };
    v["action"] == "accept" && v.pointer("/content/approve") != Some(&serde_json::Value::Bool(false))
}

/// The params of the gateway's `elicitation/create` (2025-06-18+ `client/elicitation`, form
/// mode): a message naming the tool, its upstream and its redacted arguments, and a schema of
/// one boolean, `approve`; `mode` is sent to clients of 2025-11-25 and later (`modes`).
fn elicitation(shown: &Pending, timeout: std::time::Duration, modes: bool) -> Bytes {
    let why = if shown.reason == "destructive" {
        "the tool says it may make destructive changes"
    } else {
        "the gateway's policy asks for approval of this tool"
    };
    let message = format!(
        "Approve this call? Tool {} on upstream {} will run with these arguments (sensitive values redacted): {}. \
         It needs approval because {why}. Without an answer within {} s it is refused.",
        shown.tool,
        shown.upstream,
        shown.arguments,
        timeout.as_secs()
    );
    let mut params = serde_json::json!({
        "message": message,
        "requestedSchema": {
            "type": "object",
            "properties": {"approve": {"type": "boolean", "title": "Run this call", "default": false}},
            "required": ["approve"],
        },
        "_meta": {"io.sekisho/approval": {
            "tool": shown.tool, "upstream": shown.upstream, "argumentsDigest": shown.arguments_digest,
        }},
    });
    if modes {
        params["mode"] = "form".into();
    }
    Bytes::from(params.to_string())
}

/// The gateway's answer to a dry run: a tool result saying the call was not sent, marked
/// `_meta["io.sekisho/dryRun"] = true`; `approval` is `approved` or `not_required`.
fn dry_run_reply(routed: &Routed, approval: &str) -> Reply {
    let tool = routed.name().unwrap_or_default();
    let text = format!(
        "dry run: the call of tool {tool:?} was validated, authorised and {} and was not sent to upstream {:?}",
        if approval == "approved" { "approved" } else { "needed no approval" },
        routed.target.upstream.name
    );
    let mut result = serde_json::json!({
        "content": [{"type": "text", "text": text}],
        "_meta": {(mcp::META_DRY_RUN): true, "io.sekisho/approval": approval},
    });
    if routed.client_era == Era::Modern {
        result["resultType"] = "complete".into();
    }
    Reply::Result { body: Bytes::from(result.to_string()), origin: Origin::Gateway }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_accept_that_does_not_say_no_approves() {
        assert!(accepted(br#"{"action":"accept","content":{"approve":true}}"#));
        assert!(accepted(br#"{"action":"accept"}"#));
        assert!(!accepted(br#"{"action":"accept","content":{"approve":false}}"#));
        assert!(!accepted(br#"{"action":"decline"}"#));
        assert!(!accepted(br#"{"action":"cancel"}"#));
        assert!(!accepted(b"not json"));
    }

    #[test]
    fn a_dry_run_is_asked_for_with_true_only() {
        let p = |raw: &'static str| Params::parse(Bytes::from_static(raw.as_bytes())).unwrap();
        assert!(dry_run(&p(r#"{"name":"t","_meta":{"io.sekisho/dryRun":true}}"#)));
        assert!(!dry_run(&p(r#"{"name":"t","_meta":{"io.sekisho/dryRun":"true"}}"#)));
        assert!(!dry_run(&p(r#"{"name":"t","_meta":{"io.sekisho/dryRun":false}}"#)));
        assert!(!dry_run(&p(r#"{"name":"t"}"#)));
    }
}
