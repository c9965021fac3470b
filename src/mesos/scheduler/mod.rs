//! The Mesos framework: one task owns the subscription to the master and the
//! [`Core`] state; builds talk to it through a [`Framework`] handle.

pub mod core;
pub mod crashed;
pub mod liveness;
pub mod offers;
pub mod placement;
pub mod sandbox_log;
mod store;
mod types;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use reqwest::Url;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, instrument, warn};

pub use self::core::{Core, CoreConfig, ExecutorLaunch, Placement, TaskSpec, TaskUpdate};
pub use store::{FileStore, FrameworkIdStore};

use super::http::{self, BasicAuth};
use super::proto::v1::scheduler::{Call, Event, event};
use crate::health::readiness;
use crate::metrics::Metrics;
use crate::{Error, Result};

pub struct FrameworkOptions {
    /// `host:port` or URLs of the masters; any of them redirects to the leader.
    pub masters: Vec<String>,
    pub auth: Option<BasicAuth>,
    pub core: CoreConfig,
    pub store: Arc<dyn FrameworkIdStore>,
    /// Implicit reconciliation of every task, this often.
    pub reconcile_interval: Duration,
}

/// Connection state, for status messages and readiness.
#[derive(Clone, Debug, PartialEq)]
pub enum Connection {
    Connecting,
    Subscribed {
        framework_id: String,
        master: String,
    },
    Failed(String),
}

enum Command {
    Launch(Box<TaskSpec>, mpsc::UnboundedSender<TaskUpdate>),
    Kill(String),
    Settled(String),
}

/// Handle to the running framework.
#[derive(Clone)]
pub struct Framework {
    tx: mpsc::UnboundedSender<Command>,
    connection: watch::Receiver<Connection>,
}

