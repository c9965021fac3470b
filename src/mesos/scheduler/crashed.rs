//! The sandbox of an executor that never said where it is: one that crashed (or
//! could not start) before its first TASK_RUNNING, which carries the sandbox's path.
//! The agent that took the task is known from the accepted offer (`Offer.url`), and
//! the agent's own `/state` lists every executor's directory, running or completed;
//! the executor's stdout and stderr are then copied from there like a build's log.

use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use super::sandbox_log::SandboxCopy;
use super::types::Placement;
use crate::mesos::http::{self, BasicAuth};
use crate::mesos::proto::v1::Offer;
use crate::mesos::task::SandboxLog;
use crate::runner::{BuildEvent, Events};
use crate::{Error, Result};

/// Looks at the agent's `/state` this often, this many times: the agent may list
/// the executor a moment after it reported the task's end. An agent that does not
/// answer at all is not asked again (it may be gone: the build's retry waits).
const TRIES: u32 = 5;
const PAUSE: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The agent's HTTP address from its offer: `http://10.0.0.7:5051/slave(1)` (the
/// path is the agent's libprocess ID, under which its `/state` is served).
pub fn agent_url(offer: &Offer) -> Option<String> {
    let u = offer.url.as_ref()?;
    let host = u.address.ip.as_ref().or(u.address.hostname.as_ref())?;
    let path = u.path.as_deref().unwrap_or("");
    let path = path.trim_end_matches('/');
    let slash = if path.is_empty() || path.starts_with('/') {
        ""
    } else {
        "/"
    };
    Some(format!(
        "{}://{host}:{}{slash}{path}",
        u.scheme, u.address.port
    ))
}

/// Where a launched task runs: enough to find its sandbox without the executor.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchSite {
    pub agent_url: String,
    pub framework_id: String,
    /// The executor is named after its task (see `offers::task_info`).
    pub executor_id: String,
}

impl LaunchSite {
    /// None when the offer did not say how to reach the agent (a task re-attached
    /// after a restart has no offer).
    pub fn of(p: &Placement) -> Option<Self> {
        Some(Self {
            agent_url: p.agent_url.clone()?,
            framework_id: p.framework_id.clone(),
            executor_id: p.task_id.clone(),
        })
    }
}

/// The task ended before its executor said where its sandbox is: finds the sandbox
/// through the agent and copies what the executor left there (its stdout and
/// stderr; the build's log, if it got that far) onto `events`.
pub async fn keep_output(site: &LaunchSite, events: &Events, auth: Option<BasicAuth>) {
    match locate(site, auth.as_ref()).await {
        Ok(at) => {
            let _ = events.send(BuildEvent::Copied(vec![format!(
                "--- the executor ended before it said where its sandbox is; the agent has it at {} ({})",
                at.directory, at.agent
            )]));
            SandboxCopy::start(at, events.clone(), auth)
                .finish(true)
                .await;
        }
        Err(e) => {
            let _ = events.send(BuildEvent::Copied(vec![format!(
                "--- the executor ended before it said where its sandbox is, and the agent could not say: {e}"
            )]));
        }
    }
}

/// The sandbox as the agent lists it, asked a few times.
async fn locate(site: &LaunchSite, auth: Option<&BasicAuth>) -> Result<SandboxLog> {
    let url = format!("{}/state", site.agent_url);
    let origin = Url::parse(&site.agent_url)
        .map(|u| u.origin().ascii_serialization())
        .map_err(|e| Error::Mesos(format!("agent address {}: {e}", site.agent_url)))?;
    let client = http::client();
    let mut last = None;
    for attempt in 0..TRIES {
        if attempt > 0 {
            tokio::time::sleep(PAUSE).await;
        }
        let state = match agent_state(&client, &url, auth).await {
            Ok(s) => s,
            // refused: asking again will not change that
            Err((e, false)) => return Err(e),
            Err((e, true)) => {
                last = Some(e);
                continue;
            }
        };
        if let Some(directory) = directory_in(&state, &site.framework_id, &site.executor_id) {
            return Ok(SandboxLog {
                agent: origin,
                directory,
            });
        }
        last = Some(Error::Mesos(format!(
            "GET {url} does not list executor {}",
            site.executor_id
        )));
    }
    Err(last.unwrap_or_else(|| Error::Mesos(format!("GET {url}: no answer"))))
}

/// The agent's `/state`; an error says whether asking again may help (not when
/// the agent refused the credentials or did not answer).
async fn agent_state(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&BasicAuth>,
) -> std::result::Result<Value, (Error, bool)> {
    let what = format!("GET {url}");
    let req = http::authorized(client.get(url).timeout(REQUEST_TIMEOUT), auth);
    let resp = req
        .send()
        .await
        .map_err(|e| (Error::Mesos(format!("{what}: {e}")), false))?;
    let refused = matches!(
        resp.status(),
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
    );
    let resp = http::expect_accepted(resp, &what)
        .await
        .map_err(|e| (e, !refused))?;
    resp.json().await.map_err(|e| {
        (
            Error::Mesos(format!("{what}: unreadable answer: {e}")),
            true,
        )
    })
}

