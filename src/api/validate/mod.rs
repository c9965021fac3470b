//! Checks a user can act on, made before any build starts.

use super::DockerBuildSpec;
use crate::{Error, Result};

mod buildkit;
pub(super) use buildkit::known_platforms;
pub use buildkit::split_cache_ref;
use buildkit::{validate_cache_ref, validate_platforms, validate_secrets};

// The grammars as regular expressions, for the CRD's CEL rules (admission in
// Kubernetes); the functions below run the same patterns for every source.
use crate::registry::grammar;
pub(super) use crate::registry::grammar::{REGISTRY_RE, REPOSITORY_RE, TAG_RE};
/// A build secret's id, as [`validate_secrets`] reads it.
pub(super) const SECRET_ID_RE: &str = "[A-Za-z0-9._-]+";

/// The spec on its own: exactly one source, well-formed names.
pub fn validate_spec(spec: &DockerBuildSpec) -> Result<()> {
    let s = &spec.source;
    let set: Vec<&str> = [
        ("git", s.git.is_some()),
        ("url", s.url.is_some()),
        ("path", s.path.is_some()),
        ("inline", s.inline.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    match set.len() {
        0 => {
            return Err(Error::InvalidSpec(
                "spec.source needs exactly one of git, url, path, inline; none is set".into(),
            ));
        }
        1 => {}
        _ => {
            return Err(Error::InvalidSpec(format!(
                "spec.source needs exactly one of git, url, path, inline; {} are set",
                set.join(" and ")
            )));
        }
    }
    if let Some(git) = &s.git
        && git.url.trim().is_empty()
    {
        return Err(Error::InvalidSpec("spec.source.git.url is empty".into()));
    }
    if let Some(out) = &spec.output {
        if let Some(r) = &out.registry {
            validate_registry(r)?;
        }
        if let Some(r) = &out.repository {
            validate_repository(r)?;
        }
        for t in &out.tags {
            validate_tag(t)?;
        }
    }
    if let Some(res) = &spec.resources
        && let Some(c) = res.cpus
        && !(c > 0.0 && c.is_finite())
    {
        return Err(Error::InvalidSpec(format!(
            "spec.resources.cpus must be a positive number, got {c}"
        )));
    }
    if spec.timeout_seconds == Some(0) {
        return Err(Error::InvalidSpec(
            "spec.timeoutSeconds must be at least 1".into(),
        ));
    }
    if let Some(c) = &spec.cache {
        validate_cache_ref(&c.reference)?;
    }
    validate_secrets(&spec.secrets)?;
    validate_platforms(&spec.platforms)?;
    validate_triggers(spec)?;
    Ok(())
}

fn validate_triggers(spec: &DockerBuildSpec) -> Result<()> {
    if let Some(n) = spec.history_limit
        && !(1..=super::MAX_HISTORY_LIMIT).contains(&n)
    {
        return Err(Error::InvalidSpec(format!(
            "spec.historyLimit must be between 1 and {}, got {n}",
            super::MAX_HISTORY_LIMIT
        )));
    }
    if let Some(p) = spec.triggers.as_ref().and_then(|t| t.git_poll.as_deref()) {
        super::parse_duration(p)
            .map_err(|e| Error::InvalidSpec(format!("spec.triggers.gitPoll: {e}")))?;
    }
    Ok(())
}

/// `metadata.name` and `metadata.namespace` as the Kubernetes API server checks them
/// (a DNS subdomain and a DNS label, RFC 1123): a watch folder reads names no API
/// server has seen, and `ns/name` keys must not collide (`a` + `b/c` vs `a/b` + `c`).
pub fn validate_metadata(name: &str, namespace: &str) -> Result<()> {
    if !is_dns_subdomain(name) {
        return Err(Error::InvalidSpec(format!(
            "invalid metadata.name '{name}': a name is at most 253 lowercase letters, digits, '-' and '.', and starts and ends with a letter or digit (an RFC 1123 subdomain, as in Kubernetes)"
        )));
    }
    if !is_dns_label(namespace) {
        return Err(Error::InvalidSpec(format!(
            "invalid metadata.namespace '{namespace}': a namespace is at most 63 lowercase letters, digits and '-', and starts and ends with a letter or digit (an RFC 1123 label, as in Kubernetes)"
        )));
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && is_alnum(b[0])
        && is_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_alnum(c) || c == b'-')
}

fn is_dns_subdomain(s: &str) -> bool {
    // each dot-separated part is a label; the whole has its own limit
    s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && is_alnum(b[0])
                && is_alnum(b[b.len() - 1])
                && b.iter().all(|&c| is_alnum(c) || c == b'-')
        })
}

