//! Confinement: nothing a context, a resource or an unpacked archive names may lead
//! outside its root, whether by `..`, an absolute path or a symlink on the way.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// Same limit as Linux's ELOOP, so a symlink cycle is refused instead of looping.
const MAX_SYMLINK_HOPS: usize = 40;

/// Refuses absolute paths and any `..` component (what: "contextDir", "dockerfile",
/// "path" — used in the message). These are mistakes in the resource, hence
/// `Error::InvalidSpec`.
pub fn check_relative(path: &str, what: &str) -> Result<()> {
    if path.starts_with('/') || path.starts_with('\\') || Path::new(path).is_absolute() {
        return Err(Error::InvalidSpec(format!(
            "{what} '{path}' must be a path relative to the build context, not an absolute path"
        )));
    }
    // Backslashes count as separators too, so a Windows-style `..\x` is refused as well.
    if path.split(['/', '\\']).any(|c| c == "..") {
        return Err(Error::InvalidSpec(format!(
            "{what} '{path}' must stay inside the build context ('..' is not allowed)"
        )));
    }
    Ok(())
}

/// Resolves the symlink at `rel_link` the way the kernel would — component by component
/// from the link's directory, following other symlinks met on the way — and refuses it
/// if the walk ever climbs above the root or meets an absolute target.
pub(super) fn check_symlink(root: &Path, rel_link: &str, target: &Path) -> Result<()> {
    check_link_target(root, Path::new(rel_link), target, LinkKind::Symbolic)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkKind {
    /// Target relative to the link's directory.
    Symbolic,
    /// Target relative to the root (as in a tar archive).
    Hard,
}

/// Refuses a link (already on disk or about to be) whose target resolves outside `root`,
/// following symlinks that exist under `root`. Shared with the tarball unpacker.
pub(crate) fn check_link_target(
    root: &Path,
    rel_link: &Path,
    target: &Path,
    kind: LinkKind,
) -> Result<()> {
    let noun = match kind {
        LinkKind::Symbolic => "symlink",
        LinkKind::Hard => "hard link",
    };
    let start = match kind {
        LinkKind::Symbolic => rel_link.parent().map(Path::to_path_buf).unwrap_or_default(),
        LinkKind::Hard => PathBuf::new(),
    };
    resolve_within(root, start, target)
        .map(drop)
        .map_err(|e| match e {
            Escape::Outside { via } => {
                let how = match via {
                    Some(v) => format!(" (through symlink '{}')", v.display()),
                    None => String::new(),
                };
                Error::Context(format!(
                    "{noun} '{}' points to '{}', outside the build context{how}",
                    rel_link.display(),
                    target.display()
                ))
            }
            Escape::Loop => Error::Context(format!(
                "{noun} '{}' points to '{}': too many levels of symbolic links",
                rel_link.display(),
                target.display()
            )),
            Escape::Io(e) => e,
        })
}

enum Escape {
    /// Climbed above the root or met an absolute target (in symlink `via`, if not the
    /// path itself).
    Outside {
        via: Option<PathBuf>,
    },
    Loop,
    Io(Error),
}

/// Resolves `target`, relative to `start` (itself relative to `root`), the way the kernel
/// would — component by component, following symlinks that exist under `root` — and
/// returns the resolved path relative to `root`, or how it escapes.
fn resolve_within(
    root: &Path,
    start: PathBuf,
    target: &Path,
) -> std::result::Result<PathBuf, Escape> {
    if target.has_root() {
        return Err(Escape::Outside { via: None });
    }
    let mut cur = start;
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front_components(&mut pending, target);
    let mut via: Option<PathBuf> = None;
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c == "." || c.is_empty() {
            continue;
        }
        if c == ".." {
            if !cur.pop() {
                return Err(Escape::Outside { via });
            }
            continue;
        }
        cur.push(&c);
        let full = root.join(&cur);
        let is_link = fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(Escape::Loop);
        }
        let next = fs::read_link(&full).map_err(|e| {
            Escape::Io(Error::Context(format!(
                "cannot read symlink '{}': {e}",
                cur.display()
            )))
        })?;
        via = Some(cur.clone());
        if next.has_root() {
            return Err(Escape::Outside { via });
        }
        cur.pop();
        push_front_components(&mut pending, &next);
    }
    Ok(cur)
}

/// The directory `context_dir` (a resource's `contextDir`) names inside `base` (a Git
/// checkout, an unpacked tarball), with symlinks resolved: refuses `..` and absolute
/// paths like [`check_relative`], and also a symlink on the way that leads out of
/// `base` — which a lexical check cannot see. Empty or "." is `base` itself.
pub fn resolve_context_dir(base: &Path, context_dir: &str) -> Result<PathBuf> {
    check_relative(context_dir, "contextDir")?;
    match resolve_within(base, PathBuf::new(), Path::new(context_dir)) {
        Ok(rel) => Ok(base.join(rel)),
        Err(Escape::Outside { via }) => Err(Error::Context(format!(
            "contextDir '{context_dir}' leads outside the source through symlink '{}'",
            via.as_deref().unwrap_or(Path::new(context_dir)).display()
        ))),
        Err(Escape::Loop) => Err(Error::Context(format!(
            "contextDir '{context_dir}': too many levels of symbolic links"
        ))),
        Err(Escape::Io(e)) => Err(e),
    }
}

/// A file a resource names relative to its own file's directory `base` (a build
/// secret's `file`), with symlinks resolved. As for a context directory, an absolute
/// path, `..`, and a symlink on the way that leads out of `base` are refused: a
/// resource reads only what sits beside it. `what` names the field in messages.
pub fn resolve_beside(base: &Path, rel: &str, what: &str) -> Result<PathBuf> {
    let refuse = |why: String| {
        Err(Error::InvalidSpec(format!(
            "{what} '{rel}' {why}: it must be a path inside the directory of the resource's file"
        )))
    };
    if rel.starts_with('/') || rel.starts_with('\\') || Path::new(rel).is_absolute() {
        return refuse("is an absolute path".into());
    }
    if rel.split(['/', '\\']).any(|c| c == "..") {
        return refuse("climbs out with '..'".into());
    }
    match resolve_within(base, PathBuf::new(), Path::new(rel)) {
        Ok(rel) => Ok(base.join(rel)),
        Err(Escape::Outside { via }) => refuse(format!(
            "leads outside through symlink '{}'",
            via.as_deref().unwrap_or(Path::new(rel)).display()
        )),
        Err(Escape::Loop) => refuse("has too many levels of symbolic links".into()),
        Err(Escape::Io(e)) => Err(e),
    }
}

fn push_front_components(pending: &mut VecDeque<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => pending.push_front(n.to_os_string()),
            Component::ParentDir => pending.push_front(OsString::from("..")),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
}
