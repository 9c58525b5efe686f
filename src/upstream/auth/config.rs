//! The `auth` setting of an HTTP upstream, as written: the credentials sekisho presents to it.
//!
//! ```toml
//! [upstreams.weather]
//! url = "https://weather.example.com/mcp"
//! auth = { type = "oauth-client-credentials", client_id = "sekisho", client_secret = "${WEATHER_SECRET}", scope = "forecast:read" }
//!
//! [upstreams.search]
//! url = "https://search.example.com/mcp"
//! auth = { type = "bearer", token = "${SEARCH_TOKEN}" }
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `auth = { type = …, … }` of an HTTP upstream.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type")]
pub enum AuthConfig {
    /// A static bearer token (RFC 6750 §2.1), sent as `Authorization: Bearer <token>`.
    #[serde(rename = "bearer")]
    Bearer(BearerConfig),
    /// An access token obtained with the OAuth 2.1 client credentials grant (OAuth 2.1 §4.2,
    /// MCP extension `io.modelcontextprotocol/oauth-client-credentials`), cached until shortly
    /// before it expires and fetched again once when the upstream answers 401.
    #[serde(rename = "oauth-client-credentials")]
    ClientCredentials(ClientCredentialsConfig),
}

/// `auth = { type = "bearer", token = "${VAR}" }`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BearerConfig {
    /// The token (use `${VAR}`: never write it inline).
    pub token: String,
}

/// `auth = { type = "oauth-client-credentials", … }`.
///
/// Where the token endpoint is: `token_url` when set; else the metadata (RFC 8414) of
/// `issuer`; else discovered from the upstream's first 401 (its `WWW-Authenticate`
/// `resource_metadata`, RFC 9728 §5.1, or the well-known protected-resource metadata path),
/// which names the authorization server.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsConfig {
    /// The token endpoint (`http(s)://…`); skips discovery.
    pub token_url: Option<String>,
    /// The authorization server's issuer identifier; its metadata names the token endpoint.
    pub issuer: Option<String>,
    /// The client id registered with the authorization server.
    pub client_id: String,
    /// The client secret (`${VAR}`), for `client_secret_basic` or `client_secret_post`.
    pub client_secret: Option<String>,
    /// PEM file of the private key for `private_key_jwt` (RFC 7523 §2.2), relative to the
    /// configuration file's folder.
    pub private_key_file: Option<PathBuf>,
    /// The algorithm of `private_key_file`: `ES256` (default), `ES384`, `RS256`, `PS256` or
    /// `EdDSA`.
    pub signing_algorithm: Option<String>,
    /// How the client authenticates at the token endpoint (RFC 7591 §2 names):
    /// `client_secret_basic`, `client_secret_post` or `private_key_jwt`. Default: what the
    /// credentials allow and the server's metadata lists, in that order of preference.
    pub token_endpoint_auth: Option<String>,
    /// Scopes asked for (space-separated). Default: the upstream's challenge `scope`, else its
    /// metadata's `scopes_supported`, else none (MCP authorization, scope selection strategy).
    pub scope: Option<String>,
    /// The resource indicator sent with the token request (RFC 8707). Default: the upstream's
    /// URL, or the `resource` of its protected-resource metadata once checked against it.
    pub resource: Option<String>,
}

/// The token-endpoint authentication methods sekisho can use.
pub const AUTH_METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "private_key_jwt"];

/// The `private_key_jwt` algorithms sekisho signs with.
pub const SIGNING_ALGORITHMS: [&str; 5] = ["ES256", "ES384", "RS256", "PS256", "EdDSA"];

