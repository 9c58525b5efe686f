//! A legacy HTTP+SSE upstream (MCP 2024-11-05 `basic/transports`, "HTTP with SSE"): a `GET`
//! of the configured URL opens the session's stream, whose first event (`endpoint`) names the
//! URI every message is POSTed to; answers, notifications and server-to-client requests all
//! come back on that stream and go through the connection's [`Mux`] like a stdio child's
//! stdout. The stream is the session: when it ends, the connection closes and its supervisor
//! reconnects (a new stream, a new endpoint, a new `initialize`).
//!
//! Bounded like the other transports: one event is at most `max_response_bytes` (a larger one
//! is skipped, counted and logged), and an `endpoint` on another origin than the URL is
//! refused (it would send the session's messages, and its headers, elsewhere).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method as HttpMethod, Request as HttpRequest, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::conn::{ConnError, expect_result};
use super::handshake::{self, Handshake};
use super::http::{Endpoint, HttpClient};
use super::mux::{Action, CancelOnDrop, Mux, Owner};
use super::request::Outbound;
use super::signals::Signals;
use crate::error::{TransportError, TransportKind};
use crate::observe::metrics::METRICS;
use crate::wire::jsonrpc::{Message, write_notification};
use crate::wire::sse;

/// The longest answer body of a POST that is read (the transport's answers come on the
/// stream; a POST's own body is only a status text).
const POST_BODY_LIMIT: usize = 64 * 1024;
/// How long a detached POST (a notification, an answer to the upstream) may take.
const DETACHED_POST: Duration = Duration::from_secs(30);

/// A live HTTP+SSE session with one upstream replica.
pub struct SseConn {
    upstream: String,
    client: HttpClient,
    headers: HeaderMap,
    /// Where messages are POSTed (the `endpoint` event, resolved against the URL).
    endpoint: Uri,
    /// Request multiplexing state.
    pub mux: Mux,
    handshake: OnceLock<Handshake>,
    closed: CancellationToken,
}

