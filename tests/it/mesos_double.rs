//! `slipway watch --backend mesos` against a wire-level double of a Mesos master and
//! its agents (`tests/it/common/mesos_double.rs`): what a real single-host Mesos here
//! cannot do. Builds still run on the real Docker daemon and push to the real
//! registry; only Mesos is played by the double.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::mesos::{executor_tarball, serve_tarball};
use crate::common::mesos_double::{MesosDouble, MesosDoubleBuilder};
use crate::common::process::{Process, slipway_cmd};
use crate::common::watcher::{doc, indent};
use crate::common::*;
use slipway::mesos::proto::v1::TaskState;
use slipway::mesos::proto::v1::scheduler::call;
use slipway::runner::BuildOutcome;

/// Any single wait; each test as a whole stays well under a minute.
const WAIT: Duration = Duration::from_secs(40);

/// `slipway watch DIR --backend mesos ...`, stopped when dropped.
struct Slipway(Process);

impl Slipway {
    fn start(dir: &Path, masters: &str, extra: &[&str]) -> Self {
        let mut cmd = slipway_cmd();
        cmd.arg("watch")
            .arg(dir)
            .args(["--backend", "mesos", "--mesos-master", masters])
            .args(["--retry-backoff", "200ms"])
            .args(["--concurrency", "3", "--max-attempts", "4"])
            // short filters, unless the test is about them
            .args(if extra.contains(&"--refuse-seconds") {
                &[][..]
            } else {
                &["--refuse-seconds", "1"][..]
            })
            .args(extra);
        Self(Process::spawn("slipway watch", cmd))
    }

    /// With the executor at this binary's own path (the agents are this machine).
    fn start_with_path(dir: &Path, masters: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--executor-path", env!("CARGO_BIN_EXE_slipway")];
        args.extend_from_slice(extra);
        Self::start(dir, masters, &args)
    }

    /// As principal `slipway` with `secret` in a secret file (returned: it lives as
    /// long as the test needs it).
    fn start_as_principal(
        dir: &Path,
        double: &MesosDouble,
        secret: &str,
    ) -> (Self, tempfile::NamedTempFile) {
        let file = secret_file(secret);
        let path = file.path().to_str().unwrap();
        let args = ["--principal", "slipway", "--secret-file", path];
        (Self::start_with_path(dir, &double.master(), &args), file)
    }

    fn log(&self) -> String {
        self.0.log()
    }
}

