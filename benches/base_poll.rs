//! External base polling: registry requests per `--base-poll` interval for 1,000
//! resources on 10 distinct bases (goal: 10, one manifest HEAD per base), counted at
//! a stand-in registry over real HTTP; and the time the poller's pure schedule takes
//! to sync 1,000 target updates and pick an interval's looks.
//!
//! `cargo bench --bench base_poll`; `cargo test` skips it.
//! Env: BENCH_RESOURCES (default 1000), BENCH_INTERVAL_MS (default 300).

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::routing::any;
use criterion::Criterion;
use slipway::registry::DockerConfig;
use slipway::triggers::poll::Schedule;
use slipway::triggers::{Observation, Targets, spawn_base_poller};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

const BASES: usize = 10;
const INTERVALS: u32 = 5;

/// Requests the stand-in registry answered, as `METHOD path`.
type Log = Arc<Mutex<Vec<String>>>;

fn main() {
    let Some(resources) = support::size("base_poll", "BENCH_RESOURCES", 1000) else {
        return;
    };
    let every = Duration::from_millis(
        std::env::var("BENCH_INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    );
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(count_requests(resources, every));

    let mut c = Criterion::default().configure_from_args();
    c.bench_function(
        "schedule: 1,000 target updates + one interval's looks",
        |b| b.iter(|| schedule_interval(resources)),
    );
    c.final_summary();
}

/// A registry that answers every manifest HEAD with a digest, and logs it.
async fn stand_in_registry(log: Log) -> String {
    async fn manifest(State(log): State<Log>, req: Request) -> HeaderMap {
        let path = req.uri().path().to_string();
        log.lock().unwrap().push(format!("{} {path}", req.method()));
        let mut h = HeaderMap::new();
        let digest = format!("sha256:{:064x}", path.len());
        h.insert("Docker-Content-Digest", digest.parse().unwrap());
        h
    }
    let app = Router::new()
        .route("/v2/{*rest}", any(manifest))
        .with_state(log);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr.to_string()
}

fn base(registry: &str, i: usize) -> String {
    format!("{registry}/bench/base-{}:latest", i % BASES)
}

async fn count_requests(resources: usize, every: Duration) {
    let log = Log::default();
    let registry = stand_in_registry(log.clone()).await;
    let (tx, targets) = watch::channel(Targets::default());
    let (out, mut seen) = mpsc::channel(1024);
    let poller = spawn_base_poller(targets, every, reqwest::Client::new(), out);
    // the resources arrive one by one, as the reconciler reads them, each with its
    // own credentials
    for i in 0..resources {
        tx.send_modify(|t| {
            t.bases
                .insert(base(&registry, i), Arc::new(DockerConfig::default()));
        });
        tokio::task::yield_now().await;
    }
    let mut first = 0;
    while first < BASES.min(resources) {
        match seen.recv().await {
            Some(Observation::Base { .. }) => first += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // the window starts half an interval after the first looks, so that none of the
    // next looks (on the interval's grid) falls on its edges
    tokio::time::sleep(every / 2).await;
    let at_start = std::mem::take(&mut *log.lock().unwrap());
    tokio::time::sleep(every * INTERVALS).await;
    let steady = std::mem::take(&mut *log.lock().unwrap());
    poller.abort();

    let mut per_ref: BTreeMap<&str, u32> = BTreeMap::new();
    for r in &steady {
        *per_ref.entry(r.as_str()).or_default() += 1;
    }
    let heads = steady.iter().filter(|r| r.starts_with("HEAD ")).count();
    println!(
        "base_poll: {resources} resources on {BASES} bases, --base-poll {} ms",
        every.as_millis()
    );
    println!(
        "  while the resources arrived: {} registry requests (goal {BASES})",
        at_start.len()
    );
    println!(
        "  over {INTERVALS} intervals: {} requests ({heads} manifest HEADs) = {:.1} per interval (goal {BASES}); per base per interval: min {:.1}, max {:.1}; no further observation: {}",
        steady.len(),
        steady.len() as f64 / f64::from(INTERVALS),
        per_ref.values().min().copied().unwrap_or(0) as f64 / f64::from(INTERVALS),
        per_ref.values().max().copied().unwrap_or(0) as f64 / f64::from(INTERVALS),
        seen.try_recv().is_err(),
    );
}

/// The schedule's share of one interval: sync after each of `resources` target
/// updates (10 distinct bases), then take what is due.
fn schedule_interval(resources: usize) -> usize {
    let keys: Vec<String> = (0..BASES).map(|i| base("r", i)).collect();
    let now = Instant::now();
    let mut s = Schedule::new(Duration::from_secs(600));
    for i in 0..resources {
        s.sync(&keys[..=i.min(BASES - 1)], now);
    }
    s.take_due(now).len()
}
