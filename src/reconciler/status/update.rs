//! Which status transition a build update makes. Pure, so what each update does
//! to a resource's status is tested without a queue, a backend or a source.

use super::Transition;
use crate::queue::Update;
use crate::runner::BuildEvent;

/// The transition `up` makes for a build on `backend` (`remote`: the backend places
/// builds itself, so a started build stays Queued until it runs); None when the
/// status does not change (a log line, push progress, one tag pushed, lines copied
/// back).
pub fn of_update<'a>(up: &'a Update, backend: &'a str, remote: bool) -> Option<Transition<'a>> {
    Some(match up {
        Update::Started { attempt, .. } => Transition::Started {
            attempt: *attempt,
            backend,
            remote,
        },
        Update::Event { event, .. } => return of_event(event),
        Update::Retrying {
            attempt,
            max_attempts,
            delay,
            error,
            ..
        } => Transition::Retrying {
            attempt: *attempt,
            max_attempts: *max_attempts,
            delay: *delay,
            error: error.clone(),
        },
        Update::Finished {
            result: Ok(out), ..
        } => Transition::Succeeded(out),
        Update::Finished {
            result: Err(e),
            log_tail,
            ..
        } => Transition::Failed(e, log_tail),
    })
}

fn of_event(event: &BuildEvent) -> Option<Transition<'_>> {
    Some(match event {
        BuildEvent::Building {
            context_bytes,
            files,
        } => Transition::Progress(format!(
            "building: sent a context of {files} files, {:.1} MiB",
            *context_bytes as f64 / (1024.0 * 1024.0)
        )),
        BuildEvent::Step(s) => Transition::Progress(s.clone()),
        BuildEvent::Pushing { tags } => Transition::Pushing { tags: tags.len() },
        BuildEvent::Waiting(msg) => Transition::Unplaced(msg.clone()),
        BuildEvent::Placed { host, task } => Transition::Placed { host, task },
        BuildEvent::Running { host, sandbox } => Transition::Running {
            host,
            sandbox: sandbox.as_ref().map(|s| s.directory.as_str()),
        },
        BuildEvent::Stages(steps) => Transition::Stages(steps),
        BuildEvent::Log(_)
        | BuildEvent::PushProgress { .. }
        | BuildEvent::Pushed { .. }
        | BuildEvent::Copied(_) => return None,
    })
}

#[cfg(test)]
mod tests;
