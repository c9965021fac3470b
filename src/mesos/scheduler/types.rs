//! What the framework is configured with and what it tells each build.

use std::time::Duration;

use crate::Result;
use crate::runner::{BuildEvent, BuildOutcome};

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
    /// `--docker-tls-verify` and `--docker-cert-path` for `agent_docker_host`, passed
    /// on to the executor (the files must be on the agents at that path).
    pub docker_tls: crate::runner::DockerTls,
    /// `--executor-engine` and its binaries, passed on to the executor.
    pub engine: crate::executor::engine::EngineArgs,
    /// What the executor itself takes besides the build.
    pub executor_cpus: f64,
    pub executor_mem_mib: f64,
    /// How long declined offers stay away (Marathon's 120 s): a new build REVIVEs,
    /// which clears the filters.
    pub refuse_seconds: f64,
    /// A launch with no status update for this long is reconciled, and after as
    /// long again relaunched (Marathon's task launch timeout).
    pub launch_timeout: Duration,
    /// Pause after subscribing before launching, so reconciliation answers come first.
    pub settle: Duration,
    /// Longest a build passes up fitting offers while an agent holding more of its
    /// base layers may still offer (`--locality-wait`; delay scheduling).
    pub locality_wait: Duration,
    /// Where offers, launches and the subscription are counted (the process's one).
    pub metrics: crate::metrics::Metrics,
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
            docker_tls: Default::default(),
            engine: Default::default(),
            executor_cpus: 0.1,
            executor_mem_mib: 32.0,
            refuse_seconds: 120.0,
            launch_timeout: Duration::from_secs(300),
            settle: Duration::from_secs(1),
            locality_wait: Duration::from_secs(3),
            metrics: Default::default(),
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
    /// The agent's HTTP address from the accepted offer (`Offer.url`), to find the
    /// sandbox through when the executor never says where it is.
    pub agent_url: Option<String>,
    /// Why there, by base layers held (`placed on HOST: holds 5/6 base layers`).
    pub why: Option<String>,
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
    /// Diff IDs of the layers of its `FROM` images, to place it by (may be empty).
    pub base_layers: Vec<String>,
}
