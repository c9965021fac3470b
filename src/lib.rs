//! slipway: turns `DockerBuild` resources into pushed container images.
//!
//! One module per box of the design picture: resources come from a [`sources`]
//! implementation, the [`reconciler`] decides what to do, the [`queue`] runs builds
//! on a [`backends`] implementation through the shared [`runner`], and the
//! [`registry`] module talks to the image registry.

pub mod api;
pub mod backends;
pub mod backoff;
pub mod commands;
mod error;
pub mod executor;
pub use error::{Cause, Detail, find_cause};
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

/// Everything that can go wrong, grouped so a status message and a metric label
/// can be derived from it. Each variant is one [`Kind`]; what a kind means for
/// retries and labels is in one table, [`KINDS`]. The infrastructure variants
/// carry a [`Detail`]: the message users see and the typed error behind it, which
/// [`std::error::Error::source`] returns (a message-only error has no source).
#[derive(Debug)]
pub enum Error {
    /// The resource itself is wrong: the user must change it. Never retried.
    InvalidSpec(String),

    /// The build context is unusable (missing, escapes its root, cannot be fetched).
    Context(Detail),

    /// The Dockerfile failed to build; the message is the failing step's error.
    BuildFailed(String),

    /// The registry could not be reached or refused the push. Retried with backoff.
    Registry(Detail),

    /// The Docker daemon could not be reached or misbehaved. Retried with backoff.
    Docker(Detail),

    /// A standalone buildkitd could not be reached or misbehaved. Retried with backoff.
    Buildkit(Detail),

    /// The build was cancelled (file deleted, spec changed).
    Cancelled(String),

    /// The build took longer than `spec.timeoutSeconds` (see [`Error::timed_out`]).
    Timeout(String),

    /// A Mesos task was lost with its agent, dropped or gone: not the build's fault.
    /// Retried on another offer.
    TaskLost(String),

    /// The Mesos master could not be reached or refused a call. Retried with backoff.
    Mesos(String),

    /// The Kubernetes API could not be reached or refused a call. Retried with
    /// backoff unless the API server called the request itself malformed.
    Kube {
        message: String,
        /// The API server's HTTP status, when it answered.
        status: Option<u16>,
        source: Option<Box<kube::Error>>,
    },

    /// A resource file could not be read or written.
    Source {
        path: String,
        message: String,
    },

    Io(std::io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidSpec(m) | Error::Timeout(m) => f.write_str(m),
            Error::Context(d) => write!(f, "build context: {d}"),
            Error::BuildFailed(m) => write!(f, "build failed: {m}"),
            Error::Registry(d) => write!(f, "registry: {d}"),
            Error::Docker(d) => write!(f, "docker daemon: {d}"),
            Error::Buildkit(d) => write!(f, "buildkitd: {d}"),
            Error::Cancelled(m) => write!(f, "cancelled: {m}"),
            Error::TaskLost(m) => write!(f, "task lost: {m}"),
            Error::Mesos(m) => write!(f, "mesos: {m}"),
            Error::Kube { message, .. } => write!(f, "kubernetes: {message}"),
            Error::Source { path, message } => f.write_str(&with_path(path, message)),
            Error::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

/// By hand rather than derived: thiserror would return the [`Detail`] itself as
/// the source, so an error with only a message would claim a cause, and one with a
/// cause would show its message twice in a chain.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Context(d) | Error::Registry(d) | Error::Docker(d) | Error::Buildkit(d) => {
                d.cause().map(|e| e as _)
            }
            Error::Kube { source, .. } => source.as_deref().map(|e| e as _),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

fn with_path(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

/// The category of an [`Error`]: what drives retries, the status condition's
/// reason, the metric label, and the label a Mesos executor reports its failure by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidSpec,
    Context,
    BuildFailed,
    Registry,
    Docker,
    Buildkit,
    Cancelled,
    Timeout,
    TaskLost,
    Mesos,
    Kube,
    Source,
    Io,
}

/// The one table: each kind's label and whether it is retried. Infrastructure
/// failures are retried; a user's mistake fails once.
pub const KINDS: [(Kind, &str, bool); 13] = [
    (Kind::InvalidSpec, "InvalidSpec", false),
    (Kind::Context, "ContextError", false),
    (Kind::BuildFailed, "BuildFailed", false),
    (Kind::Registry, "RegistryError", true),
    (Kind::Docker, "DockerError", true),
    (Kind::Buildkit, "BuildkitError", true),
    (Kind::Cancelled, "Cancelled", false),
    (Kind::Timeout, "Timeout", false),
    (Kind::TaskLost, "TaskLost", true),
    (Kind::Mesos, "MesosError", true),
    (Kind::Kube, "KubeError", true),
    (Kind::Source, "SourceError", false),
    (Kind::Io, "IoError", false),
];

impl Kind {
    fn row(self) -> &'static (Kind, &'static str, bool) {
        KINDS
            .iter()
            .find(|r| r.0 == self)
            .expect("every kind has a row in KINDS")
    }

