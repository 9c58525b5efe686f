//! Where a call's name leads: the upstream owning the tool, prompt or resource it names (in
//! the whole catalog, or a store key's view), the upstream's own name for it, and the params
//! member to rewrite; `completion/complete` references likewise.

use std::sync::Arc;

use bytes::Bytes;

use super::{Located, Resolver, json_str, scope_name};
use crate::catalog::{Catalog, Target as CatalogTarget, replace_member};
use crate::error::GatewayError;
use crate::pipeline::parts::{Params, Scope};
use crate::tenancy::View;
use crate::upstream::Upstream;
use crate::wire::jsonrpc::Method;
use crate::wire::mcp::Era;
use crate::wire::object::ObjectView;

impl Resolver {
    /// The upstream that owns the tool, prompt or resource a call names, its own name for it,
    /// and the params member to rewrite.
    pub(super) fn locate(
        &self,
        method: &Method,
        params: &Params,
        scope: &Scope,
        era: Era,
        snap: &Catalog,
        view: Option<&View>,
    ) -> Result<Located, GatewayError> {
        let renamed = |t: &CatalogTarget, key: &'static str| -> Result<Located, GatewayError> {
            Ok(Located {
                upstream: self.upstream(&t.upstream, view)?,
                ns: Arc::clone(&t.upstream),
                name: Some(Arc::clone(&t.original)),
                rewrite: Some((key, json_str(&t.original))),
            })
        };
        let unprefixed = |ns: &str, name: &str| -> Result<Located, GatewayError> {
            let upstream = self.upstream(ns, view)?;
            Ok(Located { ns: Arc::clone(&upstream.name), upstream, name: Some(Arc::from(name)), rewrite: None })
        };
        match method {
            Method::ToolsCall | Method::PromptsGet => {
                let name = params.required_str("name")?;
                let Scope::Gateway = scope else { return unprefixed(scope_name(scope), &name) };
                match method {
                    Method::ToolsCall => {
                        renamed(snap.tool(&name).ok_or_else(|| GatewayError::UnknownTool(name.to_string()))?, "name")
                    }
                    _ => renamed(
                        snap.prompt(&name).ok_or_else(|| GatewayError::UnknownPrompt(name.to_string()))?,
                        "name",
                    ),
                }
            }
            Method::ResourcesRead | Method::ResourcesSubscribe | Method::ResourcesUnsubscribe
                if era == Era::Legacy || *method == Method::ResourcesRead =>
            {
                let uri = params.required_str("uri")?;
                self.check_uri(&uri)?;
                let Scope::Gateway = scope else { return unprefixed(scope_name(scope), &uri) };
                renamed(&snap.resource(&uri).ok_or_else(|| GatewayError::ResourceNotFound(uri.to_string()))?, "uri")
            }
            Method::CompletionComplete => {
                let (upstream, ns, new_ref) = self.completion_target(params, scope, snap, view)?;
                Ok(Located { upstream, ns, name: None, rewrite: Some(("ref", new_ref)) })
            }
            Method::Other(_) if matches!(scope, Scope::Upstream(_)) => {
                let upstream = self.upstream(scope_name(scope), view)?;
                Ok(Located { ns: Arc::clone(&upstream.name), upstream, name: None, rewrite: None })
            }
            other => Err(GatewayError::MethodNotFound(other.as_str().to_string())),
        }
    }

    /// Refuse a URI (or a completion reference) longer than `server.max_uri_bytes`: it would
    /// be copied into keys, logs and the upstream's request.
    ///
    /// Errors: [`GatewayError::InvalidParams`].
    fn check_uri(&self, uri: &str) -> Result<(), GatewayError> {
        if uri.len() > self.max_uri_bytes {
            return Err(GatewayError::InvalidParams(format!(
                "params.uri is {} bytes; at most {} (server.max_uri_bytes)",
                uri.len(),
                self.max_uri_bytes
            )));
        }
        Ok(())
    }

    /// The upstream of a `completion/complete`, its catalog namespace, and its `ref` rewritten
    /// to the upstream's name.
    fn completion_target(
        &self,
        params: &Params,
        scope: &Scope,
        snap: &Catalog,
        view: Option<&View>,
    ) -> Result<(Arc<Upstream>, Arc<str>, Bytes), GatewayError> {
        let bad_ref = || GatewayError::InvalidParams("params.ref must be an object".into());
        let raw_ref = params.get_bytes("ref").ok_or_else(bad_ref)?;
        let object = ObjectView::parse(&raw_ref).map_err(|_| bad_ref())?;
        let ref_type = object.get_str(&raw_ref, "type").unwrap_or_default().into_owned();
        let key = match ref_type.as_str() {
            "ref/prompt" => "name",
            "ref/resource" => "uri",
            other => return Err(GatewayError::InvalidParams(format!("unknown ref type {other:?}"))),
        };
        let value = object
            .get_str(&raw_ref, key)
            .ok_or_else(|| GatewayError::InvalidParams(format!("params.ref.{key} must be a string")))?;
        self.check_uri(&value)?;
        let (up, ns, original) = match scope {
            Scope::Upstream(ns) => (self.upstream(ns, view)?, Arc::clone(ns), value.to_string()),
            Scope::Gateway => {
                let target = if key == "name" {
                    snap.prompt(&value).cloned().ok_or_else(|| GatewayError::UnknownPrompt(value.to_string()))?
                } else {
                    snap.resource(&value).ok_or_else(|| GatewayError::ResourceNotFound(value.to_string()))?
                };
                (self.upstream(&target.upstream, view)?, target.upstream, target.original.to_string())
            }
        };
        Ok((up, ns, replace_member(&raw_ref, key, &original)))
    }

    /// The upstream behind catalog namespace `ns`: in a store key's `view`, else among the
    /// static upstreams.
    fn upstream(&self, ns: &str, view: Option<&View>) -> Result<Arc<Upstream>, GatewayError> {
        let found = match view {
            Some(v) => v.upstream(ns),
            None => self.upstreams.get(ns),
        };
        found.cloned().ok_or_else(|| GatewayError::UpstreamUnavailable {
            upstream: ns.to_string(),
            reason: "no such upstream".into(),
        })
    }
}
