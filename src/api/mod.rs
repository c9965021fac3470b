//! The `DockerBuild` resource: what to build and where to push it, and what happened.
//!
//! The CRD in `crds/` is generated from these types (`slipway crd`); doc comments on
//! fields become the descriptions `kubectl explain` shows.

mod buildkit;
mod triggers;
mod validate;

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use buildkit::{
    AttestSpec, Attestation, BuildSecret, CacheMode, CacheSpec, PlatformImage, ProvenanceMode,
    SecretKeyRef, StageStep,
};
pub use triggers::{
    BaseImage, DEFAULT_HISTORY_LIMIT, HistoryEntry, MAX_HISTORY_LIMIT, Triggers, parse_duration,
};
use validate::{REGISTRY_RE, REPOSITORY_RE, TAG_RE};
pub use validate::{
    split_cache_ref, validate_metadata, validate_registry, validate_repository, validate_spec,
    validate_tag,
};

pub const API_VERSION: &str = "slipway.dev/v1alpha1";
pub const KIND: &str = "DockerBuild";

/// Why a build secret's `file` cannot be read from the Kubernetes API.
pub const SECRET_FILE_IN_KUBERNETES: &str = "spec.secrets[].file names a file on the machine that reads the resource, so it only works in a watch folder or with `slipway build`; in Kubernetes use secretRef, a key of a Secret in the resource's namespace";

/// Why a `path` source cannot be built from the Kubernetes API.
pub const PATH_IN_KUBERNETES: &str = "spec.source.path names a directory on the machine that reads the file, so it only works in a watch folder or with `slipway build`; in Kubernetes use git, url or inline";

/// A container image to build from a Dockerfile and push to a registry.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "slipway.dev",
    version = "v1alpha1",
    kind = "DockerBuild",
    namespaced,
    status = "DockerBuildStatus",
    shortname = "dbuild",
    category = "slipway",
    doc = "A container image that slipway builds from a Dockerfile and pushes to a registry.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Trigger","type":"string","jsonPath":".status.triggeredBy"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".status.image"}"#,
    printcolumn = r#"{"name":"Digest","type":"string","jsonPath":".status.imageDigest"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DockerBuildSpec {
    /// Where the build context comes from. Exactly one of git, url, path, inline.
    pub source: BuildSource,
    /// Path of the Dockerfile inside the context. It may carry the old
    /// REGISTRY/REPOSITORY/TAG/CPUS/MEM lines; the spec wins where both say something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// Build-time variables (ARG values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    /// Multi-stage target to build; the last stage when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Build without the daemon's layer cache.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_cache: bool,
    /// When to fetch base images (`FROM`) from their registry: `Always` before every
    /// build, so a base re-pushed under the same tag is picked up; `IfNotPresent`
    /// (the default) lets the engine decide: a Docker daemon uses its copy when it has
    /// one, a standalone buildkitd looks the tag up in the registry anyway.
    // unset when default, so specs written before this field keep their hash
    #[serde(default, skip_serializing_if = "PullPolicy::is_default")]
    pub pull: PullPolicy,
    /// Extra image labels, added to the OCI labels slipway sets itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Where the image is pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
    /// Resources the build needs (a Mesos offer must fit them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// The build fails when it takes longer than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Change this value to rebuild an unchanged spec (a new base image, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<String>,
    /// A layer cache in a registry, exported after the build and imported before it
    /// (BuildKit engines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
    /// Secrets for `RUN --mount=type=secret` (standalone buildkitd).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // one entry per id, which the API server checks
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    #[schemars(length(max = 64))]
    pub secrets: Vec<BuildSecret>,
    /// Attestations to push with the image (standalone buildkitd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attest: Option<AttestSpec>,
    /// Platforms to build, e.g. `[linux/amd64, linux/386]`: one image each under one
    /// index (standalone buildkitd). The engine's own platform when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // the list `validate_platforms` accepts; each once
    #[schemars(extend(
        "x-kubernetes-list-type" = "set",
        "x-kubernetes-validations" = [{
            "rule": format!(
                "self.all(p, p in [{}])",
                validate::known_platforms().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ")
            ),
            "message": "each platform in spec.platforms is os/arch[/variant] of a known operating system and architecture, such as linux/amd64 or linux/arm/v7",
        }],
    ))]
    #[schemars(length(max = 32))]
    pub platforms: Vec<String>,
    /// When to build again without a spec change (source, base image, polling).
    /// Not part of the spec hash: changing it rebuilds nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggers: Option<Triggers>,
    /// Builds `status.history` keeps (default 5, at most 50). Not part of the spec hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub history_limit: Option<u32>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// When base images are fetched from their registry (dockeroo's `pull`, OpenShift's
/// `forcePull`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Fetch every base image before each build.
    Always,
    /// Use the engine's copy of a base image when it has one (a Docker daemon's
    /// image store; a standalone buildkitd resolves tags in the registry either way).
    #[default]
    IfNotPresent,
}

