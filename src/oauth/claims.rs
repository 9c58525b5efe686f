//! What a verified token's claims make of its caller: the stable id (`oauth:<issuer
//! name>:<identity claim>`), the tenant, the required scopes, and what it may reach — either
//! the store instance (virtual server) its claims name ([`Bound`], resolved per request by
//! [`crate::tenancy::Tenancy::instance_view`]), or the tool groups its scopes and tenant grant,
//! a [`View`] over the static upstreams. Both are the object a store key's instance is served
//! through, so an OAuth caller gets exactly what a key caller gets (sessions bound to its id,
//! private cache scopes, rate limits, audit identity).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::config::{IssuerConfig, OAuthConfig};
use crate::pipeline::parts::{Identity, Principal, Priority, ViewSlot};
use crate::store::resolve::{KeyRecord, Named, Resolved, ToolGrant, ToolSource};
use crate::tenancy::View;
use crate::tenancy::view::Binding;
use crate::upstream::UpstreamSet;

/// The most views (distinct group sets) kept; past it views are built per token.
const MAX_VIEWS: usize = 256;

/// Why claims do not make a caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The token is unusable here (HTTP 401 `invalid_token`), with a fixed description.
    Invalid(&'static str),
    /// A required scope is missing (HTTP 403 `insufficient_scope`).
    Scope,
}

/// The store instance (virtual server) a token's claims name: its tenant and its name, both
/// as the store spells them (1–128 bytes, no control characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    /// The tenant's name (the `tenant_claim` value).
    pub tenant: Box<str>,
    /// The instance's name (the `instance_claim` value).
    pub instance: Box<str>,
}

/// Builds callers from claims; keeps one view per group set.
pub struct Mapper {
    config: OAuthConfig,
    statics: Arc<UpstreamSet>,
    priority: Priority,
    views: Mutex<HashMap<BTreeSet<String>, Arc<View>>>,
}

/// The scopes of a token or introspection answer: `scope` (a space-separated string, RFC
/// 9068 §2.2.3, RFC 7662 §2.2), else `scp` (an array, as some issuers write it).
pub fn scopes(claims: &Value) -> Vec<String> {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split(' ').filter(|s| !s.is_empty()).take(256).map(String::from).collect(),
        (_, Some(Value::Array(a))) => a.iter().filter_map(|v| v.as_str()).take(256).map(String::from).collect(),
        _ => Vec::new(),
    }
}

/// A claim as a bounded, printable string.
fn text<'a>(claims: &'a Value, name: &str, max: usize) -> Option<&'a str> {
    claims.get(name)?.as_str().filter(|s| !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control))
}

impl Mapper {
    /// A mapper for `config`, whose groups name upstreams of `statics`; callers get `priority`.
    pub fn new(config: OAuthConfig, statics: Arc<UpstreamSet>, priority: Priority) -> Self {
        Mapper { config, statics, priority, views: Mutex::new(HashMap::new()) }
    }

