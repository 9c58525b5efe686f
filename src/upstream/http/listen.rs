//! The notification stream of an HTTP upstream session: the legacy GET stream, or a modern
//! `subscriptions/listen`, kept open (and reopened with backoff) so upstream list changes reach
//! the gateway while the session lives. A per-client legacy session holds its GET stream only
//! while its client can use it (`super::gate`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Method as HttpMethod, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;

use super::{ACCEPT_BOTH, HttpConn, JSON, gate};
use crate::observe::metrics::METRICS;
use crate::upstream::backoff::Backoff;
use crate::upstream::handshake;
use crate::upstream::request::Outbound;
use crate::wire::jsonrpc::Message;
use crate::wire::mcp::{self, Era};
use crate::wire::sse;

/// Reopening delays: from 500 ms, doubling to 30 s, with equal jitter.
const REOPEN: Backoff = Backoff::equal_jitter_const(Duration::from_millis(500), Duration::from_secs(30));

/// How one opening of the stream ended.
enum Ended {
    /// The session is closed (or the upstream said it is gone): stop listening.
    Stop,
    /// Open it again now: the watched resources changed, or nobody wants it (a gated session
    /// waits for demand first).
    Again,
    /// It failed or the upstream ended it: open it again after a backoff.
    Failed,
}

/// Keep `conn`'s notification stream open until the session closes. A modern stream's filter
/// also asks for the updates of the `watched` resources, and is reopened whenever they change.
///
/// This task lives as long as the session, so it stays small while it waits: the stream
/// itself (the request, its body, the decoder) lives in a boxed future only while it is open
/// (`open_once`) — an idle per-client session pays for the wait, not for a stream.
pub async fn listen(conn: Arc<HttpConn>, mut watched: watch::Receiver<BTreeSet<Arc<str>>>) {
    let h = conn.handshake().clone();
    let mut failures = 0;
    while !conn.closed.is_cancelled() {
        if let Some(gate) = &conn.gate {
            tokio::select! {
                () = gate.until_wanted() => gate.opening(),
                () = conn.closed.cancelled() => return,
            }
        }
        let listen = (h.era == Era::Modern).then(|| handshake::listen_params(&h, &watched.borrow_and_update()));
        if let Some(None) = listen {
            // Nothing to listen for until a client subscribes to a resource.
            tokio::select! {
                r = watched.changed() => if r.is_err() { return },
                () = conn.closed.cancelled() => return,
            }
            continue;
        }
        let params = listen.flatten();
        match Box::pin(open_once(&conn, &h, params, &mut watched, &mut failures)).await {
            Ended::Stop => return,
            Ended::Again => continue,
            Ended::Failed => {}
        }
        if let Some(gate) = &conn.gate {
            gate.failed();
        }
        tokio::select! {
            () = tokio::time::sleep(REOPEN.delay(failures + 1)) => {}
            () = conn.closed.cancelled() => return,
        }
        failures += 1;
    }
}

/// Open the stream once (a legacy GET, or a modern `subscriptions/listen` with `params`) and
/// read it until it ends.
async fn open_once(
    conn: &Arc<HttpConn>,
    h: &handshake::Handshake,
    params: Option<String>,
    watched: &mut watch::Receiver<BTreeSet<Arc<str>>>,
    failures: &mut u32,
) -> Ended {
    let req = if h.era == Era::Legacy {
        conn.base_request(HttpMethod::GET, Some(h.version))
            .header(ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))
    } else {
        let params = params.unwrap_or_default();
        let id = conn.mux.register(None, None, None);
        conn.mux.forget(id);
        let mut body = Vec::new();
        Outbound::raw("subscriptions/listen", Some(params.as_bytes())).write(&mut body, id, None);
        conn.base_request(HttpMethod::POST, Some(h.version))
            .header(CONTENT_TYPE, JSON)
            .header(ACCEPT, ACCEPT_BOTH)
            .header(mcp::HEADER_METHOD, "subscriptions/listen")
            .body(Full::new(Bytes::from(body)))
    };
    let outcome = tokio::select! {
        r = conn.send(req.expect("valid request")) => r,
        () = conn.closed.cancelled() => return Ended::Stop,
    };
    let resp = match outcome {
        Ok(resp) if resp.status().is_success() => resp,
        Ok(resp) if resp.status() == StatusCode::METHOD_NOT_ALLOWED => {
            if let Some(gate) = &conn.gate {
                gate.failed();
            }
            return Ended::Stop;
        }
        Ok(resp) if resp.status() == StatusCode::NOT_FOUND && conn.session.is_some() => {
            conn.closed.cancel();
            return Ended::Stop;
        }
        Ok(resp) => {
            tracing::debug!(upstream = %conn.upstream, status = %resp.status(), "notification stream refused");
            return Ended::Failed;
        }
        Err(e) => {
            tracing::debug!(upstream = %conn.upstream, error = %e, "notification stream failed");
            return Ended::Failed;
        }
    };
    *failures = 0;
    if let Some(gate) = &conn.gate {
        gate.opened();
    }
    let mut body = resp.into_body();
    let mut decoder = sse::Decoder::new(conn.max_response_bytes);
    let modern = h.era == Era::Modern;
    let check = tokio::time::sleep(gate::LINGER);
    tokio::pin!(check);
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            () = conn.closed.cancelled() => return Ended::Stop,
            // The watched resources changed: the same stream with the new filter, now (the
            // old one is dropped, which ends it upstream).
            r = watched.changed(), if modern => return if r.is_ok() { Ended::Again } else { Ended::Failed },
            () = check.as_mut(), if conn.gate.is_some() => {
                if conn.gate.as_ref().is_some_and(|g| g.try_close()) {
                    // Nobody wants it: dropping the body ends it upstream; reopened on demand.
                    return Ended::Again;
                }
                check.as_mut().reset(tokio::time::Instant::now() + gate::LINGER);
                continue;
            }
        };
        let Some(Ok(frame)) = frame else { return Ended::Failed };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        decoder.push(&data);
        loop {
            match decoder.next_event() {
                Ok(Some(event)) => {
                    if let Ok(msg) = Message::parse(event.data) {
                        conn.act(conn.mux.dispatch(msg, None));
                    }
                }
                Ok(None) => break,
                // Dropped whole; the stream goes on with the next event.
                Err(e) => {
                    METRICS.upstream_discarded(
                        METRICS.upstream_name(&Arc::from(conn.upstream.as_str())),
                        "oversized_message",
                    );
                    tracing::warn!(upstream = %conn.upstream, max_bytes = e.0, "skipped a notification-stream event larger than max_response_bytes");
                }
            }
        }
    }
}
