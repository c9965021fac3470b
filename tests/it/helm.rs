//! The Helm chart, charts/slipway: `helm lint`, what `helm template` renders for the
//! default values and for a non-default set, the schema's messages for bad values, the
//! rendered manifests applied server-side to the real API server, and the controller
//! run as the chart's Deployment runs it (its args, its ServiceAccount's token, its
//! RBAC) building a DockerBuild to a pushed digest.

use std::time::Duration;

use crate::common::helm::*;
use crate::common::kube::Kube;
use crate::common::*;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(120);

/// Everything the non-default render sets, as a user's values file.
const CUSTOM: &str = r#"
backend: mesos
mesos:
  masters: [m1.example:5050, m2.example:5050]
  principal: slipway
  secret:
    existingSecret: mesos-auth
    key: pw
  role: builds
  frameworkName: slipway-ci
  user: builder
  failoverTimeout: 2d
  executor:
    image: registry.example:5000/slipway:0.1.0
  agentDockerHost: unix:///run/docker.sock
  defaultResources: {cpus: 2, memMiB: 2048}
  refuseSeconds: 10
  reconcileInterval: 1m
concurrency: 5
maxAttempts: 3
retryBackoff: 2s
watchNamespace: team-a
replicas: 2
leaderElection:
  leaseName: builds-leader
  leaseDuration: 20s
log: {level: debug, format: json}
image:
  repository: registry.example:5000/slipway
  tag: "1.2"
  pullPolicy: Always
serviceMonitor:
  enabled: true
  interval: 15s
  labels: {release: prom}
podSecurityContext:
  runAsNonRoot: true
  runAsUser: 1000
nodeSelector: {slipway.dev/builder: "true"}
tolerations:
  - {key: dedicated, operator: Equal, value: builds, effect: NoSchedule}
extraArgs: ["--refuse-seconds=10"]
"#;

fn values_file(dir: &tempfile::TempDir, name: &str, yaml: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, yaml).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn helm_lint_passes_for_default_and_custom_values() {
    let dir = tempfile::tempdir().unwrap();
    let custom = values_file(&dir, "custom.yaml", CUSTOM);
    let chart = chart_dir();
    for extra in [vec![], vec!["-f", custom.as_str()]] {
        let mut a = vec!["lint", "--strict", chart.to_str().unwrap()];
        a.extend(extra.iter().copied());
        let out = helm(&a);
        assert!(
            out.status.success(),
            "helm {}: {}{}",
            a.join(" "),
            text(&out.stdout),
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("0 chart(s) failed"),
            "{}",
            text(&out.stdout)
        );
    }
}

#[test]
fn chart_crds_are_the_top_level_crds_byte_for_byte() {
    let top = std::fs::read(root().join("crds/dockerbuild.yaml")).unwrap();
    let chart = std::fs::read(chart_dir().join("crds/dockerbuild.yaml")).unwrap();
    assert!(
        top == chart,
        "charts/slipway/crds/dockerbuild.yaml differs from crds/dockerbuild.yaml: copy it over \
         (cp crds/dockerbuild.yaml charts/slipway/crds/)"
    );
    let files: Vec<String> = std::fs::read_dir(chart_dir().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, vec!["dockerbuild.yaml".to_string()]);
}

