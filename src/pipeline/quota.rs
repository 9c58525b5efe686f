//! Middleware that limits each caller's request rate: GCRA (the generic cell rate algorithm,
//! ITU-T I.371) per API key and per tenant, in process with `governor`, or fleet-wide in Redis
//! (one round trip running the same algorithm in a server-side script) when `[redis]` is
//! configured; over the limit a call is refused before it queues (design.md §5: auth → quota).
//!
//! ```toml
//! [rate_limits]
//! per_key = { rps = 20, burst = 40 }     # every API key (and the key-less caller), unless its
//!                                         # own entry in [server] api_keys sets rps/burst
//! per_tenant = { rps = 100, burst = 200 } # every tenant's keys together (store-backed keys)
//! max_tracked = 100000                   # callers tracked in process at most; idle ones go first
//! redis_timeout = "5ms"                  # deadline of one Redis check; then the local limit applies
//! ```
//!
//! Refused calls end with [`GatewayError::RateLimited`]: HTTP 429 with `Retry-After` for a
//! single HTTP request, the JSON-RPC error -32016 with `data.retryAfterMs` on stdio and inside a
//! batch. Every request that reaches the call stack counts (including lists and `ping`).
//! With the `rate_limits` runtime switch off (`crate::switches`) every call is admitted and
//! none is counted.

mod fleet;

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::Either;
use governor::clock::{Clock, DefaultClock};
use serde::{Deserialize, Serialize};
use tower::{Service, ServiceExt};

use self::fleet::Fleet;
use super::ctx::Call;
pub use super::parts::RateLimit;
use super::parts::{ANONYMOUS, Principal, Reply, ReplyFuture};
use super::steps::{Named, Stepped};
use crate::cache::l2::L2;
use crate::error::GatewayError;
use crate::observe::metrics::{METRICS, Name};
use crate::switches::{Layer, Switches};

/// One limit as written in the configuration: requests per second, and how many may come at
/// once (the bucket's size).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Sustained requests per second, `0.0001..=1000000` (fractions allowed: `0.5` is one
    /// every 2 s).
    pub rps: f64,
    /// Requests that may come at once after a quiet period, `1..=1000000`; default: one
    /// second's worth (`rps` rounded up, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// Lowest accepted `rps` (one request every ~2.8 h).
const MIN_RPS: f64 = 0.0001;
/// Highest accepted `rps` and `burst`.
const MAX_RATE: f64 = 1_000_000.0;

impl LimitConfig {
    /// Problems of this limit, naming it by `key` (e.g. `rate_limits.per_key`).
    pub fn validate(&self, key: &str) -> Vec<String> {
        let mut p = Vec::new();
        if !(self.rps.is_finite() && (MIN_RPS..=MAX_RATE).contains(&self.rps)) {
            p.push(format!("{key}.rps = {} is outside {MIN_RPS}..={MAX_RATE}", self.rps));
        }
        if let Some(burst) = self.burst
            && !(1..=MAX_RATE as u32).contains(&burst)
        {
            p.push(format!("{key}.burst = {burst} is outside 1..={}", MAX_RATE as u32));
        }
        p
    }

    /// Problems of an API key's own limit (`rps`, `burst` on its entry, named by `key`).
    pub fn validate_own(rps: Option<f64>, burst: Option<u32>, key: &str) -> Vec<String> {
        match rps {
            Some(rps) => LimitConfig { rps, burst }.validate(key),
            None if burst.is_some() => vec![format!("{key}.burst needs rps (the key's own rate limit)")],
            None => Vec::new(),
        }
    }

    /// The limit in force (valid after [`LimitConfig::validate`]); the default burst is
    /// written here only.
    pub fn resolve(&self) -> RateLimit {
        let rps = self.rps.clamp(MIN_RPS, MAX_RATE);
        let burst = self.burst.unwrap_or_else(|| rps.ceil() as u32).max(1);
        // At least 1 µs: the Redis script counts in microseconds.
        RateLimit { interval: Duration::from_secs_f64(1.0 / rps).max(Duration::from_micros(1)), burst }
    }
}

