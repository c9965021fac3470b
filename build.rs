//! Compiles the Mesos v1 protobuf subset under `proto/` into Rust with prost.
//!
//! The `.proto` files are parsed by protox, a pure-Rust compiler, so no system
//! `protoc` is needed. Output lands in `OUT_DIR` as `mesos.v1.rs`,
//! `mesos.v1.scheduler.rs` and `mesos.v1.executor.rs`, included by
//! `src/mesos/proto.rs`.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");

    let fds = protox::compile(
        [
            "mesos/v1/mesos.proto",
            "mesos/v1/scheduler/scheduler.proto",
            "mesos/v1/executor/executor.proto",
        ],
        ["proto"],
    )?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
