//! `slipway logs -f` latency, the real binaries end to end: `slipway watch` runs a
//! build whose RUN step prints a line every BENCH_INTERVAL_MS, and `slipway logs -f`
//! follows its kept log. Each printed line is stamped when it reaches our end of the
//! pipe, against
//! - the timestamp the log gives it (when slipway wrote it to the kept file: the
//!   follower's own latency), and
//! - the build's own clock (`/proc/uptime` in the RUN step, CLOCK_BOOTTIME here, 10 ms
//!   resolution: what a user sees from the build printing to the line on screen,
//!   the daemon's and the builder's streaming included).
//!
//! `cargo bench --profile dev --bench logs_follow` with SLIPWAY_TEST_REGISTRY set,
//! against the real Docker daemon. Env: BENCH_LINES (default 100), BENCH_INTERVAL_MS
//! (default 50), BENCH_BUILDER (`--builder`, default auto).

mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

fn main() {
    let Some(lines) = support::size("logs_follow", "BENCH_LINES", 100) else {
        return;
    };
    let interval: u64 = std::env::var("BENCH_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let registry = std::env::var("SLIPWAY_TEST_REGISTRY").expect("SLIPWAY_TEST_REGISTRY");
    let builder = std::env::var("BENCH_BUILDER").unwrap_or_else(|_| "auto".into());
    let slipway = env!("CARGO_BIN_EXE_slipway");

    let dir = tempfile::tempdir().unwrap();
    let base = support::fixture::push_base(&support::fixture::docker(), &registry, dir.path());
    let folder = dir.path().join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    // the first line after 3 s: `logs -f` is following by then
    let script = format!(
        "sleep 3; i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo \\\"line-$i $(cut -d' ' -f1 /proc/uptime)\\\"; sleep {}; done",
        interval as f64 / 1000.0
    );
    std::fs::write(
        folder.join("follow.yaml"),
        format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {{name: follow}}\nspec:\n  source:\n    inline: {{dockerfile: \"FROM {base}\\nRUN {script}\\n\"}}\n  noCache: true\n  output: {{registry: '{registry}', repository: bench/logs-follow, tags: [latest]}}\n"
        ),
    )
    .unwrap();

    let watch_log = dir.path().join("watch.log");
    let mut watch = Command::new(slipway)
        .arg("watch")
        .arg(&folder)
        .args(["--builder", &builder])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&watch_log).unwrap())
        .spawn()
        .unwrap();
    let kept = folder.join(".slipway/logs/default/follow/1.log");
    let t = Instant::now();
    while !kept.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no build started: {}",
            std::fs::read_to_string(&watch_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut follower = Command::new(slipway)
        .args(["logs", "follow", "-f", "--dir"])
        .arg(&folder)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut printed = Vec::new();
    for line in std::io::BufReader::new(follower.stdout.take().unwrap()).lines() {
        printed.push((SystemTime::now(), boottime(), line.unwrap()));
    }
    let status = follower.wait().unwrap();
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(status.success(), "slipway logs -f failed");
    let last = &printed.last().expect("lines printed").2;
    assert!(
        last.contains("succeeded") && last.contains("@sha256:"),
        "follow ends with the digest: {last}"
    );

    let (mut follow_lat, mut e2e) = (Vec::new(), Vec::new());
    for (at, boot, line) in &printed {
        let Some((ts, text)) = line.split_once(' ') else {
            continue;
        };
        // the RUN step's lines, as the builder relays them (`#5 0.123 line-7 123.45`)
        let Some(rest) = text.split("line-").nth(1) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        if words.next().and_then(|n| n.parse::<usize>().ok()).is_none() {
            continue; // the RUN step's own command line
        }
        let written = chrono::DateTime::parse_from_rfc3339(ts).unwrap();
        let written = SystemTime::from(written.with_timezone(&chrono::Utc));
        follow_lat.push(at.duration_since(written).unwrap_or_default());
        if let Some(up) = words.next().and_then(|u| u.parse::<f64>().ok()) {
            e2e.push(Duration::from_secs_f64((boot - up).max(0.0)));
        }
    }
    assert!(
        follow_lat.len() >= lines,
        "{} of {lines} lines printed",
        follow_lat.len()
    );
    report("written to the kept log -> printed", &mut follow_lat);
    report("printed by the build (RUN) -> printed", &mut e2e);
    println!(
        "logs_follow: {lines} lines, one every {interval} ms, builder {builder}; profile {}",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        }
    );
}

fn report(what: &str, v: &mut [Duration]) {
    v.sort();
    let pct = |p: usize| v[(v.len() - 1) * p / 100];
    println!(
        "logs_follow: {what}: median {:.1} ms, p95 {:.1} ms, max {:.1} ms over {} lines",
        ms(pct(50)),
        ms(pct(95)),
        ms(pct(100)),
        v.len()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CLOCK_BOOTTIME, the clock `/proc/uptime` reads, in seconds.
fn boottime() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer for clock_gettime
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
