//! [`Segment`]: a segment file mapped read-only, every record validated once
//! at open, then read zero-copy as `&Archived<T>`.
//!
//! `open` maps the file with memmap2 and checks, in file order, the header
//! and then each record: framing and checksums (`format::check_record`), then
//! bytecheck validation of the payload as an archived `T`. Only records that
//! passed every check are indexed, and access goes only through that index,
//! so no byte that was not validated is ever handed out. The type parameter
//! ties access to the type the payloads were validated as.
//!
//! `open` refuses a segment with any damage; `recover` keeps the valid prefix
//! of a segment whose tail is torn or corrupt (crash recovery's entry point)
//! and says where and why it stopped. Records after the first bad byte are
//! never exposed, even if some of them look valid: after damage, nothing
//! says they belong to this segment's history.
//!
//! Soundness rests on one crate invariant (see the crate docs): a segment
//! file's bytes are never changed in place, only appended to, so the mapped
//! bytes stay the bytes that were validated.

use std::fs::File;
use std::marker::PhantomData;
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rkyv::Archived;

use crate::error::{Result, StorageError};
use crate::format::{self, Fault, SegmentHeader, HEADER_LEN, RECORD_ALIGN};
use crate::Record;

/// A validated record: its file offset and its payload's byte range.
#[derive(Debug, Clone)]
struct Span {
    offset: u64,
    payload: Range<usize>,
}

/// A mapped, validated segment of records of type `T`.
pub struct Segment<T> {
    path: PathBuf,
    map: Mmap,
    id: u64,
    /// Validated records, ascending by offset.
    records: Vec<Span>,
    /// Length of the validated prefix: the end of the last valid record.
    valid_len: u64,
    _record: PhantomData<fn() -> T>,
}

/// A segment opened by [`Segment::recover`]: its valid prefix, and what
/// ended it if it is not the whole file.
pub struct Recovered<T> {
    /// The records before the damage (all of them if `damage` is `None`).
    pub segment: Segment<T>,
    /// Why the scan stopped early: `Truncated`, `Checksum` or `Invalid`, whose
    /// offset is where the valid prefix ends (`segment.valid_len()`).
    pub damage: Option<StorageError>,
}

impl<T: Record> Segment<T> {
    /// Maps and validates the segment at `path`. Any damage is an error
    /// naming the file and the offset of the damaged structure.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let (segment, damage) = Self::scan(path.as_ref())?;
        match damage {
            None => Ok(segment),
            Some(e) => Err(e),
        }
    }

    /// Maps the segment at `path` and keeps its valid prefix: every record
    /// before the first one that fails a check. Fails only when the header
    /// itself is unusable (or the file cannot be mapped).
    pub fn recover(path: impl AsRef<Path>) -> Result<Recovered<T>> {
        let (segment, damage) = Self::scan(path.as_ref())?;
        Ok(Recovered { segment, damage })
    }

    fn scan(path: &Path) -> Result<(Self, Option<StorageError>)> {
        let io = |op| {
            move |source| StorageError::Io {
                path: path.to_path_buf(),
                op,
                source,
            }
        };
        let file = File::open(path).map_err(io("open"))?;
        // SAFETY: memmap2 requires that the mapped bytes are not changed
        // while the map lives. Segment files are never modified in place,
        // only appended to past their end (crate invariant), and appends do
        // not touch the `map.len()` bytes mapped here. (Truncation by another
        // process would fault with SIGBUS, not yield changed bytes.)
        let map = unsafe { Mmap::map(&file) }.map_err(io("mmap"))?;
        let file_len = map.len() as u64;
        let bytes: &[u8] = &map;
        debug_assert_eq!(
            bytes.as_ptr() as usize % RECORD_ALIGN,
            0,
            "maps start on a page"
        );

        let header = SegmentHeader::decode(bytes).map_err(|f| f.at(path, file_len))?;
        let mut records = Vec::new();
        let mut at = HEADER_LEN;
        let mut damage = None;
        while at < bytes.len() {
            match format::check_record(bytes, at, header.id)
                .and_then(|frame| validate::<T>(&bytes[frame.payload.clone()], at).map(|()| frame))
            {
                Ok(frame) => {
                    debug_assert!(frame.end > at && frame.end <= bytes.len());
                    records.push(Span {
                        offset: frame.offset as u64,
                        payload: frame.payload,
                    });
                    at = frame.end;
                }
                Err(fault) => {
                    damage = Some(fault.at(path, file_len));
                    break;
                }
            }
        }
        debug_assert!(damage.is_some() || at == bytes.len());
        let segment = Segment {
            path: path.to_path_buf(),
            id: header.id,
            records,
            valid_len: at as u64,
            map,
            _record: PhantomData,
        };
        Ok((segment, damage))
    }

    /// The record at `offset` (as returned by `SegmentWriter::append`).
    pub fn get(&self, offset: u64) -> Result<&Archived<T>> {
        Ok(self.archived(self.span(offset)?))
    }

    /// The validated archived bytes of the record at `offset`, e.g. to copy it
    /// into another segment with `SegmentWriter::append_archived`.
    pub fn archived_bytes(&self, offset: u64) -> Result<&[u8]> {
        let span = self.span(offset)?;
        Ok(&self.map[span.payload.clone()])
    }

    /// The records in file order, with their offsets.
    pub fn iter(&self) -> Records<'_, T> {
        Records {
            segment: self,
            spans: self.records.iter(),
        }
    }

    fn span(&self, offset: u64) -> Result<&Span> {
        self.records
            .binary_search_by_key(&offset, |s| s.offset)
            .map(|i| &self.records[i])
            .map_err(|_| StorageError::NoRecord {
                path: self.path.clone(),
                offset,
            })
    }

    fn archived(&self, span: &Span) -> &Archived<T> {
        let bytes = &self.map[span.payload.clone()];
        debug_assert_eq!(bytes.as_ptr() as usize % RECORD_ALIGN, 0);
        // SAFETY: `span` comes from `self.records`, so these exact bytes
        // passed `rkyv::access::<Archived<T>>` (bytecheck) in `scan`, at this
        // same address; the map is read-only and segment files are never
        // changed in place, so they are still those bytes.
        unsafe { rkyv::access_unchecked::<Archived<T>>(bytes) }
    }
}

