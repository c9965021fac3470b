//! What the tests of BuildKit builds share, on the daemon's embedded BuildKit and on
//! a standalone buildkitd alike: a multi-stage Dockerfile, the step lines a build
//! sent, and a build cancelled in the middle of its step.

use std::time::Duration;

use slipway::runner::{BuildEvent, BuildOutcome, BuildRequest, Runner};

use super::*;

/// Two independent stages that each sleep `sleep` seconds, an unused stage that would
/// fail, and a final stage that needs both; directives name `repo` and `tag`.
pub fn multi_stage(base: &str, repo: &str, tag: &str, sleep: u64) -> String {
    format!(
        "REGISTRY {reg}\nREPOSITORY slipway-test/{repo}\nTAG {tag}\n\
FROM {base} AS one\nRUN sleep {sleep} && echo one > /one\n\
FROM {base} AS two\nRUN sleep {sleep} && echo two > /two\n\
FROM {base} AS unused\nRUN echo never-runs && exit 1\n\
FROM {base}\nCOPY --from=one /one /one\nCOPY --from=two /two /two\n",
        reg = registry()
    )
}

/// A [`multi_stage`] build that took `took`: both sleeping stages ran, at once, and
/// the unused one never did.
pub fn assert_stages_overlapped(events: &[BuildEvent], took: Duration, sleep: u64) {
    // one after the other, the two stages alone would take 2 × sleep
    assert!(
        took < Duration::from_secs(2 * sleep),
        "stages did not overlap: {took:?}"
    );
    let lines = lines(events);
    for stage in ["one", "two"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("STEP [{stage} 2/2] RUN sleep"))),
            "{lines:#?}"
        );
    }
    assert!(
        !lines.iter().any(|l| l.contains("never-runs")),
        "the unused stage ran: {lines:#?}"
    );
}

/// The steps (`STEP name`) and log lines a build sent, in order.
pub fn lines(events: &[BuildEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::Step(s) => Some(format!("STEP {s}")),
            BuildEvent::Log(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// A context (`ctx/Dockerfile`) whose one step runs `sleep 30 && touch /MARKER` on the
/// base image, and MARKER: unique, so the step is never cached and its processes are
/// this test's alone.
pub async fn sleeping_step() -> (Fixture, String) {
    let base = ensure_base().await;
    let marker = format!("slipway-cancel-{}", uuid::Uuid::new_v4().simple());
    let fx = Fixture::new().file(
        "ctx/Dockerfile",
        &format!("FROM {base}\nRUN sleep 30 && touch /{marker}\n"),
    );
    (fx, marker)
}

/// Runs `req` (a [`sleeping_step`] build) on `runner` and cancels it `settle` after the
/// step's `sleep 30` started: the build's result, the events it sent, and the step's
/// processes (for [`still_running`]).
pub async fn cancelled_mid_step(
    runner: Runner,
    req: BuildRequest,
    marker: &str,
    settle: Duration,
) -> (
    slipway::Result<BuildOutcome>,
    Vec<BuildEvent>,
    Vec<(u32, String)>,
) {
    let cancel = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let build = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let _daemon = daemon_shared().await;
            runner.run(req, tx, cancel).await
        }
    });
    let step = wait_for("the RUN step to start", Duration::from_secs(60), || {
        let p = processes_with(marker);
        p.iter()
            .any(|(_, c)| c.starts_with("sleep 30"))
            .then_some(p)
    })
    .await;
    tokio::time::sleep(settle).await;
    cancel.cancel();
    let out = build.await.unwrap();
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (out, events, step)
}
