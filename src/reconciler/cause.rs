//! Why a build runs, and what it was built from: the inputs beside the spec that a
//! trigger may change (context files, git commit, url version, base digests).

use std::collections::BTreeMap;
use std::fmt;

use super::deps::normalize_ref;
use crate::api::{DockerBuildStatus, Phase};
use crate::queue::Lane;

/// What a build is made from besides the spec, as far as slipway knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// Digest of a `path` context.
    pub context: Option<String>,
    /// Commit of a `git` source.
    pub commit: Option<String>,
    /// ETag or Last-Modified of a `url` source.
    pub url: Option<String>,
    /// Base images (normalised reference) and their digests.
    pub bases: BTreeMap<String, String>,
}

impl Inputs {
    /// What `status` says the last build was made from.
    pub fn recorded(status: &DockerBuildStatus) -> Self {
        Self {
            context: status.context_digest.clone(),
            commit: status.revision.clone(),
            url: status.source_version.clone(),
            bases: status
                .base_images
                .iter()
                .map(|b| (normalize_ref(&b.image), b.digest.clone()))
                .collect(),
        }
    }

    /// The first input that differs between what was built (`self`) and what is
    /// current, as the trigger it makes. `failed`: the last build failed, so a value
    /// it could not record (a commit it never fetched) still counts as a change.
    pub fn changed(
        &self,
        current: &Inputs,
        source: bool,
        base: bool,
        failed: bool,
    ) -> Option<Cause> {
        let moved = |old: &Option<String>, new: &Option<String>| match (old, new) {
            (Some(o), Some(n)) => o != n,
            (None, Some(_)) => failed,
            _ => false,
        };
        if source {
            if moved(&self.context, &current.context) {
                return Some(Cause::Context);
            }
            if moved(&self.commit, &current.commit) {
                return Some(Cause::Git {
                    from: self.commit.clone().unwrap_or_default(),
                    to: current.commit.clone().unwrap_or_default(),
                });
            }
            if moved(&self.url, &current.url) {
                return Some(Cause::Url);
            }
        }
        if base {
            for (image, digest) in &current.bases {
                // a base the last build did not record (not in a registry then) is no change
                if self.bases.get(image).is_some_and(|d| d != digest) {
                    return Some(Cause::Base {
                        image: image.clone(),
                        digest: digest.clone(),
                    });
                }
            }
        }
        None
    }
}

/// Why a build runs (`status.triggeredBy`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A new resource or a changed spec.
    Spec,
    /// `spec.rebuild` changed.
    Rebuild,
    /// A file of the `path` context changed.
    Context,
    /// The git branch or tag moved.
    Git { from: String, to: String },
    /// A base image has a new digest.
    Base { image: String, digest: String },
    /// The `url` source changed.
    Url,
    /// A build that was under way when slipway stopped starts again, for the reason
    /// it first ran (the status's `triggeredBy`).
    Resume(Option<String>),
    /// A build that waited (for a base image, for credentials) starts, for the
    /// reason it was asked for.
    Waited(Option<String>),
}

impl Cause {
    pub fn lane(&self) -> Lane {
        match self {
            Cause::Spec | Cause::Rebuild => Lane::User,
            Cause::Resume(t) | Cause::Waited(t) => match t.as_deref() {
                None | Some("spec") | Some("rebuild") => Lane::User,
                Some(_) => Lane::Auto,
            },
            _ => Lane::Auto,
        }
    }

    /// A build of its own (a new number in `status.history`), not one resumed.
    pub fn is_new(&self) -> bool {
        !matches!(self, Cause::Resume(_))
    }
}

fn short(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Spec => f.write_str("spec"),
            Cause::Rebuild => f.write_str("rebuild"),
            Cause::Context => f.write_str("context"),
            Cause::Git { from, to } if from.is_empty() => write!(f, "git: {}", short(to, 7)),
            Cause::Git { from, to } => write!(f, "git: {}..{}", short(from, 7), short(to, 7)),
            Cause::Base { image, digest } => {
                // sha256: and 12 hex digits, as `docker images` shows an ID
                write!(f, "base: {image}@{}", short(digest, 19))
            }
            Cause::Url => f.write_str("url"),
            Cause::Resume(t) | Cause::Waited(t) => f.write_str(t.as_deref().unwrap_or("spec")),
        }
    }
}

/// What the resource's build would be made from now, and which triggers it accepts.
#[derive(Clone, Debug, Default)]
pub struct Current<'a> {
    pub inputs: Inputs,
    /// `spec.rebuild`.
    pub rebuild: Option<&'a str>,
    /// `spec.triggers.source` (on unless turned off).
    pub source: bool,
    /// `spec.triggers.base` (on unless turned off).
    pub base: bool,
}

/// The key's queued or running build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub hash: String,
    pub inputs: Inputs,
    pub running: bool,
}

/// Why a build of a spec whose hash differs from the status's runs.
pub fn spec_cause(status: Option<&DockerBuildStatus>, rebuild: Option<&str>) -> Cause {
    match status {
        Some(s)
            if s.spec_hash.is_some()
                && rebuild.is_some()
                && s.rebuild_token.as_deref() != rebuild =>
        {
            Cause::Rebuild
        }
        _ => Cause::Spec,
    }
}

/// True when the last build of this status failed (or was cancelled).
pub fn failed(status: &DockerBuildStatus) -> bool {
    matches!(status.phase, Some(Phase::Failed) | Some(Phase::Cancelled))
}
