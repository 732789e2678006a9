//! The interop stage: tests that drive outside programs (`dig`, Unbound, the DNS-AID client,
//! headless Chromium, the MCP Python SDK, swarms). Every test here is `#[ignore]`d, so plain
//! `cargo test` (which needs nothing but the toolchain) skips them; `.ci/interop` installs
//! the programs and runs each module with `cargo test --test interop -- --ignored`.

mod dns_clients;
mod mcp_clients;
mod status_page;
