//! The reconciler: level-triggered. It compares what the spec asks (its hash, which
//! covers the rebuild token) with what the status says was built, and decides.
//! [`decide`] and the status transitions are pure; `reconcile.rs` (one pass over a
//! resource) and `run.rs` (the event loop) do the I/O, through `context.rs`.

mod cause;
mod claims;
mod context;
mod credentials;
mod deps;
mod kept;
mod observed;
mod reconcile;
mod requeue;
mod run;
mod status;
mod status_writer;
mod updates;

pub use cause::{Cause, Current, InFlight, Inputs};
pub use context::{Context, Settings, Summary};
pub use deps::{Dependencies, Images, normalize_ref};
pub use reconcile::{images_of, reconcile};
pub use run::run;
pub use status::Transition;

use crate::api::{DockerBuildStatus, Phase};
use cause::{failed, spec_cause};

/// What to do with one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The status already describes this spec and its inputs, or their build is
    /// under way (a running build of older inputs finishes first: one build of the
    /// newest state follows it).
    Nothing,
    /// Start a build (replacing a queued one of older inputs), for this reason.
    Build(Cause),
    /// A build of an older spec is under way: cancel it, then build this one.
    Replace,
}

/// `spec_hash` is the current spec's hash; `in_flight` the build queued or running
/// for this resource, if any; `current` what a build would be made from now.
pub fn decide(
    spec_hash: &str,
    status: Option<&DockerBuildStatus>,
    in_flight: Option<&InFlight>,
    current: &Current<'_>,
) -> Decision {
    if let Some(f) = in_flight {
        if f.hash != spec_hash {
            return Decision::Replace;
        }
        // the same spec: a queued build takes the newest inputs (one build of the
        // newest state, however many triggers came); a running one is left to finish
        let cause = f
            .inputs
            .changed(&current.inputs, current.source, current.base, true);
        return match cause {
            Some(c) if !f.running => Decision::Build(c),
            _ => Decision::Nothing,
        };
    }
    let Some(status) = status else {
        return Decision::Build(Cause::Spec);
    };
    if status.spec_hash.as_deref() != Some(spec_hash) {
        return Decision::Build(spec_cause(Some(status), current.rebuild));
    }
    match status.phase {
        // a finished build of this very spec: a failure fails once, until an input
        // (a commit, a context file, a base) changes
        Some(p) if p.is_terminal() => Inputs::recorded(status)
            .changed(
                &current.inputs,
                current.source,
                current.base,
                failed(status),
            )
            .map_or(Decision::Nothing, Decision::Build),
        // waiting (for a base image, for credentials): it may start now
        Some(Phase::Pending) => Decision::Build(Cause::Waited(status.triggered_by.clone())),
        // a build that was under way when slipway stopped and no longer runs
        // anywhere: start it again
        _ => Decision::Build(Cause::Resume(status.triggered_by.clone())),
    }
}

