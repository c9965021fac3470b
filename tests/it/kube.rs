//! `slipway controller` against a real kube-apiserver (and etcd) that scripts/test.sh
//! starts, driven with kubectl as a user drives it, building on the real Docker
//! daemon and pushing to the real registry. The controller runs with its service
//! account's RBAC rules (charts/slipway/files/rbac-rules.yaml), so a permission it
//! lacks fails these tests.

use std::time::Duration;

use crate::common::controller::Controller;
use crate::common::kube::Kube;
use crate::common::*;
use serde_json::Value;
use slipway::api::{BuildSecret, SecretKeyRef};

const LONG: Duration = Duration::from_secs(120);
const PASSWORD: &str = "pw-that-must-stay-in-the-secret";

/// An inline `dockerfile`, never cached, pushed to `slipway-test/kube-NAME:v1`.
fn build(name: &str, dockerfile: &str) -> Build {
    Build::new(name)
        .inline(dockerfile)
        .no_cache()
        .push_to(&format!("slipway-test/kube-{name}"))
        .tags(&["v1"])
}

fn build_yaml(name: &str, dockerfile: &str) -> String {
    build(name, dockerfile).yaml()
}

/// A build that spends `secs` seconds in a RUN step.
fn slow_yaml(name: &str, base: &str, secs: u32) -> String {
    build_yaml(
        name,
        &format!("FROM {base}\nRUN sleep {secs} && echo {name} > /done"),
    )
}

async fn phase(k: &Kube, ns: &str, name: &str, want: &str) -> Value {
    k.wait_json(ns, "dockerbuild", name, LONG, |v| {
        v["status"]["phase"].as_str() == Some(want)
    })
    .await
}

async fn message_contains(k: &Kube, ns: &str, name: &str, part: &str) -> Value {
    k.wait_json(ns, "dockerbuild", name, LONG, |v| {
        v["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(part))
    })
    .await
}

/// Events about `name`: (reason, note, reporting instance).
fn events(k: &Kube, ns: &str, name: &str) -> Vec<(String, String, String)> {
    let out = k.kubectl_ok(&[
        "get",
        "events.events.k8s.io",
        "-n",
        ns,
        "-o",
        "json",
        "--field-selector",
        &format!("regarding.name={name}"),
    ]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |f: &str| e[f].as_str().unwrap_or_default().to_string();
            (s("reason"), s("note"), s("reportingInstance"))
        })
        .collect()
}

fn reasons(k: &Kube, ns: &str, name: &str) -> Vec<String> {
    events(k, ns, name).into_iter().map(|e| e.0).collect()
}

