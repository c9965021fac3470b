//! A resource as the reconciler keeps it between passes. Typed: what passes over
//! every resource read (its origin, spec hash, whether it is built, what the
//! triggers watch for it). Packed: the rest, as JSON, unpacked for a pass over this
//! one resource. A `Resource` is 1.6 KB inline, mostly empty fields; packed, an
//! up-to-date one is about 0.6 KB, and 100,000 of them must fit in the controller's
//! memory goal (benches/kube_sync.rs).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::is_built;
use super::observed::git_target;
use crate::api::{DockerBuild, Phase, Triggers, parse_duration};
use crate::sources::Resource;
use crate::triggers::GitTarget;

pub(super) struct Kept {
    pub(super) origin: String,
    /// `spec.hash()`, computed once per version.
    pub(super) spec_hash: String,
    /// The phase of the status the source read.
    pub(super) phase: Option<Phase>,
    /// That status says this very spec's image is pushed.
    pub(super) built: bool,
    /// `spec.triggers.base`: a new digest of an external base rebuilds it.
    pub(super) base_triggers: bool,
    /// None for a source no trigger can watch (inline).
    pub(super) watch: Option<Box<Watch>>,
    /// [`Packed`] as JSON.
    body: Box<[u8]>,
}

/// What the triggers may watch for one resource.
pub(super) struct Watch {
    /// `spec.triggers.source`: a new commit, context or download rebuilds it.
    pub(super) source: bool,
    /// A `path` context: the directory it is relative to, the path, the Dockerfile.
    pub(super) context: Option<(PathBuf, String, String)>,
    /// A git source, and its own poll interval if it sets one.
    pub(super) git: Option<(GitTarget, Option<Duration>)>,
    pub(super) url: Option<String>,
}

/// The fields of a [`Resource`] that are packed (`origin` is kept typed).
#[derive(Serialize, Deserialize)]
struct Packed {
    build: DockerBuild,
    base_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

impl Kept {
    pub(super) fn new(res: Resource) -> Self {
        let spec = &res.build.spec;
        let spec_hash = spec.hash();
        let status = res.build.status.as_ref();
        let triggers = spec.triggers.as_ref();
        let watch = Watch {
            source: Triggers::source_enabled(triggers),
            context: spec.source.path.clone().and_then(|p| {
                let base = res.base_dir.clone()?;
                let dockerfile = spec
                    .dockerfile
                    .clone()
                    .unwrap_or_else(|| "Dockerfile".into());
                Some((base, p, dockerfile))
            }),
            git: git_target(&res).map(|g| {
                let every = triggers
                    .and_then(|t| t.git_poll.as_deref())
                    .and_then(|p| parse_duration(p).ok());
                (g, every)
            }),
            url: spec.source.url.clone(),
        };
        let watched = watch.context.is_some() || watch.git.is_some() || watch.url.is_some();
        let phase = status.and_then(|s| s.phase);
        let built = is_built(status, &spec_hash);
        let base_triggers = Triggers::base_enabled(triggers);
        let packed = Packed {
            build: res.build,
            base_dir: res.base_dir,
            warnings: res.warnings,
        };
        Self {
            phase,
            built,
            base_triggers,
            watch: watched.then(|| Box::new(watch)),
            spec_hash,
            origin: res.origin,
            // ok: serializing plain data with string keys cannot fail
            body: serde_json::to_vec(&packed)
                .unwrap_or_default()
                .into_boxed_slice(),
        }
    }