#[test]
fn default_values_render_a_cluster_wide_local_controller() {
    let docs = docs(&template_ok("rel", "slipway-system", &[]));
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for want in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
    ] {
        assert!(kinds.contains(&want), "{want} missing from {kinds:?}");
    }
    for absent in [
        "PodDisruptionBudget",
        "ServiceMonitor",
        "PersistentVolumeClaim",
    ] {
        assert!(!kinds.contains(&absent), "{absent} rendered by default");
    }
    // the one Secret: the buildkitd sidecar's generated certificates
    let secrets: Vec<&str> = of_kind(&docs, "Secret")
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(secrets, vec!["rel-slipway-buildkit-tls"]);
    // everything namespaced lands in the release namespace
    for d in &docs {
        if !d["kind"].as_str().unwrap().starts_with("Cluster") {
            assert_eq!(d["metadata"]["namespace"], "slipway-system", "{d:#}");
        }
    }

    let name = "rel-slipway";
    let deploy = one(&docs, "Deployment", name);
    let spec = &deploy["spec"]["template"]["spec"];
    assert_eq!(deploy["spec"]["replicas"], 1);
    assert_eq!(spec["serviceAccountName"], name);
    let c = container(deploy);
    assert_eq!(c["image"], "slipway:0.1.0", "tag defaults to appVersion");
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    let a = args(deploy);
    assert_eq!(a[0], "controller");
    for want in [
        "--backend=local",
        "--builder=buildkitd",
        "--buildkit-addr=tcp://127.0.0.1:1234",
        "--leader-elect=true",
        "--lease-name=rel-slipway",
        "--lease-duration=15s",
        "--concurrency=2",
        "--metrics-listen=0.0.0.0:8080",
        "--log-level=info",
    ] {
        assert!(has(&a, want), "{want} not in {a:?}");
    }
    assert!(
        !a.iter().any(|x| x.starts_with("--namespace")
            || x.starts_with("--mesos")
            || x == "--log-json"
            || x.starts_with("--docker-host")),
        "{a:?}"
    );
    // builds run in the buildkitd sidecar: nothing from the node (tests/it/helm_builder.rs
    // covers the builder modes)
    assert_eq!(container_names(deploy), vec!["controller", "buildkitd"]);
    assert!(
        !spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.get("hostPath").is_some()),
        "{spec:#}"
    );
    // downward API: identity and own namespace
    let env = c["env"].as_array().unwrap();
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let e = env.iter().find(|e| e["name"] == var).expect(var);
        assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    // non-root, read-only, no privileges
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_ne!(spec["securityContext"]["runAsUser"], 0);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));

    // RBAC: exactly the rules of files/rbac-rules.yaml, bound to the chart's account
    let rules = rules_file();
    assert_eq!(one(&docs, "ClusterRole", name)["rules"], rules["watched"]);
    assert_eq!(one(&docs, "Role", "rel-slipway-own")["rules"], rules["own"]);
    // the build-log endpoint's token and access reviews
    let review = format!("{name}-review");
    assert_eq!(one(&docs, "ClusterRole", &review)["rules"], rules["review"]);
    for (kind, n) in [
        ("ClusterRoleBinding", name),
        ("ClusterRoleBinding", review.as_str()),
        ("RoleBinding", "rel-slipway-own"),
    ] {
        assert_eq!(
            one(&docs, kind, n)["subjects"],
            json!([{"kind": "ServiceAccount", "name": name, "namespace": "slipway-system"}])
        );
    }
    one(&docs, "ServiceAccount", name);

    // the metrics Service selects the pods
    let svc = one(&docs, "Service", name);
    let labels = &deploy["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "{k}");
    }
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
}

