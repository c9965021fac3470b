//! Push hook payloads (GitHub, GitLab, generic JSON) and which git targets they name.
//! Pure: no I/O, so every rule is a unit test.

use serde::Deserialize;

use crate::triggers::GitTarget;

/// What a push hook says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Every URL the payload gives for the repository (https, ssh, git, web).
    pub urls: Vec<String>,
    /// `refs/heads/main`, `refs/tags/v1`, or a short name from a generic payload.
    pub git_ref: String,
    /// The commit the ref points to now; `None`: the payload does not say (look it up).
    pub commit: Option<String>,
    /// The repository's default branch, when the payload names it.
    pub default_branch: Option<String>,
    /// The ref was deleted: nothing to build.
    pub deleted: bool,
}

#[derive(Deserialize)]
struct Commit {
    id: String,
}

#[derive(Deserialize)]
struct GithubPush {
    #[serde(rename = "ref")]
    git_ref: String,
    after: Option<String>,
    #[serde(default)]
    deleted: bool,
    head_commit: Option<Commit>,
    repository: GithubRepo,
}

#[derive(Deserialize)]
struct GithubRepo {
    clone_url: Option<String>,
    html_url: Option<String>,
    ssh_url: Option<String>,
    git_url: Option<String>,
    default_branch: Option<String>,
}

/// A GitHub `push` event.
pub fn github(body: &[u8]) -> Result<Push, String> {
    let p: GithubPush = serde_json::from_slice(body).map_err(|e| format!("not a push: {e}"))?;
    let r = p.repository;
    let deleted = p.deleted || p.after.as_deref().is_some_and(all_zeros);
    Ok(Push {
        urls: [r.clone_url, r.html_url, r.ssh_url, r.git_url]
            .into_iter()
            .flatten()
            .collect(),
        git_ref: p.git_ref,
        // head_commit is the commit even for an annotated tag, whose `after` is the
        // tag object: the poller reports commits, and the two must agree.
        commit: p.head_commit.map(|c| c.id).or(p.after),
        default_branch: r.default_branch,
        deleted,
    })
}

#[derive(Deserialize)]
struct GitlabPush {
    #[serde(rename = "ref")]
    git_ref: String,
    after: Option<String>,
    checkout_sha: Option<String>,
    project: GitlabProject,
}

#[derive(Deserialize)]
struct GitlabProject {
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    web_url: Option<String>,
    default_branch: Option<String>,
}

/// A GitLab `Push Hook` or `Tag Push Hook`.
pub fn gitlab(body: &[u8]) -> Result<Push, String> {
    let p: GitlabPush = serde_json::from_slice(body).map_err(|e| format!("not a push: {e}"))?;
    let r = p.project;
    let deleted = p.after.as_deref().is_some_and(all_zeros);
    Ok(Push {
        urls: [r.git_http_url, r.git_ssh_url, r.web_url]
            .into_iter()
            .flatten()
            .collect(),
        git_ref: p.git_ref,
        // checkout_sha: the commit (an annotated tag's `after` is the tag object)
        commit: p.checkout_sha.or(p.after),
        default_branch: r.default_branch,
        deleted,
    })
}

#[derive(Deserialize)]
struct GenericPush {
    url: String,
    #[serde(rename = "ref")]
    git_ref: String,
    commit: Option<String>,
    default_branch: Option<String>,
}

/// slipway's own payload: `{"url": ..., "ref": ..., "commit": optional}` (and an
/// optional `default_branch`).
pub fn generic(body: &[u8]) -> Result<Push, String> {
    let p: GenericPush = serde_json::from_slice(body)
        .map_err(|e| format!("expected {{\"url\": ..., \"ref\": ..., \"commit\": ...}}: {e}"))?;
    let deleted = p.commit.as_deref().is_some_and(all_zeros);
    Ok(Push {
        urls: vec![p.url],
        git_ref: p.git_ref,
        commit: p.commit.filter(|c| !c.trim().is_empty()),
        default_branch: p.default_branch,
        deleted,
    })
}

