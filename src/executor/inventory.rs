//! What the agent's Docker daemon holds, sent with the task's terminal update so
//! the framework can place the next build where its base layers already are
//! (see `crate::mesos::scheduler::placement`).

use std::time::Duration;

use tracing::debug;

use super::ExecutorOptions;
use crate::mesos::task::Holdings;
use crate::runner::{Builder, connect_docker};

/// The listing must not hold up the terminal update for long: a slow daemon just
/// reports nothing.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The daemon's newest images (repo digests) and their layers (diff IDs), capped;
/// empty when the build does not use the daemon or it cannot be asked.
pub async fn collect(opts: &ExecutorOptions) -> Holdings {
    // a standalone buildkitd keeps its own cache; the daemon's images are not used
    if opts.builder == Builder::Buildkitd || opts.buildkitd.addr.is_some() {
        return Holdings::default();
    }
    match tokio::time::timeout(TIMEOUT, list(opts)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            debug!(error = %e, "cannot list the daemon's images; reporting none");
            Holdings::default()
        }
        Err(_) => {
            debug!("listing the daemon's images took over {TIMEOUT:?}; reporting none");
            Holdings::default()
        }
    }
}

async fn list(opts: &ExecutorOptions) -> crate::Result<Holdings> {
    let docker = connect_docker(opts.docker_host.as_deref(), &opts.docker_tls).await?;
    let docker_err = |e: bollard::errors::Error| crate::Error::docker(e.to_string(), e);
    let mut images = docker
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .map_err(docker_err)?;
    images.sort_by_key(|i| std::cmp::Reverse(i.created));
    images.truncate(Holdings::MAX_IMAGES);
    let digests = images
        .iter()
        .flat_map(|i| &i.repo_digests)
        .filter_map(|d| d.rsplit_once('@').map(|(_, d)| d.to_string()))
        .collect();
    let mut layers = Vec::new();
    for i in &images {
        if layers.len() >= Holdings::MAX_LAYERS {
            break;
        }
        let inspect = docker.inspect_image(&i.id).await.map_err(docker_err)?;
        layers.extend(inspect.root_fs.and_then(|r| r.layers).unwrap_or_default());
    }
    Ok(Holdings::capped(digests, layers))
}
