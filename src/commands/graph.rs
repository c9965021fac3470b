//! `slipway graph`: the image family as DOT or SVG.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// `slipway graph`: which family to draw, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct GraphArgs {
    /// The watch folder to read (default: the current directory).
    #[arg(conflicts_with = "kube")]
    pub dir: Option<PathBuf>,
    /// Read the cluster instead (KUBECONFIG, ~/.kube/config or in-cluster).
    #[arg(long)]
    pub kube: bool,
    /// With --kube: this namespace only (all namespaces when unset).
    #[arg(short = 'n', long, requires = "kube")]
    pub namespace: Option<String>,
    /// Write SVG to FILE instead of printing DOT.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// The image graph as DOT (returned, for stdout) or written as SVG to `--svg`.
pub async fn graph(args: &GraphArgs) -> Result<Option<String>> {
    let members = if args.kube {
        crate::graph::load::from_kube(args.namespace.as_deref()).await?
    } else {
        crate::graph::load::from_folder(args.dir.as_deref().unwrap_or(Path::new(".")))?
    };
    let g = crate::graph::build(&members);
    let Some(file) = &args.svg else {
        return Ok(Some(crate::graph::dot::to_dot(&g)));
    };
    std::fs::write(file, crate::graph::svg::to_svg(&g)).map_err(|e| Error::Source {
        path: file.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(None)
}
