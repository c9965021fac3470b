//! Which builder runs the Dockerfile: a standalone buildkitd, the Docker daemon's
//! embedded BuildKit, or the classic builder. Every backend asks the runner, so the
//! choice is made here once.

use std::path::PathBuf;

use crate::api::{CacheMode, CacheSpec, DockerBuildSpec};
use crate::{Error, Result};

/// What `--builder` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Builder {
    /// The Docker daemon's BuildKit when the daemon has it, else the classic builder.
    #[default]
    Auto,
    /// The Docker daemon's embedded BuildKit (`docker build` with BuildKit).
    BuildkitDaemon,
    /// A standalone buildkitd at `--buildkit-addr` (no Docker daemon needed).
    Buildkitd,
    /// The Docker daemon's classic builder (deprecated by Docker since 23.0).
    Classic,
}

impl Builder {
    /// The flag's spelling, e.g. to pass the choice on to a Mesos executor.
    pub fn as_arg(self) -> &'static str {
        match self {
            Builder::Auto => "auto",
            Builder::BuildkitDaemon => "buildkit-daemon",
            Builder::Buildkitd => "buildkitd",
            Builder::Classic => "classic",
        }
    }
}

impl std::str::FromStr for Builder {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        <Self as clap::ValueEnum>::from_str(s, true)
    }
}

/// Where a standalone buildkitd listens, and the client certificate for mutual TLS
/// (spelled as buildctl spells them).
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct BuildkitdArgs {
    /// buildkitd address: tcp://HOST:PORT or unix:///path. Given, `--builder auto`
    /// builds there.
    #[arg(long = "buildkit-addr", env = "BUILDKIT_HOST")]
    pub addr: Option<String>,
    /// CA certificate (PEM) that signed buildkitd's server certificate (tcp).
    #[arg(long = "buildkit-ca")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS with buildkitd (tcp).
    #[arg(long = "buildkit-cert")]
    pub cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long = "buildkit-key")]
    pub key: Option<PathBuf>,
    /// A registry cache for every BuildKit build without `spec.cache`: this tag of the
    /// build's own repository (`--default-cache-ref buildcache` caches reg/app's
    /// builds in reg/app:buildcache), mode min.
    #[arg(long = "default-cache-ref", env = "SLIPWAY_DEFAULT_CACHE_REF", value_parser = parse_cache_tag)]
    pub default_cache_ref: Option<String>,
}

fn parse_cache_tag(tag: &str) -> std::result::Result<String, String> {
    crate::api::validate_tag(tag)
        .map(|_| tag.to_string())
        .map_err(|e| format!("{} (a tag such as buildcache)", e.detail()))
}

/// The cache a build uses: its own `spec.cache`, else `--default-cache-ref`'s tag of
/// its repository on a BuildKit engine (the classic builder has no cache to share).
pub fn default_cache(
    engine: Engine,
    spec: &DockerBuildSpec,
    default_tag: Option<&str>,
    target: &crate::runner::Resolved,
) -> Option<CacheSpec> {
    if spec.cache.is_some() || engine == Engine::Classic {
        return None;
    }
    Some(CacheSpec {
        reference: format!("{}:{}", target.name(), default_tag?),
        mode: CacheMode::Min,
    })
}

impl BuildkitdArgs {
    /// The flags again, to pass the choice on to a Mesos executor (paths as given:
    /// they must exist on the agent).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(a) = &self.addr {
            out.extend(["--buildkit-addr".into(), a.clone()]);
        }
        for (flag, p) in [
            ("--buildkit-ca", &self.ca),
            ("--buildkit-cert", &self.cert),
            ("--buildkit-key", &self.key),
        ] {
            if let Some(p) = p {
                out.extend([flag.to_string(), p.display().to_string()]);
            }
        }
        if let Some(t) = &self.default_cache_ref {
            out.extend(["--default-cache-ref".into(), t.clone()]);
        }
        out
    }
}

/// The builder a runner actually uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Buildkitd,
    BuildkitDaemon,
    Classic,
}

/// The engine decided without asking the Docker daemon anything: a buildkitd when one
/// is asked for or given (`auto` with an address), classic when named. None: ask the
/// daemon (see [`choose`]).
pub fn without_docker(asked: Builder, buildkitd_addr: Option<&str>) -> Result<Option<Engine>> {
    match (asked, buildkitd_addr) {
        (Builder::Buildkitd | Builder::Auto, Some(_)) => Ok(Some(Engine::Buildkitd)),
        (Builder::Buildkitd, None) => Err(Error::InvalidSpec(
            "--builder buildkitd needs --buildkit-addr tcp://HOST:PORT or unix:///path (or BUILDKIT_HOST)".into(),
        )),
        (Builder::Classic, _) => Ok(Some(Engine::Classic)),
        _ => Ok(None),
    }
}

