//! The first sync of `slipway watch --once` over a folder of 10,000 resource files:
//! how long from start to exit, and the process's peak memory. Goal: ≤ 5 s each.
//!
//! Two folders, each of 10 bases and leaves whose `FROM` names one of them:
//! - waiting: the bases cannot be built (a `CPUS` line without a value: InvalidSpec),
//!   so every leaf is reconciled, finds its base unbuilt and waits; nothing is built.
//! - up to date: every file's status says Succeeded for its current spec hash.
//!
//! `cargo bench --bench watch_sync` (scripts/bench.sh runs it with the release
//! binary); `cargo test` skips it. Needs the Docker daemon (the local backend
//! connects to it at start) but builds nothing.
//!
//! Env: BENCH_FILES (default 10000), SLIPWAY_BIN (default target/release/slipway).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slipway::api::DockerBuildSpec;

const BASES: usize = 10;
const REGISTRY: &str = "127.0.0.1:5000";

fn main() {
    let Some(n) = support::size("watch_sync", "BENCH_FILES", 10_000) else {
        return;
    };
    let bin = support::release_bin();
    for up_to_date in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path(), n, up_to_date);
        measure(&bin, dir.path(), n, up_to_date);
    }
}

/// Base `j` (of [`BASES`]) or leaf `i`: its spec, as the file spells it.
fn spec(name: &str, dockerfile: &str) -> (String, DockerBuildSpec) {
    let yaml = format!(
        "source: {{inline: {{dockerfile: \"{dockerfile}\"}}}}\noutput: {{registry: '{REGISTRY}', repository: bench/{name}}}"
    );
    let spec: DockerBuildSpec = slipway::yaml::from_str(&yaml).unwrap();
    (yaml, spec)
}

fn populate(dir: &Path, n: usize, up_to_date: bool) {
    let base_file = if up_to_date {
        "FROM scratch\\nLABEL base=1\\n"
    } else {
        // a directive without its value: the base is InvalidSpec, never built
        "FROM scratch\\nCPUS\\n"
    };
    for i in 0..n {
        let (name, dockerfile) = if i < BASES {
            (format!("base-{i}"), base_file.to_string())
        } else {
            (
                format!("leaf-{i:05}"),
                format!("FROM {REGISTRY}/bench/base-{}\\nLABEL n={i}\\n", i % BASES),
            )
        };
        let (yaml, spec) = spec(&name, &dockerfile);
        let indented: String = yaml.lines().map(|l| format!("  {l}\n")).collect();
        let mut text = format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata:\n  name: {name}\n  namespace: bench\nspec:\n{indented}"
        );
        if up_to_date {
            text.push_str(&format!(
                "status:\n  phase: Succeeded\n  specHash: {}\n  message: pushed 1 tag\n",
                spec.hash()
            ));
        }
        std::fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
    }
}

/// Runs `watch --once` to its end, sampling its peak RSS as it goes.
fn measure(bin: &Path, dir: &Path, n: usize, up_to_date: bool) {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("watch.log");
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args(["watch", "--once"])
        .arg(dir)
        .env("SLIPWAY_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("slipway starts");
    let status_path = format!("/proc/{}/status", child.id());
    let mut hwm_kib = 0;
    let exit = loop {
        // VmHWM only grows: the last sample before the exit is the peak, near enough
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(v) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        {
            hwm_kib = hwm_kib.max(v);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(1200) {
            let _ = child.kill();
            panic!("watch --once still running after 20 minutes");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = start.elapsed();
    let out = child.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let builds = text.matches("build started").count();
    let case = if up_to_date {
        "up to date"
    } else {
        "leaves waiting for unbuilt bases"
    };
    println!(
        "watch_sync ({case}): {n} files, `watch --once` took {:.2} s (goal ≤ 5 s); peak RSS {:.1} MiB; \
         {summary} ({exit}); builds started: {builds}",
        took.as_secs_f64(),
        hwm_kib as f64 / 1024.0,
    );
    let want = if up_to_date {
        format!("{n} succeeded, 0 failed, 0 not built")
    } else {
        format!("0 succeeded, {BASES} failed, {} not built", n - BASES)
    };
    assert_eq!(summary, want, "{text}");
    assert_eq!(builds, 0, "nothing may be built:\n{text}");
}
