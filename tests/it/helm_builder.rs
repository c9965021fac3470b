//! The chart's `builder.mode` (backend: local): the buildkitd sidecar (the default),
//! the node's Docker socket, a shared buildkitd. What each mode renders, the schema's
//! messages for bad builder values, and certificates the chart generates and keeps
//! across upgrades (tests/it/helm_sidecar.rs runs the sidecar itself).

use crate::common::helm::*;
use crate::common::kube::Kube;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

#[test]
fn the_default_is_a_buildkitd_sidecar_reached_over_localhost_with_mutual_tls() {
    let docs = render(&[]);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    let a = args(deploy);
    for want in [
        "--backend=local",
        "--builder=buildkitd",
        "--buildkit-addr=tcp://127.0.0.1:1234",
        "--buildkit-ca=/certs/ca.pem",
        "--buildkit-cert=/certs/cert.pem",
        "--buildkit-key=/certs/key.pem",
    ] {
        assert!(has(&a, want), "{want} not in {a:?}");
    }
    assert!(!a.iter().any(|x| x.starts_with("--docker-host")), "{a:?}");
    // no Docker socket, nothing else from the node
    assert!(host_paths(deploy).is_empty(), "{deploy:#}");

    // the controller sees the client certificate only, never the server's key
    let c = container(deploy);
    assert_eq!(mounts(c)["/certs"], "buildkit-client-tls");
    let client = volume(deploy, "buildkit-client-tls");
    assert_eq!(client["secret"]["secretName"], "rel-slipway-buildkit-tls");
    assert_eq!(secret_items(client), ["ca.pem", "cert.pem", "key.pem"]);

    let bk = sidecar(deploy).expect("a buildkitd container");
    assert_eq!(bk["image"], "moby/buildkit:v0.34.2");
    assert_eq!(bk["securityContext"]["privileged"], true);
    assert_eq!(bk["securityContext"]["runAsUser"], 0);
    let b = container_args(bk);
    for want in [
        "--addr=tcp://127.0.0.1:1234",
        "--tlscacert=/certs/ca.pem",
        "--tlscert=/certs/server.pem",
        "--tlskey=/certs/server-key.pem",
        "--root=/var/lib/buildkit",
        "--oci-worker-gc=true",
        "--oci-worker-gc-keepstorage=2048,10240,20480",
    ] {
        assert!(has(&b, want), "{want} not in {b:?}");
    }
    // never on the pod's IP: only 127.0.0.1 and a unix socket
    let addrs: Vec<&String> = b.iter().filter(|x| x.starts_with("--addr=")).collect();
    assert!(
        addrs
            .iter()
            .all(|x| x.starts_with("--addr=tcp://127.0.0.1:") || x.starts_with("--addr=unix://")),
        "{addrs:?}"
    );
    assert!(bk["ports"].is_null(), "no port on the pod IP: {bk:#}");
    let m = mounts(bk);
    assert_eq!(m["/certs"], "buildkit-server-tls");
    assert_eq!(m["/var/lib/buildkit"], "buildkit-state");
    let server = volume(deploy, "buildkit-server-tls");
    assert_eq!(server["secret"]["secretName"], "rel-slipway-buildkit-tls");
    assert_eq!(
        secret_items(server),
        ["ca.pem", "server.pem", "server-key.pem"]
    );
    // state on an emptyDir: no claim, rolling updates as before
    assert_eq!(volume(deploy, "buildkit-state")["emptyDir"], json!({}));
    assert!(of_kind(&docs, "PersistentVolumeClaim").is_empty());
    assert!(deploy["spec"]["strategy"].is_null());
    // `kubectl logs deploy/...` shows the controller
    let annotations = &deploy["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["kubectl.kubernetes.io/default-container"],
        "controller"
    );

    // generated certificates: a Secret with every key, and a checksum in the pod
    // template that is the Secret's (new certificates restart the pod)
    let secret = one(&docs, "Secret", "rel-slipway-buildkit-tls");
    let data = secret["data"].as_object().unwrap();
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "ca.pem",
            "cert.pem",
            "key.pem",
            "server-key.pem",
            "server.pem"
        ]
    );
    for (k, v) in data {
        let pem = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(pem.starts_with("-----BEGIN "), "{k}: {pem}");
    }
    let sum = hex::encode(Sha256::digest(serde_json::to_string(data).unwrap()));
    assert_eq!(annotations["checksum/buildkit-tls"], sum.as_str());
}

