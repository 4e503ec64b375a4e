//! Framing of the native protocol: `u32` little-endian length, then that many
//! bytes of one flatbuffer. Sans-I/O: works on a buffer the caller fills.
//!
//! Must never: read a socket, or hand out a frame longer than the limit.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max_frame_bytes} bytes")]
    TooLarge { len: usize, max_frame_bytes: usize },
    #[error("empty frame")]
    Empty,
}

/// Takes one whole frame off the front of `buf`, if one is there.
/// `Ok(None)`: need more bytes. An error means framing is lost: the caller
/// answers once and closes the connection.
pub fn next_frame(buf: &mut BytesMut, max_frame_bytes: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < LEN_BYTES {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            max_frame_bytes,
        });
    }
    if buf.len() < LEN_BYTES + len {
        // Nothing reserved from the prefix: the reader grows the buffer
        // with the bytes that arrive (`conn::FrameReader`).
        return Ok(None);
    }
    buf.advance(LEN_BYTES);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The whole size (prefix included) of the frame at the front of `buf`,
/// once its prefix is in; `None` before, and for an empty frame (which
/// `next_frame` refuses).
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; LEN_BYTES] = buf.get(..LEN_BYTES)?.try_into().ok()?;
    match u32::from_le_bytes(prefix) as usize {
        0 => None,
        len => Some(LEN_BYTES + len),
    }
}

/// Writes the length prefix for a frame body of `len` bytes.
pub fn prefix(len: usize) -> [u8; LEN_BYTES] {
    assert!(len <= u32::MAX as usize, "frame larger than u32");
    (len as u32).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_any_byte_boundary() {
        let mut wire = Vec::new();
        for body in [&b"abc"[..], b"", b"0123456789"] {
            if body.is_empty() {
                continue;
            }
            wire.extend_from_slice(&prefix(body.len()));
            wire.extend_from_slice(body);
        }
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = next_frame(&mut buf, 100).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = next_frame(&mut buf, 100).unwrap() {
                got.push(f);
            }
            assert_eq!(
                got,
                vec![
                    Bytes::from_static(b"abc"),
                    Bytes::from_static(b"0123456789")
                ]
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn oversized_and_empty_frames_are_errors() {
        let mut buf = BytesMut::from(&prefix(101)[..]);
        assert_eq!(
            next_frame(&mut buf, 100),
            Err(FrameError::TooLarge {
                len: 101,
                max_frame_bytes: 100
            })
        );
        let mut buf = BytesMut::from(&prefix(0)[..]);
        assert_eq!(next_frame(&mut buf, 100), Err(FrameError::Empty));
    }

    proptest::proptest! {
        /// Any byte stream, in any chunks: frames come out whole and within
        /// the limit, or an error stops the stream; never a panic, never a
        /// frame longer than the limit.
        #[test]
        fn fuzz_frame_stream(
            chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..20),
            max in 1usize..600,
        ) {
            let mut buf = BytesMut::new();
            'feed: for c in chunks {
                buf.extend_from_slice(&c);
                loop {
                    match next_frame(&mut buf, max) {
                        Ok(Some(f)) => proptest::prop_assert!(!f.is_empty() && f.len() <= max),
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }
    }
}