/// Refuses spec fields the engine cannot honour, naming the field and the builder
/// that can, rather than building something other than what was asked.
pub fn check_spec(engine: Engine, spec: &DockerBuildSpec) -> Result<()> {
    let name = match engine {
        Engine::Buildkitd => return Ok(()),
        Engine::BuildkitDaemon => "the Docker daemon's BuildKit",
        Engine::Classic => "the classic builder",
    };
    // the daemon's BuildKit embeds a min-mode cache in the image (inline cache)
    let inline = engine == Engine::BuildkitDaemon;
    let unsupported = [
        (
            "spec.cache",
            spec.cache
                .as_ref()
                .is_some_and(|c| !inline || c.mode == CacheMode::Max),
        ),
        ("spec.secrets", !spec.secrets.is_empty()),
        (
            "spec.attest",
            spec.attest.as_ref().is_some_and(|a| a.provenance.is_some()),
        ),
        ("spec.platforms", !spec.platforms.is_empty()),
    ];
    match unsupported.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(Error::InvalidSpec(format!(
            "{field}{} needs a standalone buildkitd (--builder buildkitd --buildkit-addr ...); {name} cannot honour it",
            if *field == "spec.cache" && inline {
                " with mode max"
            } else {
                ""
            }
        ))),
        None => Ok(()),
    }
}

/// The daemon API version from which `POST /build?version=2` with a session is
/// supported without the experimental flag (Docker 18.09).
const BUILDKIT_MIN_API: (u64, u64) = (1, 39);

/// Decides the engine from what the daemon says about itself (`GET /version`: its
/// OS and API version). With `auto`, also the reason to log when it falls back.
pub fn choose(
    asked: Builder,
    os: Option<&str>,
    api_version: Option<&str>,
) -> Result<(Engine, Option<String>)> {
    let linux = os.is_none_or(|o| o.eq_ignore_ascii_case("linux"));
    let api = api_version.and_then(parse_api);
    let recent = api.is_some_and(|v| v >= BUILDKIT_MIN_API);
    let missing = || {
        if !linux {
            format!(
                "the Docker daemon runs on {} and has no BuildKit",
                os.unwrap_or("?")
            )
        } else {
            format!(
                "the Docker daemon's API version {} is older than {}.{} (Docker 18.09), which BuildKit needs",
                api_version.unwrap_or("(unknown)"),
                BUILDKIT_MIN_API.0,
                BUILDKIT_MIN_API.1
            )
        }
    };
    match asked {
        Builder::Classic => Ok((Engine::Classic, None)),
        Builder::Buildkitd => Err(Error::InvalidSpec(
            "--builder buildkitd needs --buildkit-addr tcp://HOST:PORT or unix:///path".into(),
        )),
        Builder::BuildkitDaemon if linux && recent => Ok((Engine::BuildkitDaemon, None)),
        Builder::BuildkitDaemon => Err(Error::InvalidSpec(format!(
            "--builder buildkit-daemon: {}",
            missing()
        ))),
        Builder::Auto if linux && recent => Ok((Engine::BuildkitDaemon, None)),
        Builder::Auto => Ok((
            Engine::Classic,
            Some(format!("{}; building with the classic builder", missing())),
        )),
    }
}

