//! Middleware that honours idempotency keys on `tools/call`: a repeat of a finished call within
//! the window replays its answer (marked `_meta["io.sekisho/idempotency"]`), a repeat of a
//! running call waits for it (or gets -32014), the same key for a different request gets
//! -32602. The key is bound to its caller and the request's hash (method, upstream, tool,
//! canonical arguments).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tower::{Layer, Service, ServiceExt};

use super::ctx::Routed;
use super::parts::{Origin, Reply};
use super::steps::Steps;
use crate::cache::entry::Entry;
use crate::cache::idempotency::{Begin, Idempotency};
use crate::cache::key::{canonical_arguments, request_hash};
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};
use crate::upstream::request::Body;
use crate::wire::jsonrpc::Method;
use crate::wire::mcp;
use crate::wire::object::set_meta_member;

/// Adds [`IdempotencyStep`] over the process's idempotency records.
#[derive(Clone)]
pub struct IdempotencyLayer {
    records: Arc<Idempotency>,
}

impl IdempotencyLayer {
    /// Keys are checked against `records`.
    pub fn new(records: &Arc<Idempotency>) -> Self {
        IdempotencyLayer { records: Arc::clone(records) }
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = IdempotencyStep<S>;

    fn layer(&self, inner: S) -> IdempotencyStep<S> {
        IdempotencyStep { inner, records: Arc::clone(&self.records) }
    }
}

/// Replays, waits for, or runs calls that carry an idempotency key.
#[derive(Clone)]
pub struct IdempotencyStep<S> {
    inner: S,
    records: Arc<Idempotency>,
}

impl<S: Steps> Steps for IdempotencyStep<S> {
    fn steps(&self, out: &mut Vec<&'static str>) {
        out.push("idempotency");
        self.inner.steps(out);
    }
}

type Keyed = Pin<Box<dyn Future<Output = Result<Reply, GatewayError>> + Send>>;

impl<S> Service<Routed> for IdempotencyStep<S>
where
    S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = futures::future::Either<S::Future, Keyed>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, routed: Routed) -> Self::Future {
        let Some(key) = routed.idempotency_key.clone().filter(|_| routed.request.method == Method::ToolsCall) else {
            return futures::future::Either::Left(self.inner.call(routed));
        };
        let (records, inner) = (Arc::clone(&self.records), self.inner.clone());
        futures::future::Either::Right(Box::pin(async move { keyed(&records, &key, routed, inner).await }))
    }
}

async fn keyed<S>(records: &Arc<Idempotency>, key: &str, routed: Routed, inner: S) -> Result<Reply, GatewayError>
where
    S: Service<Routed, Response = Reply, Error = GatewayError>,
{
    let up = Arc::clone(&routed.target.upstream);
    let tool = routed.name().unwrap_or_default().to_string();
    let args = match &routed.request.body {
        Body::Client { params, .. } => canonical_arguments(params.get("arguments")),
        Body::Raw(_) => canonical_arguments(None),
    };
    let hash = request_hash(mcp_method(&routed), &up.name, &tool, &args);
    let running_for = up.longest_call(routed.target.timeout);
    let claim = match records.begin(&routed.caller, key, &hash, running_for).await? {
        Begin::Replay(entry) => {
            METRICS.idempotent_replay(Name::Shared(Arc::clone(&up.name)));
            return Ok(replayed(&entry));
        }
        Begin::Run(claim) => claim,
    };
    let client_era = routed.client_era;
    let reply = inner.oneshot(routed).await;
    // A call that failed in the gateway without an answer drops its claim: the key is free.
    if let Ok(r) = &reply {
        let (body, error, origin) = match r {
            Reply::Result { body, origin } => (body, false, origin),
            Reply::Error { body, origin } => (body, true, origin),
        };
        let era = match origin {
            Origin::Upstream(era, _) => *era,
            Origin::Gateway => client_era,
        };
        claim.complete(Arc::new(Entry::new(body, error, era, &up.name, &tool, Duration::ZERO, false))).await;
    }
    reply
}

fn mcp_method(routed: &Routed) -> &str {
    routed.request.method.as_str()
}

/// The stored answer of an idempotency key, marked with `_meta["io.sekisho/idempotency"]`.
fn replayed(entry: &Entry) -> Reply {
    let origin = Origin::Upstream(entry.era, Arc::clone(&entry.upstream));
    if entry.error {
        return Reply::Error { body: entry.body.clone(), origin };
    }
    let meta = format!(r#"{{"status":"replayed","ageMs":{}}}"#, entry.age_ms());
    Reply::Result { body: Bytes::from(set_meta_member(&entry.body, mcp::META_IDEMPOTENCY, meta.as_bytes())), origin }
}
