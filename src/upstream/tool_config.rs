//! Per-tool overrides of an upstream's settings: `[upstreams.<namespace>.tools.<tool>]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[upstreams.<namespace>.tools.<tool>]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// Deadline of one attempt of this tool.
    #[serde(default, with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Whether a failed call may be repeated (overrides annotations).
    pub retry: Option<bool>,
    /// Whether results are cached (overrides annotations: by default a `trusted` upstream's
    /// `readOnlyHint` tools are).
    pub cache: Option<bool>,
    /// Time to live of its cached results (default `[cache] ttl`).
    #[serde(default, with = "humantime_serde::option")]
    pub cache_ttl: Option<Duration>,
    /// Who may receive its cached results (default `[cache] default_scope`).
    pub cache_scope: Option<crate::cache::config::CacheScope>,
    /// What its calls cost; each field given overrides the upstream's `price`.
    pub price: Option<crate::cost::config::Price>,
    /// What to do with its results holding sensitive data; replaces the upstream's `detect`.
    pub detect: Option<crate::detect::result::DetectConfig>,
}
