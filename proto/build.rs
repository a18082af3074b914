//! Compiles the `.proto` files with a vendored `protoc`, so that a fresh
//! machine needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &[
            "proto/sdn/southbound/v1/southbound.proto",
            "proto/sdn/management/v1/management.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
