//! The controller loop: resources in from a [`Source`], decisions from [`decide`],
//! builds out through the [`Queue`], status back through the source.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tracing::{error, info, instrument, warn};

use super::claims::{Claimed, Claims, Withdrawn};
use super::deps::{Dependencies, Images};
use super::status::{self, Transition};
use super::updates::on_update;
use super::{Decision, decide, is_built};
use crate::api::{DockerBuildStatus, PATH_IN_KUBERNETES, Phase, validate_metadata, validate_spec};
use crate::backends::Backend;
use crate::health;
use crate::metrics::metrics;
use crate::queue::{Job, Queue, QueueConfig};
use crate::runner::{self, BuildRequest, directives};
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
    pub(super) queue: Queue,
    pub(super) backend: &'static str,
    pub(super) remote: bool,
    pub(super) state: Mutex<State>,
    /// Keys to reconcile again later (a Secret that does not exist yet, say).
    requeue: mpsc::UnboundedSender<String>,
}

#[derive(Default)]
pub(super) struct State {
    /// Which resource holds each name; duplicates and broken documents.
    pub(super) claims: Claims,
    /// Statuses this process wrote, by (key, origin): newer than what a file may
    /// still show. By origin too, so a duplicate's status never becomes the holder's.
    pub(super) statuses: HashMap<(String, String), DockerBuildStatus>,
    /// What each holder's Dockerfile resolves to, and who waits for whom.
    pub(super) deps: Dependencies,
    /// Deleted resources whose build is still stopping, by key: their origin.
    pub(super) releasing: HashMap<String, String>,
}

impl State {
    fn status_of<'a>(&'a self, res: &'a Resource) -> Option<&'a DockerBuildStatus> {
        self.statuses
            .get(&(res.key(), res.origin.clone()))
            .or(res.build.status.as_ref())
    }

    /// True when the image of the resource holding `key` is in the registry.
    fn is_built(&self, key: &str) -> bool {
        self.claims
            .holder(key)
            .is_some_and(|r| is_built(self.status_of(r), &r.build.spec.hash()))
    }
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
        self.state.lock().await.status_of(res).cloned()
    }

    /// Applies a transition and writes the status, unless nothing but times would change.
    pub(super) async fn transition(
        &self,
        res: &Resource,
        spec_hash: Option<&str>,
        t: Transition<'_>,
    ) {
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
        let slot = (key.to_string(), origin.to_string());
        let prev = self.state.lock().await.statuses.get(&slot).cloned();
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
        self.state.lock().await.statuses.insert(slot, next.clone());
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
    pub(super) async fn release(&self, key: &str, origin: &str) {
        if let Err(e) = self.source.released(key, origin).await {
            warn!(build = %key, "cannot release the deleted resource: {e}");
        }
    }

    /// The base images `res` waits for (`image (built by key)`), registering it as
    /// a waiter of their producers; or why its Dockerfile cannot be built.
    async fn blockers(&self, res: &Resource) -> std::result::Result<Vec<String>, String> {
        let key = res.key();
        let mut st = self.state.lock().await;
        if st.deps.images(&key).is_none() {
            st.deps.set(&key, images_of(res));
        }
        if let Some(msg) = st.deps.images(&key).and_then(|i| i.invalid.clone()) {
            st.deps.wait(&key, Vec::new());
            return Err(msg);
        }
        let blockers = st.deps.blockers(&key, |p| st.is_built(p));
        st.deps
            .wait(&key, blockers.iter().map(|(_, p)| p.clone()).collect());
        Ok(blockers
            .into_iter()
            .map(|(image, producer)| format!("{image} (built by {producer})"))
            .collect())
    }
}

