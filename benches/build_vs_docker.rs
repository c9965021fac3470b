//! slipway build vs `docker build && docker push` on the same ~200 MB context, cold
//! and warm, against the real daemon and registry (run `scripts/bench.sh`).
//!
//! cold: `--no-cache` and a changed file, so every layer is built and pushed anew.
//! warm: nothing changed, so the daemon's cache and the registry's blobs are reused.
//! Reports medians, their ratio, and slipway's peak RSS (VmHWM) over the run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FILES: usize = 200;
const FILE_BYTES: usize = 1024 * 1024;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("build_vs_docker: skipped (run it with scripts/bench.sh)");
        return;
    }
    let registry = std::env::var("SLIPWAY_TEST_REGISTRY")
        .expect("SLIPWAY_TEST_REGISTRY (scripts/bench.sh sets it)");
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let slipway = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/slipway");
    assert!(slipway.exists(), "build it first: cargo build --release");

    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path();
    make_context(ctx);
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /ctx\n").unwrap();
    println!(
        "context: {FILES} files of {} KiB = {} MiB",
        FILE_BYTES / 1024,
        FILES * FILE_BYTES / 1048576
    );

    for mode in ["cold", "warm"] {
        let mut docker_times = Vec::new();
        let mut slipway_times = Vec::new();
        let mut peak_kib = 0u64;
        for i in 0..runs {
            if mode == "cold" {
                // a new layer each time: nothing cached, everything pushed
                std::fs::write(
                    ctx.join("nonce"),
                    format!("{mode}-{i}-{:?}", Instant::now()),
                )
                .unwrap();
            }
            let no_cache = mode == "cold";
            let tag = format!("{mode}{i}");

            let image = format!("{registry}/bench/docker:{tag}");
            let mut build = Command::new("docker");
            build
                .env("DOCKER_BUILDKIT", "0")
                .args(["build", "-q", "-t", &image]);
            if no_cache {
                build.arg("--no-cache");
            }
            build.arg(ctx);
            let t = Instant::now();
            run(&mut build);
            run(Command::new("docker").args(["push", "-q", &image]));
            docker_times.push(t.elapsed());

            let mut cmd = Command::new(&slipway);
            cmd.arg("build").arg(ctx.join("Dockerfile")).args([
                "--registry",
                &registry,
                "--repository",
                "bench/slipway",
                "--tag",
                &tag,
            ]);
            if no_cache {
                cmd.arg("--no-cache");
            }
            let t = Instant::now();
            let peak = run_measured(&mut cmd);
            slipway_times.push(t.elapsed());
            peak_kib = peak_kib.max(peak);
        }
        let d = median(&mut docker_times);
        let s = median(&mut slipway_times);
        println!(
            "{mode}: docker build+push median {:.2}s, slipway build median {:.2}s, ratio {:.3} ({runs} runs each); slipway peak RSS {:.1} MiB",
            d.as_secs_f64(),
            s.as_secs_f64(),
            s.as_secs_f64() / d.as_secs_f64(),
            peak_kib as f64 / 1024.0
        );
    }
}

/// Files of pseudo-random bytes (incompressible, like real binaries).
fn make_context(dir: &Path) {
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

fn run(cmd: &mut Command) {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs and returns the child's peak resident set (VmHWM, KiB), sampled until exit.
fn run_measured(cmd: &mut Command) -> u64 {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{cmd:?} failed");
            return peak;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
