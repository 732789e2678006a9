//! The integration tests, one binary (one link step) for `cargo test`: each module is one
//! area, driven from outside the crate through its public API, real sockets and the `aop`
//! binary. Set-up they share is in `support`.

mod support;

mod admin;
mod cli;
mod crash;
mod deploy;
mod dns;
mod federation;
mod fuzz_inputs;
mod gateway;
mod gateway_admin;
mod gateway_auth;
mod gateway_tasks;
mod gateway_watch;
mod health;
mod https;
mod membership;
mod node_grpc;
mod overload;
mod registration;
mod reliability;
mod request_ids;
mod search;
mod store_backup;
mod tls;
mod update_retry;
mod upstream_reconnect;
mod zone_dump;
mod zone_file;
