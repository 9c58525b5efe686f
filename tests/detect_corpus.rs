//! The sensitive-data detectors against a corpus of fake secrets and personal data (each must
//! be found, as its kind, and redacted away) and of near misses (none may be found).

use sekisho::detect::redact::{self, Place};
use sekisho::detect::result::{DetectConfig, Outcome, ResultAction};
use sekisho::detect::{KindSet, scan};
use serde_json::json;

#[path = "common/corpus.rs"]
mod corpus;
use corpus::{corpus, secret_of};

#[test]
fn every_hit_is_found_as_its_kind_and_redacted() {
    for case in corpus("hits.json").as_array().unwrap() {
        let (kind, text) = (case["kind"].as_str().unwrap(), case["text"].as_str().unwrap());
        let found = scan(text, KindSet::ALL);
        assert!(found.iter().any(|f| f.kind.name() == kind), "{kind} not found in {text:?}: {found:?}");
        let out = redact::text(text, KindSet::ALL, Place::Log);
        assert!(out.contains(&format!("[REDACTED:{kind}]")), "{out}");
        let secret = secret_of(kind, text);
        assert!(!out.contains(&secret), "{secret:?} survived in {out:?}");
    }
}

#[test]
fn no_near_miss_is_found() {
    for text in corpus("misses.json").as_array().unwrap() {
        let text = text.as_str().unwrap();
        assert_eq!(scan(text, KindSet::ALL), vec![], "false positive in {text:?}");
    }
}

#[test]
fn kinds_filter_and_group_names() {
    let text = "jane@example.com sk-FAKEfake0123456789abcdefFAKE";
    assert_eq!(scan(text, KindSet::secrets()).len(), 1);
    assert_eq!(scan(text, KindSet::personal()).len(), 1);
    assert_eq!(
        KindSet::from_names(["email", "api_key"]).unwrap(),
        KindSet::NONE.with(sekisho::detect::Kind::Email).with(sekisho::detect::Kind::ApiKey)
    );
    assert!(KindSet::from_names(["emails"]).is_err());
}

#[test]
fn result_policies_redact_in_place_and_block() {
    let key = "-----BEGIN PRIVATE KEY-----\nMIIEvFAKEFAKEFAKE\n-----END PRIVATE KEY-----";
    let result = json!({"content": [{"type": "text", "text": format!("here: {key} done")}], "isError": false});
    let redact: DetectConfig = serde_json::from_value(json!({"results": "redact"})).unwrap();
    let mut r = result.clone();
    assert_eq!(sekisho::detect::result::apply(redact.policy().unwrap(), &mut r), Outcome::Redacted(1));
    assert_eq!(r["content"][0]["text"], "here: [REDACTED:private_key] done");
    let block: DetectConfig = serde_json::from_value(json!({"results": "block", "kinds": ["secrets"]})).unwrap();
    let mut r = result.clone();
    assert!(matches!(sekisho::detect::result::apply(block.policy().unwrap(), &mut r), Outcome::Blocked(_)));
    assert_eq!(r, result, "blocking leaves the result as it was");
    let personal_only: DetectConfig =
        serde_json::from_value(json!({"results": "block", "kinds": ["personal"]})).unwrap();
    assert_eq!(sekisho::detect::result::apply(personal_only.policy().unwrap(), &mut r), Outcome::Clean);
    assert_eq!(DetectConfig::default().results, ResultAction::Off);
}

#[test]
fn findings_never_split_a_character_and_scanning_is_linear() {
    // 200,000 bytes of near-triggers: a linear scan takes well under a second even in a debug
    // build on a loaded machine; a quadratic one (4·10^10 steps) would take minutes. The bound
    // is that far from both, so the machine's load cannot decide the outcome.
    let text = format!("é{}é@@@+++{}", "sk-".repeat(40_000), "4".repeat(80_000));
    let t = std::time::Instant::now();
    let _ = scan(&text, KindSet::ALL);
    assert!(t.elapsed() < std::time::Duration::from_secs(30), "{:?}", t.elapsed());
    let out = redact::text("ü jane@example.com ü", KindSet::ALL, Place::Log);
    assert_eq!(out, "ü [REDACTED:email] ü");
}