    /// The resource as the source gave it.
    pub(super) fn resource(&self) -> Resource {
        // ok: the body is what `new` wrote, and these types read what they write
        // (the round-trip test below)
        let p: Packed =
            serde_json::from_slice(&self.body).expect("a kept resource reads back as written");
        Resource {
            build: p.build,
            origin: self.origin.clone(),
            base_dir: p.base_dir,
            warnings: p.warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DockerBuildStatus;

    fn resource(yaml: &str) -> Resource {
        Resource {
            build: crate::yaml::from_str(yaml).unwrap(),
            origin: "builds/app.yaml".into(),
            base_dir: Some("/srv/builds".into()),
            warnings: vec!["unknown field \"spec.timeoutSecs\"".into()],
        }
    }

    const FULL: &str = r#"
apiVersion: slipway.dev/v1alpha1
kind: DockerBuild
metadata: {name: app, namespace: team, uid: 0b7e, generation: 3}
spec:
  source:
    git: {url: "https://git.example/app.git", revision: main, submodules: true}
  dockerfile: build/Dockerfile
  buildArgs: {VERSION: "1.2"}
  target: release
  platforms: [linux/amd64, linux/arm64]
  secrets: [{id: npm, secretRef: {name: npm, key: token}}]
  output: {registry: "r.example:5000", repository: team/app, tags: [v1, latest]}
  triggers: {gitPoll: 30s, base: false}
  rebuild: "2"
  timeoutSeconds: 600
  historyLimit: 5
status:
  phase: Succeeded
  specHash: "sha256:0000"
  imageDigest: "sha256:abcd"
  pushedTags: ["r.example:5000/team/app:v1"]
  conditions:
  - {type: Ready, status: "True", reason: Pushed, message: "pushed 2 tags", lastTransitionTime: "2026-11-28T10:00:00Z"}
"#;

    #[test]
    fn a_kept_resource_reads_back_exactly_as_the_source_gave_it() {
        let res = resource(FULL);
        let back = Kept::new(res.clone()).resource();
        assert_eq!(
            serde_json::to_value(&back.build).unwrap(),
            serde_json::to_value(&res.build).unwrap()
        );
        assert_eq!(back.build.spec.hash(), res.build.spec.hash());
        assert_eq!(back.origin, res.origin);
        assert_eq!(back.base_dir, res.base_dir);
        assert_eq!(back.warnings, res.warnings);
        // every example a user starts from, too
        for f in [
            "examples/hello.yaml",
            "examples/base.yaml",
            "examples/tools.yaml",
        ] {
            let text = std::fs::read_to_string(f).unwrap();
            for build in crate::yaml::from_multiple::<DockerBuild>(&text).unwrap() {
                let res = Resource {
                    build,
                    origin: f.into(),
                    base_dir: None,
                    warnings: Vec::new(),
                };
                let back = Kept::new(res.clone()).resource();
                assert_eq!(
                    serde_json::to_value(&back.build).unwrap(),
                    serde_json::to_value(&res.build).unwrap(),
                    "{f}"
                );
            }
        }
    }

    #[test]
    fn what_passes_over_every_resource_read_is_kept_typed() {
        let mut res = resource(FULL);
        let k = Kept::new(res.clone());
        assert_eq!(k.spec_hash, res.build.spec.hash());
        assert_eq!(k.phase, Some(Phase::Succeeded));
        assert!(!k.built, "the status is of another spec");
        assert!(!k.base_triggers);
        let w = k.watch.as_deref().expect("a git source is watched");
        assert!(w.source);
        let (target, every) = w.git.as_ref().unwrap();
        assert_eq!(target.url, "https://git.example/app.git");
        assert_eq!(target.revision.as_deref(), Some("main"));
        assert_eq!(*every, Some(Duration::from_secs(30)));
        assert!(w.context.is_none() && w.url.is_none());

        // its own spec built and pushed
        res.build.status = Some(DockerBuildStatus {
            phase: Some(Phase::Succeeded),
            spec_hash: Some(res.build.spec.hash()),
            ..Default::default()
        });
        assert!(Kept::new(res.clone()).built);

        // an inline source: nothing to watch, nothing boxed
        let inline = resource(
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {name: a}\n\
             spec: {source: {inline: {dockerfile: \"FROM scratch\"}}, output: {repository: a}}\n",
        );
        let k = Kept::new(inline);
        assert!(k.watch.is_none() && k.base_triggers && k.phase.is_none());

        // a path context is watched relative to its file's folder
        let path = resource(
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {name: a}\n\
             spec: {source: {path: ./app}, triggers: {source: false}, output: {repository: a}}\n",
        );
        let k = Kept::new(path);
        let w = k.watch.as_deref().unwrap();
        assert!(!w.source);
        assert_eq!(
            w.context,
            Some(("/srv/builds".into(), "./app".into(), "Dockerfile".into()))
        );
    }
}
