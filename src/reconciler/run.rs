//! The event loop that drives the reconciler: source events, build updates,
//! trigger observations and requeues, one at a time. It never waits on the network:
//! statuses go out through `status_writer`, credentials are read in `credentials`.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::{Mutex, mpsc};
use tracing::{info, warn};

use super::claims::{Claimed, Withdrawn};
use super::context::{Context, Settings, State, Summary};
use super::credentials;
use super::reconcile::{Action, images_of, reconcile};
use super::requeue::Requeue;
use super::status::Transition;
use super::status_writer::{self, SourceSink, StatusWriter};
use super::updates::on_update;
use crate::api::{Phase, validate_metadata};
use crate::backends::Backend;
use crate::health;
use crate::queue::Queue;
use crate::registry::DockerConfig;
use crate::sources::{Resource, Source, SourceEvent};
use crate::triggers::{self, Channels, Observation};
use crate::{Error, Result};

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
    let mut requeue = Requeue::default();
    let (fetched_tx, mut fetched_rx) = mpsc::unbounded_channel();
    let sink = SourceSink {
        source: source.clone(),
        queue: queue.clone(),
    };
    let writer = StatusWriter::new(Arc::new(sink), status_writer::CONCURRENCY);
    let on = settings.triggers.enabled && !settings.once;
    let Channels {
        targets,
        mut observations,
        observer,
    } = Channels::new();
    let started = if on {
        triggers::start(&settings.triggers, &targets, observer).await?
    } else {
        drop(observer);
        Default::default()
    };
    let ctx = Arc::new(Context {
        source,
        queue: queue.clone(),
        backend: backend_name,
        remote,
        state: Mutex::new(State::default()),
        requeue: requeue_tx,
        writer: writer.clone(),
        fetched: fetched_tx,
        targets: on.then_some(targets),
        contexts_watched: started.contexts,
        poll: settings.triggers.poll.clone(),
        anonymous: Arc::new(DockerConfig::load(None).unwrap_or_default()),
    });
    let mut synced = false;
    let mut source_ended = false;
    // what the triggers watch is worked out again once a burst of source events is
    // through, not after each: it reads every resource held
    let mut stale_targets = false;
    loop {
        if stale_targets && src_rx.is_empty() {
            refresh_targets(&ctx).await;
            stale_targets = false;
        }
        if settings.once
            && synced
            && queue.busy() == 0
            && up_rx.is_empty()
            && ctx.state.lock().await.fetching.is_empty()
            && fetched_rx.is_empty()
        {
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
                            st.claims.holders().map(|(k, h)| (h.origin.clone(), k.to_string())).collect()
                        };
                        all.sort();
                        let n = all.len();
                        for (_, key) in all {
                            let res = ctx.state.lock().await.claims.holder(&key);
                            if let Some(res) = res {
                                run_reconcile(res, &ctx).await;
                            }
                        }
                        info!(resources = n, "initial sync done");
                        health::readiness().set("watch", true);
                        stale_targets = true;
                        continue;
                    }
                    on_source_event(ev, &ctx, synced).await;
                    stale_targets |= synced;
                }
                None => {
                    source_ended = true;
                    break;
                }
            },
            Some(up) = up_rx.recv() => on_update(up, &ctx).await,
            Some((key, after)) = requeue_rx.recv() => requeue.schedule(key, after),
            Some(key) = requeue.next(), if requeue.len() > 0 => {
                let res = ctx.state.lock().await.claims.holder(&key);
                if let Some(res) = res {
                    run_reconcile(res, &ctx).await;
                }
            }
            Some(f) = fetched_rx.recv() => {
                let key = f.key.clone();
                if credentials::arrived(f, &ctx).await {
                    let res = ctx.state.lock().await.claims.holder(&key);
                    if let Some(res) = res {
                        run_reconcile(res, &ctx).await;
                    }
                    // not taken (the resource waits for a base now, say): read afresh later
                    ctx.state.lock().await.fetched.remove(&key);
                }
            }
            Some(obs) = observations.recv() => on_observation(obs, &ctx, synced).await,
        }
    }
    for t in started.tasks {
        t.abort();
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
    // what the loop decided is written before the run counts as over
    writer.flush().await;
    let st = ctx.state.lock().await;
    let mut summary = Summary::default();
    for (key, _) in st.claims.holders() {
        match st.phase(key) {
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
            let claimed = {
                let mut st = ctx.state.lock().await;
                st.echoed(&res);
                st.claims.apply(res.clone())
            };
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
            if matches!(withdrawn, Withdrawn::Holder { .. }) {
                st.observed.forget(&key);
                st.auths.remove(&key);
                st.fetching.remove(&key);
                st.fetched.remove(&key);
            }
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
            ctx.release(&key, &origin);
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
        // what it is built FROM changed: a cycle through it may be gone
        let family = if st
            .deps
            .images(&key)
            .is_some_and(|i| i.needs != images.needs)
        {
            st.deps.dependents(&key)
        } else {
            Vec::new()
        };
        let mut waiters = st.deps.set(&key, images);
        waiters.extend(family);
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
        let res = ctx.state.lock().await.claims.holder(&key);
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
            let _ = ctx.requeue.send((key, after));
        }
        Err(e) => {
            ctx.queue.metrics().reconcile_error(e.metric_label());
            warn!(build = %key, "reconcile failed: {e}");
        }
    }
}

/// A trigger saw something: the resources it concerns look again.
async fn on_observation(obs: Observation, ctx: &Arc<Context>, synced: bool) {
    let keys = {
        let mut st = ctx.state.lock().await;
        if !st.observed.record(&obs) {
            return;
        }
        st.observers(&obs)
    };
    tracing::debug!(?obs, resources = keys.len(), "observed");
    wake(keys, ctx, synced).await;
}

/// Tells the triggers what to watch for the resources held now.
async fn refresh_targets(ctx: &Arc<Context>) {
    let Some(tx) = &ctx.targets else { return };
    let t = ctx.state.lock().await.targets(&ctx.poll, &ctx.anonymous);
    tx.send_replace(t);
}

#[cfg(test)]
mod tests;
