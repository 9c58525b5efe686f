//! JSON-RPC 2.0 envelopes parsed in place: byte spans into the received buffer, nothing re-typed.
//!
//! Source: JSON-RPC 2.0 specification §4–§6, as profiled by MCP `basic/index` (ids are
//! strings or numbers, never null; params are objects). The hot path parses an envelope once,
//! keeps the original bytes, and forwards `params`/`result` untouched, so unknown fields and
//! vendor `_meta` keys survive a round trip.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};
use serde_json::value::RawValue;

/// A byte range into a message's source buffer.
pub type Span = Range<usize>;

/// The raw JSON text of a request id (a JSON string or number), as a span of its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdSpan(pub Span);

/// A request id owned independently of any buffer: the id's raw JSON text (`"abc"` or `42`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawId(pub Bytes);

impl RawId {
    /// The raw JSON bytes of the id, ready to splice into an envelope.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// An id from a number (used for ids the gateway mints itself).
    pub fn number(n: u64) -> Self {
        RawId(Bytes::from(itoa_u64(n)))
    }
}

impl fmt::Display for RawId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

fn itoa_u64(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// A JSON-RPC method, with the MCP methods the gateway acts on named.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Initialize,
    Ping,
    ServerDiscover,
    ToolsList,
    ToolsCall,
    PromptsList,
    PromptsGet,
    ResourcesList,
    ResourcesTemplatesList,
    ResourcesRead,
    ResourcesSubscribe,
    ResourcesUnsubscribe,
    CompletionComplete,
    LoggingSetLevel,
    SubscriptionsListen,
    /// `tasks/get` (tasks extension): a task's state, its result or error inlined when done.
    TasksGet,
    /// `tasks/update` (tasks extension): answers to a task's `inputRequests`.
    TasksUpdate,
    /// `tasks/cancel` (tasks extension).
    TasksCancel,
    /// `tasks/result`: the 2025-11-25 experimental tasks method, removed by the extension.
    TasksResult,
    /// `tasks/list`: the 2025-11-25 experimental tasks method, removed by the extension.
    TasksList,
    NotificationsInitialized,
    NotificationsCancelled,
    NotificationsProgress,
    NotificationsMessage,
    ToolsListChanged,
    PromptsListChanged,
    ResourcesListChanged,
    ResourcesUpdated,
    RootsListChanged,
    /// Any other method name, kept verbatim.
    Other(Box<str>),
}

impl Method {
    /// Interpret a method name; unknown names become [`Method::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "initialize" => Method::Initialize,
            "ping" => Method::Ping,
            "server/discover" => Method::ServerDiscover,
            "tools/list" => Method::ToolsList,
            "tools/call" => Method::ToolsCall,
            "prompts/list" => Method::PromptsList,
            "prompts/get" => Method::PromptsGet,
            "resources/list" => Method::ResourcesList,
            "resources/templates/list" => Method::ResourcesTemplatesList,
            "resources/read" => Method::ResourcesRead,
            "resources/subscribe" => Method::ResourcesSubscribe,
            "resources/unsubscribe" => Method::ResourcesUnsubscribe,
            "completion/complete" => Method::CompletionComplete,
            "logging/setLevel" => Method::LoggingSetLevel,
            "subscriptions/listen" => Method::SubscriptionsListen,
            "tasks/get" => Method::TasksGet,
            "tasks/update" => Method::TasksUpdate,
            "tasks/cancel" => Method::TasksCancel,
            "tasks/result" => Method::TasksResult,
            "tasks/list" => Method::TasksList,
            "notifications/initialized" => Method::NotificationsInitialized,
            "notifications/cancelled" => Method::NotificationsCancelled,
            "notifications/progress" => Method::NotificationsProgress,
            "notifications/message" => Method::NotificationsMessage,
            "notifications/tools/list_changed" => Method::ToolsListChanged,
            "notifications/prompts/list_changed" => Method::PromptsListChanged,
            "notifications/resources/list_changed" => Method::ResourcesListChanged,
            "notifications/resources/updated" => Method::ResourcesUpdated,
            "notifications/roots/list_changed" => Method::RootsListChanged,
            other => Method::Other(other.into()),
        }
    }

    /// The wire name of the method.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Initialize => "initialize",
            Method::Ping => "ping",
            Method::ServerDiscover => "server/discover",
            Method::ToolsList => "tools/list",
            Method::ToolsCall => "tools/call",
            Method::PromptsList => "prompts/list",
            Method::PromptsGet => "prompts/get",
            Method::ResourcesList => "resources/list",
            Method::ResourcesTemplatesList => "resources/templates/list",
            Method::ResourcesRead => "resources/read",
            Method::ResourcesSubscribe => "resources/subscribe",
            Method::ResourcesUnsubscribe => "resources/unsubscribe",
            Method::CompletionComplete => "completion/complete",
            Method::LoggingSetLevel => "logging/setLevel",
            Method::SubscriptionsListen => "subscriptions/listen",
            Method::TasksGet => "tasks/get",
            Method::TasksUpdate => "tasks/update",
            Method::TasksCancel => "tasks/cancel",
            Method::TasksResult => "tasks/result",
            Method::TasksList => "tasks/list",
            Method::NotificationsInitialized => "notifications/initialized",
            Method::NotificationsCancelled => "notifications/cancelled",
            Method::NotificationsProgress => "notifications/progress",
            Method::NotificationsMessage => "notifications/message",
            Method::ToolsListChanged => "notifications/tools/list_changed",
            Method::PromptsListChanged => "notifications/prompts/list_changed",
            Method::ResourcesListChanged => "notifications/resources/list_changed",
            Method::ResourcesUpdated => "notifications/resources/updated",
            Method::RootsListChanged => "notifications/roots/list_changed",
            Method::Other(name) => name,
        }
    }

    /// A label for metrics: known methods by name, everything else as `other` (bounded cardinality).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Method::Other(_) => "other",
            known => Method::static_name(known.as_str()),
        }
    }

    fn static_name(name: &str) -> &'static str {
        const NAMES: [&str; 29] = [
            "initialize",
            "ping",
            "server/discover",
            "tools/list",
            "tools/call",
            "prompts/list",
            "prompts/get",
            "resources/list",
            "resources/templates/list",
            "resources/read",
            "resources/subscribe",
            "resources/unsubscribe",
            "completion/complete",
            "logging/setLevel",
            "subscriptions/listen",
            "tasks/get",
            "tasks/update",
            "tasks/cancel",
            "tasks/result",
            "tasks/list",
            "notifications/initialized",
            "notifications/cancelled",
            "notifications/progress",
            "notifications/message",
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
            "notifications/resources/updated",
            "notifications/roots/list_changed",
        ];
        NAMES.iter().find(|n| **n == name).copied().unwrap_or("other")
    }
}

