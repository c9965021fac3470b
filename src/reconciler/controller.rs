//! The controller loop: resources in from a [`Source`], decisions from [`decide`],
//! builds out through the [`Queue`], status back through the source.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tracing::{debug, error, info, instrument, warn};

use super::deps::Dependencies;
use super::status::{self, Transition};
use super::{Decision, decide, is_built};
use crate::api::{DockerBuildStatus, PATH_IN_KUBERNETES, Phase, validate_spec};
use crate::backends::Backend;
use crate::health;
use crate::metrics::metrics;
use crate::queue::{Job, Queue, QueueConfig, Update};
use crate::runner::{self, BuildEvent, BuildRequest, directives};
use crate::sources::{Notice, Resource, Source, SourceEvent};
use crate::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub queue: QueueConfig,
    /// Stop once every resource has been reconciled and no build runs.
    pub once: bool,
}

/// What the reconciler asks of the loop after one pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing more until the resource or a build changes.
    AwaitChange,
    /// Look again after a while.
    Requeue(Duration),
}

/// Shared by every reconcile: the source (for status), the queue, what is known.
pub struct Context {
    source: Arc<dyn Source>,
    queue: Queue,
    backend: &'static str,
    remote: bool,
    state: Mutex<State>,
    /// Keys to reconcile again later (a Secret that does not exist yet, say).
    requeue: mpsc::UnboundedSender<String>,
}

#[derive(Default)]
struct State {
    resources: HashMap<String, Resource>,
    /// Statuses this process wrote: newer than what a file may still show.
    statuses: HashMap<String, DockerBuildStatus>,
    /// Origin of each key that could not be read.
    invalid: HashMap<String, String>,
    /// Deleted resources whose build is still stopping, by key: their origin.
    releasing: HashMap<String, String>,
}

/// How the run ended, for `--once` and the one-shot command.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub succeeded: usize,
    pub failed: usize,
    pub waiting: usize,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Context {
    async fn current_status(&self, res: &Resource) -> Option<DockerBuildStatus> {
        let st = self.state.lock().await;
        st.statuses
            .get(&res.key())
            .cloned()
            .or_else(|| res.build.status.clone())
    }

    /// Applies a transition and writes the status, unless nothing but times would change.
    async fn transition(&self, res: &Resource, spec_hash: Option<&str>, t: Transition<'_>) {
        let fallback = res.build.status.as_ref();
        let generation = res.build.metadata.generation;
        let w = &res.warnings;
        self.write(
            &res.key(),
            &res.origin,
            fallback,
            spec_hash,
            generation,
            w,
            t,
        )
        .await;
    }

    #[allow(clippy::too_many_arguments)] // each is one fact about the resource
    async fn write(
        &self,
        key: &str,
        origin: &str,
        fallback: Option<&DockerBuildStatus>,
        spec_hash: Option<&str>,
        generation: Option<i64>,
        warnings: &[String],
        t: Transition<'_>,
    ) {
        let prev = self.state.lock().await.statuses.get(key).cloned();
        let prev = prev.or_else(|| fallback.cloned());
        let next = status::next(prev.as_ref(), spec_hash, generation, t, &now());
        let next = status::with_warnings(next, warnings);
        if prev.as_ref().is_some_and(|p| same_but_times(p, &next)) {
            return;
        }
        if let Some(p) = next.phase
            && prev.as_ref().and_then(|s| s.phase) != Some(p)
        {
            info!(build = %key, phase = %p, message = next.message.as_deref().unwrap_or(""), "phase");
        }
        self.state
            .lock()
            .await
            .statuses
            .insert(key.to_string(), next.clone());
        if let Err(e) = self.source.write_status(key, origin, &next).await {
            metrics().reconcile_error(e.metric_label());
            error!(build = %key, "cannot write status: {e}");
        }
        if let Some(n) = status::notice(prev.as_ref(), &next) {
            self.source.notify(key, origin, &n).await;
        }
    }

    /// Cancels the key's build; true when a running build will still report its end.
    async fn cancel(&self, key: &str, origin: &str, why: &str) -> bool {
        let Some(running) = self.queue.cancel(key) else {
            return false;
        };
        info!(build = %key, "{why}; cancelling its build");
        let n = Notice {
            warning: false,
            reason: "Cancelled",
            message: format!("{why}; the build was cancelled"),
        };
        self.source.notify(key, origin, &n).await;
        running
    }

    /// Lets the source forget a deleted resource (its finalizer, in Kubernetes).
    async fn release(&self, key: &str, origin: &str) {
        if let Err(e) = self.source.released(key, origin).await {
            warn!(build = %key, "cannot release the deleted resource: {e}");
        }
    }

    /// Image references each known resource will push, for base/leaf ordering.
    async fn dependencies(&self) -> (Dependencies, HashMap<String, bool>) {
        let st = self.state.lock().await;
        let mut deps = Dependencies::default();
        let mut built = HashMap::new();
        for (key, r) in &st.resources {
            let spec = &r.build.spec;
            // remote sources: only the spec can say what they push
            let d = runner::local_dockerfile(spec, r.base_dir.as_deref())
                .and_then(|text| directives::parse(&text).ok())
                .map(|(d, _)| d)
                .unwrap_or_default();
            if let Ok(t) = runner::resolve(spec, &d) {
                deps.add_producer(key, &t.tag_refs());
            }
            let status = st.statuses.get(key).or(r.build.status.as_ref());
            built.insert(key.clone(), is_built(status, &spec.hash()));
        }
        (deps, built)
    }
}

