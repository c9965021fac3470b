//! slipway: turns `DockerBuild` resources into pushed container images.
//!
//! One module per box of the design picture: resources come from a [`sources`]
//! implementation, the [`reconciler`] decides what to do, the [`queue`] runs builds
//! on a [`backends`] implementation through the shared [`runner`], and the
//! [`registry`] module talks to the image registry.

pub mod api;
pub mod backends;
pub mod commands;
pub mod executor;
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod health;
pub mod logs;
pub mod mesos;
pub mod metrics;
pub mod queue;
pub mod reconciler;
pub mod registry;
pub mod runner;
pub mod sources;
pub mod telemetry;
pub mod tls;
pub mod triggers;
pub mod yaml;

use thiserror::Error;

/// Everything that can go wrong, grouped so a status message and a metric label
/// can be derived from it.
#[derive(Error, Debug)]
pub enum Error {
    /// The resource itself is wrong: the user must change it. Never retried.
    #[error("{0}")]
    InvalidSpec(String),

    /// The build context is unusable (missing, escapes its root, cannot be fetched).
    #[error("build context: {0}")]
    Context(String),

    /// The Dockerfile failed to build; the message is the failing step's error.
    #[error("build failed: {0}")]
    BuildFailed(String),

    /// The registry could not be reached or refused the push. Retried with backoff.
    #[error("registry: {0}")]
    Registry(String),

    /// The Docker daemon could not be reached or misbehaved. Retried with backoff.
    #[error("docker daemon: {0}")]
    Docker(String),

    /// A standalone buildkitd could not be reached or misbehaved. Retried with backoff.
    #[error("buildkitd: {0}")]
    Buildkit(String),

    /// The build was cancelled (file deleted, spec changed).
    #[error("cancelled: {0}")]
    Cancelled(String),

    /// The build took longer than `spec.timeoutSeconds`.
    #[error("timed out after {0} s")]
    Timeout(u64),

    /// A Mesos task was lost with its agent, dropped or gone: not the build's fault.
    /// Retried on another offer.
    #[error("task lost: {0}")]
    TaskLost(String),

    /// The Mesos master could not be reached or refused a call. Retried with backoff.
    #[error("mesos: {0}")]
    Mesos(String),

    /// The Kubernetes API could not be reached or refused a call. Retried with backoff.
    #[error("kubernetes: {0}")]
    Kube(String),

    /// A resource file could not be read or written.
    #[error("{path}: {message}")]
    Source { path: String, message: String },

    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Short label for metrics and the status condition's `reason`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Context(_) => "ContextError",
            Error::BuildFailed(_) => "BuildFailed",
            Error::Registry(_) => "RegistryError",
            Error::Docker(_) => "DockerError",
            Error::Buildkit(_) => "BuildkitError",
            Error::Cancelled(_) => "Cancelled",
            Error::Timeout(_) => "Timeout",
            Error::TaskLost(_) => "TaskLost",
            Error::Mesos(_) => "MesosError",
            Error::Kube(_) => "KubeError",
            Error::Source { .. } => "SourceError",
            Error::Io(_) => "IoError",
        }
    }

    /// Infrastructure failures are retried; a user's mistake fails once.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Registry(_)
                | Error::Docker(_)
                | Error::Buildkit(_)
                | Error::TaskLost(_)
                | Error::Mesos(_)
                | Error::Kube(_)
        )
    }

    /// The error a remote build reported by its label and message (the Mesos
    /// executor's FAILED update), so retry rules apply as if it ran here.
    pub fn from_label(label: &str, message: String) -> Self {
        match label {
            "InvalidSpec" => Error::InvalidSpec(message),
            "ContextError" => Error::Context(message),
            "RegistryError" => Error::Registry(message),
            "DockerError" => Error::Docker(message),
            "BuildkitError" => Error::Buildkit(message),
            "Cancelled" => Error::Cancelled(message),
            "TaskLost" => Error::TaskLost(message),
            "MesosError" => Error::Mesos(message),
            "KubeError" => Error::Kube(message),
            _ => Error::BuildFailed(message),
        }
    }

    /// The message without the variant's prefix, for sending to another process.
    pub fn detail(&self) -> String {
        match self {
            Error::InvalidSpec(m)
            | Error::Context(m)
            | Error::BuildFailed(m)
            | Error::Registry(m)
            | Error::Docker(m)
            | Error::Buildkit(m)
            | Error::Cancelled(m)
            | Error::TaskLost(m)
            | Error::Mesos(m)
            | Error::Kube(m) => m.clone(),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
