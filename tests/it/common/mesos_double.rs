//! A wire-level double of a Mesos master and its agents, for what a real
//! single-host Mesos cannot do: several agents with different hostnames, a
//! non-leading master that redirects, HTTP basic authentication, an agent lost
//! mid-build, and a fetcher that unpacks `--executor-uri` tarballs.
//!
//! It speaks the real protocols: `POST /api/v1/scheduler` takes protobuf
//! scheduler `Call`s and answers SUBSCRIBE with a RecordIO stream of protobuf
//! `Event`s; `POST /slave(1)/api/v1/executor` is the agent's executor API. On a
//! LAUNCH it acts as the agent: a sandbox directory, the command's URIs fetched
//! (and `.tar.gz`s unpacked) into it, the executor started there with the
//! environment a Mesos agent gives it. Status updates go through a status update
//! manager as a real agent's do: one in flight per task, the next only after the
//! framework acknowledged the previous, and the executor told ACKNOWLEDGED.
//!
//! ```ignore
//! let master = MesosDouble::new().agent("a.test", 1.0, 2048.0).start().await;
//! // slipway watch DIR --backend mesos --mesos-master <master.master()>
//! master.wait_launches(1, Duration::from_secs(30)).await;
//! assert!(master.violations().is_empty());
//! ```
//!
//! What the framework gets wrong (a call without the stream ID, an ACCEPT that
//! takes more than its offer, an acknowledgement of an update never sent, ...)
//! is answered as Mesos would and recorded in [`MesosDouble::violations`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use prost::Message;
use slipway::mesos::proto::v1::executor as exec;
use slipway::mesos::proto::v1::scheduler::{self as sched, call, event};
use slipway::mesos::proto::v1::{
    AgentId, AgentInfo, ContainerId, ExecutorId, FrameworkId, FrameworkInfo, MasterInfo, Offer,
    OfferId, Resource, TaskId, TaskInfo, TaskState, TaskStatus, command_info, offer, resource,
    task_status, value,
};
use slipway::mesos::recordio;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// The role every offer is allocated to (slipway's default role).
pub const ROLE: &str = "*";
/// Mesos's default when a DECLINE or ACCEPT carries no filter.
const DEFAULT_REFUSE: f64 = 5.0;
/// How often the allocator looks for resources to offer (Mesos: 1 s).
const ALLOCATION_INTERVAL: Duration = Duration::from_millis(100);
/// An update not acknowledged within this long is forwarded again (Mesos: 10 s).
const UPDATE_RETRY: Duration = Duration::from_secs(10);

type Sink = mpsc::UnboundedSender<Result<Bytes, Infallible>>;
type Shared = Arc<Mutex<Master>>;

/// One fake agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub id: String,
    pub hostname: String,
    pub cpus: f64,
    pub mem: f64,
    /// Environment its executors get (before the framework's): `DOCKER_HOST` gives
    /// the agent a Docker daemon of its own.
    pub env: Vec<(String, String)>,
}

/// A scheduler call as it arrived, and what the double answered.
#[derive(Clone, Debug)]
pub struct RecordedCall {
    pub call: sched::Call,
    pub stream_id: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
}

impl RecordedCall {
    pub fn kind(&self) -> call::Type {
        self.call.r#type()
    }
}

/// A task the framework launched, and on which agent.
#[derive(Clone, Debug)]
pub struct Launch {
    pub agent_id: String,
    pub hostname: String,
    pub task: TaskInfo,
    pub sandbox: PathBuf,
}

/// One URI the fake fetcher got.
#[derive(Clone, Debug)]
pub struct Fetch {
    pub uri: String,
    pub bytes: u64,
    pub extracted: bool,
    /// Top-level names in the sandbox after the fetch.
    pub entries: Vec<String>,
    pub error: Option<String>,
}

struct AgentState {
    cfg: AgentConfig,
    used_cpus: f64,
    used_mem: f64,
    lost: bool,
    /// An offer of this agent is outstanding.
    offered: bool,
    ever_offered: bool,
    filtered_until: Option<Instant>,
}

struct Offered {
    agent: usize,
    cpus: f64,
    mem: f64,
}

struct Task {
    info: TaskInfo,
    agent: usize,
    executor_id: String,
    /// The latest state, as the agent (and so the master) knows it.
    state: TaskState,
    /// Updates not yet acknowledged by the framework; the front one is in flight
    /// once `sent_at` is set.
    queue: VecDeque<TaskStatus>,
    sent_at: Option<Instant>,
    cpus: f64,
    mem: f64,
    freed: bool,
    kill_requested: bool,
    /// Removed from the master: terminal and acknowledged, or its agent is gone.
    gone: bool,
}

struct Executor {
    task_id: String,
    framework_id: String,
    agent: usize,
    stream: Option<Sink>,
    launched: bool,
    kill: Option<oneshot::Sender<()>>,
    sandbox: PathBuf,
    exit: Option<i32>,
}

struct Master {
    port: u16,
    auth: Option<(String, String)>,
    redirect_to: Option<SocketAddr>,
    heartbeat: f64,
    reoffer: bool,
    framework_id: Option<String>,
    framework_info: Option<FrameworkInfo>,
    /// The current subscription: stream ID and the event sink.
    stream: Option<(String, Sink)>,
    /// The stream stays open but carries nothing (see `MesosDouble::go_silent`).
    silent: bool,
    /// Every stream ID handed out, in order.
    stream_ids: Vec<String>,
    calls: Vec<RecordedCall>,
    events: Vec<sched::Event>,
    exec_calls: Vec<exec::Call>,
    executor_updates: Vec<TaskStatus>,
    violations: Vec<String>,
    auth_failures: usize,
    agents: Vec<AgentState>,
    offers: HashMap<String, Offered>,
    offer_seq: u64,
    suppressed: bool,
    tasks: HashMap<String, Task>,
    acked: HashSet<Vec<u8>>,
    launches: Vec<Launch>,
    fetches: Vec<Fetch>,
    executors: HashMap<String, Executor>,
    sandboxes: Vec<tempfile::TempDir>,
    background: Vec<AbortHandle>,
}

/// What the test sets up before the double starts.
pub struct MesosDoubleBuilder {
    agents: Vec<AgentConfig>,
    auth: Option<(String, String)>,
    redirect_to: Option<SocketAddr>,
    heartbeat: f64,
    reoffer: bool,
}

impl MesosDoubleBuilder {
    /// An agent with this hostname and these resources; its ID is `S<n>-<hostname>`.
    pub fn agent(mut self, hostname: &str, cpus: f64, mem: f64) -> Self {
        let id = format!("double-S{}-{hostname}", self.agents.len());
        self.agents.push(AgentConfig {
            id,
            hostname: hostname.into(),
            cpus,
            mem,
            env: Vec::new(),
        });
        self
    }

    /// An environment variable for the executors of the agent added last.
    pub fn agent_env(mut self, name: &str, value: &str) -> Self {
        if let Some(a) = self.agents.last_mut() {
            a.env.push((name.into(), value.into()));
        }
        self
    }

