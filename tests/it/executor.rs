//! `slipway executor`, the real binary, against a wire-level fake Mesos agent
//! (tests/it/common/mesos_agent.rs), the real Docker daemon and the real registry.

use std::time::{Duration, Instant};

use crate::common::mesos_agent::{AGENT_HOSTNAME, FakeAgent, task_info};
use crate::common::process::{Process, slipway_cmd};
use crate::common::*;
use base64::Engine;
use slipway::mesos::proto::v1::{TaskState, TaskStatus, task_status};
use slipway::mesos::task::{TaskPayload, TaskReport, task_id};
use slipway::runner::BuildEvent;

const LONG: Duration = Duration::from_secs(120);
const MESOS_VARS: &[&str] = &[
    "MESOS_FRAMEWORK_ID",
    "MESOS_EXECUTOR_ID",
    "MESOS_AGENT_ENDPOINT",
    "MESOS_SLAVE_PID",
    "MESOS_CHECKPOINT",
    "MESOS_RECOVERY_TIMEOUT",
    "MESOS_SUBSCRIPTION_BACKOFF_MAX",
    "MESOS_EXECUTOR_AUTHENTICATION_TOKEN",
];

/// `slipway executor` (a [`Process`], stdout and stderr in its log) started as the
/// fake agent would start it, with `extra` variables on top.
fn executor(agent: &FakeAgent, id: &str, extra: &[(&str, &str)]) -> Process {
    let mut cmd = executor_cmd();
    cmd.env("SLIPWAY_LOG", "trace")
        .env("MESOS_FRAMEWORK_ID", "fake-framework")
        .env("MESOS_EXECUTOR_ID", id)
        .env("MESOS_SLAVE_PID", agent.pid())
        .env("MESOS_AGENT_ENDPOINT", agent.addr.to_string())
        .env("MESOS_SUBSCRIPTION_BACKOFF_MAX", "500ms")
        .envs(extra.iter().copied());
    Process::spawn_with_stdout("slipway executor", cmd)
}

/// `slipway executor` with none of the agent's variables from the test host.
fn executor_cmd() -> std::process::Command {
    let mut cmd = slipway_cmd();
    cmd.arg("executor");
    for v in MESOS_VARS {
        cmd.env_remove(v);
    }
    cmd
}

/// A task for `spec`, as the framework would launch it.
fn task(name: &str, spec_yaml: &str, docker_config: Option<String>) -> (String, Vec<u8>) {
    let id = task_id(&format!("test/{name}"), "sha256:0123456789abcdef", 1);
    let payload = TaskPayload {
        staged: None,
        key: format!("test/{name}"),
        spec: spec(spec_yaml),
        docker_config,
        secrets: Default::default(),
    };
    (id, payload.encode())
}

fn inline(dockerfile: &str, repository: &str) -> String {
    format!(
        "source: {{inline: {{dockerfile: {}}}}}\nnoCache: true\noutput: {{registry: '{}', repository: {repository}, tags: [latest, v1]}}",
        serde_json::to_string(dockerfile).unwrap(),
        registry()
    )
}

/// A build of `steps` on the base image as the framework would launch it: task
/// `exec-{what}`, pushing to `slipway-test/executor-{what}`.
async fn build_task(what: &str, steps: &str, docker_config: Option<String>) -> (String, Vec<u8>) {
    let base = ensure_base().await;
    task(
        &format!("exec-{what}"),
        &inline(
            &format!("FROM {base}\n{steps}"),
            &format!("slipway-test/executor-{what}"),
        ),
        docker_config,
    )
}

/// [`build_task`] launched by a fake agent on a started executor.
async fn launched(what: &str, steps: &str) -> (String, FakeAgent, Process) {
    let (id, data) = build_task(what, steps, None).await;
    let agent = FakeAgent::new()
        .launching(task_info(&id, data))
        .start()
        .await;
    let exec = executor(&agent, &id, &[]);
    (id, agent, exec)
}

/// Until the build reports its `RUN sleep 30` step.
async fn the_sleep_step(agent: &FakeAgent) {
    agent
        .wait_update("the sleep step", LONG, |s| {
            s.message().contains("RUN sleep 30")
        })
        .await;
}

