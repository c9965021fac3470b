//! 10,000 DockerBuilds already Succeeded and up to date: how long `slipway controller`
//! takes from its start until every one has been reconciled (without starting a
//! build or writing a status), and its peak memory. Goals (issue 16): 100,000 in
//! ≤ 10 s and ≤ 256 MiB. Also how long the API server alone takes to stream them all
//! to a reader that parses nothing: the part of the resync that is not slipway's.
//!
//! Needs a real API server: `scripts/kube.sh` (built by scripts/ensure-kube.sh) is
//! started on 127.0.0.1 for the run. `cargo bench --bench kube_sync` (scripts/bench.sh
//! runs it with the release binary); `cargo test` skips it.
//!
//! Env: BENCH_OBJECTS (default 10000), SLIPWAY_BIN (default target/release/slipway),
//! BENCH_KUBE_DIR: a kube.sh directory to start (or reuse) and leave running, so a
//! second run only creates the objects missing (100,000 take minutes to create);
//! `bash scripts/kube.sh stop --dir DIR && rm -rf DIR` when done.
//! BENCH_CLEANUP=1: delete the bench's DockerBuilds instead (a shared API server is
//! left as it was found).

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use http_body_util::BodyExt;
use kube::api::{Api, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use slipway::api::{DockerBuild, DockerBuildSpec, DockerBuildStatus, Phase};

const NS: &str = "bench";

fn main() {
    let Some(n) = support::size("kube_sync", "BENCH_OBJECTS", 10_000) else {
        return;
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = support::release_bin();
    let temp = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("BENCH_KUBE_DIR").map(PathBuf::from);
    let cluster = Cluster::start(
        &root,
        kept.as_deref().unwrap_or(temp.path()),
        kept.is_some(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    if std::env::var_os("BENCH_CLEANUP").is_some() {
        let gone = rt.block_on(async { cleanup(&client(&cluster.admin).await).await });
        println!("deleted {gone} DockerBuilds of namespace {NS}");
        return;
    }
    rt.block_on(async {
        let client = client(&cluster.admin).await;
        let t = Instant::now();
        let made = populate(&client, n).await;
        println!(
            "created {made} Succeeded DockerBuilds (of {n}) in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    });
    let floor = rt.block_on(async { server_floor(&client(&cluster.admin).await).await });
    println!(
        "the API server streams all {n} to a reader that parses none in {:.2} s: \
         the floor under the resync on this machine",
        floor.as_secs_f64()
    );
    measure(&bin, &cluster.controller, n);
}

/// How long the API server takes to stream every DockerBuild of the namespace, as
/// the controller's first listing asks for them, to a reader that parses nothing:
/// the part of the resync that is the server's, not slipway's.
async fn server_floor(client: &Client) -> Duration {
    let path = format!(
        "/apis/slipway.dev/v1alpha1/namespaces/{NS}/dockerbuilds?watch=1&sendInitialEvents=true\
         &resourceVersionMatch=NotOlderThan&resourceVersion=0&allowWatchBookmarks=true"
    );
    let req = hyper::Request::get(path)
        .body(kube::client::Body::from(Vec::new()))
        .unwrap();
    let t = Instant::now();
    let mut body = client.send(req).await.unwrap().into_body();
    // the first listing ends with a bookmark so annotated
    let end = b"k8s.io/initial-events-end";
    let mut tail: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        tail.extend_from_slice(&data);
        if tail.windows(end.len()).any(|w| w == end) {
            return t.elapsed();
        }
        tail.drain(..tail.len().saturating_sub(end.len()));
    }
    panic!("the watch ended before its initial events did");
}

struct Cluster {
    script: PathBuf,
    dir: PathBuf,
    admin: PathBuf,
    controller: PathBuf,
    /// Left running for the next run (BENCH_KUBE_DIR).
    keep: bool,
}

impl Cluster {
    fn start(root: &Path, dir: &Path, keep: bool) -> Self {
        let script = root.join("scripts/kube.sh");
        let out = Command::new("bash")
            .arg(&script)
            .args(["start", "--dir"])
            .arg(dir)
            .stderr(Stdio::inherit())
            .output()
            .expect("kube.sh runs");
        assert!(out.status.success(), "kube.sh start failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let var = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("kube.sh printed no {k}"))
        };
        let (admin, controller) = (var("KUBECONFIG_ADMIN"), var("KUBECONFIG_CONTROLLER"));
        let c = Self {
            script,
            dir: dir.to_path_buf(),
            admin,
            controller,
            keep,
        };
        c.kube_sh(&["grant-own", "--namespace", NS]);
        c
    }

    fn kube_sh(&self, args: &[&str]) {
        let ok = Command::new("bash")
            .arg(&self.script)
            .args(&args[..1])
            .arg("--dir")
            .arg(&self.dir)
            .args(&args[1..])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kube.sh {args:?} failed");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        self.kube_sh(&["stop"]);
    }
}

async fn client(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

/// `n` DockerBuilds whose status says the current spec is built and pushed, each
/// already holding the controller's finalizer: nothing is left to do for them. Only
/// those not there yet are created (a kept cluster); returns how many were.
async fn populate(client: &Client, n: usize) -> usize {
    let api: Api<DockerBuild> = Api::namespaced(client.clone(), NS);
    let there: HashSet<String> = names(client).await.into_iter().collect();
    assert!(
        there.len() <= n,
        "{} DockerBuilds in namespace {NS}, more than BENCH_OBJECTS",
        there.len()
    );
    let missing: Vec<usize> = (0..n)
        .filter(|i| !there.contains(&format!("app-{i:05}")))
        .collect();
    let made = missing.len();
    stream::iter(missing)
        .for_each_concurrent(64, |i| {
            let api = api.clone();
            async move {
                let name = format!("app-{i:05}");
                let spec: DockerBuildSpec = serde_json::from_value(json!({
                    "source": {"inline": {"dockerfile": format!("FROM scratch\nLABEL n={i}\n")}},
                    "output": {"registry": "127.0.0.1:5000", "repository": format!("bench/app-{i}"), "tags": ["v1"]},
                }))
                .unwrap();
                let mut b = DockerBuild::new(&name, spec.clone());
                b.metadata.finalizers = Some(vec!["slipway.dev/build".into()]);
                let created = api.create(&PostParams::default(), &b).await.unwrap();
                let digest = format!("sha256:{:064x}", i);
                let status = DockerBuildStatus {
                    phase: Some(Phase::Succeeded),
                    observed_generation: created.metadata.generation,
                    spec_hash: Some(spec.hash()),
                    image_digest: Some(digest.clone()),
                    image: Some(format!("127.0.0.1:5000/bench/app-{i}@{digest}")),
                    pushed_tags: vec![format!("127.0.0.1:5000/bench/app-{i}:v1")],
                    message: Some("pushed 1 tag".into()),
                    ..Default::default()
                };
                let patch = json!({"apiVersion": "slipway.dev/v1alpha1", "kind": "DockerBuild", "status": status});
                api.patch_status(&name, &PatchParams::apply("slipway").force(), &Patch::Apply(&patch))
                    .await
                    .unwrap();
            }
        })
        .await;
    made
}

/// Deletes every DockerBuild of the namespace, its finalizer first (no controller
/// runs to release it).
async fn cleanup(client: &Client) -> usize {
    let names = names(client).await;
    let n = names.len();
    let api: Api<DockerBuild> = Api::namespaced(client.clone(), NS);
    stream::iter(names)
        .for_each_concurrent(64, |name| {
            let api = api.clone();
            async move {
                let patch = json!({"metadata": {"finalizers": null}});
                let _ = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                let _ = api.delete(&name, &Default::default()).await;
            }
        })
        .await;
    n
}

/// Starts the controller, waits for its "initial sync done", samples its memory.
fn measure(bin: &Path, kubeconfig: &Path, n: usize) {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("controller.log");
    let start = Instant::now();
    let mut child = Command::new(bin)
        .args(["controller", "--namespace", NS, "--pod-namespace", NS])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .env("SLIPWAY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("controller starts");
    let status_path = format!("/proc/{}/status", child.id());
    let mut synced = None;
    while start.elapsed() < Duration::from_secs(300) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("initial sync done") {
            synced = Some(start.elapsed());
            break;
        }
        if let Ok(Some(s)) = child.try_wait() {
            panic!("the controller exited ({s}):\n{text}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // a little longer, to see that nothing starts after the sync
    std::thread::sleep(Duration::from_secs(2));
    let proc_status = std::fs::read_to_string(&status_path).unwrap_or_default();
    let kib = |field: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (hwm, rss) = (kib("VmHWM:"), kib("VmRSS:"));
    // SIGTERM: the controller gives its lease up, so the next run (BENCH_KUBE_DIR)
    // does not wait for a dead leader's lease to expire
    // SAFETY: kill(2) on our own child's pid
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let synced = synced.unwrap_or_else(|| panic!("no initial sync within 300 s:\n{text}"));
    let builds = text.matches("build started").count();
    let writes = text.matches("phase=").count();
    let line = text
        .lines()
        .find(|l| l.contains("initial sync done"))
        .unwrap_or_default();
    // where the time went: waiting for the lease, listing, deciding
    for what in [
        "became the leader",
        "listed DockerBuilds",
        "initial sync done",
    ] {
        if let Some(l) = text.lines().find(|l| l.contains(what)) {
            println!("  {}", l.get(..27).unwrap_or(l).to_string() + " " + what);
        }
    }
    println!("{line}");
    println!(
        "kube_sync: {n} up-to-date DockerBuilds reconciled {:.2} s after start (goal for 100,000: ≤ 10 s); \
         peak RSS {:.1} MiB (goal for 100,000: ≤ 256 MiB), RSS after {:.1} MiB; builds started: {builds}; status changes: {writes}",
        synced.as_secs_f64(),
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    assert_eq!(builds, 0, "an up-to-date resource was rebuilt:\n{text}");
}

/// The names of the namespace's DockerBuilds (metadata only: cheap at 100,000).
async fn names(client: &Client) -> Vec<String> {
    let api: Api<PartialObjectMeta<DockerBuild>> = Api::namespaced(client.clone(), NS);
    api.list_metadata(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect()
}
