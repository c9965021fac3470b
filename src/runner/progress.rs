//! BuildKit's status stream (vertexes, their logs) mapped onto slipway's build events,
//! and a failure named after the failing step. Pure: both BuildKit engines (the Docker
//! daemon's and a standalone buildkitd) feed it what they receive.

use std::collections::{HashMap, HashSet, VecDeque};

use bollard_buildkit_proto::moby::buildkit::v1::StatusResponse;

use super::errors::{build_error, failure_message};
use crate::Error;
use crate::api::StageStep;
use crate::runner::stages::Stages;
use crate::runner::{BuildEvent, Events};

/// Lines of a step's output kept to explain its failure (as the classic path does).
const TAIL: usize = 5;

/// A [`Progress`] that sends the build's steps when the build ends however it ends:
/// done, failed, or dropped by a timeout or a cancel (then the step that was running
/// shows without a duration).
pub(crate) struct StagesOnDrop<'a> {
    pub(crate) progress: Progress,
    events: &'a Events,
}

impl<'a> StagesOnDrop<'a> {
    pub(crate) fn new(events: &'a Events) -> Self {
        Self {
            progress: Progress::default(),
            events,
        }
    }

    /// The steps so far, for the outcome.
    pub(crate) fn list(&self) -> Vec<StageStep> {
        self.progress.stages.list()
    }
}

impl Drop for StagesOnDrop<'_> {
    fn drop(&mut self) {
        let stages = self.progress.stages.list();
        if !stages.is_empty() {
            let _ = self.events.send(BuildEvent::Stages(stages));
        }
    }
}

/// A Dockerfile step (`[one 2/2] RUN make`) or the export, as opposed to BuildKit's
/// housekeeping (`[internal] load metadata ...`, `copy /context /`).
fn is_step(name: &str) -> bool {
    (name.starts_with('[') && !name.starts_with("[internal]")) || name.starts_with("exporting")
}

/// What BuildKit has said so far about the build's steps (vertexes).
#[derive(Default)]
pub(crate) struct Progress {
    names: HashMap<String, String>,
    /// Vertexes already reported as started or cached.
    announced: HashSet<String>,
    /// Last lines of output per vertex: parallel stages interleave their logs.
    tails: HashMap<String, VecDeque<String>>,
    /// The vertex that failed (BuildKit sets its `error`) and whether it was only
    /// cancelled: the real cause wins over a sibling stage stopped because of it.
    failed: Option<(String, bool)>,
    /// The step started last, blamed when no vertex says it failed.
    last_step: Option<String>,
    /// The Dockerfile's steps so far, for `status.stages`.
    pub(crate) stages: Stages,
}

impl Progress {
    /// The events one status message means: a Step when a Dockerfile step starts
    /// (`[2/3] RUN make`) or is found cached (`CACHED [2/3] RUN make`), a Log for
    /// BuildKit's own housekeeping and every line of output.
    pub(crate) fn update(&mut self, status: &StatusResponse) -> Vec<BuildEvent> {
        let mut out = Vec::new();
        for v in &status.vertexes {
            self.stages.update(v);
            self.names.insert(v.digest.clone(), v.name.clone());
            if !v.error.is_empty() {
                // a sibling stage stopped because of the failure is not the cause
                let cancelled = v.error.contains("context canceled");
                if self.failed.as_ref().is_none_or(|(_, c)| *c && !cancelled) {
                    self.failed = Some((v.digest.clone(), cancelled));
                }
            }
            if self.announced.contains(&v.digest) {
                continue;
            }
            if v.cached {
                // a step still shows, as the classic builder's `Step 2/3` does
                self.announced.insert(v.digest.clone());
                let line = format!("CACHED {}", v.name);
                out.push(if is_step(&v.name) {
                    BuildEvent::Step(line)
                } else {
                    BuildEvent::Log(line)
                });
            } else if v.started.is_some() {
                self.announced.insert(v.digest.clone());
                if is_step(&v.name) {
                    self.last_step = Some(v.digest.clone());
                    out.push(BuildEvent::Step(v.name.clone()));
                } else {
                    out.push(BuildEvent::Log(v.name.clone()));
                }
            }
        }
        for l in &status.logs {
            let text = String::from_utf8_lossy(&l.msg);
            let tail = self.tails.entry(l.vertex.clone()).or_default();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if tail.len() == TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.to_string());
                out.push(BuildEvent::Log(line.to_string()));
            }
        }
        for w in &status.warnings {
            out.push(BuildEvent::Log(format!(
                "warning: {}",
                String::from_utf8_lossy(&w.short)
            )));
        }
        out
    }

    /// The build's failure, naming the failing step and its last lines of output.
    pub(crate) fn failure(&self, error: &str) -> Error {
        let Some(digest) = self
            .failed
            .as_ref()
            .map(|(d, _)| d)
            .or(self.last_step.as_ref())
        else {
            return Error::BuildFailed(failure_message("", error, &[]));
        };
        let step = self.names.get(digest).map(String::as_str).unwrap_or("");
        let tail: Vec<String> = self
            .tails
            .get(digest)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        build_error(step, error, &tail)
    }
}

