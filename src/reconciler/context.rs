//! What every reconcile shares ([`Context`]: the source, the queue, what is known
//! of each resource) and the status writes through it; with the run's [`Settings`]
//! and its [`Summary`]. One pass over a resource is in `reconcile.rs`, the event
//! loop that drives the passes in `run.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, watch};
use tracing::info;

use super::claims::Claims;
use super::credentials::{self, Fetched};
use super::deps::Dependencies;
use super::is_built;
use super::observed::Observed;
use super::status::{self, Transition};
use super::status_writer::{StatusWriter, Work};
use crate::api::{DockerBuildStatus, Phase};
use crate::queue::{Queue, QueueConfig};
use crate::registry::DockerConfig;
use crate::sources::{Notice, Resource, Source};
use crate::triggers::{PollSettings, Targets, TriggerSettings};

#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub queue: QueueConfig,
    /// Stop once every resource has been reconciled and no build runs.
    pub once: bool,
    /// What rebuilds an image without a spec change; off for one-shot runs.
    pub triggers: TriggerSettings,
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

    /// `res` as its source shows it now. Once that shows the status this process
    /// last wrote for it, the written copy is no longer newer and is let go: kept,
    /// one per resource that ever built, written statuses would soon be most of a
    /// controller's memory.
    pub(super) fn echoed(&mut self, res: &Resource) {
        let slot = (res.key(), res.origin.clone());
        if self
            .statuses
            .get(&slot)
            .is_some_and(|s| res.build.status.as_ref() == Some(s))
        {
            self.statuses.remove(&slot);
        }
    }

    /// The status this process wrote for the resource `key` of `origin`, if any.
    fn written(&self, key: &str, origin: &str) -> Option<&DockerBuildStatus> {
        self.statuses.get(&(key.to_string(), origin.to_string()))
    }

    /// True when the image of the resource holding `key` is in the registry.
    pub(super) fn is_built(&self, key: &str) -> bool {
        self.claims
            .kept(key)
            .is_some_and(|k| match self.written(key, &k.origin) {
                Some(s) => is_built(Some(s), &k.spec_hash),
                None => k.built,
            })
    }

    /// The phase of the resource holding `key`, as its status says now.
    pub(super) fn phase(&self, key: &str) -> Option<Phase> {
        let k = self.claims.kept(key)?;
        match self.written(key, &k.origin) {
            Some(s) => s.phase,
            None => k.phase,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DockerBuild, DockerBuildSpec};

    fn resource(status: Option<DockerBuildStatus>) -> Resource {
        let spec: DockerBuildSpec = crate::yaml::from_str(
            "source: {inline: {dockerfile: \"FROM scratch\"}}\noutput: {repository: app}",
        )
        .unwrap();
        let mut build = DockerBuild::new("app", spec);
        build.metadata.namespace = Some("team".into());
        build.status = status;
        Resource {
            build,
            origin: "uid-1".into(),
            base_dir: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn a_written_status_is_let_go_once_the_source_shows_it_and_not_before() {
        let hash = resource(None).build.spec.hash();
        let status = |phase, number| DockerBuildStatus {
            phase: Some(phase),
            spec_hash: Some(hash.clone()),
            build_number: Some(number),
            ..Default::default()
        };
        let slot = ("team/app".to_string(), "uid-1".to_string());
        let mut st = State::default();
        st.claims.apply(resource(Some(status(Phase::Building, 1))));
        st.statuses
            .insert(slot.clone(), status(Phase::Succeeded, 1));

        // the source still shows the older status: the written one stays, and wins
        let lagging = resource(Some(status(Phase::Building, 1)));
        st.echoed(&lagging);
        st.claims.apply(lagging);
        assert!(st.statuses.contains_key(&slot));
        assert_eq!(st.phase("team/app"), Some(Phase::Succeeded));
        assert!(st.is_built("team/app"));

        // it shows what was written: one copy is enough, and it says the same
        let echo = resource(Some(status(Phase::Succeeded, 1)));
        st.echoed(&echo);
        st.claims.apply(echo);
        assert!(!st.statuses.contains_key(&slot));
        assert_eq!(st.phase("team/app"), Some(Phase::Succeeded));
        assert!(st.is_built("team/app"));
        let res = st.claims.holder("team/app").unwrap();
        assert_eq!(st.status_of(&res).and_then(|s| s.build_number), Some(1));
    }
}
