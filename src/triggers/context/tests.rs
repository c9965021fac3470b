//! The trigger driven as the reconciler drives it: targets in, observations out, on
//! real directories with real file-system events.

use super::*;
use std::fs;
use std::time::Duration;

/// Long enough for an event, the quiet time and a digest; a missing observation is a
/// failure only after this.
const ARRIVES: Duration = Duration::from_secs(10);
/// How long "nothing comes" is watched for: several quiet times over.
const NOTHING: Duration = Duration::from_millis(1500);

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", "FROM scratch\nCOPY . /\n");
    write(dir.path(), ".dockerignore", "ignored\n");
    write(dir.path(), "app/main.txt", "v1");
    write(dir.path(), "ignored/cache", "c1");
    dir
}

fn target(root: &Path) -> ContextTarget {
    ContextTarget {
        root: root.to_path_buf(),
        dockerfile: "Dockerfile".into(),
    }
}

struct Harness {
    targets: watch::Sender<Targets>,
    rx: mpsc::Receiver<Observation>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start(contexts: &[(&str, &Path)]) -> Self {
        let (targets, trx) = watch::channel(Targets::default());
        let h = Self::with(targets, trx);
        h.set(contexts);
        h
    }

    fn with(targets: watch::Sender<Targets>, trx: watch::Receiver<Targets>) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let task = spawn(trx, tx);
        Self { targets, rx, task }
    }

    fn set(&self, contexts: &[(&str, &Path)]) {
        self.targets.send_modify(|t| {
            t.contexts = contexts
                .iter()
                .map(|(k, r)| (k.to_string(), target(r)))
                .collect();
        });
    }

    async fn next(&mut self) -> (String, String) {
        match tokio::time::timeout(ARRIVES, self.rx.recv()).await {
            Ok(Some(Observation::Context { key, digest })) => (key, digest),
            other => panic!("expected a context observation, got {other:?}"),
        }
    }

    async fn nothing(&mut self) {
        if let Ok(got) = tokio::time::timeout(NOTHING, self.rx.recv()).await {
            panic!("expected no observation, got {got:?}");
        }
    }
}

#[tokio::test]
async fn first_observation_is_the_current_digest() {
    let dir = context();
    let mut h = Harness::start(&[("ns/a", dir.path())]);
    let (key, d) = h.next().await;
    assert_eq!(key, "ns/a");
    assert_eq!(d, digest(dir.path(), "Dockerfile").unwrap());
    h.nothing().await;
}

#[tokio::test]
async fn editing_a_file_gives_a_new_digest_and_an_ignored_file_none() {
    let dir = context();
    let mut h = Harness::start(&[("ns/a", dir.path())]);
    let (_, first) = h.next().await;

    write(dir.path(), "ignored/cache", "c2");
    write(dir.path(), "ignored/new", "n");
    h.nothing().await;

    write(dir.path(), "app/main.txt", "v2");
    let (key, second) = h.next().await;
    assert_eq!(key, "ns/a");
    assert_ne!(first, second);
    assert_eq!(second, digest(dir.path(), "Dockerfile").unwrap());

    // Files in a directory created after the watch began are watched too.
    write(dir.path(), "app/deep/er/file.txt", "x");
    let (_, third) = h.next().await;
    assert_ne!(second, third);
}

#[tokio::test]
async fn a_burst_of_edits_gives_one_observation() {
    let dir = context();
    let mut h = Harness::start(&[("ns/a", dir.path())]);
    h.next().await;
    for i in 0..20 {
        write(dir.path(), &format!("app/f{i}.txt"), &i.to_string());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, d) = h.next().await;
    assert_eq!(d, digest(dir.path(), "Dockerfile").unwrap());
    h.nothing().await;
}