/// The directory of `executor` of `framework` in an agent's `/state`: among its
/// frameworks or completed ones, running executors or completed ones.
fn directory_in(state: &Value, framework: &str, executor: &str) -> Option<String> {
    let list = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    let frameworks = list(state, "frameworks")
        .into_iter()
        .chain(list(state, "completed_frameworks"))
        .filter(|f| f["id"] == framework);
    frameworks
        .flat_map(|f| {
            list(&f, "executors")
                .into_iter()
                .chain(list(&f, "completed_executors"))
        })
        // an executor ID is used once (it is its task's, which is new per launch)
        .find(|e| e["id"] == executor)
        .and_then(|e| e["directory"].as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesos::proto::v1::{Address, Url as ProtoUrl};

    #[test]
    fn the_agent_is_reached_at_its_offers_address() {
        let mut offer = Offer::default();
        assert_eq!(agent_url(&offer), None);
        offer.url = Some(ProtoUrl {
            scheme: "http".into(),
            address: Address {
                hostname: Some("agent-7.example.org".into()),
                ip: Some("10.0.0.7".into()),
                port: 5051,
            },
            path: Some("/slave(1)".into()),
            ..Default::default()
        });
        assert_eq!(
            agent_url(&offer).as_deref(),
            Some("http://10.0.0.7:5051/slave(1)")
        );
        let u = offer.url.as_mut().unwrap();
        u.address.ip = None;
        u.path = None;
        assert_eq!(
            agent_url(&offer).as_deref(),
            Some("http://agent-7.example.org:5051")
        );
    }

    #[test]
    fn a_launch_names_its_agents_address_and_its_executor() {
        use super::super::core::{Core, CoreConfig, TaskUpdate};
        use crate::mesos::proto::v1::scheduler::call;
        let cfg = CoreConfig {
            settle: Duration::ZERO,
            ..Default::default()
        };
        let now = std::time::Instant::now();
        let mut c = Core::new(cfg, Some("fw-1".into()));
        c.on_subscribed("fw-1".into(), now);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task_id = crate::mesos::task::task_id("ns/app", "sha256:aa", 1);
        c.launch(
            super::super::TaskSpec {
                key: "ns/app".into(),
                spec_hash: "sha256:aa".into(),
                task_id: task_id.clone(),
                cpus: 0.5,
                mem_mib: 100.0,
                payload: b"{}".to_vec(),
                previous: None,
                base_layers: Vec::new(),
            },
            tx,
        );
        let mut offer = super::super::offers::tests::offer("o1", "h1", 2.0, 4096.0, "*");
        offer.url = Some(ProtoUrl {
            scheme: "http".into(),
            address: Address {
                hostname: Some("h1".into()),
                ip: Some("10.0.0.7".into()),
                port: 5051,
            },
            path: Some("/slave(1)".into()),
            ..Default::default()
        });
        let calls = c.on_offers(vec![offer], now);
        let accept = calls
            .iter()
            .find(|c| c.r#type() == call::Type::Accept)
            .and_then(|c| c.accept.as_ref())
            .expect("launched");
        let task = &accept.operations[0].launch.as_ref().unwrap().task_infos[0];
        let mut placed = None;
        while let Ok(u) = rx.try_recv() {
            if let TaskUpdate::Placed(p) = u {
                placed = Some(p);
            }
        }
        let site = LaunchSite::of(&placed.expect("placed")).expect("the agent's address");
        assert_eq!(site.agent_url, "http://10.0.0.7:5051/slave(1)");
        assert_eq!(site.framework_id, "fw-1");
        // the sandbox is looked up by the executor ID the task was launched with
        let executor = task.executor.as_ref().unwrap();
        assert_eq!(site.executor_id, executor.executor_id.value);
        assert_eq!(site.executor_id, task_id);
    }

    #[test]
    fn the_sandbox_is_the_agents_directory_of_that_executor_running_or_completed() {
        let state = serde_json::json!({
            "frameworks": [{"id": "other", "executors": [{"id": "t1", "directory": "/wrong"}]}],
            "completed_frameworks": [{
                "id": "fw",
                "executors": [],
                "completed_executors": [
                    {"id": "t0", "directory": "/w/slaves/S0/frameworks/fw/executors/t0/runs/a"},
                    {"id": "t1", "directory": "/w/slaves/S0/frameworks/fw/executors/t1/runs/b"}
                ]
            }]
        });
        assert_eq!(
            directory_in(&state, "fw", "t1").as_deref(),
            Some("/w/slaves/S0/frameworks/fw/executors/t1/runs/b")
        );
        assert_eq!(directory_in(&state, "fw", "t9"), None);
        assert_eq!(directory_in(&serde_json::json!({}), "fw", "t1"), None);
    }
}
