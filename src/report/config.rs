//! `[self_tools]`: whether the gateway lists its own MCP tools (the `sekisho` namespace) and to
//! whom.

use serde::{Deserialize, Serialize};

/// Who sees (and may call) the gateway's own tools.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Callers that present an API key with `role = "admin"`. A gateway without API keys
    /// (every caller anonymous, `sekisho stdio` included) shows them to nobody.
    #[default]
    Admins,
    /// Every caller of the static configuration: admin and client keys, and anonymous callers
    /// where authentication is off. Store keys (tenants, `[store]`) never see them: they would
    /// see every tenant's upstreams.
    All,
}

/// `[self_tools]`.
///
/// ```toml
/// [self_tools]
/// enabled = true          # list sekisho__performance, __metrics, __alerts, __health
/// visible_to = "admins"   # or "all" (a keyless local gateway, e.g. for a desktop client)
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SelfToolsConfig {
    /// Whether the tools exist at all. Off: `sekisho__*` names are unknown tools for everyone.
    pub enabled: bool,
    /// Who sees and may call them; anyone else gets the unknown-tool error for their names.
    pub visible_to: Visibility,
}

impl Default for SelfToolsConfig {
    fn default() -> Self {
        SelfToolsConfig { enabled: true, visible_to: Visibility::Admins }
    }
}

/// The namespace of the gateway's own tools; no upstream may take it while they are enabled.
pub const NAMESPACE: &str = "sekisho";

impl SelfToolsConfig {
    /// Problems with these settings given the configured upstream names.
    pub fn validate<'a>(&self, upstreams: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let mut p = Vec::new();
        if self.enabled && upstreams.into_iter().any(|n| n == NAMESPACE) {
            p.push(format!(
                "upstreams.{NAMESPACE}: the namespace {NAMESPACE:?} belongs to the gateway's own tools; \
                 rename the upstream or set [self_tools] enabled = false"
            ));
        }
        p
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_upstream_cannot_take_the_namespace_while_the_tools_are_on() {
        let toml = "[upstreams.sekisho]\ncommand = \"x\"\n";
        let e = crate::config::Config::from_toml(toml).unwrap_err().to_string();
        assert!(e.contains("belongs to the gateway's own tools"), "{e}");
        crate::config::Config::from_toml(&format!("[self_tools]\nenabled = false\n{toml}")).unwrap();
        let c = crate::config::Config::from_toml("[self_tools]\nvisible_to = \"all\"\n").unwrap();
        assert_eq!(c.self_tools.visible_to, super::Visibility::All);
        assert!(crate::config::Config::from_toml("[self_tools]\nvisible_to = \"nobody\"\n").is_err());
    }
}