#[test]
fn custom_values_render_what_they_promise() {
    let dir = tempfile::tempdir().unwrap();
    let custom = values_file(&dir, "custom.yaml", CUSTOM);
    let docs = docs(&template_ok("ci", "build-system", &["-f", &custom]));
    let name = "ci-slipway";
    let deploy = one(&docs, "Deployment", name);
    let spec = &deploy["spec"]["template"]["spec"];
    let c = container(deploy);
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(c["image"], "registry.example:5000/slipway:1.2");
    assert_eq!(c["imagePullPolicy"], "Always");
    let a = args(deploy);
    for want in [
        "--backend=mesos",
        "--mesos-master=m1.example:5050,m2.example:5050",
        "--principal=slipway",
        "--secret-file=/etc/slipway/mesos/secret",
        "--role=builds",
        "--framework-name=slipway-ci",
        "--mesos-user=builder",
        "--failover-timeout=2d",
        "--framework-id-configmap=ci-slipway-mesos-framework",
        "--executor-image=registry.example:5000/slipway:0.1.0",
        "--executor-docker-socket=/var/run/docker.sock",
        "--agent-docker-host=unix:///run/docker.sock",
        "--default-cpus=2",
        "--default-mem=2048",
        "--reconcile-interval=1m",
        "--concurrency=5",
        "--max-attempts=3",
        "--retry-backoff=2s",
        "--namespace=team-a",
        "--leader-elect=true",
        "--lease-name=builds-leader",
        "--lease-duration=20s",
        "--log-level=debug",
        "--log-json",
    ] {
        assert!(has(&a, want), "{want} not in {a:?}");
    }
    assert_eq!(
        a.last().unwrap(),
        "--refuse-seconds=10",
        "extraArgs come last"
    );
    assert!(
        !a.iter().any(|x| x.starts_with("--docker-host")
            || x.starts_with("--executor-path")
            || x.starts_with("--builder")
            || x.starts_with("--buildkit")),
        "{a:?}"
    );
    // builds run on the agents: no buildkitd in the controller pod
    assert_eq!(container_names(deploy), vec!["controller"]);
    // no Docker socket from the node with Mesos
    let vols = spec["volumes"].as_array().unwrap();
    assert!(
        !vols.iter().any(|v| v.get("hostPath").is_some()),
        "{vols:#?}"
    );
    // the secret is a file from the Secret, under the key the values name
    let secret_vol = vols
        .iter()
        .find(|v| v["name"] == "mesos-secret")
        .expect("mesos-secret volume");
    assert_eq!(secret_vol["secret"]["secretName"], "mesos-auth");
    assert_eq!(
        secret_vol["secret"]["items"],
        json!([{"key": "pw", "path": "secret"}])
    );
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "mesos-secret")
        .expect("mesos-secret mount");
    assert_eq!(mount["mountPath"], "/etc/slipway/mesos");
    assert_eq!(mount["readOnly"], true);
    // ... and never reaches the container through its environment
    let env = serde_json::to_string(&c["env"]).unwrap();
    assert!(
        !env.contains("secretKeyRef") && !env.contains("mesos-auth"),
        "{env}"
    );
    assert!(
        of_kind(&docs, "Secret").is_empty(),
        "existingSecret: no Secret of the chart's"
    );

    // namespace scope: a Role in the watched namespace; the only ClusterRole is the
    // build-log endpoint's reviews (cluster-scoped by nature)
    for kind in ["ClusterRole", "ClusterRoleBinding"] {
        let names: Vec<&str> = of_kind(&docs, kind)
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [format!("{name}-review")], "{kind}");
    }
    let rules = rules_file();
    let watched = one(&docs, "Role", name);
    assert_eq!(watched["metadata"]["namespace"], "team-a");
    assert_eq!(watched["rules"], rules["watched"]);
    let binding = one(&docs, "RoleBinding", name);
    assert_eq!(binding["metadata"]["namespace"], "team-a");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": name, "namespace": "build-system"}])
    );
    let own = one(&docs, "Role", "ci-slipway-own");
    assert_eq!(own["metadata"]["namespace"], "build-system");
    assert_eq!(own["rules"], rules["own"]);

    // two replicas: a budget that keeps one
    let pdb = one(&docs, "PodDisruptionBudget", name);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
    // the ServiceMonitor scrapes the Service's metrics port
    let sm = one(&docs, "ServiceMonitor", name);
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["interval"], "15s");
    let svc = one(&docs, "Service", name);
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        svc["spec"]["selector"]
    );
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");

    assert_eq!(spec["securityContext"]["runAsUser"], 1000);
    assert_eq!(spec["nodeSelector"], json!({"slipway.dev/builder": "true"}));
    assert_eq!(spec["tolerations"][0]["key"], "dedicated");

    // one replica: no budget (it would make the pod impossible to evict)
    let single = docs_of(&["-f", &custom, "--set", "replicas=1"]);
    assert!(of_kind(&single, "PodDisruptionBudget").is_empty());
}

fn docs_of(args: &[&str]) -> Vec<Value> {
    docs(&template_ok("ci", "build-system", args))
}

