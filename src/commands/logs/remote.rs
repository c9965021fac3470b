//! `slipway logs --kube`: the log from the controller's `/logs` endpoint, either at
//! `--server URL` or through the API server's service proxy
//! (`/api/v1/namespaces/NS/services/http:SVC:PORT/proxy/logs/...`).
//!
//! kube-apiserver removes the `Authorization` header of a request it authenticated
//! before proxying it (apiserver's `WithAuthentication` filter), so through the proxy
//! the caller's bearer token travels in [`FORWARDED_AUTHORIZATION`] as well; the
//! endpoint reviews it exactly as it would `Authorization`.

use std::io::Write;

use axum::http::{self, HeaderValue, header::AUTHORIZATION};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use secrecy::ExposeSecret;

use super::LogsArgs;
use crate::logs::serve::{FORWARDED_AUTHORIZATION, Refusal};
use crate::logs::{END_MARK, Follow, LogError};

/// Where the controller's Service is, as the CLI asks the API server to proxy to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    pub namespace: String,
    pub service: String,
    pub port: String,
}

impl ProxyTarget {
    /// The service proxy's ID: RBAC sees it whole as the resource name of
    /// `services/proxy` (the chart's log-proxy Role names exactly this).
    pub fn id(&self) -> String {
        format!("http:{}:{}", self.service, self.port)
    }

    fn path(&self, args: &LogsArgs) -> String {
        format!(
            "/api/v1/namespaces/{}/services/{}/proxy/logs/{}/{}?{}",
            self.namespace,
            self.id(),
            args.namespace,
            args.name,
            query(args)
        )
    }
}

fn query(args: &LogsArgs) -> String {
    let mut q = format!("follow={}", args.follow);
    if let Some(b) = args.build {
        q.push_str(&format!("&build={b}"));
    }
    q
}

/// Prints the log from the controller, as it comes.
pub async fn remote(args: &LogsArgs) -> Result<Follow, LogError> {
    let given = args
        .token
        .as_ref()
        .map(|t| bearer(t.expose_secret().trim()))
        .transpose()?;
    if let Some(server) = &args.server {
        let auth = match given {
            Some(v) => v,
            None => kubeconfig_bearer(&kubeconfig().await?).await?,
        };
        return direct(args, server, auth).await;
    }
    let config = kubeconfig().await?;
    let forwarded = match given {
        Some(v) => v,
        None => kubeconfig_bearer(&config).await?,
    };
    let target = ProxyTarget {
        namespace: args.controller_namespace.clone(),
        service: args.controller_service.clone(),
        port: args.controller_port.clone(),
    };
    let api = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .map_err(|e| LogError::Unreadable(format!("kubeconfig: {e}")))?;
    let req = http::Request::get(target.path(args))
        .header(FORWARDED_AUTHORIZATION, forwarded)
        .body(kube::client::Body::empty())
        .map_err(|e| LogError::Unreadable(e.to_string()))?;
    let resp = client
        .send(req)
        .await
        .map_err(|e| LogError::Unreadable(format!("the API server at {api}: {e}")))?;
    let status = resp.status().as_u16();
    let body = http_body_util::BodyExt::into_data_stream(resp.into_body())
        .map(|r| r.map_err(|e| e.to_string()));
    if !(200..300).contains(&status) {
        let text = collect(body).await;
        return Err(refusal(status, &text, Some(&target)));
    }
    print(body).await
}

