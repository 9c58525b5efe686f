//! Middleware that carries a modern upstream's `input_required` result to a legacy client
//! (2026-07-28 `basic/utilities/input-required`, the multi round-trip request; 2025-11-25
//! `client/sampling`, `client/elicitation`, `client/roots`): a legacy client cannot receive
//! that result, so the gateway asks the client each of the result's `inputRequests` as an
//! ordinary server-to-client request on the call's stream, collects the answers, and sends the
//! same request upstream again with `inputResponses` (the answers under the upstream's keys)
//! and the upstream's `requestState`, round after round, until the upstream completes.
//!
//! Bounds: at most [`MAX_INPUT_REQUESTS`] requests per round and [`MAX_ROUNDS`] rounds; only
//! `elicitation/create`, `sampling/createMessage` and `roots/list`, each only to a client that
//! declared its capability; each answer awaited within the relay timeout of the front. Anything
//! else fails the call with [`GatewayError::InputRequiredUnsupported`] naming why. Modern
//! clients and legacy upstreams pass straight on (a modern client receives the result itself),
//! except a modern client's `requestState` for a legacy upstream that the front did not resume
//! (`front::input`): -32602, since the upstream knows nothing of it.
//!
//! ```toml
//! # no configuration: present whenever the gateway runs
//! ```

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use tower::{Service, ServiceExt};

use super::ctx::Routed;
use super::parts::{ClientAnswer, ClientEvent, Origin, Params, Reply, ReplyFuture};
use super::routed::RoutedStep;
use super::steps::Named;
use crate::error::GatewayError;
use crate::upstream::Upstream;
use crate::upstream::config::EraChoice;
use crate::upstream::mux::{Route, declared, required_capability};
use crate::upstream::request::{Body, Outbound};
use crate::wire::mcp::Era;
use crate::wire::object::{ObjectView, ObjectWriter};

/// Input requests one `input_required` result may carry (more fail the call).
pub const MAX_INPUT_REQUESTS: usize = 16;
/// Rounds of `input_required` one call may go through (more fail the call).
pub const MAX_ROUNDS: usize = 8;

/// Answers a modern upstream's `input_required` on behalf of legacy clients.
#[derive(Clone, Copy, Debug, Default)]
pub struct InputBridge;

impl Named for InputBridge {
    fn name(&self) -> &'static str {
        "input"
    }
}

impl RoutedStep for InputBridge {
    fn serve<S>(&self, routed: Routed, inner: S) -> Result<ReplyFuture, Routed>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
        S::Future: Send,
    {
        let Body::Client { params, .. } = &routed.request.body else { return Err(routed) };
        if routed.client_era == Era::Modern {
            // A continuation for a legacy upstream that the front did not resume (its
            // requestState is not one of the gateway's live ones): the upstream knows nothing
            // of it, and running the call afresh would ignore the client's answers.
            if params.get("requestState").is_some() && speaks_legacy(&routed.target.upstream) {
                let e = GatewayError::InvalidParams(
                    "requestState failed verification: it was altered, expired, or belongs to another caller".into(),
                );
                return Ok(Box::pin(std::future::ready(Err(e))));
            }
            return Err(routed);
        }
        if speaks_legacy(&routed.target.upstream) {
            return Err(routed);
        }
        Ok(Box::pin(async move {
            let mut routed = routed;
            for _ in 0..=MAX_ROUNDS {
                let reply = inner.clone().oneshot(routed.clone()).await?;
                let Some(input) = InputRequired::read(&reply) else { return Ok(reply) };
                let input = input.map_err(GatewayError::InputRequiredUnsupported)?;
                let Some(route) = routed.request.route.clone() else {
                    return Err(GatewayError::InputRequiredUnsupported(
                        "the request was sent without a stream the gateway could ask the client on".into(),
                    ));
                };
                let responses = ask(&route, &input.requests).await.map_err(GatewayError::InputRequiredUnsupported)?;
                routed = again(&routed, &responses, input.state.as_deref());
            }
            Err(GatewayError::InputRequiredUnsupported(format!(
                "the upstream asked for input more than {MAX_ROUNDS} times"
            )))
        }))
    }
}

/// Whether `upstream` is known to speak the legacy era (configured so, or its last handshake
/// was), so that it cannot answer `input_required` and its calls pass straight on.
fn speaks_legacy(upstream: &Upstream) -> bool {
    upstream.config.era == EraChoice::Legacy || upstream.last_handshake().is_some_and(|h| h.era == Era::Legacy)
}

/// The parts of an `input_required` result the gateway acts on.
struct InputRequired {
    /// `(key, method, params)` of each input request.
    requests: Vec<(String, String, Option<Bytes>)>,
    /// The raw `requestState` value, when present.
    state: Option<Bytes>,
}

