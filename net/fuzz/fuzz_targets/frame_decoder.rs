//! The frame decoder and every message's validation over arbitrary bytes,
//! fed in chunks whose size the first byte picks: no panic, and the decoder
//! never buffers more than a header, a frame and the last feed.
#![no_main]

use dirigo_net::limits::HEADER_LEN;
use dirigo_net::{Decoder, Hello, Message, Output, Request, Response, Welcome};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first).max(1);
    let mut d = Decoder::new(MAX);
    for c in rest.chunks(chunk) {
        d.feed(c);
        while let Ok(Some(f)) = d.next_frame() {
            let _ = Hello::decode(&f);
            let _ = Welcome::decode(&f);
            let _ = Request::decode(&f);
            let _ = Response::decode(&f);
            let _ = Output::decode(&f);
        }
        assert!(d.buffered() <= HEADER_LEN + MAX + chunk);
    }
    let _ = d.finish();
});
