//! The session a build lends buildkitd ([`crate::runner::session`]), carried by
//! `Control.Session`: a bidirectional stream of `BytesMessage`s that tunnels one
//! HTTP/2 connection. The request's metadata names the session
//! (`x-docker-expose-session-uuid`) and each method it serves
//! (`x-docker-expose-session-grpc-method`).

use bollard_buildkit_proto::moby::buildkit::v1::BytesMessage;
use bollard_buildkit_proto::moby::buildkit::v1::control_client::ControlClient;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::runner::session::{self, Provided};

/// Room for the tunnel's bytes in each direction.
const TUNNEL_BUFFER: usize = 256 * 1024;
/// Largest tunnel message sent to buildkitd.
const TUNNEL_MESSAGE: usize = 128 * 1024;

/// A running session; dropping it closes the tunnel and stops serving.
pub(super) struct Session {
    _tasks: JoinSet<()>,
    /// Ends the stream of bytes to buildkitd, so the Session call ends there too.
    /// Aborting our tasks alone is not enough: the gRPC server runs the tunnel's
    /// connection on a task of its own, which would keep the call open for good.
    _close: tokio_util::sync::DropGuard,
}

/// Opens the session `id` on buildkitd and serves `provided` on it until dropped.
pub(super) async fn start(
    mut control: ControlClient<Channel>,
    id: &str,
    provided: Provided,
) -> Result<Session, Status> {
    // our end of the tunnel is `served`; `pump` carries its bytes to and from the stream
    let (served, pump) = tokio::io::duplex(TUNNEL_BUFFER);
    let (pump_read, mut pump_write) = tokio::io::split(pump);
    let close = tokio_util::sync::CancellationToken::new();
    // the context's file data goes this way: messages far larger than the reader's
    // default 4 KiB keep the per-message cost off a large transfer
    let outgoing = tokio_util::io::ReaderStream::with_capacity(pump_read, TUNNEL_MESSAGE)
        .take_until(close.clone().cancelled_owned())
        .take_while(|r| futures::future::ready(r.is_ok()))
        .filter_map(|r| futures::future::ready(r.ok()))
        .map(|b| BytesMessage { data: b.to_vec() });
    let mut req = Request::new(outgoing);
    let md = req.metadata_mut();
    let ascii = |s: &str| {
        s.parse::<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>()
            .map_err(|_| Status::invalid_argument(format!("bad session metadata {s}")))
    };
    md.insert("x-docker-expose-session-uuid", ascii(id)?);
    md.insert("x-docker-expose-session-name", ascii(session::NAME)?);
    md.insert(
        "x-docker-expose-session-sharedkey",
        ascii(&provided.shared_key)?,
    );
    for m in session::methods() {
        md.append("x-docker-expose-session-grpc-method", ascii(&m)?);
    }
    let mut incoming = control.session(req).await?.into_inner();

    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        while let Ok(Some(m)) = incoming.message().await {
            if pump_write.write_all(&m.data).await.is_err() {
                break;
            }
        }
        let _ = pump_write.shutdown().await;
    });
    tasks.spawn(session::serve(provided, served));
    Ok(Session {
        _tasks: tasks,
        _close: close.drop_guard(),
    })
}
