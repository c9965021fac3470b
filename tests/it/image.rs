//! The container image that scripts/image.sh builds (`SLIPWAY_TEST_IMAGE`, built by
//! scripts/test.sh before the tests): a static binary on scratch that runs as the
//! controller against the shared Kubernetes API server, with the real Docker daemon
//! and registry. (tests/it/mesos.rs runs the same image as the Mesos executor.)

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::kube::Kube;
use crate::common::*;
use serde_json::Value;

const SOCKET: &str = "/var/run/docker.sock";

/// The image under test.
fn image() -> String {
    std::env::var("SLIPWAY_TEST_IMAGE").unwrap_or_else(|_| {
        panic!("SLIPWAY_TEST_IMAGE is not set: run the tests with scripts/test.sh, which builds the image with scripts/image.sh")
    })
}

fn docker_cli(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the docker CLI runs")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker_cli(args);
    assert!(
        out.status.success(),
        "docker {} failed: exit {:?}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A container started with `docker run -d`, removed on Drop (its log printed first
/// when the test fails).
struct Container(String);

impl Container {
    fn run(args: &[&str]) -> Self {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        Self(docker_ok(&all).trim().to_string())
    }

    fn logs(&self) -> String {
        let out = docker_cli(&["logs", &self.0]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn running(&self) -> bool {
        docker_cli(&["inspect", "-f", "{{.State.Running}}", &self.0])
            .stdout
            .starts_with(b"true")
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- container {} log (last lines) ---\n{}",
                self.0,
                tail.join("\n")
            );
        }
        let _ = docker_cli(&["rm", "-f", &self.0]);
    }
}

#[test]
fn the_image_is_a_static_binary_on_scratch_that_prints_its_version_and_the_crd() {
    let image = image();
    let version = docker_ok(&["run", "--rm", "--network", "none", &image, "--version"]);
    assert_eq!(
        version.trim(),
        format!("slipway {}", env!("CARGO_PKG_VERSION"))
    );

    let crd = docker_ok(&["run", "--rm", "--network", "none", &image, "crd"]);
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/dockerbuild.yaml"
    ))
    .unwrap();
    assert!(
        crd == checked_in,
        "`IMAGE crd` differs from crds/dockerbuild.yaml"
    );

    let inspect: Value = serde_json::from_str(&docker_ok(&["image", "inspect", &image])).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["/slipway"]));
    // root by default: the local backend and the Mesos executor use the Docker socket
    assert_eq!(config["User"].as_str().unwrap_or_default(), "");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(env.contains(&"TMPDIR=/tmp"), "{env:?}");
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "slipway");
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    // one layer: /slipway and /tmp, nothing else
    let layers = inspect[0]["RootFS"]["Layers"].as_array().unwrap().len();
    assert_eq!(layers, 1, "{}", inspect[0]["RootFS"]);
    let size = inspect[0]["Size"].as_u64().unwrap();
    assert!(size < 100 << 20, "the image is {size} bytes");
}

fn build_yaml(name: &str, dockerfile: &str) -> String {
    Build::new(name)
        .inline(dockerfile)
        .no_cache()
        .push_to(&format!("slipway-test/image-{name}"))
        .tags(&["v1"])
        .yaml()
}

/// The controller as a pod with the local backend runs it: the service account's
/// kubeconfig, the host's Docker socket, and (here) not root but uid 65532 with the
/// socket's group, the way a chart's securityContext would set it. The inline
/// Dockerfile is staged under the image's /tmp.
#[tokio::test]
async fn the_image_runs_as_the_controller_and_builds_an_applied_dockerbuild() {
    let image = image();
    let base = ensure_base().await;
    let k = Kube::shared();
    let ns = k.new_namespace("image");

    // the kubeconfig is root's (0600): give the container user a readable copy
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::copy(k.controller_kubeconfig(), &kubeconfig).unwrap();
    std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o644)).unwrap();
    let socket_gid = std::fs::metadata(SOCKET)
        .expect("the Docker socket")
        .gid()
        .to_string();
    let mount_kubeconfig = format!("{}:/etc/slipway/kubeconfig:ro", kubeconfig.display());
    let mount_socket = format!("{SOCKET}:{SOCKET}");
    let c = Container::run(&[
        "--network",
        "host",
        "--user",
        "65532:65532",
        "--group-add",
        &socket_gid,
        "-v",
        &mount_kubeconfig,
        "-v",
        &mount_socket,
        "-e",
        "KUBECONFIG=/etc/slipway/kubeconfig",
        "-e",
        "SLIPWAY_LOG=debug",
        &image,
        "controller",
        "--namespace",
        &ns,
        "--pod-namespace",
        &ns,
        "--metrics-listen",
        "127.0.0.1:0",
        "--leader-elect=false",
        "--docker-host",
        &format!("unix://{SOCKET}"),
    ]);

    k.apply(
        &ns,
        &build_yaml(
            "hello",
            &format!("FROM {base}\nRUN echo from-the-image > /hello"),
        ),
    );
    let v = k
        .wait_json(&ns, "dockerbuild", "hello", Duration::from_secs(180), |v| {
            matches!(v["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        })
        .await;
    assert_eq!(v["status"]["phase"], "Succeeded", "{v}");
    let out = outcome(&v["status"]);
    assert_pushed(&out).await;
    assert_eq!(
        out.pushed_tags,
        vec![format!("{}/slipway-test/image-hello:v1", registry())]
    );
    assert!(c.running(), "the controller exited:\n{}", c.logs());
    let logs = c.logs();
    assert!(logs.contains(&ns), "{logs}");
    drop(c);
    let _ = k.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
