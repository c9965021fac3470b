//! A real Kubernetes API server (kube-apiserver + etcd on 127.0.0.1, RBAC on, the
//! DockerBuild CRD applied), driven with the real kubectl. `scripts/test.sh` starts
//! one shared cluster (`SLIPWAY_TEST_KUBE` is scripts/kube.sh, `SLIPWAY_TEST_KUBE_DIR`
//! its dir, `SLIPWAY_KUBE_BIN` the binaries); tests that stop or restart the API server
//! start a private one with [`Kube::start_private`].
//!
//! Two identities: the admin (`system:masters`, what [`Kube::kubectl`] uses) and the
//! controller (`system:serviceaccount:slipway-system:slipway`, bound to exactly the
//! rules of charts/slipway/files/rbac-rules.yaml: [`Kube::controller_kubeconfig`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Kube {
    dir: PathBuf,
    /// Set for a private cluster: stopped and removed on Drop.
    private: Option<tempfile::TempDir>,
}

fn env_path(var: &str, what: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(var).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run the tests with scripts/test.sh, which builds and starts {what}"
        )
    }))
}

/// scripts/kube.sh.
pub fn script() -> PathBuf {
    env_path(
        "SLIPWAY_TEST_KUBE",
        "a Kubernetes API server (scripts/kube.sh)",
    )
}

/// The dir with kube-apiserver, etcd and kubectl.
pub fn bin_dir() -> PathBuf {
    env_path(
        "SLIPWAY_KUBE_BIN",
        "kube-apiserver, etcd and kubectl (scripts/ensure-kube.sh)",
    )
}

/// The kubectl binary.
pub fn kubectl_bin() -> PathBuf {
    bin_dir().join("kubectl")
}

/// The stdout of a failed command, for panic messages.
fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A namespace name from `prefix`: lowercase letters, digits and '-', unique.
fn unique_name(prefix: &str) -> String {
    let mut p: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    p.truncate(40);
    let p = p.trim_matches('-');
    let p = if p.is_empty() { "test" } else { p };
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{p}-{}", &id[..8])
}

impl Kube {
    /// The cluster `scripts/test.sh` started for all tests. Do not stop or restart it.
    pub fn shared() -> Self {
        let dir = env_path(
            "SLIPWAY_TEST_KUBE_DIR",
            "a shared Kubernetes API server (scripts/kube.sh)",
        );
        assert!(
            dir.join("admin.kubeconfig").is_file(),
            "SLIPWAY_TEST_KUBE_DIR={} holds no admin.kubeconfig: is the cluster running (scripts/kube.sh status --dir {0})?",
            dir.display()
        );
        Self { dir, private: None }
    }

    /// A cluster of this test's own (a few seconds to start), stopped on Drop. Its dir
    /// lies under the shared cluster's dir when there is one, so that scripts/test.sh
    /// stops it even if the test is killed before its Drop runs.
    pub fn start_private() -> Self {
        Self::start_private_with("")
    }

    /// A cluster of this test's own whose API server runs with more `flags`
    /// (`--feature-gates=WatchList=false`).
    pub fn start_private_with(flags: &str) -> Self {
        let tmp = match std::env::var_os("SLIPWAY_TEST_KUBE_DIR") {
            Some(shared) => {
                let parent = PathBuf::from(shared).join("private");
                std::fs::create_dir_all(&parent).expect("create the private clusters' dir");
                tempfile::Builder::new()
                    .prefix("kube-")
                    .tempdir_in(parent)
                    .expect("temp dir")
            }
            None => tempfile::Builder::new()
                .prefix("slipway-kube-")
                .tempdir()
                .expect("temp dir"),
        };
        let k = Self {
            dir: tmp.path().to_path_buf(),
            private: Some(tmp),
        };
        let out = k.script_out_with(&["start"], flags);
        assert!(
            out.status.success(),
            "scripts/kube.sh start failed: {}",
            describe(&out)
        );
        k
    }

    fn script_out(&self, args: &[&str]) -> Output {
        self.script_out_with(args, "")
    }

    fn script_out_with(&self, args: &[&str], apiserver_flags: &str) -> Output {
        Command::new("bash")
            .arg(script())
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .env("SLIPWAY_KUBE_APISERVER_FLAGS", apiserver_flags)
            .stdin(Stdio::null())
            .output()
            .expect("bash scripts/kube.sh runs")
    }

    fn script_ok(&self, args: &[&str]) -> String {
        let out = self.script_out(args);
        assert!(
            out.status.success(),
            "scripts/kube.sh {} --dir {} failed: {}",
            args.join(" "),
            self.dir.display(),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn private_only(&self, what: &str) {
        assert!(
            self.private.is_some(),
            "{what}: only on a cluster of the test's own (Kube::start_private), never on the shared one"
        );
    }

    /// The dir with the kubeconfigs, certificates and logs (kube-apiserver.log, etcd.log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's port on 127.0.0.1; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        std::fs::read_to_string(self.dir.join("kube-apiserver.port"))
            .expect("kube-apiserver.port")
            .trim()
            .parse()
            .expect("a port number")
    }

    /// `https://127.0.0.1:PORT`.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port())
    }

    /// system:masters.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// system:serviceaccount:slipway-system:slipway, default namespace slipway-system.
    pub fn controller_kubeconfig(&self) -> PathBuf {
        self.dir.join("controller.kubeconfig")
    }

