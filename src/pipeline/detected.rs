//! Middleware that applies the `detect` policy of a call's upstream, or of its tool, to the
//! answer of a `tools/call`, `resources/read` or `prompts/get` on its way to the client
//! (`crate::detect`): `redact` replaces each finding in the answer's strings with
//! `[REDACTED:<kind>]` (the JSON stays valid), `block` answers -32019 naming the kinds found.
//!
//! ```toml
//! [upstreams.files]
//! command = "files-server"
//! detect = { results = "redact" }
//! [upstreams.files.tools.read_env]
//! detect = { results = "block", kinds = ["secrets"] }
//! ```
//!
//! The step sits above idempotency and the cache, so replays, hits and coalesced answers are
//! checked on every serving too: what is stored is the upstream's answer, and what each client
//! receives is checked under the policy in force when it is served. It is present only when
//! some upstream or tool has a policy other than `off`; calls without one pass straight on.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tower::{Service, ServiceExt};

use super::ctx::Routed;
use super::parts::{Reply, ReplyFuture};
use super::routed::RoutedStep;
use super::steps::Named;
use crate::detect::json::{self, Unreadable};
use crate::detect::redact::{self, Place};
use crate::detect::result::{ResultAction, ResultPolicy};
use crate::detect::{KindSet, scan_bytes};
use crate::error::GatewayError;
use crate::upstream::config::UpstreamConfig;
use crate::wire::jsonrpc::Method;

/// The policies of one upstream: its own, and its tools' that replace it.
#[derive(Debug)]
struct UpstreamPolicies {
    upstream: Option<ResultPolicy>,
    tools: HashMap<Box<str>, Option<ResultPolicy>>,
}

/// Every upstream's and tool's result policy, from the configuration (checked at load).
#[derive(Debug)]
pub struct Policies {
    upstreams: HashMap<Box<str>, UpstreamPolicies>,
}

impl Policies {
    /// The policies of `upstreams`; `None` when none is other than `off` (the step is then left
    /// out of the stack, and no answer is scanned).
    pub fn new<'a>(upstreams: impl Iterator<Item = (&'a String, &'a UpstreamConfig)>) -> Option<Policies> {
        let on = |d: Option<&crate::detect::result::DetectConfig>| {
            let policy = d?.policy().expect("detect tables are checked at load");
            (policy.action != ResultAction::Off).then_some(policy)
        };
        let mut map = HashMap::new();
        let mut any = false;
        for (name, up) in upstreams {
            let upstream = on(up.detect.as_ref());
            let tools: HashMap<Box<str>, Option<ResultPolicy>> = up
                .tools
                .iter()
                .filter(|(_, t)| t.detect.is_some())
                .map(|(t, c)| (Box::from(t.as_str()), on(c.detect.as_ref())))
                .collect();
            any |= upstream.is_some() || tools.values().any(Option::is_some);
            map.insert(Box::from(name.as_str()), UpstreamPolicies { upstream, tools });
        }
        any.then_some(Policies { upstreams: map })
    }

    /// The policy for a call of `method` to `upstream` (its tool `tool` for `tools/call`), if
    /// one applies: the tool's own `detect` table when it has one, else the upstream's.
    pub fn policy(&self, upstream: &str, method: &Method, tool: Option<&str>) -> Option<ResultPolicy> {
        let up = self.upstreams.get(upstream)?;
        match (method, tool) {
            (Method::ToolsCall, Some(t)) => up.tools.get(t).copied().unwrap_or(up.upstream),
            (Method::ToolsCall | Method::ResourcesRead | Method::PromptsGet, _) => up.upstream,
            _ => None,
        }
    }
}

/// The `detect` step.
#[derive(Clone, Debug)]
pub struct Detect(pub Arc<Policies>);

impl Named for Detect {
    fn name(&self) -> &'static str {
        "detect"
    }
}

impl RoutedStep for Detect {
    fn serve<S>(&self, routed: Routed, inner: S) -> Result<ReplyFuture, Routed>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
        S::Future: Send,
    {
        let Some(policy) = self.0.policy(&routed.target.upstream.name, &routed.request.method, routed.name()) else {
            return Err(routed);
        };
        Ok(Box::pin(async move { apply(policy, inner.oneshot(routed).await?) }))
    }
}

