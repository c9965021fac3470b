//! The reconciler: level-triggered. It compares what the spec asks (its hash, which
//! covers the rebuild token) with what the status says was built, and decides.
//! [`decide`] and the status transitions are pure; [`controller`] does the I/O.

mod claims;
pub mod controller;
mod deps;
mod status;
mod updates;

pub use controller::{Context, Settings, Summary, reconcile, run};
pub use deps::{Dependencies, Images, normalize_ref};
pub use status::Transition;

use crate::api::{DockerBuildStatus, Phase};

/// What to do with one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The status already describes this spec, or its build is under way.
    Nothing,
    /// Start a build of this spec.
    Build,
    /// A build of an older spec is under way: cancel it, then build this one.
    Replace,
}

/// `spec_hash` is the current spec's hash; `in_flight` the hash of the build queued
/// or running for this resource, if any.
pub fn decide(
    spec_hash: &str,
    status: Option<&DockerBuildStatus>,
    in_flight: Option<&str>,
) -> Decision {
    match in_flight {
        Some(h) if h == spec_hash => return Decision::Nothing,
        Some(_) => return Decision::Replace,
        None => {}
    }
    let Some(status) = status else {
        return Decision::Build;
    };
    if status.spec_hash.as_deref() != Some(spec_hash) {
        return Decision::Build;
    }
    match status.phase {
        // a finished build of this very spec: a failure fails once
        Some(p) if p.is_terminal() => Decision::Nothing,
        // Pending (waiting on a base image), or a build that was under way when
        // slipway stopped and no longer runs anywhere: (re)start it
        _ => Decision::Build,
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

    fn status(hash: &str, phase: Phase) -> DockerBuildStatus {
        DockerBuildStatus {
            spec_hash: Some(hash.into()),
            phase: Some(phase),
            ..Default::default()
        }
    }

    #[test]
    fn new_resource_builds() {
        assert_eq!(decide("h1", None, None), Decision::Build);
        assert_eq!(
            decide("h1", Some(&DockerBuildStatus::default()), None),
            Decision::Build
        );
    }

    #[test]
    fn status_only_change_does_nothing() {
        for p in [Phase::Succeeded, Phase::Failed, Phase::Cancelled] {
            assert_eq!(
                decide("h1", Some(&status("h1", p)), None),
                Decision::Nothing
            );
        }
    }

    #[test]
    fn spec_change_rebuilds_even_after_failure() {
        assert_eq!(
            decide("h2", Some(&status("h1", Phase::Succeeded)), None),
            Decision::Build
        );
        assert_eq!(
            decide("h2", Some(&status("h1", Phase::Failed)), None),
            Decision::Build
        );
    }

    #[test]
    fn running_build_of_same_spec_is_left_alone() {
        assert_eq!(
            decide("h1", Some(&status("h1", Phase::Building)), Some("h1")),
            Decision::Nothing
        );
    }

    #[test]
    fn spec_change_mid_build_replaces_it() {
        assert_eq!(
            decide("h2", Some(&status("h1", Phase::Building)), Some("h1")),
            Decision::Replace
        );
    }

    #[test]
    fn build_lost_in_a_restart_starts_again() {
        for p in [
            Phase::Queued,
            Phase::Building,
            Phase::Pushing,
            Phase::Pending,
        ] {
            assert_eq!(decide("h1", Some(&status("h1", p)), None), Decision::Build);
        }
    }
}
