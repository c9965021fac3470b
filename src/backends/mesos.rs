//! The Mesos backend: each build becomes a task of slipway's framework, run by
//! `slipway executor` on an agent with the same build runner.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use tracing::{info, instrument, warn};

use super::Backend;
use crate::api::MesosTask;
use crate::mesos::http::BasicAuth;
use crate::mesos::scheduler::crashed::{self, LaunchSite};
use crate::mesos::scheduler::sandbox_log::SandboxCopy;
use crate::mesos::scheduler::{Framework, FrameworkOptions, TaskSpec, TaskUpdate};
use crate::mesos::staging::{Handoff, Staged, Stager, StagingOptions};
use crate::mesos::task::{TaskPayload, task_id};
use crate::runner::{self, BuildEvent, BuildOutcome, BuildRequest, Cancel, Events, directives};
use crate::{Error, Result};

pub struct MesosOptions {
    pub framework: FrameworkOptions,
    /// Resources of a build that names none (spec or CPUS/MEM lines).
    pub default_cpus: f64,
    pub default_mem_mib: f64,
    /// How `path` contexts reach the executors (`--staging` and its settings).
    pub staging: StagingOptions,
}

pub struct MesosBackend {
    framework: Framework,
    stager: Stager,
    default_cpus: f64,
    default_mem_mib: f64,
    /// For looking up base layers to place builds by.
    http: crate::tls::Clients,
    /// The framework's credentials, for the agents' `/files/read` and `/state`.
    auth: Option<BasicAuth>,
}

/// How long a killed task may take to report that it stopped.
const KILL_WAIT: Duration = Duration::from_secs(30);

impl MesosBackend {
    pub async fn start(opts: MesosOptions) -> Result<Self> {
        let stager = Stager::start(&opts.staging).await?;
        let http = crate::tls::Tls::load(&opts.framework.core.tls)?
            .clients(|b| b.connect_timeout(Duration::from_secs(5)))?;
        Ok(Self {
            http,
            auth: opts.framework.auth.clone(),
            framework: Framework::start(opts.framework)?,
            stager,
            default_cpus: opts.default_cpus,
            default_mem_mib: opts.default_mem_mib,
        })
    }

    pub fn framework(&self) -> &Framework {
        &self.framework
    }

    /// CPUs and memory the build asks for: the spec, else the Dockerfile's CPUS/MEM
    /// lines when the Dockerfile can be read here, else the defaults.
    fn resources(&self, req: &BuildRequest) -> (f64, f64) {
        let d = runner::local_dockerfile(&req.spec, req.base_dir.as_deref())
            .and_then(|t| directives::parse(&t).ok())
            .map(|(d, _)| d)
            .unwrap_or_default();
        let r = req.spec.resources.clone().unwrap_or_default();
        (
            r.cpus.or(d.cpus).unwrap_or(self.default_cpus),
            r.mem_mib
                .or(d.mem_mib)
                .map(|m| m as f64)
                .unwrap_or(self.default_mem_mib),
        )
    }

    /// The layers of the Dockerfile's `FROM` images, when it can be read here
    /// (inline and path sources), to place the build where they already are.
    async fn base_layers(&self, req: &BuildRequest) -> Vec<String> {
        let Some(text) = runner::local_dockerfile(&req.spec, req.base_dir.as_deref()) else {
            return Vec::new();
        };
        let images = directives::from_images(&text, &req.spec.build_args);
        crate::registry::layers::base_layers(&self.http, &images, &req.auth).await
    }

    /// The payload for the executor: a `path` source is staged and becomes a URL (or,
    /// staged in the registry, a blob the executor fetches).
    async fn payload(&self, req: &BuildRequest) -> Result<(TaskPayload, Option<Staged>)> {
        let mut spec = req.spec.clone();
        let (mut staged, mut blob) = (None, None);
        if let Some(path) = spec.source.path.take() {
            runner::context::check_relative(&path, "path")?;
            let dir = req
                .base_dir
                .as_deref()
                .unwrap_or(Path::new("."))
                .join(&path);
            let dockerfile = spec.dockerfile.as_deref().unwrap_or("Dockerfile");
            let (handoff, s) = self
                .stager
                .stage(&dir, dockerfile, &req.spec, &req.auth)
                .await?;
            match handoff {
                Handoff::Url(url) => spec.source.url = Some(url),
                Handoff::Blob(b) => blob = Some(b),
            }
            staged = Some(s);
        }
        let docker_config = (!req.auth.is_empty()).then(|| req.auth.to_json());
        Ok((
            TaskPayload {
                key: req.key.clone(),
                spec,
                docker_config,
                secrets: req.secrets.clone(),
                staged: blob,
            },
            staged,
        ))
    }
}

