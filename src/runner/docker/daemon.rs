//! Our own HTTP connections to the Docker daemon, for what bollard cannot do: a
//! build session (`POST /session`, upgraded to HTTP/2 on which the daemon's BuildKit
//! calls our [`session`] services) and a build that takes its context from that
//! session (`POST /build?remote=client-session`), the way `docker build` does it.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use crate::registry::error_chain;
use crate::runner::session::{self, Provided};
use crate::{Error, Result};

/// Room for the session's bytes between the daemon's socket and the gRPC server.
const SESSION_BUFFER: usize = 1 << 20;

/// Where the daemon listens, when it is a socket we can speak plain HTTP on.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Addr {
    Unix(PathBuf),
    Tcp(String),
}

impl Addr {
    /// `docker_host`, else `DOCKER_HOST`, else the local socket, as bollard picks
    /// them; None for a daemon behind TLS (`tls`, or DOCKER_TLS_VERIFY) or SSH (those
    /// builds send a tar instead).
    pub(crate) fn resolve(docker_host: Option<&str>, tls: bool) -> Option<Self> {
        let env = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        let host = docker_host
            .map(str::to_string)
            .or_else(|| env("DOCKER_HOST"))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        Self::parse(&host, tls || env("DOCKER_TLS_VERIFY").is_some())
    }

    fn parse(host: &str, tls: bool) -> Option<Self> {
        if let Some(path) = host.strip_prefix("unix://") {
            return Some(Addr::Unix(path.into()));
        }
        let tcp = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
            .filter(|_| !tls)?;
        Some(Addr::Tcp(tcp.trim_end_matches('/').to_string()))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn unreachable(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::docker(format!("cannot reach the daemon: {}", error_chain(&e)), e)
}

/// One HTTP/1.1 connection, driven by a task of `tasks`: aborting them closes it.
async fn connect(addr: &Addr, tasks: &mut JoinSet<()>) -> Result<SendRequest<Empty<Bytes>>> {
    let io: Box<dyn Io> = match addr {
        Addr::Unix(p) => Box::new(
            tokio::net::UnixStream::connect(p)
                .await
                .map_err(unreachable)?,
        ),
        Addr::Tcp(a) => Box::new(
            tokio::net::TcpStream::connect(a)
                .await
                .map_err(unreachable)?,
        ),
    };
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(unreachable)?;
    tasks.spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(send)
}

/// A request on the daemon's API `version` (`v1.41`).
fn request(version: &str, path_and_query: &str) -> hyper::http::request::Builder {
    Request::post(format!("/{version}{path_and_query}")).header(HOST, "docker")
}

/// The daemon's answer to a request it refused: its `message`, or the body.
async fn refused(what: &str, resp: Response<hyper::body::Incoming>) -> Error {
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    Error::Docker(format!("{what}: the daemon answered {status}: {message}").into())
}

/// A session open on the daemon; dropping it closes the connection, and the daemon
/// forgets the session.
pub(super) struct Session {
    _tasks: JoinSet<()>,
}

/// Opens the session `id` on the daemon and serves `provided` on it until dropped.
pub(super) async fn open_session(
    addr: &Addr,
    version: &str,
    id: &str,
    provided: Provided,
) -> Result<Session> {
    let mut tasks = JoinSet::new();
    let mut send = connect(addr, &mut tasks).await?;
    let mut req = request(version, "/session")
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "h2c")
        .header("X-Docker-Expose-Session-Uuid", id)
        .header("X-Docker-Expose-Session-Name", session::NAME)
        .header("X-Docker-Expose-Session-Sharedkey", &provided.shared_key);
    for m in session::methods() {
        req = req.header("X-Docker-Expose-Session-Grpc-Method", m);
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| Error::docker(format!("bad session request: {e}"), e))?;
    let resp = send.send_request(req).await.map_err(unreachable)?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refused("opening a build session", resp).await);
    }
    let upgraded = hyper::upgrade::on(resp).await.map_err(unreachable)?;
    let (served, mut pump) = tokio::io::duplex(SESSION_BUFFER);
    tasks.spawn(async move {
        let mut upgraded = TokioIo::new(upgraded);
        let _ = tokio::io::copy_bidirectional(&mut upgraded, &mut pump).await;
    });
    tasks.spawn(session::serve(provided, served));
    Ok(Session { _tasks: tasks })
}

/// `POST /build?{query}` with an empty body: the daemon's BuildKit reads the context
/// from the session the query names. The answer's body is the build's JSON messages;
/// the connection lives as long as `tasks`, so dropping them cancels the build.
pub(super) async fn start_build(
    addr: &Addr,
    version: &str,
    query: &str,
    tasks: &mut JoinSet<()>,
) -> Result<hyper::body::Incoming> {
    let mut send = connect(addr, tasks).await?;
    let req = request(version, &format!("/build?{query}"))
        .body(Empty::new())
        .map_err(|e| Error::docker(format!("bad build request: {e}"), e))?;
    let resp = send.send_request(req).await.map_err(unreachable)?;
    if !resp.status().is_success() {
        return Err(refused("starting the build", resp).await);
    }
    Ok(resp.into_body())
}

/// Splits a stream of JSON messages into values of `T`, one per line.
pub(super) struct JsonLines {
    buf: Vec<u8>,
}

impl JsonLines {
    pub(super) fn new() -> Self {
        Self { buf: Vec::new() }
    }

    /// The whole messages `chunk` completes.
    pub(super) fn push<T: serde::de::DeserializeOwned>(
        &mut self,
        chunk: &[u8],
    ) -> Vec<serde_json::Result<T>> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            out.push(serde_json::from_slice(&line));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_we_can_speak_plain_http_to() {
        assert_eq!(
            Addr::parse("unix:///run/docker.sock", false),
            Some(Addr::Unix("/run/docker.sock".into()))
        );
        assert_eq!(
            Addr::parse("tcp://10.0.0.1:2375", false),
            Some(Addr::Tcp("10.0.0.1:2375".into()))
        );
        assert_eq!(Addr::parse("tcp://10.0.0.1:2376", true), None);
        assert_eq!(Addr::parse("ssh://me@host", false), None);
    }

    #[test]
    fn json_messages_split_across_chunks() {
        let mut lines = JsonLines::new();
        assert!(lines.push::<serde_json::Value>(b"{\"a\":").is_empty());
        let got = lines.push::<serde_json::Value>(b"1}\r\n\r\n{\"b\":2}\n{");
        let got: Vec<_> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got,
            [serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]
        );
    }
}
