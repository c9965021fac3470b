//! Triggers: sources of "build again" next to the resource sources. Each watches one
//! kind of input (a `path` context's files, a git remote's branch, a `url`, an
//! external base image) and reports what it sees now as an [`Observation`]; the
//! reconciler compares that with what the status recorded and decides, as ever.
//!
//! The reconciler says what to watch through [`Targets`] (a `tokio::sync::watch`
//! value it edits in place); each trigger task reads the latest targets when it looks.

pub mod bases;
pub mod context;
pub mod poll;
pub mod url;

pub use bases::spawn_base_poller;
pub use url::spawn_url_poller;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::Result;
use crate::registry::DockerConfig;

pub mod git;
pub mod webhook;

pub use git::{ls_remote, spawn_poller};
pub use webhook::WebhookSecret;

/// What a trigger saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The digest of resource `key`'s `path` context, as Docker would see it
    /// (after `.dockerignore`).
    Context { key: String, digest: String },
    /// The commit that `revision` (a branch or tag; `None` = the remote's default
    /// branch) of the repository at `url` points to now. `webhook`: told by a push
    /// hook rather than found by polling.
    Git {
        url: String,
        revision: Option<String>,
        commit: String,
        webhook: bool,
    },
    /// The `url` source's current version (its ETag, else its Last-Modified).
    Url { url: String, version: String },
    /// An image that no resource builds (`FROM debian:12`) has this digest now.
    Base { image: String, digest: String },
}

/// A git remote and the branch or tag a resource builds from it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GitTarget {
    pub url: String,
    pub revision: Option<String>,
}

/// A `path` context: its root directory and the Dockerfile inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextTarget {
    pub root: PathBuf,
    pub dockerfile: String,
}

/// Everything the triggers should watch now. The reconciler keeps it current.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    /// `path` contexts, by resource key.
    pub contexts: BTreeMap<String, ContextTarget>,
    /// Git remotes to poll, each with the shortest interval any resource asks for.
    pub git: BTreeMap<GitTarget, Duration>,
    /// `url` sources to poll.
    pub urls: BTreeSet<String>,
    /// External base images (normalised references) to poll, with the credentials of
    /// one resource that uses each (a registry needs none for public images).
    pub bases: BTreeMap<String, std::sync::Arc<DockerConfig>>,
}

/// How often the pollers look, from the command line.
#[derive(Clone, Debug)]
pub struct PollSettings {
    /// `--git-poll`: default interval for git sources; zero turns polling off.
    pub git: Duration,
    /// `--base-poll`: interval for external base images; zero turns it off.
    pub base: Duration,
    /// `--url-poll`: interval for `url` sources; zero turns it off.
    pub url: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            git: Duration::from_secs(60),
            base: Duration::from_secs(600),
            url: Duration::from_secs(300),
        }
    }
}

/// The two ends the reconciler holds: targets out, observations in.
pub struct Channels {
    pub targets: watch::Sender<Targets>,
    pub observations: mpsc::Receiver<Observation>,
    /// For triggers started later (a webhook server, say).
    pub observer: mpsc::Sender<Observation>,
}

impl Channels {
    pub fn new() -> Self {
        let (targets, _) = watch::channel(Targets::default());
        let (observer, observations) = mpsc::channel(1024);
        Self {
            targets,
            observations,
            observer,
        }
    }
}

impl Default for Channels {
    fn default() -> Self {
        Self::new()
    }
}

/// What rebuilds an image without a spec change (`watch` and `controller`).
#[derive(Clone, Debug, Default)]
pub struct TriggerSettings {
    /// Off for one-shot runs, which build what they read once.
    pub enabled: bool,
    pub poll: PollSettings,
    /// `--webhook-listen` with `--webhook-secret-file`.
    pub webhook: Option<WebhookSettings>,
    /// `--ca-file` and `--certs-dir`, for registry and url looks.
    pub tls: crate::tls::Tls,
}

#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub listen: SocketAddr,
    pub secret_file: PathBuf,
}

/// The trigger tasks that run; aborted when the controller stops.
#[derive(Default)]
pub struct Started {
    pub tasks: Vec<JoinHandle<()>>,
    /// `path` contexts are watched: their digests will be observed.
    pub contexts: bool,
}

/// Starts the trigger tasks.
pub async fn start(
    settings: &TriggerSettings,
    targets: &watch::Sender<Targets>,
    out: mpsc::Sender<Observation>,
) -> Result<Started> {
    let mut started = Started::default();
    if !settings.enabled {
        return Ok(started);
    }
    // first what may fail (binding the webhook's address), so nothing is left running
    started
        .tasks
        .extend(git::start(settings, targets, out.clone()).await?);
    // registry and url looks read headers only: a short total timeout suits them
    let client = settings.tls.clients(|b| {
        b.connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
    })?;
    let poll = &settings.poll;
    let urls = client.default_client().clone();
    started.tasks.extend([
        spawn_base_poller(targets.subscribe(), poll.base, client, out.clone()),
        spawn_url_poller(targets.subscribe(), poll.url, urls, out.clone()),
    ]);
    // `path` contexts: digested at once and again after their files change.
    started
        .tasks
        .push(context::spawn(targets.subscribe(), out.clone()));
    started.contexts = true;
    Ok(started)
}
