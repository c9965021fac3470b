//! The build's steps as a person reads them (`status.stages`), gathered from
//! BuildKit's vertexes: the Dockerfile's steps (`[build 2/3] RUN make`), cached or
//! run, how long each took, and which one failed. BuildKit's housekeeping
//! (`[internal] load build definition`, `[auth] ...`, `exporting to image`) is left
//! out: it is not in the Dockerfile, and the progress log still shows it.

use std::collections::HashMap;

use bollard::moby::buildkit::v1::Vertex;

use crate::api::StageStep;

/// At most this many steps are kept: a status must stay small (etcd's object limit).
pub const MAX_STAGES: usize = 100;
/// A step's name is cut to this many characters (a long `RUN` line, a heredoc).
const MAX_NAME: usize = 200;

/// One Dockerfile step, as the vertexes reported so far describe it.
#[derive(Default)]
struct Step {
    name: String,
    cached: bool,
    /// (seconds, nanoseconds) since the epoch.
    started: Option<(i64, i32)>,
    completed: Option<(i64, i32)>,
    failed: bool,
}

/// Accumulates the steps of one build from BuildKit's status messages.
#[derive(Default)]
pub struct Stages {
    /// Vertex digests of Dockerfile steps, in the order BuildKit first named them
    /// (the order of the build graph, so the Dockerfile's order within a stage).
    order: Vec<String>,
    steps: HashMap<String, Step>,
}

impl Stages {
    /// Takes in what one vertex message says (BuildKit repeats a vertex as it
    /// starts, completes or fails; the latest word wins, a failure sticks).
    pub fn update(&mut self, v: &Vertex) {
        if !is_dockerfile_step(&v.name) {
            return;
        }
        let step = self.steps.entry(v.digest.clone()).or_insert_with(|| {
            self.order.push(v.digest.clone());
            Step::default()
        });
        step.name = v.name.clone();
        step.cached |= v.cached;
        if let Some(t) = &v.started {
            step.started = Some((t.seconds, t.nanos));
        }
        if let Some(t) = &v.completed {
            step.completed = Some((t.seconds, t.nanos));
        }
        // a sibling stage stopped because another failed did not fail itself
        if !v.error.is_empty() && !v.error.contains("context canceled") {
            step.failed = true;
        }
    }

    /// The steps that ran or came from the cache (not those never reached), at most
    /// [`MAX_STAGES`]: beyond that the earliest are dropped, never a failed one.
    pub fn list(&self) -> Vec<StageStep> {
        let out: Vec<StageStep> = self
            .order
            .iter()
            .filter_map(|d| self.steps.get(d))
            .filter(|s| s.cached || s.started.is_some())
            .map(|s| StageStep {
                name: cut(&s.name),
                cached: s.cached,
                duration_seconds: match (s.cached, s.started, s.completed) {
                    (false, Some(a), Some(b)) => Some(seconds_between(a, b)),
                    _ => None,
                },
                failed: s.failed,
            })
            .collect();
        // the Dockerfile's order, not arrival order: a cached FROM may be reported
        // after the RUN steps that follow it
        let mut stages: Vec<&str> = Vec::new();
        let mut keys = Vec::with_capacity(out.len());
        for step in &out {
            let (stage, n) = position(&step.name);
            let rank = stages.iter().position(|s| *s == stage).unwrap_or_else(|| {
                stages.push(stage);
                stages.len() - 1
            });
            keys.push((rank, n));
        }
        let mut keyed: Vec<_> = keys.into_iter().zip(out).collect();
        keyed.sort_by_key(|(k, _)| *k);
        let mut out: Vec<StageStep> = keyed.into_iter().map(|(_, s)| s).collect();
        while out.len() > MAX_STAGES {
            match out.iter().position(|s| !s.failed) {
                Some(i) => {
                    out.remove(i);
                }
                None => out.truncate(MAX_STAGES),
            }
        }
        out
    }
}

/// A one-line account of the steps, for a Mesos status update's message and logs.
pub fn summary(steps: &[StageStep]) -> String {
    let cached = steps.iter().filter(|s| s.cached).count();
    let mut line = format!(
        "{} step{}, {cached} cached",
        steps.len(),
        if steps.len() == 1 { "" } else { "s" }
    );
    if let Some(f) = steps.iter().find(|s| s.failed) {
        line.push_str(&format!("; failed: {}", f.name));
    }
    line
}

/// One step for a person: `[2/3] RUN make (3.1 s)`, `(cached)`, `(failed after 0.4 s)`.
pub fn line(s: &StageStep) -> String {
    let how = match (s.cached, s.duration_seconds, s.failed) {
        (true, ..) => "cached".to_string(),
        (_, Some(d), true) => format!("failed after {d:.1} s"),
        (_, None, true) => "failed".to_string(),
        (_, Some(d), false) => format!("{d:.1} s"),
        (_, None, false) => "did not finish".to_string(),
    };
    format!("{} ({how})", s.name)
}

