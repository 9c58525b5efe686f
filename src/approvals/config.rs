//! `[approvals]`: which `tools/call`s are allowed, denied or held for approval (per upstream,
//! tool and tenant), how long a held call waits, and how many may wait at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the policy does with a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The call goes on.
    #[default]
    Allow,
    /// The call is refused (-32012, FORBIDDEN).
    Deny,
    /// The call waits for approval: asked of the calling client through elicitation when it
    /// declared the capability, else held for an operator until `timeout`.
    Approve,
}

impl Action {
    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Approve => "approve",
        }
    }
}

/// One rule: every field given must match (absent fields match anything); the first rule that
/// matches a call decides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The upstream's namespace.
    pub upstream: Option<String>,
    /// The tool's name as its upstream lists it (without the namespace).
    pub tool: Option<String>,
    /// The calling key's tenant (store keys; static keys have none and never match a tenant).
    pub tenant: Option<String>,
    /// What to do with a matching call.
    pub action: Action,
}

/// `[approvals]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// The action for a tool whose annotations say `destructiveHint: true` and that no rule
    /// matches (`allow` by default: the policy is opt-in). A tool without the annotation is
    /// not counted as destructive (the spec's default `true` is not applied: list such tools
    /// in a rule).
    pub destructive: Action,
    /// Rules, first match wins.
    pub rules: Vec<Rule>,
    /// How long a call waits for its approval (from a client or an operator) before it is
    /// refused (-32024); 1 s–1 h.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Calls held for an operator on this replica at once (1–100,000); one more is refused.
    pub max_pending: usize,
    /// Calls one caller may have held at once (1–`max_pending`).
    pub max_pending_per_caller: usize,
    /// Bytes of redacted arguments shown to the approver (64–65,536).
    pub max_shown_bytes: usize,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            destructive: Action::Allow,
            rules: Vec::new(),
            timeout: Duration::from_secs(120),
            max_pending: 256,
            max_pending_per_caller: 16,
            max_shown_bytes: 2048,
        }
    }
}

impl ApprovalsConfig {
    /// Every problem with this section; `upstreams` are the configured namespaces (a rule
    /// naming another is a typo that would silently never match).
    pub fn validate<'a>(&self, upstreams: impl Iterator<Item = &'a String> + Clone) -> Vec<String> {
        let mut problems = Vec::new();
        if self.timeout < Duration::from_secs(1) || self.timeout > Duration::from_secs(3600) {
            problems.push("approvals.timeout must be 1s–1h".into());
        }
        if !(1..=100_000).contains(&self.max_pending) {
            problems.push(format!("approvals.max_pending = {} must be 1–100000", self.max_pending));
        }
        if !(1..=self.max_pending.max(1)).contains(&self.max_pending_per_caller) {
            problems.push(format!(
                "approvals.max_pending_per_caller = {} must be 1–max_pending",
                self.max_pending_per_caller
            ));
        }
        if !(64..=65_536).contains(&self.max_shown_bytes) {
            problems.push(format!("approvals.max_shown_bytes = {} must be 64–65536", self.max_shown_bytes));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(up) = &rule.upstream
                && !upstreams.clone().any(|u| u == up)
            {
                problems.push(format!("approvals.rules[{i}].upstream = {up:?} is not a configured upstream"));
            }
            if rule.upstream.is_none() && rule.tool.is_none() && rule.tenant.is_none() {
                problems.push(format!("approvals.rules[{i}] matches every call: name an upstream, tool or tenant"));
            }
        }
        problems
    }

    /// The action for a call of `tool` (the upstream's own name) on `upstream` by a caller of
    /// `tenant`, whose annotations say `destructive`: the first matching rule's, else
    /// [`ApprovalsConfig::destructive`] for a destructive tool, else `allow`.
    pub fn action(&self, upstream: &str, tool: &str, tenant: Option<&str>, destructive: bool) -> Action {
        let matches = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == have);
        self.rules
            .iter()
            .find(|r| {
                matches(&r.upstream, Some(upstream)) && matches(&r.tool, Some(tool)) && matches(&r.tenant, tenant)
            })
            .map(|r| r.action)
            .unwrap_or(if destructive { self.destructive } else { Action::Allow })
    }

    /// Whether no call can ever need approval or refusal (the step then only serves dry runs).
    pub fn allows_everything(&self) -> bool {
        self.destructive == Action::Allow && self.rules.iter().all(|r| r.action == Action::Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_first_matching_rule_decides_then_the_hint() {
        let config: ApprovalsConfig = toml::from_str(
            r#"
            destructive = "approve"
            rules = [
              { upstream = "fs", tool = "rm", tenant = "acme", action = "deny" },
              { upstream = "fs", tool = "rm", action = "approve" },
              { upstream = "fs", tool = "wipe", action = "allow" },
              { tenant = "lab", action = "allow" },
            ]
            "#,
        )
        .unwrap();
        assert_eq!(config.action("fs", "rm", Some("acme"), false), Action::Deny);
        assert_eq!(config.action("fs", "rm", Some("other"), false), Action::Approve);
        assert_eq!(config.action("fs", "rm", None, false), Action::Approve);
        assert_eq!(config.action("fs", "wipe", None, true), Action::Allow, "a rule overrides the hint");
        assert_eq!(config.action("db", "drop", None, true), Action::Approve, "the hint's default");
        assert_eq!(config.action("db", "drop", Some("lab"), true), Action::Allow);
        assert_eq!(config.action("db", "read", None, false), Action::Allow);
        assert!(!config.allows_everything());
        assert!(ApprovalsConfig::default().allows_everything());
    }

    #[test]
    fn the_section_is_checked() {
        let problems = |toml: &str| Config::from_toml(toml).err().map(|e| e.problems).unwrap_or_default();
        let bad = problems(
            "[approvals]\ntimeout = \"0s\"\nmax_pending = 0\nmax_shown_bytes = 1\n\
             rules = [{ upstream = \"nope\", action = \"deny\" }, { action = \"approve\" }]\n",
        );
        assert_eq!(bad.len(), 6, "{bad:?}");
        assert!(problems("[approvals]\ndestructive = \"maybe\"\n")[0].contains("maybe"));
    }
}
