//! The build queue: bounded concurrency, two lanes (people's builds before automatic
//! ones, which have a limit of their own), fair across namespaces within each lane,
//! and retries with backoff for infrastructure failures only.

mod lanes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::backends::Backend;
use crate::logs::{BuildLog, LogStore, Redactor};
use crate::metrics::Metrics;
use crate::reconciler::{InFlight, Inputs};
use crate::runner::{BuildEvent, BuildOutcome, BuildRequest};
use crate::{Error, Result};

/// A build to run for one resource at one spec hash.
#[derive(Clone, Debug)]
pub struct Job {
    pub key: String,
    pub namespace: String,
    pub spec_hash: String,
    pub request: BuildRequest,
    pub lane: Lane,
    /// What the build is made from besides the spec, as the reconciler knew it.
    pub inputs: Inputs,
    /// The build's number (`status.buildNumber`), naming its log.
    pub number: u64,
}

impl Job {
    /// What masks the build's secrets (registry passwords, build secrets) in its
    /// output.
    fn redactor(&self) -> Redactor {
        Redactor::for_request(&self.request)
    }

    /// Opens the build's log in `store`; `None` (with a warning) when it cannot be
    /// written: the build runs anyway.
    fn open_log(&self, store: &LogStore) -> Option<BuildLog> {
        let name = self.key.rsplit('/').next().unwrap_or(&self.key);
        match store.open(&self.namespace, name, self.number, self.redactor()) {
            Ok(log) => Some(log),
            Err(e) => {
                warn!(build = %self.key, "the build's log is not kept: {e}");
                None
            }
        }
    }
}

use lanes::Fair;
pub use lanes::Lane;

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
        /// The last lines of a failed build's log, for `status.logTail`.
        log_tail: Vec<String>,
    },
}

#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Builds running at once.
    pub concurrency: usize,
    /// Tries per build for retryable failures (registry down, daemon unreachable).
    pub max_attempts: u32,
    /// First retry delay; doubles each time (jittered, at most `MAX_RETRY_DELAY`).
    pub backoff: Duration,
    /// Automatic (triggered) builds running at once, within `concurrency`.
    pub max_auto: usize,
    /// Where every build's log is kept; none kept when unset.
    pub logs: Option<LogStore>,
    /// Where the queue's size and each build's end are counted (the process's one,
    /// served on `/metrics`; the reconciler counts into it too, see [`Queue::metrics`]).
    pub metrics: Metrics,
}

/// However many attempts a build is given, it never waits longer than this between
/// two of them.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            concurrency: 2,
            max_attempts: 4,
            backoff: Duration::from_secs(5),
            max_auto: 1,
            logs: None,
            metrics: Metrics::default(),
        }
    }
}

struct Tracked {
    id: u64,
    hash: String,
    inputs: Inputs,
    lane: Lane,
    running: bool,
    cancel: CancellationToken,
}

#[derive(Default)]
struct State {
    metrics: Metrics,
    user: Fair,
    auto: Fair,
    /// The latest job of each key, queued or running.
    jobs: HashMap<String, Tracked>,
    running: usize,
    running_auto: usize,
    next_id: u64,
}

impl State {
    /// The next job: people's first; automatic ones while fewer than `max_auto` run.
    fn pop(&mut self, max_auto: usize) -> Option<Job> {
        self.user.pop().or_else(|| {
            if self.running_auto < max_auto.max(1) {
                self.auto.pop()
            } else {
                None
            }
        })
    }

    fn depth(&self) -> usize {
        self.user.len() + self.auto.len()
    }

    /// Publishes the queue's size; called after every change to it.
    fn report(&self) {
        self.metrics.queue(self.depth(), self.running);
    }

    fn remove_pending(&mut self, key: &str) {
        self.user.remove(key);
        self.auto.remove(key);
    }
}

#[derive(Clone)]
pub struct Queue {
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    backend: Arc<dyn Backend>,
    metrics: Metrics,
}

