//! Turning remote sources into a local directory: a Git revision ([`git`]) or a context
//! tarball served over HTTP(S) ([`url`]).
//!
//! Credentials may ride in a URL (`https://user:token@host/...`); they are stripped from
//! every message ([`redact_credentials`]) and never written into the fetched directory.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::context::{LinkKind, check_link_target};
use crate::{Error, Result};

/// What a fetch produced besides the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The checked-out commit, for Git sources.
    pub commit: Option<String>,
}

/// Lines of git's stderr kept in an error message: the cause is at the end.
const STDERR_TAIL_LINES: usize = 5;

/// Shallow fetch of `revision` (branch, tag or commit sha; default HEAD) of `url` into
/// `dest` using the `git` CLI (tokio::process; init + fetch --depth 1 + checkout
/// FETCH_HEAD, falling back to a full fetch when the server refuses a sha),
/// GIT_TERMINAL_PROMPT=0, and returns the checked-out commit. Errors → Error::Context
/// with git's stderr (last lines) and never a credential in a URL.
///
/// `dest/.git` is removed afterwards, as BuildKit does for Git contexts by default: it
/// would bloat the context, and its `FETCH_HEAD` records the URL, credentials included.
/// Dropping the future kills the running git process.
pub async fn git(url: &str, revision: Option<&str>, dest: &Path) -> Result<Fetched> {
    let shown = redact_credentials(url);
    // A leading '-' would be read as an option by git (option injection).
    if url.is_empty() || url.starts_with('-') {
        return Err(Error::InvalidSpec(format!("invalid git URL '{shown}'")));
    }
    let rev = revision
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("HEAD");
    if rev.starts_with('-') || rev.chars().any(char::is_whitespace) {
        return Err(Error::InvalidSpec(format!("invalid git revision '{rev}'")));
    }
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|e| Error::Context(format!("cannot create '{}': {e}", dest.display())))?;

    let fail = |step: &str, stderr: String| {
        Error::Context(format!(
            "git {step} of '{rev}' from {shown} failed: {stderr}"
        ))
    };
    run_git(dest, &["init", "--quiet"])
        .await?
        .map_err(|e| fail("init", e))?;

    let shallow = run_git(
        dest,
        &[
            "fetch",
            "--quiet",
            "--depth",
            "1",
            "--no-tags",
            "--",
            url,
            rev,
        ],
    )
    .await?;
    match shallow {
        Ok(_) => {
            run_git(dest, &["checkout", "--quiet", "--detach", "FETCH_HEAD"])
                .await?
                .map_err(|e| fail("checkout", e))?;
        }
        // Servers may refuse a sha that is not a ref tip (allowAnySHA1InWant off), and
        // none resolves an abbreviated one: fetch everything and look it up locally.
        Err(_) if looks_like_sha(rev) => {
            run_git(
                dest,
                &[
                    "fetch",
                    "--quiet",
                    "--",
                    url,
                    "+refs/heads/*:refs/remotes/origin/*",
                    "+refs/tags/*:refs/tags/*",
                ],
            )
            .await?
            .map_err(|e| fail("fetch", e))?;
            let wanted = format!("{rev}^{{commit}}");
            let resolved = run_git(dest, &["rev-parse", "--verify", "--quiet", &wanted])
                .await?
                .map_err(|_| {
                    Error::Context(format!("git revision '{rev}' not found in {shown}"))
                })?;
            run_git(dest, &["checkout", "--quiet", "--detach", resolved.trim()])
                .await?
                .map_err(|e| fail("checkout", e))?;
        }
        Err(e) => return Err(fail("fetch", e)),
    }

    let commit = run_git(dest, &["rev-parse", "HEAD"])
        .await?
        .map_err(|e| fail("rev-parse", e))?
        .trim()
        .to_string();
    tokio::fs::remove_dir_all(dest.join(".git"))
        .await
        .map_err(|e| Error::Context(format!("cannot remove {}/.git: {e}", dest.display())))?;
    Ok(Fetched {
        commit: Some(commit),
    })
}

