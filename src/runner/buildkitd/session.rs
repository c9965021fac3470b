//! The session a build lends buildkitd: the daemon calls back into it for the build
//! context, registry credentials and secrets.
//!
//! `Control.Session` is a bidirectional stream of `BytesMessage`s that tunnels one
//! HTTP/2 connection on which the roles are reversed: buildkitd is the gRPC client and
//! this process the gRPC server. The request's metadata names the session
//! (`x-docker-expose-session-uuid`) and each method it serves
//! (`x-docker-expose-session-grpc-method`); buildkitd calls nothing else.

use std::pin::Pin;
use std::sync::Arc;

use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
    health_check_response::ServingStatus,
};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bollard_buildkit_proto::moby::buildkit::v1::BytesMessage;
use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use bollard_buildkit_proto::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tonic::server::NamedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::registry::Credentials;
use crate::runner::BuildSecrets;
use crate::runner::filesync::{FileSyncServer, LocalDirs};

/// Room for the tunnel's bytes in each direction.
const TUNNEL_BUFFER: usize = 256 * 1024;
/// Largest tunnel message sent to buildkitd.
const TUNNEL_MESSAGE: usize = 128 * 1024;
/// buildkitd refuses gRPC messages over 16 MiB (secrets go in one message).
const MAX_MESSAGE: usize = 16 << 20;

/// What the session serves for one build.
pub(super) struct Provided {
    /// The `context` and `dockerfile` directories, sent by file sync: buildkitd
    /// asks only for the files that changed since its copy of the last build's.
    pub context: LocalDirs,
    /// Where buildkitd keeps that copy (see [`super::shared_key`]).
    pub shared_key: String,
    /// Credentials for the target registry (`host`, and what to answer).
    pub auth: Option<(String, Credentials)>,
    pub secrets: BuildSecrets,
    pub http: reqwest::Client,
}

/// A running session; dropping it closes the tunnel and stops serving.
pub(super) struct Session {
    _tasks: JoinSet<()>,
    /// Ends the stream of bytes to buildkitd, so the Session call ends there too.
    /// Aborting our tasks alone is not enough: the gRPC server runs the tunnel's
    /// connection on a task of its own, which would keep the call open for good.
    _close: tokio_util::sync::DropGuard,
}

/// Opens the session `id` on buildkitd and serves `provided` on it until dropped.
pub(super) async fn start(
    mut control: ControlClient<Channel>,
    id: &str,
    provided: Provided,
) -> Result<Session, Status> {
    let files = FileSyncServer::new(provided.context);
    let auth = AuthServer::new(RegistryAuth {
        creds: provided.auth,
        http: provided.http,
    });
    let secrets = SecretsServer::new(BuildSecretsService(Arc::new(provided.secrets)))
        .max_encoding_message_size(MAX_MESSAGE);
    let health = HealthServer::new(Healthy);

    let methods = [
        (HealthServer::<Healthy>::NAME, &["Check"][..]),
        (
            AuthServer::<RegistryAuth>::NAME,
            &[
                "Credentials",
                "FetchToken",
                "GetTokenAuthority",
                "VerifyTokenAuthority",
            ][..],
        ),
        (FileSyncServer::<LocalDirs>::NAME, &["DiffCopy"][..]),
        (
            SecretsServer::<BuildSecretsService>::NAME,
            &["GetSecret"][..],
        ),
    ];

    // our end of the tunnel is `served`; `pump` carries its bytes to and from the stream
    let (served, pump) = tokio::io::duplex(TUNNEL_BUFFER);
    let (pump_read, mut pump_write) = tokio::io::split(pump);
    let close = tokio_util::sync::CancellationToken::new();
    // the context's file data goes this way: messages far larger than the reader's
    // default 4 KiB keep the per-message cost off a large transfer
    let outgoing = tokio_util::io::ReaderStream::with_capacity(pump_read, TUNNEL_MESSAGE)
        .take_until(close.clone().cancelled_owned())
        .take_while(|r| futures::future::ready(r.is_ok()))
        .filter_map(|r| futures::future::ready(r.ok()))
        .map(|b| BytesMessage { data: b.to_vec() });
    let mut req = Request::new(outgoing);
    let md = req.metadata_mut();
    let ascii = |s: &str| {
        s.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
            .map_err(|_| Status::invalid_argument(format!("bad session metadata {s}")))
    };
    md.insert("x-docker-expose-session-uuid", ascii(id)?);
    md.insert("x-docker-expose-session-name", ascii("slipway")?);
    md.insert(
        "x-docker-expose-session-sharedkey",
        ascii(&provided.shared_key)?,
    );
    for (service, names) in methods {
        for m in names {
            md.append(
                "x-docker-expose-session-grpc-method",
                ascii(&format!("/{service}/{m}"))?,
            );
        }
    }
    let mut incoming = control.session(req).await?.into_inner();

    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        while let Ok(Some(m)) = incoming.message().await {
            if pump_write.write_all(&m.data).await.is_err() {
                break;
            }
        }
        let _ = pump_write.shutdown().await;
    });
    tasks.spawn(async move {
        // one connection, and the server must not end when the "listener" does
        let conn = futures::stream::iter([Ok::<_, std::io::Error>(served)])
            .chain(futures::stream::pending());
        let served = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(auth)
            .add_service(files)
            .add_service(secrets)
            .serve_with_incoming(conn)
            .await;
        if let Err(e) = served {
            debug!("buildkitd session ended: {e}");
        }
    });
    Ok(Session {
        _tasks: tasks,
        _close: close.drop_guard(),
    })
}

struct Healthy;

#[tonic::async_trait]
impl Health for Healthy {
    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("list"))
    }

    type WatchStream =
        Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

/// Registry credentials for the target registry's host; other hosts get none
/// (anonymous pulls). Values never reach a log: `Credentials` redacts its Debug.
struct RegistryAuth {
    creds: Option<(String, Credentials)>,
    http: reqwest::Client,
}

impl RegistryAuth {
    fn for_host(&self, host: &str) -> Option<&Credentials> {
        self.creds
            .as_ref()
            .filter(|(h, _)| h == host)
            .map(|(_, c)| c)
    }
}

#[tonic::async_trait]
impl Auth for RegistryAuth {
    async fn credentials(
        &self,
        req: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let c = self.for_host(&req.get_ref().host);
        Ok(Response::new(CredentialsResponse {
            username: c.map(|c| c.username.clone()).unwrap_or_default(),
            secret: c.map(|c| c.password.clone()).unwrap_or_default(),
        }))
    }

    async fn fetch_token(
        &self,
        req: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        let r = req.get_ref();
        let token = crate::registry::fetch_token(
            &self.http,
            &r.realm,
            &r.service,
            &r.scopes,
            self.for_host(&r.host),
        )
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(FetchTokenResponse {
            token,
            expires_in: 60,
            issued_at: chrono::Utc::now().timestamp(),
        }))
    }

    // buildkitd falls back to the calls above when these are unavailable
    async fn get_token_authority(
        &self,
        _: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unavailable("no token authority"))
    }

    async fn verify_token_authority(
        &self,
        _: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unavailable("no token authority"))
    }
}

/// `spec.secrets` values, by id.
struct BuildSecretsService(Arc<BuildSecrets>);

#[tonic::async_trait]
impl Secrets for BuildSecretsService {
    async fn get_secret(
        &self,
        req: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = &req.get_ref().id;
        match self.0.0.get(id) {
            Some(v) => Ok(Response::new(GetSecretResponse { data: v.clone() })),
            None => Err(Status::not_found(format!(
                "secret '{id}' is not in spec.secrets"
            ))),
        }
    }
}
