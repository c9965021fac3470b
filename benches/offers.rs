//! The framework's offer decisions: 1,000 queued builds against a batch of 200
//! offers, from the event to the protobuf calls ready for the wire. Goal: < 10 ms
//! per batch.

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use prost::Message;
use slipway::mesos::proto::v1::{self, AgentId, FrameworkId, Offer, OfferId, Resource, value};
use slipway::mesos::scheduler::{Core, CoreConfig, TaskSpec, TaskUpdate};
use tokio::sync::mpsc;

const BUILDS: usize = 1000;
const OFFERS: usize = 200;

fn offer(i: usize, cpus: f64, mem: f64) -> Offer {
    let res = |name: &str, v: f64| {
        let mut r = Resource {
            name: name.into(),
            scalar: Some(value::Scalar { value: v }),
            allocation_info: Some(v1::resource::AllocationInfo {
                role: Some("builds".into()),
            }),
            ..Default::default()
        };
        r.set_type(value::Type::Scalar);
        r
    };
    Offer {
        id: OfferId {
            value: format!("offer-{i}"),
        },
        framework_id: FrameworkId { value: "fw".into() },
        agent_id: AgentId {
            value: format!("agent-{i}"),
        },
        hostname: format!("agent-{i}.example"),
        resources: vec![res("cpus", cpus), res("mem", mem), res("disk", 10_000.0)],
        ..Default::default()
    }
}

/// A subscribed core with `BUILDS` builds waiting, each of `cpus`.
fn queued(cpus: f64) -> (Core, Vec<mpsc::UnboundedReceiver<TaskUpdate>>) {
    let cfg = CoreConfig {
        role: "builds".into(),
        settle: Duration::ZERO,
        ..Default::default()
    };
    let mut core = Core::new(cfg, Some("fw".into()));
    core.on_subscribed("fw".into(), Instant::now());
    let mut rxs = Vec::with_capacity(BUILDS);
    for i in 0..BUILDS {
        let key = format!("team-{}/app-{i}", i % 20);
        let hash = "sha256:0123456789abcdef";
        let (tx, rx) = mpsc::unbounded_channel();
        core.launch(
            TaskSpec {
                key: key.clone(),
                spec_hash: hash.into(),
                task_id: slipway::mesos::task::task_id(&key, hash, i as u32),
                cpus,
                mem_mib: 512.0,
                payload: vec![b'x'; 600],
                previous: None,
                base_layers: Vec::new(),
            },
            tx,
        );
        rxs.push(rx);
    }
    (core, rxs)
}

/// One batch of `OFFERS` offers against `BUILDS` queued builds of `cpus` each, from
/// the event to the encoded calls.
fn bench_batch(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    cpus: f64,
) {
    c.bench_function(name, |b| {
        b.iter_batched(
            || {
                (
                    queued(cpus),
                    (0..OFFERS)
                        .map(|i| offer(i, 4.0, 8192.0))
                        .collect::<Vec<_>>(),
                )
            },
            |((mut core, _rxs), offers)| {
                let calls = core.on_offers(offers, Instant::now());
                let bytes: usize = calls.iter().map(|c| c.encode_to_vec().len()).sum();
                assert!(bytes > 0);
                (core, calls)
            },
            BatchSize::LargeInput,
        )
    });
}

fn batch(c: &mut Criterion) {
    let mut g = c.benchmark_group("offer_batch");
    // 200 offers of 4 CPUs: three 1-CPU builds (plus executors) each, 600 launched
    bench_batch(&mut g, "1000_builds_200_offers_launch", 1.0);
    // nothing fits: every build is checked against every offer and told why
    bench_batch(&mut g, "1000_builds_200_offers_none_fit", 64.0);
    g.finish();
}

criterion_group!(benches, batch);
criterion_main!(benches);
