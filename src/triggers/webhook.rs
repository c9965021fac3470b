//! Git triggers, push side: an HTTP endpoint for GitHub, GitLab and generic push
//! hooks. A hook whose signature checks out is matched against the git targets, and
//! each target it names is reported at once as `Observation::Git{webhook: true}`.
//!
//! - `POST /hooks/github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`
//! - `POST /hooks/gitlab`: `X-Gitlab-Token: <secret>`
//! - `POST /hooks/generic`: `X-Slipway-Signature: sha256=<hex HMAC-SHA256(secret, body)>`,
//!   body `{"url": ..., "ref": ..., "commit": optional}`

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::{GitTarget, Observation, Targets};
use crate::runner::fetch::redact_credentials;
use crate::tls::GitTls;
use crate::{Error, Result};

pub mod payload;
use payload::Push;

/// GitHub caps hook payloads at 25 MB; anything larger is not a hook.
const MAX_BODY: usize = 25 << 20;

/// The shared secret hooks are signed with (`--webhook-secret-file`). Never shown:
/// its `Debug` is redacted and no message carries it.
#[derive(Clone)]
pub struct WebhookSecret(Arc<[u8]>);

impl WebhookSecret {
    /// The file's content without surrounding whitespace (a trailing newline, say);
    /// empty is refused, since it would let anyone sign.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidSpec(format!(
                "cannot read --webhook-secret-file {}: {e}",
                path.display()
            ))
        })?;
        Self::new(text.trim()).map_err(|_| {
            Error::InvalidSpec(format!("--webhook-secret-file {} is empty", path.display()))
        })
    }

    pub fn new(secret: &str) -> Result<Self> {
        if secret.is_empty() {
            return Err(Error::InvalidSpec("the webhook secret is empty".into()));
        }
        Ok(Self(secret.as_bytes().into()))
    }

    /// `header` is `sha256=<hex HMAC-SHA256(secret, body)>`; compared in constant time.
    pub fn verify_hmac(&self, header: Option<&str>, body: &[u8]) -> bool {
        let Some(hex_mac) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
            return false;
        };
        let Ok(mac) = hex::decode(hex_mac) else {
            return false;
        };
        let mut expected =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        expected.update(body);
        expected.verify_slice(&mac).is_ok()
    }

    /// `header` is the secret itself (GitLab); compared in constant time.
    pub fn verify_token(&self, header: Option<&str>) -> bool {
        header.is_some_and(|h| bool::from(h.as_bytes().ct_eq(&self.0)))
    }

    /// `sha256=<hex>` for `body`: what a sender puts in the signature header.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

struct Hooks {
    secret: WebhookSecret,
    targets: watch::Receiver<Targets>,
    out: mpsc::Sender<Observation>,
    /// For the lookup of a push that names no commit.
    tls: GitTls,
}

/// Serves the hook endpoints on `listener` until the process ends (or the listener
/// fails).
pub async fn serve(
    listener: tokio::net::TcpListener,
    secret: WebhookSecret,
    targets: watch::Receiver<Targets>,
    out: mpsc::Sender<Observation>,
    tls: GitTls,
) -> Result<()> {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "webhook endpoint listening (/hooks/github, /hooks/gitlab, /hooks/generic)");
    }
    axum::serve(listener, router(secret, targets, out, tls)).await?;
    Ok(())
}

/// The endpoints, for embedding in another server.
pub fn router(
    secret: WebhookSecret,
    targets: watch::Receiver<Targets>,
    out: mpsc::Sender<Observation>,
    tls: GitTls,
) -> Router {
    Router::new()
        .route("/hooks/github", post(github))
        .route("/hooks/gitlab", post(gitlab))
        .route("/hooks/generic", post(generic))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Arc::new(Hooks {
            secret,
            targets,
            out,
            tls,
        }))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn unauthorized(hook: &str) -> Response {
    // Never the header's value: a near miss of the secret is still a secret.
    warn!(hook, "webhook refused: missing or wrong signature");
    (StatusCode::UNAUTHORIZED, "missing or wrong signature\n").into_response()
}

