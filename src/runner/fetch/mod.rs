//! Turning remote sources into a local directory: a Git revision ([`git`]) or a context
//! tarball served over HTTP(S) ([`url()`]).
//!
//! Credentials may ride in a URL (`https://user:token@host/...`); they are stripped from
//! every message ([`redact_credentials`]) and never written into the fetched directory.

use std::path::Path;
use std::process::Stdio;

use crate::{Error, Result};

mod url;
pub use url::{DEFAULT_MAX_CONTEXT_BYTES, DEFAULT_STALL, UrlLimits, download, url, version};

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
    let rev = checked_git_args(url, revision)?.unwrap_or("HEAD");
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

/// Refuses a URL or revision git would read as an option (option injection) and returns
/// the revision trimmed (`None` when absent or blank: the remote's default branch).
pub(crate) fn checked_git_args<'a>(
    url: &str,
    revision: Option<&'a str>,
) -> Result<Option<&'a str>> {
    if url.is_empty() || url.starts_with('-') {
        return Err(Error::InvalidSpec(format!(
            "invalid git URL '{}'",
            redact_credentials(url)
        )));
    }
    let rev = revision.map(str::trim).filter(|r| !r.is_empty());
    if let Some(rev) = rev
        && (rev.starts_with('-') || rev.chars().any(char::is_whitespace))
    {
        return Err(Error::InvalidSpec(format!("invalid git revision '{rev}'")));
    }
    Ok(rev)
}

pub(crate) fn looks_like_sha(rev: &str) -> bool {
    (4..=64).contains(&rev.len()) && rev.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Runs git in `dir`. The outer error is "git could not be started"; the inner one is
/// git's failure, as the redacted tail of its stderr. The one place slipway starts git
/// (fetches here, `ls-remote` for the git triggers).
pub(crate) async fn run_git(
    dir: &Path,
    args: &[&str],
) -> Result<std::result::Result<String, String>> {
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

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::process::Command;

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
}
