//! The Mesos framework ID kept in a ConfigMap of the controller's namespace, so a new
//! controller pod (or a new leader) re-attaches to the builds already running.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::mesos::scheduler::FrameworkIdStore;
use crate::{Error, Kind, Result};

const KEY: &str = "frameworkId";

/// Reads the ConfigMap once at start; writes go out in order from a task of their
/// own, because the scheduler saves from synchronous code.
pub struct ConfigMapStore {
    current: Mutex<Option<String>>,
    writes: mpsc::UnboundedSender<Option<String>>,
}

impl ConfigMapStore {
    pub async fn open(client: Client, namespace: &str, name: &str) -> Result<Arc<Self>> {
        let api: Api<ConfigMap> = Api::namespaced(client, namespace);
        let existing = api.get_opt(name).await.map_err(|e| {
            Error::kube(
                format!("reading ConfigMap {namespace}/{name} (the Mesos framework ID)"),
                e,
            )
        })?;
        let current = existing
            .as_ref()
            .and_then(|c| c.data.as_ref())
            .and_then(|d| d.get(KEY))
            .filter(|id| !id.is_empty())
            .cloned();
        if let Some(id) = &current {
            info!(framework_id = %id, "framework ID from ConfigMap {namespace}/{name}");
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(api, name.to_string(), rx));
        Ok(Arc::new(Self {
            current: Mutex::new(current),
            writes: tx,
        }))
    }
}

impl FrameworkIdStore for ConfigMapStore {
    fn load(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn save(&self, id: Option<&str>) -> Result<()> {
        let id = id.map(str::to_string);
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if *cur == id {
            return Ok(());
        }
        *cur = id.clone();
        self.writes
            .send(id)
            .map_err(|_| Error::new(Kind::Kube, "the framework ID writer stopped"))
    }
}

async fn write_loop(
    api: Api<ConfigMap>,
    name: String,
    mut rx: mpsc::UnboundedReceiver<Option<String>>,
) {
    while let Some(mut id) = rx.recv().await {
        // only the latest value matters
        while let Ok(newer) = rx.try_recv() {
            id = newer;
        }
        let mut backoff = crate::backoff::Backoff::new(
            std::time::Duration::from_millis(200),
            std::time::Duration::from_secs(10),
        );
        loop {
            match write(&api, &name, id.as_deref()).await {
                Ok(()) => break,
                Err(e) => {
                    warn!(configmap = %name, "cannot save the framework ID, retrying: {e}");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

async fn write(api: &Api<ConfigMap>, name: &str, id: Option<&str>) -> kube::Result<()> {
    let data = BTreeMap::from([(KEY.to_string(), id.unwrap_or_default().to_string())]);
    match api.get_opt(name).await? {
        Some(mut cm) => {
            cm.data = Some(data);
            api.replace(name, &PostParams::default(), &cm).await?;
        }
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await?;
        }
    }
    Ok(())
}
