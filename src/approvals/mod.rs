//! Approval of risky calls (docs/security.md, "Approval of risky calls"): the policy
//! (`config.rs`: `allow`, `deny` or `approve` per upstream, tool and tenant, and for tools
//! annotated `destructiveHint`), and the calls held on this replica for an operator's decision
//! ([`Approvals`]). The `approval` step (`pipeline::approval`) asks the policy, asks the
//! calling client through elicitation when it can, and otherwise holds the call here; the
//! admin API (`front::approvals`), `sekisho approvals` and the dashboard list and decide.
//!
//! A held call is named by 128 random bits, kept only on the replica that holds it (a fleet's
//! operator asks each replica), bounded (`max_pending`, `max_pending_per_caller`), and ends at
//! its deadline. A decision releases exactly the call it names — its caller, tool and argument
//! digest are fixed when it is held — and can be made once.
//!
//! ```toml
//! [approvals]
//! destructive = "approve"   # tools annotated destructiveHint: true
//! timeout = "2m"
//! rules = [{ upstream = "fs", tool = "delete_file", action = "approve" }]
//! ```

pub mod config;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use tokio::sync::oneshot;

pub use self::config::{Action, ApprovalsConfig, Rule};
use crate::audit::Audit;
use crate::pipeline::parts::Principal;

/// A held call's id: 128 random bits, shown as 32 lowercase hex digits.
pub type HeldId = [u8; 16];

/// A held call as operators see it (`GET /admin/approvals`, `sekisho approvals list`).
#[derive(Clone, Debug, Serialize)]
pub struct Pending {
    /// 32 hex digits; what `approve`/`deny` name.
    pub id: String,
    /// The caller's stable id (`Principal::label`).
    pub caller: String,
    /// The caller's tenant (store keys).
    pub tenant: Option<String>,
    /// The upstream's namespace.
    pub upstream: String,
    /// The tool as the caller named it (namespaced in the merged catalog).
    pub tool: String,
    /// SHA-256 (hex) of the canonical arguments: what the decision is bound to.
    pub arguments_digest: String,
    /// The arguments with sensitive data redacted (`crate::detect`, secret-looking names),
    /// within `approvals.max_shown_bytes`.
    pub arguments: serde_json::Value,
    /// Why approval is needed: `destructive` (the tool's annotation) or `rule`.
    pub reason: &'static str,
    /// When it was held (RFC 3339, UTC).
    pub held_at: String,
    /// Milliseconds until it is refused (filled in when listed).
    pub expires_in_ms: u64,
}

/// An operator's decision on a held call.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Run it; by whom.
    Approved(Principal),
    /// Refuse it (-32023); by whom, with the operator's note.
    Denied(Principal, Option<String>),
}

struct Held {
    shown: Pending,
    caller: [u8; 16],
    deadline: Instant,
    decide: oneshot::Sender<Decision>,
}

/// Why a call could not be held.
#[derive(Debug, thiserror::Error)]
pub enum Full {
    /// `approvals.max_pending` calls are held on this replica.
    #[error("{0} calls already await approval on this gateway (approvals.max_pending)")]
    Gateway(usize),
    /// The caller has `approvals.max_pending_per_caller` calls held.
    #[error("this caller already has {0} calls awaiting approval (approvals.max_pending_per_caller)")]
    Caller(usize),
}

/// The policy and the calls held on this replica.
pub struct Approvals {
    /// `[approvals]`.
    pub config: ApprovalsConfig,
    held: Mutex<HashMap<HeldId, Held>>,
    audit: Option<Arc<Audit>>,
}

/// A held call's side of the hold: its decision arrives on `decision`; dropping the ticket
/// (the call ended, was cancelled, or timed out) forgets the held call.
pub struct Ticket {
    /// The held call's id.
    pub id: HeldId,
    /// The operator's decision.
    pub decision: oneshot::Receiver<Decision>,
    approvals: Arc<Approvals>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.approvals.held.lock().expect("approvals lock").remove(&self.id);
    }
}

/// `id` as 32 hex digits.
pub fn id_text(id: &HeldId) -> String {
    hex::encode(id)
}

impl Approvals {
    /// The policy of `config`; decisions are recorded in `audit` when it is on.
    pub fn new(config: &ApprovalsConfig, audit: Option<Arc<Audit>>) -> Arc<Approvals> {
        Arc::new(Approvals { config: config.clone(), held: Mutex::default(), audit })
    }

    /// The audit log, when it is on.
    pub fn audit(&self) -> Option<&Arc<Audit>> {
        self.audit.as_ref()
    }

    /// Hold a call of `caller` described by `shown` (its `id`, `held_at` and `expires_in_ms`
    /// are filled in here) until `approvals.timeout` from now.
    ///
    /// Errors: [`Full`] when this replica or this caller holds as many calls as allowed.
    pub fn hold(self: &Arc<Self>, caller: &Principal, mut shown: Pending) -> Result<Ticket, Full> {
        let tag = caller.tag();
        let mut held = self.held.lock().expect("approvals lock");
        if held.len() >= self.config.max_pending {
            return Err(Full::Gateway(self.config.max_pending));
        }
        if held.values().filter(|h| h.caller == tag).count() >= self.config.max_pending_per_caller {
            return Err(Full::Caller(self.config.max_pending_per_caller));
        }
        let id: HeldId = rand::random();
        shown.id = id_text(&id);
        shown.held_at = crate::audit::event::timestamp(SystemTime::now());
        let (decide, decision) = oneshot::channel();
        let deadline = Instant::now() + self.config.timeout;
        held.insert(id, Held { shown, caller: tag, deadline, decide });
        Ok(Ticket { id, decision, approvals: Arc::clone(self) })
    }