    /// Short label for metrics and the status condition's `reason`.
    pub fn label(self) -> &'static str {
        self.row().1
    }

    pub fn is_retryable(self) -> bool {
        self.row().2
    }

    /// The kind a label names; an unknown label (a newer executor's) is a build
    /// failure, never retried by mistake.
    pub fn from_label(label: &str) -> Kind {
        KINDS
            .iter()
            .find(|r| r.1 == label)
            .map_or(Kind::BuildFailed, |r| r.0)
    }
}

impl Error {
    /// An error of `kind` with `message`, as [`Error::detail`] gives it back.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        let m = message.into();
        match kind {
            Kind::InvalidSpec => Error::InvalidSpec(m),
            Kind::Context => Error::Context(m.into()),
            Kind::BuildFailed => Error::BuildFailed(m),
            Kind::Registry => Error::Registry(m.into()),
            Kind::Docker => Error::Docker(m.into()),
            Kind::Buildkit => Error::Buildkit(m.into()),
            Kind::Cancelled => Error::Cancelled(m),
            Kind::Timeout => Error::Timeout(m),
            Kind::TaskLost => Error::TaskLost(m),
            Kind::Mesos => Error::Mesos(m),
            Kind::Kube => Error::Kube {
                message: m,
                status: None,
                source: None,
            },
            Kind::Source => Error::Source {
                path: String::new(),
                message: m,
            },
            Kind::Io => Error::Io(std::io::Error::other(m)),
        }
    }

    /// A build that ran past its `spec.timeoutSeconds`.
    pub fn timed_out(seconds: u64) -> Self {
        Error::Timeout(format!("timed out after {seconds} s"))
    }

    /// A registry failure with the typed error behind it (see [`Detail`]).
    pub fn registry(message: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Error::Registry(Detail::new(message, cause))
    }

    /// A Docker daemon failure with the typed error behind it.
    pub fn docker(message: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Error::Docker(Detail::new(message, cause))
    }

    /// A buildkitd failure with the typed error behind it.
    pub fn buildkit(message: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Error::Buildkit(Detail::new(message, cause))
    }

    /// An unusable build context with the typed error behind it.
    pub fn context(message: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Error::Context(Detail::new(message, cause))
    }

    /// A failed Kubernetes call, keeping the API server's status and the cause.
    pub fn kube(context: impl std::fmt::Display, e: kube::Error) -> Self {
        let status = match &e {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        };
        Error::Kube {
            message: format!("{context}: {e}"),
            status,
            source: Some(Box::new(e)),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Error::InvalidSpec(_) => Kind::InvalidSpec,
            Error::Context(_) => Kind::Context,
            Error::BuildFailed(_) => Kind::BuildFailed,
            Error::Registry(_) => Kind::Registry,
            Error::Docker(_) => Kind::Docker,
            Error::Buildkit(_) => Kind::Buildkit,
            Error::Cancelled(_) => Kind::Cancelled,
            Error::Timeout(_) => Kind::Timeout,
            Error::TaskLost(_) => Kind::TaskLost,
            Error::Mesos(_) => Kind::Mesos,
            Error::Kube { .. } => Kind::Kube,
            Error::Source { .. } => Kind::Source,
            Error::Io(_) => Kind::Io,
        }
    }

    /// Short label for metrics and the status condition's `reason`.
    pub fn metric_label(&self) -> &'static str {
        self.kind().label()
    }

    /// Infrastructure failures are retried; a user's mistake fails once, and so
    /// does a request the API server called malformed (400, 422): sending it
    /// again cannot help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Kube {
                status: Some(400 | 422),
                ..
            } => false,
            e => e.kind().is_retryable(),
        }
    }

    /// The error a remote build reported by its label and message (the Mesos
    /// executor's FAILED update), so retry rules apply as if it ran here.
    pub fn from_label(label: &str, message: String) -> Self {
        Error::new(Kind::from_label(label), message)
    }

    /// The message without the variant's prefix, for sending to another process.
    pub fn detail(&self) -> String {
        match self {
            Error::Context(d) | Error::Registry(d) | Error::Docker(d) | Error::Buildkit(d) => {
                d.message().to_string()
            }
            Error::InvalidSpec(m)
            | Error::BuildFailed(m)
            | Error::Cancelled(m)
            | Error::Timeout(m)
            | Error::TaskLost(m)
            | Error::Mesos(m)
            | Error::Kube { message: m, .. } => m.clone(),
            Error::Io(e) => e.to_string(),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod error_tests {
    use super::*;

    /// Every kind survives the trip through another process (label and detail,
    /// as a Mesos executor sends them) with its label, retry rule and message.
    #[test]
    fn every_kind_round_trips_through_its_label() {
        for (kind, label, retry) in KINDS {
            let e = Error::new(kind, "the reason");
            assert_eq!(e.kind(), kind);
            assert_eq!(e.metric_label(), label);
            assert_eq!(e.is_retryable(), retry, "{label}");
            let back = Error::from_label(e.metric_label(), e.detail());
            assert_eq!(back.kind(), kind, "{label}");
            assert_eq!(back.to_string(), e.to_string(), "{label}");
        }
        let labels: std::collections::HashSet<_> = KINDS.iter().map(|r| r.1).collect();
        assert_eq!(labels.len(), KINDS.len(), "labels are unique");
    }

    /// The text users read, kind by kind (the prefixes thiserror's attributes gave).
    #[test]
    fn every_kind_shows_its_prefix() {
        let shown: Vec<String> = KINDS
            .iter()
            .map(|r| Error::new(r.0, "m").to_string())
            .collect();
        assert_eq!(
            shown,
            [
                "m",
                "build context: m",
                "build failed: m",
                "registry: m",
                "docker daemon: m",
                "buildkitd: m",
                "cancelled: m",
                "m",
                "task lost: m",
                "mesos: m",
                "kubernetes: m",
                "m",
                "I/O: m"
            ]
        );
    }

    #[test]
    fn a_timeout_reported_from_afar_is_still_a_timeout() {
        let e = Error::timed_out(600);
        assert_eq!(e.to_string(), "timed out after 600 s");
        let back = Error::from_label("Timeout", e.detail());
        assert_eq!(back.metric_label(), "Timeout");
        assert!(!back.is_retryable());
        assert_eq!(back.to_string(), "timed out after 600 s");
    }

    #[test]
    fn an_unknown_label_is_a_build_failure() {
        let e = Error::from_label("SomethingNew", "x".into());
        assert_eq!(e.kind(), Kind::BuildFailed);
        assert!(!e.is_retryable());
    }

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("the server said no", "Invalid")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn a_kube_error_keeps_the_http_status_and_its_cause() {
        use std::error::Error as _;
        let e = Error::kube("writing the status of team/a", api_error(422));
        assert!(matches!(
            e,
            Error::Kube {
                status: Some(422),
                ..
            }
        ));
        assert!(e.to_string().contains("the server said no"), "{e}");
        assert!(e.source().is_some());
        assert!(!e.is_retryable(), "a malformed request is not sent again");
        assert!(Error::kube("reading", api_error(503)).is_retryable());
        assert!(Error::kube("reading", api_error(403)).is_retryable());
    }
}
