//! `--executor-engine ephemeral`: the way portainer built, a private build daemon
//! for the one build, with all its state in the task's sandbox, so builds never
//! share a daemon and Mesos's garbage collection of the sandbox removes what a build
//! left. This file decides which daemon and where its socket goes (pure); the
//! process's lifecycle is in [`daemon`].

mod daemon;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use daemon::Ephemeral;

use crate::runner::Builder;
use crate::{Error, Result};

/// The directory in the sandbox that holds the daemon's state, socket and log.
pub const ENGINE_DIR: &str = ".engine";
/// `sun_path` holds 108 bytes with its NUL; stay below that.
const MAX_SOCKET_PATH: usize = 100;

/// Where the executor builds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineMode {
    /// The agent's own daemon (`--agent-docker-host`, `--buildkit-addr`).
    #[default]
    Shared,
    /// A daemon started for the one build in its sandbox, stopped after it.
    Ephemeral,
}

/// The engine flags: given to `slipway watch`/`controller`, passed on as they are to
/// `slipway executor` (paths as the agents see them).
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct EngineArgs {
    /// Where each Mesos build runs: the agent's shared daemon, or a private buildkitd
    /// (or dockerd) started in the task's sandbox for that build and stopped after it.
    #[arg(long = "executor-engine", value_enum, default_value = "shared")]
    pub mode: EngineMode,
    /// buildkitd for an ephemeral engine (default: `buildkitd` on the agent's PATH;
    /// without one, `--builder auto` falls back to dockerd).
    #[arg(long = "executor-buildkitd-bin")]
    pub buildkitd_bin: Option<PathBuf>,
    /// dockerd for an ephemeral engine when buildkitd is not used (default: PATH).
    #[arg(long = "executor-dockerd-bin")]
    pub dockerd_bin: Option<PathBuf>,
    /// Seconds an ephemeral daemon has to answer before the build fails.
    #[arg(long = "executor-engine-timeout", default_value_t = 60)]
    pub start_timeout_secs: u64,
}

impl Default for EngineArgs {
    fn default() -> Self {
        Self {
            mode: EngineMode::Shared,
            buildkitd_bin: None,
            dockerd_bin: None,
            start_timeout_secs: 60,
        }
    }
}

impl EngineArgs {
    /// The same flags for `slipway executor`; nothing when the defaults hold.
    pub fn to_args(&self) -> Vec<String> {
        if self.mode == EngineMode::Shared {
            return Vec::new();
        }
        let mut out = vec!["--executor-engine".to_string(), "ephemeral".to_string()];
        for (flag, p) in [
            ("--executor-buildkitd-bin", &self.buildkitd_bin),
            ("--executor-dockerd-bin", &self.dockerd_bin),
        ] {
            if let Some(p) = p {
                out.extend([flag.to_string(), p.display().to_string()]);
            }
        }
        if self.start_timeout_secs != Self::default().start_timeout_secs {
            out.extend([
                "--executor-engine-timeout".into(),
                self.start_timeout_secs.to_string(),
            ]);
        }
        out
    }

    pub fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.start_timeout_secs)
    }
}

/// Which private daemon to start, and from which binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Daemon {
    Buildkitd(PathBuf),
    Dockerd(PathBuf),
}

impl Daemon {
    pub fn name(&self) -> &'static str {
        match self {
            Daemon::Buildkitd(_) => "buildkitd",
            Daemon::Dockerd(_) => "dockerd",
        }
    }
}

/// buildkitd where the BuildKit engine is asked for (`buildkitd`) or may be used
/// (`auto`, when a buildkitd binary is there); dockerd otherwise (the daemon's own
/// BuildKit or its classic builder). `which` finds a program on PATH.
pub fn choose(
    args: &EngineArgs,
    builder: Builder,
    which: impl Fn(&str) -> Option<PathBuf>,
) -> Result<Daemon> {
    let missing = |what: &str, flag: &str| {
        format!(
            "the ephemeral engine needs {what}, which is not on this agent's PATH (or give {flag})"
        )
    };
    let given = |p: &PathBuf, err: fn(String) -> Error| {
        if p.is_file() {
            Ok(p.clone())
        } else {
            Err(err(format!(
                "the ephemeral engine's binary {} does not exist on this agent",
                p.display()
            )))
        }
    };
    if matches!(builder, Builder::Buildkitd | Builder::Auto) {
        let found = match &args.buildkitd_bin {
            Some(p) => Some(given(p, |m| Error::Buildkit(m.into()))?),
            None => which("buildkitd"),
        };
        match (found, builder) {
            (Some(p), _) => return Ok(Daemon::Buildkitd(p)),
            (None, Builder::Buildkitd) => {
                return Err(Error::Buildkit(
                    missing("buildkitd", "--executor-buildkitd-bin").into(),
                ));
            }
            _ => {}
        }
    }
    let p = match &args.dockerd_bin {
        Some(p) => given(p, |m| Error::Docker(m.into()))?,
        None => which("dockerd")
            .ok_or_else(|| Error::Docker(missing("dockerd", "--executor-dockerd-bin").into()))?,
    };
    Ok(Daemon::Dockerd(p))
}