    /// The held calls, oldest first.
    pub fn list(&self) -> Vec<Pending> {
        let now = Instant::now();
        let held = self.held.lock().expect("approvals lock");
        let mut out: Vec<(Instant, Pending)> = held
            .values()
            .map(|h| {
                let mut p = h.shown.clone();
                p.expires_in_ms = h.deadline.saturating_duration_since(now).as_millis() as u64;
                (h.deadline, p)
            })
            .collect();
        out.sort_by_key(|(deadline, _)| *deadline);
        out.into_iter().map(|(_, p)| p).collect()
    }

    /// Held calls now.
    pub fn len(&self) -> usize {
        self.held.lock().expect("approvals lock").len()
    }

    /// Whether no call is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decide the held call `id` (32 hex digits) as `by` (an admin: the admin API checks);
    /// the decision is audited, and the call is forgotten here (a decision is made once).
    /// Returns the call as it was shown.
    ///
    /// Errors: `None` when `id` names no call held here (unknown, malformed, already decided,
    /// expired, or held by another replica).
    pub fn decide(&self, id: &str, decision: Decision) -> Option<Pending> {
        let mut key: HeldId = [0; 16];
        hex::decode_to_slice(id, &mut key).ok()?;
        let held = self.held.lock().expect("approvals lock").remove(&key)?;
        let (by, outcome, note) = match &decision {
            Decision::Approved(by) => (by, "approved", None),
            Decision::Denied(by, note) => (by, "denied", note.clone()),
        };
        if let Some(audit) = &self.audit {
            audit.approval(by, &held.shown.tool, outcome, detail(&held.shown, "operator", note.as_deref()));
        }
        tracing::warn!(id = %held.shown.id, by = by.label(), caller = %held.shown.caller, tool = %held.shown.tool, "approval {outcome}");
        // The call may have ended meanwhile (its client left): nothing to release then.
        let _ = held.decide.send(decision);
        Some(held.shown)
    }
}

/// The `detail` of an approval's audit record: the held call's id (when it was held), its
/// caller, upstream and argument digest, how it was decided (`via`) and any note.
pub fn detail(shown: &Pending, via: &str, note: Option<&str>) -> serde_json::Value {
    let mut d = serde_json::json!({
        "caller": shown.caller,
        "upstream": shown.upstream,
        "argumentsDigest": shown.arguments_digest,
        "reason": shown.reason,
        "via": via,
    });
    if !shown.id.is_empty() {
        d["id"] = shown.id.clone().into();
    }
    if let Some(note) = note {
        d["note"] = note.into();
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::parts::Identity;

    fn key(id: &str) -> Principal {
        Principal::ApiKey(Arc::new(Identity { id: id.into(), tag: Identity::tag_of(id), ..Default::default() }))
    }

    fn shown(caller: &str) -> Pending {
        Pending {
            id: String::new(),
            caller: caller.into(),
            tenant: None,
            upstream: "fs".into(),
            tool: "fs__rm".into(),
            arguments_digest: "00".into(),
            arguments: serde_json::json!({}),
            reason: "rule",
            held_at: String::new(),
            expires_in_ms: 0,
        }
    }

    #[tokio::test]
    async fn held_calls_are_bounded_decided_once_and_forgotten_with_their_ticket() {
        let config = ApprovalsConfig { max_pending: 3, max_pending_per_caller: 2, ..Default::default() };
        let approvals = Approvals::new(&config, None);
        let (alice, bob) = (key("alice"), key("bob"));
        let mut a1 = approvals.hold(&alice, shown("alice")).unwrap();
        let a2 = approvals.hold(&alice, shown("alice")).unwrap();
        assert!(matches!(approvals.hold(&alice, shown("alice")), Err(Full::Caller(2))));
        let b1 = approvals.hold(&bob, shown("bob")).unwrap();
        assert!(matches!(approvals.hold(&bob, shown("bob")), Err(Full::Gateway(3))));
        assert_eq!(approvals.list().len(), 3);
        assert_ne!(a1.id, a2.id);

        let id = id_text(&a1.id);
        assert!(approvals.decide(&id, Decision::Approved(bob.clone())).is_some());
        assert!(approvals.decide(&id, Decision::Approved(bob.clone())).is_none(), "decided once");
        assert!(matches!((&mut a1.decision).await, Ok(Decision::Approved(_))));
        assert!(approvals.decide("zz", Decision::Approved(bob.clone())).is_none(), "malformed");
        assert!(approvals.decide(&"0".repeat(32), Decision::Approved(bob)).is_none(), "unknown");

        drop(a2);
        assert_eq!(approvals.len(), 1, "a dropped ticket forgets its call");
        drop(b1);
        assert!(approvals.is_empty());
    }
}