#[test]
fn a_secret_given_as_a_value_is_a_secret_mounted_as_a_file() {
    let pw = "mesos-pw-never-in-args";
    let set = format!("mesos.secret.value={pw}");
    let rendered = template_ok(
        "ci",
        "build-system",
        &[
            "--set",
            "backend=mesos",
            "--set",
            "mesos.masters={m1:5050}",
            "--set",
            "mesos.principal=slipway",
            "--set",
            &set,
        ],
    );
    let docs = docs(&rendered);
    let secret = one(&docs, "Secret", "ci-slipway-mesos");
    use base64::Engine;
    assert_eq!(
        secret["data"]["secret"],
        base64::engine::general_purpose::STANDARD.encode(pw)
    );
    let deploy = one(&docs, "Deployment", "ci-slipway");
    let deploy_text = serde_json::to_string(deploy).unwrap();
    assert!(!deploy_text.contains(pw), "{deploy_text}");
    assert!(!rendered.contains(pw), "only base64 in the Secret");
    let vol = deploy["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "mesos-secret")
        .unwrap();
    assert_eq!(vol["secret"]["secretName"], "ci-slipway-mesos");
    assert!(has(
        &args(deploy),
        "--secret-file=/etc/slipway/mesos/secret"
    ));
    // a changed secret rolls the pods
    assert!(
        deploy["spec"]["template"]["metadata"]["annotations"]["checksum/mesos-secret"].is_string()
    );
}

#[test]
fn bad_values_fail_with_a_message_naming_them() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "backend=docker"],
            "at '/backend': value must be one of 'local', 'mesos'",
        ),
        (
            &["--set", "concurrency=0"],
            "at '/concurrency': minimum: got 0, want 1",
        ),
        (
            &["--set", "backend=mesos"],
            "at '/mesos/masters': minItems: got 0, want 1",
        ),
        (
            &["--set", "image.tag=15"],
            "at '/image/tag': got number, want string",
        ),
        (
            &["--set", "image.tag=true"],
            "at '/image/tag': got boolean, want string",
        ),
        (
            &["--set", "replicas=0"],
            "at '/replicas': minimum: got 0, want 1",
        ),
        (
            &["--set", "log.format=xml"],
            "at '/log/format': value must be one of 'text', 'json'",
        ),
        (
            &["--set", "retryBackoff=soon"],
            "at '/retryBackoff': 'soon' does not match pattern",
        ),
        (&["--set", "watchNamespace=Team_A"], "at '/watchNamespace'"),
        (
            &["--set", "concurency=3"],
            "additional properties 'concurency' not allowed",
        ),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            "at '/image/pullPolicy'",
        ),
        (
            &[
                "--set",
                "backend=mesos",
                "--set",
                "mesos.masters={m:5050}",
                "--set",
                "mesos.principal=p",
            ],
            "mesos.principal needs its secret",
        ),
        (
            &[
                "--set",
                "backend=mesos",
                "--set",
                "mesos.masters={m:5050}",
                "--set",
                "mesos.executor.uri=http://x/s.tgz",
                "--set",
                "mesos.executor.path=/opt/slipway",
            ],
            "set at most one of mesos.executor.path, mesos.executor.uri and mesos.executor.image",
        ),
        (
            &[
                "--set",
                "replicas=2",
                "--set",
                "leaderElection.enabled=false",
            ],
            "replicas > 1 needs leaderElection.enabled: true",
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
    // a numeric tag in a values file, too
    let dir = tempfile::tempdir().unwrap();
    let f = values_file(&dir, "v.yaml", "image:\n  tag: 1.5\n");
    let e = template("bad", "default", &["-f", &f]).unwrap_err();
    assert!(
        e.contains("at '/image/tag': got number, want string"),
        "{e}"
    );
}

