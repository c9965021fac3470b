//! Checks of the fields only BuildKit engines honour: `spec.cache`, `spec.secrets`,
//! `spec.platforms`.

use std::collections::BTreeSet;

use super::{validate_registry, validate_repository, validate_tag};
use crate::api::BuildSecret;
use crate::registry::is_registry_host;
use crate::{Error, Result};

/// An architecture and its variants.
type Arch = (&'static str, &'static [&'static str]);

/// The platforms a BuildKit build may name, as `docker buildx` and containerd
/// normalise them: (os, architectures with their variants).
const PLATFORMS: [(&str, &[Arch]); 2] = [
    (
        "linux",
        &[
            ("386", &[]),
            ("amd64", &["v2", "v3", "v4"]),
            ("arm", &["v5", "v6", "v7"]),
            ("arm64", &["v8"]),
            ("loong64", &[]),
            ("mips64le", &[]),
            ("ppc64le", &[]),
            ("riscv64", &[]),
            ("s390x", &[]),
        ],
    ),
    ("windows", &[("amd64", &[]), ("arm64", &[])]),
];

/// `spec.cache.ref`: `registry/repository[:tag]`, naming its registry (a cache
/// pushed to Docker Hub by accident is not what anyone meant).
pub(super) fn validate_cache_ref(r: &str) -> Result<()> {
    let bad = |why: String| {
        Err(Error::InvalidSpec(format!(
            "invalid spec.cache.ref '{r}': {why} (expected registry/repository[:tag], such as registry.example.org:5000/app:buildcache)"
        )))
    };
    if r.contains('@') {
        return bad("a cache is stored under a tag, not a digest".into());
    }
    let Some((host, repo, tag)) = split_cache_ref(r) else {
        return bad("it does not start with a registry host".into());
    };
    let checked = validate_registry(host)
        .and_then(|_| validate_repository(repo))
        .and_then(|_| validate_tag(tag));
    match checked {
        Err(e) => bad(e.detail()),
        Ok(()) => Ok(()),
    }
}

/// `registry/repository[:tag]` as (registry, repository, tag), the tag `latest` when
/// absent; None when it does not start with a registry host.
pub fn split_cache_ref(r: &str) -> Option<(&str, &str, &str)> {
    let (host, rest) = r.split_once('/').filter(|(h, _)| is_registry_host(h))?;
    Some(match rest.rsplit_once(':') {
        Some((repo, tag)) => (host, repo, tag),
        None => (host, rest, "latest"),
    })
}

/// `spec.secrets`: unique ids of `[A-Za-z0-9._-]`, each with one source.
pub(super) fn validate_secrets(secrets: &[BuildSecret]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (i, s) in secrets.iter().enumerate() {
        let id = &s.id;
        if id.is_empty() {
            return Err(Error::InvalidSpec(format!(
                "spec.secrets[{i}].id is empty; name the id the Dockerfile's RUN --mount=type=secret,id=... uses"
            )));
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(Error::InvalidSpec(format!(
                "invalid spec.secrets id '{id}': an id is letters, digits, '.', '_' and '-'"
            )));
        }
        if !seen.insert(id.as_str()) {
            return Err(Error::InvalidSpec(format!(
                "spec.secrets id '{id}' appears more than once; each secret needs its own id"
            )));
        }
        match (&s.secret_ref, &s.file) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidSpec(format!(
                    "spec.secrets '{id}' needs exactly one of secretRef (Kubernetes) and file (watch folder); both are set"
                )));
            }
            (None, None) => {
                return Err(Error::InvalidSpec(format!(
                    "spec.secrets '{id}' needs exactly one of secretRef (Kubernetes) and file (watch folder); none is set"
                )));
            }
            (Some(r), None) if r.name.is_empty() || r.key.is_empty() => {
                return Err(Error::InvalidSpec(format!(
                    "spec.secrets '{id}': secretRef needs both name and key"
                )));
            }
            (None, Some(f)) if f.is_empty() => {
                return Err(Error::InvalidSpec(format!(
                    "spec.secrets '{id}': file is empty"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// `spec.platforms`: `os/arch[/variant]` that BuildKit knows, each once.
pub(super) fn validate_platforms(platforms: &[String]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for p in platforms {
        if !known_platforms().any(|k| &k == p) {
            let mut parts = p.split('/');
            let (os, arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let why = match PLATFORMS.iter().find(|(o, _)| *o == os) {
                None => format!(
                    "unknown operating system '{os}' (known: {})",
                    PLATFORMS.map(|(o, _)| o).join(", ")
                ),
                Some((_, arches)) => match arches.iter().find(|(a, _)| *a == arch) {
                    None if arch.is_empty() => format!(
                        "no architecture after '{os}/' (known for {os}: {})",
                        arches
                            .iter()
                            .map(|(a, _)| *a)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => format!(
                        "unknown architecture '{arch}' for {os} (known: {})",
                        arches
                            .iter()
                            .map(|(a, _)| *a)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Some((_, [])) => format!("{os}/{arch} has no variants"),
                    Some((_, variants)) => {
                        format!("the variants of {os}/{arch} are {}", variants.join(", "))
                    }
                },
            };
            return Err(Error::InvalidSpec(format!(
                "invalid platform '{p}' in spec.platforms: {why}; a platform is os/arch[/variant], such as linux/amd64 or linux/arm/v7"
            )));
        }
        if !seen.insert(p.as_str()) {
            return Err(Error::InvalidSpec(format!(
                "spec.platforms lists '{p}' more than once"
            )));
        }
    }
    Ok(())
}

/// Every `os/arch[/variant]` [`validate_platforms`] accepts (also the CRD's list).
pub(in crate::api) fn known_platforms() -> impl Iterator<Item = String> {
    PLATFORMS.into_iter().flat_map(|(os, arches)| {
        arches.iter().flat_map(move |(arch, variants)| {
            std::iter::once(format!("{os}/{arch}"))
                .chain(variants.iter().map(move |v| format!("{os}/{arch}/{v}")))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::validate::validate_spec;
    use crate::api::{BuildSource, DockerBuildSpec, InlineSource};

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

    /// The message a user sees for `yaml` (the spec's BuildKit fields), or None.
    fn seen(yaml: &str) -> Option<String> {
        let mut spec = inline_spec();
        let extra: DockerBuildSpec = crate::yaml::from_str(&format!(
            "source: {{inline: {{dockerfile: FROM scratch}}}}\n{yaml}"
        ))
        .expect("test yaml");
        (spec.cache, spec.secrets, spec.platforms) = (extra.cache, extra.secrets, extra.platforms);
        validate_spec(&spec).err().map(|e| {
            assert!(matches!(e, Error::InvalidSpec(_)), "{e:?}");
            e.to_string()
        })
    }

    #[test]
    fn cache_ref_names_a_registry_repository_and_tag() {
        for ok in [
            "registry.example.org:5000/app:buildcache",
            "127.0.0.1:5055/team/app",
            "localhost/app:cache",
            "[::1]:5000/app:c",
        ] {
            assert_eq!(seen(&format!("cache: {{ref: '{ok}'}}")), None, "{ok}");
        }
        let expected = "(expected registry/repository[:tag], such as registry.example.org:5000/app:buildcache)";
        for (bad, why) in [
            ("app:buildcache", "it does not start with a registry host"),
            (
                "library/app:cache",
                "it does not start with a registry host",
            ),
            (
                "reg.example.org/App:cache",
                "invalid repository 'App': use lowercase letters, digits and '.', '_', '-' separators, with '/' between path components",
            ),
            (
                "reg.example.org/app:-x",
                "invalid tag '-x': a tag is 1 to 128 letters, digits, '_', '.' or '-', and does not start with '.' or '-'",
            ),
            (
                "reg.example.org:port/app",
                "invalid registry 'reg.example.org:port': the port is not a number from 0 to 65535 (expected host[:port], such as registry.example.org:5000)",
            ),
            (
                "reg.example.org/app@sha256:00",
                "a cache is stored under a tag, not a digest",
            ),
        ] {
            assert_eq!(
                seen(&format!("cache: {{ref: '{bad}'}}")).as_deref(),
                Some(format!("invalid spec.cache.ref '{bad}': {why} {expected}").as_str()),
            );
        }
    }

    #[test]
    fn secrets_have_unique_ids_and_one_source() {
        assert_eq!(
            seen(
                "secrets: [{id: npm.token_1-x, file: npm}, {id: pip, secretRef: {name: s, key: k}}]"
            ),
            None
        );
        for (yaml, message) in [
            (
                "secrets: [{id: '', file: f}]",
                "spec.secrets[0].id is empty; name the id the Dockerfile's RUN --mount=type=secret,id=... uses",
            ),
            (
                "secrets: [{id: 'npm token', file: f}]",
                "invalid spec.secrets id 'npm token': an id is letters, digits, '.', '_' and '-'",
            ),
            (
                "secrets: [{id: npm, file: a}, {id: npm, file: b}]",
                "spec.secrets id 'npm' appears more than once; each secret needs its own id",
            ),
            (
                "secrets: [{id: npm}]",
                "spec.secrets 'npm' needs exactly one of secretRef (Kubernetes) and file (watch folder); none is set",
            ),
            (
                "secrets: [{id: npm, file: f, secretRef: {name: s, key: k}}]",
                "spec.secrets 'npm' needs exactly one of secretRef (Kubernetes) and file (watch folder); both are set",
            ),
            (
                "secrets: [{id: npm, secretRef: {name: s, key: ''}}]",
                "spec.secrets 'npm': secretRef needs both name and key",
            ),
        ] {
            assert_eq!(seen(yaml).as_deref(), Some(message), "{yaml}");
        }
    }

    #[test]
    fn platforms_are_known_and_listed_once() {
        assert_eq!(
            seen("platforms: [linux/amd64, linux/386, linux/arm/v7, windows/amd64]"),
            None
        );
        let such_as = "a platform is os/arch[/variant], such as linux/amd64 or linux/arm/v7";
        for (p, why) in [
            (
                "linux/amd65",
                "unknown architecture 'amd65' for linux (known: 386, amd64, arm, arm64, loong64, mips64le, ppc64le, riscv64, s390x)",
            ),
            (
                "linux",
                "no architecture after 'linux/' (known for linux: 386, amd64, arm, arm64, loong64, mips64le, ppc64le, riscv64, s390x)",
            ),
            (
                "Linux/amd64",
                "unknown operating system 'Linux' (known: linux, windows)",
            ),
            ("linux/arm/v9", "the variants of linux/arm are v5, v6, v7"),
            ("linux/386/v2", "linux/386 has no variants"),
        ] {
            assert_eq!(
                seen(&format!("platforms: ['{p}']")).as_deref(),
                Some(
                    format!("invalid platform '{p}' in spec.platforms: {why}; {such_as}").as_str()
                ),
            );
        }
        assert_eq!(
            seen("platforms: [linux/amd64, linux/386, linux/amd64]").as_deref(),
            Some("spec.platforms lists 'linux/amd64' more than once")
        );
    }
}