    /// Every call must carry `Authorization: Basic` with these; 401 otherwise.
    pub fn basic_auth(mut self, principal: &str, secret: &str) -> Self {
        self.auth = Some((principal.into(), secret.into()));
        self
    }

    /// A master that does not lead: every call is answered 307 with a
    /// scheme-relative `Location: //<leader>/api/v1/scheduler`, as Mesos does.
    pub fn redirect_to(mut self, leader: &MesosDouble) -> Self {
        self.redirect_to = Some(leader.addr);
        self
    }

    pub fn heartbeat_seconds(mut self, secs: f64) -> Self {
        self.heartbeat = secs;
        self
    }

    /// Whether resources are offered again once a DECLINE's or ACCEPT's filter
    /// runs out, a REVIVE clears the filters, or a task frees them (on by
    /// default). Off: each agent is offered once, ever.
    pub fn reoffer(mut self, on: bool) -> Self {
        self.reoffer = on;
        self
    }

    pub async fn start(self) -> MesosDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Shared = Arc::new(Mutex::new(Master {
            port: addr.port(),
            auth: self.auth,
            redirect_to: self.redirect_to,
            heartbeat: self.heartbeat,
            reoffer: self.reoffer,
            framework_id: None,
            framework_info: None,
            stream: None,
            silent: false,
            stream_ids: Vec::new(),
            calls: Vec::new(),
            events: Vec::new(),
            exec_calls: Vec::new(),
            executor_updates: Vec::new(),
            violations: Vec::new(),
            auth_failures: 0,
            agents: self
                .agents
                .into_iter()
                .map(|cfg| AgentState {
                    cfg,
                    used_cpus: 0.0,
                    used_mem: 0.0,
                    lost: false,
                    offered: false,
                    ever_offered: false,
                    filtered_until: None,
                })
                .collect(),
            offers: HashMap::new(),
            offer_seq: 0,
            suppressed: false,
            tasks: HashMap::new(),
            acked: HashSet::new(),
            launches: Vec::new(),
            fetches: Vec::new(),
            executors: HashMap::new(),
            sandboxes: Vec::new(),
            background: Vec::new(),
        }));
        let app = Router::new()
            .route("/api/v1/scheduler", post(scheduler_api))
            .route("/slave(1)/api/v1/executor", post(executor_api))
            .route("/api/v1/executor", post(executor_api))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let ticker = {
            let state = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(ALLOCATION_INTERVAL);
                let mut last_heartbeat = Instant::now();
                loop {
                    tick.tick().await;
                    let mut m = state.lock().unwrap();
                    if last_heartbeat.elapsed().as_secs_f64() >= m.heartbeat {
                        last_heartbeat = Instant::now();
                        m.emit(sched_event(event::Type::Heartbeat));
                    }
                    m.retry_updates();
                    m.allocate();
                }
            })
        };
        {
            let mut m = state.lock().unwrap();
            m.background.push(server.abort_handle());
            m.background.push(ticker.abort_handle());
        }
        MesosDouble { addr, state }
    }
}

/// The running double. Dropping it stops serving and kills the executors it started.
pub struct MesosDouble {
    pub addr: SocketAddr,
    state: Shared,
}

impl Drop for MesosDouble {
    fn drop(&mut self) {
        let mut m = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for e in m.executors.values_mut() {
            if let Some(k) = e.kill.take() {
                let _ = k.send(());
            }
        }
        for h in m.background.drain(..) {
            h.abort();
        }
        m.stream = None;
    }
}

impl MesosDouble {
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> MesosDoubleBuilder {
        MesosDoubleBuilder {
            agents: Vec::new(),
            auth: None,
            redirect_to: None,
            heartbeat: 1.0,
            reoffer: true,
        }
    }

    /// `127.0.0.1:PORT`, as `--mesos-master` takes it.
    pub fn master(&self) -> String {
        self.addr.to_string()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Master) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    pub fn agents(&self) -> Vec<AgentConfig> {
        self.with(|m| m.agents.iter().map(|a| a.cfg.clone()).collect())
    }

    /// Every scheduler call received, in order (also those answered 307 or 401).
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.with(|m| m.calls.clone())
    }

    pub fn call_types(&self) -> Vec<call::Type> {
        self.calls().iter().map(RecordedCall::kind).collect()
    }

    /// Every event sent on the framework's streams, in order.
    pub fn events(&self) -> Vec<sched::Event> {
        self.with(|m| m.events.clone())
    }

    /// The UPDATE events sent to the framework.
    pub fn framework_updates(&self) -> Vec<TaskStatus> {
        self.events()
            .into_iter()
            .filter_map(|e| e.update.map(|u| u.status))
            .collect()
    }

    /// Every status update the executors sent, in order.
    pub fn executor_updates(&self) -> Vec<TaskStatus> {
        self.with(|m| m.executor_updates.clone())
    }

    /// What the framework did that a real master would have refused or flagged.
    pub fn violations(&self) -> Vec<String> {
        self.with(|m| m.violations.clone())
    }

    /// Calls answered 401.
    pub fn auth_failures(&self) -> usize {
        self.with(|m| m.auth_failures)
    }

    /// The stream ID of each subscription the double accepted, in order.
    pub fn stream_ids(&self) -> Vec<String> {
        self.with(|m| m.stream_ids.clone())
    }

    /// The framework ID the double gave out (or took from a resubscription).
    pub fn framework_id(&self) -> Option<String> {
        self.with(|m| m.framework_id.clone())
    }

    /// Ends the framework's event stream, as a master failover does; the
    /// framework must subscribe again, and use the new stream ID from then on.
    pub fn drop_subscription(&self) {
        self.with(|m| m.stream = None);
    }

    pub fn launches(&self) -> Vec<Launch> {
        self.with(|m| m.launches.clone())
    }

    pub fn fetches(&self) -> Vec<Fetch> {
        self.with(|m| m.fetches.clone())
    }

    /// Exit codes of the executors that ended, by task ID.
    pub fn executor_exits(&self) -> HashMap<String, i32> {
        self.with(|m| {
            m.executors
                .values()
                .filter_map(|e| Some((e.task_id.clone(), e.exit?)))
                .collect()
        })
    }

    /// The event stream stays open but carries nothing from now on, heartbeats
    /// included (a half-open connection, a stuck proxy), until the framework
    /// subscribes again.
    pub fn go_silent(&self) {
        self.with(|m| m.silent = true);
    }

    /// The master reports `task_id` TASK_UNREACHABLE (its agent partitioned away),
    /// while its executor goes on: its later updates arrive as when the agent
    /// comes back.
    pub fn report_unreachable(&self, task_id: &str) {
        self.with(|m| {
            let agent = m.tasks.get(task_id).map(|t| t.agent);
            let s = m.master_status(
                task_id,
                agent,
                TaskState::TaskUnreachable,
                task_status::Reason::AgentRemoved,
                "Agent is unreachable".into(),
            );
            m.emit_update(s);
        });
    }

    /// The agent is gone, as when the master removes it: its tasks are reported
    /// TASK_LOST (source MASTER, reason AGENT_REMOVED), the framework gets a
    /// FAILURE event for it, its offers are rescinded and it is never offered
    /// again; its executors are killed.
    pub fn lose_agent(&self, agent_id: &str) {
        self.lose_agent_as(
            agent_id,
            TaskState::TaskLost,
            task_status::Reason::AgentRemoved,
        );
    }

    /// [`Self::lose_agent`] with another state for its tasks (a PARTITION_AWARE
    /// framework gets TASK_UNREACHABLE or TASK_GONE from a real master).
    pub fn lose_agent_as(&self, agent_id: &str, state: TaskState, reason: task_status::Reason) {
        self.with(|m| m.lose_agent(agent_id, state, reason));
    }

    /// The executors' stdout and stderr, for a failing test's message.
    pub fn executor_logs(&self) -> String {
        let sandboxes: Vec<(String, PathBuf)> = self.with(|m| {
            m.launches
                .iter()
                .map(|l| (l.task.task_id.value.clone(), l.sandbox.clone()))
                .collect()
        });
        let mut out = String::new();
        for (task, dir) in sandboxes {
            for f in ["stdout", "stderr"] {
                let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
                if !text.trim().is_empty() {
                    out.push_str(&format!("--- executor {f} of {task}\n{text}\n"));
                }
            }
        }
        out
    }

    /// Everything a failing test should print about the double.
    pub fn report(&self) -> String {
        let calls: Vec<String> = self
            .calls()
            .iter()
            .map(|c| format!("{:?}->{}", c.kind(), c.status))
            .collect();
        let updates: Vec<String> = self
            .framework_updates()
            .iter()
            .map(|s| {
                format!(
                    "{}:{:?}:{}",
                    s.task_id.value,
                    s.state(),
                    s.message.as_deref().unwrap_or("")
                )
            })
            .collect();
        format!(
            "double at {}\ncalls: {calls:?}\nupdates to the framework: {updates:#?}\nviolations: {:#?}\nlaunches: {:?}\nexecutor exits: {:?}\n{}",
            self.addr,
            self.violations(),
            self.launches()
                .iter()
                .map(|l| (&l.task.task_id.value, &l.agent_id))
                .collect::<Vec<_>>(),
            self.executor_exits(),
            self.executor_logs()
        )
    }
}

