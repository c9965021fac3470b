//! Every build's full log, kept after the build: `<root>/<namespace>/<name>/<n>.log`,
//! one file per build number, retried attempts appended to the same file. The queue
//! writes it ([`BuildLog`]) as the build's events arrive; `slipway logs` reads it
//! ([`read`]). Builds run outside pods, so nothing else would keep their output.

mod read;
pub mod serve;
mod writer;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub(crate) use read::is_end;
pub use read::{Follow, LogError, LogQuery, find, follow};
pub use writer::{BuildLog, END_MARK, Redactor, TAIL_LINES};

use crate::{Error, Result};

/// Builds kept per resource and their longest age, by default.
pub const DEFAULT_KEEP: usize = 5;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Bytes kept of one build's log by default; beyond it the log says it was cut.
pub const DEFAULT_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// `--log-retention` and `--max-log-bytes` (`watch`, `controller`).
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Build logs kept per resource: the last COUNT builds, none older than AGE
    /// (`COUNT[,AGE]`, e.g. `5,7d`).
    #[arg(long, default_value = "5,7d", value_parser = parse_retention)]
    pub log_retention: Retention,
    /// Most bytes kept of one build's log; the rest is cut, and the log says so.
    #[arg(long, default_value_t = DEFAULT_MAX_BYTES)]
    pub max_log_bytes: u64,
}

impl LogArgs {
    pub fn store(&self, root: PathBuf) -> LogStore {
        LogStore {
            root,
            retention: self.log_retention,
            max_bytes: self.max_log_bytes,
        }
    }
}

/// How many builds' logs are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep: usize,
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep: DEFAULT_KEEP,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

fn parse_retention(s: &str) -> std::result::Result<Retention, String> {
    let (count, age) = match s.split_once(',') {
        Some((c, a)) => (c.trim(), Some(a.trim())),
        None => (s.trim(), None),
    };
    let keep = count
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("expected COUNT[,AGE] with COUNT at least 1, got '{s}'"))?;
    let max_age = match age {
        Some(a) => crate::api::parse_duration(a)?,
        None => DEFAULT_MAX_AGE,
    };
    Ok(Retention { keep, max_age })
}

/// Where build logs live and how much of them is kept.
#[derive(Debug, Clone)]
pub struct LogStore {
    pub root: PathBuf,
    pub retention: Retention,
    pub max_bytes: u64,
}

impl LogStore {
    /// The directory of one resource's logs.
    pub fn dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.root.join(namespace).join(name)
    }

    /// The log of build `number`.
    pub fn path(&self, namespace: &str, name: &str, number: u64) -> PathBuf {
        self.dir(namespace, name).join(format!("{number}.log"))
    }

    /// Opens (appending: a retry or a resumed build adds to it) build `number`'s log.
    pub fn open(
        &self,
        namespace: &str,
        name: &str,
        number: u64,
        redactor: Redactor,
    ) -> Result<BuildLog> {
        let path = self.path(namespace, name, number);
        BuildLog::open(&path, number, self.max_bytes, redactor)
    }

    /// The number after the highest kept: what a build run outside the queue
    /// (`slipway build`) is numbered.
    pub fn next_number(&self, namespace: &str, name: &str) -> Result<u64> {
        let kept = numbered(&self.dir(namespace, name))?;
        Ok(kept.iter().map(|(n, _)| *n).max().unwrap_or(0) + 1)
    }

    /// Removes the logs retention no longer keeps, never `current`'s.
    pub fn prune(&self, namespace: &str, name: &str, current: u64) -> Result<()> {
        let dir = self.dir(namespace, name);
        let mut logs = numbered(&dir)?;
        logs.sort_unstable_by_key(|(n, _)| std::cmp::Reverse(*n));
        let now = SystemTime::now();
        for (i, (n, path)) in logs.iter().enumerate() {
            if *n == current {
                continue;
            }
            let old = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > self.retention.max_age);
            if i >= self.retention.keep || old {
                // already gone is what we wanted
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(())
    }
}

/// The build logs in `dir`, by build number (a missing directory has none).
pub(crate) fn numbered(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Source {
                path: dir.display().to_string(),
                message: format!("cannot list build logs: {e}"),
            });
        }
    };
    Ok(entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_suffix(".log")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect())
}

#[cfg(test)]
mod tests;
