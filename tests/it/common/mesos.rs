//! A real Apache Mesos master with in-process agents on 127.0.0.1, started with the
//! shim that `scripts/test.sh` builds (`SLIPWAY_TEST_MESOS` is its mesos.sh).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct MesosCluster {
    pub port: u16,
    agents: u32,
    docker: bool,
    work: tempfile::TempDir,
    running: bool,
    /// `MESOS_*` flags for the master and agents (mesos.sh passes them on).
    env: Vec<(String, String)>,
}

fn script() -> PathBuf {
    PathBuf::from(std::env::var("SLIPWAY_TEST_MESOS").unwrap_or_else(|_| {
        panic!("SLIPWAY_TEST_MESOS is not set: run the tests with scripts/test.sh, which builds the Mesos master")
    }))
}

/// `slipway watch`'s flags for the Mesos backend on `master`: quick re-offers and
/// resources a one-agent test cluster has.
pub fn mesos_args(master: &str) -> Vec<String> {
    [
        "--backend",
        "mesos",
        "--mesos-master",
        master,
        "--refuse-seconds",
        "1",
        "--default-cpus",
        "0.5",
        "--default-mem",
        "128",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `slipway watch DIR` on the Mesos backend at `master`, with `extra` flags and `envs`.
pub fn watch_on_mesos(
    dir: &std::path::Path,
    master: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> super::watcher::Watcher {
    let mut args = mesos_args(master);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    super::watcher::Watcher::start_with_env(std::path::Path::new("."), dir, &args, envs)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl MesosCluster {
    pub fn start(agents: u32) -> Self {
        Self::on_port(free_port(), agents, false)
    }

    /// Agents with the Docker containerizer too (for `--executor-image`).
    pub fn start_with_docker(agents: u32) -> Self {
        Self::on_port(free_port(), agents, true)
    }

    pub fn on_port(port: u16, agents: u32, docker: bool) -> Self {
        let mut c = Self {
            port,
            agents,
            docker,
            work: tempfile::tempdir().unwrap(),
            running: false,
            env: Vec::new(),
        };
        c.up();
        c
    }

    /// With `MESOS_*` flags for the master and agents (in-process, they share them).
    pub fn start_with_env(agents: u32, env: &[(&str, &str)]) -> Self {
        let mut c = Self {
            port: free_port(),
            agents,
            docker: false,
            work: tempfile::tempdir().unwrap(),
            running: false,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        c.up();
        c
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("sh")
            .arg(script())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("mesos.sh runs")
    }

    fn up(&mut self) {
        let port = self.port.to_string();
        let agents = self.agents.to_string();
        let work = self.work.path().join("mesos").display().to_string();
        let mut args = vec![
            "start",
            "--port",
            &port,
            "--agents",
            &agents,
            "--work-dir",
            &work,
        ];
        if self.docker {
            args.push("--docker");
        }
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "mesos did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
    }

    /// The master's and agents' work dir (the executors' sandboxes are under it).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    pub fn master(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the master and its agents, and the executors they started.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let port = self.port.to_string();
        let _ = self.run(&["stop", "--port", &port]);
        kill_processes_under(self.work.path());
        self.running = false;
    }

    pub fn restart(&mut self) {
        self.stop();
        self.up();
    }

    /// The master's `/state`, as text (to search) and JSON.
    pub async fn state(&self) -> (String, serde_json::Value) {
        let text = reqwest::get(format!("http://{}/state", self.master()))
            .await
            .expect("master answers")
            .text()
            .await
            .unwrap();
        let json = serde_json::from_str(&text).unwrap();
        (text, json)
    }

    /// Every task of every framework, running or completed: (name, state).
    pub async fn tasks(&self) -> Vec<(String, String)> {
        let (_, s) = self.state().await;
        let mut out = Vec::new();
        for fw in s["frameworks"].as_array().into_iter().flatten() {
            for list in ["tasks", "completed_tasks", "unreachable_tasks"] {
                for t in fw[list].as_array().into_iter().flatten() {
                    out.push((
                        t["name"].as_str().unwrap_or("").to_string(),
                        t["state"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
        }
        out
    }
}

impl Drop for MesosCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Executors outlive a killed agent; those working under `dir` are ours to stop.
fn kill_processes_under(dir: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// A tarball with a copy of this slipway binary at its top, as `--executor-uri` wants.
/// The copy is stripped when `strip` is at hand, as a released tarball would be
/// (a debug build is ~180 MB, and gzip in an unoptimised test build is slow): made
/// once per test run.
pub async fn executor_tarball() -> Vec<u8> {
    static TARBALL: tokio::sync::OnceCell<Vec<u8>> = tokio::sync::OnceCell::const_new();
    TARBALL.get_or_init(make_tarball).await.clone()
}

async fn make_tarball() -> Vec<u8> {
    tokio::task::spawn_blocking(|| {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("slipway");
        let stripped = std::process::Command::new("strip")
            .arg("-o")
            .arg(&copy)
            .arg(env!("CARGO_BIN_EXE_slipway"))
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(env!("CARGO_BIN_EXE_slipway"), &copy).unwrap();
        }
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.append_path_with_name(&copy, "slipway").unwrap();
        tar.into_inner().unwrap().finish().unwrap()
    })
    .await
    .unwrap()
}

/// Serves `body` at `http://127.0.0.1:PORT/dist/slipway-executor.tar.gz`; counts GETs.
pub async fn serve_tarball(
    body: Vec<u8>,
) -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    use axum::routing::get;
    let gets = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = axum::body::Bytes::from(body);
    let counter = gets.clone();
    let app = axum::Router::new().route(
        "/dist/slipway-executor.tar.gz",
        get(move || {
            let (body, counter) = (body.clone(), counter.clone());
            async move {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ([("content-type", "application/gzip")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/dist/slipway-executor.tar.gz",
        listener.local_addr().unwrap()
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, gets, server)
}
