//! The build context: which files go to Docker ([`plan`]) and the tar stream that carries
//! them ([`stream`]), produced chunk by chunk so memory stays flat whatever the size.
//!
//! The context cannot reach outside its root: paths with `..` or absolute paths are
//! refused, symlinks are sent as links (never followed), and a symlink whose target
//! would resolve outside the root is refused rather than sent.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;

use super::dockerignore::DockerIgnore;
use crate::{Error, Result};

/// Bytes per chunk handed to the consumer.
const CHUNK_SIZE: usize = 64 * 1024;
/// Chunks buffered between the tar writer and the consumer; with [`CHUNK_SIZE`] this
/// bounds the stream's memory to about half a megabyte.
const CHANNEL_CAPACITY: usize = 8;
/// Same limit as Linux's ELOOP, so a symlink cycle is refused instead of looping.
const MAX_SYMLINK_HOPS: usize = 40;

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
            Error::Context(format!("cannot read Dockerfile '{}': {e}", self.dockerfile))
        })?;
        String::from_utf8(bytes).map_err(|_| {
            Error::InvalidSpec(format!(
                "Dockerfile '{}' is not valid UTF-8",
                self.dockerfile
            ))
        })
    }
}

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

/// `a//b/./c/` → `a/b/c`, for comparing with walked paths.
fn normalize_rel(path: &str) -> String {
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
            return Err(Error::Context(format!(
                "'{}' is not a directory",
                root.display()
            )));
        }
        Err(e) => {
            return Err(Error::Context(format!(
                "cannot open context directory '{}': {e}",
                root.display()
            )));
        }
    }
    // Checked before reading: a `.dockerignore` linking out of the context would
    // otherwise be read, and its lines can end up in error messages.
    let ignore_path = root.join(".dockerignore");
    if fs::symlink_metadata(&ignore_path).is_ok_and(|m| m.file_type().is_symlink()) {
        let target = fs::read_link(&ignore_path)
            .map_err(|e| Error::Context(format!("cannot read symlink '.dockerignore': {e}")))?;
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
            .map_err(|e| Error::Context(format!("cannot read '{rel}': {e}")))?;
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
            File::open(&full).map_err(|e| unreadable(&rel, &e))?;
            entry.size = meta.len();
            files += 1;
            total_bytes += meta.len();
            entries.push(entry);
        } else if ft.is_symlink() {
            let target = fs::read_link(&full)
                .map_err(|e| Error::Context(format!("cannot read symlink '{rel}': {e}")))?;
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
                            Error::Context(format!(
                                "symlink '{rel}' has a target that is not UTF-8: '{}'",
                                target.display()
                            ))
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
            return Err(Error::Context(format!(
                "Dockerfile '{dockerfile}' is not a file"
            )));
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
    Error::Context(format!(
        "Dockerfile '{dockerfile}' not found in the build context"
    ))
}

fn unreadable(rel: &str, e: &io::Error) -> Error {
    Error::Context(format!(
        "cannot read '{rel}': {e}; make it readable or add it to .dockerignore"
    ))
}

fn not_utf8(rel: &str) -> Error {
    Error::Context(format!(
        "'{rel}' has a name that is not valid UTF-8; rename it or add it to .dockerignore"
    ))
}

fn sorted_names(dir: &Path) -> Result<std::vec::IntoIter<OsString>> {
    let read = fs::read_dir(dir)
        .map_err(|e| Error::Context(format!("cannot list '{}': {e}", dir.display())))?;
    let mut names = read
        .map(|r| r.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|e| Error::Context(format!("cannot list '{}': {e}", dir.display())))?;
    names.sort();
    Ok(names.into_iter())
}

