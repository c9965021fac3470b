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
use crate::runner::context::{LinkKind, check_link_target};
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
        Error::Context(format!(
            "{what} more than {} ({} bytes), the limit set by --max-context-bytes",
            human_bytes(self.max_bytes),
            self.max_bytes
        ))
    }

    fn stalled(&self, shown: &str, what: &str) -> Error {
        Error::Context(format!(
            "download of {shown} stalled: {what} for {} s",
            self.stall.as_secs_f64()
        ))
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
pub async fn url(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    limits: UrlLimits,
) -> Result<()> {
    let shown = redact_credentials(url);
    let transfer = |e: reqwest::Error| {
        // reqwest's message embeds the URL, credentials included: drop it, keep causes.
        Error::Context(format!(
            "cannot download {shown}: {}",
            error_chain(&e.without_url())
        ))
    };
    let response = tokio::time::timeout(limits.stall, client.get(url).send())
        .await
        .map_err(|_| limits.stalled(&shown, "no response"))?
        .map_err(&transfer)?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::Context(format!(
            "downloading {shown} failed: HTTP {status}"
        )));
    }
    let too_large = || limits.too_large(&format!("{shown} is"));
    if response
        .content_length()
        .is_some_and(|n| n > limits.max_bytes)
    {
        return Err(too_large());
    }

    let temp = tempfile::tempfile()
        .map_err(|e| Error::Context(format!("cannot create a temporary file: {e}")))?;
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
            .map_err(|e| Error::Context(format!("cannot store the download of {shown}: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| Error::Context(format!("cannot store the download of {shown}: {e}")))?;
    let file = file.into_std().await;

    let stop = CancellationToken::new();
    // Fires when this future is dropped mid-unpack as well as when it returns.
    let _stop_on_drop = stop.clone().drop_guard();
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || unpack(file, &dest, limits, &stop))
        .await
        .map_err(|e| Error::Context(format!("unpacking {shown} failed: {e}")))?
        .map_err(|e| match e {
            Error::Context(m) => Error::Context(format!("{shown}: {m}")),
            other => other,
        })
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
fn unpack(mut file: File, dest: &Path, limits: UrlLimits, stop: &CancellationToken) -> Result<()> {
    let io_err = |e: io::Error| Error::Context(format!("cannot read the archive: {e}"));
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
            "xz and bzip2 archives are not supported; use tar, tar.gz or tar.zst".to_string(),
        ));
    } else {
        Box::new(BufReader::new(file))
    };

    fs::create_dir_all(dest)
        .map_err(|e| Error::Context(format!("cannot create '{}': {e}", dest.display())))?;
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
    let io_err = |e: io::Error| Error::Context(format!("cannot read the archive: {e}"));
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
        let refuse = |why: &str| Error::Context(format!("archive entry '{name}' {why}"));
        if path.has_root() {
            return Err(refuse("has an absolute path"));
        }
        if path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
        {
            return Err(refuse("has a '..' in its path"));
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
                if link_kind == LinkKind::Hard
                    && target.components().any(|c| c == Component::ParentDir)
                {
                    return Err(refuse(&format!(
                        "is a hard link to '{}', outside the archive",
                        target.display()
                    )));
                }
                check_link_target(dest, &rel, &target, link_kind)
                    .map_err(|e| refuse(&format!("is refused: {}", context_message(e))))?;
                if link_kind == LinkKind::Symbolic {
                    symlinks.push((rel.clone(), target));
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
            Error::Context(format!(
                "archive entry '{}' is refused: {}",
                rel.display(),
                context_message(e)
            ))
        })?;
    }
    Ok(())
}