impl Queue {
    /// Starts the dispatcher; updates go to `updates`.
    pub fn start(
        backend: Arc<dyn Backend>,
        cfg: QueueConfig,
        updates: mpsc::UnboundedSender<Update>,
    ) -> Self {
        let q = Self {
            state: Arc::new(Mutex::new(State {
                metrics: cfg.metrics.clone(),
                ..State::default()
            })),
            wake: Arc::new(Notify::new()),
            backend: backend.clone(),
            metrics: cfg.metrics.clone(),
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
                    inputs: job.inputs.clone(),
                    lane: job.lane,
                    running: false,
                    cancel: CancellationToken::new(),
                },
            );
            match job.lane {
                Lane::User => s.user.push(job),
                Lane::Auto => s.auto.push(job),
            }
            s.report();
        }
        self.wake.notify_one();
    }

    /// Stops the key's job, queued or running. `None` when there was none;
    /// `Some(true)` when it was running, so an `Update::Finished` will still follow.
    pub fn cancel(&self, key: &str) -> Option<bool> {
        let mut s = self.lock();
        let queued = s.user.contains(key) || s.auto.contains(key);
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

    /// The key's queued or running job: its spec hash and inputs.
    pub fn in_flight(&self, key: &str) -> Option<InFlight> {
        self.lock().jobs.get(key).map(|t| InFlight {
            hash: t.hash.clone(),
            inputs: t.inputs.clone(),
            running: t.running,
        })
    }

    /// The metrics this queue counts into, for whoever drives it.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Builds queued (not yet running).
    pub fn depth(&self) -> usize {
        self.lock().depth()
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
        s.user.clear();
        s.auto.clear();
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
                    let Some(job) = s.pop(cfg.max_auto) else {
                        break;
                    };
                    let Some(t) = s.jobs.get_mut(&job.key) else {
                        continue;
                    };
                    if t.hash != job.spec_hash {
                        continue;
                    }
                    t.running = true;
                    let (id, cancel, lane) = (t.id, t.cancel.clone(), t.lane);
                    s.running += 1;
                    if lane == Lane::Auto {
                        s.running_auto += 1;
                    }
                    started.push((job, id, cancel, lane));
                }
                s.report();
            }
            for (job, id, cancel, lane) in started {
                let q = self.clone();
                let backend = backend.clone();
                let cfg = cfg.clone();
                let updates = updates.clone();
                tokio::spawn(async move {
                    let key = job.key.clone();
                    let hash = job.spec_hash.clone();
                    let (namespace, number) = (job.namespace.clone(), job.number);
                    let log = cfg.logs.as_ref().and_then(|s| job.open_log(s));
                    let redactor = job.redactor();
                    let start = Instant::now();
                    let (result, log) =
                        run_with_retries(&*backend, job, &cfg, cancel, &updates, log).await;
                    let result = result.map_err(|e| redactor.error(e));
                    let log_tail =
                        close_log(log, &result, cfg.logs.as_ref(), &namespace, &key, number);
                    // the whole job, retries and their backoff included
                    cfg.metrics.build_finished(&result, start.elapsed());
                    {
                        let mut s = q.lock();
                        s.running -= 1;
                        if lane == Lane::Auto {
                            s.running_auto -= 1;
                        }
                        s.report();
                    }
                    let finished = Update::Finished {
                        key: key.clone(),
                        hash,
                        job: id,
                        result,
                        log_tail,
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

/// Ends the build's log with its outcome and applies retention; the tail of a failed
/// build's log for its status.
fn close_log(
    log: Option<BuildLog>,
    result: &Result<BuildOutcome>,
    store: Option<&LogStore>,
    namespace: &str,
    key: &str,
    number: u64,
) -> Vec<String> {
    let (Some(log), Some(store)) = (log, store) else {
        return Vec::new();
    };
    let tail = if result.is_err() {
        log.tail()
    } else {
        Vec::new()
    };
    log.finish(result);
    let name = key.rsplit('/').next().unwrap_or(key);
    if let Err(e) = store.prune(namespace, name, number) {
        warn!(build = %key, "old build logs not removed: {e}");
    }
    tail
}

async fn run_with_retries(
    backend: &dyn Backend,
    job: Job,
    cfg: &QueueConfig,
    cancel: CancellationToken,
    updates: &mpsc::UnboundedSender<Update>,
    mut log: Option<BuildLog>,
) -> (Result<BuildOutcome>, Option<BuildLog>) {
    let max = cfg.max_attempts.max(1);
    let mut attempt = 1;
    let mut backoff = crate::backoff::Backoff::new(cfg.backoff, MAX_RETRY_DELAY.max(cfg.backoff));
    loop {
        if let Some(log) = log.as_mut() {
            log.note(&format!("attempt {attempt} of {max} on {}", backend.name()));
        }
        let _ = updates.send(Update::Started {
            key: job.key.clone(),
            hash: job.spec_hash.clone(),
            attempt,
        });
        let (tx, mut rx) = mpsc::unbounded_channel();
        let forward = {
            let updates = updates.clone();
            let (key, hash) = (job.key.clone(), job.spec_hash.clone());
            let mut log = log.take();
            let redactor = job.redactor();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    let event = redactor.event(event);
                    if let Some(log) = log.as_mut() {
                        log.event(&event);
                    }
                    let _ = updates.send(Update::Event {
                        key: key.clone(),
                        hash: hash.clone(),
                        event,
                    });
                }
                log
            })
        };
        info!(build = %job.key, attempt, backend = backend.name(), "build started");
        let result = backend.run(job.request.clone(), tx, cancel.clone()).await;
        // every event of this attempt is reported (and logged) before its outcome
        log = forward.await.unwrap_or_default();
        match result {
            Err(e) if e.is_retryable() && attempt < max => {
                let delay = backoff.next_delay();
                warn!(build = %job.key, attempt, "retrying in {delay:?}: {e}");
                if let Some(log) = log.as_mut() {
                    log.note(&format!(
                        "attempt {attempt} failed, retrying in {delay:?}: {e}"
                    ));
                }
                let _ = updates.send(Update::Retrying {
                    key: job.key.clone(),
                    hash: job.spec_hash.clone(),
                    attempt,
                    max_attempts: max,
                    delay,
                    error: e.to_string(),
                });
                tokio::select! {
                    _ = cancel.cancelled() => return (Err(Error::Cancelled("cancelled while waiting to retry".into())), log),
                    _ = tokio::time::sleep(delay) => {}
                }
                attempt += 1;
            }
            Err(e) if e.is_retryable() => {
                let label = e.metric_label();
                let e = Error::from_label(
                    label,
                    format!("gave up after {max} attempts: {}", e.detail()),
                );
                return (Err(e), log);
            }
            other => return (other, log),
        }
    }
}

#[cfg(test)]
mod tests;
