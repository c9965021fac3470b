//! The one harness for long-running processes the tests start (`slipway watch`,
//! `slipway controller`, servers): stderr kept in a log file for assertions, the
//! process killed and reaped on drop, and the log's tail printed when the test
//! failed.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The slipway binary under test, with its debug log on and no `RUST_LOG` from the
/// test host.
pub fn slipway_cmd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
    cmd.env("SLIPWAY_LOG", "debug").env_remove("RUST_LOG");
    cmd
}

/// A running child process, stopped when dropped.
pub struct Process {
    pub child: Child,
    name: String,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Process {
    /// Starts `cmd` with stdout discarded and stderr in the log; `name` titles the
    /// log tail printed when the test fails.
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("stderr.log");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} starts: {e}"));
        Self {
            child,
            name: name.into(),
            log,
            _logdir: logdir,
        }
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as Kubernetes stops a pod; waits up to 10 s for the exit, then kills.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- {} log (last lines) ---\n{}",
                self.name,
                tail.join("\n")
            );
        }
        self.kill();
    }
}
