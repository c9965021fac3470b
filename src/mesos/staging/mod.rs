//! Staging of `path`-source contexts for remote executors (`--staging`): the context
//! is checked and packed here (a `..` or an escaping symlink is refused before
//! anything leaves this machine), then handed to the executor one of three ways:
//! - `serve` (portainer's way): slipway serves it at an unguessable URL;
//! - `registry`: pushed as an OCI artifact to the build's own output repository,
//!   fetched by digest with the build's credentials, deleted after the build;
//! - `s3`: written to `--staging-uri s3://bucket/prefix`, fetched through a presigned
//!   URL (the executor holds no S3 credentials), removed after the build.
//!
//! The last two need nothing of slipway to be reachable from the agents.

pub mod registry;
pub mod s3;
mod serve;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::api::DockerBuildSpec;
use crate::registry::DockerConfig;
use crate::runner::context;
use crate::{Error, Result};

pub use registry::StagedBlob;
pub use serve::Server;

/// `--staging`: how a `path` context reaches the executor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Staging {
    /// served by slipway's own context server (agents must reach slipway)
    #[default]
    Serve,
    /// pushed to the build's output repository as an OCI artifact
    Registry,
    /// written to `--staging-uri s3://bucket/prefix`
    S3,
}

/// What the staging needs, from the command line.
#[derive(Clone, Debug)]
pub struct StagingOptions {
    pub staging: Staging,
    /// `serve`: where the context server listens, and the URL agents use.
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    /// `s3`: `s3://bucket/prefix`.
    pub uri: Option<String>,
}

/// Where staged contexts go.
pub enum Stager {
    Serve(Server),
    Registry(reqwest::Client),
    S3(s3::S3Stage),
}

/// How the executor finds a staged context, as it rides in the task's payload.
#[derive(Debug)]
pub enum Handoff {
    /// `spec.source.url` (a served or presigned URL).
    Url(String),
    /// A registry blob, fetched with the build's own credentials.
    Blob(StagedBlob),
}

/// A staged context; [`Staged::remove`] takes it away once the build ended.
pub enum Staged {
    Serve(serve::Served),
    Registry(registry::Pushed),
    S3(s3::Written),
}

impl Stager {
    pub async fn start(opts: &StagingOptions) -> Result<Self> {
        Ok(match opts.staging {
            Staging::Serve => {
                Stager::Serve(Server::start(opts.listen, opts.advertise.as_deref()).await?)
            }
            Staging::Registry => Stager::Registry(reqwest::Client::new()),
            Staging::S3 => {
                let uri = opts.uri.as_deref().ok_or_else(|| {
                    Error::InvalidSpec("--staging s3 needs --staging-uri s3://bucket/prefix".into())
                })?;
                Stager::S3(s3::S3Stage::from_env(uri)?)
            }
        })
    }

    /// Checks, packs and stages `dir` (with `dockerfile` inside) for the build of
    /// `spec` (whose output repository `registry` staging uses), with `auth`.
    pub async fn stage(
        &self,
        dir: &Path,
        dockerfile: &str,
        spec: &DockerBuildSpec,
        auth: &DockerConfig,
    ) -> Result<(Handoff, Staged)> {
        match self {
            Stager::Serve(server) => {
                let s = server.stage(dir, dockerfile).await?;
                Ok((Handoff::Url(s.url.clone()), Staged::Serve(s)))
            }
            Stager::Registry(client) => {
                let packed = Packed::new(dir, dockerfile).await?;
                let (registry, repository) = registry::target(spec, dir, dockerfile)?;
                let creds = auth.credentials_for(&registry).await?;
                let pushed = registry::push(client, &registry, &repository, creds, &packed).await?;
                Ok((Handoff::Blob(pushed.blob.clone()), Staged::Registry(pushed)))
            }
            Stager::S3(store) => {
                let packed = Packed::new(dir, dockerfile).await?;
                let written = store.put(&packed).await?;
                Ok((Handoff::Url(written.url.clone()), Staged::S3(written)))
            }
        }
    }
}

impl Staged {
    /// Takes the staged context away; a failure is logged, never the build's.
    pub async fn remove(self) {
        match self {
            Staged::Serve(s) => drop(s),
            Staged::Registry(p) => p.remove().await,
            Staged::S3(w) => w.remove().await,
        }
    }
}

/// A packed context in a temporary file, with its sha256 and size.
pub struct Packed {
    pub path: PathBuf,
    pub digest: String,
    pub size: u64,
    _dir: tempfile::TempDir,
}

impl Packed {
    /// Checks and packs `dir` (with `dockerfile` inside it) as a tar.
    pub async fn new(dir: &Path, dockerfile: &str) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join("context.tar");
        let (digest, size) = pack(dir, dockerfile, &path).await?;
        Ok(Self {
            path,
            digest,
            size,
            _dir: tmp,
        })
    }
}

/// Packs `dir` into the tar file `into`: `(sha256:…, size)`.
pub(crate) async fn pack(dir: &Path, dockerfile: &str, into: &Path) -> Result<(String, u64)> {
    context::check_relative(dockerfile, "dockerfile")?;
    let plan = {
        let (dir, df) = (dir.to_path_buf(), dockerfile.to_string());
        tokio::task::spawn_blocking(move || context::plan(&dir, &df))
            .await
            .map_err(|e| Error::Context(e.to_string().into()))??
    };
    let text = plan.read_dockerfile()?;
    let mut file = tokio::fs::File::create(into).await?;
    let mut tar = Box::pin(context::stream(plan, dockerfile, text.into_bytes()));
    let (mut sha, mut size) = (Sha256::new(), 0u64);
    while let Some(chunk) = tar.next().await {
        let chunk = chunk.map_err(|e| Error::Context(e.to_string().into()))?;
        sha.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok((format!("sha256:{}", hex::encode(sha.finalize())), size))
}

/// The executor side: a build whose payload names a staged blob gets it fetched and
/// unpacked into `into` (in the sandbox), and becomes a `path` build of it.
pub async fn fetch_staged(
    blob: &StagedBlob,
    mut req: crate::runner::BuildRequest,
    into: &Path,
) -> Result<crate::runner::BuildRequest> {
    let dir = into.join("staged-context");
    registry::fetch(&reqwest::Client::new(), blob, &req.auth, &dir).await?;
    req.spec.source.url = None;
    req.spec.source.path = Some("staged-context".into());
    req.base_dir = Some(into.to_path_buf());
    Ok(req)
}
