//! Segments end to end: written through io_uring, synced, reopened through
//! mmap. Round trips (fixed and property-based) for realistic state shapes,
//! and every kind of damage a crash or a bad disk can leave: each must be
//! reported with the right variant, file and offset, never panic, and
//! recovery must keep exactly the records before the damage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dirigo_storage::rkyv::{self, rancor, Archived};
use dirigo_storage::{
    Record, Region, Segment, SegmentWriter, StorageError, FORMAT_VERSION, HEADER_LEN,
};
use proptest::prelude::*;

// ---------------------------------------------------------------- state shapes

/// An input event, as the ingress log will hold them.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct Event {
    key: u64,
    ts_ns: u64,
    word: String,
}

/// One window of a windowed aggregation.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct Window {
    start_ns: u64,
    counts: BTreeMap<String, u64>,
    samples: Vec<i64>,
    label: Option<String>,
}

/// An operator's state: nested structs, a map, a vector of structs.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq)]
struct OperatorState {
    operator: String,
    epoch: u64,
    open: Vec<Window>,
    watermark: Option<u64>,
}

// ---------------------------------------------------------------- helpers

fn write<T: Record>(path: &Path, id: u64, values: &[T]) -> Vec<u64> {
    let mut w = SegmentWriter::<T>::create(path, id).expect("create");
    let offsets = values
        .iter()
        .map(|v| w.append(v).expect("append"))
        .collect();
    let len = w.sync().expect("sync");
    assert_eq!(len, std::fs::metadata(path).expect("stat").len());
    offsets
}

/// Deserializes every record of the segment.
fn read_all<T>(seg: &Segment<T>) -> Vec<T>
where
    T: Record,
    Archived<T>: rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    seg.iter()
        .map(|(_, a)| rkyv::deserialize::<T, rancor::Error>(a).expect("deserialize"))
        .collect()
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            key: (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ts_ns: 1_000 * i as u64,
            word: "w".repeat(i % 37),
        })
        .collect()
}

/// A small segment of events, its record offsets, and its bytes.
struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    values: Vec<Event>,
    offsets: Vec<u64>,
    bytes: Vec<u8>,
}

impl Fixture {
    fn new(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seg-000001");
        let values = events(n);
        let offsets = write(&path, 1, &values);
        let bytes = std::fs::read(&path).expect("read");
        Fixture {
            _dir: dir,
            path,
            values,
            offsets,
            bytes,
        }
    }

    /// Replaces the file's contents with `bytes`.
    fn store(&self, bytes: &[u8]) {
        std::fs::write(&self.path, bytes).expect("write");
    }

    /// End offset of record `i`.
    fn end(&self, i: usize) -> u64 {
        self.offsets
            .get(i + 1)
            .copied()
            .unwrap_or(self.bytes.len() as u64)
    }

    /// Index of the record holding byte `at` (at >= HEADER_LEN).
    fn record_at(&self, at: u64) -> usize {
        self.offsets.partition_point(|&o| o <= at) - 1
    }

    /// `recover` must keep exactly records `..keep` and stop at `offset`.
    fn assert_recovers(&self, keep: usize, offset: u64) {
        let rec = Segment::<Event>::recover(&self.path).expect("header is fine");
        let damage = rec.damage.expect("damage reported");
        assert_eq!(damage.offset(), Some(offset), "{damage}");
        assert_eq!(rec.segment.valid_len(), offset);
        assert_eq!(rec.segment.len(), keep);
        assert_eq!(read_all(&rec.segment), self.values[..keep]);
        assert_eq!(
            rec.segment.offsets().collect::<Vec<_>>(),
            self.offsets[..keep]
        );
        // Records past the damage are never reachable, even by offset.
        for &o in &self.offsets[keep..] {
            assert!(matches!(
                rec.segment.get(o),
                Err(StorageError::NoRecord { .. })
            ));
        }
    }
}

fn fix_header_crc(bytes: &mut [u8]) {
    let crc = crc32c(&bytes[0..28]);
    bytes[28..32].copy_from_slice(&crc.to_le_bytes());
}

/// CRC-32C (Castagnoli), bitwise: an independent check of the format's
/// checksum, so these tests do not trust the crate's own code for it.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

// ---------------------------------------------------------------- round trips

