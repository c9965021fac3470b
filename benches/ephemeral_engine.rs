//! `--executor-engine ephemeral`: what a private build daemon per build costs.
//! Start-up (spawn to first answer, median of BENCH_RUNS, default 10) of buildkitd
//! and dockerd, and a cached build's wall time on a fresh ephemeral buildkitd (start,
//! build with the registry cache, push, stop) against the shared buildkitd that
//! already holds the cache (median of BENCH_BUILDS, default 5), as a ratio.
//!
//! `cargo bench --bench ephemeral_engine` (or `--profile dev`: the time is the
//! daemons', not slipway's). Needs root, SLIPWAY_BUILDKIT_BIN (dir with buildkitd),
//! SLIPWAY_TEST_BUILDKIT_ADDR/SLIPWAY_TEST_BUILDKIT_DIR (the shared buildkitd and its
//! client certificates), SLIPWAY_TEST_REGISTRY, and dockerd on PATH.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slipway::executor::engine::{Daemon, EngineArgs, Ephemeral, which};
use slipway::runner::{BuildRequest, Builder, BuildkitdArgs, Runner};

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn startup(daemon: Daemon, runs: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let e = Ephemeral::start(daemon.clone(), &EngineArgs::default(), dir.path())
            .await
            .expect("the daemon starts");
        out.push(e.startup);
        e.stop().await;
    }
    out
}

/// One build of the bench context on `buildkitd` at `args`.
async fn build(args: &BuildkitdArgs, ctx: &Path) -> Duration {
    let reg = env("SLIPWAY_TEST_REGISTRY");
    let spec = slipway::yaml::from_str(&format!(
        "source: {{path: ctx}}\noutput: {{registry: '{reg}', repository: slipway-bench/ephemeral}}\n\
cache: {{ref: '{reg}/slipway-bench/ephemeral:buildcache', mode: max}}"
    ))
    .unwrap();
    let req = BuildRequest {
        key: "bench/ephemeral".into(),
        spec,
        base_dir: Some(ctx.to_path_buf()),
        auth: Arc::new(Default::default()),
        previous: None,
        secrets: Default::default(),
    };
    let begun = Instant::now();
    let runner = Runner::connect_with(None, Builder::Buildkitd, args)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    runner
        .run(req, tx, Default::default())
        .await
        .expect("the build succeeds");
    begun.elapsed()
}

#[tokio::main]
async fn main() {
    let Some(runs) = support::size("ephemeral_engine", "BENCH_RUNS", 10) else {
        return;
    };
    let builds = std::env::var("BENCH_BUILDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let buildkitd = PathBuf::from(env("SLIPWAY_BUILDKIT_BIN")).join("buildkitd");
    let bk = startup(Daemon::Buildkitd(buildkitd.clone()), runs).await;
    println!(
        "ephemeral buildkitd start-up: median {:?} of {runs} (min {:?}, max {:?})",
        median(bk.clone()),
        bk.iter().min().unwrap(),
        bk.iter().max().unwrap()
    );
    if let Some(dockerd) = which("dockerd") {
        let dd = startup(Daemon::Dockerd(dockerd), runs).await;
        println!(
            "ephemeral dockerd start-up: median {:?} of {runs} (min {:?}, max {:?})",
            median(dd.clone()),
            dd.iter().min().unwrap(),
            dd.iter().max().unwrap()
        );
    }

    // a context of two layers (1 MiB and a line), cached in the registry by a first build
    let base = tempfile::tempdir().unwrap();
    let ctx = base.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY data.bin /data.bin\nCOPY small.txt /small.txt\n",
    )
    .unwrap();
    std::fs::write(ctx.join("data.bin"), vec![7u8; 1 << 20]).unwrap();
    std::fs::write(ctx.join("small.txt"), "cached\n").unwrap();
    let dir = PathBuf::from(env("SLIPWAY_TEST_BUILDKIT_DIR"));
    let shared = BuildkitdArgs {
        addr: Some(env("SLIPWAY_TEST_BUILDKIT_ADDR")),
        ca: Some(dir.join("ca.pem")),
        cert: Some(dir.join("cert.pem")),
        key: Some(dir.join("key.pem")),
        default_cache_ref: None,
    };
    build(&shared, base.path()).await; // warms the shared daemon and the registry cache
    let mut on_shared = Vec::new();
    let mut on_ephemeral = Vec::new();
    for _ in 0..builds {
        on_shared.push(build(&shared, base.path()).await);
        let sandbox = tempfile::tempdir().unwrap();
        let begun = Instant::now();
        let e = Ephemeral::start(
            Daemon::Buildkitd(buildkitd.clone()),
            &EngineArgs::default(),
            sandbox.path(),
        )
        .await
        .unwrap();
        let args = BuildkitdArgs {
            addr: Some(e.addr.clone()),
            ..Default::default()
        };
        build(&args, base.path()).await;
        e.stop().await;
        on_ephemeral.push(begun.elapsed());
    }
    let (s, e) = (median(on_shared), median(on_ephemeral));
    println!(
        "cached build (median of {builds}): shared buildkitd {s:?}, ephemeral buildkitd \
(start, build from the registry cache, push, stop) {e:?}: overhead ratio {:.2}",
        e.as_secs_f64() / s.as_secs_f64()
    );
}
