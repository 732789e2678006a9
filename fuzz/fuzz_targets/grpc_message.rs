//! Fuzz target: `aop::fuzzing::grpc_message` (its doc says what it feeds and what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aop::fuzzing::grpc_message(data));
