//! Compiles `proto/` with the protoc that `protoc-bin-vendored` ships, so a machine without
//! protoc builds the crate.
//!
//! Three passes over the one proto file: the messages alone (`OUT_DIR/wire`, included by
//! `src/wire`, the project's encoding for the store, the change log and transfers as much as
//! for the gRPC door), then the tonic server (`OUT_DIR/grpc_server`) and client
//! (`OUT_DIR/grpc_client`), both included by `src/grpc` and referring to the messages of the
//! first pass instead of defining their own. The server and client are generated apart
//! because they decode with different codecs: the server with `grpc::codec::RequestCodec`
//! (a request that does not decode is INVALID_ARGUMENT, the client's fault), the client with
//! prost's own (a response that does not decode is the peer's failure).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let config = || {
        let mut config = tonic_prost_build::Config::new();
        config.protoc_executable(&protoc);
        config
    };
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let (wire, server, client) = (
        out.join("wire"),
        out.join("grpc_server"),
        out.join("grpc_client"),
    );
    for dir in [&wire, &server, &client] {
        std::fs::create_dir_all(dir)?;
    }
    let protos = ["proto/aop/v1/registry.proto"];
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(&wire)
        .compile_with_config(config(), &protos, &["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .codec_path("crate::grpc::codec::RequestCodec")
        .extern_path(".aop.v1", "crate::wire::pb")
        .out_dir(&server)
        .compile_with_config(config(), &protos, &["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .extern_path(".aop.v1", "crate::wire::pb")
        .out_dir(&client)
        .compile_with_config(config(), &protos, &["proto"])?;
    Ok(())
}
