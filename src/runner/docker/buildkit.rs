//! Building through the Docker daemon's embedded BuildKit (`POST /build?version=2`
//! with a session): stages run in parallel, unused stages are skipped, and
//! `RUN --mount` works. Progress comes as BuildKit status (vertexes and their logs),
//! mapped here onto the same events the classic builder produces.
//!
//! The context goes by file sync through our own session ([`build_synced`]), so the
//! daemon asks only for the files that changed since the resource's last build; a
//! daemon we cannot open a session on ourselves (TLS, SSH) gets a tar ([`build`]).

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{BuildInfo, BuildInfoAux, ImageId};
use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use tokio::task::JoinSet;

use super::daemon::{self, Addr, JsonLines};
use crate::api::StageStep;
use crate::runner::Events;
use crate::runner::errors::classify_docker_error;
use crate::runner::progress::{Progress, StagesOnDrop};
use crate::runner::session::Provided;
use crate::{Error, Result};

/// Builds with the daemon's BuildKit, which reads the context from a session we
/// serve at `addr` (file sync); returns the image ID and the build's steps.
pub(super) async fn build_synced(
    docker: &Docker,
    addr: &Addr,
    options: BuildImageOptions,
    provided: Provided,
    events: &Events,
) -> Result<(String, Vec<StageStep>)> {
    let mut told = StagesOnDrop::new(events);
    let v = docker.client_version();
    let version = format!("v{}.{}", v.major_version, v.minor_version);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let options = BuildImageOptions {
        // the Dockerfile frontend reads it from the session's `dockerfile` directory
        dockerfile: provided.context.dockerfile_name().to_string(),
        remote: Some("client-session".into()),
        ..with_buildkit(options, id.clone())
    };
    let query = serde_urlencoded::to_string(&options)
        .map_err(|e| Error::docker(format!("cannot encode the build's options: {e}"), e))?;
    // dropped on return (or with this future): the daemon forgets the session
    let _session = daemon::open_session(addr, &version, &id, provided).await?;
    // Dropping these tasks (cancel, timeout) closes the build's connection, and dockerd
    // solves under the request's context, so the build stops with it (checked by
    // tests/it/buildkit.rs).
    let mut tasks = JoinSet::new();
    let body = daemon::start_build(addr, &version, &query, &mut tasks).await?;
    let built = follow(messages(body), events, &mut told.progress).await;
    built.map(|id| (id, told.list()))
}

/// The JSON messages of a build's answer.
fn messages(
    body: hyper::body::Incoming,
) -> impl Stream<Item = std::result::Result<BuildInfo, bollard::errors::Error>> {
    futures::stream::unfold(Some((body, JsonLines::new())), |state| async move {
        let (mut body, mut lines) = state?;
        loop {
            match body.frame().await? {
                Err(e) => return Some((vec![Err(e.into())], None)),
                Ok(frame) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let got = lines.push::<BuildInfo>(&data);
                    if !got.is_empty() {
                        let got = got.into_iter().map(|r| r.map_err(Into::into)).collect();
                        return Some((got, Some((body, lines))));
                    }
                }
            }
        }
    })
    .flat_map(futures::stream::iter)
}

/// A build on the daemon's BuildKit as session `session`.
fn with_buildkit(options: BuildImageOptions, session: String) -> BuildImageOptions {
    BuildImageOptions {
        version: BuilderVersion::BuilderBuildKit,
        session: Some(session),
        // BuildKit's RUN steps need a network of their own unless told to use the
        // host's, and the daemon may run without a bridge (`--bridge=none`)
        networkmode: Some("host".into()),
        ..options
    }
}

/// Builds with the daemon's BuildKit from a tar of the context, and returns the image
/// ID and the build's steps.
/// The steps also go out as [`BuildEvent::Stages`] when the build ends, failed or not.
pub(super) async fn build(
    docker: &Docker,
    options: BuildImageOptions,
    creds: Option<HashMap<String, bollard::auth::DockerCredentials>>,
    body: impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    events: &Events,
) -> Result<(String, Vec<StageStep>)> {
    let mut told = StagesOnDrop::new(events);
    let built = solve(docker, options, creds, body, events, &mut told.progress).await;
    built.map(|id| (id, told.list()))
}

async fn solve(
    docker: &Docker,
    options: BuildImageOptions,
    creds: Option<HashMap<String, bollard::auth::DockerCredentials>>,
    body: impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    events: &Events,
    progress: &mut Progress,
) -> Result<String> {
    // the session carries registry credentials for base images (bollard serves it)
    let options = with_buildkit(options, format!("slipway-{}", uuid::Uuid::new_v4()));
    // Dropping this stream (cancel, timeout, the process killed) closes the request, and
    // dockerd solves under the request's context, so the build stops with it (checked
    // by tests/it/buildkit.rs). `POST /build/cancel` is not needed, and could not work:
    // it finds builds by the `buildid` parameter, which bollard does not send.
    let stream = docker.build_image(options, creds, Some(bollard::body_try_stream(body)));
    follow(stream, events, progress).await
}

/// Feeds the build's messages to `progress` and `events`; returns the image ID.
async fn follow(
    stream: impl Stream<Item = std::result::Result<BuildInfo, bollard::errors::Error>>,
    events: &Events,
    progress: &mut Progress,
) -> Result<String> {
    tokio::pin!(stream);
    let mut image_id = None;
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(progress.failure(&error));
            }
            Err(e) => return Err(classify_docker_error(e)),
        };
        match info.aux {
            Some(BuildInfoAux::BuildKit(status)) => {
                for ev in progress.update(&status) {
                    let _ = events.send(ev);
                }
            }
            Some(BuildInfoAux::Default(ImageId { id: Some(id) })) => image_id = Some(id),
            Some(BuildInfoAux::Default(_)) | None => {}
        }
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            return Err(progress.failure(&err));
        }
    }
    image_id.ok_or_else(|| progress.failure("the daemon ended the build without an image ID"))
}
