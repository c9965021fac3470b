//! The writer against an in-memory sink whose writes can be held up per resource.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc};

use super::{Sink, StatusWriter, Work};
use crate::Result;
use crate::api::DockerBuildStatus;
use crate::sources::Notice;

#[derive(Default)]
struct Memory {
    /// Everything done, in order: `key:what`.
    log: Mutex<Vec<String>>,
    /// Writes of these keys wait for a permit each.
    gates: Mutex<HashMap<String, Arc<Semaphore>>>,
    in_flight: Mutex<(usize, usize)>,
    started: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

impl Memory {
    fn gate(&self, key: &str) -> Arc<Semaphore> {
        let g = Arc::new(Semaphore::new(0));
        self.gates.lock().unwrap().insert(key.into(), g.clone());
        g
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn of(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key}:");
        self.log()
            .into_iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(String::from))
            .collect()
    }
}

#[async_trait]
impl Sink for Memory {
    async fn write(&self, key: &str, _origin: &str, status: &DockerBuildStatus) -> Result<()> {
        {
            let mut f = self.in_flight.lock().unwrap();
            f.0 += 1;
            f.1 = f.1.max(f.0);
        }
        if let Some(tx) = &*self.started.lock().unwrap() {
            let _ = tx.send(key.to_string());
        }
        let gate = self.gates.lock().unwrap().get(key).cloned();
        if let Some(g) = gate {
            g.acquire().await.unwrap().forget();
        }
        let msg = status.message.clone().unwrap_or_default();
        self.log.lock().unwrap().push(format!("{key}:{msg}"));
        self.in_flight.lock().unwrap().0 -= 1;
        Ok(())
    }
    async fn notify(&self, key: &str, _origin: &str, notice: &Notice) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{key}:event {}", notice.reason));
    }
    async fn release(&self, key: &str, _origin: &str) -> Result<()> {
        self.log.lock().unwrap().push(format!("{key}:released"));
        Ok(())
    }
    fn settled(&self, key: &str) {
        self.log.lock().unwrap().push(format!("{key}:settled"));
    }
}

fn status(msg: &str) -> Work {
    Work::Status(Box::new(DockerBuildStatus {
        message: Some(msg.into()),
        ..Default::default()
    }))
}

fn setup(concurrency: usize) -> (Arc<Memory>, StatusWriter, mpsc::UnboundedReceiver<String>) {
    let mem = Arc::new(Memory::default());
    let (tx, rx) = mpsc::unbounded_channel();
    *mem.started.lock().unwrap() = Some(tx);
    let w = StatusWriter::new(mem.clone(), concurrency);
    (mem, w, rx)
}

async fn flushed(w: &StatusWriter) {
    tokio::time::timeout(Duration::from_secs(5), w.flush())
        .await
        .expect("the writer finishes");
}

#[tokio::test]
async fn a_newer_status_replaces_an_unsent_one_and_order_is_kept() {
    let (mem, w, mut started) = setup(4);
    let gate = mem.gate("ns/a");
    w.send("ns/a", "uid", status("Queued"));
    assert_eq!(started.recv().await.as_deref(), Some("ns/a"));
    // the first write hangs (a paused API server): these pile up behind it
    for m in ["Building", "step 1", "Pushing", "Succeeded"] {
        w.send("ns/a", "uid", status(m));
    }
    gate.add_permits(10);
    flushed(&w).await;
    // the last status lands last; none of those between is written after it
    assert_eq!(mem.of("ns/a"), ["Queued", "Succeeded"]);
}

#[tokio::test]
async fn a_stalled_resource_does_not_hold_up_another() {
    let (mem, w, mut started) = setup(4);
    let gate = mem.gate("ns/slow");
    w.send("ns/slow", "uid", status("Queued"));
    assert_eq!(started.recv().await.as_deref(), Some("ns/slow"));
    w.send("ns/fast", "uid", status("Queued"));
    w.send("ns/fast", "uid", Work::Settle);
    assert_eq!(started.recv().await.as_deref(), Some("ns/fast"));
    tokio::time::timeout(Duration::from_secs(5), async {
        while mem.of("ns/fast").len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the other resource's status is written while the first hangs");
    assert_eq!(mem.of("ns/fast"), ["Queued", "settled"]);
    assert!(mem.of("ns/slow").is_empty());
    gate.add_permits(1);
    flushed(&w).await;
    assert_eq!(mem.of("ns/slow"), ["Queued"]);
}

#[tokio::test]
async fn writes_run_at_most_concurrency_at_once() {
    let (mem, w, mut started) = setup(2);
    let gates: Vec<_> = (0..5).map(|i| mem.gate(&format!("ns/{i}"))).collect();
    for i in 0..5 {
        w.send(&format!("ns/{i}"), "uid", status("Queued"));
    }
    started.recv().await;
    started.recv().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(started.try_recv().is_err(), "a third write started");
    for g in &gates {
        g.add_permits(1);
    }
    flushed(&w).await;
    assert_eq!(mem.in_flight.lock().unwrap().1, 2);
    assert_eq!(mem.log().len(), 5);
}

#[tokio::test]
async fn events_settling_and_release_follow_the_status() {
    let (mem, w, mut started) = setup(4);
    let gate = mem.gate("ns/a");
    w.send("ns/a", "uid", status("Building"));
    started.recv().await;
    w.send("ns/a", "uid", status("Succeeded"));
    w.send(
        "ns/a",
        "uid",
        Work::Notice(Notice {
            warning: false,
            reason: "Pushed",
            message: "pushed".into(),
        }),
    );
    w.send("ns/a", "uid", Work::Settle);
    w.send("ns/a", "uid", Work::Release);
    gate.add_permits(2);
    flushed(&w).await;
    assert_eq!(
        mem.of("ns/a"),
        [
            "Building",
            "Succeeded",
            "event Pushed",
            "settled",
            "released"
        ]
    );
}
