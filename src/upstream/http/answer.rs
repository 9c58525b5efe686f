//! Reading an HTTP upstream's answer to one request: a JSON body, or an SSE stream on which
//! notifications and server-to-client requests may come first and which a legacy upstream may
//! end early to be resumed (`Last-Event-ID`); never more than `max_response_bytes` of it.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method as HttpMethod, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;

use super::{HttpConn, MAX_RESUME_WAIT_MS, MAX_RESUMES};
use crate::error::TransportError;
use crate::upstream::conn::ConnError;
use crate::wire::jsonrpc::{Kind, Message};
use crate::wire::sse;

impl HttpConn {
    /// Read the answer to request `id` from a POST response: JSON, or an SSE stream on which
    /// other messages (progress, logs, server-to-client requests) may come first.
    pub(super) async fn read_answer(&self, resp: http::Response<Incoming>, id: u64) -> Result<Message, ConnError> {
        let status = resp.status();
        let sse = resp.headers().get(CONTENT_TYPE).is_some_and(|v| {
            let v = v.as_bytes();
            v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream")
        });
        if status == StatusCode::NOT_FOUND && self.session.is_some() {
            return Err(ConnError::SessionExpired);
        }
        if sse && status.is_success() {
            return self.read_stream(resp.into_body(), id).await;
        }
        let body = match Limited::new(resp.into_body(), self.max_response_bytes).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => return Err(ConnError::TooLarge(self.max_response_bytes)),
            Err(e) => return Err(ConnError::Transport(TransportError::classify(e.as_ref()))),
        };
        if status == StatusCode::ACCEPTED {
            return Err(ConnError::Protocol("202 Accepted without an answer to a request".into()));
        }
        // Error statuses often carry a JSON-RPC error (e.g. modern 400/-32021, 404/-32601):
        // that is the upstream's answer, not a transport failure.
        match Message::parse(body.clone()) {
            Ok(msg) if matches!(msg.kind, Kind::Response { .. }) => Ok(msg),
            _ if status.is_success() => Err(ConnError::Protocol(format!(
                "expected a JSON-RPC response, got {:?}",
                crate::detect::redact::for_log(&body, 200)
            ))),
            _ => Err(ConnError::Status { status: status.as_u16(), detail: crate::detect::redact::for_log(&body, 200) }),
        }
    }

    /// Read SSE events until the response to `id`. A legacy upstream may end the stream early
    /// and expect the client to resume it (2025-11-25 `basic/transports`, "Resumability and
    /// Redelivery"): then the gateway waits the advertised `retry`, sends `GET` with
    /// `Last-Event-ID`, and keeps reading from the replayed stream.
    async fn read_stream(&self, mut body: Incoming, id: u64) -> Result<Message, ConnError> {
        let want = id.to_string();
        let mut last_event_id: Option<String> = None;
        let mut retry = Duration::from_millis(100);
        let mut resumes = 0;
        loop {
            let mut decoder = sse::Decoder::new(self.max_response_bytes);
            loop {
                let frame = match body.frame().await {
                    Some(Ok(frame)) => frame,
                    Some(Err(e)) if last_event_id.is_none() => {
                        return Err(ConnError::Transport(TransportError::classify(&e)));
                    }
                    Some(Err(_)) | None => break,
                };
                let Ok(data) = frame.into_data() else { continue };
                decoder.push(&data);
                // An event over the limit on a call's stream is most likely its answer: the call
                // fails at once rather than wait for an answer that was dropped.
                while let Some(event) = decoder.next_event().map_err(|e| ConnError::TooLarge(e.0))? {
                    if let Some(ms) = event.retry_ms {
                        retry = Duration::from_millis(ms.min(MAX_RESUME_WAIT_MS));
                    }
                    if event.id.is_some() {
                        last_event_id.clone_from(&event.id);
                    }
                    if event.data.is_empty() || event.event.as_deref().is_some_and(|e| e != "message") {
                        continue;
                    }
                    let Ok(msg) = Message::parse(event.data) else { continue };
                    if matches!(msg.kind, Kind::Response { .. })
                        && msg.id().is_some_and(|i| i.as_bytes() == want.as_bytes())
                    {
                        return Ok(msg);
                    }
                    self.act(self.mux.dispatch(msg, Some(id)));
                }
            }
            let Some(resume_from) = last_event_id.clone().filter(|_| self.session.is_some() && resumes < MAX_RESUMES)
            else {
                return Err(ConnError::Protocol("the stream ended before the response".into()));
            };
            resumes += 1;
            // The id is the upstream's text: one that is not a valid header value cannot be
            // sent back, and the stream cannot be resumed.
            let Ok(resume_from) = HeaderValue::try_from(resume_from) else {
                return Err(ConnError::Protocol("the stream ended early and its event id cannot be sent back".into()));
            };
            tokio::time::sleep(retry).await;
            let Ok(req) = self
                .base_request(HttpMethod::GET, self.version())
                .header(ACCEPT, "text/event-stream")
                .header("last-event-id", resume_from)
                .body(Full::new(Bytes::new()))
            else {
                return Err(ConnError::Protocol("cannot build the request that resumes the stream".into()));
            };
            let resp = self.send(req).await?;
            if !resp.status().is_success() {
                return Err(ConnError::Status {
                    status: resp.status().as_u16(),
                    detail: "resuming the stream with Last-Event-ID failed".into(),
                });
            }
            body = resp.into_body();
        }
    }
}