impl SseConn {
    /// Open the stream, wait for its `endpoint` event, and meet the upstream with
    /// `initialize` (this transport belongs to the legacy era; there is no probe).
    ///
    /// `owner`: the client session a per-client upstream session serves alone; its
    /// `initialize` declares that client's capabilities instead of the gateway's own.
    ///
    /// Errors: [`ConnError`] when the stream cannot be opened, names no usable endpoint, or
    /// the handshake fails.
    pub async fn connect(
        upstream: &str,
        endpoint: Endpoint,
        signals: Signals,
        owner: Option<Owner>,
    ) -> Result<Arc<SseConn>, ConnError> {
        let Endpoint { client, url, headers, max_response_bytes, .. } = endpoint;
        let mut get = HttpRequest::builder().method(HttpMethod::GET).uri(url.clone());
        for (k, v) in &headers {
            get = get.header(k, v);
        }
        let get = get.header(ACCEPT, "text/event-stream").body(Full::new(Bytes::new())).expect("valid request");
        let resp = client.request(get).await.map_err(|e| ConnError::Transport(TransportError::classify(&e)))?;
        let is_sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.to_str().is_ok_and(|v| v.trim().to_ascii_lowercase().starts_with("text/event-stream")));
        if !resp.status().is_success() || !is_sse {
            let status = resp.status().as_u16();
            return Err(ConnError::Status { status, detail: "the SSE stream was not opened".into() });
        }
        let mut body = resp.into_body();
        let mut decoder = sse::Decoder::new(max_response_bytes);
        let reference = first_endpoint(upstream, &mut body, &mut decoder).await?;
        let target = resolve(&url, &reference).map_err(ConnError::Protocol)?;
        let conn = Arc::new(SseConn {
            upstream: upstream.to_string(),
            client,
            headers,
            endpoint: target,
            mux: Mux::owned(upstream, signals, owner.clone()),
            handshake: OnceLock::new(),
            closed: CancellationToken::new(),
        });
        tokio::spawn(read_loop(Arc::clone(&conn), body, decoder));
        // A handshake abandoned (its deadline passed) or failed must not leave the stream open.
        let unfinished = CloseOnDrop(Some(Arc::clone(&conn)));
        let capabilities = owner.as_ref().and_then(|o| std::str::from_utf8(&o.capabilities).ok());
        let params = handshake::initialize_params(capabilities.unwrap_or(r#"{"sampling":{},"elicitation":{}}"#));
        let answer = conn.call(&Outbound::raw("initialize", Some(&params))).await;
        let h = answer.and_then(|a| {
            let result = expect_result(&a)?;
            handshake::from_initialize(&result).map_err(|e| ConnError::Protocol(e.0))
        });
        let _ = conn.handshake.set(h?);
        unfinished.disarm();
        conn.notify("notifications/initialized");
        Ok(conn)
    }

    /// The handshake.
    pub fn handshake(&self) -> &Handshake {
        self.handshake.get().expect("connected conns have a handshake")
    }

    /// A token cancelled when the session's stream has ended (or was closed).
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// End the session: its stream is dropped, which the transport takes as the end.
    pub fn close(&self) {
        self.closed.cancel();
        self.mux.close_all();
    }

    /// Send one request and wait for its answer on the stream. Dropping the future cancels
    /// the call upstream (`notifications/cancelled`).
    ///
    /// Errors: [`ConnError::Transport`] (marked unsent when the POST's connection could not be
    /// opened, or the stream had already ended); [`ConnError::Status`] when the POST is
    /// refused; [`ConnError::Closed`] when the stream ends before the answer.
    pub async fn call(&self, req: &Outbound) -> Result<Message, ConnError> {
        if self.closed.is_cancelled() {
            let cause =
                TransportError::new(TransportKind::Closed, "the SSE stream has ended; the request was not sent");
            return Err(ConnError::Transport(cause.not_sent()));
        }
        let (tx, rx) = oneshot::channel();
        let id = self.mux.register(Some(tx), req.route.clone(), req.client);
        let mut guard = CancelOnDrop::new(&self.mux, &self.closed, id, |msg| self.post_detached(Bytes::from(msg)));
        let mut body = Vec::with_capacity(256 + req.body_len_hint());
        req.write(&mut body, id, self.handshake.get());
        if let Err(e) = post(&self.client, self.request(Bytes::from(body))).await {
            guard.armed = false;
            self.mux.forget(id);
            if matches!(e, ConnError::Status { status: 404, .. }) {
                // The upstream forgot the session: reconnect.
                self.close();
            }
            return Err(e);
        }
        let answer = tokio::select! {
            answer = rx => answer.unwrap_or(Err(ConnError::Closed)),
            () = self.closed.cancelled() => Err(ConnError::Closed),
        };
        guard.armed = false;
        self.mux.forget(id);
        answer
    }

    /// Post a notification without params, best effort.
    pub fn notify(&self, method: &str) {
        let mut body = Vec::new();
        write_notification(&mut body, method, None);
        self.post_detached(Bytes::from(body));
    }

    fn request(&self, body: Bytes) -> HttpRequest<Full<Bytes>> {
        let mut req = HttpRequest::new(Full::new(body));
        *req.method_mut() = HttpMethod::POST;
        *req.uri_mut() = self.endpoint.clone();
        let headers = req.headers_mut();
        for (k, v) in &self.headers {
            headers.append(k.clone(), v.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        req
    }

    fn post_detached(&self, body: Bytes) {
        let (client, req, upstream) = (self.client.clone(), self.request(body), self.upstream.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(DETACHED_POST, post(&client, req)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(upstream, error = %e, "posting to the SSE upstream failed"),
                Err(_) => tracing::debug!(upstream, "posting to the SSE upstream timed out"),
            }
        });
    }

    fn act(self: &Arc<Self>, action: Action) {
        match action {
            Action::None => {}
            Action::Send(msg) => self.post_detached(msg),
            Action::Relay(relay) => {
                let conn = Arc::clone(self);
                tokio::spawn(async move { conn.post_detached(Bytes::from(relay.answer().await)) });
            }
        }
    }
}

/// POST one message; success is any 2xx (the answer comes on the stream).
async fn post(client: &HttpClient, req: HttpRequest<Full<Bytes>>) -> Result<(), ConnError> {
    let resp = client.request(req).await.map_err(|e| {
        let cause = TransportError::classify(&e);
        ConnError::Transport(if e.is_connect() { cause.not_sent() } else { cause })
    })?;
    let status = resp.status();
    // Read (a bounded part of) the body so the connection can be reused.
    let text =
        Limited::new(resp.into_body(), POST_BODY_LIMIT).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if status.is_success() {
        return Ok(());
    }
    let detail = crate::detect::redact::for_log(&text, 200);
    Err(ConnError::Status { status: status.as_u16(), detail })
}

/// Read the stream up to its `endpoint` event and return that event's data.
///
/// Errors: [`ConnError::Protocol`] when the stream ends (or sends a message) first.
async fn first_endpoint(upstream: &str, body: &mut Incoming, decoder: &mut sse::Decoder) -> Result<String, ConnError> {
    loop {
        while let Some(event) = decoder.next_event().unwrap_or(None) {
            if event.event.as_deref() == Some("endpoint") {
                return String::from_utf8(event.data.to_vec())
                    .map(|s| s.trim().to_string())
                    .map_err(|_| ConnError::Protocol("the endpoint event is not UTF-8".into()));
            }
            tracing::debug!(upstream, event = ?event.event, "an SSE upstream sent an event before its endpoint");
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    decoder.push(&data);
                }
            }
            Some(Err(e)) => return Err(ConnError::Transport(TransportError::classify(&e))),
            None => return Err(ConnError::Protocol("the SSE stream ended before its endpoint event".into())),
        }
    }
}