fn all_zeros(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// The targets `push` names: the same repository (whatever the URL form) and a
/// revision that names the pushed ref.
pub fn matching<'a>(
    targets: impl IntoIterator<Item = &'a GitTarget>,
    push: &Push,
) -> Vec<GitTarget> {
    let repos: Vec<String> = push.urls.iter().filter_map(|u| repository(u)).collect();
    targets
        .into_iter()
        .filter(|t| repository(&t.url).is_some_and(|r| repos.contains(&r)))
        .filter(|t| {
            ref_matches(
                t.revision.as_deref(),
                &push.git_ref,
                push.default_branch.as_deref(),
            )
        })
        .cloned()
        .collect()
}

/// A repository's identity: host (lower case, without credentials or a default port)
/// and path (without a trailing `/` or `.git`). The scheme is left out on purpose: a
/// payload lists https, ssh and git URLs of one repository, and a resource may use any.
pub fn repository(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => {
            // scp-like `git@host:owner/repo.git`
            let (authority, path) = url.split_once(':')?;
            if authority.contains('/') || path.starts_with("//") {
                return None;
            }
            return Some(format!(
                "{}/{}",
                host_key(authority, "ssh"),
                path_key(path.trim_start_matches('/'))
            ));
        }
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some(format!(
        "{}/{}",
        host_key(authority, &scheme),
        path_key(path)
    ))
}

fn host_key(authority: &str, scheme: &str) -> String {
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_ascii_lowercase();
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        "ssh" | "git+ssh" | "ssh+git" => ":22",
        "git" => ":9418",
        _ => "",
    };
    match host.strip_suffix(default_port) {
        Some(h) if !default_port.is_empty() => h.to_string(),
        _ => host,
    }
}

fn path_key(path: &str) -> &str {
    let path = path.trim_end_matches('/');
    path.strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/')
}

