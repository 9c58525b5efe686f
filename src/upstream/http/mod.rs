//! A Streamable HTTP upstream (MCP `basic/transports`): pooled keep-alive connections, JSON or
//! SSE answers, legacy sessions with their GET stream, modern per-request headers and
//! `subscriptions/listen`, and relaying of server-to-client requests made on a call's stream.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method as HttpMethod, Request as HttpRequest, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

mod answer;
pub mod gate;
pub mod listen;
pub mod task_listen;
pub mod tls;

use super::auth::Credentials;
use super::conn::{ConnError, expect_result};
use super::handshake::{self, Handshake};
use super::mux::{Action, Mux, Owner};
use super::request::Outbound;
use super::signals::Signals;
use crate::error::{TransportError, TransportKind};
use crate::upstream::config::EraChoice;
use crate::wire::header_value;
use crate::wire::jsonrpc::{Message, write_notification};
use crate::wire::mcp::{self, Era};

/// The pooled HTTP(S) client shared by all HTTP upstreams.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How many times one call's stream is resumed after the upstream closed it early.
const MAX_RESUMES: u32 = 32;
/// Upper bound on the `retry` wait an upstream may ask for before a resume (ms).
const MAX_RESUME_WAIT_MS: u64 = 5_000;

/// Build the shared client: HTTP/1.1 keep-alive, TLS trusting the system CA store.
pub fn client() -> HttpClient {
    client_trusting(&[]).expect("the system roots make a valid TLS configuration")
}

