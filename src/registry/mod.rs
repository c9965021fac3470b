//! The image registry: credentials from a docker `config.json`, and the pushed
//! manifest's digest read back through the v2 API to check what the daemon said.

mod challenge;
mod cred_helper;
mod credentials;
pub mod layers;
mod reference;

pub use challenge::{BearerChallenge, parse_bearer_challenge};
pub use credentials::{Credentials, DockerConfig};
pub use reference::{ImageRef, grammar, is_registry_host};

use reqwest::{StatusCode, header};
use tracing::debug;

use crate::tls::RegistryHttp;
use crate::{Error, Result};

/// Manifest media types a HEAD may answer with; the registry picks the stored one.
const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// Loopback registries speak plain HTTP, as Docker's default insecure range allows.
pub fn is_loopback(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(h, _)| !h.ends_with(':'))
        .map_or(registry, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host.starts_with("127.")
        || host == "::1"
        || registry.starts_with("[::1]")
}

/// `http://` for loopback registries, `https://` for the rest.
pub fn base_url(registry: &str) -> String {
    let scheme = if is_loopback(registry) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{registry}")
}

/// `Docker-Content-Digest` of `repository:reference` as the registry serves it.
pub async fn manifest_digest(
    http: &impl RegistryHttp,
    registry: &str,
    repository: &str,
    reference: &str,
    creds: Option<&Credentials>,
) -> Result<String> {
    let resp = manifest_request(
        http,
        reqwest::Method::HEAD,
        registry,
        repository,
        reference,
        creds,
    )
    .await?;
    let digest = resp
        .headers()
        .get("Docker-Content-Digest")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::Registry(
                format!("{registry} sent no Docker-Content-Digest for {repository}:{reference}")
                    .into(),
            )
        })?;
    debug!(registry, repository, reference, digest, "manifest digest");
    Ok(digest.to_string())
}

/// The digest `image` has in its registry now (the one a push of it reported); a
/// digest reference is its own answer.
pub async fn image_digest(
    http: &impl RegistryHttp,
    image: &ImageRef,
    creds: Option<&Credentials>,
) -> Result<String> {
    if let Some(pinned) = image.pinned() {
        return Ok(pinned.to_string());
    }
    manifest_digest(
        http,
        image.api_host(),
        &image.repository,
        &image.reference,
        creds,
    )
    .await
}

/// The manifest (or index) `repository:reference` as the registry serves it.
pub async fn manifest(
    http: &impl RegistryHttp,
    registry: &str,
    repository: &str,
    reference: &str,
    creds: Option<&Credentials>,
) -> Result<bytes::Bytes> {
    let resp = manifest_request(
        http,
        reqwest::Method::GET,
        registry,
        repository,
        reference,
        creds,
    )
    .await?;
    resp.bytes().await.map_err(|e| {
        Error::registry(
            format!(
                "reading {registry}/{repository}:{reference}: {}",
                error_chain(&e)
            ),
            e,
        )
    })
}

/// A successful answer for the manifest, through the registry's token flow if it
/// asks for one.
async fn manifest_request(
    http: &impl RegistryHttp,
    method: reqwest::Method,
    registry: &str,
    repository: &str,
    reference: &str,
    creds: Option<&Credentials>,
) -> Result<reqwest::Response> {
    let url = format!(
        "{}/v2/{repository}/manifests/{reference}",
        http.base_url(registry)
    );
    let client = http.client(registry);
    let send = |auth: Option<String>| {
        let mut req = client
            .request(method.clone(), &url)
            .header(header::ACCEPT, MANIFEST_ACCEPT);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        req.send()
    };
    let unreachable = |e: reqwest::Error| {
        Error::registry(format!("cannot reach {registry}: {}", error_chain(&e)), e)
    };
    let mut resp = send(creds.map(Credentials::basic_header))
        .await
        .map_err(unreachable)?;
    if resp.status() == StatusCode::UNAUTHORIZED
        && let Some(challenge) = resp.headers().get(header::WWW_AUTHENTICATE)
    {
        let challenge = challenge.to_str().unwrap_or_default().to_string();
        let token = bearer_token(client, &challenge, creds).await?;
        resp = send(Some(format!("Bearer {token}")))
            .await
            .map_err(unreachable)?;
    }
    if !resp.status().is_success() {
        return Err(Error::Registry(
            format!(
                "{registry}/{repository}:{reference}: manifest {method} answered {}",
                resp.status()
            )
            .into(),
        ));
    }
    Ok(resp)
}

/// Sends `request` (body-less, so it can be sent twice) with `creds` as basic auth;
/// on a bearer challenge, again with a token for the scope the registry named.
/// Returns the answer and the Authorization header that got it, for the requests
/// that follow in the same scope (a blob upload's PUT, say).
pub async fn authorized(
    client: &reqwest::Client,
    request: reqwest::RequestBuilder,
    creds: Option<&Credentials>,
) -> Result<(reqwest::Response, Option<String>)> {
    let unreachable = |e: reqwest::Error| {
        let e = e.without_url();
        Error::registry(format!("cannot reach the registry: {}", error_chain(&e)), e)
    };
    let retry = request.try_clone().ok_or_else(|| {
        Error::Registry("a request with a streamed body cannot be authorized".into())
    })?;
    let basic = creds.map(Credentials::basic_header);
    let first = match &basic {
        Some(b) => request.header(header::AUTHORIZATION, b),
        None => request,
    };
    let resp = first.send().await.map_err(unreachable)?;
    if resp.status() != StatusCode::UNAUTHORIZED {
        return Ok((resp, basic));
    }
    let Some(challenge) = resp.headers().get(header::WWW_AUTHENTICATE) else {
        return Ok((resp, basic));
    };
    let challenge = challenge.to_str().unwrap_or_default().to_string();
    let bearer = format!("Bearer {}", bearer_token(client, &challenge, creds).await?);
    let resp = retry
        .header(header::AUTHORIZATION, &bearer)
        .send()
        .await
        .map_err(unreachable)?;
    Ok((resp, Some(bearer)))
}

