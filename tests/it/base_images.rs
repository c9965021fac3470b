//! What a build records about its base images, and the external base poller, against
//! the real registry (`SLIPWAY_TEST_REGISTRY`), with every engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::*;
use slipway::api::BaseImage;
use slipway::registry;
use slipway::runner::{BuildOutcome, Builder, BuildkitdArgs, Runner};
use slipway::triggers::{Observation, Targets, spawn_base_poller};
use tokio::sync::{mpsc, watch};

/// A Docker address that leads nowhere: the buildkitd engine needs no daemon.
const NO_DOCKER: &str = "unix:///nonexistent/docker.sock";

fn unique() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}-{}", t.as_nanos(), std::process::id())
}

/// Builds `dockerfile` into `repo` of the test registry with `runner`.
async fn build_with(
    runner: &Runner,
    repo: &str,
    dockerfile: &str,
    build_args: &str,
) -> slipway::Result<BuildOutcome> {
    run_inline(
        runner,
        repo,
        dockerfile,
        &format!("buildArgs: {{{build_args}}}"),
    )
    .await
}

/// Pushes a base of our own (new content each time) under `repo:latest`.
async fn push_base(repo: &str) -> BuildOutcome {
    let base = ensure_base().await;
    let dockerfile = format!("FROM {base}\nLABEL content={}\n", unique());
    build_with(&runner().await, repo, &dockerfile, "")
        .await
        .expect("base builds")
}

/// What the registry serves for `repo:latest` now.
async fn served(repo: &str) -> String {
    registry::manifest_digest(&http(), &registry(), repo, "latest", None)
        .await
        .expect("the registry serves it")
}

fn buildkitd() -> Option<BuildkitdArgs> {
    let addr = std::env::var("SLIPWAY_TEST_BUILDKIT_ADDR").ok()?;
    let dir = PathBuf::from(std::env::var("SLIPWAY_TEST_BUILDKIT_DIR").ok()?);
    Some(BuildkitdArgs {
        addr: Some(addr),
        ca: Some(dir.join("ca.pem")),
        cert: Some(dir.join("cert.pem")),
        key: Some(dir.join("key.pem")),
        ..Default::default()
    })
}

#[tokio::test]
async fn every_engine_records_the_digests_its_from_images_had() {
    let common = ensure_base().await;
    let own = "slipway-test/recorded-base";
    let base = push_base(own).await;
    let tagged = format!("{}/{own}:latest", registry());
    // a FROM through a build arg, a COPY --from=image, a stage that is no image
    let dockerfile = format!(
        "ARG BASE\nFROM $BASE AS first\nFROM first\nCOPY --from={common} /bin/busybox /copied\nLABEL leaf=1\n"
    );
    let expected = vec![
        BaseImage {
            image: tagged.clone(),
            // a base slipway built compares equal to its own build's digest
            digest: base.digest.clone(),
        },
        BaseImage {
            image: common.clone(),
            digest: served("slipway-test/base").await,
        },
    ];
    let mut runners = vec![
        ("classic", runner_for(Builder::Classic).await),
        ("buildkit-daemon", runner_for(Builder::BuildkitDaemon).await),
    ];
    match buildkitd() {
        Some(bk) => runners.push((
            "buildkitd",
            Runner::connect_with(Some(NO_DOCKER), Builder::Buildkitd, &bk)
                .await
                .expect("buildkitd settings accepted"),
        )),
        None => eprintln!("SLIPWAY_TEST_BUILDKIT_ADDR unset: buildkitd not tried"),
    }
    for (engine, runner) in runners {
        let out = build_with(
            &runner,
            "slipway-test/recorded-leaf",
            &dockerfile,
            &format!("BASE: '{tagged}'"),
        )
        .await
        .unwrap_or_else(|e| panic!("{engine}: {e}"));
        assert_eq!(out.base_images, expected, "{engine}");
    }
}

async fn runner_for(builder: Builder) -> Runner {
    Runner::connect(None, builder)
        .await
        .expect("docker daemon reachable")
}

/// The next observation, within `secs`.
async fn next(seen: &mut mpsc::Receiver<Observation>, secs: u64) -> Observation {
    tokio::time::timeout(Duration::from_secs(secs), seen.recv())
        .await
        .expect("an observation in time")
        .expect("the poller runs")
}

