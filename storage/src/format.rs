//! The on-disk layout of a segment file: encoding and checking, on byte
//! slices only (no I/O here; `writer` and `reader` do that).
//!
//! A segment is a fixed header followed by records, back to back. All
//! integers are little-endian; all checksums are CRC-32C (Castagnoli).
//!
//! ```text
//! segment header, 32 bytes, at offset 0
//!   0..8    magic             b"DIRIGOSG"
//!   8..10   format version    u16 (FORMAT_VERSION = 1)
//!   10..16  reserved          zero
//!   16..24  segment id        u64
//!   24..28  reserved          zero
//!   28..32  header checksum   u32, CRC-32C of bytes 0..28
//!
//! record at offset `o` (o is a multiple of RECORD_ALIGN = 16), o >= 32
//!   o+0..4    payload length  u32 `len`, at most MAX_RECORD_LEN
//!   o+4..8    payload checksum u32, CRC-32C of the padded payload (o+16 .. o+16+pad16(len))
//!   o+8..12   reserved        zero
//!   o+12..16  header checksum u32, CRC-32C of (segment id u64, o as u64, bytes o+0..o+12)
//!   o+16..    payload         `len` bytes: one rkyv-archived value, root at its end
//!   ..        padding         zero bytes up to the next multiple of 16
//! the next record starts right after the padding; the file ends after the
//! last record's padding.
//! ```
//!
//! Why this shape:
//! - **Alignment.** Payloads start at a multiple of 16 in the file, and a map
//!   starts on a page, so every payload is 16-aligned in memory: the most any
//!   rkyv archived type needs (rkyv's own `AlignedVec` uses 16). rkyv's
//!   relative pointers make a payload position-independent, so it can be
//!   copied from the serializer's buffer to any 16-aligned place.
//! - **Every byte is covered by a checksum.** The segment header by its own,
//!   a record header by its header checksum, the payload *and its padding* by
//!   the payload checksum. So any flipped byte is caught, at the structure
//!   that holds it.
//! - **The length is checked before it is trusted.** A record header has its
//!   own checksum, so a flipped length byte is reported as a damaged header
//!   and is never used to skip to a wrong place or misreported as a torn tail.
//! - **Records are bound to their place.** The header checksum covers the
//!   segment id and the record's offset: a zero-filled tail (a file extended
//!   by a crash before its data reached the disk), a record of another
//!   segment, or a stale record at a shifted offset does not pass.
//!
//! Invariants: records start at multiples of [`RECORD_ALIGN`]; a record's
//! framing (header + padded payload) is a multiple of [`RECORD_ALIGN`]; every
//! payload is at most [`MAX_RECORD_LEN`].

use std::ops::Range;
use std::path::Path;

pub use crate::error::Region;
use crate::error::StorageError;

/// The first 8 bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"DIRIGOSG";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Length of the segment header; the first record starts here.
pub const HEADER_LEN: usize = 32;
/// Length of a record header; the payload starts this far after the record.
pub const RECORD_HEADER_LEN: usize = 16;
/// Records and payloads start at multiples of this (rkyv's maximum alignment).
pub const RECORD_ALIGN: usize = 16;
/// Largest payload a record may hold. Large state is written as many records
/// (one per key or partition), never as one blob.
pub const MAX_RECORD_LEN: usize = 64 << 20;
/// Largest number a numbered segment's name may carry (a checkpoint's
/// epoch, a log segment's first seq): far above anything a log or a
/// checkpoint chain reaches, far below where `+ 1` overflows.
pub const MAX_SEGMENT_NUMBER: u64 = 1 << 62;

const _: () = assert!(HEADER_LEN % RECORD_ALIGN == 0);
const _: () = assert!(RECORD_HEADER_LEN % RECORD_ALIGN == 0);
const _: () = assert!(MAX_RECORD_LEN <= u32::MAX as usize);

/// Damage found by the checks below, without the file it was found in
/// (`reader` adds the path with [`Fault::at`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    Truncated { offset: u64, region: Region },
    Checksum { offset: u64, region: Region },
    BadMagic { found: Vec<u8> },
    UnsupportedVersion { found: u16 },
    Invalid { offset: u64, reason: String },
}

impl Fault {
    /// The error for this fault in the file at `path`, `file_len` bytes long.
    pub(crate) fn at(self, path: &Path, file_len: u64) -> StorageError {
        let path = path.to_path_buf();
        match self {
            Fault::Truncated { offset, region } => StorageError::Truncated {
                path,
                offset,
                region,
                file_len,
            },
            Fault::Checksum { offset, region } => StorageError::Checksum {
                path,
                offset,
                region,
            },
            Fault::BadMagic { found } => StorageError::BadMagic { path, found },
            Fault::UnsupportedVersion { found } => StorageError::UnsupportedVersion {
                path,
                found,
                expected: FORMAT_VERSION,
            },
            Fault::Invalid { offset, reason } => StorageError::Invalid {
                path,
                offset,
                reason,
            },
        }
    }
}

