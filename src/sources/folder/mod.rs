//! The watch folder: every `*.yaml`/`*.yml`/`*.json` under a directory, status written back
//! into the same file, atomically, touching nothing outside `status:`.

mod limit;
mod parse;
mod scan;
pub mod secrets;
pub(crate) mod watch;
mod write;
mod yaml_doc;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Resource, Source, SourceEvent};
use crate::api::DockerBuildStatus;
use crate::registry::DockerConfig;
use crate::runner::BuildSecrets;
use crate::{Error, Result};
use scan::Resolved;
use watch::FsEvent;

pub use limit::{DEFAULT_MAX_FILE_BYTES, read_one as read_resource_file};
pub use parse::{Doc, read_docs, status_yaml};
pub use scan::is_yaml as is_resource_file;
pub(crate) use write::merge_status;
pub use yaml_doc::{DocSpan, replace_status, split_documents};

/// State kept under the watched folder (the Mesos framework ID, later).
pub const STATE_DIR: &str = ".slipway";

pub struct FolderSource {
    root: PathBuf,
    /// Keys each file held when last read (by its real path), to report deletions.
    files: Mutex<HashMap<PathBuf, BTreeSet<String>>>,
    /// Things already logged that would otherwise be logged on every read.
    noted: Mutex<BTreeSet<String>>,
    /// Serialises read-modify-write of one file across concurrent status writes.
    write_lock: tokio::sync::Mutex<()>,
    /// Bigger files are refused, not read.
    max_file_bytes: u64,
}

/// The key under which a file that cannot be read at all is reported (its
/// documents, and so their names, are unknown).
fn unreadable_key(origin: &str) -> String {
    format!("{origin}#file")
}

