//! The `path`-context trigger through the real `slipway watch`: an edit that reaches
//! the build rebuilds, an ignored one does not, and a restart rebuilds nothing.

use std::time::Duration;

use crate::common::watcher::*;
use crate::common::*;

#[tokio::test]
async fn editing_a_context_file_rebuilds_an_ignored_one_does_not_and_restart_builds_nothing() {
    let base = ensure_base().await;
    let reg = registry();
    let spec = format!(
        "source: {{path: app}}\noutput: {{registry: '{reg}', repository: slipway-test/ctx-trigger}}"
    );
    let fx = Fixture::new()
        .file("b.yaml", &doc("ctx", &indent(&spec)))
        .file(
            "app/Dockerfile",
            &format!("FROM {base}\nCOPY greeting.txt /greeting.txt\n"),
        )
        .file("app/.dockerignore", "notes.txt\n")
        .file("app/greeting.txt", "hello\n")
        .file("app/notes.txt", "not sent to the build\n");
    let file = fx.path("b.yaml");
    let mut w = Watcher::start(fx.dir.path(), &[]);
    let first = phase_of(&file, "ctx", "Succeeded").await;
    let digest = first["contextDigest"]
        .as_str()
        .expect("contextDigest recorded");
    assert!(digest.starts_with("sha256:"), "{first}");
    assert_eq!(first["triggeredBy"], "spec", "{first}");

    // an ignored file: nothing reaches the build, nothing is built
    std::fs::write(fx.path("app/notes.txt"), "edited\n").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = status_in(&file, "ctx").unwrap();
    assert_eq!(now["buildNumber"], first["buildNumber"], "{now}");
    assert_eq!(w.log().matches("build started").count(), 1, "{}", w.log());

    // a file the build copies: rebuilt, and the image holds the new content
    std::fs::write(fx.path("app/greeting.txt"), "hello again\n").unwrap();
    let second = wait_for("a rebuild after the context edit", LONG, || {
        status_in(&file, "ctx")
            .filter(|s| s["phase"] == "Succeeded" && s["buildNumber"] != first["buildNumber"])
    })
    .await;
    assert_eq!(second["triggeredBy"], "context", "{second}");
    assert_ne!(second["contextDigest"], first["contextDigest"], "{second}");
    assert_ne!(second["imageDigest"], first["imageDigest"], "{second}");
    w.stop();

    // a restart: the context is as the status recorded it, so nothing builds
    let mut w = Watcher::start(fx.dir.path(), &[]);
    w.synced().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(w.log().matches("build started").count(), 0, "{}", w.log());
    let after = status_in(&file, "ctx").unwrap();
    assert_eq!(after["buildNumber"], second["buildNumber"], "{after}");
    w.stop();
}

#[tokio::test]
async fn twenty_edits_in_two_seconds_give_one_build_of_the_last_state() {
    let base = ensure_base().await;
    let reg = registry();
    let spec = format!(
        "source: {{path: app}}\noutput: {{registry: '{reg}', repository: slipway-test/ctx-storm}}"
    );
    let fx = Fixture::new()
        .file("b.yaml", &doc("storm", &indent(&spec)))
        .file(
            "app/Dockerfile",
            &format!("FROM {base}\nCOPY n.txt /n.txt\n"),
        )
        .file("app/n.txt", "0\n");
    let file = fx.path("b.yaml");
    let mut w = Watcher::start(fx.dir.path(), &[]);
    let first = phase_of(&file, "storm", "Succeeded").await;
    assert_eq!(first["buildNumber"], 1, "{first}");

    // a checkout, a formatter, an editor's autosave: twenty writes in two seconds
    for i in 1..=20 {
        std::fs::write(fx.path("app/n.txt"), format!("{i}\n")).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_digest = slipway::triggers::context::digest(&fx.path("app"), "Dockerfile").unwrap();
    let second = wait_for("the build after the edits", LONG, || {
        status_in(&file, "storm").filter(|s| s["phase"] == "Succeeded" && s["buildNumber"] != 1)
    })
    .await;
    // nothing more follows
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = status_in(&file, "storm").unwrap();
    assert_eq!(
        now["buildNumber"],
        2,
        "one build for twenty edits: {now}\n{}",
        w.log()
    );
    assert_eq!(
        second["contextDigest"],
        last_digest.as_str(),
        "built the last state"
    );
    assert_eq!(w.log().matches("build started").count(), 2, "{}", w.log());
    w.stop();
}
