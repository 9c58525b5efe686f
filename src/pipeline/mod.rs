//! The policy pipeline: an ordered stack of small layers between the front and the router.
//! [`build`] is the one place the order is written; startup, reload and tests all call it.
//!
//! Layers to come, in their fixed order (design.md §5): quota, validate, policy (between
//! metering and admission). Idempotency keys, the cache and coalescing run after admission, once
//! the router knows the target upstream and tool (`catalog::router`, module `cache`).
//! Authentication happens at the edge of each front; the identity travels in [`ctx::CallCtx`].

pub mod admit;
pub mod ctx;
pub mod metered;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};

use self::ctx::{Call, Reply};
use crate::catalog::router::Router;
use crate::error::GatewayError;

/// The assembled pipeline: one boxed service from [`Call`] to [`Reply`].
pub type Pipeline = BoxCloneSyncService<Call, Reply, GatewayError>;

/// Build the pipeline over `router`, outermost layer first.
pub fn build(router: Arc<Router>, admission: &admit::AdmissionConfig) -> Pipeline {
    let stack = ServiceBuilder::new()
        // Count and time every call; outermost so it sees every outcome, rejections included.
        .layer(metered::MeteredLayer)
        // Admit by priority under the global limit; shed the least important work first.
        .option_layer(admission.enabled.then(|| admit::AdmitLayer::new(admission)))
        .service(Route(router));
    BoxCloneSyncService::new(stack)
}

/// The innermost service: hands the call to the router.
#[derive(Clone)]
pub struct Route(pub Arc<Router>);

impl Service<Call> for Route {
    type Response = Reply;
    type Error = GatewayError;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, GatewayError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let router = Arc::clone(&self.0);
        Box::pin(async move { router.route(&call).await })
    }
}
