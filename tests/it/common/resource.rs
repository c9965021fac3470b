//! A DockerBuild resource as the tests write it: the crate's own API types, written
//! out with `slipway::yaml`, so a field's spelling and nesting come from the CRD's
//! Rust definition instead of a format! string in each test file.

use slipway::api::{
    BuildSource, DockerBuild, DockerBuildSpec, GitSource, InlineSource, Output, SecretRef,
};

use super::registry;

/// `Build::new("app").inline("FROM scratch").push_to("slipway-test/app").yaml()`.
#[derive(Clone, Debug)]
pub struct Build(DockerBuild);

impl Build {
    pub fn new(name: &str) -> Self {
        Self(DockerBuild::new(name, DockerBuildSpec::default()))
    }

    /// An inline Dockerfile (`spec.source.inline.dockerfile`), ending in a newline
    /// as a YAML block scalar would.
    pub fn inline(mut self, dockerfile: &str) -> Self {
        let mut dockerfile = dockerfile.to_string();
        if !dockerfile.ends_with('\n') {
            dockerfile.push('\n');
        }
        self.0.spec.source = BuildSource {
            inline: Some(InlineSource { dockerfile }),
            ..Default::default()
        };
        self
    }

    /// A Git source: `url` at `revision`, the context in `context_dir` of it.
    pub fn git(mut self, url: &str, revision: Option<&str>, context_dir: Option<&str>) -> Self {
        self.0.spec.source = BuildSource {
            git: Some(GitSource {
                url: url.into(),
                revision: revision.map(Into::into),
                context_dir: context_dir.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        };
        self
    }

    /// A context tarball fetched from `url`.
    pub fn url(mut self, url: &str) -> Self {
        self.0.spec.source = BuildSource {
            url: Some(url.into()),
            ..Default::default()
        };
        self
    }

    /// A context directory beside the resource's file.
    pub fn path(mut self, path: &str) -> Self {
        self.0.spec.source = BuildSource {
            path: Some(path.into()),
            ..Default::default()
        };
        self
    }

    pub fn no_cache(mut self) -> Self {
        self.0.spec.no_cache = true;
        self
    }

    /// Pushes to `repository` in the test registry.
    pub fn push_to(self, repository: &str) -> Self {
        self.push_to_registry(&registry(), repository)
    }

    pub fn push_to_registry(mut self, registry: &str, repository: &str) -> Self {
        let out = self.output();
        out.registry = Some(registry.into());
        out.repository = Some(repository.into());
        self
    }

    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.output().tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    /// `spec.output.pushSecretRef.name`: a Secret of the resource's namespace.
    pub fn push_secret(mut self, name: &str) -> Self {
        self.output().push_secret_ref = Some(SecretRef {
            name: Some(name.into()),
            ..Default::default()
        });
        self
    }

    /// Anything else in the spec.
    pub fn with(mut self, edit: impl FnOnce(&mut DockerBuildSpec)) -> Self {
        edit(&mut self.0.spec);
        self
    }

    fn output(&mut self) -> &mut Output {
        self.0.spec.output.get_or_insert_with(Default::default)
    }

    /// The resource as a YAML document, as `kubectl apply -f` or a watch folder takes it.
    pub fn yaml(&self) -> String {
        slipway::yaml::to_string(&self.0).expect("a DockerBuild serializes")
    }
}
