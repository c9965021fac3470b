//! A family of images kept current: when a base slipway builds gets a new digest,
//! the resources built FROM it rebuild after it, once, recording the new digest and
//! why they ran; leaves of other bases do not; a restart rebuilds nothing; a cycle of
//! FROMs is an error naming its members. In a watch folder and in a cluster.

use std::path::Path;
use std::time::Duration;

use crate::common::controller::Controller;
use crate::common::kube::Kube;
use crate::common::watcher::*;
use crate::common::*;
use serde_json::Value;

fn inline(dockerfile: &str, repo: &str, tags: &str) -> String {
    format!(
        "source: {{inline: {{dockerfile: \"{dockerfile}\"}}}}\noutput: {{registry: '{}', repository: slipway-test/{repo}, tags: [{tags}]}}",
        registry()
    )
}

fn build_number(s: &Value) -> u64 {
    s["buildNumber"].as_u64().unwrap_or(0)
}

fn base_digest_recorded(s: &Value) -> Option<String> {
    s["baseImages"].as_array()?.iter().find_map(|b| {
        b["image"]
            .as_str()?
            .contains("fam-base")
            .then(|| b["digest"].as_str().unwrap().to_string())
    })
}

async fn succeeded_after(file: &Path, name: &str, n: u64) -> Value {
    wait_for(&format!("{name}: build {n} succeeds"), LONG, || {
        status_in(file, name).filter(|s| s["phase"] == "Succeeded" && build_number(s) >= n)
    })
    .await
}

