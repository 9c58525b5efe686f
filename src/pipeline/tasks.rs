//! The tasks extension (`io.modelcontextprotocol/tasks`, ext-tasks 2026-07-28) as resolve
//! applies it: which upstream a `tasks/get|update|cancel` goes to (the one its sealed task id
//! names), and the sealing of task ids in what comes back (a `CreateTaskResult` from
//! `tools/call`, the `taskId` that `tasks/get` echoes).
//!
//! The extension belongs to the modern era: a legacy client never sees it declared, and its
//! tasks methods are -32601 (`Method::TasksResult` and `Method::TasksList`, from the 2025-11-25
//! experimental tasks the extension replaced, are -32601 for everyone). A modern client must
//! declare the extension in the request's own capabilities to use the tasks methods (-32021
//! otherwise, with `data.requiredCapabilities`); a task id it did not get from this gateway
//! under its own caller identity is "not found" (-32602), whatever the reason.

use std::sync::Arc;

use bytes::Bytes;

use super::parts::{Origin, Params, Principal, Reply, Scope};
use crate::catalog::replace_member;
use crate::error::GatewayError;
use crate::session::task_id::TaskSealer;
use crate::upstream::request::Outbound;
use crate::upstream::{Upstream, UpstreamSet};
use crate::wire::jsonrpc::Method;
use crate::wire::mcp::{self, Era};
use crate::wire::object::{ObjectView, declares_extension};

/// Whether a client's capabilities object (its request's, 2026-07-28) declares the extension.
pub fn client_declares_tasks(capabilities: &[u8]) -> bool {
    declares_extension(capabilities, mcp::EXT_TASKS)
}

/// Whether a `subscriptions/listen` asks for task status notifications (`notifications.taskIds`
/// present). The gateway agrees to none (its acknowledgement names no task ids, so the client
/// polls `tasks/get`), but a client that asks without declaring the extension gets -32021.
pub fn listen_asks_for_tasks(params: &Params) -> bool {
    let Some(raw) = params.get_bytes("notifications") else { return false };
    ObjectView::parse(&raw).is_ok_and(|v| v.get(&raw, "taskIds").is_some())
}

/// Whether `method` is one of the extension's methods that reach an upstream.
pub fn is_task_method(method: &Method) -> bool {
    matches!(method, Method::TasksGet | Method::TasksUpdate | Method::TasksCancel)
}

/// Where a tasks method goes: the upstream and replica that hold the task, and the upstream's
/// own id.
pub struct TaskTarget<'a> {
    /// The upstream the sealed id names.
    pub upstream: &'a Arc<Upstream>,
    /// The replica that created the task (its `urls` entry, or its process in this gateway's
    /// pool): the task's state lives there.
    pub replica: usize,
    /// The upstream's own task id (sent as `params.taskId` and in `Mcp-Name`).
    pub task_id: Arc<str>,
}

/// The target of `tasks/get|update|cancel` from `principal` in `scope`.
///
/// Errors: [`GatewayError::MethodNotFound`] for a legacy client; [`GatewayError::TasksNotDeclared`]
/// when the request's capabilities lack the extension; [`GatewayError::InvalidParams`] without
/// a string `taskId`; [`GatewayError::TaskNotFound`] for an id that does not open for this
/// caller, names an upstream outside `scope`, or one that is gone.
pub fn target<'a>(
    sealer: &TaskSealer,
    upstreams: &'a UpstreamSet,
    method: &Method,
    params: &Params,
    client: (Era, &[u8]),
    scope: &Scope,
    principal: &Principal,
) -> Result<TaskTarget<'a>, GatewayError> {
    let (era, capabilities) = client;
    if era == Era::Legacy {
        return Err(GatewayError::MethodNotFound(method.as_str().to_string()));
    }
    if !client_declares_tasks(capabilities) {
        return Err(GatewayError::TasksNotDeclared);
    }
    let presented = params.required_str("taskId")?;
    let claims = sealer.open(&presented, principal.tag()).ok_or(GatewayError::TaskNotFound)?;
    if let Scope::Upstream(ns) = scope
        && **ns != *claims.upstream
    {
        return Err(GatewayError::TaskNotFound);
    }
    let upstream = upstreams.get(&claims.upstream).ok_or(GatewayError::TaskNotFound)?;
    Ok(TaskTarget { upstream, replica: claims.replica, task_id: Arc::from(claims.task_id) })
}

/// What to do to a routed call's reply on its way back to the client.
pub enum Finish {
    /// Nothing.
    None,
    /// A `resources/read`: a missing resource is reported in the client's era's terms under
    /// this URI (a legacy upstream's -32002 becomes -32602 for a modern client; a modern
    /// upstream's -32602 with `data.uri` becomes -32002 for a legacy one).
    ResourceUri(String, crate::wire::mcp::Era),
    /// A `tools/call` from a client that declared the extension: a `CreateTaskResult` gets a
    /// sealed task id bound to this caller, naming the replica that answered (`request`, once
    /// [`Finish::of`] has bound it).
    SealCreated { sealer: Arc<TaskSealer>, caller: [u8; 16], request: Option<Arc<Outbound>> },
    /// A `tasks/get`: the result echoes the id the client presented, not the upstream's.
    EchoId(String),
}

