//! Middleware that chooses the replica of each attempt: of two random live replicas, the one
//! with fewer calls in flight (power of two choices), preferring one other than the last
//! attempt's so a retry goes elsewhere; when the chosen replica's breaker refuses, the other
//! live replicas follow in order. The stdio pool grows here, when the chosen process is busy.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::Either;
use tower::{Service, ServiceExt};

use super::connection::Connection;
use super::dispatch::{Dispatch, Picked};
use super::mux::Owner;
use super::pool::Pool;
use super::replica::Replica;
use super::request::Body;
use crate::error::GatewayError;
use crate::pipeline::parts::{Reply, ReplyFuture};
use crate::pipeline::steps::{Named, Stepped};

/// Picks a replica for each attempt.
#[derive(Clone)]
pub struct Balance {
    pool: Arc<Pool>,
}

impl Balance {
    /// Balance over `pool`'s replicas.
    pub fn new(pool: &Arc<Pool>) -> Self {
        Balance { pool: Arc::clone(pool) }
    }
}

impl Named for Balance {
    fn name(&self) -> &'static str {
        "balance"
    }
}

impl<S> Service<Arc<Dispatch>> for Stepped<Balance, S>
where
    S: Service<Picked, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = Either<S::Future, ReplyFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dispatch: Arc<Dispatch>) -> Self::Future {
        let pool = &self.step.pool;
        if let Some(owner) = owner(pool, &dispatch) {
            // A per-client upstream: the call goes to its client session's own upstream
            // session (started on first use), through the breaker and timeout below.
            let (pool, mut inner) = (Arc::clone(pool), self.inner.clone());
            return Either::Right(Box::pin(async move {
                let (replica, conn) = pool.client_connection(owner).await?;
                dispatch.set_last_replica(replica.index);
                inner.ready().await?.call(Picked { dispatch, replica, conn }).await
            }));
        }
        let mut candidates = match dispatch.request.replica {
            // Pinned (a task's replica): that one or none; a retry goes there again.
            Some(pin) => pool.live().into_iter().filter(|(r, _)| r.index == pin).collect(),
            None => order(pool.live(), dispatch.last_replica()),
        };
        let Some((first, _)) = candidates.first() else {
            let unavailable = pool.unavailable();
            return Either::Right(Box::pin(async move { Err(unavailable) }));
        };
        pool.maybe_grow(first);
        if candidates.len() == 1 {
            // One live replica (the common case): no fallbacks to try, nothing to box.
            let (replica, conn) = candidates.pop().expect("one candidate");
            dispatch.set_last_replica(replica.index);
            return Either::Left(self.inner.call(Picked { dispatch, replica, conn }));
        }
        let (pool, mut inner) = (Arc::clone(pool), self.inner.clone());
        Either::Right(Box::pin(async move {
            let mut soonest: Option<Duration> = None;
            for (replica, conn) in candidates {
                dispatch.set_last_replica(replica.index);
                let picked = Picked { dispatch: Arc::clone(&dispatch), replica, conn };
                match inner.ready().await?.call(picked).await {
                    // Refused before anything was sent: another replica may take it.
                    Err(GatewayError::CircuitOpen { retry_after, .. }) => {
                        soonest = Some(soonest.map_or(retry_after, |s| s.min(retry_after)));
                    }
                    other => return other,
                }
            }
            Err(pool.circuit_open(soonest.unwrap_or_default()))
        }))
    }
}

/// The client session whose own upstream session serves `dispatch`: only on a per-client
/// upstream, for a call of a client session (the gateway's own requests and calls without a
/// session use the shared replicas).
fn owner(pool: &Pool, dispatch: &Dispatch) -> Option<Owner> {
    pool.clients()?;
    let link = dispatch.policy.session.as_ref()?;
    let capabilities = match &dispatch.request.body {
        Body::Client { client, .. } => client.capabilities.clone(),
        Body::Raw(_) => return None,
    };
    Some(Owner { link: Arc::clone(link), capabilities })
}

/// The replicas to try, best first: the less busy of two random ones (avoiding `avoid` when
/// another is live), then the rest in list order.
fn order(mut live: Vec<(Arc<Replica>, Arc<Connection>)>, avoid: Option<usize>) -> Vec<(Arc<Replica>, Arc<Connection>)> {
    if live.len() > 1 && avoid.is_some() {
        live.retain(|(r, _)| Some(r.index) != avoid);
    }
    if live.len() > 1 {
        let a = rand::random_range(0..live.len());
        let mut b = rand::random_range(0..live.len() - 1);
        if b >= a {
            b += 1;
        }
        let better = if live[b].0.outstanding() < live[a].0.outstanding() { b } else { a };
        live.swap(0, better);
    }
    live
}
