//! What a task's status update means for its build: a pure function of the update
//! (state, reason, message, the executor's report) and of whether we asked to kill
//! it. No I/O, no Core state, so every state is tested here directly.

use crate::mesos::proto::v1::{TaskState, task_status};
use crate::mesos::task::TaskReport;
use crate::runner::BuildOutcome;
use crate::{Error, Result};

/// One status update, as [`task_outcome`] needs it.
pub struct TaskEnd<'a> {
    pub state: TaskState,
    /// The master's or agent's reason, when given (and known to this build).
    pub reason: Option<task_status::Reason>,
    pub message: &'a str,
    /// The executor's report from the update's data, when it sent one.
    pub report: Option<Result<TaskReport>>,
    /// Where it ran, for messages.
    pub host: &'a str,
    pub kill_requested: bool,
    /// The master's answer to reconciliation (no data: the agent resends the real one).
    pub reconciliation: bool,
}

/// The build's result when the update ends its task; `None` while the task goes on
/// (or, for a reconciliation answer without a report, until the real update comes).
pub fn task_outcome(u: TaskEnd<'_>) -> Option<Result<BuildOutcome>> {
    let TaskEnd {
        state,
        reason,
        message,
        report,
        host,
        kill_requested,
        reconciliation,
    } = u;
    let done = match state {
        TaskState::TaskStaging
        | TaskState::TaskStarting
        | TaskState::TaskKilling
        | TaskState::TaskRunning
        // lost but maybe back: the build waits for RUNNING/FINISHED, or for
        // TASK_GONE/LOST (relaunched as any lost task)
        | TaskState::TaskUnreachable => return None,
        TaskState::TaskFinished => match report {
            Some(Ok(TaskReport::Finished { outcome, .. })) => Ok(outcome),
            None if reconciliation => return None,
            Some(Err(e)) => Err(e),
            _ => Err(Error::Mesos(format!(
                "task finished on {host} without a result"
            ))),
        },
        TaskState::TaskFailed => match report {
            // the executor's own error, by label, so retry rules apply as if local
            Some(Ok(TaskReport::Failed {
                reason, message, ..
            })) => Err(Error::from_label(&reason, message)),
            None if reconciliation => return None,
            _ => Err(Error::Mesos(format!(
                "the executor on {host} failed ({}): {message}",
                reason_name(reason)
            ))),
        },
        TaskState::TaskKilled if kill_requested => {
            Err(Error::Cancelled("build cancelled; task killed".into()))
        }
        TaskState::TaskKilled => Err(Error::Cancelled(format!(
            "task killed outside slipway: {message}"
        ))),
        _ if kill_requested => Err(Error::Cancelled("build cancelled".into())),
        TaskState::TaskError => Err(Error::BuildFailed(format!(
            "Mesos refused the task: {message}"
        ))),
        // LOST, DROPPED, GONE, GONE_BY_OPERATOR, UNKNOWN: not the build's fault
        _ => Err(Error::TaskLost(format!(
            "{} on {host} ({}): {message}",
            state.as_str_name(),
            reason_name(reason)
        ))),
    };
    Some(done)
}

/// Whether no update follows this one. A PARTITION_AWARE framework's unreachable
/// task may come back.
pub fn is_terminal(state: TaskState) -> bool {
    use TaskState::*;
    !matches!(
        state,
        TaskStaging | TaskStarting | TaskRunning | TaskKilling | TaskUnreachable
    )
}

/// The state's protobuf name, or its number when this build does not know it.
pub fn state_name(state: i32) -> String {
    TaskState::try_from(state)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| format!("state {state}"))
}

