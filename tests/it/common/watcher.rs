//! `slipway watch` run as a user runs it, and the resource files it writes to.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{status_in, wait_for};

pub const LONG: Duration = Duration::from_secs(90);

/// A running `slipway watch`, stopped when dropped.
pub struct Watcher {
    pub child: Child,
    log: std::path::PathBuf,
    _logdir: tempfile::TempDir,
}

impl Watcher {
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_in(Path::new("."), dir, extra)
    }

    /// Started from `cwd`, so `dir` may be relative as a user would type it.
    pub fn start_in(cwd: &Path, dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(cwd, dir, extra, &[])
    }

    /// With `envs` set for slipway (a PATH with test tools first, say).
    pub fn start_with_env(cwd: &Path, dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Self {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("slipway.log");
        let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .current_dir(cwd)
            .arg("watch")
            .arg(dir)
            .args([
                "--retry-backoff",
                "100ms",
                "--max-attempts",
                "2",
                "--concurrency",
                "3",
            ])
            .args(extra)
            .env("SLIPWAY_LOG", "debug")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("slipway starts");
        Self {
            child,
            log,
            _logdir: logdir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn doc(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata:\n  name: {name}\n  namespace: tests\nspec:\n{spec}"
    )
}

pub fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

pub async fn phase_of(file: &Path, name: &str, want: &str) -> serde_json::Value {
    wait_for(
        &format!("{name} in {} to reach {want}", file.display()),
        LONG,
        || status_in(file, name).filter(|s| s["phase"] == want),
    )
    .await
}
