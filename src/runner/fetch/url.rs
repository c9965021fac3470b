//! A context tarball served over HTTP(S): downloaded to a temporary file, then unpacked
//! on a blocking thread, both within [`UrlLimits`] and stopping when the build is dropped.

use std::cell::Cell;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::{error_chain, redact_credentials};
use crate::runner::context::{Lexical, LinkKind, check_link_target, landing, lexical_escape};
use crate::{Error, Result};

/// Default of `--max-context-bytes`.
pub const DEFAULT_MAX_CONTEXT_BYTES: u64 = 8 << 30;
/// Default longest wait for the next bytes of a download.
pub const DEFAULT_STALL: Duration = Duration::from_secs(60);

/// Bounds on a downloaded context. The total time is the build's own
/// (`timeoutSeconds`): a slow but steady download is not cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlLimits {
    /// Most bytes downloaded, and most bytes unpacked (`--max-context-bytes`).
    pub max_bytes: u64,
    /// Longest wait for the response or the next bytes of its body.
    pub stall: Duration,
}

impl Default for UrlLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_CONTEXT_BYTES,
            stall: DEFAULT_STALL,
        }
    }
}

impl UrlLimits {
    fn too_large(&self, what: &str) -> Error {
        Error::Context(
            format!(
                "{what} more than {} ({} bytes), the limit set by --max-context-bytes",
                human_bytes(self.max_bytes),
                self.max_bytes
            )
            .into(),
        )
    }

    fn stalled(&self, shown: &str, what: &str) -> Error {
        Error::Context(
            format!(
                "download of {shown} stalled: {what} for {} s",
                self.stall.as_secs_f64()
            )
            .into(),
        )
    }
}

/// `8 GiB`, `1.5 MiB`, `512 bytes`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = "bytes";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    if unit == "bytes" {
        format!("{n} bytes")
    } else {
        format!("{} {unit}", (value * 10.0).round() / 10.0)
    }
}

/// Downloads a context tarball with reqwest (streamed to a temp file, not memory),
/// detects plain tar / gzip / zstd by magic bytes, and unpacks it into dest on a blocking
/// thread, refusing entries with absolute paths or `..`, and symlinks/hardlinks escaping
/// dest (Error::Context naming the entry). HTTP errors → Error::Context with status;
/// connection errors → Error::Context too. Downloaded and unpacked bytes are each capped
/// at `limits.max_bytes`; a server silent for `limits.stall` fails the download.
///
/// Dropping the future (a cancelled or timed-out build) stops the unpacker too, at its
/// next read: it would otherwise keep writing into a directory already deleted.
///
/// Returns the version of what was downloaded ([`version`]), if the server gave one.
pub async fn url(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    limits: UrlLimits,
) -> Result<Option<String>> {
    download(client.get(url), &redact_credentials(url), dest, limits).await
}

/// [`url()`] for a request already built (a registry blob with its Authorization
/// header, say); `shown` names it in errors.
pub async fn download(
    request: reqwest::RequestBuilder,
    shown: &str,
    dest: &Path,
    limits: UrlLimits,
) -> Result<Option<String>> {
    let shown = shown.to_string();
    let transfer = |e: reqwest::Error| {
        // reqwest's message embeds the URL, credentials included: drop it, keep causes.
        let e = e.without_url();
        Error::context(format!("cannot download {shown}: {}", error_chain(&e)), e)
    };
    let response = tokio::time::timeout(limits.stall, request.send())
        .await
        .map_err(|_| limits.stalled(&shown, "no response"))?
        .map_err(&transfer)?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::Context(
            format!("downloading {shown} failed: HTTP {status}").into(),
        ));
    }
    let fetched = version(response.headers());
    let too_large = || limits.too_large(&format!("{shown} is"));
    if response
        .content_length()
        .is_some_and(|n| n > limits.max_bytes)
    {
        return Err(too_large());
    }

    let temp = tempfile::tempfile()
        .map_err(|e| Error::context(format!("cannot create a temporary file: {e}"), e))?;
    let mut file = tokio::fs::File::from_std(temp);
    let mut body = response.bytes_stream();
    let mut received = 0u64;
    loop {
        let chunk = match tokio::time::timeout(limits.stall, body.next()).await {
            Err(_) => return Err(limits.stalled(&shown, "no data")),
            Ok(None) => break,
            Ok(Some(chunk)) => chunk.map_err(&transfer)?,
        };
        received += chunk.len() as u64;
        if received > limits.max_bytes {
            return Err(too_large());
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::context(format!("cannot store the download of {shown}: {e}"), e))?;
    }
    file.flush()
        .await
        .map_err(|e| Error::context(format!("cannot store the download of {shown}: {e}"), e))?;
    let file = file.into_std().await;

    let stop = CancellationToken::new();
    // Fires when this future is dropped mid-unpack as well as when it returns.
    let _stop_on_drop = stop.clone().drop_guard();
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || unpack(file, &dest, limits, &stop))
        .await
        .map_err(|e| Error::context(format!("unpacking {shown} failed: {e}"), e))?
        .map_err(|e| match e {
            Error::Context(m) => Error::Context(m.prefixed(&shown)),
            other => other,
        })?;
    Ok(fetched)
}

