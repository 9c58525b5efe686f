//! Legacy sessions on this replica: validation of sealed ids (which are bound to the caller
//! that created them), revocation after `DELETE`, and
//! the node-local extras a session accumulates (log level, in-flight requests that a
//! `notifications/cancelled` may name, relayed server-to-client requests awaiting answers,
//! resource subscriptions, which end with the extras).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::link::ClientLink;
use super::subscriptions::Subscription;
use super::token::{ClientFlags, SessionClaims, SessionSealer};
use crate::pipeline::parts::{ClientAnswer, LogLevel, Principal};

/// Most revoked ids remembered at once; beyond it the oldest are forgotten (they also expire).
const MAX_REVOKED: usize = 100_000;
/// Extras of a session idle this long are dropped (the session id itself stays valid).
const IDLE_EXTRAS: Duration = Duration::from_secs(30 * 60);

/// Why a session id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// No `Mcp-Session-Id` header (HTTP 400).
    Missing,
    /// Unknown, altered, expired, deleted, or another caller's (HTTP 404).
    Unknown,
}

/// Node-local state of one session.
#[derive(Debug)]
pub struct SessionState {
    log_level: Mutex<Option<LogLevel>>,
    in_flight: Mutex<HashMap<Bytes, CancellationToken>>,
    relays: Mutex<HashMap<String, oneshot::Sender<ClientAnswer>>>,
    subscriptions: Mutex<HashMap<String, Subscription>>,
    /// Cancelled when the session is deleted: its streams end.
    pub ended: CancellationToken,
    /// The session as upstream connections see it (its `ended` is [`SessionState::ended`]):
    /// per-client upstream sessions belong to it.
    pub link: Arc<ClientLink>,
    last_seen: AtomicU64,
}

