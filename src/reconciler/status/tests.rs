use super::*;

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-01T00:01:00Z";

fn outcome() -> BuildOutcome {
    BuildOutcome {
        digest: "sha256:ab".into(),
        image: "r/a@sha256:ab".into(),
        pushed_tags: vec!["r/a:1".into(), "r/a:latest".into()],
        revision: None,
        ..Default::default()
    }
}

#[test]
fn a_build_from_queue_to_success() {
    let q = next(
        None,
        Some("h"),
        None,
        Transition::Queued(Queued::default()),
        T0,
    );
    assert_eq!(q.phase, Some(Phase::Queued));
    assert_eq!(q.conditions[0].status, "Unknown");
    let b = next(
        Some(&q),
        Some("h"),
        None,
        Transition::Started {
            attempt: 1,
            backend: "local",
            remote: false,
        },
        T0,
    );
    assert_eq!(
        (b.phase, b.start_time.as_deref()),
        (Some(Phase::Building), Some(T0))
    );
    let p = next(
        Some(&b),
        Some("h"),
        None,
        Transition::Pushing { tags: 2 },
        T1,
    );
    assert_eq!(p.message.as_deref(), Some("pushing 2 tags"));
    let out = outcome();
    let s = next(Some(&p), Some("h"), None, Transition::Succeeded(&out), T1);
    assert_eq!(s.phase, Some(Phase::Succeeded));
    assert_eq!(s.image_digest.as_deref(), Some("sha256:ab"));
    assert_eq!(s.pushed_tags.len(), 2);
    assert_eq!(s.start_time.as_deref(), Some(T0));
    assert_eq!(s.completion_time.as_deref(), Some(T1));
    let ready = &s.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", Some("Pushed"))
    );
    assert_eq!(ready.last_transition_time.as_deref(), Some(T1));
}

#[test]
fn warnings_join_the_message_and_keep_the_phase() {
    let out = outcome();
    let s = next(None, Some("h"), None, Transition::Succeeded(&out), T0);
    let w = vec!["unknown field \"spec.timeoutSecs\"".to_string()];
    let s = with_warnings(s, &w);
    let want = "pushed 2 tags (warning: unknown field \"spec.timeoutSecs\")";
    assert_eq!(s.phase, Some(Phase::Succeeded));
    assert_eq!(s.message.as_deref(), Some(want));
    assert_eq!(s.conditions[0].message.as_deref(), Some(want));
    assert_eq!(with_warnings(s.clone(), &[]), s);
}

#[test]
fn new_spec_drops_the_old_image() {
    let out = outcome();
    let s = next(None, Some("h1"), None, Transition::Succeeded(&out), T0);
    let q = next(
        Some(&s),
        Some("h2"),
        None,
        Transition::Queued(Queued::default()),
        T1,
    );
    assert_eq!((q.image.as_ref(), q.pushed_tags.len()), (None, 0));
    assert_eq!(q.spec_hash.as_deref(), Some("h2"));
}

#[test]
fn failure_carries_the_error_and_reason() {
    let err = Error::BuildFailed("step 2/2 `RUN exit 3` failed".into());
    let s = next(None, Some("h"), Some(4), Transition::Failed(&err, &[]), T0);
    assert_eq!(s.phase, Some(Phase::Failed));
    assert_eq!(s.observed_generation, Some(4));
    assert!(s.message.as_deref().unwrap().contains("RUN exit 3"));
    assert_eq!(s.conditions[0].reason.as_deref(), Some("BuildFailed"));
    assert_eq!(s.conditions[0].status, "False");
}

#[test]
fn ready_transition_time_moves_only_on_change() {
    let q = next(
        None,
        Some("h"),
        None,
        Transition::Queued(Queued::default()),
        T0,
    );
    let b = next(
        Some(&q),
        Some("h"),
        None,
        Transition::Started {
            attempt: 1,
            backend: "local",
            remote: false,
        },
        T1,
    );
    assert_eq!(b.conditions[0].last_transition_time.as_deref(), Some(T0));
}

