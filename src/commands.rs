//! The command line: [`Cli`] and what each subcommand does, one module each;
//! `main.rs` only parses and starts logging.

mod backend;
mod build;
pub mod controller;
mod graph;
mod logs;
mod progress;
mod queue;
mod watch;

pub use backend::{BackendArgs, BackendKind, MesosArgs, backend};
pub use build::{
    DockerfileArgs, build_once, one_shot_log_store, one_shot_requests, spec_from_dockerfile,
};
pub use graph::{GraphArgs, graph};
pub use logs::{LogsArgs, folder_log_root, logs};
pub use queue::{QueueArgs, TriggerArgs};
pub use watch::watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;

use crate::api::DockerBuild;
use crate::reconciler::Settings;
use crate::{Error, Result};
use controller::ControllerArgs;

pub use crate::api::parse_duration;

/// Builds DockerBuild resources into pushed container images.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, about)]
pub struct Cli {
    /// Log level for slipway's own messages (RUST_LOG overrides).
    #[arg(long, global = true, default_value = "info", env = "SLIPWAY_LOG")]
    pub log_level: String,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reconcile every DockerBuild in the YAML files under DIR, writing status back.
    Watch {
        dir: PathBuf,
        #[command(flatten)]
        backend: BackendArgs,
        #[command(flatten)]
        queue: QueueArgs,
        /// Exit once everything is reconciled and no build runs (exit 1 if any failed).
        #[arg(long)]
        once: bool,
        /// Refuse (without reading) resource files bigger than this; 1.5 MiB is etcd's
        /// request limit, so no bigger DockerBuild fits in a cluster either.
        #[arg(long, default_value_t = crate::sources::folder::DEFAULT_MAX_FILE_BYTES)]
        max_resource_file_bytes: u64,
    },
    /// Build once: a DockerBuild YAML file, or a Dockerfile with flags.
    Build {
        /// A .yaml/.yml/.json file of DockerBuilds, or a Dockerfile.
        file: PathBuf,
        #[command(flatten)]
        args: DockerfileArgs,
        /// docker config.json with registry credentials (default: ~/.docker/config.json).
        #[arg(long)]
        docker_config: Option<PathBuf>,
        #[command(flatten)]
        backend: BackendArgs,
    },
    /// Reconcile DockerBuilds in a Kubernetes cluster (KUBECONFIG or in-cluster).
    Controller {
        #[command(flatten)]
        args: ControllerArgs,
        #[command(flatten)]
        backend: BackendArgs,
        #[command(flatten)]
        queue: QueueArgs,
    },
    /// Print a build's kept log (a watch folder's; `-f` follows a running build).
    Logs(LogsArgs),
    /// Print the DockerBuild CustomResourceDefinition.
    Crd,
    /// Draw the image family (bases -> leaves) of a watch folder or a cluster, as
    /// Graphviz DOT on stdout or as SVG (`docker images -viz` for the whole family).
    Graph(GraphArgs),
    /// Run one build as a Mesos executor (started by a Mesos agent, not by hand).
    Executor {
        /// The agent's Docker daemon (unix:///path or tcp://host:port).
        #[arg(long, env = "DOCKER_HOST")]
        docker_host: Option<String>,
        /// Builder on the agent's daemon.
        #[arg(long, value_enum, default_value = "auto")]
        builder: crate::runner::Builder,
        #[command(flatten)]
        buildkitd: crate::runner::BuildkitdArgs,
        #[command(flatten)]
        tls: crate::tls::TlsArgs,
        #[command(flatten)]
        docker_tls: crate::runner::DockerTls,
        #[command(flatten)]
        engine: crate::executor::engine::EngineArgs,
    },
}

impl Command {
    /// What `watch` and `controller` hand the reconciler: the queue and trigger
    /// flags, every build's log kept in the folder's `.slipway/logs` or `--log-dir`.
    pub fn reconciler_settings(&self) -> Option<Settings> {
        match self {
            Command::Watch {
                dir, queue, once, ..
            } => Some(queue.settings(*once, folder_log_root(dir))),
            Command::Controller { args, queue, .. } => Some(queue.settings(false, args.log_dir())),
            _ => None,
        }
    }
}

/// Runs the subcommand; what it prints and the process's exit code.
pub async fn run(command: Command) -> ExitCode {
    // only `watch` and `controller` use it
    let settings = command.reconciler_settings().unwrap_or_default();
    match command {
        Command::Crd => match crd_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Logs(args) => match logs(&args).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Graph(args) => match graph(&args).await {
            Ok(dot) => {
                print!("{}", dot.unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Executor {
            docker_host,
            builder,
            buildkitd,
            tls,
            docker_tls,
            engine,
        } => {
            let opts = crate::executor::ExecutorOptions {
                docker_host,
                builder,
                buildkitd,
                tls,
                docker_tls,
                engine,
            };
            match crate::executor::run(opts).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Controller { args, backend, .. } => {
            match controller::run(&args, &backend, settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Watch {
            dir,
            backend,
            once,
            max_resource_file_bytes,
            ..
        } => match watch(&dir, &backend, settings, max_resource_file_bytes).await {
            Ok(s) if once => {
                let (line, all_built) = watch::once_summary(&s);
                println!("{line}");
                if all_built {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Build {
            file,
            args,
            docker_config,
            backend,
        } => {
            let requests = match one_shot_requests(&file, &args, docker_config.as_deref()) {
                Ok(r) => r,
                Err(e) => return fail(&e),
            };
            match build_once(requests, &backend, one_shot_log_store(&file)).await {
                Ok(results) => build::report(results),
                Err(e) => fail(&e),
            }
        }
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// The CRD generated from the Rust types, as YAML.
pub fn crd_yaml() -> Result<String> {
    crate::yaml::to_string(&DockerBuild::crd()).map_err(|e| Error::InvalidSpec(e.to_string()))
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

#[cfg(test)]
mod tests;
