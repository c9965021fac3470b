//! `slipway controller` run as a pod would run it: the real binary, the controller's
//! own service-account kubeconfig (so RBAC applies), its log kept for assertions.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for;

pub struct Controller {
    pub child: Child,
    pub identity: String,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Controller {
    /// Watches namespace `ns` with its Lease in `ns`; `extra` flags are appended.
    pub fn start(kubeconfig: &Path, ns: &str, identity: &str, extra: &[&str]) -> Self {
        let mut args: Vec<&str> = vec!["controller", "--namespace", ns, "--pod-namespace", ns];
        args.extend(["--identity", identity, "--metrics-listen", "127.0.0.1:0"]);
        if !extra.contains(&"--lease-duration") {
            args.extend(["--lease-duration", "3s"]);
        }
        args.extend(["--retry-backoff", "100ms", "--max-attempts", "2"]);
        args.extend(["--concurrency", "3"]);
        args.extend(extra);
        Self::spawn(&args, kubeconfig, &[("SLIPWAY_LOG", "debug")], identity)
    }

    /// `slipway ARGS` with `kubeconfig` and `env` only: settings the test host may
    /// have in its environment are removed first.
    pub fn spawn(args: &[&str], kubeconfig: &Path, env: &[(&str, &str)], identity: &str) -> Self {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("controller.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_slipway"));
        cmd.args(args).env("KUBECONFIG", kubeconfig);
        for var in [
            "SLIPWAY_NAMESPACE",
            "POD_NAMESPACE",
            "POD_NAME",
            "SLIPWAY_LOG",
            "SLIPWAY_BACKEND",
            "SLIPWAY_MESOS_MASTER",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        let child = cmd
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("slipway controller starts");
        Self {
            child,
            identity: identity.into(),
            log,
            _logdir: logdir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The port of /healthz, /readyz and /metrics, once the controller logged it.
    pub async fn metrics_port(&self) -> u16 {
        wait_for(
            "the metrics address in the log",
            Duration::from_secs(30),
            || {
                let log = self.log();
                let at = log.find("/metrics on ")?;
                let rest = &log[at + "/metrics on ".len()..];
                let addr: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                addr.rsplit_once(':')?.1.parse().ok()
            },
        )
        .await
    }

    /// GET http://127.0.0.1:PORT/PATH: (status code, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        let port = self.metrics_port().await;
        let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .expect("the health server answers");
        let code = r.status().as_u16();
        (code, r.text().await.unwrap_or_default())
    }

    /// SIGKILL: no chance to release the Lease or clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as Kubernetes stops a pod; waits for the exit.
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

impl Drop for Controller {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- controller {} log (last lines) ---\n{}",
                self.identity,
                tail.join("\n")
            );
        }
        self.kill();
    }
}