/// A client like [`client`] that also trusts the CA certificates `extra` (an upstream's
/// `ca_file`).
///
/// Errors: a readable reason when a certificate is not a usable trust anchor.
pub fn client_trusting(extra: &[rustls::pki_types::CertificateDer<'static>]) -> Result<HttpClient, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls::client_config(extra)?)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(https))
}

/// Where and how to reach one HTTP replica.
pub struct Endpoint {
    /// The shared client.
    pub client: HttpClient,
    /// Its URL.
    pub url: Uri,
    /// Headers sent with every request.
    pub headers: HeaderMap,
    /// The upstream's credentials (`auth`), when it has some.
    pub auth: Option<Arc<Credentials>>,
    /// Largest answer accepted, in bytes: a JSON body, or one SSE event (`max_response_bytes`).
    pub max_response_bytes: usize,
}

/// A live relationship with one HTTP upstream (one legacy session, or the modern stateless era).
pub struct HttpConn {
    upstream: String,
    client: HttpClient,
    url: Uri,
    headers: HeaderMap,
    auth: Option<Arc<Credentials>>,
    max_response_bytes: usize,
    /// Request multiplexing state (ids, progress routes).
    pub mux: Mux,
    handshake: OnceLock<Handshake>,
    session: Option<HeaderValue>,
    closed: CancellationToken,
    /// A per-client session's notification stream demand (`None`: the stream is always held).
    gate: Option<gate::StreamGate>,
}

const ACCEPT_BOTH: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");
const HN_PROTOCOL_VERSION: http::HeaderName = http::HeaderName::from_static(mcp::HEADER_PROTOCOL_VERSION);
const HN_SESSION_ID: http::HeaderName = http::HeaderName::from_static(mcp::HEADER_SESSION_ID);
const HN_METHOD: http::HeaderName = http::HeaderName::from_static(mcp::HEADER_METHOD);
const HN_NAME: http::HeaderName = http::HeaderName::from_static(mcp::HEADER_NAME);

/// The `Mcp-Method` value: a static value for the methods the gateway knows, else a copy.
fn method_header_value(method: &crate::wire::jsonrpc::Method) -> HeaderValue {
    match method.metric_label() {
        "other" => HeaderValue::from_str(method.as_str()).unwrap_or_else(|_| HeaderValue::from_static("")),
        known => HeaderValue::from_static(known),
    }
}
const JSON: HeaderValue = HeaderValue::from_static("application/json");

impl HttpConn {
    /// Meet the upstream: probe `server/discover` (unless `choice` is legacy), else `initialize`
    /// and `notifications/initialized`.
    ///
    /// `owner`: the client session a per-client upstream session serves alone; its
    /// `initialize` declares that client's capabilities instead of the gateway's own.
    ///
    /// Errors: [`ConnError`] when neither handshake succeeds.
    pub async fn connect(
        upstream: &str,
        endpoint: Endpoint,
        choice: EraChoice,
        signals: Signals,
        owner: Option<Owner>,
    ) -> Result<Arc<HttpConn>, ConnError> {
        let Endpoint { client, url, headers, auth, max_response_bytes } = endpoint;
        let mut conn = HttpConn {
            upstream: upstream.to_string(),
            client,
            url,
            headers,
            auth,
            max_response_bytes,
            mux: Mux::owned(upstream, signals, owner.clone()),
            handshake: OnceLock::new(),
            session: None,
            closed: CancellationToken::new(),
            gate: None,
        };
        let mut probe_error = None;
        if choice != EraChoice::Legacy {
            let params = handshake::discover_params();
            match conn.exchange_raw("server/discover", Some(&params), Some(mcp::LATEST_MODERN)).await {
                Ok((msg, _)) => match expect_result(&msg).ok().and_then(|r| handshake::from_discover(&r)) {
                    Some(h) => {
                        let _ = conn.handshake.set(h);
                        conn.gate = owner.map(|o| gate::StreamGate::new(o.link));
                        return Ok(Arc::new(conn));
                    }
                    None => probe_error = Some("server/discover offered no modern revision".to_string()),
                },
                Err(e) => probe_error = Some(e.to_string()),
            }
            if choice == EraChoice::Modern {
                return Err(ConnError::Protocol(format!(
                    "modern handshake failed: {}",
                    probe_error.unwrap_or_default()
                )));
            }
        }
        tracing::debug!(upstream, probe = ?probe_error, "falling back to initialize");
        let capabilities = owner.as_ref().and_then(|o| std::str::from_utf8(&o.capabilities).ok());
        let params = handshake::initialize_params(capabilities.unwrap_or(r#"{"sampling":{},"elicitation":{}}"#));
        let (msg, session) = conn.exchange_raw("initialize", Some(&params), None).await?;
        let result = expect_result(&msg)?;
        let h = handshake::from_initialize(&result).map_err(|e| ConnError::Protocol(e.0))?;
        conn.session = session;
        conn.gate = owner.map(|o| gate::StreamGate::new(o.link));
        let _ = conn.handshake.set(h);
        let mut body = Vec::new();
        write_notification(&mut body, "notifications/initialized", None);
        conn.post_no_answer(Bytes::from(body)).await?;
        Ok(Arc::new(conn))
    }

    /// The handshake.
    pub fn handshake(&self) -> &Handshake {
        self.handshake.get().expect("connected conns have a handshake")
    }

    /// A token cancelled when this session is no longer usable.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    pub(super) fn version(&self) -> Option<&'static str> {
        self.handshake.get().map(|h| h.version)
    }

    /// The POST of a call, built without parsing header names (this is the hot path).
    fn post_request(&self, version: &'static str, body: Bytes) -> HttpRequest<Full<Bytes>> {
        let mut req = HttpRequest::new(Full::new(body));
        *req.method_mut() = HttpMethod::POST;
        *req.uri_mut() = self.url.clone();
        let headers = req.headers_mut();
        headers.reserve(self.headers.len() + 6);
        for (k, v) in &self.headers {
            headers.append(k.clone(), v.clone());
        }
        headers.insert(CONTENT_TYPE, JSON);
        headers.insert(ACCEPT, ACCEPT_BOTH);
        if mcp::era_of(version) == Some(Era::Modern) || mcp::at_least(version, "2025-06-18") {
            headers.insert(HN_PROTOCOL_VERSION, HeaderValue::from_static(version));
        }
        if let Some(s) = &self.session {
            headers.insert(HN_SESSION_ID, s.clone());
        }
        req
    }

    pub(super) fn base_request(&self, method: HttpMethod, version: Option<&str>) -> http::request::Builder {
        let mut b = HttpRequest::builder().method(method).uri(self.url.clone());
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        if let Some(v) = version
            && (mcp::era_of(v) == Some(Era::Modern) || mcp::at_least(v, "2025-06-18"))
        {
            b = b.header(mcp::HEADER_PROTOCOL_VERSION, v);
        }
        if let Some(s) = &self.session {
            b = b.header(mcp::HEADER_SESSION_ID, s);
        }
        b
    }

    /// Send one request. A connection that could not be opened fails before anything was
    /// sent (`TransportError::unsent`): such a call may go to another replica whatever it does.
    ///
    /// With credentials (`auth`): the request carries their `Authorization`; on a 401 they are
    /// refreshed (discovering the authorization server from the challenge when needed) and
    /// the request is sent once more (a 401 means it was not processed).
    pub(super) async fn send(&self, req: HttpRequest<Full<Bytes>>) -> Result<http::Response<Incoming>, ConnError> {
        let Some(auth) = &self.auth else { return self.send_once(req).await };
        let (mut parts, body) = req.into_parts();
        let sent = auth.authorization(&self.client).await.map_err(refused)?;
        if let Some(v) = &sent {
            parts.headers.insert(AUTHORIZATION, v.clone());
        }
        let (method, uri, mut headers) = (parts.method.clone(), parts.uri.clone(), parts.headers.clone());
        let resp = self.send_once(HttpRequest::from_parts(parts, body.clone())).await?;
        if resp.status() != http::StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(http::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::upstream::auth::discovery::parse_challenge);
        drop(resp);
        let fresh = auth.refresh(&self.client, sent.as_ref(), challenge).await.map_err(refused)?;
        headers.insert(AUTHORIZATION, fresh);
        let mut again = HttpRequest::new(body);
        *again.method_mut() = method;
        *again.uri_mut() = uri;
        *again.headers_mut() = headers;
        self.send_once(again).await
    }

    async fn send_once(&self, req: HttpRequest<Full<Bytes>>) -> Result<http::Response<Incoming>, ConnError> {
        self.client.request(req).await.map_err(|e| ConnError::Transport(request_failure(&e)))
    }

    /// POST a gateway-originated request and read its answer (used by the handshake).
    async fn exchange_raw(
        &self,
        method: &str,
        params: Option<&[u8]>,
        version: Option<&str>,
    ) -> Result<(Message, Option<HeaderValue>), ConnError> {
        let id = self.mux.register(None, None, None);
        let _forget = Forget { mux: &self.mux, id };
        let mut body = Vec::new();
        Outbound::raw(method, params).write(&mut body, id, None);
        let mut b = self.base_request(HttpMethod::POST, version).header(CONTENT_TYPE, JSON).header(ACCEPT, ACCEPT_BOTH);
        if version.and_then(mcp::era_of) == Some(Era::Modern) {
            b = b.header(mcp::HEADER_METHOD, method);
        }
        let resp = self.send(b.body(Full::new(Bytes::from(body))).expect("valid request")).await?;
        let session = resp.headers().get(mcp::HEADER_SESSION_ID).cloned();
        let msg = self.read_answer(resp, id).await?;
        Ok((msg, session))
    }

    async fn post_no_answer(&self, body: Bytes) -> Result<(), ConnError> {
        let req = self
            .base_request(HttpMethod::POST, self.version())
            .header(CONTENT_TYPE, JSON)
            .header(ACCEPT, ACCEPT_BOTH)
            .body(Full::new(body))
            .expect("valid request");
        let resp = self.send(req).await?;
        let status = resp.status();
        drop(resp);
        if status.is_success() {
            Ok(())
        } else {
            Err(ConnError::Status { status: status.as_u16(), detail: String::new() })
        }
    }

    /// Send one request and wait for its response. Dropping the future abandons the call: the
    /// modern era treats the closed stream as the cancellation; for legacy sessions a
    /// `notifications/cancelled` is posted.
    ///
    /// Errors: [`ConnError`] for transport failures, unexpected statuses, an expired session, or
    /// a stream that ended without the response.
    pub async fn call(self: &Arc<Self>, req: &Outbound) -> Result<Message, ConnError> {
        if self.closed.is_cancelled() {
            let cause = TransportError::new(TransportKind::Closed, "the session is closed; the request was not sent");
            return Err(ConnError::Transport(cause.not_sent()));
        }
        let h = self.handshake();
        // A client's call on a per-client legacy session: its GET stream open first (a modern
        // upstream ties all it asks to the call, MRTR: its listen stream waits for the client).
        let _hold = match (&self.gate, req.client) {
            (Some(gate), Some(_)) if h.era == Era::Legacy => Some(gate.enter().await),
            _ => None,
        };
        let id = self.mux.register(None, req.route.clone(), req.client);
        let mut guard = CancelOnDrop { conn: self, id, armed: h.era == Era::Legacy };
        let mut body = Vec::with_capacity(256 + req.body_len_hint());
        req.write(&mut body, id, Some(h));
        let mut post = self.post_request(h.version, Bytes::from(body));
        if h.era == Era::Modern {
            let headers = post.headers_mut();
            headers.insert(HN_METHOD, method_header_value(&req.method));
            if let Some(name) = &req.name {
                headers.insert(HN_NAME, header_value::encode(name));
            }
            // SEP-2243: the arguments the tool declared with `x-mcp-header`; `insert`, so a
            // configured header of the same name cannot stand in for one.
            for (name, value) in &req.param_headers {
                headers.insert(name.clone(), value.clone());
            }
        }
        let resp = self.send(post).await?;
        let answer = self.read_answer(resp, id).await;
        if let Err(ConnError::SessionExpired) = &answer {
            self.closed.cancel();
        }
        guard.armed = false;
        self.mux.forget(id);
        answer
    }

    pub(super) fn act(&self, action: Action) {
        match action {
            Action::None => {}
            Action::Send(msg) => self.post_detached(msg),
            Action::Relay(relay) => {
                let this = self.detached();
                tokio::spawn(async move { this.post(Bytes::from(relay.answer().await)).await });
            }
        }
    }

    fn detached(&self) -> Detached {
        Detached {
            client: self.client.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            authorization: self.auth.as_ref().and_then(|a| a.current()),
            version: self.version(),
            session: self.session.clone(),
        }
    }

    /// Post a notification without params, best effort.
    pub fn notify(&self, method: &str) {
        let mut body = Vec::new();
        write_notification(&mut body, method, None);
        self.post_detached(Bytes::from(body));
    }

    fn post_detached(&self, msg: Bytes) {
        let d = self.detached();
        tokio::spawn(async move { d.post(msg).await });
    }

    /// End the legacy session (`DELETE`), best effort.
    pub async fn close(&self) {
        self.closed.cancel();
        if self.session.is_some() {
            let req = self
                .base_request(HttpMethod::DELETE, self.version())
                .body(Full::new(Bytes::new()))
                .expect("valid request");
            let _ = tokio::time::timeout(Duration::from_secs(2), self.send(req)).await;
        }
    }
}

/// What is needed to POST to the upstream from a spawned task.
struct Detached {
    client: HttpClient,
    url: Uri,
    headers: HeaderMap,
    authorization: Option<HeaderValue>,
    version: Option<&'static str>,
    session: Option<HeaderValue>,
}

impl Detached {
    async fn post(self, body: Bytes) {
        let mut b = HttpRequest::builder().method(HttpMethod::POST).uri(self.url);
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        if let Some(v) = self.authorization {
            b = b.header(AUTHORIZATION, v);
        }
        if let Some(v) = self.version {
            b = b.header(mcp::HEADER_PROTOCOL_VERSION, v);
        }
        if let Some(s) = &self.session {
            b = b.header(mcp::HEADER_SESSION_ID, s);
        }
        let req =
            b.header(CONTENT_TYPE, JSON).header(ACCEPT, ACCEPT_BOTH).body(Full::new(body)).expect("valid request");
        if let Err(e) = self.client.request(req).await {
            tracing::debug!(error = %TransportError::classify(&e), "posting to the upstream failed");
        }
    }
}

struct Forget<'a> {
    mux: &'a Mux,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.mux.forget(self.id);
    }
}