fn sched_event(t: event::Type) -> sched::Event {
    let mut e = sched::Event::default();
    e.set_type(t);
    e
}

fn exec_event(t: exec::event::Type) -> exec::Event {
    let mut e = exec::Event::default();
    e.set_type(t);
    e
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn is_terminal(s: TaskState) -> bool {
    use TaskState::*;
    !matches!(s, TaskStaging | TaskStarting | TaskRunning | TaskKilling)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn scalar(name: &str, v: f64) -> Resource {
    let mut r = Resource {
        name: name.into(),
        scalar: Some(value::Scalar { value: round(v) }),
        allocation_info: Some(resource::AllocationInfo {
            role: Some(ROLE.into()),
        }),
        ..Default::default()
    };
    r.set_type(value::Type::Scalar);
    r
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, msg.into()).into_response()
}

fn stream_response(rx: mpsc::UnboundedReceiver<Result<Bytes, Infallible>>) -> Response {
    let body = Body::from_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .unwrap()
}

impl Master {
    fn violation(&mut self, msg: String) {
        eprintln!("mesos double: violation: {msg}");
        self.violations.push(msg);
    }

    /// Sends an event on the framework's stream (if it has one) and records it.
    fn emit(&mut self, ev: sched::Event) {
        if let Some((_, sink)) = &self.stream
            && !self.silent
            && sink
                .send(Ok(recordio::encode(&ev.encode_to_vec())))
                .is_err()
        {
            self.stream = None;
        }
        if ev.r#type() != event::Type::Heartbeat {
            self.events.push(ev);
        }
    }

    fn emit_update(&mut self, status: TaskStatus) {
        let mut ev = sched_event(event::Type::Update);
        ev.update = Some(event::Update { status });
        self.emit(ev);
    }

    /// A status made by the master (no UUID: not to be acknowledged).
    fn master_status(
        &self,
        task_id: &str,
        agent: Option<usize>,
        state: TaskState,
        reason: task_status::Reason,
        message: String,
    ) -> TaskStatus {
        let mut s = TaskStatus {
            task_id: TaskId {
                value: task_id.into(),
            },
            message: Some(message),
            agent_id: agent.map(|a| AgentId {
                value: self.agents[a].cfg.id.clone(),
            }),
            timestamp: Some(now_secs()),
            ..Default::default()
        };
        s.set_state(state);
        s.set_source(task_status::Source::Master);
        s.set_reason(reason);
        s
    }

    // ---------------------------------------------------------------- scheduler API

    fn scheduler_call(
        &mut self,
        shared: &Shared,
        call: sched::Call,
        headers: &HeaderMap,
    ) -> Response {
        if let Some((principal, secret)) = &self.auth {
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{principal}:{secret}"))
            );
            let got = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if got != Some(want.as_str()) {
                self.auth_failures += 1;
                return Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(header::WWW_AUTHENTICATE, "Basic realm=\"mesos\"")
                    .body(Body::empty())
                    .unwrap();
            }
        }
        if let Some(leader) = self.redirect_to {
            return Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, format!("//{leader}/api/v1/scheduler"))
                .body(Body::empty())
                .unwrap();
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if content_type != "application/x-protobuf" {
            self.violation(format!(
                "{:?} sent with Content-Type '{content_type}'",
                call.r#type()
            ));
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expecting 'Content-Type' of application/json or application/x-protobuf",
            );
        }
        if call.r#type() == call::Type::Subscribe {
            return self.subscribe(call);
        }
        let kind = call.r#type();
        let Some((stream_id, _)) = &self.stream else {
            self.violation(format!("{kind:?} without a subscription"));
            return text(StatusCode::FORBIDDEN, "Framework is not subscribed");
        };
        let sent = headers.get("Mesos-Stream-Id").and_then(|v| v.to_str().ok());
        if sent != Some(stream_id.as_str()) {
            let msg = format!(
                "{kind:?} carried Mesos-Stream-Id {sent:?}, the subscription's is {stream_id}"
            );
            self.violation(msg);
            return text(
                StatusCode::BAD_REQUEST,
                "The stream ID included in this request didn't match the stream ID currently associated with framework ID",
            );
        }
        let fid = call.framework_id.as_ref().map(|f| f.value.as_str());
        if fid != self.framework_id.as_deref() {
            let msg = format!(
                "{kind:?} for framework {fid:?}, subscribed as {:?}",
                self.framework_id
            );
            self.violation(msg);
            return text(
                StatusCode::BAD_REQUEST,
                "Call's framework_id does not match",
            );
        }
        match kind {
            call::Type::Accept => match call.accept {
                Some(a) => self.accept(shared, a),
                None => return self.malformed(kind),
            },
            call::Type::Decline => match call.decline {
                Some(d) => self.decline(d),
                None => return self.malformed(kind),
            },
            call::Type::Revive => {
                self.suppressed = false;
                for a in self.agents.iter_mut() {
                    a.filtered_until = None;
                }
            }
            call::Type::Suppress => self.suppressed = true,
            call::Type::Kill => match call.kill {
                Some(k) => self.kill(k),
                None => return self.malformed(kind),
            },
            call::Type::Acknowledge => match call.acknowledge {
                Some(a) => self.acknowledge(a),
                None => return self.malformed(kind),
            },
            call::Type::Reconcile => match call.reconcile {
                Some(r) => self.reconcile(r),
                None => return self.malformed(kind),
            },
            call::Type::Teardown => {
                for e in self.executors.values_mut() {
                    if let Some(k) = e.kill.take() {
                        let _ = k.send(());
                    }
                }
                self.stream = None;
            }
            _ => {}
        }
        StatusCode::ACCEPTED.into_response()
    }

    fn malformed(&mut self, kind: call::Type) -> Response {
        self.violation(format!("{kind:?} without its message"));
        text(
            StatusCode::BAD_REQUEST,
            format!("Expecting '{kind:?}' to be present"),
        )
    }

    fn subscribe(&mut self, call: sched::Call) -> Response {
        let Some(sub) = call.subscribe else {
            return self.malformed(call::Type::Subscribe);
        };
        let info = sub.framework_info;
        if let (Some(a), Some(b)) = (&call.framework_id, &info.id)
            && a != b
        {
            self.violation(format!(
                "SUBSCRIBE: Call.framework_id {a:?} differs from FrameworkInfo.id {b:?}"
            ));
            return text(
                StatusCode::BAD_REQUEST,
                "'framework_id' differs from 'subscribe.framework_info.id'",
            );
        }
        if let Some((principal, _)) = &self.auth
            && info.principal.as_deref() != Some(principal.as_str())
        {
            let msg = format!(
                "SUBSCRIBE: FrameworkInfo.principal {:?} is not the authenticated principal '{principal}'",
                info.principal
            );
            self.violation(msg.clone());
            return text(StatusCode::FORBIDDEN, msg);
        }
        let framework_id = info
            .id
            .as_ref()
            .map(|f| f.value.clone())
            .or_else(|| self.framework_id.clone())
            .unwrap_or_else(|| format!("{}-0000", uuid::Uuid::new_v4()));
        self.framework_id = Some(framework_id.clone());
        let mut info = info;
        info.id = Some(FrameworkId {
            value: framework_id.clone(),
        });
        self.framework_info = Some(info);

        // a new subscription replaces the old one: its stream ends, its offers go
        let (tx, rx) = mpsc::unbounded_channel();
        let stream_id = uuid::Uuid::new_v4().to_string();
        self.stream = Some((stream_id.clone(), tx));
        self.silent = false;
        self.stream_ids.push(stream_id.clone());
        for o in self.offers.values() {
            self.agents[o.agent].offered = false;
        }
        self.offers.clear();
        for a in self.agents.iter_mut() {
            a.filtered_until = None;
        }
        self.suppressed = sub.suppressed_roles.iter().any(|r| r == ROLE);
        // updates in flight are forwarded again on the new stream
        for t in self.tasks.values_mut() {
            t.sent_at = None;
        }

        let mut ev = sched_event(event::Type::Subscribed);
        ev.subscribed = Some(event::Subscribed {
            framework_id: FrameworkId {
                value: framework_id,
            },
            heartbeat_interval_seconds: Some(self.heartbeat),
            master_info: Some(MasterInfo {
                id: format!("double-master-{}", self.port),
                ip: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
                port: u32::from(self.port),
                hostname: Some("127.0.0.1".into()),
                version: Some("1.11.0".into()),
                ..Default::default()
            }),
        });
        self.emit(ev);
        let ids: Vec<String> = self.tasks.keys().cloned().collect();
        for id in ids {
            self.forward_next(&id);
        }
        let mut resp = stream_response(rx);
        resp.headers_mut()
            .insert("Mesos-Stream-Id", stream_id.parse().unwrap());
        resp
    }

    /// Offers what each agent has free, unless the framework suppressed offers or
    /// a filter keeps the agent away.
    fn allocate(&mut self) {
        if self.stream.is_none() || self.suppressed {
            return;
        }
        let Some(framework_id) = self.framework_id.clone() else {
            return;
        };
        let now = Instant::now();
        let mut offers = Vec::new();
        for i in 0..self.agents.len() {
            let a = &self.agents[i];
            if a.lost
                || a.offered
                || (a.ever_offered && !self.reoffer)
                || a.filtered_until.is_some_and(|t| now < t)
            {
                continue;
            }
            let cpus = round(a.cfg.cpus - a.used_cpus);
            let mem = round(a.cfg.mem - a.used_mem);
            if cpus < 0.01 || mem < 1.0 {
                continue;
            }
            self.offer_seq += 1;
            let id = format!("{framework_id}-O{}", self.offer_seq);
            offers.push(Offer {
                id: OfferId { value: id.clone() },
                framework_id: FrameworkId {
                    value: framework_id.clone(),
                },
                agent_id: AgentId {
                    value: a.cfg.id.clone(),
                },
                hostname: a.cfg.hostname.clone(),
                resources: vec![
                    scalar("cpus", cpus),
                    scalar("mem", mem),
                    scalar("disk", 10240.0),
                ],
                allocation_info: Some(resource::AllocationInfo {
                    role: Some(ROLE.into()),
                }),
                ..Default::default()
            });
            self.offers.insert(
                id,
                Offered {
                    agent: i,
                    cpus,
                    mem,
                },
            );
            let a = &mut self.agents[i];
            a.offered = true;
            a.ever_offered = true;
        }
        if !offers.is_empty() {
            let mut ev = sched_event(event::Type::Offers);
            ev.offers = Some(event::Offers { offers });
            self.emit(ev);
        }
    }

    fn offer_was_made(&self, id: &str) -> bool {
        let Some(fid) = &self.framework_id else {
            return false;
        };
        id.strip_prefix(&format!("{fid}-O"))
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 1 && n <= self.offer_seq)
    }

    fn decline(&mut self, d: call::Decline) {
        let refuse = d
            .filters
            .and_then(|f| f.refuse_seconds)
            .unwrap_or(DEFAULT_REFUSE);
        for id in d.offer_ids {
            match self.offers.remove(&id.value) {
                Some(o) => {
                    let a = &mut self.agents[o.agent];
                    a.offered = false;
                    a.filtered_until =
                        Some(Instant::now() + Duration::from_secs_f64(refuse.max(0.0)));
                }
                None if !self.offer_was_made(&id.value) => {
                    self.violation(format!("DECLINE of offer {} that was never made", id.value));
                }
                None => {}
            }
        }
    }

    fn accept(&mut self, shared: &Shared, a: call::Accept) {
        let refuse = a
            .filters
            .and_then(|f| f.refuse_seconds)
            .unwrap_or(DEFAULT_REFUSE);
        let mut agent: Option<usize> = None;
        let mut valid = !a.offer_ids.is_empty();
        let (mut cpus, mut mem) = (0.0, 0.0);
        for id in &a.offer_ids {
            match self.offers.remove(&id.value) {
                Some(o) => {
                    if agent.is_some_and(|x| x != o.agent) {
                        self.violation("ACCEPT of offers from different agents".into());
                        valid = false;
                    }
                    agent = Some(o.agent);
                    cpus += o.cpus;
                    mem += o.mem;
                    self.agents[o.agent].offered = false;
                }
                None => {
                    if !self.offer_was_made(&id.value) {
                        self.violation(format!("ACCEPT of offer {} that was never made", id.value));
                    }
                    valid = false;
                }
            }
        }
        if let Some(i) = agent {
            // what the operations leave unused stays away for refuse_seconds
            self.agents[i].filtered_until =
                Some(Instant::now() + Duration::from_secs_f64(refuse.max(0.0)));
        }
        for op in a.operations {
            if op.r#type() != offer::operation::Type::Launch {
                self.violation(format!("unexpected operation {:?}", op.r#type()));
                continue;
            }
            for task in op.launch.map(|l| l.task_infos).unwrap_or_default() {
                let id = task.task_id.value.clone();
                let Some(i) = agent.filter(|_| valid) else {
                    let s = self.master_status(
                        &id,
                        None,
                        TaskState::TaskDropped,
                        task_status::Reason::InvalidOffers,
                        "Task launched with invalid offers".into(),
                    );
                    self.emit_update(s);
                    continue;
                };
                match self.validate(&task, i, &mut cpus, &mut mem) {
                    Ok((c, m)) => self.launch(shared, i, task, c, m),
                    Err(msg) => {
                        self.violation(format!("task {id}: {msg}"));
                        let s = self.master_status(
                            &id,
                            Some(i),
                            TaskState::TaskError,
                            task_status::Reason::TaskInvalid,
                            msg,
                        );
                        self.emit_update(s);
                    }
                }
            }
        }
    }

    /// What the master checks of a TaskInfo before it reaches the agent. Returns
    /// the CPUs and memory of the task and its executor, taken from the offer.
    fn validate(
        &self,
        task: &TaskInfo,
        agent: usize,
        cpus: &mut f64,
        mem: &mut f64,
    ) -> Result<(f64, f64), String> {
        let a = &self.agents[agent].cfg;
        if task.agent_id.value != a.id {
            return Err(format!(
                "TaskInfo.agent_id {} is not the offer's agent {}",
                task.agent_id.value, a.id
            ));
        }
        if self.tasks.contains_key(&task.task_id.value) {
            return Err("task ID already in use".into());
        }
        let Some(executor) = &task.executor else {
            return Err("no ExecutorInfo (the double runs custom executors only)".into());
        };
        if task.command.is_some() {
            return Err("both CommandInfo and ExecutorInfo are set".into());
        }
        if self.executors.contains_key(&executor.executor_id.value) {
            return Err(format!(
                "executor ID {} already in use",
                executor.executor_id.value
            ));
        }
        if let Some(f) = &executor.framework_id
            && Some(&f.value) != self.framework_id.as_ref()
        {
            return Err(format!("ExecutorInfo has framework ID {}", f.value));
        }
        if executor
            .command
            .as_ref()
            .and_then(|c| c.value.as_ref())
            .is_none()
        {
            return Err("ExecutorInfo has no command".into());
        }
        let (mut c, mut m) = (0.0, 0.0);
        for r in task.resources.iter().chain(executor.resources.iter()) {
            let role = r.allocation_info.as_ref().and_then(|a| a.role.as_deref());
            if role != Some(ROLE) {
                return Err(format!(
                    "resource {} has allocation role {role:?}, the offer's is '{ROLE}'",
                    r.name
                ));
            }
            let v = r.scalar.as_ref().map(|s| s.value).unwrap_or_default();
            match r.name.as_str() {
                "cpus" => c += v,
                "mem" => m += v,
                _ => {}
            }
        }
        if round(c) > round(*cpus) || round(m) > round(*mem) {
            return Err(format!(
                "task and executor take {c} CPUs and {m} MiB; the offer has {cpus} CPUs and {mem} MiB left"
            ));
        }
        *cpus = round(*cpus - c);
        *mem = round(*mem - m);
        Ok((c, m))
    }

    fn launch(&mut self, shared: &Shared, agent: usize, task: TaskInfo, cpus: f64, mem: f64) {
        let a = &mut self.agents[agent];
        a.used_cpus = round(a.used_cpus + cpus);
        a.used_mem = round(a.used_mem + mem);
        let sandbox = tempfile::Builder::new()
            .prefix("mesos-double-sandbox-")
            .tempdir()
            .unwrap();
        let sandbox_path = sandbox.path().to_path_buf();
        self.sandboxes.push(sandbox);
        let task_id = task.task_id.value.clone();
        let executor_id = task
            .executor
            .as_ref()
            .map(|e| e.executor_id.value.clone())
            .unwrap_or_default();
        self.launches.push(Launch {
            agent_id: self.agents[agent].cfg.id.clone(),
            hostname: self.agents[agent].cfg.hostname.clone(),
            task: task.clone(),
            sandbox: sandbox_path.clone(),
        });
        self.executors.insert(
            executor_id.clone(),
            Executor {
                task_id: task_id.clone(),
                framework_id: self.framework_id.clone().unwrap_or_default(),
                agent,
                stream: None,
                launched: false,
                kill: None,
                sandbox: sandbox_path,
                exit: None,
            },
        );
        self.tasks.insert(
            task_id.clone(),
            Task {
                info: task,
                agent,
                executor_id,
                state: TaskState::TaskStaging,
                queue: VecDeque::new(),
                sent_at: None,
                cpus,
                mem,
                freed: false,
                kill_requested: false,
                gone: false,
            },
        );
        let h = tokio::spawn(run_executor(shared.clone(), task_id));
        self.background.push(h.abort_handle());
    }

    fn free(&mut self, task_id: &str) {
        let Some(t) = self.tasks.get_mut(task_id) else {
            return;
        };
        if t.freed {
            return;
        }
        t.freed = true;
        let a = &mut self.agents[t.agent];
        a.used_cpus = round(a.used_cpus - t.cpus);
        a.used_mem = round(a.used_mem - t.mem);
    }

    fn kill(&mut self, k: call::Kill) {
        let id = k.task_id.value.clone();
        let Some(t) = self.tasks.get_mut(&id).filter(|t| !t.gone) else {
            let s = self.master_status(
                &id,
                None,
                TaskState::TaskUnknown,
                task_status::Reason::Reconciliation,
                "Attempted to kill an unknown task".into(),
            );
            self.emit_update(s);
            return;
        };
        let agent = t.agent;
        t.kill_requested = true;
        let (terminal, executor_id) = (is_terminal(t.state), t.executor_id.clone());
        if let Some(a) = &k.agent_id
            && a.value != self.agents[agent].cfg.id
        {
            self.violation(format!(
                "KILL of {id} names agent {}, the task runs on {}",
                a.value, self.agents[agent].cfg.id
            ));
        }
        if terminal {
            return;
        }
        if let Some(e) = self.executors.get_mut(&executor_id)
            && e.launched
        {
            let mut ev = exec_event(exec::event::Type::Kill);
            ev.kill = Some(exec::event::Kill {
                task_id: TaskId { value: id },
                kill_policy: k.kill_policy,
            });
            send_exec(e, ev);
        }
    }

    fn acknowledge(&mut self, a: call::Acknowledge) {
        let id = a.task_id.value.clone();
        let Some(t) = self.tasks.get_mut(&id) else {
            self.violation(format!(
                "ACKNOWLEDGE for task {id}, which the master never knew"
            ));
            return;
        };
        let agent = t.agent;
        if self.agents[agent].lost {
            // a real master drops acknowledgements for a removed agent
            return;
        }
        let front_matches = t.sent_at.is_some()
            && t.queue.front().and_then(|s| s.uuid.as_deref()) == Some(a.uuid.as_slice());
        if a.agent_id.value != self.agents[agent].cfg.id {
            let msg = format!(
                "ACKNOWLEDGE of {id} names agent {}, the task runs on {}",
                a.agent_id.value, self.agents[agent].cfg.id
            );
            self.violation(msg);
            return;
        }
        if !front_matches {
            if !self.acked.contains(&a.uuid) {
                self.violation(format!(
                    "ACKNOWLEDGE of {id} with uuid {} that was never sent",
                    hex::encode(&a.uuid)
                ));
            }
            return;
        }
        let Some(status) = t.queue.pop_front() else {
            return;
        };
        t.sent_at = None;
        if is_terminal(status.state()) && t.queue.is_empty() {
            t.gone = true;
        }
        let executor_id = t.executor_id.clone();
        self.acked.insert(a.uuid.clone());
        if status.source() == task_status::Source::Executor
            && let Some(e) = self.executors.get_mut(&executor_id)
        {
            let mut ev = exec_event(exec::event::Type::Acknowledged);
            ev.acknowledged = Some(exec::event::Acknowledged {
                task_id: status.task_id.clone(),
                uuid: a.uuid,
            });
            send_exec(e, ev);
        }
        self.forward_next(&id);
    }

    fn reconcile(&mut self, r: call::Reconcile) {
        let statuses: Vec<TaskStatus> = if r.tasks.is_empty() {
            let mut known: Vec<(&String, &Task)> =
                self.tasks.iter().filter(|(_, t)| !t.gone).collect();
            known.sort_by_key(|(id, _)| id.as_str());
            known
                .into_iter()
                .map(|(id, t)| {
                    self.master_status(
                        id,
                        Some(t.agent),
                        t.state,
                        task_status::Reason::Reconciliation,
                        "Reconciliation: Latest task state".into(),
                    )
                })
                .collect()
        } else {
            r.tasks
                .iter()
                .map(|q| {
                    let id = &q.task_id.value;
                    match self.tasks.get(id).filter(|t| !t.gone) {
                        Some(t) => self.master_status(
                            id,
                            Some(t.agent),
                            t.state,
                            task_status::Reason::Reconciliation,
                            "Reconciliation: Latest task state".into(),
                        ),
                        None => self.master_status(
                            id,
                            None,
                            TaskState::TaskUnknown,
                            task_status::Reason::Reconciliation,
                            "Reconciliation: Task is unknown".into(),
                        ),
                    }
                })
                .collect()
        };
        for s in statuses {
            self.emit_update(s);
        }
    }

    // ------------------------------------------------------- status update manager

    /// Forwards the task's oldest unacknowledged update, unless one is in flight.
    fn forward_next(&mut self, task_id: &str) {
        loop {
            let Some(t) = self.tasks.get_mut(task_id) else {
                return;
            };
            if t.sent_at.is_some() || self.agents[t.agent].lost {
                return;
            }
            let Some(front) = t.queue.front().cloned() else {
                return;
            };
            if front.uuid.is_none() {
                t.queue.pop_front();
                self.emit_update(front);
                continue;
            }
            t.sent_at = Some(Instant::now());
            self.emit_update(front);
            return;
        }
    }

    fn retry_updates(&mut self) {
        let due: Vec<String> = self
            .tasks
            .iter_mut()
            .filter(|(_, t)| {
                t.sent_at.is_some_and(|at| at.elapsed() >= UPDATE_RETRY)
                    || (t.sent_at.is_none() && !t.queue.is_empty())
            })
            .map(|(id, t)| {
                t.sent_at = None;
                id.clone()
            })
            .collect();
        for id in due {
            self.forward_next(&id);
        }
    }

    /// An update enters the agent's status update manager.
    fn receive_update(&mut self, mut status: TaskStatus) {
        let id = status.task_id.value.clone();
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        status.agent_id = Some(AgentId {
            value: self.agents[t.agent].cfg.id.clone(),
        });
        t.state = status.state();
        let terminal = is_terminal(t.state);
        t.queue.push_back(status);
        if terminal {
            self.free(&id);
        }
        self.forward_next(&id);
    }

    /// An update the agent itself makes (fetch failed, executor gone): it has a
    /// UUID and is acknowledged like the executor's.
    fn agent_update(
        &mut self,
        task_id: &str,
        state: TaskState,
        reason: task_status::Reason,
        message: String,
    ) {
        let Some(t) = self.tasks.get(task_id) else {
            return;
        };
        let mut s = self.master_status(task_id, Some(t.agent), state, reason, message);
        s.set_source(task_status::Source::Agent);
        s.executor_id = Some(ExecutorId {
            value: t.executor_id.clone(),
        });
        s.uuid = Some(uuid::Uuid::new_v4().as_bytes().to_vec());
        self.receive_update(s);
    }

    fn executor_exited(&mut self, task_id: &str, code: i32) {
        let Some(t) = self.tasks.get(task_id) else {
            return;
        };
        let (agent, executor_id, state) = (t.agent, t.executor_id.clone(), t.state);
        if let Some(e) = self.executors.get_mut(&executor_id) {
            e.exit = Some(code);
            e.stream = None;
            e.kill = None;
        }
        if self.agents[agent].lost {
            return;
        }
        if !is_terminal(state) {
            self.agent_update(
                task_id,
                TaskState::TaskFailed,
                task_status::Reason::ExecutorTerminated,
                format!("Executor terminated with status {code}"),
            );
        }
        self.free(task_id);
        let mut ev = sched_event(event::Type::Failure);
        ev.failure = Some(event::Failure {
            agent_id: Some(AgentId {
                value: self.agents[agent].cfg.id.clone(),
            }),
            executor_id: Some(ExecutorId { value: executor_id }),
            status: Some(code),
        });
        self.emit(ev);
    }

    fn lose_agent(&mut self, agent_id: &str, state: TaskState, reason: task_status::Reason) {
        let Some(i) = self.agents.iter().position(|a| a.cfg.id == agent_id) else {
            panic!("no agent {agent_id} in the double");
        };
        self.agents[i].lost = true;
        let offers: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.agent == i)
            .map(|(id, _)| id.clone())
            .collect();
        for id in offers {
            self.offers.remove(&id);
            let mut ev = sched_event(event::Type::Rescind);
            ev.rescind = Some(event::Rescind {
                offer_id: OfferId { value: id },
            });
            self.emit(ev);
        }
        self.agents[i].offered = false;
        let mut lost: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.agent == i && !t.gone && !is_terminal(t.state))
            .map(|(id, _)| id.clone())
            .collect();
        lost.sort();
        for id in lost {
            if let Some(t) = self.tasks.get_mut(&id) {
                t.queue.clear();
                t.sent_at = None;
                t.state = state;
                t.gone = true;
            }
            self.free(&id);
            let s = self.master_status(
                &id,
                Some(i),
                state,
                reason,
                format!("Agent {agent_id} removed"),
            );
            self.emit_update(s);
        }
        let mut ev = sched_event(event::Type::Failure);
        ev.failure = Some(event::Failure {
            agent_id: Some(AgentId {
                value: agent_id.into(),
            }),
            executor_id: None,
            status: None,
        });
        self.emit(ev);
        for e in self.executors.values_mut().filter(|e| e.agent == i) {
            e.stream = None;
            if let Some(k) = e.kill.take() {
                let _ = k.send(());
            }
        }
    }

    // ---------------------------------------------------------------- executor API

    fn executor_call(&mut self, call: exec::Call) -> Response {
        self.exec_calls.push(call.clone());
        let id = call.executor_id.value.clone();
        let kind = call.r#type();
        let Some(e) = self.executors.get(&id) else {
            self.violation(format!("executor {kind:?} from unknown executor {id}"));
            return text(StatusCode::BAD_REQUEST, format!("Executor {id} not found"));
        };
        if self.agents[e.agent].lost {
            return text(StatusCode::SERVICE_UNAVAILABLE, "agent is gone");
        }
        if call.framework_id.value != e.framework_id {
            let msg = format!(
                "executor {id}: {kind:?} for framework {}, launched for {}",
                call.framework_id.value, e.framework_id
            );
            self.violation(msg);
            return text(StatusCode::BAD_REQUEST, "Framework mismatch");
        }
        match kind {
            exec::call::Type::Subscribe => {
                self.executor_subscribe(&id, call.subscribe.unwrap_or_default())
            }
            exec::call::Type::Update => {
                let Some(status) = call.update.map(|u| u.status) else {
                    self.violation(format!("executor {id}: UPDATE without update"));
                    return text(StatusCode::BAD_REQUEST, "Expecting 'update' to be present");
                };
                let task_id = self.executors[&id].task_id.clone();
                if status.task_id.value != task_id {
                    self.violation(format!(
                        "executor {id} sent an update for task {}, it runs {task_id}",
                        status.task_id.value
                    ));
                    return text(StatusCode::BAD_REQUEST, "Unknown task");
                }
                if status.uuid.is_none() {
                    self.violation(format!("executor {id} sent an update without a uuid"));
                    return text(StatusCode::BAD_REQUEST, "Expecting 'uuid' to be present");
                }
                if status.source() != task_status::Source::Executor {
                    self.violation(format!(
                        "executor {id} sent an update with source {:?}",
                        status.source()
                    ));
                }
                self.executor_updates.push(status.clone());
                self.receive_update(status);
                StatusCode::ACCEPTED.into_response()
            }
            exec::call::Type::Message => StatusCode::ACCEPTED.into_response(),
            exec::call::Type::Unknown => text(StatusCode::BAD_REQUEST, "call type UNKNOWN"),
        }
    }

    fn executor_subscribe(&mut self, id: &str, sub: exec::call::Subscribe) -> Response {
        let (task_id, agent) = {
            let e = &self.executors[id];
            (e.task_id.clone(), e.agent)
        };
        let Some(t) = self.tasks.get(&task_id) else {
            return text(StatusCode::BAD_REQUEST, "no task");
        };
        let (info, kill_requested) = (t.info.clone(), t.kill_requested);
        let a = &self.agents[agent].cfg;
        let mut subscribed = exec_event(exec::event::Type::Subscribed);
        subscribed.subscribed = Some(exec::event::Subscribed {
            executor_info: info.executor.clone().unwrap_or_default(),
            framework_info: self.framework_info.clone().unwrap_or_default(),
            agent_info: AgentInfo {
                hostname: a.hostname.clone(),
                port: Some(i32::from(self.port)),
                id: Some(AgentId {
                    value: a.id.clone(),
                }),
                resources: vec![scalar("cpus", a.cpus), scalar("mem", a.mem)],
                ..Default::default()
            },
            container_id: Some(ContainerId {
                value: uuid::Uuid::new_v4().to_string(),
                parent: None,
            }),
        });
        // what the executor says it sent and the agent never got, it gets now
        let known: HashSet<Vec<u8>> = self
            .executor_updates
            .iter()
            .filter_map(|s| s.uuid.clone())
            .collect();
        let missed: Vec<TaskStatus> = sub
            .unacknowledged_updates
            .into_iter()
            .map(|u| u.status)
            .filter(|s| s.uuid.as_ref().is_some_and(|u| !known.contains(u)))
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let e = self.executors.get_mut(id).unwrap();
        e.stream = Some(tx);
        send_exec(e, subscribed);
        if !e.launched {
            e.launched = true;
            let mut launch = exec_event(exec::event::Type::Launch);
            launch.launch = Some(exec::event::Launch { task: info });
            send_exec(e, launch);
            if kill_requested {
                let mut kill = exec_event(exec::event::Type::Kill);
                kill.kill = Some(exec::event::Kill {
                    task_id: TaskId {
                        value: task_id.clone(),
                    },
                    kill_policy: None,
                });
                send_exec(e, kill);
            }
        }
        for s in missed {
            self.executor_updates.push(s.clone());
            self.receive_update(s);
        }
        stream_response(rx)
    }
}

