//! What each subcommand does; `main.rs` only parses the command line.

pub mod controller;
mod logs;
mod progress;

pub use logs::{LogsArgs, folder_log_root, logs};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::CustomResourceExt;
use tokio_util::sync::CancellationToken;

use crate::api::{BuildSource, DockerBuild, DockerBuildSpec, Output};
use std::time::Duration;

use crate::backends::{Backend, LocalBackend, MesosBackend, MesosOptions};
use crate::logs::LogStore;
use crate::mesos::http::BasicAuth;
use crate::mesos::scheduler::{
    CoreConfig, ExecutorLaunch, FileStore, FrameworkIdStore, FrameworkOptions,
};
use crate::queue::QueueConfig;
use crate::reconciler::{self, Settings, Summary};
use crate::registry::DockerConfig;
use crate::runner::{BuildOutcome, BuildRequest};
use crate::sources::folder::{Doc, FolderSource, STATE_DIR, read_docs};
use crate::{Error, Result};

/// The CRD generated from the Rust types, as YAML.
pub fn crd_yaml() -> Result<String> {
    crate::yaml::to_string(&DockerBuild::crd()).map_err(|e| Error::InvalidSpec(e.to_string()))
}

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

pub use crate::api::parse_duration;

/// How many builds run at once and how infrastructure failures are retried
/// (`watch` and `controller`).
#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    /// Builds running at once (on either backend).
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Tries per build when the registry or daemon is unreachable.
    #[arg(long, default_value_t = 4)]
    pub max_attempts: u32,
    /// First retry delay, e.g. 5s, 500ms; it doubles each time, jittered, at most 5 min.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub retry_backoff: Duration,
    /// Automatic builds (context, git, url or base changes) running at once, within
    /// --concurrency; builds people ask for always go first.
    #[arg(long, default_value_t = 1)]
    pub max_auto_builds: usize,
    #[command(flatten)]
    pub triggers: TriggerArgs,
    #[command(flatten)]
    pub logs: crate::logs::LogArgs,
}

/// What rebuilds an image without a spec change (`watch` and `controller`).
#[derive(Debug, Clone, clap::Args)]
pub struct TriggerArgs {
    /// How often `git` sources' branches are looked up (0 = never); a resource's
    /// spec.triggers.gitPoll overrides it.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub git_poll: Duration,
    /// How often base images that no resource builds are looked up (0 = never).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub base_poll: Duration,
    /// How often `url` sources are checked for a new ETag or Last-Modified (0 = never).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub url_poll: Duration,
    /// Address of the push-webhook endpoint (GitHub, GitLab, generic JSON); off when unset.
    #[arg(long, requires = "webhook_secret_file")]
    pub webhook_listen: Option<std::net::SocketAddr>,
    /// File holding the webhook secret (GitHub's HMAC key, GitLab's token).
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
}

impl TriggerArgs {
    pub fn settings(&self) -> crate::triggers::TriggerSettings {
        crate::triggers::TriggerSettings {
            enabled: true,
            poll: crate::triggers::PollSettings {
                git: self.git_poll,
                base: self.base_poll,
                url: self.url_poll,
            },
            webhook: self
                .webhook_listen
                .zip(self.webhook_secret_file.clone())
                .map(|(listen, secret_file)| crate::triggers::WebhookSettings {
                    listen,
                    secret_file,
                }),
            // read with the backend's flags (`watch`, `controller`)
            tls: Default::default(),
        }
    }
}

impl QueueArgs {
    /// The settings, every build's log kept under `log_root`.
    pub fn settings(&self, once: bool, log_root: PathBuf) -> Settings {
        Settings {
            queue: QueueConfig {
                concurrency: self.concurrency,
                max_attempts: self.max_attempts,
                backoff: self.retry_backoff,
                max_auto: self.max_auto_builds,
                logs: Some(self.logs.store(log_root)),
                // the process's one: the queue, the reconciler, Mesos and /metrics share it
                metrics: crate::metrics::Metrics::new(),
            },
            once,
            triggers: self.triggers.settings(),
        }
    }
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
    Ok(Arc::new(MesosBackend::start(opts).await?))
}

