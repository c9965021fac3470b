//! What the bench binaries that time the real `slipway` share.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod fixture;

/// The run's size from `var` (default `default`), or None when cargo did not ask
/// for a benchmark run (`cargo test --all-targets` builds and starts benches too).
pub fn size(name: &str, var: &str, default: usize) -> Option<usize> {
    if !std::env::args().any(|a| a == "--bench") {
        println!("{name}: run with `cargo bench --bench {name}`");
        return None;
    }
    Some(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// The release binary to time: `SLIPWAY_BIN`, else `target/release/slipway`.
pub fn release_bin() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var("SLIPWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target/release/slipway"));
    assert!(
        bin.exists(),
        "{} missing: cargo build --release first",
        bin.display()
    );
    bin
}
