//! The build context: which files go to Docker ([`plan`]) and the tar stream that carries
//! them ([`stream`]), produced chunk by chunk so memory stays flat whatever the size.
//!
//! The context cannot reach outside its root: paths with `..` or absolute paths are
//! refused, symlinks are sent as links (never followed), and a symlink whose target
//! would resolve outside the root is refused rather than sent.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::dockerignore::DockerIgnore;
use crate::{Error, Result};

mod confine;
mod stream;

use confine::check_symlink;
pub(crate) use confine::{Lexical, LinkKind, check_link_target, landing, lexical_escape};
pub use confine::{check_relative, resolve_beside, resolve_context_dir};
pub(crate) use stream::ExactFile;
pub use stream::stream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One entry of the context, as it will appear in the tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the context root, `/`-separated, no leading `./`.
    pub path: String,
    pub kind: EntryKind,
    /// File size in bytes; 0 for directories and symlinks.
    pub size: u64,
    /// Permission bits (including setuid/setgid/sticky), without the file type.
    pub mode: u32,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// Nanoseconds past `mtime` (BuildKit's file sync compares mtimes to the
    /// nanosecond to tell a changed file).
    pub mtime_nsec: u32,
    /// The symlink's target, as stored in the link.
    pub link_target: Option<String>,
}

/// What [`stream`] will send, decided up front so that errors (a missing Dockerfile, an
/// escaping symlink) surface before the build starts.
#[derive(Debug, Clone)]
pub struct ContextPlan {
    pub root: PathBuf,
    /// The Dockerfile's path in the context, normalized (`./a//Dockerfile` → `a/Dockerfile`).
    pub dockerfile: String,
    /// Sorted, parents before children.
    pub entries: Vec<Entry>,
    /// Number of regular files.
    pub files: u64,
    /// Sum of the regular files' sizes.
    pub total_bytes: u64,
}

impl ContextPlan {
    /// The Dockerfile's text, read through the plan so that a symlinked Dockerfile is
    /// only followed after [`plan`] has checked it stays inside the context.
    pub fn read_dockerfile(&self) -> Result<String> {
        let bytes = fs::read(self.root.join(&self.dockerfile)).map_err(|e| {
            Error::context(
                format!("cannot read Dockerfile '{}': {e}", self.dockerfile),
                e,
            )
        })?;
        String::from_utf8(bytes).map_err(|_| {
            Error::InvalidSpec(format!(
                "Dockerfile '{}' is not valid UTF-8",
                self.dockerfile
            ))
        })
    }
}

