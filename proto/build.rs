//! Generates the gRPC code from `proto/*.proto` with a vendored protoc, so a
//! fresh clone builds without a system `protoc` (a `PROTOC` env var wins).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = match std::env::var_os("PROTOC") {
        Some(p) => p.into(),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    println!("cargo:rerun-if-changed=proto");
    // sqlx::migrate! embeds migrations/: a new file must rebuild this crate.
    println!("cargo:rerun-if-changed=migrations");
    let files = [
        "proto/common.proto",
        "proto/sipd.proto",
        "proto/mediad.proto",
        "proto/twiliod.proto",
        "proto/notifyd.proto",
    ];
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure().compile_with_config(config, &files, &["proto"])?;
    Ok(())
}