/// What this step makes of a [`RateLimit`] (the type lives with `Identity` in `parts`).
impl RateLimit {
    /// How long an idle bucket takes to fill up again: after it, a bucket is as good as new.
    fn refill(&self) -> Duration {
        self.interval.saturating_mul(self.burst)
    }

    fn quota(&self) -> governor::Quota {
        let burst = NonZeroU32::new(self.burst.max(1)).expect("at least 1");
        governor::Quota::with_period(self.interval.max(Duration::from_micros(1)))
            .expect("a non-zero period")
            .allow_burst(burst)
    }
}

/// `[rate_limits]`: request rates per API key and per tenant. Present only when a limit is
/// configured (here, or `rps` on an API key).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {
    /// The limit of every caller (API key, or the key-less caller as one) whose key sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_key: Option<LimitConfig>,
    /// The limit of all of a tenant's keys together (keys from the store; static keys have no
    /// tenant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_tenant: Option<LimitConfig>,
    /// Buckets (callers and tenants) tracked in process at most, `1..=10000000`. A bucket idle
    /// long enough to be full again is dropped; past the cap the least used go first (they
    /// start again full).
    pub max_tracked: u64,
    /// Deadline of one Redis check (1 ms..=1 s); a late or failed check uses the local limit
    /// and Redis is tried again after a second.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            per_key: None,
            per_tenant: None,
            max_tracked: 100_000,
            redis_timeout: Duration::from_millis(5),
        }
    }
}

impl RateLimitsConfig {
    /// Problems with these settings.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(l) = &self.per_key {
            p.extend(l.validate("rate_limits.per_key"));
        }
        if let Some(l) = &self.per_tenant {
            p.extend(l.validate("rate_limits.per_tenant"));
        }
        if !(1..=10_000_000).contains(&self.max_tracked) {
            p.push(format!("rate_limits.max_tracked = {} is outside 1..=10000000", self.max_tracked));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(1)).contains(&self.redis_timeout) {
            p.push(format!("rate_limits.redis_timeout = {:?} is outside 1ms..=1s", self.redis_timeout));
        }
        p
    }
}

/// Which bucket refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The caller's own (its API key, or the key-less caller).
    Key,
    /// Its tenant's.
    Tenant,
}

impl Scope {
    /// `key` or `tenant` (error data, metric label).
    pub fn label(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Tenant => "tenant",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Scope::Key => "k",
            Scope::Tenant => "t",
        }
    }
}

/// One bucket to check: whose, and its limit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BucketKey {
    scope: Scope,
    id: Arc<str>,
    // Part of the key: a caller whose limit changes gets a new bucket.
    limit: RateLimit,
}

/// A bucket in process and the time it takes to fill up (its idle expiry).
struct Bucket {
    limiter: governor::DefaultDirectRateLimiter,
    refill: Duration,
}

/// Buckets expire once idle long enough to be full again: forgetting one changes nothing.
struct IdleFull;

impl moka::Expiry<BucketKey, Arc<Bucket>> for IdleFull {
    fn expire_after_create(&self, _: &BucketKey, b: &Arc<Bucket>, _: std::time::Instant) -> Option<Duration> {
        Some(b.refill)
    }

    fn expire_after_read(
        &self,
        _: &BucketKey,
        b: &Arc<Bucket>,
        _: std::time::Instant,
        _: Option<Duration>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(b.refill)
    }
}

/// The limits and their buckets: in process always, in Redis too when configured.
pub struct Limiter {
    per_key: Option<RateLimit>,
    per_tenant: Option<RateLimit>,
    local: moka::sync::Cache<BucketKey, Arc<Bucket>>,
    fleet: Option<Fleet>,
}

impl Limiter {
    /// The limiter for `config`, fleet-wide through `l2` (the cache's Redis connection) when
    /// given.
    pub fn new(config: &RateLimitsConfig, l2: Option<&Arc<L2>>) -> Limiter {
        Limiter {
            per_key: config.per_key.map(|l| l.resolve()),
            per_tenant: config.per_tenant.map(|l| l.resolve()),
            local: moka::sync::Cache::builder().max_capacity(config.max_tracked).expire_after(IdleFull).build(),
            fleet: l2.map(|l2| Fleet::new(Arc::clone(l2), config.redis_timeout)),
        }
    }

