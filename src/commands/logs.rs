//! `slipway logs NAME`: a build's kept log, from a watch folder's `.slipway/logs` or
//! from the controller's `/logs` endpoint.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::logs::{Follow, LogError, LogQuery, find, follow};
use crate::sources::folder::STATE_DIR;

mod remote;

/// `slipway logs`' arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The DockerBuild's name.
    pub name: String,
    /// Its namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Which build (`status.history[].number`; default: the latest).
    #[arg(long)]
    pub build: Option<u64>,
    /// Keep printing a running build's lines until it ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The watch folder.
    #[arg(long, default_value = ".", conflicts_with = "kube")]
    pub dir: PathBuf,
    /// Read from the Kubernetes controller instead of a folder: through the API
    /// server's proxy to the controller's Service (the kubeconfig's credentials), or
    /// at `--server`.
    #[arg(long)]
    pub kube: bool,
    /// The controller's address (`kubectl port-forward` to its metrics port), e.g.
    /// http://127.0.0.1:8080; default: through the API server's service proxy.
    #[arg(long)]
    pub server: Option<String>,
    /// Namespace of the controller's Service (the chart's release namespace).
    #[arg(long, default_value = "slipway-system", requires = "kube")]
    pub controller_namespace: String,
    /// Name of the controller's Service (the chart's full name, `<release>-slipway`,
    /// just `slipway` for the release `slipway`).
    #[arg(long, default_value = "slipway", requires = "kube")]
    pub controller_service: String,
    /// The Service's port, by name or number (the chart names it `metrics`).
    #[arg(long, default_value = "metrics", requires = "kube")]
    pub controller_port: String,
    /// Bearer token the controller checks with Kubernetes (default: the kubeconfig's).
    #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,
}

/// Where `slipway watch DIR` keeps its builds' logs.
pub fn folder_log_root(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("logs")
}

/// Prints the log to stdout.
pub async fn logs(args: &LogsArgs) -> Result<Follow, LogError> {
    if args.kube || args.server.is_some() {
        return remote::remote(args).await;
    }
    let q = LogQuery {
        namespace: args.namespace.clone(),
        name: args.name.clone(),
        build: args.build,
    };
    let members = crate::graph::load::from_folder(&args.dir)
        .map_err(|e| LogError::Unreadable(e.to_string()))?;
    let latest = members
        .into_iter()
        .find(|m| m.key == q.key())
        .map(|m| m.status.and_then(|s| s.build_number));
    let dir = folder_log_root(&args.dir).join(&q.namespace).join(&q.name);
    let path = find(&dir, &q, latest)?;
    let mut out = std::io::stdout();
    follow(&path, &mut out, args.follow)
        .await
        .map_err(|e| LogError::Unreadable(format!("{}: {e}", path.display())))
}
