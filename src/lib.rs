//! sekisho: an MCP gateway. Modules in the order a request travels:
//!
//! - [`front`]: client-facing transports (Streamable HTTP, stdio) and error rescue;
//! - [`session`]: protocol eras, legacy sessions, `initialize`/`server/discover`, notification streams;
//! - [`pipeline`]: the ordered policy layers and the per-request context;
//! - [`catalog`]: merged tools/prompts/resources, name mapping, the router;
//! - [`upstream`]: per-upstream connections (stdio children, HTTP), handshakes, era translation;
//! - [`wire`]: JSON-RPC, JSON object views, SSE, MCP constants (shared by front and upstream);
//! - [`observe`]: metrics and logs; [`config`]: loading and validation; [`app`]: wiring and lifecycle.

pub mod app;
pub mod cache;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod error;
pub mod front;
pub mod observe;
pub mod pipeline;
pub mod session;
pub mod upstream;
pub mod wire;
