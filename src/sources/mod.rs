//! Sources of `DockerBuild` resources. Each turns its own world (a folder of YAML
//! files; later the Kubernetes API) into the same [`Resource`] values and takes
//! status back; the reconciler never knows which one it talks to.

pub mod folder;
pub mod kube;
#[doc(hidden)]
pub mod memory;

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::Result;
use crate::api::{DockerBuild, DockerBuildStatus};
use crate::registry::DockerConfig;

/// A resource as a source delivers it.
#[derive(Clone, Debug)]
pub struct Resource {
    pub build: DockerBuild,
    /// Where it came from, for messages (`builds/app.yaml`).
    pub origin: String,
    /// Directory that `path` sources and config paths are relative to.
    pub base_dir: Option<PathBuf>,
    /// What the source read but nothing uses (`unknown field "spec.timeoutSecs"`):
    /// shown in the status, the build goes on.
    pub warnings: Vec<String>,
}

impl Resource {
    pub fn key(&self) -> String {
        self.build.key()
    }

    pub fn namespace(&self) -> String {
        self.build
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into())
    }
}

/// What a source reports.
#[derive(Clone, Debug)]
pub enum SourceEvent {
    /// A resource exists in this form (new, changed, or seen again).
    Applied(Box<Resource>),
    /// A resource is gone; `origin` guards against a resource that merely moved.
    Deleted { key: String, origin: String },
    /// Something that claims to be a DockerBuild but cannot be read.
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
    /// Every resource that existed at start has been reported.
    Synced,
}

#[async_trait]
pub trait Source: Send + Sync + 'static {
    /// Reports every resource, then `Synced`, then changes until the channel closes.
    async fn run(&self, events: mpsc::Sender<SourceEvent>) -> Result<()>;

    /// Writes `status` into the resource named `key` (of `origin`).
    async fn write_status(&self, key: &str, origin: &str, status: &DockerBuildStatus)
    -> Result<()>;

    /// Registry credentials for this resource.
    async fn auth(&self, res: &Resource) -> Result<DockerConfig>;

    /// The values of `spec.secrets`, by id (a Kubernetes Secret's key, or a file).
    async fn secrets(&self, res: &Resource) -> Result<crate::runner::BuildSecrets>;

    /// Something a person watching the resource should hear about (a Kubernetes Event).
    async fn notify(&self, _key: &str, _origin: &str, _notice: &Notice) {}

    /// The build of a deleted resource has stopped: whatever held the resource for it
    /// (a Kubernetes finalizer) may let go.
    async fn released(&self, _key: &str, _origin: &str) -> Result<()> {
        Ok(())
    }
}

/// A short account of what happened to a resource, for people (Kubernetes Events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub warning: bool,
    /// CamelCase, as `kubectl describe` shows it: Queued, Started, Pushed, Failed…
    pub reason: &'static str,
    pub message: String,
}
