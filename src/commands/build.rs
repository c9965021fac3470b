//! `slipway build`: one shot, from a DockerBuild file or a bare Dockerfile and flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::backend::{BackendArgs, NoStore, backend};
use super::{folder_log_root, progress, shutdown_signal};
use crate::api::{BuildSource, DockerBuildSpec, Output};
use crate::logs::LogStore;
use crate::registry::DockerConfig;
use crate::runner::{BuildOutcome, BuildRequest};
use crate::sources::folder::{Doc, read_docs};
use crate::{Error, Result};

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

/// Where `slipway build FILE` keeps its builds' logs: a resource file's beside it, as
/// `slipway watch` does; a bare Dockerfile's nowhere.
pub fn one_shot_log_store(file: &Path) -> Option<LogStore> {
    crate::sources::folder::is_resource_file(file).then(|| {
        let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
        LogStore {
            root: folder_log_root(dir.unwrap_or(".".as_ref())),
            retention: Default::default(),
            max_bytes: crate::logs::DEFAULT_MAX_BYTES,
        }
    })
}

/// Prints each build's image and pushed tags (errors on stderr); fails if any failed.
pub(super) fn report(results: Vec<(String, Result<BuildOutcome>)>) -> ExitCode {
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

#[cfg(test)]
mod tests;
