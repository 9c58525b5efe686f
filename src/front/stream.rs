//! Running a call while relaying what happens during it: progress, log messages and
//! server-to-client requests become frames ahead of the final answer. The HTTP front answers
//! with plain JSON when the answer comes first, and commits to an SSE stream only when
//! something must be streamed (or a keep-alive is due).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::messages::relay_request;
use super::rescue::{Answer, cancelled};
use crate::pipeline::parts::ClientEvent;
use crate::session::registry::SessionState;
use crate::wire::mcp::Era;

/// Idle time after which a keep-alive is sent (it commits an HTTP answer to SSE).
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// One piece of what a running call produces.
#[derive(Debug)]
pub enum Frame {
    /// A message for the client before the answer (notification or relayed request).
    Event(Bytes),
    /// The answer; nothing follows.
    Final(Answer),
    /// The client cancelled the request: nothing follows. A response not yet committed to a
    /// stream still needs a body (the -32800 answer); a stream just ends, since receivers of a
    /// cancellation should not answer (2025-11-25 `basic/utilities/cancellation`).
    Cancelled(Answer),
    /// Nothing happened for a while.
    Keepalive,
}

/// Run `answer` on its own task and return its frames. The call is dropped (and so cancelled
/// upstream) when the receiver is dropped, i.e. when the client goes away, or when `cancel`
/// fires (legacy `notifications/cancelled`; the client then gets -32800).
///
/// `relay` is where answers to relayed server-to-client requests are awaited; without it such
/// requests are refused.
pub fn spawn_call(
    id: Bytes,
    era: Era,
    answer: impl Future<Output = Answer> + Send + 'static,
    mut events: mpsc::Receiver<ClientEvent>,
    relay: Option<Arc<SessionState>>,
    cancel: Option<CancellationToken>,
) -> mpsc::Receiver<Frame> {
    let (out, frames) = mpsc::channel(64);
    tokio::spawn(async move {
        tokio::pin!(answer);
        let cancel = cancel.unwrap_or_default();
        let mut keepalive = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            let frame = tokio::select! {
                biased;
                () = out.closed() => return,
                () = cancel.cancelled() => Frame::Cancelled(cancelled(&id, era)),
                Some(event) = events.recv() => match event {
                    ClientEvent::Notification(n) => Frame::Event(n),
                    ClientEvent::Request { method, params, reply } => match &relay {
                        Some(state) => Frame::Event(relay_request(state, &method, params.as_deref(), reply)),
                        None => continue,
                    },
                },
                a = &mut answer => Frame::Final(a),
                _ = keepalive.tick() => Frame::Keepalive,
            };
            let last = matches!(frame, Frame::Final(_) | Frame::Cancelled(_));
            if out.send(frame).await.is_err() || last {
                return;
            }
        }
    });
    frames
}
