//! `--staging serve`: the packed context of `path` sources is served to remote
//! executors from slipway's own process, as portainer's staging did: stored in a
//! temporary file and served at an unguessable URL until the build ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::{info, warn};

use crate::{Error, Result};

type Table = Arc<Mutex<HashMap<String, PathBuf>>>;

/// The context server.
#[derive(Clone)]
pub struct Server {
    base_url: String,
    dir: Arc<tempfile::TempDir>,
    served: Table,
}

/// A staged context; removed from the server and the disk when dropped.
pub struct Served {
    pub url: String,
    token: String,
    served: Table,
}

impl Drop for Served {
    fn drop(&mut self) {
        let path = self
            .served
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&self.token));
        if let Some(p) = path {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Server {
    /// Listens on `listen`; executors reach it at `advertise` (default: the bound address).
    pub async fn start(listen: SocketAddr, advertise: Option<&str>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::Mesos(format!("context server cannot listen on {listen}: {e}")))?;
        let bound = listener.local_addr()?;
        let base_url = advertise
            .map(|a| a.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{bound}"));
        let served: Table = Arc::default();
        let app = Router::new()
            .route("/contexts/{token}", get(serve))
            .with_state(served.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                warn!("context server stopped: {e}");
            }
        });
        info!(%base_url, "serving path-source contexts to executors");
        Ok(Self {
            base_url,
            dir: Arc::new(tempfile::tempdir()?),
            served,
        })
    }

    /// Checks and packs `dir` (with `dockerfile` inside it) as a tar and serves it.
    pub async fn stage(&self, dir: &Path, dockerfile: &str) -> Result<Served> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let path = self.dir.path().join(format!("{token}.tar"));
        if let Err(e) = super::pack(dir, dockerfile, &path).await {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        self.served
            .lock()
            .map_err(|_| Error::Context("context server state poisoned".into()))?
            .insert(token.clone(), path);
        Ok(Served {
            url: format!("{}/contexts/{token}", self.base_url),
            token,
            served: self.served.clone(),
        })
    }
}

async fn serve(State(served): State<Table>, UrlPath(token): UrlPath<String>) -> Response {
    let path = served.lock().ok().and_then(|m| m.get(&token).cloned());
    let Some(path) = path else {
        return (StatusCode::NOT_FOUND, "no such context (the build ended?)").into_response();
    };
    match tokio::fs::File::open(&path).await {
        Ok(f) => (
            [(header::CONTENT_TYPE, "application/x-tar")],
            Body::from_stream(tokio_util::io::ReaderStream::new(f)),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_staged_context_is_served_until_dropped() {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\nCOPY a /a\n").unwrap();
        std::fs::write(ctx.path().join("a"), "hello").unwrap();
        let stager = Server::start("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let staged = stager.stage(ctx.path(), "Dockerfile").await.unwrap();
        let body = reqwest::get(&staged.url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let mut names: Vec<String> = tar::Archive::new(&body[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, vec!["Dockerfile", "a"]);
        let url = staged.url.clone();
        drop(staged);
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 404);
    }

    #[tokio::test]
    async fn an_escaping_symlink_never_leaves_this_machine() {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ctx.path().join("leak")).unwrap();
        let stager = Server::start("127.0.0.1:0".parse().unwrap(), None)
            .await
            .unwrap();
        let err = stager.stage(ctx.path(), "Dockerfile").await.err().unwrap();
        assert!(err.to_string().contains("leak"), "{err}");
    }
}