fn looks_like_sha(rev: &str) -> bool {
    (4..=64).contains(&rev.len()) && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Runs git in `dir`. The outer error is "git could not be started"; the inner one is
/// git's failure, as the redacted tail of its stderr.
async fn run_git(dir: &Path, args: &[&str]) -> Result<std::result::Result<String, String>> {
    let output = tokio::process::Command::new("git")
        .args(["-c", "advice.detachedHead=false"])
        .args(args)
        .current_dir(dir)
        // Never wait for a password nobody will type.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Error::Context(format!("cannot run git: {e}")))?;
    if output.status.success() {
        return Ok(Ok(String::from_utf8_lossy(&output.stdout).into_owned()));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("; ");
    let tail = if tail.is_empty() {
        format!("git exited with {}", output.status)
    } else {
        tail
    };
    Ok(Err(redact_credentials(&tail)))
}

/// Removes the `user:password@` part of every URL in `text`.
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                c == '/' || c.is_whitespace() || matches!(c, '\'' | '"' | '<' | '>' | '(' | ')')
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => out.push_str(&authority[at + 1..]),
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Downloads a context tarball with reqwest (streamed to a temp file, not memory),
/// detects plain tar / gzip / zstd by magic bytes, and unpacks it into dest on a blocking
/// thread, refusing entries with absolute paths or `..`, and symlinks/hardlinks escaping
/// dest (Error::Context naming the entry). HTTP errors → Error::Context with status;
/// connection errors → Error::Context too.
pub async fn url(client: &reqwest::Client, url: &str, dest: &Path) -> Result<()> {
    let shown = redact_credentials(url);
    let transfer = |e: reqwest::Error| {
        // reqwest's message embeds the URL, credentials included: drop it, keep causes.
        Error::Context(format!(
            "cannot download {shown}: {}",
            error_chain(&e.without_url())
        ))
    };
    let response = client.get(url).send().await.map_err(&transfer)?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::Context(format!(
            "downloading {shown} failed: HTTP {status}"
        )));
    }

    let temp = tempfile::tempfile()
        .map_err(|e| Error::Context(format!("cannot create a temporary file: {e}")))?;
    let mut file = tokio::fs::File::from_std(temp);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(&transfer)?;
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::Context(format!("cannot store the download of {shown}: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| Error::Context(format!("cannot store the download of {shown}: {e}")))?;
    let file = file.into_std().await;

    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || unpack(file, &dest))
        .await
        .map_err(|e| Error::Context(format!("unpacking {shown} failed: {e}")))?
        .map_err(|e| match e {
            Error::Context(m) => Error::Context(format!("{shown}: {m}")),
            other => other,
        })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // hyper and reqwest often repeat the cause verbatim one level down.
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    redact_credentials(&parts.join(": "))
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const BZIP2_MAGIC: &[u8] = b"BZh";

/// Unpacks a (possibly compressed) tar into `dest`. Blocking.
fn unpack(mut file: File, dest: &Path) -> Result<()> {
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
    let mut archive = tar::Archive::new(reader);
    let mut symlinks: Vec<(PathBuf, PathBuf)> = Vec::new();
    let entries = archive.entries().map_err(io_err)?;
    for entry in entries {
        let mut entry = entry.map_err(io_err)?;
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
    use std::process::Command;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    // ---- git ----

    fn git_cmd(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "advice.detachedHead=false",
            ])
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    struct Repo {
        _dir: tempfile::TempDir,
        url: String,
        first: String,
        second: String,
        feature: String,
    }

    /// main: "v1" (tag v1, annotated) → "v2"; feature: "v2" → "feature".
    fn make_repo() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        fs::create_dir(&repo).unwrap();
        git_cmd(&repo, &["init", "-q"]);
        fs::write(repo.join("file"), "v1").unwrap();
        git_cmd(&repo, &["add", "file"]);
        git_cmd(&repo, &["commit", "-q", "-m", "one"]);
        let first = git_cmd(&repo, &["rev-parse", "HEAD"]);
        git_cmd(&repo, &["tag", "-a", "v1", "-m", "release 1"]);
        fs::write(repo.join("file"), "v2").unwrap();
        git_cmd(&repo, &["commit", "-q", "-am", "two"]);
        let second = git_cmd(&repo, &["rev-parse", "HEAD"]);
        git_cmd(&repo, &["checkout", "-q", "-b", "feature"]);
        fs::write(repo.join("file"), "feature").unwrap();
        git_cmd(&repo, &["commit", "-q", "-am", "three"]);
        let feature = git_cmd(&repo, &["rev-parse", "HEAD"]);
        git_cmd(&repo, &["checkout", "-q", "main"]);
        let url = format!("file://{}", repo.display());
        Repo {
            _dir: dir,
            url,
            first,
            second,
            feature,
        }
    }

    async fn fetch(repo: &Repo, rev: Option<&str>) -> (Result<Fetched>, tempfile::TempDir) {
        let dest = tempfile::tempdir().unwrap();
        let r = git(&repo.url, rev, &dest.path().join("src")).await;
        (r, dest)
    }

    fn content(dest: &tempfile::TempDir) -> String {
        fs::read_to_string(dest.path().join("src/file")).unwrap()
    }

    #[tokio::test]
    async fn git_default_branch_tag_and_sha() {
        let repo = make_repo();

        let (r, d) = fetch(&repo, None).await;
        assert_eq!(r.unwrap().commit.as_deref(), Some(repo.second.as_str()));
        assert_eq!(content(&d), "v2");
        assert!(!d.path().join("src/.git").exists(), ".git is removed");

        let (r, d) = fetch(&repo, Some("feature")).await;
        assert_eq!(r.unwrap().commit.as_deref(), Some(repo.feature.as_str()));
        assert_eq!(content(&d), "feature");

        let (r, d) = fetch(&repo, Some("v1")).await;
        assert_eq!(r.unwrap().commit.as_deref(), Some(repo.first.as_str()));
        assert_eq!(content(&d), "v1");

        let (r, d) = fetch(&repo, Some(&repo.first)).await;
        assert_eq!(r.unwrap().commit.as_deref(), Some(repo.first.as_str()));
        assert_eq!(content(&d), "v1");
    }

    #[tokio::test]
    async fn git_abbreviated_sha_uses_the_full_fetch() {
        let repo = make_repo();
        let short = &repo.first[..10];
        let (r, d) = fetch(&repo, Some(short)).await;
        assert_eq!(r.unwrap().commit.as_deref(), Some(repo.first.as_str()));
        assert_eq!(content(&d), "v1");
    }

    #[tokio::test]
    async fn git_missing_revision() {
        let repo = make_repo();
        let (r, _d) = fetch(&repo, Some("no-such-branch")).await;
        match r {
            Err(Error::Context(m)) => {
                assert!(m.contains("'no-such-branch'"), "{m}");
                assert!(m.contains("couldn't find remote ref"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        let (r, _d) = fetch(&repo, Some("deadbeef")).await;
        match r {
            Err(Error::Context(m)) => {
                assert!(
                    m.starts_with("git revision 'deadbeef' not found in file://"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn git_errors_hide_credentials() {
        let dest = tempfile::tempdir().unwrap();
        let r = git(
            "http://alice:s3cret@127.0.0.1:1/repo.git",
            Some("main"),
            dest.path(),
        )
        .await;
        match r {
            Err(Error::Context(m)) => {
                assert!(!m.contains("s3cret"), "{m}");
                assert!(!m.contains("alice"), "{m}");
                assert!(m.contains("http://127.0.0.1:1/repo.git"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn git_option_injection_refused() {
        let dest = tempfile::tempdir().unwrap();
        assert!(matches!(
            git("--upload-pack=touch /tmp/x", None, dest.path()).await,
            Err(Error::InvalidSpec(_))
        ));
        assert!(matches!(
            git("file:///x", Some("--output=/tmp/x"), dest.path()).await,
            Err(Error::InvalidSpec(_))
        ));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_credentials(
                "fatal: https://u:p@h.example/x.git and ssh://git@h:22/y 'http://tok@h'"
            ),
            "fatal: https://h.example/x.git and ssh://h:22/y 'http://h'"
        );
        assert_eq!(redact_credentials("no url here"), "no url here");
        assert_eq!(redact_credentials("https://h/p@q"), "https://h/p@q");
    }

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
        let dir = tempfile::tempdir().unwrap();
        let client = reqwest::Client::new();
        let r = url(&client, &format!("{base}{path}"), &dir.path().join("ctx")).await;
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
        let m = context_msg(url(&client, "http://bob:hunter2@127.0.0.1:1/c.tar", dir.path()).await);
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
        let m = context_msg(unpack(f, &dir.path().join("ctx")));
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
}