/// Starts the private daemon `opts` asks for in the sandbox (the working directory)
/// and points `opts` at it instead of the agent's daemon. The build's events say
/// what started and how long it took.
pub async fn start_for(
    opts: &mut super::ExecutorOptions,
    events: &crate::runner::Events,
) -> Result<Ephemeral> {
    let daemon = choose(&opts.engine, opts.builder, which)?;
    let sandbox = std::env::current_dir()?;
    let e = Ephemeral::start(daemon, &opts.engine, &sandbox).await?;
    let _ = events.send(crate::runner::BuildEvent::Step(format!(
        "ephemeral {} ready in {:.2} s (socket {} in the sandbox)",
        e.daemon.name(),
        e.startup.as_secs_f64(),
        e.socket_in_sandbox
    )));
    match e.daemon {
        Daemon::Buildkitd(_) => {
            opts.builder = Builder::Buildkitd;
            opts.buildkitd.addr = Some(e.addr.clone());
            (opts.buildkitd.ca, opts.buildkitd.cert, opts.buildkitd.key) = (None, None, None);
        }
        Daemon::Dockerd(_) => {
            opts.docker_host = Some(e.addr.clone());
            opts.docker_tls = Default::default();
            // `auto` must not wander off to a shared buildkitd
            opts.buildkitd.addr = None;
        }
    }
    Ok(e)
}

/// A program on PATH, as a shell would find it.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The path a socket `dir/name` is bound and dialled at. Mesos sandboxes are too
/// deep for `sun_path`, so a long one is reached through `/proc/self/cwd`, which
/// the daemon and the executor both resolve to the sandbox (their working
/// directory): the socket file itself stays in the sandbox.
pub fn socket_path(dir: &Path, name: &str, cwd: &Path) -> Result<PathBuf> {
    let full = dir.join(name);
    if full.as_os_str().len() <= MAX_SOCKET_PATH {
        return Ok(full);
    }
    let short = full
        .strip_prefix(cwd)
        .ok()
        .map(|rel| Path::new("/proc/self/cwd").join(rel))
        .filter(|p| p.as_os_str().len() <= MAX_SOCKET_PATH);
    short.ok_or_else(|| {
        Error::Io(std::io::Error::other(format!(
            "no socket path under {MAX_SOCKET_PATH} bytes for {}",
            full.display()
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(names: &'static [&'static str]) -> impl Fn(&str) -> Option<PathBuf> {
        move |n| {
            names
                .contains(&n)
                .then(|| PathBuf::from(format!("/usr/bin/{n}")))
        }
    }

    #[test]
    fn buildkitd_where_buildkit_is_in_place_else_dockerd() {
        let a = EngineArgs::default();
        let both = found(&["buildkitd", "dockerd"]);
        let bk = Daemon::Buildkitd("/usr/bin/buildkitd".into());
        let dd = Daemon::Dockerd("/usr/bin/dockerd".into());
        assert_eq!(choose(&a, Builder::Auto, &both).unwrap(), bk);
        assert_eq!(choose(&a, Builder::Buildkitd, &both).unwrap(), bk);
        assert_eq!(choose(&a, Builder::BuildkitDaemon, &both).unwrap(), dd);
        assert_eq!(choose(&a, Builder::Classic, &both).unwrap(), dd);
        // auto without a buildkitd: the daemon's own builder
        assert_eq!(choose(&a, Builder::Auto, found(&["dockerd"])).unwrap(), dd);
    }

    #[test]
    fn a_missing_binary_is_named() {
        let a = EngineArgs::default();
        let e = choose(&a, Builder::Buildkitd, found(&["dockerd"])).unwrap_err();
        assert!(e.to_string().contains("needs buildkitd"), "{e}");
        let e = choose(&a, Builder::Classic, found(&[])).unwrap_err();
        assert!(e.to_string().contains("needs dockerd"), "{e}");
        let a = EngineArgs {
            buildkitd_bin: Some("/nowhere/buildkitd".into()),
            ..Default::default()
        };
        let e = choose(&a, Builder::Auto, found(&["dockerd"])).unwrap_err();
        assert!(
            e.to_string().contains("/nowhere/buildkitd does not exist"),
            "{e}"
        );
    }

    #[test]
    fn a_long_sandbox_gets_its_socket_through_the_working_directory() {
        let cwd = PathBuf::from(format!("/var/lib/mesos/slaves/{}/runs/x", "a".repeat(120)));
        let dir = cwd.join(ENGINE_DIR);
        assert_eq!(
            socket_path(&dir, "buildkitd.sock", &cwd).unwrap(),
            Path::new("/proc/self/cwd/.engine/buildkitd.sock")
        );
        let short = Path::new("/tmp/s/.engine");
        assert_eq!(
            socket_path(short, "d.sock", &cwd).unwrap(),
            Path::new("/tmp/s/.engine/d.sock")
        );
        // long and not under the working directory: no way to keep it in the sandbox
        assert!(socket_path(&dir, "d.sock", Path::new("/elsewhere")).is_err());
    }

    #[test]
    fn the_flags_pass_on_only_when_not_the_default() {
        assert!(EngineArgs::default().to_args().is_empty());
        let a = EngineArgs {
            mode: EngineMode::Ephemeral,
            buildkitd_bin: Some("/opt/bk/buildkitd".into()),
            dockerd_bin: None,
            start_timeout_secs: 20,
        };
        assert_eq!(
            a.to_args(),
            [
                "--executor-engine",
                "ephemeral",
                "--executor-buildkitd-bin",
                "/opt/bk/buildkitd",
                "--executor-engine-timeout",
                "20"
            ]
        );
    }
}
