//! The local backend: the build runner in this process against this machine's daemon.

use async_trait::async_trait;

use super::Backend;
use crate::Result;
use crate::runner::{
    BuildOutcome, BuildRequest, Builder, BuildkitdArgs, Cancel, DockerTls, Events, Runner,
};

pub struct LocalBackend {
    runner: Runner,
}

impl LocalBackend {
    /// Connects to `docker_host`, or `DOCKER_HOST`, or the local socket, building
    /// (over TLS as `tls` says), with the builder `builder` picks (a standalone
    /// buildkitd needs no daemon).
    pub async fn connect(
        docker_host: Option<&str>,
        tls: &DockerTls,
        builder: Builder,
        buildkitd: &BuildkitdArgs,
    ) -> Result<Self> {
        Ok(Self {
            runner: Runner::connect_tls(docker_host, tls, builder, buildkitd).await?,
        })
    }

    /// Trusts and client certificates for registries and `url` sources.
    pub fn with_tls(self, tls: &crate::tls::Tls) -> Result<Self> {
        Ok(Self {
            runner: self.runner.with_tls(tls)?,
        })
    }

    /// Caps and stall timeout for `url` sources.
    pub fn with_url_limits(self, limits: crate::runner::fetch::UrlLimits) -> Self {
        Self {
            runner: self.runner.with_url_limits(limits),
        }
    }
}

#[async_trait]
impl Backend for LocalBackend {
    async fn run(&self, req: BuildRequest, events: Events, cancel: Cancel) -> Result<BuildOutcome> {
        self.runner.run(req, events, cancel).await
    }

    fn name(&self) -> &'static str {
        "local"
    }
}
