//! The runner on the Docker daemon's embedded BuildKit (`--builder buildkit-daemon`)
//! and on the classic builder, against the real daemon and registry.

use std::time::{Duration, Instant};

use crate::common::buildkit::*;
use crate::common::*;
use slipway::Error;
use slipway::runner::{BuildEvent, BuildOutcome, Builder, Runner};

/// Runs one build on `builder`, returning its result and every event it sent.
async fn run_on(
    builder: Builder,
    fx: &Fixture,
    spec: slipway::api::DockerBuildSpec,
) -> (slipway::Result<BuildOutcome>, Vec<BuildEvent>) {
    let runner = Runner::connect(None, builder)
        .await
        .expect("docker daemon reachable");
    let req = request("test/buildkit", spec, Some(fx.dir.path().to_path_buf()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let collect = tokio::spawn(async move {
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let out = {
        let _daemon = daemon_shared().await;
        runner.run(req, tx, Default::default()).await
    };
    (out, collect.await.unwrap())
}

const SLEEP: u64 = 4;

#[tokio::test]
async fn buildkit_runs_stages_in_parallel_and_skips_unused_ones() {
    let base = ensure_base().await;
    let dockerfile = multi_stage(&base, "multistage", "bk", SLEEP);
    let fx = Fixture::new().file("ctx/Dockerfile", &dockerfile);
    let started = Instant::now();
    let (out, events) = run_on(
        Builder::BuildkitDaemon,
        &fx,
        spec("source: {path: ctx}\nnoCache: true"),
    )
    .await;
    let took = started.elapsed();
    let out = out.expect("multi-stage build succeeds on BuildKit");
    // the directive lines were stripped and still name the target
    assert_eq!(
        out.pushed_tags,
        vec![format!("{}/slipway-test/multistage:bk", registry())]
    );
    assert_pushed(&out).await;
    assert_stages_overlapped(&events, took, SLEEP);
}

#[tokio::test]
async fn run_mount_cache_needs_buildkit_and_says_so_on_classic() {
    let base = ensure_base().await;
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!("FROM {base}\nRUN --mount=type=cache,target=/root/.cache touch /root/.cache/x && echo cached > /out\n"),
    );
    let spec = || {
        crate::common::spec(&format!(
            "source: {{path: ctx}}\noutput: {{registry: '{}', repository: slipway-test/mount}}",
            registry()
        ))
    };
    let (out, _) = run_on(Builder::BuildkitDaemon, &fx, spec()).await;
    assert_pushed(&out.expect("RUN --mount builds on BuildKit")).await;

    let (out, _) = run_on(Builder::Classic, &fx, spec()).await;
    let err = out.unwrap_err();
    assert!(matches!(err, Error::BuildFailed(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("requires BuildKit"), "{msg}");
    assert!(msg.contains("--builder auto or buildkit-daemon"), "{msg}");
}

#[tokio::test]
async fn failing_step_on_buildkit_is_named_with_its_output() {
    let base = ensure_base().await;
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!(
            "FROM {base}\nRUN echo compiling\nRUN echo 'cc: error: no input files' && exit 3\n"
        ),
    );
    let spec = spec(&format!(
        "source: {{path: ctx}}\nnoCache: true\noutput: {{registry: '{}', repository: slipway-test/bk-fails}}",
        registry()
    ));
    let (out, events) = run_on(Builder::BuildkitDaemon, &fx, spec).await;
    assert_failing_step_named(out, &events);
    // the failure's status lists the steps up to the failed one
    let steps = stages_sent(&events);
    let named: Vec<(&str, bool)> = steps
        .iter()
        .filter(|s| s.name.contains("RUN"))
        .map(|s| (s.name.as_str(), s.failed))
        .collect();
    assert_eq!(
        named,
        vec![
            ("[2/3] RUN echo compiling", false),
            ("[3/3] RUN echo 'cc: error: no input files' && exit 3", true),
        ],
        "{steps:#?}"
    );
}

/// The step list the build sent when it ended (what `status.stages` shows).
fn stages_sent(events: &[BuildEvent]) -> Vec<slipway::api::StageStep> {
    let sent: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::Stages(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "one step list per build: {events:#?}");
    sent.into_iter().next().unwrap_or_default()
}

#[tokio::test]
async fn stages_list_each_step_with_its_duration_then_cached_on_a_rebuild() {
    let base = ensure_base().await;
    // the rebuild's cache hits: no emptying of the build cache in between
    let _daemon = daemon_shared().await;
    // new content each run, so the first build really runs its steps
    let marker = uuid::Uuid::new_v4();
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!("FROM {base}\nRUN sleep 1 && echo {marker} > /a\nRUN echo {marker} > /b\n"),
    );
    let spec = || {
        crate::common::spec(&format!(
            "source: {{path: ctx}}\noutput: {{registry: '{}', repository: slipway-test/bk-stages}}",
            registry()
        ))
    };
    let runs = |out: &BuildOutcome| -> Vec<(String, bool, Option<f64>)> {
        out.stages
            .iter()
            .filter(|s| s.name.contains(" RUN "))
            .map(|s| (s.name.clone(), s.cached, s.duration_seconds))
            .collect()
    };
    let (out, events) = run_on(Builder::BuildkitDaemon, &fx, spec()).await;
    let out = out.expect("two-step build succeeds");
    assert_eq!(
        stages_sent(&events),
        out.stages,
        "the event and the outcome agree"
    );
    let first = runs(&out);
    assert_eq!(first.len(), 2, "{:#?}", out.stages);
    assert_eq!(
        first[0].0,
        format!("[2/3] RUN sleep 1 && echo {marker} > /a")
    );
    assert_eq!(first[1].0, format!("[3/3] RUN echo {marker} > /b"));
    assert!(!first[0].1 && !first[1].1, "ran, not cached: {first:?}");
    assert!(
        first[0].2.is_some_and(|d| (1.0..30.0).contains(&d)),
        "the sleep's duration: {first:?}"
    );
    assert!(first[1].2.is_some(), "{first:?}");
    // the FROM step is listed; its name may come from another build sharing the
    // vertex at the same time (BuildKit names a shared vertex once: `[stage-0 1/2]`)
    assert!(
        out.stages
            .iter()
            .any(|s| s.name.contains(&format!("] FROM {base}"))),
        "{:#?}",
        out.stages
    );
    assert!(out.stages.iter().all(|s| !s.failed));

    let (again, _) = run_on(Builder::BuildkitDaemon, &fx, spec()).await;
    let again = again.expect("the rebuild succeeds");
    let second = runs(&again);
    assert_eq!(
        second,
        vec![
            (first[0].0.clone(), true, None),
            (first[1].0.clone(), true, None)
        ],
        "a rebuild takes both steps from the cache"
    );
}

#[tokio::test]
async fn buildkitd_without_an_address_is_refused_clearly() {
    let err = Runner::connect(None, Builder::Buildkitd)
        .await
        .err()
        .expect("buildkitd needs an address");
    assert!(err.to_string().contains("--buildkit-addr"), "{err}");
}

#[tokio::test]
async fn cancelling_a_buildkit_build_stops_its_step_in_the_daemon() {
    let (fx, marker) = sleeping_step().await;
    let req = request(
        "test/bk-cancel",
        spec(&format!(
            "source: {{path: ctx}}\noutput: {{registry: '{}', repository: slipway-test/bk-cancel}}",
            registry()
        )),
        Some(fx.dir.path().to_path_buf()),
    );
    let runner = Runner::connect(None, Builder::BuildkitDaemon)
        .await
        .expect("docker daemon reachable");
    let (out, events, step) =
        cancelled_mid_step(runner, req, &marker, Duration::from_secs(3)).await;
    assert!(matches!(out, Err(Error::Cancelled(_))), "{out:?}");
    // the status still lists the step that was running, without a duration
    let running: Vec<_> = stages_sent(&events)
        .into_iter()
        .filter(|s| s.name.contains("RUN sleep 30"))
        .map(|s| (s.cached, s.duration_seconds, s.failed))
        .collect();
    assert_eq!(running, [(false, None, false)], "{events:#?}");
    // left alone, the step would sleep for 27 s more
    let left = still_running(&step, Duration::from_secs(10)).await;
    assert!(
        left.is_empty(),
        "the daemon kept building after the cancel: {left:?} still run"
    );
}