#[test]
fn a_mesos_build_stays_queued_until_its_task_runs() {
    let q = next(
        None,
        Some("h"),
        None,
        Transition::Queued(Queued::default()),
        T0,
    );
    let started = Transition::Started {
        attempt: 1,
        backend: "mesos",
        remote: true,
    };
    let s = next(Some(&q), Some("h"), None, started, T0);
    assert_eq!(
        (s.phase, s.start_time.as_deref()),
        (Some(Phase::Queued), None)
    );
    let too_big = "no Mesos offer fits: the build needs 64 CPUs".to_string();
    let s = next(Some(&s), Some("h"), None, Transition::Unplaced(too_big), T0);
    assert_eq!(s.phase, Some(Phase::Queued));
    assert!(s.message.as_deref().unwrap().contains("64 CPUs"));
    let task = MesosTask {
        framework_id: "fw".into(),
        task_id: "t1".into(),
        agent_id: "a1".into(),
        ..Default::default()
    };
    let placed = Transition::Placed {
        host: "agent-7",
        task: &task,
    };
    let s = next(Some(&s), Some("h"), None, placed, T1);
    assert_eq!(s.mesos.as_ref(), Some(&task));
    assert_eq!(
        s.message.as_deref(),
        Some("launched on agent-7 as Mesos task t1")
    );
    // placed by the base layers its daemon holds: the status says so, and keeps it
    let by_layers = MesosTask {
        placement: Some("placed on agent-7: holds 5/6 base layers".into()),
        ..task.clone()
    };
    let placed = Transition::Placed {
        host: "agent-7",
        task: &by_layers,
    };
    let p = next(Some(&s), Some("h"), None, placed, T1);
    assert_eq!(
        p.message.as_deref(),
        Some("placed on agent-7: holds 5/6 base layers; launched as Mesos task t1")
    );
    assert_eq!(
        p.mesos.and_then(|m| m.placement).as_deref(),
        Some("placed on agent-7: holds 5/6 base layers")
    );
    let s = next(
        Some(&s),
        Some("h"),
        None,
        Transition::Running {
            host: "agent-7",
            sandbox: Some("/var/lib/mesos/slaves/a1/runs/r1"),
        },
        T1,
    );
    assert_eq!(
        (s.phase, s.start_time.as_deref()),
        (Some(Phase::Building), Some(T1))
    );
    // the executor said where its sandbox is: status.mesos points at the log there
    let task = MesosTask {
        sandbox: Some("/var/lib/mesos/slaves/a1/runs/r1".into()),
        ..task
    };
    assert_eq!(s.mesos.as_ref(), Some(&task));
    let out = outcome();
    let done = next(Some(&s), Some("h"), None, Transition::Succeeded(&out), T1);
    assert_eq!(
        done.mesos.as_ref(),
        Some(&task),
        "kept: the user can find the task"
    );
    let again = next(
        Some(&done),
        Some("h2"),
        None,
        Transition::Queued(Queued::default()),
        T1,
    );
    assert_eq!(again.mesos, None);
}

#[test]
fn a_failed_build_shows_its_steps_and_a_new_attempt_starts_clean() {
    let steps = vec![
        StageStep {
            name: "[1/2] FROM base".into(),
            cached: true,
            ..Default::default()
        },
        StageStep {
            name: "[2/2] RUN make".into(),
            duration_seconds: Some(1.5),
            failed: true,
            ..Default::default()
        },
    ];
    let started = Transition::Started {
        attempt: 1,
        backend: "local",
        remote: false,
    };
    let b = next(None, Some("h"), None, started, T0);
    let st = next(Some(&b), Some("h"), None, Transition::Stages(&steps), T1);
    // only the steps change: the build is still what it was
    assert_eq!(st.stages, steps);
    assert_eq!((st.phase, &st.message), (b.phase, &b.message));
    assert_eq!(st.conditions, b.conditions);
    let err = Error::BuildFailed("step 2/2 `RUN make` failed".into());
    let f = next(
        Some(&st),
        Some("h"),
        None,
        Transition::Failed(&err, &[]),
        T1,
    );
    assert_eq!((f.phase, f.stages.clone()), (Some(Phase::Failed), steps));
    let again = Transition::Started {
        attempt: 2,
        backend: "local",
        remote: false,
    };
    assert!(next(Some(&f), Some("h"), None, again, T1).stages.is_empty());
    assert!(
        next(
            Some(&f),
            Some("h"),
            None,
            Transition::Queued(Queued::default()),
            T1
        )
        .stages
        .is_empty()
    );
}

#[test]
fn a_success_records_the_outcomes_steps() {
    let mut out = outcome();
    out.stages = vec![StageStep {
        name: "[2/2] RUN make".into(),
        cached: true,
        ..Default::default()
    }];
    let s = next(None, Some("h"), None, Transition::Succeeded(&out), T0);
    assert_eq!(s.stages, out.stages);
}

#[test]
fn a_multi_platform_success_lists_each_platform_and_attestation_until_the_next_build() {
    let mut out = outcome();
    out.platforms = vec![crate::api::PlatformImage {
        platform: "linux/386".into(),
        digest: "sha256:386".into(),
    }];
    out.attestations = vec![crate::api::Attestation {
        predicate_type: "https://slsa.dev/provenance/v0.2".into(),
        digest: "sha256:att".into(),
        platform: Some("linux/386".into()),
    }];
    let s = next(None, Some("h"), None, Transition::Succeeded(&out), T0);
    assert_eq!(s.platforms, out.platforms);
    assert_eq!(s.attestations, out.attestations);
    // a new build of a changed spec does not show the old build's images
    let s = next(
        Some(&s),
        Some("h2"),
        None,
        Transition::Queued(Queued::default()),
        T0,
    );
    assert!(s.platforms.is_empty() && s.attestations.is_empty());
}

