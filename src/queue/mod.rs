//! The build queue: bounded concurrency, fair across namespaces (round robin, so one
//! team's hundred builds do not starve another's one), and retries with backoff for
//! infrastructure failures only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backends::Backend;
use crate::metrics::metrics;
use crate::runner::{BuildEvent, BuildOutcome, BuildRequest};
use crate::{Error, Result};

/// A build to run for one resource at one spec hash.
#[derive(Clone, Debug)]
pub struct Job {
    pub key: String,
    pub namespace: String,
    pub spec_hash: String,
    pub request: BuildRequest,
}

/// What the queue reports back, tagged with the job's key and spec hash so stale
/// reports (from a cancelled, replaced job) can be told apart.
#[derive(Debug)]
pub enum Update {
    Started {
        key: String,
        hash: String,
        attempt: u32,
    },
    Event {
        key: String,
        hash: String,
        event: BuildEvent,
    },
    Retrying {
        key: String,
        hash: String,
        attempt: u32,
        max_attempts: u32,
        delay: Duration,
        error: String,
    },
    /// The job ended. It counts as in flight until the receiver calls
    /// [`Queue::done`] with `job`, so nothing starts it again before its outcome is
    /// recorded.
    Finished {
        key: String,
        hash: String,
        job: u64,
        result: Result<BuildOutcome>,
    },
}

#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Builds running at once.
    pub concurrency: usize,
    /// Tries per build for retryable failures (registry down, daemon unreachable).
    pub max_attempts: u32,
    /// First retry delay; doubles each time.
    pub backoff: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            max_attempts: 4,
            backoff: Duration::from_secs(5),
        }
    }
}

struct Tracked {
    id: u64,
    hash: String,
    cancel: CancellationToken,
}

#[derive(Default)]
struct State {
    pending: BTreeMap<String, VecDeque<Job>>,
    /// The latest job of each key, queued or running.
    jobs: HashMap<String, Tracked>,
    last_namespace: Option<String>,
    running: usize,
    next_id: u64,
}

impl State {
    /// The next job, taking namespaces in turn.
    fn pop_fair(&mut self) -> Option<Job> {
        let ns = {
            let after = self.last_namespace.as_deref();
            let next = after.and_then(|a| {
                self.pending
                    .range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                    .find(|(_, q)| !q.is_empty())
                    .map(|(k, _)| k.clone())
            });
            next.or_else(|| {
                self.pending
                    .iter()
                    .find(|(_, q)| !q.is_empty())
                    .map(|(k, _)| k.clone())
            })?
        };
        let q = self.pending.get_mut(&ns)?;
        let job = q.pop_front();
        if q.is_empty() {
            self.pending.remove(&ns);
        }
        self.last_namespace = Some(ns);
        job
    }

    /// Publishes the queue's size; called after every change to it.
    fn report(&self) {
        let depth = self.pending.values().map(VecDeque::len).sum();
        metrics().queue(depth, self.running);
    }

    fn remove_pending(&mut self, key: &str) {
        for q in self.pending.values_mut() {
            q.retain(|j| j.key != key);
        }
        self.pending.retain(|_, q| !q.is_empty());
    }
}

#[derive(Clone)]
pub struct Queue {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    backend: Arc<dyn Backend>,
}

