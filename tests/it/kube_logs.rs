//! The controller keeps every build's log and serves it on `/logs/{ns}/{name}` to
//! whoever Kubernetes says may `get dockerbuilds/log`: a real API server reviews the
//! tokens (`kubectl create token`) and the access. The controller runs with its
//! service account's rules (charts/slipway/files/rbac-rules.yaml).

use std::process::Command;
use std::time::Duration;

use crate::common::controller::Controller;
use crate::common::kube::Kube;
use crate::common::*;

const LONG: Duration = Duration::from_secs(120);

fn build_yaml(name: &str, base: &str) -> String {
    Build::new(name)
        .inline(&format!("FROM {base}\nRUN echo kube-log-line-{name}\n"))
        .no_cache()
        .push_to("slipway-test/kube-logs")
        .yaml()
}

fn reader_rbac(ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: reader, namespace: {ns}}}\n---\n\
apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: nobody, namespace: {ns}}}\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: build-log-reader, namespace: {ns}}}\n\
rules:\n- apiGroups: [slipway.dev]\n  resources: [dockerbuilds/log]\n  verbs: [get]\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: build-log-reader, namespace: {ns}}}\n\
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: build-log-reader}}\n\
subjects:\n- {{kind: ServiceAccount, name: reader, namespace: {ns}}}\n"
    )
}

async fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("the controller answers");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn build_logs_are_served_only_to_those_kubernetes_allows() {
    let k = Kube::shared();
    let ns = k.new_namespace("logs");
    let base = ensure_base().await;
    let logdir = tempfile::tempdir().unwrap();
    let c = Controller::start(
        &k.controller_kubeconfig(),
        &ns,
        "logs-test",
        &["--log-dir", logdir.path().to_str().unwrap()],
    );
    k.apply(&ns, &build_yaml("app", &base));
    k.apply(&ns, &reader_rbac(&ns));
    let done = k
        .wait_json(&ns, "dockerbuild", "app", LONG, |v| {
            v["status"]["phase"] == "Succeeded"
        })
        .await;
    let digest = done["status"]["imageDigest"].as_str().unwrap().to_string();
    let port = c.metrics_port().await;
    let path = format!("/logs/{ns}/app");

    // nobody without a token, nor with one the API server does not accept
    let (code, body) = get(port, &path, None).await;
    assert_eq!(code, 401, "{body}");
    let (code, _) = get(port, &path, Some("not-a-token")).await;
    assert_eq!(code, 401);

    // a real account without the permission: refused, naming what is missing
    let nobody = k.kubectl_ok(&["create", "token", "nobody", "-n", &ns]);
    let (code, body) = get(port, &path, Some(nobody.trim())).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("get dockerbuilds/log"), "{body}");
    assert!(
        body.contains(&format!("system:serviceaccount:{ns}:nobody")),
        "{body}"
    );

    // with it: the whole log (RBAC sees a new binding a moment later)
    let reader = k.kubectl_ok(&["create", "token", "reader", "-n", &ns]);
    let reader = reader.trim();
    let mut tries = 0;
    let body = loop {
        let (code, body) = get(port, &path, Some(reader)).await;
        if code == 200 {
            break body;
        }
        tries += 1;
        assert!(tries < 100, "the reader is still refused: {code} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.contains("kube-log-line-app"), "{body}");
    let last = body.lines().last().unwrap();
    assert!(
        last.contains("end of build 1: succeeded") && last.contains(&digest),
        "{last}"
    );
    // the same file the controller keeps under --log-dir
    let kept = std::fs::read_to_string(logdir.path().join(format!("{ns}/app/1.log"))).unwrap();
    assert_eq!(body, kept);

    let (code, body) = get(port, &format!("{path}?build=5"), Some(reader)).await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("latest is 1"), "{body}");
    let (code, body) = get(port, &format!("/logs/{ns}/nope"), Some(reader)).await;
    assert_eq!(code, 404, "{body}");

    // the CLI: the same answers, as exit codes a script can tell apart
    let server = format!("http://127.0.0.1:{port}");
    let cli = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["logs", "app", "-n", &ns, "--kube", "--server", &server])
            .env("SLIPWAY_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = cli(reader);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), kept);
    let out = cli(nobody.trim());
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dockerbuilds/log"));
    drop(c);
}

/// A non-loopback IPv4 address of this host: the API server refuses loopback
/// Endpoints ("may not be in the loopback range"), so the controller listens here.
fn host_ip() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("`ip` runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_string)
        .expect("this host has a non-loopback IPv4 address")
}

