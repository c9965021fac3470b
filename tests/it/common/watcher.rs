//! `slipway watch` run as a user runs it, and the resource files it writes to.

use std::path::Path;
use std::time::Duration;

use super::process::{Process, slipway_cmd};
use super::{status_in, wait_for};

pub const LONG: Duration = Duration::from_secs(90);

/// A running `slipway watch` (a [`Process`]), stopped when dropped.
pub struct Watcher(Process);

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
        let mut cmd = slipway_cmd();
        cmd.current_dir(cwd)
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
            .envs(envs.iter().copied());
        Self(Process::spawn("slipway watch", cmd))
    }

    pub fn stop(&mut self) {
        self.0.kill();
    }

    /// Until it has read the folder and watches it.
    pub async fn synced(&self) {
        wait_for("the watcher to sync", LONG, || {
            self.log().contains("watching for changes").then_some(())
        })
        .await;
    }
}

impl std::ops::Deref for Watcher {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.0
    }
}

impl std::ops::DerefMut for Watcher {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.0
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

/// `slipway watch --once EXTRA DIR`, run to its end.
pub fn watch_once(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.args(["watch", "--once"]).args(extra).arg(dir);
    cmd.output().unwrap()
}

/// `slipway logs ARGS -n tests --dir DIR`: exit code, stdout, stderr.
pub fn logs(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("logs")
        .args(args)
        .args(["-n", "tests", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
