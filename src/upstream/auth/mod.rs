//! The credentials sekisho presents to an HTTP upstream (MCP 2025-11-25
//! `basic/authorization`, sekisho acting as the OAuth client): a static bearer token, or an
//! access token from the client credentials grant, with the authorization server found from
//! the configuration or from the upstream's own 401 ([`discovery`]).
//!
//! Invariants:
//! - A client's own token never reaches an upstream: requests to upstreams carry only the
//!   headers configured for them and the `Authorization` of these credentials.
//! - Tokens are cached until shortly before they expire ([`token::Token::refresh_at`]) and
//!   fetched again at most once per 401 (single flight: concurrent calls that met the same 401
//!   share one token request); a failed token request is not repeated for
//!   [`RETRY_AFTER_FAILURE`], so a flood of calls cannot turn into a flood of token requests.
//! - Tokens and secrets are never logged: header values are marked sensitive and `Debug`
//!   prints `<redacted>`.
//!
//! Not covered: the authorization code grant (sekisho is a machine client), DPoP-bound tokens,
//! scope step-up on 403 `insufficient_scope`, and the legacy HTTP+SSE transport (use
//! `headers` there).

pub mod config;
pub mod discovery;
pub mod fetch;
pub mod token;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey};

use self::config::{AuthConfig, ClientCredentialsConfig};
use self::discovery::{Challenge, Discovered};
use self::fetch::HttpClient;
use self::token::{ClientAuth, Secret, Token};

/// The credentials of each of `urls` (empty without `auth`; call after validation, which
/// reads the key files).
pub fn for_urls<'a>(
    auth: Option<&AuthConfig>,
    urls: impl Iterator<Item = &'a String>,
) -> Vec<std::sync::Arc<Credentials>> {
    let Some(auth) = auth else { return Vec::new() };
    urls.filter_map(|u| Credentials::new(auth, u).ok().map(std::sync::Arc::new)).collect()
}

/// How long a failed token request (or discovery) is not repeated.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The credentials of one upstream URL (shared by every connection to it).
pub struct Credentials {
    kind: Kind,
    /// What they were made from (equal settings make equal credentials, whatever token each
    /// holds).
    source: (AuthConfig, String),
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

enum Kind {
    Static(HeaderValue),
    Oauth(Box<Oauth>),
}

struct Oauth {
    auth: ClientAuth,
    scope: Option<String>,
    /// The resource indicator, and the identifier the protected-resource metadata must name.
    resource: String,
    /// The upstream's URL (where discovery starts).
    url: String,
    token_url: Option<String>,
    issuer: Option<String>,
    current: Mutex<Option<Token>>,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    server: Option<Discovered>,
    challenge_scope: Option<String>,
    failed: Option<(Instant, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Static(_) => f.write_str("Credentials::Bearer(<redacted>)"),
            Kind::Oauth(o) => write!(f, "Credentials::ClientCredentials({:?})", o.auth),
        }
    }
}

impl Credentials {
    /// The credentials `config` describes, for the upstream at `url`.
    ///
    /// Errors: an unreadable or unusable private key, or a token a header cannot carry (both
    /// caught by `AuthConfig::validate` first).
    pub fn new(config: &AuthConfig, url: &str) -> Result<Self, String> {
        let kind = match config {
            AuthConfig::Bearer(b) => {
                let mut v = HeaderValue::try_from(format!("Bearer {}", b.token))
                    .map_err(|_| "the token has bytes a header cannot carry".to_string())?;
                v.set_sensitive(true);
                Kind::Static(v)
            }
            AuthConfig::ClientCredentials(c) => Kind::Oauth(Box::new(Oauth::new(c, url, read_key(c)?))),
        };
        Ok(Credentials { kind, source: (config.clone(), url.to_string()) })
    }

    /// The `Authorization` value held now, if it has not expired (no I/O).
    pub fn current(&self) -> Option<HeaderValue> {
        match &self.kind {
            Kind::Static(v) => Some(v.clone()),
            Kind::Oauth(o) => o.current(),
        }
    }

    /// The `Authorization` value for the next request: the held one, or a new token when it
    /// has expired and the token endpoint is known. `None`: the token endpoint is not known
    /// yet; send without, and the upstream's 401 starts discovery ([`Credentials::refresh`]).
    ///
    /// Errors: the token request failed (a readable reason without secrets).
    pub async fn authorization(&self, client: &HttpClient) -> Result<Option<HeaderValue>, String> {
        match &self.kind {
            Kind::Static(v) => Ok(Some(v.clone())),
            Kind::Oauth(o) => match o.current() {
                Some(v) => Ok(Some(v)),
                None if o.token_url.is_some() || o.issuer.is_some() || o.state.lock().await.server.is_some() => {
                    o.refresh(client, None, None).await.map(Some)
                }
                None => Ok(None),
            },
        }
    }

