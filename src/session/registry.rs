//! Legacy sessions on this replica: validation of sealed ids (which are bound to the caller
//! that created them), revocation after `DELETE`, and
//! the node-local extras a session accumulates (log level, in-flight requests that a
//! `notifications/cancelled` may name, relayed server-to-client requests awaiting answers,
//! resource subscriptions, which end with the extras, open GET streams).
//!
//! Every map here is bounded per caller (`[server] max_sessions_per_caller`,
//! `max_ended_sessions_per_caller`), and callers are the configured API keys: one caller
//! filling its share never takes another's. A revoked id is kept exactly until its own expiry
//! (after which the sealed id is refused anyway) and never forgotten earlier, since forgetting
//! it would make the ended session usable again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::link::ClientLink;
use super::subscriptions::Subscription;
use super::token::{ClientFlags, SessionClaims, SessionSealer};
use crate::pipeline::parts::{ClientAnswer, LogLevel, Principal};

/// Extras of a session idle this long are dropped (the session id itself stays valid).
const IDLE_EXTRAS: Duration = Duration::from_secs(30 * 60);

/// Why a session id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    /// No `Mcp-Session-Id` header (HTTP 400).
    Missing,
    /// Unknown, altered, expired, deleted, or another caller's (HTTP 404).
    Unknown,
    /// The caller holds `max_sessions_per_caller` live sessions here (HTTP 429).
    TooManySessions(usize),
    /// The caller has ended `max_ended_sessions_per_caller` sessions that have not expired yet;
    /// it cannot end another until one does (HTTP 429).
    TooManyEnded(usize),
}

impl SessionError {
    /// The gateway error a client is answered with.
    pub fn to_gateway(self) -> crate::error::GatewayError {
        use crate::error::GatewayError;
        match self {
            SessionError::Missing => GatewayError::SessionRequired,
            SessionError::Unknown => GatewayError::SessionNotFound,
            SessionError::TooManySessions(limit) => GatewayError::LimitReached {
                what: "this caller holds too many sessions; end one (DELETE) or let one idle out",
                key: "max_sessions_per_caller",
                limit,
            },
            SessionError::TooManyEnded(limit) => GatewayError::LimitReached {
                what: "this caller ended too many sessions that have not expired yet; this one stays valid",
                key: "max_ended_sessions_per_caller",
                limit,
            },
        }
    }
}

/// The per-caller bounds of [`Sessions`] (from `[server]`).
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// Live sessions with node-local state per caller.
    pub per_caller: usize,
    /// Ended, unexpired sessions remembered per caller.
    pub ended_per_caller: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits { per_caller: 1000, ended_per_caller: 10_000 }
    }
}

/// Node-local state of one session.
#[derive(Debug)]
pub struct SessionState {
    in_flight: Mutex<HashMap<Bytes, CancellationToken>>,
    relays: Mutex<HashMap<String, oneshot::Sender<ClientAnswer>>>,
    subscriptions: Mutex<HashMap<String, Subscription>>,
    /// Cancelled when the session is deleted: its streams end.
    pub ended: CancellationToken,
    /// The session as upstream connections see it (its `ended` is [`SessionState::ended`]):
    /// per-client upstream sessions belong to it.
    pub link: Arc<ClientLink>,
    last_seen: AtomicU64,
    caller: [u8; 16],
    streams: AtomicUsize,
}