impl Framework {
    /// Starts subscribing in the background; builds may be handed over at once.
    pub fn start(opts: FrameworkOptions) -> Result<Self> {
        let masters = opts
            .masters
            .iter()
            .map(|m| scheduler_url(m))
            .collect::<Result<Vec<_>>>()?;
        if masters.is_empty() {
            return Err(Error::InvalidSpec("no --mesos-master given".into()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (conn_tx, connection) = watch::channel(Connection::Connecting);
        // not ready to build until subscribed
        readiness().require(READINESS_CHECK);
        tokio::spawn(run(opts, masters, rx, conn_tx));
        Ok(Self { tx, connection })
    }

    /// Hands a build over; its updates come on the returned channel, ending with Done.
    pub fn launch(&self, spec: TaskSpec) -> mpsc::UnboundedReceiver<TaskUpdate> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.tx.send(Command::Launch(Box::new(spec), tx));
        rx
    }

    pub fn kill(&self, key: &str) {
        let _ = self.tx.send(Command::Kill(key.to_string()));
    }

    /// The status of `key`'s finished build is written: its updates may be acknowledged.
    pub fn settled(&self, key: &str) {
        let _ = self.tx.send(Command::Settled(key.to_string()));
    }

    pub fn connection(&self) -> watch::Receiver<Connection> {
        self.connection.clone()
    }
}

/// The name of the framework's check on `/readyz`.
const READINESS_CHECK: &str = "mesos";

/// Publishes the connection state to the handles, the `slipway_mesos_subscribed`
/// gauge and `/readyz`.
fn report(conn: &watch::Sender<Connection>, metrics: &Metrics, state: Connection) {
    match &state {
        Connection::Subscribed { .. } => readiness().set(READINESS_CHECK, true),
        Connection::Connecting => readiness().not_ready(READINESS_CHECK, "connecting"),
        Connection::Failed(why) => readiness().not_ready(READINESS_CHECK, why.as_str()),
    }
    metrics.subscribed(matches!(state, Connection::Subscribed { .. }));
    let _ = conn.send(state);
}

/// `host:port` or a URL → the scheduler API endpoint.
pub fn scheduler_url(master: &str) -> Result<Url> {
    let m = master.trim().trim_end_matches('/');
    let base = if m.contains("://") {
        m.to_string()
    } else {
        format!("http://{m}")
    };
    Url::parse(&format!("{base}/api/v1/scheduler"))
        .map_err(|e| Error::InvalidSpec(format!("--mesos-master {master}: {e}")))
}

/// One live subscription.
struct Session {
    leader: Url,
    stream_id: Option<String>,
    events: std::pin::Pin<Box<dyn Stream<Item = Result<Event>> + Send>>,
    heartbeat: Duration,
}

#[instrument(skip_all)]
async fn run(
    opts: FrameworkOptions,
    masters: Vec<Url>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    conn: watch::Sender<Connection>,
) {
    let client = http::client();
    let mut core = Core::new(opts.core.clone(), opts.store.load());
    let mut session: Option<Session> = None;
    let mut next_master = 0usize;
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut retry_at = Instant::now();
    let mut held_offers = Vec::new();
    let mut reconcile = tokio::time::interval(opts.reconcile_interval.max(Duration::from_secs(1)));
    reconcile.tick().await;
    // launches are checked a few times per launch timeout
    let mut launches =
        tokio::time::interval((opts.core.launch_timeout / 4).max(Duration::from_millis(200)));

    loop {
        if session.is_none() && Instant::now() >= retry_at {
            let url = &masters[next_master % masters.len()];
            match subscribe(&client, url, opts.auth.as_ref(), &mut core).await {
                Ok((s, framework_id)) => {
                    info!(%framework_id, master = %s.leader, "subscribed");
                    if let Err(e) = opts.store.save(Some(&framework_id)) {
                        warn!("cannot persist the framework ID: {e}");
                    }
                    report(
                        &conn,
                        &opts.core.metrics,
                        Connection::Subscribed {
                            framework_id: framework_id.clone(),
                            master: s.leader.to_string(),
                        },
                    );
                    let calls = core.on_subscribed(framework_id, std::time::Instant::now());
                    backoff.reset();
                    session = Some(s);
                    send_all(&client, &mut session, opts.auth.as_ref(), calls).await;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    let msg = format!(
                        "cannot subscribe to the Mesos master at {}: {e}; retrying in {:.0?}",
                        url.origin().ascii_serialization(),
                        delay
                    );
                    warn!("{msg}");
                    core.on_disconnected(&msg);
                    report(&conn, &opts.core.metrics, Connection::Failed(msg));
                    next_master += 1;
                    retry_at = Instant::now() + delay;
                }
            }
        }
        let settle_until = core.settling_until().map(Instant::from_std);
        let calls = tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Launch(spec, tx)) => core.launch(*spec, tx),
                Some(Command::Kill(key)) => core.kill(&key),
                Some(Command::Settled(key)) => core.settled(&key),
                None => {
                    // every handle is gone: so is the subscription
                    report(&conn, &opts.core.metrics, Connection::Failed("the framework stopped".into()));
                    return;
                }
            },
            _ = tokio::time::sleep_until(retry_at), if session.is_none() => Vec::new(),
            _ = tokio::time::sleep_until(settle_until.unwrap_or_else(Instant::now)),
                if settle_until.is_some() && !held_offers.is_empty() => {
                core.on_offers(std::mem::take(&mut held_offers), std::time::Instant::now())
            }
            _ = reconcile.tick() => core.periodic(),
            _ = launches.tick() => core.check_launches(std::time::Instant::now()),
            ev = next_event(&mut session) => match ev {
                Ok(ev) => on_event(&mut core, &opts, ev, &mut held_offers),
                Err(e) => {
                    let msg = format!("lost the Mesos master: {e}; subscribing again");
                    warn!("{msg}");
                    session = None;
                    core.on_disconnected(&msg);
                    report(&conn, &opts.core.metrics, Connection::Failed(msg));
                    held_offers.clear();
                    retry_at = Instant::now() + backoff.next_delay();
                    Vec::new()
                }
            },
        };
        send_all(&client, &mut session, opts.auth.as_ref(), calls).await;
    }
}

async fn next_event(session: &mut Option<Session>) -> Result<Event> {
    let Some(s) = session else {
        return std::future::pending().await;
    };
    // missed heartbeats mean the connection is dead, even if TCP says not
    let deadline = liveness::heartbeat_deadline(s.heartbeat);
    match tokio::time::timeout(deadline, s.events.next()).await {
        Ok(Some(ev)) => ev,
        Ok(None) => Err(Error::Mesos("the master closed the event stream".into())),
        Err(_) => Err(Error::Mesos(format!(
            "no heartbeat for {deadline:.0?} ({} missed)",
            liveness::MISSED_HEARTBEATS
        ))),
    }
}

