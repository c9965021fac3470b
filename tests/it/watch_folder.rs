//! `slipway watch DIR` as a user runs it: files in, status written back into them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::watcher::*;
use crate::common::*;

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
    // no temp files left behind: the files, and slipway's state dir (build logs)
    let mut names: Vec<_> = std::fs::read_dir(fx.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".slipway", "builds.yaml", "wiki"]);
    assert!(fx.path(".slipway/logs/tests/wiki/1.log").is_file());
    w.stop();
}

#[tokio::test]
async fn status_edits_do_not_rebuild_spec_and_token_edits_do() {
    let base = ensure_base().await;
    let spec = base_spec(&base, "RUN date > /built\\n", "rebuild", false);
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
    // unique, so the step's processes are this test's alone (BuildKit runs no container)
    let marker = format!("slipway-deleted-{}", uuid::Uuid::new_v4().simple());
    let steps = format!("RUN sleep 60 && touch /{marker}\\n");
    let spec = base_spec(&base, &steps, "deleted", false);
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
    let step = wait_for("the step's processes", LONG, || {
        let p = processes_with(&marker);
        p.iter()
            .any(|(_, c)| c.starts_with("sleep 60"))
            .then_some(p)
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
    let left = still_running(&step, Duration::from_secs(10)).await;
    assert!(
        left.is_empty(),
        "the daemon kept building: {left:?} still run"
    );
    assert!(
        !fx.path("slow.yaml").exists(),
        "status must not recreate a deleted file"
    );
}

#[tokio::test]
async fn a_restart_mid_build_ends_with_the_right_status() {
    let base = ensure_base().await;
    let spec = base_spec(&base, "RUN sleep 3\\n", "restart", true);
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
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path("builds")).unwrap();
    // a relative folder, as in `slipway watch builds/`
    let mut w = Watcher::start_in(fx.dir.path(), Path::new("builds/"), &[]);
    w.synced().await;
    let spec = base_spec(&base, "RUN echo new > /new\\n", "new", false);
    std::fs::create_dir_all(fx.path("builds/team-a")).unwrap();
    std::fs::write(fx.path("builds/team-a/new.yml"), doc("new", &indent(&spec))).unwrap();
    phase_of(&fx.path("builds/team-a/new.yml"), "new", "Succeeded").await;
    assert!(!w.log().contains("defined twice"), "{}", w.log());
    w.stop();

    // --once: everything is already built, so it exits 0 without building
    let out = watch_once(fx.dir.path(), &[]);
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
async fn a_json_document_in_a_yaml_file_gets_its_status_as_json() {
    let base = ensure_base().await;
    let reg = registry();
    let text = format!(
        "{{\n  \"apiVersion\": \"slipway.dev/v1alpha1\",\n  \"kind\": \"DockerBuild\",\n  \"metadata\": {{\"name\": \"json\", \"namespace\": \"tests\"}},\n  \"spec\": {{\n    \"source\": {{\"inline\": {{\"dockerfile\": \"FROM {base}\\nRUN echo json > /json\\n\"}}}},\n    \"output\": {{\"registry\": \"{reg}\", \"repository\": \"slipway-test/json\"}}\n  }}\n}}\n"
    );
    let fx = Fixture::new().file("j.yaml", &text);
    let file = fx.path("j.yaml");
    let mut w = Watcher::start(fx.dir.path(), &[]);
    let status = wait_for("the JSON document to succeed", LONG, || {
        let v: serde_json::Value = serde_json::from_str(&fx.read("j.yaml")).ok()?;
        (v["status"]["phase"] == "Succeeded").then(|| v["status"].clone())
    })
    .await;
    assert!(
        status["imageDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // everything the user wrote is byte for byte where it was; status sits inside
    let after = std::fs::read_to_string(&file).unwrap();
    let body = text.strip_suffix("\n}\n").unwrap();
    assert!(
        after.starts_with(&format!("{body},\n  \"status\": {{\n")),
        "{after}"
    );
    assert!(after.ends_with("\n  }\n}\n"), "{after}");
    // and the watcher reads it back as built: no second build
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(w.log().matches("build started").count(), 1, "{}", w.log());
    w.stop();
}

#[tokio::test]
async fn a_symlinked_resource_file_stays_a_link_and_its_target_gets_the_status() {
    let base = ensure_base().await;
    let spec = base_spec(&base, "RUN echo linkw > /l\\n", "linkw", false);
    let text = doc("linkw", &indent(&spec));
    let fx = Fixture::new().file("shared/target.yaml", &text);
    let mut w = Watcher::start(fx.dir.path(), &[]);
    w.synced().await;
    // made while watching: the link and its target are one resource, written
    // through the target, and the link is never replaced by a file
    std::os::unix::fs::symlink("shared/target.yaml", fx.path("link.yaml")).unwrap();
    phase_of(&fx.path("shared/target.yaml"), "linkw", "Succeeded").await;
    let link = fx.path("link.yaml");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("shared/target.yaml")
    );
    assert_eq!(without_status(&fx.read("shared/target.yaml")), text);
    assert!(!w.log().contains("defined twice"), "{}", w.log());
    let names: Vec<_> = std::fs::read_dir(fx.path("shared"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["target.yaml"], "no temp file left");
    w.stop();
}

/// The stress case: while two slow builds run, one file gets 20,000 lines
/// appended (`>>`, one open per line) and the other 400 editor-style saves (a temp
/// file renamed over it, each adding a line). Every line must survive the status
/// writes, and the final status must be there.
#[tokio::test]
async fn concurrent_appends_and_editor_saves_during_builds_lose_no_line() {
    const APPENDS: usize = 20_000;
    const SAVES: usize = 400;
    let base = ensure_base().await;
    // many steps, each one a status write (its progress message)
    let steps: String = (0..40)
        .map(|i| format!("RUN echo {i} > /s{i} && sleep 0.3\\n"))
        .collect();
    let spec = |repo: &str| base_spec(&base, &steps, repo, true);
    let fx = Fixture::new()
        .file(
            "appended.yaml",
            &doc("appended", &indent(&spec("appended"))),
        )
        .file("saved.yaml", &doc("saved", &indent(&spec("saved"))));
    let (appended, saved) = (fx.path("appended.yaml"), fx.path("saved.yaml"));
    let w = Watcher::start(fx.dir.path(), &[]);
    for (f, name) in [(&appended, "appended"), (&saved, "saved")] {
        phase_of(f, name, "Building").await;
    }

    let appender = {
        let f = appended.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            for i in 0..APPENDS {
                let mut out = std::fs::OpenOptions::new().append(true).open(&f).unwrap();
                out.write_all(format!("# appended {i}\n").as_bytes())
                    .unwrap();
                if i % 4 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    let saver = {
        let f = saved.clone();
        std::thread::spawn(move || {
            let tmp = f.with_file_name(".saved.yaml.swp");
            for i in 0..SAVES {
                let mut text = std::fs::read_to_string(&f).unwrap();
                text.push_str(&format!("# saved {i}\n"));
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, &f).unwrap();
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    appender.join().unwrap();
    saver.join().unwrap();
    // the writers finish first: builds still running prove the writes overlapped
    let mid = [("appended", &appended), ("saved", &saved)]
        .map(|(n, f)| status_in(f, n).map(|s| s["phase"].clone()));
    let a = phase_of(&appended, "appended", "Succeeded").await;
    let s = phase_of(&saved, "saved", "Succeeded").await;
    assert!(a["imageDigest"].is_string() && s["imageDigest"].is_string());

    let lost = |f: &Path, what: &str, n: usize| {
        let text = std::fs::read_to_string(f).unwrap();
        let have: std::collections::HashSet<&str> = text.lines().collect();
        (0..n)
            .filter(|i| !have.contains(format!("# {what} {i}").as_str()))
            .count()
    };
    let lost_appends = lost(&appended, "appended", APPENDS);
    let lost_saves = lost(&saved, "saved", SAVES);
    assert_eq!(
        (lost_appends, lost_saves),
        (0, 0),
        "lines lost (appended, saved); phases when the writers finished: {mid:?}"
    );
    assert!(
        mid.iter()
            .all(|p| p.as_ref().is_some_and(|p| p != "Succeeded")),
        "the builds ended before the writers did: {mid:?}"
    );
    drop(w);
}

#[tokio::test]
async fn a_flow_document_on_the_marker_line_is_built_and_keeps_its_style() {
    let base = ensure_base().await;
    let reg = registry();
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: before}}\n\
--- {{apiVersion: slipway.dev/v1alpha1, kind: DockerBuild, metadata: {{name: marker, namespace: tests}},\n  \
spec: {{source: {{inline: {{dockerfile: \"FROM {base}\\nRUN echo m > /m\\n\"}}}}, output: {{registry: '{reg}', repository: slipway-test/marker}}}}}}\n"
    );
    let fx = Fixture::new().file("m.yaml", &text);
    let mut w = Watcher::start(fx.dir.path(), &[]);
    let docs = wait_for("the --- document to succeed", LONG, || {
        let text = fx.read("m.yaml");
        let docs: Vec<serde_json::Value> = slipway::yaml::from_multiple(&text).unwrap();
        (docs.len() == 2 && docs[1]["status"]["phase"] == "Succeeded").then_some(docs)
    })
    .await;
    assert!(docs[0].get("status").is_none());
    let after = fx.read("m.yaml");
    let body = text.strip_suffix("}\n").unwrap();
    assert!(
        after.starts_with(&format!("{body}, \"status\": {{\"")),
        "{after}"
    );
    assert!(after.ends_with("}}\n"), "{after}");
    w.stop();
}

/// A spec that builds quickly from the test base image into `repo`.
fn quick_spec(base: &str, repo: &str) -> String {
    base_spec(base, &format!("RUN echo {repo} > /built\\n"), repo, false)
}

/// A spec of an inline Dockerfile, `FROM` the test base image then `steps` (lines
/// ending in an escaped newline, `\\n`), pushed to `slipway-test/REPO`.
fn base_spec(base: &str, steps: &str, repo: &str, no_cache: bool) -> String {
    let no_cache = if no_cache { "noCache: true\n" } else { "" };
    format!(
        "source: {{inline: {{dockerfile: \"FROM {base}\\n{steps}\"}}}}\n{no_cache}output: {{registry: '{}', repository: slipway-test/{repo}}}",
        registry()
    )
}

#[tokio::test]
async fn a_symlink_inside_the_folder_is_its_target_and_one_outside_is_refused() {
    let base = ensure_base().await;
    let outside = Fixture::new().file(
        "secret.yaml",
        &doc("outside", &indent(&quick_spec(&base, "outside"))),
    );
    let outside_file = outside.path("secret.yaml");
    let outside_text = std::fs::read_to_string(&outside_file).unwrap();
    let fx = Fixture::new()
        .file(
            "real/target.yaml",
            &doc("linked", &indent(&quick_spec(&base, "linked"))),
        )
        .symlink("real/target.yaml", "at-start.yaml")
        .symlink(outside_file.to_str().unwrap(), "out-at-start.yaml");
    let target = fx.path("real/target.yaml");
    let w = Watcher::start(fx.dir.path(), &[]);
    phase_of(&target, "linked", "Succeeded").await;

    // the same, while watching: a link in, a link out
    std::os::unix::fs::symlink("real/target.yaml", fx.path("live.yaml")).unwrap();
    std::os::unix::fs::symlink(&outside_file, fx.path("out-live.yaml")).unwrap();
    wait_for("the live outside link to be refused", LONG, || {
        w.log().contains("file=out-live.yaml").then_some(())
    })
    .await;
    // a change to the target through the link is one resource changing
    let text = std::fs::read_to_string(&target).unwrap();
    let edited = text.replace(
        "repository: slipway-test/linked}",
        "repository: slipway-test/linked, tags: [latest, two]}",
    );
    std::fs::write(fx.path("live.yaml"), &edited).unwrap();
    wait_for("the edit through the link to build", LONG, || {
        status_in(&target, "linked").filter(|s| {
            s["phase"] == "Succeeded" && s["pushedTags"].as_array().map(Vec::len) == Some(2)
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let log = w.log();
    assert!(!log.contains("defined twice"), "{log}");
    assert_eq!(log.matches("build started").count(), 2, "{log}");
    for link in ["out-at-start.yaml", "out-live.yaml"] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("file={link}")))
            .unwrap_or_else(|| panic!("no log line for {link}: {log}"));
        assert!(
            line.contains("symlink not followed: it leads outside the watched folder"),
            "{line}"
        );
        assert_eq!(
            log.matches(&format!("file={link}")).count(),
            1,
            "logged once: {log}"
        );
    }
    assert!(
        !log.contains("tests/outside"),
        "the outside file was read: {log}"
    );
    assert_eq!(
        std::fs::read_to_string(&outside_file).unwrap(),
        outside_text
    );
    for link in [
        "at-start.yaml",
        "live.yaml",
        "out-at-start.yaml",
        "out-live.yaml",
    ] {
        let meta = std::fs::symlink_metadata(fx.path(link)).unwrap();
        assert!(meta.file_type().is_symlink(), "{link} is still a link");
    }
}

#[tokio::test]
async fn a_replaced_folder_is_watched_again_in_either_order() {
    let base = ensure_base().await;
    let fx = Fixture::new().file(
        "D/first.yaml",
        &doc("first", &indent(&quick_spec(&base, "first"))),
    );
    let d = fx.path("D");
    let w = Watcher::start(&d, &[]);
    phase_of(&d.join("first.yaml"), "first", "Succeeded").await;

    // removed, then made again
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::create_dir(&d).unwrap();
    // as a slow copy would: a rescan prompted by the removal itself sees nothing yet
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = doc("second", &indent(&quick_spec(&base, "second")));
    std::fs::write(d.join("second.yaml"), &second).unwrap();
    phase_of(&d.join("second.yaml"), "second", "Succeeded").await;

    // made first, then moved into place
    let new = fx.path("D.new");
    std::fs::create_dir(&new).unwrap();
    let third = doc("third", &indent(&quick_spec(&base, "third")));
    std::fs::write(new.join("third.yaml"), &third).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::rename(&new, &d).unwrap();
    phase_of(&d.join("third.yaml"), "third", "Succeeded").await;

    // and it keeps watching: a file added now builds too
    let fourth = doc("fourth", &indent(&quick_spec(&base, "fourth")));
    std::fs::write(d.join("fourth.yaml"), &fourth).unwrap();
    phase_of(&d.join("fourth.yaml"), "fourth", "Succeeded").await;
    let log = w.log();
    assert!(
        log.contains("the watched folder was removed or replaced"),
        "{log}"
    );
    assert!(!log.contains("defined twice"), "{log}");
}

#[tokio::test]
async fn once_counts_a_file_that_cannot_be_read_as_failed() {
    let mut bytes = doc(
        "latin1",
        &indent("source: {inline: {dockerfile: \"FROM scratch\"}}"),
    )
    .into_bytes();
    bytes.extend_from_slice(b"# caf\xe9, saved as Latin-1\n");
    let fx = Fixture::new();
    std::fs::write(fx.path("latin1.yaml"), &bytes).unwrap();
    let out = watch_once(fx.dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0 succeeded, 1 failed, 0 not built"
    );
    assert!(
        stderr.contains("latin1.yaml: cannot read the file: it is not UTF-8 text"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(fx.path("latin1.yaml")).unwrap(),
        bytes,
        "left as it was"
    );
}

#[tokio::test]
async fn unknown_fields_are_warned_about_and_duplicate_keys_refused() {
    let base = ensure_base().await;
    let typo = format!("{}\ntimeoutSecs: 5\n", quick_spec(&base, "typo"));
    let dup = format!(
        "{}\ntimeoutSeconds: 5\ntimeoutSeconds: 50\n",
        quick_spec(&base, "dup")
    );
    let fx = Fixture::new()
        .file("typo.yaml", &doc("typo", &indent(&typo)))
        .file("dup.yaml", &doc("dup", &indent(&dup)));
    let w = Watcher::start(fx.dir.path(), &[]);

    let s = phase_of(&fx.path("typo.yaml"), "typo", "Succeeded").await;
    let msg = s["message"].as_str().unwrap();
    assert!(msg.contains("unknown field \"spec.timeoutSecs\""), "{msg}");
    assert!(s["imageDigest"].as_str().unwrap().starts_with("sha256:"));

    let s = phase_of(&fx.path("dup.yaml"), "dup", "Failed").await;
    assert_eq!(s["conditions"][0]["reason"], "InvalidSpec");
    let msg = s["message"].as_str().unwrap();
    // the second timeoutSeconds is the file's line 10
    assert!(
        msg.contains("dup.yaml: YAML error at line 10: duplicate key \"timeoutSeconds\""),
        "{msg}"
    );
    // only the build with the typo ran
    assert_eq!(w.log().matches("build started").count(), 1, "{}", w.log());
}

#[tokio::test]
async fn a_folder_removed_for_good_stops_the_watch_with_an_error() {
    let fx = Fixture::new();
    let d = fx.path("D");
    std::fs::create_dir(&d).unwrap();
    let mut w = Watcher::start(&d, &[]);
    w.synced().await;
    std::fs::remove_dir_all(&d).unwrap();
    let status = wait_for("slipway to give up on the folder", LONG, || {
        w.child.try_wait().unwrap()
    })
    .await;
    assert!(!status.success());
    let log = w.log();
    assert!(
        log.contains("the watched folder was removed and not re-created within 30s"),
        "{log}"
    );
}

#[tokio::test]
async fn a_broken_file_claiming_a_building_name_leaves_that_build_alone() {
    let base = ensure_base().await;
    let spec = base_spec(&base, "RUN sleep 4\\n", "victim", true);
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
    let spec = base_spec(&base, "RUN echo dup > /dup\\n", "dup", false);
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
    let out = watch_once(fx.dir.path(), &[]);
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
    let out = watch_once(fx.dir.path(), &[]);
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

#[tokio::test]
async fn build_secrets_are_read_beside_the_file_and_never_shown() {
    let base = ensure_base().await;
    let reg = registry();
    let value = format!("tok-{}", uuid::Uuid::new_v4());
    let build = |name: &str, extra: &str| {
        doc(
            name,
            &indent(&format!(
                "source: {{inline: {{dockerfile: \"FROM {base}\\nRUN echo {name} > /{name}\\n\"}}}}\noutput: {{registry: '{reg}', repository: slipway-test/secrets-{name}}}\n{extra}"
            )),
        )
    };
    let fx = Fixture::new()
        .file("plain.yaml", &build("plain", ""))
        .file(
            "missing.yaml",
            &build("missing", "secrets: [{id: npm, file: npm-token}]"),
        )
        .file(
            "given.yaml",
            &build("given", "secrets: [{id: npm, file: keys/npm-token}]"),
        )
        .file("keys/npm-token", &value);
    let mut w = Watcher::start(fx.dir.path(), &[]);

    let failed = phase_of(&fx.path("missing.yaml"), "missing", "Failed").await;
    assert_eq!(failed["conditions"][0]["reason"], "InvalidSpec");
    assert_eq!(
        failed["message"],
        format!(
            "spec.secrets 'npm': cannot read file 'npm-token' (in {}): No such file or directory (os error 2)",
            fx.dir.path().display()
        )
    );
    // the other builds go on; a plain one shows its steps
    let plain = phase_of(&fx.path("plain.yaml"), "plain", "Succeeded").await;
    let steps: Vec<&str> = plain["stages"]
        .as_array()
        .map(|s| s.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        steps.contains(&"[2/2] RUN echo plain > /plain"),
        "{plain:#}"
    );
    // whatever the engine makes of a secret, its value shows nowhere
    let given = wait_for("given to end", LONG, || {
        status_in(&fx.path("given.yaml"), "given")
            .filter(|s| s["phase"] == "Succeeded" || s["phase"] == "Failed")
    })
    .await;
    w.stop();
    let log = w.log();
    assert!(log.contains("given"), "the log is the debug log: {log}");
    for (what, text) in [
        ("log", log),
        ("status", given.to_string()),
        ("file", fx.read("given.yaml")),
    ] {
        assert!(
            !text.contains(&value),
            "the secret is in the {what}: {text}"
        );
    }
}

#[tokio::test]
async fn a_json_file_is_read_like_yaml_and_stays_json() {
    let base = ensure_base().await;
    let reg = registry();
    // tab-indented, as Go's json.MarshalIndent and many editors write it
    let text = format!(
        "{{\n\t\"apiVersion\": \"slipway.dev/v1alpha1\",\n\t\"kind\": \"DockerBuild\",\n\t\"metadata\": {{\"name\": \"jsonfile\", \"namespace\": \"tests\"}},\n\t\"spec\": {{\n\t\t\"source\": {{\"inline\": {{\"dockerfile\": \"FROM {base}\\nRUN echo jsonfile > /jsonfile\\n\"}}}},\n\t\t\"output\": {{\"registry\": \"{reg}\", \"repository\": \"slipway-test/jsonfile\"}}\n\t}}\n}}\n"
    );
    let fx = Fixture::new().file("build.json", &text);
    let mut w = Watcher::start(fx.dir.path(), &[]);
    let mut after: serde_json::Value = wait_for("the .json file to succeed", LONG, || {
        let v: serde_json::Value = serde_json::from_str(&fx.read("build.json")).ok()?;
        (v["status"]["phase"] == "Succeeded").then_some(v)
    })
    .await;
    let status = after.as_object_mut().unwrap().remove("status").unwrap();
    assert!(
        status["imageDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // nothing outside status changed, byte for byte
    let before: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(after, before);
    let written = fx.read("build.json");
    let body = text.strip_suffix("\n}\n").unwrap();
    assert!(
        written.starts_with(&format!("{body},\n\t\"status\": {{")),
        "{written}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(w.log().matches("build started").count(), 1, "{}", w.log());
    w.stop();

    // `slipway build file.json` reads it as resources too, not as a Dockerfile
    let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
        .arg("build")
        .arg(fx.path("build.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_resource_file_over_the_size_limit_is_refused_and_the_others_build() {
    let base = ensure_base().await;
    // 2 MiB (of comments, here): over the 1.5 MiB default, so never read whole
    let big = format!(
        "{}{}",
        doc("huge", &indent(&quick_spec(&base, "huge"))),
        format!("# {}\n", "x".repeat(1000)).repeat(2048)
    );
    let fx = Fixture::new().file("big.yaml", &big).file(
        "small.yaml",
        &doc("small", &indent(&quick_spec(&base, "small"))),
    );
    let out = watch_once(fx.dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 succeeded, 1 failed, 0 not built",
        "{stderr}"
    );
    // the refused resource is named, with the file, its size, the limit and the flag
    let said = stderr
        .lines()
        .find(|l| l.contains("build=tests/huge") && l.contains("over the"))
        .unwrap_or_else(|| panic!("no refusal of tests/huge: {stderr}"));
    assert!(
        said.contains(&format!(
            "big.yaml: the file is {} bytes, over the 1572864-byte limit",
            big.len()
        )) && said.contains("--max-resource-file-bytes"),
        "{said}"
    );
    assert_eq!(fx.read("big.yaml"), big, "left as it was");
    assert_eq!(
        status_in(&fx.path("small.yaml"), "small").unwrap()["phase"],
        "Succeeded"
    );

    // the limit is the user's to raise
    let out = watch_once(fx.dir.path(), &["--max-resource-file-bytes", "4000000"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        status_in(&fx.path("big.yaml"), "huge").unwrap()["phase"],
        "Succeeded"
    );
}
