//! Throughput of planning and streaming a build context as a tar (no daemon).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use slipway::runner::context;

fn bench_stream(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let files = 64;
    let size = 256 * 1024;
    for i in 0..files {
        std::fs::write(dir.path().join(format!("f{i}")), vec![i as u8; size]).unwrap();
    }
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("context");
    group.throughput(Throughput::Bytes((files * size) as u64));
    group.bench_function("plan_and_stream_16MiB", |b| {
        b.to_async(&rt).iter(|| async {
            let plan = context::plan(dir.path(), "Dockerfile").unwrap();
            let mut s = Box::pin(context::stream(
                plan,
                "Dockerfile",
                b"FROM scratch\nCOPY . /\n".to_vec(),
            ));
            let mut n = 0usize;
            while let Some(chunk) = s.next().await {
                n += chunk.unwrap().len();
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_stream);
criterion_main!(benches);
