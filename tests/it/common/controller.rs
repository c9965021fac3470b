//! `slipway controller` run as a pod would run it: the real binary, the controller's
//! own service-account kubeconfig (so RBAC applies), its log kept for assertions.

use std::path::Path;
use std::time::Duration;

use super::process::{Process, slipway_cmd};
use super::wait_for;

/// A running `slipway controller` (a [`Process`]: `log`, `kill`, `terminate`),
/// stopped when dropped, its log's tail printed if the test failed.
pub struct Controller(Process);

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
        let mut cmd = slipway_cmd();
        cmd.args(args).env("KUBECONFIG", kubeconfig);
        for var in [
            "SLIPWAY_NAMESPACE",
            "POD_NAMESPACE",
            "POD_NAME",
            "SLIPWAY_LOG",
            "SLIPWAY_BACKEND",
            "SLIPWAY_MESOS_MASTER",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().copied());
        Self(Process::spawn(&format!("controller {identity}"), cmd))
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
}

impl std::ops::Deref for Controller {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.0
    }
}

impl std::ops::DerefMut for Controller {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.0
    }
}
