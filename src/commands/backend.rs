//! Where builds run (`--backend` and its flags, shared by `watch`, `build` and
//! `controller`), and the backend those flags make.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::parse_duration;
use crate::backends::{Backend, LocalBackend, MesosBackend, MesosOptions};
use crate::mesos::http::BasicAuth;
use crate::mesos::scheduler::{CoreConfig, ExecutorLaunch, FrameworkIdStore, FrameworkOptions};
use crate::{Error, Result};

/// Where builds run, and how to reach it (flags shared by `watch` and `build`).
#[derive(Debug, Clone, clap::Args)]
pub struct BackendArgs {
    /// Where builds run: this machine's Docker daemon, or a Mesos cluster.
    #[arg(long, value_enum, default_value = "local", env = "SLIPWAY_BACKEND")]
    pub backend: BackendKind,
    /// Docker daemon (unix:///path or tcp://host:port); DOCKER_HOST otherwise.
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    #[command(flatten)]
    pub docker_tls: crate::runner::DockerTls,
    /// Builder, for every backend: a standalone buildkitd when --buildkit-addr is
    /// given (auto), else the Docker daemon's BuildKit when it has one, or one named.
    #[arg(long, value_enum, default_value = "auto", env = "SLIPWAY_BUILDER")]
    pub builder: crate::runner::Builder,
    #[command(flatten)]
    pub buildkitd: crate::runner::BuildkitdArgs,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
    /// Most bytes a `url` source may download, and unpack to (local backend).
    #[arg(long, default_value_t = crate::runner::fetch::DEFAULT_MAX_CONTEXT_BYTES)]
    pub max_context_bytes: u64,
    /// git-credential-store file (`https://user:password@host` lines) for `git`
    /// sources and triggers over http(s).
    #[arg(long, env = "SLIPWAY_GIT_CREDENTIALS")]
    pub git_credentials: Option<PathBuf>,
    #[command(flatten)]
    pub mesos: MesosArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    Local,
    Mesos,
}

/// The Mesos framework's settings (used with `--backend mesos`).
#[derive(Debug, Clone, clap::Args)]
pub struct MesosArgs {
    /// Mesos master host:port (or URL); repeat or separate with commas for HA.
    #[arg(
        long = "mesos-master",
        value_delimiter = ',',
        env = "SLIPWAY_MESOS_MASTER"
    )]
    pub masters: Vec<String>,
    /// Principal for HTTP basic authentication to the master.
    #[arg(long)]
    pub principal: Option<String>,
    /// File holding the principal's secret.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Role whose resources builds use.
    #[arg(long, default_value = "*")]
    pub role: String,
    /// Framework name shown by the master.
    #[arg(long, default_value = "slipway")]
    pub framework_name: String,
    /// User the executor runs as on the agents.
    #[arg(long, default_value = "root")]
    pub mesos_user: String,
    /// How long the master keeps slipway's tasks running while slipway is away.
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub failover_timeout: Duration,
    /// Path of the slipway binary on the agents (default: this binary's path).
    #[arg(long)]
    pub executor_path: Option<String>,
    /// Tarball with `slipway` at its top, fetched by the agents (instead of a path).
    #[arg(long, conflicts_with = "executor_path")]
    pub executor_uri: Option<String>,
    /// Docker image whose entrypoint is slipway (scripts/image.sh builds one) to run
    /// the executor in (instead of a path).
    #[arg(long, conflicts_with_all = ["executor_path", "executor_uri"])]
    pub executor_image: Option<String>,
    /// The agents' Docker socket, mounted into the executor image.
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub executor_docker_socket: String,
    /// Docker daemon the executor builds on, as seen from the agent.
    #[arg(long)]
    pub agent_docker_host: Option<String>,
    /// CPUs for a build that names none (spec or CPUS line).
    #[arg(long, default_value_t = 1.0)]
    pub default_cpus: f64,
    /// Memory in MiB for a build that names none (spec or MEM line).
    #[arg(long, default_value_t = 1024.0)]
    pub default_mem: f64,
    /// Address the server of `path`-source contexts listens on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub context_listen: std::net::SocketAddr,
    /// URL agents reach that server at (default: http://<listen address>).
    #[arg(long)]
    pub context_url: Option<String>,
    /// How `path` contexts reach the agents: served by slipway, pushed to the build's
    /// output repository, or written to `--staging-uri` (S3).
    #[arg(long, value_enum, default_value = "serve")]
    pub staging: crate::mesos::staging::Staging,
    /// `s3://bucket/prefix` for `--staging s3` (endpoint, region and credentials
    /// from the AWS_* variables).
    #[arg(long)]
    pub staging_uri: Option<String>,
    /// Seconds a declined offer stays away (new work revives offers sooner).
    #[arg(long, default_value_t = 120.0)]
    pub refuse_seconds: f64,
    /// A launch with no status update for this long is reconciled, then relaunched.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub launch_timeout: Duration,
    /// Longest a build waits for an offer of the agent holding most of its base
    /// layers before it takes any fitting offer (0s: place by fit only).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub locality_wait: Duration,
    /// How often every task is reconciled with the master.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub reconcile_interval: Duration,
    #[command(flatten)]
    pub engine: crate::executor::engine::EngineArgs,
}