fn report(s: &TaskStatus) -> TaskReport {
    TaskReport::decode(s.data.as_deref().expect("update carries data")).expect("a TaskReport")
}

fn uuids(updates: &[TaskStatus]) -> Vec<Vec<u8>> {
    updates.iter().map(|s| s.uuid().to_vec()).collect()
}

#[tokio::test]
async fn a_build_runs_reports_progress_and_finishes_with_the_pushed_digest() {
    let (id, agent, mut exec) = launched("ok", "RUN echo built-by-mesos > /built\n").await;
    let status = exec.exit(LONG).await;
    assert!(status.success(), "{status}; output:\n{}", exec.log());

    let updates = agent.updates();
    let states: Vec<TaskState> = updates.iter().map(|s| s.state()).collect();
    assert_eq!(states[0], TaskState::TaskStarting, "{states:?}");
    assert_eq!(states[1], TaskState::TaskRunning, "{states:?}");
    assert_eq!(
        updates[1].message(),
        format!("building on {AGENT_HOSTNAME}")
    );
    assert_eq!(
        *states.last().unwrap(),
        TaskState::TaskFinished,
        "{states:?}"
    );
    assert!(
        states[1..states.len() - 1]
            .iter()
            .all(|s| *s == TaskState::TaskRunning)
    );
    for s in &updates {
        assert_eq!(s.task_id.value, id);
        assert_eq!(s.source(), task_status::Source::Executor);
        assert_eq!(
            s.executor_id.as_ref().map(|e| e.value.as_str()),
            Some(id.as_str())
        );
        assert_eq!(s.uuid().len(), 16);
        assert!(s.timestamp() > 1.6e9, "timestamp in seconds");
    }
    let mut distinct = uuids(&updates);
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        updates.len(),
        "every update has its own UUID"
    );

    // progress: the steps and the push, never a log line
    let progress: Vec<BuildEvent> = updates[2..updates.len() - 1]
        .iter()
        .map(|s| match report(s) {
            TaskReport::Progress(ev) => ev,
            other => panic!("RUNNING carries {other:?}"),
        })
        .collect();
    assert!(
        progress
            .iter()
            .any(|e| matches!(e, BuildEvent::Step(s) if s.contains("RUN echo built-by-mesos"))),
        "{progress:?}"
    );
    assert!(
        progress
            .iter()
            .any(|e| matches!(e, BuildEvent::Pushing { .. }))
    );
    assert!(
        progress
            .iter()
            .any(|e| matches!(e, BuildEvent::Pushed { .. }))
    );
    assert!(
        !progress
            .iter()
            .any(|e| matches!(e, BuildEvent::Log(_) | BuildEvent::PushProgress { .. })),
        "{progress:?}"
    );

    let last = updates.last().unwrap();
    assert_eq!(last.message(), "pushed 2 tags");
    let TaskReport::Finished { outcome: out, .. } = report(last) else {
        panic!("FINISHED without an outcome")
    };
    assert_eq!(out.pushed_tags.len(), 2);
    assert_pushed(&out).await;
}

#[tokio::test]
async fn a_failing_step_ends_failed_naming_the_step() {
    let (_, agent, mut exec) = launched("fail", "RUN echo about to fail && exit 3\n").await;
    let status = exec.exit(LONG).await;
    assert!(status.success(), "{status}; output:\n{}", exec.log());

    let last = agent.updates().pop().unwrap();
    assert_eq!(last.state(), TaskState::TaskFailed, "{:?}", agent.states());
    let TaskReport::Failed {
        reason, message, ..
    } = report(&last)
    else {
        panic!("FAILED without a failure report")
    };
    assert_eq!(reason, "BuildFailed");
    assert!(
        message.contains("RUN echo about to fail && exit 3"),
        "{message}"
    );
    assert!(
        last.message().starts_with("build failed: "),
        "{}",
        last.message()
    );
    assert!(!agent.states().contains(&TaskState::TaskFinished));
    // the steps went to the framework before the failure, the failed one marked
    let steps = agent
        .updates()
        .iter()
        .filter(|u| u.state() == TaskState::TaskRunning)
        .find_map(|u| match report(u) {
            TaskReport::Progress(BuildEvent::Stages(s)) => Some(s),
            _ => None,
        })
        .expect("a RUNNING update with the steps");
    let failed: Vec<&str> = steps
        .iter()
        .filter(|s| s.failed)
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        failed,
        ["[2/2] RUN echo about to fail && exit 3"],
        "{steps:?}"
    );
}

