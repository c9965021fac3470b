//! examples/gitops, applied the way the README walks through it: `kubectl apply -k`
//! (kubectl's built-in kustomize) against the shared Kubernetes API server, with
//! `slipway controller` running, then `kubectl wait` and the digest from the status.

use std::path::Path;
use std::time::Duration;

use crate::common::controller::Controller;
use crate::common::kube::Kube;
use crate::common::*;

const BUILDS: [&str; 3] = ["motd", "web", "worker"];

/// A copy of examples/gitops pointed at namespace `ns`, the test registry and the
/// test's base image: what a team's fork of the folder would change.
fn folder_for(dir: &Path, ns: &str, base: &str) {
    let src = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gitops"));
    std::fs::create_dir_all(dir).unwrap();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        // no status from an earlier `slipway watch examples/` run
        let text = without_status(&text)
            .replace("namespace: team-wiki", &format!("namespace: {ns}"))
            .replace("127.0.0.1:5000/slipway-examples/base:latest", base)
            .replace("127.0.0.1:5000", &registry());
        std::fs::write(dir.join(e.file_name()), text).unwrap();
    }
}

#[tokio::test]
async fn the_gitops_folder_applies_with_kustomize_and_every_build_ends_ready() {
    let base = ensure_base().await;
    let k = Kube::shared();
    let ns = k.new_namespace("gitops");
    let fx = Fixture::new();
    let dir = fx.path("gitops");
    folder_for(&dir, &ns, &base);
    let dir_arg = dir.display().to_string();

    // what Argo CD or Flux renders: the namespace and labels from kustomization.yaml,
    // and worker's pushSecretRef from its patch
    let rendered = k.kubectl_ok(&["kustomize", &dir_arg]);
    assert_eq!(
        rendered.matches("kind: DockerBuild").count(),
        BUILDS.len(),
        "{rendered}"
    );
    k.kubectl_ok(&["apply", "-k", &dir_arg, "--dry-run=server"]);

    let c = Controller::start(&k.controller_kubeconfig(), &ns, "gitops", &[]);
    k.kubectl_ok(&["apply", "-k", &dir_arg]);
    let worker = k.get_json(&ns, "dockerbuild", "worker");
    assert_eq!(
        worker["spec"]["output"]["pushSecretRef"]["name"], "regcred",
        "{worker}"
    );
    assert_eq!(worker["metadata"]["labels"]["team"], "wiki", "{worker}");
    // applied before its Secret: it waits for it instead of failing
    k.wait_json(&ns, "dockerbuild", "worker", Duration::from_secs(60), |v| {
        v["status"]["phase"] == "Pending"
            && v["status"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("regcred"))
    })
    .await;
    k.create_registry_secret(&ns, "regcred", "builder", "not-checked-by-this-registry");

    k.kubectl_ok(&[
        "wait",
        "-n",
        &ns,
        "--for=condition=Ready",
        "dockerbuild",
        "--all",
        "--timeout=240s",
    ]);
    // Ready stays Ready: a finished build is not started again when the watch
    // brings back the controller's own earlier (Pushing) status
    tokio::time::sleep(Duration::from_secs(2)).await;
    for name in BUILDS {
        let v = k.get_json(&ns, "dockerbuild", name);
        assert_eq!(v["status"]["phase"], "Succeeded", "{v}");
        let started = c
            .log()
            .lines()
            .filter(|l| l.contains("build started") && l.contains(&format!("build={ns}/{name} ")))
            .count();
        assert_eq!(started, 1, "{name} was built {started} times");
        let out = outcome(&v["status"]);
        assert_pushed(&out).await;
        // the README's way to read the digest
        let digest = k.kubectl_ok(&[
            "get",
            "dockerbuild",
            name,
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.imageDigest}",
        ]);
        assert_eq!(digest, out.digest);
    }
    let web = k.get_json(&ns, "dockerbuild", "web");
    assert_eq!(
        web["status"]["pushedTags"],
        serde_json::json!([
            format!("{}/slipway-examples/wiki-web:latest", registry()),
            format!("{}/slipway-examples/wiki-web:1.4", registry()),
        ])
    );
    let _ = k.kubectl(&["delete", "namespace", &ns, "--wait=false"]);
}
