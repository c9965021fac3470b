//! What the triggers last saw ([`Observation`]s), what a resource's build would be made
//! from now ([`Inputs`]), and what the triggers should watch ([`Targets`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::cause::Inputs;
use super::context::State;
use super::deps::normalize_ref;
use super::kept::Watch;
use crate::registry::DockerConfig;
use crate::sources::Resource;
use crate::triggers::{ContextTarget, GitTarget, Observation, PollSettings, Targets};

/// The latest observation of each input.
#[derive(Default)]
pub(super) struct Observed {
    context: HashMap<String, String>,
    git: HashMap<GitTarget, String>,
    url: HashMap<String, String>,
    /// External base images by normalised reference.
    bases: HashMap<String, String>,
}

/// The git remote and branch a resource builds from, if it has a git source.
pub(super) fn git_target(res: &Resource) -> Option<GitTarget> {
    res.build.spec.source.git.as_ref().map(|g| GitTarget {
        url: g.url.clone(),
        revision: g.revision.clone().filter(|r| !r.trim().is_empty()),
    })
}

impl Observed {
    /// Records `obs`; false when it says nothing new.
    pub(super) fn record(&mut self, obs: &Observation) -> bool {
        let (map, k, v) = match obs {
            Observation::Context { key, digest } => (&mut self.context, key.clone(), digest),
            Observation::Git {
                url,
                revision,
                commit,
                ..
            } => {
                let t = GitTarget {
                    url: url.clone(),
                    revision: revision.clone(),
                };
                return self.git.insert(t, commit.clone()).as_ref() != Some(commit);
            }
            Observation::Url { url, version } => (&mut self.url, url.clone(), version),
            Observation::Base { image, digest } => (&mut self.bases, normalize_ref(image), digest),
        };
        map.insert(k, v.clone()).as_ref() != Some(v)
    }

    /// Forgets what belonged to the resource `key` alone.
    pub(super) fn forget(&mut self, key: &str) {
        self.context.remove(key);
    }
}

impl State {
    /// What `res`'s build would be made from now: the last observations of its
    /// source, and the digests of its base images (a base another resource builds:
    /// that build's digest, once it is built).
    pub(super) fn current_inputs(&self, res: &Resource) -> Inputs {
        let key = res.key();
        let src = &res.build.spec.source;
        let o = &self.observed;
        let mut bases = std::collections::BTreeMap::new();
        for need in self.deps.images(&key).map(|i| &i.needs[..]).unwrap_or(&[]) {
            let n = normalize_ref(need);
            let digest = match self.deps.producer(need, &key) {
                Some(p) if self.is_built(p) => self
                    .claims
                    .holder(p)
                    .and_then(|r| self.status_of(&r).and_then(|s| s.image_digest.clone())),
                Some(_) => None,
                None => o.bases.get(&n).cloned(),
            };
            if let Some(d) = digest {
                bases.insert(n, d);
            }
        }
        Inputs {
            context: src.path.as_ref().and_then(|_| o.context.get(&key).cloned()),
            commit: git_target(res).and_then(|t| o.git.get(&t).cloned()),
            url: src.url.as_ref().and_then(|u| o.url.get(u).cloned()),
            bases,
        }
    }

    /// The resources an observation concerns.
    pub(super) fn observers(&self, obs: &Observation) -> Vec<String> {
        let watching = |f: &dyn Fn(&Watch) -> bool| {
            self.claims
                .holders()
                .filter(|(_, h)| h.watch.as_deref().is_some_and(f))
                .map(|(k, _)| k.to_string())
                .collect()
        };
        match obs {
            Observation::Context { key, .. } => vec![key.clone()],
            Observation::Git { url, revision, .. } => watching(&|w| {
                w.git
                    .as_ref()
                    .is_some_and(|(t, _)| &t.url == url && &t.revision == revision)
            }),
            Observation::Url { url, .. } => watching(&|w| w.url.as_ref() == Some(url)),
            Observation::Base { image, .. } => self.deps.needing(image),
        }
    }

    /// Everything the triggers should watch for the resources held now.
    pub(super) fn targets(&self, poll: &PollSettings, anonymous: &Arc<DockerConfig>) -> Targets {
        let mut t = Targets::default();
        for (key, h) in self.claims.holders() {
            let Some(w) = h.watch.as_deref().filter(|w| w.source) else {
                continue;
            };
            if let Some((base, path, dockerfile)) = &w.context
                && let Ok(root) = crate::runner::context::resolve_context_dir(base, path)
            {
                let dockerfile = dockerfile.clone();
                t.contexts
                    .insert(key.to_string(), ContextTarget { root, dockerfile });
            }
            if let Some((g, every)) = &w.git {
                let every = every.unwrap_or(poll.git);
                let e = t.git.entry(g.clone()).or_insert(every);
                // the most eager resource sets the pace; zero (never) only if all say so
                if *e == Duration::ZERO || (every != Duration::ZERO && every < *e) {
                    *e = every;
                }
            }
            if let Some(u) = &w.url {
                t.urls.insert(u.clone());
            }
        }
        for (image, needers) in self.deps.external() {
            let wanted = needers
                .iter()
                .any(|k| self.claims.kept(k).is_some_and(|h| h.base_triggers));
            if !wanted {
                continue;
            }
            let auth = needers
                .iter()
                .find_map(|k| self.auths.get(k).cloned())
                .unwrap_or_else(|| anonymous.clone());
            t.bases.insert(image.clone(), auth);
        }
        t
    }
}
