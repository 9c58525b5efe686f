//! Finding an upstream's token endpoint from its 401: the `WWW-Authenticate` challenge
//! (RFC 6750 §3, RFC 9728 §5.1), the protected-resource metadata (RFC 9728 §3), and the
//! authorization server's metadata (RFC 8414 §3, OpenID Connect Discovery 1.0 §4), in the
//! order the MCP authorization spec (2025-11-25 `basic/authorization`, "Authorization Server
//! Discovery") gives.
//!
//! Every document is hostile: bounded in size (`fetch::UPSTREAM`), and checked before it
//! is used: the protected-resource metadata must name this upstream as its `resource` (a
//! metadata document for another resource is refused: RFC 9728 §3.3), and the authorization
//! server's metadata must carry the issuer it was fetched for (RFC 8414 §3.3).

use serde_json::Value;

use super::fetch;
use super::fetch::HttpClient;

/// Longest challenge parsed, in bytes.
const MAX_CHALLENGE_BYTES: usize = 4096;

/// Most scopes taken from `scopes_supported`.
const MAX_SCOPES: usize = 32;

/// The parameters of a `WWW-Authenticate: Bearer …` challenge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Challenge {
    /// `resource_metadata`: the URL of the protected-resource metadata (RFC 9728 §5.1).
    pub resource_metadata: Option<String>,
    /// `scope`: the scopes the resource needs (RFC 6750 §3).
    pub scope: Option<String>,
    /// `error`: `invalid_token`, `insufficient_scope`, … (RFC 6750 §3.1).
    pub error: Option<String>,
}

/// Parse the `Bearer` challenge of a `WWW-Authenticate` value; `None` when it has none.
/// Values are `token` or `"quoted-string"` (RFC 9110 §11.2); other schemes are skipped.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.get(..MAX_CHALLENGE_BYTES.min(value.len())).unwrap_or(value);
    let start = find_scheme(value, "bearer")?;
    let mut rest = &value[start + "bearer".len()..];
    let mut out = Challenge::default();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_ascii_lowercase();
        if name.contains([' ', '\t']) {
            break; // the next challenge's scheme: `Basic realm=…`
        }
        rest = rest[eq + 1..].trim_start();
        let val;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut s = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => s.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => s.push(c),
                }
            }
            val = s;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            val = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        match name.as_str() {
            "resource_metadata" => out.resource_metadata = Some(val),
            "scope" => out.scope = Some(val),
            "error" => out.error = Some(val),
            _ => {}
        }
    }
    Some(out)
}

/// Where `scheme` starts as an auth scheme in `value` (case-insensitive, at the start or
/// after a comma).
fn find_scheme(value: &str, scheme: &str) -> Option<usize> {
    let lower = value.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(scheme).map(|i| i + from) {
        let before = lower[..i].trim_end();
        let after = lower[i + scheme.len()..].chars().next();
        if (before.is_empty() || before.ends_with(',')) && after.is_none_or(|c| c == ' ' || c == '\t') {
            return Some(i);
        }
        from = i + scheme.len();
    }
    None
}

/// What discovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovered {
    /// The token endpoint.
    pub token_endpoint: String,
    /// The authorization server's issuer identifier (the `aud` of a `private_key_jwt`).
    pub issuer: String,
    /// `token_endpoint_auth_methods_supported` (empty: not listed).
    pub auth_methods: Vec<String>,
    /// The protected resource's `scopes_supported` (empty: not listed).
    pub scopes_supported: Vec<String>,
}

/// The parts of a URL compared as a resource identifier (RFC 8707 §2, RFC 3986 §6.2.2-3):
/// scheme and host lowercase, default port dropped, no trailing `/` on the path, no fragment.
pub fn canonical(url: &str) -> Option<String> {
    let uri: http::Uri = url.trim().split('#').next()?.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = match (uri.port_u16(), scheme.as_str()) {
        (Some(80), "http") | (Some(443), "https") | (None, _) => String::new(),
        (Some(p), _) => format!(":{p}"),
    };
    let path = uri.path().trim_end_matches('/');
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!("{scheme}://{host}{port}{path}{query}"))
}

/// `scheme://authority` of `url`.
fn origin(url: &str) -> Option<(String, String)> {
    let uri: http::Uri = url.parse().ok()?;
    let path = uri.path().trim_end_matches('/').to_string();
    Some((format!("{}://{}", uri.scheme_str()?, uri.authority()?), path))
}

