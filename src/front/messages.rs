//! Client messages whose meaning does not depend on the transport, handled the same way by the
//! legacy and modern HTTP fronts and the stdio front: `notifications/cancelled`, the client's
//! answers to relayed server-to-client requests, those requests themselves, and the
//! `subscriptions/listen` filter with its acknowledgement (2026-07-28 `basic/utilities`).

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::pipeline::parts::ClientAnswer;
use crate::session::hub::Filter;
use crate::session::registry::SessionState;
use crate::wire::jsonrpc::{Message, Outcome, write_notification, write_request};
use crate::wire::object::ObjectView;

/// How long a relayed server-to-client request waits for the client's answer.
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(300);

/// The raw `requestId` a `notifications/cancelled` names, if its params carry one.
pub fn cancelled_request(params: Option<&[u8]>) -> Option<Bytes> {
    let params = params?;
    let view = ObjectView::parse(params).ok()?;
    view.get(params, "requestId").map(|s| Bytes::copy_from_slice(&params[s]))
}

/// Deliver a client's response message to the relayed request it answers (the gateway's
/// relayed requests have string ids); returns whether something was waiting for it.
pub fn deliver_answer(state: &SessionState, msg: &Message, outcome: &Outcome) -> bool {
    let Some(id) = msg.id().and_then(|i| serde_json::from_slice::<String>(i.as_bytes()).ok()) else {
        return false;
    };
    let answer = match outcome {
        Outcome::Result(span) => ClientAnswer::Result(msg.src.slice(span.clone())),
        Outcome::Error(span) => ClientAnswer::Error(msg.src.slice(span.clone())),
    };
    let delivered = state.answer(&id, answer);
    if !delivered {
        tracing::debug!(id, "a client answered a request nothing waits for");
    }
    delivered
}

/// Relay an upstream's request to the client: mint the gateway's id for it, wait (in the
/// background, at most [`RELAY_TIMEOUT`]) for the client's answer to reach `reply`, and return
/// the request message to send to the client.
///
/// The id is `sekisho-` and 32 hex digits of 128 random bits, registered only in this
/// session's state: it cannot be guessed, and an answer to it counts only when it comes
/// through the same session (which only its own caller can use).
pub fn relay_request(
    state: &SessionState,
    method: &str,
    params: Option<&[u8]>,
    reply: oneshot::Sender<ClientAnswer>,
) -> Bytes {
    let id = format!("sekisho-{}", hex::encode(rand::random::<[u8; 16]>()));
    let rx = state.expect_answer(id.clone());
    tokio::spawn(async move {
        if let Ok(Ok(answer)) = tokio::time::timeout(RELAY_TIMEOUT, rx).await {
            let _ = reply.send(answer);
        }
    });
    let mut out = Vec::with_capacity(64 + params.map_or(0, <[u8]>::len));
    write_request(&mut out, format!("\"{id}\"").as_bytes(), method, params);
    Bytes::from(out)
}

/// A `subscriptions/listen` request read: the lists it asks for, and the
/// `notifications/subscriptions/acknowledged` message that starts its stream (tagged with the
/// request's id as the subscription id), naming `task_ids` when the gateway agreed to relay
/// status notifications of those tasks (`front::tasks`).
pub fn listen(id: &[u8], params: &[u8], task_ids: &[String]) -> (Filter, Bytes) {
    let requested: serde_json::Value = ObjectView::parse(params)
        .ok()
        .and_then(|v| v.get(params, "notifications"))
        .and_then(|s| serde_json::from_slice(&params[s]).ok())
        .unwrap_or_default();
    let on = |k: &str| requested.get(k).and_then(|v| v.as_bool()) == Some(true);
    let filter = Filter {
        tools: on("toolsListChanged"),
        prompts: on("promptsListChanged"),
        resources: on("resourcesListChanged"),
    };
    let mut agreed: serde_json::Map<String, serde_json::Value> = [
        ("toolsListChanged", filter.tools),
        ("promptsListChanged", filter.prompts),
        ("resourcesListChanged", filter.resources),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(k, _)| (k.to_string(), true.into()))
    .collect();
    if !task_ids.is_empty() {
        agreed.insert("taskIds".into(), task_ids.into());
    }
    let ack = serde_json::json!({
        "notifications": agreed,
        "_meta": { "io.modelcontextprotocol/subscriptionId": serde_json::from_slice::<serde_json::Value>(id).unwrap_or_default() },
    });
    let mut out = Vec::new();
    write_notification(&mut out, "notifications/subscriptions/acknowledged", Some(ack.to_string().as_bytes()));
    (filter, Bytes::from(out))
}