/// `a//b/./c/` → `a/b/c`, for comparing with walked paths.
pub(super) fn normalize_rel(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Walks root (sorted, deterministic), applying .dockerignore (the Dockerfile and
/// .dockerignore are always included, as Docker does), refusing with Error::Context any
/// symlink whose target leaves the root — absolute targets, or relative ones that climb
/// out after lexical resolution from the link's directory, including through other
/// in-context symlinks — naming the link and its target. Errors if the dockerfile does
/// not exist in the context ("Dockerfile 'x' not found in the build context").
/// Sockets/devices/fifos are skipped with a tracing::warn.
///
/// Blocking file-system work: call it from a blocking thread in async code.
pub fn plan(root: &Path, dockerfile: &str) -> Result<ContextPlan> {
    check_relative(dockerfile, "dockerfile")?;
    let dockerfile = normalize_rel(dockerfile);
    if dockerfile.is_empty() {
        return Err(Error::InvalidSpec(
            "dockerfile must name a file in the build context".to_string(),
        ));
    }
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Context(
                format!("'{}' is not a directory", root.display()).into(),
            ));
        }
        Err(e) => {
            return Err(Error::context(
                format!("cannot open context directory '{}': {e}", root.display()),
                e,
            ));
        }
    }
    // Checked before reading: a `.dockerignore` linking out of the context would
    // otherwise be read, and its lines can end up in error messages.
    let ignore_path = root.join(".dockerignore");
    if fs::symlink_metadata(&ignore_path).is_ok_and(|m| m.file_type().is_symlink()) {
        let target = fs::read_link(&ignore_path)
            .map_err(|e| Error::context(format!("cannot read symlink '.dockerignore': {e}"), e))?;
        check_symlink(root, ".dockerignore", &target)?;
    }
    let ignore = DockerIgnore::load(root)?;

    let mut entries = Vec::new();
    let (mut files, mut total_bytes) = (0u64, 0u64);
    // Explicit stack rather than recursion, so a very deep tree cannot overflow.
    let mut stack: Vec<(String, PathBuf, std::vec::IntoIter<OsString>)> =
        vec![(String::new(), root.to_path_buf(), sorted_names(root)?)];

    while let Some((dir_rel, dir_full, names)) = stack.last_mut() {
        let Some(name) = names.next() else {
            stack.pop();
            continue;
        };
        let full = dir_full.join(&name);
        let lossy = name.to_string_lossy();
        let rel = if dir_rel.is_empty() {
            lossy.to_string()
        } else {
            format!("{dir_rel}/{lossy}")
        };
        // a watch folder's own state (build logs, the framework ID) changes with every
        // build: in a context it would rebuild the image forever
        if name == crate::sources::folder::STATE_DIR
            && fs::metadata(&full).is_ok_and(|m| m.is_dir())
        {
            continue;
        }
        let always = rel == dockerfile || rel == ".dockerignore";
        let excluded = !always && ignore.is_excluded(&rel);
        let meta = fs::symlink_metadata(&full)
            .map_err(|e| Error::context(format!("cannot read '{rel}': {e}"), e))?;
        let ft = meta.file_type();
        if excluded {
            // An excluded directory is still walked when something below it may be
            // included (a `!` pattern, or the Dockerfile itself), as Docker does.
            let needed = dockerfile.starts_with(&format!("{rel}/"));
            if ft.is_dir() && (needed || !ignore.can_skip_dir(&rel)) {
                if name.to_str().is_none() {
                    return Err(not_utf8(&rel));
                }
                let names = sorted_names(&full)?;
                stack.push((rel, full, names));
            }
            continue;
        }
        if name.to_str().is_none() {
            return Err(not_utf8(&rel));
        }
        let mut entry = Entry {
            path: rel.clone(),
            kind: EntryKind::File,
            size: 0,
            mode: meta.mode() & 0o7777,
            mtime: meta.mtime(),
            mtime_nsec: nsec(&meta),
            link_target: None,
        };
        if ft.is_dir() {
            entry.kind = EntryKind::Dir;
            entries.push(entry);
            let names = sorted_names(&full)?;
            stack.push((rel, full, names));
        } else if ft.is_file() {
            // Opened now, as the docker CLI does, so an unreadable file is the user's
            // error before the build starts, not a broken upload to the daemon later.
            File::open(&full).map_err(|e| unreadable(&rel, e))?;
            entry.size = meta.len();
            files += 1;
            total_bytes += meta.len();
            entries.push(entry);
        } else if ft.is_symlink() {
            let target = fs::read_link(&full)
                .map_err(|e| Error::context(format!("cannot read symlink '{rel}': {e}"), e))?;
            check_symlink(root, &rel, &target)?;
            if rel == dockerfile {
                // Docker reads a symlinked Dockerfile through the link; send the file it
                // points to (known to be inside the context) under the Dockerfile's name.
                let meta = fs::metadata(&full).map_err(|_| dockerfile_missing(&dockerfile))?;
                if !meta.is_file() {
                    return Err(dockerfile_missing(&dockerfile));
                }
                entry.size = meta.len();
                entry.mode = meta.mode() & 0o7777;
                entry.mtime = meta.mtime();
                entry.mtime_nsec = nsec(&meta);
                files += 1;
                total_bytes += meta.len();
            } else {
                entry.kind = EntryKind::Symlink;
                entry.link_target = Some(
                    target
                        .to_str()
                        .ok_or_else(|| {
                            Error::Context(
                                format!(
                                    "symlink '{rel}' has a target that is not UTF-8: '{}'",
                                    target.display()
                                )
                                .into(),
                            )
                        })?
                        .to_string(),
                );
            }
            entries.push(entry);
        } else {
            tracing::warn!(path = %rel, "skipping socket, device or fifo in the build context");
        }
    }

    match entries.iter().find(|e| e.path == dockerfile) {
        Some(e) if e.kind == EntryKind::File => {}
        Some(_) => {
            return Err(Error::Context(
                format!("Dockerfile '{dockerfile}' is not a file").into(),
            ));
        }
        None => return Err(dockerfile_missing(&dockerfile)),
    }
    Ok(ContextPlan {
        root: root.to_path_buf(),
        dockerfile,
        entries,
        files,
        total_bytes,
    })
}

fn nsec(meta: &fs::Metadata) -> u32 {
    u32::try_from(meta.mtime_nsec()).unwrap_or(0)
}

fn dockerfile_missing(dockerfile: &str) -> Error {
    Error::Context(format!("Dockerfile '{dockerfile}' not found in the build context").into())
}

fn unreadable(rel: &str, e: io::Error) -> Error {
    Error::context(
        format!("cannot read '{rel}': {e}; make it readable or add it to .dockerignore"),
        e,
    )
}

fn not_utf8(rel: &str) -> Error {
    Error::Context(
        format!("'{rel}' has a name that is not valid UTF-8; rename it or add it to .dockerignore")
            .into(),
    )
}

fn sorted_names(dir: &Path) -> Result<std::vec::IntoIter<OsString>> {
    let read = fs::read_dir(dir)
        .map_err(|e| Error::context(format!("cannot list '{}': {e}", dir.display()), e))?;
    let mut names = read
        .map(|r| r.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| Error::context(format!("cannot list '{}': {e}", dir.display()), e))?;
    names.sort();
    Ok(names.into_iter())
}

#[cfg(test)]
mod tests;