/// Waits for `check`; on timeout, panics with slipway's log and the doubles' view.
async fn wait_or_report<T>(
    what: &str,
    slipway: &Slipway,
    doubles: &[&MesosDouble],
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > WAIT {
            panic!(
                "{}",
                report(
                    &format!("timed out after {WAIT:?} waiting for {what}"),
                    slipway,
                    doubles
                )
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn report(headline: &str, slipway: &Slipway, doubles: &[&MesosDouble]) -> String {
    let log = slipway.log();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    let doubles: Vec<String> = doubles.iter().map(|d| d.report()).collect();
    format!(
        "{headline}\n--- slipway log (last 80 lines)\n{tail}\n--- doubles\n{}",
        doubles.join("\n")
    )
}

/// The status of `name` once it reaches `phase`; panics at once if it fails instead.
async fn phase(
    file: &Path,
    name: &str,
    want: &str,
    slipway: &Slipway,
    doubles: &[&MesosDouble],
) -> serde_json::Value {
    wait_or_report(&format!("{name} to reach {want}"), slipway, doubles, || {
        let s = status_in(file, name)?;
        if want == "Succeeded" && s["phase"] == "Failed" {
            panic!(
                "{}",
                report(&format!("{name} failed: {s}"), slipway, doubles)
            );
        }
        (s["phase"] == want).then_some(s)
    })
    .await
}

/// The status of `name` once it has succeeded, its push checked as a user would.
async fn pushed(
    file: &Path,
    name: &str,
    slipway: &Slipway,
    doubles: &[&MesosDouble],
) -> serde_json::Value {
    let status = phase(file, name, "Succeeded", slipway, doubles).await;
    assert_status_pushed(&status).await;
    status
}

/// A DockerBuild of an inline Dockerfile that fits one fake agent once: 0.5 CPUs
/// plus the executor's 0.1, on agents of 1 CPU.
fn build(name: &str, repo: &str, dockerfile: &str) -> String {
    let reg = registry();
    doc(
        name,
        &indent(&format!(
            "source: {{inline: {{dockerfile: {dockerfile:?}}}}}\nnoCache: true\nresources: {{cpus: 0.5, memMiB: 128}}\noutput: {{registry: '{reg}', repository: slipway-test/{repo}}}"
        )),
    )
}

/// `FROM scratch` and a label unique to this run: fast, and a fresh digest each time.
fn label_only(name: &str) -> String {
    format!(
        "FROM scratch\nLABEL slipway.test={name} slipway.run={}\n",
        uuid::Uuid::new_v4()
    )
}

/// A fixture with `b.yaml`: build `name` of the base image with a `RUN sleep SECS`
/// step, pushing to `slipway-test/mesos-NAME`.
async fn sleeping(name: &str, secs: u32) -> Fixture {
    let base = ensure_base().await;
    let dockerfile = format!(
        "FROM {base}\nRUN sleep {secs}\n{}",
        label_only(name).replace("FROM scratch\n", "")
    );
    let build = build(name, &format!("mesos-{name}"), &dockerfile);
    Fixture::new().file("b.yaml", &build)
}

/// Until an executor reports the `RUN sleep SECS` step of a [`sleeping`] build.
async fn until_sleeping(secs: u32, slipway: &Slipway, double: &MesosDouble) {
    let step = format!("RUN sleep {secs}");
    wait_or_report("the build to reach RUN sleep", slipway, &[double], || {
        double
            .executor_updates()
            .into_iter()
            .find(|s| s.message().contains(&step))
    })
    .await;
}

/// A double with one agent (`agent-a.test`) that holds three builds at once.
fn one_agent() -> MesosDoubleBuilder {
    MesosDouble::new().agent("agent-a.test", 2.0, 2048.0)
}

/// A fixture with `b.yaml`: a [`label_only`] build `name` pushing to
/// `slipway-test/mesos-NAME`.
fn one_build(name: &str) -> Fixture {
    let build = build(name, &format!("mesos-{name}"), &label_only(name));
    Fixture::new().file("b.yaml", &build)
}

/// What the status says was pushed, checked as a user would: each tag serves the
/// digest, the manifest hashes to it, the daemon built it, it pulls by digest.
async fn assert_status_pushed(status: &serde_json::Value) {
    let out = BuildOutcome {
        digest: status["imageDigest"].as_str().expect("imageDigest").into(),
        image: status["image"].as_str().expect("image").into(),
        pushed_tags: status["pushedTags"]
            .as_array()
            .expect("pushedTags")
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect(),
        revision: None,
        ..Default::default()
    };
    assert!(!out.pushed_tags.is_empty(), "{status}");
    assert_pushed(&out).await;
}

fn assert_clean(double: &MesosDouble) {
    let v = double.violations();
    assert!(v.is_empty(), "protocol violations: {v:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_executor_tarball_is_fetched_unpacked_and_run_from_the_sandbox() {
    let (url, gets, server) = serve_tarball(executor_tarball().await).await;
    let double = one_agent().start().await;
    let fx = one_build("uri");
    let file = fx.path("b.yaml");
    let slipway = Slipway::start(fx.dir.path(), &double.master(), &["--executor-uri", &url]);

    let status = pushed(&file, "uri", &slipway, &[&double]).await;

    let launches = double.launches();
    assert_eq!(launches.len(), 1, "{}", double.report());
    let executor = launches[0].task.executor.as_ref().expect("ExecutorInfo");
    let command = executor.command.as_ref().expect("CommandInfo");
    assert_eq!(command.value(), "./slipway");
    assert!(
        !command.shell(),
        "the executor is exec'd, not run by a shell"
    );
    assert_eq!(
        command.arguments.get(1).map(String::as_str),
        Some("executor")
    );
    assert_eq!(command.uris.len(), 1, "{command:?}");
    assert_eq!(command.uris[0].value, url);
    assert!(command.uris[0].extract(), "{command:?}");

    let fetches = double.fetches();
    assert_eq!(fetches.len(), 1, "{fetches:?}");
    let f = &fetches[0];
    assert_eq!(f.error, None);
    assert_eq!(f.uri, url);
    assert!(f.extracted && f.bytes > 1_000_000, "{f:?}");
    assert!(f.entries.iter().any(|e| e == "slipway"), "{f:?}");
    assert_eq!(gets.load(Ordering::SeqCst), 1);
    // it was the unpacked copy that ran, to the end: its terminal update was
    // acknowledged and it exited cleanly
    let task_id = launches[0].task.task_id.value.clone();
    let code = wait_or_report("the executor to exit", &slipway, &[&double], || {
        double.executor_exits().get(&task_id).copied()
    })
    .await;
    assert_eq!(code, 0, "{}", double.report());
    assert_eq!(status["mesos"]["agentId"], launches[0].agent_id.as_str());
    assert_clean(&double);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn builds_spread_over_agents_when_one_offer_holds_one_build() {
    let double = MesosDouble::new()
        .agent("agent-a.test", 1.0, 2048.0)
        .agent("agent-b.test", 1.0, 2048.0)
        .start()
        .await;
    let names = ["spread-1", "spread-2", "spread-3"];
    let mut fx = Fixture::new();
    for n in names {
        fx = fx.file(
            &format!("{n}.yaml"),
            &build(n, &format!("mesos-{n}"), &label_only(n)),
        );
    }
    let slipway = Slipway::start_with_path(fx.dir.path(), &double.master(), &[]);

    let mut agents = HashSet::new();
    for n in names {
        let s = pushed(&fx.path(&format!("{n}.yaml")), n, &slipway, &[&double]).await;
        agents.insert(s["mesos"]["agentId"].as_str().unwrap().to_string());
    }
    let all: HashSet<String> = double.agents().into_iter().map(|a| a.id).collect();
    assert_eq!(agents, all, "the builds used both agents");
    let launches = double.launches();
    assert_eq!(launches.len(), 3, "{}", double.report());
    let hosts: HashSet<&str> = launches.iter().map(|l| l.hostname.as_str()).collect();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    // an ACCEPT taking more than its offer would be a violation
    assert_clean(&double);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_master_and_a_redirecting_one_lead_to_the_leader() {
    let leader = one_agent().start().await;
    let follower = MesosDouble::new().redirect_to(&leader).start().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let fx = one_build("ha");
    let masters = format!("{closed},{}", follower.master());
    let slipway = Slipway::start_with_path(fx.dir.path(), &masters, &[]);

    pushed(&fx.path("b.yaml"), "ha", &slipway, &[&leader, &follower]).await;

    let followed = follower.calls();
    assert!(!followed.is_empty(), "the follower was never asked");
    for c in &followed {
        assert_eq!(
            c.kind(),
            call::Type::Subscribe,
            "only SUBSCRIBE may reach the follower"
        );
        assert_eq!(c.status, 307);
    }
    let led = leader.call_types();
    assert_eq!(led.first(), Some(&call::Type::Subscribe), "{led:?}");
    for want in [call::Type::Accept, call::Type::Acknowledge] {
        assert!(
            led.contains(&want),
            "{want:?} did not reach the leader: {led:?}"
        );
    }
    assert!(slipway.log().contains("redirected to the leading master"));
    assert_clean(&leader);
    assert_clean(&follower);
}

const SECRET: &str = "s3cret-9f2e71c4";

fn secret_file(secret: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), format!("{secret}\n")).unwrap();
    f
}

/// Neither the secret nor the header that carries it shows in the log.
fn assert_no_secret(slipway: &Slipway, double: &MesosDouble, secret: &str) {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("slipway:{secret}"));
    let log = slipway.log();
    assert!(!log.is_empty());
    assert!(!log.contains(secret), "the secret is in slipway's log");
    assert!(
        !log.contains(&encoded),
        "the Authorization header is in slipway's log"
    );
    assert!(
        !double.executor_logs().contains(secret),
        "the secret reached an executor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn basic_auth_with_the_right_secret_builds() {
    let double = one_agent().basic_auth("slipway", SECRET).start().await;
    let fx = one_build("auth");
    let (slipway, _secret) = Slipway::start_as_principal(fx.dir.path(), &double, SECRET);

    pushed(&fx.path("b.yaml"), "auth", &slipway, &[&double]).await;
    assert_eq!(double.auth_failures(), 0, "{}", double.report());
    let calls = double.calls();
    assert!(calls.iter().all(|c| c.authorization.is_some()));
    let subscribe = calls[0].call.subscribe.as_ref().unwrap();
    assert_eq!(
        subscribe.framework_info.principal.as_deref(),
        Some("slipway")
    );
    assert_eq!(double.launches().len(), 1);
    assert_no_secret(&slipway, &double, SECRET);
    assert_clean(&double);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_secret_is_reported_and_nothing_launches() {
    let double = one_agent().basic_auth("slipway", SECRET).start().await;
    let wrong = "not-the-s3cret-41d0";
    let fx = one_build("noauth");
    let file = fx.path("b.yaml");
    let (slipway, _secret) = Slipway::start_as_principal(fx.dir.path(), &double, wrong);

    let status = wait_or_report("a status saying 401", &slipway, &[&double], || {
        status_in(&file, "noauth").filter(|s| {
            s["message"]
                .as_str()
                .is_some_and(|m| m.contains("not authenticated (401)"))
        })
    })
    .await;
    assert_ne!(status["phase"], "Succeeded");
    // a moment more: still nothing gets through
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = double.calls();
    assert!(!calls.is_empty());
    for c in &calls {
        assert_eq!(c.kind(), call::Type::Subscribe, "{}", double.report());
        assert_eq!(c.status, 401);
    }
    assert_eq!(double.auth_failures(), calls.len());
    assert!(double.launches().is_empty());
    assert_ne!(status_in(&file, "noauth").unwrap()["phase"], "Succeeded");
    assert_no_secret(&slipway, &double, wrong);
    assert_clean(&double);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_on_a_lost_agent_is_relaunched_on_another_and_succeeds() {
    let double = MesosDouble::new()
        .agent("agent-a.test", 1.0, 2048.0)
        .agent("agent-b.test", 1.0, 2048.0)
        .start()
        .await;
    let fx = sleeping("lost", 5).await;
    let file = fx.path("b.yaml");
    let slipway = Slipway::start_with_path(fx.dir.path(), &double.master(), &[]);

    // the first attempt is inside `RUN sleep 5` when its agent goes
    until_sleeping(5, &slipway, &double).await;
    let first = double.launches()[0].clone();
    double.lose_agent(&first.agent_id);

    let status = pushed(&file, "lost", &slipway, &[&double]).await;

    let launches = double.launches();
    assert!(launches.len() >= 2, "{}", double.report());
    let last = launches.last().unwrap();
    assert_ne!(
        last.agent_id, first.agent_id,
        "relaunched on the lost agent"
    );
    assert_eq!(status["mesos"]["agentId"], last.agent_id.as_str());
    assert_ne!(status["mesos"]["taskId"], first.task.task_id.value.as_str());
    assert!(status["attempts"].as_u64().unwrap_or(0) >= 2, "{status}");
    let lost = double
        .framework_updates()
        .into_iter()
        .find(|s| s.task_id == first.task.task_id && s.state() == TaskState::TaskLost);
    assert!(lost.is_some(), "{}", double.report());
    // the lost agent's executor was stopped, the other one ended by itself
    let code = wait_or_report("the second executor to exit", &slipway, &[&double], || {
        double
            .executor_exits()
            .get(&last.task.task_id.value)
            .copied()
    })
    .await;
    assert_eq!(code, 0, "{}", double.report());
    let exits = double.executor_exits();
    assert!(exits.contains_key(&first.task.task_id.value), "{exits:?}");
    assert_clean(&double);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_master_failover_calls_carry_the_new_stream_id() {
    let double = one_agent().start().await;
    let fx = sleeping("failover", 3).await;
    let file = fx.path("b.yaml");
    let slipway = Slipway::start_with_path(fx.dir.path(), &double.master(), &[]);

    until_sleeping(3, &slipway, &double).await;
    let framework_id = double.framework_id().unwrap();
    double.drop_subscription();

    let status = pushed(&file, "failover", &slipway, &[&double]).await;

    let ids = double.stream_ids();
    assert_eq!(ids.len(), 2, "{}", double.report());
    let calls = double.calls();
    let resubscribe = calls
        .iter()
        .rposition(|c| c.kind() == call::Type::Subscribe)
        .unwrap();
    let again = calls[resubscribe].call.subscribe.as_ref().unwrap();
    assert_eq!(
        again.framework_info.id.as_ref().map(|f| f.value.as_str()),
        Some(framework_id.as_str()),
        "resubscribed as the same framework"
    );
    let after = &calls[resubscribe + 1..];
    assert!(
        after.iter().any(|c| c.kind() == call::Type::Acknowledge),
        "{}",
        double.report()
    );
    for c in after {
        assert_eq!(
            c.stream_id.as_deref(),
            Some(ids[1].as_str()),
            "{:?}",
            c.kind()
        );
    }
    // the build was not disturbed: one task, one attempt
    assert_eq!(double.launches().len(), 1);
    assert_eq!(status["attempts"], 1);
    assert_clean(&double);
}

/// The double's checks are not vacuous: driven by hand, it refuses and records
/// what a real master would refuse.
#[tokio::test]
async fn the_double_refuses_what_a_master_would() {
    use futures::StreamExt;
    use prost::Message;
    use slipway::mesos::http::{PROTOBUF, STREAM_ID, events};
    use slipway::mesos::proto::v1::scheduler::{Call, Event, event};
    use slipway::mesos::proto::v1::{
        CommandInfo, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, TaskId, TaskInfo, offer,
    };

    let double = MesosDouble::new()
        .agent("agent-a.test", 1.0, 1024.0)
        .start()
        .await;
    let url = format!("http://{}/api/v1/scheduler", double.master());
    let client = reqwest::Client::new();
    let post = |call: Call, stream: Option<&str>| {
        let mut req = client
            .post(&url)
            .header("content-type", PROTOBUF)
            .body(call.encode_to_vec());
        if let Some(s) = stream {
            req = req.header(STREAM_ID, s);
        }
        req.send()
    };
    let mut subscribe = Call::default();
    subscribe.set_type(call::Type::Subscribe);
    subscribe.subscribe = Some(call::Subscribe {
        framework_info: FrameworkInfo {
            user: "root".into(),
            name: "by-hand".into(),
            roles: vec!["*".into()],
            ..Default::default()
        },
        ..Default::default()
    });
    let resp = post(subscribe, None).await.unwrap();
    assert_eq!(resp.status(), 200);
    let stream_id = resp.headers()[STREAM_ID].to_str().unwrap().to_string();
    let mut events = events::<Event>(resp);
    let first = events.next().await.unwrap().unwrap();
    assert_eq!(first.r#type(), event::Type::Subscribed);
    let framework_id = first.subscribed.unwrap().framework_id;
    let offer = loop {
        let ev = events.next().await.unwrap().unwrap();
        if let Some(o) = ev.offers {
            break o.offers[0].clone();
        }
    };
    assert_eq!(offer.hostname, "agent-a.test");

    // a call without the stream ID
    let mut decline = Call {
        framework_id: Some(framework_id.clone()),
        ..Default::default()
    };
    decline.set_type(call::Type::Decline);
    decline.decline = Some(call::Decline {
        offer_ids: vec![offer.id.clone()],
        filters: None,
    });
    assert_eq!(post(decline, None).await.unwrap().status(), 400);
    assert_eq!(double.violations().len(), 1, "{:?}", double.violations());

    // an ACCEPT that takes twice what the offer holds
    let mut res = offer.resources.clone();
    for r in res.iter_mut() {
        if let Some(s) = r.scalar.as_mut() {
            s.value *= 2.0;
        }
    }
    let task = TaskInfo {
        name: "greedy".into(),
        task_id: TaskId {
            value: "greedy".into(),
        },
        agent_id: offer.agent_id.clone(),
        resources: res,
        executor: Some(ExecutorInfo {
            executor_id: ExecutorId {
                value: "greedy".into(),
            },
            framework_id: Some(FrameworkId {
                value: framework_id.value.clone(),
            }),
            command: Some(CommandInfo {
                value: Some("/bin/true".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut op = offer::Operation {
        launch: Some(offer::operation::Launch {
            task_infos: vec![task],
        }),
        ..Default::default()
    };
    op.set_type(offer::operation::Type::Launch);
    let mut accept = Call {
        framework_id: Some(framework_id),
        ..Default::default()
    };
    accept.set_type(call::Type::Accept);
    accept.accept = Some(call::Accept {
        offer_ids: vec![offer.id.clone()],
        operations: vec![op],
        filters: None,
    });
    assert_eq!(post(accept, Some(&stream_id)).await.unwrap().status(), 202);
    let update = loop {
        let ev = events.next().await.unwrap().unwrap();
        if let Some(u) = ev.update {
            break u.status;
        }
    };
    assert_eq!(update.state(), TaskState::TaskError);
    assert!(double.launches().is_empty());
    let v = double.violations();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].contains("Mesos-Stream-Id"), "{v:?}");
    assert!(v[1].contains("the offer has"), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_task_is_waited_for_and_its_result_accepted() {
    let double = one_agent().start().await;
    let fx = sleeping("partitioned", 4).await;
    let file = fx.path("b.yaml");
    let slipway = Slipway::start_with_path(fx.dir.path(), &double.master(), &[]);

    until_sleeping(4, &slipway, &double).await;
    // the agent is partitioned away for a moment; its executor goes on
    let task = double.launches()[0].task.task_id.value.clone();
    double.report_unreachable(&task);

    let status = pushed(&file, "partitioned", &slipway, &[&double]).await;
    assert_eq!(double.launches().len(), 1, "{}", double.report());
    assert_eq!(status["mesos"]["taskId"], task.as_str());
    assert_eq!(status["attempts"].as_u64().unwrap_or(1), 1, "{status}");
    assert!(
        slipway.log().contains("task unreachable"),
        "{}",
        slipway.log()
    );
    assert_clean(&double);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_missed_heartbeats_make_slipway_subscribe_again() {
    let double = one_agent().heartbeat_seconds(1.0).start().await;
    let fx = Fixture::new();
    let slipway = Slipway::start_with_path(fx.dir.path(), &double.master(), &[]);
    wait_or_report("the first subscription", &slipway, &[&double], || {
        Some(()).filter(|_| double.stream_ids().len() == 1)
    })
    .await;
    double.go_silent();
    let silent = Instant::now();
    wait_or_report("a second subscription", &slipway, &[&double], || {
        Some(()).filter(|_| double.stream_ids().len() >= 2)
    })
    .await;
    // five intervals of silence, not fewer
    assert!(
        silent.elapsed() >= Duration::from_millis(4500),
        "resubscribed after {:?}",
        silent.elapsed()
    );
    assert!(slipway.log().contains("5 missed"), "{}", slipway.log());

    // the new subscription works: a build goes through it
    std::fs::write(
        fx.path("b.yaml"),
        build(
            "after-silence",
            "mesos-after-silence",
            &label_only("after-silence"),
        ),
    )
    .unwrap();
    pushed(&fx.path("b.yaml"), "after-silence", &slipway, &[&double]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unusable_offers_are_refused_for_long_and_new_work_revives_them() {
    let double = one_agent().reoffer(true).start().await;
    let reg = registry();
    let big = doc(
        "big",
        &indent(&format!(
            "source:\n  inline:\n    dockerfile: |\n      FROM scratch\n      LABEL size=big\n\
output: {{registry: '{reg}', repository: slipway-test/mesos-refuse-big}}\nresources: {{cpus: 64, memMiB: 64}}"
        )),
    );
    let fx = Fixture::new().file("big.yaml", &big);
    let slipway = Slipway::start_with_path(
        fx.dir.path(),
        &double.master(),
        &["--refuse-seconds", "120"],
    );
    // the only agent cannot hold the build: its offer is declined for 120 s
    let decline = wait_or_report("a DECLINE", &slipway, &[&double], || {
        double
            .calls()
            .into_iter()
            .find(|c| c.kind() == call::Type::Decline)
    })
    .await;
    let filters = decline.call.decline.as_ref().unwrap().filters;
    assert_eq!(filters.and_then(|f| f.refuse_seconds), Some(120.0));
    let declined_at = double.calls().len();

    // a build that fits arrives: REVIVE clears the filter, and it runs now
    std::fs::write(
        fx.path("small.yaml"),
        build("small", "mesos-refuse-small", &label_only("small")),
    )
    .unwrap();
    pushed(&fx.path("small.yaml"), "small", &slipway, &[&double]).await;
    assert!(
        double.calls()[declined_at..]
            .iter()
            .any(|c| c.kind() == call::Type::Revive),
        "{}",
        double.report()
    );
    assert_clean(&double);
}

/// A second Docker daemon (scripts/dockerd-current.sh: its own data root, exec root,
/// pidfile and socket; no bridge, no iptables), stopped when dropped.
struct SecondDaemon {
    dir: tempfile::TempDir,
    host: String,
}

impl SecondDaemon {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("slipway-d2-")
            .tempdir()
            .unwrap();
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dockerd-current.sh"))
            .args(["start", "--dir"])
            .arg(dir.path())
            .output()
            .expect("run dockerd-current.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "second dockerd starts: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let host = stdout.lines().last().unwrap_or_default().to_string();
        Self { dir, host }
    }
}

impl Drop for SecondDaemon {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dockerd-current.sh"))
            .args(["stop", "--dir"])
            .arg(self.dir.path())
            .output();
    }
}

/// Two agents with a Docker daemon each: `other.test` (offered first) on the test
/// daemon, `holder.test` on a second daemon, the only one that holds the leaf's base
/// (built there, with a file unique to this run). After one build has finished on
/// each (so each has reported what its daemon holds), a leaf on that base goes to
/// the holder, though the other agent's offer comes first; and with the holder busy,
/// the next leaf waits `--locality-wait` for it, then takes the other agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leaf_is_placed_where_its_base_layers_are_and_waits_only_so_long_for_them() {
    let d2 = SecondDaemon::start();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let base = format!("{}/slipway-test/place-base:{run}", registry());
    let on_d2 = slipway::runner::Runner::connect(Some(&d2.host), builder())
        .await
        .expect("second daemon reachable");
    let fx_base = Fixture::new().busybox("busybox").file("marker", &run).file(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY marker /marker\n",
    );
    let base_spec = spec(&format!(
        "source: {{path: .}}\noutput: {{registry: '{}', repository: slipway-test/place-base, tags: ['{run}']}}",
        registry()
    ));
    run_on(
        &on_d2,
        "test/place-base",
        base_spec,
        Some(fx_base.dir.path().into()),
    )
    .await
    .expect("the base builds on the second daemon");

    let double = MesosDouble::new()
        .agent("other.test", 1.0, 2048.0)
        .agent("holder.test", 1.0, 2048.0)
        .agent_env("DOCKER_HOST", &d2.host)
        .start()
        .await;
    let holder = double.agents()[1].id.clone();
    // one warm-up per agent: a build takes 0.6 of an agent's 1 CPU
    let fx = Fixture::new()
        .file("w1.yaml", &build("w1", "place-w1", &label_only("w1")))
        .file("w2.yaml", &build("w2", "place-w2", &label_only("w2")));
    let slipway =
        Slipway::start_with_path(fx.dir.path(), &double.master(), &["--locality-wait", "3s"]);
    let mut warmed = HashSet::new();
    for w in ["w1", "w2"] {
        let s = phase(
            &fx.path(&format!("{w}.yaml")),
            w,
            "Succeeded",
            &slipway,
            &[&double],
        )
        .await;
        warmed.insert(s["mesos"]["agentId"].as_str().unwrap().to_string());
    }
    assert_eq!(warmed.len(), 2, "one warm-up on each agent");

    let leaf = |name: &str| {
        build(
            name,
            &format!("place-{name}"),
            &format!("FROM {base}\nLABEL slipway.test={name} slipway.run={run}\n"),
        )
    };
    std::fs::write(fx.path("leaf.yaml"), leaf("leaf")).unwrap();
    let s = phase(
        &fx.path("leaf.yaml"),
        "leaf",
        "Succeeded",
        &slipway,
        &[&double],
    )
    .await;
    // (built on the second daemon: the test daemon has no copy to compare with)
    assert!(s["imageDigest"].as_str().is_some(), "{s}");
    assert_eq!(s["mesos"]["agentId"], holder.as_str(), "{s}");
    assert_eq!(
        s["mesos"]["placement"], "placed on holder.test: holds 2/2 base layers",
        "{s}"
    );

    // the holder busy: a build on the same base that sleeps there
    let sleeper = build(
        "sleeper",
        "place-sleeper",
        &format!("FROM {base}\nRUN [\"/bin/busybox\", \"sleep\", \"20\"]\n"),
    );
    std::fs::write(fx.path("sleeper.yaml"), sleeper).unwrap();
    let s = phase(
        &fx.path("sleeper.yaml"),
        "sleeper",
        "Building",
        &slipway,
        &[&double],
    )
    .await;
    assert_eq!(s["mesos"]["agentId"], holder.as_str(), "{s}");
    std::fs::write(fx.path("leaf2.yaml"), leaf("leaf2")).unwrap();
    let s = pushed(&fx.path("leaf2.yaml"), "leaf2", &slipway, &[&double]).await;
    assert_ne!(s["mesos"]["agentId"], holder.as_str(), "{s}");
    let why = s["mesos"]["placement"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("placed on other.test: holds ")
            && why.contains("holder.test")
            && why.contains("no fitting offer within 3s"),
        "{s}"
    );
    let sleeper = status_in(&fx.path("sleeper.yaml"), "sleeper").unwrap();
    assert_eq!(
        sleeper["phase"], "Building",
        "leaf2 did not wait for the sleeper"
    );
    assert_clean(&double);
}