/// True when `status` says the image for `spec_hash` is in the registry.
pub fn is_built(status: Option<&DockerBuildStatus>, spec_hash: &str) -> bool {
    status.is_some_and(|s| {
        s.spec_hash.as_deref() == Some(spec_hash) && s.phase == Some(Phase::Succeeded)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::BaseImage;
    use crate::queue::Lane;

    fn status(hash: &str, phase: Phase) -> DockerBuildStatus {
        DockerBuildStatus {
            spec_hash: Some(hash.into()),
            phase: Some(phase),
            ..Default::default()
        }
    }

    fn now() -> Current<'static> {
        Current {
            source: true,
            base: true,
            ..Default::default()
        }
    }

    fn with_inputs(inputs: Inputs) -> Current<'static> {
        Current { inputs, ..now() }
    }

    fn flight(hash: &str, inputs: Inputs, running: bool) -> InFlight {
        InFlight {
            hash: hash.into(),
            inputs,
            running,
        }
    }

    fn context(d: &str) -> Inputs {
        Inputs {
            context: Some(d.into()),
            ..Default::default()
        }
    }

    #[test]
    fn new_resource_builds() {
        assert_eq!(
            decide("h1", None, None, &now()),
            Decision::Build(Cause::Spec)
        );
        assert_eq!(
            decide("h1", Some(&DockerBuildStatus::default()), None, &now()),
            Decision::Build(Cause::Spec)
        );
    }

    #[test]
    fn status_only_change_does_nothing() {
        for p in [Phase::Succeeded, Phase::Failed, Phase::Cancelled] {
            assert_eq!(
                decide("h1", Some(&status("h1", p)), None, &now()),
                Decision::Nothing
            );
        }
    }

    #[test]
    fn spec_change_rebuilds_even_after_failure() {
        assert_eq!(
            decide("h2", Some(&status("h1", Phase::Succeeded)), None, &now()),
            Decision::Build(Cause::Spec)
        );
        assert_eq!(
            decide("h2", Some(&status("h1", Phase::Failed)), None, &now()),
            Decision::Build(Cause::Spec)
        );
    }

    #[test]
    fn a_new_rebuild_token_says_rebuild() {
        let mut s = status("h1", Phase::Succeeded);
        s.rebuild_token = Some("1".into());
        let c = Current {
            rebuild: Some("2"),
            ..now()
        };
        assert_eq!(
            decide("h2", Some(&s), None, &c),
            Decision::Build(Cause::Rebuild)
        );
        let c = Current {
            rebuild: Some("1"),
            ..now()
        };
        assert_eq!(
            decide("h2", Some(&s), None, &c),
            Decision::Build(Cause::Spec)
        );
    }

    #[test]
    fn running_build_of_same_spec_is_left_alone() {
        assert_eq!(
            decide(
                "h1",
                Some(&status("h1", Phase::Building)),
                Some(&flight("h1", Inputs::default(), true)),
                &now()
            ),
            Decision::Nothing
        );
    }

    #[test]
    fn spec_change_mid_build_replaces_it() {
        assert_eq!(
            decide(
                "h2",
                Some(&status("h1", Phase::Building)),
                Some(&flight("h1", Inputs::default(), true)),
                &now()
            ),
            Decision::Replace
        );
    }

    #[test]
    fn build_lost_in_a_restart_starts_again_for_its_first_reason() {
        for p in [Phase::Queued, Phase::Building, Phase::Pushing] {
            let mut s = status("h1", p);
            s.triggered_by = Some("context".into());
            let d = decide("h1", Some(&s), None, &now());
            assert_eq!(d, Decision::Build(Cause::Resume(Some("context".into()))));
            let Decision::Build(c) = d else {
                unreachable!()
            };
            assert_eq!(c.lane(), Lane::Auto);
            assert!(!c.is_new());
        }
    }

    #[test]
    fn a_build_that_waited_starts_as_a_new_build_for_its_reason() {
        let mut s = status("h1", Phase::Pending);
        s.triggered_by = Some("spec".into());
        let d = decide("h1", Some(&s), None, &now());
        let Decision::Build(c) = d else {
            panic!("{d:?}")
        };
        assert!(c.is_new());
        assert_eq!((c.to_string().as_str(), c.lane()), ("spec", Lane::User));
    }

    #[test]
    fn a_changed_context_rebuilds_and_an_unchanged_one_does_not() {
        let mut s = status("h1", Phase::Succeeded);
        s.context_digest = Some("sha256:a".into());
        assert_eq!(
            decide("h1", Some(&s), None, &with_inputs(context("sha256:a"))),
            Decision::Nothing
        );
        assert_eq!(
            decide("h1", Some(&s), None, &with_inputs(context("sha256:b"))),
            Decision::Build(Cause::Context)
        );
        // not known yet (still being computed): no reason to build
        assert_eq!(decide("h1", Some(&s), None, &now()), Decision::Nothing);
        // the resource turned source triggers off
        let off = Current {
            source: false,
            ..with_inputs(context("sha256:b"))
        };
        assert_eq!(decide("h1", Some(&s), None, &off), Decision::Nothing);
    }

    #[test]
    fn a_new_commit_rebuilds_and_names_both_commits() {
        let mut s = status("h1", Phase::Succeeded);
        s.revision = Some("1111111aaaa".into());
        let cur = with_inputs(Inputs {
            commit: Some("2222222bbbb".into()),
            ..Default::default()
        });
        let d = decide("h1", Some(&s), None, &cur);
        assert_eq!(
            d,
            Decision::Build(Cause::Git {
                from: "1111111aaaa".into(),
                to: "2222222bbbb".into()
            })
        );
        let Decision::Build(c) = d else {
            unreachable!()
        };
        assert_eq!(c.to_string(), "git: 1111111..2222222");
        assert_eq!(c.lane(), Lane::Auto);
    }

    #[test]
    fn a_failed_build_that_recorded_no_commit_tries_a_new_one() {
        let cur = with_inputs(Inputs {
            commit: Some("2222222".into()),
            ..Default::default()
        });
        assert_eq!(
            decide("h1", Some(&status("h1", Phase::Failed)), None, &cur),
            Decision::Build(Cause::Git {
                from: String::new(),
                to: "2222222".into()
            })
        );
        // a success that recorded none (an older slipway) is no change
        assert_eq!(
            decide("h1", Some(&status("h1", Phase::Succeeded)), None, &cur),
            Decision::Nothing
        );
    }

    #[test]
    fn a_new_base_digest_rebuilds_and_an_unrecorded_base_does_not() {
        let mut s = status("h1", Phase::Succeeded);
        s.base_images = vec![BaseImage {
            image: "r/base".into(),
            digest: "sha256:0123456789abcdef".into(),
        }];
        let bases = |d: &str| {
            with_inputs(Inputs {
                bases: [
                    ("r/base:latest".to_string(), d.to_string()),
                    ("r/other:1".to_string(), "sha256:9".to_string()),
                ]
                .into(),
                ..Default::default()
            })
        };
        assert_eq!(
            decide("h1", Some(&s), None, &bases("sha256:0123456789abcdef")),
            Decision::Nothing
        );
        let d = decide("h1", Some(&s), None, &bases("sha256:fedcba9876543210ff"));
        let Decision::Build(c) = d else {
            panic!("expected a build, got {d:?}")
        };
        assert_eq!(c.to_string(), "base: r/base:latest@sha256:fedcba987654");
        let off = Current {
            base: false,
            ..bases("sha256:fedcba9876543210ff")
        };
        assert_eq!(decide("h1", Some(&s), None, &off), Decision::Nothing);
    }

    #[test]
    fn a_queued_build_takes_the_newest_inputs_and_a_running_one_finishes() {
        let s = status("h1", Phase::Queued);
        let queued = flight("h1", context("sha256:a"), false);
        assert_eq!(
            decide(
                "h1",
                Some(&s),
                Some(&queued),
                &with_inputs(context("sha256:b"))
            ),
            Decision::Build(Cause::Context)
        );
        assert_eq!(
            decide(
                "h1",
                Some(&s),
                Some(&queued),
                &with_inputs(context("sha256:a"))
            ),
            Decision::Nothing
        );
        let running = flight("h1", context("sha256:a"), true);
        assert_eq!(
            decide(
                "h1",
                Some(&s),
                Some(&running),
                &with_inputs(context("sha256:b"))
            ),
            Decision::Nothing
        );
    }
}