/// Abandoned legacy calls get a `notifications/cancelled` (closing a legacy stream is not a
/// cancellation, per 2025-11-25 `basic/transports`).
struct CancelOnDrop<'a> {
    conn: &'a Arc<HttpConn>,
    id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.conn.mux.forget(self.id) && self.armed && !self.conn.closed.is_cancelled() {
            let mut body = Vec::new();
            let params = format!(r#"{{"requestId":{},"reason":"cancelled by the gateway's client"}}"#, self.id);
            write_notification(&mut body, "notifications/cancelled", Some(params.as_bytes()));
            self.conn.post_detached(Bytes::from(body));
        }
    }
}

/// A request the upstream's credentials could not authorize: HTTP 401 with the reason.
fn refused(reason: String) -> ConnError {
    ConnError::Status { status: 401, detail: format!("upstream authorization: {reason}") }
}

/// The transport cause of a failed request; unsent when the connection could not be opened
/// (hyper-util reports connect errors apart: nothing of the request was written).
fn request_failure(e: &hyper_util::client::legacy::Error) -> TransportError {
    let cause = TransportError::classify(e);
    if e.is_connect() { cause.not_sent() } else { cause }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_known_to_be_unsent() {
        // A port nothing listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let req = HttpRequest::post(format!("http://127.0.0.1:{port}/mcp")).body(Full::new(Bytes::new())).unwrap();
        let e = client().request(req).await.unwrap_err();
        let cause = request_failure(&e);
        assert!(cause.unsent, "{cause}");
        assert_eq!(cause.kind, TransportKind::Refused, "{cause}");
    }
}
