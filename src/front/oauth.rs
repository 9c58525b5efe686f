//! The OAuth 2.1 resource server on the wire: the edge's token path for callers without an
//! API key (`oauth::OAuth`), the 401/403 answers with their `WWW-Authenticate` challenge
//! (RFC 6750 §3, RFC 9728 §5.1), and the protected resource metadata documents (RFC 9728 §3)
//! at `/.well-known/oauth-protected-resource` and `/.well-known/oauth-protected-resource/<route>`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, StatusCode};

use super::Shared;
use super::rescue::{json, refuse};
use crate::error::GatewayError;
use crate::oauth::metadata::is_mcp_route;
use crate::oauth::{OAuth, OAuthError};
use crate::pipeline::parts::Principal;
use crate::wire::mcp::Era;

/// The caller of a request whose bearer credential is no static API key, with OAuth on:
/// a `sks_` key goes to the store (with `[store]`), any other token to [`OAuth::authenticate`]
/// for the resource URI of route `path`.
///
/// Errors: the refusal to send: 401 with the challenge (no token, a bad token, an unknown
/// key), 403 `insufficient_scope`, 503 when the issuer or the store cannot answer.
pub async fn authenticate(
    shared: &Shared,
    oauth: &OAuth,
    token: Option<&str>,
    path: &str,
) -> Result<Principal, Response> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(challenge(oauth, path, None));
    };
    if let (Some(tenancy), true) = (&shared.tenancy, token.starts_with("sks_")) {
        return match tenancy.authenticate(token).await {
            Ok(Some(principal)) => Ok(principal),
            Ok(None) => Err(challenge(oauth, path, Some(&OAuthError::InvalidToken("unknown API key")))),
            Err(e) => Err(refuse(&e, None, Era::Legacy)),
        };
    }
    match oauth.authenticate(token, &oauth.resource.of_path(path)).await {
        Ok(principal) => Ok(principal),
        Err(e) => {
            if let OAuthError::InvalidToken(why) = &e {
                tracing::debug!(path, reason = why, "oauth: a token was refused");
            }
            Err(challenge(oauth, path, Some(&e)))
        }
    }
}

/// The refusal of `err` (`None`: no token was presented) at route `path`: 401 (or 403 for
/// `insufficient_scope`) with the JSON-RPC error body of an unauthorized call and the
/// `WWW-Authenticate` challenge naming the route's metadata; 503 when the issuer is down.
pub fn challenge(oauth: &OAuth, path: &str, err: Option<&OAuthError>) -> Response {
    if err == Some(&OAuthError::Unavailable) {
        let e = GatewayError::KeyStoreUnavailable("the token's issuer cannot be reached".into());
        return refuse(&e, None, Era::Legacy);
    }
    let route = if is_mcp_route(path) { path } else { "" };
    let value = oauth.resource.challenge(oauth.config(), route, err);
    let mut resp = refuse(&GatewayError::Unauthorized, None, Era::Legacy);
    if err == Some(&OAuthError::InsufficientScope) {
        *resp.status_mut() = StatusCode::FORBIDDEN;
    }
    if let Ok(v) = HeaderValue::from_str(&value) {
        resp.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    resp
}

/// The metadata routes, readable from any web origin: the documents are public and carry no
/// credential, and browser-based MCP clients fetch them cross-origin (with an
/// `MCP-Protocol-Version` header, so preflights are answered too; cached a day).
pub fn metadata_routes() -> axum::Router<Arc<Shared>> {
    use tower_http::cors::{Any, CorsLayer};
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([http::Method::GET])
        .allow_headers(Any)
        .max_age(std::time::Duration::from_secs(86_400));
    axum::Router::new()
        .route(crate::oauth::metadata::WELL_KNOWN, axum::routing::get(metadata_root))
        .route("/.well-known/oauth-protected-resource/{*route}", axum::routing::get(metadata_route))
        .layer(cors)
}

/// `GET /.well-known/oauth-protected-resource`: the gateway's metadata document; 404 without
/// `[auth.oauth]`.
pub async fn metadata_root(State(shared): State<Arc<Shared>>) -> Response {
    document(&shared, None)
}

/// `GET /.well-known/oauth-protected-resource/<route>`: the metadata of one MCP route (its
/// `resource` is the route's URI); 404 for paths that are no MCP route.
pub async fn metadata_route(State(shared): State<Arc<Shared>>, Path(rest): Path<String>) -> Response {
    document(&shared, Some(&format!("/{rest}")))
}

fn document(shared: &Shared, path: Option<&str>) -> Response {
    let Some(oauth) = &shared.oauth else {
        return refuse(&GatewayError::NotFound("OAuth is not configured".into()), None, Era::Legacy);
    };
    if path.is_some_and(|p| !is_mcp_route(p)) {
        return refuse(&GatewayError::NotFound("no MCP route at this path".into()), None, Era::Legacy);
    }
    let doc = oauth.resource.document(oauth.config(), path);
    json(StatusCode::OK, Bytes::from(serde_json::to_vec(&doc).expect("a JSON value serializes")))
}
