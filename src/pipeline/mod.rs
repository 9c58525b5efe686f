//! The call stack: every step a call passes, in one ordered list. [`build`] is the one place
//! the order is written; startup, tests (and later reload) all call it. A test pins the order
//! and that a switched-off step is absent (`Stack::steps`).
//!
//! Steps are tower services, one module each; optional steps are `option_layer`s (absent when
//! switched off, not a pass-through); the stack is shared behind one pointer (`SharedStack`).
//! The runtime switches (`crate::switches`) reach the steps through [`Parts::switches`]: a
//! step switched off at runtime stays in the stack and passes calls through. Before [`resolve`] a step sees
//! a [`ctx::Call`]; from resolve on, a [`ctx::Routed`] call that carries its target.

pub mod admit;
pub mod approval;
pub mod audited;
pub mod budget;
pub mod cache;
pub mod ctx;
pub mod detected;
pub mod edge;
pub mod fallback;
pub mod forward;
pub mod idempotency;
pub mod input;
pub mod metered;
pub mod param_headers;
pub mod parts;
pub mod quota;
pub mod resolve;
pub mod routed;
pub mod steps;
pub mod subscribe;
pub mod tasks;
pub mod tool_meter;
pub mod validate;

use std::sync::Arc;

use tower::ServiceBuilder;

use self::admit::{Admission, Admit};
use self::cache::ResponseCache;
use self::ctx::Call;
use self::edge::Edge;
use self::fallback::Fallback;
use self::forward::Forward;
use self::idempotency::IdempotencyKeys;
use self::input::InputBridge;
use self::metered::Meter;
use self::quota::{Limiter, Quota};
use self::resolve::Resolve;
use self::steps::{SharedStack, StepLayer};
use self::subscribe::SharedSubscriptions;
use self::tool_meter::ToolMeter;
use self::validate::Validate;
use crate::cache::coalesce::Coalescer;
use crate::cache::idempotency::Idempotency;
use crate::cache::store::Store;
use crate::catalog::CatalogState;
use crate::config::Config;
use crate::session::task_id::TaskSealer;
use crate::switches::Switches;
use crate::upstream::UpstreamSet;

/// The assembled call pipeline, from [`Call`] to [`parts::Reply`].
pub type Pipeline = SharedStack<Call>;

/// The state the steps work with, made once by `app`.
pub struct Parts<'a> {
    /// The live catalog.
    pub catalog: &'a Arc<CatalogState>,
    /// The upstreams.
    pub upstreams: &'a Arc<UpstreamSet>,
    /// The response cache.
    pub store: &'a Arc<Store>,
    /// The idempotency records.
    pub idempotency: &'a Arc<Idempotency>,
    /// The sealer of task ids (the tasks extension).
    pub tasks: &'a Arc<TaskSealer>,
    /// The runtime switches the steps read on every call.
    pub switches: &'a Arc<Switches>,
    /// The gateway's own tools, when `[self_tools] enabled` (resolve lists and answers them).
    pub own_tools: Option<&'a Arc<crate::report::tools::SelfTools>>,
    /// The audit log, when `[audit] enabled`.
    pub audit: Option<&'a Arc<crate::audit::Audit>>,
    /// The approval policy and the calls held for an operator (`[approvals]`).
    pub approvals: &'a Arc<crate::approvals::Approvals>,
}

/// A built stack: the edge every HTTP request passes first, then the call pipeline.
pub struct Stack {
    /// Host/Origin checks and authentication, applied by the HTTP front before a body is read.
    pub edge: Arc<Edge>,
    /// The call pipeline.
    pub call: Pipeline,
    /// The global admission limit, when it is on (for metrics).
    pub admission: Option<Arc<Admission>>,
    /// Prices and budgets, when any are configured (for the monitor).
    pub cost: Option<Arc<crate::cost::Cost>>,
    steps: Vec<&'static str>,
}

impl Stack {
    /// The gateway's steps, outermost first (`edge` … `upstream`); each upstream's own steps
    /// follow `upstream` in its stack (`Upstream::steps`).
    pub fn steps(&self) -> &[&'static str] {
        &self.steps
    }
}

