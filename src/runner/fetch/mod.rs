//! Turning remote sources into a local directory: a Git revision ([`git`]) or a context
//! tarball served over HTTP(S) ([`url()`]).
//!
//! Credentials may ride in a URL (`https://user:token@host/...`); they are stripped from
//! every message ([`redact_credentials`]) and never written into the fetched directory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::tls::GitTls;
use crate::{Error, Result};

mod git;
mod git_credentials;
mod git_tls;
mod url;
pub use git_credentials::set_git_credentials_file;
pub(crate) use url::unpack;
pub use url::{DEFAULT_MAX_CONTEXT_BYTES, DEFAULT_STALL, UrlLimits, download, url, version};

/// What a fetch produced besides the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The checked-out commit, for Git sources.
    pub commit: Option<String>,
}

/// Shallow fetch (depth 1) of `revision` (branch, tag or commit sha; default HEAD) of
/// `url` into `dest` with gitoxide, falling back to a full fetch when the server
/// refuses a sha (or it is abbreviated), and, with `submodules`, every submodule at
/// its recorded commit. Returns the checked-out commit. Errors → Error::Context naming
/// the URL without credentials and the kind (authentication, no such revision,
/// network).
///
/// `dest` gets the files only, never a `.git` (as BuildKit does for Git contexts by
/// default): it would bloat the context. The work happens in a scratch directory next
/// to `dest`, renamed into place only when complete: a dropped future stops the fetch
/// and leaves no half-written `dest`.
pub async fn git(
    url: &str,
    revision: Option<&str>,
    submodules: bool,
    dest: &Path,
    tls: &GitTls,
) -> Result<Fetched> {
    let rev = checked_git_args(url, revision)?.map(str::to_string);
    let (url, dest, tls) = (url.to_string(), dest.to_path_buf(), tls.clone());
    let commit = blocking(move |interrupt| {
        let parent = dest.parent().unwrap_or(Path::new("."));
        let scratch = tempfile::Builder::new()
            .prefix(".slipway-git-")
            .tempdir_in(parent)
            .map_err(|e| Error::context(format!("cannot make a scratch directory: {e}"), e))?;
        let tree = scratch.path().join("tree");
        let commit = git::fetch_tree(
            &url,
            rev.as_deref(),
            submodules,
            &tree,
            scratch.path(),
            &tls,
            interrupt,
        )?;
        if interrupt.load(Ordering::Relaxed) {
            return Err(git::cancelled());
        }
        // An empty `dest` (a fresh temporary directory) is replaced.
        if dest.is_dir() {
            std::fs::remove_dir(&dest).map_err(|e| {
                Error::context(format!("cannot replace '{}': {e}", dest.display()), e)
            })?;
        }
        std::fs::rename(&tree, &dest).map_err(|e| {
            Error::context(format!("cannot move into '{}': {e}", dest.display()), e)
        })?;
        Ok(commit)
    })
    .await?;
    Ok(Fetched {
        commit: Some(commit),
    })
}

/// `git ls-remote url patterns…`'s output (`<sha>\t<ref>` lines, peeled tags as
/// `<ref>^{}`), from gitoxide.
pub(crate) async fn remote_refs(url: &str, patterns: Vec<String>, tls: &GitTls) -> Result<String> {
    let (url, tls) = (url.to_string(), tls.clone());
    blocking(move |interrupt| git::list_refs(&url, &patterns, &tls, interrupt)).await
}

/// Runs gitoxide's blocking work off the runtime. Dropping the future raises the
/// interrupt flag gitoxide checks while receiving packs and writing files.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce(&AtomicBool) -> Result<T> + Send + 'static,
) -> Result<T> {
    struct RaiseOnDrop(Arc<AtomicBool>);
    impl Drop for RaiseOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    let guard = RaiseOnDrop(flag.clone());
    let result = tokio::task::spawn_blocking(move || work(&flag))
        .await
        .map_err(|e| Error::context(format!("git task failed: {e}"), e))?;
    drop(guard);
    result
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
        let r = git(
            &repo.url,
            rev,
            false,
            &dest.path().join("src"),
            &GitTls::default(),
        )
        .await;
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
                let m = m.message();
                assert!(
                    m.starts_with("git revision 'no-such-branch' not found in file://"),
                    "{m}"
                );
            }
            other => panic!("{other:?}"),
        }
        let (r, _d) = fetch(&repo, Some("deadbeef")).await;
        match r {
            Err(Error::Context(m)) => {
                let m = m.message();
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
            false,
            dest.path(),
            &GitTls::default(),
        )
        .await;
        match r {
            Err(Error::Context(m)) => {
                let m = m.message();
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
            git(
                "--upload-pack=touch /tmp/x",
                None,
                false,
                dest.path(),
                &GitTls::default()
            )
            .await,
            Err(Error::InvalidSpec(_))
        ));
        assert!(matches!(
            git(
                "file:///x",
                Some("--output=/tmp/x"),
                false,
                dest.path(),
                &GitTls::default()
            )
            .await,
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
