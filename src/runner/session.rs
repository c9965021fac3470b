//! The session a build lends BuildKit, whichever the transport (buildkitd's
//! `Control.Session` tunnel, or the Docker daemon's `POST /session` upgrade): BuildKit
//! calls back into it for the build context (file sync), registry credentials and
//! secrets. On it the roles are reversed: BuildKit is the gRPC client and this process
//! the gRPC server; BuildKit calls only the methods the session advertised.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
    health_check_response::ServingStatus,
};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bollard_buildkit_proto::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use futures::{Stream, StreamExt};
use tokio::io::DuplexStream;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::registry::Credentials;
use crate::runner::BuildSecrets;
use crate::runner::filesync::{FileSyncServer, LocalDirs};

/// BuildKit refuses gRPC messages over 16 MiB (secrets go in one message).
const MAX_MESSAGE: usize = 16 << 20;

/// What the session serves for one build.
pub(crate) struct Provided {
    /// The `context` and `dockerfile` directories, sent by file sync: BuildKit
    /// asks only for the files that changed since its copy of the last build's.
    pub context: LocalDirs,
    /// Where BuildKit keeps that copy (see [`shared_key`]).
    pub shared_key: String,
    /// Registry credentials by host; other hosts get none (anonymous pulls).
    pub auth: HashMap<String, Credentials>,
    pub secrets: BuildSecrets,
    pub http: crate::tls::Clients,
}

/// The name a session goes by (BuildKit only shows it).
pub(crate) const NAME: &str = "slipway";

/// The full names (`/pkg.Service/Method`) of the methods [`serve`] answers, which a
/// session advertises one header each.
pub(crate) fn methods() -> Vec<String> {
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
    methods
        .iter()
        .flat_map(|(service, names)| names.iter().map(move |m| format!("/{service}/{m}")))
        .collect()
}

/// Serves `provided` on `conn`, one HTTP/2 connection BuildKit opens as the client,
/// until it closes.
pub(crate) async fn serve(provided: Provided, conn: DuplexStream) {
    let files = FileSyncServer::new(provided.context);
    let auth = AuthServer::new(RegistryAuth {
        creds: provided.auth,
        http: provided.http,
    });
    let secrets = SecretsServer::new(BuildSecretsService(Arc::new(provided.secrets)))
        .max_encoding_message_size(MAX_MESSAGE);
    let health = HealthServer::new(Healthy);
    // one connection, and the server must not end when the "listener" does
    let conn =
        futures::stream::iter([Ok::<_, std::io::Error>(conn)]).chain(futures::stream::pending());
    let served = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(auth)
        .add_service(files)
        .add_service(secrets)
        .serve_with_incoming(conn)
        .await;
    if let Err(e) = served {
        debug!("build session ended: {e}");
    }
}

/// The session's shared key for a context: BuildKit files its copy of a context
/// under it (with the local's name), so it must stay the same from one build of a
/// resource to the next; hashed, as it goes in a header.
pub(crate) fn shared_key(context_key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("slipway:{context_key}")))
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

/// Registry credentials by host; other hosts get none (anonymous pulls). Values
/// never reach a log: `Credentials` redacts its Debug.
struct RegistryAuth {
    creds: HashMap<String, Credentials>,
    http: crate::tls::Clients,
}

impl RegistryAuth {
    fn for_host(&self, host: &str) -> Option<&Credentials> {
        self.creds.get(host)
    }
}

#[tonic::async_trait]
impl Auth for RegistryAuth {
    async fn credentials(
        &self,
        req: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let c = self.for_host(&req.get_ref().host);
        // an identity token goes without a username, as buildkit's own client sends it
        let username = c
            .filter(|c| !c.is_identity_token())
            .map(|c| c.username.clone());
        Ok(Response::new(CredentialsResponse {
            username: username.unwrap_or_default(),
            secret: c.map(|c| c.password.clone()).unwrap_or_default(),
        }))
    }

    async fn fetch_token(
        &self,
        req: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        let r = req.get_ref();
        // the registry's certs.d entry, as Docker reaches its token service
        let token = crate::registry::fetch_token(
            crate::tls::RegistryHttp::client(&self.http, &r.host),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_identity_token_is_offered_without_a_username() {
        let auth = |username: &str| RegistryAuth {
            creds: HashMap::from([(
                "r:5000".to_string(),
                Credentials {
                    username: username.into(),
                    password: "pw".into(),
                },
            )]),
            http: reqwest::Client::new().into(),
        };
        let ask = |a: RegistryAuth| async move {
            let req = Request::new(CredentialsRequest {
                host: "r:5000".into(),
            });
            a.credentials(req).await.unwrap().into_inner()
        };
        let r = ask(auth("<token>")).await;
        assert_eq!((r.username.as_str(), r.secret.as_str()), ("", "pw"));
        let r = ask(auth("alice")).await;
        assert_eq!((r.username.as_str(), r.secret.as_str()), ("alice", "pw"));
    }
}
