//! The Docker daemon's BuildKit takes the context by file sync through our session:
//! a rebuild of an unchanged context sends no file data, a changed file alone is
//! sent. It counts the bytes this process sent, which builds running alongside would
//! add to: it has the daemon alone (`daemon_alone`).

use std::io::Read;

use crate::common::*;
use slipway::runner::{BuildOutcome, Builder, Runner, context_bytes_sent};

const MIB: u64 = 1 << 20;
const FILES: usize = 20;

fn random(len: u64) -> Vec<u8> {
    let mut data = vec![0; len as usize];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("random bytes");
    data
}

/// One build of `fx`'s `ctx` on the daemon's BuildKit, and the file bytes it sent.
async fn build(runner: &Runner, fx: &Fixture, key: &str) -> (BuildOutcome, u64) {
    let spec = spec(&format!(
        "source: {{path: ctx}}\noutput: {{registry: '{}', repository: slipway-test/filesync}}",
        registry()
    ));
    let req = request(key, spec, Some(fx.dir.path().to_path_buf()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let before = context_bytes_sent();
    let out = runner
        .run(req, tx, Default::default())
        .await
        .expect("the build succeeds");
    (out, context_bytes_sent() - before)
}

#[tokio::test]
async fn a_rebuild_of_an_unchanged_context_sends_no_file_data() {
    let base = ensure_base().await;
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!("FROM {base}\nCOPY data /data\nRUN cat /data/* | wc -c\n"),
    );
    for i in 0..FILES {
        std::fs::create_dir_all(fx.path("ctx/data")).unwrap();
        std::fs::write(fx.path(&format!("ctx/data/{i}")), random(MIB)).unwrap();
    }
    let runner = Runner::connect(None, Builder::BuildkitDaemon)
        .await
        .expect("docker daemon reachable");
    // a key of its own: the daemon's copy of an earlier run's context is not ours
    let key = format!("test/filesync-{}", uuid::Uuid::new_v4());
    let _daemon = daemon_alone().await;

    let (first, sent) = build(&runner, &fx, &key).await;
    assert!(
        sent >= FILES as u64 * MIB,
        "the first build sends the whole context by file sync: {sent} bytes"
    );
    let (again, sent) = build(&runner, &fx, &key).await;
    assert!(
        sent < 64 * 1024,
        "an unchanged context sends no file data again: {sent} bytes"
    );
    assert_eq!(again.digest, first.digest, "the same image");

    std::fs::write(fx.path("ctx/data/7"), random(MIB)).unwrap();
    let (changed, sent) = build(&runner, &fx, &key).await;
    assert!(
        (MIB..2 * MIB).contains(&sent),
        "only the changed file is sent: {sent} bytes"
    );
    assert_ne!(changed.digest, first.digest, "the change is in the image");
}
