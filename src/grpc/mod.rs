//! The gRPC door: the `aop.v1.Registry` service, its client, and the conversions between
//! protobuf messages and domain types.
//!
//! The door decodes and validates requests into domain types ([`convert`]), asks the core,
//! and encodes the answer; every error reaches the wire through the one mapping in
//! [`status`]. Nothing here decides what an answer is.

pub mod client;
pub mod convert;
pub mod limit;
pub mod service;
pub mod status;
pub mod update;
pub mod upstream;

/// Generated protobuf and tonic code for `proto/aop/v1/registry.proto`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("aop.v1");
}

pub use client::{ClientError, RegistryClient, connect};
pub use service::RegistryService;
