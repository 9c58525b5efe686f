//! One request to an upstream, owned and shared by every attempt (and the fallback) of a call:
//! its method, where its params come from, the name mirrored in `Mcp-Name` and the arguments
//! mirrored in `Mcp-Param-*`, and where its notifications go. Written as a JSON-RPC request with the connection's own id.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::handshake::Handshake;
use super::mux::Route;
use super::translate::{LEGACY_DROPPED, Outbound as Rewrite, write_params};
use crate::pipeline::parts::{ClientSide, Params};
use crate::wire::jsonrpc::{Method, write_request_with};
use crate::wire::mcp::{self, Era};

/// Where an outbound request's params come from.
#[derive(Debug)]
pub enum Body {
    /// The gateway's own request (handshake, listing, probing): raw params, sent as they are.
    Raw(Option<Bytes>),
    /// A client's request, rewritten for the upstream (see [`super::translate`]).
    Client {
        /// The client's params.
        params: Params,
        /// A member replaced with raw JSON, e.g. `("name", "\"echo\"")` (the upstream's own name).
        rewrite: Option<(&'static str, Bytes)>,
        /// The calling client.
        client: ClientSide,
        /// An idempotency key to write into `_meta["io.sekisho/idempotencyKey"]`, when the
        /// params do not carry it already (it came from the `Idempotency-Key` header).
        idempotency_key: Option<Arc<str>>,
    },
}

/// One request to send to an upstream.
#[derive(Debug)]
pub struct Outbound {
    /// JSON-RPC method.
    pub method: Method,
    /// Params.
    pub body: Body,
    /// The upstream's own tool or prompt name, or the resource URI, mirrored in the modern
    /// `Mcp-Name` header.
    pub name: Option<Arc<str>>,
    /// Where the call's notifications go.
    pub route: Option<Route>,
    /// The client the call is for: its session's [`ClientLink::key`](crate::session::link::ClientLink),
    /// or a random key for a call without a session; `None` for the gateway's own requests.
    pub client: Option<u64>,
    /// The `Mcp-Param-*` headers of a `tools/call` whose tool declares `x-mcp-header`
    /// arguments (made by resolve from the arguments; sent to modern HTTP upstreams only).
    pub param_headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The replica the call must go to, or nowhere (a tasks method goes to the replica that
    /// holds its task); `None`: the balancer chooses.
    pub replica: Option<usize>,
    /// The replica of the latest attempt (`usize::MAX` before the first): the one that
    /// answered, once the call is done (a created task lives there).
    pub answered_by: AtomicUsize,
}

impl Outbound {
    /// A gateway-originated request with raw params.
    pub fn raw(method: &str, params: Option<&[u8]>) -> Outbound {
        Outbound {
            method: Method::from_name(method),
            body: Body::Raw(params.map(Bytes::copy_from_slice)),
            name: None,
            route: None,
            client: None,
            param_headers: Vec::new(),
            replica: None,
            answered_by: AtomicUsize::new(usize::MAX),
        }
    }

    /// The replica of the latest attempt, if there was one (see [`Outbound::answered_by`]).
    pub fn answered_by(&self) -> Option<usize> {
        Some(self.answered_by.load(Ordering::Relaxed)).filter(|i| *i != usize::MAX)
    }

    /// Roughly how many bytes the params will take (to size the output buffer once).
    pub fn body_len_hint(&self) -> usize {
        match &self.body {
            Body::Raw(p) => p.as_ref().map_or(0, Bytes::len),
            Body::Client { params, .. } => params.bytes.len(),
        }
    }

    /// Write the complete JSON-RPC request message with gateway id `id` for an upstream that
    /// completed `handshake` (or `None` during the handshake itself).
    pub fn write(&self, out: &mut Vec<u8>, id: u64, handshake: Option<&Handshake>) {
        let raw_id = id.to_string();
        let method = self.method.as_str();
        match &self.body {
            Body::Raw(params) => write_request_with(
                out,
                raw_id.as_bytes(),
                method,
                params.as_ref().map(|p| |o: &mut Vec<u8>| o.extend_from_slice(p)),
            ),
            Body::Client { params, rewrite, client, idempotency_key } => {
                let upstream = handshake.map_or((Era::Legacy, mcp::LATEST_LEGACY), |h| (h.era, h.version));
                let wants_progress = self.route.as_ref().is_some_and(|r| r.client_token.is_some());
                let pair;
                let replace: &[(&str, &[u8])] = match rewrite {
                    Some((key, value)) => {
                        pair = [(*key, value.as_ref())];
                        &pair
                    }
                    None => &[],
                };
                let drop: &[&str] = if self.method == Method::ToolsCall
                    && upstream.0 == Era::Legacy
                    && LEGACY_DROPPED.iter().any(|k| params.get(k).is_some())
                {
                    &LEGACY_DROPPED
                } else {
                    &[]
                };
                let rewrite = Rewrite {
                    params,
                    replace,
                    drop,
                    progress_token: wants_progress.then_some(id),
                    idempotency_key: idempotency_key.as_deref(),
                    client,
                    upstream,
                };
                write_request_with(out, raw_id.as_bytes(), method, Some(|o: &mut Vec<u8>| write_params(o, &rewrite)));
            }
        }
    }
}
