//! The protected resource's side of discovery: its metadata document (RFC 9728 §2–3), at
//! `/.well-known/oauth-protected-resource` and path-suffixed for each MCP route, and the
//! `WWW-Authenticate` challenges of 401 and 403 answers (RFC 6750 §3, RFC 9728 §5.1, MCP
//! `basic/authorization`). URLs are built from the configured resource URI, never from the
//! request's `Host`.

use super::OAuthError;
use super::config::OAuthConfig;

/// The well-known path of protected resource metadata (RFC 9728 §3).
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The gateway's resource URI, split for building per-route URIs.
#[derive(Clone, Debug)]
pub struct Resource {
    /// `scheme://host[:port]` of the configured resource.
    origin: String,
    /// The configured resource URI.
    resource: String,
    /// Its path (`/mcp`, or empty).
    path: String,
}

/// Whether `path` is a route that serves MCP (`/mcp`, `/sse`, `/messages`, and the same under
/// `/servers/{name}/`), whose resource URI and metadata exist.
pub fn is_mcp_route(path: &str) -> bool {
    const ENDS: [&str; 3] = ["mcp", "sse", "messages"];
    match path.strip_prefix("/servers/") {
        Some(rest) => {
            rest.split_once('/').is_some_and(|(name, end)| !name.is_empty() && name.len() <= 128 && ENDS.contains(&end))
        }
        None => path.strip_prefix('/').is_some_and(|end| ENDS.contains(&end)),
    }
}

impl Resource {
    /// Split `resource` (validated: an absolute http(s) URL).
    pub fn new(resource: &str) -> Self {
        let after = resource.find("://").map_or(0, |i| i + 3);
        let cut = resource[after..].find(['/', '?']).map_or(resource.len(), |i| after + i);
        let path = resource[cut..].split('?').next().unwrap_or_default().trim_end_matches('/').to_string();
        Resource { origin: resource[..cut].to_string(), resource: resource.to_string(), path }
    }

    /// The resource URI of route `path`: the configured one for its own path (and for `/`),
    /// else the origin followed by `path`.
    pub fn of_path(&self, path: &str) -> String {
        let path = path.trim_end_matches('/');
        if path == self.path || path.is_empty() { self.resource.clone() } else { format!("{}{path}", self.origin) }
    }

    /// The metadata URL of route `path` (RFC 9728 §3.1: the well-known segment, then the path).
    pub fn metadata_url(&self, path: &str) -> String {
        format!("{}{WELL_KNOWN}{}", self.origin, path.trim_end_matches('/'))
    }

    /// The metadata document of route `path` (`None`: the root document).
    pub fn document(&self, config: &OAuthConfig, path: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "resource": path.map_or_else(|| self.resource.clone(), |p| self.of_path(p)),
            "authorization_servers": config.issuers.iter().map(|i| i.issuer.as_str()).collect::<Vec<_>>(),
            "scopes_supported": config.scopes_supported(),
            "bearer_methods_supported": ["header"],
            "resource_signing_alg_values_supported": config.algorithms,
        })
    }

    /// The `WWW-Authenticate` value for a refusal at route `path`: `Bearer` with
    /// `resource_metadata` and `scope` (the required scopes, when any), plus `error` and
    /// `error_description` for a token that was presented and refused (`None`: no token).
    pub fn challenge(&self, config: &OAuthConfig, path: &str, err: Option<&OAuthError>) -> String {
        let mut out = format!("Bearer resource_metadata=\"{}\"", self.metadata_url(path));
        let scope: String = config.required_scopes.join(" ").chars().filter(|c| *c != '"' && *c != '\\').collect();
        if !scope.is_empty() {
            out.push_str(&format!(", scope=\"{scope}\""));
        }
        match err {
            Some(OAuthError::InvalidToken(why)) => {
                out.push_str(&format!(", error=\"invalid_token\", error_description=\"{why}\""))
            }
            Some(OAuthError::InsufficientScope) => out.push_str(", error=\"insufficient_scope\""),
            Some(OAuthError::Unavailable) | None => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_urls() {
        let r = Resource::new("https://gw.example:8443/mcp");
        assert_eq!(r.of_path("/mcp"), "https://gw.example:8443/mcp");
        assert_eq!(r.of_path("/servers/time/mcp"), "https://gw.example:8443/servers/time/mcp");
        assert_eq!(r.metadata_url("/mcp"), "https://gw.example:8443/.well-known/oauth-protected-resource/mcp");
        assert!(is_mcp_route("/mcp") && is_mcp_route("/servers/a/sse") && is_mcp_route("/messages"));
        assert!(!is_mcp_route("/admin/drain") && !is_mcp_route("/servers//mcp") && !is_mcp_route("/servers/a/b/mcp"));
        let root = Resource::new("https://gw.example");
        assert_eq!(root.of_path("/"), "https://gw.example");
        assert_eq!(root.of_path("/mcp"), "https://gw.example/mcp");
    }
}
