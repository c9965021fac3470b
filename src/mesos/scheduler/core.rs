//! The framework's decisions without I/O: for each build, event and offer, what to
//! tell the build and which calls to make on the master. The connection loop feeds
//! it; unit tests and the offer benchmark drive it directly.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::offers::{self, Avail};
use crate::mesos::proto::v1::scheduler::{Call, call};
use crate::mesos::proto::v1::{
    self, AgentId, FrameworkId, FrameworkInfo, Offer, TaskId, TaskState, TaskStatus, task_status,
};
use crate::mesos::task::{TaskReport, parse_task_id};
use crate::metrics::metrics;
use crate::runner::{BuildEvent, BuildOutcome};
use crate::{Error, Result};

/// How agents get the executor.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecutorLaunch {
    /// The slipway binary is already on every agent at this path.
    Path(String),
    /// A tarball with `slipway` at its top, fetched and unpacked by the agent.
    Uri(String),
    /// A Docker image with `slipway` on its PATH, run by the agent's Docker
    /// containerizer with the agent's Docker socket mounted for the build.
    Image {
        image: String,
        docker_socket: String,
    },
}

#[derive(Clone, Debug)]
pub struct CoreConfig {
    pub name: String,
    pub user: String,
    pub role: String,
    pub principal: Option<String>,
    pub failover_timeout: Duration,
    pub executor: ExecutorLaunch,
    /// Docker daemon the executor builds on (`--docker-host` on the agent).
    pub agent_docker_host: Option<String>,
    /// Builder the executor uses on the agent's daemon (`--builder`).
    pub builder: crate::runner::Builder,
    /// The standalone buildkitd the executor builds on (`--buildkit-addr` and TLS).
    pub buildkitd: crate::runner::BuildkitdArgs,
    /// `--ca-file` and `--certs-dir`, passed on to the executor.
    pub tls: crate::tls::TlsArgs,
    /// What the executor itself takes besides the build.
    pub executor_cpus: f64,
    pub executor_mem_mib: f64,
    /// How long declined offers stay away while builds wait.
    pub refuse_seconds: f64,
    /// Pause after subscribing before launching, so reconciliation answers come first.
    pub settle: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            name: "slipway".into(),
            user: "root".into(),
            role: "*".into(),
            principal: None,
            failover_timeout: Duration::from_secs(7 * 24 * 3600),
            executor: ExecutorLaunch::Path("slipway".into()),
            agent_docker_host: None,
            builder: crate::runner::Builder::Auto,
            buildkitd: Default::default(),
            tls: Default::default(),
            executor_cpus: 0.1,
            executor_mem_mib: 32.0,
            refuse_seconds: 5.0,
            settle: Duration::from_secs(1),
        }
    }
}

/// Where a task runs; written to `status.mesos`.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub framework_id: String,
    pub task_id: String,
    pub agent_id: String,
    pub host: String,
}

/// What the framework tells one build.
#[derive(Debug)]
pub enum TaskUpdate {
    /// Not launched yet, and why.
    Waiting(String),
    Placed(Placement),
    /// TASK_RUNNING: the executor started the build.
    Started {
        host: String,
    },
    Progress(BuildEvent),
    /// Terminal.
    Done(Result<BuildOutcome>),
}

/// One build handed to the framework.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub key: String,
    pub spec_hash: String,
    /// ID for a new launch.
    pub task_id: String,
    pub cpus: f64,
    pub mem_mib: f64,
    pub payload: Vec<u8>,
    /// The task a previous run of slipway launched for this build (`status.mesos`).
    pub previous: Option<(String, String)>,
}

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
    /// Terminal updates acknowledged once their status is written, by key.
    unacked: HashMap<String, Vec<(String, String, Vec<u8>)>>,
    suppressed: bool,
    /// Offers were declined with a filter since the last REVIVE.
    declined: bool,
}

fn state_name(state: i32) -> String {
    TaskState::try_from(state)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| format!("state {state}"))
}

fn is_terminal(state: TaskState) -> bool {
    use TaskState::*;
    !matches!(
        state,
        TaskStaging | TaskStarting | TaskRunning | TaskKilling
    )
}

