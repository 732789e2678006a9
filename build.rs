//! Compiles `proto/` with the protoc that `protoc-bin-vendored` ships, so a machine without
//! protoc builds the crate.
//!
//! Two passes over the one proto file: the messages alone (`OUT_DIR/wire`, included by
//! `src/wire`, the project's encoding for the store, the change log and transfers as much as
//! for the gRPC door), then the tonic client and server (`OUT_DIR/grpc`, included by
//! `src/grpc`), which refer to the messages of the first pass instead of defining their own.

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
    let (wire, grpc) = (out.join("wire"), out.join("grpc"));
    std::fs::create_dir_all(&wire)?;
    std::fs::create_dir_all(&grpc)?;
    let protos = ["proto/aop/v1/registry.proto"];
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(&wire)
        .compile_with_config(config(), &protos, &["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(".aop.v1", "crate::wire::pb")
        .out_dir(&grpc)
        .compile_with_config(config(), &protos, &["proto"])?;
    Ok(())
}
