//! Which files the folder holds: `*.yaml`/`*.yml`/`*.json` under the root, hidden names
//! skipped, and symlinks resolved to the file they name, so that a link and its
//! target are one resource, read and written under the target's name.

use std::path::{Path, PathBuf};

/// What a path under the root stands for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Resolved {
    /// A resource file to read: the path itself, or the target of a link to it.
    File(PathBuf),
    /// Nothing there (removed, or a dangling link).
    Gone,
    /// A link that is not followed, and why.
    Refused(String),
}

/// Resolves `path` (absolute, under the canonical `root`). A link is followed only to
/// a YAML file inside the folder that the folder reads anyway; anything else it
/// leads to is refused, so nothing outside the folder is ever read or written.
pub(super) fn resolve(root: &Path, path: &Path) -> Resolved {
    let Ok(real) = std::fs::canonicalize(path) else {
        return Resolved::Gone;
    };
    if real == path {
        return Resolved::File(real);
    }
    let Ok(rel) = real.strip_prefix(root) else {
        return Resolved::Refused(outside(&real));
    };
    if is_hidden(rel) {
        return Resolved::Refused(format!("it leads to a hidden path, {}", rel.display()));
    }
    if !is_yaml(&real) || !real.is_file() {
        return Resolved::Refused(format!(
            "it leads to {}, not a .yaml/.yml/.json file",
            rel.display()
        ));
    }
    Resolved::File(real)
}

/// Every resource file under the root (links resolved, each file once, sorted), and
/// the links refused on the way.
pub(super) fn list(root: &Path) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut refused = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() && is_yaml(&p) => files.push(p),
                Ok(t) if t.is_symlink() && is_yaml(&p) => match resolve(root, &p) {
                    Resolved::File(f) => files.push(f),
                    Resolved::Refused(why) => refused.push((p, why)),
                    Resolved::Gone => {}
                },
                // a linked directory is not descended into: inside the folder, its
                // files are read through their real paths; outside, it is refused
                Ok(t) if t.is_symlink() && p.is_dir() => {
                    if let Ok(real) = std::fs::canonicalize(&p)
                        && !real.starts_with(root)
                    {
                        refused.push((p, outside(&real)));
                    }
                }
                _ => {}
            }
        }
    }
    files.sort();
    files.dedup();
    (files, refused)
}

fn outside(real: &Path) -> String {
    format!("it leads outside the watched folder, to {}", real.display())
}

/// A resource file by its name: YAML, or JSON as kubectl also accepts (a JSON
/// document is YAML too, so both are read alike).
pub fn is_yaml(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// A path (relative to the root) with a hidden component: our temporary files,
/// `.slipway/`, editors' swap files.
pub(super) fn is_hidden(rel: &Path) -> bool {
    rel.components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_inside_are_their_target_and_links_outside_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x.yaml"), "a: 1\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/target.yaml"), "a: 1\n").unwrap();
        std::fs::write(root.join("notes.txt"), "a: 1\n").unwrap();
        symlink("sub/target.yaml", root.join("link.yaml")).unwrap();
        symlink(outside.path().join("x.yaml"), root.join("out.yaml")).unwrap();
        symlink(outside.path(), root.join("outdir")).unwrap();
        symlink("sub", root.join("subdir")).unwrap();
        symlink("notes.txt", root.join("notes.yaml")).unwrap();
        symlink("missing.yaml", root.join("dangling.yaml")).unwrap();

        let (files, refused) = list(&root);
        assert_eq!(files, [root.join("sub/target.yaml")]);
        let mut refused: Vec<_> = refused.into_iter().map(|(p, _)| p).collect();
        refused.sort();
        assert_eq!(
            refused,
            [
                root.join("notes.yaml"),
                root.join("out.yaml"),
                root.join("outdir")
            ]
        );
        assert_eq!(
            resolve(&root, &root.join("link.yaml")),
            Resolved::File(root.join("sub/target.yaml"))
        );
        assert!(
            matches!(resolve(&root, &root.join("out.yaml")), Resolved::Refused(w) if w.contains("outside"))
        );
        assert_eq!(resolve(&root, &root.join("dangling.yaml")), Resolved::Gone);
    }
}
