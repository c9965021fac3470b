//! The framework's decisions without I/O: for each build, event and offer, what to
//! tell the build and which calls to make on the master. The connection loop feeds
//! it; unit tests and the offer benchmark drive it directly.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::info;

use super::liveness::LaunchWatch;
use super::placement::Locality;
pub use super::types::{CoreConfig, ExecutorLaunch, Placement, TaskSpec, TaskUpdate};
use crate::Error;
use crate::mesos::proto::v1::TaskStatus;
use crate::mesos::proto::v1::scheduler::Call;
use crate::mesos::task::parse_task_id;

struct Pending {
    spec: TaskSpec,
    tx: mpsc::UnboundedSender<TaskUpdate>,
    /// Last Waiting message sent, so an unchanged reason is not sent again.
    told: Option<String>,
}

struct Active {
    key: String,
    tx: mpsc::UnboundedSender<TaskUpdate>,
    agent_id: String,
    host: String,
    running: bool,
    kill_requested: bool,
    /// Until the launch's first status update.
    watch: Option<LaunchWatch>,
    /// TASK_UNREACHABLE: its agent is partitioned; it may come back.
    unreachable: bool,
}

#[derive(Default)]
pub struct Core {
    pub cfg: CoreConfig,
    framework_id: Option<String>,
    subscribed: bool,
    launch_after: Option<Instant>,
    pending: VecDeque<Pending>,
    /// Resumed builds whose task the master must first say something about.
    reconciling: HashMap<String, Pending>,
    active: HashMap<String, Active>,
    /// Running tasks of ours that the master reported and no build has claimed yet:
    /// (key, spec hash) → (task ID, agent ID).
    unclaimed: HashMap<(String, String), (String, String)>,
    /// The same for tasks that ended (FINISHED/FAILED) before their build was resumed:
    /// the build takes the outcome, and the update is acknowledged once it is written.
    ended_unclaimed: HashMap<(String, String), TaskStatus>,
    /// Terminal updates acknowledged once their status is written, by key.
    unacked: HashMap<String, Vec<(String, String, Vec<u8>)>>,
    /// Acknowledgements whose status was written while unsubscribed: sent once
    /// subscribed again (a call without a subscription is refused).
    settled_offline: Vec<(String, String, Vec<u8>)>,
    suppressed: bool,
    /// Offers were declined with a filter since the last REVIVE.
    declined: bool,
    /// What each agent's daemon holds, and the builds waiting for a better agent.
    locality: Locality,
    /// Each agent's HTTP address, by agent ID, from its latest offer.
    agent_urls: HashMap<String, String>,
}

impl Core {
    pub fn new(cfg: CoreConfig, framework_id: Option<String>) -> Self {
        Self {
            locality: Locality::new(cfg.locality_wait),
            cfg,
            framework_id,
            ..Default::default()
        }
    }

    pub fn framework_id(&self) -> Option<&str> {
        self.framework_id.as_deref()
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscribed
    }

    /// Until when new launches wait for reconciliation answers after subscribing.
    pub fn settling_until(&self) -> Option<Instant> {
        self.launch_after.filter(|t| Instant::now() < *t)
    }

