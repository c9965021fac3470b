//! Status updates: how they are made, what they say, and the ones the agent has not
//! acknowledged yet (kept so a resubscription can hand them over again).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::mesos::proto::v1::{ExecutorId, TaskId, TaskState, TaskStatus, task_status};
use crate::mesos::task::TaskReport;
use crate::runner::{BuildEvent, BuildOutcome};

/// A status update for `task`, from this executor, with a fresh UUID (the agent
/// acknowledges it by that UUID).
pub fn status(
    task: &TaskId,
    executor: &str,
    state: TaskState,
    message: String,
    report: Option<&TaskReport>,
) -> TaskStatus {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    TaskStatus {
        task_id: task.clone(),
        state: state as i32,
        message: Some(message),
        source: Some(task_status::Source::Executor as i32),
        data: report.map(TaskReport::encode),
        executor_id: Some(ExecutorId {
            value: executor.to_string(),
        }),
        timestamp: Some(now),
        uuid: Some(uuid::Uuid::new_v4().as_bytes().to_vec()),
        ..Default::default()
    }
}

/// What a progress update says, or None for events too chatty to send through Mesos
/// (every log line and push byte count would flood the master).
pub fn progress_message(ev: &BuildEvent) -> Option<String> {
    match ev {
        BuildEvent::Building {
            context_bytes,
            files,
        } => Some(format!(
            "building: sent a context of {files} files, {:.1} MiB",
            *context_bytes as f64 / (1024.0 * 1024.0)
        )),
        BuildEvent::Step(s) => Some(s.clone()),
        BuildEvent::Pushing { tags } => Some(format!("pushing {}", tags.join(", "))),
        BuildEvent::Pushed { tag, digest } => Some(format!("pushed {tag} ({digest})")),
        BuildEvent::Running { host, .. } => Some(format!("building on {host}")),
        // the step list rides in the update's data, to the framework's status
        BuildEvent::Stages(steps) => Some(crate::runner::stages::summary(steps)),
        // the framework's own events: a runner never sends them
        BuildEvent::Log(_)
        | BuildEvent::PushProgress { .. }
        | BuildEvent::Waiting(_)
        | BuildEvent::Placed { .. }
        | BuildEvent::Copied(_) => None,
    }
}

pub fn finished_message(out: &BuildOutcome) -> String {
    let n = out.pushed_tags.len();
    format!("pushed {n} tag{}", if n == 1 { "" } else { "s" })
}

/// Updates not yet acknowledged, in the order they were made. `sent` is false for
/// those the agent has not received (made while disconnected, or a failed POST).
#[derive(Default)]
pub struct Outbox {
    entries: Vec<(TaskStatus, bool)>,
}

impl Outbox {
    pub fn push(&mut self, status: TaskStatus) {
        self.entries.push((status, false));
    }

    /// Drops the update with this UUID; false if it was not (or no longer) here.
    pub fn acknowledge(&mut self, uuid: &[u8]) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|(s, _)| s.uuid.as_deref() != Some(uuid));
        self.entries.len() != before
    }

    /// The first update the agent has not received: updates of a task must reach the
    /// agent in order, so later ones wait for it.
    pub fn next_unsent(&self) -> Option<TaskStatus> {
        self.entries
            .iter()
            .find(|(_, sent)| !sent)
            .map(|(s, _)| s.clone())
    }

    pub fn mark_sent(&mut self, uuid: &[u8]) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|(s, _)| s.uuid.as_deref() == Some(uuid))
        {
            e.1 = true;
        }
    }

    /// Everything unacknowledged, for a SUBSCRIBE; the agent handles these as if
    /// they had just been sent, so they all count as sent from then on.
    pub fn hand_over(&mut self) -> Vec<TaskStatus> {
        self.entries.iter_mut().for_each(|e| e.1 = true);
        self.entries.iter().map(|(s, _)| s.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(state: TaskState) -> TaskStatus {
        status(&TaskId { value: "t".into() }, "t", state, "m".into(), None)
    }

    #[test]
    fn updates_leave_in_order_and_stay_until_acknowledged() {
        let mut o = Outbox::default();
        let (a, b) = (st(TaskState::TaskStarting), st(TaskState::TaskRunning));
        o.push(a.clone());
        o.push(b.clone());
        assert_eq!(o.next_unsent().unwrap().uuid, a.uuid);
        o.mark_sent(a.uuid.as_deref().unwrap());
        assert_eq!(o.next_unsent().unwrap().uuid, b.uuid);
        assert!(o.acknowledge(a.uuid.as_deref().unwrap()));
        assert!(!o.acknowledge(a.uuid.as_deref().unwrap()));
        assert_eq!(o.hand_over().len(), 1);
        assert!(o.next_unsent().is_none(), "handed over counts as sent");
        assert_ne!(a.uuid, b.uuid);
        assert_eq!(a.uuid.as_ref().map(Vec::len), Some(16));
    }

    #[test]
    fn only_meaningful_events_become_updates() {
        assert!(progress_message(&BuildEvent::Log("x".into())).is_none());
        assert_eq!(
            progress_message(&BuildEvent::Step("Step 1/2 : FROM scratch".into())).as_deref(),
            Some("Step 1/2 : FROM scratch")
        );
    }
}
