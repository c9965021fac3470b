//! The build runner, shared by every backend: fetch the context, read and strip the
//! Dockerfile's directives, build, tag, push, and read the digest back.

mod bases;
mod buildkitd;
pub mod context;
pub mod directives;
mod docker;
pub mod dockerignore;
pub mod engine;
mod errors;
pub mod fetch;
pub(crate) mod filesync;
mod progress;
mod resolve;
mod session;
pub mod stages;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::DockerBuildSpec;
use crate::registry::DockerConfig;

pub(crate) use docker::connect_docker;
pub use docker::{DockerTls, Runner};

/// File bytes this process has sent BuildKit by file sync so far (the contexts' data
/// BuildKit asked for): tests tell an incremental transfer from a full one with it.
#[doc(hidden)]
pub fn context_bytes_sent() -> u64 {
    filesync::bytes_sent()
}
pub use engine::{Builder, BuildkitdArgs, Engine};
pub use resolve::{Resolved, local_dockerfile, resolve};

/// One build to run.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    /// `namespace/name`, for logs and messages.
    pub key: String,
    pub spec: DockerBuildSpec,
    /// Directory `path` sources and config paths are relative to (watch folder, one shot).
    pub base_dir: Option<PathBuf>,
    /// Registry credentials, looked up by registry host once it is known.
    pub auth: Arc<DockerConfig>,
    /// The Mesos task an earlier run of slipway launched for this same spec, to
    /// re-attach to instead of building twice.
    pub previous: Option<crate::api::MesosTask>,
    /// Values of `spec.secrets`, by id, read by the source (a Kubernetes Secret or a
    /// file). Never logged: `Debug` prints the ids only.
    pub secrets: BuildSecrets,
}

/// Secret values for a build, by id. Its `Debug` shows ids, never values.
#[derive(Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BuildSecrets(pub std::collections::BTreeMap<String, Vec<u8>>);

impl BuildSecrets {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for BuildSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// What a successful build produced.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildOutcome {
    /// `sha256:...` of the pushed manifest, as the registry serves it.
    pub digest: String,
    /// `registry/repository@digest`.
    pub image: String,
    /// Every `registry/repository:tag` pushed.
    pub pushed_tags: Vec<String>,
    /// Git commit built, for git sources.
    pub revision: Option<String>,
    /// Each platform's manifest when `digest` is a multi-platform index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<crate::api::PlatformImage>,
    /// Attestation manifests pushed with the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<crate::api::Attestation>,
    /// The steps BuildKit ran or took from its cache.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<crate::api::StageStep>,
    /// What the Dockerfile's `FROM` images resolved to in their registries (those
    /// that could be looked up).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_images: Vec<crate::api::BaseImage>,
    /// The `url` source's ETag (else Last-Modified) as fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
}

/// What a running build reports while it runs. Serializable: a Mesos executor sends
/// these to the framework in its status updates.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BuildEvent {
    /// The daemon started building (context sent).
    Building { context_bytes: u64, files: u64 },
    /// A Dockerfile step began: `Step 2/5 : RUN make`.
    Step(String),
    /// A line of the daemon's output.
    Log(String),
    /// Pushing started.
    Pushing { tags: Vec<String> },
    /// Progress of one tag's push: a layer's status and bytes.
    PushProgress {
        tag: String,
        status: String,
        current: u64,
        total: u64,
    },
    /// One tag is in the registry.
    Pushed { tag: String, digest: String },
    /// A remote backend has not placed the build yet, and says why.
    Waiting(String),
    /// A remote backend placed the build (a Mesos task on an agent).
    Placed {
        host: String,
        task: crate::api::MesosTask,
    },
    /// The build began on a remote host; a Mesos executor also says where it keeps
    /// the build's log (absent from older executors).
    Running {
        host: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sandbox: Option<crate::mesos::task::SandboxLog>,
    },
    /// The steps BuildKit ran or took from its cache, sent when the build step ends,
    /// whether it succeeded or failed: a failure's status lists them too.
    Stages(Vec<crate::api::StageStep>),
    /// Lines of the build's log as the remote runner kept it (timestamped, masked),
    /// copied back by the framework; never sent over the wire.
    Copied(Vec<String>),
}

pub type Events = mpsc::UnboundedSender<BuildEvent>;

/// Cancels a running build when triggered (file deleted, spec changed).
pub type Cancel = CancellationToken;
