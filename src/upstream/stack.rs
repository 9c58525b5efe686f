//! The per-upstream call stack. [`build`] is the one place its order is written; it is the
//! tail of the gateway's call stack (`pipeline::build` ends by handing each call to it).

use std::sync::Arc;

use tower::ServiceBuilder;

use super::attempt::Attempt;
use super::balance::Balance;
use super::breaker::layer::BreakerStep;
use super::config::Settings;
use super::dispatch::Dispatch;
use super::pool::Pool;
use super::retry::layer::Retry;
use super::timeout::Timeout;
use crate::pipeline::admit::{Admission, Admit};
use crate::pipeline::steps::{self, SharedStack, StepLayer};

/// An upstream's assembled stack, from a call to its reply.
pub type Stack = SharedStack<Arc<Dispatch>>;

/// Build the stack of upstream `name` over its `pool`, outermost first, and list its steps.
/// `bulkhead` is `None` when `[resilience] bulkhead = false`.
pub fn build(
    name: &Arc<str>,
    settings: &Settings,
    pool: &Arc<Pool>,
    bulkhead: Option<Arc<Admission>>,
) -> (Stack, Vec<&'static str>) {
    let stack = ServiceBuilder::new()
        // bulkhead: this upstream's own slots and priority queue, so one slow upstream cannot
        // take every slot of the gateway.
        .option_layer(bulkhead.map(|b| StepLayer(Admit::bulkhead(b))))
        // retry: calls that are safe to repeat go again after transport failures and timeouts,
        // with backoff, within the retry budget; each try goes through everything below.
        .option_layer(settings.retry.enabled.then(|| StepLayer(Retry::new(name, &settings.retry))))
        // balance: the less busy of two random live replicas (another one than the last try's);
        // grows the process pool under load.
        .layer(StepLayer(Balance::new(pool)))
        // breaker: refuse at once while the chosen replica's breaker is open (the balancer then
        // tries the next replica); record every attempt's verdict.
        .option_layer(settings.breaker.enabled.then(|| StepLayer(BreakerStep::new(name))))
        // timeout: bound each attempt; dropping it cancels the call upstream.
        .layer(StepLayer(Timeout::new(name, settings.timeout)))
        // attempt: write the request on the connection, read the answer.
        .service(Attempt::new(name));
    let steps = steps::list(&stack);
    (SharedStack::new(stack), steps)
}
