//! Opaque access tokens: RFC 7662 token introspection at the issuers that have introspection
//! credentials, in configuration order. An active answer is remembered until
//! min(`exp`, now + [`MAX_CACHE`]); an inactive one for a minute (`OAuth::inactive`).

use super::{OAuth, OAuthError, Verified, audiences, now};

/// The longest an introspection answer is reused.
pub const MAX_CACHE: u64 = 60;

impl OAuth {
    /// Introspect `token` (SHA-256 `digest`) at each issuer with a `client_id`, until one calls
    /// it active.
    ///
    /// Errors: [`OAuthError::InvalidToken`] when no issuer is configured for introspection, or
    /// none calls it active (then remembered as inactive), or its answer names another issuer
    /// or an expired or not-yet-valid token; [`OAuthError::Unavailable`] when no issuer answered.
    pub(super) async fn introspect(&self, token: &str, digest: [u8; 32]) -> Result<Verified, OAuthError> {
        let mut asked = false;
        let mut answered = false;
        for issuer in self.issuers.iter().filter(|i| !i.config().client_id.is_empty()) {
            let c = issuer.config();
            let endpoint = match c.introspection_endpoint.is_empty() {
                false => c.introspection_endpoint.clone(),
                true => match issuer.endpoints().await {
                    Ok(e) if !e.introspection_endpoint.is_empty() => e.introspection_endpoint,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(issuer = %c.issuer, error = %e, "oauth: cannot discover the introspection endpoint");
                        asked = true;
                        continue;
                    }
                },
            };
            asked = true;
            let credentials = (c.client_id.as_str(), c.client_secret.as_str());
            let fields = [("token", token), ("token_type_hint", "access_token")];
            let answer = match super::fetch::post_form(&self.http, &endpoint, credentials, &fields).await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(issuer = %c.issuer, error = %e, "oauth: introspection failed");
                    continue;
                }
            };
            answered = true;
            if answer.get("active").and_then(|v| v.as_bool()) != Some(true) {
                continue;
            }
            if let Some(iss) = answer.get("iss").and_then(|v| v.as_str())
                && iss.trim_end_matches('/') != c.issuer.trim_end_matches('/')
            {
                return Err(OAuthError::InvalidToken("the token's issuer is not trusted"));
            }
            let t = now();
            let leeway = self.config.leeway.as_secs();
            let exp = answer.get("exp").and_then(|v| v.as_u64());
            if exp.is_some_and(|e| e.saturating_add(leeway) < t) {
                return Err(OAuthError::InvalidToken("the token has expired"));
            }
            if answer.get("nbf").and_then(|v| v.as_u64()).is_some_and(|n| n > t + leeway) {
                return Err(OAuthError::InvalidToken("the token is not valid yet"));
            }
            let (principal, bound) = self.mapper.principal(c, &answer)?;
            let until = exp.map_or(t + MAX_CACHE, |e| e.min(t + MAX_CACHE));
            return Ok(Verified { principal, bound, until, audiences: audiences(&answer) });
        }
        if !asked {
            return Err(OAuthError::InvalidToken("the token is not a JWT and no issuer introspects tokens"));
        }
        if !answered {
            return Err(OAuthError::Unavailable);
        }
        self.inactive.insert(digest, ());
        Err(OAuthError::InvalidToken("the token is not active"))
    }
}