/// Read the session's stream until it ends: each `message` event goes through the mux.
async fn read_loop(conn: Arc<SseConn>, mut body: Incoming, mut decoder: sse::Decoder) {
    loop {
        loop {
            match decoder.next_event() {
                Ok(Some(event)) => on_event(&conn, event),
                Ok(None) => break,
                Err(e) => {
                    METRICS.upstream_discarded(
                        METRICS.upstream_name(&Arc::from(conn.upstream.as_str())),
                        "oversized_message",
                    );
                    tracing::warn!(upstream = %conn.upstream, max_bytes = e.0, "skipped an SSE event larger than max_response_bytes");
                }
            }
        }
        let frame = tokio::select! {
            f = body.frame() => f,
            () = conn.closed.cancelled() => break,
        };
        match frame {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    decoder.push(&data);
                }
            }
            Some(Err(e)) => {
                tracing::debug!(upstream = %conn.upstream, error = %TransportError::classify(&e), "the SSE stream failed");
                break;
            }
            None => break,
        }
    }
    conn.close();
}

fn on_event(conn: &Arc<SseConn>, event: sse::Event) {
    match event.event.as_deref() {
        None | Some("message") if !event.data.is_empty() => match Message::parse(event.data) {
            Ok(msg) => conn.act(conn.mux.dispatch(msg, None)),
            Err(e) => tracing::warn!(upstream = %conn.upstream, error = e.reason(), "ignored a non-JSON-RPC SSE event"),
        },
        Some("endpoint") => {
            tracing::debug!(upstream = %conn.upstream, "ignored a second endpoint event (the session keeps its first)")
        }
        _ => {}
    }
}

/// Closes a connection whose handshake did not finish (failed, or its future was dropped).
struct CloseOnDrop(Option<Arc<SseConn>>);

impl CloseOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.close();
        }
    }
}

/// The origin of `uri`: scheme, lower-case host, port (the scheme's default when absent).
fn origin(uri: &Uri) -> Option<(String, String, u16)> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some((scheme, uri.host()?.to_ascii_lowercase(), port))
}

/// Resolve the `endpoint` event's URI reference against the stream's `base` URL (RFC 3986
/// §5.2, for the forms servers send: absolute, `//authority/…`, `/path?query`, `path?query`).
///
/// Errors: a reason when it is not a URI, or names another origin than `base`.
pub fn resolve(base: &Uri, reference: &str) -> Result<Uri, String> {
    let bad = || format!("the endpoint {:?} is not a usable URI", crate::observe::redact::url(reference));
    let text = if reference.contains("://") {
        reference.to_string()
    } else if let Some(rest) = reference.strip_prefix("//") {
        format!("{}://{rest}", base.scheme_str().unwrap_or("http"))
    } else {
        let authority = base.authority().ok_or_else(bad)?;
        let scheme = base.scheme_str().ok_or_else(bad)?;
        let path = if reference.starts_with('/') {
            reference.to_string()
        } else {
            let dir = base.path().rsplit_once('/').map_or("", |(dir, _)| dir);
            format!("{dir}/{reference}")
        };
        format!("{scheme}://{authority}{path}")
    };
    let uri: Uri = text.parse().map_err(|_| bad())?;
    if origin(&uri).is_none() || origin(&uri) != origin(base) {
        return Err(format!(
            "the endpoint {:?} is on another origin than the stream; refused",
            crate::observe::redact::url(reference)
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_against_the_stream_url_and_stay_on_its_origin() {
        let base: Uri = "http://127.0.0.1:3001/sse".parse().unwrap();
        let ok = |r: &str| resolve(&base, r).unwrap().to_string();
        assert_eq!(ok("/message?sessionId=abc"), "http://127.0.0.1:3001/message?sessionId=abc");
        assert_eq!(ok("message?sessionId=abc"), "http://127.0.0.1:3001/message?sessionId=abc");
        assert_eq!(ok("http://127.0.0.1:3001/m?s=1"), "http://127.0.0.1:3001/m?s=1");
        assert_eq!(ok("//127.0.0.1:3001/m"), "http://127.0.0.1:3001/m");
        let nested: Uri = "https://h.example/a/b/sse".parse().unwrap();
        assert_eq!(resolve(&nested, "messages?x=1").unwrap().to_string(), "https://h.example/a/b/messages?x=1");
        assert_eq!(resolve(&nested, "https://H.example:443/m").unwrap().to_string(), "https://H.example:443/m");
        for foreign in ["http://evil.example/m", "https://127.0.0.1:3001/m", "http://127.0.0.1:3002/m", "//evil/m"] {
            assert!(resolve(&base, foreign).unwrap_err().contains("another origin"), "{foreign}");
        }
        assert!(resolve(&base, "/has space").is_err());
    }
}
