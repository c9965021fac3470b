//! What the framework and the executor agree on: the task ID scheme, the payload in
//! `TaskInfo.data`, and what status updates carry back in their `data`.

use serde::{Deserialize, Serialize};

use crate::api::DockerBuildSpec;
use crate::runner::{BuildEvent, BuildOutcome, BuildSecrets};
use crate::{Error, Result};

const PREFIX: &str = "slipway";

/// `slipway:<namespace>:<name>:<spec hash>:<attempt>`. The key and spec hash are in
/// the ID so a restarted framework can tell which resource a running task builds.
pub fn task_id(key: &str, spec_hash: &str, attempt: u32) -> String {
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    let hash = spec_hash.trim_start_matches("sha256:");
    format!("{PREFIX}:{ns}:{name}:{hash}:{attempt}")
}

/// A task ID this framework made: `(key, spec hash)`.
pub fn parse_task_id(id: &str) -> Option<(String, String)> {
    let mut parts = id.split(':');
    if parts.next() != Some(PREFIX) {
        return None;
    }
    let (ns, name, hash, attempt) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || attempt.parse::<u32>().is_err() {
        return None;
    }
    Some((format!("{ns}/{name}"), format!("sha256:{hash}")))
}

/// `TaskInfo.data`: everything the executor needs to run one build. Registry
/// credentials and build secrets travel only here (a task's data is not part of the
/// master's state, and `Debug` shows secret ids only).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TaskPayload {
    pub key: String,
    /// The spec, with a `path` source replaced by the URL its packed context is served at.
    pub spec: DockerBuildSpec,
    /// A docker config.json with the registry credentials the build may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_config: Option<String>,
    /// The values of `spec.secrets`, by id.
    #[serde(default, skip_serializing_if = "BuildSecrets::is_empty")]
    pub secrets: BuildSecrets,
    /// `--staging registry`: the context to fetch, by digest (the spec has no source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<crate::mesos::staging::StagedBlob>,
}

/// Where the executor keeps the build's log: the agent's base URL (its `/files/read`
/// serves the file) and the sandbox directory as the agent sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SandboxLog {
    pub agent: String,
    pub directory: String,
}

impl SandboxLog {
    /// The build's log, in the sandbox.
    pub const FILE: &'static str = "slipway-build.log";

    pub fn path(&self, file: &str) -> String {
        format!("{}/{file}", self.directory.trim_end_matches('/'))
    }
}

/// `data` of a status update from the executor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum TaskReport {
    /// TASK_RUNNING: how the build is going.
    Progress(BuildEvent),
    /// TASK_FINISHED: what was pushed.
    Finished(BuildOutcome),
    /// TASK_FAILED: the build's error, by metric label, so retry rules still apply.
    Failed { reason: String, message: String },
}

impl TaskReport {
    pub fn failed(e: &Error) -> Self {
        TaskReport::Failed {
            reason: e.metric_label().to_string(),
            message: e.detail(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // ok: plain data with string keys always serializes
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(data: &[u8]) -> Result<Self> {
        serde_json::from_slice(data)
            .map_err(|e| Error::Mesos(format!("unreadable status update data: {e}")))
    }
}

impl TaskPayload {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(data: &[u8]) -> Result<Self> {
        serde_json::from_slice(data)
            .map_err(|e| Error::InvalidSpec(format!("unreadable task data: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_round_trip_and_foreign_ids_are_ignored() {
        let id = task_id("team-a/web", "sha256:0123456789abcdef", 3);
        assert_eq!(id, "slipway:team-a:web:0123456789abcdef:3");
        assert!(!id.contains('/'), "Mesos refuses '/' in task IDs");
        assert_eq!(
            parse_task_id(&id),
            Some(("team-a/web".into(), "sha256:0123456789abcdef".into()))
        );
        assert_eq!(parse_task_id("other-framework-task"), None);
        assert_eq!(parse_task_id("slipway:a:b:c:notanumber"), None);
    }

    #[test]
    fn a_failure_keeps_its_retry_class_across_the_wire() {
        let sent = TaskReport::failed(&Error::Registry("connection refused".into()));
        let TaskReport::Failed { reason, message } = TaskReport::decode(&sent.encode()).unwrap()
        else {
            panic!("not a failure")
        };
        let e = Error::from_label(&reason, message);
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "registry: connection refused");
        let user = Error::from_label("BuildFailed", "step 2 failed".into());
        assert!(!user.is_retryable());
    }

    #[test]
    fn steps_cross_the_wire_on_success_and_failure() {
        use crate::api::StageStep;
        let steps = vec![StageStep {
            name: "[2/2] RUN make".into(),
            duration_seconds: Some(0.3),
            failed: true,
            ..Default::default()
        }];
        let progress = TaskReport::Progress(BuildEvent::Stages(steps.clone()));
        assert_eq!(TaskReport::decode(&progress.encode()).unwrap(), progress);
        let done = TaskReport::Finished(BuildOutcome {
            stages: steps,
            ..Default::default()
        });
        assert_eq!(TaskReport::decode(&done.encode()).unwrap(), done);
    }

    #[test]
    fn what_a_build_was_made_from_crosses_the_wire() {
        let done = TaskReport::Finished(BuildOutcome {
            base_images: vec![crate::api::BaseImage {
                image: "debian:12".into(),
                digest: "sha256:0123".into(),
            }],
            source_version: Some("\"v7\"".into()),
            ..Default::default()
        });
        assert_eq!(TaskReport::decode(&done.encode()).unwrap(), done);
    }
}
