//! The Kubernetes test harness itself (scripts/kube.sh, tests/it/common/kube.rs): what the
//! controller's tests and its users rely on about the API server they run against —
//! the CRD is served as `kubectl` users address it, and the controller's identity has
//! exactly the rules of charts/slipway/files/rbac-rules.yaml.

use std::path::Path;
use std::time::Duration;

use crate::common::Build;
use crate::common::kube::Kube;
use serde_json::{Value, json};

fn build_yaml(name: &str) -> String {
    Build::new(name)
        .inline("FROM scratch")
        .push_to_registry("127.0.0.1:5000", &format!("harness/{name}"))
        .yaml()
}

fn lease_yaml(holder: &str) -> String {
    format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: slipway-controller\n\
         spec:\n  holderIdentity: {holder}\n  leaseDurationSeconds: 15\n"
    )
}

/// `kubectl auth can-i ARGS` as the controller: "yes" or "no".
fn controller_can_i(k: &Kube, args: &[&str]) -> String {
    let mut all = vec!["auth", "can-i"];
    all.extend(args);
    let out = k.kubectl_as(&k.controller_kubeconfig(), &all);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// kubectl as the controller; panics unless it succeeds; its stdout.
fn as_controller_ok(k: &Kube, args: &[&str]) -> String {
    let out = k.kubectl_as(&k.controller_kubeconfig(), args);
    assert!(
        out.status.success(),
        "kubectl {} as the controller failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stdin_as(k: &Kube, kubeconfig: &Path, args: &[&str], input: &str) -> (bool, String) {
    let out = k.kubectl_stdin_as(kubeconfig, args, input);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_crd_is_served_under_its_plural_and_short_name() {
    let k = Kube::shared();
    let ns = k.new_namespace("crd");
    k.kubectl_ok(&["get", "dockerbuilds", "-n", &ns]);
    k.apply(&ns, &build_yaml("hello"));
    let name = k.kubectl_ok(&["get", "dbuild", "hello", "-n", &ns, "-o", "name"]);
    assert_eq!(name.trim(), "dockerbuild.slipway.dev/hello");
    let v = k.get_json(&ns, "dockerbuild", "hello");
    assert_eq!(v["kind"], "DockerBuild", "{v}");
    assert_eq!(v["spec"]["output"]["repository"], "harness/hello", "{v}");
    // the table a user sees has the printer columns
    let table = k.kubectl_ok(&["get", "dockerbuilds", "-n", &ns]);
    assert!(
        table.contains("PHASE") && table.contains("hello"),
        "{table}"
    );
}

#[tokio::test]
async fn the_controller_identity_can_do_its_job_and_no_more() {
    let k = Kube::shared();
    let ns = k.new_namespace("rbac");
    k.apply(&ns, &build_yaml("watched"));
    let api = k.get_json(&ns, "dockerbuild", "watched")["apiVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // list across namespaces, and watch
    let all = as_controller_ok(&k, &["get", "dockerbuilds", "-A", "-o", "name"]);
    assert!(all.contains("dockerbuild.slipway.dev/watched"), "{all}");
    let watch = as_controller_ok(
        &k,
        &[
            "get",
            "--raw",
            &format!("/apis/{api}/namespaces/{ns}/dockerbuilds?watch=true&timeoutSeconds=1"),
        ],
    );
    assert!(
        watch.contains("\"ADDED\"") && watch.contains("\"watched\""),
        "{watch}"
    );

    // the status subresource, and the finalizer on the object itself
    as_controller_ok(
        &k,
        &[
            "patch",
            "dockerbuild",
            "watched",
            "-n",
            &ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            &json!({"status": {"phase": "Queued", "message": "from the harness"}}).to_string(),
        ],
    );
    let v = k
        .wait_json(
            &ns,
            "dockerbuild",
            "watched",
            Duration::from_secs(10),
            |v| v["status"]["message"] == "from the harness",
        )
        .await;
    assert_eq!(v["status"]["phase"], "Queued", "{v}");
    as_controller_ok(
        &k,
        &[
            "patch",
            "dockerbuild",
            "watched",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["slipway.dev/harness"]}}"#,
        ],
    );
    let v = k.get_json(&ns, "dockerbuild", "watched");
    assert_eq!(v["metadata"]["finalizers"], json!(["slipway.dev/harness"]));
    k.kubectl_ok(&[
        "patch",
        "dockerbuild",
        "watched",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);

    // Events, and one named Secret at a time
    for (args, want) in [
        (vec!["create", "events.events.k8s.io"], "yes"),
        (vec!["get", "secrets"], "yes"),
        (vec!["list", "secrets"], "no"),
        (vec!["watch", "secrets"], "no"),
        (vec!["create", "dockerbuilds.slipway.dev"], "no"),
        (vec!["delete", "dockerbuilds.slipway.dev"], "no"),
        (vec!["update", "dockerbuilds.slipway.dev"], "no"),
    ] {
        let mut a = args.clone();
        a.extend(["-n", &ns]);
        assert_eq!(controller_can_i(&k, &a), want, "can-i {}", a.join(" "));
    }
    let out = k.kubectl_as(&k.controller_kubeconfig(), &["get", "secrets", "-n", &ns]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_controller_identity_writes_leases_only_where_granted() {
    let k = Kube::shared();
    let ctrl = k.controller_kubeconfig();
    // its own namespace (the kubeconfig's default) is granted from the start
    assert_eq!(
        controller_can_i(&k, &["create", "leases.coordination.k8s.io"]),
        "yes"
    );

    let granted = k.new_namespace("lease");
    let (ok, err) = stdin_as(
        &k,
        &ctrl,
        &["create", "-n", &granted, "-f", "-"],
        &lease_yaml("a"),
    );
    assert!(ok, "{err}");
    // get + update, as leader election does
    let mut lease: Value = serde_json::from_str(&as_controller_ok(
        &k,
        &[
            "get",
            "lease",
            "slipway-controller",
            "-n",
            &granted,
            "-o",
            "json",
        ],
    ))
    .unwrap();
    lease["spec"]["holderIdentity"] = json!("b");
    let (ok, err) = stdin_as(
        &k,
        &ctrl,
        &["replace", "-n", &granted, "-f", "-"],
        &lease.to_string(),
    );
    assert!(ok, "{err}");
    let v = k.get_json(&granted, "lease", "slipway-controller");
    assert_eq!(v["spec"]["holderIdentity"], "b", "{v}");
    as_controller_ok(
        &k,
        &[
            "create",
            "configmap",
            "framework",
            "-n",
            &granted,
            "--from-literal=id=x",
        ],
    );

    let bare = k.new_bare_namespace("nolease");
    let (ok, err) = stdin_as(
        &k,
        &ctrl,
        &["create", "-n", &bare, "-f", "-"],
        &lease_yaml("a"),
    );
    assert!(!ok && err.contains("forbidden"), "{err}");
    let out = k.kubectl_as(
        &ctrl,
        &[
            "create",
            "configmap",
            "framework",
            "-n",
            &bare,
            "--from-literal=id=x",
        ],
    );
    assert!(!out.status.success());
}

#[test]
fn a_private_api_server_restarts_on_the_same_port_with_its_data() {
    let k = Kube::start_private();
    let port = k.port();
    let ns = k.new_namespace("restart");
    k.apply(&ns, &build_yaml("kept"));

    k.stop_apiserver();
    let out = k.kubectl(&["get", "dockerbuilds", "-n", &ns, "--request-timeout=2s"]);
    assert!(!out.status.success(), "the API server still answers");

    k.start_apiserver();
    assert_eq!(k.port(), port);
    let v = k.get_json(&ns, "dockerbuild", "kept");
    assert_eq!(v["metadata"]["name"], "kept");
    // the kubeconfigs written before the restart still work, RBAC included
    assert_eq!(
        controller_can_i(&k, &["list", "dockerbuilds.slipway.dev", "-n", &ns]),
        "yes"
    );
}