/// Applies YAML server-side as the admin (documents of kinds the API server does not
/// serve are the caller's to drop).
fn apply_server_side(k: &Kube, yaml: &str) -> String {
    let out = k.kubectl_stdin_as(
        &k.admin_kubeconfig(),
        &[
            "apply",
            "--server-side",
            "--field-manager=helm-test",
            "-f",
            "-",
        ],
        yaml,
    );
    assert!(
        out.status.success(),
        "kubectl apply --server-side failed:\n{}{}\n{yaml}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// helm's output as it is, without the ServiceMonitor unless its CRD is served (the
/// test cluster has no Prometheus Operator).
fn applicable(k: &Kube, rendered: &str) -> String {
    let sm_served = k
        .kubectl(&["get", "crd", "servicemonitors.monitoring.coreos.com"])
        .status
        .success();
    rendered
        .split("\n---\n")
        .filter(|d| sm_served || docs(d).iter().all(|v| v["kind"] != "ServiceMonitor"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn rendered_manifests_apply_server_side() {
    let k = Kube::shared();
    // default values, CRDs included (the same CRD the cluster has: no conflict)
    let ns = k.new_bare_namespace("helm-apply");
    let rendered = template_ok(&ns, &ns, &["--include-crds"]);
    assert!(!of_kind(&docs(&rendered), "CustomResourceDefinition").is_empty());
    let out = apply_server_side(&k, &applicable(&k, &rendered));
    let full = format!("{ns}-slipway");
    for want in [
        format!("deployment.apps/{full} serverside-applied"),
        format!("clusterrole.rbac.authorization.k8s.io/{full} serverside-applied"),
        format!("serviceaccount/{full} serverside-applied"),
        format!("service/{full} serverside-applied"),
        // the buildkitd sidecar's generated certificates
        format!("secret/{full}-buildkit-tls serverside-applied"),
    ] {
        assert!(out.contains(&want), "{want} not in:\n{out}");
    }
    let d = k.get_json(&ns, "deployment", &full);
    assert_eq!(d["spec"]["template"]["spec"]["serviceAccountName"], full);

    // the custom values (Mesos with a chart-made Secret, namespace scope, two replicas
    // with a budget, ServiceMonitor): the watched namespace must exist first
    let ns2 = k.new_bare_namespace("helm-apply-ctl");
    let team = k.new_bare_namespace("helm-apply-team");
    let dir = tempfile::tempdir().unwrap();
    let custom = values_file(&dir, "custom.yaml", CUSTOM);
    let team_arg = format!("watchNamespace={team}");
    let rendered2 = template_ok(
        &ns2,
        &ns2,
        &[
            "-f",
            &custom,
            "--set",
            &team_arg,
            "--set",
            "mesos.secret.existingSecret=",
            "--set",
            "mesos.secret.value=pw",
        ],
    );
    assert!(rendered2.contains("kind: ServiceMonitor"));
    let out = apply_server_side(&k, &applicable(&k, &rendered2));
    let full2 = format!("{ns2}-slipway");
    for want in [
        format!("poddisruptionbudget.policy/{full2} serverside-applied"),
        format!("secret/{full2}-mesos serverside-applied"),
        format!("role.rbac.authorization.k8s.io/{full2} serverside-applied"),
        format!("role.rbac.authorization.k8s.io/{full2}-own serverside-applied"),
    ] {
        assert!(out.contains(&want), "{want} not in:\n{out}");
    }
    assert!(k.try_get_json(&team, "role", &full2).is_some());
    assert!(k.try_get_json("", "clusterrole", &full2).is_none());
    // applying again changes nothing and conflicts with nothing
    apply_server_side(&k, &applicable(&k, &rendered2));

    // the other builder modes and sidecar variants
    for (prefix, set, want) in [
        (
            "helm-apply-sock",
            vec!["builder.mode=dockerSocket"],
            "deployment.apps",
        ),
        (
            "helm-apply-remote",
            vec![
                "builder.mode=remote",
                "builder.remote.address=tcp://buildkitd.buildkit.svc:1234",
                "builder.tls.existingSecret=buildkit-client",
            ],
            "deployment.apps",
        ),
        (
            "helm-apply-pvc",
            vec![
                "builder.sidecar.persistence.enabled=true",
                "builder.sidecar.persistence.storageClassName=fast",
                "builder.sidecar.rootless=true",
                "builder.sidecar.resources.limits.memory=4Gi",
            ],
            "persistentvolumeclaim",
        ),
        (
            "helm-apply-sized",
            vec![
                "builder.sidecar.persistence.emptyDirSizeLimit=30Gi",
                "builder.sidecar.gc.enabled=false",
            ],
            "deployment.apps",
        ),
    ] {
        let ns = k.new_bare_namespace(prefix);
        let mut args = vec![];
        for v in &set {
            args.extend(["--set", v]);
        }
        let out = apply_server_side(&k, &applicable(&k, &template_ok(&ns, &ns, &args)));
        let want = format!("{want}/{ns}-slipway");
        assert!(out.contains(&want), "{set:?}: {want} not in:\n{out}");
    }
}

fn build_yaml(name: &str, repo: &str, base: &str) -> String {
    Build::new(name)
        .inline(&format!("FROM {base}\nRUN echo {name} > /built\n"))
        .no_cache()
        .push_to(&format!("slipway-test/{repo}"))
        .tags(&["v1"])
        .push_secret("regcred")
        .yaml()
}

/// Installs the chart's manifests (rendered with `set`) into `release_ns`, runs the
/// controller as its Deployment would with its ServiceAccount's token, and builds one
/// DockerBuild in `watch_ns` to a pushed digest. Returns the SA's kubeconfig.
async fn build_under_the_chart(
    k: &Kube,
    release_ns: &str,
    watch_ns: &str,
    set: &[&str],
    extra_controller_args: &[&str],
    dir: &tempfile::TempDir,
) -> std::path::PathBuf {
    let base = ensure_base().await;
    let rendered = template_ok(release_ns, release_ns, set);
    apply_server_side(k, &applicable(k, &rendered));
    let docs = docs(&rendered);
    let full = format!("{release_ns}-slipway");
    let deploy = one(&docs, "Deployment", &full);
    let sa = deploy["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    let kubeconfig = service_account_kubeconfig(k, release_ns, sa, dir.path());
    wait_can_i(
        k,
        &kubeconfig,
        &["watch", "dockerbuilds.slipway.dev", "-n", watch_ns],
    )
    .await;
    wait_can_i(
        k,
        &kubeconfig,
        &["update", "leases.coordination.k8s.io", "-n", release_ns],
    )
    .await;

    k.create_registry_secret(watch_ns, "regcred", "builder", "pw-of-the-helm-test");
    let c = chart_controller(
        deploy,
        &kubeconfig,
        &format!("{full}-0"),
        extra_controller_args,
    );
    let port = c.metrics_port().await;
    let ready = wait_for_ready(port).await;
    assert!(ready, "/readyz never answered 200:\n{}", c.log());

    k.apply(watch_ns, &build_yaml("chart", watch_ns, &base));
    let v = k
        .wait_json(watch_ns, "dockerbuild", "chart", LONG, |v| {
            matches!(v["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        })
        .await;
    assert_eq!(v["status"]["phase"], "Succeeded", "{v:#}\n{}", c.log());
    assert_eq!(
        v["status"]["observedGeneration"],
        v["metadata"]["generation"]
    );
    let out = outcome(&v["status"]);
    assert_eq!(
        out.pushed_tags,
        vec![format!("{}/slipway-test/{watch_ns}:v1", registry())]
    );
    if has(&args(deploy), "--builder=buildkitd") {
        // buildkitd pushes an OCI manifest the Docker daemon never held: the tag serves
        // the digest in the status
        let repo = format!("slipway-test/{watch_ns}");
        let served = slipway::registry::manifest_digest(&http(), &registry(), &repo, "v1", None)
            .await
            .expect("registry answers");
        assert_eq!(served, out.digest);
    } else {
        assert_pushed(&out).await;
    }
    // the Lease of the chart's name, held by the "pod"
    let lease = k.get_json(release_ns, "lease", &full);
    assert_eq!(lease["spec"]["holderIdentity"], format!("{full}-0"));
    assert!(
        !c.log().contains("forbidden"),
        "the controller was refused something:\n{}",
        c.log()
    );
    kubeconfig
}

async fn wait_for_ready(port: u16) -> bool {
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await
            && r.status().as_u16() == 200
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn the_controller_builds_with_the_chart_cluster_role_and_cannot_list_secrets() {
    let k = Kube::shared();
    let ns = k.new_bare_namespace("helm-run");
    let other = k.new_bare_namespace("helm-run-other");
    let dir = tempfile::tempdir().unwrap();
    // The chart's default scope is every namespace; the shared cluster holds other
    // tests' DockerBuilds, so this run watches its own namespace only (a flag the
    // ClusterRole covers as well).
    let ns_flag = format!("--namespace={ns}");
    let kc = build_under_the_chart(&k, &ns, &ns, &[], &[&ns_flag], &dir).await;

    let all = "--all-namespaces";
    for (args, want) in [
        (vec!["list", "secrets", all], "no"),
        (vec!["watch", "secrets", all], "no"),
        (vec!["list", "secrets", "-n", &ns], "no"),
        // pushSecretRef: one named Secret in the DockerBuild's namespace, wherever it is
        (vec!["get", "secrets", "-n", &ns], "yes"),
        (vec!["get", "secrets", "-n", &other], "yes"),
        (vec!["create", "secrets", "-n", &ns], "no"),
        (vec!["list", "dockerbuilds.slipway.dev", all], "yes"),
        (
            vec!["patch", "dockerbuilds.slipway.dev", "-n", &other],
            "yes",
        ),
        (vec!["delete", "dockerbuilds.slipway.dev", "-n", &ns], "no"),
        (vec!["create", "dockerbuilds.slipway.dev", "-n", &ns], "no"),
        (vec!["create", "events.events.k8s.io", "-n", &other], "yes"),
        // its Lease and ConfigMap: in the release namespace only
        (
            vec!["update", "leases.coordination.k8s.io", "-n", &ns],
            "yes",
        ),
        (
            vec!["update", "leases.coordination.k8s.io", "-n", &other],
            "no",
        ),
        (vec!["create", "configmaps", "-n", &other], "no"),
        (vec!["create", "pods", "-n", &ns], "no"),
        (vec!["list", "namespaces"], "no"),
    ] {
        assert_eq!(can_i(&k, &kc, &args), want, "can-i {}", args.join(" "));
    }
}

#[tokio::test]
async fn the_controller_builds_with_the_chart_namespaced_role_and_nothing_else() {
    let k = Kube::shared();
    let ns = k.new_bare_namespace("helm-ctl");
    let team = k.new_bare_namespace("helm-team");
    let other = k.new_bare_namespace("helm-other");
    let dir = tempfile::tempdir().unwrap();
    let set = format!("watchNamespace={team}");
    // the node's Docker socket (the default, the buildkitd sidecar, is the other test's)
    let kc = build_under_the_chart(
        &k,
        &ns,
        &team,
        &["--set", &set, "--set", "builder.mode=dockerSocket"],
        &[],
        &dir,
    )
    .await;

    let all = "--all-namespaces";
    for (args, want) in [
        (vec!["list", "secrets", all], "no"),
        (vec!["get", "secrets", "-n", &team], "yes"),
        (vec!["list", "secrets", "-n", &team], "no"),
        (vec!["get", "secrets", "-n", &ns], "no"),
        (vec!["get", "secrets", "-n", &other], "no"),
        (vec!["list", "dockerbuilds.slipway.dev", all], "no"),
        (vec!["list", "dockerbuilds.slipway.dev", "-n", &team], "yes"),
        (vec!["list", "dockerbuilds.slipway.dev", "-n", &other], "no"),
        (vec!["create", "events.events.k8s.io", "-n", &team], "yes"),
        (vec!["create", "events.events.k8s.io", "-n", &other], "no"),
        (
            vec!["update", "leases.coordination.k8s.io", "-n", &ns],
            "yes",
        ),
        (
            vec!["update", "leases.coordination.k8s.io", "-n", &team],
            "no",
        ),
    ] {
        assert_eq!(can_i(&k, &kc, &args), want, "can-i {}", args.join(" "));
    }
}

#[test]
fn a_webhook_secret_is_mounted_as_a_file_and_its_port_served() {
    // off by default: no flag, no port, no volume
    let docs = render(&[]);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    assert!(!args(deploy).iter().any(|a| a.starts_with("--webhook")));
    assert!(!serde_json::to_string(&docs).unwrap().contains("webhook"));

    let docs = render(&[
        "--set",
        "webhook.secretName=hooks",
        "--set",
        "webhook.key=token",
        "--set",
        "webhook.port=9443",
    ]);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    let a = args(deploy);
    assert!(has(&a, "--webhook-listen=0.0.0.0:9443"), "{a:?}");
    assert!(
        has(&a, "--webhook-secret-file=/etc/slipway/webhook/secret"),
        "{a:?}"
    );
    let vol = volume(deploy, "webhook-secret");
    assert_eq!(vol["secret"]["secretName"], "hooks");
    assert_eq!(secret_items(vol), ["token"]);
    assert_eq!(vol["secret"]["items"][0]["path"], "secret");
    let c = container(deploy);
    assert_eq!(
        mounts(c).get("/etc/slipway/webhook").map(String::as_str),
        Some("webhook-secret")
    );
    let port = |ports: &Value| {
        ports
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "webhook")
            .cloned()
            .unwrap_or_else(|| panic!("a webhook port in {ports:#}"))
    };
    assert_eq!(port(&c["ports"])["containerPort"], 9443);
    let svc = one(&docs, "Service", "rel-slipway");
    let sp = port(&svc["spec"]["ports"]);
    assert_eq!(
        (&sp["port"], &sp["targetPort"]),
        (&json!(9443), &json!("webhook"))
    );

    let e = template("rel", "builds", &["--set", "webhook.port=0"]).unwrap_err();
    assert!(e.contains("webhook/port"), "{e}");
}

#[test]
fn a_registry_certs_secret_is_mounted_as_docker_certs_d() {
    let docs = render(&[]);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    assert!(!mounts(container(deploy)).contains_key("/etc/docker/certs.d"));

    let docs = render(&[
        "--set",
        "tls.certsSecret=regcerts",
        "--set",
        "tls.certsItems[0].key=corp-ca.crt",
        "--set",
        "tls.certsItems[0].path=registry.corp:5000/ca.crt",
    ]);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    let vol = volume(deploy, "registry-certs");
    assert_eq!(vol["secret"]["secretName"], "regcerts");
    assert_eq!(
        vol["secret"]["items"],
        json!([{"key": "corp-ca.crt", "path": "registry.corp:5000/ca.crt"}])
    );
    assert_eq!(
        mounts(container(deploy))
            .get("/etc/docker/certs.d")
            .map(String::as_str),
        Some("registry-certs")
    );

    let e = template("rel", "builds", &["--set", "tls.certsSecret=regcerts"]).unwrap_err();
    assert!(e.contains("tls.certsItems"), "{e}");
}

#[test]
fn a_docker_daemon_over_tls_gets_its_client_certificate_from_a_secret() {
    let docs = render(&[
        "--set",
        "builder.mode=dockerTcp",
        "--set",
        "local.dockerHost=tcp://docker.builds.svc:2376",
        "--set",
        "local.dockerTLSSecret=docker-client",
    ]);
    let deploy = one(&docs, "Deployment", "rel-slipway");
    let c = container(deploy);
    let a = container_args(c);
    for want in [
        "--docker-host=tcp://docker.builds.svc:2376",
        "--docker-tls-verify",
        "--docker-cert-path=/etc/slipway/docker-tls",
    ] {
        assert!(has(&a, want), "{want} missing from {a:?}");
    }
    assert!(!a.iter().any(|x| x.contains("docker.sock")), "{a:?}");
    assert!(sidecar(deploy).is_none(), "no buildkitd sidecar");
    let vol = volume(deploy, "docker-tls");
    assert_eq!(vol["secret"]["secretName"], "docker-client");
    assert_eq!(
        mounts(c).get("/etc/slipway/docker-tls").map(String::as_str),
        Some("docker-tls")
    );
    assert!(host_paths(deploy).is_empty(), "no node socket");

    let e = template("rel", "builds", &["--set", "builder.mode=dockerTcp"]).unwrap_err();
    assert!(e.contains("local.dockerHost"), "{e}");
}

/// `slipway logs --kube`'s defaults find the chart's Service (release `slipway` in
/// slipway-system), and the chart's log-proxy Role allows exactly the proxy ID the CLI
/// asks for (RBAC sees `http:SERVICE:PORT` whole as the resource name).
#[test]
fn the_log_proxy_role_matches_what_slipway_logs_kube_asks_for() {
    let docs = docs(&template_ok("slipway", "slipway-system", &[]));
    let svc = one(&docs, "Service", "slipway");
    assert_eq!(svc["metadata"]["namespace"], "slipway-system");
    let ports: Vec<&str> = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(ports.contains(&"metrics"), "{ports:?}");
    let role = one(&docs, "Role", "slipway-log-proxy");
    assert_eq!(role["metadata"]["namespace"], "slipway-system");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["services/proxy"],
            "resourceNames": ["http:slipway:metrics"], "verbs": ["get"]}])
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["logs", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for default in [
        "[default: slipway-system]",
        "[default: slipway]",
        "[default: metrics]",
    ] {
        assert!(help.contains(default), "{default} not in:\n{help}");
    }
}
