//! The task's life in the executor: LAUNCH, KILL and SHUTDOWN from the agent, the
//! build's messages, and the terminal update until the agent acknowledges it.

use std::ops::ControlFlow;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, instrument, warn};

use super::*;

impl Executor {
    #[instrument(skip_all, fields(task = %task.task_id.value))]
    pub(super) async fn launch(&mut self, task: TaskInfo) {
        if let Some(t) = &self.task {
            if t.info.task_id == task.task_id {
                debug!("duplicate LAUNCH ignored");
                return;
            }
            // one build per executor: the framework made a mistake, say so
            let e = Error::InvalidSpec(format!(
                "executor {} already runs task {}; one build per executor",
                self.executor_id(),
                t.info.task_id.value
            ));
            let s = self.status(
                &task.task_id,
                TaskState::TaskFailed,
                e.to_string(),
                Some(&TaskReport::failed(&e)),
            );
            self.send(s).await;
            return;
        }
        info!("launching the build");
        let id = task.task_id.clone();
        let data = task.data.clone().unwrap_or_default();
        self.task = Some(Launched {
            info: task,
            cancel: CancellationToken::new(),
            build: None,
            kill: None,
            terminal: None,
        });
        let s = self.status(&id, TaskState::TaskStarting, "starting".into(), None);
        self.send(s).await;
        let req = match job::request(&data) {
            Ok(r) => r,
            Err(e) => return self.finish(Err(e)).await,
        };
        self.redactor = crate::logs::Redactor::for_request(&req.0);
        let host = self.agent_host.clone().unwrap_or_else(local_hostname);
        let env_var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        // the build's log in the sandbox; RUNNING says where, for the framework to copy
        let sandbox = log::sandbox(&self.agent.env().url, env_var).and_then(|(dir, at)| {
            self.log = log::open(&dir, &req.0);
            self.log.as_ref().map(|_| at)
        });
        let report = TaskReport::Progress(BuildEvent::Running {
            host: host.clone(),
            sandbox,
        });
        let s = self.status(
            &id,
            TaskState::TaskRunning,
            format!("building on {host}"),
            Some(&report),
        );
        self.send(s).await;
        if let Some(t) = &mut self.task {
            t.build = Some(job::spawn(
                req,
                self.opts.clone(),
                t.cancel.clone(),
                self.jobs.clone(),
            ));
        }
    }

    /// KILL (or SHUTDOWN): cancel the build; TASK_KILLED follows when it has
    /// stopped, or at `grace` at the latest.
    pub(super) async fn kill(&mut self, id: &TaskId, grace: Duration, why: &'static str) {
        let Some(t) = self.task.as_mut().filter(|t| &t.info.task_id == id) else {
            warn!(task = %id.value, "KILL for a task this executor does not run; ignored");
            return;
        };
        if t.terminal.is_some() || t.kill.is_some() {
            debug!(task = %id.value, "KILL after the task ended; ignored");
            return;
        }
        info!(task = %id.value, "{why}; cancelling the build");
        t.kill = Some((Instant::now() + grace, why));
        t.cancel.cancel();
        if t.build.is_none() {
            self.finish(Err(Error::Cancelled(why.into()))).await;
        }
    }

    pub(super) async fn shutdown(&mut self) -> ControlFlow<()> {
        info!("the agent shuts the executor down");
        self.shutdown_at = Some(Instant::now());
        let Some(t) = &self.task else {
            return ControlFlow::Break(());
        };
        let id = t.info.task_id.clone();
        self.kill(
            &id,
            SHUTDOWN_KILL_GRACE,
            "killed: the agent shut the executor down",
        )
        .await;
        ControlFlow::Continue(())
    }

    pub(super) async fn on_job(&mut self, msg: JobMsg) -> Result<ControlFlow<()>> {
        match msg {
            JobMsg::Event(ev) => {
                let ev = self.redactor.event(ev);
                if let Some(log) = self.log.as_mut() {
                    log.event(&ev);
                }
                let Some(id) = self
                    .task
                    .as_ref()
                    .filter(|t| t.terminal.is_none())
                    .map(|t| t.info.task_id.clone())
                else {
                    return Ok(ControlFlow::Continue(()));
                };
                if let Some(message) = status::progress_message(&ev) {
                    info!("{message}");
                    let report = TaskReport::Progress(ev);
                    let s = self.status(&id, TaskState::TaskRunning, message, Some(&report));
                    self.send(s).await;
                }
            }
            JobMsg::Done(result) => self.finish(result).await,
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The build's end, as the task's terminal update (once).
    pub(super) async fn finish(&mut self, result: Result<BuildOutcome>) {
        let Some(t) = self.task.as_ref().filter(|t| t.terminal.is_none()) else {
            return;
        };
        let id = t.info.task_id.clone();
        let result = result.map_err(|e| self.redactor.error(e));
        if let Some(log) = self.log.take() {
            log.finish(&result);
        }
        // not for a kill: the agent's grace period is short
        let holds = match t.kill {
            None => inventory::collect(&self.opts).await,
            Some(_) => Default::default(),
        };
        let s = match (result, t.kill) {
            (Ok(out), _) => {
                info!(image = %out.image, "build succeeded");
                let msg = status::finished_message(&out);
                self.status(
                    &id,
                    TaskState::TaskFinished,
                    msg,
                    Some(&TaskReport::finished(out).with_holds(holds)),
                )
            }
            (Err(_), Some((_, why))) => {
                let report = TaskReport::failed(&Error::Cancelled(why.into()));
                self.status(&id, TaskState::TaskKilled, why.into(), Some(&report))
            }
            (Err(e), None) => {
                warn!(error = %e, "build failed");
                self.status(
                    &id,
                    TaskState::TaskFailed,
                    e.to_string(),
                    Some(&TaskReport::failed(&e).with_holds(holds)),
                )
            }
        };
        if let Some(t) = &mut self.task {
            t.terminal = s.uuid.clone();
        }
        self.send(s).await;
    }

    /// Drops an acknowledged update; the acknowledged terminal update ends the run.
    pub(super) fn acknowledged(&mut self, task: &TaskId, uuid: &[u8]) -> ControlFlow<()> {
        if !self.outbox.acknowledge(uuid) {
            debug!(task = %task.value, "acknowledgement of an unknown update");
        }
        let done = self
            .task
            .as_ref()
            .is_some_and(|t| t.terminal.as_deref() == Some(uuid));
        if done {
            info!(task = %task.value, "terminal update acknowledged; exiting");
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}
