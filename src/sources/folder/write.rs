//! Writing a status back into its resource file: only the document's `status:`
//! changes, the file is replaced atomically, and a user's edit that lands while we
//! write is merged, never overwritten (see `replace`).

mod replace;

use std::path::Path;

use tracing::debug;

use super::parse::{Doc, read_doc, status_yaml};
use super::yaml_doc::{self, flow, replace_status, split_documents};
use crate::api::DockerBuildStatus;
use crate::{Error, Result};

/// Writes `status` into the document of `path` that defines `key`. A symlink is
/// written through to its target: the link stays a link.
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
    let real = match std::fs::canonicalize(path) {
        Ok(p) => p,
        // deleted meanwhile (or a dangling link): nothing to write into
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(format!("cannot read: {e}"))),
    };
    let block = status_yaml(status)?;
    let merge = |text: &str| merge_status(text, key, origin, status, &block);
    replace::update(&real, merge, &mut |_| {}).map_err(|e| err(format!("cannot write status: {e}")))
}

/// `text` with `status` in the document defining `key`; None when no document does.
pub(crate) fn merge_status(
    text: &str,
    key: &str,
    origin: &str,
    status: &DockerBuildStatus,
    block: &str,
) -> Option<String> {
    let spans = split_documents(text);
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
        return None;
    };
    let doc = &text[span.range.clone()];
    // a flow (JSON) document keeps its style: status inside the braces
    let new_doc = flow::replace_status(doc, status).unwrap_or_else(|| replace_status(doc, block));
    Some(yaml_doc::splice(text, span, &new_doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Phase;

    const DOC: &str = "apiVersion: slipway.dev/v1alpha1\nkind: DockerBuild\nmetadata: {name: a}\nspec: {source: {path: ctx}}\n";

    fn status(phase: Phase) -> DockerBuildStatus {
        DockerBuildStatus {
            phase: Some(phase),
            ..Default::default()
        }
    }

    #[test]
    fn writes_through_a_symlink_and_keeps_it_a_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let target = dir.path().join("real/build.txt");
        std::fs::write(&target, DOC).unwrap();
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink("real/build.txt", &link).unwrap();

        write_status(&link, "default/a", "link.yaml", &status(Phase::Queued)).unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            format!("{DOC}status:\n  phase: Queued\n")
        );
        // the temp file went to the target's directory, and is gone
        assert_eq!(
            std::fs::read_dir(dir.path().join("real")).unwrap().count(),
            1
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn json_documents_get_a_json_status() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.yaml");
        let text = "{\n  \"apiVersion\": \"slipway.dev/v1alpha1\",\n  \"kind\": \"DockerBuild\",\n  \"metadata\": {\"name\": \"a\"},\n  \"spec\": {\"source\": {\"path\": \"ctx\"}}\n}\n";
        std::fs::write(&file, text).unwrap();
        write_status(&file, "default/a", "b.yaml", &status(Phase::Succeeded)).unwrap();
        let out = std::fs::read_to_string(&file).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"]["phase"], "Succeeded");
        assert!(out.starts_with(text.trim_end_matches("\n}\n")), "{out}");
    }

    #[cfg(unix)]
    #[test]
    fn keeps_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.yaml");
        std::fs::write(&file, DOC).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_status(&file, "default/a", "b.yaml", &status(Phase::Queued)).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
    }
}