#[tokio::test]
async fn a_rebuilt_base_rebuilds_its_leaves_once_in_order_and_a_restart_rebuilds_nothing() {
    let base = ensure_base().await;
    let reg = registry();
    let fam = format!("{reg}/slipway-test/fam-base");
    let doc_of = |name: &str, spec: String| doc(name, &indent(&spec));
    let text = [
        doc_of(
            "fam-base",
            inline(
                &format!("FROM {base}\\nRUN echo v1 > /v"),
                "fam-base",
                "latest, '1'",
            ),
        ),
        // one leaf per tag of the base: still one rebuild each per base change
        doc_of(
            "leaf-a",
            inline(&format!("FROM {fam}\\nRUN cat /v > /a"), "fam-a", "latest"),
        ),
        doc_of(
            "leaf-b",
            inline(
                &format!("FROM {fam}:1\\nRUN cat /v > /b"),
                "fam-b",
                "latest",
            ),
        ),
        doc_of(
            "other",
            inline(
                &format!("FROM {base}\\nRUN echo o > /o"),
                "fam-other",
                "latest",
            ),
        ),
    ]
    .join("---\n");
    let fx = Fixture::new().file("family.yaml", &text);
    let file = fx.path("family.yaml");
    let mut w = Watcher::start(fx.dir.path(), &[]);
    let b1 = succeeded_after(&file, "fam-base", 1).await;
    let a1 = succeeded_after(&file, "leaf-a", 1).await;
    let l1 = succeeded_after(&file, "leaf-b", 1).await;
    let o1 = succeeded_after(&file, "other", 1).await;
    assert_eq!(
        base_digest_recorded(&a1),
        b1["imageDigest"].as_str().map(String::from),
        "{a1}"
    );
    assert_eq!(
        base_digest_recorded(&l1),
        b1["imageDigest"].as_str().map(String::from),
        "{l1}"
    );
    assert_eq!(a1["triggeredBy"], "spec");

    // the base's Dockerfile changes: a new digest, and its leaves follow it
    let edited = fx
        .read("family.yaml")
        .replace("echo v1 > /v", "echo v2 > /v");
    std::fs::write(&file, edited).unwrap();
    let b2 = succeeded_after(&file, "fam-base", 2).await;
    let new = b2["imageDigest"].as_str().unwrap().to_string();
    assert_ne!(Some(new.as_str()), b1["imageDigest"].as_str());
    for leaf in ["leaf-a", "leaf-b"] {
        let s = succeeded_after(&file, leaf, 2).await;
        assert_eq!(
            base_digest_recorded(&s).as_deref(),
            Some(new.as_str()),
            "{leaf}: {s}"
        );
        let why = s["triggeredBy"].as_str().unwrap();
        assert!(
            why.starts_with("base: ") && why.contains(&new[..19]),
            "{leaf}: {why}"
        );
        // built after the base was pushed, never before
        let started = s["history"][1]["startTime"].as_str().unwrap();
        assert!(
            started >= b2["completionTime"].as_str().unwrap(),
            "{leaf}: {s}\n{b2}"
        );
        assert_eq!(s["history"][0]["trigger"], "spec");
        assert_eq!(s["history"][1]["number"], 2);
    }
    // nothing more comes (one rebuild per base change, even with two tags), and the
    // leaf of an unchanged base was left alone
    tokio::time::sleep(Duration::from_secs(3)).await;
    for leaf in ["leaf-a", "leaf-b"] {
        assert_eq!(
            build_number(&status_in(&file, leaf).unwrap()),
            2,
            "{}",
            w.log()
        );
    }
    assert_eq!(status_in(&file, "other").unwrap(), o1);
    w.stop();

    // a restart: everything recorded matches what is current, so nothing builds
    let before = fx.read("family.yaml");
    let mut w = Watcher::start(fx.dir.path(), &[]);
    wait_for("the restarted watcher's first sync", LONG, || {
        w.log().contains("initial sync done").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.log().matches("build started").count(), 0, "{}", w.log());
    assert_eq!(fx.read("family.yaml"), before);
    w.stop();
}

#[tokio::test]
async fn a_cycle_of_froms_is_an_invalid_spec_naming_each_member() {
    let reg = registry();
    let text = [
        doc(
            "cyc-a",
            &indent(&inline(
                &format!("FROM {reg}/slipway-test/cyc-b\\nRUN true"),
                "cyc-a",
                "latest",
            )),
        ),
        doc(
            "cyc-b",
            &indent(&inline(
                &format!("FROM {reg}/slipway-test/cyc-a\\nRUN true"),
                "cyc-b",
                "latest",
            )),
        ),
    ]
    .join("---\n");
    let fx = Fixture::new().file("cycle.yaml", &text);
    let file = fx.path("cycle.yaml");
    let mut w = Watcher::start(fx.dir.path(), &[]);
    for name in ["cyc-a", "cyc-b"] {
        let s = phase_of(&file, name, "Failed").await;
        assert_eq!(s["conditions"][0]["reason"], "InvalidSpec", "{s}");
        let msg = s["message"].as_str().unwrap();
        assert!(
            msg.contains("cycle") && msg.contains("tests/cyc-a") && msg.contains("tests/cyc-b"),
            "{msg}"
        );
    }
    assert_eq!(w.log().matches("build started").count(), 0, "{}", w.log());
    w.stop();
}

fn kube_yaml(name: &str, dockerfile: &str) -> String {
    Build::new(name)
        .inline(dockerfile)
        .push_to(&format!("slipway-test/kfam-{name}"))
        .yaml()
}

#[tokio::test]
async fn in_a_cluster_a_rebuilt_base_rebuilds_its_leaf_and_kubectl_shows_why() {
    let base = ensure_base().await;
    let k = Kube::shared();
    let ns = k.new_namespace("family");
    let _c = Controller::start(&k.controller_kubeconfig(), &ns, "only", &[]);
    let fam = format!("{}/slipway-test/kfam-base", registry());
    k.apply(
        &ns,
        &kube_yaml("base", &format!("FROM {base}\nRUN echo {ns}-1 > /v")),
    );
    k.apply(
        &ns,
        &kube_yaml("leaf", &format!("FROM {fam}\nRUN cat /v > /l")),
    );
    let done = |n: u64| {
        move |v: &Value| v["status"]["phase"] == "Succeeded" && build_number(&v["status"]) >= n
    };
    let long = Duration::from_secs(120);
    k.wait_json(&ns, "dockerbuild", "leaf", long, done(1)).await;
    k.apply(
        &ns,
        &kube_yaml("base", &format!("FROM {base}\nRUN echo {ns}-2 > /v")),
    );
    let b2 = k.wait_json(&ns, "dockerbuild", "base", long, done(2)).await;
    let l2 = k.wait_json(&ns, "dockerbuild", "leaf", long, done(2)).await;
    let new = b2["status"]["imageDigest"].as_str().unwrap();
    assert_eq!(
        base_digest_recorded(&l2["status"]).as_deref(),
        Some(new),
        "{l2}"
    );
    let table = k.kubectl_ok(&["get", "dockerbuilds", "-n", &ns]);
    assert!(table.lines().next().unwrap().contains("TRIGGER"), "{table}");
    let leaf_row = table.lines().find(|l| l.starts_with("leaf")).unwrap();
    assert!(leaf_row.contains("base: "), "{table}");
}
