//! `spec.pull`: `Always` builds on a base re-pushed under the same tag, while
//! `IfNotPresent` keeps the daemon's copy; against the real daemon and registry.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::*;
use bollard::query_parameters::TagImageOptions;
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

/// Tags the daemon's `image` as `target` (`repo:tag`).
async fn tag(image: &str, target: &str) {
    let (repo, tag) = target.rsplit_once(':').unwrap();
    docker()
        .await
        .tag_image(
            image,
            Some(TagImageOptions {
                repo: Some(repo.into()),
                tag: Some(tag.into()),
            }),
        )
        .await
        .unwrap_or_else(|e| panic!("tagging {image} as {target}: {e}"));
}

/// The daemon keeps its images in containerd (Docker 29's default image store).
async fn containerd_image_store() -> bool {
    let info = docker().await.info().await.expect("docker info");
    info.driver_status
        .unwrap_or_default()
        .iter()
        .any(|kv| kv.first().is_some_and(|k| k == "driver-type") && kv[1].contains("containerd"))
}

#[tokio::test]
async fn always_builds_on_a_re_pushed_base_and_if_not_present_on_the_local_copy() {
    let common = ensure_base().await;
    let containerd_store = containerd_image_store().await;
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
        // A second tag keeps B1: a daemon on the containerd image store (Docker 29)
        // forgets an image as soon as its last tag moves away
        let b1 = format!("{}/{repo}:b1", registry());
        tag(&base, &b1).await;
        // B2 pushed under the same tag from elsewhere: the daemon's tag moved back to B1
        build(
            &runner,
            &repo,
            &format!("FROM {common}\nLABEL content={two}\n"),
            "",
        )
        .await;
        tag(&b1, &base).await;
        assert_eq!(content(&base).await, one, "{builder:?}");

        let leaf = format!("FROM {base}\nLABEL leaf=1\n");
        // IfNotPresent lets the engine decide. The daemon's BuildKit on the containerd
        // image store resolves the tag in the registry first, as a standalone
        // buildkitd does (BuildKit's "default" resolve mode); the classic builder and
        // the graph-driver store use the daemon's copy.
        let registry_first = containerd_store && builder == Builder::BuildkitDaemon;
        let kept = build(&runner, "slipway-test/pull-leaf", &leaf, "").await;
        let expected = if registry_first { &two } else { &one };
        assert_eq!(
            &content(&kept.pushed_tags[0]).await,
            expected,
            "{builder:?}"
        );
        let fresh = build(&runner, "slipway-test/pull-leaf", &leaf, "pull: Always").await;
        assert_eq!(content(&fresh.pushed_tags[0]).await, two, "{builder:?}");
        if !registry_first {
            assert_ne!(kept.digest, fresh.digest);
        }
    }
}
