//! Configuration of logs.

use serde::{Deserialize, Serialize};

/// `[log]`: structured logs on stderr (stdout belongs to the stdio transport).
///
/// ```toml
/// [log]
/// level = "info"     # or a tracing filter such as "sekisho=debug,info"; RUST_LOG overrides
/// format = "json"    # "json" (one object per line) or "text"
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: LogFormat::Json }
    }
}

impl LogConfig {
    /// Check this section; returns every problem found.
    pub fn validate(&self) -> Vec<String> {
        match tracing_subscriber::EnvFilter::try_new(&self.level) {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("log.level = {:?} is not a valid filter ({e})", self.level)],
        }
    }
}
