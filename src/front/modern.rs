//! The modern era over Streamable HTTP (2026-07-28 `basic/transports`): every request is a
//! self-contained POST validated by the envelope ladder (`_meta` envelope, routing headers
//! against the body, supported revision), answered with JSON or SSE; `server/discover` and
//! `subscriptions/listen` are answered by the gateway; there are no sessions.

use std::sync::Arc;
use std::time::Instant;

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::mpsc;

use super::Shared;
use super::input::{self, Askable, Parked, spawn_askable};
use super::messages;
use super::rescue::{self, Answer, json, refuse, respond};
use super::respond::{Accepts, frames_response, notification_stream, sse_response};
use super::stream::spawn_call;
use crate::error::GatewayError;
use crate::pipeline::ctx::CallCtx;
use crate::pipeline::param_headers;
use crate::pipeline::parts::{ClientSide, LogLevel, Params, Principal, Scope};
use crate::pipeline::tasks;
use crate::session::lifecycle;
use crate::wire::header_value;
use crate::wire::jsonrpc::{self, Kind, Message, Method};
use crate::wire::mcp::{self, Era};

const EVENTS: usize = 64;

fn single_header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, GatewayError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(GatewayError::HeaderMismatch(format!("{name} header appears more than once")));
    }
    Ok(first.map(|v| v.to_str().unwrap_or("\u{fffd}")))
}

/// The envelope ladder (2026-07-28 `basic/index` "Per-request protocol fields" and
/// `basic/transports` "Standard Headers"); the first failing rung wins.
///
/// Errors: [`GatewayError::InvalidParams`], [`GatewayError::HeaderMismatch`],
/// [`GatewayError::UnsupportedVersion`], whichever rung fails first.
fn ladder(headers: &HeaderMap, method: &Method, raw: Bytes) -> Result<(ClientSide, Params), GatewayError> {
    let version_header = single_header(headers, mcp::HEADER_PROTOCOL_VERSION)?;
    let method_header = single_header(headers, mcp::HEADER_METHOD)?;
    let name_header = single_header(headers, mcp::HEADER_NAME)?;
    let params = Params::parse(raw)?;
    let Some(meta) = params.meta.as_ref() else {
        return Err(GatewayError::InvalidParams(format!(
            "params._meta must be an object carrying {:?} and {:?}",
            mcp::META_PROTOCOL_VERSION,
            mcp::META_CLIENT_CAPABILITIES
        )));
    };
    let (Some(raw_version), Some(capabilities)) =
        (meta.get(mcp::META_PROTOCOL_VERSION), meta.get(mcp::META_CLIENT_CAPABILITIES))
    else {
        let missing: Vec<&str> = [mcp::META_PROTOCOL_VERSION, mcp::META_CLIENT_CAPABILITIES]
            .into_iter()
            .filter(|k| meta.get(k).is_none())
            .collect();
        return Err(GatewayError::InvalidParams(format!("params._meta is missing {}", missing.join(", "))));
    };
    let version = meta.str(mcp::META_PROTOCOL_VERSION);
    if version_header.is_none() || version_header.map(str::trim) != version.as_deref() {
        return Err(GatewayError::HeaderMismatch(
            "MCP-Protocol-Version header does not match params._meta protocol version".into(),
        ));
    }
    if method_header.map(str::trim) != Some(method.as_str()) {
        return Err(GatewayError::HeaderMismatch("Mcp-Method header does not match the request body's method".into()));
    }
    let name_key = match method {
        Method::ToolsCall | Method::PromptsGet => Some("name"),
        Method::ResourcesRead => Some("uri"),
        // The tasks extension, "Streamable HTTP: Routing Headers".
        Method::TasksGet | Method::TasksUpdate | Method::TasksCancel => Some("taskId"),
        _ => None,
    };
    if let Some(key) = name_key
        && let Some(body_value) = params.str(key)
        && !name_header.is_some_and(|h| header_value::matches(h, &body_value))
    {
        return Err(GatewayError::HeaderMismatch(format!("Mcp-Name header does not match the request body's {key:?}")));
    }
    let Some(version) = version else {
        let _ = raw_version;
        return Err(GatewayError::InvalidParams("the protocol version in params._meta must be a string".into()));
    };
    let Some(version) = mcp::known_version(&version).filter(|v| mcp::era_of(v) == Some(Era::Modern)) else {
        return Err(GatewayError::UnsupportedVersion { requested: version.into_owned() });
    };
    if !capabilities.starts_with(b"{") {
        return Err(GatewayError::InvalidParams("the client capabilities in params._meta must be an object".into()));
    }
    let capabilities = meta.bytes.slice_ref(capabilities);
    let log_level = meta.str(mcp::META_LOG_LEVEL).and_then(|l| LogLevel::parse(&l));
    let client = ClientSide { era: Era::Modern, version, capabilities, log_level };
    Ok((client, params))
}

