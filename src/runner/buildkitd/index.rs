//! What a multi-platform or attested push put in the registry: the index's platform
//! manifests and its attestation manifests (BuildKit's layout: an attestation
//! manifest is an index entry annotated `vnd.docker.reference.type:
//! attestation-manifest`, pointing at the image it describes, and each of its layers
//! names its predicate type).

use std::collections::HashMap;

use serde::Deserialize;

use crate::api::{Attestation, PlatformImage};
use crate::registry::{self, Credentials};
use crate::runner::Resolved;
use crate::{Error, Result};

const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";

#[derive(Deserialize)]
struct Manifest {
    /// Present in an index.
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    /// Present in an image (or attestation) manifest; `null` in an image with no
    /// layer at all (`FROM scratch` and only metadata), as BuildKit writes it.
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Platform {
    fn name(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// An attestation manifest's digest, and the platform of the image it describes.
type AttestationRef = (String, Option<String>);

/// An index's images by platform, and its attestation manifests. None when `json`
/// is a single image manifest.
pub(super) fn parse_index(
    json: &[u8],
) -> Result<Option<(Vec<PlatformImage>, Vec<AttestationRef>)>> {
    let m: Manifest = serde_json::from_slice(json)
        .map_err(|e| Error::registry(format!("the pushed index is not JSON: {e}"), e))?;
    let Some(entries) = m.manifests else {
        return Ok(None);
    };
    let mut platforms = Vec::new();
    let mut attestations = Vec::new();
    for d in &entries {
        if d.annotations.get(REFERENCE_TYPE).map(String::as_str) == Some("attestation-manifest") {
            let described = d.annotations.get(REFERENCE_DIGEST);
            let platform = entries
                .iter()
                .find(|e| Some(&e.digest) == described)
                .and_then(|e| e.platform.as_ref())
                .map(Platform::name);
            attestations.push((d.digest.clone(), platform));
        } else if let Some(p) = &d.platform {
            platforms.push(PlatformImage {
                platform: p.name(),
                digest: d.digest.clone(),
            });
        }
    }
    Ok(Some((platforms, attestations)))
}

/// The predicate types an attestation manifest's layers carry.
pub(super) fn predicate_types(json: &[u8]) -> Result<Vec<String>> {
    let m: Manifest = serde_json::from_slice(json)
        .map_err(|e| Error::registry(format!("an attestation manifest is not JSON: {e}"), e))?;
    Ok(m.layers
        .unwrap_or_default()
        .into_iter()
        .filter_map(|l| l.annotations.get(PREDICATE_TYPE).cloned())
        .collect())
}

/// The platforms and attestations of `digest` when it is an index; nothing for a
/// single image manifest.
pub(crate) async fn read_index(
    http: &impl crate::tls::RegistryHttp,
    target: &Resolved,
    digest: &str,
    creds: Option<&Credentials>,
) -> Result<(Vec<PlatformImage>, Vec<Attestation>)> {
    let get = |reference: String| async move {
        registry::manifest(
            http,
            &target.registry,
            &target.repository,
            &reference,
            creds,
        )
        .await
    };
    let Some((platforms, found)) = parse_index(&get(digest.to_string()).await?)? else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut attestations = Vec::new();
    for (att, platform) in found {
        for predicate_type in predicate_types(&get(att.clone()).await?)? {
            attestations.push(Attestation {
                predicate_type,
                digest: att.clone(),
                platform: platform.clone(),
            });
        }
    }
    Ok((platforms, attestations))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape BuildKit pushes for two platforms with provenance.
    const INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:aa", "size": 1,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:bb", "size": 1,
         "platform": {"architecture": "386", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:cc", "size": 1,
         "annotations": {"vnd.docker.reference.digest": "sha256:bb",
                         "vnd.docker.reference.type": "attestation-manifest"},
         "platform": {"architecture": "unknown", "os": "unknown"}}
      ]}"#;

    #[test]
    fn an_index_lists_platform_images_and_attestations_apart() {
        let (platforms, atts) = parse_index(INDEX.as_bytes()).unwrap().unwrap();
        assert_eq!(
            platforms,
            [
                PlatformImage {
                    platform: "linux/amd64".into(),
                    digest: "sha256:aa".into()
                },
                PlatformImage {
                    platform: "linux/386".into(),
                    digest: "sha256:bb".into()
                }
            ]
        );
        assert_eq!(
            atts,
            [("sha256:cc".to_string(), Some("linux/386".to_string()))]
        );
    }

    #[test]
    fn a_single_manifest_is_no_index() {
        let m = r#"{"schemaVersion": 2, "config": {"digest": "sha256:c"}, "layers": []}"#;
        assert!(parse_index(m.as_bytes()).unwrap().is_none());
        // an image of metadata only (FROM scratch, LABEL): BuildKit writes null layers
        let m = r#"{"schemaVersion": 2, "config": {"digest": "sha256:c"}, "layers": null}"#;
        assert!(parse_index(m.as_bytes()).unwrap().is_none());
        assert!(parse_index(b"<html>").is_err());
    }

    #[test]
    fn attestation_layers_name_their_predicates() {
        let m = r#"{"schemaVersion": 2, "config": {"digest": "sha256:c"}, "layers": [
          {"digest": "sha256:l1", "annotations": {"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}},
          {"digest": "sha256:l2"}]}"#;
        assert_eq!(
            predicate_types(m.as_bytes()).unwrap(),
            ["https://slsa.dev/provenance/v0.2"]
        );
    }
}
