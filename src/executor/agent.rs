//! The executor's side of the agent's `/api/v1/executor`: one long-lived SUBSCRIBE
//! whose response streams events, and short POSTs for everything else.

use std::time::Duration;

use futures::Stream;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use tracing::{debug, instrument};

use super::env::AgentEnv;
use crate::mesos::http;
use crate::mesos::proto::v1::executor::{Call, Event, call};
use crate::mesos::proto::v1::{ExecutorId, FrameworkId, TaskInfo, TaskStatus};
use crate::{Error, Result};

/// An UPDATE goes to a local agent: if it takes this long, the agent is in trouble.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub type Events = Box<dyn Stream<Item = Result<Event>> + Send + Unpin>;

/// How to reach the agent and who we are to it.
pub struct Agent {
    client: reqwest::Client,
    env: AgentEnv,
}

impl Agent {
    pub fn new(env: AgentEnv) -> Self {
        Self {
            client: http::client(),
            env,
        }
    }

    pub fn env(&self) -> &AgentEnv {
        &self.env
    }

    fn headers(&self) -> HeaderMap {
        let mut h = http::headers(None, None);
        if let Some(token) = &self.env.token
            && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {token}"))
        {
            v.set_sensitive(true);
            h.insert(AUTHORIZATION, v);
        }
        h
    }

    fn call(&self, kind: call::Type) -> Call {
        Call {
            executor_id: ExecutorId {
                value: self.env.executor_id.clone(),
            },
            framework_id: FrameworkId {
                value: self.env.framework_id.clone(),
            },
            r#type: Some(kind as i32),
            ..Default::default()
        }
    }

    /// SUBSCRIBE, telling the agent what it may have missed: tasks and updates not
    /// yet acknowledged (after an agent restart it learns them only this way).
    #[instrument(skip_all, fields(url = %self.env.url, tasks = tasks.len(), updates = updates.len()))]
    pub async fn subscribe(
        &self,
        tasks: Vec<TaskInfo>,
        updates: Vec<TaskStatus>,
    ) -> Result<Events> {
        let mut c = self.call(call::Type::Subscribe);
        c.subscribe = Some(call::Subscribe {
            unacknowledged_tasks: tasks,
            unacknowledged_updates: updates
                .into_iter()
                .map(|status| call::Update { status })
                .collect(),
        });
        let (resp, _) = tokio::time::timeout(
            CALL_TIMEOUT,
            http::post(&self.client, &self.env.url, self.headers(), c),
        )
        .await
        .map_err(|_| Error::Mesos(format!("{}: SUBSCRIBE timed out", self.env.url)))??;
        let resp = accepted(resp, "SUBSCRIBE").await?;
        debug!("subscribed; reading events");
        Ok(Box::new(http::events::<Event>(resp)))
    }

    /// Sends one status update; the agent answers 202 and acknowledges it later on
    /// the event stream.
    pub async fn update(&self, status: TaskStatus) -> Result<()> {
        let mut c = self.call(call::Type::Update);
        c.update = Some(call::Update { status });
        let (resp, _) = tokio::time::timeout(
            CALL_TIMEOUT,
            http::post(&self.client, &self.env.url, self.headers(), c),
        )
        .await
        .map_err(|_| Error::Mesos(format!("{}: UPDATE timed out", self.env.url)))??;
        accepted(resp, "UPDATE").await.map(drop)
    }
}

/// Like [`http::expect_accepted`], but a 401 here is about the agent's token.
async fn accepted(resp: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(Error::Mesos(format!(
            "{what}: the agent refused the executor's credentials (401); \
             is MESOS_EXECUTOR_AUTHENTICATION_TOKEN the one the agent gave?"
        )));
    }
    http::expect_accepted(resp, what).await
}
