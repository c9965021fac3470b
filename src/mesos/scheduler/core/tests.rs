//! The Core's decisions, driven directly.

use super::super::offers::tests::offer;
use super::*;
use crate::mesos::proto::v1::scheduler::call;
use crate::mesos::proto::v1::{AgentId, TaskId, TaskState, task_status};
use crate::mesos::task::TaskReport;
use crate::runner::BuildOutcome;
use std::time::Duration;
use std::time::Instant;

fn core() -> Core {
    let cfg = CoreConfig {
        settle: Duration::ZERO,
        ..Default::default()
    };
    let mut c = Core::new(cfg, Some("fw-1".into()));
    c.on_subscribed("fw-1".into(), Instant::now());
    c
}

fn build(key: &str, cpus: f64) -> TaskSpec {
    TaskSpec {
        key: key.into(),
        spec_hash: "sha256:00000000000000aa".into(),
        task_id: crate::mesos::task::task_id(key, "sha256:00000000000000aa", 1),
        cpus,
        mem_mib: 100.0,
        payload: b"{}".to_vec(),
        previous: None,
        base_layers: Vec::new(),
    }
}

fn kinds(calls: &[Call]) -> Vec<call::Type> {
    calls.iter().map(|c| c.r#type()).collect()
}

fn status(task_id: &str, state: TaskState, uuid: Option<&[u8]>) -> TaskStatus {
    let mut s = TaskStatus {
        task_id: TaskId {
            value: task_id.into(),
        },
        agent_id: Some(AgentId {
            value: "agent-1".into(),
        }),
        uuid: uuid.map(<[u8]>::to_vec),
        ..Default::default()
    };
    s.set_state(state);
    s
}

fn drain(rx: &mut mpsc::UnboundedReceiver<TaskUpdate>) -> Vec<TaskUpdate> {
    let mut v = Vec::new();
    while let Ok(u) = rx.try_recv() {
        v.push(u);
    }
    v
}

#[test]
fn one_offer_takes_as_many_builds_as_fit_and_the_rest_wait() {
    let mut c = core();
    let mut rxs = Vec::new();
    for i in 0..3 {
        let (tx, rx) = mpsc::unbounded_channel();
        c.launch(build(&format!("ns/b{i}"), 0.9), tx);
        rxs.push(rx);
    }
    // 2 CPUs hold two builds of 0.9 + 0.1 executor, not three
    let calls = c.on_offers(vec![offer("o1", "h1", 2.0, 4096.0, "*")], Instant::now());
    assert_eq!(kinds(&calls), vec![call::Type::Accept]);
    let ops = &calls[0].accept.as_ref().unwrap().operations;
    let tasks = &ops[0].launch.as_ref().unwrap().task_infos;
    assert_eq!(tasks.len(), 2);
    let cpus: f64 = tasks[0]
        .resources
        .iter()
        .filter(|r| r.name == "cpus")
        .map(|r| r.scalar.as_ref().unwrap().value)
        .sum();
    assert_eq!(cpus, 0.9);
    assert_eq!(c.in_flight(), 3);
    assert!(matches!(
        drain(&mut rxs[0]).last(),
        Some(TaskUpdate::Placed(_))
    ));
    // the third is still waiting; a second offer takes it and nothing is left to want
    let calls = c.on_offers(vec![offer("o2", "h2", 1.0, 4096.0, "*")], Instant::now());
    assert_eq!(
        kinds(&calls),
        vec![call::Type::Accept, call::Type::Suppress]
    );
}

#[test]
fn a_build_no_offer_can_hold_is_told_why_and_offers_are_declined() {
    let mut c = core();
    let (tx, mut rx) = mpsc::unbounded_channel();
    c.launch(build("ns/huge", 64.0), tx);
    let calls = c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
    assert_eq!(kinds(&calls), vec![call::Type::Decline]);
    let refuse = calls[0].decline.as_ref().unwrap().filters.as_ref().unwrap();
    // Marathon's 120 s: an offer no build can use stays away
    assert_eq!(refuse.refuse_seconds, Some(120.0));
    let msgs: Vec<String> = drain(&mut rx)
        .into_iter()
        .filter_map(|u| match u {
            TaskUpdate::Waiting(m) => Some(m),
            _ => None,
        })
        .collect();
    let last = msgs.last().unwrap();
    assert!(
        last.contains("64.1 CPUs") && last.contains("4 CPUs"),
        "{last}"
    );
    // the same reason is not repeated on every offer
    c.on_offers(vec![offer("o2", "h1", 4.0, 4096.0, "*")], Instant::now());
    assert!(drain(&mut rx).is_empty());
    // new work clears those filters: it may fit what was declined
    let (tx2, _rx2) = mpsc::unbounded_channel();
    assert_eq!(
        kinds(&c.launch(build("ns/small", 1.0), tx2)),
        vec![call::Type::Revive]
    );
}

#[test]
fn offers_used_and_declined_and_tasks_launched_are_counted() {
    let mut c = core();
    for i in 0..3 {
        let (tx, _rx) = mpsc::unbounded_channel();
        c.launch(build(&format!("ns/b{i}"), 0.9), tx);
    }
    // o1 holds two builds, o2 the third, o3 is left over
    c.on_offers(
        vec![
            offer("o1", "h1", 2.0, 4096.0, "*"),
            offer("o2", "h2", 1.0, 4096.0, "*"),
            offer("o3", "h3", 1.0, 4096.0, "*"),
        ],
        Instant::now(),
    );
    // this core's own metrics: exact, whatever other tests count meanwhile
    let m = &c.cfg.metrics;
    assert_eq!(
        m.sample(r#"slipway_mesos_offers_total{outcome="used"}"#),
        2.0
    );
    assert_eq!(
        m.sample(r#"slipway_mesos_offers_total{outcome="declined"}"#),
        1.0
    );
    assert_eq!(m.sample("slipway_mesos_tasks_launched_total"), 3.0);
}

#[test]
fn idle_suppresses_and_new_work_revives() {
    let mut c = Core::new(CoreConfig::default(), None);
    let calls = c.on_subscribed("fw-9".into(), Instant::now());
    assert_eq!(
        kinds(&calls),
        vec![call::Type::Reconcile, call::Type::Suppress]
    );
    let (tx, _rx) = mpsc::unbounded_channel();
    assert_eq!(
        kinds(&c.launch(build("ns/a", 1.0), tx)),
        vec![call::Type::Revive]
    );
    // within the settle pause offers are not used: reconciliation answers come first
    assert!(c.settling_until().is_some());
    let calls = c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
    assert_eq!(kinds(&calls), vec![call::Type::Decline]);
}

#[test]
fn a_lost_task_is_retryable_and_never_a_build_failure() {
    for state in [
        TaskState::TaskLost,
        TaskState::TaskGone,
        TaskState::TaskDropped,
    ] {
        let mut c = core();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let spec = build("ns/a", 1.0);
        let id = spec.task_id.clone();
        c.launch(spec, tx);
        c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
        let calls = c.on_update(status(&id, state, Some(b"u1")));
        // acknowledged at once: nothing about it needs recording
        assert_eq!(kinds(&calls), vec![call::Type::Acknowledge]);
        let Some(TaskUpdate::Done(Err(e))) = drain(&mut rx).pop() else {
            panic!("no result")
        };
        assert!(e.is_retryable(), "{state:?}: {e}");
        assert_eq!(e.metric_label(), "TaskLost");
    }
}

#[test]
fn a_finished_task_is_acknowledged_only_once_its_status_is_written() {
    let mut c = core();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let spec = build("ns/a", 1.0);
    let id = spec.task_id.clone();
    c.launch(spec, tx);
    c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
    let running = c.on_update(status(&id, TaskState::TaskRunning, Some(b"u1")));
    assert_eq!(kinds(&running), vec![call::Type::Acknowledge]);
    let out = BuildOutcome {
        digest: "sha256:ab".into(),
        image: "r/a@sha256:ab".into(),
        pushed_tags: vec!["r/a:latest".into()],
        revision: None,
        ..Default::default()
    };
    let mut fin = status(&id, TaskState::TaskFinished, Some(b"u2"));
    fin.data = Some(TaskReport::finished(out.clone()).encode());
    assert!(c.on_update(fin).is_empty(), "held until settled");
    let ups = drain(&mut rx);
    assert!(ups.iter().any(|u| matches!(u, TaskUpdate::Started { .. })));
    assert!(matches!(ups.last(), Some(TaskUpdate::Done(Ok(o))) if *o == out));
    let acks = c.settled("ns/a");
    assert_eq!(kinds(&acks), vec![call::Type::Acknowledge]);
    assert_eq!(acks[0].acknowledge.as_ref().unwrap().uuid, b"u2");
    assert!(c.settled("ns/a").is_empty());
}

#[test]
fn a_status_written_while_disconnected_is_acknowledged_after_subscribing_again() {
    let mut c = core();
    let (tx, _rx) = mpsc::unbounded_channel();
    let spec = build("ns/a", 1.0);
    let id = spec.task_id.clone();
    c.launch(spec, tx);
    c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
    let mut fin = status(&id, TaskState::TaskFinished, Some(b"u2"));
    fin.data = Some(TaskReport::finished(BuildOutcome::default()).encode());
    assert!(c.on_update(fin).is_empty(), "held until settled");
    // the master fails over before the status is written
    c.on_disconnected("master gone");
    assert!(
        c.settled("ns/a").is_empty(),
        "no call without a subscription"
    );
    let calls = c.on_subscribed("fw".into(), Instant::now());
    let acks: Vec<_> = calls
        .iter()
        .filter_map(|c| c.acknowledge.as_ref())
        .collect();
    assert_eq!(acks.len(), 1, "{:?}", kinds(&calls));
    assert_eq!(acks[0].uuid, b"u2");
    // once only
    let again = c.on_subscribed("fw".into(), Instant::now());
    assert!(again.iter().all(|c| c.acknowledge.is_none()));
}

#[test]
fn after_a_restart_a_running_task_is_reattached_and_a_gone_one_relaunched() {
    let mut c = Core::new(
        CoreConfig {
            settle: Duration::ZERO,
            ..Default::default()
        },
        Some("fw-1".into()),
    );
    let old = crate::mesos::task::task_id("ns/a", "sha256:00000000000000aa", 7);
    let mut spec = build("ns/a", 1.0);
    spec.previous = Some((old.clone(), "agent-1".into()));
    let (tx, mut rx) = mpsc::unbounded_channel();
    assert!(c.launch(spec.clone(), tx).is_empty(), "not subscribed yet");
    let calls = c.on_subscribed("fw-1".into(), Instant::now());
    let explicit = calls[0].reconcile.as_ref().unwrap();
    assert_eq!(explicit.tasks[0].task_id.value, old);
    // the master says it still runs: no new launch, updates flow to the build
    c.on_update(status(&old, TaskState::TaskRunning, None));
    let ups = drain(&mut rx);
    assert!(
        ups.iter()
            .any(|u| matches!(u, TaskUpdate::Placed(p) if p.task_id == old))
    );
    let calls = c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
    assert!(!kinds(&calls).contains(&call::Type::Accept));

    // a second build whose old task is unknown to the master is launched anew
    let old_b = crate::mesos::task::task_id("ns/b", "sha256:00000000000000aa", 3);
    let mut spec_b = build("ns/b", 1.0);
    spec_b.previous = Some((old_b.clone(), "agent-1".into()));
    let (tx, _rx) = mpsc::unbounded_channel();
    c.launch(spec_b, tx);
    let mut gone = status(&old_b, TaskState::TaskUnknown, None);
    gone.set_reason(task_status::Reason::Reconciliation);
    c.on_update(gone);
    let calls = c.on_offers(vec![offer("o2", "h1", 4.0, 4096.0, "*")], Instant::now());
    assert!(kinds(&calls).contains(&call::Type::Accept));
}

#[test]
fn a_task_the_master_reports_for_a_build_is_claimed_without_a_launch() {
    let mut c = core();
    let running = crate::mesos::task::task_id("ns/a", "sha256:00000000000000aa", 5);
    // implicit reconciliation tells of a task no build has asked for yet
    c.on_update(status(&running, TaskState::TaskRunning, None));
    let (tx, mut rx) = mpsc::unbounded_channel();
    assert!(c.launch(build("ns/a", 1.0), tx).is_empty());
    assert!(matches!(drain(&mut rx).first(), Some(TaskUpdate::Placed(p)) if p.task_id == running));
}

#[test]
fn kill_reaches_a_running_task_and_its_end_is_a_cancellation() {
    let mut c = core();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let spec = build("ns/a", 1.0);
    let id = spec.task_id.clone();
    c.launch(spec, tx);
    c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
    let calls = c.kill("ns/a");
    assert_eq!(kinds(&calls), vec![call::Type::Kill]);
    assert_eq!(calls[0].kill.as_ref().unwrap().task_id.value, id);
    c.on_update(status(&id, TaskState::TaskKilled, Some(b"k")));
    let Some(TaskUpdate::Done(Err(e))) = drain(&mut rx).pop() else {
        panic!()
    };
    assert_eq!(e.metric_label(), "Cancelled");
}

/// One build launched on an offer at `t0`; returns its task ID.
fn launched(c: &mut Core, t0: Instant) -> (String, mpsc::UnboundedReceiver<TaskUpdate>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let spec = build("ns/a", 1.0);
    let id = spec.task_id.clone();
    c.launch(spec, tx);
    let calls = c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], t0);
    assert_eq!(kinds(&calls)[0], call::Type::Accept);
    (id, rx)
}

#[test]
fn a_launch_with_no_update_is_reconciled_then_killed_and_relaunched() {
    let mut c = core();
    c.cfg.launch_timeout = Duration::from_secs(10);
    let t0 = Instant::now();
    let (id, mut rx) = launched(&mut c, t0);
    assert!(c.check_launches(t0 + Duration::from_secs(9)).is_empty());
    let calls = c.check_launches(t0 + Duration::from_secs(10));
    assert_eq!(kinds(&calls), vec![call::Type::Reconcile]);
    let asked = &calls[0].reconcile.as_ref().unwrap().tasks;
    assert_eq!(asked.len(), 1, "explicit, for that task only");
    assert_eq!(asked[0].task_id.value, id);
    // the master's answer (still staging) is not the agent's: the clock runs on
    let mut answer = status(&id, TaskState::TaskStaging, None);
    answer.set_reason(task_status::Reason::Reconciliation);
    c.on_update(answer);
    let calls = c.check_launches(t0 + Duration::from_secs(20));
    assert_eq!(kinds(&calls), vec![call::Type::Kill]);
    assert_eq!(calls[0].kill.as_ref().unwrap().task_id.value, id);
    let Some(TaskUpdate::Done(Err(e))) = drain(&mut rx).pop() else {
        panic!("no result")
    };
    assert!(e.is_retryable(), "relaunched, not failed: {e}");
    assert!(e.to_string().contains("no status update"), "{e}");
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn a_launch_that_answers_is_left_alone() {
    let mut c = core();
    c.cfg.launch_timeout = Duration::from_secs(10);
    let t0 = Instant::now();
    let (id, _rx) = launched(&mut c, t0);
    c.on_update(status(&id, TaskState::TaskStarting, Some(b"u1")));
    assert!(c.check_launches(t0 + Duration::from_secs(60)).is_empty());
}

#[test]
fn an_unreachable_task_is_waited_for_and_accepted_when_it_comes_back() {
    let mut c = core();
    let (id, mut rx) = launched(&mut c, Instant::now());
    c.on_update(status(&id, TaskState::TaskRunning, Some(b"u1")));
    drain(&mut rx);
    let calls = c.on_update(status(&id, TaskState::TaskUnreachable, Some(b"u2")));
    assert_eq!(kinds(&calls), vec![call::Type::Acknowledge]);
    assert!(drain(&mut rx).is_empty(), "the build is not ended");
    assert_eq!(c.in_flight(), 1);
    c.on_update(status(&id, TaskState::TaskRunning, Some(b"u3")));
    let mut done = status(&id, TaskState::TaskFinished, Some(b"u4"));
    done.data = Some(TaskReport::finished(BuildOutcome::default()).encode());
    c.on_update(done);
    assert!(matches!(
        drain(&mut rx).pop(),
        Some(TaskUpdate::Done(Ok(_)))
    ));
}

#[test]
fn an_unreachable_task_that_is_then_gone_is_relaunched() {
    for end in [TaskState::TaskGone, TaskState::TaskLost] {
        let mut c = core();
        let (id, mut rx) = launched(&mut c, Instant::now());
        drain(&mut rx);
        c.on_update(status(&id, TaskState::TaskUnreachable, Some(b"u1")));
        assert!(drain(&mut rx).is_empty());
        c.on_update(status(&id, end, Some(b"u2")));
        let Some(TaskUpdate::Done(Err(e))) = drain(&mut rx).pop() else {
            panic!("no result")
        };
        assert_eq!(e.metric_label(), "TaskLost", "{end:?}: {e}");
    }
}

/// faults.sh (mesos-kill) caught it: slipway killed after the push, the FINISHED update
/// arrives after subscribing again but before the build is resumed. It used to be
/// acknowledged and dropped, the build re-attached to a task that would say nothing
/// more (stuck), and the next restart built it again (a second push).
#[test]
fn a_task_that_ended_before_its_build_resumed_gives_it_the_outcome() {
    let mut c = core();
    let spec = build("ns/a", 1.0);
    let id = spec.task_id.clone();
    // the implicit reconciliation says it runs; then its FINISHED update comes
    assert!(
        c.on_update(status(&id, TaskState::TaskRunning, None))
            .is_empty()
    );
    let out = BuildOutcome {
        digest: "sha256:ab".into(),
        image: "r/a@sha256:ab".into(),
        pushed_tags: vec!["r/a:latest".into()],
        ..Default::default()
    };
    let mut fin = status(&id, TaskState::TaskFinished, Some(b"u2"));
    fin.data = Some(TaskReport::finished(out.clone()).encode());
    assert!(c.on_update(fin).is_empty(), "held until the build has it");
    // the build is resumed: it takes the outcome, nothing is launched again
    let (tx, mut rx) = mpsc::unbounded_channel();
    assert!(c.launch(spec, tx).is_empty());
    let ups = drain(&mut rx);
    assert!(
        matches!(ups.last(), Some(TaskUpdate::Done(Ok(o))) if *o == out),
        "{} updates, the last not the outcome",
        ups.len()
    );
    let calls = c.on_offers(vec![offer("o1", "h1", 4.0, 4096.0, "*")], Instant::now());
    assert!(!kinds(&calls).contains(&call::Type::Accept), "built twice");
    let acks = c.settled("ns/a");
    assert_eq!(kinds(&acks), vec![call::Type::Acknowledge]);
    assert_eq!(acks[0].acknowledge.as_ref().unwrap().uuid, b"u2");
}

mod placement;
