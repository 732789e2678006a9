//! Fuzz target: `aop::fuzzing::stored_values` (its doc says what it feeds and what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aop::fuzzing::stored_values(data));
