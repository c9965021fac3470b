//! Git with gitoxide (`gix`): no `git` binary anywhere. Blocking code, run by
//! [`super::git`] and [`super::remote_refs`] on tokio's blocking pool.
//!
//! Remote repositories (http, https, git, ssh) are fetched into a bare scratch
//! repository and their tree written out, so the result never holds a `.git`. Local
//! ones (`file://` or a path) are read in place: gitoxide's own file transport would
//! start `git-upload-pack`.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use gix::bstr::{BStr, ByteSlice};
use gix::remote::fetch::Shallow;

use super::git_credentials::{GitCredentials, Helper, without_userinfo};
use super::git_tls::{ensure_crypto_provider, http_options};
use super::{error_chain, looks_like_sha, redact_credentials};
use crate::tls::GitTls;
use crate::{Error, Result};

/// Nested submodules followed at most this deep.
const MAX_SUBMODULE_DEPTH: usize = 8;

/// Fetches `rev` of `url` (and, with `submodules`, every submodule at its recorded
/// commit) into `dir`, which must not exist or be empty; `scratch` holds the
/// temporary repositories. Returns the commit.
pub(crate) fn fetch_tree(
    url: &str,
    rev: Option<&str>,
    submodules: bool,
    dir: &Path,
    scratch: &Path,
    tls: &GitTls,
    interrupt: &AtomicBool,
) -> Result<String> {
    fetch_tree_at(url, rev, submodules, dir, scratch, tls, interrupt, 0)
}

#[allow(clippy::too_many_arguments)]
fn fetch_tree_at(
    url: &str,
    rev: Option<&str>,
    submodules: bool,
    dir: &Path,
    scratch: &Path,
    tls: &GitTls,
    interrupt: &AtomicBool,
    depth: usize,
) -> Result<String> {
    let shown = redact_credentials(url);
    let rev_shown = rev.unwrap_or("HEAD");
    let gitdir = tempfile::Builder::new()
        .prefix("repo-")
        .tempdir_in(scratch)
        .map_err(|e| Error::context(format!("cannot make a scratch repository: {e}"), e))?;
    let (repo, commit) = match local_path(url) {
        Some(path) => {
            let repo = gix::open_opts(&path, gix::open::Options::isolated())
                .map_err(|e| failure("open", rev_shown, &shown, e, false))?;
            let commit = resolve(&repo, rev, &shown)?;
            (repo, commit)
        }
        None => fetch_remote(url, rev, gitdir.path(), tls, interrupt)?,
    };
    let gitlinks = checkout(&repo, commit, dir, interrupt)
        .map_err(|e| failure("checkout", rev_shown, &shown, e, false))?;
    if interrupt.load(Ordering::Relaxed) {
        return Err(cancelled());
    }
    if submodules && !gitlinks.is_empty() {
        if depth >= MAX_SUBMODULE_DEPTH {
            return Err(Error::Context(
                format!("submodules of {shown} nest deeper than {MAX_SUBMODULE_DEPTH}").into(),
            ));
        }
        for (path, id) in gitlinks {
            let sub_url = submodule_url(dir, &path, url)?;
            let sha = id.to_string();
            fetch_tree_at(
                &sub_url,
                Some(&sha),
                true,
                &dir.join(&path),
                scratch,
                tls,
                interrupt,
                depth + 1,
            )
            .map_err(|e| match e {
                Error::Context(m) => {
                    Error::Context(m.prefixed(format!("submodule '{}' of {shown}", path.display())))
                }
                other => other,
            })?;
        }
    }
    Ok(commit.to_string())
}

