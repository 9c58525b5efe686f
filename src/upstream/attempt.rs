//! The innermost step of the per-upstream stack: write the request on the chosen replica's
//! connection, wait for the answer, and turn it into a [`Reply`] (or a typed failure).

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;

use super::conn::ConnError;
use super::connection::Connection;
use super::dispatch::Picked;
use crate::error::{GatewayError, TransportError, TransportKind};
use crate::pipeline::parts::{Origin, Reply, ReplyFuture};
use crate::pipeline::steps::Steps;
use crate::wire::jsonrpc::{Kind, Message, Outcome};
use crate::wire::mcp::Era;

/// Sends one attempt on its replica.
#[derive(Clone, Debug)]
pub struct Attempt {
    upstream: Arc<str>,
}

impl Attempt {
    /// The attempt step of `upstream`.
    pub fn new(upstream: &Arc<str>) -> Self {
        Attempt { upstream: Arc::clone(upstream) }
    }
}

impl Steps for Attempt {
    fn steps(&self, out: &mut Vec<&'static str>) {
        out.push("attempt");
    }
}

impl Service<Picked> for Attempt {
    type Response = Reply;
    type Error = GatewayError;
    type Future = ReplyFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, picked: Picked) -> Self::Future {
        let upstream = Arc::clone(&self.upstream);
        Box::pin(async move {
            let _busy = picked.replica.begin();
            match picked.conn.call(&picked.dispatch.request).await {
                Ok(msg) => reply_of(&upstream, msg, picked.conn.handshake().era),
                Err(e) => Err(failure(&upstream, &picked.conn, e)),
            }
        })
    }
}

/// The typed error of an attempt that got no answer. An HTTP session that failed at the
/// transport level is abandoned, so its supervisor reconnects it (and shows it down meanwhile).
fn failure(upstream: &str, conn: &Connection, e: ConnError) -> GatewayError {
    let upstream = upstream.to_string();
    match e {
        ConnError::Protocol(reason) => return GatewayError::UpstreamProtocol { upstream, reason },
        ConnError::TooLarge(limit) => return GatewayError::UpstreamResponseTooLarge { upstream, limit },
        _ => {}
    }
    if matches!(e, ConnError::Transport(_)) {
        conn.abandon();
    }
    let cause = e.transport().unwrap_or_else(|| TransportError::new(TransportKind::Io, e.to_string()));
    GatewayError::UpstreamTransport { upstream, cause }
}

/// Turn an upstream response into a reply.
///
/// Errors: [`GatewayError::UpstreamProtocol`] when the message is not a response.
pub fn reply_of(upstream: &Arc<str>, msg: Message, era: Era) -> Result<Reply, GatewayError> {
    let origin = || Origin::Upstream(era, Arc::clone(upstream));
    match &msg.kind {
        Kind::Response { outcome: Outcome::Result(span), .. } => {
            Ok(Reply::Result { body: msg.src.slice(span.clone()), origin: origin() })
        }
        Kind::Response { outcome: Outcome::Error(span), .. } => {
            Ok(Reply::Error { body: msg.src.slice(span.clone()), origin: origin() })
        }
        _ => {
            Err(GatewayError::UpstreamProtocol { upstream: upstream.to_string(), reason: "expected a response".into() })
        }
    }
}
