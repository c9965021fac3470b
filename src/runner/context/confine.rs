//! Confinement: nothing a context, a resource or an unpacked archive names may lead
//! outside its root, whether by `..`, an absolute path or a symlink on the way.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// Same limit as Linux's ELOOP, so a symlink cycle is refused instead of looping.
const MAX_SYMLINK_HOPS: usize = 40;

/// How a path leaves its root by its spelling alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lexical {
    Absolute,
    ParentDir,
}

/// The one lexical check behind every path named relative to a root (a resource's
/// `contextDir`, `dockerfile` or secret file, an archive entry or its hard link target):
/// absolute, or with a `..` component. Symlinks are [`resolve_within`]'s business.
pub(crate) fn lexical_escape(path: &Path) -> Option<Lexical> {
    if path.has_root() || path.is_absolute() {
        return Some(Lexical::Absolute);
    }
    path.components()
        .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
        .then_some(Lexical::ParentDir)
}

/// [`lexical_escape`] for a path a resource names, where backslashes count as separators
/// too, so a Windows-style `..\x` or `\x` is refused as well.
fn lexical_escape_str(path: &str) -> Option<Lexical> {
    lexical_escape(Path::new(&path.replace('\\', "/")))
}

/// Refuses absolute paths and any `..` component (what: "contextDir", "dockerfile",
/// "path" — used in the message). These are mistakes in the resource, hence
/// `Error::InvalidSpec`.
pub fn check_relative(path: &str, what: &str) -> Result<()> {
    match lexical_escape_str(path) {
        Some(Lexical::Absolute) => Err(Error::InvalidSpec(format!(
            "{what} '{path}' must be a path relative to the build context, not an absolute path"
        ))),
        Some(Lexical::ParentDir) => Err(Error::InvalidSpec(format!(
            "{what} '{path}' must stay inside the build context ('..' is not allowed)"
        ))),
        None => Ok(()),
    }
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
                Error::Context(
                    format!(
                        "{noun} '{}' points to '{}', outside the build context{how}",
                        rel_link.display(),
                        target.display()
                    )
                    .into(),
                )
            }
            Escape::Loop => Error::Context(
                format!(
                    "{noun} '{}' points to '{}': too many levels of symbolic links",
                    rel_link.display(),
                    target.display()
                )
                .into(),
            ),
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
            Escape::Io(Error::context(
                format!("cannot read symlink '{}': {e}", cur.display()),
                e,
            ))
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
        Err(Escape::Outside { via }) => Err(Error::Context(
            format!(
                "contextDir '{context_dir}' leads outside the source through symlink '{}'",
                via.as_deref().unwrap_or(Path::new(context_dir)).display()
            )
            .into(),
        )),
        Err(Escape::Loop) => Err(Error::Context(
            format!("contextDir '{context_dir}': too many levels of symbolic links").into(),
        )),
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
    match lexical_escape_str(rel) {
        Some(Lexical::Absolute) => return refuse("is an absolute path".into()),
        Some(Lexical::ParentDir) => return refuse("climbs out with '..'".into()),
        None => {}
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

/// Where `rel`, about to be created under `root` (an archive entry), lands once the
/// symlinks among its existing parents are followed as the OS will, relative to `root`;
/// refused when that is outside `root`. Parents not there yet count as plain directories.
pub(crate) fn landing(root: &Path, rel: &Path) -> Result<PathBuf> {
    let name = rel
        .file_name()
        .ok_or_else(|| Error::Context(format!("'{}' names no file", rel.display()).into()))?;
    let parent = rel.parent().unwrap_or(Path::new(""));
    match resolve_within(root, PathBuf::new(), parent) {
        Ok(mut at) => {
            at.push(name);
            Ok(at)
        }
        Err(Escape::Outside { via }) => Err(Error::Context(
            format!(
                "'{}' would land outside the context through symlink '{}'",
                rel.display(),
                via.as_deref().unwrap_or(parent).display()
            )
            .into(),
        )),
        Err(Escape::Loop) => Err(Error::Context(
            format!("'{}': too many levels of symbolic links", rel.display()).into(),
        )),
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