/// Whether a container running `needle` is still there, polled up to 20 s.
async fn container_left(needle: &str) -> bool {
    let docker = docker().await;
    for _ in 0..100 {
        let all = docker
            .list_containers(Some(bollard::query_parameters::ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .unwrap();
        let left = all
            .iter()
            .any(|c| c.command.as_deref().is_some_and(|cmd| cmd.contains(needle)));
        if !left {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    true
}

#[tokio::test]
async fn kill_stops_a_long_build_and_reports_killed() {
    let (id, agent, mut exec) = launched("kill", "RUN sleep 30 && echo kill-me\n").await;
    the_sleep_step(&agent).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    agent.kill(&id);
    let killed = agent
        .wait_state(TaskState::TaskKilled, Duration::from_secs(10))
        .await;
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(killed.message(), "killed by the framework");
    let status = exec.exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}; output:\n{}", exec.log());
    let states = agent.states();
    assert!(
        !states.contains(&TaskState::TaskFinished) && !states.contains(&TaskState::TaskFailed),
        "{states:?}"
    );
    assert!(
        !container_left("sleep 30 && echo kill-me").await,
        "the build container is still there"
    );
}

#[tokio::test]
async fn shutdown_kills_the_build_and_exits() {
    let (_, agent, mut exec) = launched("shutdown", "RUN sleep 30 && echo shut-me-down\n").await;
    the_sleep_step(&agent).await;
    agent.shutdown();
    let status = exec.exit(Duration::from_secs(6)).await;
    assert!(status.success(), "{status}; output:\n{}", exec.log());
    assert_eq!(agent.states().last(), Some(&TaskState::TaskKilled));
    assert!(
        !container_left("sleep 30 && echo shut-me-down").await,
        "the build container is still there"
    );
}

#[tokio::test]
async fn after_an_agent_restart_unacknowledged_updates_are_handed_over() {
    let (id, data) = build_task("resubscribe", "RUN sleep 4 && echo resubscribed\n", None).await;
    let agent = FakeAgent::new()
        .launching(task_info(&id, data))
        .withhold_acks()
        .start()
        .await;
    let mut exec = executor(&agent, &id, &[("MESOS_CHECKPOINT", "1")]);
    let running = agent
        .wait_update("RUNNING", LONG, |s| s.message().starts_with("building on"))
        .await;
    agent.restart(Duration::from_millis(1500));

    wait_for("a resubscription", Duration::from_secs(20), || {
        (agent.subscribes().len() >= 2).then_some(())
    })
    .await;
    let resub = agent.subscribes().pop().unwrap();
    let carried: Vec<Vec<u8>> = resub
        .unacknowledged_updates
        .iter()
        .map(|u| u.status.uuid().to_vec())
        .collect();
    let starting = agent.updates()[0].clone();
    assert_eq!(starting.state(), TaskState::TaskStarting);
    assert!(
        carried.contains(&starting.uuid().to_vec()),
        "STARTING carried"
    );
    assert!(
        carried.contains(&running.uuid().to_vec()),
        "RUNNING carried"
    );
    assert_eq!(
        resub
            .unacknowledged_tasks
            .iter()
            .map(|t| t.task_id.value.as_str())
            .collect::<Vec<_>>(),
        vec![id.as_str()],
        "the launched task is carried too"
    );
    assert!(agent.subscribes()[0].unacknowledged_updates.is_empty());

    // the build went on through the restart; the executor waits for the last ack
    let finished = agent.wait_state(TaskState::TaskFinished, LONG).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        exec.running(),
        "exited before its terminal update was acknowledged"
    );
    agent.ack_all();
    let status = exec.exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}; output:\n{}", exec.log());

    let states = agent.states();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == TaskState::TaskStarting)
            .count(),
        1,
        "built once: {states:?}"
    );
    let TaskReport::Finished { outcome: out, .. } = report(&finished) else {
        panic!("FINISHED without an outcome")
    };
    assert_pushed(&out).await;
}

