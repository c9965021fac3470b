//! The event loop as a user sees it: resources from an in-memory source, builds on a
//! backend the test finishes, statuses as the source received them.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{oneshot, watch};

use super::*;
use crate::api::{DockerBuild, DockerBuildSpec, DockerBuildStatus};
use crate::runner::{BuildOutcome, BuildRequest, Cancel, Events};
use crate::sources::memory::Memory;

/// What happened, in order: `start KEY HASH`, `cancel KEY HASH`, `write KEY PHASE`,
/// `blocked KEY`, `release KEY`.
type Log = crate::sources::memory::Log;

/// Builds that succeed at once, or (`hold`) only when the test lets them, or
/// end when cancelled; with `stopping`, a cancelled build takes until that gate
/// opens to stop (a daemon stopping a container).
struct Gated {
    hold: bool,
    stopping: Option<watch::Receiver<bool>>,
    log: Log,
    gates: StdMutex<HashMap<(String, String), oneshot::Sender<()>>>,
}

#[async_trait]
impl Backend for Gated {
    async fn run(&self, req: BuildRequest, _: Events, cancel: Cancel) -> Result<BuildOutcome> {
        let (key, hash) = (req.key.clone(), req.spec.hash());
        self.log.lock().unwrap().push(format!("start {key} {hash}"));
        if self.hold {
            let (tx, rx) = oneshot::channel();
            self.gates
                .lock()
                .unwrap()
                .insert((key.clone(), hash.clone()), tx);
            tokio::select! {
                _ = cancel.cancelled() => {
                    self.log.lock().unwrap().push(format!("cancel {key} {hash}"));
                    if let Some(gate) = &self.stopping {
                        let _ = gate.clone().wait_for(|open| *open).await;
                        self.log.lock().unwrap().push(format!("stopped {key}"));
                    }
                    return Err(Error::Cancelled("cancelled".into()));
                }
                _ = rx => {}
            }
        }
        Ok(BuildOutcome {
            digest: "sha256:1".into(),
            image: format!("r.example/{key}@sha256:1"),
            pushed_tags: vec![format!("r.example/{key}:latest")],
            ..Default::default()
        })
    }

    fn name(&self) -> &'static str {
        "gated"
    }
}

/// A valid resource `test/NAME` from `NAME.yaml`; `version` changes its spec.
fn resource(name: &str, version: u32) -> Resource {
    let yaml = format!(
        "source: {{inline: {{dockerfile: \"FROM scratch\"}}}}\n\
         output: {{registry: 'r.example:5000', repository: test/{name}}}\n\
         buildArgs: {{V: '{version}'}}"
    );
    let spec: DockerBuildSpec = crate::yaml::from_str(&yaml).unwrap();
    let mut build = DockerBuild::new(name, spec);
    build.metadata.namespace = Some("test".into());
    Resource {
        build,
        origin: format!("{name}.yaml"),
        base_dir: None,
        warnings: vec![],
    }
}

struct Harness {
    source: Arc<Memory>,
    backend: Arc<Gated>,
    log: Log,
    events: Option<mpsc::UnboundedSender<SourceEvent>>,
    gate: watch::Sender<bool>,
}

/// `hold`: builds wait for [`Harness::finish`]; `slow`: the key whose status writes
/// wait for the gate; `stopping`: cancelled builds wait for the gate.
fn harness(initial: Vec<Resource>, hold: bool, slow: Option<&str>, stopping: bool) -> Harness {
    let log = Log::default();
    let (gate, gate_rx) = watch::channel(false);
    let (source, events) = Memory::new(initial);
    let mut source = source.logging(log.clone());
    if let Some(key) = slow {
        source = source.slow(key, gate_rx.clone());
    }
    let source = Arc::new(source);
    let backend = Arc::new(Gated {
        hold,
        stopping: stopping.then_some(gate_rx),
        log: log.clone(),
        gates: StdMutex::default(),
    });
    Harness {
        source,
        backend,
        log,
        events: Some(events),
        gate,
    }
}