/// What the shallow fetch asks for.
enum Want<'a> {
    Head,
    Name(&'a str),
    Sha(&'a str),
    /// Every branch and tag, no depth: for a sha the server will not hand out.
    Everything,
}

fn fetch_remote(
    url: &str,
    rev: Option<&str>,
    gitdir: &Path,
    tls: &GitTls,
    interrupt: &AtomicBool,
) -> Result<(gix::Repository, gix::ObjectId)> {
    let shown = redact_credentials(url);
    let rev_shown = rev.unwrap_or("HEAD");
    ensure_crypto_provider();
    let creds = Helper::new(GitCredentials::for_url(url)?);
    let plain = without_userinfo(url);
    let want = match rev {
        None | Some("HEAD") => Want::Head,
        Some(r) if r.len() == 40 && looks_like_sha(r) => Want::Sha(r),
        Some(r) => Want::Name(r),
    };
    let first = clone_bare(
        &plain,
        &gitdir.join("shallow"),
        want,
        &creds,
        tls,
        interrupt,
    );
    let e = match first {
        Ok(repo) => {
            let commit = repo
                .head_commit()
                .map_err(|e| failure("fetch", rev_shown, &shown, e, creds.had_none()))?
                .id;
            return Ok((repo, commit));
        }
        Err(e) => e,
    };
    let detail = error_chain(&e);
    // Servers may refuse a sha that is not a ref tip (allowAnySHA1InWant off), and
    // none resolves an abbreviated one: fetch everything and look it up locally.
    if !rev.is_some_and(looks_like_sha)
        || matches!(kind(&e, &detail), Some(k) if k != NO_SUCH_REVISION)
    {
        return Err(failure("fetch", rev_shown, &shown, e, creds.had_none()));
    }
    let repo = clone_bare(
        &plain,
        &gitdir.join("full"),
        Want::Everything,
        &creds,
        tls,
        interrupt,
    )
    .map_err(|e| failure("fetch", rev_shown, &shown, e, creds.had_none()))?;
    let commit = resolve(&repo, rev, &shown)?;
    Ok((repo, commit))
}

fn clone_bare(
    url: &str,
    gitdir: &Path,
    want: Want<'_>,
    creds: &Helper,
    tls: &GitTls,
    interrupt: &AtomicBool,
) -> gix::Result<gix::Repository> {
    let mut prep = gix::clone::PrepareFetch::new(
        url,
        gitdir,
        gix::create::Kind::Bare,
        gix::create::Options::default(),
        gix::open::Options::isolated(),
    )?;
    let creds = creds.clone();
    let shown_url = url.to_string();
    let tls = tls.clone();
    prep = prep.configure_connection(move |conn| {
        let creds = creds.clone();
        if let Some(opts) = http_options(conn.remote().repo(), &shown_url, &tls) {
            conn.set_transport_options(opts);
        }
        conn.set_credentials(move |action| Ok(creds.answer(action)));
        Ok(())
    });
    let depth1 = Shallow::DepthAtRemote(NonZeroU32::MIN);
    prep = match want {
        Want::Head => prep.with_shallow(depth1),
        Want::Name(name) => prep.with_shallow(depth1).with_ref_name(Some(name))?,
        Want::Sha(sha) => prep.with_shallow(depth1).with_revision(Some(sha))?,
        Want::Everything => prep,
    };
    let (repo, _) = prep.fetch_only(gix::progress::Discard, interrupt)?;
    Ok(repo)
}

/// The commit `rev` names in `repo` (HEAD when unset); a tag is peeled.
fn resolve(repo: &gix::Repository, rev: Option<&str>, shown: &str) -> Result<gix::ObjectId> {
    let rev = rev.unwrap_or("HEAD");
    let wanted = format!("{rev}^{{commit}}");
    repo.rev_parse_single(wanted.as_str())
        .map(|id| id.detach())
        .map_err(|_| Error::Context(format!("git revision '{rev}' not found in {shown}").into()))
}

/// Writes the tree of `commit` into `dir`; returns the submodules' paths and commits.
fn checkout(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    dir: &Path,
    interrupt: &AtomicBool,
) -> gix::Result<Vec<(PathBuf, gix::ObjectId)>> {
    let tree = repo.find_commit(commit)?.tree_id()?;
    let mut index = repo.index_from_tree(&tree)?;
    let gitlinks = index
        .entries()
        .iter()
        .filter(|e| e.mode == gix::index::entry::Mode::COMMIT)
        .map(|e| (e.path(&index).to_path_lossy().into_owned(), e.id))
        .collect();
    let mut opts =
        repo.checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)?;
    opts.destination_is_initially_empty = true;
    std::fs::create_dir_all(dir).map_err(gix::Error::from_error)?;
    let objects = repo
        .objects
        .clone()
        .into_arc()
        .map_err(gix::Error::from_error)?;
    let outcome = gix::worktree::state::checkout(
        &mut index,
        dir,
        objects,
        &gix::progress::Discard,
        &gix::progress::Discard,
        interrupt,
        opts,
    )?;
    if let Some(e) = outcome.errors.first() {
        return Err(gix::Error::from_error(std::io::Error::other(format!(
            "cannot write {}: {}",
            e.path, e.error
        ))));
    }
    Ok(gitlinks)
}

