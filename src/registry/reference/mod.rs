//! Image references as Docker reads them: `debian:12` is
//! `docker.io/library/debian:12`, `host:5000/app` is `host:5000/app:latest`.

pub mod grammar;

/// A reference split into the parts the registry API wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry as people name it (`docker.io` for Docker Hub): credentials are
    /// looked up by it.
    pub registry: String,
    pub repository: String,
    /// A tag, or a `sha256:...` digest.
    pub reference: String,
}

impl ImageRef {
    /// None for what is no registry reference at all (empty, `scratch`, bad syntax).
    pub fn parse(r: &str) -> Option<Self> {
        let p = grammar::parse(r)?;
        // Docker's reading of the first part: a registry only if it looks like a host
        let (registry, repository) = match p.domain {
            Some(d) if is_registry_host(d) => (d, p.path.to_string()),
            _ => ("docker.io", p.name()),
        };
        let registry = match registry {
            "index.docker.io" | "registry-1.docker.io" => "docker.io",
            r => r,
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        // a tag with a digest names the digest's manifest: the digest is what counts
        let reference = p.digest.or(p.tag).unwrap_or("latest");
        let ok = grammar::is_repository(&repository) && repository != "library/scratch";
        ok.then(|| Self {
            registry: registry.to_string(),
            repository,
            reference: reference.to_string(),
        })
    }

    /// The host that serves the registry API (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// A digest reference names one manifest forever: nothing to look up.
    pub fn pinned(&self) -> Option<&str> {
        self.reference
            .contains(':')
            .then_some(self.reference.as_str())
    }
}

/// Docker's rule for the first part of a reference: a registry has a dot or a port,
/// or is `localhost`; anything else is a Docker Hub namespace.
pub fn is_registry_host(h: &str) -> bool {
    h.contains('.') || h.contains(':') || h == "localhost"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(r: &str) -> (String, String, String) {
        let i = ImageRef::parse(r).unwrap();
        (i.registry, i.repository, i.reference)
    }

    #[test]
    fn references_split_as_docker_reads_them() {
        let p = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(parts("debian:12"), p("docker.io", "library/debian", "12"));
        assert_eq!(parts("debian"), p("docker.io", "library/debian", "latest"));
        assert_eq!(
            parts("bitnami/redis"),
            p("docker.io", "bitnami/redis", "latest")
        );
        assert_eq!(
            parts("index.docker.io/library/alpine:3"),
            p("docker.io", "library/alpine", "3")
        );
        assert_eq!(
            parts("127.0.0.1:5000/team/base"),
            p("127.0.0.1:5000", "team/base", "latest")
        );
        assert_eq!(parts("localhost/base:1.0"), p("localhost", "base", "1.0"));
        let sha = format!("sha256:{}", "0123".repeat(16));
        assert_eq!(
            parts(&format!("r.example.org/a:1@{sha}")),
            p("r.example.org", "a", &sha)
        );
        assert_eq!(
            ImageRef::parse("debian:12").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert_eq!(
            ImageRef::parse(&format!("a@{sha}")).unwrap().pinned(),
            Some(sha.as_str())
        );
        assert_eq!(ImageRef::parse("a:1").unwrap().pinned(), None);
        for bad in ["", "scratch", "Upper/Case", "a:"] {
            assert_eq!(ImageRef::parse(bad), None, "{bad}");
        }
    }

    /// FROM lines are read with the distribution grammar: what Docker would refuse is
    /// no base image to look up (it was taken before: a bad tag, a short digest, a
    /// name over 255 characters, a '-' starting a host).
    #[test]
    fn what_the_grammar_refuses_is_no_reference() {
        for bad in [
            "r.example.org/app:-x".to_string(),
            "app@sha256:0123".into(),
            "r.example.org:99999/app".into(),
            "-r.example.org/app".into(),
            format!("r.example.org/{}", "a".repeat(255)),
        ] {
            assert_eq!(ImageRef::parse(&bad), None, "{bad}");
        }
    }
}
