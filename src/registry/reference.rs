//! Image references as Docker reads them: `debian:12` is
//! `docker.io/library/debian:12`, `host:5000/app` is `host:5000/app:latest`.

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
        let (name, digest) = match r.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (r, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((h, rest)) if is_registry_host(h) => (h, rest),
            _ => ("docker.io", name),
        };
        let registry = match registry {
            "index.docker.io" | "registry-1.docker.io" => "docker.io",
            r => r,
        };
        // a tag follows the last ':' of the path (a port belongs to the host)
        let (repository, tag) = match path.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, Some(t)),
            _ => (path, None),
        };
        let reference = match (digest, tag) {
            (Some(d), _) => d,
            (None, Some(t)) => t,
            (None, None) => "latest",
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        let ok = repository.split('/').all(|part| !part.is_empty())
            && !reference.is_empty()
            && !repository.eq_ignore_ascii_case("library/scratch")
            && repository
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b));
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
        assert_eq!(
            parts("r.example.org/a@sha256:0123"),
            p("r.example.org", "a", "sha256:0123")
        );
        assert_eq!(
            ImageRef::parse("debian:12").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert_eq!(
            ImageRef::parse("a@sha256:0123").unwrap().pinned(),
            Some("sha256:0123")
        );
        assert_eq!(ImageRef::parse("a:1").unwrap().pinned(), None);
        for bad in ["", "scratch", "Upper/Case", "a:"] {
            assert_eq!(ImageRef::parse(bad), None, "{bad}");
        }
    }
}