/// Whether a target's `revision` names `git_ref` (`main` and `refs/heads/main` both
/// name the branch; `v1` and `refs/tags/v1` the tag). No revision (or `HEAD`) means
/// the default branch, which only a payload that names it can match.
pub fn ref_matches(revision: Option<&str>, git_ref: &str, default_branch: Option<&str>) -> bool {
    let names: Vec<String> = if git_ref.starts_with("refs/") {
        let short = git_ref
            .strip_prefix("refs/heads/")
            .or_else(|| git_ref.strip_prefix("refs/tags/"));
        std::iter::once(git_ref)
            .chain(short)
            .map(Into::into)
            .collect()
    } else {
        vec![
            git_ref.into(),
            format!("refs/heads/{git_ref}"),
            format!("refs/tags/{git_ref}"),
        ]
    };
    match revision.map(str::trim).filter(|r| !r.is_empty()) {
        None | Some("HEAD") => default_branch.is_some_and(|d| {
            let d = d.trim();
            !d.is_empty() && d != "HEAD" && ref_matches(Some(d), git_ref, None)
        }),
        Some(rev) => names.iter().any(|n| n == rev),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn github_body(git_ref: &str, after: &str) -> String {
        serde_json::json!({
            "ref": git_ref, "before": "0000000000000000000000000000000000000000",
            "after": after, "deleted": after.bytes().all(|b| b == b'0'),
            "head_commit": if after.bytes().all(|b| b == b'0') { serde_json::Value::Null }
                           else { serde_json::json!({"id": after}) },
            "repository": {
                "full_name": "octo/app", "default_branch": "main",
                "clone_url": "https://github.com/octo/app.git",
                "html_url": "https://github.com/octo/app",
                "ssh_url": "git@github.com:octo/app.git",
                "git_url": "git://github.com/octo/app.git"
            }
        })
        .to_string()
    }

    #[test]
    fn github_push_gives_urls_ref_commit_and_default_branch() {
        let p = github(github_body("refs/heads/main", SHA).as_bytes()).unwrap();
        assert_eq!(p.urls.len(), 4);
        assert_eq!(p.git_ref, "refs/heads/main");
        assert_eq!(p.commit.as_deref(), Some(SHA));
        assert_eq!(p.default_branch.as_deref(), Some("main"));
        assert!(!p.deleted);
        let d = github(github_body("refs/heads/gone", &"0".repeat(40)).as_bytes()).unwrap();
        assert!(d.deleted);
        assert!(github(b"{\"zen\": \"hi\"}").is_err());
    }

    #[test]
    fn gitlab_push_prefers_checkout_sha() {
        let body = serde_json::json!({
            "object_kind": "tag_push", "ref": "refs/tags/v1",
            "after": "ffffffffffffffffffffffffffffffffffffffff", "checkout_sha": SHA,
            "project": {
                "git_http_url": "https://gitlab.example.com/grp/app.git",
                "git_ssh_url": "git@gitlab.example.com:grp/app.git",
                "web_url": "https://gitlab.example.com/grp/app",
                "default_branch": "main"
            }
        });
        let p = gitlab(body.to_string().as_bytes()).unwrap();
        assert_eq!(p.commit.as_deref(), Some(SHA));
        assert_eq!(p.urls.len(), 3);
        assert!(!p.deleted);
    }

    #[test]
    fn generic_push_commit_is_optional() {
        let p = generic(br#"{"url": "git://h/r.git", "ref": "main"}"#).unwrap();
        assert_eq!(p.commit, None);
        assert_eq!(p.git_ref, "main");
        assert!(generic(br#"{"ref": "main"}"#).is_err());
        assert!(generic(b"not json").is_err());
    }

    #[test]
    fn repositories_compare_without_scheme_credentials_case_slash_or_dot_git() {
        let key = repository("https://github.com/octo/app.git").unwrap();
        for same in [
            "https://GitHub.com/octo/app",
            "https://user:token@github.com/octo/app/",
            "HTTPS://github.com:443/octo/app.git/",
            "git@github.com:octo/app.git",
            "ssh://git@github.com/octo/app",
            "ssh://git@github.com:22/octo/app.git",
            "git://github.com/octo/app.git",
        ] {
            assert_eq!(repository(same).as_deref(), Some(key.as_str()), "{same}");
        }
        for other in [
            "https://github.com/octo/App",
            "https://github.com/octo/app2",
            "https://github.com:8443/octo/app",
            "https://gitlab.com/octo/app",
        ] {
            assert_ne!(repository(other).as_deref(), Some(key.as_str()), "{other}");
        }
    }

    #[test]
    fn revisions_name_refs() {
        assert!(ref_matches(Some("main"), "refs/heads/main", None));
        assert!(ref_matches(
            Some("refs/heads/main"),
            "refs/heads/main",
            None
        ));
        assert!(ref_matches(Some("v1"), "refs/tags/v1", None));
        assert!(ref_matches(Some("refs/heads/main"), "main", None));
        assert!(!ref_matches(Some("main"), "refs/heads/dev", None));
        assert!(!ref_matches(Some("refs/heads/v1"), "refs/tags/v1", None));
        assert!(!ref_matches(Some("heads/main"), "refs/heads/main/x", None));
        // no revision: the default branch, when the payload says which it is
        assert!(ref_matches(None, "refs/heads/main", Some("main")));
        assert!(!ref_matches(None, "refs/heads/dev", Some("main")));
        assert!(!ref_matches(None, "refs/heads/main", None));
    }

    #[test]
    fn matching_picks_repository_and_ref() {
        let t = |url: &str, rev: Option<&str>| GitTarget {
            url: url.into(),
            revision: rev.map(Into::into),
        };
        let targets = [
            t("git@github.com:octo/app.git", Some("main")),
            t("https://github.com/octo/app", None),
            t("https://github.com/octo/app", Some("dev")),
            t("https://github.com/octo/other", Some("main")),
        ];
        let p = github(github_body("refs/heads/main", SHA).as_bytes()).unwrap();
        assert_eq!(matching(&targets, &p), targets[..2].to_vec());
    }
}
