//! Properties of the wire layer over arbitrary input (run in CI): any bytes,
//! fed in any chunks, give frames or a named error and never a panic, and
//! never make the decoder hold more than a header, a frame and the last
//! feed; any message, framed and fed in any chunks, comes back equal; a
//! payload that is not the message it claims to be is refused by
//! validation.

use dirigo_net::limits::HEADER_LEN;
use dirigo_net::{Decoder, ErrorCode, Event, Hello, Lag, Message, Output, Request, Response};
use proptest::prelude::*;

const MAX: usize = 4096;

fn requests() -> impl Strategy<Value = Request> {
    let name = "[a-z]{0,12}";
    prop_oneof![
        (
            name,
            name,
            ".{0,40}",
            proptest::option::of(any::<u64>()),
            any::<bool>(),
            (name, name),
        )
            .prop_map(
                |(kind, name, params_json, slo_us, durable, (ingest_token, read_token))| {
                    Request::Deploy {
                        kind,
                        name,
                        params_json,
                        slo_us,
                        durable,
                        ingest_token,
                        read_token,
                    }
                }
            ),
        name.prop_map(|app| Request::Undeploy { app }),
        Just(Request::Apps),
        (
            name,
            name,
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..20)
        )
            .prop_map(|(app, source, ev)| Request::Ingest {
                app,
                source,
                events: ev.into_iter().map(|value| Event { value }).collect(),
            }),
        (name, name, proptest::collection::vec(".{0,12}", 0..8)).prop_map(
            |(app, source, events)| Request::IngestJson {
                app,
                source,
                events,
            }
        ),
        (name, any::<u64>()).prop_map(|(app, window)| Request::Barrier { app, window }),
        (name, name, any::<bool>(), any::<bool>()).prop_map(|(app, sink, drop, json)| {
            Request::Subscribe {
                app,
                sink,
                lag: if drop {
                    Lag::DropOldest
                } else {
                    Lag::Disconnect
                },
                json,
            }
        }),
        proptest::option::of(name).prop_map(|app| Request::Stats { app }),
        name.prop_map(|app| Request::Checkpoint { app }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..3 * MAX),
        chunk in 1usize..500,
        valid_prefix in any::<bool>(),
        announced in prop_oneof![0u32..3 * MAX as u32, any::<u32>()],
    ) {
        let mut d = Decoder::new(MAX);
        let mut input = Vec::new();
        if valid_prefix {
            // Most random bytes fail at the magic: start some with a header
            // so lengths, kinds and payload validation are reached too.
            input.extend_from_slice(b"DG\x03\x00");
            input.extend_from_slice(&announced.to_le_bytes());
            input.extend_from_slice(&[0; 8]);
        }
        input.extend_from_slice(&bytes);
        for c in input.chunks(chunk) {
            d.feed(c);
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => {
                        let _ = Request::decode(&f);
                        let _ = Response::decode(&f);
                    }
                    Ok(None) => break,
                    Err(_) => break,
                }
            }
            prop_assert!(d.buffered() <= HEADER_LEN + MAX + chunk);
        }
        let _ = d.finish();
    }

    #[test]
    fn messages_come_back_equal_through_any_chunking(
        reqs in proptest::collection::vec(requests(), 1..8),
        chunk in 1usize..64,
    ) {
        let mut bytes = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            r.encode(i as u64, MAX, &mut bytes).expect("encodes");
        }
        let mut d = Decoder::new(MAX);
        let mut got = Vec::new();
        for c in bytes.chunks(chunk) {
            d.feed(c);
            while let Some(f) = d.next_frame().expect("valid frames") {
                got.push((f.request, Request::decode(&f).expect("valid request")));
            }
        }
        d.finish().expect("ends between frames");
        let want: Vec<_> = reqs.into_iter().enumerate().map(|(i, r)| (i as u64, r)).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn a_corrupted_payload_is_refused_or_decodes_to_a_valid_value(
        req in requests(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = Vec::new();
        req.encode(1, MAX, &mut bytes).expect("encodes");
        if bytes.len() > HEADER_LEN {
            let i = HEADER_LEN + at.index(bytes.len() - HEADER_LEN);
            bytes[i] = byte;
        }
        let mut d = Decoder::new(MAX);
        d.feed(&bytes);
        let f = d.next_frame().expect("the header is intact").expect("whole");
        // Validation either refuses it or yields some well-formed request:
        // never undefined behaviour, never a panic.
        let _ = Request::decode(&f);
    }
}

#[test]
fn a_payload_of_another_type_or_kind_is_refused() {
    let mut bytes = Vec::new();
    Hello {
        version: 2,
        token: "t".into(),
    }
    .encode(0, MAX, &mut bytes)
    .expect("encodes");
    let mut d = Decoder::new(MAX);
    d.feed(&bytes);
    let f = d.next_frame().expect("valid").expect("whole");
    assert!(matches!(
        Request::decode(&f),
        Err(dirigo_net::WireError::UnexpectedKind { .. })
    ));
    assert_eq!(
        Hello::decode(&f).expect("a hello"),
        Hello {
            version: 2,
            token: "t".into()
        }
    );

    // A Request frame whose payload is garbage.
    let mut raw = Vec::new();
    dirigo_net::frame::encode(dirigo_net::Kind::Request, 3, &[0xff; 40], MAX, &mut raw)
        .expect("under the limit");
    let mut d = Decoder::new(MAX);
    d.feed(&raw);
    let f = d.next_frame().expect("valid frame").expect("whole");
    assert!(matches!(
        Request::decode(&f),
        Err(dirigo_net::WireError::Invalid { .. })
    ));

    let out = Output::Closed {
        code: ErrorCode::Limit,
        message: "slow".into(),
    };
    let mut bytes = Vec::new();
    out.encode(9, MAX, &mut bytes).expect("encodes");
    let mut d = Decoder::new(MAX);
    d.feed(&bytes);
    let f = d.next_frame().expect("valid").expect("whole");
    assert_eq!(Output::decode(&f).expect("an output"), out);
}
