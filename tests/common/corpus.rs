//! The corpus of fake secrets and personal data (`tests/fixtures/detect/`), shared by the
//! detectors' own tests (`tests/detect_corpus.rs`) and the end-to-end ones (`tests/detect.rs`).
#![allow(dead_code)]

use serde_json::Value;

/// One of the corpus files, `hits.json` (every item must be found) or `misses.json` (none).
pub fn corpus(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/detect/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every hit: (kind name, text holding one item of that kind).
pub fn hits() -> Vec<(String, String)> {
    corpus("hits.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["kind"].as_str().unwrap().to_string(), c["text"].as_str().unwrap().to_string()))
        .collect()
}

/// The secret part of a corpus text: what must not survive redaction.
pub fn secret_of(kind: &str, text: &str) -> String {
    match kind {
        "connection_password" => text.split(':').nth(2).unwrap().split('@').next().unwrap().to_string(),
        "bearer_token" => text.rsplit(' ').next().unwrap().to_string(),
        "private_key" => text.lines().nth(1).unwrap().split(' ').next().unwrap().to_string(),
        // The run of digits and their separators (`card 4111 1111 1111 1111 exp …`).
        "card_number" | "phone" => {
            let start = text.find(|c: char| c.is_ascii_digit() || c == '+').unwrap();
            let run = &text[start..];
            let end = run.find(|c: char| !(c.is_ascii_digit() || " +-".contains(c))).unwrap_or(run.len());
            run[..end].trim().to_string()
        }
        _ => text.split_whitespace().find(|w| w.len() > 8).unwrap_or(text).trim_start_matches("token=").to_string(),
    }
}

/// The pieces of every hit's secret that must appear nowhere: the secret itself and, for long
/// ones, its middle 12 characters (a secret cut in two is still a leak).
pub fn needles() -> Vec<String> {
    let mut out = Vec::new();
    for (kind, text) in hits() {
        let secret = secret_of(&kind, &text);
        if secret.len() >= 20 {
            let mid = secret.len() / 2 - 6;
            out.push(secret[mid..mid + 12].to_string());
        }
        out.push(secret);
    }
    out
}
