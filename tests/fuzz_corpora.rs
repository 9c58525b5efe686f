//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) and every recorded crash
//! (`fuzz/regressions/<target>/`) through the harness its `cargo fuzz` target calls
//! (`sekisho::fuzzing`), as ordinary tests on the stable toolchain: what the fuzzer once
//! reached, and what once broke, keeps holding.

use std::path::PathBuf;

fn replay(target: &str, harness: fn(&[u8])) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) {
            files.extend(entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    assert!(!files.is_empty(), "no corpus for {target}");
    for path in &files {
        let data = std::fs::read(path).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| harness(&data)) {
            let why =
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("{target}: {} fails: {}", path.display(), why.unwrap_or_default());
        }
    }
}

#[test]
fn envelope_corpus() {
    replay("envelope", sekisho::fuzzing::envelope);
}

#[test]
fn sse_decoder_corpus() {
    replay("sse_decoder", sekisho::fuzzing::sse_decoder);
}

#[test]
fn session_token_corpus() {
    replay("session_token", sekisho::fuzzing::session_token);
}

#[test]
fn config_load_corpus() {
    replay("config_load", sekisho::fuzzing::config_load);
}
