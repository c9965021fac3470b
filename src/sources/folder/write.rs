//! Writing a status back into its resource file: only the document's `status:`
//! block changes, and the file is replaced atomically.

use std::path::Path;

use tracing::debug;

use super::parse::{Doc, read_doc, status_yaml};
use super::yaml_doc::{self, replace_status, split_documents};
use crate::api::DockerBuildStatus;
use crate::{Error, Result};

const TMP_SUFFIX: &str = ".slipway-tmp";

/// Writes `status` into the document of `path` that defines `key`.
pub fn write_status(
    path: &Path,
    key: &str,
    origin: &str,
    status: &DockerBuildStatus,
) -> Result<()> {
    let err = |message: String| Error::Source {
        path: origin.to_string(),
        message,
    };
    let text = match std::fs::read_to_string(path) {
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
    write_atomic(path, &new_text).map_err(|e| err(format!("cannot write status: {e}")))
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
