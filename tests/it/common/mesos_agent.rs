//! A wire-level double of a Mesos agent's executor API (`POST /slave(1)/api/v1/executor`,
//! protobuf calls, a RecordIO stream of protobuf events), for testing `slipway
//! executor` where a real agent cannot do what the test needs: withhold
//! acknowledgements, restart on cue, show what a resubscription carried.
//!
//! ```ignore
//! let agent = FakeAgent::new().launching(task_info(&id, payload)).start().await;
//! // MESOS_SLAVE_PID=agent.pid() ...
//! agent.kill(&id);
//! ```

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use slipway::mesos::proto::v1::executor::{Call, Event, call, event};
use slipway::mesos::proto::v1::{
    AgentId, AgentInfo, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, TaskId, TaskInfo,
    TaskState, TaskStatus,
};
use slipway::mesos::recordio;
use tokio::sync::mpsc;

pub const AGENT_HOSTNAME: &str = "fake-agent.test";

type Sink = mpsc::UnboundedSender<Result<Bytes, Infallible>>;

#[derive(Default)]
struct Agent {
    task: Option<TaskInfo>,
    launched: bool,
    withhold_acks: bool,
    /// Restarting: every call is refused.
    down: bool,
    stream: Option<Sink>,
    updates: Vec<TaskStatus>,
    acked: HashSet<Vec<u8>>,
    subscribes: Vec<call::Subscribe>,
    authorization: Vec<Option<String>>,
}

type Shared = Arc<Mutex<Agent>>;

/// What the test sets up before the agent starts.
#[derive(Default)]
pub struct FakeAgentBuilder {
    task: Option<TaskInfo>,
    withhold_acks: bool,
}

impl FakeAgentBuilder {
    /// The task sent in LAUNCH right after the first SUBSCRIBED.
    pub fn launching(mut self, task: TaskInfo) -> Self {
        self.task = Some(task);
        self
    }

    /// Receive updates but acknowledge none until told ([`FakeAgent::ack_all`]).
    pub fn withhold_acks(mut self) -> Self {
        self.withhold_acks = true;
        self
    }

    pub async fn start(self) -> FakeAgent {
        let state: Shared = Arc::new(Mutex::new(Agent {
            task: self.task,
            withhold_acks: self.withhold_acks,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/slave(1)/api/v1/executor", post(executor_api))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAgent {
            addr,
            state,
            server,
        }
    }
}

/// The running double; stops serving when dropped.
pub struct FakeAgent {
    pub addr: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeAgent {
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> FakeAgentBuilder {
        FakeAgentBuilder::default()
    }

    /// `MESOS_SLAVE_PID` for an executor of this agent.
    pub fn pid(&self) -> String {
        format!("slave(1)@{}", self.addr)
    }

    /// Every update received (by UPDATE or carried in a SUBSCRIBE), once each.
    pub fn updates(&self) -> Vec<TaskStatus> {
        self.state.lock().unwrap().updates.clone()
    }

    pub fn states(&self) -> Vec<TaskState> {
        self.updates().iter().map(|s| s.state()).collect()
    }

    pub fn subscribes(&self) -> Vec<call::Subscribe> {
        self.state.lock().unwrap().subscribes.clone()
    }

    /// The `Authorization` header of each call, in order.
    pub fn authorization(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().authorization.clone()
    }

    /// The first update matching `pred`, waiting up to `timeout` for it.
    pub async fn wait_update(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&TaskStatus) -> bool,
    ) -> TaskStatus {
        super::wait_for(what, timeout, || self.updates().into_iter().find(&pred)).await
    }

    pub async fn wait_state(&self, state: TaskState, timeout: Duration) -> TaskStatus {
        self.wait_update(&format!("{state:?}"), timeout, |s| s.state() == state)
            .await
    }

    /// Acknowledges every update not acknowledged yet, in order.
    pub fn ack_all(&self) {
        let mut a = self.state.lock().unwrap();
        let pending: Vec<TaskStatus> = a
            .updates
            .iter()
            .filter(|s| !a.acked.contains(s.uuid()))
            .cloned()
            .collect();
        for s in pending {
            a.ack(&s);
        }
    }

    pub fn kill(&self, task_id: &str) {
        self.send(Event {
            r#type: Some(event::Type::Kill as i32),
            kill: Some(event::Kill {
                task_id: TaskId {
                    value: task_id.into(),
                },
                kill_policy: None,
            }),
            ..Default::default()
        });
    }

    pub fn shutdown(&self) {
        self.send(Event {
            r#type: Some(event::Type::Shutdown as i32),
            ..Default::default()
        });
    }

    /// Drops the event stream and refuses every call for `down_for`, as an agent
    /// restart would; then accepts a resubscription.
    pub fn restart(&self, down_for: Duration) {
        {
            let mut a = self.state.lock().unwrap();
            a.down = true;
            a.stream = None;
        }
        let state = self.state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(down_for).await;
            state.lock().unwrap().down = false;
        });
    }

