//! Status writes, off the event loop. Each resource (key and origin) has at most one
//! write under way; a newer status replaces one not yet sent (latest wins), so a
//! slow API server delays a resource's status but never reorders it, and never
//! holds up the loop or another resource's write beyond a small bounded concurrency.
//! Events and the release of a deleted resource ride along, after the status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Semaphore, watch};
use tracing::{error, warn};

use crate::Result;
use crate::api::DockerBuildStatus;
use crate::queue::Queue;
use crate::sources::{Notice, Source};

/// How many resources' writes may be under way at once.
pub const CONCURRENCY: usize = 8;

/// Where statuses go: the source, and the queue's backend once a final status is
/// written (Mesos acknowledges its updates only then).
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    async fn write(&self, key: &str, origin: &str, status: &DockerBuildStatus) -> Result<()>;
    async fn notify(&self, key: &str, origin: &str, notice: &Notice);
    async fn release(&self, key: &str, origin: &str) -> Result<()>;
    fn settled(&self, key: &str);
}

/// The real sink: the source that delivered the resource, and the build queue.
pub struct SourceSink {
    pub source: Arc<dyn Source>,
    pub queue: Queue,
}

#[async_trait]
impl Sink for SourceSink {
    async fn write(&self, key: &str, origin: &str, status: &DockerBuildStatus) -> Result<()> {
        let written = self.source.write_status(key, origin, status).await;
        if let Err(e) = &written {
            self.queue.metrics().reconcile_error(e.metric_label());
        }
        written
    }
    async fn notify(&self, key: &str, origin: &str, notice: &Notice) {
        self.source.notify(key, origin, notice).await
    }
    async fn release(&self, key: &str, origin: &str) -> Result<()> {
        self.source.released(key, origin).await
    }
    fn settled(&self, key: &str) {
        self.queue.settled(key);
    }
}

/// What is still to be done for one resource.
#[derive(Default)]
struct Pending {
    status: Option<Box<DockerBuildStatus>>,
    notices: Vec<Notice>,
    /// Tell the backend once the status is written.
    settle: bool,
    release: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.status.is_none() && self.notices.is_empty() && !self.settle && !self.release
    }
}

type Slot = (String, String);

struct Inner {
    sink: Arc<dyn Sink>,
    /// A slot exists while its worker runs: what it has not taken yet.
    slots: Mutex<HashMap<Slot, Pending>>,
    permits: Semaphore,
    /// How many slots have a worker (flush waits for none).
    active: watch::Sender<usize>,
}

/// Cheap to clone; every clone feeds the same workers.
#[derive(Clone)]
pub struct StatusWriter {
    inner: Arc<Inner>,
}

/// One piece of work for a resource.
pub enum Work {
    Status(Box<DockerBuildStatus>),
    Notice(Notice),
    /// The backend may let go of the build's results once the statuses before are written.
    Settle,
    /// The deleted resource's build has stopped: let the source forget it.
    Release,
}

impl StatusWriter {
    pub fn new(sink: Arc<dyn Sink>, concurrency: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                sink,
                slots: Mutex::new(HashMap::new()),
                permits: Semaphore::new(concurrency.max(1)),
                active: watch::Sender::new(0),
            }),
        }
    }

    /// Queues `work` for the resource; returns at once.
    pub fn send(&self, key: &str, origin: &str, work: Work) {
        let slot = (key.to_string(), origin.to_string());
        let mut slots = self.inner.slots.lock().expect("status slots");
        let start = !slots.contains_key(&slot);
        let p = slots.entry(slot.clone()).or_default();
        match work {
            // the newest status replaces one not yet sent
            Work::Status(s) => p.status = Some(s),
            Work::Notice(n) => p.notices.push(n),
            Work::Settle => p.settle = true,
            Work::Release => p.release = true,
        }
        if start {
            self.inner.active.send_modify(|n| *n += 1);
            tokio::spawn(self.clone().drain(slot));
        }
    }

    /// Waits until everything sent so far is written.
    pub async fn flush(&self) {
        let mut rx = self.inner.active.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Writes the slot's work until none is left, then lets the slot go.
    async fn drain(self, slot: Slot) {
        let (key, origin) = (&slot.0, &slot.1);
        loop {
            {
                let mut slots = self.inner.slots.lock().expect("status slots");
                if slots.get(&slot).is_none_or(Pending::is_empty) {
                    slots.remove(&slot);
                    drop(slots);
                    self.inner.active.send_modify(|n| *n -= 1);
                    return;
                }
            }
            let permit = self.inner.permits.acquire().await.expect("never closed");
            // taken only now: whatever came while waiting for a permit is newer; only
            // this worker takes from its slot, so it is not empty
            let p = {
                let mut slots = self.inner.slots.lock().expect("status slots");
                slots.get_mut(&slot).map(std::mem::take).unwrap_or_default()
            };
            let sink = &self.inner.sink;
            if let Some(s) = &p.status
                && let Err(e) = sink.write(key, origin, s).await
            {
                error!(build = %key, "cannot write status: {e}");
            }
            for n in &p.notices {
                sink.notify(key, origin, n).await;
            }
            if p.settle {
                sink.settled(key);
            }
            if p.release
                && let Err(e) = sink.release(key, origin).await
            {
                warn!(build = %key, "cannot release the deleted resource: {e}");
            }
            drop(permit);
        }
    }
}

#[cfg(test)]
mod tests;
