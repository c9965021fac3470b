//! `slipway watch DIR` as a user runs it: files in, status written back into them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::watcher::*;
use common::*;

#[tokio::test]
async fn status_is_written_back_and_the_rest_of_the_file_kept() {
    let base = ensure_base().await;
    let reg = registry();
    let text = format!(
        "# Wiki images. Keep this comment.\n{}\
# between the documents\n---\n\
apiVersion: v1   # not ours\nkind: ConfigMap\nmetadata: {{name: unrelated}}\ndata: {{a: b}}\n",
        doc(
            "wiki",
            &indent(&format!(
                "source:\n  path: wiki   # the context\noutput: {{registry: '{reg}', repository: slipway-test/wiki, tags: [latest, '1.0']}}"
            ))
        )
    );
    let fx = Fixture::new().file("builds.yaml", &text).file(
        "wiki/Dockerfile",
        &format!("FROM {base}\nRUN echo wiki > /index.html\n"),
    );
    let file = fx.path("builds.yaml");
    let mut w = Watcher::start(fx.dir.path(), &[]);

    let status = phase_of(&file, "wiki", "Succeeded").await;
    let after = fx.read("builds.yaml");
    assert_eq!(without_status(&after), text, "only status: may change");
    assert!(after.contains("# between the documents\n---\napiVersion: v1   # not ours"));
    let digest = status["imageDigest"].as_str().unwrap();
    assert_eq!(status["image"], format!("{reg}/slipway-test/wiki@{digest}"));
    assert_eq!(
        status["pushedTags"][1],
        format!("{reg}/slipway-test/wiki:1.0")
    );
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    let served =
        slipway::registry::manifest_digest(&http(), &reg, "slipway-test/wiki", "1.0", None)
            .await
            .unwrap();
    assert_eq!(served, digest);
    // no temp files left behind
    let names: Vec<_> = std::fs::read_dir(fx.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    w.stop();
}

#[tokio::test]
async fn status_edits_do_not_rebuild_spec_and_token_edits_do() {
    let base = ensure_base().await;
    let reg = registry();
    let spec = format!(
        "source: {{inline: {{dockerfile: \"FROM {base}\\nRUN date > /built\\n\"}}}}\noutput: {{registry: '{reg}', repository: slipway-test/rebuild}}"
    );
    let fx = Fixture::new().file("b.yaml", &doc("rebuild", &indent(&spec)));
    let file = fx.path("b.yaml");
    let mut w = Watcher::start(fx.dir.path(), &[]);
    let first = phase_of(&file, "rebuild", "Succeeded").await;

    // a hand edit of status alone: nothing is rebuilt
    let text = fx
        .read("b.yaml")
        .replace("message: pushed 1 tag", "message: edited by hand");
    std::fs::write(&file, &text).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = status_in(&file, "rebuild").unwrap();
    assert_eq!(now["message"], "edited by hand");
    assert_eq!(w.log().matches("build started").count(), 1, "{}", w.log());

    // a spec edit (one more tag): rebuilt and pushed
    let text = fx.read("b.yaml").replace(
        "repository: slipway-test/rebuild}",
        "repository: slipway-test/rebuild, tags: [latest, two]}",
    );
    std::fs::write(&file, &text).unwrap();
    let second = wait_for("rebuild after spec edit", LONG, || {
        status_in(&file, "rebuild").filter(|s| {
            s["phase"] == "Succeeded" && s["pushedTags"].as_array().map(Vec::len) == Some(2)
        })
    })
    .await;
    assert_ne!(first["specHash"], second["specHash"]);

    // the rebuild token: same spec otherwise, built again
    let text = fx
        .read("b.yaml")
        .replace("spec:\n", "spec:\n  rebuild: \"1\"\n");
    std::fs::write(&file, &text).unwrap();
    wait_for("rebuild after token change", LONG, || {
        status_in(&file, "rebuild")
            .filter(|s| s["phase"] == "Succeeded" && s["specHash"] != second["specHash"])
    })
    .await;
    assert_eq!(w.log().matches("build started").count(), 3, "{}", w.log());
    w.stop();
}

#[tokio::test]
async fn bad_inputs_get_clear_statuses_and_good_builds_still_build() {
    let base = ensure_base().await;
    let reg = registry();
    let out =
        |repo: &str| format!("output: {{registry: '{reg}', repository: slipway-test/{repo}}}");
    let fx = Fixture::new()
        .file("good.yaml", &doc("good", &indent(&format!("source: {{path: good}}\n{}", out("good")))))
        .file("good/Dockerfile", &format!("FROM {base}\nRUN echo ok > /ok\n"))
        .file("broken.yaml", "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata:\n  name: broken\nspec: {source: [unclosed\n")
        .file("two.yaml", &doc("two-sources", &indent(&format!("source: {{path: good, url: 'http://127.0.0.1:9/x.tar'}}\n{}", out("two")))))
        .file("noreg.yaml", &doc("no-registry", &indent("source: {inline: {dockerfile: \"FROM scratch\"}}")))
        .file("badtag.yaml", &doc("bad-tag", &indent(&format!("source: {{path: good}}\noutput: {{registry: '{reg}', repository: slipway-test/x, tags: ['not ok']}}"))))
        .file("fails.yaml", &doc("fails", &indent(&format!("source: {{inline: {{dockerfile: \"FROM {base}\\nRUN exit 7\\n\"}}}}\n{}", out("fails")))))
        .file("escape.yaml", &doc("escape", &indent(&format!("source: {{path: esc}}\n{}", out("escape")))))
        .file("esc/Dockerfile", "FROM scratch\nCOPY . /\n")
        .symlink("../../../etc", "esc/etc")
        .file("down.yaml", &doc("registry-down", &indent("source: {inline: {dockerfile: \"FROM scratch\"}}\noutput: {registry: '127.0.0.1:9', repository: slipway-test/down}")))
        .file("other.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-a-build}\n");
    let mut w = Watcher::start(fx.dir.path(), &[]);

    phase_of(&fx.path("good.yaml"), "good", "Succeeded").await;
    let cases = [
        ("broken.yaml", "broken", "YAML syntax error"),
        ("two.yaml", "two-sources", "url and path are set"),
        ("noreg.yaml", "no-registry", "no registry"),
        ("badtag.yaml", "bad-tag", "invalid tag 'not ok'"),
        ("fails.yaml", "fails", "`RUN exit 7` failed"),
        ("escape.yaml", "escape", "etc"),
        ("down.yaml", "registry-down", "gave up after 2 attempts"),
    ];
    for (file, name, want) in cases {
        let s = phase_of(&fx.path(file), name, "Failed").await;
        let msg = s["message"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{name}: {msg}");
        assert_eq!(s["conditions"][0]["status"], "False", "{name}");
    }
    let s = status_in(&fx.path("down.yaml"), "registry-down").unwrap();
    assert_eq!(s["attempts"], 2);
    assert_eq!(
        fx.read("other.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: not-a-build}\n"
    );
    assert!(w.log().contains("not a DockerBuild; ignored"));
    // still running, still watching: a fix is picked up
    std::fs::write(
        fx.path("noreg.yaml"),
        doc(
            "no-registry",
            &indent(&format!("source: {{path: good}}\n{}", out("fixed"))),
        ),
    )
    .unwrap();
    phase_of(&fx.path("noreg.yaml"), "no-registry", "Succeeded").await;
    w.stop();
}

#[tokio::test]
async fn deleting_a_file_mid_build_cancels_the_build() {
    let base = ensure_base().await;
    let reg = registry();
    let spec = format!(
        "source: {{inline: {{dockerfile: \"FROM {base}\\nRUN sleep 60\\n\"}}}}\noutput: {{registry: '{reg}', repository: slipway-test/deleted}}"
    );
    let fx = Fixture::new().file("slow.yaml", &doc("slow", &indent(&spec)));
    let w = Watcher::start(fx.dir.path(), &[]);
    wait_for("the build to reach RUN sleep", LONG, || {
        status_in(&fx.path("slow.yaml"), "slow").filter(|s| {
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("RUN sleep 60"))
        })
    })
    .await;
    std::fs::remove_file(fx.path("slow.yaml")).unwrap();
    wait_for("the cancel to be logged", LONG, || {
        w.log()
            .contains("the resource was deleted; cancelling its build")
            .then_some(())
    })
    .await;
    // the daemon stops the build once its client goes: no container keeps sleeping
    let docker = docker().await;
    let mut still = true;
    for _ in 0..100 {
        let running = docker
            .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
            .await
            .unwrap();
        still = running.iter().any(|c| {
            c.command
                .as_deref()
                .is_some_and(|cmd| cmd.contains("sleep 60"))
        });
        if !still {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!still, "the build container is still running");
    assert!(
        !fx.path("slow.yaml").exists(),
        "status must not recreate a deleted file"
    );
}

#[tokio::test]
async fn a_restart_mid_build_ends_with_the_right_status() {
    let base = ensure_base().await;
    let reg = registry();
    let spec = format!(
        "source: {{inline: {{dockerfile: \"FROM {base}\\nRUN sleep 3\\n\"}}}}\nnoCache: true\noutput: {{registry: '{reg}', repository: slipway-test/restart}}"
    );
    let fx = Fixture::new().file("r.yaml", &doc("restart", &indent(&spec)));
    let file = fx.path("r.yaml");
    let mut w = Watcher::start(fx.dir.path(), &[]);
    phase_of(&file, "restart", "Building").await;
    w.stop();
    let mut w2 = Watcher::start(fx.dir.path(), &[]);
    let s = phase_of(&file, "restart", "Succeeded").await;
    assert!(s["imageDigest"].as_str().unwrap().starts_with("sha256:"));
    w2.stop();
}

#[tokio::test]
async fn a_new_file_is_picked_up_and_once_mode_exits_when_done() {
    let base = ensure_base().await;
    let reg = registry();
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("builds")).unwrap();
    // a relative folder, as in `slipway watch builds/`
    let mut w = Watcher::start_in(fx.dir.path(), Path::new("builds/"), &[]);
    wait_for("the watcher to sync", LONG, || {
        w.log().contains("watching for changes").then_some(())
    })
    .await;
    let spec = format!(
        "source: {{inline: {{dockerfile: \"FROM {base}\\nRUN echo new > /new\\n\"}}}}\noutput: {{registry: '{reg}', repository: slipway-test/new}}"
    );
    std::fs::create_dir_all(fx.path("builds/team-a")).unwrap();
    std::fs::write(fx.path("builds/team-a/new.yml"), doc("new", &indent(&spec))).unwrap();
    phase_of(&fx.path("builds/team-a/new.yml"), "new", "Succeeded").await;
    assert!(!w.log().contains("defined twice"), "{}", w.log());
    w.stop();

    // --once: everything is already built, so it exits 0 without building
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["watch", "--once"])
        .arg(fx.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 succeeded, 0 failed, 0 not built"
    );
}

#[tokio::test]
async fn a_broken_file_claiming_a_building_name_leaves_that_build_alone() {
    let base = ensure_base().await;
    let reg = registry();
    let spec = format!(
        "source: {{inline: {{dockerfile: \"FROM {base}\\nRUN sleep 4\\n\"}}}}\nnoCache: true\noutput: {{registry: '{reg}', repository: slipway-test/victim}}"
    );
    let fx = Fixture::new().file("victim.yaml", &doc("victim", &indent(&spec)));
    let victim = fx.path("victim.yaml");
    let mut w = Watcher::start(fx.dir.path(), &[]);
    phase_of(&victim, "victim", "Building").await;

    // another file, unparseable, claiming the same name
    let broken = fx.path("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata:\n  name: victim\n  namespace: tests\nspec: {source: [unclosed\n",
    )
    .unwrap();
    let s = phase_of(&broken, "victim", "Failed").await;
    let msg = s["message"].as_str().unwrap_or_default();
    assert!(msg.contains("YAML syntax error"), "{msg}");
    let done = phase_of(&victim, "victim", "Succeeded").await;

    // removing the broken file changes nothing for the victim
    std::fs::remove_file(&broken).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status_in(&victim, "victim").unwrap(), done);
    assert_eq!(w.log().matches("build started").count(), 1, "{}", w.log());
    w.stop();
}

