//! `slipway executor`: the Mesos executor a slipway framework launches on an agent
//! for each build. It subscribes to its agent over the v1 executor HTTP API, runs
//! the one build its task carries with the shared runner against the agent's
//! Docker daemon, and reports through status updates (see [`crate::mesos::task`]
//! for what they carry). It exits once the agent has acknowledged the task's
//! terminal update.

mod agent;
pub mod engine;
mod env;
mod inventory;
mod job;
mod lifecycle;
mod log;
mod status;

use std::ops::ControlFlow;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use crate::mesos::proto::v1::executor::{Event, event};
use crate::mesos::proto::v1::{TaskId, TaskInfo, TaskState, TaskStatus};
use crate::mesos::task::TaskReport;
use crate::runner::{BuildEvent, BuildOutcome};
use crate::{Error, Result};
use agent::{Agent, Events};
use env::AgentEnv;
use job::JobMsg;

/// With no LAUNCH this long after subscribing, the agent has nothing for us.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
/// A cancelled build stops within a moment; if not, TASK_KILLED goes anyway.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// After SHUTDOWN: the agent's own grace period is 5 s by default, so stop the
/// build sooner and leave before it kills us.
const SHUTDOWN_KILL_GRACE: Duration = Duration::from_secs(2);
const SHUTDOWN_EXIT: Duration = Duration::from_secs(3);
/// The very first SUBSCRIBE may race the agent getting ready; retry that long.
const FIRST_SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Retries of undelivered updates, and timeouts, are checked this often.
const TICK: Duration = Duration::from_millis(500);

/// `slipway executor`'s command line.
#[derive(Clone, Debug, Default)]
pub struct ExecutorOptions {
    /// The agent's Docker daemon; `DOCKER_HOST` or the local socket when None.
    pub docker_host: Option<String>,
    /// The builder on the agent's daemon (`--builder`, passed on by the framework).
    pub builder: crate::runner::Builder,
    /// A standalone buildkitd on the agent (`--buildkit-addr` and its TLS files).
    pub buildkitd: crate::runner::BuildkitdArgs,
    /// `--ca-file` and `--certs-dir` for registries and `url` sources.
    pub tls: crate::tls::TlsArgs,
    /// `--docker-tls-verify` and `--docker-cert-path` for a daemon over TCP with TLS
    /// (passed on by the framework; DOCKER_TLS_VERIFY and DOCKER_CERT_PATH otherwise).
    pub docker_tls: crate::runner::DockerTls,
    /// `--executor-engine`: the agent's daemon, or a private one in the sandbox.
    pub engine: engine::EngineArgs,
}

/// Runs the executor until its task's end is acknowledged, the agent shuts it down,
/// or the agent is lost for good. The environment is the one a Mesos agent sets.
#[instrument(name = "executor", skip_all)]
pub async fn run(opts: ExecutorOptions) -> Result<()> {
    let env = AgentEnv::from_env()?;
    info!(
        executor = %env.executor_id,
        framework = %env.framework_id,
        agent = %env.url,
        checkpoint = env.checkpoint,
        "executor starting"
    );
    let (jobs, jobs_rx) = mpsc::unbounded_channel();
    Executor::new(Agent::new(env), opts, jobs)
        .run(jobs_rx)
        .await
}

/// The launched task, kept until its terminal update is acknowledged.
struct Launched {
    info: TaskInfo,
    cancel: CancellationToken,
    build: Option<JoinHandle<()>>,
    /// KILL or SHUTDOWN: when to report TASK_KILLED at the latest, and why.
    kill: Option<(Instant, &'static str)>,
    /// UUID of the terminal update, once made.
    terminal: Option<Vec<u8>>,
}

struct Executor {
    agent: Agent,
    opts: ExecutorOptions,
    outbox: status::Outbox,
    task: Option<Launched>,
    /// The agent has our subscription: updates can be POSTed.
    connected: bool,
    agent_host: Option<String>,
    first_subscribed: Option<Instant>,
    shutdown_at: Option<Instant>,
    jobs: mpsc::UnboundedSender<JobMsg>,
    /// The build's log in the sandbox, until the build ends.
    log: Option<crate::logs::BuildLog>,
    /// Masks the build's secrets in what its updates say: the master keeps their
    /// text in its task state, for anyone who reads `/api/v1` GET_TASKS.
    redactor: crate::logs::Redactor,
}

impl Executor {
    fn new(agent: Agent, opts: ExecutorOptions, jobs: mpsc::UnboundedSender<JobMsg>) -> Self {
        Self {
            agent,
            opts,
            outbox: status::Outbox::default(),
            task: None,
            connected: false,
            agent_host: None,
            first_subscribed: None,
            shutdown_at: None,
            jobs,
            log: None,
            redactor: Default::default(),
        }
    }