fn queued<'a>(cause: &'a Cause, inputs: &'a Inputs, limit: u32) -> Transition<'a> {
    Transition::Queued(Queued {
        cause: Some(cause),
        inputs: Some(inputs),
        rebuild: None,
        history_limit: limit,
    })
}

#[test]
fn each_build_gets_a_number_and_a_history_entry_with_its_outcome() {
    let inputs = Inputs {
        context: Some("sha256:c1".into()),
        ..Default::default()
    };
    let q = next(None, Some("h"), None, queued(&Cause::Spec, &inputs, 0), T0);
    assert_eq!(q.build_number, Some(1));
    assert_eq!(q.triggered_by.as_deref(), Some("spec"));
    assert_eq!(q.context_digest.as_deref(), Some("sha256:c1"));
    let started = Transition::Started {
        attempt: 1,
        backend: "local",
        remote: false,
    };
    let b = next(Some(&q), Some("h"), None, started, T0);
    let done = next(
        Some(&b),
        Some("h"),
        None,
        Transition::Succeeded(&outcome()),
        T1,
    );
    assert_eq!(done.history.len(), 1);
    let e = &done.history[0];
    assert_eq!(
        (e.number, e.trigger.as_deref(), e.phase),
        (1, Some("spec"), Some(Phase::Succeeded))
    );
    assert_eq!(e.digest, done.image_digest);
    assert_eq!(e.start_time.as_deref(), Some(T0));
    assert_eq!(e.completion_time.as_deref(), Some(T1));

    // a context change: build 2, the first entry kept as it was
    let again = next(
        Some(&done),
        Some("h"),
        None,
        queued(&Cause::Context, &inputs, 0),
        T1,
    );
    assert_eq!(again.build_number, Some(2));
    assert_eq!(again.triggered_by.as_deref(), Some("context"));
    assert_eq!(again.history[0].phase, Some(Phase::Succeeded));
    assert_eq!(again.history[1].phase, Some(Phase::Queued));
}

#[test]
fn history_keeps_the_limit_and_survives_a_new_spec() {
    let inputs = Inputs::default();
    let mut s = next(None, Some("h0"), None, queued(&Cause::Spec, &inputs, 3), T0);
    for i in 1..7 {
        s = next(
            Some(&s),
            Some(&format!("h{i}")),
            None,
            queued(&Cause::Spec, &inputs, 3),
            T0,
        );
    }
    assert_eq!(s.build_number, Some(7));
    let numbers: Vec<u64> = s.history.iter().map(|e| e.number).collect();
    assert_eq!(numbers, vec![5, 6, 7]);
}

#[test]
fn a_resumed_build_keeps_its_number_and_reason() {
    let inputs = Inputs::default();
    let q = next(None, Some("h"), None, queued(&Cause::Url, &inputs, 0), T0);
    let resume = Cause::Resume(q.triggered_by.clone());
    let r = next(Some(&q), Some("h"), None, queued(&resume, &inputs, 0), T1);
    assert_eq!(r.build_number, Some(1));
    assert_eq!(r.triggered_by.as_deref(), Some("url"));
    assert_eq!(r.history.len(), 1);
}

#[test]
fn a_failed_build_records_the_commit_it_was_queued_for() {
    let inputs = Inputs {
        commit: Some("abc".into()),
        ..Default::default()
    };
    let q = next(None, Some("h"), None, queued(&Cause::Spec, &inputs, 0), T0);
    let f = next(
        Some(&q),
        Some("h"),
        None,
        Transition::Failed(&Error::BuildFailed("x".into()), &[]),
        T1,
    );
    assert_eq!(f.revision.as_deref(), Some("abc"));
    assert_eq!(f.history[0].phase, Some(Phase::Failed));
}

#[test]
fn a_failed_build_shows_its_log_tail_until_the_next_build() {
    let err = Error::BuildFailed("step 2/2 `RUN make` failed".into());
    let tail = [
        "==> [2/2] RUN make".to_string(),
        "    make: *** no rule".into(),
    ];
    let f = next(None, Some("h"), None, Transition::Failed(&err, &tail), T0);
    assert_eq!(f.log_tail, tail);
    // the message stays the short reason
    assert!(!f.message.as_deref().unwrap().contains("no rule"));
    let q = next(
        Some(&f),
        Some("h"),
        None,
        Transition::Queued(Queued::default()),
        T1,
    );
    assert!(q.log_tail.is_empty());
    let ok = next(
        Some(&f),
        Some("h"),
        None,
        Transition::Succeeded(&outcome()),
        T1,
    );
    assert!(ok.log_tail.is_empty());
}

#[test]
fn a_resumed_build_keeps_its_number_and_a_new_one_takes_the_next() {
    assert_eq!(super::number_for(None, true), 1);
    assert_eq!(super::number_for(None, false), 1);
    assert_eq!(super::number_for(Some(4), true), 5);
    assert_eq!(super::number_for(Some(4), false), 4);
}
