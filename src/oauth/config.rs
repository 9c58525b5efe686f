//! `[auth.oauth]`: the issuers whose access tokens the gateway accepts, its canonical resource
//! URI, the accepted algorithms, and how claims and scopes map to the caller.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[auth]`: how clients authenticate besides `[server] api_keys` (and `[store]` keys).
///
/// ```toml
/// [auth.oauth]
/// resource = "https://mcp.example.com/mcp"   # the gateway's canonical URI (RFC 8707 audience)
/// algorithms = ["RS256", "ES256", "PS256", "EdDSA"]
/// leeway = "60s"
/// required_scopes = ["mcp"]
/// identity_claim = "sub"
/// tenant_claim = "tenant"
/// [[auth.oauth.issuers]]
/// issuer = "https://login.example.com"
/// ```
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The OAuth 2.1 resource server; absent: bearer API keys only.
    pub oauth: Option<OAuthConfig>,
}

/// `[auth.oauth]`: the OAuth 2.1 resource server (MCP `basic/authorization`, RFC 9728,
/// RFC 8707, RFC 7662, RFC 6750).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// The gateway's canonical resource URI (an absolute `http(s)` URL without fragment): the
    /// audience every access token must name (RFC 8707), and `resource` of the metadata.
    pub resource: String,
    /// The authorization servers whose tokens are accepted (at least one).
    pub issuers: Vec<IssuerConfig>,
    /// JWS algorithms accepted (`RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`,
    /// `ES256`, `ES384`, `EdDSA`). `none` and the HMAC algorithms are refused here.
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Scopes every token must carry; a token without them gets 403 `insufficient_scope`.
    pub required_scopes: Vec<String>,
    /// The claim naming the caller (a string of 1–256 bytes, no control characters).
    pub identity_claim: String,
    /// The claim naming the caller's tenant (its `[rate_limits] per_tenant` share, audit);
    /// empty: tokens carry no tenant.
    pub tenant_claim: String,
    /// The claim naming the caller's virtual server: an instance, by name, of the store tenant
    /// `tenant_claim` names (needs `[store]` and `tenant_claim`). A token carrying it is served
    /// that instance's catalog exactly as the instance's API keys are (its tool group, the
    /// tenant's own servers), and the groups below do not apply to it; a token without it is
    /// served the groups. Empty: tokens never name one.
    pub instance_claim: String,
    /// Named tool groups: `namespace:pattern` entries over the static upstreams (`*` matches
    /// any run of characters), like a store instance's `--shared` grants.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Scope → group names. When set, a token sees only the groups its scopes name.
    pub scopes_to_groups: BTreeMap<String, Vec<String>>,
    /// Tenant (claim value) → group names. When set, a token of a tenant not listed is refused,
    /// and a token sees only its tenant's groups (among those its scopes name, when
    /// `scopes_to_groups` is set too).
    pub tenant_groups: BTreeMap<String, Vec<String>>,
    /// The least time between two JWKS fetches of one issuer caused by unknown `kid`s.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// A key set older than this is fetched again on its next use.
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
    /// Verified tokens remembered (by SHA-256 digest, until their `exp`) so a repeated token
    /// is not verified again.
    pub token_cache_size: u64,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        OAuthConfig {
            resource: String::new(),
            issuers: Vec::new(),
            algorithms: ["RS256", "ES256", "PS256", "EdDSA"].map(String::from).to_vec(),
            leeway: Duration::from_secs(60),
            required_scopes: Vec::new(),
            identity_claim: "sub".into(),
            tenant_claim: String::new(),
            instance_claim: String::new(),
            groups: BTreeMap::new(),
            scopes_to_groups: BTreeMap::new(),
            tenant_groups: BTreeMap::new(),
            jwks_refresh_interval: Duration::from_secs(10),
            jwks_max_age: Duration::from_secs(3600),
            token_cache_size: 10_000,
        }
    }
}

/// One authorization server (`[[auth.oauth.issuers]]`).
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IssuerConfig {
    /// The issuer identifier (`iss`), an absolute `http(s)` URL. Its metadata is discovered at
    /// `/.well-known/oauth-authorization-server` (RFC 8414), else
    /// `/.well-known/openid-configuration`.
    pub issuer: String,
    /// Part of the caller ids of its tokens (`oauth:<name>:<subject>`): 1–32 of `a-z0-9_-`;
    /// default `idp`; distinct names are required with more than one issuer.
    pub name: String,
    /// The JWKS URL, instead of the discovered one.
    pub jwks_uri: String,
    /// The RFC 7662 introspection endpoint for opaque tokens (instead of the discovered one;
    /// used only with `client_id`).
    pub introspection_endpoint: String,
    /// The gateway's client id at this issuer, for introspection (`${VAR}` expanded).
    pub client_id: String,
    /// Its secret (`${VAR}` expanded; never logged).
    #[serde(skip_serializing)]
    pub client_secret: String,
    /// The store tenants (by name) whose virtual servers this issuer's tokens may name through
    /// `instance_claim`; empty: any. With more than one issuer, give each its own: an issuer
    /// is otherwise trusted to speak for every tenant.
    pub tenants: Vec<String>,
}