/// Token flow of the distribution spec: `Bearer realm=...,service=...,scope=...`.
async fn bearer_token(
    client: &reqwest::Client,
    challenge: &str,
    creds: Option<&Credentials>,
) -> Result<String> {
    let BearerChallenge {
        realm,
        params: query,
    } = parse_bearer_challenge(challenge)?;
    let mut req = client.get(&realm).query(&query);
    if let Some(c) = creds {
        req = req.header(header::AUTHORIZATION, c.basic_header());
    }
    token_from(req).await
}

/// A token from `realm` for `scopes`, as a registry's token service hands them out
/// (what buildkitd asks a build's session for).
pub async fn fetch_token(
    client: &reqwest::Client,
    realm: &str,
    service: &str,
    scopes: &[String],
    creds: Option<&Credentials>,
) -> Result<String> {
    let mut query = vec![("service", service)];
    query.extend(scopes.iter().map(|s| ("scope", s.as_str())));
    let mut req = client.get(realm).query(&query);
    if let Some(c) = creds {
        req = req.header(header::AUTHORIZATION, c.basic_header());
    }
    token_from(req).await
}

async fn token_from(req: reqwest::RequestBuilder) -> Result<String> {
    let resp = req
        .send()
        .await
        .map_err(|e| Error::registry(format!("token service: {}", error_chain(&e)), e))?;
    if !resp.status().is_success() {
        return Err(Error::Registry(
            format!("token service answered {}", resp.status()).into(),
        ));
    }
    #[derive(serde::Deserialize)]
    struct Token {
        token: Option<String>,
        access_token: Option<String>,
    }
    let t: Token = resp
        .json()
        .await
        .map_err(|e| Error::registry(format!("token service: {e}"), e))?;
    t.token
        .or(t.access_token)
        .ok_or_else(|| Error::Registry("token service sent no token".into()))
}

/// reqwest's top-level message hides the cause ("error sending request"); show it.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry that wants a bearer token, which its token service gives for the
    /// right basic credentials only.
    #[tokio::test]
    async fn authorized_follows_the_bearer_challenge_with_basic_credentials() {
        use axum::http::{HeaderMap, StatusCode as S};
        use axum::routing::{get, post};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let basic = Credentials {
            username: "u".into(),
            password: "p4ss".into(),
        }
        .basic_header();
        let want = basic.clone();
        let app = axum::Router::new()
            .route(
                "/token",
                get(move |h: HeaderMap, q: axum::extract::RawQuery| async move {
                    // the whole scope: a token for "pull" alone could not push
                    let scope_ok = q.0.as_deref()
                        == Some("service=r&scope=repository%3Aapp%3Apull%2Cpush");
                    if scope_ok
                        && h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&want)
                    {
                        (S::OK, r#"{"token":"t0k"}"#)
                    } else {
                        (S::UNAUTHORIZED, "{}")
                    }
                }),
            )
            .route(
                "/v2/app/blobs/uploads/",
                post(move |h: HeaderMap| async move {
                    if h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer t0k") {
                        (S::ACCEPTED, HeaderMap::new())
                    } else {
                        let mut c = HeaderMap::new();
                        let v = format!(
                            r#"Bearer realm="http://{addr}/token",service="r",scope="repository:app:pull,push""#
                        );
                        c.insert("www-authenticate", v.parse().unwrap());
                        (S::UNAUTHORIZED, c)
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/v2/app/blobs/uploads/");
        let creds = Credentials {
            username: "u".into(),
            password: "p4ss".into(),
        };
        let (resp, auth) = authorized(&client, client.post(&url), Some(&creds))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(auth.as_deref(), Some("Bearer t0k"));
        let wrong = Credentials {
            username: "u".into(),
            password: "nope".into(),
        };
        let e = authorized(&client, client.post(&url), Some(&wrong))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("401"), "{e}");
        assert!(!e.to_string().contains("nope"), "{e}");
    }

    /// A registry nobody listens for: the message is what it always was, and the
    /// reqwest error behind it is kept, down to the refused connection.
    #[tokio::test]
    async fn an_unreachable_registry_keeps_the_connect_error_as_its_source() {
        use std::error::Error as _;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let registry = format!("127.0.0.1:{port}");
        let e = manifest_digest(&reqwest::Client::new(), &registry, "app", "1", None)
            .await
            .unwrap_err();
        assert_eq!(e.metric_label(), "RegistryError");
        assert!(e.is_retryable());
        let cause = e.source().expect("the cause is kept");
        let sent = cause
            .downcast_ref::<reqwest::Error>()
            .expect("reqwest's error");
        assert!(sent.is_connect(), "{sent:?}");
        let io = crate::find_cause::<std::io::Error>(&e).expect("the io error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        // the text is made from the cause as before, prefixed as before
        let detail = format!("cannot reach {registry}: {}", error_chain(sent));
        assert_eq!(e.detail(), detail);
        assert_eq!(e.to_string(), format!("registry: {detail}"));
        assert!(
            detail.starts_with(&format!(
                "cannot reach {registry}: error sending request for url (http://{registry}/v2/app/manifests/1)"
            )),
            "{detail}"
        );
    }

    #[test]
    fn loopback_registries_use_http() {
        assert_eq!(base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(base_url("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(
            base_url("registry.example.org"),
            "https://registry.example.org"
        );
    }
}
