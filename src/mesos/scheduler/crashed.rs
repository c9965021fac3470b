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
/// the executor a moment after it reported the task's end.
const TRIES: u32 = 5;
const PAUSE: Duration = Duration::from_millis(500);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
                "--- the executor ended before it started the build; its sandbox is {} on {}",
                at.directory, at.agent
            )]));
            SandboxCopy::start(at, events.clone(), auth)
                .finish(true)
                .await;
        }
        Err(e) => {
            let _ = events.send(BuildEvent::Copied(vec![format!(
                "--- the executor ended before it started the build, and its sandbox could not be found: {e}"
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
            Err(e) if e.to_string().contains("(401)") || e.to_string().contains("(403)") => {
                return Err(e);
            }
            Err(e) => {
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

async fn agent_state(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&BasicAuth>,
) -> Result<Value> {
    let req = http::authorized(client.get(url).timeout(REQUEST_TIMEOUT), auth);
    let resp = req
        .send()
        .await
        .map_err(|e| Error::Mesos(format!("GET {url}: {e}")))?;
    let what = format!("GET {url}");
    let resp = http::expect_accepted(resp, &what).await?;
    resp.json()
        .await
        .map_err(|e| Error::Mesos(format!("{what}: unreadable answer: {e}")))
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
        .filter(|e| e["id"] == executor)
        .filter_map(|e| e["directory"].as_str().map(str::to_string))
        // the latest run last
        .last()
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