impl Queue {
    /// Starts the dispatcher; updates go to `updates`.
    pub fn start(
        backend: Arc<dyn Backend>,
        cfg: QueueConfig,
        updates: mpsc::UnboundedSender<Update>,
    ) -> Self {
        let q = Self {
            state: Arc::new(Mutex::new(State::default())),
            wake: Arc::new(Notify::new()),
            backend: backend.clone(),
        };
        let this = q.clone();
        tokio::spawn(async move { this.dispatch(backend, cfg, updates).await });
        q
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job`, replacing a queued job of the same key. A running job of the
    /// same key must be cancelled first (see [`Queue::cancel`]).
    pub fn submit(&self, job: Job) {
        {
            let mut s = self.lock();
            s.remove_pending(&job.key);
            s.next_id += 1;
            let id = s.next_id;
            s.jobs.insert(
                job.key.clone(),
                Tracked {
                    id,
                    hash: job.spec_hash.clone(),
                    cancel: CancellationToken::new(),
                },
            );
            s.pending
                .entry(job.namespace.clone())
                .or_default()
                .push_back(job);
            s.report();
        }
        self.wake.notify_one();
    }

    /// Stops the key's job, queued or running. `None` when there was none;
    /// `Some(true)` when it was running, so an `Update::Finished` will still follow.
    pub fn cancel(&self, key: &str) -> Option<bool> {
        let mut s = self.lock();
        let queued = s.pending.values().any(|q| q.iter().any(|j| j.key == key));
        s.remove_pending(key);
        s.report();
        let t = s.jobs.remove(key)?;
        t.cancel.cancel();
        Some(!queued)
    }

    /// The outcome of `job` (from [`Update::Finished`]) is recorded: the key is free.
    pub fn done(&self, key: &str, job: u64) {
        let mut s = self.lock();
        if s.jobs.get(key).is_some_and(|t| t.id == job) {
            s.jobs.remove(key);
            s.report();
        }
    }

    /// Spec hash of the key's queued or running job.
    pub fn in_flight(&self, key: &str) -> Option<String> {
        self.lock().jobs.get(key).map(|t| t.hash.clone())
    }

    /// Builds queued (not yet running).
    pub fn depth(&self) -> usize {
        self.lock().pending.values().map(VecDeque::len).sum()
    }

    /// Builds queued or running.
    pub fn busy(&self) -> usize {
        self.lock().jobs.len()
    }

    /// The final status of `key` is written (see [`Backend::settled`]).
    pub fn settled(&self, key: &str) {
        self.backend.settled(key);
    }

    /// Cancels everything (shutdown).
    pub fn cancel_all(&self) {
        let mut s = self.lock();
        s.pending.clear();
        s.report();
        for (_, t) in s.jobs.drain() {
            t.cancel.cancel();
        }
    }

    async fn dispatch(
        self,
        backend: Arc<dyn Backend>,
        cfg: QueueConfig,
        updates: mpsc::UnboundedSender<Update>,
    ) {
        loop {
            let mut started = Vec::new();
            {
                let mut s = self.lock();
                while s.running < cfg.concurrency.max(1) {
                    let Some(job) = s.pop_fair() else { break };
                    let Some(t) = s.jobs.get(&job.key) else {
                        continue;
                    };
                    if t.hash != job.spec_hash {
                        continue;
                    }
                    let (id, cancel) = (t.id, t.cancel.clone());
                    s.running += 1;
                    started.push((job, id, cancel));
                }
                s.report();
            }
            for (job, id, cancel) in started {
                let q = self.clone();
                let backend = backend.clone();
                let cfg = cfg.clone();
                let updates = updates.clone();
                tokio::spawn(async move {
                    let key = job.key.clone();
                    let hash = job.spec_hash.clone();
                    let start = Instant::now();
                    let result = run_with_retries(&*backend, job, &cfg, cancel, &updates).await;
                    // the whole job, retries and their backoff included
                    metrics().build_finished(&result, start.elapsed());
                    {
                        let mut s = q.lock();
                        s.running -= 1;
                        s.report();
                    }
                    let finished = Update::Finished {
                        key: key.clone(),
                        hash,
                        job: id,
                        result,
                    };
                    if updates.send(finished).is_err() {
                        q.done(&key, id); // nobody listens: nothing to wait for
                    }
                    q.wake.notify_one();
                });
            }
            if updates.is_closed() {
                return;
            }
            self.wake.notified().await;
        }
    }
}

async fn run_with_retries(
    backend: &dyn Backend,
    job: Job,
    cfg: &QueueConfig,
    cancel: CancellationToken,
    updates: &mpsc::UnboundedSender<Update>,
) -> Result<BuildOutcome> {
    let max = cfg.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        let _ = updates.send(Update::Started {
            key: job.key.clone(),
            hash: job.spec_hash.clone(),
            attempt,
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let forward = {
            let updates = updates.clone();
            let (key, hash) = (job.key.clone(), job.spec_hash.clone());
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    let _ = updates.send(Update::Event {
                        key: key.clone(),
                        hash: hash.clone(),
                        event,
                    });
                }
            })
        };
        info!(build = %job.key, attempt, backend = backend.name(), "build started");
        let result = backend.run(job.request.clone(), tx, cancel.clone()).await;
        // every event of this attempt is reported before its outcome
        let _ = forward.await;
        match result {
            Err(e) if e.is_retryable() && attempt < max => {
                let delay = cfg.backoff * 2u32.saturating_pow(attempt - 1);
                warn!(build = %job.key, attempt, "retrying in {delay:?}: {e}");
                let _ = updates.send(Update::Retrying {
                    key: job.key.clone(),
                    hash: job.spec_hash.clone(),
                    attempt,
                    max_attempts: max,
                    delay,
                    error: e.to_string(),
                });
                tokio::select! {
                    _ = cancel.cancelled() => return Err(Error::Cancelled("cancelled while waiting to retry".into())),
                    _ = tokio::time::sleep(delay) => {}
                }
                attempt += 1;
            }
            Err(e) if e.is_retryable() => {
                let label = e.metric_label();
                return Err(Error::from_label(
                    label,
                    format!("gave up after {max} attempts: {}", e.detail()),
                ));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DockerBuildSpec;
    use crate::registry::DockerConfig;
    use crate::runner::{Cancel, Events};
    use async_trait::async_trait;

    /// A backend that records the order builds start in and fails as told.
    struct Recorder {
        order: Mutex<Vec<String>>,
        fail_times: Mutex<HashMap<String, u32>>,
        hold: Duration,
    }

    #[async_trait]
    impl Backend for Recorder {
        async fn run(&self, req: BuildRequest, _: Events, cancel: Cancel) -> Result<BuildOutcome> {
            self.order.lock().unwrap().push(req.key.clone());
            tokio::select! {
                _ = cancel.cancelled() => return Err(Error::Cancelled("x".into())),
                _ = tokio::time::sleep(self.hold) => {}
            }
            let mut f = self.fail_times.lock().unwrap();
            if let Some(n) = f.get_mut(&req.key)
                && *n > 0
            {
                *n -= 1;
                return Err(Error::Registry("connection refused".into()));
            }
            Ok(BuildOutcome {
                digest: "sha256:1".into(),
                image: "r/x@sha256:1".into(),
                pushed_tags: vec![],
                revision: None,
                ..Default::default()
            })
        }
        fn name(&self) -> &'static str {
            "recorder"
        }
    }

    fn job(ns: &str, name: &str) -> Job {
        Job {
            key: format!("{ns}/{name}"),
            namespace: ns.into(),
            spec_hash: "h".into(),
            request: BuildRequest {
                key: format!("{ns}/{name}"),
                spec: DockerBuildSpec::default(),
                base_dir: None,
                auth: Arc::new(DockerConfig::default()),
                previous: None,
                secrets: Default::default(),
            },
        }
    }

    fn recorder(hold_ms: u64) -> Arc<Recorder> {
        Arc::new(Recorder {
            order: Mutex::new(vec![]),
            fail_times: Mutex::new(HashMap::new()),
            hold: Duration::from_millis(hold_ms),
        })
    }

    async fn finished(
        q: &Queue,
        rx: &mut mpsc::UnboundedReceiver<Update>,
        n: usize,
    ) -> Vec<(String, Result<BuildOutcome>)> {
        let mut out = vec![];
        while out.len() < n {
            if let Some(Update::Finished {
                key, result, job, ..
            }) = rx.recv().await
            {
                q.done(&key, job);
                out.push((key, result));
            }
        }
        out
    }

    #[tokio::test]
    async fn namespaces_take_turns() {
        let rec = recorder(5);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cfg = QueueConfig {
            concurrency: 1,
            ..Default::default()
        };
        // submit before the dispatcher can start anything
        let q = Queue::start(rec.clone(), cfg, tx);
        for j in [job("a", "1"), job("a", "2"), job("a", "3"), job("b", "1")] {
            q.submit(j);
        }
        finished(&q, &mut rx, 4).await;
        let order = rec.order.lock().unwrap().clone();
        // b's single build does not wait behind all of a's
        let pos_b = order.iter().position(|k| k == "b/1").unwrap();
        assert!(pos_b <= 1, "{order:?}");
    }

    #[tokio::test]
    async fn infrastructure_failures_are_retried_then_succeed() {
        let rec = recorder(1);
        rec.fail_times.lock().unwrap().insert("a/1".into(), 2);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cfg = QueueConfig {
            concurrency: 1,
            max_attempts: 3,
            backoff: Duration::from_millis(1),
        };
        let q = Queue::start(rec.clone(), cfg, tx);
        q.submit(job("a", "1"));
        let mut retries = 0;
        loop {
            match rx.recv().await.unwrap() {
                Update::Retrying { .. } => retries += 1,
                Update::Finished { result, .. } => {
                    assert!(result.is_ok());
                    break;
                }
                _ => {}
            }
        }
        assert_eq!(retries, 2);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts() {
        let rec = recorder(1);
        rec.fail_times.lock().unwrap().insert("a/1".into(), 10);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cfg = QueueConfig {
            concurrency: 1,
            max_attempts: 2,
            backoff: Duration::from_millis(1),
        };
        let q = Queue::start(rec.clone(), cfg, tx);
        q.submit(job("a", "1"));
        let (_, result) = finished(&q, &mut rx, 1).await.remove(0);
        let err = result.unwrap_err().to_string();
        assert!(err.contains("gave up after 2 attempts"), "{err}");
        assert_eq!(rec.order.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_finished_job_is_counted_by_its_final_result() {
        use crate::metrics::sample;
        let series = [
            r#"slipway_builds_total{result="RegistryError"}"#,
            r#"slipway_build_duration_seconds_count{result="RegistryError"}"#,
        ];
        let before = series.map(sample);
        let rec = recorder(1);
        rec.fail_times.lock().unwrap().insert("a/1".into(), 10);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cfg = QueueConfig {
            concurrency: 1,
            max_attempts: 2,
            backoff: Duration::from_millis(1),
        };
        let q = Queue::start(rec.clone(), cfg, tx);
        q.submit(job("a", "1"));
        finished(&q, &mut rx, 1).await;
        let after = series.map(sample);
        // the metrics are process-wide and other tests end builds too: before/after
        assert!(after[0] - before[0] >= 1.0, "{before:?} {after:?}");
        assert!(after[1] - before[1] >= 1.0, "{before:?} {after:?}");
    }

    #[tokio::test]
    async fn cancel_stops_a_running_build() {
        let rec = recorder(10_000);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let q = Queue::start(rec.clone(), QueueConfig::default(), tx);
        q.submit(job("a", "1"));
        while rec.order.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(q.in_flight("a/1").as_deref(), Some("h"));
        q.cancel("a/1");
        let (_, result) = finished(&q, &mut rx, 1).await.remove(0);
        assert!(matches!(result, Err(Error::Cancelled(_))));
        assert_eq!(q.in_flight("a/1"), None);
    }
}