impl Default for SessionState {
    fn default() -> Self {
        let link = Arc::new(ClientLink::default());
        SessionState {
            log_level: Mutex::default(),
            in_flight: Mutex::default(),
            relays: Mutex::default(),
            subscriptions: Mutex::default(),
            ended: link.ended.clone(),
            link,
            last_seen: AtomicU64::default(),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl SessionState {
    /// The level set with `logging/setLevel`, if any.
    pub fn log_level(&self) -> Option<LogLevel> {
        *self.log_level.lock().expect("session lock")
    }

    /// Remember the level set with `logging/setLevel`.
    pub fn set_log_level(&self, level: LogLevel) {
        *self.log_level.lock().expect("session lock") = Some(level);
    }

    /// Register an in-flight request under the client's raw id; cancel it with
    /// [`SessionState::cancel`]. The returned guard unregisters it.
    pub fn track(self: &Arc<Self>, id: Bytes) -> InFlight {
        let token = CancellationToken::new();
        self.in_flight.lock().expect("session lock").insert(id.clone(), token.clone());
        InFlight { state: Arc::clone(self), id, token }
    }

    /// Cancel the in-flight request with this raw id (from `notifications/cancelled`).
    pub fn cancel(&self, id: &[u8]) -> bool {
        match self.in_flight.lock().expect("session lock").get(id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Wait for the client's answer to relayed request `id`.
    pub fn expect_answer(&self, id: String) -> oneshot::Receiver<ClientAnswer> {
        let (tx, rx) = oneshot::channel();
        self.relays.lock().expect("session lock").insert(id, tx);
        rx
    }

    /// Deliver the client's answer to relayed request `id`; false if nothing waits for it.
    pub fn answer(&self, id: &str, answer: ClientAnswer) -> bool {
        match self.relays.lock().expect("session lock").remove(id) {
            Some(tx) => tx.send(answer).is_ok(),
            None => false,
        }
    }

    /// Record an accepted `resources/subscribe` for `uri` (as the client names it); a repeat
    /// keeps the first subscription (and drops `sub`).
    pub fn subscribe(&self, uri: &str, sub: Subscription) {
        self.subscriptions.lock().expect("session lock").entry(uri.to_string()).or_insert(sub);
    }

    /// End the subscription to `uri`, if any (dropping it may unsubscribe upstream).
    pub fn unsubscribe(&self, uri: &str) {
        let sub = self.subscriptions.lock().expect("session lock").remove(uri);
        drop(sub);
    }

    /// Whether the session subscribed to `uri`.
    pub fn is_subscribed(&self, uri: &str) -> bool {
        self.subscriptions.lock().expect("session lock").contains_key(uri)
    }

    /// End the session here: its streams end, its subscriptions are released, and its
    /// per-client upstream sessions stop.
    pub fn end(&self) {
        self.ended.cancel();
        self.link.detach();
        let subscriptions = std::mem::take(&mut *self.subscriptions.lock().expect("session lock"));
        drop(subscriptions);
    }

    fn touch(&self) {
        self.last_seen.store(now_secs(), Ordering::Relaxed);
    }
}

/// An in-flight request of a session; dropping it unregisters the request.
pub struct InFlight {
    state: Arc<SessionState>,
    id: Bytes,
    /// Cancelled by a matching `notifications/cancelled`.
    pub token: CancellationToken,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.lock().expect("session lock").remove(&self.id);
    }
}

/// All legacy sessions as seen from this replica.
pub struct Sessions {
    sealer: SessionSealer,
    revoked: Mutex<HashMap<String, u64>>,
    extras: Mutex<HashMap<String, Arc<SessionState>>>,
}

impl Sessions {
    /// Sessions sealed with `key` (random if `None`) that live for `ttl`.
    pub fn new(key: Option<[u8; 32]>, ttl: Duration) -> Self {
        Sessions { sealer: SessionSealer::new(key, ttl), revoked: Mutex::default(), extras: Mutex::default() }
    }

    /// Mint a session id for a newly initialized client, bound to `caller`.
    pub fn create(&self, version: &'static str, flags: ClientFlags, caller: &Principal) -> String {
        self.sealer.seal(version, flags, caller.tag())
    }

    /// Validate a session id presented by `caller` and return its claims and node-local state.
    ///
    /// Errors: [`SessionError::Missing`] without an id; [`SessionError::Unknown`] for an id that
    /// is not ours, altered, expired, deleted, or was created by another caller (exactly as
    /// for an unknown id, so a leaked id tells its holder nothing).
    pub fn resume(
        &self,
        id: Option<&str>,
        caller: &Principal,
    ) -> Result<(SessionClaims, Arc<SessionState>), SessionError> {
        let id = id.ok_or(SessionError::Missing)?;
        let claims = self.sealer.open(id).ok_or(SessionError::Unknown)?;
        if claims.caller != caller.tag() || self.revoked.lock().expect("sessions lock").contains_key(id) {
            return Err(SessionError::Unknown);
        }
        let state = Arc::clone(self.extras.lock().expect("sessions lock").entry(id.to_string()).or_default());
        state.touch();
        Ok((claims, state))
    }

    /// End a session (`DELETE` by `caller`): later uses get 404, its streams end.
    ///
    /// Errors: as [`Sessions::resume`] (only the session's own caller can end it).
    pub fn delete(&self, id: Option<&str>, caller: &Principal) -> Result<(), SessionError> {
        let (claims, state) = self.resume(id, caller)?;
        let id = id.expect("resume checked presence");
        state.end();
        self.extras.lock().expect("sessions lock").remove(id);
        let mut revoked = self.revoked.lock().expect("sessions lock");
        if revoked.len() >= MAX_REVOKED {
            let now = now_secs();
            revoked.retain(|_, exp| *exp > now);
            if revoked.len() >= MAX_REVOKED
                && let Some(oldest) = revoked.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone())
            {
                revoked.remove(&oldest);
            }
        }
        revoked.insert(id.to_string(), claims.expires_at);
        Ok(())
    }

    /// Drop expired revocations and idle extras; run periodically.
    pub fn sweep(&self) {
        let now = now_secs();
        self.revoked.lock().expect("sessions lock").retain(|_, exp| *exp > now);
        let idle = now.saturating_sub(IDLE_EXTRAS.as_secs());
        self.extras
            .lock()
            .expect("sessions lock")
            .retain(|id, s| s.last_seen.load(Ordering::Relaxed) > idle && self.sealer.open(id).is_some());
    }

    /// Number of sessions with node-local state.
    pub fn active(&self) -> usize {
        self.extras.lock().expect("sessions lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Principal = Principal::Anonymous;

    fn key(id: &str) -> Principal {
        let identity = crate::pipeline::parts::Identity {
            id: id.into(),
            tag: crate::pipeline::parts::Identity::tag_of(id),
            ..Default::default()
        };
        Principal::ApiKey(Arc::new(identity))
    }

    #[test]
    fn lifecycle() {
        let s = Sessions::new(None, Duration::from_secs(60));
        let id = s.create("2025-11-25", ClientFlags::default(), &ME);
        assert!(s.resume(Some(&id), &ME).is_ok());
        assert_eq!(s.resume(None, &ME).unwrap_err(), SessionError::Missing);
        assert_eq!(s.resume(Some("bogus"), &ME).unwrap_err(), SessionError::Unknown);
        s.delete(Some(&id), &ME).unwrap();
        assert_eq!(s.resume(Some(&id), &ME).unwrap_err(), SessionError::Unknown);
        assert_eq!(s.delete(Some(&id), &ME).unwrap_err(), SessionError::Unknown);
    }

    #[test]
    fn a_session_belongs_to_its_caller() {
        let s = Sessions::new(None, Duration::from_secs(60));
        let (alice, mallory) = (key("alice"), key("mallory"));
        let id = s.create("2025-11-25", ClientFlags::default(), &alice);
        assert_eq!(s.resume(Some(&id), &mallory).unwrap_err(), SessionError::Unknown);
        assert_eq!(s.resume(Some(&id), &ME).unwrap_err(), SessionError::Unknown);
        assert_eq!(s.delete(Some(&id), &mallory).unwrap_err(), SessionError::Unknown);
        assert!(s.resume(Some(&id), &alice).is_ok(), "another caller's DELETE ended nothing");
    }

    #[test]
    fn cancellation_and_relays() {
        let s = Sessions::new(None, Duration::from_secs(60));
        let id = s.create("2025-11-25", ClientFlags::default(), &ME);
        let (_, st) = s.resume(Some(&id), &ME).unwrap();
        let flight = st.track(Bytes::from_static(b"7"));
        assert!(st.cancel(b"7"));
        assert!(flight.token.is_cancelled());
        drop(flight);
        assert!(!st.cancel(b"7"));
        let mut rx = st.expect_answer("r1".into());
        assert!(st.answer("r1", ClientAnswer::Result(Bytes::from_static(b"{}"))));
        assert!(matches!(rx.try_recv(), Ok(ClientAnswer::Result(_))));
        assert!(!st.answer("r1", ClientAnswer::Result(Bytes::new())));
    }
}
