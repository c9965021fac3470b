//! Where a build goes: the spec merged with the Dockerfile's old directive lines.

use std::path::Path;

use crate::api::{DockerBuildSpec, validate_registry, validate_repository, validate_tag};
use crate::runner::directives::Directives;
use crate::{Error, Result};

/// The build's target, once spec and Dockerfile are merged.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub registry: String,
    pub repository: String,
    pub tags: Vec<String>,
    pub cpus: Option<f64>,
    pub mem_mib: Option<u64>,
}

impl Resolved {
    /// `registry/repository`, the name Docker tags and pushes.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    pub fn tag_refs(&self) -> Vec<String> {
        self.tags
            .iter()
            .map(|t| format!("{}:{t}", self.name()))
            .collect()
    }
}

/// The spec wins where both speak; tags are the union, `latest` when there are none.
pub fn resolve(spec: &DockerBuildSpec, d: &Directives) -> Result<Resolved> {
    let out = spec.output.clone().unwrap_or_default();
    let registry = out.registry.or_else(|| d.registry.clone()).ok_or_else(|| {
        Error::InvalidSpec(
            "no registry: set spec.output.registry or a REGISTRY line in the Dockerfile".into(),
        )
    })?;
    let repository = out
        .repository
        .or_else(|| d.repository.clone())
        .ok_or_else(|| {
            Error::InvalidSpec(
                "no repository: set spec.output.repository or a REPOSITORY line in the Dockerfile"
                    .into(),
            )
        })?;
    validate_registry(&registry)?;
    validate_repository(&repository)?;
    let mut tags: Vec<String> = Vec::new();
    for t in out.tags.iter().chain(d.tags.iter()) {
        validate_tag(t)?;
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    if tags.is_empty() {
        tags.push("latest".into());
    }
    let res = spec.resources.clone().unwrap_or_default();
    Ok(Resolved {
        registry,
        repository,
        tags,
        cpus: res.cpus.or(d.cpus),
        mem_mib: res.mem_mib.or(d.mem_mib),
    })
}

/// The Dockerfile's text when it can be read without fetching anything (inline and
/// path sources), so builds can be checked and ordered before they are queued.
pub fn local_dockerfile(spec: &DockerBuildSpec, base_dir: Option<&Path>) -> Option<String> {
    if let Some(inline) = &spec.source.inline {
        return Some(inline.dockerfile.clone());
    }
    let path = spec.source.path.as_ref()?;
    let file = spec.dockerfile.as_deref().unwrap_or("Dockerfile");
    let full = base_dir.unwrap_or(Path::new(".")).join(path).join(file);
    std::fs::read_to_string(full).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Output, Resources};

    fn directives() -> Directives {
        Directives {
            registry: Some("old.example.org:5000".into()),
            repository: Some("team/app".into()),
            cpus: Some(2.0),
            mem_mib: Some(1024),
            tags: vec!["2024".into()],
        }
    }

    #[test]
    fn dockerfile_fills_what_the_spec_leaves_out() {
        let r = resolve(&DockerBuildSpec::default(), &directives()).unwrap();
        assert_eq!(r.name(), "old.example.org:5000/team/app");
        assert_eq!(r.tags, vec!["2024"]);
        assert_eq!((r.cpus, r.mem_mib), (Some(2.0), Some(1024)));
    }

    #[test]
    fn spec_wins_and_tags_merge() {
        let spec = DockerBuildSpec {
            output: Some(Output {
                registry: Some("new.example.org".into()),
                tags: vec!["latest".into(), "2024".into()],
                ..Default::default()
            }),
            resources: Some(Resources {
                cpus: Some(0.5),
                mem_mib: None,
            }),
            ..Default::default()
        };
        let r = resolve(&spec, &directives()).unwrap();
        assert_eq!(r.registry, "new.example.org");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tags, vec!["latest", "2024"]);
        assert_eq!((r.cpus, r.mem_mib), (Some(0.5), Some(1024)));
        assert_eq!(
            r.tag_refs(),
            vec![
                "new.example.org/team/app:latest",
                "new.example.org/team/app:2024"
            ]
        );
    }

    #[test]
    fn missing_registry_says_where_to_put_it() {
        let err = resolve(&DockerBuildSpec::default(), &Directives::default()).unwrap_err();
        assert!(err.to_string().contains("REGISTRY line"), "{err}");
    }

    #[test]
    fn default_tag_is_latest_and_bad_directive_tag_is_refused() {
        let mut d = directives();
        d.tags.clear();
        assert_eq!(
            resolve(&DockerBuildSpec::default(), &d).unwrap().tags,
            vec!["latest"]
        );
        d.tags = vec!["bad tag".into()];
        assert!(resolve(&DockerBuildSpec::default(), &d).is_err());
    }
}