#[tokio::test]
async fn a_re_pushed_base_is_observed_with_the_registrys_new_digest_and_an_unchanged_one_not() {
    let repo = "slipway-test/polled-base";
    let first = push_base(repo).await;
    let moving = format!("{}/{repo}:latest", registry());
    let still = ensure_base().await;
    let (tx, targets) = watch::channel(Targets::default());
    tx.send_modify(|t| {
        t.bases.insert(moving.clone(), Arc::default());
        t.bases.insert(still.clone(), Arc::default());
    });
    let (out, mut seen) = mpsc::channel(16);
    let every = Duration::from_millis(300);
    let poller = spawn_base_poller(targets, every, http(), out);

    let mut firsts = vec![next(&mut seen, 10).await, next(&mut seen, 10).await];
    firsts.sort_by_key(|o| format!("{o:?}"));
    let mut want = vec![
        Observation::Base {
            image: moving.clone(),
            digest: first.digest.clone(),
        },
        Observation::Base {
            image: still.clone(),
            digest: served("slipway-test/base").await,
        },
    ];
    want.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(firsts, want);

    tokio::time::sleep(every * 4).await;
    assert!(
        seen.try_recv().is_err(),
        "nothing changed, nothing observed"
    );

    let second = push_base(repo).await;
    assert_ne!(second.digest, first.digest);
    let changed = next(&mut seen, 10).await;
    assert_eq!(
        changed,
        Observation::Base {
            image: moving,
            digest: served(repo).await,
        }
    );
    assert_eq!(
        changed,
        Observation::Base {
            image: format!("{}/{repo}:latest", registry()),
            digest: second.digest,
        }
    );
    // the unchanged base stays quiet
    tokio::time::sleep(every * 4).await;
    assert!(seen.try_recv().is_err(), "{:?}", seen.try_recv());
    poller.abort();
}

/// The digest a status recorded for its (only) base image.
fn recorded_base(status: &serde_json::Value) -> String {
    status["baseImages"][0]["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_re_pushed_external_base_rebuilds_its_leaves_after_one_base_poll_and_no_other() {
    use crate::common::watcher::{LONG, Watcher, doc, indent, phase_of};
    let reg = registry();
    let run = unique();
    let (moving, still) = (
        format!("slipway-test/ext-moving-{run}"),
        format!("slipway-test/ext-still-{run}"),
    );
    let first = push_base(&moving).await;
    let unchanged = push_base(&still).await;
    let leaf = |name: &str, base: &str| {
        doc(
            name,
            &indent(&format!(
                "source: {{inline: {{dockerfile: \"FROM {reg}/{base}:latest\\nLABEL leaf={name}\\n\"}}}}\noutput: {{registry: '{reg}', repository: slipway-test/ext-{name}}}"
            )),
        )
    };
    let fx = Fixture::new()
        .file("a.yaml", &leaf("leaf-a", &moving))
        .file("b.yaml", &leaf("leaf-b", &still));
    let mut w = Watcher::start(fx.dir.path(), &["--base-poll", "1s"]);

    let a = phase_of(&fx.path("a.yaml"), "leaf-a", "Succeeded").await;
    let b = phase_of(&fx.path("b.yaml"), "leaf-b", "Succeeded").await;
    assert_eq!(recorded_base(&a), first.digest, "{a:#}");
    assert_eq!(recorded_base(&b), unchanged.digest, "{b:#}");
    let b_build = b["buildNumber"].clone();

    // the same tag, new content: the poller sees it within a second
    let second = push_base(&moving).await;
    let image = format!("{reg}/{moving}:latest");
    let rebuilt = wait_for("leaf-a rebuilt on the new base", LONG, || {
        status_in(&fx.path("a.yaml"), "leaf-a")
            .filter(|s| s["phase"] == "Succeeded" && recorded_base(s) == second.digest)
    })
    .await;
    assert_eq!(
        rebuilt["triggeredBy"],
        format!("base: {image}@{}", &second.digest[..19]),
        "{rebuilt:#}"
    );
    assert_eq!(rebuilt["baseImages"][0]["image"], image);
    assert_ne!(rebuilt["buildNumber"], a["buildNumber"]);

    // a few more intervals: the leaf of the unchanged base was never rebuilt
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b_now = status_in(&fx.path("b.yaml"), "leaf-b").unwrap();
    assert_eq!(b_now["buildNumber"], b_build, "{b_now:#}");
    assert_eq!(recorded_base(&b_now), unchanged.digest);
    w.stop();
    let log = w.log();
    assert_eq!(
        log.matches("new version").count(),
        3,
        "each base reported on first sight, the moved one once more: {log}"
    );
}
