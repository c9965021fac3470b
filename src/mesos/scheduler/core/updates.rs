//! Task status updates: which build an update is for, what it tells the build
//! (see [`super::outcome`] for how it ends), and when it is acknowledged.

use std::time::Instant;

use tracing::{debug, info, warn};

use super::outcome::{TaskEnd, is_terminal, state_name, task_outcome};
use super::{Core, TaskUpdate};
use crate::Error;
use crate::mesos::proto::v1::scheduler::Call;
use crate::mesos::proto::v1::{TaskState, TaskStatus, task_status};
use crate::mesos::scheduler::liveness::LaunchCheck;
use crate::mesos::task::{TaskReport, parse_task_id};

impl Core {
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
        // what the build hears while the task goes on
        match state {
            TaskState::TaskRunning => {
                if !a.running {
                    a.running = true;
                    let _ = a.tx.send(TaskUpdate::Started { host: host.clone() });
                }
                if let Some(Ok(TaskReport::Progress(ev))) = report {
                    let _ = a.tx.send(TaskUpdate::Progress(ev));
                }
                return self.ack_now(ack);
            }
            TaskState::TaskUnreachable if !a.unreachable => {
                warn!(build = %a.key, %task_id, %host, "task unreachable (agent partitioned); waiting for it to come back");
                a.unreachable = true;
            }
            _ => {}
        }
        let Some(done) = task_outcome(TaskEnd {
            state,
            reason: status
                .reason
                .and_then(|r| task_status::Reason::try_from(r).ok()),
            message: &message,
            report,
            host: &host,
            kill_requested: a.kill_requested,
            reconciliation,
        }) else {
            return self.ack_now(ack);
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
}
