//! `slipway logs NAME`: a build's kept log, from a watch folder's `.slipway/logs`.

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
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// Where `slipway watch DIR` keeps its builds' logs.
pub fn folder_log_root(dir: &Path) -> PathBuf {
    dir.join(STATE_DIR).join("logs")
}

/// Prints the log to stdout.
pub async fn logs(args: &LogsArgs) -> Result<Follow, LogError> {
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