/// Two statuses that differ only in their timestamps.
fn same_but_times(a: &DockerBuildStatus, b: &DockerBuildStatus) -> bool {
    let strip = |s: &DockerBuildStatus| {
        let mut s = s.clone();
        s.completion_time = None;
        s.start_time = None;
        for c in &mut s.conditions {
            c.last_transition_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

/// How soon a build whose credentials are missing looks again.
const AUTH_RETRY: Duration = Duration::from_secs(10);

/// One pass over one resource: decide, and start what must start.
#[instrument(skip_all, fields(build = %res.key()))]
pub async fn reconcile(res: Arc<Resource>, ctx: Arc<Context>) -> Result<Action> {
    let key = res.key();
    let spec = &res.build.spec;
    let hash = spec.hash();
    let checked = validate_spec(spec).and_then(|()| match &spec.source.path {
        // only a file on this machine gives a `path` a meaning
        Some(_) if res.base_dir.is_none() => Err(Error::InvalidSpec(PATH_IN_KUBERNETES.into())),
        _ => Ok(()),
    });
    if let Err(e) = checked {
        ctx.queue.cancel(&key);
        ctx.transition(&res, Some(&hash), Transition::Invalid(e.to_string()))
            .await;
        return Ok(Action::AwaitChange);
    }
    let status = ctx.current_status(&res).await;
    match decide(&hash, status.as_ref(), ctx.queue.in_flight(&key).as_deref()) {
        Decision::Nothing => return Ok(Action::AwaitChange),
        Decision::Replace => {
            ctx.cancel(&key, &res.origin, "the spec changed during the build")
                .await;
        }
        Decision::Build => {}
    }

    // what can be checked without fetching anything is checked before queueing
    let local = runner::local_dockerfile(spec, res.base_dir.as_deref());
    if let Some(text) = &local {
        let checked = directives::parse(text).and_then(|(d, _)| runner::resolve(spec, &d));
        if let Err(e) = checked {
            ctx.transition(&res, Some(&hash), Transition::Invalid(e.to_string()))
                .await;
            return Ok(Action::AwaitChange);
        }
        let needs = directives::from_images(text, &spec.build_args);
        let (deps, built) = ctx.dependencies().await;
        let waiting: Vec<String> = deps
            .producers_of(&key, &needs)
            .into_iter()
            .filter(|(_, producer)| !built.get(*producer).copied().unwrap_or(false))
            .map(|(image, producer)| format!("{image} (built by {producer})"))
            .collect();
        if !waiting.is_empty() {
            let msg = format!("waiting for base image {}", waiting.join(", "));
            ctx.transition(&res, Some(&hash), Transition::Waiting(msg))
                .await;
            return Ok(Action::AwaitChange);
        }
    }

    let auth = match ctx.source.auth(&res).await {
        Ok(a) => Arc::new(a),
        // credentials that may yet appear (a Secret applied after the build): look again
        Err(e) if e.is_retryable() => {
            let msg = format!("waiting for registry credentials: {}", e.detail());
            ctx.transition(&res, Some(&hash), Transition::Waiting(msg))
                .await;
            return Ok(Action::Requeue(AUTH_RETRY));
        }
        Err(e) => {
            ctx.transition(&res, Some(&hash), Transition::Invalid(e.to_string()))
                .await;
            return Ok(Action::AwaitChange);
        }
    };
    ctx.queue.submit(Job {
        key: key.clone(),
        namespace: res.namespace(),
        spec_hash: hash.clone(),
        request: BuildRequest {
            key: key.clone(),
            spec: spec.clone(),
            base_dir: res.base_dir.clone(),
            auth,
            // a task launched before a restart, for the same spec, may still run
            previous: status
                .as_ref()
                .filter(|s| s.spec_hash.as_deref() == Some(hash.as_str()))
                .and_then(|s| s.mesos.clone()),
        },
    });
    ctx.transition(&res, Some(&hash), Transition::Queued).await;
    Ok(Action::AwaitChange)
}

/// Runs the controller until the source ends (or, with `once`, until all is done).
pub async fn run(
    source: Arc<dyn Source>,
    backend: Arc<dyn Backend>,
    settings: Settings,
) -> Result<Summary> {
    let (src_tx, mut src_rx) = mpsc::channel(256);
    let src = source.clone();
    let source_task = tokio::spawn(async move { src.run(src_tx).await });
    let (up_tx, mut up_rx) = mpsc::unbounded_channel();
    let backend_name = backend.name();
    let remote = backend.places_remotely();
    let queue = Queue::start(backend, settings.queue.clone(), up_tx);
    let (requeue_tx, mut requeue_rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(Context {
        source,
        queue: queue.clone(),
        backend: backend_name,
        remote,
        state: Mutex::new(State::default()),
        requeue: requeue_tx,
    });
    let mut synced = false;
    let mut source_ended = false;
    loop {
        if settings.once && synced && queue.busy() == 0 && up_rx.is_empty() {
            break;
        }
        tokio::select! {
            ev = src_rx.recv() => match ev {
                Some(ev) => {
                    if matches!(ev, SourceEvent::Synced) {
                        synced = true;
                        let n = ctx.state.lock().await.resources.len();
                        info!(resources = n, "initial sync done");
                        health::readiness().set("watch", true);
                        continue;
                    }
                    on_source_event(ev, &ctx).await;
                }
                None => {
                    source_ended = true;
                    break;
                }
            },
            Some(up) = up_rx.recv() => on_update(up, &ctx).await,
            Some(key) = requeue_rx.recv() => {
                let res = ctx.state.lock().await.resources.get(&key).cloned();
                if let Some(res) = res {
                    run_reconcile(res, &ctx).await;
                }
            }
        }
    }
    queue.cancel_all();
    // its channel closes a moment before the task counts as finished: wait for its error
    if source_ended || source_task.is_finished() {
        match source_task.await {
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(Error::Source {
                    path: String::new(),
                    message: e.to_string(),
                });
            }
            Ok(Ok(())) => {}
        }
    } else {
        source_task.abort();
    }
    let st = ctx.state.lock().await;
    let mut summary = Summary::default();
    for (key, r) in &st.resources {
        let s = st.statuses.get(key).or(r.build.status.as_ref());
        match s.and_then(|s| s.phase) {
            Some(Phase::Succeeded) => summary.succeeded += 1,
            Some(Phase::Failed) | Some(Phase::Cancelled) => summary.failed += 1,
            _ => summary.waiting += 1,
        }
    }
    summary.failed += st.invalid.len();
    Ok(summary)
}

async fn on_source_event(ev: SourceEvent, ctx: &Arc<Context>) {
    match ev {
        SourceEvent::Applied(res) => {
            let res = *res;
            let key = res.key();
            {
                let mut st = ctx.state.lock().await;
                if let Some(other) = st.resources.get(&key)
                    && other.origin != res.origin
                {
                    let msg = format!(
                        "{key} is defined twice: in {} and in {}; rename one",
                        other.origin, res.origin
                    );
                    drop(st);
                    warn!("{msg}");
                    ctx.transition(&res, None, Transition::Invalid(msg)).await;
                    return;
                }
                st.invalid.remove(&key);
                st.resources.insert(key.clone(), res.clone());
            }
            run_reconcile(res, ctx).await;
        }
        SourceEvent::Deleted { key, origin } => {
            let mut st = ctx.state.lock().await;
            if st.releasing.contains_key(&key) {
                return; // told again while its build stops
            }
            if st.resources.get(&key).is_some_and(|r| r.origin == origin) {
                st.resources.remove(&key);
                st.statuses.remove(&key);
                drop(st);
                if ctx.cancel(&key, &origin, "the resource was deleted").await {
                    // released once the running build reports its end
                    let mut st = ctx.state.lock().await;
                    st.releasing.insert(key, origin);
                    return;
                }
            } else if st.invalid.get(&key) == Some(&origin) {
                st.invalid.remove(&key);
                drop(st);
            } else {
                drop(st);
            }
            ctx.release(&key, &origin).await;
        }
        SourceEvent::Invalid {
            key,
            origin,
            message,
        } => {
            warn!(build = %key, "{message}");
            ctx.queue.cancel(&key);
            {
                let mut st = ctx.state.lock().await;
                st.invalid.insert(key.clone(), origin.clone());
                st.resources.remove(&key);
            }
            ctx.write(
                &key,
                &origin,
                None,
                None,
                None,
                &[],
                Transition::Invalid(message),
            )
            .await;
        }
        SourceEvent::Synced => {}
    }
}

async fn on_update(up: Update, ctx: &Arc<Context>) {
    let (key, hash) = match &up {
        Update::Started { key, hash, .. }
        | Update::Event { key, hash, .. }
        | Update::Retrying { key, hash, .. }
        | Update::Finished { key, hash, .. } => (key.clone(), hash.clone()),
    };
    if let Update::Finished { job, .. } = &up {
        // the outcome is recorded below, within this call: the key may build again
        ctx.queue.done(&key, *job);
        let releasing = ctx.state.lock().await.releasing.remove(&key);
        if let Some(origin) = releasing {
            info!(build = %key, "the deleted resource's build has stopped");
            ctx.queue.settled(&key);
            ctx.release(&key, &origin).await;
            return;
        }
    }
    let res = ctx.state.lock().await.resources.get(&key).cloned();
    // a backend holding results until their status is written may let go after this
    let settles = matches!(up, Update::Finished { .. } | Update::Retrying { .. });
    let Some(res) = res.filter(|r| r.build.spec.hash() == hash) else {
        debug!(build = %key, "update for a replaced or deleted build ignored");
        if settles {
            ctx.queue.settled(&key);
        }
        return;
    };
    let h = Some(hash.as_str());
    match up {
        Update::Started { attempt, .. } => {
            ctx.transition(
                &res,
                h,
                Transition::Started {
                    attempt,
                    backend: ctx.backend,
                    remote: ctx.remote,
                },
            )
            .await;
        }
        Update::Event { event, .. } => match event {
            BuildEvent::Building {
                context_bytes,
                files,
            } => {
                let msg = format!(
                    "building: sent a context of {files} files, {:.1} MiB",
                    context_bytes as f64 / (1024.0 * 1024.0)
                );
                ctx.transition(&res, h, Transition::Progress(msg)).await;
            }
            BuildEvent::Step(s) => {
                info!(build = %key, "{s}");
                ctx.transition(&res, h, Transition::Progress(s)).await;
            }
            BuildEvent::Log(line) => debug!(build = %key, "{line}"),
            BuildEvent::Pushing { tags } => {
                ctx.transition(&res, h, Transition::Pushing { tags: tags.len() })
                    .await;
            }
            BuildEvent::PushProgress { .. } => {}
            BuildEvent::Pushed { tag, digest } => info!(build = %key, %tag, %digest, "pushed"),
            BuildEvent::Waiting(msg) => {
                ctx.transition(&res, h, Transition::Unplaced(msg)).await;
            }
            BuildEvent::Placed { host, task } => {
                info!(build = %key, %host, task = %task.task_id, "placed");
                let t = Transition::Placed {
                    host: &host,
                    task: &task,
                };
                ctx.transition(&res, h, t).await;
            }
            BuildEvent::Running { host } => {
                ctx.transition(&res, h, Transition::Running { host: &host })
                    .await;
            }
        },
        Update::Retrying {
            attempt,
            max_attempts,
            delay,
            error,
            ..
        } => {
            ctx.transition(
                &res,
                h,
                Transition::Retrying {
                    attempt,
                    max_attempts,
                    delay,
                    error,
                },
            )
            .await;
            ctx.queue.settled(&key);
        }
        Update::Finished { result, .. } => {
            match &result {
                Ok(out) => {
                    info!(build = %key, image = %out.image, "succeeded");
                    ctx.transition(&res, h, Transition::Succeeded(out)).await;
                }
                Err(e) => {
                    warn!(build = %key, reason = e.metric_label(), "failed: {e}");
                    ctx.transition(&res, h, Transition::Failed(e)).await;
                }
            }
            ctx.queue.settled(&key);
            // builds waiting for this one's image may go now
            let waiting: Vec<Resource> = {
                let st = ctx.state.lock().await;
                st.resources
                    .values()
                    .filter(|r| {
                        st.statuses
                            .get(&r.key())
                            .or(r.build.status.as_ref())
                            .and_then(|s| s.phase)
                            == Some(Phase::Pending)
                    })
                    .cloned()
                    .collect()
            };
            for r in waiting {
                run_reconcile(r, ctx).await;
            }
        }
    }
}

/// Reconciles one resource, scheduling the next look when it asks for one.
async fn run_reconcile(res: Resource, ctx: &Arc<Context>) {
    let key = res.key();
    match reconcile(Arc::new(res), ctx.clone()).await {
        Ok(Action::AwaitChange) => {}
        Ok(Action::Requeue(after)) => {
            let tx = ctx.requeue.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(key);
            });
        }
        Err(e) => {
            metrics().reconcile_error(e.metric_label());
            warn!(build = %key, "reconcile failed: {e}");
        }
    }
}
