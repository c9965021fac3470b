//! Which builder runs the Dockerfile: the Docker daemon's embedded BuildKit, or the
//! classic builder. Every backend asks the runner, so the choice is made here once.

use crate::{Error, Result};

/// What `--builder` asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Builder {
    /// The Docker daemon's BuildKit when the daemon has it, else the classic builder.
    #[default]
    Auto,
    /// The Docker daemon's embedded BuildKit (`docker build` with BuildKit).
    BuildkitDaemon,
    /// A standalone buildkitd (not available yet).
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

/// The builder a runner actually uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    BuildkitDaemon,
    Classic,
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
            "--builder buildkitd is not available yet: use auto, buildkit-daemon or classic".into(),
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
        let later = choose(Builder::Buildkitd, Some("linux"), Some("1.41")).unwrap_err();
        assert!(later.to_string().contains("not available yet"), "{later}");
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
