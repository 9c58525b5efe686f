//! Fuzz target: JSON-RPC envelope and batch framing, the shallow params view and canonical arguments (`sekisho::fuzzing::envelope`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sekisho::fuzzing::envelope(data));
