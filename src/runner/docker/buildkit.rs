//! Building through the Docker daemon's embedded BuildKit (`POST /build?version=2`
//! with a session): stages run in parallel, unused stages are skipped, and
//! `RUN --mount` works. Progress comes as BuildKit status (vertexes and their logs),
//! mapped here onto the same events the classic builder produces.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{BuildInfoAux, ImageId};
use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use futures::StreamExt;
use tracing::debug;

use crate::Result;
use crate::api::StageStep;
use crate::runner::errors::classify_docker_error;
use crate::runner::progress::{Progress, StagesOnDrop};
use crate::runner::{BuildEvent, Events};

/// Builds with the daemon's BuildKit and returns the image ID and the build's steps.
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
    let options = BuildImageOptions {
        version: BuilderVersion::BuilderBuildKit,
        // the session carries registry credentials for base images (bollard serves it)
        session: Some(format!("slipway-{}", uuid::Uuid::new_v4())),
        // BuildKit's RUN steps need a network of their own unless told to use the
        // host's, and the daemon may run without a bridge (`--bridge=none`)
        networkmode: Some("host".into()),
        ..options
    };
    // Dropping this stream (cancel, timeout, the process killed) closes the request, and
    // dockerd solves under the request's context, so the build stops with it (checked
    // by tests/buildkit.rs). `POST /build/cancel` is not needed, and could not work:
    // it finds builds by the `buildid` parameter, which bollard does not send.
    let mut stream = docker.build_image(options, creds, Some(bollard::body_try_stream(body)));
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
                    if let BuildEvent::Step(s) | BuildEvent::Log(s) = &ev {
                        debug!(target: "slipway::docker", "{s}");
                    }
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
