//! The controller: resources in from a [`Source`], decisions from [`decide`], builds
//! out through the [`Queue`], status back through the source. The loop that drives
//! it is in `run.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, watch};
use tracing::{info, instrument};

use super::cause::{Current, spec_cause};
use super::claims::Claims;
use super::credentials::{self, Fetched};
use super::deps::{Dependencies, Images};
use super::observed::Observed;
use super::status::{self, Queued, Transition};
use super::status_writer::{StatusWriter, Work};
use super::{Decision, decide, is_built};
use crate::api::{DockerBuildStatus, PATH_IN_KUBERNETES, Triggers};
use crate::queue::{Job, Queue, QueueConfig};
use crate::registry::DockerConfig;
use crate::runner::{self, BuildRequest, directives};
use crate::sources::{Notice, Resource, Source};
use crate::triggers::{PollSettings, Targets, TriggerSettings};
use crate::{Error, Result, api::validate_spec};

#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub queue: QueueConfig,
    /// Stop once every resource has been reconciled and no build runs.
    pub once: bool,
    /// What rebuilds an image without a spec change; off for one-shot runs.
    pub triggers: TriggerSettings,
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
    pub(super) source: Arc<dyn Source>,
    pub(super) queue: Queue,
    pub(super) backend: &'static str,
    pub(super) remote: bool,
    pub(super) state: Mutex<State>,
    /// Keys to reconcile again later (a Secret that does not exist yet, say).
    pub(super) requeue: mpsc::UnboundedSender<(String, Duration)>,
    /// Statuses, Events and releases go out through it, off the loop.
    pub(super) writer: StatusWriter,
    /// Where credentials read off the loop come back.
    pub(super) fetched: credentials::Sender,
    /// What the triggers watch; None when they are off.
    pub(super) targets: Option<watch::Sender<Targets>>,
    /// A trigger computes `path` contexts' digests.
    pub(super) contexts_watched: bool,
    pub(super) poll: PollSettings,
    /// Credentials for base images no resource's own credentials cover.
    pub(super) anonymous: Arc<DockerConfig>,
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
    /// What the triggers last saw.
    pub(super) observed: Observed,
    /// Each resource's registry credentials as its last build used them (the base
    /// image poller borrows them).
    pub(super) auths: HashMap<String, Arc<DockerConfig>>,
    /// Credentials being read, by key: for which spec hash.
    pub(super) fetching: HashMap<String, String>,
    /// Credentials read and not yet taken, by key.
    pub(super) fetched: HashMap<String, Fetched>,
}

impl State {
    pub(super) fn status_of<'a>(&'a self, res: &'a Resource) -> Option<&'a DockerBuildStatus> {
        self.statuses
            .get(&(res.key(), res.origin.clone()))
            .or(res.build.status.as_ref())
    }

