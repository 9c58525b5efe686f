//! Observability: Prometheus metrics, structured logs.

pub mod config;
pub mod logging;
pub mod metrics;