fn on_event(
    core: &mut Core,
    opts: &FrameworkOptions,
    ev: Event,
    held: &mut Vec<super::proto::v1::Offer>,
) -> Vec<Call> {
    let now = std::time::Instant::now();
    match ev.r#type() {
        event::Type::Offers => {
            let offers = ev.offers.map(|o| o.offers).unwrap_or_default();
            if core.settling_until().is_some_and(|t| now < t) {
                held.extend(offers);
                return Vec::new();
            }
            core.on_offers(offers, now)
        }
        event::Type::Rescind => {
            if let Some(id) = ev.rescind.map(|r| r.offer_id) {
                held.retain(|o| o.id != id);
            }
            Vec::new()
        }
        event::Type::Update => match ev.update.map(|u| u.status) {
            Some(status) => core.on_update(status),
            None => Vec::new(),
        },
        event::Type::Failure => {
            if let Some(f) = ev.failure {
                let agent = f.agent_id.map(|a| a.value).unwrap_or_default();
                match f.executor_id {
                    Some(e) => {
                        warn!(%agent, executor = %e.value, status = ?f.status, "executor exited")
                    }
                    None => warn!(%agent, "agent removed; its tasks will be reported lost"),
                }
            }
            Vec::new()
        }
        event::Type::Error => {
            let msg = ev.error.map(|e| e.message).unwrap_or_default();
            warn!("the master reported an error: {msg}; registering as a new framework");
            // the usual cause: our framework was removed (failover timeout, teardown)
            core.forget_framework();
            if let Err(e) = opts.store.save(None) {
                warn!("cannot clear the framework ID: {e}");
            }
            Vec::new()
        }
        event::Type::Heartbeat => Vec::new(),
        other => {
            debug!(event = ?other, "event ignored");
            Vec::new()
        }
    }
}

async fn subscribe(
    client: &reqwest::Client,
    url: &Url,
    auth: Option<&BasicAuth>,
    core: &mut Core,
) -> Result<(Session, String)> {
    let (resp, leader) = http::post(
        client,
        url,
        http::headers(None, auth),
        core.subscribe_call(),
    )
    .await?;
    let resp = http::expect_accepted(resp, "SUBSCRIBE").await?;
    let stream_id = resp
        .headers()
        .get(http::STREAM_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut events = Box::pin(http::events::<Event>(resp));
    // the first event must be SUBSCRIBED (or ERROR)
    let first = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .map_err(|_| Error::Mesos("no SUBSCRIBED event within 30 s".into()))?
        .ok_or_else(|| Error::Mesos("the master closed the stream before SUBSCRIBED".into()))??;
    match first.r#type() {
        event::Type::Subscribed => {
            let s = first.subscribed.unwrap_or_default();
            let framework_id = s.framework_id.value;
            let heartbeat =
                Duration::from_secs_f64(s.heartbeat_interval_seconds.unwrap_or(15.0).max(1.0));
            Ok((
                Session {
                    leader,
                    stream_id,
                    events,
                    heartbeat,
                },
                framework_id,
            ))
        }
        event::Type::Error => {
            let msg = first.error.map(|e| e.message).unwrap_or_default();
            // a framework ID the master no longer knows: start afresh next time
            core.forget_framework();
            Err(Error::Mesos(format!(
                "the master refused the subscription: {msg}"
            )))
        }
        other => Err(Error::Mesos(format!("expected SUBSCRIBED, got {other:?}"))),
    }
}

async fn send_all(
    client: &reqwest::Client,
    session: &mut Option<Session>,
    auth: Option<&BasicAuth>,
    calls: Vec<Call>,
) {
    for call in calls {
        let Some(s) = session.as_ref() else {
            debug!(call = ?call.r#type(), "not subscribed; call dropped (reconciliation repeats it)");
            continue;
        };
        let what = format!("{:?}", call.r#type());
        let headers = http::headers(s.stream_id.as_deref(), auth);
        let sent = match http::post(client, &s.leader, headers, call).await {
            Ok((resp, _)) => http::expect_accepted(resp, &what).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            warn!("{what} failed: {e}");
        }
    }
}
