//! The fixtures the build benchmarks share: the ~200 MiB context of build_vs_docker's
//! cold/warm scenarios, and a busybox base image in the registry for RUN steps.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const FILES: usize = 200;
pub const FILE_BYTES: usize = 1024 * 1024;

/// Files of pseudo-random bytes (incompressible, like real binaries).
pub fn make_context(dir: &Path) {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for i in 0..FILES {
        let sub = dir.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&sub).unwrap();
        let mut buf = vec![0u8; FILE_BYTES];
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(sub.join(format!("f{i}.bin")), buf).unwrap();
    }
}

/// A busybox base image in the registry, for RUN steps on every engine, built and
/// pushed with the `docker` client given.
pub fn push_base(docker: &Path, registry: &str, dir: &Path) -> String {
    let ctx = dir.join("base");
    std::fs::create_dir_all(&ctx).unwrap();
    let busybox = std::env::var("SLIPWAY_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".into());
    std::fs::copy(busybox, ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .unwrap();
    let image = format!("{registry}/bench/base:latest");
    run(Command::new(docker)
        .args(["build", "-q", "-t", &image])
        .arg(&ctx));
    run(Command::new(docker).args(["push", "-q", &image]));
    image
}

/// Debian's docker.io client (20.10): it builds with BuildKit without buildx, which
/// a newer client earlier on PATH refuses to do. BENCH_DOCKER overrides.
pub fn docker() -> PathBuf {
    std::env::var_os("BENCH_DOCKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let debian = PathBuf::from("/usr/bin/docker");
            if debian.exists() {
                debian
            } else {
                "docker".into()
            }
        })
}

fn run(cmd: &mut Command) {
    let out = cmd.stdout(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