#[tokio::test]
async fn a_duplicate_name_fails_in_its_own_file_only() {
    let base = ensure_base().await;
    let reg = registry();
    let spec = format!(
        "source: {{inline: {{dockerfile: \"FROM {base}\\nRUN echo dup > /dup\\n\"}}}}\noutput: {{registry: '{reg}', repository: slipway-test/dup}}"
    );
    // file names sort the holder first, as a restart reads them in order
    let fx = Fixture::new().file("a-owner.yaml", &doc("dup", &indent(&spec)));
    let owner = fx.path("a-owner.yaml");
    let copy = fx.path("b-copy.yaml");
    let mut w = Watcher::start(fx.dir.path(), &[]);
    let built = phase_of(&owner, "dup", "Succeeded").await;

    std::fs::write(&copy, doc("dup", &indent(&spec))).unwrap();
    let s = phase_of(&copy, "dup", "Failed").await;
    let msg = s["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("tests/dup is defined twice: in a-owner.yaml and in b-copy.yaml"),
        "{msg}"
    );
    // a comment in the holder's file: nothing to build, its status is kept
    let text = format!("# a comment\n{}", fx.read("a-owner.yaml"));
    std::fs::write(&owner, text).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status_in(&owner, "dup").unwrap(), built);
    assert_eq!(w.log().matches("build started").count(), 1, "{}", w.log());
    w.stop();

    // --once counts the duplicate as failed
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["watch", "--once"])
        .arg(fx.dir.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 succeeded, 1 failed, 0 not built",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert_eq!(status_in(&owner, "dup").unwrap(), built);
}