/// What `res` pushes and, from its local Dockerfile (read here, once per version of
/// the resource), the base images it needs and whether its directives are sound.
pub fn images_of(res: &Resource) -> Images {
    let spec = &res.build.spec;
    // remote sources: only the spec can say what they push
    let local = runner::local_dockerfile(spec, res.base_dir.as_deref());
    let parsed = local.as_deref().map(directives::parse);
    let d = match &parsed {
        Some(Ok((d, _))) => d.clone(),
        _ => Default::default(),
    };
    let resolved = runner::resolve(spec, &d);
    let invalid = match (parsed, &resolved) {
        (Some(Err(e)), _) => Some(e.to_string()),
        (Some(Ok(_)), Err(e)) => Some(e.to_string()),
        _ => None,
    };
    Images {
        pushes: resolved.map(|t| t.tag_refs()).unwrap_or_default(),
        needs: local
            .map(|text| directives::from_images(&text, &spec.build_args))
            .unwrap_or_default(),
        invalid,
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
        ctx.state.lock().await.deps.wait(&key, Vec::new());
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
    match ctx.blockers(&res).await {
        Err(msg) => {
            ctx.transition(&res, Some(&hash), Transition::Invalid(msg))
                .await;
            return Ok(Action::AwaitChange);
        }
        Ok(waiting) if !waiting.is_empty() => {
            let msg = format!("waiting for base image {}", waiting.join(", "));
            ctx.transition(&res, Some(&hash), Transition::Waiting(msg))
                .await;
            return Ok(Action::AwaitChange);
        }
        Ok(_) => {}
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
    let secrets = match ctx.source.secrets(&res).await {
        Ok(s) => s,
        // a Secret applied after the build: look again
        Err(e) if e.is_retryable() => {
            let msg = format!("waiting for build secrets: {}", e.detail());
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
            secrets,
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
                        // every resource is known now, bases included: decide for each
                        // by key, in file order: one resource copied at a time
                        let mut all: Vec<(String, String)> = {
                            let st = ctx.state.lock().await;
                            st.claims.holders().map(|r| (r.origin.clone(), r.key())).collect()
                        };
                        all.sort();
                        let n = all.len();
                        for (_, key) in all {
                            let res = ctx.state.lock().await.claims.holder(&key).cloned();
                            if let Some(res) = res {
                                run_reconcile(res, &ctx).await;
                            }
                        }
                        info!(resources = n, "initial sync done");
                        health::readiness().set("watch", true);
                        continue;
                    }
                    on_source_event(ev, &ctx, synced).await;
                }
                None => {
                    source_ended = true;
                    break;
                }
            },
            Some(up) = up_rx.recv() => on_update(up, &ctx).await,
            Some(key) = requeue_rx.recv() => {
                let res = ctx.state.lock().await.claims.holder(&key).cloned();
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
    for r in st.claims.holders() {
        match st.status_of(r).and_then(|s| s.phase) {
            Some(Phase::Succeeded) => summary.succeeded += 1,
            Some(Phase::Failed) | Some(Phase::Cancelled) => summary.failed += 1,
            _ => summary.waiting += 1,
        }
    }
    // duplicates and unreadable documents are failures of their own files
    summary.failed += st.claims.failed();
    Ok(summary)
}

/// `synced`: the first listing is complete; before that, resources are only recorded
/// (a leaf must not build before its base, listed later, is known).
async fn on_source_event(ev: SourceEvent, ctx: &Arc<Context>, synced: bool) {
    match ev {
        SourceEvent::Applied(res) => {
            let res = *res;
            let key = res.key();
            let name = res.build.metadata.name.as_deref().unwrap_or_default();
            if let Err(e) = validate_metadata(name, &res.namespace()) {
                // such a key may even collide with a valid one (`a`+`b/c`, `a/b`+`c`)
                broken(ctx, &key, &res.origin, synced).await;
                ctx.transition(&res, None, Transition::Invalid(e.to_string()))
                    .await;
                return;
            }
            let claimed = ctx.state.lock().await.claims.apply(res.clone());
            match claimed {
                Claimed::Holds => hold(res, ctx, synced).await,
                Claimed::Duplicate { holder } => {
                    let msg = format!(
                        "{key} is defined twice: in {holder} and in {}; rename one",
                        res.origin
                    );
                    warn!("{msg}");
                    // no spec hash: it builds once it holds the name
                    ctx.transition(&res, None, Transition::Invalid(msg)).await;
                }
            }
        }
        SourceEvent::Deleted { key, origin } => {
            let mut st = ctx.state.lock().await;
            if st.releasing.contains_key(&key) {
                return; // told again while its build stops
            }
            st.statuses.remove(&(key.clone(), origin.clone()));
            let withdrawn = st.claims.withdraw(&key, &origin);
            drop(st);
            if let Withdrawn::Holder { next } = withdrawn {
                let running = ctx.cancel(&key, &origin, "the resource was deleted").await;
                let waiters = ctx.state.lock().await.deps.remove(&key);
                match next {
                    Some(next) => hold(*next, ctx, synced).await,
                    None => wake(waiters, ctx, synced).await,
                }
                if running {
                    // released once the running build reports its end
                    let mut st = ctx.state.lock().await;
                    st.releasing.insert(key, origin);
                    return;
                }
            }
            ctx.release(&key, &origin).await;
        }
        SourceEvent::Invalid {
            key,
            origin,
            message,
        } => {
            warn!(build = %key, "{message}");
            broken(ctx, &key, &origin, synced).await;
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

/// `res` holds its name (new, changed, or taking over from a holder that went).
async fn hold(res: Resource, ctx: &Arc<Context>, synced: bool) {
    let key = res.key();
    let images = images_of(&res);
    let waiters = {
        let mut st = ctx.state.lock().await;
        let mut waiters = st.deps.set(&key, images);
        // its image may be in the registry now (a status read back from its file)
        if st.is_built(&key) {
            waiters.extend(st.deps.take_waiters(&key));
        }
        waiters
    };
    if synced {
        run_reconcile(res, ctx).await;
    }
    wake(waiters, ctx, synced).await;
}

/// The document of `origin` claiming `key` cannot be built: only its own file's
/// resource is affected. If it held the name, its build stops and a duplicate of
/// another file, if any, takes over.
async fn broken(ctx: &Arc<Context>, key: &str, origin: &str, synced: bool) {
    let withdrawn = ctx.state.lock().await.claims.broken(key, origin);
    if let Withdrawn::Holder { next } = withdrawn {
        ctx.queue.cancel(key);
        let waiters = ctx.state.lock().await.deps.remove(key);
        match next {
            Some(next) => hold(*next, ctx, synced).await,
            None => wake(waiters, ctx, synced).await,
        }
    }
}

/// Reconciles the resources that waited for an image whose producer changed.
pub(super) async fn wake(keys: Vec<String>, ctx: &Arc<Context>, synced: bool) {
    if !synced {
        return; // all are reconciled once the listing is complete
    }
    for key in keys {
        let res = ctx.state.lock().await.claims.holder(&key).cloned();
        if let Some(res) = res {
            run_reconcile(res, ctx).await;
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
