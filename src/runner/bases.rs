//! What the Dockerfile's base images resolve to in their registries, looked up while
//! the build runs (so it costs no time) and recorded in the outcome: the base-image
//! cascade compares these digests with what the registries serve later.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::RemoteHandle;
use tracing::debug;

use crate::api::BaseImage;
use crate::registry::{self, DockerConfig, ImageRef};

/// Longest a lookup may hold up a finished build: an image no registry serves (one
/// only the local daemon has, or no network) is simply left out.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The lookups of one build, running in the background; dropping it stops them.
pub(super) struct Lookup(RemoteHandle<Vec<BaseImage>>);

impl Lookup {
    /// Starts looking up `images` (as `directives::from_images` names them), each in
    /// its registry with the build's credentials for it.
    pub(super) fn start(
        http: crate::tls::Clients,
        images: Vec<String>,
        auth: Arc<DockerConfig>,
    ) -> Self {
        let work = async move {
            let lookups = images.into_iter().map(|image| {
                let (http, auth) = (http.clone(), auth.clone());
                async move {
                    let digest = digest_of(&http, &image, &auth).await?;
                    Some(BaseImage { image, digest })
                }
            });
            let found = futures::future::join_all(lookups).await;
            found.into_iter().flatten().collect()
        };
        let (work, handle) = work.remote_handle();
        tokio::spawn(work);
        Self(handle)
    }

    /// What was found, in the Dockerfile's order.
    pub(super) async fn finish(self) -> Vec<BaseImage> {
        self.0.await
    }
}

/// The digest `image` has in its registry now, or None if it cannot be told.
async fn digest_of(http: &crate::tls::Clients, image: &str, auth: &DockerConfig) -> Option<String> {
    let r = ImageRef::parse(image)?;
    // a failing helper only costs the base's digest here; the push reports it
    let creds = match auth.credentials_for(&r.registry).await {
        Ok(c) => c,
        Err(e) => {
            debug!(image, error = %e, "no credentials to look the base image up");
            return None;
        }
    };
    let found = tokio::time::timeout(
        LOOKUP_TIMEOUT,
        registry::image_digest(http, &r, creds.as_ref()),
    );
    match found.await {
        Ok(Ok(d)) => Some(d),
        Ok(Err(e)) => {
            debug!(image, error = %e, "base image not found in a registry");
            None
        }
        Err(_) => {
            debug!(image, "base image lookup timed out");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn images_no_registry_serves_are_left_out() {
        // a digest as the grammar has it: sha256 and 64 lowercase hex digits
        let digest = format!("sha256:{}", "0123".repeat(16));
        let image = format!("r.example/a@{digest}");
        let images = vec!["127.0.0.1:1/none:1".into(), image.clone()];
        let found = Lookup::start(reqwest::Client::new().into(), images, Arc::default())
            .finish()
            .await;
        let pinned = BaseImage { image, digest };
        assert_eq!(found, vec![pinned]);
    }
}
