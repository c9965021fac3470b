//! `--executor-engine ephemeral` on a real Mesos master and agent: each build gets a
//! private buildkitd (or dockerd) in its task's sandbox, the agent's shared Docker
//! daemon never sees it, and nothing of it outlives the task.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::mesos::{MesosCluster, watch_on_mesos};
use common::watcher::*;
use common::*;
use sha2::{Digest, Sha256};

fn buildkitd_bin() -> String {
    let dir = std::env::var("SLIPWAY_BUILDKIT_BIN")
        .expect("SLIPWAY_BUILDKIT_BIN (the dir with buildkitd) is set for these tests");
    format!("{dir}/buildkitd")
}

fn unique() -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{n:x}")
}

/// A `path` build of `ctx` (a Dockerfile copying two files) to `repo`, with `extra`
/// spec lines.
fn path_build(name: &str, repo: &str, extra: &str) -> String {
    doc(
        name,
        &indent(&format!(
            "source: {{path: ctx}}\noutput: {{registry: '{}', repository: {repo}}}\n{extra}",
            registry()
        )),
    )
}

fn context(fx: Fixture, run: &str) -> Fixture {
    fx.file(
        "ctx/Dockerfile",
        &format!("FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\nLABEL eph.run={run}\n"),
    )
    .file("ctx/a.txt", &format!("first layer {run}\n"))
    .file("ctx/b.txt", &format!("second layer {run}\n"))
}

/// Every `.engine` dir (an ephemeral engine's state) under the agents' work dir.
fn engine_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()) {
                if e.file_name() == ".engine" {
                    out.push(p);
                } else {
                    todo.push(p);
                }
            }
        }
    }
    out
}

fn docker_q(args: &[&str]) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs");
    assert!(out.status.success(), "docker {args:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// What the agent's shared daemon holds of run `run`: images with its label or its
/// image ID, and containers made from them.
fn shared_daemon_traces(run: &str, config_digest: Option<&str>) -> Vec<String> {
    let mut found = docker_q(&["images", "-qa", "--filter", &format!("label=eph.run={run}")]);
    found.extend(docker_q(&["ps", "-aq", "--filter", &format!("label=eph.run={run}")]));
    if let Some(id) = config_digest {
        let ok = std::process::Command::new("docker")
            .args(["image", "inspect", id])
            .output()
            .unwrap();
        if ok.status.success() {
            found.push(id.to_string());
        }
    }
    found
}

/// The registry serves `digest` for `repo:latest`, and the manifest hashes to it;
/// returns the image's config digest.
async fn registry_serves(repo: &str, digest: &str) -> String {
    let reg = registry();
    let served = slipway::registry::manifest_digest(&http(), &reg, repo, "latest", None)
        .await
        .expect("registry answers");
    assert_eq!(served, digest);
    let manifest = http()
        .get(format!("http://{reg}/v2/{repo}/manifests/{digest}"))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.oci.image.manifest.v1+json",
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&manifest))),
        digest
    );
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    m["config"]["digest"].as_str().unwrap().to_string()
}

/// Entries of the places a daemon keeps state by default.
fn host_state() -> Vec<String> {
    let mut out = Vec::new();
    for d in [
        "/run",
        "/run/docker",
        "/run/containerd",
        "/var/lib",
        "/var/lib/docker",
        "/etc/buildkit",
    ] {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            out.push(e.path().display().to_string());
        }
    }
    out.retain(|p| {
        ["docker", "containerd", "buildkit", "runc"]
            .iter()
            .any(|w| p.contains(w))
    });
    out.sort();
    out
}

/// Asserts the private daemon's processes are gone and nothing stays mounted under
/// the agents' work dir.
async fn assert_nothing_runs_under(work: &Path) {
    let marker = work.display().to_string();
    let left: Vec<_> = processes_with(&format!("{marker}"))
        .into_iter()
        .filter(|(_, c)| !c.contains("executor") && !c.contains("mesos"))
        .collect();
    let left = still_running(&left, Duration::from_secs(10)).await;
    assert!(left.is_empty(), "left running: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let under: Vec<&str> = mounts.lines().filter(|l| l.contains(&marker)).collect();
    assert!(under.is_empty(), "left mounted: {under:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ephemeral_buildkitd_builds_in_the_sandbox_and_leaves_nothing_behind() {
    let cluster = MesosCluster::start(1);
    let run = unique();
    let repo = "slipway-test/eph-buildkitd";
    let fx = context(Fixture::new(), &run).file("a.yaml", &path_build("eph", repo, ""));
    let state_before = host_state();
    let bin = buildkitd_bin();
    let mut w = watch_on_mesos(
        fx.dir.path(),
        &cluster.master(),
        &[
            "--executor-engine",
            "ephemeral",
            "--executor-buildkitd-bin",
            &bin,
        ],
        &[],
    );
    let s = phase_of(&fx.path("a.yaml"), "eph", "Succeeded").await;
    let out = outcome(&s);

    // the shared daemon never saw the build (checked before anything pulls it there)
    let config = registry_serves(repo, &out.digest).await;
    assert_eq!(
        shared_daemon_traces(&run, Some(&config)),
        Vec::<String>::new()
    );

    // the build ran in a buildkitd whose socket and state lived in the sandbox
    let dirs = engine_dirs(cluster.work_dir());
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let engine = &dirs[0];
    assert!(engine.parent().unwrap().join("stdout").exists(), "{engine:?} is a sandbox's");
    let log = std::fs::read_to_string(engine.join("buildkitd.log")).unwrap();
    assert!(
        log.contains("running server on /proc/self/cwd/.engine/buildkitd.sock")
            || log.contains(&format!("running server on {}", engine.display())),
        "{log}"
    );
    assert!(engine.join("root").read_dir().unwrap().next().is_some());
    // the start-up time reached the build's events, and so the watcher's log
    w.stop();
    let wlog = w.log();
    assert!(
        wlog.contains("ephemeral buildkitd ready in")
            && wlog.contains("socket ./.engine/buildkitd.sock in the sandbox"),
        "{wlog}"
    );

    assert_nothing_runs_under(cluster.work_dir()).await;
    assert_eq!(host_state(), state_before, "new daemon state outside the sandbox");
}
