//! What each subcommand does; `main.rs` only parses the command line.

mod progress;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kube::CustomResourceExt;
use tokio_util::sync::CancellationToken;

use crate::api::{BuildSource, DockerBuild, DockerBuildSpec, Output};
use crate::backends::{Backend, LocalBackend};
use crate::reconciler::controller::{self, Settings, Summary};
use crate::registry::DockerConfig;
use crate::runner::{BuildOutcome, BuildRequest};
use crate::sources::folder::{Doc, FolderSource, read_docs};
use crate::{Error, Result};

/// The CRD generated from the Rust types, as YAML.
pub fn crd_yaml() -> Result<String> {
    serde_yaml_ng::to_string(&DockerBuild::crd()).map_err(|e| Error::InvalidSpec(e.to_string()))
}

/// `slipway watch DIR`: reconcile the folder until stopped (or, `once`, until done).
pub async fn watch(dir: &Path, docker_host: Option<&str>, settings: Settings) -> Result<Summary> {
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::connect(docker_host).await?);
    let source = Arc::new(FolderSource::new(dir));
    let run = controller::run(source, backend, settings);
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

/// What to build in one shot: every DockerBuild of a YAML file, or one Dockerfile.
pub fn one_shot_requests(
    file: &Path,
    df_args: &DockerfileArgs,
    docker_config: Option<&Path>,
) -> Result<Vec<BuildRequest>> {
    let is_yaml = matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    if !is_yaml {
        let (spec, context) = spec_from_dockerfile(file, df_args)?;
        let auth = Arc::new(DockerConfig::load(docker_config)?);
        return Ok(vec![BuildRequest {
            key: file.display().to_string(),
            spec,
            base_dir: Some(context),
            auth,
        }]);
    }
    let text = std::fs::read_to_string(file).map_err(|e| Error::Source {
        path: file.display().to_string(),
        message: e.to_string(),
    })?;
    let origin = file.display().to_string();
    let base_dir = std::path::absolute(file)?.parent().map(Path::to_path_buf);
    let mut out = Vec::new();
    for doc in read_docs(&text, &origin) {
        match doc {
            Doc::Build(b) => {
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
    docker_host: Option<&str>,
) -> Result<Vec<(String, Result<BuildOutcome>)>> {
    let backend = LocalBackend::connect(docker_host).await?;
    let mut results = Vec::new();
    for req in requests {
        let key = req.key.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let shown = tokio::spawn(progress::show(key.clone(), rx));
        let cancel = CancellationToken::new();
        let run = backend.run(req, tx, cancel.clone());
        let result = tokio::select! {
            r = run => r,
            _ = shutdown_signal() => {
                cancel.cancel();
                Err(Error::Cancelled("interrupted".into()))
            }
        };
        let _ = shown.await;
        results.push((key, result));
    }
    Ok(results)
}
