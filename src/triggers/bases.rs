//! The external base image poller: one manifest HEAD per distinct reference per
//! interval, however many resources build on it (the reconciler's [`Targets`]
//! already holds each reference once).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::poll::{self, Probe};
use super::{Observation, Targets};
use crate::registry::{self, DockerConfig, ImageRef};
use crate::tls::Clients;

/// Looks up every reference in `targets.bases` every `every` (zero: never), with the
/// credentials given for it, sending [`Observation::Base`] the first time and
/// whenever its digest changes. `client` (by registry host, see [`Clients`]) should
/// carry a timeout.
pub fn spawn_base_poller(
    targets: watch::Receiver<Targets>,
    every: Duration,
    client: impl Into<Clients>,
    out: mpsc::Sender<Observation>,
) -> JoinHandle<()> {
    let client = client.into();
    tokio::spawn(poll::run(Bases { client }, targets, every, out))
}

struct Bases {
    client: Clients,
}

impl Probe for Bases {
    type Arg = Arc<DockerConfig>;
    const WHAT: &'static str = "base image";

    fn wanted(&self, targets: &Targets) -> BTreeMap<String, Arc<DockerConfig>> {
        targets.bases.clone()
    }

    async fn look(&self, image: &str, auth: Arc<DockerConfig>) -> Result<String, String> {
        let r =
            ImageRef::parse(image).ok_or_else(|| format!("'{image}' is not an image reference"))?;
        let creds = auth
            .credentials_for(&r.registry)
            .await
            .map_err(|e| e.to_string())?;
        registry::image_digest(&self.client, &r, creds.as_ref())
            .await
            .map_err(|e| e.to_string())
    }

    fn observation(&self, image: String, digest: String) -> Observation {
        Observation::Base { image, digest }
    }
}