/// The backend the flags ask for. `store` keeps the Mesos framework ID between runs.
pub async fn backend(
    args: &BackendArgs,
    store: Arc<dyn FrameworkIdStore>,
    metrics: &crate::metrics::Metrics,
) -> Result<Arc<dyn Backend>> {
    if let Some(file) = &args.git_credentials {
        crate::runner::fetch::set_git_credentials_file(file.clone());
    }
    if args.backend == BackendKind::Local {
        let limits = crate::runner::fetch::UrlLimits {
            max_bytes: args.max_context_bytes,
            ..Default::default()
        };
        return Ok(Arc::new(
            LocalBackend::connect(
                args.docker_host.as_deref(),
                &args.docker_tls,
                args.builder,
                &args.buildkitd,
            )
            .await?
            .with_tls(&crate::tls::Tls::load(&args.tls)?)?
            .with_url_limits(limits),
        ));
    }
    Ok(Arc::new(
        MesosBackend::start(mesos_options(args, store, metrics)?).await?,
    ))
}

/// The Mesos framework the flags describe (nothing started yet); reads only
/// `--secret-file`.
fn mesos_options(
    args: &BackendArgs,
    store: Arc<dyn FrameworkIdStore>,
    metrics: &crate::metrics::Metrics,
) -> Result<MesosOptions> {
    let m = &args.mesos;
    if m.masters.is_empty() {
        return Err(Error::InvalidSpec(
            "--backend mesos needs --mesos-master HOST:PORT".into(),
        ));
    }
    let auth = match (&m.principal, &m.secret_file) {
        (Some(principal), Some(file)) => {
            let secret = std::fs::read_to_string(file).map_err(|e| {
                Error::InvalidSpec(format!("cannot read --secret-file {}: {e}", file.display()))
            })?;
            Some(BasicAuth {
                principal: principal.clone(),
                secret: secret.trim().to_string(),
            })
        }
        (None, None) => None,
        _ => {
            return Err(Error::InvalidSpec(
                "--principal and --secret-file go together".into(),
            ));
        }
    };
    let executor = match (&m.executor_uri, &m.executor_image, &m.executor_path) {
        (Some(uri), _, _) => ExecutorLaunch::Uri(uri.clone()),
        (_, Some(image), _) => ExecutorLaunch::Image {
            image: image.clone(),
            docker_socket: m.executor_docker_socket.clone(),
        },
        (_, _, Some(path)) => ExecutorLaunch::Path(path.clone()),
        _ => ExecutorLaunch::Path(
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "slipway".into()),
        ),
    };
    let core = CoreConfig {
        name: m.framework_name.clone(),
        user: m.mesos_user.clone(),
        role: m.role.clone(),
        principal: m.principal.clone(),
        failover_timeout: m.failover_timeout,
        executor,
        agent_docker_host: m.agent_docker_host.clone(),
        builder: args.builder,
        buildkitd: args.buildkitd.clone(),
        tls: args.tls.clone(),
        docker_tls: args.docker_tls.clone(),
        engine: m.engine.clone(),
        refuse_seconds: m.refuse_seconds,
        launch_timeout: m.launch_timeout,
        locality_wait: m.locality_wait,
        metrics: metrics.clone(),
        ..Default::default()
    };
    let opts = MesosOptions {
        framework: FrameworkOptions {
            masters: m.masters.clone(),
            auth,
            core,
            store,
            reconcile_interval: m.reconcile_interval,
        },
        default_cpus: m.default_cpus,
        default_mem_mib: m.default_mem,
        staging: crate::mesos::staging::StagingOptions {
            staging: m.staging,
            listen: m.context_listen,
            advertise: m.context_url.clone(),
            uri: m.staging_uri.clone(),
        },
    };
    Ok(opts)
}

/// A one-shot build keeps no framework ID: each run is a new framework.
pub(super) struct NoStore;

impl FrameworkIdStore for NoStore {
    fn load(&self) -> Option<String> {
        None
    }

    fn save(&self, _id: Option<&str>) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
