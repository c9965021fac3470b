//! The build context served to BuildKit by file sync (fsutil's DiffCopy through the
//! build's session), the way `docker build` and `buildctl` send it: BuildKit keeps
//! the previous build's copy and asks only for the files whose stat changed, where a
//! tar upload carries every byte on every build.
//!
//! Two local directories, under the names the Dockerfile frontend asks for:
//! `context`, the planned context ([`context::plan`]: `.dockerignore` applied, escaping
//! symlinks refused) with the Dockerfile's directives stripped, as the tar carries it;
//! and `dockerfile`, that stripped Dockerfile alone.

mod select;
mod send;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSync;
use bytes::Bytes;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::context::{ContextPlan, Entry, EntryKind};
use crate::{Error, Result};

pub(crate) use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSyncServer;

/// File bytes sent by every file sync of this process, for tests to tell a transfer
/// from none ([`crate::runner::context_bytes_sent`]).
static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See [`SENT`].
pub(crate) fn bytes_sent() -> u64 {
    SENT.load(std::sync::atomic::Ordering::Relaxed)
}

/// The local name of the build context.
pub(crate) const CONTEXT: &str = "context";
/// The local name of the directory holding the Dockerfile.
pub(crate) const DOCKERFILE: &str = "dockerfile";

/// One entry a directory can send.
pub(super) struct Item {
    entry: Entry,
    /// False for a directory the plan left out (excluded) that holds something it
    /// kept: sent only as the parent fsutil's receiver needs before its children.
    own: bool,
    /// The bytes to send instead of the file's (the stripped Dockerfile).
    content: Option<Bytes>,
}

/// A directory served under one local name.
pub(crate) struct LocalDir {
    root: PathBuf,
    /// In fsutil's walk order.
    items: Vec<Item>,
    /// Paths the receiver's exclude patterns never remove.
    keep: Vec<String>,
}

/// The FileSync service of one build's session: its local directories by name.
pub(crate) struct LocalDirs {
    dirs: HashMap<String, Arc<LocalDir>>,
    failure: Failure,
}

/// Why reading the context failed, if it did (a file changed or vanished while it
/// was sent): buildkitd only reports a failed transfer, which alone would pass for
/// its own failure.
#[derive(Clone, Default)]
pub(crate) struct Failure(Arc<std::sync::Mutex<Option<String>>>);

impl Failure {
    pub(crate) fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, message: &str) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert_with(|| message.to_string());
    }
}

impl LocalDirs {
    /// `context` and `dockerfile` for a build whose context is `plan` and whose
    /// Dockerfile, directives stripped, is `dockerfile`. On a blocking thread, as it
    /// stats the excluded directories above kept files.
    pub(crate) async fn read(plan: ContextPlan, dockerfile: Vec<u8>) -> Result<Self> {
        tokio::task::spawn_blocking(move || Self::for_build(plan, dockerfile))
            .await
            .map_err(|e| Error::context(e.to_string(), e))?
    }

    /// [`LocalDirs::read`], on the calling thread.
    pub(crate) fn for_build(plan: ContextPlan, dockerfile: Vec<u8>) -> Result<Self> {
        let content = Bytes::from(dockerfile);
        let df = plan
            .entries
            .iter()
            .find(|e| e.path == plan.dockerfile)
            .cloned()
            .ok_or_else(|| {
                Error::Context(
                    format!(
                        "Dockerfile '{}' not found in the build context",
                        plan.dockerfile
                    )
                    .into(),
                )
            })?;
        let name = plan
            .dockerfile
            .rsplit('/')
            .next()
            .unwrap_or(&plan.dockerfile)
            .to_string();
        let dockerfile_dir = LocalDir {
            root: PathBuf::new(),
            items: vec![Item {
                entry: Entry { path: name, ..df },
                own: true,
                content: Some(content.clone()),
            }],
            keep: Vec::new(),
        };
        let keep = vec![plan.dockerfile.clone(), ".dockerignore".to_string()];
        let items = with_parents(&plan.root, plan.entries, |e| {
            (e.path == plan.dockerfile).then(|| content.clone())
        })?;
        let context = LocalDir {
            root: plan.root,
            items,
            keep,
        };
        Ok(LocalDirs {
            dirs: HashMap::from([
                (CONTEXT.to_string(), Arc::new(context)),
                (DOCKERFILE.to_string(), Arc::new(dockerfile_dir)),
            ]),
            failure: Failure::default(),
        })
    }

