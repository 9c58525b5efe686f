//! HTTP responses of the MCP endpoints that are not errors: content negotiation, a running
//! call's frames as JSON or SSE, standalone notification streams, the checks of a POST, and
//! bounded body reading.

use std::convert::Infallible;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::HeaderMap;
use http::HeaderValue;
use http::header::{ACCEPT, CONTENT_TYPE};
use http_body_util::{BodyExt, Limited};
use tokio::sync::mpsc;

use super::Shared;
use super::rescue::{refuse, respond};
use super::stream::{Frame, KEEPALIVE};
use crate::error::GatewayError;
use crate::wire::mcp::Era;
use crate::wire::sse;

/// What the client's `Accept` header allows.
#[derive(Clone, Copy, Debug)]
pub struct Accepts {
    /// `application/json`.
    pub json: bool,
    /// `text/event-stream`.
    pub sse: bool,
}

/// Read `Accept`; a missing header or a wildcard accepts both.
pub fn accepts(headers: &HeaderMap) -> Accepts {
    let all: Vec<&str> = headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect();
    if all.is_empty() {
        return Accepts { json: true, sse: true };
    }
    let all = all.join(",");
    let mut a = Accepts { json: false, sse: false };
    for part in all.split(',') {
        let media = part.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "*/*" => {
                return Accepts { json: true, sse: true };
            }
            "application/json" | "application/*" => a.json = true,
            "text/event-stream" | "text/*" => a.sse = true,
            _ => {}
        }
    }
    a
}

/// Answer from a running call's frames: JSON when the answer comes first, SSE when a message
/// must be streamed before it (or a keep-alive is due).
pub async fn frames_response(mut frames: mpsc::Receiver<Frame>, era: Era, sse_ok: bool) -> Response {
    let first = match frames.recv().await {
        Some(Frame::Final(answer)) => return respond(answer),
        // A cancelled request is owed no answer; an empty stream says so where the client
        // accepts streams, the -32800 error otherwise.
        Some(Frame::Cancelled(_)) if sse_ok => return sse_response(Body::empty()),
        Some(Frame::Cancelled(answer)) => return respond(answer),
        Some(frame) => frame,
        None => return refuse(&GatewayError::NoAnswer, None, era),
    };
    let head = futures::stream::once(async move { first });
    let rest = futures::stream::unfold(frames, |mut f| async move { f.recv().await.map(|frame| (frame, f)) });
    let body = head.chain(rest).scan(false, |done, frame| {
        let out = if *done {
            None
        } else {
            let mut buf = Vec::new();
            match frame {
                Frame::Event(data) => sse::write_event(&mut buf, &data, None),
                Frame::Final(answer) => {
                    *done = true;
                    sse::write_event(&mut buf, &answer.message, None);
                }
                Frame::Keepalive => buf.extend_from_slice(sse::KEEPALIVE),
                Frame::Cancelled(_) => *done = true,
            }
            Some(Ok::<_, Infallible>(Bytes::from(buf)))
        };
        futures::future::ready(out)
    });
    sse_response(Body::from_stream(body))
}

/// An SSE response around `body`.
pub fn sse_response(body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// An SSE stream of standalone notifications (legacy GET stream, modern listen stream) that
/// ends when `end` fires; keep-alive comments keep idle proxies from closing it.
pub fn notification_stream(
    rx: mpsc::Receiver<Bytes>,
    first: Option<Bytes>,
    end: [tokio_util::sync::CancellationToken; 2],
    keep: impl Send + 'static,
) -> Body {
    struct State<K> {
        rx: mpsc::Receiver<Bytes>,
        first: Option<Bytes>,
        end: [tokio_util::sync::CancellationToken; 2],
        _keep: K,
    }
    let state = State { rx, first, end, _keep: keep };
    let stream = futures::stream::unfold(state, |mut s| async move {
        if let Some(first) = s.first.take() {
            let mut buf = Vec::new();
            sse::write_event(&mut buf, &first, None);
            return Some((Ok::<_, Infallible>(Bytes::from(buf)), s));
        }
        let next = tokio::select! {
            m = s.rx.recv() => m,
            () = s.end[0].cancelled() => None,
            () = s.end[1].cancelled() => None,
            () = tokio::time::sleep(KEEPALIVE) => Some(Bytes::new()),
        };
        let msg = next?;
        let mut buf = Vec::new();
        if msg.is_empty() {
            buf.extend_from_slice(sse::KEEPALIVE);
        } else {
            sse::write_event(&mut buf, &msg, None);
        }
        Some((Ok(Bytes::from(buf)), s))
    });
    Body::from_stream(stream)
}

/// Read a request body within the configured limit.
///
/// Errors: [`GatewayError::BodyTooLarge`] past `limit` bytes, [`GatewayError::BodyUnreadable`]
/// when it cannot be read.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Err(e) => Err(GatewayError::BodyUnreadable(e.to_string())),
    }
}

/// The checks every POST passes before its body is read, in order: drain, `Accept`,
/// `Content-Type`.
pub fn check_post(shared: &Shared, headers: &HeaderMap) -> Result<Accepts, GatewayError> {
    if shared.draining.is_cancelled() {
        return Err(GatewayError::ShuttingDown);
    }
    let accept = accepts(headers);
    if !accept.json && !accept.sse {
        return Err(GatewayError::NotAcceptable("accept application/json or text/event-stream"));
    }
    if let Some(ct) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !ct.trim().to_ascii_lowercase().starts_with("application/json")
    {
        return Err(GatewayError::UnsupportedMediaType);
    }
    Ok(accept)
}

/// Read a POST body within `max_body_bytes` and `body_read_timeout`.
///
/// Errors: the refusal to answer with: 413 past the limit, 400 when unreadable, 408 (and the
/// connection closed) when late.
pub async fn read_post_body(shared: &Shared, body: Body) -> Result<Bytes, Response> {
    let limit = shared.config.body_read_timeout;
    match tokio::time::timeout(limit, read_body(body, shared.config.max_body_bytes)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(refuse(&e, None, Era::Legacy)),
        Err(_) => {
            // RFC 9110 §15.5.9: a server that times out waiting for a request closes the
            // connection; what is left of the body is never read.
            let mut resp = refuse(&GatewayError::BodyTimeout(limit), None, Era::Legacy);
            resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            Err(resp)
        }
    }
}
