//! Every fixed limit of the wire protocol, in one place, with compile-time
//! checks of how they relate. What a deployment tunes (the largest frame it
//! accepts) is bounded here.

/// The protocol version a client and a node agree on in the handshake.
pub const PROTOCOL_VERSION: u16 = 1;

/// The first two bytes of every frame: a connection that sends anything
/// else (an HTTP request on the binary port, garbage) is refused at once.
pub const MAGIC: [u8; 2] = *b"DG";

/// Bytes of a frame's header: magic (2), kind (1), flags (1), payload
/// length (4, little endian), request id (8, little endian).
pub const HEADER_LEN: usize = 16;

/// The largest frame payload a node may be configured to accept, bytes.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// The largest frame payload a node accepts unless configured otherwise.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1 << 20;

/// The longest token a handshake may carry, bytes.
pub const MAX_TOKEN_BYTES: usize = 256;

const _: () = assert!(DEFAULT_MAX_FRAME_BYTES <= MAX_FRAME_BYTES);
// The payload length field is a u32.
const _: () = assert!(MAX_FRAME_BYTES <= u32::MAX as usize);
// A header is one 16-byte unit, so a payload copied after it keeps rkyv's
// largest alignment in a buffer that starts aligned.
const _: () = assert!(HEADER_LEN == 16);
