//! The engines the bench compares, their reference commands, and process helpers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A buildkitd reached over mutual TLS: its address and the dir holding
/// ca.pem/cert.pem/key.pem (as scripts/buildkitd.sh lays it out).
#[derive(Clone)]
pub struct Buildkitd {
    pub addr: String,
    pub dir: PathBuf,
    /// Started by the bench (stopped by it too).
    own: bool,
}

impl Buildkitd {
    /// The shared one scripts/bench.sh starts.
    pub fn from_env() -> Option<Self> {
        Some(Self {
            addr: std::env::var("SLIPWAY_TEST_BUILDKIT_ADDR").ok()?,
            dir: std::env::var_os("SLIPWAY_TEST_BUILDKIT_DIR")?.into(),
            own: false,
        })
    }

    /// A new buildkitd with an empty state dir: another machine.
    pub fn start_empty() -> Self {
        let dir = std::env::temp_dir().join(format!("slipway-bench-bk-{}", std::process::id()));
        let out = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/buildkitd.sh"))
            .args(["start", "--dir"])
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "a second buildkitd did not start");
        let addr = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .to_string();
        Self {
            addr,
            dir,
            own: true,
        }
    }

    pub fn stop(self) {
        if self.own {
            run(Command::new("bash")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/buildkitd.sh"))
                .args(["stop", "--dir"])
                .arg(&self.dir));
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn pem(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

pub enum Engine {
    Classic,
    BuildkitDaemon,
    Buildkitd(Buildkitd),
}

impl Engine {
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Classic => "classic",
            Engine::BuildkitDaemon => "buildkit-daemon",
            Engine::Buildkitd(_) => "buildkitd",
        }
    }

    /// What a person would run by hand to build `ctx` and push `image`.
    pub fn reference(&self, ctx: &Path, image: &str, no_cache: bool) -> Vec<Command> {
        let docker = |buildkit: &str| {
            let mut build = Command::new(docker_client());
            build
                .env("DOCKER_BUILDKIT", buildkit)
                .args(["build", "-q", "-t", image]);
            if buildkit == "1" {
                build.args(["--network", "host"]);
            }
            if no_cache {
                build.arg("--no-cache");
            }
            build.arg(ctx);
            let mut push = Command::new(docker_client());
            push.args(["push", "-q", image]);
            vec![build, push]
        };
        match self {
            Engine::Classic => docker("0"),
            Engine::BuildkitDaemon => docker("1"),
            Engine::Buildkitd(b) => {
                let bin = std::env::var("SLIPWAY_BUILDKIT_BIN").expect("SLIPWAY_BUILDKIT_BIN");
                let mut c = Command::new(Path::new(&bin).join("buildctl"));
                c.args(["--addr", &b.addr, "--tlscacert", &b.pem("ca.pem")])
                    .args([
                        "--tlscert",
                        &b.pem("cert.pem"),
                        "--tlskey",
                        &b.pem("key.pem"),
                    ])
                    .args([
                        "build",
                        "--frontend",
                        "dockerfile.v0",
                        "--progress",
                        "quiet",
                    ])
                    .arg(format!("--local=context={}", ctx.display()))
                    .arg(format!("--local=dockerfile={}", ctx.display()))
                    .arg(format!(
                        "--output=type=image,name={image},push=true,registry.insecure=true"
                    ));
                if no_cache {
                    c.arg("--no-cache");
                }
                vec![c]
            }
        }
    }

    /// `slipway build FILE` with this engine chosen.
    pub fn slipway(&self, bin: &Path, file: &Path) -> Command {
        let mut c = Command::new(bin);
        c.arg("build").arg(file).args(["--builder", self.name()]);
        if let Engine::Buildkitd(b) = self {
            c.args(["--buildkit-addr", &b.addr])
                .args(["--buildkit-ca", &b.pem("ca.pem")])
                .args(["--buildkit-cert", &b.pem("cert.pem")])
                .args(["--buildkit-key", &b.pem("key.pem")]);
        }
        c
    }
}

pub use crate::support::fixture::docker as docker_client;

pub fn run(cmd: &mut Command) {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs and returns the child's peak resident set (VmHWM, KiB), sampled until exit.
pub fn run_measured(cmd: &mut Command) -> u64 {
    // a file, not a pipe: nobody reads a pipe while the build runs
    let mut log = tempfile::tempfile().unwrap();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(log.try_clone().unwrap())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_path)
            && let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            if !status.success() {
                use std::io::{Read, Seek};
                let mut said = String::new();
                log.rewind().unwrap();
                log.read_to_string(&mut said).unwrap();
                panic!("{cmd:?} failed: {said}");
            }
            return peak;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}
