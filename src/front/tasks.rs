//! Task status notifications on a modern `subscriptions/listen` (the tasks extension, "Task
//! Status Notifications"): the sealed task ids a client names in `notifications.taskIds` that
//! open for it are agreed to; for each upstream replica holding some of them the gateway opens
//! a listen of the client's own naming the upstream's ids, and relays its `notifications/tasks`
//! with the task id sealed again for the client and the client's subscription id. Ids that do
//! not open for the caller, lie outside the route's scope, or sit on a stdio upstream are not
//! agreed to (the client polls `tasks/get` for those).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::Shared;
use crate::pipeline::parts::{Params, Principal, Scope};
use crate::session::task_id::MAX_SEALED_LEN;
use crate::upstream::connection::Connection;
use crate::upstream::http::{HttpConn, task_listen};
use crate::upstream::translate::CLIENT_INFO;
use crate::wire::jsonrpc::{Message, write_notification};
use crate::wire::mcp;
use crate::wire::object::{ObjectView, ObjectWriter};

/// The most task ids one `subscriptions/listen` is agreed to; further ones are not.
pub const MAX_TASK_IDS: usize = 64;

/// The `_meta` key of the subscription id on listen notifications (2026-07-28).
const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

/// One upstream replica's share of a listen: its connection, its ids → the client's ids.
type Group = (Arc<HttpConn>, &'static str, Vec<(String, String)>);

/// Start relaying the task notifications `params` asks for to `tx` (the client's listen stream,
/// whose id is `listen_id`), until that stream ends or the gateway drains; the client's ids
/// agreed to, for its acknowledgement. `capabilities` are the client's, sent upstream as its
/// own envelope (they declare the extension; the caller checked).
pub fn relay(
    shared: &Shared,
    scope: &Scope,
    principal: &Principal,
    listen_id: &Bytes,
    params: &Params,
    capabilities: &Bytes,
    tx: &mpsc::Sender<Bytes>,
) -> Vec<String> {
    let mut groups: BTreeMap<(Arc<str>, usize), Group> = BTreeMap::new();
    for id in asked(params).into_iter().take(MAX_TASK_IDS) {
        let Some(claims) = (id.len() <= MAX_SEALED_LEN).then(|| shared.tasks.open(&id, principal.tag())).flatten()
        else {
            continue;
        };
        if matches!(scope, Scope::Upstream(ns) if **ns != *claims.upstream) {
            continue;
        }
        let Some(up) = shared.upstreams.get(&claims.upstream) else { continue };
        let Some(handshake) = up.last_handshake().filter(|h| h.declares_tasks()) else { continue };
        let conn = up.replicas().into_iter().find(|r| r.index == claims.replica).and_then(|r| r.connection());
        let Some(Connection::Http(http)) = conn.as_deref() else { continue };
        let group = groups
            .entry((Arc::clone(&up.name), claims.replica))
            .or_insert_with(|| (Arc::clone(http), handshake.version, Vec::new()));
        if !group.2.iter().any(|(_, sealed)| *sealed == id) {
            group.2.push((claims.task_id, id));
        }
    }
    let mut agreed = Vec::new();
    for (conn, version, ids) in groups.into_values() {
        agreed.extend(ids.iter().map(|(_, sealed)| sealed.clone()));
        let upstream_params = listen_params(&ids, capabilities, version);
        let ids: HashMap<String, String> = ids.into_iter().collect();
        let (tx, listen_id, draining) = (tx.clone(), listen_id.clone(), shared.draining.clone());
        tokio::spawn(async move {
            let deliver = |msg: Message| match rewrite(&msg, &ids, &listen_id) {
                // A client that does not read loses notifications, never the stream: it can poll.
                Some(out) => !matches!(tx.try_send(out), Err(TrySendError::Closed(_))),
                None => !tx.is_closed(),
            };
            tokio::select! {
                () = task_listen::relay(conn, upstream_params, deliver) => {}
                () = tx.closed() => {}
                () = draining.cancelled() => {}
            }
        });
    }
    agreed
}

/// The strings of `params.notifications.taskIds` (other entries are ignored).
fn asked(params: &Params) -> Vec<String> {
    let Some(raw) = params.get_bytes("notifications") else { return Vec::new() };
    let Some(ids) = ObjectView::parse(&raw).ok().and_then(|v| v.get(&raw, "taskIds")).map(|s| raw.slice(s)) else {
        return Vec::new();
    };
    serde_json::from_slice::<Vec<serde_json::Value>>(&ids)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .take(MAX_TASK_IDS)
        .collect()
}

/// The upstream listen's params: its own task ids, and the client's envelope.
fn listen_params(ids: &[(String, String)], capabilities: &[u8], version: &str) -> Bytes {
    let mut out = Vec::with_capacity(256);
    let mut w = ObjectWriter::begin(&mut out);
    w.with("notifications", |o| {
        let upstream_ids: Vec<&str> = ids.iter().map(|(own, _)| own.as_str()).collect();
        let filter = serde_json::json!({ "taskIds": upstream_ids });
        serde_json::to_writer(&mut *o, &filter).expect("writing JSON to a Vec cannot fail");
    });
    w.with("_meta", |o| {
        let mut m = ObjectWriter::begin(o);
        m.string(mcp::META_PROTOCOL_VERSION, version);
        m.raw(mcp::META_CLIENT_CAPABILITIES, capabilities);
        m.raw(mcp::META_CLIENT_INFO, CLIENT_INFO.as_bytes());
        m.end();
    });
    w.end();
    Bytes::from(out)
}

/// An upstream's `notifications/tasks` for the client: its `taskId` replaced by the client's
/// id, `_meta`'s subscription id by the client's listen id; `None` for a task not asked for.
fn rewrite(msg: &Message, ids: &HashMap<String, String>, listen_id: &[u8]) -> Option<Bytes> {
    let raw = msg.slice(msg.params()?);
    let view = ObjectView::parse(raw).ok()?;
    let sealed = ids.get(view.get_str(raw, "taskId")?.as_ref())?;
    let mut params = Vec::with_capacity(raw.len() + sealed.len());
    let mut w = ObjectWriter::begin(&mut params);
    let mut wrote_meta = false;
    for (key, span) in view.iter(raw) {
        match key {
            "taskId" => {
                w.string(key, sealed);
            }
            "_meta" => {
                let meta = &raw[span];
                w.with("_meta", |o| {
                    let mut m = ObjectWriter::begin(o);
                    if let Ok(mv) = ObjectView::parse(meta) {
                        for (k, s) in mv.iter(meta).filter(|(k, _)| *k != SUBSCRIPTION_ID) {
                            m.raw(k, &meta[s]);
                        }
                    }
                    m.raw(SUBSCRIPTION_ID, listen_id);
                    m.end();
                });
                wrote_meta = true;
            }
            _ => {
                w.raw(key, &raw[span]);
            }
        }
    }
    if !wrote_meta {
        w.with("_meta", |o| {
            let mut m = ObjectWriter::begin(o);
            m.raw(SUBSCRIPTION_ID, listen_id);
            m.end();
        });
    }
    w.end();
    let mut out = Vec::with_capacity(params.len() + 64);
    write_notification(&mut out, "notifications/tasks", Some(&params));
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_rewritten_for_the_client_and_others_dropped() {
        let ids: HashMap<String, String> = [("task-1".to_string(), "SEALED".to_string())].into();
        let up = br#"{"jsonrpc":"2.0","method":"notifications/tasks","params":{"taskId":"task-1","status":"completed","result":{"content":[]},"_meta":{"io.modelcontextprotocol/subscriptionId":3,"x":1}}}"#;
        let msg = Message::parse(Bytes::from_static(up)).unwrap();
        let out: serde_json::Value = serde_json::from_slice(&rewrite(&msg, &ids, b"\"L\"").unwrap()).unwrap();
        assert_eq!(out["params"]["taskId"], "SEALED");
        assert_eq!(out["params"]["status"], "completed");
        assert_eq!(out["params"]["_meta"], serde_json::json!({"x": 1, "io.modelcontextprotocol/subscriptionId": "L"}));
        let other =
            br#"{"jsonrpc":"2.0","method":"notifications/tasks","params":{"taskId":"task-2","status":"working"}}"#;
        assert!(rewrite(&Message::parse(Bytes::from_static(other)).unwrap(), &ids, b"1").is_none());
    }
}
