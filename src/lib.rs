//! sekisho: an MCP gateway. Modules in the order a request travels:
//!
//! - [`front`]: client-facing transports (Streamable HTTP, stdio) and error rescue;
//! - [`oauth`]: the OAuth 2.1 resource server (JWT/JWKS, introspection, RFC 9728 metadata);
//! - [`session`]: protocol eras, legacy sessions, `initialize`/`server/discover`, notification streams;
//! - [`pipeline`]: the call stack, built in one place (`pipeline::build`), one module per step;
//! - [`cache`]: the response cache, coalescing and idempotency records the cache steps use;
//! - [`cost`]: prices of upstream calls, dollars spent, budgets per hour (the `cost` step's);
//! - [`catalog`]: merged tools/prompts/resources, name mapping, list pages;
//! - [`upstream`]: per upstream its own stack (`upstream::stack::build`), replicas, connections
//!   (stdio children, HTTP), handshakes, era translation;
//! - [`audit`]: the tamper-evident audit log of calls and admin actions (hash chain, sinks, verify);
//! - [`store`]: the multi-tenant store in PostgreSQL (tenants, instances, keys), its config cache;
//! - [`wire`]: JSON-RPC, JSON object views, SSE, MCP constants (shared by front and upstream);
//! - [`error`]: the error taxonomy and its one table; [`observe`]: metrics and logs;
//!   [`monitor`]: samples of the indicators over time, in a fixed ring; [`switches`]: runtime
//!   switches that turn layers off (fleet-wide through Redis); [`report`]: the gateway's
//!   reports of itself (performance, health) and its own MCP tools;
//!   [`config`]: loading, validation, settings in force; [`app`]: wiring and lifecycle.
//!
//! `fuzzing` (hidden) holds the harnesses of the `cargo fuzz` targets in `fuzz/`.

pub mod app;
pub mod approvals;
pub mod audit;
pub mod cache;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod cost;
pub mod detect;
pub mod error;
pub mod front;
#[doc(hidden)]
pub mod fuzzing;
pub mod monitor;
pub mod oauth;
pub mod observe;
pub mod pipeline;
pub mod report;
pub mod session;
pub mod store;
pub mod switches;
pub mod tenancy;
pub mod upstream;
pub mod wire;
