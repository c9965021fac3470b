//! The Helm chart (charts/slipway) as a user meets it: `helm` (built from its Go module
//! by scripts/ensure-kube.sh, in `SLIPWAY_KUBE_BIN`), the manifests it renders, and the
//! controller run exactly as the chart's Deployment would run it, with the token of the
//! chart's ServiceAccount.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::controller::Controller;
use super::kube::{Kube, bin_dir};
use super::wait_for;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart_dir() -> PathBuf {
    root().join("charts/slipway")
}

pub fn helm_bin() -> PathBuf {
    let bin = bin_dir().join("helm");
    assert!(
        bin.is_file(),
        "{} not found: scripts/ensure-kube.sh builds helm next to kubectl",
        bin.display()
    );
    bin
}

/// helm with nothing from the user's environment (no kubeconfig, no repositories).
pub fn helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(helm_bin())
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .expect("helm runs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `helm template RELEASE charts/slipway -n NS ARGS...`: stdout, or stderr on failure.
pub fn template(release: &str, ns: &str, args: &[&str]) -> Result<String, String> {
    let chart = chart_dir();
    let mut all = vec!["template", release, chart.to_str().unwrap(), "-n", ns];
    all.extend(args);
    let out = helm(&all);
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// `template`, panicking with helm's message on failure.
pub fn template_ok(release: &str, ns: &str, args: &[&str]) -> String {
    template(release, ns, args)
        .unwrap_or_else(|e| panic!("helm template {} failed:\n{e}", args.join(" ")))
}

/// The YAML documents of a multi-document stream, as JSON (empty ones dropped).
pub fn docs(yaml: &str) -> Vec<Value> {
    slipway::yaml::from_multiple::<Value>(yaml)
        .unwrap_or_else(|e| panic!("bad YAML ({e}):\n{yaml}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// The documents of `kind`.
pub fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one document of `kind` named `name`.
pub fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name} in {docs:#?}");
    found[0]
}

/// The Deployment's containers named `name`.
fn containers_named<'a>(deploy: &'a Value, name: &str) -> Vec<&'a Value> {
    deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter(|c| c["name"] == name)
        .collect()
}

/// The Deployment's `controller` container.
pub fn container(deploy: &Value) -> &Value {
    let cs = containers_named(deploy, "controller");
    assert_eq!(cs.len(), 1, "one controller container in {deploy:#}");
    cs[0]
}

/// The Deployment's `buildkitd` sidecar, if it has one.
pub fn sidecar(deploy: &Value) -> Option<&Value> {
    let cs = containers_named(deploy, "buildkitd");
    assert!(cs.len() <= 1, "{deploy:#}");
    cs.first().copied()
}

/// The names of the Deployment's containers.
pub fn container_names(deploy: &Value) -> Vec<String> {
    deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// A container's args, as strings.
pub fn container_args(c: &Value) -> Vec<String> {
    c["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

/// The controller container's args, as strings.
pub fn args(deploy: &Value) -> Vec<String> {
    container_args(container(deploy))
}

/// `charts/slipway/files/rbac-rules.yaml` as JSON: `{watched: [...], own: [...]}`.
pub fn rules_file() -> Value {
    let text = std::fs::read_to_string(chart_dir().join("files/rbac-rules.yaml")).unwrap();
    slipway::yaml::from_str(&text).unwrap()
}

/// A kubeconfig for the ServiceAccount `sa` of namespace `ns`, with a token from the
/// TokenRequest API (what a pod of that ServiceAccount gets), in `dir`.
pub fn service_account_kubeconfig(k: &Kube, ns: &str, sa: &str, dir: &Path) -> PathBuf {
    let token = k
        .kubectl_ok(&["create", "token", sa, "-n", ns, "--duration=2h"])
        .trim()
        .to_string();
    assert!(!token.is_empty());
    let admin = std::fs::read_to_string(k.admin_kubeconfig()).unwrap();
    let ca = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .expect("CA in the admin kubeconfig")
        .trim()
        .to_string();
    let path = dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {ca}\nusers:\n- name: {sa}\n  user:\n    token: {token}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: {sa}\n    namespace: {ns}\n\
             current-context: c\n",
            k.server()
        ),
    )
    .unwrap();
    path
}

/// `kubectl auth can-i ARGS` as whoever `kubeconfig` names: "yes" or "no".
pub fn can_i(k: &Kube, kubeconfig: &Path, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i"];
    all.extend(args);
    text(&k.kubectl_as(kubeconfig, &all).stdout)
        .trim()
        .to_string()
}

/// Waits (RBAC sees new bindings a moment after they are stored) until `can_i` says yes.
pub async fn wait_can_i(k: &Kube, kubeconfig: &Path, args: &[&str]) {
    wait_for(
        &format!("can-i {} to say yes", args.join(" ")),
        Duration::from_secs(30),
        || (can_i(k, kubeconfig, args) == "yes").then_some(()),
    )
    .await;
}

/// `slipway controller` started with exactly the args and the downward-API environment
/// of the chart's Deployment; only what a test host must change is changed: the metrics
/// address (a free port on 127.0.0.1), the Docker socket (the test daemon's) and the
/// buildkitd the chart's sidecar would be (the test buildkitd,
/// `SLIPWAY_TEST_BUILDKIT_ADDR`, with the client certificates of
/// `SLIPWAY_TEST_BUILDKIT_DIR`).
pub fn chart_controller(
    deploy: &Value,
    kubeconfig: &Path,
    pod_name: &str,
    extra: &[&str],
) -> Controller {
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let buildkit = |what: &str| -> String {
        let var = match what {
            "addr" => "SLIPWAY_TEST_BUILDKIT_ADDR",
            _ => "SLIPWAY_TEST_BUILDKIT_DIR",
        };
        let v = std::env::var(var).unwrap_or_else(|_| {
            panic!(
                "{var} is not set: the chart's controller needs a buildkitd (scripts/buildkitd.sh)"
            )
        });
        match what {
            "addr" => v,
            file => format!("{v}/{file}.pem"),
        }
    };
    let mut argv: Vec<String> = args(deploy)
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-listen=") {
                "--metrics-listen=127.0.0.1:0".into()
            } else if let (Some(_), Some(h)) = (a.strip_prefix("--docker-host="), &docker_host) {
                format!("--docker-host={h}")
            } else if a.starts_with("--buildkit-addr=") {
                format!("--buildkit-addr={}", buildkit("addr"))
            } else if a.starts_with("--buildkit-ca=") {
                format!("--buildkit-ca={}", buildkit("ca"))
            } else if a.starts_with("--buildkit-cert=") {
                format!("--buildkit-cert={}", buildkit("cert"))
            } else if a.starts_with("--buildkit-key=") {
                format!("--buildkit-key={}", buildkit("key"))
            } else {
                a
            }
        })
        .collect();
    argv.extend(extra.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let ns = deploy["metadata"]["namespace"].as_str().unwrap();
    let env = [("POD_NAME", pod_name), ("POD_NAMESPACE", ns)];
    Controller::spawn(&argv, kubeconfig, &env, pod_name)
}

/// `helm template rel charts/slipway -n builds ARGS`, as JSON documents.
pub fn render(args: &[&str]) -> Vec<Value> {
    docs(&template_ok("rel", "builds", args))
}

/// `args` holds exactly `a`.
pub fn has(args: &[String], a: &str) -> bool {
    args.iter().any(|x| x == a)
}

/// The Deployment's pod spec.
pub fn pod_spec(deploy: &Value) -> &Value {
    &deploy["spec"]["template"]["spec"]
}

/// The pod's volume `name`.
pub fn volume<'a>(deploy: &'a Value, name: &str) -> &'a Value {
    pod_spec(deploy)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("volume {name} in {deploy:#}"))
}

/// The container's mounts, mountPath -> volume name.
pub fn mounts(c: &Value) -> BTreeMap<String, String> {
    c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The pod's hostPath volumes.
pub fn host_paths(deploy: &Value) -> Vec<&Value> {
    pod_spec(deploy)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v.get("hostPath").is_some())
        .collect()
}

/// The keys a Secret volume takes from its Secret.
pub fn secret_items(v: &Value) -> Vec<String> {
    v["secret"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect()
}
