//! What keeps an image current: the triggers a resource accepts, and what the status
//! records about each build (its inputs, why it ran, the last few builds).

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Phase;

/// Builds `status.history` keeps when `spec.historyLimit` is unset.
pub const DEFAULT_HISTORY_LIMIT: u32 = 5;
/// Most builds `spec.historyLimit` may keep.
pub const MAX_HISTORY_LIMIT: u32 = 50;

/// When a resource builds again without a spec change.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Triggers {
    /// How often a `git` source's branch or tag is looked up (`30s`, `5m`; `0` = never);
    /// slipway's `--git-poll` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d)?$"))]
    pub git_poll: Option<String>,
    /// Rebuild when a base image (`FROM`) gets a new digest. On by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<bool>,
    /// Rebuild when the source changes (context files, git revision, url). On by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<bool>,
}

impl Triggers {
    pub fn base_enabled(t: Option<&Self>) -> bool {
        t.and_then(|t| t.base).unwrap_or(true)
    }

    pub fn source_enabled(t: Option<&Self>) -> bool {
        t.and_then(|t| t.source).unwrap_or(true)
    }
}

/// A base image (`FROM`) as a build resolved it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaseImage {
    /// The reference as the Dockerfile names it (build args substituted).
    pub image: String,
    /// The manifest digest it resolved to.
    pub digest: String,
}

/// One past build of the resource.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// Counts up from 1 per resource.
    pub number: u64,
    /// Why it ran (as `status.triggeredBy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// `5s`, `500ms`, `10m`, `7d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration such as 5s, got '{s}'"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" | "" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        "d" => Ok(Duration::from_secs(n * 86400)),
        _ => Err(format!("unknown unit in '{s}': use ms, s, m, h or d")),
    }
}
