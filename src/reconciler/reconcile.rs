//! One pass over one resource: decide ([`decide`]), check what can be checked
//! without fetching anything, and queue the build or say in the status
//! why it waits or cannot be built.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, instrument};

use super::cause::{Current, spec_cause};
use super::context::Context;
use super::credentials::Fetched;
use super::deps::Images;
use super::status::{self, Queued, Transition};
use super::{Decision, decide};
use crate::api::{PATH_IN_KUBERNETES, Triggers};
use crate::queue::Job;
use crate::runner::{self, BuildRequest, directives};
use crate::sources::Resource;
use crate::{Error, Result, api::validate_spec};

/// What the reconciler asks of the loop after one pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing more until the resource or a build changes.
    AwaitChange,
    /// Look again after a while.
    Requeue(Duration),
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

impl Context {
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
        Err(e) => return Ok(held_up(&ctx, &res, &hash, &cause, "registry credentials", e).await),
    };
    let secrets = match secrets {
        Ok(s) => s,
        Err(e) => return Ok(held_up(&ctx, &res, &hash, &cause, "build secrets", e).await),
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

/// A build held up by what it needs to read (`what`: its registry credentials, its
/// build secrets). What may yet appear (a Secret applied after the resource) waits and
/// is looked for again; anything else is the spec's to fix.
async fn held_up(
    ctx: &Context,
    res: &Resource,
    hash: &str,
    cause: &super::Cause,
    what: &str,
    e: crate::Error,
) -> Action {
    if e.is_retryable() {
        let msg = format!("waiting for {what}: {}", e.detail());
        ctx.transition(res, Some(hash), Transition::Waiting(msg, Some(cause)))
            .await;
        Action::Requeue(AUTH_RETRY)
    } else {
        ctx.transition(res, Some(hash), Transition::Invalid(e.to_string()))
            .await;
        Action::AwaitChange
    }
}