/// `len` rounded up to a multiple of [`RECORD_ALIGN`].
pub const fn padded(len: usize) -> usize {
    len.div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Bytes a record with a `len`-byte payload takes in the file.
pub const fn record_span(len: usize) -> usize {
    RECORD_HEADER_LEN + padded(len)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The segment header's fields (only the id varies today).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's id, as given to [`crate::SegmentWriter::create`]: a log
    /// segment's first seq, a checkpoint's epoch, the manifest's generation.
    pub id: u64,
}

impl SegmentHeader {
    /// The header's 32 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&self.id.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Checks and decodes the header at the start of `file` (the whole file,
    /// or at least its first bytes). Checked in this order, so each damage
    /// gets the most telling report: magic (as far as the file goes), length,
    /// version, checksum, reserved bytes.
    pub(crate) fn decode(file: &[u8]) -> Result<Self, Fault> {
        let have = file.len().min(MAGIC.len());
        if file[..have] != MAGIC[..have] {
            return Err(Fault::BadMagic {
                found: file[..have].to_vec(),
            });
        }
        if file.len() < HEADER_LEN {
            return Err(Fault::Truncated {
                offset: 0,
                region: Region::SegmentHeader,
            });
        }
        let h = &file[..HEADER_LEN];
        let version = u16_at(h, 8);
        if version != FORMAT_VERSION {
            return Err(Fault::UnsupportedVersion { found: version });
        }
        if crc32c::crc32c(&h[0..28]) != u32_at(h, 28) {
            return Err(Fault::Checksum {
                offset: 0,
                region: Region::SegmentHeader,
            });
        }
        if h[10..16].iter().chain(&h[24..28]).any(|&b| b != 0) {
            return Err(Fault::Invalid {
                offset: 0,
                reason: "reserved header bytes are set".into(),
            });
        }
        Ok(SegmentHeader { id: u64_at(h, 16) })
    }
}

fn record_header_crc(segment_id: u64, offset: u64, head: &[u8]) -> u32 {
    debug_assert_eq!(head.len(), 12);
    let crc = crc32c::crc32c(&segment_id.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &offset.to_le_bytes());
    crc32c::crc32c_append(crc, head)
}

/// Appends the record for `payload` to `out`, which will be written at file
/// offset `offset` of segment `segment_id`. Returns nothing: the record's
/// offset is the caller's `offset`.
pub(crate) fn encode_record(out: &mut Vec<u8>, segment_id: u64, offset: u64, payload: &[u8]) {
    assert!(payload.len() <= MAX_RECORD_LEN, "caller checks the limit");
    debug_assert_eq!(offset % RECORD_ALIGN as u64, 0);
    debug_assert!(offset >= HEADER_LEN as u64);
    let start = out.len();
    let pad = padded(payload.len()) - payload.len();
    let len = u32::try_from(payload.len()).expect("MAX_RECORD_LEN fits in u32");

    out.reserve(record_span(payload.len()));
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // payload checksum, filled in below
    out.extend_from_slice(&[0; 4]); // reserved
    out.extend_from_slice(&[0; 4]); // header checksum, filled in below
    out.extend_from_slice(payload);
    out.resize(out.len() + pad, 0);

    let body = start + RECORD_HEADER_LEN;
    let payload_crc = crc32c::crc32c(&out[body..]);
    out[start + 4..start + 8].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = record_header_crc(segment_id, offset, &out[start..start + 12]);
    out[start + 12..start + 16].copy_from_slice(&header_crc.to_le_bytes());
    debug_assert_eq!(out.len() - start, record_span(payload.len()));
}

/// A record whose framing checked out: where it is and where its payload is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// File offset of the record (its header).
    pub offset: usize,
    /// File range of the payload (unpadded).
    pub payload: Range<usize>,
    /// File offset just past the record's padding: the next record's offset.
    pub end: usize,
}