#[test]
fn sidecar_values_change_what_they_promise() {
    // port, GC limits, more flags
    let docs = render(&[
        "--set",
        "builder.sidecar.port=2345",
        "--set",
        "builder.sidecar.gc.reservedMB=100",
        "--set",
        "builder.sidecar.gc.minFreeMB=200",
        "--set",
        "builder.sidecar.gc.maxUsedMB=300",
        "--set",
        "builder.sidecar.extraArgs={--debug}",
        "--set",
        "builder.sidecar.persistence.emptyDirSizeLimit=30Gi",
        "--set",
        "builder.sidecar.image.tag=v0.35.0",
    ]);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    assert!(has(&args(deploy), "--buildkit-addr=tcp://127.0.0.1:2345"));
    let bk = sidecar(deploy).unwrap();
    assert_eq!(bk["image"], "moby/buildkit:v0.35.0");
    let b = container_args(bk);
    for want in [
        "--addr=tcp://127.0.0.1:2345",
        "--oci-worker-gc-keepstorage=100,200,300",
        "--debug",
    ] {
        assert!(has(&b, want), "{want} not in {b:?}");
    }
    assert_eq!(
        volume(deploy, "buildkit-state")["emptyDir"],
        json!({"sizeLimit": "30Gi"})
    );
    let nogc = render(&["--set", "builder.sidecar.gc.enabled=false"]);
    let b = container_args(sidecar(one(&nogc, "Deployment", "rel-slipway")).unwrap());
    assert!(has(&b, "--oci-worker-gc=false"), "{b:?}");
    assert!(!b.iter().any(|x| x.contains("keepstorage")), "{b:?}");

    // a PersistentVolumeClaim for a warm cache, and Recreate so the old pod lets go of it
    let docs = render(&[
        "--set",
        "builder.sidecar.persistence.enabled=true",
        "--set",
        "builder.sidecar.persistence.size=80Gi",
        "--set",
        "builder.sidecar.persistence.storageClassName=fast",
    ]);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    let pvc = one(&docs, "PersistentVolumeClaim", "rel-slipway-buildkit");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "80Gi");
    assert_eq!(pvc["spec"]["storageClassName"], "fast");
    assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    let state = volume(deploy, "buildkit-state");
    assert_eq!(
        state["persistentVolumeClaim"]["claimName"],
        "rel-slipway-buildkit"
    );
    assert!(state.get("emptyDir").is_none());
    assert_eq!(deploy["spec"]["strategy"]["type"], "Recreate");
    // ... or the user's claim
    let docs = render(&[
        "--set",
        "builder.sidecar.persistence.enabled=true",
        "--set",
        "builder.sidecar.persistence.existingClaim=bk-cache",
    ]);
    assert!(of_kind(&docs, "PersistentVolumeClaim").is_empty());
    let deploy = one(&docs, "Deployment", "rel-slipway");
    assert_eq!(
        volume(deploy, "buildkit-state")["persistentVolumeClaim"]["claimName"],
        "bk-cache"
    );

    // the user's certificates: no Secret of the chart's, no checksum
    let docs = render(&["--set", "builder.tls.existingSecret=bk-tls"]);
    assert!(of_kind(&docs, "Secret").is_empty());
    let deploy = one(&docs, "Deployment", "rel-slipway");
    for v in ["buildkit-client-tls", "buildkit-server-tls"] {
        assert_eq!(volume(deploy, v)["secret"]["secretName"], "bk-tls");
    }
    assert!(
        deploy["spec"]["template"]["metadata"]["annotations"]["checksum/buildkit-tls"].is_null()
    );

    // rootless: the rootless image as uid 1000, not privileged
    let docs = render(&["--set", "builder.sidecar.rootless=true"]);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    let bk = sidecar(deploy).unwrap();
    assert_eq!(bk["image"], "moby/buildkit:v0.34.2-rootless");
    let sc = &bk["securityContext"];
    assert!(sc["privileged"].is_null(), "{sc:#}");
    assert_eq!(sc["runAsUser"], 1000);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["seccompProfile"]["type"], "Unconfined");
    assert_eq!(sc["appArmorProfile"]["type"], "Unconfined");
    let b = container_args(bk);
    assert!(has(&b, "--oci-worker-no-process-sandbox"), "{b:?}");
    assert!(has(&b, "--root=/home/user/.local/share/buildkit"), "{b:?}");
    assert_eq!(
        mounts(bk)["/home/user/.local/share/buildkit"],
        "buildkit-state"
    );
}

