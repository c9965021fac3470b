//! `--executor-engine ephemeral` on a real Mesos master and agent: each build gets a
//! private buildkitd (or dockerd) in its task's sandbox, the agent's shared Docker
//! daemon never sees it, and nothing of it outlives the task.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::mesos::{MesosCluster, watch_on_mesos};
use crate::common::watcher::*;
use crate::common::*;

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
    found.extend(docker_q(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=eph.run={run}"),
    ]));
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
    manifest(repo, digest).await["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn manifest(repo: &str, digest: &str) -> serde_json::Value {
    served_manifest(repo, &["latest"], digest).await
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

/// Processes working in a sandbox under `work` other than Mesos's and the executor:
/// a private daemon and what it started (containerd, runc) all work there.
fn daemons_under(work: &Path) -> Vec<(u32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(work))
        })
        .filter_map(|pid| {
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&c).replace('\0', " ")))
        })
        .filter(|(_, c)| !c.contains(" executor") && !c.contains("mesos"))
        .collect()
}

/// Asserts the private daemon's processes are gone and nothing stays mounted under
/// the agents' work dir.
async fn assert_nothing_runs_under(work: &Path) {
    let marker = work.display().to_string();
    let left = still_running(&daemons_under(work), Duration::from_secs(10)).await;
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
    assert!(
        engine.parent().unwrap().join("stdout").exists(),
        "{engine:?} is a sandbox's"
    );
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
    assert_eq!(
        host_state(),
        state_before,
        "new daemon state outside the sandbox"
    );
}

/// Two builds of the same context on fresh sandboxes (each its own buildkitd, empty)
/// with a registry cache: the second takes every layer from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_cache_spares_a_fresh_ephemeral_engine_the_unchanged_layers() {
    let cluster = MesosCluster::start(1);
    let run = unique();
    let reg = registry();
    let cache = format!("cache: {{ref: '{reg}/slipway-test/eph-cache:c{run}', mode: max}}");
    let fx = context(Fixture::new(), &run).file(
        "a.yaml",
        &path_build("first", "slipway-test/eph-cache-a", &cache),
    );
    let bin = buildkitd_bin();
    let _w = watch_on_mesos(
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
    let first = phase_of(&fx.path("a.yaml"), "first", "Succeeded").await;
    std::fs::write(
        fx.path("b.yaml"),
        path_build("second", "slipway-test/eph-cache-b", &cache),
    )
    .unwrap();
    let second = phase_of(&fx.path("b.yaml"), "second", "Succeeded").await;
    assert_eq!(engine_dirs(cluster.work_dir()).len(), 2, "two sandboxes");

    let copies = |s: &serde_json::Value| -> Vec<(String, bool)> {
        s["stages"]
            .as_array()
            .expect("status lists the steps")
            .iter()
            .filter(|st| st["name"].as_str().unwrap_or("").contains("COPY"))
            .map(|st| {
                (
                    st["name"].as_str().unwrap().to_string(),
                    st["cached"] == true,
                )
            })
            .collect()
    };
    let (a, b) = (copies(&first), copies(&second));
    assert_eq!(a.len(), 2, "{first}");
    assert!(a.iter().all(|(_, cached)| !cached), "{a:?}");
    assert_eq!(b.len(), 2, "{second}");
    assert!(b.iter().all(|(_, cached)| *cached), "{b:?}");
    // the very layers of the first (only the config's creation time differs)
    let layers = |m: serde_json::Value| m["layers"].clone();
    assert_eq!(
        layers(manifest("slipway-test/eph-cache-a", &outcome(&first).digest).await),
        layers(manifest("slipway-test/eph-cache-b", &outcome(&second).digest).await)
    );
}

