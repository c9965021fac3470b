//! The parts of a `DockerBuild` that only BuildKit engines honour: a registry layer
//! cache, build secrets, provenance and platforms, and what they produced.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::{REGISTRY_RE, REPOSITORY_RE, SECRET_ID_RE, TAG_RE};

/// A layer cache kept in a registry, so any machine can reuse another's work.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// The grammar of `validate_cache_ref`: the registry's, repository's and tag's, and a
// first part that is a registry (a dot, a port or localhost), not a Docker Hub namespace.
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": format!(
        "self.ref.matches(r'^{REGISTRY_RE}/{REPOSITORY_RE}(:{TAG_RE})?$') && self.ref.split('/')[0].matches('[.:]|^localhost$')"
    ),
    "message": "spec.cache.ref is registry/repository[:tag], such as registry.example.org:5000/app:buildcache",
}]))]
pub struct CacheSpec {
    /// Where the cache lives: `registry/repository:tag`, e.g. `reg/app:buildcache`.
    #[serde(rename = "ref")]
    #[schemars(length(max = 640))]
    pub reference: String,
    /// `min` caches the layers of the final image; `max` every intermediate step too.
    #[serde(default)]
    pub mode: CacheMode,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    #[default]
    Min,
    Max,
}

/// A secret a `RUN --mount=type=secret,id=ID` step reads; it never lands in a layer.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// As `validate_secrets` checks (ids are unique by the list's map type); admission is
// Kubernetes only, where a file cannot be read.
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": format!("self.id.matches('^{SECRET_ID_RE}$')"),
        "message": "a spec.secrets id is letters, digits, '.', '_' and '-'",
    },
    {
        "rule": "has(self.secretRef) != has(self.file)",
        "message": "each of spec.secrets needs exactly one of secretRef (Kubernetes) and file (watch folder)",
    },
    {
        "rule": "!has(self.file)",
        "message": super::SECRET_FILE_IN_KUBERNETES,
    },
]))]
pub struct BuildSecret {
    /// The id the Dockerfile names.
    #[schemars(length(max = 253))]
    pub id: String,
    /// A key of a Secret in the resource's namespace (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// A file, relative to the resource's file (watch folder and one-shot builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key inside the Secret's data.
    pub key: String,
}

/// Attestations pushed with the image.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttestSpec {
    /// SLSA provenance: `min` or `max` detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<ProvenanceMode>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProvenanceMode {
    Min,
    Max,
}

/// One platform's image inside a multi-platform index.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformImage {
    /// `os/arch[/variant]`, e.g. `linux/386`.
    pub platform: String,
    /// Digest of that platform's manifest.
    pub digest: String,
}

/// An attestation manifest pushed with the image.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    /// What it attests, e.g. `https://slsa.dev/provenance/v0.2`.
    pub predicate_type: String,
    /// Digest of the attestation manifest.
    pub digest: String,
    /// The platform image it describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// One step of the build as BuildKit reported it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageStep {
    /// The step as BuildKit names it: `[build 2/3] RUN make`.
    pub name: String,
    /// Taken from the cache rather than run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// How long it ran, in seconds (absent while it runs, or when cached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// It failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
}