#[test]
fn docker_socket_mode_mounts_the_node_socket_and_runs_no_sidecar() {
    let docs = render(&[
        "--set",
        "builder.mode=dockerSocket",
        "--set",
        "local.dockerSocket=/run/docker.sock",
    ]);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    assert_eq!(container_names(deploy), ["controller"]);
    let a = args(deploy);
    assert!(has(&a, "--builder=auto"), "{a:?}");
    assert!(
        has(&a, "--docker-host=unix:///var/run/docker.sock"),
        "{a:?}"
    );
    assert!(!a.iter().any(|x| x.starts_with("--buildkit")), "{a:?}");
    assert_eq!(
        volume(deploy, "docker-socket")["hostPath"],
        json!({"path": "/run/docker.sock", "type": "Socket"})
    );
    assert_eq!(
        mounts(container(deploy))["/var/run/docker.sock"],
        "docker-socket"
    );
    assert!(
        of_kind(&docs, "Secret").is_empty(),
        "no certificates needed"
    );
}

#[test]
fn remote_mode_reaches_the_shared_buildkitd_with_the_given_client_certificate() {
    let docs = render(&[
        "--set",
        "builder.mode=remote",
        "--set",
        "builder.remote.address=tcp://buildkitd.buildkit.svc:1234",
        "--set",
        "builder.tls.existingSecret=buildkit-client",
    ]);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    assert_eq!(container_names(deploy), ["controller"]);
    assert!(host_paths(deploy).is_empty(), "{deploy:#}");
    let a = args(deploy);
    for want in [
        "--builder=buildkitd",
        "--buildkit-addr=tcp://buildkitd.buildkit.svc:1234",
        "--buildkit-ca=/certs/ca.pem",
        "--buildkit-cert=/certs/cert.pem",
        "--buildkit-key=/certs/key.pem",
    ] {
        assert!(has(&a, want), "{want} not in {a:?}");
    }
    let client = volume(deploy, "buildkit-client-tls");
    assert_eq!(client["secret"]["secretName"], "buildkit-client");
    assert_eq!(secret_items(client), ["ca.pem", "cert.pem", "key.pem"]);
    assert_eq!(mounts(container(deploy))["/certs"], "buildkit-client-tls");
    assert!(of_kind(&docs, "Secret").is_empty());
}

#[test]
fn with_mesos_the_builder_mode_leaves_the_controller_pod_alone() {
    // builds run on the agents: any mode, even an incomplete remote one, adds nothing
    for mode in ["buildkitdSidecar", "dockerSocket", "remote"] {
        let set = format!("builder.mode={mode}");
        let docs = render(&[
            "--set",
            "backend=mesos",
            "--set",
            "mesos.masters={m1:5050}",
            "--set",
            &set,
        ]);
        let deploy = one(&docs, "Deployment", "rel-slipway");
        assert_eq!(container_names(deploy), ["controller"], "{mode}");
        assert!(host_paths(deploy).is_empty(), "{mode}");
        let a = args(deploy);
        assert!(
            !a.iter()
                .any(|x| x.starts_with("--builder") || x.starts_with("--buildkit")),
            "{mode}: {a:?}"
        );
        assert!(of_kind(&docs, "Secret").is_empty(), "{mode}");
    }
}