/// Where buildkitd is not the engine, a private dockerd: its data root, exec root
/// (and so its containerd), pidfile and socket in the sandbox, no bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ephemeral_dockerd_builds_in_the_sandbox_and_leaves_nothing_behind() {
    let cluster = MesosCluster::start(1);
    let run = unique();
    let repo = "slipway-test/eph-dockerd";
    let fx = context(Fixture::new(), &run).file("a.yaml", &path_build("eph", repo, ""));
    let state_before = host_state();
    let _w = watch_on_mesos(
        fx.dir.path(),
        &cluster.master(),
        &[
            "--executor-engine",
            "ephemeral",
            "--builder",
            "buildkit-daemon",
        ],
        &[],
    );
    let s = phase_of(&fx.path("a.yaml"), "eph", "Succeeded").await;
    let config = registry_serves(repo, &outcome(&s).digest).await;
    assert_eq!(
        shared_daemon_traces(&run, Some(&config)),
        Vec::<String>::new()
    );
    let dirs = engine_dirs(cluster.work_dir());
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let engine = &dirs[0];
    let log = std::fs::read_to_string(engine.join("dockerd.log")).unwrap();
    assert!(
        log.contains("API listen on /proc/self/cwd/.engine/dockerd.sock")
            || log.contains(&format!("API listen on {}", engine.display())),
        "{log}"
    );
    assert!(
        engine.join("data").join("containerd").is_dir(),
        "its containerd's root"
    );
    assert_nothing_runs_under(cluster.work_dir()).await;
    assert_eq!(
        host_state(),
        state_before,
        "new daemon state outside the sandbox"
    );
}

/// A daemon that never answers fails the build, bounded, with the end of its log;
/// it and what it started are stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_engine_that_never_answers_fails_the_build_with_its_log() {
    let cluster = MesosCluster::start(1);
    let fx = context(Fixture::new(), &unique())
        .file("a.yaml", &path_build("stuck", "slipway-test/eph-stuck", ""))
        .file(
            "fake-buildkitd",
            "#!/bin/sh\necho 'fake buildkitd: no worker will come up' >&2\nsleep 300\n",
        );
    let fake = fx.path("fake-buildkitd");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake = fake.display().to_string();
    let mut w = watch_on_mesos(
        fx.dir.path(),
        &cluster.master(),
        &[
            "--executor-engine",
            "ephemeral",
            "--executor-buildkitd-bin",
            &fake,
            "--executor-engine-timeout",
            "2",
        ],
        &[],
    );
    let file = fx.path("a.yaml");
    let s = wait_for(
        "the engine's failure in the status",
        Duration::from_secs(120),
        || {
            status_in(&file, "stuck").filter(|s| {
                s["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("did not become ready within 2 s"))
            })
        },
    )
    .await;
    let msg = s["message"].as_str().unwrap();
    assert!(
        msg.contains("fake buildkitd: no worker will come up"),
        "{msg}"
    );
    w.stop();
    // the script and its sleeping child: stopped with their process group
    let left = still_running(&processes_with(&fake), Duration::from_secs(10)).await;
    assert!(left.is_empty(), "{left:?}");
    assert!(
        still_running(&daemons_under(cluster.work_dir()), Duration::from_secs(10))
            .await
            .is_empty()
    );
}

/// Without Mesos around it (whose agent would clean up after an exited executor):
/// a daemon that never answers is stopped with its whole process group, children
/// that would otherwise outlive it included, and the error quotes its log.
#[tokio::test]
async fn a_daemon_that_never_answers_is_stopped_with_what_it_started() {
    use slipway::executor::engine::{Daemon, EngineArgs, Ephemeral};
    use std::os::unix::fs::PermissionsExt;
    let fx = Fixture::new().file(
        "fake-buildkitd",
        "#!/bin/sh\nsleep 300 &\necho $! > child.pid\necho 'fake: still loading' >&2\nwait\n",
    );
    let fake = fx.path("fake-buildkitd");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = EngineArgs {
        start_timeout_secs: 1,
        ..Default::default()
    };
    let sandbox = tempfile::tempdir().unwrap();
    let e = match Ephemeral::start(Daemon::Buildkitd(fake), &args, sandbox.path()).await {
        Ok(_) => panic!("a daemon that never listens came up"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("did not become ready within 1 s"), "{e}");
    assert!(e.contains("fake: still loading"), "{e}");
    // the script ran in the executor's working directory; its child's PID is there
    let pid = std::fs::read_to_string("child.pid").unwrap();
    let _ = std::fs::remove_file("child.pid");
    // (SIGKILL lands a moment after it is sent; a zombie is dead)
    let gone = || {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .map_or(true, |s| s.contains(") Z "))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !gone() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone(), "the daemon's child {pid} outlived it");
}