#[test]
fn round_trip_many_records_through_io_uring() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events");
    let values = events(20_000); // several FLUSH_AT batches
    let offsets = write(&path, 42, &values);

    let seg = Segment::<Event>::open(&path).expect("open");
    assert_eq!(seg.id(), 42);
    assert_eq!(seg.len(), values.len());
    assert_eq!(
        seg.valid_len(),
        std::fs::metadata(&path).expect("stat").len()
    );
    assert_eq!(read_all(&seg), values);
    for (i, &o) in offsets.iter().enumerate().step_by(997) {
        let a = seg.get(o).expect("get");
        assert_eq!(a.key, values[i].key);
        assert_eq!(a.word.as_str(), values[i].word);
        // Zero-copy: the archived value lives inside the record's mapped bytes.
        let raw = seg.archived_bytes(o).expect("raw");
        let p = a as *const Archived<Event> as usize;
        assert!(p >= raw.as_ptr() as usize && p < raw.as_ptr() as usize + raw.len());
    }
}

#[test]
fn archived_bytes_copy_into_another_segment() {
    let fx = Fixture::new(5);
    let src = Segment::<Event>::open(&fx.path).expect("open");
    let copy = fx.path.with_extension("copy");
    let mut w = SegmentWriter::<Event>::create(&copy, 2).expect("create");
    for o in src.offsets() {
        w.append_archived(src.archived_bytes(o).expect("bytes"))
            .expect("append");
    }
    w.finish().expect("finish");
    let dst = Segment::<Event>::open(&copy).expect("open copy");
    assert_eq!(dst.id(), 2);
    assert_eq!(read_all(&dst), fx.values);
}