/// What identifies this version of a `url` source: its ETag, else its Last-Modified
/// (what the url poller compares, see `triggers::url`).
pub fn version(headers: &reqwest::header::HeaderMap) -> Option<String> {
    [reqwest::header::ETAG, reqwest::header::LAST_MODIFIED]
        .iter()
        .filter_map(|h| headers.get(h)?.to_str().ok())
        .map(str::trim)
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

/// Why [`Guarded`] refused to read on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trip {
    TooLarge,
    Stopped,
}

/// The decompressed archive, read no further than `max` bytes and not at all once `stop`
/// fires; which of the two happened is kept in `tripped`, as the tar crate rewraps the
/// reader's errors in its own messages.
struct Guarded<'a, R> {
    inner: R,
    read: &'a Cell<u64>,
    max: u64,
    stop: &'a CancellationToken,
    tripped: &'a Cell<Option<Trip>>,
}

impl<R: Read> Read for Guarded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let trip = if self.stop.is_cancelled() {
            Some(Trip::Stopped)
        } else if self.read.get() > self.max {
            Some(Trip::TooLarge)
        } else {
            None
        };
        if let Some(t) = trip {
            self.tripped.set(Some(t));
            return Err(io::Error::other(format!("{t:?}")));
        }
        // Never more than one past the cap, so what lands on disk stays within it.
        let room = usize::try_from(self.max - self.read.get() + 1).unwrap_or(usize::MAX);
        let n = buf.len().min(room);
        let n = self.inner.read(&mut buf[..n])?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";

/// Unpacks a (possibly compressed) tar into `dest`, within `limits.max_bytes` of
/// decompressed data, until `stop` fires. Blocking.
pub(crate) fn unpack(
    mut file: File,
    dest: &Path,
    limits: UrlLimits,
    stop: &CancellationToken,
) -> Result<()> {
    let io_err = |e: io::Error| Error::context(format!("cannot read the archive: {e}"), e);
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut magic = [0u8; 6];
    let n = read_up_to(&mut file, &mut magic).map_err(io_err)?;
    let magic = &magic[..n];
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let reader: Box<dyn Read> = if magic.starts_with(GZIP_MAGIC) {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else if magic.starts_with(ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::new(file).map_err(io_err)?)
    } else if magic.starts_with(XZ_MAGIC) || magic.starts_with(BZIP2_MAGIC) {
        return Err(Error::Context(
            "xz and bzip2 archives are not supported; use tar, tar.gz or tar.zst"
                .to_string()
                .into(),
        ));
    } else {
        Box::new(BufReader::new(file))
    };

    fs::create_dir_all(dest)
        .map_err(|e| Error::context(format!("cannot create '{}': {e}", dest.display()), e))?;
    let (read, tripped) = (Cell::new(0), Cell::new(None));
    let reader = Guarded {
        inner: reader,
        read: &read,
        max: limits.max_bytes,
        stop,
        tripped: &tripped,
    };
    let result = unpack_entries(
        tar::Archive::new(reader),
        dest,
        limits.max_bytes,
        &read,
        stop,
    );
    match tripped.get() {
        Some(Trip::TooLarge) => Err(limits.too_large("the archive unpacks to")),
        Some(Trip::Stopped) => Err(stopped()),
        None => result,
    }
}