fn error_response(id: Option<&[u8]>, e: &GatewayError) -> Response {
    respond(rescue::error(id, e, Era::Modern))
}

/// Handle a modern POST.
pub async fn post(
    shared: Arc<Shared>,
    scope: Scope,
    principal: Principal,
    headers: &HeaderMap,
    body: Bytes,
    accept: Accepts,
) -> Response {
    let received = Instant::now();
    if crate::wire::batch::is_batch(&body) {
        let e = GatewayError::InvalidRequest("the 2026-07-28 transport takes one message per POST".into());
        return error_response(None, &e);
    }
    let msg = match Message::parse(body) {
        Ok(m) => m,
        Err(e) => {
            let id = e.id().map(|id| id.as_bytes().to_vec());
            return error_response(id.as_deref(), &GatewayError::from(e));
        }
    };
    let (id, method, params) = match &msg.kind {
        Kind::Notification { .. } => {
            // No client-to-server notification has meaning here (cancellation is closing the
            // stream); acknowledge, as 2026-07-28 `basic/transports` allows.
            let version = headers.get(mcp::HEADER_PROTOCOL_VERSION).and_then(|v| v.to_str().ok()).unwrap_or("");
            if mcp::era_of(version.trim()) != Some(Era::Modern) {
                return error_response(None, &GatewayError::UnsupportedVersion { requested: version.to_string() });
            }
            let mut resp = Response::new(axum::body::Body::empty());
            *resp.status_mut() = StatusCode::ACCEPTED;
            return resp;
        }
        Kind::Response { .. } => {
            return error_response(None, &GatewayError::InvalidRequest("the server sent no request to answer".into()));
        }
        Kind::Request { id, method, params } => (
            msg.src.slice(id.0.clone()),
            method.clone(),
            params.as_ref().map(|p| msg.src.slice(p.clone())).unwrap_or_default(),
        ),
    };
    let (client, params) = match ladder(headers, &method, params) {
        Ok(c) => c,
        Err(e) => return error_response(Some(&id), &e),
    };
    match method {
        Method::ServerDiscover => {
            let mut out = Vec::new();
            let discovered = lifecycle::discover(&shared.upstreams, shared.catalog.config().list_ttl_ms, &scope);
            jsonrpc::write_result(&mut out, &id, &discovered);
            json(StatusCode::OK, Bytes::from(out))
        }
        Method::SubscriptionsListen
            if tasks::listen_asks_for_tasks(&params) && !tasks::client_declares_tasks(&client.capabilities) =>
        {
            error_response(Some(&id), &GatewayError::TasksNotDeclared)
        }
        Method::SubscriptionsListen => listen(&shared, scope, &principal, &id, (&params, &client), accept),
        Method::Initialize => error_response(
            Some(&id),
            &GatewayError::MethodNotFound("initialize is not part of 2026-07-28 (use server/discover)".into()),
        ),
        method => {
            let name = input::request_name(&method, &params);
            let askable = name.is_some() && input::may_be_asked(&client.capabilities);
            if askable
                && let Some(state) = params.str("requestState")
                && Parked::is_ours(shared.sessions.sealer(), &state)
            {
                // The client answers a parked call's input_required: resume it.
                let resumed = shared.parked.resume(
                    shared.sessions.sealer(),
                    &state,
                    principal.tag(),
                    (&method, name.as_deref()),
                    id.clone(),
                    params.get_bytes("inputResponses"),
                );
                return match resumed {
                    Ok(frames) => frames_response(frames, Era::Modern, accept.sse).await,
                    Err(e) => error_response(Some(&id), &e),
                };
            }
            let wants_events = accept.sse
                && (client.log_level.is_some() || params.meta.as_ref().is_some_and(|m| m.progress_token().is_some()));
            let (priority, idempotency_key) = super::header_options(&shared, &principal, Some(headers));
            let param_headers = (method == Method::ToolsCall).then(|| param_headers::client_headers(headers));
            let caller = principal.tag();
            let ctx = CallCtx {
                client,
                scope,
                principal,
                events: None,
                received,
                priority,
                idempotency_key,
                session: None,
                param_headers,
            };
            if askable {
                // A legacy upstream may ask this client something during the call: run it where
                // it can be parked (front::input).
                let (tx, rx) = mpsc::channel(EVENTS);
                let ctx = CallCtx { events: Some(tx), ..ctx };
                let ask = Askable {
                    shared: Arc::clone(&shared),
                    caller,
                    request: (method.clone(), name),
                    stream: wants_events,
                };
                let run = async move { shared.call_parsed(method, params, ctx).await };
                return frames_response(spawn_askable(id, run, rx, ask), Era::Modern, accept.sse).await;
            }
            if !wants_events {
                // Nothing to stream: answer inline. A client that disconnects drops this
                // future, which cancels the upstream call.
                let outcome = shared.call_parsed(method.clone(), params, ctx).await;
                return respond(rescue::answer(&id, method.as_str(), outcome, Era::Modern));
            }
            let (tx, rx) = mpsc::channel(EVENTS);
            let ctx = CallCtx { events: Some(tx), ..ctx };
            let name = method.as_str().to_string();
            let answer_id = id.clone();
            let run = async move {
                let outcome = shared.call_parsed(method, params, ctx).await;
                rescue::answer(&answer_id, &name, outcome, Era::Modern) as Answer
            };
            frames_response(spawn_call(id, Era::Modern, run, rx, None, None), Era::Modern, true).await
        }
    }
}

