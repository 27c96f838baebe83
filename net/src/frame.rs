//! Frames: how bytes on a connection become messages, and back.
//!
//! A frame is a 16-byte header (`limits::HEADER_LEN`: magic `DG`, kind,
//! flags, payload length, request id) and a payload of at most the
//! decoder's limit. The decoder is sans-IO: a connection feeds it what it
//! read, in any chunks, and takes whole frames out. It owns the one rule
//! that bounds a connection's memory: a header that announces more than
//! the limit is an error before a byte of its payload is buffered, so a
//! decoder never holds more than one header, one frame and what the last
//! read added. Bad input is an error value naming what was wrong, never a
//! panic; after one, the connection is closed (the stream cannot be
//! resynchronized).

use rkyv::util::AlignedVec;

use crate::error::FrameError;
pub use crate::kind::Kind;
use crate::limits::{HEADER_LEN, MAGIC, MAX_FRAME_BYTES};

/// One whole frame, its payload copied to rkyv's alignment.
#[derive(Debug)]
pub struct Frame {
    /// What it carries.
    pub kind: Kind,
    /// The request it belongs to (0 for a handshake).
    pub request: u64,
    /// The payload (an rkyv archive, validated when it is decoded).
    pub payload: AlignedVec<16>,
}

/// Append a frame of `kind` for `request` with `payload` to `out`.
/// Fails, writing nothing, if the payload is over `max` bytes.
pub fn encode(
    kind: Kind,
    request: u64,
    payload: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    if payload.len() > max.min(MAX_FRAME_BYTES) {
        return Err(FrameError::Oversized {
            len: payload.len() as u64,
            max,
        });
    }
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(kind as u8);
    out.push(0);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&request.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// A parsed header.
struct Header {
    kind: Kind,
    len: usize,
    request: u64,
}

fn parse_header(h: &[u8; HEADER_LEN], max: usize) -> Result<Header, FrameError> {
    if h[0..2] != MAGIC {
        return Err(FrameError::BadMagic {
            found: [h[0], h[1]],
        });
    }
    let kind = Kind::from_byte(h[2]).ok_or(FrameError::UnknownKind { kind: h[2] })?;
    if h[3] != 0 {
        return Err(FrameError::BadFlags { flags: h[3] });
    }
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > max {
        return Err(FrameError::Oversized {
            len: len as u64,
            max,
        });
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[8..16]);
    Ok(Header {
        kind,
        len,
        request: u64::from_le_bytes(id),
    })
}

/// Whole frames out of a byte stream fed in any chunks.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Where the first byte not yet taken is.
    start: usize,
    max: usize,
    /// Set once a frame was refused: the stream is not trusted after it.
    failed: bool,
}

