//! `--staging registry`: the packed context becomes an OCI artifact in the build's
//! own output repository (an image manifest whose config is the empty descriptor and
//! whose one layer is the context tar), pushed tag-less with the build's credentials
//! and referenced by digest. The executor already holds those credentials (they ride
//! in the task's data, which is not part of the master's state) and fetches the layer
//! blob by digest. After the build the manifest and the layer are deleted; a registry
//! with deletes disabled answers 405, and then its garbage collection is left to it
//! (an untagged manifest is what `registry garbage-collect --delete-untagged` removes).

use std::path::Path;

use reqwest::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::Packed;
use crate::api::DockerBuildSpec;
use crate::registry::{Credentials, DockerConfig, authorized, base_url, error_chain};
use crate::runner::{directives, fetch};
use crate::{Error, Result};

/// The artifact type of a staged context.
pub const ARTIFACT_TYPE: &str = "application/vnd.slipway.context.v1+tar";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Where the executor finds a staged context (in the task's payload).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StagedBlob {
    pub registry: String,
    pub repository: String,
    /// The layer's digest.
    pub digest: String,
}

/// A pushed artifact; [`Pushed::remove`] deletes it.
pub struct Pushed {
    pub blob: StagedBlob,
    /// The manifest's digest.
    pub manifest: String,
    client: reqwest::Client,
    creds: Option<Credentials>,
}

/// The build's output registry and repository: the spec's, else its Dockerfile's
/// REGISTRY/REPOSITORY lines.
pub fn target(spec: &DockerBuildSpec, dir: &Path, dockerfile: &str) -> Result<(String, String)> {
    let out = spec.output.clone().unwrap_or_default();
    let lines = std::fs::read_to_string(dir.join(dockerfile))
        .ok()
        .and_then(|t| directives::parse(&t).ok())
        .map(|(d, _)| d)
        .unwrap_or_default();
    match (
        out.registry.or(lines.registry),
        out.repository.or(lines.repository),
    ) {
        (Some(reg), Some(repo)) => Ok((reg, repo)),
        _ => Err(Error::InvalidSpec(
            "--staging registry stages the context in the build's output repository, \
             and this build names no output registry and repository"
                .into(),
        )),
    }
}

/// The OCI image manifest of the artifact whose one layer is `digest` (`size` bytes).
pub fn manifest(digest: &str, size: u64) -> Vec<u8> {
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": EMPTY_TYPE, "digest": EMPTY_DIGEST, "size": 2, "data": "e30="},
        "layers": [{
            "mediaType": LAYER_TYPE,
            "digest": digest,
            "size": size,
            "annotations": {"org.opencontainers.image.title": "context.tar"}
        }]
    });
    // ok: a json! value always serializes
    serde_json::to_vec(&m).unwrap_or_default()
}

/// Pushes `packed` as an artifact to `registry/repository`.
pub async fn push(
    client: &reqwest::Client,
    registry: &str,
    repository: &str,
    creds: Option<Credentials>,
    packed: &Packed,
) -> Result<Pushed> {
    let file = tokio::fs::File::open(&packed.path).await?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let c = creds.as_ref();
    put_blob(
        client,
        registry,
        repository,
        c,
        &packed.digest,
        packed.size,
        body,
    )
    .await?;
    put_blob(
        client,
        registry,
        repository,
        c,
        EMPTY_DIGEST,
        2,
        "{}".into(),
    )
    .await?;
    let manifest = manifest(&packed.digest, packed.size);
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
    let url = format!("{}/v2/{repository}/manifests/{digest}", base_url(registry));
    let req = client
        .put(&url)
        .header(header::CONTENT_TYPE, MANIFEST_TYPE)
        .body(manifest);
    let (resp, _) = authorized(client, req, c).await?;
    expect(resp, "the staged context's manifest").await?;
    info!(registry, repository, %digest, "context staged in the registry");
    Ok(Pushed {
        blob: StagedBlob {
            registry: registry.into(),
            repository: repository.into(),
            digest: packed.digest.clone(),
        },
        manifest: digest,
        client: client.clone(),
        creds,
    })
}

