//! Middleware that honours idempotency keys on `tools/call`: a repeat of a finished call within
//! the window replays its answer (marked `_meta["io.sekisho/idempotency"]`), a repeat of a
//! running call waits for it (or gets -32014), the same key for a different request gets
//! -32602. The key is bound to its caller and the request's hash (method, upstream, tool,
//! canonical arguments).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tower::{Service, ServiceExt};

use super::ctx::Routed;
use super::parts::{Origin, Reply, ReplyFuture};
use super::routed::RoutedStep;
use super::steps::Named;
use crate::cache::entry::Entry;
use crate::cache::idempotency::{Begin, Idempotency};
use crate::cache::key::{canonical_arguments, request_hash};
use crate::error::GatewayError;
use crate::observe::metrics::METRICS;
use crate::upstream::request::Body;
use crate::wire::jsonrpc::Method;
use crate::wire::mcp;
use crate::wire::object::set_meta_member;

/// Replays, waits for, or runs calls that carry an idempotency key.
#[derive(Clone)]
pub struct IdempotencyKeys {
    records: Arc<Idempotency>,
}

impl IdempotencyKeys {
    /// Keys are checked against `records`.
    pub fn new(records: &Arc<Idempotency>) -> Self {
        IdempotencyKeys { records: Arc::clone(records) }
    }
}

impl Named for IdempotencyKeys {
    fn name(&self) -> &'static str {
        "idempotency"
    }
}

impl RoutedStep for IdempotencyKeys {
    fn serve<S>(&self, routed: Routed, inner: S) -> Result<ReplyFuture, Routed>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
        S::Future: Send,
    {
        let Some(key) = routed.idempotency_key.clone().filter(|_| routed.request.method == Method::ToolsCall) else {
            return Err(routed);
        };
        let records = Arc::clone(&self.records);
        Ok(Box::pin(async move { keyed(&records, &key, routed, inner).await }))
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
    }
    .map_err(GatewayError::InvalidParams)?;
    let hash = request_hash(mcp_method(&routed), &up.name, &tool, &args);
    let running_for = up.longest_call(routed.target.timeout);
    let claim = match records.begin(&routed.caller, key, &hash, running_for).await? {
        Begin::Replay(entry) => {
            METRICS.idempotent_replay(METRICS.upstream_name(&up.name));
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