    /// kubectl with `kubeconfig`, nothing else from the environment.
    pub fn command_as(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_bin());
        c.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            // discovery cache per cluster: ports get reused by later clusters
            .env("KUBECACHEDIR", self.dir.join("cache"))
            .stdin(Stdio::null());
        c
    }

    /// kubectl as the admin.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.admin_kubeconfig(), args)
    }

    /// kubectl as whoever `kubeconfig` names (e.g. [`Kube::controller_kubeconfig`]).
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        self.command_as(kubeconfig, args)
            .output()
            .expect("kubectl runs")
    }

    /// kubectl as the admin; panics with its output unless it succeeds; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl as whoever `kubeconfig` names, with `input` on its stdin.
    pub fn kubectl_stdin_as(&self, kubeconfig: &Path, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command_as(kubeconfig, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .expect("write kubectl's stdin");
        child.wait_with_output().expect("kubectl runs")
    }

    /// `kubectl apply -n NS -f -` as the admin: its output, success or not.
    pub fn try_apply(&self, ns: &str, yaml: &str) -> Output {
        self.kubectl_stdin_as(
            &self.admin_kubeconfig(),
            &["apply", "-n", ns, "-f", "-"],
            yaml,
        )
    }

    /// `kubectl apply -n NS -f -` as the admin; panics unless it succeeds.
    pub fn apply(&self, ns: &str, yaml: &str) -> String {
        let out = self.try_apply(ns, yaml);
        assert!(
            out.status.success(),
            "kubectl apply -n {ns} failed: {}\nyaml:\n{yaml}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new namespace named `PREFIX-xxxxxxxx` where the controller's identity has the
    /// `own` rules (Leases, ConfigMaps), as in its own namespace.
    pub fn new_namespace(&self, prefix: &str) -> String {
        let ns = unique_name(prefix);
        self.grant_own(&ns);
        ns
    }

    /// A new namespace where the controller has only its cluster-wide rules.
    pub fn new_bare_namespace(&self, prefix: &str) -> String {
        let ns = unique_name(prefix);
        self.kubectl_ok(&["create", "namespace", &ns]);
        ns
    }

    /// Creates `ns` if missing and binds the `own` rules there to the controller.
    pub fn grant_own(&self, ns: &str) {
        self.script_ok(&["grant-own", "--namespace", ns]);
    }

    fn get_args<'a>(ns: &'a str, kind: &'a str, name: &'a str) -> Vec<&'a str> {
        let mut args = vec!["get", kind, name, "-o", "json"];
        if !ns.is_empty() {
            args.extend(["-n", ns]);
        }
        args
    }

    /// The object as JSON, or None if the get fails (not found, server down, ...).
    /// `ns` empty: a cluster-scoped kind.
    pub fn try_get_json(&self, ns: &str, kind: &str, name: &str) -> Option<Value> {
        let out = self.kubectl(&Self::get_args(ns, kind, name));
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The object as JSON; panics if it cannot be read.
    /// A kubernetes.io/dockerconfigjson Secret `name` in `ns` for the test registry.
    pub fn create_registry_secret(&self, ns: &str, name: &str, user: &str, password: &str) {
        self.kubectl_ok(&[
            "create",
            "secret",
            "docker-registry",
            name,
            "-n",
            ns,
            &format!("--docker-server={}", super::registry()),
            &format!("--docker-username={user}"),
            &format!("--docker-password={password}"),
        ]);
    }

    pub fn get_json(&self, ns: &str, kind: &str, name: &str) -> Value {
        let out = self.kubectl_ok(&Self::get_args(ns, kind, name));
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("kubectl get printed no JSON ({e}): {out}"))
    }

    /// Polls the object every 200 ms until `check` accepts it; panics after `timeout`
    /// with the last value (or error) seen. Gets that fail (no object yet, API server
    /// restarting) count as not yet.
    pub async fn wait_json(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
        timeout: Duration,
        mut check: impl FnMut(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        let args = Self::get_args(ns, kind, name);
        loop {
            let cmd = self.command_as(&self.admin_kubeconfig(), &args);
            let out = tokio::process::Command::from(cmd)
                .output()
                .await
                .expect("kubectl runs");
            let last = if out.status.success() {
                match serde_json::from_slice::<Value>(&out.stdout) {
                    Ok(v) if check(&v) => return v,
                    Ok(v) => serde_json::to_string_pretty(&v).unwrap(),
                    Err(e) => format!("no JSON ({e})"),
                }
            } else {
                describe(&out)
            };
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {kind} {ns}/{name}; last seen:\n{last}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops kube-apiserver; etcd keeps the data (private clusters only).
    pub fn stop_apiserver(&self) {
        self.private_only("stop_apiserver");
        self.script_ok(&["stop-apiserver"]);
    }

    /// Starts kube-apiserver again on the same port with the same data and waits until
    /// it is ready (private clusters only).
    pub fn start_apiserver(&self) {
        self.private_only("start_apiserver");
        self.script_ok(&["start-apiserver"]);
    }
}

impl Drop for Kube {
    fn drop(&mut self) {
        if self.private.is_some() {
            let out = self.script_out(&["stop"]);
            if !out.status.success() {
                eprintln!("scripts/kube.sh stop failed: {}", describe(&out));
            }
        }
    }
}
