//! One client's task status notifications from one HTTP upstream replica (the tasks
//! extension, "Task Status Notifications"): a `subscriptions/listen` of the client's own that
//! names the upstream's task ids, whose `notifications/tasks` go to a callback until the
//! upstream ends the stream or the callback says the client is gone. Not reopened: a client
//! whose stream went quiet polls `tasks/get`, as it may at any time.

use std::sync::Arc;

use bytes::Bytes;
use http::Method as HttpMethod;
use http::header::{ACCEPT, CONTENT_TYPE};
use http_body_util::{BodyExt, Full};

use super::{ACCEPT_BOTH, HttpConn, JSON};
use crate::upstream::request::Outbound;
use crate::wire::jsonrpc::{Kind, Message, Method};
use crate::wire::mcp;
use crate::wire::sse;

/// Open `subscriptions/listen` with `params` (raw JSON, with the client's envelope) on `conn`
/// and hand each `notifications/tasks` it sends to `deliver`, until the stream ends or
/// `deliver` returns `false`. Events over the connection's `max_response_bytes` are skipped.
pub async fn relay(conn: Arc<HttpConn>, params: Bytes, mut deliver: impl FnMut(Message) -> bool) {
    let Some(version) = conn.version() else { return };
    let id = conn.mux.register(None, None, None);
    conn.mux.forget(id);
    let mut body = Vec::new();
    Outbound::raw("subscriptions/listen", Some(&params)).write(&mut body, id, None);
    let req = conn
        .base_request(HttpMethod::POST, Some(version))
        .header(CONTENT_TYPE, JSON)
        .header(ACCEPT, ACCEPT_BOTH)
        .header(mcp::HEADER_METHOD, "subscriptions/listen")
        .body(Full::new(Bytes::from(body)))
        .expect("valid request");
    let resp = tokio::select! {
        r = conn.send(req) => r,
        () = conn.closed.cancelled() => return,
    };
    let Ok(resp) = resp.inspect_err(|e| tracing::debug!(upstream = %conn.upstream, error = %e, "task listen failed"))
    else {
        return;
    };
    if !resp.status().is_success() {
        tracing::debug!(upstream = %conn.upstream, status = %resp.status(), "task listen refused");
        return;
    }
    let mut body = resp.into_body();
    let mut decoder = sse::Decoder::new(conn.max_response_bytes);
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            () = conn.closed.cancelled() => return,
        };
        let Some(Ok(frame)) = frame else { return };
        let Ok(data) = frame.into_data() else { continue };
        decoder.push(&data);
        loop {
            match decoder.next_event() {
                Ok(Some(event)) => {
                    let Ok(msg) = Message::parse(event.data) else { continue };
                    let is_task = matches!(&msg.kind, Kind::Notification { method: Method::Other(m), .. } if &**m == "notifications/tasks");
                    if is_task && !deliver(msg) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
    }
}
