//! `slipway watch --backend mesos` against a real Apache Mesos 1.11 master whose
//! agents run `slipway executor` for real, on the real Docker daemon and registry.

use std::path::Path;
use std::time::Duration;

use crate::common::mesos::{
    MesosCluster, executor_tarball, free_port, serve_tarball, watch_on_mesos,
};
use crate::common::watcher::*;
use crate::common::*;

const SECRET: &str = "s3cr3t-only-in-task-data";

fn start(dir: &Path, master: &str, extra: &[&str]) -> Watcher {
    watch_on_mesos(dir, master, extra, &[])
}

/// A build that takes `secs` seconds in a RUN step (never cached).
fn slow(name: &str, base: &str, secs: u32) -> String {
    doc(
        name,
        &indent(&format!(
            "source:\n  inline:\n    dockerfile: |\n      FROM {base}\n      RUN sleep {secs} && echo done > /done\n\
noCache: true\noutput: {{registry: '{}', repository: slipway-test/{name}}}",
            registry()
        )),
    )
}

#[tokio::test]
async fn builds_run_as_mesos_tasks_and_the_task_is_written_into_status() {
    let cluster = MesosCluster::start(1);
    let reg = registry();
    // credentials travel to the task in its data; the registry ignores them
    let auth = base64_of(&format!("builder:{SECRET}"));
    let fx = Fixture::new()
        .file(
            "docker-config.json",
            &format!(r#"{{"auths":{{"{reg}":{{"auth":"{auth}"}}}}}}"#),
        )
        .file(
            "inline.yaml",
            &doc(
                "inline",
                &indent(&format!(
                    "source:\n  inline:\n    dockerfile: |\n      FROM scratch\n      LABEL built.on=mesos\n\
output:\n  registry: '{reg}'\n  repository: slipway-test/mesos-inline\n  tags: [latest, v1]\n  pushSecretRef: {{path: docker-config.json}}\n\
resources: {{cpus: 0.5, memMiB: 64}}"
                )),
            ),
        )
        .file(
            "local.yaml",
            &doc(
                "local",
                &indent(&format!(
                    "source: {{path: ctx}}\noutput: {{registry: '{reg}', repository: slipway-test/mesos-path}}"
                )),
            ),
        )
        // a path source: packed here, served to the executor, built there
        .file("ctx/Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n")
        .file("ctx/hello.txt", "context from the watch folder\n");
    let w = start(fx.dir.path(), &cluster.master(), &[]);

    let inline = phase_of(&fx.path("inline.yaml"), "inline", "Succeeded").await;
    let local = phase_of(&fx.path("local.yaml"), "local", "Succeeded").await;
    for s in [&inline, &local] {
        assert_pushed(&outcome(s)).await;
        assert_eq!(s["conditions"][0]["status"], "True");
    }
    assert_eq!(inline["pushedTags"].as_array().unwrap().len(), 2);

    // status.mesos names the framework (persisted in the folder), task and agent
    let framework_id =
        std::fs::read_to_string(fx.path(".slipway/mesos-framework-id")).expect("framework ID kept");
    let m = &inline["mesos"];
    assert_eq!(m["frameworkId"], framework_id.trim());
    assert!(
        m["taskId"]
            .as_str()
            .unwrap()
            .starts_with("slipway:tests:inline:")
    );
    assert!(!m["agentId"].as_str().unwrap().is_empty());
    let (state, json) = cluster.state().await;
    let names: Vec<String> = cluster.tasks().await.into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"build tests/inline".to_string()),
        "{names:?}"
    );
    assert_eq!(json["frameworks"][0]["id"], framework_id.trim());
    assert_eq!(json["frameworks"][0]["name"], "slipway");

    // the registry password is in no task state, log or status
    assert!(
        !state.contains(SECRET),
        "the master's /state shows the secret"
    );
    assert!(!state.contains(&auth));
    assert!(!w.log().contains(SECRET));
    let files = std::fs::read_to_string(fx.path("inline.yaml")).unwrap();
    assert!(!files.contains(SECRET));
}

