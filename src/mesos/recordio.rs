//! RecordIO, the framing of Mesos's streaming HTTP responses: each record is its
//! length in ASCII decimal, a newline, then that many bytes of protobuf.

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// Records larger than this are refused: a corrupt length must not allocate gigabytes.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;
/// Longest length line (u64::MAX has 20 digits).
const MAX_LENGTH_LINE: usize = 20;

/// Frames one record.
pub fn encode(record: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(record.len() + 12);
    out.extend_from_slice(record.len().to_string().as_bytes());
    out.extend_from_slice(b"\n");
    out.extend_from_slice(record);
    out.freeze()
}

/// Incremental decoder: feed chunks as they arrive, take whole records out.
#[derive(Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next whole record, if one has arrived.
    pub fn next_record(&mut self) -> Result<Option<Bytes>, String> {
        // a longer line is refused whether or not its newline has arrived yet, so the
        // outcome never depends on how the network cut the bytes
        let nl = self
            .buf
            .iter()
            .take(MAX_LENGTH_LINE + 1)
            .position(|&b| b == b'\n');
        let Some(nl) = nl else {
            if self.buf.len() > MAX_LENGTH_LINE {
                return Err("RecordIO: no length line in the first 20 bytes".into());
            }
            return Ok(None);
        };
        let len: usize = std::str::from_utf8(&self.buf[..nl])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                format!(
                    "RecordIO: bad length line {:?}",
                    String::from_utf8_lossy(&self.buf[..nl])
                )
            })?;
        if len > MAX_RECORD {
            return Err(format!("RecordIO: record of {len} bytes is too large"));
        }
        if self.buf.len() < nl + 1 + len {
            return Ok(None);
        }
        self.buf.advance(nl + 1);
        Ok(Some(self.buf.split_to(len).freeze()))
    }
}

/// Turns a stream of body chunks into a stream of records.
pub fn records<S, E>(body: S) -> impl Stream<Item = Result<Bytes, String>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    futures::stream::unfold(
        (body, Decoder::default(), false),
        |(mut body, mut dec, done)| async move {
            if done {
                return None;
            }
            loop {
                match dec.next_record() {
                    Ok(Some(r)) => return Some((Ok(r), (body, dec, false))),
                    Ok(None) => {}
                    Err(e) => return Some((Err(e), (body, dec, true))),
                }
                match body.next().await {
                    Some(Ok(chunk)) => dec.push(&chunk),
                    Some(Err(e)) => return Some((Err(e.to_string()), (body, dec, true))),
                    None => return None,
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_split_across_chunks_come_out_whole() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&encode(b"hello"));
        wire.extend_from_slice(&encode(b""));
        wire.extend_from_slice(&encode(&[7u8; 300]));
        // one byte at a time: the worst a network can do
        let chunks: Vec<Result<Bytes, String>> = wire
            .iter()
            .map(|b| Ok(Bytes::copy_from_slice(&[*b])))
            .collect();
        let out: Vec<_> = records(futures::stream::iter(chunks)).collect().await;
        let out: Vec<Bytes> = out.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(out.len(), 3);
        assert_eq!(&out[0][..], b"hello");
        assert!(out[1].is_empty());
        assert_eq!(out[2].len(), 300);
    }

    #[test]
    fn a_garbage_length_is_an_error_not_a_hang() {
        let mut d = Decoder::default();
        d.push(b"12x\nabc");
        assert!(d.next_record().unwrap_err().contains("bad length"));
        let mut d = Decoder::default();
        d.push(b"99999999999\n");
        assert!(d.next_record().unwrap_err().contains("too large"));
        let mut d = Decoder::default();
        d.push(&[b'1'; 25]);
        assert!(d.next_record().is_err());
        // refused alike whether its newline came in the same chunk or not
        let mut d = Decoder::default();
        d.push(b"000000000000000000000005\nhello");
        assert!(d.next_record().unwrap_err().contains("no length line"));
    }
}
