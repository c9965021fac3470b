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
        Ok(ev) => {
            for ev in fs_events(ev, &root_path) {
                let _ = tx.send(ev);
            }
        }
        // events may have been lost with it: the folder is read again
        Err(e) => {
            warn!("file watch error: {e}; reading the whole folder again");
            let _ = tx.send(FsEvent::Path(root_path.clone()));
        }
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

/// What one notify event means for the folder. The root itself as a changed path
/// makes the source read the whole folder again.
fn fs_events(ev: notify::Event, root: &Path) -> Vec<FsEvent> {
    // the kernel's queue overflowed: events were dropped, which ones is unknown
    if ev.need_rescan() {
        return vec![FsEvent::Path(root.to_path_buf())];
    }
    // reads are events too (we read files to report them): skip them
    if matches!(ev.kind, EventKind::Access(_)) {
        return Vec::new();
    }
    let gone = matches!(
        ev.kind,
        EventKind::Remove(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
    );
    ev.paths
        .into_iter()
        .map(|p| {
            if gone && p == root {
                FsEvent::RootLost
            } else {
                FsEvent::Path(p)
            }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, Flag};

    /// An overflowed inotify queue drops events; the folder must be read again,
    /// or a file created meanwhile would never be built.
    #[test]
    fn a_dropped_event_queue_reads_the_whole_folder_again() {
        let root = Path::new("/builds");
        let overflow = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        let got = fs_events(overflow, root);
        assert!(
            matches!(got.as_slice(), [FsEvent::Path(p)] if p == root),
            "{got:?}"
        );
    }

    #[test]
    fn a_created_file_is_reported_and_the_root_removed_is_lost() {
        let root = Path::new("/builds");
        let created =
            notify::Event::new(EventKind::Create(CreateKind::File)).add_path(root.join("a.yaml"));
        let got = fs_events(created, root);
        assert!(matches!(got.as_slice(), [FsEvent::Path(p)] if p == &root.join("a.yaml")));
        let removed = notify::Event::new(EventKind::Remove(notify::event::RemoveKind::Folder))
            .add_path(root.to_path_buf());
        assert!(matches!(
            fs_events(removed, root).as_slice(),
            [FsEvent::RootLost]
        ));
    }
}
