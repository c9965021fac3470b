//! File-system events for the folder, and noticing the folder itself replaced or
//! removed: an inotify watch lives on the directory's inode, so after
//! `rm -rf D; mkdir D` it would watch nothing, silently, for ever.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::{Config, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::warn;

use crate::{Error, Result};

/// How long a removed folder may take to come back before slipway gives up.
pub const ROOT_GRACE: Duration = Duration::from_secs(30);
/// How often the folder's identity is checked, in case its removal sent no event.
pub const ROOT_CHECK: Duration = Duration::from_secs(1);

/// What the watcher reports.
#[derive(Debug)]
pub(super) enum FsEvent {
    /// Something under the folder changed.
    Path(PathBuf),
    /// The folder itself was removed or moved away: its watch is dead.
    RootLost,
}

/// The folder's identity (device, inode), None when it is not a directory now.
pub(crate) fn identity(root: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(root)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

/// Watches `root` recursively, sending its events to `tx`. Links are not followed:
/// a linked directory could lead outside the folder.
pub(super) fn start(root: &Path, tx: mpsc::UnboundedSender<FsEvent>) -> Result<RecommendedWatcher> {
    let root_path = root.to_path_buf();
    let handler = move |res: notify::Result<notify::Event>| match res {
        // reads are events too (we read files to report them): skip them
        Ok(ev) if matches!(ev.kind, EventKind::Access(_)) => {}
        Ok(ev) => {
            let gone = matches!(
                ev.kind,
                EventKind::Remove(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
            );
            for p in ev.paths {
                let ev = if gone && p == root_path {
                    FsEvent::RootLost
                } else {
                    FsEvent::Path(p)
                };
                let _ = tx.send(ev);
            }
        }
        Err(e) => warn!("file watch error: {e}"),
    };
    let err = |e: notify::Error| Error::Source {
        path: root.display().to_string(),
        message: format!("cannot watch: {e}"),
    };
    let config = Config::default().with_follow_symlinks(false);
    let mut watcher = RecommendedWatcher::new(handler, config).map_err(err)?;
    watcher.watch(root, RecursiveMode::Recursive).map_err(err)?;
    Ok(watcher)
}

/// Waits for the folder to exist again (polling), up to [`ROOT_GRACE`].
pub(super) async fn wait_for_root(root: &Path) -> Result<(u64, u64)> {
    let start = Instant::now();
    loop {
        if let Some(id) = identity(root) {
            return Ok(id);
        }
        if start.elapsed() > ROOT_GRACE {
            return Err(Error::Source {
                path: root.display().to_string(),
                message: format!(
                    "the watched folder was removed and not re-created within {}s; stopping",
                    ROOT_GRACE.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
