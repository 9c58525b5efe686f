//! The machinery every step shares: one layer type ([`StepLayer`]) that puts a step's state in
//! front of the next service ([`Stepped`]); how a built stack names its steps, outermost first
//! (each step names itself, then asks the service it wraps, so the list is read off the stack
//! that really runs); and the shared handle a built stack is called through ([`SharedStack`]).

use std::sync::Arc;

use tower::{Service, ServiceExt};

use super::parts::{Reply, ReplyFuture};
use crate::error::GatewayError;

/// A service that can list the steps it is made of.
pub trait Steps {
    /// Append this step's name, then the names of the steps it wraps.
    fn steps(&self, out: &mut Vec<&'static str>);
}

/// An optional step (`ServiceBuilder::option_layer`): the step when on, its inner service when off.
impl<A: Steps, B: Steps> Steps for tower::util::Either<A, B> {
    fn steps(&self, out: &mut Vec<&'static str>) {
        match self {
            tower::util::Either::Left(a) => a.steps(out),
            tower::util::Either::Right(b) => b.steps(out),
        }
    }
}

/// The names of `service`'s steps, outermost first.
pub fn list(service: &impl Steps) -> Vec<&'static str> {
    let mut out = Vec::new();
    service.steps(&mut out);
    out
}

/// A step's name in the stack's list.
pub trait Named {
    /// The name, e.g. `"cache"`.
    fn name(&self) -> &'static str;
}

/// The one layer of every step: wraps the next service in [`Stepped`] with a copy of the step's
/// state (cheap: an `Arc` or a few words).
#[derive(Clone, Debug)]
pub struct StepLayer<T>(pub T);

impl<T: Clone, S> tower::Layer<S> for StepLayer<T> {
    type Service = Stepped<T, S>;

    fn layer(&self, inner: S) -> Stepped<T, S> {
        Stepped { step: self.0.clone(), inner }
    }
}

/// A step (its state `T`) in front of the service it calls next; each step module implements
/// `tower::Service` for `Stepped<ItsStep, S>`.
#[derive(Clone, Debug)]
pub struct Stepped<T, S> {
    /// The step's state.
    pub step: T,
    /// The next service.
    pub inner: S,
}

impl<T: Named, S: Steps> Steps for Stepped<T, S> {
    fn steps(&self, out: &mut Vec<&'static str>) {
        out.push(self.step.name());
        self.inner.steps(out);
    }
}

/// A built stack behind one pointer. A call clones the stack's services (plain structs of
/// `Arc`s, on the caller's own stack) and boxes only the call's future: one allocation per
/// call, where a `BoxCloneSyncService` takes two (the boxed clone, then the boxed future).
pub struct SharedStack<R> {
    call: Arc<dyn Fn(R) -> ReplyFuture + Send + Sync>,
}

impl<R> Clone for SharedStack<R> {
    fn clone(&self) -> Self {
        SharedStack { call: Arc::clone(&self.call) }
    }
}

impl<R: Send + 'static> SharedStack<R> {
    /// Share `stack`.
    pub fn new<S>(stack: S) -> Self
    where
        S: Service<R, Response = Reply, Error = GatewayError> + Clone + Send + Sync + 'static,
        S::Future: Send,
    {
        SharedStack { call: Arc::new(move |req| Box::pin(stack.clone().oneshot(req))) }
    }

    /// Run one request through the stack.
    pub fn call(&self, req: R) -> ReplyFuture {
        (self.call)(req)
    }
}
