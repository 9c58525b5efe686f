//! The tasks extension (`io.modelcontextprotocol/tasks`, ext-tasks 2026-07-28) as the echo
//! upstream plays it with `--tasks`: `task_echo` answers a client that declared the extension
//! with a `CreateTaskResult` whose task completes after `ms` milliseconds with the echoed
//! text; `tasks/get`, `tasks/update` and `tasks/cancel` work on the stored tasks. Task ids are
//! `task-1`, `task-2`, … on purpose: two upstreams mint the same ids, so a gateway that mixed
//! them up would be caught. At most [`MAX_TASKS`] are kept (the oldest go first). A
//! `subscriptions/listen` naming task ids gets a `notifications/tasks` for each when it
//! completes ([`Tasks::watch`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The extension's identifier.
pub const EXT: &str = "io.modelcontextprotocol/tasks";
/// Tasks kept at most.
pub const MAX_TASKS: usize = 1000;
const STAMP: &str = "2026-07-28T00:00:00Z";

struct Task {
    number: u64,
    text: String,
    done_at: Instant,
    cancelled: bool,
    updates: u64,
}

/// The upstream's tasks.
#[derive(Default)]
pub struct Tasks {
    map: Mutex<BTreeMap<String, Task>>,
    next: Mutex<u64>,
}

/// Whether a request's params declare the extension in their modern client capabilities.
pub fn declared(params: &Value) -> bool {
    params
        .pointer("/_meta/io.modelcontextprotocol~1clientCapabilities/extensions")
        .and_then(|e| e.get(EXT))
        .is_some_and(|v| !v.is_null())
}

fn base(id: &str, status: &str) -> Value {
    json!({"taskId": id, "status": status, "createdAt": STAMP, "lastUpdatedAt": STAMP, "ttlMs": 600000, "pollIntervalMs": 50})
}

impl Tasks {
    /// Create a task that completes with `text` after `ms`; the `CreateTaskResult`.
    pub fn create(&self, text: String, ms: u64) -> Value {
        let number = {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            *next
        };
        let id = format!("task-{number}");
        let mut map = self.map.lock().unwrap();
        while map.len() >= MAX_TASKS {
            let oldest = map.iter().min_by_key(|(_, t)| t.number).map(|(k, _)| k.clone()).expect("not empty");
            map.remove(&oldest);
        }
        let task =
            Task { number, text, done_at: Instant::now() + Duration::from_millis(ms), cancelled: false, updates: 0 };
        map.insert(id.clone(), task);
        let mut r = base(&id, "working");
        r["resultType"] = "task".into();
        r
    }

    /// Of `ids`, the known tasks still to complete and when they do (for status notifications).
    pub fn watch(&self, ids: &[String]) -> Vec<(String, Instant)> {
        let map = self.map.lock().unwrap();
        ids.iter().filter_map(|id| map.get(id).filter(|t| !t.cancelled).map(|t| (id.clone(), t.done_at))).collect()
    }

    /// Answer `tasks/get`, `tasks/update` or `tasks/cancel`: a result, or an error `(code, message)`.
    pub fn method(&self, method: &str, params: &Value) -> Result<Value, (i64, String)> {
        if !declared(params) {
            return Err((-32021, "Missing required client capability".into()));
        }
        let id = params["taskId"].as_str().unwrap_or_default();
        let mut map = self.map.lock().unwrap();
        let task = map.get_mut(id).ok_or((-32602, "Failed to retrieve task: Task not found".into()))?;
        match method {
            "tasks/get" => {
                let status = if task.cancelled {
                    "cancelled"
                } else if Instant::now() >= task.done_at {
                    "completed"
                } else {
                    "working"
                };
                let mut r = base(id, status);
                r["resultType"] = "complete".into();
                if status == "completed" {
                    let text = format!("{} (updates: {})", task.text, task.updates);
                    r["result"] = json!({"content": [{"type": "text", "text": text}], "isError": false});
                }
                Ok(r)
            }
            "tasks/update" => {
                task.updates += 1;
                Ok(json!({"resultType": "complete"}))
            }
            "tasks/cancel" => {
                if Instant::now() < task.done_at {
                    task.cancelled = true;
                }
                Ok(json!({"resultType": "complete"}))
            }
            _ => Err((-32601, format!("Method not found: {method}"))),
        }
    }
}