impl std::fmt::Debug for IssuerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerConfig")
            .field("issuer", &self.issuer)
            .field("name", &self.name)
            .field("jwks_uri", &self.jwks_uri)
            .field("introspection_endpoint", &self.introspection_endpoint)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("tenants", &self.tenants)
            .finish()
    }
}

/// The algorithms that may be configured (asymmetric only).
pub const ALGORITHMS: [&str; 9] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];

fn is_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://")) && !s.contains('#') && s.len() <= 2048
}

impl IssuerConfig {
    /// Its name in caller ids.
    pub fn id_name(&self) -> &str {
        if self.name.is_empty() { "idp" } else { &self.name }
    }
}

impl OAuthConfig {
    /// Check this section; returns every problem found.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let at = "auth.oauth";
        if !is_url(&self.resource) {
            problems
                .push(format!("{at}.resource = {:?} must be an absolute http(s) URL without fragment", self.resource));
        }
        if self.issuers.is_empty() {
            problems.push(format!("{at}.issuers: at least one issuer is required"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, iss) in self.issuers.iter().enumerate() {
            if !is_url(&iss.issuer) {
                problems.push(format!("{at}.issuers[{i}].issuer = {:?} must be an absolute http(s) URL", iss.issuer));
            }
            for (field, v) in [("jwks_uri", &iss.jwks_uri), ("introspection_endpoint", &iss.introspection_endpoint)] {
                if !v.is_empty() && !is_url(v) {
                    problems.push(format!("{at}.issuers[{i}].{field} = {v:?} must be an absolute http(s) URL"));
                }
            }
            let name = iss.id_name();
            if name.is_empty()
                || name.len() > 32
                || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                problems.push(format!("{at}.issuers[{i}].name = {name:?} must be 1-32 of a-z0-9_-"));
            }
            if !names.insert(name.to_string()) {
                problems.push(format!("{at}.issuers[{i}].name = {name:?} is used by another issuer"));
            }
            if iss.client_id.is_empty() != iss.client_secret.is_empty() {
                problems.push(format!("{at}.issuers[{i}]: client_id and client_secret go together"));
            }
        }
        if self.algorithms.is_empty() {
            problems.push(format!("{at}.algorithms: at least one algorithm is required"));
        }
        for alg in &self.algorithms {
            if !ALGORITHMS.contains(&alg.as_str()) {
                problems.push(format!(
                    "{at}.algorithms: {alg:?} is not accepted (one of {}; `none` and HMAC are never accepted)",
                    ALGORITHMS.join(", ")
                ));
            }
        }
        if self.leeway > Duration::from_secs(600) {
            problems.push(format!("{at}.leeway must be at most 10m"));
        }
        if self.identity_claim.is_empty() {
            problems.push(format!("{at}.identity_claim must not be empty"));
        }
        for (map, field) in [(&self.scopes_to_groups, "scopes_to_groups"), (&self.tenant_groups, "tenant_groups")] {
            for (key, names) in map {
                for g in names.iter().filter(|g| !self.groups.contains_key(*g)) {
                    problems.push(format!(
                        "{at}.{field}.{key:?} names group {g:?}, which auth.oauth.groups does not define"
                    ));
                }
            }
        }
        for (name, entries) in &self.groups {
            for e in entries {
                if !e.split_once(':').is_some_and(|(ns, p)| !ns.is_empty() && !p.is_empty()) {
                    problems.push(format!("{at}.groups.{name}: {e:?} must be namespace:pattern"));
                }
            }
        }
        if !self.tenant_groups.is_empty() && self.tenant_claim.is_empty() {
            problems.push(format!("{at}.tenant_groups needs tenant_claim"));
        }
        if !self.instance_claim.is_empty() && self.tenant_claim.is_empty() {
            problems.push(format!("{at}.instance_claim needs tenant_claim"));
        }
        if self.issuers.iter().any(|i| !i.tenants.is_empty()) && self.instance_claim.is_empty() {
            problems.push(format!("{at}.issuers[].tenants applies only with instance_claim"));
        }
        if self.jwks_refresh_interval < Duration::from_secs(1) {
            problems.push(format!("{at}.jwks_refresh_interval must be at least 1s"));
        }
        if self.token_cache_size == 0 || self.token_cache_size > 1_000_000 {
            problems.push(format!("{at}.token_cache_size must be 1-1000000"));
        }
        problems
    }

    /// The scopes the metadata document lists (`scopes_supported`): the required ones and those
    /// `scopes_to_groups` names, without repeats.
    pub fn scopes_supported(&self) -> Vec<String> {
        let mut out = self.required_scopes.clone();
        for s in self.scopes_to_groups.keys() {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }
}
