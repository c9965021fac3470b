//! The tar stream of a planned context, produced chunk by chunk so memory stays flat.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;

use super::{ContextPlan, Entry, EntryKind, normalize_rel};

/// Bytes per chunk handed to the consumer.
pub(super) const CHUNK_SIZE: usize = 64 * 1024;
/// Chunks buffered between the tar writer and the consumer; with [`CHUNK_SIZE`] this
/// bounds the stream's memory to about half a megabyte.
const CHANNEL_CAPACITY: usize = 8;

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
