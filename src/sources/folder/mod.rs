//! The watch folder: every `*.yaml`/`*.yml` under a directory, status written back
//! into the same file, atomically, touching nothing outside `status:`.

mod parse;
mod write;
mod yaml_doc;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Resource, Source, SourceEvent};
use crate::api::DockerBuildStatus;
use crate::registry::DockerConfig;
use crate::{Error, Result};

pub use parse::{Doc, read_docs, status_yaml};
pub use yaml_doc::{DocSpan, replace_status, split_documents};

/// State kept under the watched folder (the Mesos framework ID, later).
pub const STATE_DIR: &str = ".slipway";

pub struct FolderSource {
    root: PathBuf,
    /// Keys each file held when last read, to report deletions.
    files: Mutex<HashMap<PathBuf, BTreeSet<String>>>,
    /// (file, document, kind) already noted as not a DockerBuild, to log once.
    noted: Mutex<BTreeSet<(PathBuf, usize, String)>>,
    /// Serialises read-modify-write of one file across concurrent status writes.
    write_lock: tokio::sync::Mutex<()>,
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
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every YAML file under the root, sorted, skipping hidden directories.
    pub fn yaml_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                let hidden = e.file_name().to_string_lossy().starts_with('.');
                match e.file_type() {
                    Ok(t) if t.is_dir() && !hidden => stack.push(p),
                    Ok(t) if t.is_file() && !hidden && is_yaml(&p) => out.push(p),
                    _ => {}
                }
            }
        }
        out.sort();
        out
    }

    fn origin(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Reads one file and reports what it holds now, including deletions.
    async fn report_file(&self, path: &Path, tx: &mpsc::Sender<SourceEvent>) {
        let origin = self.origin(path);
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                warn!(file = %origin, "cannot read: {e}");
                return;
            }
        };
        let mut now = BTreeSet::new();
        let mut events = Vec::new();
        if let Some(text) = &text {
            for (i, doc) in read_docs(text, &origin).into_iter().enumerate() {
                match doc {
                    Doc::Build(build) => {
                        now.insert(build.key());
                        events.push(SourceEvent::Applied(Box::new(Resource {
                            build: *build,
                            origin: origin.clone(),
                            base_dir: path.parent().map(Path::to_path_buf),
                        })));
                    }
                    Doc::Invalid { key, message } => {
                        now.insert(key.clone());
                        events.push(SourceEvent::Invalid {
                            key,
                            origin: origin.clone(),
                            message,
                        });
                    }
                    Doc::Other { kind } => {
                        let first = self
                            .lock_noted()
                            .insert((path.to_path_buf(), i, kind.clone()));
                        if first {
                            info!(file = %origin, document = i + 1, kind = %kind, "not a DockerBuild; ignored");
                        }
                    }
                }
            }
        }
        let before = {
            let mut files = self.lock_files();
            if text.is_some() {
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

    fn lock_files(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, BTreeSet<String>>> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_noted(&self) -> std::sync::MutexGuard<'_, BTreeSet<(PathBuf, usize, String)>> {
        self.noted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files that held resources when last read but are gone from the listing.
    fn vanished(&self, present: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
        self.lock_files()
            .keys()
            .filter(|p| !present.contains(*p))
            .cloned()
            .collect()
    }
}

fn is_yaml(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    )
}

#[async_trait]
impl Source for FolderSource {
    async fn run(&self, tx: mpsc::Sender<SourceEvent>) -> Result<()> {
        if !self.root.is_dir() {
            return Err(Error::Source {
                path: self.root.display().to_string(),
                message: "not a directory".into(),
            });
        }
        // watch first, so nothing written during the first scan is missed
        let (fs_tx, mut fs_rx) = mpsc::unbounded_channel::<PathBuf>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            match res {
                // reads are events too (we read files to report them): skip them
                Ok(ev) if matches!(ev.kind, notify::EventKind::Access(_)) => {}
                Ok(ev) => {
                    for p in ev.paths {
                        let _ = fs_tx.send(p);
                    }
                }
                Err(e) => warn!("file watch error: {e}"),
            }
        })
        .map_err(|e| Error::Source {
            path: self.root.display().to_string(),
            message: format!("cannot watch: {e}"),
        })?;
        watcher
            .watch(&self.root, RecursiveMode::Recursive)
            .map_err(|e| Error::Source {
                path: self.root.display().to_string(),
                message: format!("cannot watch: {e}"),
            })?;

        for f in self.yaml_files() {
            self.report_file(&f, &tx).await;
        }
        if tx.send(SourceEvent::Synced).await.is_err() {
            return Ok(());
        }
        info!(dir = %self.root.display(), "watching for changes");

        while let Some(first) = fs_rx.recv().await {
            // gather a short burst of events (an editor's save is several)
            let mut changed = BTreeSet::from([first]);
            let deadline = tokio::time::sleep(Duration::from_millis(50));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    p = fs_rx.recv() => match p {
                        Some(p) => { changed.insert(p); }
                        None => break,
                    }
                }
            }
            let mut files = BTreeSet::new();
            let mut rescan = false;
            for p in changed {
                let rel = p.strip_prefix(&self.root).unwrap_or(&p);
                if rel
                    .components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
                {
                    continue; // our temp files, .slipway/, editors' swap files
                }
                if is_yaml(&p) {
                    files.insert(p);
                } else if p.is_dir() || !p.exists() {
                    rescan = true; // a directory appeared, moved or vanished
                }
            }
            if rescan {
                let present: BTreeSet<PathBuf> = self.yaml_files().into_iter().collect();
                files.extend(self.vanished(&present));
                files.extend(present);
            }
            for f in files {
                debug!(file = %f.display(), "changed");
                self.report_file(&f, &tx).await;
            }
        }
        Ok(())
    }

    async fn write_status(
        &self,
        key: &str,
        origin: &str,
        status: &DockerBuildStatus,
    ) -> Result<()> {
        let _guard = self.write_lock.lock().await;
        write::write_status(&self.root.join(origin), key, origin, status)
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
}