/// Resolves the symlink at `rel_link` the way the kernel would — component by component
/// from the link's directory, following other symlinks met on the way — and refuses it
/// if the walk ever climbs above the root or meets an absolute target.
fn check_symlink(root: &Path, rel_link: &str, target: &Path) -> Result<()> {
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

/// Streams the tar of `plan`, with the Dockerfile's bytes replaced by
/// `dockerfile_content` (the directive-stripped text). Runs the tar writer on a blocking
/// thread writing ~64 KiB chunks into a bounded tokio mpsc channel (capacity ~8), so
/// memory stays flat whatever the context size. Headers like the docker CLI's: uid/gid
/// 0, names relative, mode and mtime from the file, dirs included. A file that changes
/// size or vanishes while streaming ends the stream with an io::Error saying which file.
///
/// The writer starts when the stream is first polled (so it may be created outside a
/// tokio runtime) and stops, closing its files, when the stream is dropped.
pub fn stream(
    plan: ContextPlan,
    dockerfile: &str,
    dockerfile_content: Vec<u8>,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    enum State {
        Start(ContextPlan, String, Vec<u8>),
        Running(
            mpsc::Receiver<io::Result<Bytes>>,
            tokio::task::JoinHandle<()>,
        ),
        Done,
    }
    let start = State::Start(plan, normalize_rel(dockerfile), dockerfile_content);
    futures::stream::unfold(start, |state| async move {
        let (mut rx, handle) = match state {
            State::Start(plan, dockerfile, content) => {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                let handle = tokio::task::spawn_blocking(move || {
                    let errors = tx.clone();
                    if let Err(e) = write_tar(&plan, &dockerfile, &content, tx) {
                        // Fails only when the consumer is gone, and then nobody cares.
                        let _ = errors.blocking_send(Err(e));
                    }
                });
                (rx, handle)
            }
            State::Running(rx, handle) => (rx, handle),
            State::Done => return None,
        };
        match rx.recv().await {
            Some(Ok(chunk)) => Some((Ok(chunk), State::Running(rx, handle))),
            Some(Err(e)) => Some((Err(e), State::Done)),
            // Channel closed: the writer finished, or panicked — which must not pass for
            // a complete (truncated) tar.
            None => match handle.await {
                Ok(()) => None,
                Err(e) => Some((
                    Err(io::Error::other(format!(
                        "build context writer failed: {e}"
                    ))),
                    State::Done,
                )),
            },
        }
    })
}

fn write_tar(
    plan: &ContextPlan,
    dockerfile: &str,
    dockerfile_content: &[u8],
    tx: mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    let writer = ChunkWriter {
        tx,
        buf: BytesMut::with_capacity(CHUNK_SIZE),
    };
    let mut builder = tar::Builder::new(writer);
    for entry in &plan.entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(entry.mode);
        header.set_mtime(u64::try_from(entry.mtime).unwrap_or(0));
        match entry.kind {
            EntryKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, format!("{}/", entry.path), io::empty())?;
            }
            EntryKind::Symlink => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                let target = entry.link_target.as_deref().unwrap_or_default();
                builder.append_link(&mut header, &entry.path, target)?;
            }
            EntryKind::File if entry.path == dockerfile => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(dockerfile_content.len() as u64);
                builder.append_data(&mut header, &entry.path, dockerfile_content)?;
            }
            EntryKind::File => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(entry.size);
                let reader = ExactFile::open(&plan.root, entry)?;
                builder.append_data(&mut header, &entry.path, reader)?;
            }
        }
    }
    let mut writer = builder.into_inner()?;
    writer.flush()
}

/// Reads exactly the planned number of bytes of a context file, failing (with the file's
/// name) if it is shorter or longer: the tar header (or a file sync stat) already
/// promised that size.
pub(crate) struct ExactFile<'a> {
    file: File,
    remaining: u64,
    path: &'a str,
}

impl<'a> ExactFile<'a> {
    pub(crate) fn open(root: &Path, entry: &'a Entry) -> io::Result<Self> {
        let path = entry.path.as_str();
        let file = File::open(root.join(path)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    e.kind(),
                    format!("build context file '{path}' vanished while it was being sent"),
                )
            } else {
                io::Error::new(e.kind(), format!("build context file '{path}': {e}"))
            }
        })?;
        // The plan saw a regular file; if a symlink has taken its place since, the open
        // above followed it, possibly out of the context: refuse rather than send that.
        let swapped = fs::symlink_metadata(root.join(path)).is_ok_and(|m| !m.is_file());
        let len = file.metadata()?.len();
        if swapped || len != entry.size {
            return Err(changed(path));
        }
        Ok(ExactFile {
            file,
            remaining: entry.size,
            path,
        })
    }
}

fn changed(path: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("build context file '{path}' changed while it was being sent"),
    )
}