/// Discover the token endpoint of `upstream` (its URL) from `challenge` (the 401's, if any).
///
/// `issuer`: the configured authorization server, when there is one (the protected-resource
/// metadata is then not needed, but still read for its scopes when the challenge points at it).
///
/// Errors: a readable reason — no metadata found, metadata for another resource, an issuer
/// mismatch, no token endpoint.
pub async fn discover(
    client: &HttpClient,
    upstream: &str,
    resource: &str,
    challenge: Option<&Challenge>,
    issuer: Option<&str>,
) -> Result<Discovered, String> {
    let (base, path) = origin(upstream).ok_or("the upstream URL has no origin")?;
    let mut candidates = Vec::new();
    if let Some(url) = challenge.and_then(|c| c.resource_metadata.as_deref()) {
        if !super::config::is_http_url(url) {
            return Err("the challenge's resource_metadata is not an http(s) URL".into());
        }
        candidates.push(url.to_string());
    } else {
        if !path.is_empty() {
            candidates.push(format!("{base}/.well-known/oauth-protected-resource{path}"));
        }
        candidates.push(format!("{base}/.well-known/oauth-protected-resource"));
    }
    let mut prm = None;
    for url in candidates {
        let answer = fetch::get(client, &url, fetch::UPSTREAM).await?;
        if answer.status.is_success() && answer.body.is_object() {
            prm = Some(answer.body);
            break;
        }
    }
    let mut scopes_supported = Vec::new();
    let server = match (&prm, issuer) {
        (Some(doc), configured) => {
            let named = doc.get("resource").and_then(Value::as_str).unwrap_or_default();
            if canonical(named).is_none() || canonical(named) != canonical(resource) {
                return Err(format!(
                    "the protected-resource metadata is for {:?}, not this upstream ({resource:?}): refused",
                    crate::observe::redact::url(named)
                ));
            }
            scopes_supported = strings(doc.get("scopes_supported"));
            match configured {
                Some(i) => i.to_string(),
                None => doc
                    .get("authorization_servers")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(Value::as_str)
                    .filter(|s| super::config::is_http_url(s))
                    .ok_or("the protected-resource metadata names no authorization server")?
                    .to_string(),
            }
        }
        (None, Some(i)) => i.to_string(),
        // 2025-03-26 `basic/authorization` §2.3.3: no metadata, the server's origin is the
        // authorization server.
        (None, None) => base.clone(),
    };
    match authorization_server(client, &server).await? {
        Some(mut d) => {
            d.scopes_supported = scopes_supported;
            Ok(d)
        }
        None if prm.is_none() && issuer.is_none() => Ok(Discovered {
            token_endpoint: format!("{base}/token"),
            issuer: base,
            auth_methods: Vec::new(),
            scopes_supported,
        }),
        None => Err(format!("no authorization server metadata at {:?}", crate::observe::redact::url(&server))),
    }
}

/// Read the metadata of the authorization server `issuer`, trying the RFC 8414 and OpenID
/// Connect well-known paths in the MCP spec's order; `None` when none answers.
///
/// Errors: a document whose `issuer` is not `issuer` (RFC 8414 §3.3), or without a usable
/// `token_endpoint`.
pub async fn authorization_server(client: &HttpClient, issuer: &str) -> Result<Option<Discovered>, String> {
    let (base, path) = origin(issuer).ok_or("the issuer is not a URL")?;
    let urls = if path.is_empty() {
        vec![
            format!("{base}/.well-known/oauth-authorization-server"),
            format!("{base}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{base}/.well-known/oauth-authorization-server{path}"),
            format!("{base}/.well-known/openid-configuration{path}"),
            format!("{base}{path}/.well-known/openid-configuration"),
        ]
    };
    for url in urls {
        let answer = fetch::get(client, &url, fetch::UPSTREAM).await?;
        if !answer.status.is_success() || !answer.body.is_object() {
            continue;
        }
        let doc = answer.body;
        let named = doc.get("issuer").and_then(Value::as_str).unwrap_or_default();
        if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(format!(
                "the authorization server metadata names issuer {:?}, not {:?}: refused",
                crate::observe::redact::url(named),
                crate::observe::redact::url(issuer)
            ));
        }
        let token_endpoint = doc
            .get("token_endpoint")
            .and_then(Value::as_str)
            .filter(|s| super::config::is_http_url(s))
            .ok_or("the authorization server metadata has no http(s) token_endpoint")?
            .to_string();
        return Ok(Some(Discovered {
            token_endpoint,
            issuer: named.to_string(),
            auth_methods: strings(doc.get("token_endpoint_auth_methods_supported")),
            scopes_supported: Vec::new(),
        }));
    }
    Ok(None)
}

/// The strings of a JSON array (at most [`MAX_SCOPES`], each at most 256 bytes).
fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter().filter_map(Value::as_str).filter(|s| s.len() <= 256).take(MAX_SCOPES).map(String::from).collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_whatever_their_quoting() {
        let c = parse_challenge(
            r#"Bearer error="invalid_token", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="files:read files:write""#,
        )
        .unwrap();
        assert_eq!(c.error.as_deref(), Some("invalid_token"));
        assert_eq!(c.scope.as_deref(), Some("files:read files:write"));
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
        );
        let other = parse_challenge(r#"Basic realm="x", bearer scope=read, error="a\"b""#).unwrap();
        assert_eq!(other.scope.as_deref(), Some("read"));
        assert_eq!(other.error.as_deref(), Some("a\"b"));
        assert_eq!(parse_challenge(r#"Basic realm="x""#), None);
        assert_eq!(parse_challenge("Bearer"), Some(Challenge::default()));
        // Hostile: unterminated quotes, a huge value, odd bytes — an answer, never a panic.
        assert!(parse_challenge(r#"Bearer scope="unterminated"#).is_some());
        assert!(parse_challenge(&format!("Bearer scope={}", "é".repeat(5000))).is_some());
    }

    #[test]
    fn resource_identifiers_compare_canonically() {
        assert_eq!(canonical("HTTPS://MCP.Example.com:443/mcp/"), Some("https://mcp.example.com/mcp".into()));
        assert_eq!(canonical("http://localhost:8080/mcp#frag"), Some("http://localhost:8080/mcp".into()));
        assert_ne!(canonical("https://evil.example.com/mcp"), canonical("https://mcp.example.com/mcp"));
        assert_eq!(canonical("not a url"), None);
    }
}
