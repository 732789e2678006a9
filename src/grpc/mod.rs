//! The gRPC door: the `aop.v1.Registry` service, its client, and the conversions between
//! protobuf messages and domain types.
//!
//! The door decodes and validates requests into domain types ([`convert`]), asks the core,
//! and encodes the answer; every error reaches the wire through the one mapping in
//! [`status`]. Nothing here decides what an answer is.

pub mod client;
pub mod codec;
pub mod convert;
pub mod limit;
pub mod observe;
pub mod peers;
pub mod server;
pub mod service;
pub mod status;
pub mod update;

/// The messages of `wire::pb` and the tonic client and server generated on top of them.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    pub use crate::wire::pb::*;
    // The server decodes requests with our codec (`codec`), the client with prost's.
    include!(concat!(env!("OUT_DIR"), "/grpc_server/aop.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/grpc_client/aop.v1.rs"));
}

pub use client::{ChannelPool, ClientError, NodeClient, RegistryClient, connect, connect_with};
pub use peers::GrpcPeers;
pub use service::RegistryService;