impl Read for ExactFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 {
            // Probe one byte: data past the promised size means the file grew.
            let mut probe = [0u8; 1];
            return match self.file.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(changed(self.path)),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want]).map_err(|e| {
            io::Error::new(e.kind(), format!("build context file '{}': {e}", self.path))
        })?;
        if n == 0 {
            return Err(changed(self.path));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Collects writes into [`CHUNK_SIZE`] chunks and hands them to the channel, blocking
/// while it is full — that back-pressure is what keeps memory flat.
struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, BytesMut::with_capacity(CHUNK_SIZE));
        self.tx.blocking_send(Ok(chunk.freeze())).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "build context stream was dropped",
            )
        })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK_SIZE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn write(root: &Path, rel: &str, data: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    async fn collect(s: impl Stream<Item = io::Result<Bytes>>) -> io::Result<Vec<Bytes>> {
        let mut s = std::pin::pin!(s);
        let mut chunks = Vec::new();
        while let Some(c) = s.next().await {
            chunks.push(c?);
        }
        Ok(chunks)
    }

    /// (path, type, contents or link target, mode, uid)
    fn read_tar(data: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>, u32, u64)> {
        let mut ar = tar::Archive::new(data);
        ar.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().to_string();
                let ty = e.header().entry_type();
                let mode = e.header().mode().unwrap();
                let uid = e.header().uid().unwrap();
                let mut body = Vec::new();
                if ty == tar::EntryType::Symlink {
                    body = e
                        .link_name()
                        .unwrap()
                        .unwrap()
                        .to_string_lossy()
                        .as_bytes()
                        .to_vec();
                } else {
                    e.read_to_end(&mut body).unwrap();
                }
                (path, ty, body, mode, uid)
            })
            .collect()
    }

    #[test]
    fn slipway_state_is_never_in_a_context() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", b"FROM scratch\n");
        write(dir.path(), ".slipway/logs/ns/app/1.log", b"log\n");
        write(dir.path(), "sub/.slipway/logs/ns/b/1.log", b"log\n");
        let paths: Vec<String> = plan(dir.path(), "Dockerfile")
            .unwrap()
            .entries
            .iter()
            .map(|e| e.path.clone())
            .collect();
        assert_eq!(paths, ["Dockerfile", "sub"]);
    }

    fn context_err<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::Context(m)) => m,
            other => panic!("expected Error::Context, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn tar_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", b"FROM scratch\nTAG x\nCOPY . /\n");
        write(
            root,
            ".dockerignore",
            b"secret\n*.log\n!keep.log\nnode_modules\n",
        );
        write(root, "a.txt", b"hello");
        write(root, "sub/b.txt", b"world");
        write(root, "secret", b"password");
        write(root, "x.log", b"log");
        write(root, "keep.log", b"kept");
        write(root, "node_modules/m.js", b"js");
        write(root, "run.sh", b"#!/bin/sh\n");
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(root.join("emptydir")).unwrap();
        let long = format!("{}/{}.txt", "d".repeat(80), "f".repeat(60));
        write(root, &long, b"long");

        let plan = plan(root, "./Dockerfile").unwrap();
        assert_eq!(plan.files, 7);
        let stripped = b"FROM scratch\n# TAG x\nCOPY . /\n".to_vec();
        let chunks = collect(stream(plan, "Dockerfile", stripped.clone()))
            .await
            .unwrap();
        let data: Vec<u8> = chunks.concat();
        let entries = read_tar(&data);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            vec![
                ".dockerignore",
                "Dockerfile",
                "a.txt",
                &format!("{}/", "d".repeat(80)),
                &long,
                "emptydir/",
                "keep.log",
                "run.sh",
                "sub/",
                "sub/b.txt",
            ]
        );
        let get = |n: &str| entries.iter().find(|e| e.0 == n).unwrap();
        assert_eq!(get("Dockerfile").2, stripped);
        assert_eq!(get("a.txt").2, b"hello");
        assert_eq!(get("sub/b.txt").2, b"world");
        assert_eq!(get(&long).2, b"long");
        assert_eq!(get("run.sh").3, 0o755);
        assert_eq!(get("sub/").1, tar::EntryType::Directory);
        assert!(entries.iter().all(|e| e.4 == 0));
    }

    #[tokio::test]
    async fn dockerfile_and_dockerignore_always_included() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "docker/Dockerfile", b"FROM scratch\n");
        write(root, "docker/other", b"x");
        write(root, ".dockerignore", b"docker\n.dockerignore\n");
        let plan = plan(root, "docker/Dockerfile").unwrap();
        let names: Vec<&str> = plan.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(names, vec![".dockerignore", "docker/Dockerfile"]);
        let data = collect(stream(
            plan,
            "docker/Dockerfile",
            b"FROM scratch\n".to_vec(),
        ))
        .await
        .unwrap()
        .concat();
        let entries = read_tar(&data);
        assert_eq!(entries[1].0, "docker/Dockerfile");
    }

    #[test]
    fn escaping_symlinks_refused() {
        let cases: &[(&str, &str)] = &[
            ("abs", "/etc/passwd"),
            ("up", "../x"),
            ("sub/climb", "../../x"),
            ("l", "a/../../x"),
            ("b", "sub/./../.."),
        ];
        for (link, target) in cases {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("ctx");
            write(&root, "Dockerfile", b"FROM scratch\n");
            fs::create_dir_all(root.join("sub")).unwrap();
            symlink(target, root.join(link)).unwrap();
            let m = context_err(plan(&root, "Dockerfile"));
            assert!(m.contains(&format!("symlink '{link}'")), "{m}");
            assert!(m.contains(&format!("'{target}'")), "{m}");
            assert!(m.contains("outside the build context"), "{m}");
        }
    }

    #[test]
    fn escaping_through_another_symlink_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        write(&root, "Dockerfile", b"FROM scratch\n");
        fs::create_dir_all(root.join("sub")).unwrap();
        // sub/up -> .. is the root itself: fine alone.
        symlink("..", root.join("sub/up")).unwrap();
        assert!(plan(&root, "Dockerfile").is_ok());
        // Lexically sub/up/../x is sub/x, but the kernel goes root/.. = outside.
        symlink("sub/up/../x", root.join("link")).unwrap();
        let m = context_err(plan(&root, "Dockerfile"));
        assert!(m.contains("symlink 'link' points to 'sub/up/../x'"), "{m}");
        assert!(m.contains("through symlink 'sub/up'"), "{m}");

        // A chain ending in an absolute target (the absolute link itself is not sent).
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", b"FROM scratch\n");
        write(root, ".dockerignore", b"abs\n");
        symlink("/tmp", root.join("abs")).unwrap();
        symlink("abs/file", root.join("chain")).unwrap();
        let m = context_err(plan(root, "Dockerfile"));
        assert!(m.contains("symlink 'chain' points to 'abs/file'"), "{m}");
        assert!(m.contains("through symlink 'abs'"), "{m}");

        // A cycle is refused, not looped on.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", b"FROM scratch\n");
        symlink("l2", root.join("l1")).unwrap();
        symlink("l1", root.join("l2")).unwrap();
        let m = context_err(plan(root, "Dockerfile"));
        assert!(m.contains("too many levels"), "{m}");
    }

    #[test]
    fn excluded_escaping_symlink_is_not_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", b"FROM scratch\n");
        write(root, ".dockerignore", b"outside\n");
        symlink("/etc", root.join("outside")).unwrap();
        let plan = plan(root, "Dockerfile").unwrap();
        assert!(plan.entries.iter().all(|e| e.path != "outside"));
    }

    #[tokio::test]
    async fn inside_symlinks_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", b"FROM scratch\n");
        write(root, "sub/b.txt", b"b");
        write(root, "a.txt", b"a");
        symlink("sub/b.txt", root.join("inlink")).unwrap();
        symlink("../a.txt", root.join("sub/parent")).unwrap();
        symlink("nothere", root.join("dangling")).unwrap();
        symlink("sub/parent", root.join("chain")).unwrap();
        symlink(".", root.join("self")).unwrap();
        let plan = plan(root, "Dockerfile").unwrap();
        let data = collect(stream(plan, "Dockerfile", b"FROM scratch\n".to_vec()))
            .await
            .unwrap()
            .concat();
        let entries = read_tar(&data);
        let link = |n: &str| {
            let e = entries.iter().find(|e| e.0 == n).unwrap();
            assert_eq!(e.1, tar::EntryType::Symlink, "{n}");
            String::from_utf8(e.2.clone()).unwrap()
        };
        assert_eq!(link("inlink"), "sub/b.txt");
        assert_eq!(link("sub/parent"), "../a.txt");
        assert_eq!(link("dangling"), "nothere");
        assert_eq!(link("chain"), "sub/parent");
        assert_eq!(link("self"), ".");
    }

    #[test]
    fn symlinked_dockerfile_is_sent_as_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "docker/real", b"FROM scratch\n");
        symlink("docker/real", root.join("Dockerfile")).unwrap();
        let plan = plan(root, "Dockerfile").unwrap();
        let e = plan
            .entries
            .iter()
            .find(|e| e.path == "Dockerfile")
            .unwrap();
        assert_eq!(e.kind, EntryKind::File);
        assert_eq!(e.size, 13);
    }

    #[test]
    fn read_dockerfile_through_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "docker/Dockerfile", b"FROM scratch\n");
        let p = plan(dir.path(), "./docker//Dockerfile").unwrap();
        assert_eq!(p.dockerfile, "docker/Dockerfile");
        assert_eq!(p.read_dockerfile().unwrap(), "FROM scratch\n");
        write(dir.path(), "docker/Dockerfile", b"\xff\xfe");
        assert!(matches!(p.read_dockerfile(), Err(Error::InvalidSpec(_))));
    }

    #[test]
    fn escaping_dockerignore_symlink_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ctx");
        write(&root, "Dockerfile", b"FROM scratch\n");
        write(dir.path(), "outside", b"[secret line\n");
        symlink("../outside", root.join(".dockerignore")).unwrap();
        let m = context_err(plan(&root, "Dockerfile"));
        assert!(m.contains("symlink '.dockerignore'"), "{m}");
        assert!(!m.contains("secret"), "{m}");
    }

    #[test]
    fn context_dir_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("src");
        fs::create_dir_all(base.join("a/b")).unwrap();
        fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        symlink("a/b", base.join("inside")).unwrap();
        symlink("../elsewhere", base.join("out")).unwrap();
        assert_eq!(resolve_context_dir(&base, "").unwrap(), base);
        assert_eq!(resolve_context_dir(&base, ".").unwrap(), base);
        assert_eq!(resolve_context_dir(&base, "a/b").unwrap(), base.join("a/b"));
        assert_eq!(
            resolve_context_dir(&base, "inside").unwrap(),
            base.join("a/b")
        );
        let m = context_err(resolve_context_dir(&base, "out"));
        assert!(m.contains("through symlink 'out'"), "{m}");
        assert!(matches!(
            resolve_context_dir(&base, "../src"),
            Err(Error::InvalidSpec(_))
        ));
        assert!(matches!(
            resolve_context_dir(&base, "/etc"),
            Err(Error::InvalidSpec(_))
        ));
    }

    #[test]
    fn relative_paths_checked() {
        assert!(check_relative("docker/Dockerfile", "dockerfile").is_ok());
        assert!(check_relative("./a/..b", "path").is_ok());
        assert!(check_relative("", "contextDir").is_ok());
        for (p, what) in [
            ("../Dockerfile", "dockerfile"),
            ("a/../../b", "contextDir"),
            ("a/..", "path"),
            ("..\\x", "path"),
        ] {
            match check_relative(p, what) {
                Err(Error::InvalidSpec(m)) => {
                    assert!(m.starts_with(&format!("{what} '{p}'")), "{m}");
                    assert!(m.contains("'..' is not allowed"), "{m}");
                }
                other => panic!("{p}: {other:?}"),
            }
        }
        match check_relative("/etc/Dockerfile", "dockerfile") {
            Err(Error::InvalidSpec(m)) => assert!(m.contains("absolute"), "{m}"),
            other => panic!("{other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            plan(dir.path(), "../Dockerfile"),
            Err(Error::InvalidSpec(_))
        ));
    }

    #[test]
    fn missing_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "other", b"x");
        assert_eq!(
            context_err(plan(dir.path(), "Dockerfile")),
            "Dockerfile 'Dockerfile' not found in the build context"
        );
        fs::create_dir(dir.path().join("adir")).unwrap();
        assert!(context_err(plan(dir.path(), "adir")).contains("not a file"));
        let m = context_err(plan(&dir.path().join("nope"), "Dockerfile"));
        assert!(m.contains("cannot open context directory"), "{m}");
    }

    #[test]
    fn fifo_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", b"FROM scratch\n");
        let status = std::process::Command::new("mkfifo")
            .arg(dir.path().join("pipe"))
            .status()
            .unwrap();
        assert!(status.success());
        let plan = plan(dir.path(), "Dockerfile").unwrap();
        assert_eq!(plan.entries.len(), 1);
    }

    #[tokio::test]
    async fn large_file_streams_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", b"FROM scratch\n");
        const SIZE: u64 = 50 * 1024 * 1024;
        let f = File::create(root.join("big.bin")).unwrap();
        f.set_len(SIZE).unwrap(); // sparse: no 50 MB written to disk
        drop(f);
        let plan = plan(root, "Dockerfile").unwrap();
        assert_eq!(plan.total_bytes, SIZE + 13);

        let mut s = std::pin::pin!(stream(plan, "Dockerfile", b"FROM scratch\n".to_vec()));
        let (mut chunks, mut total) = (0usize, 0usize);
        let mut data = Vec::new();
        while let Some(c) = s.next().await {
            let c = c.unwrap();
            assert!(c.len() <= CHUNK_SIZE);
            chunks += 1;
            total += c.len();
            data.extend_from_slice(&c);
        }
        assert_eq!(total, data.len());
        assert!(chunks >= (SIZE as usize) / CHUNK_SIZE, "{chunks} chunks");
        // Two headers, padded Dockerfile, the file, and the 1 KiB end marker.
        assert_eq!(total as u64, 512 + 512 + 512 + SIZE + 1024);
        let entries = read_tar(&data);
        let big = entries.iter().find(|e| e.0 == "big.bin").unwrap();
        assert_eq!(big.2.len() as u64, SIZE);
    }

    #[tokio::test]
    async fn file_changing_during_stream_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", b"FROM scratch\n");
        write(root, "grows", b"abc");
        write(root, "vanishes", b"abc");

        let p = plan(root, "Dockerfile").unwrap();
        write(root, "grows", b"abcdef");
        let err = collect(stream(p, "Dockerfile", vec![])).await.unwrap_err();
        assert!(err.to_string().contains("'grows' changed"), "{err}");

        // Replaced by a symlink to a file of the same size outside the context.
        write(root, "grows", b"abc");
        let p = plan(root, "Dockerfile").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        fs::write(outside.path(), b"xyz").unwrap();
        fs::remove_file(root.join("grows")).unwrap();
        symlink(outside.path(), root.join("grows")).unwrap();
        let err = collect(stream(p, "Dockerfile", vec![])).await.unwrap_err();
        assert!(err.to_string().contains("'grows' changed"), "{err}");
        fs::remove_file(root.join("grows")).unwrap();

        write(root, "grows", b"abc");
        let p = plan(root, "Dockerfile").unwrap();
        fs::remove_file(root.join("vanishes")).unwrap();
        let err = collect(stream(p, "Dockerfile", vec![])).await.unwrap_err();
        assert!(err.to_string().contains("'vanishes' vanished"), "{err}");
    }

    #[tokio::test]
    async fn dropping_the_stream_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "Dockerfile", b"FROM scratch\n");
        File::create(root.join("big"))
            .unwrap()
            .set_len(20 * 1024 * 1024)
            .unwrap();
        let p = plan(root, "Dockerfile").unwrap();
        let mut s = Box::pin(stream(p, "Dockerfile", vec![]));
        assert!(s.next().await.unwrap().is_ok());
        drop(s);
        // The blocking writer sees the closed channel and returns; the runtime's
        // shutdown at the end of the test would hang if it did not.
    }

    #[test]
    fn stream_can_be_created_outside_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", b"FROM scratch\n");
        let p = plan(dir.path(), "Dockerfile").unwrap();
        let s = stream(p, "Dockerfile", vec![]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let chunks = rt.block_on(collect(s)).unwrap();
        assert!(!chunks.is_empty());
    }
}