#[async_trait]
impl Backend for MesosBackend {
    #[instrument(skip_all, fields(build = %req.key))]
    async fn run(&self, req: BuildRequest, events: Events, cancel: Cancel) -> Result<BuildOutcome> {
        // kept until the build ends: the executor downloads it when it starts
        let (payload, staged) = self.payload(&req).await?;
        let result = self.follow(req, payload, events, cancel).await;
        if let Some(s) = staged {
            s.remove().await;
        }
        result
    }

    fn name(&self) -> &'static str {
        "mesos"
    }

    fn places_remotely(&self) -> bool {
        true
    }

    fn settled(&self, key: &str) {
        self.framework.settled(key);
    }
}

impl MesosBackend {
    /// Launches the task and follows it to its end.
    async fn follow(
        &self,
        req: BuildRequest,
        payload: TaskPayload,
        events: Events,
        cancel: Cancel,
    ) -> Result<BuildOutcome> {
        let (cpus, mem_mib) = self.resources(&req);
        let hash = req.spec.hash();
        let spec = TaskSpec {
            key: req.key.clone(),
            spec_hash: hash.clone(),
            task_id: task_id(&req.key, &hash, rand_suffix()),
            cpus,
            mem_mib,
            payload: payload.encode(),
            base_layers: self.base_layers(&req).await,
            previous: req.previous.map(|p| (p.task_id, p.agent_id)),
        };
        let mut updates = self.framework.launch(spec);
        let mut killed_at: Option<tokio::time::Instant> = None;
        // the build's log in the executor's sandbox, copied while the task runs
        let mut copy: Option<SandboxCopy> = None;
        // where the task went, for when its executor ends before saying where its sandbox is
        let mut site: Option<LaunchSite> = None;
        loop {
            let update = tokio::select! {
                u = updates.recv() => u,
                _ = cancel.cancelled(), if killed_at.is_none() => {
                    info!("cancelled; killing the task");
                    self.framework.kill(&req.key);
                    killed_at = Some(tokio::time::Instant::now());
                    continue;
                }
                _ = tokio::time::sleep_until(killed_at.map(|t| t + KILL_WAIT).unwrap_or_else(tokio::time::Instant::now)), if killed_at.is_some() => {
                    warn!("the killed task did not report within {KILL_WAIT:?}");
                    if let Some(c) = copy.take() {
                        c.finish(false).await;
                    }
                    return Err(Error::Cancelled("build cancelled (the task did not confirm the kill)".into()));
                }
            };
            let Some(update) = update else {
                return Err(Error::Mesos("the framework stopped".into()));
            };
            let event = match update {
                TaskUpdate::Done(result) => {
                    match (copy.take(), &site) {
                        (Some(c), _) => c.finish(result.is_err()).await,
                        (None, Some(s)) if result.is_err() && killed_at.is_none() => {
                            crashed::keep_output(s, &events, self.auth.clone()).await
                        }
                        _ => {}
                    }
                    return match result {
                        Err(e) if killed_at.is_some() && !matches!(e, Error::Cancelled(_)) => {
                            Err(Error::Cancelled(format!("build cancelled ({e})")))
                        }
                        other => other,
                    };
                }
                TaskUpdate::Waiting(msg) => BuildEvent::Waiting(msg),
                TaskUpdate::Placed(p) => {
                    site = LaunchSite::of(&p);
                    BuildEvent::Placed {
                        host: p.host,
                        task: MesosTask {
                            framework_id: p.framework_id,
                            task_id: p.task_id,
                            agent_id: p.agent_id,
                            sandbox: None,
                            placement: p.why,
                        },
                    }
                }
                TaskUpdate::Started { host } => BuildEvent::Running {
                    host,
                    sandbox: None,
                },
                TaskUpdate::Progress(ev) => ev,
            };
            let sandbox = match &event {
                BuildEvent::Running {
                    sandbox: Some(s), ..
                } if copy.is_none() => Some(s.clone()),
                _ => None,
            };
            let _ = events.send(event);
            // after the event that says where: the log notes it before the copied lines
            copy = copy.or_else(|| {
                sandbox.map(|s| SandboxCopy::start(s, events.clone(), self.auth.clone()))
            });
        }
    }
}

fn rand_suffix() -> u32 {
    (uuid::Uuid::new_v4().as_u128() % 1_000_000) as u32
}
