//! What travels down the per-upstream stack: one call's request and how it may be treated
//! ([`Dispatch`], shared by its attempts), and one attempt on a chosen replica ([`Picked`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::connection::Connection;
use super::replica::Replica;
use super::request::Outbound;
use crate::pipeline::admit::Admissible;
use crate::pipeline::parts::{Principal, Priority};
use crate::session::link::ClientLink;

/// How one call may be treated on its way to the upstream.
#[derive(Clone, Debug)]
pub struct CallPolicy {
    /// Admission priority in the bulkhead.
    pub priority: Priority,
    /// The caller, for fair sharing of the bulkhead.
    pub caller: Principal,
    /// Whether repeating the call is safe after it may have run (a read, a read-only or
    /// idempotent tool, or `retry = true` for the tool).
    pub retry_safe: bool,
    /// The call carries an idempotency key: when it is not `retry_safe`, it is sent again only
    /// after an attempt that provably never reached the upstream (`classify::never_sent`).
    pub keyed: bool,
    /// A per-tool deadline for each attempt, overriding the upstream's `timeout`.
    pub timeout: Option<Duration>,
    /// The client session the call belongs to: on a `session = "per-client"` upstream the
    /// call goes to that session's own upstream session. `None`: a shared connection.
    pub session: Option<Arc<ClientLink>>,
    /// Whether the retry step may try again (the `retry` runtime switch at the call's start;
    /// off: one attempt).
    pub retry: bool,
    /// Whether the breaker step applies (the `breaker` runtime switch at the call's start;
    /// off: every attempt is admitted and none is recorded).
    pub breaker: bool,
}

impl CallPolicy {
    /// The gateway's own requests (listing, probing): medium priority, safe to repeat.
    pub fn gateway() -> Self {
        CallPolicy {
            priority: Priority::Medium,
            caller: Principal::Anonymous,
            retry_safe: true,
            keyed: false,
            timeout: None,
            session: None,
            retry: true,
            breaker: true,
        }
    }
}

/// One call on its way through an upstream's stack; every attempt shares it.
#[derive(Debug)]
pub struct Dispatch {
    /// The request.
    pub request: Arc<Outbound>,
    /// How it may be treated.
    pub policy: CallPolicy,
    /// The replica of the last attempt (`usize::MAX` before the first), so a retry goes elsewhere.
    last_replica: AtomicUsize,
}

impl Dispatch {
    /// A call of `request` under `policy`.
    pub fn new(request: Arc<Outbound>, policy: CallPolicy) -> Arc<Self> {
        Arc::new(Dispatch { request, policy, last_replica: AtomicUsize::new(usize::MAX) })
    }

    /// The replica the last attempt went to, if any.
    pub fn last_replica(&self) -> Option<usize> {
        Some(self.last_replica.load(Ordering::Relaxed)).filter(|i| *i != usize::MAX)
    }

    /// Record the replica of the attempt under way (also on the request: the replica that
    /// answers is the last one tried).
    pub fn set_last_replica(&self, index: usize) {
        self.last_replica.store(index, Ordering::Relaxed);
        self.request.answered_by.store(index, Ordering::Relaxed);
    }
}

impl Admissible for Arc<Dispatch> {
    fn priority(&self) -> Priority {
        self.policy.priority
    }

    fn caller(&self) -> &Principal {
        &self.policy.caller
    }
}

/// One attempt of a call on the replica the balancer chose.
pub struct Picked {
    /// The call.
    pub dispatch: Arc<Dispatch>,
    /// The chosen replica.
    pub replica: Arc<Replica>,
    /// Its live connection.
    pub conn: Arc<Connection>,
}
