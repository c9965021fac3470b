//! How many builds run at once, how failures are retried and what rebuilds an
//! image (`watch` and `controller`), as the reconciler's [`Settings`].

use std::path::PathBuf;
use std::time::Duration;

use super::parse_duration;
use crate::queue::QueueConfig;
use crate::reconciler::Settings;

/// How many builds run at once and how infrastructure failures are retried
/// (`watch` and `controller`).
#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    /// Builds running at once (on either backend).
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Tries per build when the registry or daemon is unreachable.
    #[arg(long, default_value_t = 4)]
    pub max_attempts: u32,
    /// First retry delay, e.g. 5s, 500ms; it doubles each time, jittered, at most 5 min.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub retry_backoff: Duration,
    /// Automatic builds (context, git, url or base changes) running at once, within
    /// --concurrency; builds people ask for always go first.
    #[arg(long, default_value_t = 1)]
    pub max_auto_builds: usize,
    #[command(flatten)]
    pub triggers: TriggerArgs,
    #[command(flatten)]
    pub logs: crate::logs::LogArgs,
}

/// What rebuilds an image without a spec change (`watch` and `controller`).
#[derive(Debug, Clone, clap::Args)]
pub struct TriggerArgs {
    /// How often `git` sources' branches are looked up (0 = never); a resource's
    /// spec.triggers.gitPoll overrides it.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub git_poll: Duration,
    /// How often base images that no resource builds are looked up (0 = never).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub base_poll: Duration,
    /// How often `url` sources are checked for a new ETag or Last-Modified (0 = never).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub url_poll: Duration,
    /// Address of the push-webhook endpoint (GitHub, GitLab, generic JSON); off when unset.
    #[arg(long, requires = "webhook_secret_file")]
    pub webhook_listen: Option<std::net::SocketAddr>,
    /// File holding the webhook secret (GitHub's HMAC key, GitLab's token).
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
}

impl TriggerArgs {
    pub fn settings(&self) -> crate::triggers::TriggerSettings {
        crate::triggers::TriggerSettings {
            enabled: true,
            poll: crate::triggers::PollSettings {
                git: self.git_poll,
                base: self.base_poll,
                url: self.url_poll,
            },
            webhook: self
                .webhook_listen
                .zip(self.webhook_secret_file.clone())
                .map(|(listen, secret_file)| crate::triggers::WebhookSettings {
                    listen,
                    secret_file,
                }),
            // read with the backend's flags (`watch`, `controller`)
            tls: Default::default(),
        }
    }
}

impl QueueArgs {
    /// The settings, every build's log kept under `log_root`.
    pub fn settings(&self, once: bool, log_root: PathBuf) -> Settings {
        Settings {
            queue: QueueConfig {
                concurrency: self.concurrency,
                max_attempts: self.max_attempts,
                backoff: self.retry_backoff,
                max_auto: self.max_auto_builds,
                logs: Some(self.logs.store(log_root)),
                // the process's one: the queue, the reconciler, Mesos and /metrics share it
                metrics: crate::metrics::Metrics::new(),
            },
            once,
            triggers: self.triggers.settings(),
        }
    }
}

#[cfg(test)]
mod tests;