#[tokio::test]
async fn an_offer_too_small_is_declined_and_the_build_says_why() {
    let cluster = MesosCluster::start(1);
    let reg = registry();
    let spec = |cpus: &str| {
        doc(
            "big",
            &indent(&format!(
                "source:\n  inline:\n    dockerfile: |\n      FROM scratch\n      LABEL size=big\n\
output: {{registry: '{reg}', repository: slipway-test/mesos-big}}\nresources: {{cpus: {cpus}, memMiB: 64}}"
            )),
        )
    };
    let fx = Fixture::new().file("big.yaml", &spec("64"));
    let file = fx.path("big.yaml");
    let _w = start(fx.dir.path(), &cluster.master(), &[]);
    let s = wait_for("the build to say no offer fits", LONG, || {
        status_in(&file, "big").filter(|s| {
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("no Mesos offer fits"))
        })
    })
    .await;
    assert_eq!(s["phase"], "Queued");
    assert!(s["message"].as_str().unwrap().contains("64"), "{s}");
    // it stays queued, with nothing launched
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status_in(&file, "big").unwrap()["phase"], "Queued");
    assert!(cluster.tasks().await.is_empty());

    // asking for less builds it
    std::fs::write(&file, spec("0.5")).unwrap();
    let s = phase_of(&file, "big", "Succeeded").await;
    assert_pushed(&outcome(&s)).await;
}

#[tokio::test]
async fn an_unreachable_master_is_retried_and_the_status_says_so() {
    let port = free_port();
    let master = format!("127.0.0.1:{port}");
    let reg = registry();
    let fx = Fixture::new().file(
        "a.yaml",
        &doc(
            "early",
            &indent(&format!(
                "source:\n  inline:\n    dockerfile: |\n      FROM scratch\n      LABEL early=yes\n\
output: {{registry: '{reg}', repository: slipway-test/mesos-early}}"
            )),
        ),
    );
    let file = fx.path("a.yaml");
    let w = start(fx.dir.path(), &master, &[]);
    let s = wait_for("the status to name the unreachable master", LONG, || {
        status_in(&file, "early").filter(|s| {
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot subscribe to the Mesos master"))
        })
    })
    .await;
    assert_eq!(s["phase"], "Queued");
    assert!(s["message"].as_str().unwrap().contains(&master), "{s}");

    let _cluster = MesosCluster::on_port(port, 1, false);
    let s = phase_of(&file, "early", "Succeeded").await;
    assert_pushed(&outcome(&s)).await;
    assert!(w.log().contains("subscribed"));
}

#[tokio::test]
async fn slipway_killed_mid_build_reattaches_instead_of_building_twice() {
    let base = ensure_base().await;
    let cluster = MesosCluster::start(1);
    let fx = Fixture::new().file("slow.yaml", &slow("slow", &base, 8));
    let file = fx.path("slow.yaml");
    let mut w = start(fx.dir.path(), &cluster.master(), &[]);
    let building = phase_of(&file, "slow", "Building").await;
    let task_id = building["mesos"]["taskId"].as_str().unwrap().to_string();
    w.stop(); // SIGKILL: no goodbye to the master

    let w2 = start(fx.dir.path(), &cluster.master(), &[]);
    let done = phase_of(&file, "slow", "Succeeded").await;
    assert_pushed(&outcome(&done)).await;
    assert_eq!(
        done["mesos"]["taskId"],
        task_id.as_str(),
        "the same task finished the build"
    );
    let tasks = cluster.tasks().await;
    let ours: Vec<_> = tasks
        .iter()
        .filter(|(n, _)| n == "build tests/slow")
        .collect();
    assert_eq!(ours.len(), 1, "one task only: {tasks:?}");
    assert!(w2.log().contains("re-attached"), "{}", w2.log());
}

