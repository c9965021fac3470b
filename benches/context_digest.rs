//! The `path`-context trigger's cost: digesting a whole context (plan with
//! `.dockerignore`, then every file's content), warm page cache.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use slipway::triggers::context::digest;

/// `files` files of `size` bytes spread over 100 directories, plus an ignored one.
fn fixture(root: &Path, files: usize, size: usize) {
    std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
    std::fs::write(root.join(".dockerignore"), "ignored\n").unwrap();
    std::fs::create_dir(root.join("ignored")).unwrap();
    std::fs::write(root.join("ignored/big"), vec![1u8; size]).unwrap();
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 100));
        std::fs::create_dir_all(&dir).unwrap();
        // Distinct content per file, so nothing can be shortcut.
        let mut data = vec![(i % 251) as u8; size];
        data[..8].copy_from_slice(&(i as u64).to_le_bytes());
        std::fs::write(dir.join(format!("f{i}")), data).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("context_digest");
    group.sample_size(10);
    for (name, files, size) in [
        ("200MiB_2000_files", 2_000, 200 * 1024 * 1024 / 2_000),
        ("10000_small_files", 10_000, 512),
    ] {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path(), files, size);
        group.throughput(Throughput::Bytes((files * size) as u64));
        group.bench_function(name, |b| {
            b.iter(|| black_box(digest(dir.path(), "Dockerfile").unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