    /// The upstream answered 401 to a request sent with `sent`: get a new token (discovering
    /// the authorization server from `challenge` when it is not known) unless another caller
    /// already did.
    ///
    /// Errors: a static token (nothing to refresh), or discovery or the token request failed.
    pub async fn refresh(
        &self,
        client: &HttpClient,
        sent: Option<&HeaderValue>,
        challenge: Option<Challenge>,
    ) -> Result<HeaderValue, String> {
        match &self.kind {
            Kind::Static(_) => Err("the upstream refused the configured bearer token".into()),
            Kind::Oauth(o) => o.refresh(client, sent, challenge).await,
        }
    }
}

impl Oauth {
    fn new(c: &ClientCredentialsConfig, url: &str, key: Option<(EncodingKey, Algorithm)>) -> Self {
        let secret = match (key, &c.client_secret) {
            (Some((key, alg)), _) => Secret::Key(Box::new(key), alg),
            (None, secret) => Secret::Shared(secret.clone().unwrap_or_default()),
        };
        Oauth {
            auth: ClientAuth { client_id: c.client_id.clone(), secret, method: c.token_endpoint_auth.clone() },
            scope: c.scope.clone(),
            resource: c.resource.clone().unwrap_or_else(|| url.to_string()),
            url: url.to_string(),
            token_url: c.token_url.clone(),
            issuer: c.issuer.clone(),
            current: Mutex::new(None),
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    fn current(&self) -> Option<HeaderValue> {
        let held = self.current.lock().expect("token lock");
        held.as_ref().filter(|t| Instant::now() < t.refresh_at).map(|t| t.header.clone())
    }

    async fn refresh(
        &self,
        client: &HttpClient,
        sent: Option<&HeaderValue>,
        challenge: Option<Challenge>,
    ) -> Result<HeaderValue, String> {
        let mut state = self.state.lock().await;
        // Another caller got a new token while this one waited.
        if let Some(v) = self.current()
            && sent != Some(&v)
        {
            return Ok(v);
        }
        if let Some((at, why)) = &state.failed
            && at.elapsed() < RETRY_AFTER_FAILURE
        {
            return Err(why.clone());
        }
        let result = self.fetch(client, &mut state, challenge).await;
        match &result {
            Ok(token) => {
                state.failed = None;
                *self.current.lock().expect("token lock") = Some(token.clone());
            }
            Err(why) => {
                tracing::warn!(upstream = %crate::observe::redact::url(&self.url), reason = %why, "upstream authorization failed");
                state.failed = Some((Instant::now(), why.clone()));
                *self.current.lock().expect("token lock") = None;
            }
        }
        result.map(|t| t.header)
    }

    async fn fetch(
        &self,
        client: &HttpClient,
        state: &mut State,
        challenge: Option<Challenge>,
    ) -> Result<Token, String> {
        if let Some(c) = &challenge
            && c.scope.is_some()
        {
            state.challenge_scope = c.scope.clone();
        }
        let pointed = challenge.as_ref().is_some_and(|c| c.resource_metadata.is_some());
        if state.server.is_none() || (pointed && self.token_url.is_none()) {
            state.server = Some(match &self.token_url {
                Some(url) => Discovered {
                    token_endpoint: url.clone(),
                    issuer: self.issuer.clone().unwrap_or_else(|| url.clone()),
                    auth_methods: Vec::new(),
                    scopes_supported: Vec::new(),
                },
                None if !pointed && self.issuer.is_some() => {
                    let issuer = self.issuer.as_deref().unwrap_or_default();
                    discovery::authorization_server(client, issuer)
                        .await?
                        .ok_or_else(|| "no authorization server metadata for the configured issuer".to_string())?
                }
                None => {
                    discovery::discover(client, &self.url, &self.resource, challenge.as_ref(), self.issuer.as_deref())
                        .await?
                }
            });
        }
        let server = state.server.as_ref().expect("set above");
        let supported = (!server.scopes_supported.is_empty()).then(|| server.scopes_supported.join(" "));
        let scope = self.scope.clone().or_else(|| state.challenge_scope.clone()).or(supported);
        token::request(client, server, &self.auth, scope.as_deref(), &self.resource).await
    }
}

fn read_key(c: &ClientCredentialsConfig) -> Result<Option<(EncodingKey, Algorithm)>, String> {
    let Some(path) = &c.private_key_file else { return Ok(None) };
    let pem = std::fs::read_to_string(path).map_err(|e| format!("private_key_file: {e}"))?;
    parse_key(&pem, c.signing_algorithm.as_deref()).map(Some)
}

/// A PEM private key for `alg` (default `ES256`).
fn parse_key(pem: &str, alg: Option<&str>) -> Result<(EncodingKey, Algorithm), String> {
    let alg = match alg.unwrap_or("ES256") {
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "RS256" => Algorithm::RS256,
        "PS256" => Algorithm::PS256,
        "EdDSA" => Algorithm::EdDSA,
        other => return Err(format!("signing_algorithm {other:?} is not supported")),
    };
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    };
    key.map(|k| (k, alg)).map_err(|e| format!("the private key is not a usable {alg:?} PEM key: {e}"))
}