/// The URL of the submodule at `path` from `.gitmodules`, a relative one resolved
/// against the superproject's `url` (credentials included, as git does).
fn submodule_url(dir: &Path, path: &Path, url: &str) -> Result<String> {
    let shown = redact_credentials(url);
    let missing = || {
        Error::Context(
            format!(
                "submodule '{}' of {shown} has no URL in .gitmodules",
                path.display()
            )
            .into(),
        )
    };
    let bytes = std::fs::read(dir.join(".gitmodules")).map_err(|_| missing())?;
    let modules = gix::submodule::File::from_bytes(&bytes, None, &Default::default())
        .map_err(|e| Error::context(format!("bad .gitmodules in {shown}: {e}"), e))?;
    let key = path.to_string_lossy();
    let name = modules
        .name_by_path(BStr::new(key.as_bytes()))
        .ok_or_else(missing)?;
    let raw = modules
        .config()
        .string_by("submodule", Some(name), "url")
        .ok_or_else(missing)?;
    let raw = raw.to_str_lossy();
    let resolved = resolve_relative(url, &raw).ok_or_else(missing)?;
    if resolved.starts_with('-') {
        return Err(Error::InvalidSpec(format!(
            "invalid submodule URL '{}'",
            redact_credentials(&resolved)
        )));
    }
    Ok(resolved)
}

/// git's rule for `./x` and `../x` submodule URLs: relative to the superproject's URL,
/// each `../` dropping one path component.
pub(crate) fn resolve_relative(base: &str, rel: &str) -> Option<String> {
    if !(rel.starts_with("./") || rel.starts_with("../")) {
        return Some(rel.to_string());
    }
    let mut base = base.trim_end_matches('/').to_string();
    let root = base.find("://").map_or(0, |i| i + 3);
    let mut rest = rel;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            let cut = base.rfind('/').filter(|&i| i >= root)?;
            base.truncate(cut);
            rest = r;
        } else {
            break;
        }
    }
    Some(format!("{base}/{rest}"))
}

/// The refs of the remote matching `patterns` as `git ls-remote` prints them
/// (`<sha>\t<ref>`, plus `<sha>\t<ref>^{}` for a peeled tag).
pub(crate) fn list_refs(
    url: &str,
    patterns: &[String],
    tls: &GitTls,
    interrupt: &AtomicBool,
) -> Result<String> {
    let shown = redact_credentials(url);
    let fail = |e: gix::Error| failure("ls-remote", "", &shown, e, false);
    let mut out = String::new();
    if let Some(path) = local_path(url) {
        let repo = gix::open_opts(&path, gix::open::Options::isolated()).map_err(fail)?;
        for p in patterns {
            if let Ok(id) = repo.rev_parse_single(p.as_str()) {
                out.push_str(&format!("{id}\t{p}\n"));
            }
            if let Ok(id) = repo.rev_parse_single(format!("{p}^{{commit}}").as_str()) {
                out.push_str(&format!("{id}\t{p}^{{}}\n"));
            }
        }
        return Ok(out);
    }
    let _ = interrupt;
    ensure_crypto_provider();
    let scratch = tempfile::tempdir()
        .map_err(|e| Error::context(format!("cannot make a scratch repository: {e}"), e))?;
    let creds = Helper::new(GitCredentials::for_url(url)?);
    let plain = without_userinfo(url);
    let refs = (|| -> gix::Result<_> {
        let repo = gix::ThreadSafeRepository::init_opts(
            scratch.path(),
            gix::create::Kind::Bare,
            gix::create::Options::default(),
            gix::open::Options::isolated(),
        )?
        .to_thread_local();
        let remote = repo.remote_at(plain.as_str())?;
        let specs = patterns
            .iter()
            .map(|p| {
                gix::refspec::parse(BStr::new(p), gix::refspec::parse::Operation::Fetch)
                    .map(|s| s.to_owned())
                    .map_err(gix::Error::from_error)
            })
            .collect::<gix::Result<Vec<_>>>()?;
        let mut conn = remote
            .connect(gix::remote::Direction::Fetch)?
            .with_credentials(|action| Ok(creds.answer(action)));
        if let Some(opts) = http_options(&repo, &plain, tls) {
            conn.set_transport_options(opts);
        }
        let (map, _) = conn.ref_map(
            gix::progress::Discard,
            gix::remote::ref_map::Options {
                extra_refspecs: specs,
                ..Default::default()
            },
        )?;
        Ok(map.remote_refs)
    })()
    .map_err(|e| failure("ls-remote", "", &shown, e, creds.had_none()))?;
    for r in &refs {
        let (name, target, peeled) = r.unpack();
        if let Some(target) = target {
            out.push_str(&format!("{target}\t{name}\n"));
        }
        if let Some(peeled) = peeled {
            out.push_str(&format!("{peeled}\t{name}^{{}}\n"));
        }
    }
    Ok(out)
}

