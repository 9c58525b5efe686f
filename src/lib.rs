//! sekisho: an MCP gateway.
pub mod wire;
