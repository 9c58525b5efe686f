//! Wire formats shared by the client-facing front and the upstream clients: MCP constants,
//! JSON-RPC envelopes, shallow JSON object views, and SSE framing.

pub mod jsonrpc;
pub mod mcp;
pub mod object;
pub mod sse;