    /// True when the image of the resource holding `key` is in the registry.
    pub(super) fn is_built(&self, key: &str) -> bool {
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

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Context {
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
    pub(super) async fn write(
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
        let notice = status::notice(prev.as_ref(), &next);
        self.writer.send(key, origin, Work::Status(Box::new(next)));
        if let Some(n) = notice {
            self.writer.send(key, origin, Work::Notice(n));
        }
    }

    /// The backend may let go of the build's results once the status written
    /// before this call has landed.
    pub(super) fn settle(&self, key: &str, origin: &str) {
        self.writer.send(key, origin, Work::Settle);
    }

    /// Cancels the key's build; true when a running build will still report its end.
    pub(super) async fn cancel(&self, key: &str, origin: &str, why: &str) -> bool {
        let Some(running) = self.queue.cancel(key) else {
            return false;
        };
        info!(build = %key, "{why}; cancelling its build");
        let n = Notice {
            warning: false,
            reason: "Cancelled",
            message: format!("{why}; the build was cancelled"),
        };
        self.writer.send(key, origin, Work::Notice(n));
        running
    }

    /// Lets the source forget a deleted resource (its finalizer, in Kubernetes).
    pub(super) fn release(&self, key: &str, origin: &str) {
        self.writer.send(key, origin, Work::Release);
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
    let (status, inputs) = {
        let st = ctx.state.lock().await;
        (st.status_of(&res).cloned(), st.current_inputs(&res))
    };
    let triggers = spec.triggers.as_ref();
    let current = Current {
        inputs,
        rebuild: spec.rebuild.as_deref(),
        source: Triggers::source_enabled(triggers),
        base: Triggers::base_enabled(triggers),
    };
    // a `path` context is watched: build once its digest is known, so the status
    // records what was built and a later edit can be told from it
    if ctx.contexts_watched
        && spec.source.path.is_some()
        && current.source
        && current.inputs.context.is_none()
    {
        return Ok(Action::AwaitChange);
    }
    let in_flight = ctx.queue.in_flight(&key);
    let cause = match decide(&hash, status.as_ref(), in_flight.as_ref(), &current) {
        Decision::Nothing => return Ok(Action::AwaitChange),
        Decision::Replace => {
            ctx.cancel(&key, &res.origin, "the spec changed during the build")
                .await;
            spec_cause(status.as_ref(), current.rebuild)
        }
        Decision::Build(cause) => cause,
    };
    if cause.is_new() && !matches!(cause, super::Cause::Spec | super::Cause::Rebuild) {
        info!(build = %key, trigger = %cause, "rebuilding");
    }

    // what can be checked without fetching anything is checked before queueing
    let cycle = ctx.state.lock().await.deps.cycle(&key);
    if let Some(cycle) = cycle {
        let msg = format!(
            "base images form a cycle: {}; no build can start",
            cycle.join(" is built FROM ")
        );
        ctx.state.lock().await.deps.wait(&key, Vec::new());
        // no spec hash: it looks again when a member's Dockerfile changes
        ctx.transition(&res, None, Transition::Invalid(msg)).await;
        return Ok(Action::AwaitChange);
    }
    match ctx.blockers(&res).await {
        Err(msg) => {
            ctx.transition(&res, Some(&hash), Transition::Invalid(msg))
                .await;
            return Ok(Action::AwaitChange);
        }
        Ok(waiting) if !waiting.is_empty() => {
            let msg = format!("waiting for base image {}", waiting.join(", "));
            ctx.transition(&res, Some(&hash), Transition::Waiting(msg, Some(&cause)))
                .await;
            return Ok(Action::AwaitChange);
        }
        Ok(_) => {}
    }

    // read off the loop: this resource is reconciled again when they arrive
    let Some(Fetched { auth, secrets, .. }) = ctx.credentials(&res, &hash).await else {
        return Ok(Action::AwaitChange);
    };
    let auth = match auth {
        Ok(a) => {
            let a = Arc::new(a);
            ctx.state.lock().await.auths.insert(key.clone(), a.clone());
            a
        }
        // credentials that may yet appear (a Secret applied after the build): look again
        Err(e) if e.is_retryable() => {
            let msg = format!("waiting for registry credentials: {}", e.detail());
            ctx.transition(&res, Some(&hash), Transition::Waiting(msg, Some(&cause)))
                .await;
            return Ok(Action::Requeue(AUTH_RETRY));
        }
        Err(e) => {
            ctx.transition(&res, Some(&hash), Transition::Invalid(e.to_string()))
                .await;
            return Ok(Action::AwaitChange);
        }
    };
    let secrets = match secrets {
        Ok(s) => s,
        // a Secret applied after the build: look again
        Err(e) if e.is_retryable() => {
            let msg = format!("waiting for build secrets: {}", e.detail());
            ctx.transition(&res, Some(&hash), Transition::Waiting(msg, Some(&cause)))
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
        lane: cause.lane(),
        inputs: current.inputs.clone(),
        number: status::number_for(status.as_ref().and_then(|s| s.build_number), cause.is_new()),
    });
    let queued = Queued {
        cause: Some(&cause),
        inputs: Some(&current.inputs),
        rebuild: current.rebuild,
        history_limit: spec.history_limit.unwrap_or(0),
    };
    ctx.transition(&res, Some(&hash), Transition::Queued(queued))
        .await;
    Ok(Action::AwaitChange)
}