impl PullPolicy {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Where the build context comes from. Exactly one field is set.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// Admission checks (Kubernetes only: a watch folder has no admission, so the
// reconciler checks the same things and writes them into the status).
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "[has(self.git), has(self.url), has(self.path), has(self.inline)].filter(x, x).size() == 1",
        "message": "spec.source needs exactly one of git, url, path, inline",
    },
    {
        "rule": "!has(self.path)",
        "message": PATH_IN_KUBERNETES,
    },
]))]
pub struct BuildSource {
    /// A Git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// A context tarball (tar, tar.gz or tar.zst) fetched over HTTP(S).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A directory relative to the resource's file (watch folder and one-shot builds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A Dockerfile written in the resource itself, with an empty context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<InlineSource>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// Clone URL.
    pub url: String,
    /// Branch, tag or commit; the remote's default branch when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Directory inside the repository used as the build context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_dir: Option<String>,
    /// Fetch the repository's submodules (recursively) at their recorded commits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub submodules: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InlineSource {
    /// The Dockerfile's text.
    pub dockerfile: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// The same grammar as `validate_registry`, `validate_repository` and `validate_tag`.
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": format!("!has(self.registry) || self.registry.matches(r'^{REGISTRY_RE}$')"),
        "message": "spec.output.registry is host[:port], with no scheme and no path",
    },
    {
        "rule": format!("!has(self.repository) || self.repository.matches('^{REPOSITORY_RE}$')"),
        "message": "spec.output.repository is lowercase letters and digits, with '.', '_', '__' or '-' between them and '/' between path components",
    },
    {
        "rule": format!("!has(self.tags) || self.tags.all(t, t.matches('^{TAG_RE}$'))"),
        "message": "each tag in spec.output.tags is 1 to 128 letters, digits, '_', '.' or '-', and does not start with '.' or '-'",
    },
]))]
pub struct Output {
    /// Registry host[:port]; may come from a REGISTRY line in the Dockerfile instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub registry: Option<String>,
    /// Repository inside the registry; may come from a REPOSITORY line instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub repository: Option<String>,
    /// Tags to push, added to the Dockerfile's TAG lines; `latest` when none is given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(max = 128)))]
    pub tags: Vec<String>,
    /// Registry credentials: in Kubernetes a kubernetes.io/dockerconfigjson Secret of the
    /// resource's namespace; in a watch folder, `path` to a docker config.json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_secret_ref: Option<SecretRef>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of a Secret in the resource's namespace (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Path of a docker config.json, relative to the resource's file (watch folder mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPUs for the build; may come from a CPUS (or BUILD_CPU) line instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory in MiB; may come from a MEM (or BUILD_MEM) line instead.
    #[serde(rename = "memMiB", default, skip_serializing_if = "Option::is_none")]
    pub mem_mib: Option<u64>,
}

/// Where a build is in its life.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Queued,
    Building,
    Pushing,
    Succeeded,
    Failed,
    Cancelled,
}

impl Phase {
    /// A finished build: nothing runs for it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

/// What slipway last did with the resource.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DockerBuildStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The metadata.generation this status describes (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Hash of the spec this status describes; a different hash means a rebuild.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Digest of the pushed image manifest, as the registry reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The pushed image by digest: registry/repository@sha256:...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pushed_tags: Vec<String>,
    /// Git commit that was built, for git sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    /// Infrastructure retries so far for this spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// What a person should know: progress, or why the build failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The Mesos task that runs (or ran) this build, with the Mesos backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesos: Option<MesosTask>,
    /// Each platform's image when `imageDigest` is a multi-platform index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformImage>,
    /// Attestation manifests pushed with the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<Attestation>,
    /// The build's steps: name, cached or not, duration (BuildKit engines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageStep>,
    /// Why the last build ran: `spec`, `rebuild`, `context`, `git: <old>..<new>`,
    /// `base: <image>@<digest>`, `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
    /// The number of the last build (counts up from 1; `status.history` has the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_number: Option<u64>,
    /// The digests the last build's `FROM` images resolved to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_images: Vec<BaseImage>,
    /// Digest of the `path` context as the last build saw it (after .dockerignore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_digest: Option<String>,
    /// ETag or Last-Modified of the `url` source the last build fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    /// The spec.rebuild value the last build was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild_token: Option<String>,
    /// The last builds, newest last (`spec.historyLimit` of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// The last lines of a failed build's log (`slipway logs NAME` shows all of it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

/// Where a build runs on Mesos.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MesosTask {
    pub framework_id: String,
    pub task_id: String,
    pub agent_id: String,
    /// The task's sandbox directory on the agent: the executor keeps the build's log
    /// there (`slipway logs` reads the copy slipway keeps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Why the build went to this agent, by the base layers its daemon holds
    /// (`placed on HOST: holds 5/6 base layers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
}

/// A Kubernetes-style condition (type Ready).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl DockerBuildSpec {
    /// Stable hash of everything that affects the image; the status records it so a
    /// status-only edit never triggers a rebuild and any spec edit does.
    pub fn hash(&self) -> String {
        // when and how often to rebuild does not change the image
        let image = Self {
            triggers: None,
            history_limit: None,
            ..self.clone()
        };
        // ok: serializing plain data with string keys cannot fail
        let json = serde_json::to_vec(&image).unwrap_or_default();
        let digest = Sha256::digest(&json);
        format!("sha256:{}", &hex::encode(digest)[..16])
    }
}

impl DockerBuild {
    /// `namespace/name`, how logs and messages name a resource.
    pub fn key(&self) -> String {
        let ns = self.metadata.namespace.as_deref().unwrap_or("default");
        let name = self.metadata.name.as_deref().unwrap_or("");
        format!("{ns}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pull_policy_keeps_existing_spec_hashes() {
        let spec = |yaml: &str| crate::yaml::from_str::<DockerBuildSpec>(yaml).unwrap();
        let plain = spec("source: {inline: {dockerfile: FROM scratch}}");
        let explicit = spec("source: {inline: {dockerfile: FROM scratch}}\npull: IfNotPresent");
        let always = spec("source: {inline: {dockerfile: FROM scratch}}\npull: Always");
        assert_eq!(plain.pull, PullPolicy::IfNotPresent);
        // hashed as before the field existed: no mass rebuild on upgrade
        let json = serde_json::to_value(&explicit).unwrap();
        assert!(json.get("pull").is_none(), "{json}");
        assert_eq!(explicit.hash(), plain.hash());
        assert_ne!(always.hash(), plain.hash());
    }
}