fn send_exec(e: &mut Executor, ev: exec::Event) {
    if let Some(s) = &e.stream
        && s.send(Ok(recordio::encode(&ev.encode_to_vec()))).is_err()
    {
        e.stream = None;
    }
}

async fn scheduler_api(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let call = match sched::Call::decode(body) {
        Ok(c) => c,
        Err(e) => {
            let mut m = state.lock().unwrap();
            m.violation(format!("undecodable scheduler call: {e}"));
            return text(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse body into Call: {e}"),
            );
        }
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (stream_id, authorization) = (header("Mesos-Stream-Id"), header("authorization"));
    let mut m = state.lock().unwrap();
    let resp = m.scheduler_call(&state, call.clone(), &headers);
    m.calls.push(RecordedCall {
        call,
        stream_id,
        authorization,
        status: resp.status().as_u16(),
    });
    resp
}

async fn executor_api(State(state): State<Shared>, body: Bytes) -> Response {
    match exec::Call::decode(body) {
        Ok(call) => state.lock().unwrap().executor_call(call),
        Err(e) => {
            state
                .lock()
                .unwrap()
                .violation(format!("undecodable executor call: {e}"));
            text(
                StatusCode::BAD_REQUEST,
                format!("Failed to parse body into Call: {e}"),
            )
        }
    }
}

// -------------------------------------------------------------------- the agent

/// What a Mesos agent does for a LAUNCH: fetch the URIs into the sandbox, start
/// the executor there, and report its end.
async fn run_executor(shared: Shared, task_id: String) {
    let (info, sandbox, port, framework_id, agent_id, agent_env) = {
        let m = shared.lock().unwrap();
        let t = &m.tasks[&task_id];
        let e = &m.executors[&t.executor_id];
        (
            t.info.clone(),
            e.sandbox.clone(),
            m.port,
            e.framework_id.clone(),
            m.agents[t.agent].cfg.id.clone(),
            m.agents[t.agent].cfg.env.clone(),
        )
    };
    let executor = info.executor.clone().unwrap_or_default();
    let command = executor.command.clone().unwrap_or_default();
    let fail = |reason: task_status::Reason, msg: String| {
        let mut m = shared.lock().unwrap();
        m.agent_update(&task_id, TaskState::TaskFailed, reason, msg);
    };

    for uri in &command.uris {
        let fetched = fetch(uri, &sandbox).await;
        let error = fetched.as_ref().err().cloned();
        let (bytes, extracted) = fetched.unwrap_or((0, false));
        let entries = list(&sandbox);
        shared.lock().unwrap().fetches.push(Fetch {
            uri: uri.value.clone(),
            bytes,
            extracted,
            entries,
            error: error.clone(),
        });
        if let Some(e) = error {
            return fail(
                task_status::Reason::ContainerLaunchFailed,
                format!("Failed to fetch '{}': {e}", uri.value),
            );
        }
    }
    if executor.container.is_some() {
        return fail(
            task_status::Reason::ContainerLaunchFailed,
            "the double runs executors as plain processes: ContainerInfo is not supported".into(),
        );
    }
    let killed = shared.lock().unwrap().tasks[&task_id].kill_requested;
    if killed {
        let mut m = shared.lock().unwrap();
        m.agent_update(
            &task_id,
            TaskState::TaskKilled,
            task_status::Reason::TaskKilledDuringLaunch,
            "killed before the executor started".into(),
        );
        return;
    }

    let value = command.value.clone().unwrap_or_default();
    let mut cmd = if command.shell() {
        let mut c = tokio::process::Command::new("/bin/sh");
        c.arg("-c").arg(&value);
        c
    } else {
        // execvp after chdir into the sandbox: a relative path with a slash is
        // the sandbox's, a bare name is looked up on PATH
        let program = if value.contains('/') && Path::new(&value).is_relative() {
            sandbox.join(&value)
        } else {
            PathBuf::from(&value)
        };
        let mut c = tokio::process::Command::new(program);
        if let Some(arg0) = command.arguments.first() {
            c.arg0(arg0);
        }
        c.args(command.arguments.iter().skip(1));
        c
    };
    let log = |name: &str| {
        std::fs::File::create(sandbox.join(name))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    };
    cmd.current_dir(&sandbox)
        .stdin(Stdio::null())
        .stdout(log("stdout"))
        .stderr(log("stderr"))
        .kill_on_drop(true)
        .env("MESOS_SLAVE_PID", format!("slave(1)@127.0.0.1:{port}"))
        .env("MESOS_AGENT_ENDPOINT", format!("127.0.0.1:{port}"))
        .env("MESOS_FRAMEWORK_ID", &framework_id)
        .env("MESOS_EXECUTOR_ID", &executor.executor_id.value)
        .env("MESOS_SLAVE_ID", &agent_id)
        .env("MESOS_AGENT_ID", &agent_id)
        .env("MESOS_DIRECTORY", &sandbox)
        .env("MESOS_SANDBOX", &sandbox)
        .env("MESOS_CHECKPOINT", "0")
        .env("MESOS_HTTP_COMMAND_EXECUTOR", "0")
        .env("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", "5secs")
        .envs(agent_env);
    for v in command.environment.iter().flat_map(|e| e.variables.iter()) {
        cmd.env(&v.name, v.value.as_deref().unwrap_or_default());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return fail(
                task_status::Reason::ContainerLaunchFailed,
                format!("Failed to launch the executor '{value}': {e}"),
            );
        }
    };
    let (kill_tx, kill_rx) = oneshot::channel();
    {
        let mut m = shared.lock().unwrap();
        if let Some(e) = m.executors.get_mut(&executor.executor_id.value) {
            e.kill = Some(kill_tx);
        }
    }
    let status = tokio::select! {
        s = child.wait() => s,
        _ = kill_rx => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)
        }),
        Err(_) => -1,
    };
    shared.lock().unwrap().executor_exited(&task_id, code);
}