#[tokio::test]
async fn names_and_namespaces_are_checked_as_kubernetes_does() {
    let reg = registry();
    let file = |ns: &str, name: &str| {
        format!(
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  source: {{inline: {{dockerfile: \"FROM scratch\\nLABEL a=b\\n\"}}}}\n  output: {{registry: '{reg}', repository: slipway-test/names}}\n"
        )
    };
    // both would be `a/b/c` if names went unchecked
    let fx = Fixture::new()
        .file("slash-name.yaml", &file("a", "b/c"))
        .file("slash-namespace.yaml", &file("a/b", "c"));
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(["watch", "--once"])
        .arg(fx.dir.path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0 succeeded, 2 failed, 0 not built",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    for (f, name, want) in [
        ("slash-name.yaml", "b/c", "invalid metadata.name 'b/c'"),
        (
            "slash-namespace.yaml",
            "c",
            "invalid metadata.namespace 'a/b'",
        ),
    ] {
        let s = status_in(&fx.path(f), name).unwrap_or_else(|| panic!("{f}: no status"));
        assert_eq!(s["phase"], "Failed", "{f}");
        assert_eq!(s["conditions"][0]["reason"], "InvalidSpec", "{f}");
        let msg = s["message"].as_str().unwrap_or_default();
        assert!(msg.contains(want), "{f}: {msg}");
    }
}