    /// Where a failure to read the context is kept, for after the build.
    pub(crate) fn failure(&self) -> Failure {
        self.failure.clone()
    }

    /// The `Dockerfile`'s name inside the `dockerfile` directory (the frontend's
    /// `filename`).
    pub(crate) fn dockerfile_name(&self) -> &str {
        &self.dirs[DOCKERFILE].items[0].entry.path
    }
}

/// The plan's entries with, before the first kept entry under it, each directory the
/// plan excluded but walked (a `!` pattern re-included something below it): fsutil's
/// receiver refuses a path whose parent it has not seen.
fn with_parents(
    root: &Path,
    entries: Vec<Entry>,
    content: impl Fn(&Entry) -> Option<Bytes>,
) -> Result<Vec<Item>> {
    let dirs: HashSet<String> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Dir)
        .map(|e| e.path.clone())
        .collect();
    let mut added = HashSet::new();
    let mut items = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut end = 0;
        while let Some(i) = entry.path[end..].find('/') {
            end += i;
            let parent = &entry.path[..end];
            end += 1;
            if dirs.contains(parent) || added.contains(parent) {
                continue;
            }
            let meta = std::fs::symlink_metadata(root.join(parent))
                .map_err(|e| Error::context(format!("cannot read '{parent}': {e}"), e))?;
            use std::os::unix::fs::MetadataExt;
            items.push(Item {
                entry: Entry {
                    path: parent.to_string(),
                    kind: EntryKind::Dir,
                    size: 0,
                    mode: meta.mode() & 0o7777,
                    mtime: meta.mtime(),
                    mtime_nsec: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
                    link_target: None,
                },
                own: false,
                content: None,
            });
            added.insert(parent.to_string());
        }
        items.push(Item {
            content: content(&entry),
            entry,
            own: true,
        });
    }
    Ok(items)
}

/// The request's options, as BuildKit's `FSSync` sends them: `dir-name`, and
/// `include-patterns`, `exclude-patterns`, `followpaths` (one value per pattern,
/// query-escaped when `KEY-encoded` says so).
fn request_options(md: &MetadataMap) -> std::result::Result<(String, select::Request), Status> {
    let values = |key: &str| -> std::result::Result<Vec<String>, Status> {
        let encoded = md
            .get(format!("{key}-encoded"))
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"));
        md.get_all(key)
            .iter()
            .map(|v| {
                let v = v
                    .to_str()
                    .map_err(|_| Status::invalid_argument(format!("{key} is not ASCII")))?;
                if !encoded {
                    return Ok(v.to_string());
                }
                let plus = v.replace('+', " ");
                percent_encoding::percent_decode_str(&plus)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| Status::invalid_argument(format!("{key} is not UTF-8")))
            })
            .collect()
    };
    let name = values("dir-name")?.into_iter().next().unwrap_or_default();
    Ok((
        name,
        select::Request {
            include: values("include-patterns")?,
            exclude: values("exclude-patterns")?,
            follow: values("followpaths")?,
        },
    ))
}

#[tonic::async_trait]
impl FileSync for LocalDirs {
    type DiffCopyStream = send::PacketStream;

    async fn diff_copy(
        &self,
        req: Request<Streaming<send::Packet>>,
    ) -> std::result::Result<Response<Self::DiffCopyStream>, Status> {
        let (name, opts) = request_options(req.metadata())?;
        let dir = self
            .dirs
            .get(&name)
            .ok_or_else(|| Status::not_found(format!("no access allowed to dir \"{name}\"")))?
            .clone();
        let filter =
            select::Filter::new(&dir.items, &opts, &dir.keep).map_err(Status::invalid_argument)?;
        let chosen = select::select(&dir.items, &filter);
        tracing::debug!(dir = name, entries = chosen.len(), "file sync");
        Ok(Response::new(send::serve(
            dir,
            chosen,
            req.into_inner(),
            self.failure.clone(),
        )))
    }

    type TarStreamStream = send::PacketStream;

    async fn tar_stream(
        &self,
        _: Request<Streaming<send::Packet>>,
    ) -> std::result::Result<Response<Self::TarStreamStream>, Status> {
        // BuildKit negotiates diffcopy first; tarstream is a legacy fallback
        Err(Status::unimplemented("tarstream: use diffcopy"))
    }
}

#[cfg(test)]
mod tests;
