//! Middleware that charges what a priced call costs once an upstream has answered it, and
//! applies the action of a spent budget before it goes (`crate::cost`): `deny` refuses it
//! (-32017), `shed-low` refuses it when its priority is `low` (-32013, as load shedding),
//! `fallback` sends it to its upstream's `fallback`, `alert` lets it go. It sits below the
//! cache, so hits and coalesced joiners cost nothing and are never refused; free calls (no
//! price for their upstream or tool) pass straight through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tower::{Service, ServiceExt};

use super::ctx::Routed;
use super::parts::{Origin, Principal, Priority, Reply, ReplyFuture};
use super::routed::RoutedStep;
use super::steps::Named;
use crate::cost::{Action, Answer, Budget, Cost};
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};
use crate::wire::jsonrpc::Method;

/// How long a refused caller is told to wait: the window's buckets age out by the minute.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// The `cost` step.
#[derive(Clone)]
pub struct Charge {
    cost: Arc<Cost>,
}

impl Charge {
    /// The step over `cost`'s prices and budgets.
    pub fn new(cost: &Arc<Cost>) -> Self {
        Charge { cost: Arc::clone(cost) }
    }
}

impl Named for Charge {
    fn name(&self) -> &'static str {
        "cost"
    }
}

/// The tool of a `tools/call` (prices per tool); other methods are priced per upstream.
fn tool_of(routed: &Routed) -> Option<&Arc<str>> {
    match routed.request.method {
        Method::ToolsCall => routed.request.name.as_ref(),
        _ => None,
    }
}

fn caller_name(caller: &Principal) -> Name {
    match caller {
        Principal::Anonymous => Name::Static(crate::pipeline::parts::ANONYMOUS),
        Principal::ApiKey(identity) => Name::Shared(Arc::clone(&identity.id)),
    }
}

fn refuse(err: GatewayError) -> ReplyFuture {
    Box::pin(std::future::ready(Err(err)))
}

impl RoutedStep for Charge {
    fn serve<S>(&self, mut routed: Routed, inner: S) -> Result<ReplyFuture, Routed>
    where
        S: Service<Routed, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
        S::Future: Send,
    {
        let tool = tool_of(&routed).cloned();
        if self.cost.rate(&routed.target.upstream.name, tool.as_deref()).is_none() {
            return Err(routed);
        }
        // The spent budgets this call counts against, in order; a refusal ends the search.
        let (mut fallback, mut served): (Option<&Budget>, Option<&Budget>) = (None, None);
        for b in self.cost.spent_budgets(&routed.caller) {
            let label = Name::Shared(Arc::clone(&b.name));
            match b.action {
                Action::Deny => {
                    METRICS.cost.budget(label, "denied");
                    return Ok(refuse(GatewayError::BudgetExceeded {
                        budget: b.name.to_string(),
                        per_hour: b.per_hour,
                    }));
                }
                Action::ShedLow if routed.priority == Priority::Low => {
                    METRICS.cost.budget(label, "shed");
                    METRICS.shed(Name::Static("budget"), Priority::Low.label(), caller_name(&routed.caller));
                    let reason =
                        format!("cost budget {} (${}/h) is spent, so low-priority calls are shed", b.name, b.per_hour);
                    return Ok(refuse(GatewayError::Overloaded { reason, retry_after: RETRY_AFTER }));
                }
                Action::Fallback if routed.target.fallback.is_some() => fallback = fallback.or(Some(b)),
                _ => served = served.or(Some(b)),
            }
        }
        if let (Some(b), Some(to)) = (fallback, routed.target.fallback.clone()) {
            METRICS.cost.budget(Name::Shared(Arc::clone(&b.name)), "fallback");
            METRICS.fallback(METRICS.upstream_name(&routed.target.upstream.name));
            routed = routed.to(&to);
        } else if let Some(b) = served {
            METRICS.cost.budget(Name::Shared(Arc::clone(&b.name)), "served");
        }
        let cost = Arc::clone(&self.cost);
        let caller = routed.caller.clone();
        let method = routed.request.method.metric_label();
        Ok(Box::pin(async move {
            let started = Instant::now();
            let out = inner.oneshot(routed).await;
            if let Ok(reply) = &out {
                let (body, result, origin) = match reply {
                    Reply::Result { body, origin } => (body, true, origin),
                    Reply::Error { body, origin } => (body, false, origin),
                };
                // Only an upstream's answer costs; the one that answered sets the price (the
                // fallback may have served).
                if let Origin::Upstream(_, upstream) = origin
                    && let Some(rate) = cost.rate(upstream, tool.as_deref())
                {
                    let label = tool.map_or(Name::Static(method), Name::Shared);
                    let answer =
                        Answer { elapsed: started.elapsed(), bytes: body.len(), result: result.then_some(&body[..]) };
                    cost.charge(rate, upstream, label, &caller, answer);
                }
            }
            out
        }))
    }
}
