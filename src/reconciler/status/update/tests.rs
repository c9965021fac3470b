use std::time::Duration;

use super::*;
use crate::Error;
use crate::api::{DockerBuildStatus, MesosTask, Phase, StageStep};
use crate::mesos::task::SandboxLog;
use crate::reconciler::status::{Queued, next};
use crate::runner::BuildOutcome;

const T0: &str = "2026-01-01T00:00:00Z";

fn started(attempt: u32) -> Update {
    Update::Started {
        key: "ns/a".into(),
        hash: "h".into(),
        attempt,
    }
}

fn event(event: BuildEvent) -> Update {
    Update::Event {
        key: "ns/a".into(),
        hash: "h".into(),
        event,
    }
}

fn finished(result: crate::Result<BuildOutcome>, log_tail: Vec<String>) -> Update {
    Update::Finished {
        key: "ns/a".into(),
        hash: "h".into(),
        job: 1,
        result,
        log_tail,
    }
}

/// The status a resource shows after each update, from a queued build on.
fn statuses(ups: &[Update], backend: &str, remote: bool) -> Vec<DockerBuildStatus> {
    let t = Transition::Queued(Queued::default());
    let mut s = next(None, Some("h"), None, t, T0);
    let mut out = Vec::new();
    for up in ups {
        if let Some(t) = of_update(up, backend, remote) {
            s = next(Some(&s), Some("h"), None, t, T0);
        }
        out.push(s.clone());
    }
    out
}

fn shown(s: &DockerBuildStatus) -> (Phase, &str) {
    (s.phase.unwrap(), s.message.as_deref().unwrap_or(""))
}

#[test]
fn a_local_build_goes_building_pushing_succeeded() {
    let ups = [
        started(1),
        event(BuildEvent::Building {
            context_bytes: 3 * 1024 * 1024,
            files: 12,
        }),
        event(BuildEvent::Step("Step 2/5 : RUN make".into())),
        event(BuildEvent::Pushing {
            tags: vec!["r/a:1".into(), "r/a:latest".into()],
        }),
        finished(
            Ok(BuildOutcome {
                digest: "sha256:ab".into(),
                image: "r/a@sha256:ab".into(),
                pushed_tags: vec!["r/a:1".into(), "r/a:latest".into()],
                ..Default::default()
            }),
            vec![],
        ),
    ];
    let s = statuses(&ups, "local", false);
    let seen: Vec<_> = s.iter().map(shown).collect();
    assert_eq!(
        seen,
        [
            (Phase::Building, "building on local"),
            (
                Phase::Building,
                "building: sent a context of 12 files, 3.0 MiB"
            ),
            (Phase::Building, "Step 2/5 : RUN make"),
            (Phase::Pushing, "pushing 2 tags"),
            (Phase::Succeeded, "pushed 2 tags"),
        ]
    );
    assert_eq!(s[4].image_digest.as_deref(), Some("sha256:ab"));
}

#[test]
fn log_lines_push_progress_and_single_pushes_leave_the_status_alone() {
    for e in [
        BuildEvent::Log("#5 DONE".into()),
        BuildEvent::PushProgress {
            tag: "r/a:1".into(),
            status: "Pushing".into(),
            current: 1,
            total: 2,
        },
        BuildEvent::Pushed {
            tag: "r/a:1".into(),
            digest: "sha256:ab".into(),
        },
        BuildEvent::Copied(vec!["line".into()]),
    ] {
        assert!(
            of_update(&event(e.clone()), "local", false).is_none(),
            "{e:?}"
        );
    }
}

#[test]
fn a_remote_build_stays_queued_until_it_runs_on_its_host() {
    let task = MesosTask {
        framework_id: "f".into(),
        task_id: "t-1".into(),
        agent_id: "agent-1".into(),
        ..Default::default()
    };
    let ups = [
        started(1),
        event(BuildEvent::Waiting("no offer has 4 cpus".into())),
        event(BuildEvent::Placed {
            host: "node-1".into(),
            task: task.clone(),
        }),
        event(BuildEvent::Running {
            host: "node-1".into(),
            sandbox: Some(SandboxLog {
                agent: "agent-1".into(),
                directory: "/sandbox/t-1".into(),
            }),
        }),
    ];
    let s = statuses(&ups, "mesos", true);
    let seen: Vec<_> = s.iter().map(shown).collect();
    assert_eq!(
        seen,
        [
            (Phase::Queued, "handed to mesos; waiting for resources"),
            (Phase::Queued, "no offer has 4 cpus"),
            (Phase::Queued, "launched on node-1 as Mesos task t-1"),
            (Phase::Building, "building on node-1"),
        ]
    );
    let m = s[3].mesos.as_ref().unwrap();
    assert_eq!(
        (m.task_id.as_str(), m.sandbox.as_deref()),
        ("t-1", Some("/sandbox/t-1"))
    );
}

#[test]
fn a_retry_says_so_and_the_next_attempt_is_numbered() {
    let ups = [
        started(1),
        Update::Retrying {
            key: "ns/a".into(),
            hash: "h".into(),
            attempt: 1,
            max_attempts: 4,
            delay: Duration::from_millis(4500),
            error: "registry: connection refused".into(),
        },
        started(2),
    ];
    let s = statuses(&ups, "local", false);
    assert_eq!(
        shown(&s[1]),
        (
            Phase::Building,
            "attempt 1 of 4 failed, retrying in 5s: registry: connection refused"
        )
    );
    assert_eq!(
        shown(&s[2]),
        (Phase::Building, "building on local (attempt 2)")
    );
    assert_eq!(s[2].attempts, Some(2));
}

#[test]
fn stages_change_only_the_stages() {
    let steps = vec![StageStep {
        name: "[build 1/2] RUN make".into(),
        ..Default::default()
    }];
    let s = statuses(
        &[started(1), event(BuildEvent::Stages(steps))],
        "local",
        false,
    );
    assert_eq!(shown(&s[1]), (Phase::Building, "building on local"));
    assert_eq!(s[1].stages[0].name, "[build 1/2] RUN make");
}

#[test]
fn a_failure_keeps_the_log_tail_and_a_cancellation_is_cancelled() {
    let tail = vec!["make: *** [all] Error 2".to_string()];
    let err = Error::BuildFailed("RUN make: exit code 2".into());
    let s = statuses(
        &[started(1), finished(Err(err), tail.clone())],
        "local",
        false,
    );
    assert_eq!(s[1].phase, Some(Phase::Failed));
    assert!(
        s[1].message.as_deref().unwrap().contains("exit code 2"),
        "{:?}",
        s[1].message
    );
    assert_eq!(s[1].log_tail, tail);
    let err = Error::Cancelled("the spec changed".into());
    let s = statuses(&[started(1), finished(Err(err), vec![])], "local", false);
    assert_eq!(s[1].phase, Some(Phase::Cancelled));
}