/// The mesos-fetcher: downloads one URI into the sandbox and unpacks archives.
/// Returns the bytes fetched and whether the file was extracted.
async fn fetch(uri: &command_info::Uri, sandbox: &Path) -> Result<(u64, bool), String> {
    let value = uri.value.as_str();
    let name = uri
        .output_file
        .clone()
        .or_else(|| {
            value
                .split(['?', '#'])
                .next()
                .and_then(|p| p.rsplit('/').next())
                .filter(|n| !n.is_empty())
                .map(str::to_string)
        })
        .ok_or_else(|| format!("no file name in '{value}'"))?;
    let data: Vec<u8> = if value.starts_with("http://") || value.starts_with("https://") {
        let resp = reqwest::get(value).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        resp.bytes().await.map_err(|e| e.to_string())?.to_vec()
    } else {
        let path = value.strip_prefix("file://").unwrap_or(value);
        tokio::fs::read(path)
            .await
            .map_err(|e| format!("{path}: {e}"))?
    };
    let bytes = data.len() as u64;
    let dest = sandbox.join(&name);
    tokio::fs::write(&dest, &data)
        .await
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    if uri.executable() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
    }
    let gz = name.ends_with(".tar.gz") || name.ends_with(".tgz");
    let tar = gz || name.ends_with(".tar");
    if !(uri.extract() && tar) {
        return Ok((bytes, false));
    }
    let dir = sandbox.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let reader: Box<dyn std::io::Read> = if gz {
            Box::new(flate2::read::GzDecoder::new(std::io::Cursor::new(data)))
        } else {
            Box::new(std::io::Cursor::new(data))
        };
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive
            .unpack(&dir)
            .map_err(|e| format!("extracting {name}: {e}"))
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok((bytes, true))
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
