//! Compiles `proto/` with protox (no system `protoc`) and writes the encoded descriptor set
//! next to the generated code, for server reflection. The client and server stubs are
//! generated only for the `client` and `server` features.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "sockgate/v1/common.proto",
    "sockgate/v1/control.proto",
    "sockgate/v1/hooks.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let fds = protox::compile(PROTOS, [&proto_root])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("sockgate_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_server(env::var_os("CARGO_FEATURE_SERVER").is_some())
        .build_client(env::var_os("CARGO_FEATURE_CLIENT").is_some())
        // Payloads and attachments are shared between watchers and recipients: `Bytes`
        // clones are reference counts, not copies.
        .bytes(".")
        // Smaller per-call buffers than tonic's 8 KiB (see `src/codec.rs`).
        .codec_path("crate::codec::SmallBufferCodec")
        .compile_fds(fds)?;
    Ok(())
}
