//! Credentials for http(s) git remotes: the URL's own `user:password@`, then the
//! lines of a git-credential-store file (`--git-credentials`, git's
//! `https://user:password@host` format). Parsing and matching, and the [`Helper`]
//! the fetch code hands gitoxide for a server's 401, so they never travel in a URL
//! gitoxide could print.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use gix::credentials::helper::Action;
use gix::credentials::protocol::{Context, Outcome};

use percent_encoding::percent_decode_str;

use crate::{Error, Result};

/// The file `--git-credentials` names, read again at every fetch (a mounted Secret
/// may be rotated).
static FILE: OnceLock<PathBuf> = OnceLock::new();

/// Sets the git-credential-store file for this process (first call wins).
pub fn set_git_credentials_file(path: PathBuf) {
    let _ = FILE.set(path);
}

/// One `protocol://user:password@host[:port]` entry.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    protocol: String,
    host: String,
    pub(crate) username: String,
    pub(crate) password: String,
}

// Never print a password, not even in a debug log.
impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}@{}", self.protocol, self.username, self.host)
    }
}

/// Every credential that may answer for one fetch, first match wins.
#[derive(Clone, Debug, Default)]
pub(crate) struct GitCredentials {
    entries: Vec<Entry>,
}

impl GitCredentials {
    /// The URL's userinfo first, then the `--git-credentials` file if one is set.
    pub(crate) fn for_url(url: &str) -> Result<Self> {
        let mut entries: Vec<Entry> = parse_line(url).into_iter().collect();
        if let Some(path) = FILE.get() {
            entries.extend(read_file(path)?);
        }
        Ok(Self { entries })
    }

    /// The credential for `protocol` and `host` (with `:port` when not the default).
    pub(crate) fn find(&self, protocol: &str, host: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.protocol.eq_ignore_ascii_case(protocol) && e.host.eq_ignore_ascii_case(host)
        })
    }
}

fn read_file(path: &Path) -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::InvalidSpec(format!(
            "cannot read --git-credentials {}: {e}",
            path.display()
        ))
    })?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// `https://user:pass@host:port/ignored-path` → an entry; anything else (comments, a
/// URL without a password) → none. User and password are percent-decoded, as git
/// writes them encoded.
fn parse_line(line: &str) -> Option<Entry> {
    let (protocol, rest) = line.trim().split_once("://")?;
    if !matches!(protocol, "http" | "https") {
        return None;
    }
    let authority = rest.split('/').next()?;
    let (userinfo, host) = authority.rsplit_once('@')?;
    let (user, pass) = userinfo.split_once(':')?;
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some(Entry {
        protocol: protocol.to_string(),
        host: host.to_string(),
        username: decode(user)?,
        password: decode(pass)?,
    })
}

/// The credential helper slipway hands gitoxide: only what [`GitCredentials`] holds,
/// never git's configured helpers or a prompt.
fn answer(creds: &GitCredentials, action: Action) -> Option<Outcome> {
    let Action::Get(mut ctx) = action else {
        return None;
    };
    if ctx.protocol.is_none() || ctx.host.is_none() {
        ctx.destructure_url_in_place(false).ok()?;
    }
    let found = creds.find(ctx.protocol.as_deref()?, ctx.host.as_deref()?)?;
    let identity = gix::sec::identity::Account {
        username: found.username.clone(),
        password: found.password.clone(),
        oauth_refresh_token: None,
    };
    let next = Context {
        username: Some(identity.username.clone()),
        password: Some(identity.password.clone()),
        ..ctx
    };
    Some(Outcome {
        identity,
        next: next.into(),
    })
}

/// The helper one fetch hands gitoxide, remembering whether the server asked for
/// credentials this fetch has none for (then that is why the fetch failed: known
/// here, not read from gitoxide's message).
#[derive(Clone)]
pub(crate) struct Helper {
    creds: GitCredentials,
    unanswered: Arc<AtomicBool>,
}

impl Helper {
    pub(crate) fn new(creds: GitCredentials) -> Self {
        Self {
            creds,
            unanswered: Arc::default(),
        }
    }

    pub(crate) fn answer(&self, action: Action) -> Option<Outcome> {
        let asked = matches!(action, Action::Get(_));
        let answer = answer(&self.creds, action);
        if asked && answer.is_none() {
            self.unanswered.store(true, Ordering::Relaxed);
        }
        answer
    }

    /// The server asked for credentials and there were none for its host.
    pub(crate) fn had_none(&self) -> bool {
        self.unanswered.load(Ordering::Relaxed)
    }
}

/// `url` without `user:password@` for http(s), where credentials go through
/// [`GitCredentials`]; other schemes unchanged (ssh's `git@` is a login name).
pub(crate) fn without_userinfo(url: &str) -> String {
    if url.starts_with("http://") || url.starts_with("https://") {
        super::redact_credentials(url)
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_parsed_like_git_credential_store() {
        let e = parse_line("https://al%40ice:p%3Ass@git.example.org:8443/x").unwrap();
        assert_eq!(e.username, "al@ice");
        assert_eq!(e.password, "p:ss");
        let creds = GitCredentials {
            entries: vec![e, parse_line("http://bob:pw@127.0.0.1:9").unwrap()],
        };
        assert_eq!(
            creds
                .find("https", "git.example.org:8443")
                .unwrap()
                .username,
            "al@ice"
        );
        assert!(creds.find("http", "git.example.org:8443").is_none());
        assert_eq!(creds.find("http", "127.0.0.1:9").unwrap().password, "pw");
        assert!(parse_line("# comment").is_none());
        assert!(parse_line("https://nopassword@host").is_none());
        assert!(parse_line("ssh://git:x@host").is_none());
    }

    #[test]
    fn debug_hides_the_password() {
        let e = parse_line("https://u:s3cret@h").unwrap();
        assert!(!format!("{e:?}").contains("s3cret"));
    }

    #[test]
    fn userinfo_is_removed_for_http_only() {
        assert_eq!(without_userinfo("https://u:p@h/r.git"), "https://h/r.git");
        assert_eq!(without_userinfo("ssh://git@h/r.git"), "ssh://git@h/r.git");
    }
}