/// `[2/3] RUN make` or `[build 2/3] RUN make`: a Dockerfile step numbers itself
/// `N/M` inside the brackets; `[internal] ...` and `[auth] ...` do not.
fn is_dockerfile_step(name: &str) -> bool {
    let Some((label, _)) = name.strip_prefix('[').and_then(|r| r.split_once("] ")) else {
        return false;
    };
    let Some(counter) = label.rsplit(' ').next() else {
        return false;
    };
    counter.split_once('/').is_some_and(|(n, m)| {
        !n.is_empty()
            && !m.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && m.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Seconds from `a` to `b`, rounded to a tenth (never negative).
fn seconds_between(a: (i64, i32), b: (i64, i32)) -> f64 {
    let nanos = (b.0 - a.0) as f64 * 1e9 + f64::from(b.1 - a.1);
    (nanos.max(0.0) / 1e8).round() / 10.0
}

fn cut(name: &str) -> String {
    match name.char_indices().nth(MAX_NAME) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name.to_string(),
    }
}

/// `[build 2/3] RUN make` → ("build", 2); `[2/3] ...` → ("", 2).
fn position(name: &str) -> (&str, u32) {
    let inner = name
        .strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .map_or("", |(i, _)| i);
    let (stage, count) = inner.rsplit_once(' ').unwrap_or(("", inner));
    let n = count
        .split_once('/')
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(u32::MAX);
    (stage, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `v` started and completed at these (seconds, nanoseconds); the timestamp type
    /// is not re-exported by bollard, so it is filled in place.
    fn timed(mut v: Vertex, started: Option<(i64, i32)>, completed: Option<(i64, i32)>) -> Vertex {
        if let Some((s, n)) = started {
            let t = v.started.get_or_insert_with(Default::default);
            (t.seconds, t.nanos) = (s, n);
        }
        if let Some((s, n)) = completed {
            let t = v.completed.get_or_insert_with(Default::default);
            (t.seconds, t.nanos) = (s, n);
        }
        v
    }

    fn v(digest: &str, name: &str) -> Vertex {
        Vertex {
            digest: digest.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    /// As in CI: the base image's FROM, cached, reported after the RUN steps.
    #[test]
    fn steps_are_listed_in_the_dockerfiles_order_not_as_reported() {
        let mut s = Stages::default();
        for (d, name) in [
            ("b", "[one 2/2] RUN a"),
            ("c", "[stage-2 2/3] COPY --from=one /a /a"),
            ("a", "[one 1/2] FROM base"),
            ("e", "[stage-2 3/3] RUN b"),
            ("d", "[stage-2 1/3] FROM base"),
        ] {
            let mut x = v(d, name);
            x.cached = true;
            s.update(&x);
        }
        let names: Vec<String> = s.list().into_iter().map(|x| x.name).collect();
        assert_eq!(
            names,
            [
                "[one 1/2] FROM base",
                "[one 2/2] RUN a",
                "[stage-2 1/3] FROM base",
                "[stage-2 2/3] COPY --from=one /a /a",
                "[stage-2 3/3] RUN b"
            ]
        );
        assert_eq!(position("[10/12] RUN x"), ("", 10));
    }

    #[test]
    fn dockerfile_steps_are_told_from_housekeeping() {
        for step in [
            "[1/3] FROM docker.io/library/busybox:latest",
            "[build 2/3] RUN make",
            "[stage-1 10/12] COPY --from=build /out /out",
        ] {
            assert!(is_dockerfile_step(step), "{step}");
        }
        for other in [
            "[internal] load build definition from Dockerfile",
            "[internal] load metadata for docker.io/library/busybox:latest",
            "[auth] library/busybox:pull token for registry-1.docker.io",
            "exporting to image",
            "copy /context /",
            "[a/b] RUN x",
            "[1/] RUN x",
        ] {
            assert!(!is_dockerfile_step(other), "{other}");
        }
    }

    /// The vertexes of a recorded two-step build (digests shortened): BuildKit names
    /// every vertex first, then repeats each as it starts and completes.
    #[test]
    fn a_recorded_build_lists_its_steps_with_durations() {
        let mut s = Stages::default();
        let named = [
            v("i", "[internal] load build definition from Dockerfile"),
            v("f", "[1/3] FROM 127.0.0.1:5055/slipway-test/base:latest"),
            v("a", "[2/3] RUN sleep 1 && echo one > /one"),
            v("b", "[3/3] RUN echo two > /two"),
            v("e", "exporting to image"),
        ];
        named.iter().for_each(|x| s.update(x));
        assert!(s.list().is_empty(), "nothing started yet");
        let f = timed(
            Vertex {
                cached: true,
                ..named[1].clone()
            },
            Some((100, 0)),
            Some((100, 0)),
        );
        let a_started = timed(named[2].clone(), Some((100, 10_000_000)), None);
        let a_done = timed(a_started.clone(), None, Some((101, 260_000_000)));
        let b_done = timed(
            named[3].clone(),
            Some((101, 300_000_000)),
            Some((101, 340_000_000)),
        );
        let export = timed(named[4].clone(), Some((101, 400_000_000)), Some((102, 0)));
        for x in [f, a_started.clone()] {
            s.update(&x);
        }
        // while a step runs it shows without a duration
        assert_eq!(
            s.list()[1],
            StageStep {
                name: "[2/3] RUN sleep 1 && echo one > /one".into(),
                ..Default::default()
            }
        );
        for x in [a_done, b_done, export] {
            s.update(&x);
        }
        assert_eq!(
            s.list(),
            vec![
                StageStep {
                    name: "[1/3] FROM 127.0.0.1:5055/slipway-test/base:latest".into(),
                    cached: true,
                    ..Default::default()
                },
                StageStep {
                    name: "[2/3] RUN sleep 1 && echo one > /one".into(),
                    duration_seconds: Some(1.3),
                    ..Default::default()
                },
                StageStep {
                    name: "[3/3] RUN echo two > /two".into(),
                    duration_seconds: Some(0.0),
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn the_failed_step_is_marked_and_a_cancelled_sibling_is_not() {
        let mut s = Stages::default();
        let one = timed(v("one", "[one 2/2] RUN make"), Some((10, 0)), None);
        let two = timed(v("two", "[two 2/2] RUN test"), Some((10, 0)), None);
        let never = v("fin", "[3/3] COPY --from=one /out /out");
        for x in [&one, &two, &never] {
            s.update(x);
        }
        let cancelled = Vertex {
            error: "context canceled".into(),
            ..two
        };
        s.update(&timed(cancelled, None, Some((12, 500_000_000))));
        let failed = Vertex {
            error: "process \"/bin/sh -c make\" did not complete successfully: exit code: 2".into(),
            ..one
        };
        s.update(&timed(failed, None, Some((12, 450_000_000))));
        let list = s.list();
        assert_eq!(
            list.iter()
                .map(|x| (x.name.as_str(), x.failed, x.duration_seconds))
                .collect::<Vec<_>>(),
            vec![
                ("[one 2/2] RUN make", true, Some(2.5)),
                ("[two 2/2] RUN test", false, Some(2.5)),
            ],
            "the step never reached is not listed"
        );
    }

    #[test]
    fn long_builds_keep_the_last_steps_and_the_failed_one() {
        let mut s = Stages::default();
        for i in 0..150 {
            let step = Vertex {
                error: if i == 3 {
                    "exit code: 1".into()
                } else {
                    "".into()
                },
                ..v(&format!("d{i}"), &format!("[{}/150] RUN step {i}", i + 1))
            };
            s.update(&timed(step, Some((i, 0)), Some((i + 1, 0))));
        }
        let list = s.list();
        assert_eq!(list.len(), MAX_STAGES);
        assert!(list[0].failed && list[0].name.ends_with("RUN step 3"));
        assert!(list[1].name.ends_with("RUN step 51"), "{}", list[1].name);
        assert!(list[99].name.ends_with("RUN step 149"));
        // a name is cut, not the status
        let long = v("long", &format!("[1/1] RUN {}", "x".repeat(500)));
        let mut s = Stages::default();
        s.update(&timed(long, Some((0, 0)), None));
        let long = s.list().pop().unwrap().name;
        assert_eq!(long.chars().count(), MAX_NAME + 1);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn a_step_reads_as_a_line() {
        let step = |cached, duration_seconds, failed| StageStep {
            name: "[2/3] RUN make".into(),
            cached,
            duration_seconds,
            failed,
        };
        assert_eq!(line(&step(true, None, false)), "[2/3] RUN make (cached)");
        assert_eq!(
            line(&step(false, Some(3.0), false)),
            "[2/3] RUN make (3.0 s)"
        );
        assert_eq!(
            line(&step(false, Some(0.4), true)),
            "[2/3] RUN make (failed after 0.4 s)"
        );
        assert_eq!(
            line(&step(false, None, false)),
            "[2/3] RUN make (did not finish)"
        );
        assert_eq!(
            summary(&[step(true, None, false), step(false, Some(1.0), true)]),
            "2 steps, 1 cached; failed: [2/3] RUN make"
        );
    }
}