#[test]
fn reopen_after_flush_without_sync_sees_the_records() {
    // flush() hands the batch to the page cache, which the map reads.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s");
    let mut w = SegmentWriter::<u64>::create(&path, 3).expect("create");
    for i in 0..10u64 {
        w.append(&i).expect("append");
    }
    w.flush().expect("flush");
    let seg = Segment::<u64>::open(&path).expect("open");
    let got: Vec<u64> = seg.iter().map(|(_, v)| v.to_native()).collect();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

fn window() -> impl Strategy<Value = Window> {
    (
        any::<u64>(),
        prop::collection::btree_map("[a-z]{0,12}", any::<u64>(), 0..8),
        prop::collection::vec(any::<i64>(), 0..16),
        prop::option::of("\\PC{0,10}"),
    )
        .prop_map(|(start_ns, counts, samples, label)| Window {
            start_ns,
            counts,
            samples,
            label,
        })
}

fn operator_state() -> impl Strategy<Value = OperatorState> {
    (
        "[a-z_]{1,16}",
        any::<u64>(),
        prop::collection::vec(window(), 0..4),
        prop::option::of(any::<u64>()),
    )
        .prop_map(|(operator, epoch, open, watermark)| OperatorState {
            operator,
            epoch,
            open,
            watermark,
        })
}

/// Writes `values` to a fresh segment, reopens it, and checks both the
/// deserialized values and the offsets.
fn assert_round_trip<T>(values: &[T])
where
    T: Record + PartialEq + std::fmt::Debug,
    Archived<T>: rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rancor::Error>>,
{
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s");
    let offsets = write(&path, 7, values);
    let seg = Segment::<T>::open(&path).expect("open");
    assert_eq!(read_all(&seg), values);
    assert_eq!(seg.offsets().collect::<Vec<_>>(), offsets);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prop_pairs_round_trip(values in prop::collection::vec(
        prop::collection::vec((any::<u64>(), any::<u64>()), 0..64), 0..8)) {
        assert_round_trip(&values);
    }

    #[test]
    fn prop_keyed_map_round_trip(values in prop::collection::vec(
        prop::collection::btree_map("\\PC{0,16}", any::<u64>(), 0..32), 0..8)) {
        assert_round_trip(&values);
        // Zero-copy lookups agree with the map they came from.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m");
        write(&path, 1, &values);
        let seg = Segment::<BTreeMap<String, u64>>::open(&path).expect("open");
        for ((_, archived), map) in seg.iter().zip(&values) {
            prop_assert_eq!(archived.len(), map.len());
            for (k, v) in map {
                prop_assert_eq!(archived.get(k.as_str()).map(|a| a.to_native()), Some(*v));
            }
        }
    }

    #[test]
    fn prop_nested_state_round_trip(values in prop::collection::vec(operator_state(), 0..6)) {
        assert_round_trip(&values);
    }

    /// Any one corrupted byte is caught at the structure holding it, and
    /// recovery keeps exactly the records before it.
    #[test]
    fn prop_any_flipped_byte_is_caught(
        n in 1usize..6,
        pick in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let fx = Fixture::new(n);
        let at = pick.index(fx.bytes.len() - HEADER_LEN) + HEADER_LEN;
        let mut bad = fx.bytes.clone();
        bad[at] ^= mask;
        fx.store(&bad);
        let r = fx.record_at(at as u64);
        let err = Segment::<Event>::open(&fx.path).expect_err("damage");
        prop_assert_eq!(err.offset(), Some(fx.offsets[r]), "{}", err);
        prop_assert!(matches!(err, StorageError::Checksum { .. }), "{}", err);
        fx.assert_recovers(r, fx.offsets[r]);
    }
}

// ---------------------------------------------------------------- torn tails

#[test]
fn truncated_tail_at_every_offset_of_the_last_record() {
    let fx = Fixture::new(5);
    let last = *fx.offsets.last().expect("records");
    let len = fx.bytes.len() as u64;
    for cut in last + 1..len {
        fx.store(&fx.bytes[..cut as usize]);
        let err = Segment::<Event>::open(&fx.path).expect_err("torn");
        let region = if cut < last + 16 {
            Region::RecordHeader
        } else {
            Region::Payload
        };
        match &err {
            StorageError::Truncated {
                path,
                offset,
                region: r,
                file_len,
            } => {
                assert_eq!(path, &fx.path);
                assert_eq!((*offset, *r, *file_len), (last, region, cut), "cut {cut}");
            }
            other => panic!("cut {cut}: expected Truncated, got {other}"),
        }
        fx.assert_recovers(4, last);
    }
    // Cut exactly at the record boundary: a shorter, valid segment.
    fx.store(&fx.bytes[..last as usize]);
    let seg = Segment::<Event>::open(&fx.path).expect("boundary");
    assert_eq!(read_all(&seg), fx.values[..4]);
}

#[test]
fn truncation_anywhere_keeps_the_whole_records_before_it() {
    let fx = Fixture::new(4);
    for cut in 0..=fx.bytes.len() {
        fx.store(&fx.bytes[..cut]);
        let opened = Segment::<Event>::open(&fx.path);
        if cut < HEADER_LEN {
            assert!(
                matches!(
                    opened,
                    Err(StorageError::Truncated {
                        offset: 0,
                        region: Region::SegmentHeader,
                        ..
                    })
                ),
                "cut {cut}: {opened:?}"
            );
            assert!(Segment::<Event>::recover(&fx.path).is_err());
            continue;
        }
        let whole = (0..fx.offsets.len())
            .filter(|&i| fx.end(i) <= cut as u64)
            .count();
        let boundary = cut == HEADER_LEN || (whole > 0 && fx.end(whole - 1) == cut as u64);
        if boundary {
            let seg = opened.expect("cut at a record boundary");
            assert_eq!(read_all(&seg), fx.values[..whole]);
        } else {
            let err = opened.expect_err("torn record");
            assert!(
                matches!(err, StorageError::Truncated { offset, .. } if offset == fx.offsets[whole]),
                "cut {cut}: {err}"
            );
            fx.assert_recovers(whole, fx.offsets[whole]);
        }
    }
}

#[test]
fn zero_filled_tail_is_damage_after_the_last_record() {
    // A crash can leave the file longer than its data: zeros past the end.
    let fx = Fixture::new(3);
    let mut bad = fx.bytes.clone();
    bad.resize(bad.len() + 4096, 0);
    fx.store(&bad);
    let err = Segment::<Event>::open(&fx.path).expect_err("zeros");
    let len = fx.bytes.len() as u64;
    assert!(
        matches!(err, StorageError::Checksum { offset, region: Region::RecordHeader, .. } if offset == len),
        "{err}"
    );
    fx.assert_recovers(3, len);
}

// ---------------------------------------------------------------- flipped bytes

#[test]
fn flipped_byte_in_a_payload() {
    let fx = Fixture::new(6);
    let o = fx.offsets[2];
    let mut bad = fx.bytes.clone();
    bad[o as usize + 16 + 3] ^= 0x40;
    fx.store(&bad);
    let err = Segment::<Event>::open(&fx.path).expect_err("flipped");
    match &err {
        StorageError::Checksum {
            path,
            offset,
            region,
        } => {
            assert_eq!(path, &fx.path);
            assert_eq!((*offset, *region), (o, Region::Payload));
        }
        other => panic!("expected Checksum, got {other}"),
    }
    fx.assert_recovers(2, o);
}

#[test]
fn flipped_byte_in_a_length() {
    let fx = Fixture::new(6);
    for (bit, byte) in [(0x01u8, 0usize), (0x80, 1), (0x10, 3)] {
        let o = fx.offsets[4];
        let mut bad = fx.bytes.clone();
        bad[o as usize + byte] ^= bit;
        fx.store(&bad);
        let err = Segment::<Event>::open(&fx.path).expect_err("flipped");
        // Caught by the record header's checksum before the length is used:
        // never mistaken for a torn tail, never used to skip.
        assert!(
            matches!(err, StorageError::Checksum { offset, region: Region::RecordHeader, .. } if offset == o),
            "{err}"
        );
        fx.assert_recovers(4, o);
    }
}

#[test]
fn flipped_byte_in_the_segment_header() {
    let fx = Fixture::new(3);
    for at in 10..HEADER_LEN {
        let mut bad = fx.bytes.clone();
        bad[at] ^= 0x04;
        fx.store(&bad);
        for err in [
            Segment::<Event>::open(&fx.path).expect_err("flipped"),
            Segment::<Event>::recover(&fx.path).expect_err("header unusable"),
        ] {
            assert!(
                matches!(
                    err,
                    StorageError::Checksum {
                        offset: 0,
                        region: Region::SegmentHeader,
                        ..
                    }
                ),
                "byte {at}: {err}"
            );
        }
    }
}

#[test]
fn every_flipped_byte_is_reported_where_it_is() {
    let fx = Fixture::new(3);
    for at in 0..fx.bytes.len() {
        for mask in [0x01u8, 0x80] {
            let mut bad = fx.bytes.clone();
            bad[at] ^= mask;
            fx.store(&bad);
            let err = Segment::<Event>::open(&fx.path).expect_err("flipped");
            if at < 8 {
                assert!(matches!(err, StorageError::BadMagic { .. }), "{at}: {err}");
            } else if at < 10 {
                assert!(
                    matches!(err, StorageError::UnsupportedVersion { .. }),
                    "{at}: {err}"
                );
            } else if at < HEADER_LEN {
                assert!(
                    matches!(
                        err,
                        StorageError::Checksum {
                            offset: 0,
                            region: Region::SegmentHeader,
                            ..
                        }
                    ),
                    "{at}: {err}"
                );
            } else {
                let r = fx.record_at(at as u64);
                let o = fx.offsets[r];
                let region = if (at as u64) < o + 16 {
                    Region::RecordHeader
                } else {
                    Region::Payload
                };
                assert!(
                    matches!(err, StorageError::Checksum { offset, region: g, .. } if offset == o && g == region),
                    "{at}: {err}"
                );
                fx.assert_recovers(r, o);
            }
        }
    }
}

#[test]
fn records_after_the_damage_are_never_exposed() {
    let fx = Fixture::new(10);
    let mut bad = fx.bytes.clone();
    bad[fx.offsets[3] as usize + 20] ^= 0xff;
    fx.store(&bad);
    // Records 4..10 are intact, but follow the damage: not exposed.
    fx.assert_recovers(3, fx.offsets[3]);
    let rec = Segment::<Event>::recover(&fx.path).expect("recover");
    assert_eq!(rec.segment.iter().count(), 3);
}

#[test]
fn a_record_from_another_segment_does_not_pass() {
    let fx = Fixture::new(2);
    let other = fx.path.with_extension("other");
    let values = events(3);
    write(&other, 99, &values);
    let theirs = std::fs::read(&other).expect("read");
    // Splice their last record where ours would follow (same offset class).
    let at = fx.bytes.len();
    let mut spliced = fx.bytes.clone();
    spliced.extend_from_slice(&theirs[at..]);
    fx.store(&spliced);
    let err = Segment::<Event>::open(&fx.path).expect_err("foreign record");
    assert!(
        matches!(err, StorageError::Checksum { offset, region: Region::RecordHeader, .. } if offset == at as u64),
        "{err}"
    );
    fx.assert_recovers(2, at as u64);
}

// ---------------------------------------------------------------- bad headers, bad files

#[test]
fn wrong_magic() {
    let fx = Fixture::new(2);
    let mut bad = fx.bytes.clone();
    bad[..8].copy_from_slice(b"NOTASEGM");
    fix_header_crc(&mut bad);
    fx.store(&bad);
    let err = Segment::<Event>::open(&fx.path).expect_err("magic");
    assert!(
        matches!(&err, StorageError::BadMagic { path, found } if path == &fx.path && found == b"NOTASEGM"),
        "{err}"
    );
    assert!(matches!(
        Segment::<Event>::recover(&fx.path),
        Err(StorageError::BadMagic { .. })
    ));
}

#[test]
fn wrong_version() {
    let fx = Fixture::new(2);
    let mut bad = fx.bytes.clone();
    bad[8..10].copy_from_slice(&2u16.to_le_bytes());
    fix_header_crc(&mut bad); // a well-formed header of a future version
    fx.store(&bad);
    let err = Segment::<Event>::open(&fx.path).expect_err("version");
    assert!(
        matches!(&err, StorageError::UnsupportedVersion { path, found: 2, expected } if path == &fx.path && *expected == FORMAT_VERSION),
        "{err}"
    );
    assert!(Segment::<Event>::recover(&fx.path).is_err());
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty");
    std::fs::write(&path, b"").expect("write");
    for err in [
        Segment::<Event>::open(&path).expect_err("empty"),
        Segment::<Event>::recover(&path).expect_err("empty"),
    ] {
        assert!(
            matches!(
                &err,
                StorageError::Truncated { path: p, offset: 0, region: Region::SegmentHeader, file_len: 0 } if p == &path
            ),
            "{err}"
        );
    }
}

#[test]
fn file_shorter_than_the_header() {
    let fx = Fixture::new(1);
    fx.store(&fx.bytes[..20]);
    let err = Segment::<Event>::open(&fx.path).expect_err("short");
    assert!(
        matches!(
            err,
            StorageError::Truncated {
                offset: 0,
                region: Region::SegmentHeader,
                file_len: 20,
                ..
            }
        ),
        "{err}"
    );
    // A short file that is not even a segment's beginning.
    fx.store(b"hello, world");
    let err = Segment::<Event>::open(&fx.path).expect_err("short");
    assert!(matches!(err, StorageError::BadMagic { .. }), "{err}");
}

#[test]
fn missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Segment::<Event>::open(dir.path().join("nope")).expect_err("missing");
    assert!(
        matches!(&err, StorageError::Io { op: "open", source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{err}"
    );
}

// ---------------------------------------------------------------- bytecheck

#[test]
fn payload_of_the_wrong_type_is_invalid() {
    // Checksums are fine; the payloads are not archived Strings.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("u32s");
    let offsets = write(&path, 5, &[7u32, 8]);
    let err = Segment::<String>::open(&path).expect_err("wrong type");
    assert!(
        matches!(&err, StorageError::Invalid { path: p, offset, .. } if p == &path && *offset == offsets[0]),
        "{err}"
    );
}

#[test]
fn invalid_payload_mid_segment_ends_the_valid_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bools");
    let mut w = SegmentWriter::<bool>::create(&path, 1).expect("create");
    w.append(&true).expect("append");
    let bad = w.append_archived(&[2]).expect("append raw"); // not a bool
    w.append(&false).expect("append");
    w.finish().expect("finish");

    let err = Segment::<bool>::open(&path).expect_err("invalid");
    assert!(
        matches!(&err, StorageError::Invalid { offset, .. } if *offset == bad),
        "{err}"
    );
    let rec = Segment::<bool>::recover(&path).expect("recover");
    assert_eq!(rec.damage.and_then(|d| d.offset()), Some(bad));
    let kept: Vec<bool> = rec.segment.iter().map(|(_, b)| *b).collect();
    assert_eq!(kept, [true]);
}

#[test]
fn errors_name_the_file_and_the_offset() {
    let fx = Fixture::new(3);
    let mut bad = fx.bytes.clone();
    bad[fx.offsets[1] as usize + 17] ^= 1;
    fx.store(&bad);
    let msg = Segment::<Event>::open(&fx.path)
        .expect_err("flipped")
        .to_string();
    assert!(msg.contains(&fx.path.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("byte {}", fx.offsets[1])), "{msg}");
}