impl Finish {
    /// The finish for a call of `method` by `principal`, whose modern `client` capabilities are
    /// given (`None` for a legacy client), presenting `task_id` for a tasks method.
    pub fn for_call(
        method: &Method,
        client_capabilities: Option<&[u8]>,
        sealer: &Arc<TaskSealer>,
        principal: &Principal,
        presented: Option<String>,
        uri: Option<(String, crate::wire::mcp::Era)>,
    ) -> Finish {
        match method {
            Method::ResourcesRead => uri.map_or(Finish::None, |(uri, era)| Finish::ResourceUri(uri, era)),
            Method::ToolsCall if client_capabilities.is_some_and(client_declares_tasks) => {
                Finish::SealCreated { sealer: Arc::clone(sealer), caller: principal.tag(), request: None }
            }
            Method::TasksGet => presented.map_or(Finish::None, Finish::EchoId),
            _ => Finish::None,
        }
    }

    /// This finish for the routed request `request` (whose answering replica a created task
    /// is sealed with).
    pub fn of(self, request: &Arc<Outbound>) -> Finish {
        match self {
            Finish::SealCreated { sealer, caller, .. } => {
                Finish::SealCreated { sealer, caller, request: Some(Arc::clone(request)) }
            }
            other => other,
        }
    }

    /// Apply to `reply`.
    ///
    /// Errors: [`GatewayError::UpstreamProtocol`] when an upstream's `CreateTaskResult` carries
    /// no usable `taskId` (missing, not a string, empty, or longer than the gateway seals).
    pub fn apply(&self, reply: Reply) -> Result<Reply, GatewayError> {
        match self {
            Finish::None => Ok(reply),
            Finish::ResourceUri(uri, crate::wire::mcp::Era::Modern) => {
                Ok(crate::upstream::translate::resource_error_for_modern(reply, uri))
            }
            Finish::ResourceUri(uri, crate::wire::mcp::Era::Legacy) => {
                Ok(crate::upstream::translate::resource_error_for_legacy(reply, uri))
            }
            Finish::EchoId(id) => Ok(match reply {
                Reply::Result { body, origin } if has_task_id(&body) => {
                    Reply::Result { body: replace_member(&body, "taskId", id), origin }
                }
                other => other,
            }),
            Finish::SealCreated { sealer, caller, request } => {
                let replica = request.as_ref().and_then(|r| r.answered_by()).unwrap_or(0);
                seal_created(sealer, *caller, replica, reply)
            }
        }
    }
}

fn has_task_id(body: &Bytes) -> bool {
    memchr::memmem::find(body, b"\"taskId\"").is_some()
}

/// A `CreateTaskResult` (`resultType: "task"`) with its `taskId` sealed for `caller`; any other
/// reply unchanged.
fn seal_created(sealer: &TaskSealer, caller: [u8; 16], replica: usize, reply: Reply) -> Result<Reply, GatewayError> {
    let Reply::Result { body, origin: Origin::Upstream(era, upstream) } = reply else { return Ok(reply) };
    let unchanged = || Reply::Result { body: body.clone(), origin: Origin::Upstream(era, Arc::clone(&upstream)) };
    if memchr::memmem::find(&body, b"\"task\"").is_none() {
        return Ok(unchanged());
    }
    let Ok(view) = ObjectView::parse(&body) else { return Ok(unchanged()) };
    if view.get_str(&body, "resultType").as_deref() != Some(mcp::RESULT_TYPE_TASK) {
        return Ok(unchanged());
    }
    let sealed = view
        .get_str(&body, "taskId")
        .filter(|_| era == Era::Modern)
        .and_then(|id| sealer.seal(&upstream, replica, &id, caller))
        .ok_or_else(|| GatewayError::UpstreamProtocol {
            upstream: upstream.to_string(),
            reason: "a CreateTaskResult without a usable taskId".into(),
        })?;
    Ok(Reply::Result { body: replace_member(&body, "taskId", &sealed), origin: Origin::Upstream(era, upstream) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream_reply(body: &str) -> Reply {
        Reply::Result {
            body: Bytes::copy_from_slice(body.as_bytes()),
            origin: Origin::Upstream(Era::Modern, "up".into()),
        }
    }

    fn body(r: Reply) -> serde_json::Value {
        let Reply::Result { body, .. } = r else { panic!("not a result") };
        serde_json::from_slice(&body).unwrap()
    }

    #[test]
    fn created_tasks_get_sealed_ids_and_other_results_pass() {
        let sealer = Arc::new(TaskSealer::new(Some([5; 32])));
        let finish = Finish::SealCreated { sealer: Arc::clone(&sealer), caller: [7; 16], request: None };
        let created = r#"{"resultType":"task","taskId":"t-1","status":"working","ttlMs":1000}"#;
        let v = body(finish.apply(upstream_reply(created)).unwrap());
        let id = v["taskId"].as_str().unwrap();
        let claims = sealer.open(id, [7; 16]).unwrap();
        assert_eq!((claims.upstream.as_str(), claims.replica, claims.task_id.as_str()), ("up", 0, "t-1"));
        assert_eq!(v["status"], "working");
        let plain = r#"{"resultType":"complete","content":[{"type":"text","text":"\"task\""}],"taskId":"x"}"#;
        assert_eq!(body(finish.apply(upstream_reply(plain)).unwrap())["taskId"], "x");
        let broken = r#"{"resultType":"task","status":"working"}"#;
        assert!(matches!(finish.apply(upstream_reply(broken)), Err(GatewayError::UpstreamProtocol { .. })));
    }

    #[test]
    fn declaration_is_read_from_extensions_only() {
        assert!(client_declares_tasks(br#"{"extensions":{"io.modelcontextprotocol/tasks":{}}}"#));
        assert!(!client_declares_tasks(br#"{"extensions":{"io.modelcontextprotocol/tasks":null}}"#));
        assert!(!client_declares_tasks(br#"{"io.modelcontextprotocol/tasks":{}}"#));
        assert!(!client_declares_tasks(br#"{"sampling":{}}"#));
    }
}
