//! The client credentials token request (OAuth 2.1 §4.2 / RFC 6749 §4.4) and its answer
//! (RFC 6749 §5.1): client authentication by `client_secret_basic` (RFC 6749 §2.3.1),
//! `client_secret_post`, or `private_key_jwt` (RFC 7523 §2.2, the assertion's `aud` the
//! authorization server's issuer as SEP-1046 asks), and the resource indicator (RFC 8707 §2).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::Value;

use super::discovery::Discovered;
use super::fetch;
use super::fetch::HttpClient;

/// Longest access token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest lifetime believed, whatever `expires_in` says.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Lifetime assumed when the answer has no `expires_in` (the token is fetched again sooner on
/// a 401).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// How a client proves itself at the token endpoint.
pub enum Secret {
    /// A client secret (`client_secret_basic` or `client_secret_post`).
    Shared(String),
    /// A private key for `private_key_jwt`, and its algorithm.
    Key(Box<EncodingKey>, Algorithm),
}

/// A client's credentials.
pub struct ClientAuth {
    /// `client_id`.
    pub client_id: String,
    /// Its secret or key.
    pub secret: Secret,
    /// The method configured, if any (see `config::AUTH_METHODS`).
    pub method: Option<String>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth").field("client_id", &self.client_id).field("secret", &"<redacted>").finish()
    }
}

/// An access token and when to stop using it.
#[derive(Clone)]
pub struct Token {
    /// `Bearer <access_token>`, marked sensitive (never logged by `http`).
    pub header: HeaderValue,
    /// When it is considered expired: its lifetime less a margin (a tenth, at most 60 s).
    pub refresh_at: Instant,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("header", &"<redacted>").field("refresh_at", &self.refresh_at).finish()
    }
}

impl ClientAuth {
    /// The method used against a server listing `supported` (empty: not listed).
    pub fn method_for(&self, supported: &[String]) -> &'static str {
        match (&self.method, &self.secret) {
            (Some(m), _) if m == "client_secret_post" => "client_secret_post",
            (Some(m), _) if m == "client_secret_basic" => "client_secret_basic",
            (_, Secret::Key(..)) => "private_key_jwt",
            (_, Secret::Shared(_)) => {
                let listed = |m: &str| supported.iter().any(|s| s == m);
                if !supported.is_empty() && !listed("client_secret_basic") && listed("client_secret_post") {
                    "client_secret_post"
                } else {
                    "client_secret_basic"
                }
            }
        }
    }
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// Ask `server`'s token endpoint for a token for `resource`, with `scope` when there is one.
///
/// Errors: a readable reason that never holds a secret — unreachable, refused (with the
/// server's `error` code), or an answer without a usable bearer `access_token`.
pub async fn request(
    client: &HttpClient,
    server: &Discovered,
    auth: &ClientAuth,
    scope: Option<&str>,
    resource: &str,
) -> Result<Token, String> {
    let mut form = vec![("grant_type", "client_credentials".to_string()), ("resource", resource.to_string())];
    if let Some(s) = scope.filter(|s| !s.trim().is_empty()) {
        form.push(("scope", s.to_string()));
    }
    let mut authorization = None;
    match (auth.method_for(&server.auth_methods), &auth.secret) {
        ("client_secret_basic", Secret::Shared(secret)) => {
            authorization = Some(fetch::basic_auth(&auth.client_id, secret));
        }
        ("client_secret_post", Secret::Shared(secret)) => {
            form.push(("client_id", auth.client_id.clone()));
            form.push(("client_secret", secret.clone()));
        }
        (_, Secret::Key(key, alg)) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let claims = Assertion {
                iss: &auth.client_id,
                sub: &auth.client_id,
                aud: &server.issuer,
                iat: now,
                exp: now + 60,
                jti: hex::encode(rand::random::<[u8; 16]>()),
            };
            let jwt = jsonwebtoken::encode(&Header::new(*alg), &claims, key)
                .map_err(|e| format!("signing the client assertion failed: {e}"))?;
            form.push(("client_id", auth.client_id.clone()));
            form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()));
            form.push(("client_assertion", jwt));
        }
        (m, _) => return Err(format!("{m} needs a key, and a client secret was configured")),
    }
    let body = serde_urlencoded::to_string(&form).map_err(|e| e.to_string())?;
    let answer = fetch::post_form(client, &server.token_endpoint, body, authorization, fetch::UPSTREAM).await?;
    if !answer.status.is_success() {
        let code = answer.body.get("error").and_then(Value::as_str).unwrap_or("no error code");
        let code: String = code.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
        return Err(format!("the token endpoint refused: HTTP {} ({code})", answer.status.as_u16()));
    }
    parse(&answer.body)
}

/// Read a successful token answer (RFC 6749 §5.1).
///
/// Errors: no `access_token`, a `token_type` other than `Bearer` (DPoP-bound tokens are not
/// supported), or a token too long or with bytes a header cannot carry.
pub fn parse(body: &Value) -> Result<Token, String> {
    let token = body.get("access_token").and_then(Value::as_str).ok_or("the answer has no access_token")?;
    let kind = body.get("token_type").and_then(Value::as_str).unwrap_or("Bearer");
    if !kind.eq_ignore_ascii_case("bearer") {
        return Err("the answer's token_type is not Bearer".into());
    }
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(format!("the access_token is empty or longer than {MAX_TOKEN_BYTES} bytes"));
    }
    let mut header = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "the access_token has bytes a header cannot carry")?;
    header.set_sensitive(true);
    let lifetime = body
        .get("expires_in")
        .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())))
        .map_or(DEFAULT_LIFETIME, Duration::from_secs)
        .min(MAX_LIFETIME);
    let margin = (lifetime / 10).min(Duration::from_secs(60));
    Ok(Token { header, refresh_at: Instant::now() + lifetime - margin })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        let t = parse(&serde_json::json!({"access_token": "abc", "token_type": "bearer", "expires_in": 100})).unwrap();
        assert_eq!(t.header.to_str().unwrap(), "Bearer abc");
        assert!(t.header.is_sensitive());
        let left = t.refresh_at - Instant::now();
        assert!(left <= Duration::from_secs(90) && left > Duration::from_secs(80), "{left:?}");
        assert!(parse(&serde_json::json!({"token_type": "Bearer"})).is_err());
        assert!(parse(&serde_json::json!({"access_token": "a", "token_type": "DPoP"})).is_err());
        assert!(parse(&serde_json::json!({"access_token": "a\nb"})).is_err());
        assert!(parse(&serde_json::json!({"access_token": "a".repeat(MAX_TOKEN_BYTES + 1)})).is_err());
        let huge = parse(&serde_json::json!({"access_token": "a", "expires_in": u64::MAX})).unwrap();
        assert!(huge.refresh_at - Instant::now() <= MAX_LIFETIME);
        assert!(!format!("{t:?}").contains("abc"), "a token never shows in Debug");
    }

    #[test]
    fn the_method_follows_the_credentials_then_the_server() {
        let shared = ClientAuth { client_id: "c".into(), secret: Secret::Shared("s".into()), method: None };
        assert_eq!(shared.method_for(&[]), "client_secret_basic");
        assert_eq!(shared.method_for(&["client_secret_post".into()]), "client_secret_post");
        assert_eq!(
            shared.method_for(&["client_secret_basic".into(), "client_secret_post".into()]),
            "client_secret_basic"
        );
        let forced = ClientAuth { method: Some("client_secret_post".into()), ..shared };
        assert_eq!(forced.method_for(&["client_secret_basic".into()]), "client_secret_post");
    }
}
