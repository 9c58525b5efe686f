//! `[audit]`: whether calls and admin actions are recorded, where, and what happens when the
//! sink cannot keep up.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where records go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// PostgreSQL when `[store]` is configured, else the JSON-lines file `path`.
    #[default]
    Auto,
    /// The `audit_log` table of the `[store]` database (created by `sekisho db migrate`).
    Postgres,
    /// The JSON-lines file `path`, appended to.
    File,
}

/// What the gateway does while the buffer is full (the sink is down or slower than the calls).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Keep serving; records that find the buffer full are dropped and counted
    /// (`sekisho_audit_dropped_total`, a rate-limited warning, a `dropped` record in the chain).
    #[default]
    Serve,
    /// Refuse audited calls (-32018, HTTP 503 + `Retry-After: 1`) while no buffer slot is free:
    /// no call runs that cannot be recorded.
    Refuse,
}

/// `[audit]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Record calls and admin actions (off by default).
    pub enabled: bool,
    /// `auto`, `postgres` or `file`.
    pub sink: SinkKind,
    /// The JSON-lines file of the `file` sink (and of `auto` without `[store]`).
    pub path: String,
    /// Records held in memory while the sink is slow or down (1–1,000,000).
    pub buffer: usize,
    /// Records written per append at most (1–10,000): one multi-row INSERT, or one write.
    pub batch: usize,
    /// The longest a record waits for its batch to fill before it is written.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// An anchor record (the chain head) after this many records (1–1,000,000) …
    pub anchor_every: u64,
    /// … or after this long with records written since the last anchor.
    #[serde(with = "humantime_serde")]
    pub anchor_interval: Duration,
    /// `serve` or `refuse` while the buffer is full.
    pub on_audit_failure: OnFailure,
    /// Bound on the redacted arguments kept in one record, in bytes of JSON (64–1 MiB); each
    /// string is also cut to `max_argument_bytes / 8`.
    pub max_argument_bytes: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: false,
            sink: SinkKind::Auto,
            path: String::new(),
            buffer: 10_000,
            batch: 500,
            flush_interval: Duration::from_millis(200),
            anchor_every: 1000,
            anchor_interval: Duration::from_secs(60),
            on_audit_failure: OnFailure::Serve,
            max_argument_bytes: 4096,
        }
    }
}

impl AuditConfig {
    /// Every problem with this section, given whether `[store]` is configured.
    pub fn validate(&self, store: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.enabled {
            return problems;
        }
        match self.resolved_sink(store) {
            SinkKind::Postgres if !store => {
                problems.push("audit.sink = \"postgres\" needs [store] postgres_url".into());
            }
            SinkKind::File if self.path.is_empty() => problems.push(if self.sink == SinkKind::Auto {
                "audit.enabled without [store] needs audit.path (the JSON-lines file)".into()
            } else {
                "audit.sink = \"file\" needs audit.path".into()
            }),
            _ => {}
        }
        if !(1..=1_000_000).contains(&self.buffer) {
            problems.push(format!("audit.buffer = {} must be 1–1000000", self.buffer));
        }
        if !(1..=10_000).contains(&self.batch) {
            problems.push(format!("audit.batch = {} must be 1–10000", self.batch));
        }
        if self.flush_interval.is_zero() || self.flush_interval > Duration::from_secs(60) {
            problems.push("audit.flush_interval must be above 0 and at most 60s".into());
        }
        if !(1..=1_000_000).contains(&self.anchor_every) {
            problems.push(format!("audit.anchor_every = {} must be 1–1000000", self.anchor_every));
        }
        if self.anchor_interval.is_zero() {
            problems.push("audit.anchor_interval must be above 0".into());
        }
        if !(64..=1 << 20).contains(&self.max_argument_bytes) {
            problems.push(format!("audit.max_argument_bytes = {} must be 64–1048576", self.max_argument_bytes));
        }
        problems
    }

    /// The sink `auto` stands for: PostgreSQL with `[store]`, else the file.
    pub fn resolved_sink(&self, store: bool) -> SinkKind {
        match self.sink {
            SinkKind::Auto if store => SinkKind::Postgres,
            SinkKind::Auto => SinkKind::File,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_section_is_checked_against_the_store() {
        let problems = |toml: &str| Config::from_toml(toml).err().map(|e| e.problems).unwrap_or_default();
        assert!(problems("[audit]\nenabled = true\n")[0].contains("needs audit.path"));
        assert!(problems("[audit]\nenabled = true\nsink = \"postgres\"\npath = \"a\"\n")[0].contains("needs [store]"));
        let bad = problems("[audit]\nenabled = true\npath = \"a\"\nbuffer = 0\nbatch = 0\nmax_argument_bytes = 1\n");
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(problems("[audit]\non_audit_failure = \"maybe\"\n")[0].contains("maybe"));
        let ok =
            Config::from_toml("[audit]\nenabled = true\npath = \"a.jsonl\"\non_audit_failure = \"refuse\"\n").unwrap();
        assert_eq!(ok.audit.resolved_sink(false), super::SinkKind::File);
        assert_eq!(ok.audit.resolved_sink(true), super::SinkKind::Postgres);
    }
}
