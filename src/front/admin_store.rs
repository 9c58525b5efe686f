//! The store's admin API: `POST /admin/store/{kind}/{action}` runs one operator command
//! ([`crate::store::ops::Op`], its arguments as a JSON object in the body) against the
//! gateway's `[store]`, for an admin caller only, and answers `{"output": "…"}` with the text
//! `sekisho tenant|server|instance|key … --database-url` prints (`--url` prints the same).
//!
//! Errors answer `{"error": "…", "kind": "…"}`: 404 `not_found` (also for an unknown command
//! and a gateway without `[store]`), 409 `conflict`, 400 `invalid`, 503 `unavailable` with
//! `Retry-After`, 500 otherwise. Neither answers nor log lines hold a secret value: the body's
//! secret values go sealed into the store, and store errors name things, never values.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::rescue::json;
use super::respond::read_post_body;
use super::{Admin, Shared};
use crate::store::StoreError;
use crate::store::ops::{self, Op};

/// `POST /admin/store/{kind}/{action}`: see the module doc. The body is read (bounded by
/// `[server] max_body_bytes` and `body_read_timeout`) only after the caller passed [`Admin`]
/// (401 without a key, 403 for a key that is not an admin's, store keys included).
pub async fn run(
    State(shared): State<Arc<Shared>>,
    Admin(caller): Admin,
    Path((kind, action)): Path<(String, String)>,
    body: Body,
) -> Response {
    let command = format!("{kind}/{action}");
    let Some(&command) = ops::COMMANDS.iter().find(|c| **c == command) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such store command (see docs/multi-tenant.md)");
    };
    let Some(tenancy) = &shared.tenancy else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this gateway has no [store] (set [store] postgres_url to manage tenants here)",
        );
    };
    let body = match read_post_body(&shared, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let store = &tenancy.store;
    let outcome = match Op::from_json(command, &body) {
        Ok(op) => ops::execute(op, store.pool(), Ok(store.keys())).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(output) => {
            // The command and who ran it; never its arguments (they may hold secret values).
            tracing::info!(caller = caller.label(), command, "store command run through the admin API");
            shared.audit_admin(&caller, &format!("store/{command}"), None, "ok", serde_json::Value::Null);
            let body = serde_json::json!({ "output": output });
            json(StatusCode::OK, Bytes::from(body.to_string()))
        }
        Err(e) => {
            tracing::info!(caller = caller.label(), command, error = %e, "store command refused");
            shared.audit_admin(&caller, &format!("store/{command}"), None, "refused", serde_json::Value::Null);
            refused(&e)
        }
    }
}

/// The answer for a store error: status and kind by its variant, its text (which names rows
/// and causes, never a secret value).
fn refused(e: &StoreError) -> Response {
    let (status, kind) = match e {
        StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        StoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        StoreError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
        StoreError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        StoreError::NotMigrated(_) => (StatusCode::INTERNAL_SERVER_ERROR, "not_migrated"),
        StoreError::Secret(_) => (StatusCode::INTERNAL_SERVER_ERROR, "secret"),
        StoreError::Database(_) => (StatusCode::INTERNAL_SERVER_ERROR, "database"),
    };
    let mut resp = error(status, kind, &e.to_string());
    if e.is_retryable() {
        resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    json(status, Bytes::from(serde_json::json!({ "error": message, "kind": kind }).to_string()))
}
