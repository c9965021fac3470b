//! Build events from the queue, turned into statuses (which transition each makes
//! is `status::of_update`, pure): started, progress, pushed, failed. A finished
//! build wakes the builds waiting for its image.

use std::sync::Arc;

use tracing::{debug, info, warn};

use super::context::Context;
use super::run::wake;
use super::status;
use crate::queue::Update;
use crate::runner::BuildEvent;

pub(super) async fn on_update(up: Update, ctx: &Arc<Context>) {
    let (key, hash) = match &up {
        Update::Started { key, hash, .. }
        | Update::Event { key, hash, .. }
        | Update::Retrying { key, hash, .. }
        | Update::Finished { key, hash, .. } => (key.clone(), hash.clone()),
    };
    if let Update::Finished { job, .. } = &up {
        // the outcome is recorded below, within this call: the key may build again
        ctx.queue.done(&key, *job);
        let releasing = ctx.state.lock().await.releasing.remove(&key);
        if let Some(origin) = releasing {
            info!(build = %key, "the deleted resource's build has stopped");
            ctx.queue.settled(&key);
            ctx.release(&key, &origin);
            return;
        }
    }
    let res = ctx.state.lock().await.claims.holder(&key);
    // a backend holding results until their status is written may let go after this
    let settles = matches!(up, Update::Finished { .. } | Update::Retrying { .. });
    let Some(res) = res.filter(|r| r.build.spec.hash() == hash) else {
        debug!(build = %key, "update for a replaced or deleted build ignored");
        if settles {
            ctx.queue.settled(&key);
        }
        return;
    };
    log(&up);
    if let Some(t) = status::of_update(&up, ctx.backend, ctx.remote) {
        ctx.transition(&res, Some(hash.as_str()), t).await;
    }
    match up {
        Update::Retrying { .. } => ctx.settle(&key, &res.origin),
        Update::Finished { result, .. } => {
            ctx.settle(&key, &res.origin);
            // builds waiting for this one's image may go now, and those built FROM it
            // compare its new digest with the one they recorded; it looks again itself
            // (an input that changed during the build)
            let mut keys = {
                let mut st = ctx.state.lock().await;
                let mut keys = st.deps.take_waiters(&key);
                if result.is_ok() {
                    keys.extend(st.deps.dependents(&key));
                }
                keys
            };
            keys.sort();
            keys.dedup();
            keys.push(key.clone());
            wake(keys, ctx, true).await;
        }
        Update::Started { .. } | Update::Event { .. } => {}
    }
}

/// What the log says about an update of the build the resource wants.
fn log(up: &Update) {
    match up {
        Update::Event { key, event, .. } => match event {
            BuildEvent::Step(s) => info!(build = %key, "{s}"),
            BuildEvent::Log(line) => debug!(build = %key, "{line}"),
            BuildEvent::Pushed { tag, digest } => info!(build = %key, %tag, %digest, "pushed"),
            BuildEvent::Placed { host, task } => {
                info!(build = %key, %host, task = %task.task_id, "placed")
            }
            _ => {}
        },
        Update::Finished {
            key,
            result: Ok(out),
            ..
        } => info!(build = %key, image = %out.image, "succeeded"),
        Update::Finished {
            key,
            result: Err(e),
            ..
        } => warn!(build = %key, reason = e.metric_label(), "failed: {e}"),
        Update::Started { .. } | Update::Retrying { .. } => {}
    }
}
