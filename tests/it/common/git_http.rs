//! A real git smart-HTTP server: `git http-backend` (Debian's git) run as a CGI
//! program per request behind a small axum server on 127.0.0.1, with HTTP basic
//! authentication. Only the test needs git; slipway talks HTTP to it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::git::git;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "s3cret-pw";

pub struct GitHttpServer {
    pub port: u16,
    base: PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    base: PathBuf,
}

impl GitHttpServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("repos");
        std::fs::create_dir(&base).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .fallback(cgi)
            .with_state(Shared { base: base.clone() });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            base,
            _dir: dir,
            task,
        }
    }

    /// `http://127.0.0.1:PORT/NAME.git` without credentials.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}.git", self.port)
    }

    /// The same with `user:password@`.
    pub fn url_with(&self, name: &str, password: &str) -> String {
        format!(
            "http://{USER}:{password}@127.0.0.1:{}/{name}.git",
            self.port
        )
    }

    /// A new, empty bare repository `NAME.git` the server serves.
    pub fn bare(&self, name: &str) -> PathBuf {
        let bare = self.base.join(format!("{name}.git"));
        git(
            &self.base,
            &["init", "-q", "--bare", bare.to_str().unwrap()],
        );
        bare
    }

    pub fn base(&self) -> &Path {
        &self.base
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn authorized(req: &Request) -> bool {
    let want = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Basic {want}"))
}

async fn cgi(State(s): State<Shared>, req: Request) -> Response {
    if !authorized(&req) {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")
            .body(Body::empty())
            .unwrap();
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("GIT_PROJECT_ROOT", &s.base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", parts.method.as_str())
        .env("PATH_INFO", parts.uri.path())
        .env("QUERY_STRING", parts.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", USER)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("git http-backend starts");
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut out)
        .await
        .unwrap();
    let _ = writer.await;
    let _ = child.wait().await;
    cgi_response(&out)
}

/// CGI output: header lines (`Status: 404 Not Found` among them), a blank line, body.
fn cgi_response(out: &[u8]) -> Response {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            out.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        })
        .unwrap_or((out.len(), out.len()));
    let head = String::from_utf8_lossy(&out[..split.0]);
    let mut resp = Response::builder().status(StatusCode::OK);
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("200");
            resp = resp.status(code.parse::<u16>().unwrap_or(500));
        } else if let Ok(v) = HeaderValue::from_str(value) {
            resp = resp.header(name.trim(), v);
        }
    }
    resp.body(Body::from(out[split.1..].to_vec())).unwrap()
}
