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
    /// TASK_FINISHED: what was pushed. Flattened, so the wire shape is the outcome's
    /// own and executors and frameworks of either age read each other's reports.
    Finished {
        #[serde(flatten)]
        outcome: BuildOutcome,
        /// What the agent's daemon holds, for cache-aware placement.
        #[serde(default, skip_serializing_if = "Holdings::is_empty")]
        holds: Holdings,
    },
    /// TASK_FAILED: the build's error, by metric label, so retry rules still apply.
    Failed {
        reason: String,
        message: String,
        #[serde(default, skip_serializing_if = "Holdings::is_empty")]
        holds: Holdings,
    },
}

/// Image and layer digests an agent's Docker daemon holds, newest images first.
/// Bounded (see [`Holdings::capped`]): a status update is no place for a whole
/// image store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Holdings {
    /// `sha256:...` repo digests of the images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// `sha256:...` diff IDs of their layers (what a registry's image config lists
    /// as `rootfs.diff_ids`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
}

impl Holdings {
    pub const MAX_IMAGES: usize = 128;
    pub const MAX_LAYERS: usize = 1024;

    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.layers.is_empty()
    }

    /// Without duplicates, at most [`Self::MAX_IMAGES`] and [`Self::MAX_LAYERS`],
    /// keeping the first (newest) ones.
    pub fn capped(images: Vec<String>, layers: Vec<String>) -> Self {
        fn dedup(v: Vec<String>, max: usize) -> Vec<String> {
            let mut seen = std::collections::HashSet::new();
            v.into_iter()
                .filter(|d| seen.insert(d.clone()))
                .take(max)
                .collect()
        }
        Self {
            images: dedup(images, Self::MAX_IMAGES),
            layers: dedup(layers, Self::MAX_LAYERS),
        }
    }
}

impl TaskReport {
    pub fn failed(e: &Error) -> Self {
        TaskReport::Failed {
            reason: e.metric_label().to_string(),
            message: e.detail(),
            holds: Holdings::default(),
        }
    }

    pub fn finished(outcome: BuildOutcome) -> Self {
        TaskReport::Finished {
            outcome,
            holds: Holdings::default(),
        }
    }

    /// The same report, telling what the daemon holds.
    pub fn with_holds(mut self, held: Holdings) -> Self {
        if let TaskReport::Finished { holds, .. } | TaskReport::Failed { holds, .. } = &mut self {
            *holds = held;
        }
        self
    }

    /// What a terminal report says the daemon holds.
    pub fn holds(&self) -> Option<&Holdings> {
        match self {
            TaskReport::Finished { holds, .. } | TaskReport::Failed { holds, .. } => Some(holds),
            TaskReport::Progress(_) => None,
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

    /// `e` as the scheduler reads it back from the executor's FAILED update.
    fn across_the_wire(e: &Error) -> Error {
        let sent = TaskReport::failed(e);
        let TaskReport::Failed {
            reason, message, ..
        } = TaskReport::decode(&sent.encode()).unwrap()
        else {
            panic!("not a failure")
        };
        Error::from_label(&reason, message)
    }

    #[test]
    fn a_failure_keeps_its_retry_class_across_the_wire() {
        let e = across_the_wire(&Error::Registry("connection refused".into()));
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "registry: connection refused");
        let user = Error::from_label("BuildFailed", "step 2 failed".into());
        assert!(!user.is_retryable());
    }

    /// A build that ran past `spec.timeoutSeconds` on an agent is reported as a
    /// timeout (reason `Timeout`), not as a failed Dockerfile.
    #[test]
    fn a_timeout_on_an_agent_stays_a_timeout() {
        let e = across_the_wire(&Error::timed_out(30));
        assert_eq!(e.metric_label(), "Timeout");
        assert_eq!(e.to_string(), "timed out after 30 s");
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
        let done = TaskReport::finished(BuildOutcome {
            stages: steps,
            ..Default::default()
        });
        assert_eq!(TaskReport::decode(&done.encode()).unwrap(), done);
    }

    #[test]
    fn what_a_build_was_made_from_crosses_the_wire() {
        let done = TaskReport::finished(BuildOutcome {
            base_images: vec![crate::api::BaseImage {
                image: "debian:12".into(),
                digest: "sha256:0123".into(),
            }],
            source_version: Some("\"v7\"".into()),
            ..Default::default()
        });
        assert_eq!(TaskReport::decode(&done.encode()).unwrap(), done);
    }

    #[test]
    fn holdings_ride_with_terminal_reports_and_old_reports_still_read() {
        let holds = Holdings::capped(
            vec!["sha256:i1".into(), "sha256:i1".into()],
            vec!["sha256:l1".into(), "sha256:l2".into()],
        );
        assert_eq!(holds.images, ["sha256:i1"], "duplicates are dropped");
        let done = TaskReport::finished(BuildOutcome {
            digest: "sha256:d".into(),
            ..Default::default()
        })
        .with_holds(holds.clone());
        let back = TaskReport::decode(&done.encode()).unwrap();
        assert_eq!(back.holds(), Some(&holds));
        let failed = TaskReport::failed(&Error::BuildFailed("x".into())).with_holds(holds.clone());
        assert_eq!(
            TaskReport::decode(&failed.encode()).unwrap().holds(),
            Some(&holds)
        );
        // what an executor of before this field sent
        let old = br#"{"finished":{"digest":"sha256:d","image":"r/a@sha256:d","pushedTags":[],"revision":null}}"#;
        let TaskReport::Finished { outcome, holds } = TaskReport::decode(old).unwrap() else {
            panic!("not finished")
        };
        assert_eq!(outcome.digest, "sha256:d");
        assert!(holds.is_empty());
        let old = br#"{"failed":{"reason":"BuildFailed","message":"m"}}"#;
        assert!(TaskReport::decode(old).unwrap().holds().unwrap().is_empty());
        // and a framework of before reads the new shape as the outcome it knew
        let v: serde_json::Value = serde_json::from_slice(&done.encode()).unwrap();
        let outcome: BuildOutcome = serde_json::from_value(v["finished"].clone()).unwrap();
        assert_eq!(outcome.digest, "sha256:d");
    }

    #[test]
    fn holdings_are_capped() {
        let many = |p: &str, n: usize| (0..n).map(|i| format!("sha256:{p}{i}")).collect();
        let h = Holdings::capped(many("i", 1000), many("l", 5000));
        assert_eq!(h.images.len(), Holdings::MAX_IMAGES);
        assert_eq!(h.layers.len(), Holdings::MAX_LAYERS);
        assert_eq!(h.layers[0], "sha256:l0", "the newest are kept");
    }
}
