//! The interop stage: tests that drive outside programs (`dig`, Unbound, the DNS-AID client,
//! headless Chromium, the MCP Python SDK, swarms). Every test here is `#[ignore]`d, so plain
//! `cargo test` (which needs nothing but the toolchain) skips them; `.ci/interop` installs
//! the programs and runs each module with `cargo test --test interop -- --ignored
//! --test-threads=1 <module>::`.

// The integration tests' set-up; these tests use a part of it.
#[path = "../it/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

mod dns_clients;
mod mcp_clients;
mod status_page;