impl InputRequired {
    /// `None` when `reply` is not a modern upstream's `input_required` result; `Some(Err)`
    /// naming what is wrong with one the gateway cannot carry.
    fn read(reply: &Reply) -> Option<Result<InputRequired, String>> {
        let Reply::Result { body, origin: Origin::Upstream(Era::Modern, _) } = reply else { return None };
        memchr::memmem::find(body, b"input_required")?;
        let view = ObjectView::parse(body).ok()?;
        if view.get_str(body, "resultType").as_deref() != Some("input_required") {
            return None;
        }
        Some(Self::parse(body, &view))
    }

    fn parse(body: &Bytes, view: &ObjectView) -> Result<InputRequired, String> {
        let state = view.get(body, "requestState").map(|s| body.slice(s));
        let raw = view.get(body, "inputRequests").map(|s| body.slice(s)).unwrap_or_default();
        let requests_view = ObjectView::parse(&raw).map_err(|_| "its inputRequests is not an object".to_string())?;
        if requests_view.len() > MAX_INPUT_REQUESTS {
            return Err(format!("it asked for more than {MAX_INPUT_REQUESTS} inputs at once"));
        }
        let mut requests = Vec::with_capacity(requests_view.len());
        for (key, span) in requests_view.iter(&raw) {
            let one = raw.slice(span);
            let v = ObjectView::parse(&one).map_err(|_| format!("input request {key:?} is not an object"))?;
            let method = v.get_str(&one, "method").ok_or_else(|| format!("input request {key:?} has no method"))?;
            let params = v.get(&one, "params").map(|s| one.slice(s));
            requests.push((key.to_string(), method.into_owned(), params));
        }
        if requests.is_empty() {
            return Err("its inputRequests is empty".into());
        }
        Ok(InputRequired { requests, state })
    }
}

/// Ask the client every request (concurrently) and return the `inputResponses` object.
/// `Err`: why the client could not be asked or did not answer.
async fn ask(route: &Route, requests: &[(String, String, Option<Bytes>)]) -> Result<Vec<u8>, String> {
    let mut waiting = Vec::with_capacity(requests.len());
    for (key, method, params) in requests {
        let Some(cap) = required_capability(method) else {
            return Err(format!("the upstream asked for {method}, which the gateway does not relay to clients"));
        };
        if !declared(&route.capabilities, cap) {
            return Err(format!(
                "the upstream asked for {method}, but the client did not declare the {cap} capability"
            ));
        }
        let (tx, rx) = oneshot::channel();
        let event = ClientEvent::Request { method: method.clone(), params: params.clone(), reply: tx };
        route.events.try_send(event).map_err(|_| "the client's stream is gone or not reading".to_string())?;
        waiting.push((key, method, rx));
    }
    let mut out = Vec::with_capacity(256);
    let mut w = ObjectWriter::begin(&mut out);
    for (key, method, rx) in waiting {
        match rx.await {
            Ok(ClientAnswer::Result(result)) => {
                w.raw(key, &result);
            }
            Ok(ClientAnswer::Error(_)) => return Err(format!("the client refused the {method} request")),
            Err(_) => return Err(format!("the client did not answer the {method} request")),
        }
    }
    w.end();
    Ok(out)
}

/// The same call with `inputResponses` and `requestState` set (replacing any the params had).
fn again(routed: &Routed, responses: &[u8], state: Option<&[u8]>) -> Routed {
    let Body::Client { params, rewrite, client, idempotency_key } = &routed.request.body else {
        unreachable!("checked in serve")
    };
    let mut bytes = Vec::with_capacity(params.bytes.len() + responses.len() + state.map_or(0, <[u8]>::len) + 48);
    let mut w = ObjectWriter::begin(&mut bytes);
    for (key, span) in params.view.iter(&params.bytes) {
        if key != "inputResponses" && key != "requestState" {
            w.raw(key, &params.bytes[span]);
        }
    }
    w.raw("inputResponses", responses);
    if let Some(state) = state {
        w.raw("requestState", state);
    }
    w.end();
    let params = Params::parse(Bytes::from(bytes)).expect("written as an object from a valid one");
    let request = Outbound {
        method: routed.request.method.clone(),
        body: Body::Client {
            params,
            rewrite: rewrite.clone(),
            client: client.clone(),
            idempotency_key: idempotency_key.clone(),
        },
        name: routed.request.name.clone(),
        route: routed.request.route.clone(),
        client: routed.request.client,
        param_headers: routed.request.param_headers.clone(),
        replica: routed.request.replica,
        answered_by: std::sync::atomic::AtomicUsize::new(usize::MAX),
    };
    // What the upstream answers now depends on this client's answers: never cached.
    let target = crate::pipeline::ctx::Target { cache: None, ..routed.target.clone() };
    Routed { request: Arc::new(request), target, ..routed.clone() }
}
