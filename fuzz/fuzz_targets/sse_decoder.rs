//! Fuzz target: the upstream SSE decoder under arbitrary chunking (`sekisho::fuzzing::sse_decoder`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sekisho::fuzzing::sse_decoder(data));
