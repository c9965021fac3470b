//! `slipway logs NAME`: a build's kept log, from a watch folder's `.slipway/logs` or
//! from the controller's `/logs` endpoint.

use std::path::{Path, PathBuf};

use crate::logs::{Follow, LogError, LogQuery, find, follow};
use crate::sources::folder::STATE_DIR;

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
    /// Read from the Kubernetes controller instead of a folder.
    #[arg(long, requires = "server")]
    pub kube: bool,
    /// The controller's address (`kubectl port-forward` to its metrics port, or its
    /// Service), e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub server: Option<String>,
    /// Bearer token the controller checks with Kubernetes (default: the kubeconfig's).
    #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Where `slipway watch DIR` keeps its builds' logs.
pub fn folder_log_root(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("logs")
}

/// Prints the log to stdout.
pub async fn logs(args: &LogsArgs) -> Result<Follow, LogError> {
    if let Some(server) = &args.server {
        return remote(args, server).await;
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

/// The log from the controller's endpoint, streamed to stdout as it comes.
async fn remote(args: &LogsArgs, server: &str) -> Result<Follow, LogError> {
    use std::io::Write;

    let token = match &args.token {
        Some(t) => t.clone(),
        None => kubeconfig_token().await?,
    };
    let url = format!(
        "{}/logs/{}/{}",
        server.trim_end_matches('/'),
        args.namespace,
        args.name
    );
    let mut query = vec![("follow", args.follow.to_string())];
    if let Some(b) = args.build {
        query.push(("build", b.to_string()));
    }
    let unreachable = |e: reqwest::Error| LogError::Unreadable(format!("{url}: {e}"));
    let mut resp = reqwest::Client::new()
        .get(&url)
        .query(&query)
        .bearer_auth(token)
        .send()
        .await
        .map_err(unreachable)?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(
            match serde_json::from_str::<crate::logs::serve::Refusal>(&text) {
                Ok(r) => LogError::Refused(r.code, r.message),
                Err(_) => LogError::Unreadable(format!("{url}: {status}: {text}")),
            },
        );
    }
    let mut out = std::io::stdout();
    let mut ended = false;
    while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
        ended |= String::from_utf8_lossy(&chunk).contains(crate::logs::END_MARK);
        out.write_all(&chunk)
            .and_then(|_| out.flush())
            .map_err(|e| LogError::Unreadable(e.to_string()))?;
    }
    Ok(if ended { Follow::Ended } else { Follow::Open })
}

/// The bearer token of the kubeconfig's current user.
async fn kubeconfig_token() -> Result<String, LogError> {
    use secrecy::ExposeSecret;

    let no_token = || {
        LogError::Forbidden(
            "no bearer token: pass --token (kubectl create token NAME), or use a kubeconfig with a token".into(),
        )
    };
    let config = kube::Config::infer()
        .await
        .map_err(|e| LogError::Unreadable(format!("kubeconfig: {e}")))?;
    config
        .auth_info
        .token
        .map(|t| t.expose_secret().to_string())
        .ok_or_else(no_token)
}
