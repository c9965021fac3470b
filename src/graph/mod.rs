//! The image graph (`slipway graph`): every DockerBuild of a folder or a cluster and
//! the base images their `FROM` lines name, as Graphviz DOT or as SVG. What
//! `docker images -viz` drew for one host, for the whole family.
//!
//! [`build`] is pure: [`Member`]s in (read by [`load`]), a [`Graph`] out; [`dot`] and
//! [`svg`] only draw it.

pub mod dot;
pub mod load;
pub mod svg;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::api::{DockerBuildStatus, Phase};
use crate::reconciler::normalize_ref;

/// One DockerBuild, as the graph needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Member {
    /// `namespace/name`.
    pub key: String,
    /// The references it pushes (`registry/repository:tag`, one per tag).
    pub pushes: Vec<String>,
    /// The images its Dockerfile's `FROM` lines name, when that Dockerfile can be read
    /// here (inline and `path` sources); `None` for remote sources, whose bases only
    /// the last build's `status.baseImages` knows.
    pub from: Option<Vec<String>>,
    pub status: Option<DockerBuildStatus>,
}

impl Member {
    /// The base images it stands on: its Dockerfile's, else the last build's record.
    fn bases(&self) -> Vec<String> {
        match &self.from {
            Some(f) => f.clone(),
            None => self
                .status
                .iter()
                .flat_map(|s| &s.base_images)
                .map(|b| b.image.clone())
                .collect(),
        }
    }
}

/// A node: a DockerBuild, or a base image no DockerBuild builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Unique in the graph: the build's `namespace/name`, or the external image's
    /// normalised reference (always holds `:` or `@`, which names cannot).
    pub id: String,
    pub kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Build {
        phase: Option<Phase>,
        /// The first reference it pushes, `+N` more tags.
        image: Option<String>,
        /// First 12 hex digits of `status.imageDigest`.
        digest: Option<String>,
        /// `status.completionTime` of the last build.
        built: Option<String>,
    },
    External {
        /// The digest a dependent's last build resolved it to, shortened.
        digest: Option<String>,
    },
}

impl Node {
    pub fn is_external(&self) -> bool {
        matches!(self.kind, NodeKind::External { .. })
    }

    /// The label's lines: the name first, then what is known.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![self.id.clone()];
        match &self.kind {
            NodeKind::Build {
                phase,
                image,
                digest,
                built,
            } => {
                out.extend(image.clone());
                let phase = phase.map_or("Pending".to_string(), |p| format!("{p:?}"));
                let mut last = vec![phase];
                last.extend(digest.clone());
                last.extend(built.clone());
                out.push(last.join(" · "));
            }
            NodeKind::External { digest } => {
                let mut last = vec!["external base".to_string()];
                last.extend(digest.clone());
                out.push(last.join(" · "));
            }
        }
        out
    }

    /// The fill colour: one per phase; external bases are not filled.
    pub fn fill(&self) -> Option<&'static str> {
        match &self.kind {
            NodeKind::Build { phase, .. } => Some(phase_colour(*phase)),
            NodeKind::External { .. } => None,
        }
    }
}

/// Green for built, red for failed, amber while under way, grey before anything ran.
pub fn phase_colour(phase: Option<Phase>) -> &'static str {
    match phase {
        Some(Phase::Succeeded) => "#9be29b",
        Some(Phase::Failed) => "#f28b82",
        Some(Phase::Queued | Phase::Building | Phase::Pushing) => "#fdd663",
        Some(Phase::Cancelled) => "#d7aefb",
        Some(Phase::Pending) | None => "#d0d0d0",
    }
}

/// An edge from a base to an image built on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// The references as the dependent names them (`FROM` lines), comma-separated.
    pub label: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Graph {
    /// Builds sorted by key, then external bases sorted by reference.
    pub nodes: Vec<Node>,
    /// Sorted by (from, to).
    pub edges: Vec<Edge>,
}

/// `sha256:0123456789abcdef…` -> `0123456789ab`.
pub fn short_digest(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// The graph of `members`. A member whose key appears twice is drawn once (the first).
pub fn build(members: &[Member]) -> Graph {
    let mut seen = BTreeSet::new();
    let members: Vec<&Member> = members
        .iter()
        .filter(|m| seen.insert(m.key.clone()))
        .collect();
    // normalised reference -> keys pushing it; matched as the controller orders builds
    let mut producers: HashMap<String, BTreeSet<&str>> = HashMap::new();
    for m in &members {
        for r in &m.pushes {
            producers
                .entry(normalize_ref(r))
                .or_default()
                .insert(&m.key);
        }
    }
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut externals: BTreeMap<String, Option<String>> = BTreeMap::new();
    for m in &members {
        let recorded: HashMap<String, &str> = m
            .status
            .iter()
            .flat_map(|s| &s.base_images)
            .map(|b| (normalize_ref(&b.image), b.digest.as_str()))
            .collect();
        for base in m.bases() {
            let n = normalize_ref(&base);
            let from: Vec<String> = match producers.get(&n) {
                // a build standing on its own image is no family (the controller
                // does not wait for itself either)
                Some(p) => p
                    .iter()
                    .filter(|k| **k != m.key)
                    .map(|k| k.to_string())
                    .collect(),
                None => {
                    let digest = externals.entry(n.clone()).or_default();
                    if digest.is_none() {
                        *digest = recorded.get(&n).map(|d| short_digest(d));
                    }
                    vec![n]
                }
            };
            for f in from {
                let labels = edges.entry((f, m.key.clone())).or_default();
                if !labels.contains(&base) {
                    labels.push(base.clone());
                }
            }
        }
    }
    let mut nodes: Vec<Node> = members.iter().map(|m| build_node(m)).collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes.extend(externals.into_iter().map(|(id, digest)| Node {
        id,
        kind: NodeKind::External { digest },
    }));
    Graph {
        nodes,
        edges: edges
            .into_iter()
            .map(|((from, to), labels)| Edge {
                from,
                to,
                label: labels.join(", "),
            })
            .collect(),
    }
}

fn build_node(m: &Member) -> Node {
    let s = m.status.as_ref();
    let image = m.pushes.first().map(|first| match m.pushes.len() {
        1 => first.clone(),
        n => format!("{first} +{} tags", n - 1),
    });
    Node {
        id: m.key.clone(),
        kind: NodeKind::Build {
            phase: s.and_then(|s| s.phase),
            image,
            digest: s.and_then(|s| s.image_digest.as_deref()).map(short_digest),
            built: s.and_then(|s| s.completion_time.clone()),
        },
    }
}

#[cfg(test)]
mod tests;
