//! The chart's buildkitd sidecar run outside a pod: its exact arguments from the
//! rendered Deployment, with only the paths that exist in a pod alone (its mounts)
//! replaced by local dirs holding what the pod would mount, run with the real buildkitd
//! (`SLIPWAY_BUILDKIT_BIN`, as root like scripts/buildkitd.sh); buildctl then reaches
//! it with the controller's flags and certificates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::helm::*;
use crate::common::process::Process;
use base64::Engine;
use serde_json::Value;

/// The dir with buildkitd and buildctl (`SLIPWAY_BUILDKIT_BIN`).
fn buildkit_bin() -> PathBuf {
    let dir = PathBuf::from(std::env::var("SLIPWAY_BUILDKIT_BIN").expect(
        "SLIPWAY_BUILDKIT_BIN: the dir with buildkitd and buildctl (scripts/ensure-buildkit.sh)",
    ));
    for b in ["buildkitd", "buildctl"] {
        assert!(dir.join(b).is_file(), "{} missing", dir.join(b).display());
    }
    dir
}

/// What the pod gives `container` at each mountPath, made in `root` on this machine:
/// a Secret volume's items from `secret_data` (base64, as in a Secret), an empty dir
/// for anything else. Returns mountPath -> local dir.
fn materialize(
    deploy: &Value,
    container: &Value,
    secret_data: &serde_json::Map<String, Value>,
    root: &Path,
) -> Vec<(String, PathBuf)> {
    mounts(container)
        .into_iter()
        .map(|(path, name)| {
            let dir = root.join(&name);
            std::fs::create_dir_all(&dir).unwrap();
            let vol = volume(deploy, &name);
            if let Some(items) = vol["secret"]["items"].as_array() {
                for item in items {
                    let key = item["key"].as_str().unwrap();
                    let b64 = secret_data[key].as_str().unwrap();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap();
                    std::fs::write(dir.join(item["path"].as_str().unwrap()), bytes).unwrap();
                }
            } else {
                assert!(
                    vol.get("emptyDir").is_some() || vol.get("persistentVolumeClaim").is_some(),
                    "{vol:#}"
                );
            }
            (path, dir)
        })
        .collect()
}

/// `arg` with a pod path (under one of `mounts`) replaced by its local dir.
fn local_arg(arg: &str, mounts: &[(String, PathBuf)]) -> String {
    for (path, dir) in mounts {
        if let Some(i) = arg
            .find(&format!("{path}/"))
            .or_else(|| arg.ends_with(path.as_str()).then(|| arg.len() - path.len()))
        {
            let local = dir.to_str().unwrap();
            return format!("{}{local}{}", &arg[..i], &arg[i + path.len()..]);
        }
    }
    arg.to_string()
}

/// A buildkitd run from a test (a [`Process`]); stopped, and its mounts undone,
/// when dropped.
struct Buildkitd {
    process: Process,
    root: PathBuf,
}