async fn github(State(h): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> Response {
    if !h
        .secret
        .verify_hmac(header(&headers, "x-hub-signature-256"), &body)
    {
        return unauthorized("github");
    }
    match header(&headers, "x-github-event") {
        Some("ping") => return (StatusCode::OK, "pong\n").into_response(),
        Some(event) if event != "push" => {
            return (StatusCode::OK, format!("ignored: {event} event\n")).into_response();
        }
        _ => {}
    }
    deliver(&h, "github", payload::github(&body)).await
}

async fn gitlab(State(h): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> Response {
    if !h.secret.verify_token(header(&headers, "x-gitlab-token")) {
        return unauthorized("gitlab");
    }
    match header(&headers, "x-gitlab-event") {
        None | Some("Push Hook" | "Tag Push Hook" | "System Hook") => {}
        Some(event) => {
            return (StatusCode::OK, format!("ignored: {event}\n")).into_response();
        }
    }
    deliver(&h, "gitlab", payload::gitlab(&body)).await
}

async fn generic(State(h): State<Arc<Hooks>>, headers: HeaderMap, body: Bytes) -> Response {
    if !h
        .secret
        .verify_hmac(header(&headers, "x-slipway-signature"), &body)
    {
        return unauthorized("generic");
    }
    deliver(&h, "generic", payload::generic(&body)).await
}

/// Reports every target the push names; a payload without a commit is looked up.
async fn deliver(h: &Hooks, hook: &str, push: std::result::Result<Push, String>) -> Response {
    let push = match push {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let repo = push
        .urls
        .first()
        .map(|u| redact_credentials(u))
        .unwrap_or_default();
    if push.deleted {
        info!(hook, %repo, git_ref = %push.git_ref, "webhook: ref deleted, nothing to build");
        return (StatusCode::OK, "ref deleted: nothing to build\n").into_response();
    }
    let matched: Vec<GitTarget> = payload::matching(h.targets.borrow().git.keys(), &push);
    info!(hook, %repo, git_ref = %push.git_ref, matched = matched.len(), "webhook received");
    if matched.is_empty() {
        return (
            StatusCode::OK,
            format!("no resource builds {repo} {}\n", push.git_ref),
        )
            .into_response();
    }
    let mut failed = Vec::new();
    for target in &matched {
        let commit = match &push.commit {
            Some(c) => c.clone(),
            None => {
                match super::git::ls_remote(&target.url, target.revision.as_deref(), &h.tls).await {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(hook, url = %redact_credentials(&target.url), error = %e, "webhook: lookup failed");
                        failed.push(e.to_string());
                        continue;
                    }
                }
            }
        };
        let obs = Observation::Git {
            url: target.url.clone(),
            revision: target.revision.clone(),
            commit,
            webhook: true,
        };
        if h.out.send(obs).await.is_err() {
            return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
        }
    }
    if !failed.is_empty() {
        return (
            StatusCode::BAD_GATEWAY,
            format!(
                "{} of {} targets matched could not be looked up: {}\n",
                failed.len(),
                matched.len(),
                failed.join("; ")
            ),
        )
            .into_response();
    }
    (
        StatusCode::ACCEPTED,
        format!("{} targets matched\n", matched.len()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_signatures_are_checked() {
        let s = WebhookSecret::new("It's a Secret to Everybody").unwrap();
        // GitHub's documented example (docs: "Validating webhook deliveries")
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(s.verify_hmac(Some(good), b"Hello, World!"));
        assert_eq!(s.sign(b"Hello, World!"), good);
        assert!(!s.verify_hmac(Some(good), b"Hello, World?"));
        assert!(!s.verify_hmac(Some(&good.replace("sha256=", "sha1=")), b"Hello, World!"));
        assert!(!s.verify_hmac(Some("sha256=zz"), b"Hello, World!"));
        assert!(!s.verify_hmac(Some("sha256="), b"Hello, World!"));
        assert!(!s.verify_hmac(None, b"Hello, World!"));
    }

    #[test]
    fn tokens_are_checked() {
        let s = WebhookSecret::new("tok").unwrap();
        assert!(s.verify_token(Some("tok")));
        assert!(!s.verify_token(Some("to")));
        assert!(!s.verify_token(Some("tok ")));
        assert!(!s.verify_token(None));
    }

    #[test]
    fn secret_file_is_trimmed_never_empty_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "hunter2\n").unwrap();
        let s = WebhookSecret::from_file(&file).unwrap();
        assert!(s.verify_token(Some("hunter2")));
        assert!(!format!("{s:?}").contains("hunter2"));
        std::fs::write(&file, " \n").unwrap();
        assert!(matches!(
            WebhookSecret::from_file(&file),
            Err(Error::InvalidSpec(_))
        ));
        assert!(WebhookSecret::from_file(&dir.path().join("missing")).is_err());
    }
}