#[tokio::test]
async fn a_garbage_payload_fails_the_task_clearly() {
    let id = task_id("test/garbage", "sha256:0123456789abcdef", 1);
    let agent = FakeAgent::new()
        .launching(task_info(&id, b"\xffthis is no build".to_vec()))
        .start()
        .await;
    let mut exec = executor(&agent, &id, &[]);
    let status = exec.exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}; output:\n{}", exec.log());
    assert_eq!(
        agent.states(),
        vec![TaskState::TaskStarting, TaskState::TaskFailed]
    );
    let failed = agent.updates().pop().unwrap();
    assert!(
        failed.message().starts_with("unreadable task data"),
        "{}",
        failed.message()
    );
    let TaskReport::Failed { reason, .. } = report(&failed) else {
        panic!("FAILED without a failure report")
    };
    assert_eq!(reason, "InvalidSpec");
    assert!(!exec.log().contains("panicked"));
}

#[tokio::test]
async fn credentials_and_the_agent_token_never_reach_the_output() {
    let reg = registry();
    let password = "pw-Zq8-never-log-me";
    let token = "tok-never-log-me-7";
    let docker_config =
        serde_json::json!({"auths": {reg.clone(): {"username": "mesos-user", "password": password}}})
            .to_string();
    let (id, data) = build_task("secret", "RUN echo secret-test > /x\n", Some(docker_config)).await;
    // a build secret rides in the same payload
    let build_secret = "bs-never-log-me-9";
    let mut payload = TaskPayload::decode(&data).unwrap();
    payload
        .secrets
        .0
        .insert("npm".into(), build_secret.as_bytes().to_vec());
    let data = payload.encode();
    let agent = FakeAgent::new()
        .launching(task_info(&id, data))
        .start()
        .await;
    let mut exec = executor(
        &agent,
        &id,
        &[("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", token)],
    );
    let status = exec.exit(LONG).await;
    let output = exec.log();
    assert!(status.success(), "{status}; output:\n{output}");
    assert_eq!(agent.states().last(), Some(&TaskState::TaskFinished));
    assert!(output.contains("subscribed"), "logging is on: {output}");

    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("mesos-user:{password}"));
    for secret in [password, token, encoded.as_str(), build_secret] {
        assert!(
            !output.contains(secret),
            "{secret} in the output:\n{output}"
        );
        for s in agent.updates() {
            assert!(!s.message().contains(secret));
            assert!(!String::from_utf8_lossy(s.data()).contains(secret));
        }
    }
    // the token did go where it belongs
    let auth = agent.authorization();
    assert!(!auth.is_empty());
    assert!(
        auth.iter()
            .all(|a| a.as_deref() == Some(format!("Bearer {token}").as_str())),
        "{auth:?}"
    );
}

#[tokio::test]
async fn started_by_hand_it_says_what_is_missing() {
    let mut exec = Process::spawn_with_stdout("slipway executor", executor_cmd());
    let status = exec.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(1));
    let out = exec.log();
    assert!(out.contains("MESOS_FRAMEWORK_ID is not set"), "{out}");
    assert!(out.contains("started by a Mesos agent"), "{out}");
}

#[tokio::test]
async fn without_checkpointing_a_lost_agent_ends_the_executor() {
    let agent = FakeAgent::new().start().await;
    let mut exec = executor(&agent, "no-task", &[]);
    wait_for("the subscription", Duration::from_secs(10), || {
        (!agent.subscribes().is_empty()).then_some(())
    })
    .await;
    agent.restart(Duration::from_secs(1));
    let status = exec.exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(1), "output:\n{}", exec.log());
    let out = exec.log();
    assert!(out.contains("lost the agent"), "{out}");
    assert!(out.contains("does not checkpoint"), "{out}");
    assert_eq!(agent.subscribes().len(), 1, "no resubscription");
}
