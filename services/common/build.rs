//! Generates the Rust code of `proto/*.proto` with a vendored `protoc`, so no system
//! protoc is needed, and keeps the encoded descriptor set for gRPC server reflection.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let protos: Vec<PathBuf> = ["users", "products", "orders", "query", "events", "admin"]
        .iter()
        .map(|name| root.join(format!("{name}.proto")))
        .collect();
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().file_descriptor_set_path(out.join("cascade_descriptor.bin")).compile_with_config(
        config,
        &protos,
        &[root],
    )?;
    Ok(())
}
