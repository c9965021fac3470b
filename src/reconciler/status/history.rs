//! `status.history`: the last builds of a resource, newest last, kept in step with
//! the status as each build moves on.

use crate::api::{DEFAULT_HISTORY_LIMIT, DockerBuildStatus, HistoryEntry, MAX_HISTORY_LIMIT};

/// The number of the build a cause queues after build `last`: the next one for a new
/// build, the same one for a build resumed after a restart.
pub(crate) fn number_for(last: Option<u64>, new: bool) -> u64 {
    match (last, new) {
        (Some(n), false) => n,
        (last, _) => last.unwrap_or(0) + 1,
    }
}

/// A new build: the next number, an entry for it, the oldest beyond `limit` dropped.
pub(super) fn begin(s: &mut DockerBuildStatus, trigger: &str, limit: u32) {
    let number = number_for(s.build_number, true);
    s.build_number = Some(number);
    s.triggered_by = Some(trigger.to_string());
    s.history.push(HistoryEntry {
        number,
        trigger: Some(trigger.to_string()),
        ..Default::default()
    });
    let limit = match limit {
        0 => DEFAULT_HISTORY_LIMIT,
        n => n.min(MAX_HISTORY_LIMIT),
    } as usize;
    let extra = s.history.len().saturating_sub(limit);
    s.history.drain(..extra);
}

/// The current build's entry says what the status says.
pub(super) fn sync(s: &mut DockerBuildStatus) {
    let Some(n) = s.build_number else { return };
    let Some(e) = s.history.iter_mut().rev().find(|e| e.number == n) else {
        return;
    };
    e.phase = s.phase;
    e.start_time = s.start_time.clone();
    e.completion_time = s.completion_time.clone();
    e.digest = s.image_digest.clone();
}