/// The controller as the API server's service proxy finds it: a selector-less
/// Service whose Endpoints name a Pod object (the proxy only dials addresses of a
/// Pod of the namespace) whose status carries the controller's address.
fn controller_service(ns: &str, ip: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: default}}\n---\n\
apiVersion: v1\nkind: Pod\nmetadata: {{name: slipway-0}}\n\
spec: {{automountServiceAccountToken: false, containers: [{{name: slipway, image: slipway}}]}}\n---\n\
apiVersion: v1\nkind: Service\nmetadata: {{name: slipway}}\n\
spec: {{ports: [{{name: metrics, port: 8080}}]}}\n---\n\
apiVersion: v1\nkind: Endpoints\nmetadata: {{name: slipway}}\n\
subsets:\n- addresses: [{{ip: '{ip}', targetRef: {{kind: Pod, name: slipway-0, namespace: {ns}}}}}]\n  \
ports: [{{name: metrics, port: {port}}}]\n"
    )
}

/// `get services/proxy` on the controller's Service, as the CLI names it.
fn proxy_rbac(ctl_ns: &str, ns: &str, subjects: &[&str]) -> String {
    let subjects: String = subjects
        .iter()
        .map(|s| format!("- {{kind: ServiceAccount, name: {s}, namespace: {ns}}}\n"))
        .collect();
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: log-proxy, namespace: {ctl_ns}}}\n\
rules:\n- apiGroups: ['']\n  resources: [services/proxy]\n  resourceNames: ['http:slipway:metrics']\n  verbs: [get]\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: log-proxy, namespace: {ctl_ns}}}\n\
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: log-proxy}}\n\
subjects:\n{subjects}"
    )
}

#[tokio::test]
async fn slipway_logs_kube_reaches_the_controller_through_the_api_servers_proxy() {
    let k = Kube::shared();
    let ns = k.new_namespace("logs-proxy");
    let ctl_ns = k.new_bare_namespace("slipway-ctl");
    let base = ensure_base().await;
    let logdir = tempfile::tempdir().unwrap();
    let ip = host_ip();
    let listen = format!("{ip}:0");
    let c = Controller::spawn(
        &[
            "controller",
            "--namespace",
            &ns,
            "--pod-namespace",
            &ns,
            "--identity",
            "logs-proxy",
            "--metrics-listen",
            &listen,
            "--lease-duration",
            "3s",
            "--log-dir",
            logdir.path().to_str().unwrap(),
        ],
        &k.controller_kubeconfig(),
        &[("SLIPWAY_LOG", "debug")],
        "logs-proxy",
    );
    k.apply(&ns, &build_yaml("app", &base));
    k.apply(&ns, &reader_rbac(&ns));
    k.apply(
        &ns,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: outsider}\n",
    );
    k.apply(&ctl_ns, &proxy_rbac(&ctl_ns, &ns, &["reader", "nobody"]));
    let port = c.metrics_port().await;
    k.apply(&ctl_ns, &controller_service(&ctl_ns, &ip, port));
    let status = format!(r#"{{"status":{{"podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}]}}}}"#);
    k.kubectl_ok(&[
        "patch",
        "pod",
        "slipway-0",
        "-n",
        &ctl_ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    k.wait_json(&ns, "dockerbuild", "app", LONG, |v| {
        v["status"]["phase"] == "Succeeded"
    })
    .await;
    let kept = std::fs::read_to_string(logdir.path().join(format!("{ns}/app/1.log"))).unwrap();

    // each caller's own kubeconfig: the API server's address, its CA, the SA's token
    let admin = std::fs::read_to_string(k.admin_kubeconfig()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cli = |sa: &str| {
        let token = k.kubectl_ok(&["create", "token", sa, "-n", &ns]);
        let config: String = admin
            .lines()
            .map(|l| match l.trim_start().strip_prefix("token:") {
                Some(_) => format!("    token: {}", token.trim()),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = dir.path().join(sa);
        std::fs::write(&path, config).unwrap();
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(["logs", "app", "-n", &ns, "--kube"])
            .args(["--controller-namespace", &ctl_ns])
            .env("KUBECONFIG", &path)
            .env_remove("SLIPWAY_TOKEN")
            .output()
            .unwrap()
    };

    // allowed both hops: the whole log (RBAC sees new bindings a moment later)
    let mut tries = 0;
    let out = loop {
        let out = cli("reader");
        if out.status.success() {
            break out;
        }
        tries += 1;
        assert!(
            tries < 50,
            "the reader is still refused: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout), kept);

    // through the proxy, but not allowed to read the log: the controller says so
    let out = cli("nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("may not get dockerbuilds/log"), "{err}");
    assert!(
        err.contains(&format!("system:serviceaccount:{ns}:nobody")),
        "{err}"
    );

    // not even allowed through the proxy: the API server's refusal, and what is missing
    let out = cli("outsider");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("`get` on `services/proxy` (resource name http:slipway:metrics)"),
        "{err}"
    );
    drop(c);
}