/// "1.41" → (1, 41).
fn parse_api(v: &str) -> Option<(u64, u64)> {
    let (major, minor) = v.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_the_daemons_buildkit_when_it_has_one() {
        let (e, note) = choose(Builder::Auto, Some("linux"), Some("1.41")).unwrap();
        assert_eq!(e, Engine::BuildkitDaemon);
        assert!(note.is_none());
        // 1.100 is newer than 1.39, not older
        assert_eq!(
            choose(Builder::Auto, Some("linux"), Some("1.100"))
                .unwrap()
                .0,
            Engine::BuildkitDaemon
        );
    }

    #[test]
    fn auto_falls_back_to_classic_and_says_why() {
        let (e, note) = choose(Builder::Auto, Some("linux"), Some("1.38")).unwrap();
        assert_eq!(e, Engine::Classic);
        assert!(note.unwrap().contains("1.38 is older than 1.39"));
        let (e, note) = choose(Builder::Auto, Some("windows"), Some("1.41")).unwrap();
        assert_eq!(e, Engine::Classic);
        assert!(note.unwrap().contains("windows"));
    }

    #[test]
    fn explicit_choices_are_kept_or_refused_clearly() {
        assert_eq!(
            choose(Builder::Classic, Some("linux"), Some("1.41"))
                .unwrap()
                .0,
            Engine::Classic
        );
        let old = choose(Builder::BuildkitDaemon, Some("linux"), Some("1.30")).unwrap_err();
        assert!(old.to_string().contains("buildkit-daemon"), "{old}");
        assert!(!old.is_retryable());
    }

    #[test]
    fn a_buildkitd_address_decides_without_the_docker_daemon() {
        let addr = Some("tcp://127.0.0.1:1234");
        assert_eq!(
            without_docker(Builder::Auto, addr).unwrap(),
            Some(Engine::Buildkitd)
        );
        assert_eq!(
            without_docker(Builder::Buildkitd, addr).unwrap(),
            Some(Engine::Buildkitd)
        );
        // auto without an address asks the daemon; classic is classic even with one
        assert_eq!(without_docker(Builder::Auto, None).unwrap(), None);
        assert_eq!(
            without_docker(Builder::Classic, addr).unwrap(),
            Some(Engine::Classic)
        );
        assert_eq!(without_docker(Builder::BuildkitDaemon, addr).unwrap(), None);
        let e = without_docker(Builder::Buildkitd, None).unwrap_err();
        assert!(e.to_string().contains("--buildkit-addr"), "{e}");
        assert!(!e.is_retryable());
    }

    #[test]
    fn buildkitd_flags_pass_on_as_given() {
        let a = BuildkitdArgs {
            addr: Some("tcp://bk:1234".into()),
            ca: Some("/etc/bk/ca.pem".into()),
            cert: None,
            key: Some("/etc/bk/key.pem".into()),
            default_cache_ref: Some("buildcache".into()),
        };
        assert_eq!(
            a.to_args(),
            [
                "--buildkit-addr",
                "tcp://bk:1234",
                "--buildkit-ca",
                "/etc/bk/ca.pem",
                "--buildkit-key",
                "/etc/bk/key.pem",
                "--default-cache-ref",
                "buildcache"
            ]
        );
        assert!(BuildkitdArgs::default().to_args().is_empty());
    }

    #[test]
    fn buildkitd_only_fields_are_refused_elsewhere_by_name() {
        let spec = |yaml: &str| -> DockerBuildSpec {
            crate::yaml::from_str(&format!("source: {{path: .}}\n{yaml}")).unwrap()
        };
        for (yaml, field) in [
            ("cache: {ref: 'r/a:cache', mode: max}", "spec.cache"),
            ("secrets: [{id: tok, file: t}]", "spec.secrets"),
            ("attest: {provenance: max}", "spec.attest"),
            ("platforms: [linux/386]", "spec.platforms"),
        ] {
            let s = spec(yaml);
            check_spec(Engine::Buildkitd, &s).unwrap();
            for engine in [Engine::BuildkitDaemon, Engine::Classic] {
                let e = check_spec(engine, &s).unwrap_err();
                assert!(matches!(e, Error::InvalidSpec(_)), "{e:?}");
                let msg = e.to_string();
                assert!(msg.starts_with(field), "{msg}");
                assert!(msg.contains("--builder buildkitd"), "{msg}");
            }
        }
        check_spec(Engine::Classic, &spec("")).unwrap();
        // a min-mode cache rides inline in the image on the daemon's BuildKit
        let min = spec("cache: {ref: 'r/a:cache'}");
        check_spec(Engine::BuildkitDaemon, &min).unwrap();
        let e = check_spec(Engine::Classic, &min).unwrap_err().to_string();
        assert!(e.starts_with("spec.cache needs"), "{e}");
        let e = check_spec(
            Engine::BuildkitDaemon,
            &spec("cache: {ref: 'r/a:cache', mode: max}"),
        );
        assert!(
            e.unwrap_err()
                .to_string()
                .starts_with("spec.cache with mode max needs")
        );
    }

    #[test]
    fn a_default_cache_ref_names_a_tag_of_each_builds_own_repository() {
        let target = crate::runner::Resolved {
            registry: "r:5000".into(),
            repository: "team/app".into(),
            tags: vec!["latest".into()],
            cpus: None,
            mem_mib: None,
        };
        let plain = DockerBuildSpec::default();
        let c = default_cache(Engine::Buildkitd, &plain, Some("buildcache"), &target).unwrap();
        assert_eq!(c.reference, "r:5000/team/app:buildcache");
        assert_eq!(c.mode, CacheMode::Min);
        assert!(default_cache(Engine::BuildkitDaemon, &plain, Some("bc"), &target).is_some());
        // no flag, the classic builder, or the spec's own cache: nothing added
        assert!(default_cache(Engine::Buildkitd, &plain, None, &target).is_none());
        assert!(default_cache(Engine::Classic, &plain, Some("bc"), &target).is_none());
        let own = DockerBuildSpec {
            cache: Some(CacheSpec::default()),
            ..Default::default()
        };
        assert!(default_cache(Engine::Buildkitd, &own, Some("bc"), &target).is_none());
        assert!(parse_cache_tag("not a tag").is_err());
    }

    #[test]
    fn flag_spellings_round_trip() {
        for b in [
            Builder::Auto,
            Builder::BuildkitDaemon,
            Builder::Buildkitd,
            Builder::Classic,
        ] {
            assert_eq!(b.as_arg().parse::<Builder>().unwrap(), b);
        }
    }
}
