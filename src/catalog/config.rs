//! Configuration of the merged catalog: naming, pagination and list cache hints.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[catalog]`: how upstream tools, prompts and resources are merged.
///
/// ```toml
/// [catalog]
/// separator = "__"          # tool and prompt names are {namespace}{separator}{name}
/// page_size = 100           # items per downstream list page
/// list_ttl_ms = 0           # ttlMs hint for modern clients when upstreams send none
/// refresh_interval = "5m"   # re-list upstreams this often even without list_changed
/// initial_wait = "8s"       # after start, lists wait this long at most for starting upstreams
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Joins namespace and upstream name: `{namespace}{separator}{name}`.
    pub separator: String,
    /// Items per page of a downstream list result.
    pub page_size: usize,
    /// `ttlMs` hint on list results when no upstream sent one (milliseconds).
    pub list_ttl_ms: u64,
    /// Period of the background re-listing of every upstream.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Right after start, list requests (and calls to names not listed yet) wait at most this
    /// long from start for every upstream to connect and be listed, or fail (`catalog::startup`).
    /// Below the start-up timeouts of common clients (Codex: 10 s).
    #[serde(with = "humantime_serde")]
    pub initial_wait: Duration,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            separator: "__".into(),
            page_size: 100,
            list_ttl_ms: 0,
            refresh_interval: Duration::from_secs(300),
            initial_wait: Duration::from_secs(8),
        }
    }
}

impl CatalogConfig {
    /// Check this section; returns every problem found.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.separator.is_empty()
            || self.separator.len() > 4
            || !self.separator.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            problems.push("catalog.separator must be 1-4 characters of A-Z, a-z, 0-9, '_' or '-'".into());
        }
        if self.page_size == 0 || self.page_size > 10_000 {
            problems.push("catalog.page_size must be between 1 and 10000".into());
        }
        if self.initial_wait > Duration::from_secs(120) {
            problems.push("catalog.initial_wait must be at most 120s".into());
        }
        if self.refresh_interval < Duration::from_secs(1) {
            problems.push("catalog.refresh_interval must be at least 1s".into());
        }
        problems
    }
}