/// `slipway watch DIR`: reconcile the folder until stopped (or, `once`, until done).
pub async fn watch(
    dir: &Path,
    args: &BackendArgs,
    mut settings: Settings,
    max_file_bytes: u64,
) -> Result<Summary> {
    settings.triggers.tls = crate::tls::Tls::load(&args.tls)?;
    // the framework ID lives with the folder's other state
    let store = Arc::new(FileStore::new(
        dir.join(STATE_DIR).join("mesos-framework-id"),
    ));
    let backend = backend(args, store, &settings.queue.metrics).await?;
    let source = Arc::new(FolderSource::new(dir).with_max_file_bytes(max_file_bytes));
    let run = reconciler::run(source, backend, settings);
    tokio::select! {
        r = run => r,
        _ = shutdown_signal() => {
            tracing::info!("stopping; builds under way are cancelled and restart on the next start");
            Ok(Summary::default())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A one-shot build from a bare Dockerfile, the ddocker/portainer way.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct DockerfileArgs {
    /// Build context for a Dockerfile (default: its directory).
    #[arg(long)]
    pub context: Option<PathBuf>,
    /// Registry host[:port] (else the Dockerfile's REGISTRY line).
    #[arg(long)]
    pub registry: Option<String>,
    /// Repository in the registry (else the Dockerfile's REPOSITORY line).
    #[arg(long)]
    pub repository: Option<String>,
    /// Tag to push; repeat for several.
    #[arg(long = "tag", short = 't')]
    pub tags: Vec<String>,
    /// KEY=VALUE build argument; repeat for several.
    #[arg(long = "build-arg", value_parser = parse_key_value)]
    pub build_args: Vec<(String, String)>,
    /// Multi-stage target to build.
    #[arg(long)]
    pub target: Option<String>,
    /// Build without the daemon's layer cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Fail the build after this many seconds.
    #[arg(long)]
    pub timeout_seconds: Option<u64>,
}

fn parse_key_value(s: &str) -> std::result::Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got '{s}'"))
}

/// The resource a bare Dockerfile and flags describe.
pub fn spec_from_dockerfile(
    dockerfile: &Path,
    args: &DockerfileArgs,
) -> Result<(DockerBuildSpec, PathBuf)> {
    let dockerfile = std::path::absolute(dockerfile)?;
    let context = match &args.context {
        Some(c) => std::path::absolute(c)?,
        None => dockerfile
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let rel = dockerfile.strip_prefix(&context).map_err(|_| {
        Error::InvalidSpec(format!(
            "the Dockerfile {} is outside the context {}",
            dockerfile.display(),
            context.display()
        ))
    })?;
    let spec = DockerBuildSpec {
        source: BuildSource {
            path: Some(".".into()),
            ..Default::default()
        },
        dockerfile: Some(rel.to_string_lossy().replace('\\', "/")),
        build_args: args.build_args.iter().cloned().collect(),
        target: args.target.clone(),
        no_cache: args.no_cache,
        output: Some(Output {
            registry: args.registry.clone(),
            repository: args.repository.clone(),
            tags: args.tags.clone(),
            push_secret_ref: None,
        }),
        timeout_seconds: args.timeout_seconds,
        ..Default::default()
    };
    Ok((spec, context))
}

/// What to build in one shot: every DockerBuild of a YAML (or JSON) file, or one Dockerfile.
pub fn one_shot_requests(
    file: &Path,
    df_args: &DockerfileArgs,
    docker_config: Option<&Path>,
) -> Result<Vec<BuildRequest>> {
    if !crate::sources::folder::is_resource_file(file) {
        let (spec, context) = spec_from_dockerfile(file, df_args)?;
        let auth = Arc::new(DockerConfig::load(docker_config)?);
        return Ok(vec![BuildRequest {
            key: file.display().to_string(),
            spec,
            base_dir: Some(context),
            auth,
            previous: None,
            secrets: Default::default(),
        }]);
    }
    // the watch folder's limit: a file this big is no resource, and reading it whole costs memory
    let text = crate::sources::folder::read_resource_file(
        file,
        crate::sources::folder::DEFAULT_MAX_FILE_BYTES,
    )
    .map_err(|message| Error::new(crate::Kind::Source, message))?;
    let origin = file.display().to_string();
    let base_dir = std::path::absolute(file)?.parent().map(Path::to_path_buf);
    let mut out = Vec::new();
    for (doc, warnings) in read_docs(&text, &origin) {
        match doc {
            Doc::Build(b) => {
                for w in warnings {
                    tracing::warn!(build = %b.key(), "{origin}: {w}");
                }
                let cfg_path = match (
                    &b.spec
                        .output
                        .as_ref()
                        .and_then(|o| o.push_secret_ref.clone()),
                    docker_config,
                ) {
                    (Some(r), _) if r.path.is_some() => r
                        .path
                        .as_ref()
                        .map(|p| base_dir.clone().unwrap_or_default().join(p)),
                    (_, Some(p)) => Some(p.to_path_buf()),
                    _ => None,
                };
                out.push(BuildRequest {
                    key: b.key(),
                    spec: b.spec.clone(),
                    base_dir: base_dir.clone(),
                    auth: Arc::new(DockerConfig::load(cfg_path.as_deref())?),
                    previous: None,
                    secrets: crate::sources::folder::secrets::read_files(
                        &b.spec.secrets,
                        base_dir.as_deref(),
                    )?,
                });
            }
            Doc::Invalid { message, .. } => return Err(Error::InvalidSpec(message)),
            Doc::Other { .. } => {}
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidSpec(format!("{origin} holds no DockerBuild")));
    }
    Ok(out)
}

/// Runs builds one after the other (file order, so a base before its leaves), with
/// progress on the terminal. Returns each build's result.
pub async fn build_once(
    requests: Vec<BuildRequest>,
    args: &BackendArgs,
    logs: Option<LogStore>,
) -> Result<Vec<(String, Result<BuildOutcome>)>> {
    // one-shot: nothing serves metrics
    let backend = backend(args, Arc::new(NoStore), &Default::default()).await?;
    let mut results = Vec::new();
    for req in requests {
        let key = req.key.clone();
        let log = logs.as_ref().and_then(|store| one_shot_log(store, &req));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (show_tx, show_rx) = tokio::sync::mpsc::unbounded_channel();
        let shown = tokio::spawn(progress::show(key.clone(), show_rx));
        // the log sees every event the terminal does; it ends when the build drops `tx`
        let kept = tokio::spawn(async move {
            let mut log = log;
            while let Some(ev) = rx.recv().await {
                if let Some(log) = log.as_mut() {
                    log.event(&ev);
                }
                let _ = show_tx.send(ev);
            }
            log
        });
        let cancel = CancellationToken::new();
        let run = backend.run(req, tx, cancel.clone());
        let result = tokio::select! {
            r = run => r,
            _ = shutdown_signal() => {
                cancel.cancel();
                Err(Error::Cancelled("interrupted".into()))
            }
        };
        if let Ok(Some(log)) = kept.await {
            let path = log.path().to_path_buf();
            log.finish(&result);
            eprintln!("{key}: log kept in {}", path.display());
        }
        let _ = shown.await;
        backend.settled(&key);
        results.push((key, result));
    }
    Ok(results)
}

/// A resource's next build log, numbered after the kept ones; a log that cannot be
/// opened is warned about, never a reason not to build.
fn one_shot_log(store: &LogStore, req: &BuildRequest) -> Option<crate::logs::BuildLog> {
    let (ns, name) = req.key.split_once('/')?;
    let opened = store.next_number(ns, name).and_then(|n| {
        let log = store.open(ns, name, n, crate::logs::Redactor::for_request(req))?;
        store.prune(ns, name, n)?;
        Ok(log)
    });
    opened
        .inspect_err(|e| tracing::warn!(key = %req.key, "no build log kept: {e}"))
        .ok()
}

/// A one-shot build keeps no framework ID: each run is a new framework.
struct NoStore;

impl FrameworkIdStore for NoStore {
    fn load(&self) -> Option<String> {
        None
    }

    fn save(&self, _id: Option<&str>) -> Result<()> {
        Ok(())
    }
}

/// `slipway graph`: which family to draw, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct GraphArgs {
    /// The watch folder to read (default: the current directory).
    #[arg(conflicts_with = "kube")]
    pub dir: Option<PathBuf>,
    /// Read the cluster instead (KUBECONFIG, ~/.kube/config or in-cluster).
    #[arg(long)]
    pub kube: bool,
    /// With --kube: this namespace only (all namespaces when unset).
    #[arg(short = 'n', long, requires = "kube")]
    pub namespace: Option<String>,
    /// Write SVG to FILE instead of printing DOT.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// The image graph as DOT (returned, for stdout) or written as SVG to `--svg`.
pub async fn graph(args: &GraphArgs) -> Result<Option<String>> {
    let members = if args.kube {
        crate::graph::load::from_kube(args.namespace.as_deref()).await?
    } else {
        crate::graph::load::from_folder(args.dir.as_deref().unwrap_or(Path::new(".")))?
    };
    let g = crate::graph::build(&members);
    let Some(file) = &args.svg else {
        return Ok(Some(crate::graph::dot::to_dot(&g)));
    };
    std::fs::write(file, crate::graph::svg::to_svg(&g)).map_err(|e| Error::Source {
        path: file.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(None)
}

#[cfg(test)]
mod mesos_defaults_tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        mesos: MesosArgs,
    }

    #[test]
    fn offers_are_refused_and_launches_watched_as_marathon_does() {
        let m = <Cli as clap::Parser>::parse_from(["slipway"]).mesos;
        assert_eq!(m.refuse_seconds, 120.0);
        assert_eq!(m.launch_timeout, Duration::from_secs(300));
        assert_eq!(m.locality_wait, Duration::from_secs(3));
    }
}
