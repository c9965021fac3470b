//! The controller keeps every build's log and serves it on `/logs/{ns}/{name}` to
//! whoever Kubernetes says may `get dockerbuilds/log`: a real API server reviews the
//! tokens (`kubectl create token`) and the access. The controller runs with its
//! service account's rules (charts/slipway/files/rbac-rules.yaml).

mod common;

use std::process::Command;
use std::time::Duration;

use common::controller::Controller;
use common::kube::Kube;
use common::*;

const LONG: Duration = Duration::from_secs(120);

fn build_yaml(name: &str, base: &str) -> String {
    format!(
        "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata:\n  name: {name}\nspec:\n  source:\n    inline:\n      dockerfile: |\n        FROM {base}\n        RUN echo kube-log-line-{name}\n  noCache: true\n  output:\n    registry: '{}'\n    repository: slipway-test/kube-logs\n",
        registry()
    )
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
