//! `spec.pull`: `Always` builds on a base re-pushed under the same tag, while
//! `IfNotPresent` keeps the daemon's copy; against the real daemon and registry.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use bollard::query_parameters::TagImageOptions;
use common::*;
use slipway::runner::{BuildOutcome, Builder, Runner};

fn unique() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}-{}", t.as_nanos(), std::process::id())
}

/// Builds `dockerfile` into `repo:latest` of the test registry.
async fn build(runner: &Runner, repo: &str, dockerfile: &str, extra: &str) -> BuildOutcome {
    run_inline(runner, repo, dockerfile, extra)
        .await
        .unwrap_or_else(|e| panic!("{repo}: {e}"))
}

/// The `content` label of an image the daemon holds (a leaf inherits its base's).
async fn content(image: &str) -> String {
    let i = docker().await.inspect_image(image).await.unwrap();
    i.config.unwrap().labels.unwrap()["content"].clone()
}

#[tokio::test]
async fn always_builds_on_a_re_pushed_base_and_if_not_present_on_the_local_copy() {
    let common = ensure_base().await;
    for builder in [Builder::BuildkitDaemon, Builder::Classic] {
        let runner = Runner::connect(None, builder)
            .await
            .expect("docker daemon reachable");
        let repo = format!("slipway-test/pull-base-{}", unique());
        let base = format!("{}/{repo}:latest", registry());
        let (one, two) = (format!("one-{}", unique()), format!("two-{}", unique()));
        // B1 pushed, and the daemon's `base` tag points at it
        build(
            &runner,
            &repo,
            &format!("FROM {common}\nLABEL content={one}\n"),
            "",
        )
        .await;
        let b1 = docker()
            .await
            .inspect_image(&base)
            .await
            .unwrap()
            .id
            .unwrap();
        // B2 pushed under the same tag from elsewhere: the daemon's tag moved back to B1
        build(
            &runner,
            &repo,
            &format!("FROM {common}\nLABEL content={two}\n"),
            "",
        )
        .await;
        docker()
            .await
            .tag_image(
                &b1,
                Some(TagImageOptions {
                    repo: Some(format!("{}/{repo}", registry())),
                    tag: Some("latest".into()),
                }),
            )
            .await
            .unwrap();
        assert_eq!(content(&base).await, one, "{builder:?}");

        let leaf = format!("FROM {base}\nLABEL leaf=1\n");
        let kept = build(&runner, "slipway-test/pull-leaf", &leaf, "").await;
        assert_eq!(content(&kept.pushed_tags[0]).await, one, "{builder:?}");
        let fresh = build(&runner, "slipway-test/pull-leaf", &leaf, "pull: Always").await;
        assert_eq!(content(&fresh.pushed_tags[0]).await, two, "{builder:?}");
        assert_ne!(kept.digest, fresh.digest);
    }
}
