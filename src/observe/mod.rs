//! Observability: Prometheus metrics, structured logs, redaction of secrets in what is printed.

pub mod bounded;
pub mod config;
pub mod logging;
pub mod metrics;
pub mod proc;
pub mod redact;
pub mod repeats;
