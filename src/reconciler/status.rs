//! Status transitions: pure functions from the previous status and what happened
//! to the next status, with the `Ready` condition GitOps tools read.

use std::time::Duration;

use crate::Error;
use crate::api::{Condition, DockerBuildStatus, MesosTask, Phase, StageStep};
use crate::runner::BuildOutcome;
use crate::sources::Notice;

/// What happened to a resource.
#[derive(Debug)]
pub enum Transition<'a> {
    /// The resource cannot be built as written.
    Invalid(String),
    /// Waiting for another resource (its base image).
    Waiting(String),
    Queued,
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
    Failed(&'a Error),
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
        _ => DockerBuildStatus {
            conditions: prev.map(|p| p.conditions.clone()).unwrap_or_default(),
            ..Default::default()
        },
    };
    s.spec_hash = spec_hash.map(str::to_string);
    s.observed_generation = generation;
    let (phase, ready, reason, message): (Phase, &str, &str, String) = match t {
        Transition::Invalid(msg) => {
            s.completion_time = Some(now.into());
            (Phase::Failed, "False", "InvalidSpec", msg)
        }
        Transition::Waiting(msg) => (Phase::Pending, "Unknown", "Waiting", msg),
        Transition::Queued => {
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
            (
                Phase::Queued,
                "Unknown",
                "Launching",
                format!("launched on {at} as Mesos task {}", task.task_id),
            )
        }
        Transition::Running { host } => {
            s.start_time.get_or_insert_with(|| now.into());
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
            s.completion_time = Some(now.into());
            let n = out.pushed_tags.len();
            (
                Phase::Succeeded,
                "True",
                "Pushed",
                format!("pushed {n} tag{}", if n == 1 { "" } else { "s" }),
            )
        }
        Transition::Failed(err) => {
            s.completion_time = Some(now.into());
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
    s
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
mod tests {
    use super::*;

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:01:00Z";

    fn outcome() -> BuildOutcome {
        BuildOutcome {
            digest: "sha256:ab".into(),
            image: "r/a@sha256:ab".into(),
            pushed_tags: vec!["r/a:1".into(), "r/a:latest".into()],
            revision: None,
            ..Default::default()
        }
    }

    #[test]
    fn a_build_from_queue_to_success() {
        let q = next(None, Some("h"), None, Transition::Queued, T0);
        assert_eq!(q.phase, Some(Phase::Queued));
        assert_eq!(q.conditions[0].status, "Unknown");
        let b = next(
            Some(&q),
            Some("h"),
            None,
            Transition::Started {
                attempt: 1,
                backend: "local",
                remote: false,
            },
            T0,
        );
        assert_eq!(
            (b.phase, b.start_time.as_deref()),
            (Some(Phase::Building), Some(T0))
        );
        let p = next(
            Some(&b),
            Some("h"),
            None,
            Transition::Pushing { tags: 2 },
            T1,
        );
        assert_eq!(p.message.as_deref(), Some("pushing 2 tags"));
        let out = outcome();
        let s = next(Some(&p), Some("h"), None, Transition::Succeeded(&out), T1);
        assert_eq!(s.phase, Some(Phase::Succeeded));
        assert_eq!(s.image_digest.as_deref(), Some("sha256:ab"));
        assert_eq!(s.pushed_tags.len(), 2);
        assert_eq!(s.start_time.as_deref(), Some(T0));
        assert_eq!(s.completion_time.as_deref(), Some(T1));
        let ready = &s.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("Pushed"))
        );
        assert_eq!(ready.last_transition_time.as_deref(), Some(T1));
    }

    #[test]
    fn warnings_join_the_message_and_keep_the_phase() {
        let out = outcome();
        let s = next(None, Some("h"), None, Transition::Succeeded(&out), T0);
        let w = vec!["unknown field \"spec.timeoutSecs\"".to_string()];
        let s = with_warnings(s, &w);
        let want = "pushed 2 tags (warning: unknown field \"spec.timeoutSecs\")";
        assert_eq!(s.phase, Some(Phase::Succeeded));
        assert_eq!(s.message.as_deref(), Some(want));
        assert_eq!(s.conditions[0].message.as_deref(), Some(want));
        assert_eq!(with_warnings(s.clone(), &[]), s);
    }

    #[test]
    fn new_spec_drops_the_old_image() {
        let out = outcome();
        let s = next(None, Some("h1"), None, Transition::Succeeded(&out), T0);
        let q = next(Some(&s), Some("h2"), None, Transition::Queued, T1);
        assert_eq!((q.image.as_ref(), q.pushed_tags.len()), (None, 0));
        assert_eq!(q.spec_hash.as_deref(), Some("h2"));
    }

    #[test]
    fn failure_carries_the_error_and_reason() {
        let err = Error::BuildFailed("step 2/2 `RUN exit 3` failed".into());
        let s = next(None, Some("h"), Some(4), Transition::Failed(&err), T0);
        assert_eq!(s.phase, Some(Phase::Failed));
        assert_eq!(s.observed_generation, Some(4));
        assert!(s.message.as_deref().unwrap().contains("RUN exit 3"));
        assert_eq!(s.conditions[0].reason.as_deref(), Some("BuildFailed"));
        assert_eq!(s.conditions[0].status, "False");
    }

    #[test]
    fn ready_transition_time_moves_only_on_change() {
        let q = next(None, Some("h"), None, Transition::Queued, T0);
        let b = next(
            Some(&q),
            Some("h"),
            None,
            Transition::Started {
                attempt: 1,
                backend: "local",
                remote: false,
            },
            T1,
        );
        assert_eq!(b.conditions[0].last_transition_time.as_deref(), Some(T0));
    }

    #[test]
    fn a_mesos_build_stays_queued_until_its_task_runs() {
        let q = next(None, Some("h"), None, Transition::Queued, T0);
        let started = Transition::Started {
            attempt: 1,
            backend: "mesos",
            remote: true,
        };
        let s = next(Some(&q), Some("h"), None, started, T0);
        assert_eq!(
            (s.phase, s.start_time.as_deref()),
            (Some(Phase::Queued), None)
        );
        let too_big = "no Mesos offer fits: the build needs 64 CPUs".to_string();
        let s = next(Some(&s), Some("h"), None, Transition::Unplaced(too_big), T0);
        assert_eq!(s.phase, Some(Phase::Queued));
        assert!(s.message.as_deref().unwrap().contains("64 CPUs"));
        let task = MesosTask {
            framework_id: "fw".into(),
            task_id: "t1".into(),
            agent_id: "a1".into(),
        };
        let placed = Transition::Placed {
            host: "agent-7",
            task: &task,
        };
        let s = next(Some(&s), Some("h"), None, placed, T1);
        assert_eq!(s.mesos.as_ref(), Some(&task));
        assert_eq!(
            s.message.as_deref(),
            Some("launched on agent-7 as Mesos task t1")
        );
        let s = next(
            Some(&s),
            Some("h"),
            None,
            Transition::Running { host: "agent-7" },
            T1,
        );
        assert_eq!(
            (s.phase, s.start_time.as_deref()),
            (Some(Phase::Building), Some(T1))
        );
        let out = outcome();
        let done = next(Some(&s), Some("h"), None, Transition::Succeeded(&out), T1);
        assert_eq!(
            done.mesos.as_ref(),
            Some(&task),
            "kept: the user can find the task"
        );
        let again = next(Some(&done), Some("h2"), None, Transition::Queued, T1);
        assert_eq!(again.mesos, None);
    }

    #[test]
    fn a_failed_build_shows_its_steps_and_a_new_attempt_starts_clean() {
        let steps = vec![
            StageStep {
                name: "[1/2] FROM base".into(),
                cached: true,
                ..Default::default()
            },
            StageStep {
                name: "[2/2] RUN make".into(),
                duration_seconds: Some(1.5),
                failed: true,
                ..Default::default()
            },
        ];
        let started = Transition::Started {
            attempt: 1,
            backend: "local",
            remote: false,
        };
        let b = next(None, Some("h"), None, started, T0);
        let st = next(Some(&b), Some("h"), None, Transition::Stages(&steps), T1);
        // only the steps change: the build is still what it was
        assert_eq!(st.stages, steps);
        assert_eq!((st.phase, &st.message), (b.phase, &b.message));
        assert_eq!(st.conditions, b.conditions);
        let err = Error::BuildFailed("step 2/2 `RUN make` failed".into());
        let f = next(Some(&st), Some("h"), None, Transition::Failed(&err), T1);
        assert_eq!((f.phase, f.stages.clone()), (Some(Phase::Failed), steps));
        let again = Transition::Started {
            attempt: 2,
            backend: "local",
            remote: false,
        };
        assert!(next(Some(&f), Some("h"), None, again, T1).stages.is_empty());
        assert!(
            next(Some(&f), Some("h"), None, Transition::Queued, T1)
                .stages
                .is_empty()
        );
    }

    #[test]
    fn a_success_records_the_outcomes_steps() {
        let mut out = outcome();
        out.stages = vec![StageStep {
            name: "[2/2] RUN make".into(),
            cached: true,
            ..Default::default()
        }];
        let s = next(None, Some("h"), None, Transition::Succeeded(&out), T0);
        assert_eq!(s.stages, out.stages);
    }

    #[test]
    fn a_multi_platform_success_lists_each_platform_and_attestation_until_the_next_build() {
        let mut out = outcome();
        out.platforms = vec![crate::api::PlatformImage {
            platform: "linux/386".into(),
            digest: "sha256:386".into(),
        }];
        out.attestations = vec![crate::api::Attestation {
            predicate_type: "https://slsa.dev/provenance/v0.2".into(),
            digest: "sha256:att".into(),
            platform: Some("linux/386".into()),
        }];
        let s = next(None, Some("h"), None, Transition::Succeeded(&out), T0);
        assert_eq!(s.platforms, out.platforms);
        assert_eq!(s.attestations, out.attestations);
        // a new build of a changed spec does not show the old build's images
        let s = next(Some(&s), Some("h2"), None, Transition::Queued, T0);
        assert!(s.platforms.is_empty() && s.attestations.is_empty());
    }
}