/// No build container for `marker` keeps running.
async fn no_container_runs(marker: &str) {
    let docker = docker().await;
    for _ in 0..150 {
        let running = docker
            .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
            .await
            .unwrap();
        if !running
            .iter()
            .any(|c| c.command.as_deref().is_some_and(|cmd| cmd.contains(marker)))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("a build container running '{marker}' is still there");
}

#[tokio::test]
async fn apply_ends_in_a_pushed_digest_with_ready_events_and_metrics() {
    let base = ensure_base().await;
    let k = Kube::shared();
    let ns = k.new_namespace("apply");
    k.create_registry_secret(&ns, "regcred", "builder", PASSWORD);
    let c = Controller::start(&k.controller_kubeconfig(), &ns, "only", &[]);
    k.apply(
        &ns,
        &build("hello", &format!("FROM {base}\nRUN echo hello > /hello"))
            .push_secret("regcred")
            .yaml(),
    );
    // what a user (or Argo CD / Flux) waits on
    k.kubectl_ok(&[
        "wait",
        "-n",
        &ns,
        "--for=condition=Ready",
        "dockerbuild/hello",
        "--timeout=120s",
    ]);
    let v = k.get_json(&ns, "dockerbuild", "hello");
    let st = &v["status"];
    assert_eq!(st["phase"], "Succeeded", "{v}");
    assert_eq!(st["observedGeneration"], v["metadata"]["generation"]);
    let ready = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");
    let out = outcome(st);
    assert_pushed(&out).await;
    assert_eq!(
        out.pushed_tags,
        vec![format!("{}/slipway-test/kube-hello:v1", registry())]
    );
    assert!(
        v["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "slipway.dev/build"),
        "{v}"
    );
    // status is owned by one field manager, through the status subresource
    let full: Value = serde_json::from_str(&k.kubectl_ok(&[
        "get",
        "dockerbuild",
        "hello",
        "-n",
        &ns,
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    let managers: Vec<(String, String)> = full["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_string(),
                m["subresource"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("slipway".into(), "status".into())),
        "{managers:?}"
    );

    // kubectl get shows the story, by full and short name
    let table = k.kubectl_ok(&["get", "dockerbuilds", "-n", &ns]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "PHASE", "TRIGGER", "IMAGE", "DIGEST", "AGE"],
        "{table}"
    );
    assert!(
        table.contains("Succeeded") && table.contains(&out.digest),
        "{table}"
    );
    let short = k.kubectl_ok(&["get", "dbuild", "hello", "-n", &ns]);
    assert!(short.contains("Succeeded"), "{short}");

    let got = reasons(&k, &ns, "hello");
    for want in ["Queued", "Started", "Pushed"] {
        assert!(got.iter().any(|r| r == want), "no {want} event in {got:?}");
    }

    let (code, body) = c.get("/readyz").await;
    assert_eq!(code, 200, "{body}");
    let (_, metrics) = c.get("/metrics").await;
    assert!(
        metrics.contains("slipway_builds_total{result=\"succeeded\"} 1"),
        "{metrics}"
    );

    // the password went to the registry only
    let everything = format!("{}\n{v}\n{:?}", c.log(), events(&k, &ns, "hello"));
    assert!(
        !everything.contains(PASSWORD),
        "the registry password leaked"
    );
}

#[test]
fn invalid_specs_are_refused_at_admission_with_the_reason() {
    let k = Kube::shared();
    let ns = k.new_namespace("invalid");
    let cases = [
        (
            "two-sources",
            "source: {inline: {dockerfile: 'FROM scratch'}, url: 'http://x/c.tar'}",
            "exactly one of git, url, path, inline",
        ),
        (
            "no-source",
            "source: {}",
            "exactly one of git, url, path, inline",
        ),
        (
            "path-source",
            "source: {path: ./app}",
            "only works in a watch folder",
        ),
        (
            "bad-tag",
            "source: {inline: {dockerfile: 'FROM scratch'}}\n  output: {registry: r:5000, repository: a/b, tags: ['-x']}",
            "each tag in spec.output.tags",
        ),
        (
            "bad-repo",
            "source: {inline: {dockerfile: 'FROM scratch'}}\n  output: {registry: r:5000, repository: Team/App}",
            "spec.output.repository is lowercase",
        ),
        (
            "bad-registry",
            "source: {inline: {dockerfile: 'FROM scratch'}}\n  output: {registry: 'https://r:5000', repository: a}",
            "spec.output.registry is host[:port]",
        ),
        (
            "hub-cache",
            "source: {inline: {dockerfile: 'FROM scratch'}}\n  cache: {ref: 'team/app:buildcache'}",
            "spec.cache.ref is registry/repository[:tag]",
        ),
        (
            "same-secret-id",
            "source: {inline: {dockerfile: 'FROM scratch'}}\n  secrets: [{id: npm, secretRef: {name: a, key: k}}, {id: npm, secretRef: {name: b, key: k}}]",
            "Duplicate value",
        ),
        (
            "secret-file",
            "source: {inline: {dockerfile: 'FROM scratch'}}\n  secrets: [{id: npm, file: npm-token}]",
            "in Kubernetes use secretRef",
        ),
        (
            "bad-secret-id",
            "source: {inline: {dockerfile: 'FROM scratch'}}\n  secrets: [{id: 'npm token', secretRef: {name: a, key: k}}]",
            "a spec.secrets id is letters, digits",
        ),
        (
            "bad-platform",
            "source: {inline: {dockerfile: 'FROM scratch'}}\n  platforms: [linux/amd64, linux/amd65]",
            "each platform in spec.platforms is os/arch[/variant]",
        ),
        (
            "same-platform",
            "source: {inline: {dockerfile: 'FROM scratch'}}\n  platforms: [linux/386, linux/386]",
            "Duplicate value",
        ),
    ];
    for (name, spec, why) in cases {
        let yaml = format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata:\n  name: {name}\nspec:\n  {spec}\n"
        );
        let out = k.try_apply(&ns, &yaml);
        assert!(!out.status.success(), "{name} was admitted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{name}: {err}");
    }
    let listed = k.kubectl_ok(&["get", "dockerbuilds", "-n", &ns, "-o", "name"]);
    assert!(listed.trim().is_empty(), "{listed}");
    // the doc comments on the Rust fields are what `kubectl explain` tells
    let explained = k.kubectl_ok(&["explain", "dockerbuild.spec.output"]);
    for part in [
        "Where the image is pushed",
        "pushSecretRef",
        "kubernetes.io/dockerconfigjson",
    ] {
        assert!(explained.contains(part), "{explained}");
    }
}

#[tokio::test]
async fn kubectl_delete_mid_build_stops_the_build_then_lets_the_object_go() {
    let base = ensure_base().await;
    let k = Kube::shared();
    let ns = k.new_namespace("delete");
    let _c = Controller::start(&k.controller_kubeconfig(), &ns, "only", &[]);
    k.apply(&ns, &slow_yaml("doomed", &base, 77));
    message_contains(&k, &ns, "doomed", "RUN sleep 77").await;
    k.kubectl_ok(&["delete", "dockerbuild", "doomed", "-n", &ns, "--wait=false"]);
    // held by the finalizer until the build has stopped, then gone
    wait_for("the object to go", LONG, || {
        let out = k.kubectl(&["get", "dockerbuild", "doomed", "-n", &ns]);
        (!out.status.success()).then_some(())
    })
    .await;
    no_container_runs("sleep 77").await;
    let got = reasons(&k, &ns, "doomed");
    assert!(got.iter().any(|r| r == "Cancelled"), "{got:?}");
}

#[tokio::test]
async fn a_spec_edited_mid_build_cancels_the_old_build_and_builds_the_new_one() {
    let base = ensure_base().await;
    let k = Kube::shared();
    let ns = k.new_namespace("edit");
    let _c = Controller::start(&k.controller_kubeconfig(), &ns, "only", &[]);
    k.apply(&ns, &slow_yaml("edited", &base, 78));
    message_contains(&k, &ns, "edited", "RUN sleep 78").await;
    k.apply(&ns, &slow_yaml("edited", &base, 1));
    let v = phase(&k, &ns, "edited", "Succeeded").await;
    assert_eq!(v["metadata"]["generation"], 2);
    assert_eq!(v["status"]["observedGeneration"], 2);
    no_container_runs("sleep 78").await;
    assert_pushed(&outcome(&v["status"])).await;
    let got = reasons(&k, &ns, "edited");
    assert!(got.iter().any(|r| r == "Cancelled"), "{got:?}");
}

#[tokio::test]
async fn a_controller_killed_mid_build_finishes_it_after_restart() {
    let base = ensure_base().await;
    let k = Kube::shared();
    let ns = k.new_namespace("restart");
    let mut c = Controller::start(&k.controller_kubeconfig(), &ns, "first", &[]);
    k.apply(&ns, &slow_yaml("survivor", &base, 5));
    message_contains(&k, &ns, "survivor", "RUN sleep 5").await;
    c.kill();
    // the killed leader never released its Lease: the next one waits it out
    let c2 = Controller::start(&k.controller_kubeconfig(), &ns, "second", &[]);
    let v = phase(&k, &ns, "survivor", "Succeeded").await;
    assert_pushed(&outcome(&v["status"])).await;
    assert!(c2.log().contains("became the leader"), "{}", c2.log());
}

#[tokio::test]
async fn two_controllers_share_one_lease_and_only_the_leader_builds() {
    let base = ensure_base().await;
    let k = Kube::shared();
    let ns = k.new_namespace("leader");
    let mut a = Controller::start(&k.controller_kubeconfig(), &ns, "replica-a", &[]);
    wait_for("replica-a to lead", LONG, || {
        a.log().contains("became the leader").then_some(())
    })
    .await;
    let b = Controller::start(&k.controller_kubeconfig(), &ns, "replica-b", &[]);
    wait_for("replica-b to stand by", LONG, || {
        b.log().contains("standing by").then_some(())
    })
    .await;
    // a standby is ready: a rolling update must not wait for it to lead
    let (code, _) = b.get("/readyz").await;
    assert_eq!(code, 200);
    let holder = |k: &Kube| {
        k.get_json(&ns, "lease", "slipway-controller")["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(holder(&k), "replica-a");

    for i in 0..3 {
        k.apply(
            &ns,
            &build_yaml(
                &format!("led-{i}"),
                &format!("FROM {base}\nRUN echo {i} > /i"),
            ),
        );
    }
    for i in 0..3 {
        phase(&k, &ns, &format!("led-{i}"), "Succeeded").await;
        let by: Vec<String> = events(&k, &ns, &format!("led-{i}"))
            .into_iter()
            .map(|e| e.2)
            .collect();
        assert!(by.iter().all(|r| r == "replica-a"), "{by:?}");
    }
    assert!(
        !b.log().contains("build started"),
        "the standby built: {}",
        b.log()
    );

    // the leader stops as a pod does: it hands the Lease over and b takes over
    a.terminate();
    wait_for("replica-b to lead", LONG, || {
        b.log().contains("became the leader").then_some(())
    })
    .await;
    assert_eq!(holder(&k), "replica-b");
    k.apply(
        &ns,
        &build_yaml("after-failover", &format!("FROM {base}\nRUN echo b > /b")),
    );
    phase(&k, &ns, "after-failover", "Succeeded").await;
    let by: Vec<String> = events(&k, &ns, "after-failover")
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert!(by.iter().all(|r| r == "replica-b"), "{by:?}");
}

#[tokio::test]
async fn a_missing_secret_waits_and_a_wrong_one_fails_with_the_reason() {
    let base = ensure_base().await;
    let k = Kube::shared();
    let ns = k.new_namespace("secret");
    let _c = Controller::start(&k.controller_kubeconfig(), &ns, "only", &[]);
    let dockerfile = format!("FROM {base}\nRUN echo s > /s");
    k.apply(
        &ns,
        &build("later", &dockerfile).push_secret("not-yet").yaml(),
    );
    k.apply(
        &ns,
        &build("wrong", &dockerfile).push_secret("opaque").yaml(),
    );
    k.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "opaque",
        "-n",
        &ns,
        "--from-literal=password=x",
    ]);
    let v = message_contains(&k, &ns, "later", "does not exist").await;
    assert_eq!(v["status"]["phase"], "Pending", "{v}");
    // a GitOps tool may apply the Secret after the build: it is picked up
    k.create_registry_secret(&ns, "not-yet", "u", "p");
    phase(&k, &ns, "later", "Succeeded").await;
    let v = phase(&k, &ns, "wrong", "Failed").await;
    let msg = v["status"]["message"].as_str().unwrap();
    assert!(msg.contains("kubernetes.io/dockerconfigjson"), "{msg}");
    let got = events(&k, &ns, "wrong");
    assert!(
        got.iter()
            .any(|(r, note, _)| r == "Failed" && note.contains("dockerconfigjson")),
        "{got:?}"
    );
}

#[tokio::test]
async fn build_secrets_come_from_secret_keys_and_a_missing_one_is_named() {
    let base = ensure_base().await;
    let k = Kube::shared();
    let ns = k.new_namespace("bsecret");
    let c = Controller::start(&k.controller_kubeconfig(), &ns, "only", &[]);
    let value = format!("tok-{}", uuid::Uuid::new_v4());
    let dockerfile = format!("FROM {base}\nRUN echo s > /s");
    let with = |name: &str, secret: &str| {
        build(name, &dockerfile)
            .with(|s| {
                s.secrets = vec![BuildSecret {
                    id: "npm".into(),
                    secret_ref: Some(SecretKeyRef {
                        name: secret.into(),
                        key: "token".into(),
                    }),
                    file: None,
                }]
            })
            .yaml()
    };
    k.apply(&ns, &with("later", "npm-creds"));
    k.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "other",
        "-n",
        &ns,
        &format!("--from-literal=password={value}"),
    ]);
    k.apply(&ns, &with("nokey", "other"));

    // a Secret that is not there yet: waiting, and picked up once it is applied
    let v = message_contains(&k, &ns, "later", "waiting for build secrets").await;
    assert_eq!(v["status"]["phase"], "Pending", "{v}");
    assert_eq!(
        v["status"]["message"],
        format!(
            "waiting for build secrets: Secret {ns}/npm-creds (spec.secrets 'npm') does not exist"
        )
    );
    // a key it does not have: the user's to fix, named with the keys it has
    let v = phase(&k, &ns, "nokey", "Failed").await;
    let want =
        format!("Secret {ns}/other (spec.secrets 'npm') has no key 'token' (its keys: password)");
    assert_eq!(v["status"]["message"], want.as_str());
    assert_eq!(v["status"]["conditions"][0]["reason"], "InvalidSpec");
    let got = events(&k, &ns, "nokey");
    assert!(
        got.iter()
            .any(|(r, note, _)| r == "Failed" && note.contains(&want)),
        "{got:?}"
    );
    k.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "npm-creds",
        "-n",
        &ns,
        &format!("--from-literal=token={value}"),
    ]);
    // read: the build goes on to whatever its engine makes of it
    let v = k
        .wait_json(&ns, "dockerbuild", "later", LONG, |v| {
            matches!(v["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        })
        .await;
    let msg = v["status"]["message"].as_str().unwrap_or_default();
    assert!(!msg.contains("build secrets"), "{msg}");

    let everything = format!(
        "{}\n{:?}\n{:?}\n{}",
        k.kubectl_ok(&["get", "dockerbuilds", "-n", &ns, "-o", "json"]),
        events(&k, &ns, "later"),
        events(&k, &ns, "nokey"),
        c.log()
    );
    assert!(
        !everything.contains(&value),
        "a secret value leaked: {everything}"
    );
}

#[tokio::test]
async fn status_writes_survive_an_api_server_outage_and_concurrent_edits() {
    let base = ensure_base().await;
    let k = Kube::start_private();
    let ns = k.new_namespace("outage");
    let c = Controller::start(
        &k.controller_kubeconfig(),
        &ns,
        "only",
        &["--lease-duration", "60s"],
    );
    k.apply(&ns, &slow_yaml("steady", &base, 6));
    message_contains(&k, &ns, "steady", "RUN sleep 6").await;
    // other writers change the object meanwhile (labels: a new resourceVersion each)
    for i in 0..5 {
        k.kubectl_ok(&[
            "label",
            "dockerbuild",
            "steady",
            "-n",
            &ns,
            "--overwrite",
            &format!("touched={i}"),
        ]);
    }
    // the API server goes away while the build finishes, and comes back later
    k.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(10)).await;
    k.start_apiserver();
    let v = phase(&k, &ns, "steady", "Succeeded").await;
    assert_pushed(&outcome(&v["status"])).await;
    assert_eq!(v["metadata"]["labels"]["touched"], "4");
    // the outage really hit status writes, which waited for the server
    assert!(
        c.log().contains("writing status failed, retrying"),
        "{}",
        c.log()
    );
}

#[tokio::test]
async fn on_mesos_a_new_controller_pod_reattaches_through_the_framework_id_configmap() {
    let base = ensure_base().await;
    let cluster = crate::common::mesos::MesosCluster::start(1);
    let k = Kube::shared();
    let ns = k.new_namespace("mesos");
    let master = cluster.master();
    let mesos = [
        "--backend",
        "mesos",
        "--mesos-master",
        master.as_str(),
        "--refuse-seconds",
        "1",
        "--default-cpus",
        "0.5",
        "--default-mem",
        "128",
    ];
    let mut first = Controller::start(&k.controller_kubeconfig(), &ns, "pod-1", &mesos);
    k.apply(&ns, &slow_yaml("remote", &base, 8));
    let v = k
        .wait_json(&ns, "dockerbuild", "remote", LONG, |v| {
            v["status"]["phase"] == "Building" && v["status"]["mesos"]["taskId"].is_string()
        })
        .await;
    let task = v["status"]["mesos"].clone();
    let cm = k
        .wait_json(&ns, "configmap", "slipway-mesos-framework", LONG, |c| {
            c["data"]["frameworkId"].is_string()
        })
        .await;
    assert_eq!(cm["data"]["frameworkId"], task["frameworkId"]);
    // /readyz counts the Mesos subscription
    let (code, body) = first.get("/readyz").await;
    assert_eq!(code, 200, "{body}");
    first.kill();

    let second = Controller::start(&k.controller_kubeconfig(), &ns, "pod-2", &mesos);
    let done = phase(&k, &ns, "remote", "Succeeded").await;
    assert_pushed(&outcome(&done["status"])).await;
    assert_eq!(
        done["status"]["mesos"]["taskId"], task["taskId"],
        "the same task finished"
    );
    let tasks = cluster.tasks().await;
    let ours: Vec<_> = tasks.iter().filter(|(n, _)| n.contains("remote")).collect();
    assert_eq!(ours.len(), 1, "one task only: {tasks:?}");
    assert!(second.log().contains("re-attached"), "{}", second.log());
}

/// The private cluster's kube-apiserver, stopped with SIGSTOP (its connections stay
/// open and unanswered, as with a hung server) and continued on drop, so a failing
/// test never leaves it stopped.
struct Paused(String);

impl Paused {
    fn new(k: &Kube) -> Self {
        let pid = std::fs::read_to_string(k.dir().join("kube-apiserver.pid")).unwrap();
        let pid = pid.trim().to_string();
        let st = std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap();
        assert!(st.success(), "kill -STOP {pid}");
        Self(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0])
            .status();
    }
}

#[tokio::test]
async fn a_paused_api_server_holds_up_no_build_and_statuses_land_in_order() {
    let base = ensure_base().await;
    let k = Kube::start_private();
    let ns = k.new_namespace("pause");
    let c = Controller::start(
        &k.controller_kubeconfig(),
        &ns,
        "only",
        &["--lease-duration", "60s"],
    );
    // unique repositories: an image of an earlier run must not count
    let id = &ns[ns.len() - 8..];
    let (first, second) = (format!("first-{id}"), format!("second-{id}"));
    // woken with the second, and before it (in name order): its Secret read hangs
    let cred = format!("cred-{id}");
    let first_image = format!("{}/slipway-test/kube-{first}:v1", registry());
    k.apply(
        &ns,
        &build_yaml(
            &first,
            &format!("FROM {base}\nRUN sleep 4 && echo {first} > /done"),
        ),
    );
    // built FROM the first's image: it starts only once the controller has taken in
    // that the first build finished, which happens during the pause
    k.apply(
        &ns,
        &build_yaml(&second, &format!("FROM {first_image}\nRUN cat /done")),
    );
    k.create_registry_secret(&ns, "regcred", "u", "p");
    k.apply(
        &ns,
        &build(&cred, &format!("FROM {first_image}\nRUN cat /done"))
            .push_secret("regcred")
            .yaml(),
    );
    message_contains(&k, &ns, &first, "RUN sleep 4").await;

    let paused = Paused::new(&k);
    let started = std::time::Instant::now();
    let (client, reg) = (http(), registry());
    let repo = format!("slipway-test/kube-{second}");
    let mut landed = None;
    while started.elapsed() < Duration::from_secs(19) {
        if let Ok(d) = slipway::registry::manifest_digest(&client, &reg, &repo, "v1", None).await {
            landed = Some((d, started.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let Some((digest, after)) = landed else {
        panic!(
            "the second image did not land during the 20 s pause: the controller waited for the API server\n{}",
            c.log()
        );
    };
    eprintln!("the second image landed {after:?} into the pause");
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(started.elapsed())).await;
    drop(paused);

    // once the server answers, every status lands, the newest last
    let one = phase(&k, &ns, &first, "Succeeded").await;
    let two = phase(&k, &ns, &second, "Succeeded").await;
    assert_eq!(two["status"]["imageDigest"], digest.as_str());
    assert_pushed(&outcome(&one["status"])).await;
    assert_pushed(&outcome(&two["status"])).await;
    // no older phase, sent late, overwrites the final one
    // and the one whose Secret read waited for the server builds now
    let three = phase(&k, &ns, &cred, "Succeeded").await;
    assert_pushed(&outcome(&three["status"])).await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        for name in [&first, &second, &cred] {
            let v = k.get_json(&ns, "dockerbuild", name);
            assert_eq!(v["status"]["phase"], "Succeeded", "{name}: {v}");
        }
    }
}

/// The first listing streams from the API server's cache; a server that refuses
/// streaming lists (the WatchList feature gate off, as on older clusters) is
/// listed in pages instead, and every resource is still seen and built.
#[tokio::test]
async fn an_api_server_without_streaming_lists_is_listed_in_pages() {
    let base = ensure_base().await;
    let k = Kube::start_private_with("--feature-gates=WatchList=false");
    let ns = k.new_namespace("pages");
    // one there before the controller starts (the listing), one after (the watch)
    k.apply(
        &ns,
        &build_yaml("listed", &format!("FROM {base}\nRUN echo listed > /l")),
    );
    let c = Controller::start(&k.controller_kubeconfig(), &ns, "only", &[]);
    let v = phase(&k, &ns, "listed", "Succeeded").await;
    assert_pushed(&outcome(&v["status"])).await;
    k.apply(
        &ns,
        &build_yaml("watched", &format!("FROM {base}\nRUN echo watched > /w")),
    );
    let v = phase(&k, &ns, "watched", "Succeeded").await;
    assert_pushed(&outcome(&v["status"])).await;
    assert!(
        c.log().contains("the API server does not stream lists")
            && c.log().contains("WatchList feature gate"),
        "{}",
        c.log()
    );
}
