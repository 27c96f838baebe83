//! Every fixed limit of the network layer, in one place, with compile-time
//! checks of how they relate: the wire protocol's, the defaults and bounds
//! of what a deployment tunes (`ServerConfig`: frame and batch sizes,
//! connections, subscribers, windows, timeouts), and a connection's fixed
//! sizes.

use std::time::Duration;

/// The protocol version a client and a node agree on in the handshake
/// (2: `ErrorCode::ShuttingDown`; 3: JSON ingest and subscriptions, an
/// output's latency and ingress time, an ingest answer's node clock).
pub const PROTOCOL_VERSION: u16 = 3;

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

// ---------------------------------------------------------------------
// The server's limits: defaults of `ServerConfig` and the bounds a config
// is checked against, and the fixed sizes of a connection.
// ---------------------------------------------------------------------

/// Events one ingest may carry, unless configured otherwise.
pub const DEFAULT_MAX_BATCH: usize = 4096;
/// The most events one ingest may be configured to carry.
pub const MAX_BATCH: usize = 1 << 16;
/// Open connections a node serves at once, unless configured otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Subscribers one sink may have, unless configured otherwise.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 64;
/// Outputs a subscriber's buffer holds before its lag policy applies.
pub const DEFAULT_SUBSCRIBER_BUFFER: usize = 1 << 16;
/// The most a subscriber's buffer may be configured to hold.
pub const MAX_SUBSCRIBER_BUFFER: usize = 1 << 22;
/// Ingests of one connection that may wait for their acknowledgment (a
/// durable app's commit) at once, unless configured otherwise; past it
/// the connection is not read.
pub const DEFAULT_WINDOW: usize = 64;
/// The largest window a config may set.
pub const MAX_WINDOW: usize = 4096;
/// How long a new connection has to complete its handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may stay silent (with no subscription) before
/// it is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long an ingest waits out backpressure before it is refused.
pub const DEFAULT_INGEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shutdown waits for connections to answer what they took
/// and close, by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an undeploy over the wire lets an app drain.
pub const UNDEPLOY_DRAIN: Duration = Duration::from_secs(5);
/// Frames queued to a connection's writer (responses, outputs); a full
/// queue holds the connection's readers and subscriptions.
pub const OUT_QUEUE_FRAMES: usize = 256;
/// Subscriptions one connection may hold.
pub const MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 64;
/// Bytes a connection reads at once.
pub const READ_CHUNK: usize = 64 << 10;
/// Bytes of outputs a subscription puts in one write (many small output
/// frames leave in one).
pub const OUT_COALESCE_BYTES: usize = 64 << 10;

const _: () = assert!(DEFAULT_MAX_BATCH <= MAX_BATCH);
const _: () = assert!(DEFAULT_WINDOW <= MAX_WINDOW);
const _: () = assert!(DEFAULT_SUBSCRIBER_BUFFER <= MAX_SUBSCRIBER_BUFFER);