    /// The buckets a call of `caller` draws from: its key's (its own limit, else `per_key`)
    /// and its tenant's (`per_tenant`), each when a limit applies. At most two.
    fn buckets(&self, caller: &Principal) -> [Option<BucketKey>; 2] {
        static ANON: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(ANONYMOUS));
        let (id, own, tenant) = match caller {
            Principal::Anonymous => (&*ANON, None, None),
            Principal::ApiKey(identity) => (&identity.id, identity.rate_limit, identity.tenant.as_ref()),
        };
        let key = own.or(self.per_key).map(|limit| BucketKey { scope: Scope::Key, id: Arc::clone(id), limit });
        let tenant =
            tenant.zip(self.per_tenant).map(|(t, limit)| BucketKey { scope: Scope::Tenant, id: Arc::clone(t), limit });
        [key, tenant]
    }

    /// Check one call of `caller` in process: `Err` names the bucket that refused and how long
    /// until it has room. The key's bucket is asked first, so a key over its own limit never
    /// drains its tenant's; a call refused by the tenant's bucket has used a cell of its key's
    /// (`governor` takes one bucket at a time; Redis takes both together).
    pub fn check_local(&self, caller: &Principal) -> Result<(), (Scope, Duration)> {
        for key in self.buckets(caller).into_iter().flatten() {
            let scope = key.scope;
            let limit = key.limit;
            let bucket = self.local.get_with(key, || {
                Arc::new(Bucket { limiter: governor::RateLimiter::direct(limit.quota()), refill: limit.refill() })
            });
            if let Err(not_until) = bucket.limiter.check() {
                return Err((scope, not_until.wait_time_from(DefaultClock::default().now())));
            }
        }
        Ok(())
    }

    /// Check one call of `caller`: in Redis when it is configured and answering (both buckets
    /// in one round trip, taken together or not at all), else in process.
    pub async fn check(&self, caller: &Principal) -> Result<(), (Scope, Duration)> {
        if let Some(fleet) = &self.fleet {
            let buckets = self.buckets(caller);
            let present: Vec<&BucketKey> = buckets.iter().flatten().collect();
            if present.is_empty() {
                return Ok(());
            }
            let asked: Vec<fleet::Bucket<'_>> =
                present.iter().map(|b| fleet::Bucket { tag: b.scope.tag(), id: &b.id, limit: b.limit }).collect();
            if let Some(verdict) = fleet.check(&asked).await {
                return verdict.map_err(|(i, wait)| (present[i].scope, wait));
            }
        }
        self.check_local(caller)
    }

    /// Whether Redis decides (for the step: a local-only limiter never waits).
    fn fleet_wide(&self) -> bool {
        self.fleet.is_some()
    }

    /// Buckets tracked in process (approximate; for tests and metrics).
    pub fn tracked(&self) -> u64 {
        self.local.run_pending_tasks();
        self.local.entry_count()
    }
}

/// The refusal of a call of `caller` by bucket `scope`, counted.
fn refused(caller: &Principal, scope: Scope, retry_after: Duration) -> GatewayError {
    let (id, tenant) = match caller {
        Principal::Anonymous => (Name::Static(ANONYMOUS), None),
        Principal::ApiKey(identity) => (Name::Shared(Arc::clone(&identity.id)), identity.tenant.clone()),
    };
    METRICS.rate_limited(id, tenant, scope.label());
    GatewayError::RateLimited { scope: scope.label(), retry_after }
}

/// The quota step: refuses calls over their caller's rate limits.
#[derive(Clone)]
pub struct Quota {
    limiter: Arc<Limiter>,
    switches: Arc<Switches>,
}

impl Quota {
    /// The step over `limiter`, while `switches` leave `rate_limits` on.
    pub fn new(limiter: Limiter, switches: &Arc<Switches>) -> Quota {
        Quota { limiter: Arc::new(limiter), switches: Arc::clone(switches) }
    }
}

