//! The controller's `GET /logs/{namespace}/{name}?build=N&follow=true`. Kubernetes
//! decides who may read: the caller's bearer token goes through a TokenReview, and
//! the user it names through a SubjectAccessReview for `get dockerbuilds/log` in the
//! namespace, as the API server itself would for a subresource.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use tokio::sync::mpsc;
use tracing::warn;

use super::{LogError, LogQuery, LogStore, find, follow};
use crate::api::DockerBuild;

/// What the endpoint needs: the API (reviews, the resource) and the kept logs.
pub struct LogApi {
    pub client: Client,
    pub store: LogStore,
}

/// The caller's `Bearer` token when it comes through the API server's service proxy,
/// which drops `Authorization` once it has authenticated the request itself.
pub const FORWARDED_AUTHORIZATION: &str = "x-slipway-authorization";

#[derive(Debug, serde::Deserialize)]
struct Params {
    build: Option<u64>,
    #[serde(default)]
    follow: bool,
}

/// The body of every refusal: the CLI shows `message` and exits with `code`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub code: u8,
    pub message: String,
}

pub fn router(api: Arc<LogApi>) -> Router {
    Router::new()
        .route("/logs/{namespace}/{name}", get(get_log))
        .with_state(api)
}

fn refuse(status: StatusCode, e: &LogError) -> Response {
    let body = Refusal {
        code: e.exit_code(),
        message: e.to_string(),
    };
    let json = serde_json::to_string(&body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    warn!("build log request: {what}: {e}");
    let e = LogError::Unreadable(format!("{what}: the API server did not answer"));
    refuse(StatusCode::SERVICE_UNAVAILABLE, &e)
}

async fn get_log(
    State(api): State<Arc<LogApi>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(p): Query<Params>,
    headers: HeaderMap,
) -> Response {
    let bearer = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    };
    // either way the token itself is reviewed: a header proves nothing by its name
    let token = bearer(header::AUTHORIZATION.as_str()).or_else(|| bearer(FORWARDED_AUTHORIZATION));
    let Some(token) = token else {
        let e = LogError::Forbidden(format!(
            "send a bearer token in Authorization, or in {FORWARDED_AUTHORIZATION} through the \
             API server's proxy (kubectl create token ...)"
        ));
        return refuse(StatusCode::UNAUTHORIZED, &e);
    };
    let user = match api.authenticate(token).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let e = LogError::Forbidden("the API server did not accept the token".into());
            return refuse(StatusCode::UNAUTHORIZED, &e);
        }
        Err(e) => return unavailable("TokenReview", e),
    };
    match api.authorize(&user, &namespace, &name).await {
        Ok(true) => {}
        Ok(false) => {
            let who = user.username.unwrap_or_default();
            let e = LogError::Forbidden(format!(
                "{who} may not get dockerbuilds/log (group slipway.dev) in namespace {namespace}"
            ));
            return refuse(StatusCode::FORBIDDEN, &e);
        }
        Err(e) => return unavailable("SubjectAccessReview", e),
    }
    let q = LogQuery {
        namespace,
        name,
        build: p.build,
    };
    let builds: Api<DockerBuild> = Api::namespaced(api.client.clone(), &q.namespace);
    let latest = match builds.get_opt(&q.name).await {
        Ok(found) => found.map(|b| b.status.and_then(|s| s.build_number)),
        Err(e) => return unavailable("reading the DockerBuild", e),
    };
    let path = match find(&api.store.dir(&q.namespace, &q.name), &q, latest) {
        Ok(path) => path,
        Err(e @ LogError::Expired { .. }) => return refuse(StatusCode::GONE, &e),
        Err(e) => return refuse(StatusCode::NOT_FOUND, &e),
    };
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    tokio::spawn(async move {
        let mut out = Sender(tx.clone());
        // a client that went away stops the follow even while no line comes
        tokio::select! {
            r = follow(&path, &mut out, p.follow) => if let Err(e) = r {
                warn!(log = %path.display(), "serving a build log: {e}");
            },
            _ = tx.closed() => {}
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map_ok());
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// `Ok` items for [`Body::from_stream`].
trait MapOk: Sized {
    fn map_ok(self) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send;
}

impl<S: futures::Stream<Item = Bytes> + Send> MapOk for S {
    fn map_ok(self) -> impl futures::Stream<Item = Result<Bytes, Infallible>> + Send {
        futures::StreamExt::map(self, Ok)
    }
}

/// The response body as a `Write`: a closed connection is a broken pipe.
struct Sender(mpsc::UnboundedSender<Bytes>);

impl std::io::Write for Sender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogApi {
    /// Who the token belongs to; `None` when the API server does not accept it.
    async fn authenticate(&self, token: &str) -> kube::Result<Option<UserInfo>> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let done = api.create(&PostParams::default(), &review).await?;
        Ok(done
            .status
            .filter(|s| s.authenticated == Some(true))
            .and_then(|s| s.user))
    }

    /// Whether `user` may `get dockerbuilds/log` of `name` in `namespace`.
    async fn authorize(&self, user: &UserInfo, namespace: &str, name: &str) -> kube::Result<bool> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups.clone(),
                uid: user.uid.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(namespace.to_string()),
                    verb: Some("get".into()),
                    group: Some(DockerBuild::group(&()).into_owned()),
                    resource: Some("dockerbuilds".into()),
                    subresource: Some("log".into()),
                    name: Some(name.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let done = api.create(&PostParams::default(), &review).await?;
        Ok(done.status.is_some_and(|s| s.allowed))
    }
}
