//! Fuzz target: opening arbitrary and edited legacy session ids (no forgery opens) (`sekisho::fuzzing::session_token`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sekisho::fuzzing::session_token(data));
