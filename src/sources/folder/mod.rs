//! The watch folder: every `*.yaml`/`*.yml` under a directory, status written back
//! into the same file, atomically, touching nothing outside `status:`.

mod yaml_doc;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Resource, Source, SourceEvent};
use crate::api::{API_VERSION, DockerBuild, DockerBuildStatus, KIND};
use crate::registry::DockerConfig;
use crate::{Error, Result};

pub use yaml_doc::{DocSpan, replace_status, split_documents};

/// State kept under the watched folder (the Mesos framework ID, later).
pub const STATE_DIR: &str = ".slipway";
const TMP_SUFFIX: &str = ".slipway-tmp";

pub struct FolderSource {
    root: PathBuf,
    /// Keys each file held when last read, to report deletions.
    files: Mutex<HashMap<PathBuf, BTreeSet<String>>>,
    /// (file, document, kind) already noted as not a DockerBuild, to log once.
    noted: Mutex<BTreeSet<(PathBuf, usize, String)>>,
    /// Serialises read-modify-write of one file across concurrent status writes.
    write_lock: tokio::sync::Mutex<()>,
}

/// One document of a file, read.
#[derive(Debug)]
pub enum Doc {
    Build(Box<DockerBuild>),
    Other { kind: String },
    Invalid { key: String, message: String },
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

/// Parses every document of a file. A document that cannot be read but looks like a
/// DockerBuild is reported as invalid (keyed by its name if that can be found).
pub fn read_docs(text: &str, origin: &str) -> Vec<Doc> {
    split_documents(text)
        .into_iter()
        .map(|span| read_doc(&text[span.range.clone()], span.first_line, origin))
        .collect()
}

fn read_doc(doc: &str, first_line: usize, origin: &str) -> Doc {
    let value: serde_json::Value = match serde_yaml_ng::from_str(doc) {
        Ok(v) => v,
        Err(e) => {
            let line = e.location().map(|l| l.line() + first_line - 1);
            let at = line.map(|l| format!(" at line {l}")).unwrap_or_default();
            let msg = e.to_string();
            // serde_yaml_ng appends its own "at line N column M" relative to the document
            let msg = msg.split(" at line ").next().unwrap_or(&msg);
            return Doc::Invalid {
                key: guess_key(doc).unwrap_or_else(|| format!("{origin}#{first_line}")),
                message: format!("{origin}: YAML syntax error{at}: {msg}"),
            };
        }
    };
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != KIND {
        return Doc::Other {
            kind: if kind.is_empty() {
                "(no kind)".into()
            } else {
                kind.into()
            },
        };
    }
    let api = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or("");
    let key = key_of(&value).unwrap_or_else(|| format!("{origin}#{first_line}"));
    if api != API_VERSION {
        return Doc::Invalid {
            key,
            message: format!("{origin}: apiVersion is '{api}'; this slipway reads {API_VERSION}"),
        };
    }
    if value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .is_none()
    {
        return Doc::Invalid {
            key,
            message: format!("{origin}: metadata.name is missing"),
        };
    }
    match serde_json::from_value::<DockerBuild>(value) {
        Ok(mut b) => {
            b.metadata.namespace.get_or_insert_with(|| "default".into());
            Doc::Build(Box::new(b))
        }
        Err(e) => Doc::Invalid {
            key,
            message: format!("{origin}: not a valid DockerBuild: {e}"),
        },
    }
}

fn key_of(v: &serde_json::Value) -> Option<String> {
    let name = v.pointer("/metadata/name")?.as_str()?;
    let ns = v
        .pointer("/metadata/namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("default");
    Some(format!("{ns}/{name}"))
}

/// The `name:` (and `namespace:`) of a broken document's metadata, read as text.
fn guess_key(doc: &str) -> Option<String> {
    if !doc.lines().any(|l| l.trim_end() == format!("kind: {KIND}")) {
        return None;
    }
    let field = |f: &str| {
        doc.lines()
            .find_map(|l| l.strip_prefix(&format!("  {f}:")))
            .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
            .filter(|v| !v.is_empty())
    };
    let name = field("name")?;
    Some(format!(
        "{}/{name}",
        field("namespace").unwrap_or_else(|| "default".into())
    ))
}

/// The status block as YAML, two-space indented under `status:`.
pub fn status_yaml(status: &DockerBuildStatus) -> Result<String> {
    #[derive(Serialize)]
    struct Wrap<'a> {
        status: &'a DockerBuildStatus,
    }
    serde_yaml_ng::to_string(&Wrap { status }).map_err(|e| Error::Source {
        path: String::new(),
        message: format!("cannot serialise status: {e}"),
    })
}

/// Writes `text` to `path` through a temporary file in the same directory and a
/// rename, so a reader never sees half a file.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}{TMP_SUFFIX}"));
    std::fs::write(&tmp, text)?;
    if let Ok(meta) = std::fs::metadata(path) {
        // keep the user's permissions
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path)
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
        let path = self.root.join(origin);
        let err = |message: String| Error::Source {
            path: origin.to_string(),
            message,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // deleted meanwhile: nothing to write into
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(err(format!("cannot read: {e}"))),
        };
        let spans = split_documents(&text);
        let Some(span) = spans.iter().find(|s| {
            let doc = &text[s.range.clone()];
            match read_doc(doc, s.first_line, origin) {
                Doc::Build(b) => b.key() == key,
                Doc::Invalid { key: k, .. } => k == key,
                Doc::Other { .. } => false,
            }
        }) else {
            debug!(
                key,
                origin, "resource no longer in its file; status not written"
            );
            return Ok(());
        };
        let block = status_yaml(status)?;
        let new_doc = replace_status(&text[span.range.clone()], &block);
        let new_text = yaml_doc::splice(&text, span, &new_doc);
        if new_text == text {
            return Ok(());
        }
        write_atomic(&path, &new_text).map_err(|e| err(format!("cannot write status: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_builds_others_and_broken_documents() {
        let text = "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {name: a}\n\
spec: {source: {inline: {dockerfile: FROM scratch}}}\n---\n\
apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n\
apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata:\n  name: broken\nspec: [unclosed\n";
        let docs = read_docs(text, "f.yaml");
        assert_eq!(docs.len(), 3);
        assert!(matches!(&docs[0], Doc::Build(b) if b.key() == "default/a"));
        assert!(matches!(&docs[1], Doc::Other { kind } if kind == "ConfigMap"));
        match &docs[2] {
            Doc::Invalid { key, message } => {
                assert_eq!(key, "default/broken");
                assert!(
                    message.contains("f.yaml: YAML syntax error at line 1"),
                    "{message}"
                );
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn wrong_field_types_and_versions_are_invalid() {
        let docs = read_docs(
            "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {name: a}\nspec: {source: {path: [1]}}\n---\n\
apiVersion: slipway.dev/v9\nkind: DockerBuild\nmetadata: {name: b}\nspec: {}\n",
            "f.yaml",
        );
        assert!(
            matches!(&docs[0], Doc::Invalid { message, .. } if message.contains("not a valid DockerBuild"))
        );
        assert!(
            matches!(&docs[1], Doc::Invalid { key, message } if key == "default/b" && message.contains("apiVersion"))
        );
    }

    #[test]
    fn status_yaml_is_a_block() {
        let s = DockerBuildStatus {
            phase: Some(crate::api::Phase::Failed),
            message: Some("step 1/1 failed:\nline two".into()),
            ..Default::default()
        };
        let y = status_yaml(&s).unwrap();
        assert!(y.starts_with("status:\n  phase: Failed\n"), "{y}");
        let back: serde_json::Value = serde_yaml_ng::from_str(&y).unwrap();
        assert_eq!(back["status"]["message"], "step 1/1 failed:\nline two");
    }
}
