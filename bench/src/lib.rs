//! sekisho's benchmark harness: shared pieces of the echo upstream and the load generator.

pub mod mcp;
pub mod tasks;
