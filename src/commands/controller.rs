//! `slipway controller`: the DockerBuild controller for a Kubernetes cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use super::backend::NoStore;
use super::{BackendArgs, BackendKind, backend, parse_duration, shutdown_signal};
use crate::health;
use crate::mesos::scheduler::FrameworkIdStore;
use crate::reconciler::{self as controller, Settings};
use crate::sources::kube::{ConfigMapStore, KubeSource, Lease, LeaseConfig};
use crate::{Error, Result};

/// Where the controller runs and how replicas share the work.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Watch DockerBuilds in this namespace only (all namespaces when unset).
    #[arg(long, env = "SLIPWAY_NAMESPACE")]
    pub namespace: Option<String>,
    /// The controller's own namespace, for its Lease and the Mesos framework ID
    /// ConfigMap (default: --namespace, else the kubeconfig's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// This replica's name in the Lease and in Events (default: host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Run only while holding the Lease, so replicas never build the same thing twice.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the coordination.k8s.io Lease.
    #[arg(long, default_value = "slipway-controller")]
    pub lease_name: String,
    /// A leader that has not renewed for this long is replaced.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// ConfigMap that keeps the Mesos framework ID (with --backend mesos).
    #[arg(long, default_value = "slipway-mesos-framework")]
    pub framework_id_configmap: String,
    /// Address of /healthz, /readyz, /metrics and /logs/{namespace}/{name}.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// Where every build's log is kept (default: slipway-logs in the temp directory;
    /// the chart mounts a volume).
    #[arg(long, env = "SLIPWAY_LOG_DIR")]
    pub log_dir: Option<std::path::PathBuf>,
}

impl ControllerArgs {
    pub fn log_dir(&self) -> std::path::PathBuf {
        self.log_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("slipway-logs"))
    }
}

/// Runs until stopped, or until this replica loses the Lease (an error: the pod
/// restarts and stands by).
pub async fn run(
    args: &ControllerArgs,
    backend_args: &BackendArgs,
    mut settings: Settings,
) -> Result<()> {
    settings.triggers.tls = crate::tls::Tls::load(&backend_args.tls)?;
    let client = crate::sources::kube::default_client().await?;
    let own_namespace = args
        .pod_namespace
        .clone()
        .or_else(|| args.namespace.clone())
        .unwrap_or_else(|| client.default_namespace().to_string());
    let identity = args.identity.clone().unwrap_or_else(default_identity);

    let listener = tokio::net::TcpListener::bind(args.metrics_listen).await?;
    info!(
        "serving /healthz, /readyz and /metrics on {}",
        listener.local_addr()?
    );
    let logs = crate::logs::serve::LogApi {
        client: client.clone(),
        store: settings.queue.logs.clone().ok_or_else(|| {
            Error::InvalidSpec("the controller needs a build log directory".into())
        })?,
    };
    tokio::spawn(health::serve(
        listener,
        settings.queue.metrics.clone(),
        crate::logs::serve::router(Arc::new(logs)),
    ));

    let lease = args.leader_elect.then(|| {
        Lease::new(
            client.clone(),
            LeaseConfig {
                namespace: own_namespace.clone(),
                name: args.lease_name.clone(),
                identity: identity.clone(),
                duration: args.lease_duration,
            },
        )
    });
    if let Some(l) = &lease {
        tokio::select! {
            r = l.acquire() => r?,
            _ = shutdown_signal() => return Ok(()),
        }
    }
    // a standby is ready (it serves); the leader once its view is complete
    health::readiness().not_ready("watch", "listing DockerBuilds");

    let store: Arc<dyn FrameworkIdStore> = if backend_args.backend == BackendKind::Mesos {
        ConfigMapStore::open(client.clone(), &own_namespace, &args.framework_id_configmap).await?
    } else {
        Arc::new(NoStore)
    };
    let backend = backend(backend_args, store, &settings.queue.metrics).await?;
    let source = Arc::new(KubeSource::new(client, args.namespace.clone(), identity));
    info!(
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        backend = backend.name(),
        "controller started"
    );
    let lost = async {
        match &lease {
            Some(l) => l.hold().await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = controller::run(source, backend, settings) => r.map(|_| ()),
        e = lost => Err(e),
        _ = shutdown_signal() => {
            info!("stopping; builds under way continue on Mesos or restart under the next leader");
            Ok(())
        }
    };
    if let (Some(l), Ok(())) = (&lease, &result) {
        l.release().await;
    }
    result
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "slipway".into());
    format!("{host}-{}", std::process::id())
}