impl Default for SessionState {
    fn default() -> Self {
        let link = Arc::new(ClientLink::default());
        SessionState {
            in_flight: Mutex::default(),
            relays: Mutex::default(),
            subscriptions: Mutex::default(),
            ended: link.ended.clone(),
            link,
            last_seen: AtomicU64::default(),
            caller: [0; 16],
            streams: AtomicUsize::default(),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl SessionState {
    /// The level set with `logging/setLevel`, if any.
    pub fn log_level(&self) -> Option<LogLevel> {
        self.link.log_level()
    }

    /// Remember the level set with `logging/setLevel`.
    pub fn set_log_level(&self, level: LogLevel) {
        self.link.set_log_level(level);
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

    /// Whether the session may hold a subscription to `uri`: it holds one already, or fewer
    /// than `max` in all. (Concurrent subscribes of one session may pass together; the
    /// overshoot is bounded by its requests in flight.)
    pub fn may_subscribe(&self, uri: &str, max: usize) -> bool {
        let subs = self.subscriptions.lock().expect("session lock");
        subs.len() < max || subs.contains_key(uri)
    }

    /// Open one more GET stream of this session unless it has `max` open; the slot closes when
    /// dropped.
    pub fn open_stream(self: &Arc<Self>, max: usize) -> Option<StreamSlot> {
        self.streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| StreamSlot(Arc::clone(self)))
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

/// An open GET stream of a session; dropping it frees its place.
#[derive(Debug)]
pub struct StreamSlot(Arc<SessionState>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
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
    limits: SessionLimits,
    books: Mutex<Books>,
}

/// What this replica keeps about sessions, under one lock.
#[derive(Default)]
struct Books {
    /// Node-local state of live sessions, by id.
    extras: HashMap<String, Arc<SessionState>>,
    /// Live sessions per caller tag (the entries of `extras`).
    live: HashMap<[u8; 16], usize>,
    /// Ended sessions: id → (caller tag, the id's own expiry in Unix seconds).
    revoked: HashMap<String, ([u8; 16], u64)>,
    /// Ended, unexpired sessions per caller tag (the entries of `revoked`).
    ended: HashMap<[u8; 16], usize>,
}

fn count_down(counts: &mut HashMap<[u8; 16], usize>, tag: &[u8; 16]) {
    if let Some(n) = counts.get_mut(tag) {
        *n -= 1;
        if *n == 0 {
            counts.remove(tag);
        }
    }
}

impl Books {
    fn drop_extras(&mut self, id: &str) -> Option<Arc<SessionState>> {
        let state = self.extras.remove(id)?;
        count_down(&mut self.live, &state.caller);
        Some(state)
    }

    /// Forget revocations whose ids have expired (they are refused as expired anyway).
    fn expire_revoked(&mut self, now: u64) {
        let ended = &mut self.ended;
        self.revoked.retain(|_, (tag, exp)| {
            let keep = *exp > now;
            if !keep {
                count_down(ended, tag);
            }
            keep
        });
    }
}

impl Sessions {
    /// Sessions sealed with `key` (random if `None`) that live for `ttl`, bounded by `limits`.
    pub fn new(key: Option<[u8; 32]>, ttl: Duration, limits: SessionLimits) -> Self {
        Sessions { sealer: SessionSealer::new(key, ttl), limits, books: Mutex::default() }
    }

    /// The sealer of session ids, which also seals the gateway's other client-held ids.
    pub fn sealer(&self) -> &SessionSealer {
        &self.sealer
    }

    /// Mint a session id for a newly initialized client, bound to `caller`, and give it its
    /// node-local state (counted against the caller's live sessions).
    ///
    /// Errors: [`SessionError::TooManySessions`] when the caller holds its limit of live
    /// sessions here.
    pub fn create(
        &self,
        version: &'static str,
        flags: ClientFlags,
        caller: &Principal,
    ) -> Result<String, SessionError> {
        let tag = caller.tag();
        let mut books = self.books.lock().expect("sessions lock");
        if books.live.get(&tag).copied().unwrap_or(0) >= self.limits.per_caller {
            return Err(SessionError::TooManySessions(self.limits.per_caller));
        }
        let id = self.sealer.seal(version, flags, tag);
        let state = Arc::new(SessionState { caller: tag, ..SessionState::default() });
        state.touch();
        books.extras.insert(id.clone(), state);
        *books.live.entry(tag).or_default() += 1;
        Ok(id)
    }

    /// Validate a session id presented by `caller`, without touching node-local state.
    fn validate(&self, id: Option<&str>, caller: &Principal) -> Result<(String, SessionClaims), SessionError> {
        let id = id.ok_or(SessionError::Missing)?;
        let claims = self.sealer.open(id).ok_or(SessionError::Unknown)?;
        if claims.caller != caller.tag() {
            return Err(SessionError::Unknown);
        }
        Ok((id.to_string(), claims))
    }

    /// Validate a session id presented by `caller` and return its claims and node-local state
    /// (made here when the session is new to this replica, or its state idled out).
    ///
    /// Errors: [`SessionError::Missing`] without an id; [`SessionError::Unknown`] for an id that
    /// is not ours, altered, expired, deleted, or was created by another caller (exactly as
    /// for an unknown id, so a leaked id tells its holder nothing);
    /// [`SessionError::TooManySessions`] when its state would be new here and the caller
    /// already holds its limit of live sessions.
    pub fn resume(
        &self,
        id: Option<&str>,
        caller: &Principal,
    ) -> Result<(SessionClaims, Arc<SessionState>), SessionError> {
        let (id, claims) = self.validate(id, caller)?;
        let mut books = self.books.lock().expect("sessions lock");
        if books.revoked.contains_key(&id) {
            return Err(SessionError::Unknown);
        }
        let state = match books.extras.get(&id) {
            Some(state) => Arc::clone(state),
            None => {
                if books.live.get(&claims.caller).copied().unwrap_or(0) >= self.limits.per_caller {
                    return Err(SessionError::TooManySessions(self.limits.per_caller));
                }
                let state = Arc::new(SessionState { caller: claims.caller, ..SessionState::default() });
                books.extras.insert(id, Arc::clone(&state));
                *books.live.entry(claims.caller).or_default() += 1;
                state
            }
        };
        drop(books);
        state.touch();
        Ok((claims, state))
    }

    /// End a session (`DELETE` by `caller`): later uses get 404, its streams end. Its id is
    /// remembered until its own expiry.
    ///
    /// Errors: [`SessionError::Missing`] / [`SessionError::Unknown`] as for
    /// [`Sessions::resume`] (only the session's own caller can end it);
    /// [`SessionError::TooManyEnded`] when the caller has ended its limit of sessions that have
    /// not expired yet: this one then stays valid (forgetting an older one would revive it).
    pub fn delete(&self, id: Option<&str>, caller: &Principal) -> Result<(), SessionError> {
        let (id, claims) = self.validate(id, caller)?;
        let mut books = self.books.lock().expect("sessions lock");
        if books.revoked.contains_key(&id) {
            return Err(SessionError::Unknown);
        }
        if books.ended.get(&claims.caller).copied().unwrap_or(0) >= self.limits.ended_per_caller {
            books.expire_revoked(now_secs());
            if books.ended.get(&claims.caller).copied().unwrap_or(0) >= self.limits.ended_per_caller {
                return Err(SessionError::TooManyEnded(self.limits.ended_per_caller));
            }
        }
        let state = books.drop_extras(&id);
        books.revoked.insert(id, (claims.caller, claims.expires_at));
        *books.ended.entry(claims.caller).or_default() += 1;
        drop(books);
        if let Some(state) = state {
            state.end();
        }
        Ok(())
    }

    /// Drop expired revocations and idle or expired extras (a session with an open stream is
    /// not idle); run periodically.
    pub fn sweep(&self) {
        let now = now_secs();
        let idle = now.saturating_sub(IDLE_EXTRAS.as_secs());
        let mut books = self.books.lock().expect("sessions lock");
        books.expire_revoked(now);
        let gone: Vec<String> = books
            .extras
            .iter()
            .filter(|(id, s)| {
                // A session with a stream open (a legacy GET stream, an HTTP+SSE session) is in
                // use however long its client stays silent.
                let idle = s.last_seen.load(Ordering::Relaxed) <= idle && s.streams.load(Ordering::Acquire) == 0;
                idle || self.sealer.open(id).is_none()
            })
            .map(|(id, _)| id.clone())
            .collect();
        let dropped: Vec<_> = gone.iter().filter_map(|id| books.drop_extras(id)).collect();
        drop(books);
        // Dropping subscriptions may unsubscribe upstream: outside the lock.
        drop(dropped);
    }

    /// Number of sessions with node-local state.
    pub fn active(&self) -> usize {
        self.books.lock().expect("sessions lock").extras.len()
    }

    /// Number of ended sessions remembered until their expiry.
    pub fn ended(&self) -> usize {
        self.books.lock().expect("sessions lock").revoked.len()
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
        let s = Sessions::new(None, Duration::from_secs(60), SessionLimits::default());
        let id = s.create("2025-11-25", ClientFlags::default(), &ME).unwrap();
        assert!(s.resume(Some(&id), &ME).is_ok());
        assert_eq!(s.resume(None, &ME).unwrap_err(), SessionError::Missing);
        assert_eq!(s.resume(Some("bogus"), &ME).unwrap_err(), SessionError::Unknown);
        s.delete(Some(&id), &ME).unwrap();
        assert_eq!(s.resume(Some(&id), &ME).unwrap_err(), SessionError::Unknown);
        assert_eq!(s.delete(Some(&id), &ME).unwrap_err(), SessionError::Unknown);
    }

    #[test]
    fn a_session_belongs_to_its_caller() {
        let s = Sessions::new(None, Duration::from_secs(60), SessionLimits::default());
        let (alice, mallory) = (key("alice"), key("mallory"));
        let id = s.create("2025-11-25", ClientFlags::default(), &alice).unwrap();
        assert_eq!(s.resume(Some(&id), &mallory).unwrap_err(), SessionError::Unknown);
        assert_eq!(s.resume(Some(&id), &ME).unwrap_err(), SessionError::Unknown);
        assert_eq!(s.delete(Some(&id), &mallory).unwrap_err(), SessionError::Unknown);
        assert!(s.resume(Some(&id), &alice).is_ok(), "another caller's DELETE ended nothing");
    }

    #[test]
    fn cancellation_and_relays() {
        let s = Sessions::new(None, Duration::from_secs(60), SessionLimits::default());
        let id = s.create("2025-11-25", ClientFlags::default(), &ME).unwrap();
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

    #[test]
    fn sessions_are_bounded_per_caller() {
        let limits = SessionLimits { per_caller: 2, ended_per_caller: 1 };
        let s = Sessions::new(None, Duration::from_secs(60), limits);
        let (alice, bob) = (key("alice"), key("bob"));
        let a1 = s.create("2025-11-25", ClientFlags::default(), &alice).unwrap();
        let a2 = s.create("2025-11-25", ClientFlags::default(), &alice).unwrap();
        assert_eq!(s.create("2025-11-25", ClientFlags::default(), &alice), Err(SessionError::TooManySessions(2)));
        let b1 = s.create("2025-11-25", ClientFlags::default(), &bob).unwrap();
        s.delete(Some(&a1), &alice).unwrap();
        assert!(s.create("2025-11-25", ClientFlags::default(), &alice).is_ok(), "a DELETE frees a place");
        assert_eq!(s.delete(Some(&a2), &alice), Err(SessionError::TooManyEnded(1)));
        assert!(s.resume(Some(&a2), &alice).is_ok(), "refused to end: still valid");
        assert_eq!(s.resume(Some(&a1), &alice).unwrap_err(), SessionError::Unknown, "never revived");
        s.delete(Some(&b1), &bob).unwrap();
        assert_eq!(s.ended(), 2);
    }
}