#[tokio::test]
async fn a_removed_target_is_no_longer_reported() {
    let dir = context();
    let mut h = Harness::start(&[("ns/a", dir.path())]);
    h.next().await;
    h.set(&[]);
    // Let the trigger see the new targets before the edit.
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(dir.path(), "app/main.txt", "v2");
    h.nothing().await;

    // Added again: forgotten means reported afresh.
    h.set(&[("ns/a", dir.path())]);
    let (key, _) = h.next().await;
    assert_eq!(key, "ns/a");
}

#[tokio::test]
async fn keys_sharing_a_context_each_get_it_and_a_newcomer_only_its_own() {
    let dir = context();
    let mut h = Harness::start(&[("ns/a", dir.path()), ("ns/b", dir.path())]);
    let mut got = [h.next().await, h.next().await];
    got.sort();
    assert_eq!(got[0].0, "ns/a");
    assert_eq!(got[1].0, "ns/b");
    assert_eq!(got[0].1, got[1].1);

    h.set(&[
        ("ns/a", dir.path()),
        ("ns/b", dir.path()),
        ("ns/c", dir.path()),
    ]);
    let (key, d) = h.next().await;
    assert_eq!((key.as_str(), d.as_str()), ("ns/c", got[0].1.as_str()));
    h.nothing().await;
}

#[tokio::test]
async fn nested_roots_both_see_changes_and_survive_the_outer_going() {
    let outer = context();
    let inner = outer.path().join("app");
    write(&inner, "Dockerfile", "FROM scratch\n");
    let mut h = Harness::start(&[("ns/outer", outer.path()), ("ns/inner", &inner)]);
    let mut first = [h.next().await, h.next().await];
    first.sort();

    write(&inner, "main.txt", "v2");
    let mut got = [h.next().await, h.next().await];
    got.sort();
    assert_eq!(got[0].0, "ns/inner");
    assert_eq!(got[1].0, "ns/outer");
    assert_ne!(got[0].1, first[0].1);

    // The outer resource goes; the inner root is watched on its own now.
    h.set(&[("ns/inner", &inner)]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(&inner, "main.txt", "v3");
    let (key, _) = h.next().await;
    assert_eq!(key, "ns/inner");
}

#[tokio::test]
async fn a_broken_context_is_reported_unusable_once_and_its_fix_again() {
    let dir = context();
    let mut h = Harness::start(&[("ns/a", dir.path())]);
    let (_, first) = h.next().await;

    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("app/out")).unwrap();
    let (_, broken) = h.next().await;
    assert!(broken.starts_with("unusable:"), "{broken}");
    // Still broken the same way: nothing more.
    write(dir.path(), "app/main.txt", "v2");
    h.nothing().await;

    fs::remove_file(dir.path().join("app/out")).unwrap();
    let (_, fixed) = h.next().await;
    assert_eq!(fixed, digest(dir.path(), "Dockerfile").unwrap());
    assert_ne!(fixed, first);
}

#[tokio::test]
async fn a_root_created_later_or_replaced_is_watched() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("ctx");
    let mut h = Harness::start(&[("ns/a", &root)]);
    let (_, missing) = h.next().await;
    assert!(missing.starts_with("unusable:"), "{missing}");
    h.nothing().await;

    fs::create_dir(&root).unwrap();
    write(&root, "Dockerfile", "FROM scratch\n");
    let (_, first) = h.next().await;

    fs::remove_dir_all(&root).unwrap();
    fs::create_dir(&root).unwrap();
    write(&root, "Dockerfile", "FROM scratch\nCOPY . /\n");
    let (_, second) = h.next().await;
    assert_ne!(first, second);

    // The new directory's watch works: an edit inside it is seen.
    write(&root, "file", "x");
    let (_, third) = h.next().await;
    assert_ne!(second, third);
}

#[tokio::test]
async fn stops_when_the_targets_go() {
    let dir = context();
    let (targets, trx) = watch::channel(Targets::default());
    let mut h = Harness::with(targets, trx);
    h.set(&[("ns/a", dir.path())]);
    h.next().await;
    drop(h.targets);
    tokio::time::timeout(ARRIVES, &mut h.task)
        .await
        .expect("the trigger stops")
        .unwrap();
}
