//! The sending side of fsutil's DiffCopy: every stat in order and an empty stat to
//! end the list; then each requested file (by its index in that list) as data packets
//! and an empty one; a FIN from the receiver is answered with FIN and ends the call.

use std::collections::HashMap;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;

use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use futures::{Stream, StreamExt};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tonic::Status;

use super::select::{self, go_mode};
use super::{Failure, LocalDir};
use crate::runner::context::ExactFile;

pub(crate) use bollard_buildkit_proto::fsutil::types::Packet;

pub(crate) type PacketStream = Pin<Box<dyn Stream<Item = Result<Packet, Status>> + Send>>;

/// Bytes per data packet, as fsutil's sender.
pub(super) const CHUNK: usize = 32 * 1024;
/// Files read at once, as fsutil's sender.
const READERS: usize = 4;
/// Packets queued for the connection: with [`CHUNK`], about 2 MiB.
const QUEUE: usize = 64;

/// Serves `chosen` (indexes into `dir`'s items, in send order) to the receiver
/// whose packets are `incoming`.
pub(super) fn serve<S>(
    dir: Arc<LocalDir>,
    chosen: Vec<usize>,
    incoming: S,
    failure: Failure,
) -> PacketStream
where
    S: Stream<Item = Result<Packet, Status>> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(dir, chosen, incoming, tx, failure));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

type Tx = mpsc::Sender<Result<Packet, Status>>;

fn packet(kind: PacketType) -> Packet {
    Packet {
        r#type: kind as i32,
        ..Default::default()
    }
}

async fn run<S>(dir: Arc<LocalDir>, chosen: Vec<usize>, mut incoming: S, tx: Tx, failure: Failure)
where
    S: Stream<Item = Result<Packet, Status>> + Send + Unpin + 'static,
{
    let stats: Vec<_> = chosen
        .iter()
        .map(|&i| select::stat(&dir.items[i]))
        .collect();
    // what may be requested, each once: regular files, by their index in the list
    let mut files: HashMap<u32, usize> = stats
        .iter()
        .zip(&chosen)
        .enumerate()
        .filter(|(_, (s, _))| s.mode & go_mode::TYPE == 0)
        .map(|(id, (_, &i))| (id as u32, i))
        .collect();
    let mut tasks = JoinSet::new();
    {
        let tx = tx.clone();
        // the list goes out while requests come in, as fsutil's walker does
        tasks.spawn(async move {
            for stat in stats {
                let p = Packet {
                    stat: Some(stat),
                    ..packet(PacketType::PacketStat)
                };
                if tx.send(Ok(p)).await.is_err() {
                    return Ok(());
                }
            }
            // no stat at all (not an empty one) ends the list
            let _ = tx.send(Ok(packet(PacketType::PacketStat))).await;
            Ok(())
        });
    }
    let readers = Arc::new(Semaphore::new(READERS));
    loop {
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                let failed = match done {
                    Ok(Ok(())) => continue,
                    Ok(Err(message)) => message,
                    Err(e) => format!("sending the build context failed: {e}"),
                };
                fail(&tx, failed).await;
                return;
            }
            msg = incoming.next() => {
                let p = match msg {
                    Some(Ok(p)) => p,
                    // the receiver hung up: nobody left to send to
                    Some(Err(_)) | None => return,
                };
                match PacketType::try_from(p.r#type) {
                    Ok(PacketType::PacketReq) => {
                        let Some(item) = files.remove(&p.id) else {
                            fail(&tx, format!("invalid file id {}", p.id)).await;
                            return;
                        };
                        let Ok(permit) = readers.clone().acquire_owned().await else {
                            return;
                        };
                        let (dir, tx, id) = (dir.clone(), tx.clone(), p.id);
                        let failure = failure.clone();
                        tasks.spawn(async move {
                            let sent = tokio::task::spawn_blocking(move || {
                                let _permit = permit;
                                send_file(&dir, item, id, &tx)
                            });
                            let sent = sent.await.map_err(|e| e.to_string())?;
                            sent.inspect_err(|m| failure.set(m))
                        });
                    }
                    Ok(PacketType::PacketFin) => {
                        let _ = tx.send(Ok(packet(PacketType::PacketFin))).await;
                        return;
                    }
                    Ok(PacketType::PacketErr) => {
                        tracing::debug!(
                            "file sync receiver failed: {}",
                            String::from_utf8_lossy(&p.data)
                        );
                        return;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Tells the receiver why, then ends the call with the same message.
async fn fail(tx: &Tx, message: String) {
    let p = Packet {
        data: message.clone().into_bytes(),
        ..packet(PacketType::PacketErr)
    };
    let _ = tx.send(Ok(p)).await;
    let _ = tx.send(Err(Status::data_loss(message))).await;
}

/// One file's data packets and the empty one that ends it. Reads exactly the size
/// its stat promised, failing with the file's name if it changed meanwhile.
fn send_file(dir: &LocalDir, item: usize, id: u32, tx: &Tx) -> Result<(), String> {
    let item = &dir.items[item];
    let send = |data: Vec<u8>| {
        super::SENT.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let p = Packet {
            id,
            data,
            ..packet(PacketType::PacketData)
        };
        // a closed channel: the call ended, nobody wants the rest
        tx.blocking_send(Ok(p)).is_ok()
    };
    if let Some(content) = &item.content {
        for chunk in content.chunks(CHUNK) {
            if !send(chunk.to_vec()) {
                return Ok(());
            }
        }
    } else {
        let mut file = ExactFile::open(&dir.root, &item.entry).map_err(|e| e.to_string())?;
        loop {
            let mut buf = vec![0; CHUNK];
            let n = file.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            if !send(buf) {
                return Ok(());
            }
        }
    }
    send(Vec::new());
    Ok(())
}
