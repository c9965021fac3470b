//! The queue's two lanes: builds people asked for (a new resource, a spec change,
//! `spec.rebuild`) and automatic ones (triggers). Each lane takes namespaces in turn
//! (round robin), so one team's hundred builds do not starve another's one.

use std::collections::{BTreeMap, VecDeque};

use super::Job;

/// Which lane a build waits in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Asked for by a person: always started before automatic builds.
    #[default]
    User,
    /// Started by a trigger (a context, commit, url or base change): limited to
    /// `--max-auto-builds` at once.
    Auto,
}

/// One lane: jobs by namespace, taken in turn.
#[derive(Default)]
pub(super) struct Fair {
    pending: BTreeMap<String, VecDeque<Job>>,
    last_namespace: Option<String>,
}

impl Fair {
    pub(super) fn push(&mut self, job: Job) {
        self.pending
            .entry(job.namespace.clone())
            .or_default()
            .push_back(job);
    }

    /// The next job, taking namespaces in turn.
    pub(super) fn pop(&mut self) -> Option<Job> {
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

    pub(super) fn len(&self) -> usize {
        self.pending.values().map(VecDeque::len).sum()
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.pending
            .values()
            .any(|q| q.iter().any(|j| j.key == key))
    }

    pub(super) fn remove(&mut self, key: &str) {
        for q in self.pending.values_mut() {
            q.retain(|j| j.key != key);
        }
        self.pending.retain(|_, q| !q.is_empty());
    }

    pub(super) fn clear(&mut self) {
        self.pending.clear();
    }
}
