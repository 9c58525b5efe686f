//! Prices, charges and budgets over paused time.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::pipeline::parts::Identity;

fn cost(toml: &str) -> Cost {
    let config = crate::config::Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}"));
    Cost::new(config.enabled_upstreams(), &config.budgets).expect("priced")
}

fn key(id: &str, tenant: Option<&str>) -> Principal {
    Principal::ApiKey(Arc::new(Identity { id: id.into(), tenant: tenant.map(Arc::from), ..Identity::default() }))
}

fn answer(bytes: usize) -> Answer<'static> {
    Answer { elapsed: Duration::ZERO, bytes, result: None }
}

const PRICED: &str = "[upstreams.paid]\ncommand = \"x\"\nprice = { per_call = 0.25, per_kib = 1.0 }\n\
    [upstreams.paid.tools.big]\nprice = { per_call = 2.0 }\n[upstreams.free]\ncommand = \"y\"\n";

#[test]
fn rates_come_from_the_tool_then_the_upstream_and_free_upstreams_have_none() {
    let c = cost(PRICED);
    assert_eq!(c.rate("paid", Some("small")).map(|r| r.per_call), Some(0.25));
    let big = c.rate("paid", Some("big")).unwrap();
    assert_eq!((big.per_call, big.per_kib), (2.0, 1.0), "the tool's per_call over the upstream's per_kib");
    assert_eq!(c.rate("paid", None).map(|r| r.per_call), Some(0.25), "other methods: the upstream's price");
    assert!(c.rate("free", Some("t")).is_none());
    let none = crate::config::Config::from_toml("[upstreams.free]\ncommand = \"y\"\n").unwrap();
    assert!(Cost::new(none.enabled_upstreams(), &none.budgets).is_none(), "nothing priced: no cost step");
}

#[tokio::test(start_paused = true)]
async fn spending_ages_out_of_the_trailing_hour() {
    let c = cost(&format!("{PRICED}[budgets.gateway]\nper_hour = 1.0\naction = \"deny\"\n"));
    let alice = key("alice", None);
    let rate = c.rate("paid", Some("t")).unwrap().clone();
    let up: Arc<str> = Arc::from("paid");
    let charged = c.charge(&rate, &up, Name::Static("t"), &alice, answer(512));
    assert!((charged - 0.75).abs() < 1e-9, "0.25 per call + 0.5 KiB × $1: {charged}");
    assert_eq!(c.spent_budgets(&alice).count(), 0, "$0.75 of $1");
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    c.charge(&rate, &up, Name::Static("t"), &alice, answer(0));
    let spent: Vec<_> = c.spent_budgets(&alice).map(|b| b.name.to_string()).collect();
    assert_eq!(spent, ["gateway"], "$1.00 of $1 within the hour");
    assert_eq!(c.usage()[0].used, 1.0);
    tokio::time::sleep(Duration::from_secs(30 * 60)).await;
    assert_eq!(c.spent_budgets(&alice).count(), 0, "the first call's $0.75 aged out after an hour");
    assert!((c.usage()[0].spent - 0.25).abs() < 1e-9, "{:?}", c.usage());
    tokio::time::sleep(Duration::from_secs(31 * 60)).await;
    assert_eq!(c.usage()[0].spent, 0.0, "all of it aged out");
}

#[tokio::test(start_paused = true)]
async fn callers_and_tenants_have_budgets_of_their_own() {
    let c = cost(&format!(
        "{PRICED}[budgets.callers.alice]\nper_hour = 0.5\naction = \"deny\"\n\
         [budgets.callers.bob]\nper_hour = 0.5\n[budgets.tenants.acme]\nper_hour = 10\naction = \"shed-low\"\n"
    ));
    let (alice, bob, carol) = (key("alice", None), key("bob", None), key("carol", Some("acme")));
    let rate = c.rate("paid", Some("t")).unwrap().clone();
    let up: Arc<str> = Arc::from("paid");
    c.charge(&rate, &up, Name::Static("t"), &alice, answer(0));
    c.charge(&rate, &up, Name::Static("t"), &alice, answer(0));
    let spent: Vec<_> = c.spent_budgets(&alice).map(|b| (b.name.to_string(), b.action)).collect();
    assert_eq!(spent, [("caller:alice".to_string(), Action::Deny)]);
    assert_eq!(c.spent_budgets(&bob).count(), 0, "alice's spending is not bob's");
    c.charge(&rate, &up, Name::Static("t"), &carol, answer(0));
    let usage: Vec<(String, f64)> = c.usage().into_iter().map(|u| (u.name.to_string(), u.spent)).collect();
    assert_eq!(
        usage,
        [("caller:alice".into(), 0.5), ("caller:bob".into(), 0.0), ("tenant:acme".into(), 0.25)],
        "a store key's calls count against its tenant; sorted by name"
    );
}

#[test]
fn budgets_become_alert_rules_at_their_alert_at() {
    let config = crate::config::Config::from_toml(
        "[budgets.gateway]\nper_hour = 4\n[budgets.callers.\"key:0123abcd\"]\nper_hour = 1\nalert_at = 0.5\n",
    )
    .unwrap();
    let rules = crate::monitor::alerts::config::budget_rules(&config.budgets);
    let shown: Vec<(&str, Option<&str>, f64)> =
        rules.iter().map(|r| (r.name.as_str(), r.scope.as_deref(), r.threshold)).collect();
    assert_eq!(
        shown,
        [("budget.gateway", Some("gateway"), 0.8), ("budget.caller_key_0123abcd", Some("caller:key:0123abcd"), 0.5)]
    );
    let all = config.alerts.with_budgets(&config.budgets).rules();
    assert_eq!(all.len(), crate::monitor::alerts::config::default_rules().len() + 2, "after the defaults");
}