fn stopped() -> Error {
    Error::Cancelled("unpacking stopped: the build was cancelled or timed out".into())
}

fn unpack_entries(
    mut archive: tar::Archive<impl Read>,
    dest: &Path,
    max_bytes: u64,
    read: &Cell<u64>,
    stop: &CancellationToken,
) -> Result<()> {
    let io_err = |e: io::Error| Error::context(format!("cannot read the archive: {e}"), e);
    let mut symlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    let entries = archive.entries().map_err(io_err)?;
    for entry in entries {
        if stop.is_cancelled() {
            return Err(stopped());
        }
        let mut entry = entry.map_err(io_err)?;
        // Refused before writing a byte when its header already says it will not fit.
        if read.get().saturating_add(entry.size()) > max_bytes {
            return Err(UrlLimits {
                max_bytes,
                ..Default::default()
            }
            .too_large("the archive unpacks to"));
        }
        let path = entry.path().map_err(io_err)?.into_owned();
        let name = path.display().to_string();
        let refuse = |why: &str| Error::Context(format!("archive entry '{name}' {why}").into());
        match lexical_escape(&path) {
            Some(Lexical::Absolute) => return Err(refuse("has an absolute path")),
            Some(Lexical::ParentDir) => return Err(refuse("has a '..' in its path")),
            None => {}
        }
        let rel: PathBuf = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        if rel.as_os_str().is_empty() {
            continue; // "./", the archive's root
        }
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular
            | tar::EntryType::Continuous
            | tar::EntryType::GNUSparse
            | tar::EntryType::Directory => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(io_err)?
                    .ok_or_else(|| refuse("is a link without a target"))?
                    .into_owned();
                let link_kind = if kind == tar::EntryType::Symlink {
                    LinkKind::Symbolic
                } else {
                    LinkKind::Hard
                };
                // an absolute one is refused below, naming where it points
                if link_kind == LinkKind::Hard
                    && lexical_escape(&target) == Some(Lexical::ParentDir)
                {
                    return Err(refuse(&format!(
                        "is a hard link to '{}', outside the archive",
                        target.display()
                    )));
                }
                // a symlink's target is relative to where it really lands, through the
                // symlinks among its parents, not to its name in the archive
                let at = match link_kind {
                    LinkKind::Symbolic => landing(dest, &rel)
                        .map_err(|e| refuse(&format!("is refused: {}", context_message(e))))?,
                    LinkKind::Hard => rel.clone(),
                };
                check_link_target(dest, &at, &target, link_kind)
                    .map_err(|e| refuse(&format!("is refused: {}", context_message(e))))?;
                if link_kind == LinkKind::Symbolic {
                    symlinks.push((at, target));
                }
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => continue,
            other => {
                tracing::warn!(entry = %name, kind = ?other, "skipping special file in context archive");
                continue;
            }
        }
        // unpack_in also refuses to write through a symlinked parent leading outside.
        let written = entry
            .unpack_in(dest)
            .map_err(|e| refuse(&format!("cannot be unpacked: {e}")))?;
        if !written {
            return Err(refuse("was refused by the unpacker"));
        }
    }
    // A later entry can change where an earlier symlink leads (by creating a symlink it
    // goes through): check them all again now that the tree is complete.
    for (rel, target) in &symlinks {
        check_link_target(dest, rel, target, LinkKind::Symbolic).map_err(|e| {
            Error::Context(
                format!(
                    "archive entry '{}' is refused: {}",
                    rel.display(),
                    context_message(e)
                )
                .into(),
            )
        })?;
    }
    Ok(())
}

fn context_message(e: Error) -> String {
    match e {
        Error::Context(m) => m.to_string(),
        other => other.to_string(),
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