/// What a parsed message is.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A request: it carries an id and expects exactly one response.
    Request { id: IdSpan, method: Method, params: Option<Span> },
    /// A notification: no id, no response.
    Notification { method: Method, params: Option<Span> },
    /// A response to a request we sent: a result or an error object.
    Response { id: IdSpan, outcome: Outcome },
}

/// The body of a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Span of the `result` value.
    Result(Span),
    /// Span of the `error` object.
    Error(Span),
}

/// One JSON-RPC message: its source bytes and what they contain.
#[derive(Clone, Debug)]
pub struct Message {
    /// The bytes as received; every span in `kind` indexes into them.
    pub src: Bytes,
    /// What the message is.
    pub kind: Kind,
}

/// Why a message could not be framed (the error table in `crate::error` gives the codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON at all (-32700).
    Parse(String),
    /// JSON, but not a valid JSON-RPC 2.0 message (-32600); carries the id if one was readable.
    Invalid { reason: String, id: Option<RawId> },
}

impl FrameError {
    /// The id of the request, when one was readable.
    pub fn id(&self) -> Option<&RawId> {
        match self {
            FrameError::Invalid { id: Some(id), .. } => Some(id),
            _ => None,
        }
    }

    /// A one-sentence reason for the client.
    pub fn reason(&self) -> &str {
        match self {
            FrameError::Parse(r) => r,
            FrameError::Invalid { reason, .. } => reason,
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "raw_present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "raw_present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "raw_present")]
    error: Option<&'a RawValue>,
}

/// Keeps a present member even when its value is `null` (serde maps `null` to `None` otherwise).
fn raw_present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The span of `part` inside `base`; `part` must borrow from `base`.
pub(crate) fn span_of(base: &[u8], part: &str) -> Span {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    debug_assert!(start + part.len() <= base.len());
    start..start + part.len()
}