#[tokio::test]
async fn a_restarted_master_ends_with_the_right_status() {
    let base = ensure_base().await;
    let mut cluster = MesosCluster::start(1);
    let fx = Fixture::new().file("slow.yaml", &slow("across-restart", &base, 6));
    let file = fx.path("slow.yaml");
    let w = start(fx.dir.path(), &cluster.master(), &[]);
    phase_of(&file, "across-restart", "Building").await;
    // the agents live in the master's process: their tasks are lost with it
    cluster.restart();
    let done = phase_of(&file, "across-restart", "Succeeded").await;
    assert_pushed(&outcome(&done)).await;
    let log = w.log();
    assert!(log.contains("lost the Mesos master"), "{log}");
    assert!(
        done["attempts"].as_u64().unwrap() >= 2,
        "the lost task was retried: {done}"
    );
}

#[tokio::test]
async fn deleting_the_file_mid_build_kills_the_task() {
    let base = ensure_base().await;
    let cluster = MesosCluster::start(1);
    let fx = Fixture::new().file("slow.yaml", &slow("doomed", &base, 30));
    let file = fx.path("slow.yaml");
    let _w = start(fx.dir.path(), &cluster.master(), &[]);
    phase_of(&file, "doomed", "Building").await;
    std::fs::remove_file(&file).unwrap();
    let start = std::time::Instant::now();
    loop {
        let tasks = cluster.tasks().await;
        if tasks
            .iter()
            .any(|(n, s)| n == "build tests/doomed" && s == "TASK_KILLED")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "task not killed: {tasks:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!file.exists(), "a deleted resource is not written back");
}

#[tokio::test]
async fn a_crashing_executor_fails_the_build_after_bounded_retries() {
    let cluster = MesosCluster::start(1);
    let reg = registry();
    let fx = Fixture::new()
        .file(
            "crash.sh",
            "#!/bin/sh\necho 'executor: segfault (simulated)' >&2\nexit 3\n",
        )
        .file(
            "a.yaml",
            &doc(
                "crashy",
                &indent(&format!(
                    "source:\n  inline:\n    dockerfile: |\n      FROM scratch\n\
output: {{registry: '{reg}', repository: slipway-test/mesos-crash}}"
                )),
            ),
        );
    let crash = fx.path("crash.sh");
    std::fs::set_permissions(&crash, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let file = fx.path("a.yaml");
    let _w = start(
        fx.dir.path(),
        &cluster.master(),
        &["--executor-path", crash.to_str().unwrap()],
    );
    let s = phase_of(&file, "crashy", "Failed").await;
    let msg = s["message"].as_str().unwrap();
    assert!(msg.contains("gave up after 2 attempts"), "{msg}");
    assert!(msg.contains("executor"), "{msg}");
    assert_eq!(s["conditions"][0]["reason"], "MesosError");
}

/// slipway's own image (scripts/image.sh; scripts/test.sh builds it and exports
/// `SLIPWAY_TEST_IMAGE`): the static binary on scratch, root by default, which is what
/// the executor needs for the agent's Docker socket.
fn executor_image() -> String {
    std::env::var("SLIPWAY_TEST_IMAGE").unwrap_or_else(|_| {
        panic!("SLIPWAY_TEST_IMAGE is not set: run the tests with scripts/test.sh, which builds the image with scripts/image.sh")
    })
}

#[tokio::test]
async fn the_executor_runs_inside_an_image_that_mesos_starts() {
    let image = executor_image();
    // the image is shared by the test run: only containers started from now on count
    let before = executor_containers(&image);
    let cluster = MesosCluster::start_with_docker(1);
    let reg = registry();
    let fx = Fixture::new().file(
        "a.yaml",
        &doc(
            "in-image",
            &indent(&format!(
                "source:\n  inline:\n    dockerfile: |\n      FROM scratch\n      LABEL executor=image\n\
output: {{registry: '{reg}', repository: slipway-test/mesos-image}}"
            )),
        ),
    );
    let file = fx.path("a.yaml");
    let _w = start(
        fx.dir.path(),
        &cluster.master(),
        &["--executor-image", &image],
    );
    let s = phase_of(&file, "in-image", "Succeeded").await;
    assert_pushed(&outcome(&s)).await;
    // the Docker containerizer ran the executor from the image
    let after = executor_containers(&image);
    assert!(
        after
            .iter()
            .any(|n| n.starts_with("mesos-") && !before.contains(n)),
        "no new executor container: before {before:?}, after {after:?}"
    );
    drop(cluster);
}

/// The names of the containers (running or not) started from `image`.
fn executor_containers(image: &str) -> Vec<String> {
    let ps = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &format!("ancestor={image}"),
            "--format",
            "{{.Names}}",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// `--executor-uri` through the real agent: its fetcher step runs the shim's
/// `mesos-fetcher` stand-in, which downloads and unpacks the tarball into the sandbox,
/// and the agent then starts `./slipway executor` from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_executor_tarball_is_fetched_by_the_agent_and_builds() {
    let (url, gets, server) = serve_tarball(executor_tarball().await).await;
    let cluster = MesosCluster::start(1);
    let reg = registry();
    let fx = Fixture::new().file(
        "a.yaml",
        &doc(
            "fetched",
            &indent(&format!(
                "source:\n  inline:\n    dockerfile: |\n      FROM scratch\n      LABEL executor=fetched\n\
output: {{registry: '{reg}', repository: slipway-test/mesos-fetched}}"
            )),
        ),
    );
    let file = fx.path("a.yaml");
    let _w = start(fx.dir.path(), &cluster.master(), &["--executor-uri", &url]);
    let s = phase_of(&file, "fetched", "Succeeded").await;
    assert_pushed(&outcome(&s)).await;
    // the agent's fetcher (not slipway, not the test) downloaded the tarball once; the
    // master forgets the executor (and its URIs) once its task ends, so that is the proof
    assert_eq!(gets.load(std::sync::atomic::Ordering::SeqCst), 1);
    server.abort();
}

/// A launch whose executor never registers gets no status update at all: after
/// `--launch-timeout` slipway asks the master about that task, and when that brings
/// nothing either, kills it and launches the build again.
#[tokio::test]
async fn a_launch_with_no_status_update_is_reconciled_then_relaunched() {
    let cluster = MesosCluster::start(1);
    let reg = registry();
    let fx = Fixture::new().file(
        "a.yaml",
        &doc(
            "silent",
            &indent(&format!(
                "source:\n  inline:\n    dockerfile: |\n      FROM scratch\n      LABEL launch=silent\n\
output: {{registry: '{reg}', repository: slipway-test/mesos-silent}}"
            )),
        ),
    );
    // the first executor hangs before registering with the agent; later ones are slipway
    let mark = fx.path("first-launch");
    let script = fx.path("executor.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif mkdir '{}' 2>/dev/null; then exec sleep 600; fi\nexec '{}' \"$@\"\n",
            mark.display(),
            env!("CARGO_BIN_EXE_slipway")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let file = fx.path("a.yaml");
    let w = start(
        fx.dir.path(),
        &cluster.master(),
        &[
            "--executor-path",
            script.to_str().unwrap(),
            "--launch-timeout",
            "4s",
        ],
    );
    let s = phase_of(&file, "silent", "Succeeded").await;
    assert_pushed(&outcome(&s)).await;
    assert!(mark.exists(), "the hanging executor ran");
    assert!(s["attempts"].as_u64().unwrap() >= 2, "relaunched: {s}");
    let log = w.log();
    assert!(log.contains("reconciling"), "{log}");
    assert!(log.contains("no status update for task"), "{log}");
    // slipway killed the silent one (left alone, the agent fails it after its
    // executor registration timeout, a minute)
    let tasks = cluster.tasks().await;
    let ours: Vec<&str> = tasks
        .iter()
        .filter(|(n, _)| n == "build tests/silent")
        .map(|(_, s)| s.as_str())
        .collect();
    assert!(ours.contains(&"TASK_KILLED"), "{tasks:?}");
    assert!(ours.contains(&"TASK_FINISHED"), "{tasks:?}");
}
