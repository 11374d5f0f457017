//! Compiles `proto/launch/v1/*.proto` with protox (a protobuf compiler in Rust),
//! so building the workspace needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "launch/v1/types.proto",
        "launch/v1/agent.proto",
        "launch/v1/control.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    // The descriptor set itself, for tests that walk every RPC (the control
    // plane's authorization table must name each one).
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("launch_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    for file in files {
        println!("cargo:rerun-if-changed=proto/{file}");
    }
    Ok(())
}
