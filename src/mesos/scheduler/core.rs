//! The framework's decisions without I/O: for each build, event and offer, what to
//! tell the build and which calls to make on the master. The connection loop feeds
//! it; unit tests and the offer benchmark drive it directly.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::liveness::{LaunchCheck, LaunchWatch};
use super::offers::{self, Avail};
use super::placement::Locality;
pub use super::types::{CoreConfig, ExecutorLaunch, Placement, TaskSpec, TaskUpdate};
use crate::mesos::proto::v1::scheduler::{Call, call};
use crate::mesos::proto::v1::{self, Offer, TaskState, TaskStatus, task_status};
use crate::mesos::task::{TaskReport, parse_task_id};
use crate::metrics::metrics;
use crate::runner::BuildOutcome;
use crate::{Error, Result};

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

fn state_name(state: i32) -> String {
    TaskState::try_from(state)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| format!("state {state}"))
}

fn is_terminal(state: TaskState) -> bool {
    use TaskState::*;
    // a PARTITION_AWARE framework's unreachable task may come back
    !matches!(
        state,
        TaskStaging | TaskStarting | TaskRunning | TaskKilling | TaskUnreachable
    )
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

    /// Matches waiting builds to offers (first fit, in queue order), launching as many
    /// as each offer holds and declining the rest.
    pub fn on_offers(&mut self, offers: Vec<Offer>, now: Instant) -> Vec<Call> {
        let mut calls = Vec::new();
        let mut declined = Vec::new();
        let (mut used, mut launched) = (0, 0);
        let settling = self.launch_after.is_some_and(|t| now < t);
        let mut largest: Option<(Avail, String)> = None;
        let mut passed = Vec::new();
        for offer in offers {
            if let Some(url) = super::crashed::agent_url(&offer) {
                self.agent_urls.insert(offer.agent_id.value.clone(), url);
            }
            let mut avail = Avail::of(&offer);
            let mut tasks = Vec::new();
            if !settling {
                let mut i = 0;
                while i < self.pending.len() && !avail.exhausted() {
                    let s = &self.pending[i].spec;
                    let need = (
                        s.cpus + self.cfg.executor_cpus,
                        s.mem_mib + self.cfg.executor_mem_mib,
                    );
                    if avail.fits(need.0, need.1) {
                        // delay scheduling: a better agent may offer soon
                        let Some(why) = self.locality.take(&s.task_id, &s.base_layers, &offer, now)
                        else {
                            i += 1;
                            continue;
                        };
                        if let Some(p) = self.pending.remove(i) {
                            let task = offers::task_info(
                                &self.cfg,
                                self.framework_id(),
                                &p.spec,
                                &offer,
                                &mut avail,
                            );
                            let agent_id = offer.agent_id.value.clone();
                            info!(build = %p.spec.key, task_id = %p.spec.task_id, host = %offer.hostname, "launching");
                            self.attach(
                                p.spec.task_id.clone(),
                                agent_id,
                                offer.hostname.clone(),
                                p.spec.key.clone(),
                                p.tx,
                                Some((LaunchWatch::new(now), why)),
                            );
                            tasks.push(task);
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            let left = avail.clone();
            if largest.as_ref().is_none_or(|(l, _)| left.bigger_than(l)) {
                largest = Some((left, offer.hostname.clone()));
            }
            let id = offer.id.clone();
            if tasks.is_empty() {
                match self.locality.refuse(now) {
                    Some(_) => passed.push(id),
                    None => declined.push(id),
                }
                continue;
            }
            used += 1;
            launched += tasks.len();
            let mut op = v1::offer::Operation {
                launch: Some(v1::offer::operation::Launch { task_infos: tasks }),
                ..Default::default()
            };
            op.set_type(v1::offer::operation::Type::Launch);
            let mut c = self.call(call::Type::Accept);
            c.accept = Some(call::Accept {
                offer_ids: vec![id],
                operations: vec![op],
                filters: Some(v1::Filters {
                    refuse_seconds: Some(
                        self.locality.refuse(now).unwrap_or(self.cfg.refuse_seconds),
                    ),
                }),
            });
            calls.push(c);
        }
        if let Some(refuse) = self.locality.end_batch(now).filter(|_| !passed.is_empty()) {
            calls.push(self.decline_call(passed, refuse));
        }
        // say why builds still wait when no offer could ever hold them
        if !settling && let Some((big, host)) = &largest {
            let (ec, em) = (self.cfg.executor_cpus, self.cfg.executor_mem_mib);
            for p in self.pending.iter_mut() {
                let (c, m) = (p.spec.cpus + ec, p.spec.mem_mib + em);
                let msg = if let Some(why) = self.locality.waiting(&p.spec.task_id) {
                    why
                } else if big.fits(c, m) {
                    "waiting for a Mesos offer".to_string()
                } else {
                    format!(
                        "no Mesos offer fits: the build needs {c} CPUs and {m} MiB (executor included); \
                         the largest offer had {} CPUs and {} MiB (on {host})",
                        big.cpus(),
                        big.mem()
                    )
                };
                tell(p, msg);
            }
        }
        metrics().offers(used, declined.len());
        metrics().tasks_launched(launched);
        if !declined.is_empty() {
            let refuse = if self.pending.is_empty() {
                // nothing waits: keep these away longer (suppress follows)
                self.cfg.refuse_seconds.max(60.0)
            } else {
                self.cfg.refuse_seconds
            };
            debug!(offers = declined.len(), "declining");
            self.declined = true;
            calls.push(self.decline_call(declined, refuse));
        }
        if self.pending.is_empty() && !self.suppressed {
            calls.push(self.offers_wanted_call());
        }
        calls
    }

    /// A task status update.
    pub fn on_update(&mut self, status: TaskStatus) -> Vec<Call> {
        let task_id = status.task_id.value.clone();
        let state = TaskState::try_from(status.state).unwrap_or(TaskState::TaskUnknown);
        let agent_id = status.agent_id.clone().map(|a| a.value).unwrap_or_default();
        let message = status.message.clone().unwrap_or_default();
        let reconciliation = status.reason() == task_status::Reason::Reconciliation;
        let ack = status
            .uuid
            .clone()
            .map(|uuid| (task_id.clone(), agent_id.clone(), uuid));
        debug!(%task_id, state = %state_name(status.state), %message, "status update");

        if let Some(p) = self.reconciling.remove(&task_id) {
            if is_terminal(state)
                && !matches!(state, TaskState::TaskFinished | TaskState::TaskFailed)
            {
                info!(build = %p.spec.key, %task_id, state = %state_name(status.state), "the task from before the restart is gone; launching again");
                self.pending.push_front(p);
                let mut calls = self.ack_now(ack);
                if self.suppressed {
                    calls.push(self.offers_wanted_call());
                }
                return calls;
            }
            info!(build = %p.spec.key, %task_id, "re-attached to the task launched before the restart");
            self.attach(
                task_id.clone(),
                agent_id.clone(),
                String::new(),
                p.spec.key,
                p.tx,
                None,
            );
        }

        let Some(a) = self.active.get_mut(&task_id) else {
            // not ours now: a task from an earlier run, or one already finished
            if let Some(claim) = parse_task_id(&task_id) {
                if !is_terminal(state) {
                    self.unclaimed.insert(claim, (task_id, agent_id));
                } else {
                    // it ended before its build was resumed: acknowledging now would
                    // lose the outcome, and the build would run again (a second push)
                    self.unclaimed.remove(&claim);
                    if matches!(state, TaskState::TaskFinished | TaskState::TaskFailed) {
                        self.ended_unclaimed.insert(claim, status);
                        return Vec::new();
                    }
                }
            }
            return self.ack_now(ack);
        };
        if !reconciliation {
            // the agent or executor answered: the launch reached it
            a.watch = None;
        }
        if a.unreachable && state != TaskState::TaskUnreachable {
            info!(build = %a.key, %task_id, state = %state_name(status.state), "the unreachable task is back");
            a.unreachable = false;
        }
        let host = if a.host.is_empty() {
            agent_id.clone()
        } else {
            a.host.clone()
        };
        let report = status
            .data
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(TaskReport::decode);
        if let Some(Ok(r)) = &report
            && let Some(holds) = r.holds()
        {
            self.locality.record(&agent_id, &host, holds);
        }
        let done: Result<BuildOutcome> = match state {
            TaskState::TaskStaging | TaskState::TaskStarting | TaskState::TaskKilling => {
                return self.ack_now(ack);
            }
            TaskState::TaskRunning => {
                if !a.running {
                    a.running = true;
                    let _ = a.tx.send(TaskUpdate::Started { host });
                }
                if let Some(Ok(TaskReport::Progress(ev))) = report {
                    let _ = a.tx.send(TaskUpdate::Progress(ev));
                }
                return self.ack_now(ack);
            }
            TaskState::TaskFinished => match report {
                Some(Ok(TaskReport::Finished { outcome, .. })) => Ok(outcome),
                // the master's answer to reconciliation has no data: the agent resends
                // the real update once we are subscribed again
                None if reconciliation => return self.ack_now(ack),
                Some(Err(e)) => Err(e),
                _ => Err(Error::Mesos(format!(
                    "task finished on {host} without a result"
                ))),
            },
            TaskState::TaskFailed => match report {
                Some(Ok(TaskReport::Failed {
                    reason, message, ..
                })) => Err(Error::from_label(&reason, message)),
                None if reconciliation => return self.ack_now(ack),
                _ => Err(Error::Mesos(format!(
                    "the executor on {host} failed ({}): {message}",
                    reason_name(&status)
                ))),
            },
            TaskState::TaskUnreachable => {
                // lost but maybe back: the build waits for RUNNING/FINISHED, or for
                // TASK_GONE/LOST (relaunched as any lost task)
                if !a.unreachable {
                    warn!(build = %a.key, %task_id, %host, "task unreachable (agent partitioned); waiting for it to come back");
                    a.unreachable = true;
                }
                return self.ack_now(ack);
            }
            TaskState::TaskKilled if a.kill_requested => {
                Err(Error::Cancelled("build cancelled; task killed".into()))
            }
            TaskState::TaskKilled => Err(Error::Cancelled(format!(
                "task killed outside slipway: {message}"
            ))),
            _ if a.kill_requested => Err(Error::Cancelled("build cancelled".into())),
            TaskState::TaskError => Err(Error::BuildFailed(format!(
                "Mesos refused the task: {message}"
            ))),
            _ => Err(Error::TaskLost(format!(
                "{} on {host} ({}): {message}",
                state_name(status.state),
                reason_name(&status)
            ))),
        };
        let Some(a) = self.active.remove(&task_id) else {
            return Vec::new();
        };
        let keep_for_status = done.is_ok() || matches!(state, TaskState::TaskFailed);
        if let Err(e) = &done {
            warn!(build = %a.key, %task_id, "task ended: {e}");
        }
        let _ = a.tx.send(TaskUpdate::Done(done));
        match ack {
            Some(ack) if keep_for_status => {
                self.unacked.entry(a.key).or_default().push(ack);
                Vec::new()
            }
            other => self.ack_now(other),
        }
    }

    /// Launches that had no status update within the launch timeout: reconcile them,
    /// and when that brings no answer either, kill them and let the build launch
    /// again (a lost task is retried).
    pub fn check_launches(&mut self, now: Instant) -> Vec<Call> {
        let timeout = self.cfg.launch_timeout;
        let (mut ask, mut give_up) = (Vec::new(), Vec::new());
        for (id, a) in self.active.iter_mut() {
            match a.watch.as_mut().map(|w| w.check(now, timeout)) {
                Some(LaunchCheck::Reconcile) => ask.push((id.clone(), Some(a.agent_id.clone()))),
                Some(LaunchCheck::GiveUp) => give_up.push(id.clone()),
                _ => {}
            }
        }
        let mut calls = Vec::new();
        if !ask.is_empty() && self.subscribed {
            info!(tasks = ?ask, "no status update within {timeout:?} of the launch; reconciling");
            calls.push(self.reconcile_call(ask));
        }
        for id in give_up {
            let Some(a) = self.active.remove(&id) else {
                continue;
            };
            let msg = format!(
                "no status update for task {id} within {timeout:?} of its launch, nor after reconciling it; launching again"
            );
            warn!(build = %a.key, "{msg}");
            let _ = a.tx.send(TaskUpdate::Done(Err(Error::TaskLost(msg))));
            // should it turn up after all, it must not build twice
            calls.push(self.kill_call(id, Some(a.agent_id)));
        }
        calls
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

fn reason_name(status: &TaskStatus) -> String {
    status
        .reason
        .and_then(|r| task_status::Reason::try_from(r).ok())
        .map(|r| r.as_str_name().trim_start_matches("REASON_").to_lowercase())
        .unwrap_or_else(|| "no reason given".into())
}

fn tell(p: &mut Pending, msg: String) {
    if p.told.as_deref() != Some(msg.as_str()) {
        let _ = p.tx.send(TaskUpdate::Waiting(msg.clone()));
        p.told = Some(msg);
    }
}

mod calls;
#[cfg(test)]
mod tests;
