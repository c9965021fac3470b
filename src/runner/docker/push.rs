//! Pushing a built image through the daemon, and asking a registry whether it wants
//! credentials.

use bollard::Docker;
use bollard::query_parameters::PushImageOptions;
use futures::StreamExt;

use super::Runner;
use crate::registry::{Credentials, error_chain};
use crate::runner::errors::{classify_docker_error, push_error};
use crate::runner::{BuildEvent, Events};
use crate::tls::RegistryHttp;
use crate::{Error, Result};

impl Runner {
    /// Whether the registry asks for credentials (401). Any HTTP answer means it is
    /// there; no answer is a retryable error.
    pub(super) async fn ping_registry(&self, registry: &str) -> Result<bool> {
        self.http
            .client(registry)
            .get(format!("{}/v2/", self.http.base_url(registry)))
            .send()
            .await
            .map(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED)
            .map_err(|e| {
                Error::registry(format!("cannot reach {registry}: {}", error_chain(&e)), e)
            })
    }

    pub(super) async fn push(
        &self,
        docker: &Docker,
        name: &str,
        tag: &str,
        creds: Option<&Credentials>,
        events: &Events,
    ) -> Result<String> {
        let reference = format!("{name}:{tag}");
        let mut stream = docker.push_image(
            name,
            Some(PushImageOptions {
                tag: Some(tag.to_string()),
                platform: None,
            }),
            creds.map(Credentials::to_docker),
        );
        let mut digest = None;
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(i) => i,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Err(push_error(&reference, &error));
                }
                Err(e) => return Err(classify_docker_error(e)),
            };
            if let Some(err) = info.error_detail.and_then(|e| e.message) {
                return Err(push_error(&reference, &err));
            }
            if let Some(status) = info.status {
                // "latest: digest: sha256:... size: 528" ends a push
                if let Some(d) = status
                    .split_once("digest: ")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                {
                    digest = Some(d.to_string());
                }
                let (current, total) = info
                    .progress_detail
                    .map(|p| (p.current.unwrap_or(0), p.total.unwrap_or(0)))
                    .unwrap_or((0, 0));
                let _ = events.send(BuildEvent::PushProgress {
                    tag: reference.clone(),
                    status,
                    current: current.max(0) as u64,
                    total: total.max(0) as u64,
                });
            }
        }
        let digest = digest.ok_or_else(|| {
            Error::Registry(format!("pushing {reference}: the daemon reported no digest").into())
        })?;
        let _ = events.send(BuildEvent::Pushed {
            tag: reference,
            digest: digest.clone(),
        });
        Ok(digest)
    }
}