impl FolderSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        // file events name absolute paths; a relative root would never match them
        let root = std::fs::canonicalize(&root)
            .or_else(|_| std::path::absolute(&root))
            .unwrap_or(root);
        Self {
            root,
            files: Mutex::new(HashMap::new()),
            noted: Mutex::new(BTreeSet::new()),
            write_lock: tokio::sync::Mutex::new(()),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }

    /// Refuses resource files bigger than `bytes` (see [`DEFAULT_MAX_FILE_BYTES`]).
    pub fn with_max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every resource file under the root, sorted, links resolved to their targets.
    pub fn yaml_files(&self) -> Vec<PathBuf> {
        let (files, refused) = scan::list(&self.root);
        for (link, why) in refused {
            self.refuse(&link, &why);
        }
        files
    }

    fn refuse(&self, link: &Path, why: &str) {
        let origin = self.origin(link);
        if self.first_time(format!("{origin}: link: {why}")) {
            warn!(file = %origin, "symlink not followed: {why}");
        }
    }

    fn origin(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Reads one resource file (a real path, never a link) and reports what it holds
    /// now, including deletions.
    async fn report_file(&self, path: &Path, tx: &mpsc::Sender<SourceEvent>) {
        let origin = self.origin(path);
        let mut now = BTreeSet::new();
        let mut events = Vec::new();
        let present = match limit::read(path, self.max_file_bytes) {
            limit::FileRead::Gone => false,
            limit::FileRead::Text(text) => {
                self.read_text(&text, path, &origin, &mut now, &mut events);
                true
            }
            // counted as failed (`--once` exits non-zero); nothing is written into it
            limit::FileRead::Unreadable(e) => {
                let key = unreadable_key(&origin);
                now.insert(key.clone());
                events.push(SourceEvent::Invalid {
                    key,
                    origin: origin.clone(),
                    message: format!("{origin}: cannot read the file: {e}"),
                });
                true
            }
            limit::FileRead::TooLarge { size, keys } => {
                // its resources as last read, and those its start names, fail with
                // the reason; when none can be named, the file itself does
                let message = limit::too_large_message(&origin, size, self.max_file_bytes);
                let mut keys: BTreeSet<String> = keys.into_iter().collect();
                keys.extend(self.lock_files().get(path).into_iter().flatten().cloned());
                keys.remove(&unreadable_key(&origin));
                if keys.is_empty() {
                    keys.insert(unreadable_key(&origin));
                }
                for key in keys {
                    now.insert(key.clone());
                    events.push(SourceEvent::Invalid {
                        key,
                        origin: origin.clone(),
                        message: message.clone(),
                    });
                }
                true
            }
        };
        let before = {
            let mut files = self.lock_files();
            if present {
                files.insert(path.to_path_buf(), now.clone())
            } else {
                files.remove(path)
            }
        };
        for key in before.unwrap_or_default().difference(&now) {
            events.push(SourceEvent::Deleted {
                key: key.clone(),
                origin: origin.clone(),
            });
        }
        for ev in events {
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }

    fn read_text(
        &self,
        text: &str,
        path: &Path,
        origin: &str,
        now: &mut BTreeSet<String>,
        events: &mut Vec<SourceEvent>,
    ) {
        for (i, (doc, warnings)) in read_docs(text, origin).into_iter().enumerate() {
            match doc {
                Doc::Build(build) => {
                    let key = build.key();
                    for w in &warnings {
                        if self.first_time(format!("{origin}#{i}: {key}: {w}")) {
                            warn!(file = %origin, build = %key, "{w}");
                        }
                    }
                    now.insert(key);
                    events.push(SourceEvent::Applied(Box::new(Resource {
                        build: *build,
                        origin: origin.to_string(),
                        base_dir: path.parent().map(Path::to_path_buf),
                        warnings,
                    })));
                }
                Doc::Invalid { key, message } => {
                    now.insert(key.clone());
                    events.push(SourceEvent::Invalid {
                        key,
                        origin: origin.to_string(),
                        message,
                    });
                }
                Doc::Other { kind } => {
                    if self.first_time(format!("{origin}#{i}: {kind}")) {
                        info!(file = %origin, document = i + 1, kind = %kind, "not a DockerBuild; ignored");
                    }
                }
            }
        }
    }

    /// Reports every key `path` held as deleted, without reading it (it may be gone,
    /// or now a link that is not followed).
    async fn forget(&self, path: &Path, tx: &mpsc::Sender<SourceEvent>) {
        let origin = self.origin(path);
        let before = self.lock_files().remove(path);
        for key in before.unwrap_or_default() {
            let ev = SourceEvent::Deleted {
                key,
                origin: origin.clone(),
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    }

    fn lock_files(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, BTreeSet<String>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True the first time `note` is seen: for log lines a re-read would repeat.
    fn first_time(&self, note: String) -> bool {
        self.noted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(note)
    }

    /// Files that held resources when last read but are gone from the listing.
    fn vanished(&self, present: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
        self.lock_files()
            .keys()
            .filter(|p| !present.contains(*p))
            .cloned()
            .collect()
    }

    /// Reads the whole folder again, reporting what changed since the last read.
    async fn rescan(&self, tx: &mpsc::Sender<SourceEvent>) {
        let present: BTreeSet<PathBuf> = self.yaml_files().into_iter().collect();
        for f in self.vanished(&present) {
            self.forget(&f, tx).await;
        }
        for f in present {
            self.report_file(&f, tx).await;
        }
    }

    /// Reports a burst of changed paths: removals first, so a file renamed within
    /// the folder is not seen as its resource defined twice.
    async fn report_changes(&self, changed: BTreeSet<PathBuf>, tx: &mpsc::Sender<SourceEvent>) {
        let mut files = BTreeSet::new();
        let mut gone = BTreeSet::new();
        let mut rescan = false;
        for p in changed {
            let rel = p.strip_prefix(&self.root).unwrap_or(&p);
            if scan::is_hidden(rel) {
                continue; // our temp files, .slipway/, editors' swap files
            }
            if scan::is_yaml(&p) && !p.is_dir() {
                match scan::resolve(&self.root, &p) {
                    Resolved::File(f) => {
                        if f != p && self.lock_files().contains_key(&p) {
                            gone.insert(p); // a file replaced by a link to another
                        }
                        files.insert(f);
                    }
                    Resolved::Gone => {
                        gone.insert(p);
                    }
                    Resolved::Refused(why) => {
                        self.refuse(&p, &why);
                        gone.insert(p);
                    }
                }
            } else if p.is_dir() || !p.exists() {
                rescan = true; // a directory appeared, moved or vanished
            }
        }
        if rescan {
            let present: BTreeSet<PathBuf> = self.yaml_files().into_iter().collect();
            gone.extend(self.vanished(&present));
            files.extend(present);
        }
        for f in gone.difference(&files) {
            debug!(file = %f.display(), "gone");
            self.forget(f, tx).await;
        }
        for f in files {
            debug!(file = %f.display(), "changed");
            self.report_file(&f, tx).await;
        }
    }
}

#[async_trait]
impl Source for FolderSource {
    async fn run(&self, tx: mpsc::Sender<SourceEvent>) -> Result<()> {
        let Some(mut id) = watch::identity(&self.root) else {
            return Err(Error::Source {
                path: self.root.display().to_string(),
                message: "not a directory".into(),
            });
        };
        // watch first, so nothing written during the first scan is missed
        let (fs_tx, mut fs_rx) = mpsc::unbounded_channel();
        let mut watcher = watch::start(&self.root, fs_tx.clone())?;
        for f in self.yaml_files() {
            self.report_file(&f, &tx).await;
        }
        if tx.send(SourceEvent::Synced).await.is_err() {
            return Ok(());
        }
        info!(dir = %self.root.display(), "watching for changes");

        let mut check = tokio::time::interval(watch::ROOT_CHECK);
        loop {
            let first = tokio::select! {
                ev = fs_rx.recv() => match ev {
                    Some(ev) => ev,
                    None => return Ok(()),
                },
                // an event may be missed (the folder replaced by another mount): look too
                _ = check.tick() => {
                    if watch::identity(&self.root) == Some(id) {
                        continue;
                    }
                    FsEvent::RootLost
                }
            };
            // gather a short burst of events (an editor's save is several)
            let mut changed = BTreeSet::new();
            let mut root_lost = false;
            let mut add = |ev| match ev {
                FsEvent::Path(p) => {
                    changed.insert(p);
                }
                FsEvent::RootLost => root_lost = true,
            };
            add(first);
            let deadline = tokio::time::sleep(Duration::from_millis(50));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    ev = fs_rx.recv() => match ev {
                        Some(ev) => add(ev),
                        None => break,
                    }
                }
            }
            if !root_lost {
                self.report_changes(changed, &tx).await;
                continue;
            }
            // the watch died with the folder: watch whatever now has its name
            warn!(dir = %self.root.display(), "the watched folder was removed or replaced; waiting for it (up to {}s)", watch::ROOT_GRACE.as_secs());
            drop(watcher);
            id = watch::wait_for_root(&self.root).await?;
            // events of the old folder are stale now: the rescan covers everything
            while fs_rx.try_recv().is_ok() {}
            watcher = watch::start(&self.root, fs_tx.clone())?;
            self.rescan(&tx).await;
            info!(dir = %self.root.display(), "watching the folder again");
        }
    }

    async fn write_status(
        &self,
        key: &str,
        origin: &str,
        status: &DockerBuildStatus,
    ) -> Result<()> {
        if key == unreadable_key(origin) {
            return Ok(()); // no document to write into
        }
        let path = self.root.join(origin);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > self.max_file_bytes) {
            // writing means reading it whole: the status stays in the log (and --once's count)
            debug!(build = %key, file = %origin, "over --max-resource-file-bytes; status not written into it");
            return Ok(());
        }
        let _guard = self.write_lock.lock().await;
        // the write re-reads and may briefly wait out a user's edit: off the runtime
        let (path, key, origin, status) =
            (path, key.to_string(), origin.to_string(), status.clone());
        tokio::task::spawn_blocking(move || write::write_status(&path, &key, &origin, &status))
            .await
            .map_err(|e| Error::Source {
                path: String::new(),
                message: format!("status writer stopped: {e}"),
            })?
    }

    async fn auth(&self, res: &Resource) -> Result<DockerConfig> {
        let path = res
            .build
            .spec
            .output
            .as_ref()
            .and_then(|o| o.push_secret_ref.as_ref())
            .map(|r| match (&r.path, &r.name) {
                (Some(p), _) => Ok(res.base_dir.clone().unwrap_or_default().join(p)),
                (None, Some(_)) => Err(Error::InvalidSpec(
                    "pushSecretRef.name names a Kubernetes Secret; in a watch folder give pushSecretRef.path, a docker config.json".into(),
                )),
                (None, None) => Err(Error::InvalidSpec(
                    "pushSecretRef needs a path to a docker config.json".into(),
                )),
            })
            .transpose()?;
        DockerConfig::load(path.as_deref())
    }

    async fn secrets(&self, res: &Resource) -> Result<BuildSecrets> {
        secrets::read_files(&res.build.spec.secrets, res.base_dir.as_deref())
    }
}
