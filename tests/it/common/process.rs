//! The one harness for long-running processes the tests start (`slipway watch`,
//! `slipway controller`, servers): stderr kept in a log file for assertions, the
//! process killed and reaped on drop, and the log's tail printed when the test
//! failed.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
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
    pub fn spawn(name: &str, cmd: Command) -> Self {
        Self::start(name, cmd, false)
    }

    /// As [`Process::spawn`], with stdout in the log too (interleaved as written),
    /// for a process whose assertions read both; run in its own temp dir unless `cmd`
    /// names one, so what it writes there (a Mesos executor's build log, as into its
    /// sandbox) goes with it.
    pub fn spawn_with_stdout(name: &str, cmd: Command) -> Self {
        Self::start(name, cmd, true)
    }

    fn start(name: &str, mut cmd: Command, stdout: bool) -> Self {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("output.log");
        let file = std::fs::File::create(&log).unwrap();
        let out = if stdout {
            Stdio::from(file.try_clone().unwrap())
        } else {
            Stdio::null()
        };
        if stdout && cmd.get_current_dir().is_none() {
            cmd.current_dir(logdir.path());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(file)
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

    /// Whether it has not exited yet.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the exit without blocking the test's runtime; panics with the log
    /// after `timeout`.
    pub async fn exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{} did not exit within {timeout:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as Kubernetes stops a pod; waits up to 10 s for the exit, then kills.
    pub fn terminate(&mut self) {
        self.terminate_with(&[]);
    }

    /// As [`Process::terminate`], with its direct children signalled too: a launcher
    /// (`unshare`, say) may not pass SIGTERM on to the process it started.
    pub fn terminate_with_children(&mut self) {
        let pid = self.child.id();
        let children = format!("/proc/{pid}/task/{pid}/children");
        let children = std::fs::read_to_string(children).unwrap_or_default();
        let children: Vec<&str> = children.split_whitespace().collect();
        self.terminate_with(&children);
    }

    fn terminate_with(&mut self, children: &[&str]) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .args(children)
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