/// The directory a `file://` URL or a plain path names; `None` for a network URL.
fn local_path(url: &str) -> Option<PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    (!url.contains("://") && !url.contains(':')).then(|| PathBuf::from(url))
}

const AUTH: &str = "authentication failed";
const NETWORK: &str = "network error (unreachable)";
const UNTRUSTED: &str = "TLS certificate not trusted (its CA goes in --ca-file)";
const NO_SUCH_REVISION: &str = "no such revision";

/// What went wrong: the part of a message a user acts on. The way to the server
/// failing is told by the errors' types (rustls, reqwest, io); what the server
/// answered (a status, a missing ref) by gitoxide's text `detail` of `e`.
pub(crate) fn kind(e: &(dyn std::error::Error + 'static), detail: &str) -> Option<&'static str> {
    use std::io::ErrorKind as Io;
    let d = detail.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| d.contains(w));
    let unreachable = crate::find_cause::<reqwest_gix::Error>(e)
        .is_some_and(|r| r.is_connect() || r.is_timeout())
        || crate::find_cause::<std::io::Error>(e).is_some_and(|io| {
            matches!(
                io.kind(),
                Io::ConnectionRefused
                    | Io::ConnectionReset
                    | Io::ConnectionAborted
                    | Io::TimedOut
                    | Io::HostUnreachable
                    | Io::NetworkUnreachable
            )
        });
    if any(&["401", "403", "authenticat", "credentials", "unauthorized"]) {
        Some(AUTH)
    } else if let Some(rustls::Error::InvalidCertificate(_)) = crate::find_cause(e) {
        // before the network: the TLS error comes wrapped in a connect error
        Some(UNTRUSTED)
    } else if unreachable {
        Some(NETWORK)
    } else if any(&[
        "no reference",
        "didn't have any ref",
        "did not match",
        "couldn't find",
        "could not find",
        "not found",
        "not our ref",
        "unadvertised",
    ]) {
        Some(NO_SUCH_REVISION)
    } else {
        None
    }
}

/// `no_credentials`: the server asked for credentials and slipway had none for the
/// host (see [`Helper::had_none`]), which is then why it failed.
fn failure(step: &str, rev: &str, shown: &str, e: gix::Error, no_credentials: bool) -> Error {
    let detail = error_chain(&e);
    let what = if rev.is_empty() {
        format!("git {step} {shown} failed")
    } else {
        format!("git {step} of '{rev}' from {shown} failed")
    };
    match kind(&e, &detail) {
        _ if no_credentials => Error::context(
            format!(
                "{what}: {AUTH}: the server asks for credentials and none are set for this host \
                 (in the URL or the --git-credentials file)"
            ),
            e,
        ),
        Some(k) => Error::context(format!("{what}: {k}: {detail}"), e),
        None => Error::context(format!("{what}: {detail}"), e),
    }
}

pub(crate) fn cancelled() -> Error {
    Error::Context("git fetch cancelled".into())
}

#[cfg(test)]
mod tests;
