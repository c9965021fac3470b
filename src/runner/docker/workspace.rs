//! Where a build's context comes from: a directory beside the resource, an inline
//! Dockerfile, a Git checkout or a downloaded tarball.

use std::path::PathBuf;

use super::Runner;
use crate::runner::{BuildRequest, context, fetch};
use crate::{Error, Result};

/// A context directory, and the temporary directory holding it if it was fetched.
pub(super) struct Workspace {
    pub(super) dir: PathBuf,
    pub(super) _tmp: Option<tempfile::TempDir>,
    pub(super) revision: Option<String>,
    pub(super) source_url: Option<String>,
    /// A `url` source's version as fetched.
    pub(super) source_version: Option<String>,
}

impl Runner {
    pub(super) async fn workspace(&self, req: &BuildRequest) -> Result<Workspace> {
        let src = &req.spec.source;
        let base = req.base_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        if let Some(path) = &src.path {
            let dir = context::resolve_context_dir(&base, path)?;
            if !dir.is_dir() {
                return Err(Error::Context(
                    format!(
                        "source.path '{path}' is not a directory (looked in {})",
                        base.display()
                    )
                    .into(),
                ));
            }
            return Ok(Workspace {
                dir,
                _tmp: None,
                revision: None,
                source_url: None,
                source_version: None,
            });
        }
        let tmp = tempfile::Builder::new()
            .prefix("slipway-ctx-")
            .tempdir()
            .map_err(|e| Error::context(format!("cannot make a temporary directory: {e}"), e))?;
        let root = tmp.path().to_path_buf();
        if let Some(inline) = &src.inline {
            let file = req.spec.dockerfile.as_deref().unwrap_or("Dockerfile");
            context::check_relative(file, "dockerfile")?;
            let p = root.join(file);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, &inline.dockerfile)?;
            return Ok(Workspace {
                dir: root,
                _tmp: Some(tmp),
                revision: None,
                source_url: None,
                source_version: None,
            });
        }
        if let Some(git) = &src.git {
            let fetched = fetch::git(
                &git.url,
                git.revision.as_deref(),
                git.submodules,
                &root,
                &self.git_tls,
            )
            .await?;
            let dir = match &git.context_dir {
                Some(c) => context::resolve_context_dir(&root, c)?,
                None => root.clone(),
            };
            if !dir.is_dir() {
                return Err(Error::Context(
                    format!(
                        "contextDir '{}' does not exist in the repository",
                        git.context_dir.as_deref().unwrap_or("")
                    )
                    .into(),
                ));
            }
            return Ok(Workspace {
                dir,
                _tmp: Some(tmp),
                revision: fetched.commit,
                source_url: Some(git.url.clone()),
                source_version: None,
            });
        }
        if let Some(url) = &src.url {
            let version = fetch::url(&self.downloads, url, &root, self.url_limits).await?;
            return Ok(Workspace {
                dir: root,
                _tmp: Some(tmp),
                revision: None,
                source_url: Some(url.clone()),
                source_version: version,
            });
        }
        Err(Error::InvalidSpec("spec.source is empty".into()))
    }
}
