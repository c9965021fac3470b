//! Mesos RecordIO framing.

use crate::mesos::recordio::{Decoder, encode};

/// Decoded records, and whether decoding stopped on an error.
type Outcome = (Vec<Vec<u8>>, bool);

fn decode<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    for chunk in chunks {
        d.push(chunk);
        loop {
            match d.next_record() {
                Ok(Some(r)) => out.push(r.to_vec()),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

/// Any bytes decode to the same records (or error) however the network cuts them,
/// and records cut from the input, framed, decode back to themselves.
pub fn check_recordio(data: &[u8]) {
    let step = data.first().map_or(1, |b| usize::from(*b % 7) + 1);
    let whole = decode([data]);
    let chunked = decode(data.chunks(step));
    assert_eq!(
        whole, chunked,
        "the outcome depends on how the bytes arrive"
    );

    let records: Vec<Vec<u8>> = data.split(|&b| b == b'|').map(<[u8]>::to_vec).collect();
    let wire: Vec<u8> = records.iter().flat_map(|r| encode(r)).collect();
    assert_eq!(decode(wire.chunks(step)), (records, false), "round trip");
}