fn context_message(e: Error) -> String {
    match e {
        Error::Context(m) => m,
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
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // ---- url ----

    type Routes = Vec<(String, u16, Vec<u8>)>;

    /// A one-request-per-connection HTTP/1.1 server on loopback.
    async fn serve(routes: Routes) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = Arc::new(routes);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let routes = routes.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let req = String::from_utf8_lossy(&req);
                    let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (status, body) = routes
                        .iter()
                        .find(|r| r.0 == path)
                        .map(|r| (r.1, r.2.clone()))
                        .unwrap_or((404, b"not found".to_vec()));
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        format!("http://{addr}")
    }

    fn sample_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let add = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(mode);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, data).unwrap();
        };
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "./", io::empty()).unwrap();
        add(&mut b, "Dockerfile", b"FROM scratch\nCOPY . /\n", 0o644);
        add(&mut b, "sub/run.sh", b"#!/bin/sh\n", 0o755);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "sub/link", "../Dockerfile").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "hard", "Dockerfile").unwrap();
        b.into_inner().unwrap()
    }

    /// A tar of one entry with a raw name, which `tar::Builder` would refuse.
    fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, ty, link, body) in entries {
            let mut h = tar::Header::new_gnu();
            {
                let old = h.as_old_mut();
                old.name[..name.len()].copy_from_slice(name.as_bytes());
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            h.set_entry_type(*ty);
            h.set_mtime(0);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(body);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn check_sample(dest: &Path) {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::read_to_string(dest.join("Dockerfile")).unwrap(),
            "FROM scratch\nCOPY . /\n"
        );
        assert_eq!(
            fs::metadata(dest.join("sub/run.sh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        assert_eq!(
            fs::read_link(dest.join("sub/link")).unwrap(),
            Path::new("../Dockerfile")
        );
        assert_eq!(
            fs::read_to_string(dest.join("hard")).unwrap(),
            "FROM scratch\nCOPY . /\n"
        );
    }

    async fn fetch_url(base: &str, path: &str) -> (Result<()>, tempfile::TempDir) {
        fetch_with(base, path, UrlLimits::default()).await
    }

    async fn fetch_with(
        base: &str,
        path: &str,
        limits: UrlLimits,
    ) -> (Result<()>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let client = reqwest::Client::new();
        let r = url(
            &client,
            &format!("{base}{path}"),
            &dir.path().join("ctx"),
            limits,
        )
        .await;
        (r, dir)
    }

    fn context_msg(r: Result<()>) -> String {
        match r {
            Err(Error::Context(m)) => m,
            other => panic!("expected Error::Context, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn url_plain_gzip_and_zstd() {
        let tar = sample_tar();
        let base = serve(vec![
            ("/c.tar".into(), 200, tar.clone()),
            ("/c.tar.gz".into(), 200, gzip(&tar)),
            (
                "/c.tar.zst".into(),
                200,
                zstd::encode_all(&tar[..], 3).unwrap(),
            ),
            // The format comes from the bytes, not the name.
            ("/misnamed.tar".into(), 200, gzip(&tar)),
        ])
        .await;
        for path in ["/c.tar", "/c.tar.gz", "/c.tar.zst", "/misnamed.tar"] {
            let (r, dir) = fetch_url(&base, path).await;
            r.unwrap_or_else(|e| panic!("{path}: {e}"));
            check_sample(&dir.path().join("ctx"));
        }
    }

    #[tokio::test]
    async fn url_http_errors() {
        let base = serve(vec![("/boom".into(), 500, b"oops".to_vec())]).await;
        let m = context_msg(fetch_url(&base, "/missing.tar").await.0);
        assert!(m.contains("HTTP 404"), "{m}");
        let m = context_msg(fetch_url(&base, "/boom").await.0);
        assert!(m.contains("HTTP 500"), "{m}");

        let client = reqwest::Client::new();
        let dir = tempfile::tempdir().unwrap();
        let m = context_msg(
            url(
                &client,
                "http://bob:hunter2@127.0.0.1:1/c.tar",
                dir.path(),
                UrlLimits::default(),
            )
            .await,
        );
        assert!(
            m.starts_with("cannot download http://127.0.0.1:1/c.tar"),
            "{m}"
        );
        assert!(!m.contains("hunter2") && !m.contains("bob"), "{m}");
    }

    #[tokio::test]
    async fn url_refuses_escaping_entries() {
        use tar::EntryType::{Link, Regular, Symlink};
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "/dotdot",
                raw_tar(&[("../evil", Regular, "", b"x")]),
                "'../evil' has a '..'",
            ),
            (
                "/nested",
                raw_tar(&[("a/../../evil", Regular, "", b"x")]),
                "'a/../../evil' has a '..'",
            ),
            (
                "/abs",
                raw_tar(&[("/tmp/evil", Regular, "", b"x")]),
                "'/tmp/evil' has an absolute path",
            ),
            (
                "/symabs",
                raw_tar(&[("link", Symlink, "/etc/passwd", b"")]),
                "'link' is refused: symlink 'link' points to '/etc/passwd'",
            ),
            (
                "/symup",
                raw_tar(&[("d/link", Symlink, "../../x", b"")]),
                "symlink 'd/link' points to '../../x', outside",
            ),
            (
                "/hardup",
                raw_tar(&[("hard", Link, "../../etc/passwd", b"")]),
                "'hard' is a hard link to '../../etc/passwd'",
            ),
            (
                "/hardabs",
                raw_tar(&[("hard", Link, "/etc/passwd", b"")]),
                "hard link 'hard' points to '/etc/passwd'",
            ),
            (
                // a/up -> .. is the root; b goes through it and climbs out.
                "/chain",
                raw_tar(&[
                    ("a/up", Symlink, "..", b""),
                    ("b", Symlink, "a/up/../outside", b""),
                ]),
                "through symlink 'a/up'",
            ),
            (
                // Same, but the symlink that makes `b` escape comes after it.
                "/chain-late",
                raw_tar(&[
                    ("a/", tar::EntryType::Directory, "", b""),
                    ("b", Symlink, "a/up/../outside", b""),
                    ("a/up", Symlink, "..", b""),
                ]),
                "'b' is refused",
            ),
            (
                // A file written through a symlink that leads outside.
                "/through",
                raw_tar(&[
                    ("a/up", Symlink, "..", b""),
                    ("a/up/../escaped", Regular, "", b"x"),
                ]),
                "has a '..'",
            ),
        ];
        let base = serve(
            cases
                .iter()
                .map(|(p, data, _)| (p.to_string(), 200, gzip(data)))
                .collect(),
        )
        .await;
        for (path, _, expected) in &cases {
            let (r, dir) = fetch_url(&base, path).await;
            let m = context_msg(r);
            assert!(m.contains(expected), "{path}: {m}");
            assert!(!m.contains("build context: build context"), "{m}");
            assert!(!dir.path().join("evil").exists(), "{path} escaped");
            assert!(!dir.path().join("escaped").exists(), "{path} escaped");
        }
    }

    #[test]
    fn write_through_a_symlink_made_escaping_later_is_refused() {
        use tar::EntryType::{Regular, Symlink};
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        // `b` looks inside when it arrives; `a/up` then makes it lead to ../outside.
        let data = raw_tar(&[
            ("b", Symlink, "a/up/../outside", b""),
            ("a/up", Symlink, "..", b""),
            ("b/evil", Regular, "", b"x"),
        ]);
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &data).unwrap();
        let m = context_msg(unpack(
            f,
            &dir.path().join("ctx"),
            UrlLimits::default(),
            &CancellationToken::new(),
        ));
        assert!(m.contains("'b/evil' cannot be unpacked"), "{m}");
        assert!(!dir.path().join("outside/evil").exists());
    }

    #[tokio::test]
    async fn url_unsupported_compression() {
        let mut xz = XZ_MAGIC.to_vec();
        xz.extend_from_slice(&[0; 64]);
        let base = serve(vec![("/c.tar.xz".into(), 200, xz)]).await;
        let m = context_msg(fetch_url(&base, "/c.tar.xz").await.0);
        assert!(m.contains("xz and bzip2 archives are not supported"), "{m}");
    }

    // ---- limits ----

    const MIB: u64 = 1 << 20;

    /// A tar.gz of `files` files of `size` zero bytes (a multiple of 1 MiB), built from
    /// one compressed MiB repeated as gzip members: cheap however large it expands.
    fn zero_bomb(files: usize, size: u64) -> Vec<u8> {
        let zeros = gzip(&vec![0; MIB as usize]);
        let mut out = Vec::new();
        for i in 0..files {
            let mut h = tar::Header::new_gnu();
            h.set_path(format!("f{i}")).unwrap();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            out.extend(gzip(h.as_bytes()));
            for _ in 0..size / MIB {
                out.extend_from_slice(&zeros);
            }
        }
        out.extend(gzip(&[0; 1024]));
        out
    }

    fn du(dir: &Path) -> u64 {
        fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => du(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }

    fn capped(max_bytes: u64) -> UrlLimits {
        UrlLimits {
            max_bytes,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn gzip_bomb_is_refused_at_the_cap() {
        let base = serve(vec![
            // One entry whose header already says it is too large.
            ("/one.tar.gz".into(), 200, zero_bomb(1, 64 * MIB)),
            // Many entries, each small, too large together.
            ("/many.tar.gz".into(), 200, zero_bomb(40, MIB)),
        ])
        .await;
        for path in ["/one.tar.gz", "/many.tar.gz"] {
            let (r, dir) = fetch_with(&base, path, capped(4 * MIB)).await;
            let m = context_msg(r);
            assert!(
                m.contains("unpacks to more than 4 MiB (4194304 bytes), the limit set by --max-context-bytes"),
                "{path}: {m}"
            );
            let used = du(dir.path());
            assert!(used <= 4 * MIB, "{path}: {used} bytes unpacked");
        }
    }

    #[tokio::test]
    async fn download_larger_than_the_cap_is_refused() {
        let big = zero_bomb(1, 8 * MIB);
        let base = serve(vec![("/c.tar.gz".into(), 200, big.clone())]).await;
        let (r, _dir) = fetch_with(&base, "/c.tar.gz", capped(big.len() as u64 / 2)).await;
        let m = context_msg(r);
        assert!(m.contains("/c.tar.gz is more than"), "{m}");
        assert!(m.contains("--max-context-bytes"), "{m}");
        let (r, dir) = fetch_with(&base, "/c.tar.gz", capped(16 * MIB)).await;
        r.unwrap();
        assert_eq!(du(dir.path()), 8 * MIB);
    }

    /// Serves `body` in `chunk`-byte pieces every `every`, going silent for good after
    /// `silent_after` bytes.
    async fn serve_slowly(
        body: Vec<u8>,
        chunk: usize,
        every: Duration,
        silent_after: Option<usize>,
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(body);
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    for (i, piece) in body.chunks(chunk).enumerate() {
                        if silent_after.is_some_and(|n| i * chunk >= n) {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        if sock.write_all(piece).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(every).await;
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    fn tar_with_file(size: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(size as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "data", &vec![7u8; size][..]).unwrap();
        b.into_inner().unwrap()
    }

    #[tokio::test]
    async fn slow_steady_download_outlasts_the_stall_limit() {
        // 640 KiB at 200 KiB/s: about 3 s, three times the stall limit.
        let body = tar_with_file(640 * 1024);
        let base = serve_slowly(body, 20 * 1024, Duration::from_millis(100), None).await;
        let limits = UrlLimits {
            stall: Duration::from_secs(1),
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let (r, dir) = fetch_with(&base, "/slow.tar", limits).await;
        r.unwrap();
        assert!(
            started.elapsed() > 2 * limits.stall,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            fs::metadata(dir.path().join("ctx/data")).unwrap().len(),
            640 * 1024
        );
    }

    #[tokio::test]
    async fn stalled_download_fails_with_a_stall_message() {
        let body = tar_with_file(640 * 1024);
        let base = serve_slowly(body, 20 * 1024, Duration::from_millis(10), Some(100 * 1024)).await;
        let limits = UrlLimits {
            stall: Duration::from_millis(500),
            ..Default::default()
        };
        let (r, _dir) = fetch_with(&base, "/stalls.tar", limits).await;
        let m = context_msg(r);
        assert!(m.contains("/stalls.tar stalled: no data for 0.5 s"), "{m}");
    }

    #[tokio::test]
    async fn dropping_the_download_stops_the_unpacker() {
        let base = serve(vec![("/big.tar.gz".into(), 200, zero_bomb(1, 4096 * MIB))]).await;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("ctx");
        let task = {
            let dest = dest.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                url(
                    &client,
                    &format!("{base}/big.tar.gz"),
                    &dest,
                    UrlLimits::default(),
                )
                .await
            })
        };
        let file = dest.join("f0");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while fs::metadata(&file).map_or(0, |m| m.len()) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "unpacking never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A cancelled or timed-out build drops the future, as abort does.
        task.abort();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after_stop = fs::metadata(&file).unwrap().len();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let later = fs::metadata(&file).unwrap().len();
        assert_eq!(
            after_stop, later,
            "the unpacker kept writing after the drop"
        );
        assert!(later < 4096 * MIB);
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_bytes(8 << 30), "8 GiB");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(human_bytes(512), "512 bytes");
    }
}
