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
use crate::observe::metrics::{METRICS, Name};
use crate::upstream::backoff::Backoff;
use crate::upstream::handshake;
use crate::upstream::request::Outbound;
use crate::wire::jsonrpc::Message;
use crate::wire::mcp::{self, Era};
use crate::wire::sse;

/// Reopening delays: from 500 ms, doubling to 30 s, with equal jitter.
const REOPEN: Backoff = Backoff::equal_jitter_const(Duration::from_millis(500), Duration::from_secs(30));

/// Keep `conn`'s notification stream open until the session closes. A modern stream's filter
/// also asks for the updates of the `watched` resources, and is reopened whenever they change.
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
        let req = if h.era == Era::Legacy {
            conn.base_request(HttpMethod::GET, Some(h.version))
                .header(ACCEPT, "text/event-stream")
                .body(Full::new(Bytes::new()))
        } else {
            let params = listen.flatten().unwrap_or_default();
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
            () = conn.closed.cancelled() => return,
        };
        match outcome {
            Ok(resp) if resp.status().is_success() => {
                failures = 0;
                if let Some(gate) = &conn.gate {
                    gate.opened();
                }
                let mut body = resp.into_body();
                let mut decoder = sse::Decoder::new(conn.max_response_bytes);
                let modern = h.era == Era::Modern;
                let mut refilter = false;
                let mut idle_closed = false;
                let check = tokio::time::sleep(gate::LINGER);
                tokio::pin!(check);
                loop {
                    let frame = tokio::select! {
                        f = body.frame() => f,
                        () = conn.closed.cancelled() => return,
                        r = watched.changed(), if modern => { refilter = r.is_ok(); break }
                        () = check.as_mut(), if conn.gate.is_some() => {
                            if conn.gate.as_ref().is_some_and(|g| g.try_close()) {
                                idle_closed = true;
                                break;
                            }
                            check.as_mut().reset(tokio::time::Instant::now() + gate::LINGER);
                            continue;
                        }
                    };
                    let Some(Ok(frame)) = frame else { break };
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
                                    Name::Shared(Arc::from(conn.upstream.as_str())),
                                    "oversized_message",
                                );
                                tracing::warn!(upstream = %conn.upstream, max_bytes = e.0, "skipped a notification-stream event larger than max_response_bytes");
                            }
                        }
                    }
                }
                if idle_closed {
                    // Nobody wants it: dropping the body ends it upstream; reopened on demand.
                    continue;
                }
                if refilter {
                    // The watched resources changed: the same stream with the new filter, now
                    // (the old one is dropped, which ends it upstream).
                    continue;
                }
            }
            Ok(resp) if resp.status() == StatusCode::METHOD_NOT_ALLOWED => {
                if let Some(gate) = &conn.gate {
                    gate.failed();
                }
                return;
            }
            Ok(resp) if resp.status() == StatusCode::NOT_FOUND && conn.session.is_some() => {
                conn.closed.cancel();
                return;
            }
            Ok(resp) => {
                tracing::debug!(upstream = %conn.upstream, status = %resp.status(), "notification stream refused")
            }
            Err(e) => {
                tracing::debug!(upstream = %conn.upstream, error = %e, "notification stream failed")
            }
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
