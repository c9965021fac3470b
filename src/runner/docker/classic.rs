//! Building with the Docker daemon's classic builder (`POST /build` without a
//! session): deprecated by Docker, kept as the fallback for daemons without BuildKit.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{BuildInfoAux, ImageId};
use bollard::query_parameters::BuildImageOptions;
use futures::StreamExt;

use crate::runner::errors::{build_error, classify_docker_error, failure_message};
use crate::runner::{BuildEvent, Events};
use crate::{Error, Result};

/// Builds with the classic builder and returns the image ID.
pub(super) async fn build(
    docker: &Docker,
    options: BuildImageOptions,
    creds: Option<HashMap<String, bollard::auth::DockerCredentials>>,
    body: impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    events: &Events,
) -> Result<String> {
    let mut stream = docker.build_image(options, creds, Some(bollard::body_try_stream(body)));
    let mut image_id = None;
    let mut step = String::new();
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(build_error(&step, &error, &tail));
            }
            Err(e) => return Err(classify_docker_error(e)),
        };
        if let Some(text) = info.stream {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if line.starts_with("Step ") {
                    step = line.to_string();
                    tail.clear();
                    let _ = events.send(BuildEvent::Step(line.to_string()));
                } else {
                    tail.push(line.to_string());
                    if tail.len() > 5 {
                        tail.remove(0);
                    }
                    let _ = events.send(BuildEvent::Log(line.to_string()));
                }
            }
        }
        if let Some(err) = info.error_detail.and_then(|e| e.message) {
            return Err(build_error(&step, &err, &tail));
        }
        if let Some(BuildInfoAux::Default(ImageId { id: Some(id) })) = info.aux {
            image_id = Some(id);
        }
    }
    image_id.ok_or_else(|| {
        Error::BuildFailed(failure_message(
            &step,
            "the daemon ended the build without an image ID",
            &tail,
        ))
    })
}
