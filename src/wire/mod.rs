//! Wire formats shared by the client-facing front and the upstream clients: MCP constants,
//! JSON-RPC envelopes and batches, shallow JSON object views, SSE framing, stdio line framing, and
//! the value encoding of mirrored HTTP headers.

pub mod batch;
pub mod header_value;
pub mod idscan;
pub mod jsonrpc;
pub mod lines;
pub mod mcp;
pub mod object;
pub mod sse;