    fn send(&self, ev: Event) {
        self.state.lock().unwrap().send(ev);
    }
}

impl Agent {
    fn send(&mut self, ev: Event) {
        if let Some(s) = &self.stream {
            let _ = s.send(Ok(recordio::encode(&ev.encode_to_vec())));
        }
    }

    /// Records an update once (a resent one has the same UUID); acknowledges it
    /// unless told not to.
    fn receive(&mut self, status: TaskStatus) {
        if !self.updates.iter().any(|s| s.uuid == status.uuid) {
            self.updates.push(status.clone());
        }
        if !self.withhold_acks {
            self.ack(&status);
        }
    }

    fn ack(&mut self, status: &TaskStatus) {
        self.acked.insert(status.uuid().to_vec());
        self.send(Event {
            r#type: Some(event::Type::Acknowledged as i32),
            acknowledged: Some(event::Acknowledged {
                task_id: status.task_id.clone(),
                uuid: status.uuid().to_vec(),
            }),
            ..Default::default()
        });
    }

    fn subscribed(&self, call: &Call) -> Event {
        Event {
            r#type: Some(event::Type::Subscribed as i32),
            subscribed: Some(event::Subscribed {
                executor_info: ExecutorInfo {
                    executor_id: call.executor_id.clone(),
                    framework_id: Some(call.framework_id.clone()),
                    ..Default::default()
                },
                framework_info: FrameworkInfo {
                    user: "root".into(),
                    name: "slipway".into(),
                    id: Some(call.framework_id.clone()),
                    ..Default::default()
                },
                agent_info: AgentInfo {
                    hostname: AGENT_HOSTNAME.into(),
                    id: Some(AgentId {
                        value: "fake-agent-S0".into(),
                    }),
                    ..Default::default()
                },
                container_id: None,
            }),
            ..Default::default()
        }
    }
}

async fn executor_api(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(call) = Call::decode(body) else {
        return (StatusCode::BAD_REQUEST, "not a protobuf executor Call").into_response();
    };
    let mut a = state.lock().unwrap();
    if a.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "agent is restarting").into_response();
    }
    a.authorization.push(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    );
    match call.r#type() {
        call::Type::Subscribe => {
            let sub = call.subscribe.clone().unwrap_or_default();
            a.subscribes.push(sub.clone());
            let (tx, rx) = mpsc::unbounded_channel();
            // a new subscription replaces the old one, whose stream ends
            a.stream = Some(tx);
            let ev = a.subscribed(&call);
            a.send(ev);
            // a real agent takes what the executor says it sent and we missed
            for u in sub.unacknowledged_updates {
                a.receive(u.status);
            }
            if !a.launched
                && let Some(task) = a.task.clone()
            {
                a.launched = true;
                a.send(Event {
                    r#type: Some(event::Type::Launch as i32),
                    launch: Some(event::Launch { task }),
                    ..Default::default()
                });
            }
            let body = Body::from_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx));
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                body,
            )
                .into_response()
        }
        call::Type::Update => match call.update {
            Some(u) => {
                a.receive(u.status);
                StatusCode::ACCEPTED.into_response()
            }
            None => (StatusCode::BAD_REQUEST, "UPDATE without update").into_response(),
        },
        call::Type::Message => StatusCode::ACCEPTED.into_response(),
        call::Type::Unknown => (StatusCode::BAD_REQUEST, "call type UNKNOWN").into_response(),
    }
}

/// A TaskInfo as a slipway framework makes one: the executor ID is the task ID.
pub fn task_info(id: &str, data: Vec<u8>) -> TaskInfo {
    TaskInfo {
        name: format!("build {id}"),
        task_id: TaskId { value: id.into() },
        agent_id: AgentId {
            value: "fake-agent-S0".into(),
        },
        executor: Some(ExecutorInfo {
            executor_id: ExecutorId { value: id.into() },
            framework_id: Some(FrameworkId {
                value: "fake-framework".into(),
            }),
            ..Default::default()
        }),
        data: Some(data),
        ..Default::default()
    }
}
