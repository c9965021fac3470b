//! Build events from the queue, turned into statuses: started, progress, pushed,
//! failed. A finished build wakes the builds waiting for its image.

use std::sync::Arc;

use tracing::{debug, info, warn};

use super::context::Context;
use super::run::wake;
use super::status::Transition;
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
    let res = ctx.state.lock().await.claims.holder(&key).cloned();
    // a backend holding results until their status is written may let go after this
    let settles = matches!(up, Update::Finished { .. } | Update::Retrying { .. });
    let Some(res) = res.filter(|r| r.build.spec.hash() == hash) else {
        debug!(build = %key, "update for a replaced or deleted build ignored");
        if settles {
            ctx.queue.settled(&key);
        }
        return;
    };
    let h = Some(hash.as_str());
    match up {
        Update::Started { attempt, .. } => {
            ctx.transition(
                &res,
                h,
                Transition::Started {
                    attempt,
                    backend: ctx.backend,
                    remote: ctx.remote,
                },
            )
            .await;
        }
        Update::Event { event, .. } => match event {
            BuildEvent::Building {
                context_bytes,
                files,
            } => {
                let msg = format!(
                    "building: sent a context of {files} files, {:.1} MiB",
                    context_bytes as f64 / (1024.0 * 1024.0)
                );
                ctx.transition(&res, h, Transition::Progress(msg)).await;
            }
            BuildEvent::Step(s) => {
                info!(build = %key, "{s}");
                ctx.transition(&res, h, Transition::Progress(s)).await;
            }
            BuildEvent::Log(line) => debug!(build = %key, "{line}"),
            BuildEvent::Pushing { tags } => {
                ctx.transition(&res, h, Transition::Pushing { tags: tags.len() })
                    .await;
            }
            BuildEvent::PushProgress { .. } => {}
            BuildEvent::Pushed { tag, digest } => info!(build = %key, %tag, %digest, "pushed"),
            BuildEvent::Waiting(msg) => {
                ctx.transition(&res, h, Transition::Unplaced(msg)).await;
            }
            BuildEvent::Placed { host, task } => {
                info!(build = %key, %host, task = %task.task_id, "placed");
                let t = Transition::Placed {
                    host: &host,
                    task: &task,
                };
                ctx.transition(&res, h, t).await;
            }
            BuildEvent::Running { host, sandbox } => {
                let sandbox = sandbox.as_ref().map(|s| s.directory.as_str());
                ctx.transition(
                    &res,
                    h,
                    Transition::Running {
                        host: &host,
                        sandbox,
                    },
                )
                .await;
            }
            BuildEvent::Copied(_) => {}
            BuildEvent::Stages(steps) => {
                ctx.transition(&res, h, Transition::Stages(&steps)).await;
            }
        },
        Update::Retrying {
            attempt,
            max_attempts,
            delay,
            error,
            ..
        } => {
            ctx.transition(
                &res,
                h,
                Transition::Retrying {
                    attempt,
                    max_attempts,
                    delay,
                    error,
                },
            )
            .await;
            ctx.settle(&key, &res.origin);
        }
        Update::Finished {
            result, log_tail, ..
        } => {
            match &result {
                Ok(out) => {
                    info!(build = %key, image = %out.image, "succeeded");
                    ctx.transition(&res, h, Transition::Succeeded(out)).await;
                }
                Err(e) => {
                    warn!(build = %key, reason = e.metric_label(), "failed: {e}");
                    ctx.transition(&res, h, Transition::Failed(e, &log_tail))
                        .await;
                }
            }
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
    }
}