impl Drop for Buildkitd {
    fn drop(&mut self) {
        // TERM first: buildkitd then closes its state database cleanly. It is our child,
        // or the child of a launcher (unshare), which would not pass the signal on.
        self.process.terminate_with_children();
        // as scripts/buildkitd.sh does: anything it left mounted under its dirs
        let prefix = format!("{}/", self.root.display());
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut left: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        left.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in left {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
}

/// buildctl `args` (with --addr and TLS flags) `debug workers`.
fn buildctl(bin: &Path, args: &[String]) -> std::process::Output {
    Command::new(bin.join("buildctl"))
        .args(args)
        .args(["debug", "workers"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Renders the chart with `set` (a sidecar on a free port), runs the sidecar's exact
/// arguments with the real buildkitd, pod paths replaced by local dirs holding what the
/// pod would mount (the certificates from `secret_data`, or from the rendered Secret),
/// and checks that the controller's certificates reach it over TCP, that a client
/// without one cannot, that the sidecar's readiness probe passes, and (with `build`)
/// that a RUN step builds. `launcher` comes before buildkitd on the command line.
fn run_the_sidecar(
    set: &[&str],
    secret_data: Option<serde_json::Map<String, Value>>,
    launcher: &[&str],
    build: bool,
) {
    assert!(
        is_root(),
        "buildkitd runs as root here, as scripts/buildkitd.sh runs it"
    );
    let bin = buildkit_bin();
    let port = crate::common::mesos::free_port();
    let port_set = format!("builder.sidecar.port={port}");
    let mut args = vec!["--set", port_set.as_str()];
    for s in set {
        args.extend(["--set", s]);
    }
    let docs = render(&args);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    let data = secret_data.unwrap_or_else(|| {
        one(&docs, "Secret", "rel-slipway-buildkit-tls")["data"]
            .as_object()
            .unwrap()
            .clone()
    });
    let bk = sidecar(deploy).expect("a buildkitd container");
    // short: the unix socket's path must stay under 108 bytes
    let root = tempfile::Builder::new()
        .prefix("bk")
        .tempdir_in("/tmp")
        .unwrap();
    let side_mounts = materialize(deploy, bk, &data, &root.path().join("sidecar"));
    let daemon_args: Vec<String> = container_args(bk)
        .iter()
        .map(|a| local_arg(a, &side_mounts))
        .collect();
    assert!(
        has(&daemon_args, &format!("--addr=tcp://127.0.0.1:{port}")),
        "{daemon_args:?}"
    );
    let buildkitd = bin.join("buildkitd");
    let mut cmd = match launcher.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&buildkitd);
            c
        }
        None => Command::new(&buildkitd),
    };
    cmd.args(&daemon_args);
    let mut daemon = Buildkitd {
        process: Process::spawn_with_stdout("buildkitd", cmd),
        root: root.path().to_path_buf(),
    };

    // the controller's flags, its certificate dir made the same way
    let ctl_mounts = materialize(
        deploy,
        container(deploy),
        &data,
        &root.path().join("controller"),
    );
    let flag = |name: &str| -> String {
        let a = args_of_controller(deploy, name);
        local_arg(&a, &ctl_mounts)
    };
    let client = vec![
        "--addr".to_string(),
        flag("--buildkit-addr"),
        "--tlscacert".into(),
        flag("--buildkit-ca"),
        "--tlscert".into(),
        flag("--buildkit-cert"),
        "--tlskey".into(),
        flag("--buildkit-key"),
    ];
    assert_eq!(client[1], format!("tcp://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let out = loop {
        if let Ok(Some(st)) = daemon.process.child.try_wait() {
            panic!(
                "buildkitd {daemon_args:?} exited ({st}):\n{}",
                daemon.process.log()
            );
        }
        let out = buildctl(&bin, &client);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        out.status.success(),
        "buildctl {client:?} debug workers: {}\nbuildkitd {daemon_args:?}:\n{}",
        text(&out.stderr),
        daemon.process.log()
    );
    assert!(
        text(&out.stdout).contains("linux/"),
        "no worker platforms in:\n{}",
        text(&out.stdout)
    );

    // mutual TLS: the CA alone does not get in
    let anonymous = buildctl(&bin, &client[..4]);
    assert!(
        !anonymous.status.success(),
        "a client without a certificate got in:\n{}",
        text(&anonymous.stdout)
    );

    // the readiness probe, run as the kubelet would (buildctl from the image's PATH)
    let probe: Vec<String> = bk["readinessProbe"]["exec"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| local_arg(a.as_str().unwrap(), &side_mounts))
        .collect();
    assert_eq!(probe[0], "buildctl");
    let out = Command::new(bin.join("buildctl"))
        .args(&probe[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "readiness probe {probe:?}: {}",
        text(&out.stderr)
    );

    if !build {
        return;
    }
    // and it builds: a RUN step (runc, the state dir, the pod's network), over TCP with
    // the controller's certificates
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(crate::common::busybox(), ctx.path().join("busybox")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built > /built\"]\n",
    )
    .unwrap();
    let local = |name: &str| format!("{name}={}", ctx.path().display());
    let out = Command::new(bin.join("buildctl"))
        .args(&client)
        .args([
            "build",
            "--frontend",
            "dockerfile.v0",
            "--progress",
            "plain",
        ])
        .args([
            "--local",
            &local("context"),
            "--local",
            &local("dockerfile"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "buildctl build: {}\nbuildkitd:\n{}",
        text(&out.stderr),
        daemon.process.log()
    );
    drop(daemon);
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| text(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The value of the controller's `--NAME=VALUE` flag.
fn args_of_controller(deploy: &Value, name: &str) -> String {
    let prefix = format!("{name}=");
    args(deploy)
        .iter()
        .find_map(|a| a.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("{name} not in {:?}", args(deploy)))
}

#[test]
fn the_sidecar_arguments_run_with_the_certificates_the_chart_generates() {
    run_the_sidecar(&[], None, &[], true);
}

#[test]
fn the_rootless_sidecar_arguments_run_in_a_user_namespace() {
    // What the rootless image's rootlesskit gives buildkitd: a user namespace (and a
    // mount namespace) in which it is the mapped root; buildkitd then runs rootless,
    // which --oci-worker-no-process-sandbox requires. unshare maps one id only (no
    // newuidmap ranges here), too few for a build step's /dev/pts (gid 5): serving
    // with these flags over mutual TLS is what this checks, not building.
    run_the_sidecar(
        &["builder.sidecar.rootless=true"],
        None,
        &[
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "--fork",
            "--kill-child=SIGTERM",
        ],
        false,
    );
}

#[test]
fn the_sidecar_arguments_run_with_certificates_made_by_the_readme_openssl_recipe() {
    // the README's recipe: scripts/lib.sh's pki_ca and pki_sign
    let dir = tempfile::tempdir().unwrap();
    let lib = root().join("scripts/lib.sh");
    let recipe = format!(
        ". '{}'; pki_ca ca.pem ca-key.pem slipway-buildkit-ca && \
         pki_sign server.pem server-key.pem buildkitd server ca.pem ca-key.pem && \
         pki_sign cert.pem key.pem slipway-controller client ca.pem ca-key.pem",
        lib.display()
    );
    let out = Command::new("bash")
        .args(["-c", &recipe])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // what `kubectl create secret generic buildkit-tls --from-file=...` stores
    let mut data = serde_json::Map::new();
    for key in [
        "ca.pem",
        "cert.pem",
        "key.pem",
        "server.pem",
        "server-key.pem",
    ] {
        let bytes = std::fs::read(dir.path().join(key)).unwrap();
        data.insert(
            key.into(),
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into(),
        );
    }
    run_the_sidecar(
        &["builder.tls.existingSecret=buildkit-tls"],
        Some(data),
        &[],
        true,
    );
}