/// Whether raw JSON text is a valid MCP request id: a string or a number.
fn is_valid_id(raw: &str) -> bool {
    matches!(raw.as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
}

/// A parse failure of `body` as a frame error: a syntax error, or valid JSON of the wrong shape.
pub(crate) fn classify(body: &[u8], err: serde_json::Error, id: Option<RawId>) -> FrameError {
    // A shape error can surface before a syntax error later in the text; only text that
    // parses as some JSON value is "valid JSON but not a request".
    if err.is_syntax() || err.is_eof() || serde_json::from_slice::<IgnoredAny>(body).is_err() {
        FrameError::Parse(format!("Parse error: {err}"))
    } else {
        FrameError::Invalid { reason: format!("Invalid request: {err}"), id }
    }
}

impl Message {
    /// Frame one JSON-RPC message (not a batch) from its bytes.
    ///
    /// Errors: [`FrameError::Parse`] for text that is not JSON; [`FrameError::Invalid`] for JSON
    /// that is not a JSON-RPC 2.0 request, notification or response (wrong `jsonrpc`, a null or
    /// non-scalar id, a non-string method, non-object params, both or neither of result/error).
    pub fn parse(src: Bytes) -> Result<Message, FrameError> {
        let kind = {
            let env: Envelope<'_> = serde_json::from_slice(&src).map_err(|e| classify(&src, e, None))?;
            let id = match env.id {
                Some(raw) if is_valid_id(raw.get()) => Some(IdSpan(span_of(&src, raw.get()))),
                Some(raw) => {
                    return Err(FrameError::Invalid {
                        reason: format!("Invalid request: id must be a string or a number, not {}", raw.get()),
                        id: None,
                    });
                }
                None => None,
            };
            let owned_id = id.as_ref().map(|i| RawId(src.slice(i.0.clone())));
            let invalid = |reason: &str| FrameError::Invalid { reason: reason.to_string(), id: owned_id.clone() };
            if env.jsonrpc.as_deref() != Some("2.0") {
                return Err(invalid("Invalid request: jsonrpc must be \"2.0\""));
            }
            let params = match env.params {
                Some(raw) if raw.get() == "null" => None,
                Some(raw) if raw.get().starts_with('{') => Some(span_of(&src, raw.get())),
                Some(_) => return Err(invalid("Invalid request: params must be an object")),
                None => None,
            };
            match (env.method, id, env.result, env.error) {
                (Some(method), Some(id), None, None) => {
                    Kind::Request { id, method: Method::from_name(&method), params }
                }
                (Some(method), None, None, None) => Kind::Notification { method: Method::from_name(&method), params },
                (None, Some(id), Some(result), None) => {
                    Kind::Response { id, outcome: Outcome::Result(span_of(&src, result.get())) }
                }
                (None, Some(id), None, Some(error)) if error.get().starts_with('{') => {
                    Kind::Response { id, outcome: Outcome::Error(span_of(&src, error.get())) }
                }
                (None, None, None, Some(error)) if error.get().starts_with('{') => {
                    // An error answering an unparseable request carries `id: null`.
                    Kind::Response { id: IdSpan(0..0), outcome: Outcome::Error(span_of(&src, error.get())) }
                }
                (Some(_), _, _, _) => {
                    return Err(invalid("Invalid request: a request cannot carry result or error"));
                }
                _ => {
                    return Err(invalid("Invalid request: expected a request, notification or response"));
                }
            }
        };
        Ok(Message { src, kind })
    }

    /// The bytes of a span of this message.
    pub fn slice(&self, span: &Span) -> &[u8] {
        &self.src[span.clone()]
    }

    /// The request or response id, owned.
    pub fn id(&self) -> Option<RawId> {
        match &self.kind {
            Kind::Request { id, .. } | Kind::Response { id, .. } if !id.0.is_empty() => {
                Some(RawId(self.src.slice(id.0.clone())))
            }
            _ => None,
        }
    }

    /// The method, for requests and notifications.
    pub fn method(&self) -> Option<&Method> {
        match &self.kind {
            Kind::Request { method, .. } | Kind::Notification { method, .. } => Some(method),
            Kind::Response { .. } => None,
        }
    }

    /// The params span, for requests and notifications that carry params.
    pub fn params(&self) -> Option<&Span> {
        match &self.kind {
            Kind::Request { params, .. } | Kind::Notification { params, .. } => params.as_ref(),
            Kind::Response { .. } => None,
        }
    }
}

/// The fields of a JSON-RPC error object the gateway reads.
#[derive(Debug, Deserialize)]
pub struct ErrorFields<'a> {
    /// The error code.
    pub code: i64,
    /// The error message.
    #[serde(borrow)]
    pub message: Cow<'a, str>,
}

/// Read the code and message of a raw JSON-RPC error object; `None` if it is malformed.
pub fn error_fields(raw: &[u8]) -> Option<ErrorFields<'_>> {
    serde_json::from_slice(raw).ok()
}

/// Append a success response `{"jsonrpc":"2.0","id":…,"result":…}` to `out`.
pub fn write_result(out: &mut Vec<u8>, id: &[u8], result: &[u8]) {
    out.reserve(result.len() + id.len() + 36);
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id);
    out.extend_from_slice(b",\"result\":");
    out.extend_from_slice(result);
    out.push(b'}');
}