/// Apply `policy` to an answer: a result or an upstream's error object, whichever it is.
///
/// # Errors
/// [`GatewayError::SensitiveDataBlocked`] when `policy` blocks and the answer holds a
/// finding, or when the answer is not readable JSON and holds one (whatever the action: an
/// answer that cannot be rewritten is withheld).
pub fn apply(policy: ResultPolicy, reply: Reply) -> Result<Reply, GatewayError> {
    let body = match &reply {
        Reply::Result { body, .. } | Reply::Error { body, .. } => body,
    };
    let block = policy.action == ResultAction::Block;
    let action = if block { "block" } else { "redact" };
    match json::scan(body, policy.kinds, !block, Place::Result, action) {
        Ok(s) if s.count == 0 => Ok(reply),
        Ok(s) if block => Err(blocked(s.kinds)),
        Ok(s) => {
            let body = Bytes::from(s.redacted.expect("redaction was asked for"));
            Ok(match reply {
                Reply::Result { origin, .. } => Reply::Result { body, origin },
                Reply::Error { origin, .. } => Reply::Error { body, origin },
            })
        }
        Err(Unreadable) => {
            let found = scan_bytes(body, policy.kinds);
            if found.is_empty() {
                return Ok(reply);
            }
            redact::count(&found, Place::Result, "block");
            Err(blocked(found.iter().fold(KindSet::NONE, |k, f| k.with(f.kind))))
        }
    }
}

fn blocked(kinds: KindSet) -> GatewayError {
    GatewayError::SensitiveDataBlocked { kinds: kinds.names() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::pipeline::parts::Origin;

    fn policies(toml: &str) -> Option<Policies> {
        Policies::new(Config::from_toml(toml).unwrap().enabled_upstreams())
    }

    #[test]
    fn tools_replace_their_upstreams_policy_and_off_leaves_the_step_out() {
        assert!(policies("[upstreams.a]\ncommand = \"x\"\ndetect = { results = \"off\" }\n").is_none());
        let p = policies(
            "[upstreams.a]\ncommand = \"x\"\ndetect = { results = \"redact\" }\n\
             [upstreams.a.tools.quiet]\ndetect = { results = \"off\" }\n\
             [upstreams.a.tools.strict]\ndetect = { results = \"block\", kinds = [\"private_key\"] }\n\
             [upstreams.b]\ncommand = \"y\"\n",
        )
        .unwrap();
        let action = |up, m: Method, t| p.policy(up, &m, t).map(|p| p.action);
        assert_eq!(action("a", Method::ToolsCall, Some("echo")), Some(ResultAction::Redact));
        assert_eq!(action("a", Method::ToolsCall, Some("quiet")), None);
        assert_eq!(action("a", Method::ToolsCall, Some("strict")), Some(ResultAction::Block));
        assert_eq!(action("a", Method::ResourcesRead, None), Some(ResultAction::Redact));
        assert_eq!(action("a", Method::ToolsList, None), None);
        assert_eq!(action("b", Method::ToolsCall, Some("echo")), None);
        assert_eq!(action("t1.other", Method::ToolsCall, Some("echo")), None);
    }

    #[test]
    fn unknown_kinds_are_configuration_errors() {
        let e = Config::from_toml(
            "[upstreams.a]\ncommand = \"x\"\n[upstreams.a.tools.t]\ndetect = { results = \"block\", kinds = [\"pasword\"] }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("upstreams.a.tools.t.detect") && e.contains("\"pasword\" is not a kind"), "{e}");
        let e = Config::from_toml("[upstreams.a]\ncommand = \"x\"\ndetect = { results = \"redact\", kinds = [] }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("upstreams.a.detect: kinds is empty"), "{e}");
        let e = Config::from_toml("[upstreams.a]\ncommand = \"x\"\ndetect = { results = \"hide\" }\n").unwrap_err();
        assert!(e.to_string().contains("hide"), "{e}");
    }

    #[test]
    fn unreadable_answers_with_findings_are_withheld() {
        let policy = ResultPolicy { action: ResultAction::Redact, kinds: KindSet::ALL };
        let origin = Origin::Upstream(crate::wire::mcp::Era::Legacy, "a".into());
        let broken = Reply::Result { body: Bytes::from_static(b"{\"t\":\"jane@example.com"), origin: origin.clone() };
        assert!(
            matches!(apply(policy, broken), Err(GatewayError::SensitiveDataBlocked { kinds }) if kinds == ["email"])
        );
        let clean = Reply::Error { body: Bytes::from_static(b"{\"code\":1,\"message\":\"no"), origin };
        assert!(apply(policy, clean).is_ok());
    }
}