/// Checks the framing of the record at `offset` in `file` (the whole mapped
/// file) of segment `segment_id`: header in bounds, header checksum, reserved
/// bytes, length limit, payload in bounds, payload checksum. Does not look at
/// what the payload holds (that is bytecheck's job, in `reader`).
pub(crate) fn check_record(file: &[u8], offset: usize, segment_id: u64) -> Result<Frame, Fault> {
    debug_assert_eq!(offset % RECORD_ALIGN, 0);
    debug_assert!(offset >= HEADER_LEN && offset < file.len());
    let at = offset as u64;
    let head_end = offset + RECORD_HEADER_LEN;
    if head_end > file.len() {
        return Err(Fault::Truncated {
            offset: at,
            region: Region::RecordHeader,
        });
    }
    let head = &file[offset..head_end];
    if record_header_crc(segment_id, at, &head[0..12]) != u32_at(head, 12) {
        return Err(Fault::Checksum {
            offset: at,
            region: Region::RecordHeader,
        });
    }
    if u32_at(head, 8) != 0 {
        return Err(Fault::Invalid {
            offset: at,
            reason: "reserved record header bytes are set".into(),
        });
    }
    let len = u32_at(head, 0) as usize;
    if len > MAX_RECORD_LEN {
        return Err(Fault::Invalid {
            offset: at,
            reason: format!("payload length {len} is over the limit of {MAX_RECORD_LEN}"),
        });
    }
    let end = head_end + padded(len);
    if end > file.len() {
        return Err(Fault::Truncated {
            offset: at,
            region: Region::Payload,
        });
    }
    if crc32c::crc32c(&file[head_end..end]) != u32_at(head, 4) {
        return Err(Fault::Checksum {
            offset: at,
            region: Region::Payload,
        });
    }
    Ok(Frame {
        offset,
        payload: head_end..head_end + len,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(id: u64, payloads: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let mut file = SegmentHeader { id }.encode().to_vec();
        let mut offsets = Vec::new();
        for p in payloads {
            offsets.push(file.len());
            let at = file.len() as u64;
            encode_record(&mut file, id, at, p);
        }
        (file, offsets)
    }

    #[test]
    fn header_round_trips() {
        let h = SegmentHeader {
            id: 0xdead_beef_0042,
        };
        let bytes = h.encode();
        assert_eq!(&bytes[..8], b"DIRIGOSG");
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
    }

    #[test]
    fn padding_keeps_records_aligned() {
        for len in 0..100 {
            assert_eq!(padded(len) % RECORD_ALIGN, 0);
            assert!(padded(len) >= len && padded(len) < len + RECORD_ALIGN);
            assert_eq!(record_span(len) % RECORD_ALIGN, 0);
        }
    }

    #[test]
    fn records_round_trip() {
        let payloads: [&[u8]; 4] = [b"", b"a", b"0123456789abcdef", b"seventeen bytes!!"];
        let (file, offsets) = segment(7, &payloads);
        let mut at = HEADER_LEN;
        for (p, &o) in payloads.iter().zip(&offsets) {
            let frame = check_record(&file, at, 7).expect("valid record");
            assert_eq!(frame.offset, o);
            assert_eq!(&file[frame.payload.clone()], *p);
            assert_eq!(frame.payload.start % RECORD_ALIGN, 0);
            at = frame.end;
        }
        assert_eq!(at, file.len());
    }

    #[test]
    fn a_record_is_bound_to_its_segment_and_offset() {
        let (file, offsets) = segment(7, &[b"hello"]);
        assert_eq!(
            check_record(&file, offsets[0], 8),
            Err(Fault::Checksum {
                offset: offsets[0] as u64,
                region: Region::RecordHeader
            })
        );
        // The same record bytes one slot later.
        let mut shifted = file[..HEADER_LEN].to_vec();
        shifted.extend_from_slice(&[0; RECORD_ALIGN]);
        shifted.extend_from_slice(&file[HEADER_LEN..]);
        let at = HEADER_LEN + RECORD_ALIGN;
        assert!(matches!(
            check_record(&shifted, at, 7),
            Err(Fault::Checksum {
                region: Region::RecordHeader,
                ..
            })
        ));
    }

    #[test]
    fn zero_filled_tail_is_not_a_record() {
        let (mut file, _) = segment(0, &[]);
        file.resize(file.len() + 4096, 0);
        assert!(matches!(
            check_record(&file, HEADER_LEN, 0),
            Err(Fault::Checksum {
                offset: 32,
                region: Region::RecordHeader
            })
        ));
    }

    #[test]
    fn oversized_length_with_valid_checksum_is_invalid() {
        let (mut file, offsets) = segment(1, &[b"x"]);
        let o = offsets[0];
        file[o..o + 4].copy_from_slice(&(MAX_RECORD_LEN as u32 + 1).to_le_bytes());
        let crc = record_header_crc(1, o as u64, &file[o..o + 12]);
        file[o + 12..o + 16].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            check_record(&file, o, 1),
            Err(Fault::Invalid { offset, .. }) if offset == o as u64
        ));
    }

    #[test]
    fn header_checks_in_order() {
        let good = SegmentHeader { id: 3 }.encode();
        assert_eq!(
            SegmentHeader::decode(&[]),
            Err(Fault::Truncated {
                offset: 0,
                region: Region::SegmentHeader
            })
        );
        assert!(matches!(
            SegmentHeader::decode(&good[..20]),
            Err(Fault::Truncated { offset: 0, .. })
        ));
        assert!(matches!(
            SegmentHeader::decode(b"PK\x03\x04"),
            Err(Fault::BadMagic { .. })
        ));
        let mut v2 = good;
        v2[8] = 2;
        assert_eq!(
            SegmentHeader::decode(&v2),
            Err(Fault::UnsupportedVersion { found: 2 })
        );
        let mut flipped = good;
        flipped[17] ^= 0x10;
        assert_eq!(
            SegmentHeader::decode(&flipped),
            Err(Fault::Checksum {
                offset: 0,
                region: Region::SegmentHeader
            })
        );
        let mut reserved = good;
        reserved[12] = 1;
        let crc = crc32c::crc32c(&reserved[0..28]);
        reserved[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            SegmentHeader::decode(&reserved),
            Err(Fault::Invalid { offset: 0, .. })
        ));
    }
}