/// Build the whole call stack for `config` over `parts`, outermost first.
pub fn build(config: &Config, parts: Parts<'_>) -> Stack {
    // edge: who is calling, from where; before anything reads the body (HTTP only: the stdio
    // client is the local user who launched the gateway).
    let edge = Edge::new(&config.server);
    let edge =
        Arc::new(if config.store.enabled() || config.auth.oauth.is_some() { edge.requiring_keys() } else { edge });
    let coalescer = config.cache.coalesce.then(|| Coalescer::new(config.cache.lease));
    let any_fallback = config.enabled_upstreams().any(|(_, u)| u.fallback.is_some());
    let any_validated = config.enabled_upstreams().any(|(_, u)| u.settings.validate);
    let detect = self::detected::Policies::new(config.enabled_upstreams()).map(Arc::new);
    let admit = config.admission.enabled.then(|| Admit::global(&config.admission, parts.switches));
    let admission = admit.as_ref().map(|a| Arc::clone(a.admission()));
    let cost = crate::cost::Cost::new(config.enabled_upstreams(), &config.budgets).map(Arc::new);
    let quota =
        config.rate_limited().then(|| Quota::new(Limiter::new(&config.rate_limits, parts.store.l2()), parts.switches));
    let stack = ServiceBuilder::new()
        // meter: count and time every call; outermost, so it sees every outcome, refusals too.
        .layer(StepLayer(Meter))
        // audit: record every call and read (refusals too); before quota and admission, so
        // with `on_audit_failure = "refuse"` a call that cannot be recorded takes no capacity
        // (present when `[audit] enabled`).
        .option_layer(parts.audit.map(|a| StepLayer(self::audited::Audited(Arc::clone(a)))))
        // quota: the caller's rate limits (per key, per tenant); before admission, so calls
        // over the limit never queue (present when a limit is configured).
        .option_layer(quota.map(StepLayer))
        // admission: the global limit by priority; shed the least important work first.
        .option_layer(admit.map(StepLayer))
        // [the policy steps go here: access control; a step that needs the resolved tool goes
        // right after resolve, as validate does.]
        // resolve: answer catalog methods; route the rest to their upstream, once.
        .layer(StepLayer(Resolve::new(
            parts.catalog,
            parts.upstreams,
            &config.cache,
            config.server.max_uri_bytes,
            parts.tasks,
            parts.own_tools,
        )))
        // tool-meter: count and time each tools/call by its upstream and tool (right after
        // resolve, which names them; above everything that may answer or refuse it).
        .layer(StepLayer(ToolMeter))
        // validate: tools/call arguments against the tool's inputSchema (it needs the resolved
        // tool); a call the tool would refuse never leaves the gateway (present when an
        // upstream validates).
        .option_layer(any_validated.then(|| StepLayer(Validate::default())))
        // approval: the `[approvals]` policy (allow, deny, or approve by the client or an
        // operator) and dry runs; after validate, so only a call the tool would accept is put
        // to an approver, and above idempotency and the cache, so neither answers a call that
        // was not approved. Always present: dry runs need it.
        .layer(StepLayer(self::approval::Approval::new(parts.approvals)))
        // detect: sensitive data in answers, redacted or blocked per upstream and tool (it
        // needs the resolved tool); above idempotency and the cache, so replays and hits are
        // checked on every serving under the policy in force, and stored answers stay the
        // upstream's own (present when some upstream or tool has `detect` on).
        .option_layer(detect.map(|p| StepLayer(self::detected::Detect(p))))
        // subscriptions: sessions share an upstream's resource subscriptions; one client's
        // unsubscribe must not end another's updates.
        .layer(StepLayer(SharedSubscriptions::new(config.server.max_subscriptions_per_session)))
        // idempotency: a repeated key replays, waits, or is refused; before the cache, so a
        // keyed call is never answered by another caller's entry.
        .option_layer(config.idempotency.enabled.then(|| StepLayer(IdempotencyKeys::new(parts.idempotency))))
        // input: a modern upstream's input_required becomes requests to a legacy client, whose
        // answers go upstream again; below idempotency (a keyed call completes once, over all
        // its rounds), above the cache (a result that depends on a client's answers is never
        // stored).
        .layer(StepLayer(InputBridge))
        // cache: answer from L1/L2; identical concurrent misses share one upstream call.
        .option_layer(
            config.cache.enabled.then(|| StepLayer(ResponseCache::new(parts.store, coalescer, parts.switches))),
        )
        // cost: charge what answered calls cost, apply spent budgets; below the cache, so hits
        // and coalesced joiners cost nothing; above fallback, which it may hand calls to
        // (present when a price or a budget is configured).
        .option_layer(cost.as_ref().map(|c| StepLayer(self::budget::Charge::new(c))))
        // fallback: while an upstream is unhealthy its fallback serves (present when configured).
        .option_layer(any_fallback.then_some(StepLayer(Fallback)))
        // upstream: the upstream's own stack (bulkhead → retry → balance → breaker → timeout
        // → attempt); the retry and breaker switches travel with each call.
        .service(Forward::new(parts.switches));
    let mut steps = vec!["edge"];
    steps.extend(self::steps::list(&stack));
    Stack { edge, call: SharedStack::new(stack), admission, cost, steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::config::RedisConfig;

    fn stack_for(toml: &str) -> (Stack, Arc<UpstreamSet>) {
        stack_with(toml, None)
    }

    fn stack_with(toml: &str, audit: Option<&Arc<crate::audit::Audit>>) -> (Stack, Arc<UpstreamSet>) {
        let config = Config::from_toml(toml).unwrap();
        let upstreams = Arc::new(UpstreamSet::new(config.enabled_upstreams()));
        let catalog = CatalogState::new(config.catalog.clone(), upstreams.iter().map(|u| Arc::clone(&u.name)));
        let redis = RedisConfig { url: String::new(), ..config.redis.clone() };
        let store = Store::new(&config.cache, &redis, tokio_util::sync::CancellationToken::new());
        let idempotency = Idempotency::new(&config.idempotency, None, store.prefix());
        let tasks = Arc::new(TaskSealer::new(None));
        let switches = Arc::new(Switches::default());
        let parts = Parts {
            catalog: &catalog,
            upstreams: &upstreams,
            store: &store,
            idempotency: &idempotency,
            tasks: &tasks,
            switches: &switches,
            own_tools: None,
            audit,
            approvals: &crate::approvals::Approvals::new(&config.approvals, None),
        };
        (build(&config, parts), upstreams)
    }

    const UPSTREAMS: &str = r#"
        [upstreams.main]
        command = "main-server"
        fallback = "spare"
        price = { per_call = 0.01 }
        [upstreams.spare]
        url = "http://127.0.0.1:9/mcp"
        breaker = { enabled = false }
    "#;

    #[tokio::test]
    async fn the_stack_is_built_in_order() {
        let (stack, upstreams) = stack_for(&format!("[rate_limits]\nper_key = {{ rps = 10 }}\n{UPSTREAMS}"));
        assert_eq!(
            stack.steps(),
            [
                "edge",
                "meter",
                "quota",
                "admission",
                "resolve",
                "tool-meter",
                "validate",
                "approval",
                "subscriptions",
                "idempotency",
                "input",
                "cache",
                "cost",
                "fallback",
                "upstream"
            ]
        );
        let main = upstreams.get("main").unwrap();
        assert_eq!(main.steps(), ["bulkhead", "retry", "balance", "breaker", "timeout", "attempt"]);
        let spare = upstreams.get("spare").unwrap();
        assert_eq!(spare.steps(), ["bulkhead", "retry", "balance", "timeout", "attempt"], "its breaker is off");
    }

    #[tokio::test]
    async fn the_detect_step_follows_approval_when_a_policy_is_on() {
        let on = format!("{UPSTREAMS}[upstreams.spare.tools.t]\ndetect = {{ results = \"block\" }}\n");
        let (stack, _) = stack_for(&on);
        assert_eq!(&stack.steps()[5..9], ["validate", "approval", "detect", "subscriptions"]);
        let off = format!("{UPSTREAMS}[upstreams.spare.tools.t]\ndetect = {{ results = \"off\" }}\n");
        let (stack, _) = stack_for(&off);
        assert!(!stack.steps().contains(&"detect"), "every policy is off: {:?}", stack.steps());
    }

    #[tokio::test]
    async fn the_audit_step_follows_the_meter() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::audit::AuditConfig { enabled: true, ..Default::default() };
        let audit = crate::audit::Audit::start(&config, crate::audit::sink::Sink::file(dir.path().join("a")), "t");
        let (stack, _) = stack_with(UPSTREAMS, Some(&audit));
        assert_eq!(&stack.steps()[..4], ["edge", "meter", "audit", "admission"]);
        audit.shutdown().await;
    }

    #[tokio::test]
    async fn switched_off_steps_are_absent() {
        let toml = format!(
            "[admission]\nenabled = false\n[cache]\nenabled = false\n[idempotency]\nenabled = false\n\
             [resilience]\nbulkhead = false\nretry = {{ enabled = false }}\n{UPSTREAMS}"
        );
        let (stack, upstreams) = stack_for(&toml);
        assert_eq!(
            stack.steps(),
            [
                "edge",
                "meter",
                "resolve",
                "tool-meter",
                "validate",
                "approval",
                "subscriptions",
                "input",
                "cost",
                "fallback",
                "upstream"
            ]
        );
        assert_eq!(upstreams.get("main").unwrap().steps(), ["balance", "breaker", "timeout", "attempt"]);
        let (stack, _) = stack_for("[upstreams.alone]\ncommand = \"x\"\nvalidate = false\n");
        assert!(!stack.steps().contains(&"fallback"), "no upstream has a fallback: {:?}", stack.steps());
        assert!(!stack.steps().contains(&"validate"), "no upstream validates: {:?}", stack.steps());
        assert!(!stack.steps().contains(&"quota"), "no rate limit is configured: {:?}", stack.steps());
        assert!(!stack.steps().contains(&"cost"), "nothing is priced, no budget: {:?}", stack.steps());
        // A key's own limit is enough to need the step.
        let (stack, _) = stack_for(
            "[server]\napi_keys = [{ key = \"k-0123456789abcdef\", rps = 1 }]\n[upstreams.alone]\ncommand = \"x\"\n",
        );
        assert_eq!(&stack.steps()[..4], ["edge", "meter", "quota", "admission"]);
    }
}