#[cfg(test)]
mod tests {
    use bollard_buildkit_proto::moby::buildkit::v1::{Vertex, VertexLog};

    use super::*;

    fn vertex(digest: &str, name: &str) -> Vertex {
        Vertex {
            digest: digest.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn started(digest: &str, name: &str) -> Vertex {
        Vertex {
            started: Some(Default::default()),
            ..vertex(digest, name)
        }
    }

    fn log(digest: &str, text: &str) -> VertexLog {
        VertexLog {
            vertex: digest.into(),
            msg: text.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn status(vertexes: Vec<Vertex>, logs: Vec<VertexLog>) -> StatusResponse {
        StatusResponse {
            vertexes,
            logs,
            ..Default::default()
        }
    }

    #[test]
    fn a_step_is_announced_once_when_it_starts() {
        let mut p = Progress::default();
        // known but not started yet: nothing to say
        assert!(
            p.update(&status(vec![vertex("a", "[2/3] RUN make")], vec![]))
                .is_empty()
        );
        let evs = p.update(&status(
            vec![
                started("i", "[internal] load build definition from Dockerfile"),
                started("c", "copy /context /"),
                started("a", "[2/3] RUN make"),
                started("e", "exporting to image"),
            ],
            vec![],
        ));
        assert_eq!(
            evs,
            vec![
                BuildEvent::Log("[internal] load build definition from Dockerfile".into()),
                BuildEvent::Log("copy /context /".into()),
                BuildEvent::Step("[2/3] RUN make".into()),
                BuildEvent::Step("exporting to image".into()),
            ]
        );
        // BuildKit repeats the vertex when it completes
        assert!(
            p.update(&status(vec![started("a", "[2/3] RUN make")], vec![]))
                .is_empty()
        );
        let cached = Vertex {
            cached: true,
            ..started("b", "[1/3] FROM base")
        };
        assert_eq!(
            p.update(&status(vec![cached], vec![])),
            vec![BuildEvent::Step("CACHED [1/3] FROM base".into())]
        );
    }

    #[test]
    fn output_becomes_log_lines() {
        let mut p = Progress::default();
        let evs = p.update(&status(
            vec![started("a", "[2/3] RUN make")],
            vec![log("a", "cc -c a.c\n\ncc -c b.c\n")],
        ));
        assert_eq!(
            evs[1..],
            [
                BuildEvent::Log("cc -c a.c".into()),
                BuildEvent::Log("cc -c b.c".into())
            ]
        );
    }

    #[test]
    fn a_failure_names_the_failing_step_and_its_own_output() {
        let mut p = Progress::default();
        p.update(&status(
            vec![
                started("one", "[one 2/2] RUN make"),
                started("two", "[two 2/2] RUN test"),
            ],
            vec![
                log("one", "l1\nl2\nl3\nl4\nl5\nl6\n"),
                // the parallel stage's output is not the failing step's
                log("two", "testing\n"),
            ],
        ));
        let cancelled = Vertex {
            error: "context canceled".into(),
            ..started("two", "[two 2/2] RUN test")
        };
        let failed = Vertex {
            error: "exit code: 2".into(),
            ..started("one", "[one 2/2] RUN make")
        };
        // the sibling's cancellation may arrive first; the real cause still wins
        p.update(&status(vec![cancelled, failed], vec![]));
        let e = p.failure("executor failed running [/bin/sh -c make]: exit code: 2");
        assert!(matches!(e, Error::BuildFailed(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "build failed: step one 2/2 `RUN make` failed: executor failed running [/bin/sh -c make]: exit code: 2\noutput:\nl2\nl3\nl4\nl5\nl6"
        );
    }

    #[test]
    fn without_a_failed_vertex_the_last_step_is_blamed() {
        let mut p = Progress::default();
        assert_eq!(
            p.failure("boom").to_string(),
            "build failed: boom",
            "nothing started yet"
        );
        p.update(&status(vec![started("x", "exporting to image")], vec![]));
        assert_eq!(
            p.failure("disk full").to_string(),
            "build failed: step `exporting to image` failed: disk full"
        );
    }
}