/// The distribution grammar's tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let ok = grammar::is_tag(tag);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "invalid tag '{tag}': a tag is 1 to 128 letters, digits, '_', '.' or '-', and does not start with '.' or '-'"
        )))
    }
}

/// The distribution grammar's repository path: lowercase path components separated
/// by `/`, each made of `[a-z0-9]` runs joined by `.`, `_`, `__` or dashes.
pub fn validate_repository(repo: &str) -> Result<()> {
    if grammar::is_repository(repo) {
        Ok(())
    } else {
        Err(Error::InvalidSpec(format!(
            "invalid repository '{repo}': use lowercase letters, digits and '.', '_', '-' separators, with '/' between path components"
        )))
    }
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// A registry is `host[:port]`: no scheme, no path.
pub fn validate_registry(registry: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidSpec(format!(
            "invalid registry '{registry}': {why} (expected host[:port], such as registry.example.org:5000)"
        )))
    };
    if registry.contains("://") {
        return bad("leave out the scheme");
    }
    if registry.contains('/') {
        return bad("a registry has no path; put it in the repository");
    }
    if grammar::is_registry(registry) {
        return Ok(());
    }
    // say which half is wrong: a ':' outside an IPv6 address's brackets starts the port
    let port = match registry.rsplit_once(']') {
        Some((_, rest)) => rest.strip_prefix(':'),
        None => registry.split_once(':').map(|(_, p)| p),
    };
    if port.is_some_and(|p| !grammar::is_registry(&format!("h:{p}"))) {
        return bad("the port is not a number from 0 to 65535");
    }
    bad(
        "a host name is letters, digits and '-' (not at either end of a part) with '.' between parts, or an IPv6 address in brackets",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BuildSource, InlineSource, Output};

    fn inline_spec() -> DockerBuildSpec {
        DockerBuildSpec {
            source: BuildSource {
                inline: Some(InlineSource {
                    dockerfile: "FROM scratch".into(),
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn exactly_one_source() {
        let mut spec = inline_spec();
        assert!(validate_spec(&spec).is_ok());
        spec.source.path = Some("ctx".into());
        let err = validate_spec(&spec).unwrap_err().to_string();
        assert!(err.contains("path and inline are set"), "{err}");
        spec.source = BuildSource::default();
        let err = validate_spec(&spec).unwrap_err().to_string();
        assert!(err.contains("none is set"), "{err}");
    }

    #[test]
    fn tags() {
        for ok in ["latest", "1.2", "v1.2.3-rc_1", "_x"] {
            assert!(validate_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", &"x".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repositories() {
        for ok in ["wiki/gollum", "a", "a.b_c__d---e/f", "library/busybox"] {
            assert!(validate_repository(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Wiki/gollum", "a//b", "-a", "a_", "a..b", "a:b", "/a"] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn registries() {
        for ok in [
            "registry.example.org:5000",
            "127.0.0.1:5000",
            "localhost",
            "[::1]:5000",
        ] {
            assert!(validate_registry(ok).is_ok(), "{ok}");
        }
        // "-r.example.org" and "[::1" were taken here while the Dockerfile's
        // REGISTRY line refused the one and the CRD's rule the other
        for bad in [
            "http://r:5000",
            "r:5000/x",
            "r:port",
            "r o",
            "-r.example.org",
            "r-.example.org",
            "[::1",
            "r:65536",
        ] {
            assert!(validate_registry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_namespaces_as_kubernetes_checks_them() {
        for ok in ["a", "web-1", "team.app", "x0", &"a".repeat(253)] {
            assert!(validate_metadata(ok, "default").is_ok(), "{ok}");
        }
        let long_label = "a".repeat(64);
        for bad in [
            "",
            "b/c",
            "Web",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a_b",
            &"a".repeat(254),
        ] {
            let err = validate_metadata(bad, "default").unwrap_err();
            assert!(matches!(err, Error::InvalidSpec(_)), "{bad}");
            assert!(err.to_string().contains("metadata.name"), "{err}");
        }
        // a namespace is a label: no dots, at most 63
        for bad in ["a/b", "a.b", "", "A", long_label.as_str()] {
            let err = validate_metadata("c", bad).unwrap_err().to_string();
            assert!(err.contains("metadata.namespace"), "{bad}: {err}");
        }
        assert!(validate_metadata("c", &"a".repeat(63)).is_ok());
    }

    #[test]
    fn bad_tag_in_spec_is_named() {
        let mut spec = inline_spec();
        spec.output = Some(Output {
            tags: vec!["ok".into(), "no good".into()],
            ..Default::default()
        });
        let err = validate_spec(&spec).unwrap_err().to_string();
        assert!(err.contains("'no good'"), "{err}");
    }
}
