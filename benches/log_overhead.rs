//! What keeping a build's log costs on the 200 MiB build (build_vs_docker's cold
//! scenario: its context, `--no-cache`, a changed file, pushed to the registry): the
//! one-shot build path (`commands::build_once`) with a `LogStore` and without, runs
//! interleaved so drift in the daemon or the registry hits both alike. Wall clock, and
//! slipway's own CPU time (user + system of this process), which other load on the
//! machine hardly moves.
//!
//! `cargo bench --profile dev --bench log_overhead` with SLIPWAY_TEST_REGISTRY set,
//! against the real Docker daemon. Env: BENCH_RUNS (default 5 pairs), BENCH_BUILDER
//! (`--builder`, default auto). Each build leaves a new 200 MiB layer in the daemon's
//! build cache and the registry (scripts/bench.sh's registry is thrown away after).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use slipway::commands::{BackendArgs, DockerfileArgs, build_once, one_shot_requests};
use slipway::logs::{LogStore, Retention};
use support::fixture::{FILE_BYTES, FILES, make_context};

/// `slipway build`'s own flags, so the backend is set up as the CLI sets it up.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    df: DockerfileArgs,
}

fn main() {
    let Some(runs) = support::size("log_overhead", "BENCH_RUNS", 5) else {
        return;
    };
    let registry = std::env::var("SLIPWAY_TEST_REGISTRY").expect("SLIPWAY_TEST_REGISTRY");
    let builder = std::env::var("BENCH_BUILDER").unwrap_or_else(|_| "auto".into());
    let cli = Cli::parse_from(["log_overhead", "--builder", &builder]);

    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("big");
    make_context(&ctx);
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /ctx\n").unwrap();
    let store = LogStore {
        root: dir.path().join("logs"),
        retention: Retention::default(),
        max_bytes: slipway::logs::DEFAULT_MAX_BYTES,
    };
    println!(
        "log_overhead: context {FILES} files of {} KiB = {} MiB, builder {builder}, {runs} runs each (interleaved)",
        FILE_BYTES / 1024,
        FILES * FILE_BYTES / 1048576
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut with, mut without, mut pairs) = (Vec::new(), Vec::new(), Vec::<f64>::new());
    let (mut cpu_with, mut cpu_without) = (Vec::new(), Vec::new());
    // one untimed build first: the daemon's and registry's first-build costs
    build(&rt, &cli, &ctx, &registry, "warmup", Some(&store));
    for i in 0..runs {
        // alternate which goes first, so a trend over the run is shared
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        let mut pair = [Duration::ZERO; 2];
        for keep in order {
            let tag = format!("{}{i}", if keep { "kept" } else { "none" });
            let cpu = cpu_time();
            let took = build(&rt, &cli, &ctx, &registry, &tag, keep.then_some(&store));
            let cpu = cpu_time() - cpu;
            println!(
                "  run {i} logs {:<4}: {:.2}s, CPU {:.3}s",
                keep_word(keep),
                took.as_secs_f64(),
                cpu.as_secs_f64()
            );
            if keep {
                &mut cpu_with
            } else {
                &mut cpu_without
            }
            .push(cpu);
            if keep { &mut with } else { &mut without }.push(took);
            pair[usize::from(!keep)] = took;
        }
        pairs.push(pair[0].as_secs_f64() / pair[1].as_secs_f64());
    }
    pairs.sort_by(f64::total_cmp);
    let (w, n) = (median(&mut with), median(&mut without));
    let log = newest_log(&store.root.join("bench/overhead"));
    println!(
        "log_overhead: median with logs {:.2}s | without {:.2}s | ratio {:.3} (min {:.2}s | {:.2}s)",
        w.as_secs_f64(),
        n.as_secs_f64(),
        w.as_secs_f64() / n.as_secs_f64(),
        with[0].as_secs_f64(),
        without[0].as_secs_f64(),
    );
    let (cw, cn) = (median(&mut cpu_with), median(&mut cpu_without));
    println!(
        "log_overhead: slipway's CPU, median with logs {:.3}s | without {:.3}s | ratio {:.3}",
        cw.as_secs_f64(),
        cn.as_secs_f64(),
        cw.as_secs_f64() / cn.as_secs_f64()
    );
    println!(
        "log_overhead: ratio within each back-to-back pair: median {:.3}, min {:.3}, max {:.3}",
        pairs[pairs.len() / 2],
        pairs[0],
        pairs[pairs.len() - 1]
    );
    println!(
        "log_overhead: one kept log is {} lines, {} bytes",
        log.lines().count(),
        log.len()
    );
}

fn keep_word(keep: bool) -> &'static str {
    if keep { "kept" } else { "off" }
}

/// One cold build of the context through the one-shot path, timed.
fn build(
    rt: &tokio::runtime::Runtime,
    cli: &Cli,
    ctx: &Path,
    registry: &str,
    tag: &str,
    logs: Option<&LogStore>,
) -> Duration {
    // a new layer each time: nothing cached, everything pushed
    std::fs::write(ctx.join("nonce"), format!("{tag}-{:?}", Instant::now())).unwrap();
    let file = ctx.join("build.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {{name: overhead, namespace: bench}}\nspec:\n  source: {{path: .}}\n  noCache: true\n  output: {{registry: '{registry}', repository: bench/log-overhead, tags: ['{tag}']}}\n"
        ),
    )
    .unwrap();
    let requests = one_shot_requests(&file, &cli.df, None).unwrap();
    let t = Instant::now();
    let results = rt
        .block_on(build_once(requests, &cli.backend, logs.cloned()))
        .unwrap();
    let took = t.elapsed();
    for (key, r) in results {
        if let Err(e) = r {
            panic!("{key}: {e}");
        }
    }
    took
}

fn newest_log(dir: &Path) -> String {
    let newest = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    std::fs::read_to_string(newest).unwrap()
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes it
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
