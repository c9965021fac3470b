//! `slipway watch DIR`: the watch folder.

use std::path::Path;
use std::sync::Arc;

use super::backend::{BackendArgs, backend};
use super::shutdown_signal;
use crate::Result;
use crate::mesos::scheduler::FileStore;
use crate::reconciler::{self, Settings, Summary};
use crate::sources::folder::{FolderSource, STATE_DIR};

/// `slipway watch DIR`: reconcile the folder until stopped (or, `once`, until done).
pub async fn watch(
    dir: &Path,
    args: &BackendArgs,
    mut settings: Settings,
    max_file_bytes: u64,
) -> Result<Summary> {
    settings.triggers.tls = crate::tls::Tls::load(&args.tls)?;
    // the framework ID lives with the folder's other state
    let store = Arc::new(FileStore::new(
        dir.join(STATE_DIR).join("mesos-framework-id"),
    ));
    let backend = backend(args, store, &settings.queue.metrics).await?;
    let source = Arc::new(FolderSource::new(dir).with_max_file_bytes(max_file_bytes));
    let run = reconciler::run(source, backend, settings);
    tokio::select! {
        r = run => r,
        _ = shutdown_signal() => {
            tracing::info!("stopping; builds under way are cancelled and restart on the next start");
            Ok(Summary::default())
        }
    }
}

/// `--once`'s last line, and whether every build succeeded (the exit status).
pub(super) fn once_summary(s: &Summary) -> (String, bool) {
    let line = format!(
        "{} succeeded, {} failed, {} not built",
        s.succeeded, s.failed, s.waiting
    );
    (line, s.failed + s.waiting == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_fails_unless_every_build_succeeded() {
        let s = |succeeded, failed, waiting| Summary {
            succeeded,
            failed,
            waiting,
        };
        assert_eq!(
            once_summary(&s(3, 0, 0)),
            ("3 succeeded, 0 failed, 0 not built".into(), true)
        );
        // a build that never ran (e.g. its base failed) is no success either
        assert_eq!(
            once_summary(&s(2, 0, 1)),
            ("2 succeeded, 0 failed, 1 not built".into(), false)
        );
        assert!(!once_summary(&s(0, 1, 0)).1);
    }
}
