//! Middleware that shares upstream resource subscriptions between the sessions behind one
//! upstream (`session::subscriptions`; 2025-11-25 `server/resources` "Subscriptions"): a
//! `resources/subscribe` goes upstream and, once accepted, is held by the calling session; a
//! `resources/unsubscribe` is answered here with `{}` and only releases the session's hold
//! (if any), so the upstream unsubscribe goes out when the last session leaves. Calls without
//! a session pass straight on (modern requests have none, and resolve refuses their
//! subscribe methods, which the modern era does not have). For a modern upstream the subscribe
//! is answered here too: the resource joins the upstream's `subscriptions/listen` filter.
//!
//! ```toml
//! # no configuration: present whenever the gateway runs
//! ```

use std::sync::Arc;

use bytes::Bytes;
use tower::{Service, ServiceExt};

use super::ctx::Routed;
use super::parts::{Origin, Reply, ReplyFuture};
use super::routed::RoutedStep;
use super::steps::Named;
use crate::error::GatewayError;
use crate::session::subscriptions::Subscriptions;
use crate::upstream::request::Body;
use crate::wire::jsonrpc::Method;

/// Counts the sessions subscribed to each upstream resource.
#[derive(Clone)]
pub struct SharedSubscriptions {
    registry: Arc<Subscriptions>,
    /// Subscriptions one session may hold (`server.max_subscriptions_per_session`).
    per_session: usize,
}

impl SharedSubscriptions {
    /// Shared subscriptions, at most `per_session` held by one session; a subscribe past it
    /// is refused with -32015 before it goes upstream.
    pub fn new(per_session: usize) -> Self {
        SharedSubscriptions { registry: Arc::default(), per_session }
    }
}

impl Named for SharedSubscriptions {
    fn name(&self) -> &'static str {
        "subscriptions"
    }
}

impl RoutedStep for SharedSubscriptions {
    fn serve<S>(&self, routed: Routed, inner: S) -> Result<ReplyFuture, Routed>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
        S::Future: Send,
    {
        let subscribe = match routed.request.method {
            Method::ResourcesSubscribe => true,
            Method::ResourcesUnsubscribe => false,
            _ => return Err(routed),
        };
        // The URI as the client named it (the session's key), and as the upstream knows it.
        let client_uri = match &routed.request.body {
            Body::Client { params, .. } => params.str("uri").map(|u| u.into_owned()),
            Body::Raw(_) => None,
        };
        let (Some(session), Some(client_uri), Some(uri)) =
            (routed.session.clone(), client_uri, routed.request.name.clone())
        else {
            return Err(routed);
        };
        if subscribe && !session.may_subscribe(&client_uri, self.per_session) {
            let e = GatewayError::LimitReached {
                what: "this session holds too many resource subscriptions; unsubscribe first",
                key: "max_subscriptions_per_session",
                limit: self.per_session,
            };
            return Ok(Box::pin(std::future::ready(Err(e))));
        }
        if !subscribe {
            session.unsubscribe(&client_uri);
            return Ok(Box::pin(async {
                Ok(Reply::Result { body: Bytes::from_static(b"{}"), origin: Origin::Gateway })
            }));
        }
        let registry = Arc::clone(&self.registry);
        if routed.target.upstream.speaks_modern() {
            // Legacy client, modern upstream: no RPC to send; the upstream's listen streams
            // watch the resource while any session holds it (`Subscriptions::hold`).
            let upstream = Arc::clone(&routed.target.upstream);
            session.subscribe(&client_uri, registry.hold(&upstream, uri, session.link.key));
            return Ok(Box::pin(async {
                Ok(Reply::Result { body: Bytes::from_static(b"{}"), origin: Origin::Gateway })
            }));
        }
        Ok(Box::pin(async move {
            let upstream = Arc::clone(&routed.target.upstream);
            let reply = inner.oneshot(routed).await?;
            if let Reply::Result { .. } = reply {
                session.subscribe(&client_uri, registry.hold(&upstream, uri, session.link.key));
            }
            Ok(reply)
        }))
    }
}
