//! Middleware that hands every `tools/call`, `resources/read` and `prompts/get` to the audit
//! log when it finishes (`crate::audit`): a few cheap clones and one `try_send`; parsing,
//! digesting and redacting happen on the audit writer's task. With `on_audit_failure =
//! "refuse"` a call first takes a buffer slot, and is refused (-32018) when there is none.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures::future::{Either, Ready, ready};
use tokio::sync::mpsc::OwnedPermit;
use tower::Service;

use super::ctx::Call;
use super::parts::{Origin, Principal, Reply};
use super::steps::{Named, Stepped};
use crate::audit::{Audit, CallEvent, Event, OnFailure, Outcome};
use crate::error::GatewayError;
use crate::upstream::translate::has_top_level_key;
use crate::wire::jsonrpc::Method;
use crate::wire::mcp::{self, Era};
use crate::wire::object::ObjectView;

/// The audit step: the audit log's handle.
#[derive(Clone, Debug)]
pub struct Audited(pub Arc<Audit>);

impl Named for Audited {
    fn name(&self) -> &'static str {
        "audit"
    }
}

/// What an audited call carries until it finishes.
struct Pending {
    audit: Arc<Audit>,
    method: &'static str,
    params: Bytes,
    principal: Principal,
    started: Instant,
    /// The buffer slot taken before the call (`refuse`).
    permit: Option<OwnedPermit<Event>>,
}

impl<S> Service<Call> for Stepped<Audited, S>
where
    S: Service<Call, Response = Reply, Error = GatewayError>,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = Either<Ready<Result<Reply, GatewayError>>, AuditedFuture<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let method = match call.method {
            Method::ToolsCall => "tools/call",
            Method::ResourcesRead => "resources/read",
            Method::PromptsGet => "prompts/get",
            _ => return Either::Right(AuditedFuture { inner: self.inner.call(call), pending: None }),
        };
        let audit = &self.step.0;
        let permit = match audit.policy() {
            OnFailure::Serve => None,
            OnFailure::Refuse => match audit.reserve() {
                Ok(p) => Some(p),
                Err(_) => return Either::Left(ready(Err(GatewayError::AuditUnavailable))),
            },
        };
        let pending = Pending {
            audit: Arc::clone(audit),
            method,
            params: call.params.bytes.clone(),
            principal: call.ctx.principal.clone(),
            started: call.ctx.received,
            permit,
        };
        Either::Right(AuditedFuture { inner: self.inner.call(call), pending: Some(pending) })
    }
}

pin_project_lite::pin_project! {
    /// The future of the audit step.
    pub struct AuditedFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F> Future for AuditedFuture<F>
where
    F: Future<Output = Result<Reply, GatewayError>>,
{
    type Output = Result<Reply, GatewayError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Some(p) = this.pending.take() {
            let (upstream, outcome, cache, idempotency) = observe(&out);
            let event = Event::Call(CallEvent {
                method: p.method,
                params: p.params,
                principal: p.principal,
                at: SystemTime::now(),
                duration: p.started.elapsed(),
                upstream,
                outcome,
                cache,
                idempotency,
            });
            match p.permit {
                Some(permit) => {
                    permit.send(event);
                }
                None => p.audit.submit(event),
            }
        }
        Poll::Ready(out)
    }
}

type Observed = (Option<Arc<str>>, Outcome, Option<&'static str>, Option<&'static str>);

/// The upstream, outcome and the cache's and idempotency step's marks of a finished call.
fn observe(out: &Result<Reply, GatewayError>) -> Observed {
    let upstream = |o: &Origin| match o {
        Origin::Upstream(_, name) => Some(Arc::clone(name)),
        Origin::Gateway => None,
    };
    match out {
        Ok(Reply::Result { body, origin }) => {
            let outcome = if super::metered::is_tool_error(body) { Outcome::ToolError } else { Outcome::Ok };
            let (cache, idempotency) = if has_top_level_key(body, "_meta") { marks(body) } else { (None, None) };
            (upstream(origin), outcome, cache, idempotency)
        }
        Ok(Reply::Error { body, origin }) => (upstream(origin), Outcome::RpcError(body.clone()), None, None),
        Err(e) => {
            let class = e.class(Era::Legacy);
            (e.upstream().map(Arc::from), Outcome::Error { code: class.code, label: class.outcome }, None, None)
        }
    }
}

/// The gateway's `_meta` marks on a result: `io.sekisho/cache` and `io.sekisho/idempotency` status.
fn marks(body: &[u8]) -> (Option<&'static str>, Option<&'static str>) {
    let status = |meta: &[u8], key: &str| -> Option<&'static str> {
        let view = ObjectView::parse(meta).ok()?;
        let mark = &meta[view.get(meta, key)?];
        let inner = ObjectView::parse(mark).ok()?;
        Some(match inner.get_str(mark, "status")?.as_ref() {
            "hit" => "hit",
            "miss" => "miss",
            "coalesced" => "coalesced",
            "replayed" => "replayed",
            _ => "other",
        })
    };
    let Some(view) = ObjectView::parse(body).ok() else { return (None, None) };
    let Some(span) = view.get(body, "_meta") else { return (None, None) };
    let meta = &body[span];
    (status(meta, mcp::META_CACHE), status(meta, mcp::META_IDEMPOTENCY))
}