impl<T> Segment<T> {
    /// The segment's id, from its header.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The segment file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of valid records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the segment holds no valid record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Length of the valid prefix of the file (header and valid records);
    /// the file length for a segment from `open`.
    pub fn valid_len(&self) -> u64 {
        self.valid_len
    }

    /// Offsets of the valid records, ascending.
    pub fn offsets(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.records.iter().map(|s| s.offset)
    }
}

/// bytecheck validation of one payload as an archived `T`.
fn validate<T: Record>(payload: &[u8], offset: usize) -> Result<(), Fault> {
    debug_assert_eq!(payload.as_ptr() as usize % RECORD_ALIGN, 0);
    rkyv::access::<Archived<T>, rkyv::rancor::Error>(payload)
        .map(drop)
        .map_err(|e| Fault::Invalid {
            offset: offset as u64,
            reason: format!("payload is not a valid archived value: {e}"),
        })
}

/// Iterator over a segment's records: `(offset, &Archived<T>)` in file order.
pub struct Records<'a, T> {
    segment: &'a Segment<T>,
    spans: std::slice::Iter<'a, Span>,
}

impl<'a, T: Record> Iterator for Records<'a, T> {
    type Item = (u64, &'a Archived<T>);

    fn next(&mut self) -> Option<Self::Item> {
        let span = self.spans.next()?;
        Some((span.offset, self.segment.archived(span)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl<T: Record> ExactSizeIterator for Records<'_, T> {}

impl<'a, T: Record> IntoIterator for &'a Segment<T> {
    type Item = (u64, &'a Archived<T>);
    type IntoIter = Records<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T> std::fmt::Debug for Segment<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("id", &self.id)
            .field("records", &self.records.len())
            .field("valid_len", &self.valid_len)
            .field("file_len", &self.map.len())
            .finish()
    }
}

impl<T> std::fmt::Debug for Recovered<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovered")
            .field("segment", &self.segment)
            .field("damage", &self.damage)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SegmentWriter;

    #[test]
    fn reads_back_what_was_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let mut w = SegmentWriter::<String>::create(&path, 4).expect("create");
        let offsets: Vec<u64> = ["a", "bb", ""]
            .iter()
            .map(|s| w.append(&s.to_string()).expect("append"))
            .collect();
        w.finish().expect("finish");

        let seg = Segment::<String>::open(&path).expect("open");
        assert_eq!(seg.id(), 4);
        assert_eq!(seg.len(), 3);
        assert_eq!(seg.offsets().collect::<Vec<_>>(), offsets);
        let got: Vec<&str> = seg.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(got, ["a", "bb", ""]);
        assert_eq!(seg.get(offsets[1]).expect("get").as_str(), "bb");
        assert!(matches!(
            seg.get(offsets[1] + 16),
            Err(StorageError::NoRecord { .. })
        ));
        let raw = seg.archived_bytes(offsets[0]).expect("bytes");
        assert_eq!(
            rkyv::access::<Archived<String>, rkyv::rancor::Error>(raw)
                .expect("valid")
                .as_str(),
            "a"
        );
    }

    #[test]
    fn a_header_only_segment_is_empty_and_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        SegmentWriter::<u64>::create(&path, 0)
            .expect("create")
            .finish()
            .expect("finish");
        let seg = Segment::<u64>::open(&path).expect("open");
        assert!(seg.is_empty());
        assert_eq!(seg.valid_len(), HEADER_LEN as u64);
    }
}