#[test]
fn bad_builder_values_fail_with_a_message_naming_them() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "builder.mode=sidecar"],
            "at '/builder/mode': value must be one of 'buildkitdSidecar', 'dockerSocket', 'remote'",
        ),
        (
            &["--set", "builder.mode=remote"],
            "builder.mode: remote needs builder.remote.address",
        ),
        (
            &[
                "--set",
                "builder.mode=remote",
                "--set",
                "builder.remote.address=tcp://bk:1234",
            ],
            "builder.mode: remote needs builder.tls.existingSecret",
        ),
        (
            &["--set", "builder.remote.address=bk.svc:1234"],
            "at '/builder/remote/address': 'bk.svc:1234' does not match pattern",
        ),
        (
            &["--set", "builder.sidecar.port=0"],
            "at '/builder/sidecar/port': minimum: got 0, want 1",
        ),
        (
            &["--set", "builder.sidecar.rootless=yes"],
            "at '/builder/sidecar/rootless': got string, want boolean",
        ),
        (
            &["--set", "builder.sidecar.gc.maxUsedMB=-1"],
            "at '/builder/sidecar/gc/maxUsedMB': minimum: got -1, want 0",
        ),
        (
            &["--set", "builder.sidecar.persistence.size=lots"],
            "at '/builder/sidecar/persistence/size': 'lots' does not match pattern",
        ),
        (
            &["--set", "builder.sidecar.extraArgs={debug}"],
            "at '/builder/sidecar/extraArgs/0': 'debug' does not match pattern",
        ),
        (
            &["--set", "builder.sidecar.persistance.enabled=true"],
            "additional properties 'persistance' not allowed",
        ),
        (
            &["--set", "builder.tls.existingSecret=My_Secret"],
            "at '/builder/tls/existingSecret'",
        ),
        (
            &[
                "--set",
                "builder.sidecar.persistence.enabled=true",
                "--set",
                "replicas=2",
            ],
            "builder.sidecar.persistence.enabled needs replicas: 1",
        ),
    ];
    for (args, want) in cases {
        match template("bad", "default", args) {
            Ok(out) => panic!("helm template {} succeeded:\n{out}", args.join(" ")),
            Err(e) => assert!(
                e.contains(want),
                "helm template {}: want '{want}' in:\n{e}",
                args.join(" ")
            ),
        }
    }
}

/// `helm` against the shared test cluster as its admin.
fn helm_on(k: &Kube, args: &[&str]) -> String {
    let kc = k.admin_kubeconfig();
    let mut all = args.to_vec();
    all.extend(["--kubeconfig", kc.to_str().unwrap()]);
    let out = helm(&all);
    assert!(
        out.status.success(),
        "helm {}: {}{}",
        all.join(" "),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn generated_certificates_survive_an_upgrade() {
    let k = Kube::shared();
    let ns = k.new_bare_namespace("helm-certs");
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    // the release named after its namespace, and no cluster-wide RBAC: nothing of it
    // can meet another test's objects
    let full = format!("{ns}-slipway");
    let tls = format!("{full}-buildkit-tls");
    let upgrade = |extra: &[&str]| {
        let mut a = vec![
            "upgrade",
            "--install",
            &ns,
            chart,
            "-n",
            &ns,
            "--skip-crds",
            "--set",
            "rbac.create=false",
        ];
        a.extend(extra);
        helm_on(&k, &a);
        let secret = k.get_json(&ns, "secret", &tls)["data"].clone();
        let deploy = k.get_json(&ns, "deployment", &full);
        let sum = deploy["spec"]["template"]["metadata"]["annotations"]["checksum/buildkit-tls"]
            .as_str()
            .unwrap()
            .to_string();
        (secret, sum)
    };
    let (first, sum1) = upgrade(&[]);
    assert_eq!(first.as_object().unwrap().len(), 5, "{first:#}");
    // an upgrade (here one that changes the concurrency) keeps them, and so does not
    // restart the pod for them
    let (second, sum2) = upgrade(&["--set", "concurrency=3"]);
    assert_eq!(first, second, "an upgrade replaced the certificates");
    assert_eq!(sum1, sum2);
    // a Secret that lost a key is made anew, and the pod restarts with it
    k.kubectl_ok(&[
        "-n",
        &ns,
        "patch",
        "secret",
        &tls,
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/data/server-key.pem"}]"#,
    ]);
    let (third, sum3) = upgrade(&[]);
    assert_eq!(third.as_object().unwrap().len(), 5, "{third:#}");
    assert_ne!(first["ca.pem"], third["ca.pem"]);
    assert_ne!(sum1, sum3);
    helm_on(&k, &["uninstall", &ns, "-n", &ns]);
}
