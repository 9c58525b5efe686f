//! The response cache (L1 in process with moka, optional L2 in Redis), request coalescing, and
//! idempotency keys: design.md §5 items 6–8.
//!
//! - **What is cached**: `tools/call` results of tools that a `trusted` upstream annotates
//!   `readOnlyHint` (and not `destructiveHint`), or that configuration marks `cache = true`;
//!   never results with `isError`, never errors, never results over `max_entry_bytes`.
//! - **Keys**: SHA-256 over the scope (`public`, or the calling principal for `private`
//!   results), the upstream, the tool, the upstream's and the tool's generation (bumped to
//!   invalidate), and the canonical JSON of the arguments (object keys sorted, no whitespace).
//!   The same key names the entry in L1 and L2.
//! - **Invalidation** drops matching L1 entries and increments the generation in Redis, which
//!   every replica re-reads at most a second later: no `KEYS` scans.
//! - **L1** is a `moka::sync::Cache`: its operations take microseconds and never wait, so the
//!   async call path uses it directly.
//! - **Coalescing**: one upstream call per key at a time in a process (followers wait for the
//!   leader's result); across replicas the leader takes a Redis lease (`SET NX PX`) and the
//!   others poll L2 for its result until the lease runs out.
//! - **Idempotency keys** are bound to the caller and the request's hash: a repeat replays the
//!   stored answer, waits for a running first call, or fails on a different request. Records
//!   live in Redis (`SET NX PX`) when it answers, else in process.
//!
//! Files: [`entry`] (what is stored, and its L2 form), [`key`] (canonical arguments and key
//! derivation), [`store`] (L1 + L2 + invalidation), [`coalesce`] (one upstream call per key),
//! [`idempotency`] (idempotency records), [`l2`] (Redis), [`expiries`] (when stored entries
//! expire, to tell expired misses apart), [`config`].

pub mod coalesce;
pub mod config;
pub mod entry;
pub mod expiries;
pub mod idempotency;
pub mod key;
pub mod l2;
pub mod store;
