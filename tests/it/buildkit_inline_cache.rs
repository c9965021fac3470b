//! `spec.cache` on the Docker daemon's BuildKit: the image is pushed under the cache
//! ref with inline cache metadata, and a daemon that lost its build cache takes the
//! unchanged steps from the registry. It empties the daemon's build cache, which
//! would disturb tests building beside it: it has the daemon alone (`daemon_alone`).

use crate::common::*;
use bollard::query_parameters::{PruneBuildOptions, RemoveImageOptions};
use slipway::runner::{BuildOutcome, Builder, Runner};

async fn build(fx: &Fixture, spec: slipway::api::DockerBuildSpec) -> BuildOutcome {
    let runner = Runner::connect(None, Builder::BuildkitDaemon)
        .await
        .expect("docker daemon reachable");
    let req = request("test/inline-cache", spec, Some(fx.dir.path().to_path_buf()));
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    runner
        .run(req, tx, Default::default())
        .await
        .expect("the build succeeds")
}

/// The RUN steps as (cached, ran for some time).
fn runs(out: &BuildOutcome) -> Vec<bool> {
    out.stages
        .iter()
        .filter(|s| s.name.contains(" RUN "))
        .map(|s| s.cached)
        .collect()
}

#[tokio::test]
async fn a_daemon_without_its_build_cache_takes_the_steps_from_the_registry_cache() {
    let base = ensure_base().await;
    let _daemon = daemon_alone().await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!("FROM {base}\nRUN echo {marker} > /a && sleep 1\nRUN echo {marker} > /b\n"),
    );
    let cache = format!("{}/slipway-test/inline-cache:buildcache", registry());
    let spec = crate::common::spec(&format!(
        "source: {{path: ctx}}\ncache: {{ref: '{cache}'}}\noutput: {{registry: '{}', repository: slipway-test/inline-cache, tags: ['{marker}']}}",
        registry()
    ));
    let first = build(&fx, spec.clone()).await;
    assert_eq!(runs(&first), [false, false], "{:#?}", first.stages);

    // the cache ref is in the registry
    let (name, tag) = cache.rsplit_once(':').unwrap();
    let (reg, repo) = name.split_once('/').unwrap();
    let http = reqwest::Client::new();
    slipway::registry::manifest_digest(&http, reg, repo, tag, None)
        .await
        .expect("the cache ref was pushed");

    // forget everything this daemon knows about the build: its images and its cache
    let docker = docker().await; // DOCKER_HOST's daemon, the one that built it
    for image in [format!("{name}:{tag}"), first.pushed_tags[0].clone()] {
        docker
            .remove_image(
                &image,
                Some(RemoveImageOptions {
                    force: true,
                    ..Default::default()
                }),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("removing {image}: {e}"));
    }
    docker
        .prune_build(Some(PruneBuildOptions {
            all: Some(true),
            ..Default::default()
        }))
        .await
        .expect("the build cache is emptied");

    let second = build(&fx, spec).await;
    assert_eq!(
        runs(&second),
        [true, true],
        "steps ran again instead of coming from the registry cache: {:#?}",
        second.stages
    );
    // The same layers, from the cache. Not the same digest: a newer BuildKit (Docker
    // 29's) records in the config's inline cache metadata that it imported a cache.
    assert_eq!(
        layers(reg, repo, &second.digest).await,
        layers(reg, repo, &first.digest).await,
        "the same image, from the cache"
    );
}

/// The layer digests of the manifest `repo@digest` in the test registry.
async fn layers(reg: &str, repo: &str, digest: &str) -> Vec<String> {
    let http = reqwest::Client::new();
    let m = slipway::registry::manifest(&http, reg, repo, digest, None)
        .await
        .expect("the registry serves the pushed manifest");
    let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
    let layers: Vec<String> = m["layers"]
        .as_array()
        .expect("a single-platform manifest")
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(!layers.is_empty(), "{m}");
    layers
}