/// Append a response that carries a raw error object verbatim.
pub fn write_raw_error(out: &mut Vec<u8>, id: Option<&[u8]>, error: &[u8]) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.unwrap_or(b"null"));
    out.extend_from_slice(b",\"error\":");
    out.extend_from_slice(error);
    out.push(b'}');
}

/// Append an error response; `id` is `None` when the request id could not be read (`"id":null`).
pub fn write_error(out: &mut Vec<u8>, id: Option<&[u8]>, code: i64, message: &str, data: Option<&serde_json::Value>) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.unwrap_or(b"null"));
    out.extend_from_slice(b",\"error\":{\"code\":");
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(b",\"message\":");
    write_json_str(out, message);
    if let Some(data) = data {
        out.extend_from_slice(b",\"data\":");
        serde_json::to_writer(&mut *out, data).expect("writing JSON to a Vec cannot fail");
    }
    out.extend_from_slice(b"}}");
}

/// Append a request `{"jsonrpc":"2.0","id":…,"method":…,"params":…}`; `params` is raw JSON.
pub fn write_request(out: &mut Vec<u8>, id: &[u8], method: &str, params: Option<&[u8]>) {
    write_request_with(out, id, method, params.map(|p| move |out: &mut Vec<u8>| out.extend_from_slice(p)));
}

/// Append a request whose params (when `params` is given) are written in place by `params`, so
/// a rewritten params object never needs a buffer of its own. The one request writer: the
/// gateway's requests to upstreams and to clients all go through it.
pub fn write_request_with(out: &mut Vec<u8>, id: &[u8], method: &str, params: Option<impl FnOnce(&mut Vec<u8>)>) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id);
    out.extend_from_slice(b",\"method\":");
    write_json_str(out, method);
    if let Some(params) = params {
        out.extend_from_slice(b",\"params\":");
        params(out);
    }
    out.push(b'}');
}

/// Append a notification `{"jsonrpc":"2.0","method":…,"params":…}`; `params` is raw JSON.
pub fn write_notification(out: &mut Vec<u8>, method: &str, params: Option<&[u8]>) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"method\":");
    write_json_str(out, method);
    if let Some(params) = params {
        out.extend_from_slice(b",\"params\":");
        out.extend_from_slice(params);
    }
    out.push(b'}');
}

/// Append `s` as a JSON string literal.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing JSON to a Vec cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Message, FrameError> {
        Message::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn request_keeps_raw_spans() {
        let m = parse(r#"{"jsonrpc":"2.0","id":"a1","method":"tools/call","params":{"name":"x","z":[1,2]}}"#).unwrap();
        let Kind::Request { id, method, params } = &m.kind else { panic!("not a request") };
        assert_eq!(m.slice(&id.0), br#""a1""#);
        assert_eq!(*method, Method::ToolsCall);
        assert_eq!(m.slice(params.as_ref().unwrap()), br#"{"name":"x","z":[1,2]}"#);
    }

    #[test]
    fn notification_response_and_errors() {
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap().kind,
            Kind::Notification { method: Method::NotificationsInitialized, params: None }
        ));
        let r = parse(r#"{"jsonrpc":"2.0","id":7,"result":{"ok":true}}"#).unwrap();
        assert!(matches!(&r.kind, Kind::Response { outcome: Outcome::Result(_), .. }));
        assert_eq!(r.id().unwrap().as_bytes(), b"7");
        let e = parse(r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"nope"}}"#).unwrap();
        let Kind::Response { outcome: Outcome::Error(span), .. } = &e.kind else { panic!() };
        assert_eq!(error_fields(e.slice(span)).unwrap().code, -32601);
    }

    #[test]
    fn malformed_inputs_are_classified() {
        assert!(matches!(parse("{not json"), Err(FrameError::Parse(_))));
        assert!(matches!(parse(""), Err(FrameError::Parse(_))));
        assert!(matches!(parse("42"), Err(FrameError::Invalid { .. })));
        assert!(matches!(
            parse(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#),
            Err(FrameError::Invalid { id: Some(_), .. })
        ));
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#), Err(FrameError::Invalid { .. })));
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#), Err(FrameError::Invalid { .. })));
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","id":1,"method":3}"#), Err(FrameError::Invalid { .. })));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#),
            Err(FrameError::Invalid { .. })
        ));
        assert!(matches!(parse(r#"{"jsonrpc":"2.0","id":1}"#), Err(FrameError::Invalid { .. })));
    }

    #[test]
    fn writers_produce_valid_json() {
        let mut out = Vec::new();
        write_error(&mut out, None, -32700, "bad \"quote\"", Some(&serde_json::json!({"x":1})));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["error"]["message"], "bad \"quote\"");
        assert!(v["id"].is_null());
    }
}
