//! Finding a kept build log and printing it, following a running build to its end.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::END_MARK;

/// How often a followed log is looked at for new lines when no write woke the
/// follower first (a file system without inotify, say).
const FOLLOW_POLL: Duration = Duration::from_millis(25);

/// Which log: a resource's, and a build number (default: its latest build).
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub namespace: String,
    pub name: String,
    pub build: Option<u64>,
}

impl LogQuery {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Why there is no log to show; each kind has its own exit code so scripts can tell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("no DockerBuild {0}")]
    NoSuchResource(String),
    #[error("{0} has not built yet")]
    NoBuildYet(String),
    #[error("{key} has no build {build} (its latest is {latest})")]
    NoSuchBuild {
        key: String,
        build: u64,
        latest: u64,
    },
    #[error(
        "the log of {key} build {build} has expired (kept: the last builds within --log-retention)"
    )]
    Expired { key: String, build: u64 },
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Unreadable(String),
    /// The controller's refusal, with the exit code it gives.
    #[error("{1}")]
    Refused(u8, String),
}

impl LogError {
    pub fn exit_code(&self) -> u8 {
        match self {
            LogError::NoSuchResource(_) => 2,
            LogError::NoBuildYet(_) | LogError::NoSuchBuild { .. } => 3,
            LogError::Expired { .. } => 4,
            LogError::Forbidden(_) => 5,
            LogError::Unreadable(_) => 1,
            LogError::Refused(code, _) => *code,
        }
    }
}

/// The log file `q` asks for in `dir` (the resource's log directory). `latest` is
/// the resource's `status.buildNumber`; `None` when the resource does not exist.
pub fn find(dir: &Path, q: &LogQuery, latest: Option<Option<u64>>) -> Result<PathBuf, LogError> {
    let key = q.key();
    let Some(latest) = latest else {
        return Err(LogError::NoSuchResource(key));
    };
    let kept = super::numbered(dir).unwrap_or_default();
    let newest_kept = kept.iter().map(|(n, _)| *n).max();
    // a log newer than the status (the status not written yet) is still the latest
    let latest = latest.max(newest_kept);
    let Some(latest) = latest else {
        return Err(LogError::NoBuildYet(key));
    };
    let build = q.build.unwrap_or(latest);
    if build > latest || build == 0 {
        return Err(LogError::NoSuchBuild { key, build, latest });
    }
    match kept.into_iter().find(|(n, _)| *n == build) {
        Some((_, path)) => Ok(path),
        None => Err(LogError::Expired { key, build }),
    }
}

/// How a print of the log ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// The build's last line was printed.
    Ended,
    /// Not following, and the build has not ended (yet, or it never will: slipway
    /// stopped while it ran).
    Open,
}

/// Prints the log at `path` to `out`; with `follow`, waits for new lines until the
/// build's last line.
pub async fn follow(
    path: &Path,
    out: &mut (dyn Write + Send),
    follow: bool,
) -> std::io::Result<Follow> {
    follow_polling(path, out, follow, FOLLOW_POLL).await
}

/// [`follow`], woken by each write to the file and, failing that, every `poll`.
pub(crate) async fn follow_polling(
    path: &Path,
    out: &mut (dyn Write + Send),
    follow: bool,
    poll: Duration,
) -> std::io::Result<Follow> {
    let mut file = std::fs::File::open(path)?;
    // kept alive for the loop; without a watch the poll alone finds new lines
    let written = Arc::new(Notify::new());
    let _watch = follow.then(|| on_write(path, written.clone())).flatten();
    let mut pos = 0u64;
    let mut partial = Vec::new();
    loop {
        file.seek(SeekFrom::Start(pos))?;
        let mut chunk = Vec::new();
        pos += file.read_to_end(&mut chunk)? as u64;
        partial.extend_from_slice(&chunk);
        // whole lines only: the writer may be mid-line
        if let Some(end) = partial.iter().rposition(|b| *b == b'\n') {
            let lines: Vec<u8> = partial.drain(..=end).collect();
            out.write_all(&lines)?;
            out.flush()?;
            if lines.split(|b| *b == b'\n').any(is_end) {
                return Ok(Follow::Ended);
            }
        }
        if !follow {
            return Ok(Follow::Open);
        }
        // a write since the read above left a permit: no line waits for the poll
        let _ = tokio::time::timeout(poll, written.notified()).await;
    }
}

/// Wakes `written` whenever `path` is written to; None when it cannot be watched.
fn on_write(path: &Path, written: Arc<Notify>) -> Option<RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| {
        // the follower's own reads are events too: only writes wake it
        if let Ok(ev) = res
            && matches!(ev.kind, EventKind::Modify(_))
        {
            written.notify_one();
        }
    };
    let mut watcher = RecommendedWatcher::new(handler, notify::Config::default())
        .inspect_err(|e| tracing::debug!("cannot watch the log, polling it: {e}"))
        .ok()?;
    watcher
        .watch(path, RecursiveMode::NonRecursive)
        .inspect_err(|e| tracing::debug!("cannot watch the log, polling it: {e}"))
        .ok()?;
    Some(watcher)
}

/// The build's last line: `<timestamp> --- end of build N: ...`.
pub(crate) fn is_end(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line);
    text.split_once(' ')
        .is_some_and(|(_, rest)| rest.starts_with(END_MARK))
}