impl Harness {
    fn start(&self, once: bool) -> tokio::task::JoinHandle<Result<Summary>> {
        let settings = Settings {
            once,
            ..Default::default()
        };
        let (s, b) = (self.source.clone(), self.backend.clone());
        tokio::spawn(async move { run(s, b, settings).await })
    }

    fn send(&self, ev: SourceEvent) {
        self.events.as_ref().unwrap().send(ev).unwrap();
    }

    /// The source ends, and with it the run.
    fn close(&mut self) {
        self.events = None;
    }

    /// How the run ended; a run that does not end within a long while fails the test.
    async fn ended(run: tokio::task::JoinHandle<Result<Summary>>) -> Summary {
        let r = tokio::time::timeout(Duration::from_secs(10), run).await;
        r.expect("the run never ended").unwrap().unwrap()
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (for long enough that only a loop that never gets there fails) until
    /// `line` is in the log.
    async fn until(&self, line: &str) {
        for _ in 0..2000 {
            if self.log().iter().any(|l| l == line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("never saw {line:?}; the log: {:#?}", self.log());
    }

    /// Lets the held build of `res` (at its current spec) succeed.
    fn finish(&self, res: &Resource) {
        let slot = (res.key(), res.build.spec.hash());
        let tx = self.backend.gates.lock().unwrap().remove(&slot);
        tx.expect("that build is held").send(()).unwrap();
    }

    /// The phases written for `key`, in order, repeats folded.
    fn phases(&self, key: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in self.log() {
            let Some(p) = l.strip_prefix(&format!("write {key} ")) else {
                continue;
            };
            if out.last().map(String::as_str) != Some(p) {
                out.push(p.to_string());
            }
        }
        out
    }

    fn last_status(&self, key: &str) -> DockerBuildStatus {
        self.source.last_status(key).unwrap()
    }

    fn starts(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| l.starts_with("start "))
            .collect()
    }
}

/// True when `seen` runs through `order` forwards (a status replaced before it was
/// sent may be skipped: the writer sends the latest), ending at its last.
fn in_order(seen: &[String], order: &[&str]) -> bool {
    let ranks: Option<Vec<usize>> = seen
        .iter()
        .map(|p| order.iter().position(|o| o == p))
        .collect();
    ranks.is_some_and(|r| r.windows(2).all(|w| w[0] < w[1]) && r.last() == Some(&(order.len() - 1)))
}

#[tokio::test]
async fn a_new_resource_is_built_once_and_its_status_goes_queued_building_succeeded() {
    let a = resource("a", 1);
    let h = harness(vec![a.clone()], true, None, false);
    let run = h.start(true);
    h.until("write test/a Building").await;
    h.finish(&a);
    let summary = Harness::ended(run).await;
    assert_eq!(summary.succeeded, 1, "{summary:?}");
    assert_eq!(
        h.starts(),
        [format!("start test/a {}", a.build.spec.hash())]
    );
    let phases = h.phases("test/a");
    assert!(
        in_order(&phases, &["Queued", "Building", "Succeeded"])
            && phases.contains(&"Building".into()),
        "{phases:?}"
    );
    let s = h.last_status("test/a");
    assert_eq!(s.image.as_deref(), Some("r.example/test/a@sha256:1"));
    assert_eq!(s.spec_hash, Some(a.build.spec.hash()));
}

#[tokio::test]
async fn a_spec_change_during_a_build_cancels_it_and_builds_the_new_spec_once() {
    let (v1, v2) = (resource("a", 1), resource("a", 2));
    let (h1, h2) = (v1.build.spec.hash(), v2.build.spec.hash());
    let h = harness(vec![v1.clone()], true, None, false);
    let run = h.start(true);
    h.until("write test/a Building").await;
    // told twice, as a watch may repeat itself
    for _ in 0..2 {
        let ev = SourceEvent::Applied(Box::new(v2.clone()));
        h.send(ev);
    }
    h.until(&format!("start test/a {h2}")).await;
    h.finish(&v2);
    let summary = Harness::ended(run).await;
    assert_eq!(summary.succeeded, 1, "{summary:?}");
    assert_eq!(
        h.starts(),
        [format!("start test/a {h1}"), format!("start test/a {h2}")]
    );
    assert!(
        h.log().contains(&format!("cancel test/a {h1}")),
        "{:#?}",
        h.log()
    );
    // the old build's cancellation is never shown as the resource's outcome
    let phases = h.phases("test/a");
    assert!(
        !phases.iter().any(|p| p == "Cancelled" || p == "Failed"),
        "{phases:?}"
    );
    let s = h.last_status("test/a");
    assert_eq!((s.phase, s.spec_hash), (Some(Phase::Succeeded), Some(h2)));
}

#[tokio::test]
async fn a_deleted_resource_s_build_is_cancelled_and_released_once_stopped_without_a_status() {
    let a = resource("a", 1);
    let mut h = harness(vec![a.clone()], true, None, true);
    let run = h.start(false);
    h.until("write test/a Building").await;
    let writes = h.phases("test/a").len();
    let ev = SourceEvent::Deleted {
        key: a.key(),
        origin: a.origin.clone(),
    };
    h.send(ev);
    h.until(&format!("cancel test/a {}", a.build.spec.hash()))
        .await;
    // a release sent with the cancellation would be there well within this
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !h.log().iter().any(|l| l == "release test/a"),
        "{:#?}",
        h.log()
    );
    h.gate.send_replace(true);
    h.until("release test/a").await;
    h.close();
    Harness::ended(run).await;
    let log = h.log();
    let at = |line: &str| log.iter().position(|l| l == line);
    // the source (a Kubernetes finalizer) lets go only once the build has stopped
    assert!(at("stopped test/a") < at("release test/a"), "{log:#?}");
    // nothing written into a resource that is gone
    assert_eq!(h.phases("test/a").len(), writes, "{log:#?}");
}

#[tokio::test]
async fn a_bad_spec_fails_with_a_clear_message_and_the_others_still_build() {
    let good = resource("good", 1);
    let mut bad = resource("bad", 1);
    bad.build.spec.source.url = Some("https://example.org/ctx.tar.gz".into());
    let h = harness(vec![bad.clone(), good.clone()], false, None, false);
    let summary = Harness::ended(h.start(true)).await;
    assert_eq!((summary.succeeded, summary.failed), (1, 1), "{summary:?}");
    assert_eq!(
        h.starts(),
        [format!("start test/good {}", good.build.spec.hash())]
    );
    let s = h.last_status("test/bad");
    assert_eq!(s.phase, Some(Phase::Failed));
    assert_eq!(
        s.message.as_deref(),
        Some("spec.source needs exactly one of git, url, path, inline; url and inline are set")
    );
    assert_eq!(s.conditions[0].reason.as_deref(), Some("InvalidSpec"));
    assert_eq!(h.last_status("test/good").phase, Some(Phase::Succeeded));
}

#[tokio::test]
async fn a_status_write_that_hangs_holds_up_no_other_resource() {
    // `a` is reconciled first (by file name): its first write hangs
    let (a, b) = (resource("a", 1), resource("b", 1));
    let mut h = harness(vec![a.clone(), b.clone()], false, Some("test/a"), false);
    let run = h.start(false);
    h.until("blocked test/a").await;
    h.until("write test/b Succeeded").await;
    assert!(h.phases("test/a").is_empty(), "{:#?}", h.log());
    // once it answers, `a`'s statuses land, in order, the latest last
    h.gate.send_replace(true);
    h.until("write test/a Succeeded").await;
    let phases = h.phases("test/a");
    assert!(
        in_order(&phases, &["Queued", "Building", "Succeeded"]),
        "{phases:?}"
    );
    h.close();
    Harness::ended(run).await;
}
