//! A base's new digest reaching its leaves: a family of 10 bases × 1,000 leaves each
//! (inline sources, every status up to date), in-process with an in-memory source
//! and a backend that builds nothing. Base 0's spec changes, its build ends with a
//! new digest, and every leaf built FROM it must be queued again.
//! Measured: from the base's build ending to the last of its leaves reaching Queued
//! (goal ≤ 1 s); that only base 0's leaves were queued; the process's peak RSS.
//!
//! `cargo bench --bench cascade`; `cargo test` skips it. Env: BENCH_LEAVES (per
//! base, default 1000).

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use slipway::Result;
use slipway::api::{BaseImage, DockerBuild, DockerBuildSpec, DockerBuildStatus, Phase};
use slipway::backends::Backend;
use slipway::queue::QueueConfig;
use slipway::reconciler::{Settings, run};
use slipway::runner::{BuildOutcome, BuildRequest, Cancel, Events};
use slipway::sources::memory::Memory;
use slipway::sources::{Resource, SourceEvent};

const BASES: usize = 10;
const REGISTRY: &str = "127.0.0.1:5000";
const OLD: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
/// A leaf counts as queued at its first Queued or Building status: the status writer
/// sends the latest, so a leaf taken by a free slot at once may skip Queued (as may
/// base 0, which is why the wait counts base 0's leaves, not every key).
const QUEUED: &[Phase] = &[Phase::Queued, Phase::Building];
const NEW: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn main() {
    let Some(leaves) = support::size("cascade", "BENCH_LEAVES", 1000) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(bench(leaves));
}

fn resource(name: &str, dockerfile: &str, base: Option<usize>) -> Resource {
    let yaml = format!(
        "source: {{inline: {{dockerfile: \"{dockerfile}\"}}}}\noutput: {{registry: '{REGISTRY}', repository: bench/{name}}}"
    );
    let spec: DockerBuildSpec = slipway::yaml::from_str(&yaml).unwrap();
    let mut b = DockerBuild::new(name, spec);
    b.metadata.namespace = Some("bench".into());
    let image = format!("{REGISTRY}/bench/{name}");
    b.status = Some(DockerBuildStatus {
        phase: Some(Phase::Succeeded),
        spec_hash: Some(b.spec.hash()),
        image_digest: Some(OLD.into()),
        image: Some(format!("{image}@{OLD}")),
        base_images: base
            .map(|j| {
                vec![BaseImage {
                    image: format!("{REGISTRY}/bench/base-{j}:latest"),
                    digest: OLD.into(),
                }]
            })
            .unwrap_or_default(),
        ..Default::default()
    });
    Resource {
        build: b,
        origin: format!("{name}.yaml"),
        base_dir: None,
        warnings: vec![],
    }
}

/// Base builds end at once with the new digest (noting when); leaves never end.
struct Instant0 {
    base_done: Mutex<Option<Instant>>,
}

#[async_trait]
impl Backend for Instant0 {
    async fn run(&self, req: BuildRequest, _: Events, cancel: Cancel) -> Result<BuildOutcome> {
        if req.key.starts_with("bench/base-") {
            *self.base_done.lock().unwrap() = Some(Instant::now());
            return Ok(BuildOutcome {
                digest: NEW.into(),
                image: format!("{REGISTRY}/bench/x@{NEW}"),
                ..Default::default()
            });
        }
        cancel.cancelled().await;
        Err(slipway::Error::Cancelled("bench over".into()))
    }
    fn name(&self) -> &'static str {
        "bench"
    }
}

async fn bench(leaves: usize) {
    let mut all = Vec::new();
    for j in 0..BASES {
        all.push(resource(
            &format!("base-{j}"),
            "FROM scratch\\nLABEL base=1\\n",
            None,
        ));
    }
    for j in 0..BASES {
        for i in 0..leaves {
            let df = format!("FROM {REGISTRY}/bench/base-{j}\\nLABEL n={i}\\n");
            all.push(resource(&format!("leaf-{j}-{i:05}"), &df, Some(j)));
        }
    }
    let mut changed = all[0].clone();
    changed.build.spec.labels.insert("v".into(), "2".into());
    let (source, tx) = Memory::new(all);
    let source = Arc::new(source);
    let backend = Arc::new(Instant0 {
        base_done: Mutex::new(None),
    });
    let settings = Settings {
        queue: QueueConfig {
            concurrency: 2,
            max_auto: 1,
            ..Default::default()
        },
        ..Default::default()
    };
    let start = Instant::now();
    let ctrl = tokio::spawn(run(source.clone(), backend.clone(), settings));
    // the first sync: nothing is queued (all up to date)
    tokio::time::sleep(Duration::from_secs(2)).await;
    let synced_queued = source.reached("bench/", QUEUED);
    tx.send(SourceEvent::Applied(Box::new(changed))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = source.reached("bench/leaf-0-", QUEUED);
        if n >= leaves || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // a little longer: no leaf of another base may follow
    tokio::time::sleep(Duration::from_millis(500)).await;
    let done = backend
        .base_done
        .lock()
        .unwrap()
        .expect("the base was built");
    let queued = source.first(QUEUED);
    let leaf_times: Vec<Instant> = queued
        .iter()
        .filter(|(k, _)| k.starts_with("bench/leaf-0-"))
        .map(|(_, t)| *t)
        .collect();
    let others = queued
        .keys()
        .filter(|k| k.starts_with("bench/leaf-") && !k.starts_with("bench/leaf-0-"))
        .count();
    let last = leaf_times.iter().max().copied().unwrap_or(done);
    println!(
        "cascade: {} resources ({BASES} bases x {leaves} leaves); first sync queued {synced_queued}",
        BASES * (leaves + 1)
    );
    println!(
        "cascade: base 0's new digest -> {} of its {leaves} leaves queued in {:.3} s (goal <= 1 s); leaves of other bases queued: {others}",
        leaf_times.len(),
        last.saturating_duration_since(done).as_secs_f64()
    );
    println!(
        "cascade: peak RSS {:.1} MiB (whole bench process, {:.1} s)",
        peak_rss_mib(),
        start.elapsed().as_secs_f64()
    );
    drop(tx);
    ctrl.abort();
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
