//! The layers an image is made of, as its registry serves it: the diff IDs of its
//! config (what a Docker daemon lists as `RootFS.Layers` once it holds the image),
//! for placing a build where its base layers already are.

use std::time::Duration;

use serde::Deserialize;
use tracing::debug;

use super::{Credentials, DockerConfig, ImageRef, authorized, manifest};
use crate::tls::RegistryHttp;
use crate::{Error, Result};

/// Longest the lookups of one build may take: placement is an optimisation, and a
/// base no registry serves (or no network) just leaves the build unplaced by layers.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    manifests: Vec<Entry>,
    config: Option<Descriptor>,
}

#[derive(Deserialize)]
struct Entry {
    digest: String,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

#[derive(Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// The diff IDs of `image` (for an index: of its linux manifest for this machine's
/// architecture, else its first), bottom layer first.
pub async fn diff_ids(
    http: &impl RegistryHttp,
    image: &ImageRef,
    creds: Option<&Credentials>,
) -> Result<Vec<String>> {
    let (host, repo) = (image.api_host(), image.repository.as_str());
    let bad = |what: &str, e: serde_json::Error| {
        Error::registry(format!("{host}/{repo}: unreadable {what}: {e}"), e)
    };
    let body = manifest(http, host, repo, &image.reference, creds).await?;
    let mut m: Manifest = serde_json::from_slice(&body).map_err(|e| bad("manifest", e))?;
    if !m.manifests.is_empty() {
        let digest = pick(&m.manifests).to_string();
        let body = manifest(http, host, repo, &digest, creds).await?;
        m = serde_json::from_slice(&body).map_err(|e| bad("manifest", e))?;
    }
    let config = m.config.ok_or_else(|| {
        Error::Registry(format!("{host}/{repo}: manifest without a config").into())
    })?;
    let client = http.client(host);
    let url = format!("{}/v2/{repo}/blobs/{}", http.base_url(host), config.digest);
    let (resp, _) = authorized(client, client.get(&url), creds).await?;
    if !resp.status().is_success() {
        return Err(Error::Registry(
            format!("{host}/{repo}: config blob answered {}", resp.status()).into(),
        ));
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| Error::registry(format!("{host}/{repo}: reading the config: {e}"), e))?;
    let c: Config = serde_json::from_slice(&body).map_err(|e| bad("image config", e))?;
    Ok(c.rootfs.diff_ids)
}

/// The index entry an agent like this machine would pull.
fn pick(entries: &[Entry]) -> &str {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .unwrap_or(&entries[0])
        .digest
        .as_str()
}

/// Every layer of the `images` (as `directives::from_images` names them; `scratch`
/// has none), without duplicates; those that cannot be looked up in time are left
/// out.
pub async fn base_layers(
    http: &impl RegistryHttp,
    images: &[String],
    auth: &DockerConfig,
) -> Vec<String> {
    let lookups = images.iter().map(|image| async move {
        let r = ImageRef::parse(image)?;
        let creds = auth.credentials_for(&r.registry).await.ok()?;
        match diff_ids(http, &r, creds.as_ref()).await {
            Ok(ids) => Some(ids),
            Err(e) => {
                debug!(image, error = %e, "base layers not looked up; placing by fit");
                None
            }
        }
    });
    let all = tokio::time::timeout(LOOKUP_TIMEOUT, futures::future::join_all(lookups))
        .await
        .unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    all.into_iter()
        .flatten()
        .flatten()
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_resolves_to_this_machines_linux_manifest() {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        };
        let entry = |d: &str, os: &str, a: &str| Entry {
            digest: d.into(),
            platform: Some(Platform {
                os: os.into(),
                architecture: a.into(),
            }),
        };
        let entries = vec![
            entry("sha256:other", "linux", "s390x"),
            entry("sha256:win", "windows", arch),
            entry("sha256:mine", "linux", arch),
        ];
        assert_eq!(pick(&entries), "sha256:mine");
        assert_eq!(pick(&entries[..1]), "sha256:other", "else the first");
    }
}
