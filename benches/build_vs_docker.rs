//! slipway build vs the tools people use directly, on each builder engine, against
//! the real daemon, buildkitd and registry (run `scripts/bench.sh`).
//!
//! Engines and their reference tool:
//! - classic: `DOCKER_BUILDKIT=0 docker build` + `docker push`
//! - buildkit-daemon: `DOCKER_BUILDKIT=1 docker build --network host` + `docker push`
//! - buildkitd (when SLIPWAY_TEST_BUILDKIT_ADDR is set): `buildctl build` pushing
//!
//! Scenarios (P1 of issue 11):
//! - cold: ~200 MiB single-stage context, `--no-cache` and a changed file
//! - warm: the same context unchanged: caches and registry blobs reused
//! - multistage: two independent `RUN sleep 3` stages and an unused one, `--no-cache`
//! - rebuild: the multi-stage Dockerfile again, nothing changed
//!
//! and P1c on buildkitd: a second, empty buildkitd importing the registry cache the
//! first exported, against a warm local rebuild and a cold build.
//! Reports medians, ratios, and slipway's peak RSS (VmHWM).

mod support;
#[path = "build_vs_docker/tools.rs"]
mod tools;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::fixture::{FILE_BYTES, FILES, make_context};
use tools::{Buildkitd, Engine, median, run, run_measured};

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
    let slipway = std::env::var_os("SLIPWAY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/slipway")
        });
    assert!(slipway.exists(), "build it first: cargo build --release");
    let buildkitd = Buildkitd::from_env();
    let mut engines = vec![Engine::Classic, Engine::BuildkitDaemon];
    if let Some(b) = &buildkitd {
        engines.push(Engine::Buildkitd(b.clone()));
    }
    if let Ok(only) = std::env::var("BENCH_ENGINES") {
        engines.retain(|e| only.split(',').any(|o| o == e.name()));
    }

    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    make_context(&big);
    std::fs::write(big.join("Dockerfile"), "FROM scratch\nCOPY . /ctx\n").unwrap();
    let base = support::fixture::push_base(&tools::docker_client(), &registry, dir.path());
    let multi = dir.path().join("multi");
    std::fs::create_dir_all(&multi).unwrap();
    std::fs::write(multi.join("Dockerfile"), multi_stage(&base)).unwrap();
    println!(
        "context: {FILES} files of {} KiB = {} MiB; {runs} runs each",
        FILE_BYTES / 1024,
        FILES * FILE_BYTES / 1048576
    );

    for engine in &engines {
        for scenario in ["cold", "warm", "multistage", "rebuild"] {
            let ctx = if scenario == "cold" || scenario == "warm" {
                &big
            } else {
                &multi
            };
            let no_cache = scenario == "cold" || scenario == "multistage";
            let (mut theirs, mut ours, mut peak) = (Vec::new(), Vec::new(), 0u64);
            for i in 0..runs {
                if scenario == "cold" {
                    // a new layer each time: nothing cached, everything pushed
                    std::fs::write(ctx.join("nonce"), format!("{i}-{:?}", Instant::now())).unwrap();
                }
                let tag = format!("{}-{scenario}{i}", engine.name());
                let image = format!("{registry}/bench/reference:{tag}");
                let t = Instant::now();
                for mut cmd in engine.reference(ctx, &image, no_cache) {
                    run(&mut cmd);
                }
                theirs.push(t.elapsed());

                let mut cmd = engine.slipway(&slipway, &ctx.join("Dockerfile"));
                cmd.args([
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
                peak = peak.max(run_measured(&mut cmd));
                ours.push(t.elapsed());
            }
            report(engine.name(), scenario, &mut theirs, &mut ours, peak);
        }
    }
    if let Some(b) = &buildkitd {
        cache_import(b, &slipway, &registry, &multi, runs);
    }
}

fn report(engine: &str, scenario: &str, theirs: &mut [Duration], ours: &mut [Duration], peak: u64) {
    let (d, s) = (median(theirs), median(ours));
    println!(
        "{engine:<15} {scenario:<10}: reference median {:6.2}s, slipway median {:6.2}s, ratio {:.3}; slipway peak RSS {:.1} MiB",
        d.as_secs_f64(),
        s.as_secs_f64(),
        s.as_secs_f64() / d.as_secs_f64(),
        peak as f64 / 1024.0
    );
}

/// P1c: a second machine's first build with the registry cache imported, against a
/// warm rebuild on the machine that exported it and a cold build.
fn cache_import(first: &Buildkitd, slipway: &Path, registry: &str, ctx: &Path, runs: usize) {
    let (mut warm, mut imported, mut cold) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        // a new cache ref per run, so each second machine starts from nothing
        let cache = format!("{registry}/bench/cache:run{i}");
        let yaml = |tag: &str, no_cache: bool| {
            format!(
                "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {{name: p1c}}\nspec:\n  source: {{path: .}}\n  noCache: {no_cache}\n  output: {{registry: '{registry}', repository: bench/p1c, tags: [{tag}]}}\n  cache: {{ref: '{cache}', mode: max}}\n"
            )
        };
        let file = ctx.join("p1c.yaml");
        let build = |b: &Buildkitd, tag: &str, no_cache: bool| {
            std::fs::write(&file, yaml(tag, no_cache)).unwrap();
            let mut cmd = Engine::Buildkitd(b.clone()).slipway(slipway, &file);
            let t = Instant::now();
            run_measured(&mut cmd);
            t.elapsed()
        };
        cold.push(build(first, &format!("cold{i}"), true)); // exports the cache
        warm.push(build(first, &format!("warm{i}"), false));
        let second = Buildkitd::start_empty();
        imported.push(build(&second, &format!("imported{i}"), false));
        second.stop();
    }
    let (w, m, c) = (median(&mut warm), median(&mut imported), median(&mut cold));
    println!(
        "P1c buildkitd: cache imported on an empty buildkitd {:.2}s vs warm local rebuild {:.2}s (ratio {:.2}) vs cold build {:.2}s (ratio {:.2})",
        m.as_secs_f64(),
        w.as_secs_f64(),
        m.as_secs_f64() / w.as_secs_f64(),
        c.as_secs_f64(),
        m.as_secs_f64() / c.as_secs_f64()
    );
}

/// Two independent stages that each sleep, an unused one (the classic builder runs it), and a
/// final stage that needs both.
fn multi_stage(base: &str) -> String {
    format!(
        "FROM {base} AS one\nRUN sleep 3 && echo one > /one\n\
FROM {base} AS two\nRUN sleep 3 && echo two > /two\n\
FROM {base} AS unused\nRUN sleep 3 && echo unused > /unused\n\
FROM {base}\nCOPY --from=one /one /one\nCOPY --from=two /two /two\n"
    )
}
