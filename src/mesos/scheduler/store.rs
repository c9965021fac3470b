//! Where the framework ID is kept between runs, so a restarted slipway re-attaches
//! to its running tasks instead of registering anew (which would orphan them).

use std::path::PathBuf;

use crate::{Error, Result};

pub trait FrameworkIdStore: Send + Sync + 'static {
    fn load(&self) -> Option<String>;
    /// Stores the ID; `None` forgets it (the master removed the framework).
    fn save(&self, id: Option<&str>) -> Result<()>;
}

/// A file: `DIR/.slipway/mesos-framework-id` for a watch folder.
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl FrameworkIdStore for FileStore {
    fn load(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let id = text.trim();
        (!id.is_empty()).then(|| id.to_string())
    }

    fn save(&self, id: Option<&str>) -> Result<()> {
        let err = |e: std::io::Error| Error::Source {
            path: self.path.display().to_string(),
            message: e.to_string(),
        };
        match id {
            None => match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(err(e)),
                _ => Ok(()),
            },
            Some(id) if self.load().as_deref() == Some(id) => Ok(()),
            Some(id) => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir).map_err(err)?;
                }
                // temp file and rename: a crash never leaves half an ID
                let tmp = self.path.with_extension("tmp");
                std::fs::write(&tmp, format!("{id}\n")).map_err(err)?;
                std::fs::rename(&tmp, &self.path).map_err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_survives_a_restart_and_can_be_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join(".slipway/mesos-framework-id"));
        assert_eq!(store.load(), None);
        store.save(Some("abc-0001")).unwrap();
        assert_eq!(
            FileStore::new(dir.path().join(".slipway/mesos-framework-id"))
                .load()
                .as_deref(),
            Some("abc-0001")
        );
        store.save(None).unwrap();
        assert_eq!(store.load(), None);
        store.save(None).unwrap();
    }
}