/// `executor_terminated` for REASON_EXECUTOR_TERMINATED.
fn reason_name(reason: Option<task_status::Reason>) -> String {
    reason
        .map(|r| r.as_str_name().trim_start_matches("REASON_").to_lowercase())
        .unwrap_or_else(|| "no reason given".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;
    use task_status::Reason;

    fn end(state: TaskState) -> TaskEnd<'static> {
        TaskEnd {
            state,
            reason: None,
            message: "the message",
            report: None,
            host: "h1",
            kill_requested: false,
            reconciliation: false,
        }
    }

    fn err(u: TaskEnd<'_>) -> Error {
        match task_outcome(u) {
            Some(Err(e)) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    fn finished() -> BuildOutcome {
        BuildOutcome {
            digest: "sha256:ab".into(),
            image: "r/a@sha256:ab".into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_state_has_an_outcome_and_only_terminal_states_end_the_build() {
        // (state, the error kind it ends in, or None while the task goes on)
        use TaskState::*;
        let table = [
            (TaskStaging, None),
            (TaskStarting, None),
            (TaskRunning, None),
            (TaskKilling, None),
            (TaskUnreachable, None),
            (TaskFinished, Some(Kind::Mesos)),
            (TaskFailed, Some(Kind::Mesos)),
            (TaskKilled, Some(Kind::Cancelled)),
            (TaskError, Some(Kind::BuildFailed)),
            (TaskLost, Some(Kind::TaskLost)),
            (TaskDropped, Some(Kind::TaskLost)),
            (TaskGone, Some(Kind::TaskLost)),
            (TaskGoneByOperator, Some(Kind::TaskLost)),
            (TaskUnknown, Some(Kind::TaskLost)),
        ];
        let mut seen = 0;
        for (state, kind) in table {
            let got = task_outcome(end(state)).map(|r| r.unwrap_err().kind());
            assert_eq!(got, kind, "{state:?}");
            assert_eq!(is_terminal(state), kind.is_some(), "{state:?}");
            seen += 1;
        }
        // every state the protocol knows is in the table
        let all = (0..=20).filter(|i| TaskState::try_from(*i).is_ok()).count();
        assert_eq!(seen, all);
    }

    #[test]
    fn a_lost_task_is_retried_elsewhere_and_says_where_and_why() {
        let mut u = end(TaskState::TaskLost);
        u.reason = Some(Reason::AgentRemoved);
        let e = err(u);
        assert!(e.is_retryable());
        assert_eq!(
            e.to_string(),
            "task lost: TASK_LOST on h1 (agent_removed): the message"
        );
        let e = err(end(TaskState::TaskGone));
        assert!(e.to_string().contains("(no reason given)"), "{e}");
    }

    #[test]
    fn a_finished_task_gives_the_executors_outcome() {
        let mut u = end(TaskState::TaskFinished);
        u.report = Some(Ok(TaskReport::finished(finished())));
        assert_eq!(task_outcome(u).unwrap().unwrap(), finished());
    }

    #[test]
    fn a_finished_task_with_an_unreadable_report_is_that_error() {
        let mut u = end(TaskState::TaskFinished);
        u.report = Some(TaskReport::decode(b"not json"));
        assert!(task_outcome(u).unwrap().is_err());
    }

    #[test]
    fn a_failed_tasks_report_keeps_the_executors_error_kind() {
        for (e, kind) in [
            (Error::timed_out(60), Kind::Timeout),
            (Error::BuildFailed("step 2/3".into()), Kind::BuildFailed),
            (Error::Registry("503".into()), Kind::Registry),
        ] {
            let mut u = end(TaskState::TaskFailed);
            u.report = Some(Ok(TaskReport::failed(&e)));
            let got = err(u);
            assert_eq!(got.kind(), kind);
            assert_eq!(got.to_string(), e.to_string());
            assert_eq!(got.is_retryable(), e.is_retryable());
        }
    }

    #[test]
    fn a_timed_out_build_is_reported_as_a_timeout_and_not_retried() {
        let mut u = end(TaskState::TaskFailed);
        u.report = Some(Ok(TaskReport::Failed {
            reason: "Timeout".into(),
            message: "timed out after 60 s".into(),
            holds: Default::default(),
        }));
        let e = err(u);
        assert_eq!(e.metric_label(), "Timeout");
        assert!(!e.is_retryable());
        assert_eq!(e.to_string(), "timed out after 60 s");
    }

    #[test]
    fn a_failed_executor_without_a_report_names_the_mesos_reason() {
        let mut u = end(TaskState::TaskFailed);
        u.reason = Some(Reason::ExecutorTerminated);
        let e = err(u);
        assert_eq!(e.kind(), Kind::Mesos);
        assert_eq!(
            e.to_string(),
            "mesos: the executor on h1 failed (executor_terminated): the message"
        );
    }

    #[test]
    fn a_reconciliation_answer_without_a_report_waits_for_the_real_update() {
        for state in [TaskState::TaskFinished, TaskState::TaskFailed] {
            let mut u = end(state);
            u.reconciliation = true;
            assert!(task_outcome(u).is_none(), "{state:?}");
        }
        // a lost task needs no report: the answer is the end
        let mut u = end(TaskState::TaskLost);
        u.reconciliation = true;
        assert_eq!(err(u).kind(), Kind::TaskLost);
    }

    #[test]
    fn a_kill_we_asked_for_is_a_cancellation_whatever_the_end() {
        for state in [
            TaskState::TaskKilled,
            TaskState::TaskLost,
            TaskState::TaskError,
            TaskState::TaskGone,
            TaskState::TaskDropped,
        ] {
            let mut u = end(state);
            u.kill_requested = true;
            let e = err(u);
            assert_eq!(e.kind(), Kind::Cancelled, "{state:?}");
            assert!(!e.is_retryable());
        }
        // a build that finished before the kill landed keeps its image
        let mut u = end(TaskState::TaskFinished);
        u.kill_requested = true;
        u.report = Some(Ok(TaskReport::finished(finished())));
        assert!(task_outcome(u).unwrap().is_ok());
    }

    #[test]
    fn a_kill_from_outside_says_so_and_mesos_refusing_the_task_is_a_build_failure() {
        let e = err(end(TaskState::TaskKilled));
        assert_eq!(
            e.to_string(),
            "cancelled: task killed outside slipway: the message"
        );
        let e = err(end(TaskState::TaskError));
        assert_eq!(e.kind(), Kind::BuildFailed);
        assert!(
            e.to_string()
                .contains("Mesos refused the task: the message")
        );
    }

    #[test]
    fn an_unknown_state_number_is_named_by_its_number() {
        assert_eq!(state_name(TaskState::TaskLost as i32), "TASK_LOST");
        assert_eq!(state_name(99), "state 99");
    }
}