impl AuthConfig {
    /// Problems with this setting, each prefixed with `at` (`upstreams.<name>.auth`).
    pub fn validate(&self, at: &str) -> Vec<String> {
        let mut problems = Vec::new();
        match self {
            AuthConfig::Bearer(b) => {
                if b.token.trim().is_empty() || http::HeaderValue::try_from(format!("Bearer {}", b.token)).is_err() {
                    problems.push(format!("{at}.token must be a non-empty token of visible ASCII characters"));
                }
            }
            AuthConfig::ClientCredentials(c) => {
                if c.client_id.trim().is_empty() {
                    problems.push(format!("{at}.client_id is empty"));
                }
                for (field, url) in [("token_url", &c.token_url), ("issuer", &c.issuer), ("resource", &c.resource)] {
                    if let Some(url) = url
                        && !is_http_url(url)
                    {
                        problems.push(format!("{at}.{field} must be an http:// or https:// URL"));
                    }
                }
                match (&c.client_secret, &c.private_key_file) {
                    (None, None) => problems.push(format!("{at}: set client_secret or private_key_file")),
                    (Some(_), Some(_)) => {
                        problems.push(format!("{at}: set client_secret or private_key_file, not both"))
                    }
                    _ => {}
                }
                if let Some(m) = &c.token_endpoint_auth {
                    let fits = match m.as_str() {
                        "private_key_jwt" => c.private_key_file.is_some(),
                        "client_secret_basic" | "client_secret_post" => c.client_secret.is_some(),
                        _ => {
                            problems
                                .push(format!("{at}.token_endpoint_auth must be one of {}", AUTH_METHODS.join(", ")));
                            true
                        }
                    };
                    if !fits {
                        problems.push(format!("{at}.token_endpoint_auth = {m:?} needs the matching credential"));
                    }
                }
                if let Some(alg) = &c.signing_algorithm
                    && !SIGNING_ALGORITHMS.contains(&alg.as_str())
                {
                    problems.push(format!("{at}.signing_algorithm must be one of {}", SIGNING_ALGORITHMS.join(", ")));
                }
                if let Some(path) = &c.private_key_file
                    && let Err(e) = std::fs::read_to_string(path)
                {
                    problems.push(format!("{at}.private_key_file: {e}"));
                }
            }
        }
        problems
    }

    /// The secrets of this setting, for `${VAR}` expansion: `(field, value)`.
    pub fn secrets_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        match self {
            AuthConfig::Bearer(b) => vec![("token", &mut b.token)],
            AuthConfig::ClientCredentials(c) => {
                let mut out = vec![("client_id", &mut c.client_id)];
                if let Some(s) = c.client_secret.as_mut() {
                    out.push(("client_secret", s));
                }
                out
            }
        }
    }
}

/// Problems with an HTTP upstream's `auth` (`at`: `upstreams.<name>`): its own, and the
/// settings it cannot go with: an `Authorization` among `headers`, the HTTP+SSE transport (`sse`).
pub fn problems(
    at: &str,
    auth: Option<&AuthConfig>,
    headers: &std::collections::BTreeMap<String, String>,
    sse: bool,
) -> Vec<String> {
    let Some(auth) = auth else { return Vec::new() };
    let mut problems = auth.validate(&format!("{at}.auth"));
    if headers.keys().any(|k| k.eq_ignore_ascii_case("authorization")) {
        problems.push(format!("{at}: set `auth` or an Authorization header, not both"));
    }
    if sse {
        problems.push(format!("{at}.auth applies to Streamable HTTP upstreams; for transport = \"sse\" use `headers`"));
    }
    problems
}

/// Whether `s` is an absolute `http://` or `https://` URL with a host.
pub fn is_http_url(s: &str) -> bool {
    s.parse::<http::Uri>().is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> AuthConfig {
        #[derive(Deserialize)]
        struct T {
            auth: AuthConfig,
        }
        toml::from_str::<T>(s).unwrap().auth
    }

    #[test]
    fn both_kinds_parse_and_bad_ones_are_named() {
        let b = parse(r#"auth = { type = "bearer", token = "abc" }"#);
        assert!(b.validate("a").is_empty());
        let c = parse(r#"auth = { type = "oauth-client-credentials", client_id = "x", client_secret = "s" }"#);
        assert!(c.validate("a").is_empty(), "{:?}", c.validate("a"));
        let bad = parse(
            r#"auth = { type = "oauth-client-credentials", client_id = "", token_url = "ftp://x", token_endpoint_auth = "private_key_jwt", client_secret = "s", signing_algorithm = "HS256" }"#,
        );
        let p = bad.validate("a").join("\n");
        for needle in ["client_id is empty", "token_url must be", "needs the matching credential", "signing_algorithm"]
        {
            assert!(p.contains(needle), "{needle}: {p}");
        }
        assert!(
            toml::from_str::<toml::Value>(r#"auth = { type = "bearer", token = "a", extra = 1 }"#)
                .map(|v| v["auth"].clone().try_into::<AuthConfig>().is_err())
                .unwrap()
        );
        let none = parse(r#"auth = { type = "oauth-client-credentials", client_id = "x" }"#);
        assert!(none.validate("a").join("").contains("set client_secret or private_key_file"));
    }
}