impl Core {
    pub fn new(cfg: CoreConfig, framework_id: Option<String>) -> Self {
        Self {
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

    fn call(&self, t: call::Type) -> Call {
        let mut c = Call {
            framework_id: self.framework_id.clone().map(|value| FrameworkId { value }),
            ..Default::default()
        };
        c.set_type(t);
        c
    }

    /// SUBSCRIBE, re-attaching to the persisted framework ID when there is one.
    pub fn subscribe_call(&self) -> Call {
        use v1::framework_info::{Capability, capability::Type as Cap};
        let capabilities = [Cap::MultiRole, Cap::PartitionAware, Cap::TaskKillingState]
            .into_iter()
            .map(|t| {
                let mut c = Capability::default();
                c.set_type(t);
                c
            })
            .collect();
        let info = FrameworkInfo {
            user: self.cfg.user.clone(),
            name: self.cfg.name.clone(),
            id: self.framework_id.clone().map(|value| FrameworkId { value }),
            failover_timeout: Some(self.cfg.failover_timeout.as_secs_f64()),
            checkpoint: Some(true),
            roles: vec![self.cfg.role.clone()],
            principal: self.cfg.principal.clone(),
            capabilities,
            ..Default::default()
        };
        let mut c = self.call(call::Type::Subscribe);
        c.subscribe = Some(call::Subscribe {
            framework_info: info,
            ..Default::default()
        });
        c
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
        let mut calls = Vec::new();
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

    fn reconcile_call(&self, tasks: Vec<(String, Option<String>)>) -> Call {
        let mut c = self.call(call::Type::Reconcile);
        c.reconcile = Some(call::Reconcile {
            tasks: tasks
                .into_iter()
                .map(|(t, a)| call::reconcile::Task {
                    task_id: TaskId { value: t },
                    agent_id: a.map(|value| AgentId { value }),
                })
                .collect(),
        });
        c
    }

    /// SUPPRESS when nothing waits for an offer, REVIVE when something does.
    fn offers_wanted_call(&mut self) -> Call {
        let want = !self.pending.is_empty();
        self.suppressed = !want;
        self.declined = false;
        let mut c = if want {
            self.call(call::Type::Revive)
        } else {
            self.call(call::Type::Suppress)
        };
        let roles = vec![self.cfg.role.clone()];
        if want {
            c.revive = Some(call::Revive { roles });
        } else {
            c.suppress = Some(call::Suppress { roles });
        }
        c
    }

    /// A build to run.
    pub fn launch(&mut self, spec: TaskSpec, tx: mpsc::UnboundedSender<TaskUpdate>) -> Vec<Call> {
        let claim = (spec.key.clone(), spec.spec_hash.clone());
        if let Some((task_id, agent_id)) = self.unclaimed.remove(&claim) {
            info!(build = %spec.key, %task_id, "re-attached to a running task");
            self.attach(task_id, agent_id, String::new(), spec.key, tx);
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
    ) {
        let _ = tx.send(TaskUpdate::Placed(Placement {
            framework_id: self.framework_id.clone().unwrap_or_default(),
            task_id: task_id.clone(),
            agent_id: agent_id.clone(),
            host: host.clone(),
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
            },
        );
    }

    /// Stops the build of `key` wherever it is.
    pub fn kill(&mut self, key: &str) -> Vec<Call> {
        if let Some(i) = self.pending.iter().position(|p| p.spec.key == key) {
            if let Some(p) = self.pending.remove(i) {
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
                let mut c = self.call(call::Type::Kill);
                c.kill = Some(call::Kill {
                    task_id: TaskId { value: task_id },
                    agent_id: agent_id.map(|value| AgentId { value }),
                    kill_policy: None,
                });
                c
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
        for offer in offers {
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
                declined.push(id);
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
                    refuse_seconds: Some(self.cfg.refuse_seconds),
                }),
            });
            calls.push(c);
        }
        // say why builds still wait when no offer could ever hold them
        if !settling && let Some((big, host)) = &largest {
            let (ec, em) = (self.cfg.executor_cpus, self.cfg.executor_mem_mib);
            for p in self.pending.iter_mut() {
                let (c, m) = (p.spec.cpus + ec, p.spec.mem_mib + em);
                let msg = if big.fits(c, m) {
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
            let mut c = self.call(call::Type::Decline);
            c.decline = Some(call::Decline {
                offer_ids: declined,
                filters: Some(v1::Filters {
                    refuse_seconds: Some(refuse),
                }),
            });
            calls.push(c);
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
            );
        }

        let Some(a) = self.active.get_mut(&task_id) else {
            // not ours now: a task from an earlier run, or one already finished
            if !is_terminal(state)
                && let Some(claim) = parse_task_id(&task_id)
            {
                self.unclaimed.insert(claim, (task_id, agent_id));
            }
            return self.ack_now(ack);
        };
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
                Some(Ok(TaskReport::Finished(out))) => Ok(out),
                // the master's answer to reconciliation has no data: the agent resends
                // the real update once we are subscribed again
                None if reconciliation => return self.ack_now(ack),
                Some(Err(e)) => Err(e),
                _ => Err(Error::Mesos(format!(
                    "task finished on {host} without a result"
                ))),
            },
            TaskState::TaskFailed => match report {
                Some(Ok(TaskReport::Failed { reason, message })) => {
                    Err(Error::from_label(&reason, message))
                }
                None if reconciliation => return self.ack_now(ack),
                _ => Err(Error::Mesos(format!(
                    "the executor on {host} failed ({}): {message}",
                    reason_name(&status)
                ))),
            },
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

    /// The status for `key` is written: acknowledge its terminal updates.
    pub fn settled(&mut self, key: &str) -> Vec<Call> {
        self.unacked
            .remove(key)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|a| self.ack_now(Some(a)))
            .collect()
    }

    fn ack_now(&self, ack: Option<(String, String, Vec<u8>)>) -> Vec<Call> {
        let Some((task_id, agent_id, uuid)) = ack else {
            return Vec::new();
        };
        let mut c = self.call(call::Type::Acknowledge);
        c.acknowledge = Some(call::Acknowledge {
            agent_id: AgentId { value: agent_id },
            task_id: TaskId { value: task_id },
            uuid,
        });
        vec![c]
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

#[cfg(test)]
mod tests {
    use super::super::offers::tests::offer;
    use super::*;
    use crate::mesos::proto::v1::TaskId;

    fn core() -> Core {
        let cfg = CoreConfig {
            settle: Duration::ZERO,
            ..Default::default()
        };
        let mut c = Core::new(cfg, Some("fw-1".into()));
        c.on_subscribed("fw-1".into(), Instant::now());
        c
    }

    fn build(key: &str, cpus: f64) -> TaskSpec {
        TaskSpec {
            key: key.into(),
            spec_hash: "sha256:00000000000000aa".into(),
            task_id: crate::mesos::task::task_id(key, "sha256:00000000000000aa", 1),
            cpus,
            mem_mib: 100.0,
            payload: b"{}".to_vec(),
            previous: None,
        }
    }

    fn kinds(calls: &[Call]) -> Vec<call::Type> {
        calls.iter().map(|c| c.r#type()).collect()
    }

    fn status(task_id: &str, state: TaskState, uuid: Option<&[u8]>) -> TaskStatus {
        let mut s = TaskStatus {
            task_id: TaskId {
                value: task_id.into(),
            },
            agent_id: Some(AgentId {
                value: "agent-1".into(),
            }),
            uuid: uuid.map(<[u8]>::to_vec),
            ..Default::default()
        };
        s.set_state(state);
        s
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<TaskUpdate>) -> Vec<TaskUpdate> {
        let mut v = Vec::new();
        while let Ok(u) = rx.try_recv() {
            v.push(u);
        }
        v
    }

    #[test]
    fn one_offer_takes_as_many_builds_as_fit_and_the_rest_wait() {
        let mut c = core();
        let mut rxs = Vec::new();
        for i in 0..3 {
            let (tx, rx) = mpsc::unbounded_channel();
            c.launch(build(&format!("ns/b{i}"), 0.9), tx);
            rxs.push(rx);
        }
        // 2 CPUs hold two builds of 0.9 + 0.1 executor, not three
        let calls = c.on_offers(vec![offer("o1", "h1", 2.0, 4096.0, "*")], Instant::now());
        assert_eq!(kinds(&calls), vec![call::Type::Accept]);
        let ops = &calls[0].accept.as_ref().unwrap().operations;
        let tasks = &ops[0].launch.as_ref().unwrap().task_infos;
        assert_eq!(tasks.len(), 2);
        let cpus: f64 = tasks[0]
            .resources
            .iter()
            .filter(|r| r.name == "cpus")
            .map(|r| r.scalar.as_ref().unwrap().value)
            .sum();
        assert_eq!(cpus, 0.9);
        assert_eq!(c.in_flight(), 3);
        assert!(matches!(
            drain(&mut rxs[0]).last(),
            Some(TaskUpdate::Placed(_))
        ));
        // the third is still waiting; a second offer takes it and nothing is left to want
        let calls = c.on_offers(vec![offer("o2", "h2", 1.0, 4096.0, "*")], Instant::now());
        assert_eq!(
            kinds(&calls),
            vec![call::Type::Accept, call::Type::Suppress]
        );
    }

    #[test]
    fn a_build_no_offer_can_hold_is_told_why_and_offers_are_declined() {
        let mut c = core();
        let (tx, mut rx) = mpsc::unbounded_channel();
        c.launch(build("ns/huge", 64.0), tx);
        let calls = c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
        assert_eq!(kinds(&calls), vec![call::Type::Decline]);
        let refuse = calls[0].decline.as_ref().unwrap().filters.as_ref().unwrap();
        assert_eq!(refuse.refuse_seconds, Some(5.0));
        let msgs: Vec<String> = drain(&mut rx)
            .into_iter()
            .filter_map(|u| match u {
                TaskUpdate::Waiting(m) => Some(m),
                _ => None,
            })
            .collect();
        let last = msgs.last().unwrap();
        assert!(
            last.contains("64.1 CPUs") && last.contains("4 CPUs"),
            "{last}"
        );
        // the same reason is not repeated on every offer
        c.on_offers(vec![offer("o2", "h1", 4.0, 4096.0, "*")], Instant::now());
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn offers_used_and_declined_and_tasks_launched_are_counted() {
        use crate::metrics::sample;
        let series = [
            r#"slipway_mesos_offers_total{outcome="used"}"#,
            r#"slipway_mesos_offers_total{outcome="declined"}"#,
            "slipway_mesos_tasks_launched_total",
        ];
        let before = series.map(sample);
        let mut c = core();
        for i in 0..3 {
            let (tx, _rx) = mpsc::unbounded_channel();
            c.launch(build(&format!("ns/b{i}"), 0.9), tx);
        }
        // o1 holds two builds, o2 the third, o3 is left over
        c.on_offers(
            vec![
                offer("o1", "h1", 2.0, 4096.0, "*"),
                offer("o2", "h2", 1.0, 4096.0, "*"),
                offer("o3", "h3", 1.0, 4096.0, "*"),
            ],
            Instant::now(),
        );
        let after = series.map(sample);
        // process-wide counters that other tests move too: at least ours
        let delta: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
        assert!(delta[0] >= 2.0, "{delta:?}");
        assert!(delta[1] >= 1.0, "{delta:?}");
        assert!(delta[2] >= 3.0, "{delta:?}");
    }

    #[test]
    fn idle_suppresses_and_new_work_revives() {
        let mut c = Core::new(CoreConfig::default(), None);
        let calls = c.on_subscribed("fw-9".into(), Instant::now());
        assert_eq!(
            kinds(&calls),
            vec![call::Type::Reconcile, call::Type::Suppress]
        );
        let (tx, _rx) = mpsc::unbounded_channel();
        assert_eq!(
            kinds(&c.launch(build("ns/a", 1.0), tx)),
            vec![call::Type::Revive]
        );
        // within the settle pause offers are not used: reconciliation answers come first
        assert!(c.settling_until().is_some());
        let calls = c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
        assert_eq!(kinds(&calls), vec![call::Type::Decline]);
    }

    #[test]
    fn a_lost_task_is_retryable_and_never_a_build_failure() {
        for state in [
            TaskState::TaskLost,
            TaskState::TaskUnreachable,
            TaskState::TaskGone,
            TaskState::TaskDropped,
        ] {
            let mut c = core();
            let (tx, mut rx) = mpsc::unbounded_channel();
            let spec = build("ns/a", 1.0);
            let id = spec.task_id.clone();
            c.launch(spec, tx);
            c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
            let calls = c.on_update(status(&id, state, Some(b"u1")));
            // acknowledged at once: nothing about it needs recording
            assert_eq!(kinds(&calls), vec![call::Type::Acknowledge]);
            let Some(TaskUpdate::Done(Err(e))) = drain(&mut rx).pop() else {
                panic!("no result")
            };
            assert!(e.is_retryable(), "{state:?}: {e}");
            assert_eq!(e.metric_label(), "TaskLost");
        }
    }

    #[test]
    fn a_finished_task_is_acknowledged_only_once_its_status_is_written() {
        let mut c = core();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let spec = build("ns/a", 1.0);
        let id = spec.task_id.clone();
        c.launch(spec, tx);
        c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
        let running = c.on_update(status(&id, TaskState::TaskRunning, Some(b"u1")));
        assert_eq!(kinds(&running), vec![call::Type::Acknowledge]);
        let out = BuildOutcome {
            digest: "sha256:ab".into(),
            image: "r/a@sha256:ab".into(),
            pushed_tags: vec!["r/a:latest".into()],
            revision: None,
            ..Default::default()
        };
        let mut fin = status(&id, TaskState::TaskFinished, Some(b"u2"));
        fin.data = Some(TaskReport::Finished(out.clone()).encode());
        assert!(c.on_update(fin).is_empty(), "held until settled");
        let ups = drain(&mut rx);
        assert!(ups.iter().any(|u| matches!(u, TaskUpdate::Started { .. })));
        assert!(matches!(ups.last(), Some(TaskUpdate::Done(Ok(o))) if *o == out));
        let acks = c.settled("ns/a");
        assert_eq!(kinds(&acks), vec![call::Type::Acknowledge]);
        assert_eq!(acks[0].acknowledge.as_ref().unwrap().uuid, b"u2");
        assert!(c.settled("ns/a").is_empty());
    }

    #[test]
    fn after_a_restart_a_running_task_is_reattached_and_a_gone_one_relaunched() {
        let mut c = Core::new(
            CoreConfig {
                settle: Duration::ZERO,
                ..Default::default()
            },
            Some("fw-1".into()),
        );
        let old = crate::mesos::task::task_id("ns/a", "sha256:00000000000000aa", 7);
        let mut spec = build("ns/a", 1.0);
        spec.previous = Some((old.clone(), "agent-1".into()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        assert!(c.launch(spec.clone(), tx).is_empty(), "not subscribed yet");
        let calls = c.on_subscribed("fw-1".into(), Instant::now());
        let explicit = calls[0].reconcile.as_ref().unwrap();
        assert_eq!(explicit.tasks[0].task_id.value, old);
        // the master says it still runs: no new launch, updates flow to the build
        c.on_update(status(&old, TaskState::TaskRunning, None));
        let ups = drain(&mut rx);
        assert!(
            ups.iter()
                .any(|u| matches!(u, TaskUpdate::Placed(p) if p.task_id == old))
        );
        let calls = c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
        assert!(!kinds(&calls).contains(&call::Type::Accept));

        // a second build whose old task is unknown to the master is launched anew
        let old_b = crate::mesos::task::task_id("ns/b", "sha256:00000000000000aa", 3);
        let mut spec_b = build("ns/b", 1.0);
        spec_b.previous = Some((old_b.clone(), "agent-1".into()));
        let (tx, _rx) = mpsc::unbounded_channel();
        c.launch(spec_b, tx);
        let mut gone = status(&old_b, TaskState::TaskUnknown, None);
        gone.set_reason(task_status::Reason::Reconciliation);
        c.on_update(gone);
        let calls = c.on_offers(vec![offer("o2", "h1", 4.0, 4096.0, "*")], Instant::now());
        assert!(kinds(&calls).contains(&call::Type::Accept));
    }

    #[test]
    fn a_task_the_master_reports_for_a_build_is_claimed_without_a_launch() {
        let mut c = core();
        let running = crate::mesos::task::task_id("ns/a", "sha256:00000000000000aa", 5);
        // implicit reconciliation tells of a task no build has asked for yet
        c.on_update(status(&running, TaskState::TaskRunning, None));
        let (tx, mut rx) = mpsc::unbounded_channel();
        assert!(c.launch(build("ns/a", 1.0), tx).is_empty());
        assert!(
            matches!(drain(&mut rx).first(), Some(TaskUpdate::Placed(p)) if p.task_id == running)
        );
    }

    #[test]
    fn kill_reaches_a_running_task_and_its_end_is_a_cancellation() {
        let mut c = core();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let spec = build("ns/a", 1.0);
        let id = spec.task_id.clone();
        c.launch(spec, tx);
        c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
        let calls = c.kill("ns/a");
        assert_eq!(kinds(&calls), vec![call::Type::Kill]);
        assert_eq!(calls[0].kill.as_ref().unwrap().task_id.value, id);
        c.on_update(status(&id, TaskState::TaskKilled, Some(b"k")));
        let Some(TaskUpdate::Done(Err(e))) = drain(&mut rx).pop() else {
            panic!()
        };
        assert_eq!(e.metric_label(), "Cancelled");
    }
}
