//! Status transitions: pure functions from the previous status and what happened
//! to the next status, with the `Ready` condition GitOps tools read.

use std::time::Duration;

mod history;
mod update;
pub(crate) use history::number_for;
pub use update::of_update;

use super::cause::{Cause, Inputs};
use crate::Error;
use crate::api::{BaseImage, Condition, DockerBuildStatus, MesosTask, Phase, StageStep};
use crate::runner::BuildOutcome;
use crate::sources::Notice;

/// What happened to a resource.
#[derive(Debug)]
pub enum Transition<'a> {
    /// The resource cannot be built as written.
    Invalid(String),
    /// Waiting for another resource (its base image) or for credentials; the build
    /// it waits to start is asked for by `cause`.
    Waiting(String, Option<&'a Cause>),
    Queued(Queued<'a>),
    Started {
        attempt: u32,
        backend: &'a str,
        /// The backend still has to place the build (Mesos): stay Queued until it runs.
        remote: bool,
    },
    /// A remote backend cannot place the build yet, and why.
    Unplaced(String),
    /// A remote backend placed the build.
    Placed {
        host: &'a str,
        task: &'a MesosTask,
    },
    /// The build began on a remote host.
    Running {
        host: &'a str,
        /// Where the Mesos executor keeps the build's log, for `status.mesos.sandbox`.
        sandbox: Option<&'a str>,
    },
    /// A progress line worth showing (the current Dockerfile step).
    Progress(String),
    /// The build's steps as they ended (a failed build's included): only
    /// `status.stages` changes.
    Stages(&'a [StageStep]),
    Pushing {
        tags: usize,
    },
    Retrying {
        attempt: u32,
        max_attempts: u32,
        delay: Duration,
        error: String,
    },
    Succeeded(&'a BuildOutcome),
    /// The error, and the last lines of the build's log.
    Failed(&'a Error, &'a [String]),
}

/// A build queued: what it is made from, and why (a new build gets the next number
/// in `status.history`; none resumes the last one).
#[derive(Debug, Default, Clone, Copy)]
pub struct Queued<'a> {
    pub cause: Option<&'a Cause>,
    pub inputs: Option<&'a Inputs>,
    /// `spec.rebuild`.
    pub rebuild: Option<&'a str>,
    /// `spec.historyLimit`; the default when zero.
    pub history_limit: u32,
}

/// The next status. `spec_hash` is the hash of the spec the transition is about
/// (None when the spec could not be read).
pub fn next(
    prev: Option<&DockerBuildStatus>,
    spec_hash: Option<&str>,
    generation: Option<i64>,
    t: Transition<'_>,
    now: &str,
) -> DockerBuildStatus {
    let same_spec = prev.is_some_and(|p| p.spec_hash.as_deref() == spec_hash);
    // a new spec starts from a clean slate: old digests describe another image
    let mut s = match prev {
        Some(p) if same_spec => p.clone(),
        // ...but the count and history of builds go on
        _ => DockerBuildStatus {
            conditions: prev.map(|p| p.conditions.clone()).unwrap_or_default(),
            build_number: prev.and_then(|p| p.build_number),
            history: prev.map(|p| p.history.clone()).unwrap_or_default(),
            ..Default::default()
        },
    };
    let builds = !matches!(
        t,
        Transition::Invalid(_) | Transition::Waiting(..) | Transition::Stages(_)
    );
    s.spec_hash = spec_hash.map(str::to_string);
    s.observed_generation = generation;
    let (phase, ready, reason, message): (Phase, &str, &str, String) = match t {
        Transition::Invalid(msg) => {
            s.completion_time = Some(now.into());
            (Phase::Failed, "False", "InvalidSpec", msg)
        }
        Transition::Waiting(msg, cause) => {
            if let Some(c) = cause {
                s.triggered_by = Some(c.to_string());
            }
            (Phase::Pending, "Unknown", "Waiting", msg)
        }
        Transition::Queued(q) => {
            record(&mut s, q);
            if let Some(cause) = q.cause.filter(|c| c.is_new()) {
                history::begin(&mut s, &cause.to_string(), q.history_limit);
            }
            s.start_time = None;
            s.completion_time = None;
            s.image = None;
            s.image_digest = None;
            s.pushed_tags.clear();
            s.platforms.clear();
            s.attestations.clear();
            s.attempts = None;
            s.mesos = None;
            s.stages.clear();
            s.log_tail.clear();
            (
                Phase::Queued,
                "Unknown",
                "Queued",
                "waiting for a build slot".into(),
            )
        }
        Transition::Started {
            attempt,
            backend,
            remote: true,
        } => {
            s.attempts = Some(attempt);
            // a retry's steps are its own
            s.stages.clear();
            (
                Phase::Queued,
                "Unknown",
                "Scheduling",
                format!("handed to {backend}; waiting for resources"),
            )
        }
        Transition::Unplaced(msg) => (Phase::Queued, "Unknown", "Scheduling", msg),
        Transition::Placed { host, task } => {
            s.mesos = Some(task.clone());
            let at = if host.is_empty() {
                &task.agent_id
            } else {
                host
            };
            let msg = match &task.placement {
                Some(why) => format!("{why}; launched as Mesos task {}", task.task_id),
                None => format!("launched on {at} as Mesos task {}", task.task_id),
            };
            (Phase::Queued, "Unknown", "Launching", msg)
        }
        Transition::Running { host, sandbox } => {
            s.start_time.get_or_insert_with(|| now.into());
            if let (Some(dir), Some(m)) = (sandbox, s.mesos.as_mut()) {
                m.sandbox = Some(dir.to_string());
            }
            let on = if host.is_empty() { "" } else { " on " };
            (
                Phase::Building,
                "Unknown",
                "Building",
                format!("building{on}{host}"),
            )
        }
        Transition::Started {
            attempt, backend, ..
        } => {
            s.start_time.get_or_insert_with(|| now.into());
            s.attempts = Some(attempt);
            s.stages.clear();
            let msg = if attempt > 1 {
                format!("building on {backend} (attempt {attempt})")
            } else {
                format!("building on {backend}")
            };
            (Phase::Building, "Unknown", "Building", msg)
        }
        Transition::Stages(steps) => {
            // phase, message and condition stay: the end of the build says those
            s.stages = steps.to_vec();
            return s;
        }
        Transition::Progress(msg) => {
            let phase = s.phase.unwrap_or(Phase::Building);
            (phase, "Unknown", reason_of(phase), msg)
        }
        Transition::Pushing { tags } => (
            Phase::Pushing,
            "Unknown",
            "Pushing",
            format!("pushing {tags} tag{}", if tags == 1 { "" } else { "s" }),
        ),
        Transition::Retrying {
            attempt,
            max_attempts,
            delay,
            error,
        } => (
            s.phase.unwrap_or(Phase::Building),
            "Unknown",
            "Retrying",
            format!(
                "attempt {attempt} of {max_attempts} failed, retrying in {}s: {error}",
                delay.as_secs_f64().ceil()
            ),
        ),
        Transition::Succeeded(out) => {
            s.image_digest = Some(out.digest.clone());
            s.image = Some(out.image.clone());
            s.pushed_tags = out.pushed_tags.clone();
            s.revision = out.revision.clone();
            s.platforms = out.platforms.clone();
            s.attestations = out.attestations.clone();
            s.stages = out.stages.clone();
            s.log_tail.clear();
            if !out.base_images.is_empty() {
                s.base_images = out.base_images.clone();
            }
            if out.source_version.is_some() {
                s.source_version = out.source_version.clone();
            }
            s.completion_time = Some(now.into());
            let n = out.pushed_tags.len();
            (
                Phase::Succeeded,
                "True",
                "Pushed",
                format!("pushed {n} tag{}", if n == 1 { "" } else { "s" }),
            )
        }
        Transition::Failed(err, tail) => {
            s.completion_time = Some(now.into());
            s.log_tail = tail.to_vec();
            let phase = if matches!(err, Error::Cancelled(_)) {
                Phase::Cancelled
            } else {
                Phase::Failed
            };
            (phase, "False", err.metric_label(), err.to_string())
        }
    };
    s.phase = Some(phase);
    s.message = Some(message.clone());
    set_ready(&mut s.conditions, ready, reason, &message, now);
    if builds {
        history::sync(&mut s);
    }
    s
}

/// What a queued build is made from, as far as it is known before it runs: a build
/// that fails still says which commit or context it tried, so only a newer one
/// triggers it again.
fn record(s: &mut DockerBuildStatus, q: Queued<'_>) {
    s.rebuild_token = q.rebuild.map(str::to_string);
    let Some(i) = q.inputs else { return };
    if i.context.is_some() {
        s.context_digest = i.context.clone();
    }
    if i.commit.is_some() {
        s.revision = i.commit.clone();
    }
    if i.url.is_some() {
        s.source_version = i.url.clone();
    }
    if !i.bases.is_empty() {
        s.base_images = i
            .bases
            .iter()
            .map(|(image, digest)| BaseImage {
                image: image.clone(),
                digest: digest.clone(),
            })
            .collect();
    }
}

/// Adds what the source warned about (unknown fields) to the message and the Ready
/// condition's, as kubectl's field validation warns: seen, and the build goes on.
pub fn with_warnings(mut s: DockerBuildStatus, warnings: &[String]) -> DockerBuildStatus {
    if warnings.is_empty() {
        return s;
    }
    let note = format!(" (warning: {})", warnings.join(", "));
    let messages = s.message.iter_mut().chain(
        s.conditions
            .iter_mut()
            .filter(|c| c.type_ == "Ready")
            .filter_map(|c| c.message.as_mut()),
    );
    for m in messages {
        m.push_str(&note);
    }
    s
}

fn reason_of(p: Phase) -> &'static str {
    match p {
        Phase::Pushing => "Pushing",
        Phase::Queued => "Queued",
        _ => "Building",
    }
}

/// What a person watching the resource should hear about a status change, if
/// anything: a new phase, or a retry (the Events `kubectl describe` lists).
pub fn notice(prev: Option<&DockerBuildStatus>, next: &DockerBuildStatus) -> Option<Notice> {
    let reason_of = |s: &DockerBuildStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .and_then(|c| c.reason.clone())
    };
    let message = next.message.clone().unwrap_or_default();
    let phase = next.phase?;
    let same_phase = prev.and_then(|p| p.phase) == Some(phase);
    let same_spec = prev.is_some_and(|p| p.spec_hash == next.spec_hash);
    if same_phase && same_spec {
        let retrying = reason_of(next).as_deref() == Some("Retrying");
        if retrying && prev.and_then(reason_of).as_deref() != Some("Retrying") {
            return Some(Notice {
                warning: true,
                reason: "Retrying",
                message,
            });
        }
        return None;
    }
    let (warning, reason) = match phase {
        Phase::Pending => (false, "Waiting"),
        Phase::Queued => (false, "Queued"),
        Phase::Building => (false, "Started"),
        Phase::Pushing => return None,
        Phase::Succeeded => (false, "Pushed"),
        Phase::Failed => (true, "Failed"),
        Phase::Cancelled => (false, "Cancelled"),
    };
    let message = match phase {
        Phase::Succeeded => format!(
            "pushed {} as {}",
            next.image.as_deref().unwrap_or("the image"),
            next.pushed_tags.join(", ")
        ),
        Phase::Failed => format!(
            "{}: {message}",
            reason_of(next).unwrap_or_else(|| "Failed".into())
        ),
        _ => message,
    };
    Some(Notice {
        warning,
        reason,
        message,
    })
}

/// Updates the Ready condition; its transition time moves only when its status does.
fn set_ready(conds: &mut Vec<Condition>, status: &str, reason: &str, message: &str, now: &str) {
    let prev = conds.iter().position(|c| c.type_ == "Ready");
    let last_transition_time = match prev.map(|i| &conds[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(now.to_string()),
    };
    let cond = Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time,
    };
    match prev {
        Some(i) => conds[i] = cond,
        None => conds.push(cond),
    }
}

#[cfg(test)]
mod tests;