impl Named for Quota {
    fn name(&self) -> &'static str {
        "quota"
    }
}

impl<S> Service<Call> for Stepped<Quota, S>
where
    S: Service<Call, Response = Reply, Error = GatewayError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Reply;
    type Error = GatewayError;
    type Future = Either<S::Future, ReplyFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        if !self.step.switches.on(Layer::RateLimits) {
            return Either::Left(self.inner.call(call));
        }
        let limiter = &self.step.limiter;
        if !limiter.fleet_wide() {
            // In process: decided now, no allocation for an admitted call.
            return match limiter.check_local(&call.ctx.principal) {
                Ok(()) => Either::Left(self.inner.call(call)),
                Err((scope, after)) => {
                    let err = refused(&call.ctx.principal, scope, after);
                    Either::Right(Box::pin(std::future::ready(Err(err))))
                }
            };
        }
        let limiter = Arc::clone(limiter);
        let inner = self.inner.clone();
        Either::Right(Box::pin(async move {
            if let Err((scope, after)) = limiter.check(&call.ctx.principal).await {
                return Err(refused(&call.ctx.principal, scope, after));
            }
            inner.oneshot(call).await
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::parts::Identity;

    fn key(id: &str, tenant: Option<&str>, own: Option<RateLimit>) -> Principal {
        Principal::ApiKey(Arc::new(Identity {
            id: id.into(),
            tenant: tenant.map(Arc::from),
            rate_limit: own,
            ..Default::default()
        }))
    }

    fn limits(per_key: Option<(f64, u32)>, per_tenant: Option<(f64, u32)>) -> Limiter {
        let l = |(rps, burst)| LimitConfig { rps, burst: Some(burst) };
        let config =
            RateLimitsConfig { per_key: per_key.map(l), per_tenant: per_tenant.map(l), ..RateLimitsConfig::default() };
        Limiter::new(&config, None)
    }

    fn admitted(limiter: &Limiter, caller: &Principal, n: usize) -> usize {
        (0..n).filter(|_| limiter.check_local(caller).is_ok()).count()
    }

    #[test]
    fn a_burst_is_admitted_then_refused_with_the_wait() {
        let limiter = limits(Some((0.001, 3)), None);
        let a = key("a", None, None);
        assert_eq!(admitted(&limiter, &a, 10), 3);
        let (scope, after) = limiter.check_local(&a).unwrap_err();
        assert_eq!(scope, Scope::Key);
        assert!(after > Duration::from_secs(900) && after <= Duration::from_secs(1000), "{after:?}");
    }

    #[test]
    fn one_caller_exhausting_its_limit_leaves_another_alone() {
        let limiter = limits(Some((0.001, 2)), None);
        let (a, b) = (key("a", None, None), key("b", None, None));
        assert_eq!(admitted(&limiter, &a, 5), 2);
        assert_eq!(admitted(&limiter, &b, 5), 2, "b has its own bucket");
        // A key's own limit overrides the default.
        let own = key("c", None, Some(RateLimit { interval: Duration::from_secs(1000), burst: 4 }));
        assert_eq!(admitted(&limiter, &own, 10), 4);
        // The key-less caller is one bucket.
        assert_eq!(admitted(&limiter, &Principal::Anonymous, 5), 2);
    }

    #[test]
    fn keys_of_one_tenant_share_its_limit_and_not_another_tenants() {
        let limiter = limits(None, Some((0.001, 5)));
        let (a1, a2) = (key("a1", Some("acme"), None), key("a2", Some("acme"), None));
        let b1 = key("b1", Some("globex"), None);
        assert_eq!(admitted(&limiter, &a1, 3), 3);
        assert_eq!(admitted(&limiter, &a2, 10), 2, "acme's bucket holds 5 in all");
        assert_eq!(limiter.check_local(&a2).unwrap_err().0, Scope::Tenant);
        assert_eq!(admitted(&limiter, &b1, 10), 5, "globex is untouched");
        // Without a tenant (a static key) only the key's limit applies: here none.
        assert_eq!(admitted(&limiter, &key("static", None, None), 50), 50);
    }

    #[test]
    fn the_tighter_of_key_and_tenant_refuses() {
        let limiter = limits(Some((0.001, 2)), Some((0.001, 3)));
        let (a1, a2) = (key("a1", Some("acme"), None), key("a2", Some("acme"), None));
        assert_eq!(admitted(&limiter, &a1, 5), 2);
        assert_eq!(limiter.check_local(&a1).unwrap_err().0, Scope::Key);
        assert_eq!(admitted(&limiter, &a2, 5), 1, "the tenant had one left");
        let a3 = key("a3", Some("acme"), None);
        assert_eq!(limiter.check_local(&a3).unwrap_err().0, Scope::Tenant, "a fresh key of a spent tenant");
    }

    #[test]
    fn tracked_buckets_are_bounded() {
        let config = RateLimitsConfig {
            per_key: Some(LimitConfig { rps: 0.001, burst: Some(1) }),
            max_tracked: 100,
            ..RateLimitsConfig::default()
        };
        let limiter = Limiter::new(&config, None);
        for i in 0..5_000 {
            let _ = limiter.check_local(&key(&format!("k{i}"), None, None));
        }
        assert!(limiter.tracked() <= 100, "{} buckets", limiter.tracked());
    }

    /// The fleet path on the real Redis at 127.0.0.1:6379 under a prefix of its own: a tenant's
    /// bucket is shared by its keys, and key and tenant are taken together or not at all (a
    /// call the tenant refuses costs its key nothing, unlike in process).
    #[tokio::test]
    async fn in_redis_a_tenants_keys_share_its_bucket_and_refusals_take_nothing() {
        use crate::cache::config::RedisConfig;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let redis = RedisConfig {
            prefix: format!("sekisho-quota-unit-{}-{nanos}:", std::process::id()),
            entry_secret: "unit-test-entry-secret-0123456789abcdef".into(),
            ..RedisConfig::default()
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let l2 = L2::connect("redis://127.0.0.1:6379".into(), &redis, stop.clone());
        for _ in 0..400 {
            if l2.connection().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(l2.connection().is_some(), "Redis on 127.0.0.1:6379");
        let l = |burst| Some(LimitConfig { rps: 0.001, burst: Some(burst) });
        let config = RateLimitsConfig {
            per_key: l(2),
            per_tenant: l(3),
            redis_timeout: Duration::from_secs(1),
            ..RateLimitsConfig::default()
        };
        let limiter = Limiter::new(&config, Some(&l2));
        let (a1, a2, b1) =
            (key("a1", Some("acme"), None), key("a2", Some("acme"), None), key("b1", Some("globex"), None));
        let mut verdicts = Vec::new();
        for caller in [&a1, &a1, &a1, &a2, &a2, &b1] {
            verdicts.push(limiter.check(caller).await.map_err(|(scope, _)| scope));
        }
        use Scope::*;
        assert_eq!(verdicts, [Ok(()), Ok(()), Err(Key), Ok(()), Err(Tenant), Ok(())]);
        // a2's refused call took nothing from a2's own bucket: with a tenant of its own room it
        // has its second call.
        let a2_elsewhere = key("a2", Some("initech"), None);
        assert_eq!(limiter.check(&a2_elsewhere).await, Ok(()), "a2 had one call left");
        assert!(limiter.tracked() == 0, "Redis decided every call; nothing was kept in process");
        stop.cancel();
    }

    #[test]
    fn limits_resolve_and_validate() {
        let r = LimitConfig { rps: 2.5, burst: None }.resolve();
        assert_eq!((r.interval, r.burst), (Duration::from_millis(400), 3), "burst defaults to one second's worth");
        assert_eq!(LimitConfig { rps: 0.5, burst: None }.resolve().burst, 1);
        assert!(LimitConfig { rps: 0.0, burst: None }.validate("x").len() == 1);
        assert!(LimitConfig { rps: f64::NAN, burst: Some(0) }.validate("x").len() == 2);
        assert!(RateLimitsConfig { redis_timeout: Duration::ZERO, ..Default::default() }.validate().len() == 1);
    }
}