    /// The caller of a token from `issuer` with verified `claims`, and the store instance they
    /// name when `instance_claim` is configured and present (the caller then has no view yet:
    /// the instance's is attached per request).
    ///
    /// The identity is the configured claim; when it is `sub` and absent (an RFC 7662 answer
    /// for a client-credentials token may omit it), `client_id` stands in.
    ///
    /// Errors: [`Refusal::Invalid`] without an identity, with a tenant not served (or not the
    /// issuer's to name), or a bad claim; [`Refusal::Scope`] when a required scope is missing.
    pub fn principal(&self, issuer: &IssuerConfig, claims: &Value) -> Result<(Principal, Option<Bound>), Refusal> {
        let c = &self.config;
        let subject = text(claims, &c.identity_claim, 256)
            .or_else(|| (c.identity_claim == "sub").then(|| text(claims, "client_id", 256)).flatten())
            .ok_or(Refusal::Invalid("the token names no caller"))?;
        let tenant = if c.tenant_claim.is_empty() { None } else { text(claims, &c.tenant_claim, 128) };
        let scopes = scopes(claims);
        if !c.required_scopes.iter().all(|s| scopes.contains(s)) {
            return Err(Refusal::Scope);
        }
        let id: Arc<str> = Arc::from(format!("oauth:{}:{subject}", issuer.id_name()));
        let instance = if c.instance_claim.is_empty() { None } else { text(claims, &c.instance_claim, 128) };
        if let Some(instance) = instance {
            let tenant = tenant.ok_or(Refusal::Invalid("the token names a virtual server but no tenant"))?;
            if !issuer.tenants.is_empty() && !issuer.tenants.iter().any(|t| t == tenant) {
                return Err(Refusal::Invalid("the token's tenant is not served here"));
            }
            let bound = Bound { tenant: tenant.into(), instance: instance.into() };
            return Ok((self.caller(id, Some(tenant), None), Some(bound)));
        }
        if !c.instance_claim.is_empty() && c.scopes_to_groups.is_empty() && c.tenant_groups.is_empty() {
            // Virtual servers only: a token naming none must not fall through to everything.
            return Err(Refusal::Invalid("the token names no virtual server"));
        }
        let by_scope: Option<BTreeSet<String>> = (!c.scopes_to_groups.is_empty())
            .then(|| scopes.iter().filter_map(|s| c.scopes_to_groups.get(s)).flatten().cloned().collect());
        let by_tenant: Option<BTreeSet<String>> = match c.tenant_groups.is_empty() {
            true => None,
            false => {
                let groups = tenant
                    .and_then(|t| c.tenant_groups.get(t))
                    .ok_or(Refusal::Invalid("the token's tenant is not served here"))?;
                Some(groups.iter().cloned().collect())
            }
        };
        let groups = match (by_scope, by_tenant) {
            (None, None) => None,
            (Some(g), None) | (None, Some(g)) => Some(g),
            (Some(a), Some(b)) => Some(a.intersection(&b).cloned().collect()),
        };
        let view = groups.map(|g| self.view(g));
        Ok((self.caller(id, tenant, view), None))
    }

    /// An OAuth caller: id `id`, the configured priority, no rate limit of its own, `tenant`
    /// and `view`.
    pub fn caller(&self, id: Arc<str>, tenant: Option<&str>, view: Option<Arc<View>>) -> Principal {
        Principal::ApiKey(Arc::new(Identity {
            tag: Identity::tag_of(&id),
            id,
            priority: self.priority,
            max_priority: self.priority,
            admin: false,
            rate_limit: None,
            tenant: tenant.map(Arc::from),
            view: view.map(|v| ViewSlot(v)),
        }))
    }

    /// The view granting `groups` (shared by every caller with the same groups).
    fn view(&self, groups: BTreeSet<String>) -> Arc<View> {
        if let Some(v) = self.views.lock().expect("views lock").get(&groups) {
            return Arc::clone(v);
        }
        let mut tools = Vec::new();
        for entry in groups.iter().filter_map(|g| self.config.groups.get(g)).flatten() {
            if let Some((ns, pattern)) = entry.split_once(':') {
                let grant = ToolGrant { source: ToolSource::Shared(ns.to_string()), pattern: pattern.to_string() };
                if !tools.contains(&grant) {
                    tools.push(grant);
                }
            }
        }
        let resolved = Arc::new(Resolved {
            key: KeyRecord { id: 0, name: String::new(), prefix: "oauth".into(), rps: None, burst: None },
            instance: Named { id: 0, name: groups.iter().cloned().collect::<Vec<_>>().join("+") },
            // Tenant id 0 is no store tenant's: store changes never address this view.
            tenant: Named { id: 0, name: "oauth".into() },
            tools,
            servers: Vec::new(),
        });
        let view = View::new(resolved, [0; 32], Binding::Fixed, &self.statics, |_| {
            unreachable!("OAuth views name no tenant server")
        })
        .expect("a view of static upstreams only cannot fail");
        let view = Arc::new(view);
        let mut views = self.views.lock().expect("views lock");
        if views.len() < MAX_VIEWS {
            views.insert(groups, Arc::clone(&view));
        }
        view
    }
}
