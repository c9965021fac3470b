//! Kept build logs: what writing one costs per line (every event of a build goes
//! through [`BuildLog::event`]), and how long `slipway logs -f` takes from a line
//! written by the build to the line printed (in process; benches/logs_follow.rs
//! times the real binaries).
//!
//! `cargo bench --bench build_log`; `cargo test` skips it.
//! Env: BENCH_LINES (default 200: lines followed, one every 10 ms).

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slipway::logs::{LogStore, Redactor, Retention, follow};
use slipway::runner::BuildEvent;

/// The follower's output: each chunk's arrival time and text.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(Instant, String)>>>);

impl std::io::Write for Seen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let now = Instant::now();
        let mut seen = self.0.lock().unwrap();
        for line in String::from_utf8_lossy(buf).lines() {
            seen.push((now, line.to_string()));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn main() {
    let Some(lines) = support::size("build_log", "BENCH_LINES", 200) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore {
        root: dir.path().to_path_buf(),
        retention: Retention::default(),
        max_bytes: slipway::logs::DEFAULT_MAX_BYTES,
    };

    // cost per line: a typical output line, with one secret to mask
    let redactor = Redactor::new(["registry-password-123".to_string()]);
    let mut log = store.open("bench", "cost", 1, redactor).unwrap();
    let n = 100_000;
    let line = "#12 3.456 Step output: compiling module 42 of 180 (src/lib.rs)".to_string();
    let start = Instant::now();
    for _ in 0..n {
        log.event(&BuildEvent::Log(line.clone()));
    }
    let per_line = start.elapsed() / n;
    println!(
        "build_log: {n} lines written in {:?}: {per_line:?} per line",
        start.elapsed()
    );

    // follow latency
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut log = store
        .open("bench", "follow", 1, Redactor::default())
        .unwrap();
    let path = log.path().to_path_buf();
    let seen = Seen::default();
    let mut out = seen.clone();
    let follower = rt.spawn(async move { follow(&path, &mut out, true).await });
    let mut written = Vec::with_capacity(lines);
    for i in 0..lines {
        written.push(Instant::now());
        log.event(&BuildEvent::Log(format!("line-{i}")));
        std::thread::sleep(Duration::from_millis(10));
    }
    log.finish(&Err(slipway::Error::Cancelled("bench over".into())));
    rt.block_on(follower).unwrap().unwrap();
    let seen = seen.0.lock().unwrap();
    let mut latencies: Vec<Duration> = (0..lines)
        .map(|i| {
            let want = format!(" line-{i}");
            let (at, _) = seen
                .iter()
                .find(|(_, l)| l.ends_with(&want))
                .expect("every line is printed");
            at.duration_since(written[i])
        })
        .collect();
    latencies.sort();
    let pct = |p: usize| latencies[(latencies.len() - 1) * p / 100];
    println!(
        "build_log: follow latency over {lines} lines: median {:?}, p90 {:?}, max {:?}",
        pct(50),
        pct(90),
        pct(100)
    );
}