/// A blob upload: POST for a session (which settles the Authorization), then one PUT.
async fn put_blob(
    client: &reqwest::Client,
    registry: &str,
    repository: &str,
    creds: Option<&Credentials>,
    digest: &str,
    size: u64,
    body: reqwest::Body,
) -> Result<()> {
    let base = base_url(registry);
    let start = client.post(format!("{base}/v2/{repository}/blobs/uploads/"));
    let (resp, auth) = authorized(client, start, creds).await?;
    let resp = expect(resp, "a blob upload").await?;
    let location = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .ok_or_else(|| {
            Error::Registry(format!("{registry} started an upload without a Location").into())
        })?;
    let mut url = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_string()
    };
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&format!("digest={digest}"));
    let mut put = client
        .put(&url)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, size)
        .body(body);
    if let Some(a) = auth {
        put = put.header(header::AUTHORIZATION, a);
    }
    let resp = put.send().await.map_err(|e| {
        Error::Registry(
            format!(
                "uploading the context to {registry}: {}",
                error_chain(&e.without_url())
            )
            .into(),
        )
    })?;
    expect(resp, "a blob upload").await.map(drop)
}

async fn expect(resp: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    Err(Error::Registry(
        format!(
            "{what} answered {status}: {}",
            text.chars().take(300).collect::<String>()
        )
        .into(),
    ))
}

impl Pushed {
    /// Deletes the manifest, then the layer's link in the repository. A registry
    /// with deletes disabled (405) keeps them until its garbage collection.
    pub async fn remove(self) {
        let base = base_url(&self.blob.registry);
        let repo = &self.blob.repository;
        for (what, url) in [
            (
                "manifest",
                format!("{base}/v2/{repo}/manifests/{}", self.manifest),
            ),
            (
                "layer",
                format!("{base}/v2/{repo}/blobs/{}", self.blob.digest),
            ),
        ] {
            let req = self.client.request(Method::DELETE, &url);
            match authorized(&self.client, req, self.creds.as_ref()).await {
                Ok((r, _)) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => {}
                Ok((r, _)) if r.status() == StatusCode::METHOD_NOT_ALLOWED => {
                    info!(
                        registry = %self.blob.registry, repository = %repo, digest = %self.manifest,
                        "the registry does not allow deletes: the staged context's {what} is left to its garbage collection"
                    );
                    return;
                }
                Ok((r, _)) => {
                    warn!(registry = %self.blob.registry, "deleting the staged context's {what} answered {}", r.status())
                }
                Err(e) => warn!("deleting the staged context's {what}: {e}"),
            }
        }
    }
}

/// The executor side: downloads the blob by digest with the build's credentials and
/// unpacks it into `dest`.
pub async fn fetch(
    client: &reqwest::Client,
    blob: &StagedBlob,
    auth: &DockerConfig,
    dest: &Path,
) -> Result<()> {
    let creds = auth.credentials_for(&blob.registry).await?;
    let url = format!(
        "{}/v2/{}/blobs/{}",
        base_url(&blob.registry),
        blob.repository,
        blob.digest
    );
    // a HEAD settles the Authorization without downloading twice
    let (head, auth) = authorized(client, client.head(&url), creds.as_ref()).await?;
    expect(head, "the staged context").await?;
    let mut get = client.get(&url);
    if let Some(a) = auth {
        get = get.header(header::AUTHORIZATION, a);
    }
    let shown = format!("{}/{}@{}", blob.registry, blob.repository, blob.digest);
    fetch::download(get, &shown, dest, fetch::UrlLimits::default()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_an_oci_artifact_with_one_layer() {
        let m: serde_json::Value = serde_json::from_slice(&manifest("sha256:ab", 10)).unwrap();
        assert_eq!(m["artifactType"], ARTIFACT_TYPE);
        assert_eq!(m["config"]["mediaType"], EMPTY_TYPE);
        assert_eq!(
            EMPTY_DIGEST,
            format!("sha256:{}", hex::encode(Sha256::digest(b"{}")))
        );
        assert_eq!(m["layers"][0]["digest"], "sha256:ab");
        assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    }
}