    /// Builds handed over and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.reconciling.len() + self.active.len()
    }

    /// The master took our subscription: reconcile what we know, then ask for offers
    /// only if something waits.
    pub fn on_subscribed(&mut self, framework_id: String, now: Instant) -> Vec<Call> {
        if self.framework_id.as_deref() != Some(framework_id.as_str()) {
            info!(%framework_id, "registered as a new framework");
        }
        self.framework_id = Some(framework_id);
        self.subscribed = true;
        self.launch_after = Some(now + self.cfg.settle);
        let mut calls: Vec<Call> = std::mem::take(&mut self.settled_offline)
            .into_iter()
            .flat_map(|a| self.ack_now(Some(a)))
            .collect();
        let known: Vec<(String, Option<String>)> = self
            .active
            .iter()
            .map(|(id, a)| (id.clone(), Some(a.agent_id.clone())))
            .chain(
                self.reconciling
                    .iter()
                    .map(|(id, p)| (id.clone(), p.spec.previous.as_ref().map(|(_, a)| a.clone()))),
            )
            .collect();
        if !known.is_empty() {
            calls.push(self.reconcile_call(known));
        }
        calls.push(self.reconcile_call(Vec::new()));
        // a KILL sent while disconnected was lost: send it again
        let kills: Vec<String> = self
            .active
            .values()
            .filter(|a| a.kill_requested)
            .map(|a| a.key.clone())
            .collect();
        for key in kills {
            calls.extend(self.kill(&key));
        }
        calls.push(self.offers_wanted_call());
        calls
    }

    /// The subscription is gone; builds hear why they wait.
    pub fn on_disconnected(&mut self, why: &str) {
        self.subscribed = false;
        for p in self.pending.iter_mut() {
            tell(p, why.to_string());
        }
    }

    /// Periodic implicit reconciliation: the master answers for every task of ours.
    pub fn periodic(&self) -> Vec<Call> {
        if self.subscribed {
            vec![self.reconcile_call(Vec::new())]
        } else {
            Vec::new()
        }
    }

    /// A build to run.
    pub fn launch(&mut self, spec: TaskSpec, tx: mpsc::UnboundedSender<TaskUpdate>) -> Vec<Call> {
        let claim = (spec.key.clone(), spec.spec_hash.clone());
        if let Some(status) = self.ended_unclaimed.remove(&claim) {
            let task_id = status.task_id.value.clone();
            let agent_id = status.agent_id.clone().map(|a| a.value).unwrap_or_default();
            info!(build = %spec.key, %task_id, "re-attached to a task that ended while slipway was away");
            self.attach(task_id, agent_id, String::new(), spec.key, tx, None);
            return self.on_update(status);
        }
        if let Some((task_id, agent_id)) = self.unclaimed.remove(&claim) {
            info!(build = %spec.key, %task_id, "re-attached to a running task");
            self.attach(task_id, agent_id, String::new(), spec.key, tx, None);
            return Vec::new();
        }
        let mut p = Pending {
            spec,
            tx,
            told: None,
        };
        if let Some((task_id, _)) = p.spec.previous.clone()
            && parse_task_id(&task_id) == Some(claim)
        {
            // a task launched before a restart may still run: ask before launching again
            tell(
                &mut p,
                "asking the Mesos master about the task launched before the restart".into(),
            );
            let agent = p.spec.previous.as_ref().map(|(_, a)| a.clone());
            self.reconciling.insert(task_id.clone(), p);
            if self.subscribed {
                return vec![self.reconcile_call(vec![(task_id, agent)])];
            }
            return Vec::new();
        }
        if !self.subscribed {
            tell(&mut p, "waiting to subscribe to the Mesos master".into());
        } else {
            tell(&mut p, "waiting for a Mesos offer".into());
        }
        self.pending.push_back(p);
        if self.subscribed && (self.suppressed || self.declined) {
            // declined offers are filtered for a while: a new build clears that
            return vec![self.offers_wanted_call()];
        }
        Vec::new()
    }

    fn attach(
        &mut self,
        task_id: String,
        agent_id: String,
        host: String,
        key: String,
        tx: mpsc::UnboundedSender<TaskUpdate>,
        // a new launch: watched until its first update, and why it went there
        launch: Option<(LaunchWatch, Option<String>)>,
    ) {
        let (watch, why) = launch.map_or((None, None), |(w, why)| (Some(w), why));
        let _ = tx.send(TaskUpdate::Placed(Placement {
            framework_id: self.framework_id.clone().unwrap_or_default(),
            task_id: task_id.clone(),
            agent_id: agent_id.clone(),
            host: host.clone(),
            agent_url: self.agent_urls.get(&agent_id).cloned(),
            why,
        }));
        self.active.insert(
            task_id,
            Active {
                key,
                tx,
                agent_id,
                host,
                running: false,
                kill_requested: false,
                watch,
                unreachable: false,
            },
        );
    }

    /// Stops the build of `key` wherever it is.
    pub fn kill(&mut self, key: &str) -> Vec<Call> {
        if let Some(i) = self.pending.iter().position(|p| p.spec.key == key) {
            if let Some(p) = self.pending.remove(i) {
                self.locality.forget(&p.spec.task_id);
                let _ = p.tx.send(TaskUpdate::Done(Err(Error::Cancelled(
                    "cancelled before it was launched".into(),
                ))));
            }
            return Vec::new();
        }
        let targets: Vec<(String, Option<String>)> = self
            .active
            .iter_mut()
            .filter(|(_, a)| a.key == key)
            .map(|(id, a)| {
                a.kill_requested = true;
                (id.clone(), Some(a.agent_id.clone()))
            })
            .chain(
                self.reconciling
                    .iter()
                    .filter(|(_, p)| p.spec.key == key)
                    .map(|(id, p)| (id.clone(), p.spec.previous.clone().map(|(_, a)| a))),
            )
            .collect();
        let reconciling: Vec<String> = self
            .reconciling
            .iter()
            .filter(|(_, p)| p.spec.key == key)
            .map(|(id, _)| id.clone())
            .collect();
        for id in reconciling {
            if let Some(p) = self.reconciling.remove(&id) {
                let _ = p.tx.send(TaskUpdate::Done(Err(Error::Cancelled(
                    "build cancelled".into(),
                ))));
            }
        }
        targets
            .into_iter()
            .map(|(task_id, agent_id)| {
                info!(build = %key, %task_id, "killing task");
                self.kill_call(task_id, agent_id)
            })
            .collect()
    }

    /// The status for `key` is written: acknowledge its terminal updates.
    pub fn settled(&mut self, key: &str) -> Vec<Call> {
        let acks = self.unacked.remove(key).unwrap_or_default();
        if !self.subscribed {
            self.settled_offline.extend(acks);
            return Vec::new();
        }
        acks.into_iter()
            .flat_map(|a| self.ack_now(Some(a)))
            .collect()
    }

    /// The master rejected us (framework removed, failover timeout passed): start
    /// over as a new framework.
    pub fn forget_framework(&mut self) {
        self.framework_id = None;
        self.subscribed = false;
    }
}

fn tell(p: &mut Pending, msg: String) {
    if p.told.as_deref() != Some(msg.as_str()) {
        let _ = p.tx.send(TaskUpdate::Waiting(msg.clone()));
        p.told = Some(msg);
    }
}

mod calls;
mod matching;
mod outcome;
#[cfg(test)]
mod tests;
mod updates;