/// `--server URL`: straight to the controller, the token in `Authorization`.
async fn direct(args: &LogsArgs, server: &str, auth: HeaderValue) -> Result<Follow, LogError> {
    let url = format!(
        "{}/logs/{}/{}?{}",
        server.trim_end_matches('/'),
        args.namespace,
        args.name,
        query(args)
    );
    let resp = reqwest::Client::new()
        .get(&url)
        .header(AUTHORIZATION, auth)
        .send()
        .await
        .map_err(|e| LogError::Unreadable(format!("{url}: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp.bytes_stream().map(|r| r.map_err(|e| e.to_string()));
    if !(200..300).contains(&status) {
        let text = collect(body).await;
        return Err(refusal(status, &text, None));
    }
    print(body).await
}

async fn collect(body: impl Stream<Item = Result<Bytes, String>>) -> String {
    let chunks: Vec<_> = body.collect().await;
    let bytes: Vec<u8> = chunks.into_iter().flatten().flatten().collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Copies the body to stdout; `Ended` once the build's last line went by.
async fn print(body: impl Stream<Item = Result<Bytes, String>>) -> Result<Follow, LogError> {
    let mut body = std::pin::pin!(body);
    let mut out = std::io::stdout();
    let mut ended = false;
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| LogError::Unreadable(format!("the log stream broke: {e}")))?;
        ended |= String::from_utf8_lossy(&chunk).contains(END_MARK);
        out.write_all(&chunk)
            .and_then(|_| out.flush())
            .map_err(|e| LogError::Unreadable(e.to_string()))?;
    }
    Ok(if ended { Follow::Ended } else { Follow::Open })
}

/// What a refusal means to the user. The controller answers with a [`Refusal`]; the
/// API server (in front of it, through the proxy) with a Kubernetes `Status`.
pub fn refusal(status: u16, body: &str, proxy: Option<&ProxyTarget>) -> LogError {
    if let Ok(r) = serde_json::from_str::<Refusal>(body) {
        return LogError::Refused(r.code, r.message);
    }
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let (Some(p), Some("Status")) = (proxy, v["kind"].as_str()) else {
        return LogError::Unreadable(format!("HTTP {status}: {}", body.trim()));
    };
    let said = v["message"].as_str().unwrap_or_default();
    let (ns, id) = (&p.namespace, p.id());
    match status {
        401 => LogError::Forbidden(format!(
            "the API server did not accept the kubeconfig's credentials ({said})"
        )),
        403 => LogError::Forbidden(format!(
            "{said}: reading build logs through the API server needs `get` on `services/proxy` \
             (resource name {id}) in namespace {ns}, or pass --server URL"
        )),
        404 => LogError::Unreadable(format!(
            "{said}: no controller Service {}/{}; point --controller-namespace, \
             --controller-service and --controller-port at the chart's Service, or pass --server URL",
            p.namespace, p.service
        )),
        503 => LogError::Unreadable(format!(
            "{said}: the controller behind Service {}/{} is not running or not reachable",
            p.namespace, p.service
        )),
        _ => LogError::Unreadable(format!("HTTP {status} from the API server: {said}")),
    }
}

fn bearer(token: &str) -> Result<HeaderValue, LogError> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| LogError::Forbidden("the token is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

async fn kubeconfig() -> Result<kube::Config, LogError> {
    kube::Config::infer()
        .await
        .map_err(|e| LogError::Unreadable(format!("kubeconfig: {e}")))
}

/// The `Authorization: Bearer` value kube's client would send for this kubeconfig
/// (a token, a token file, an exec plugin's or an OIDC token), got by running its
/// own auth layer on an empty request. A client certificate has none to show.
pub async fn kubeconfig_bearer(config: &kube::Config) -> Result<HeaderValue, LogError> {
    use kube::client::ConfigExt;
    use tower::{Layer, ServiceExt};

    let none = || {
        LogError::Forbidden(
            "the kubeconfig's user has no bearer token (a client certificate?), and the \
             controller can only check a token: pass --token or set SLIPWAY_TOKEN (e.g. \
             `kubectl create token NAME -n NS` for a ServiceAccount allowed to \
             `get dockerbuilds/log`)"
                .into(),
        )
    };
    let layer = config
        .auth_layer()
        .map_err(|e| LogError::Unreadable(format!("kubeconfig: {e}")))?
        .ok_or_else(none)?;
    let capture = tower::service_fn(|req: http::Request<kube::client::Body>| async move {
        Ok::<_, tower::BoxError>(http::Response::new(
            req.headers().get(AUTHORIZATION).cloned(),
        ))
    });
    let resp = layer
        .layer(capture)
        .oneshot(http::Request::new(kube::client::Body::empty()))
        .await
        .map_err(|e| LogError::Unreadable(format!("kubeconfig credentials: {e}")))?;
    resp.into_body()
        .filter(|v| v.as_bytes().starts_with(b"Bearer "))
        .ok_or_else(none)
}

#[cfg(test)]
mod tests;