    fn executor_id(&self) -> &str {
        &self.agent.env().executor_id
    }

    /// The event loop: the subscription, the build's messages and a timer, until done.
    async fn run(mut self, mut jobs_rx: mpsc::UnboundedReceiver<JobMsg>) -> Result<()> {
        let mut events: Option<Events> = None;
        let backoff_max = self.agent.env().backoff_max;
        let mut retry = Resubscribe::new(FIRST_SUBSCRIBE_TIMEOUT, backoff_max);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            let step = tokio::select! {
                ev = next_event(&mut events), if events.is_some() => match ev {
                    Some(Ok(ev)) => self.on_event(ev).await,
                    lost => {
                        events = None;
                        self.connected = false;
                        retry = Resubscribe::new(self.agent.env().recovery_timeout, backoff_max);
                        self.lost(lost.and_then(Result::err))
                    }
                },
                _ = tokio::time::sleep_until(retry.at), if events.is_none() => {
                    match self.subscribe().await {
                        Ok(stream) => {
                            events = Some(stream);
                            self.connected = true;
                            Ok(ControlFlow::Continue(()))
                        }
                        Err(e) => retry.failed(e).map(ControlFlow::Continue),
                    }
                },
                Some(msg) = jobs_rx.recv() => self.on_job(msg).await,
                _ = tick.tick() => self.on_tick().await,
            };
            match step {
                Ok(ControlFlow::Continue(())) => {}
                Ok(ControlFlow::Break(())) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.stop_build().await;
        result
    }

    /// The event stream ended: resubscribe if the framework checkpoints (the agent
    /// is restarting and will take us back), else give up as Mesos expects.
    fn lost(&mut self, error: Option<Error>) -> Result<ControlFlow<()>> {
        let why = error.map_or_else(
            || "the agent closed the event stream".to_string(),
            |e| e.to_string(),
        );
        if !self.agent.env().checkpoint {
            return Err(Error::Mesos(format!(
                "lost the agent ({why}); the framework does not checkpoint, so the executor stops"
            )));
        }
        warn!(%why, unacknowledged = self.outbox.len(), "lost the agent; resubscribing");
        Ok(ControlFlow::Continue(()))
    }

    /// SUBSCRIBE with whatever the agent has not acknowledged.
    async fn subscribe(&mut self) -> Result<Events> {
        let tasks = self.task.iter().map(|t| t.info.clone()).collect();
        let updates = self.outbox.hand_over();
        self.agent.subscribe(tasks, updates).await
    }

    async fn on_event(&mut self, ev: Event) -> Result<ControlFlow<()>> {
        let kind = ev.r#type.and_then(|t| event::Type::try_from(t).ok());
        match kind {
            Some(event::Type::Subscribed) => {
                if let Some(s) = ev.subscribed {
                    info!(agent = %s.agent_info.hostname, "subscribed");
                    self.agent_host = Some(s.agent_info.hostname);
                }
                self.first_subscribed.get_or_insert_with(Instant::now);
            }
            Some(event::Type::Launch) => {
                if let Some(l) = ev.launch {
                    self.launch(l.task).await;
                }
            }
            Some(event::Type::LaunchGroup) => {
                warn!("LAUNCH_GROUP ignored: this executor runs single tasks");
            }
            Some(event::Type::Kill) => {
                if let Some(k) = ev.kill {
                    self.kill(&k.task_id, KILL_GRACE, "killed by the framework")
                        .await;
                }
            }
            Some(event::Type::Acknowledged) => {
                if let Some(a) = ev.acknowledged {
                    return Ok(self.acknowledged(&a.task_id, &a.uuid));
                }
            }
            Some(event::Type::Shutdown) => return Ok(self.shutdown().await),
            Some(event::Type::Message) => {
                debug!("framework message ignored: the framework sends none");
            }
            Some(event::Type::Error) => {
                let msg = ev.error.map(|e| e.message).unwrap_or_default();
                warn!(error = %msg, "the agent reports an error");
            }
            Some(event::Type::Unknown) | None => debug!(kind = ?ev.r#type, "event ignored"),
        }
        Ok(ControlFlow::Continue(()))
    }

    async fn on_tick(&mut self) -> Result<ControlFlow<()>> {
        self.flush().await;
        let now = Instant::now();
        if let Some(at) = self.shutdown_at
            && now >= at + SHUTDOWN_EXIT
        {
            warn!(
                unacknowledged = self.outbox.len(),
                "shutdown grace over; exiting"
            );
            return Ok(ControlFlow::Break(()));
        }
        if self.task.is_none()
            && self.shutdown_at.is_none()
            && self
                .first_subscribed
                .is_some_and(|t| now >= t + LAUNCH_TIMEOUT)
        {
            return Err(Error::Mesos(format!(
                "no task was launched within {} s of subscribing",
                LAUNCH_TIMEOUT.as_secs()
            )));
        }
        let overdue = self.task.as_mut().filter(|t| {
            t.terminal.is_none() && t.kill.is_some_and(|(deadline, _)| now >= deadline)
        });
        if let Some(t) = overdue {
            warn!("the build did not stop in time; reporting it killed anyway");
            if let Some(b) = t.build.take() {
                b.abort();
            }
            self.finish(Err(Error::Cancelled("build cancelled".into())))
                .await;
        }
        Ok(ControlFlow::Continue(()))
    }

    fn status(
        &self,
        task: &TaskId,
        state: TaskState,
        message: String,
        report: Option<&TaskReport>,
    ) -> TaskStatus {
        status::status(task, self.executor_id(), state, message, report)
    }

    /// Queues an update and sends what can be sent.
    async fn send(&mut self, s: TaskStatus) {
        debug!(
            state = s.state().as_str_name(),
            message = s.message(),
            "status update"
        );
        self.outbox.push(s);
        self.flush().await;
    }

    /// POSTs queued updates in order while the agent listens; a failure leaves the
    /// rest for the next tick or the next SUBSCRIBE.
    async fn flush(&mut self) {
        while self.connected {
            let Some(s) = self.outbox.next_unsent() else {
                return;
            };
            let uuid = s.uuid.clone().unwrap_or_default();
            match self.agent.update(s).await {
                Ok(()) => self.outbox.mark_sent(&uuid),
                Err(e) => {
                    warn!(error = %e, "status update not delivered; will retry");
                    return;
                }
            }
        }
    }

    /// On the way out: a build still running is cancelled and given a moment, so
    /// the Docker daemon sees its client go and removes the build container.
    async fn stop_build(&mut self) {
        if let Some(t) = &mut self.task {
            t.cancel.cancel();
            if let Some(b) = t.build.take() {
                let _ = tokio::time::timeout(Duration::from_secs(2), b).await;
            }
        }
    }
}

/// When to try SUBSCRIBE next, and when to stop trying.
struct Resubscribe {
    since: Instant,
    at: Instant,
    backoff: crate::backoff::Backoff,
    limit: Duration,
}

impl Resubscribe {
    /// Delays double up to `max` (the agent's MESOS_SUBSCRIPTION_BACKOFF_MAX).
    fn new(limit: Duration, max: Duration) -> Self {
        let now = Instant::now();
        Self {
            since: now,
            at: now,
            backoff: crate::backoff::Backoff::new(FIRST_BACKOFF, max.max(FIRST_BACKOFF)),
            limit,
        }
    }

    /// After a failed SUBSCRIBE: schedules the next one, or gives up once `limit`
    /// has passed.
    fn failed(&mut self, e: Error) -> Result<()> {
        if self.since.elapsed() >= self.limit {
            return Err(Error::Mesos(format!(
                "could not subscribe to the agent within {} s: {e}",
                self.limit.as_secs()
            )));
        }
        let delay = self.backoff.next_delay();
        debug!(error = %e, retry_in = ?delay, "SUBSCRIBE failed");
        self.at = Instant::now() + delay;
        Ok(())
    }
}

async fn next_event(events: &mut Option<Events>) -> Option<Result<Event>> {
    match events {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// For the RUNNING message when the agent did not say its name.
fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this agent".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resubscribing_backs_off_up_to_the_max_then_gives_up() {
        let max = Duration::from_millis(500);
        let mut r = Resubscribe::new(Duration::from_secs(60), max);
        let mut delays = Vec::new();
        for _ in 0..5 {
            let before = Instant::now();
            r.failed(Error::Mesos("down".into())).unwrap();
            delays.push(r.at.duration_since(before).as_millis());
        }
        assert!((100..=200).contains(&delays[0]), "{delays:?}");
        assert!(delays[3..].iter().all(|d| *d == 500), "{delays:?}");

        let mut r = Resubscribe::new(Duration::ZERO, max);
        let e = r.failed(Error::Mesos("HTTP 503".into())).unwrap_err();
        assert!(e.to_string().contains("could not subscribe"), "{e}");
        assert!(e.to_string().contains("HTTP 503"), "{e}");
    }
}