/// `subscriptions/listen`: acknowledge the filter, then stream list changes (and the status
/// notifications of the tasks agreed to, `super::tasks`) tagged with the subscription id until
/// the client leaves or the gateway drains.
/// A caller may hold `server.max_listens_per_caller` of these streams (the modern era has no
/// sessions to count them by); more are refused with HTTP 429 and -32015.
fn listen(
    shared: &Shared,
    scope: Scope,
    principal: &Principal,
    id: &Bytes,
    (params, client): (&Params, &ClientSide),
    accept: Accepts,
) -> Response {
    if !accept.sse {
        let e = GatewayError::NotAcceptable("subscriptions/listen answers with text/event-stream");
        return refuse(&e, None, Era::Modern);
    }
    let max = shared.config.max_listens_per_caller;
    let Some(slot) = shared.hub.open_listen(principal.tag(), max) else {
        let e = GatewayError::LimitReached {
            what: "this caller has too many subscriptions/listen streams open; close one first",
            key: "max_listens_per_caller",
            limit: max,
        };
        return refuse(&e, Some(id), Era::Modern);
    };
    let (tx, rx) = mpsc::channel(64);
    let task_ids = if tasks::listen_asks_for_tasks(params) {
        super::tasks::relay(shared, &scope, principal, id, params, &client.capabilities, &tx)
    } else {
        Vec::new()
    };
    let (filter, ack) = messages::listen(id, &params.bytes, &task_ids);
    let registration = shared.hub.register(scope, filter, Some(id.clone()), tx, crate::tenancy::view_arc(principal));
    let never = tokio_util::sync::CancellationToken::new();
    sse_response(notification_stream(rx, Some(ack), [shared.draining.clone(), never], (registration, slot)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

    #[test]
    fn ladder_rungs_in_order() {
        let ok = headers(&[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "echo")]);
        let params = format!(r#"{{"name":"echo",{META}}}"#);
        assert!(ladder(&ok, &Method::ToolsCall, Bytes::from(params.clone())).is_ok());
        let code_of = |h: &HeaderMap, m: &Method, p: &str| {
            ladder(h, m, Bytes::copy_from_slice(p.as_bytes())).err().map(|e| e.class(Era::Modern).code)
        };
        assert_eq!(code_of(&ok, &Method::ToolsCall, r#"{"name":"echo"}"#), Some(mcp::code::INVALID_PARAMS));
        let wrong_name =
            headers(&[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "other")]);
        assert_eq!(code_of(&wrong_name, &Method::ToolsCall, &params), Some(mcp::code::HEADER_MISMATCH));
        let no_name = headers(&[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call")]);
        assert_eq!(code_of(&no_name, &Method::ToolsCall, &params), Some(mcp::code::HEADER_MISMATCH));
        let upper =
            headers(&[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "TOOLS/CALL"), ("mcp-name", "echo")]);
        assert_eq!(code_of(&upper, &Method::ToolsCall, &params), Some(mcp::code::HEADER_MISMATCH));
        let dup = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ]);
        assert_eq!(code_of(&dup, &Method::ToolsCall, &params), Some(mcp::code::HEADER_MISMATCH));
        let future = headers(&[("mcp-protocol-version", "v999"), ("mcp-method", "tools/list")]);
        let p999 = r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"v999","io.modelcontextprotocol/clientCapabilities":{}}}"#;
        assert_eq!(code_of(&future, &Method::ToolsList, p999), Some(mcp::code::UNSUPPORTED_PROTOCOL_VERSION));
        let mismatch = headers(&[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")]);
        assert_eq!(code_of(&mismatch, &Method::ToolsList, p999), Some(mcp::code::HEADER_MISMATCH));
    }
}
