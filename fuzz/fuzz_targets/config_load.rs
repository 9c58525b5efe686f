//! Fuzz target: loading and validating a configuration from arbitrary TOML text (`sekisho::fuzzing::config_load`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sekisho::fuzzing::config_load(data));
