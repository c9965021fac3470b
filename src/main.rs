use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use slipway::commands::controller::ControllerArgs;
use slipway::commands::{self, BackendArgs, DockerfileArgs, QueueArgs};

/// Builds DockerBuild resources into pushed container images.
#[derive(Parser)]
#[command(name = "slipway", version, about)]
struct Cli {
    /// Log level for slipway's own messages (RUST_LOG overrides).
    #[arg(long, global = true, default_value = "info", env = "SLIPWAY_LOG")]
    log_level: String,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        #[arg(long, default_value_t = slipway::sources::folder::DEFAULT_MAX_FILE_BYTES)]
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
    Logs(commands::LogsArgs),
    /// Print the DockerBuild CustomResourceDefinition.
    Crd,
    /// Draw the image family (bases -> leaves) of a watch folder or a cluster, as
    /// Graphviz DOT on stdout or as SVG (`docker images -viz` for the whole family).
    Graph(commands::GraphArgs),
    /// Run one build as a Mesos executor (started by a Mesos agent, not by hand).
    Executor {
        /// The agent's Docker daemon (unix:///path or tcp://host:port).
        #[arg(long, env = "DOCKER_HOST")]
        docker_host: Option<String>,
        /// Builder on the agent's daemon.
        #[arg(long, value_enum, default_value = "auto")]
        builder: slipway::runner::Builder,
        #[command(flatten)]
        buildkitd: slipway::runner::BuildkitdArgs,
        #[command(flatten)]
        tls: slipway::tls::TlsArgs,
        #[command(flatten)]
        docker_tls: slipway::runner::DockerTls,
        #[command(flatten)]
        engine: slipway::executor::engine::EngineArgs,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    slipway::telemetry::init(&cli.log_level, cli.log_json);
    match cli.command {
        Command::Crd => match commands::crd_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Logs(args) => match commands::logs(&args).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
        Command::Graph(args) => match commands::graph(&args).await {
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
            let opts = slipway::executor::ExecutorOptions {
                docker_host,
                builder,
                buildkitd,
                tls,
                docker_tls,
                engine,
            };
            match slipway::executor::run(opts).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Controller {
            args,
            backend,
            queue,
        } => {
            match commands::controller::run(&args, &backend, queue.settings(false, args.log_dir()))
                .await
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Watch {
            dir,
            backend,
            queue,
            once,
            max_resource_file_bytes,
        } => {
            let settings = queue.settings(once, commands::folder_log_root(&dir));
            match commands::watch(&dir, &backend, settings, max_resource_file_bytes).await {
                Ok(s) if once => {
                    println!(
                        "{} succeeded, {} failed, {} not built",
                        s.succeeded, s.failed, s.waiting
                    );
                    if s.failed + s.waiting > 0 {
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::Build {
            file,
            args,
            docker_config,
            backend,
        } => {
            let requests = match commands::one_shot_requests(&file, &args, docker_config.as_deref())
            {
                Ok(r) => r,
                Err(e) => return fail(&e),
            };
            // a resource file's builds keep their logs beside it, as `slipway watch` does
            let logs = slipway::sources::folder::is_resource_file(&file).then(|| {
                let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
                slipway::logs::LogStore {
                    root: commands::folder_log_root(dir.unwrap_or(".".as_ref())),
                    retention: Default::default(),
                    max_bytes: slipway::logs::DEFAULT_MAX_BYTES,
                }
            });
            match commands::build_once(requests, &backend, logs).await {
                Ok(results) => {
                    let mut ok = true;
                    for (key, r) in results {
                        match r {
                            Ok(out) => {
                                println!("{key}: {}", out.image);
                                for t in out.pushed_tags {
                                    println!("  {t}");
                                }
                            }
                            Err(e) => {
                                ok = false;
                                eprintln!("{key}: {e}");
                            }
                        }
                    }
                    if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => fail(&e),
            }
        }
    }
}

fn fail(e: &slipway::Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