impl Decoder {
    /// A decoder that accepts payloads of at most `max_frame` bytes
    /// (at most `limits::MAX_FRAME_BYTES`).
    pub fn new(max_frame: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            start: 0,
            max: max_frame.min(MAX_FRAME_BYTES),
            failed: false,
        }
    }

    /// The largest payload it accepts.
    pub fn max_frame(&self) -> usize {
        self.max
    }

    /// Bytes fed and not yet taken as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Bytes read from the connection, in order. After a bad frame they
    /// are dropped: the stream is not read any further.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        // Drop what was taken before the buffer grows: what is buffered is
        // at most a header and a frame, plus this feed.
        if self.start > 0
            && (self.start >= self.buf.len() / 2
                || self.buf.len() + bytes.len() > self.buf.capacity())
        {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` if more bytes are needed, or why the
    /// stream is bad (then every later call says so again).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.failed {
            return Err(FrameError::AfterError);
        }
        let rest = &self.buf[self.start..];
        let Some(h) = rest.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = parse_header(h, self.max).inspect_err(|_| self.failed = true)?;
        let Some(body) = rest.get(HEADER_LEN..HEADER_LEN + header.len) else {
            return Ok(None);
        };
        let mut payload = AlignedVec::<16>::with_capacity(header.len);
        payload.extend_from_slice(body);
        self.start += HEADER_LEN + header.len;
        Ok(Some(Frame {
            kind: header.kind,
            request: header.request,
            payload,
        }))
    }

    /// The connection ended: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.buffered() {
            0 => Ok(()),
            have => Err(FrameError::Truncated { have }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: Kind, request: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(kind, request, payload, 1 << 20, &mut out).expect("under the limit");
        out
    }

    #[test]
    fn frames_come_out_whole_whatever_the_chunks() {
        let mut bytes = frame(Kind::Request, 7, b"hello");
        bytes.extend(frame(Kind::Response, 8, b""));
        bytes.extend(frame(Kind::Output, u64::MAX, &[9; 300]));
        for chunk in [1, 2, 15, 16, 17, 1000] {
            let mut d = Decoder::new(1024);
            let mut got = Vec::new();
            for c in bytes.chunks(chunk) {
                d.feed(c);
                while let Some(f) = d.next_frame().expect("valid") {
                    got.push((f.kind, f.request, f.payload.to_vec()));
                }
            }
            d.finish().expect("ended between frames");
            assert_eq!(
                got,
                vec![
                    (Kind::Request, 7, b"hello".to_vec()),
                    (Kind::Response, 8, vec![]),
                    (Kind::Output, u64::MAX, vec![9; 300]),
                ],
                "chunks of {chunk}"
            );
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header_alone() {
        let bytes = frame(Kind::Request, 1, &[0; 2000]);
        let mut d = Decoder::new(1000);
        d.feed(&bytes[..HEADER_LEN]);
        assert_eq!(
            d.next_frame().unwrap_err(),
            FrameError::Oversized {
                len: 2000,
                max: 1000
            }
        );
        assert_eq!(d.next_frame().unwrap_err(), FrameError::AfterError);
        d.feed(&bytes[HEADER_LEN..]);
        assert_eq!(d.buffered(), HEADER_LEN, "nothing buffered after the error");
        let mut out = Vec::new();
        let err = encode(Kind::Request, 1, &[0; 2000], 1000, &mut out).unwrap_err();
        assert!(matches!(err, FrameError::Oversized { .. }));
        assert!(out.is_empty(), "nothing written for a refused frame");
    }

    #[test]
    fn garbage_kinds_flags_and_truncation_are_named() {
        let mut d = Decoder::new(100);
        d.feed(b"GET / HTTP/1.1\r\nHost: x\r\n");
        assert_eq!(
            d.next_frame().unwrap_err(),
            FrameError::BadMagic { found: *b"GE" }
        );

        let mut bad_kind = frame(Kind::Request, 1, b"x");
        bad_kind[2] = 42;
        let mut d = Decoder::new(100);
        d.feed(&bad_kind);
        assert_eq!(
            d.next_frame().unwrap_err(),
            FrameError::UnknownKind { kind: 42 }
        );

        let mut bad_flags = frame(Kind::Request, 1, b"x");
        bad_flags[3] = 1;
        let mut d = Decoder::new(100);
        d.feed(&bad_flags);
        assert_eq!(
            d.next_frame().unwrap_err(),
            FrameError::BadFlags { flags: 1 }
        );

        let whole = frame(Kind::Request, 1, b"abcdef");
        let mut d = Decoder::new(100);
        d.feed(&whole[..whole.len() - 2]);
        assert!(d.next_frame().expect("incomplete, not bad").is_none());
        assert_eq!(
            d.finish().unwrap_err(),
            FrameError::Truncated {
                have: whole.len() - 2
            }
        );
    }

    #[test]
    fn the_buffer_holds_at_most_a_frame_and_the_last_feed() {
        let one = frame(Kind::Request, 1, &[5; 100]);
        let mut d = Decoder::new(100);
        for _ in 0..10_000 {
            d.feed(&one);
            assert!(d.next_frame().expect("valid").is_some());
        }
        assert!(
            d.buf.capacity() <= 4 * one.len(),
            "{} bytes kept",
            d.buf.capacity()
        );
    }
}
