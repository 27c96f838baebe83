//! The messages of the binary protocol, as rkyv archives inside frames, and
//! their encoding and validated decoding.
//!
//! A connection opens with `Hello` (client) and `Welcome` (node); then the
//! client sends `Request`s, each with an id of its choosing (so it may
//! pipeline), and the node answers each with a `Response` of the same id,
//! in any order; a subscription's outputs come as `Output` frames tagged
//! with the id of the request that subscribed. Every payload is validated
//! (bytecheck) before anything reads it.
// rkyv's derive makes an `Archived*` twin of each type whose enum variant
// fields carry no docs; every type written here is documented.
#![allow(missing_docs)]

use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::WireError;
use crate::frame::{encode, Frame, Kind};

/// The client's first frame.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version it speaks (`limits::PROTOCOL_VERSION`).
    pub version: u16,
    /// Its token (admin, or an app's ingest or read token); empty for none.
    pub token: String,
}

/// The node's answer to `Hello`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Welcome {
    /// Accepted: the node's version and limits.
    Accepted {
        /// The protocol version the node speaks.
        version: u16,
        /// The largest frame payload it accepts.
        max_frame: u64,
        /// The most events one ingest may carry.
        max_batch: u64,
        /// The shard that serves this connection.
        shard: u32,
    },
    /// Refused; the node closes the connection after this frame.
    Refused {
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for a person.
        message: String,
    },
}

/// One event of an ingest: its value in the source's binary codec
/// (checked by the node before use). The node keys it by the source's own
/// key function, so a client cannot misroute another key's state.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The encoded value.
    pub value: Vec<u8>,
}

/// What a slow subscriber wants when it falls behind.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// Close the subscription with an error frame.
    Disconnect,
    /// Drop the oldest outputs and send a lag notice with the count.
    DropOldest,
}

/// One operation.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Deploy an app of a catalog kind.
    Deploy {
        /// The catalog kind.
        kind: String,
        /// The app's name.
        name: String,
        /// Its parameters, JSON (checked against the kind's schema).
        params_json: String,
        /// Its SLO, µs; `None`: best effort.
        slo_us: Option<u64>,
        /// Whether it is durable.
        durable: bool,
        /// The token that may ingest into it and inject its barriers
        /// (empty: only the admin token).
        ingest_token: String,
        /// The token that may subscribe to its sinks and read its stats
        /// (empty: only the admin token).
        read_token: String,
    },
    /// Undeploy an app.
    Undeploy {
        /// The app.
        app: String,
    },
    /// The deployed apps.
    Apps,
    /// Events for one source of an app.
    Ingest {
        /// The app.
        app: String,
        /// The source.
        source: String,
        /// The events, in order.
        events: Vec<Event>,
    },
    /// Events for one source of an app in their JSON form (one JSON text
    /// each), read by the source's own reading of JSON, as over HTTP: for
    /// a client that does not know the source's type (the command line).
    IngestJson {
        /// The app.
        app: String,
        /// The source.
        source: String,
        /// The events, in order, each a JSON text.
        events: Vec<String>,
    },
    /// Close window `window` of an app (a barrier at every source).
    Barrier {
        /// The app.
        app: String,
        /// The window.
        window: u64,
    },
    /// Stream a sink's outputs as `Output` frames.
    Subscribe {
        /// The app.
        app: String,
        /// The sink.
        sink: String,
        /// What to do when the subscriber falls behind.
        lag: Lag,
        /// Outputs' values as JSON texts instead of the sink's binary
        /// codec.
        json: bool,
    },
    /// An app's stats (or the node's, for `None`), JSON.
    Stats {
        /// The app.
        app: Option<String>,
    },
    /// Checkpoint a durable app.
    Checkpoint {
        /// The app.
        app: String,
    },
}

/// Stable error codes, shared with the HTTP front.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame or payload was malformed.
    BadFrame,
    /// Another protocol version.
    BadVersion,
    /// The token does not allow this.
    Unauthorized,
    /// No such app, source, sink or kind.
    NotFound,
    /// The name is taken (an app of that name is deployed).
    Conflict,
    /// Parameters or events that do not decode or validate.
    InvalidInput,
    /// Over a limit (batch, frame, connections, subscribers).
    Limit,
    /// The node cannot take more now; retry later.
    Backpressure,
    /// The operation failed in the engine.
    Failed,
    /// The node is shutting down: the request was not taken.
    ShuttingDown,
}

/// The answer to one request.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Done, nothing to say.
    Ok,
    /// The deployed apps' names.
    Apps(Vec<String>),
    /// An ingest's events were accepted (for a durable app: logged).
    Accepted {
        /// How many.
        events: u64,
        /// The node clock (`Node::now_ns`) when they were: every event of
        /// the batch entered the engine before it, every event of a batch
        /// sent later on the connection after it (a loader maps an
        /// output's `ingress_ns` to its batch with it).
        node_ns: u64,
    },
    /// Stats, JSON.
    Stats(String),
    /// A checkpoint was taken.
    Checkpointed {
        /// Its number.
        checkpoint: u64,
    },
    /// The request failed.
    Error {
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for a person.
        message: String,
    },
}

/// One item of a subscription's stream.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An output: its key hash and value in the sink's binary codec (or
    /// JSON text, for a JSON subscription).
    Data {
        /// The key hash.
        key: u64,
        /// The encoded value.
        value: Vec<u8>,
        /// The engine's end-to-end latency of the output's root message
        /// (from its ingest to the sink), ns.
        latency_ns: u64,
        /// When the root message entered the engine, on the node clock
        /// (`Node::now_ns`): with the `node_ns` of ingest answers, a
        /// loader finds the batch the root came in.
        ingress_ns: u64,
    },
    /// Every output before the barrier of this window came above.
    Barrier {
        /// The window.
        window: u64,
    },
    /// A lagging subscriber lost this many outputs (`Lag::DropOldest`).
    Lagged {
        /// Outputs dropped since the last notice.
        dropped: u64,
    },
    /// The subscription ended (the reason says why).
    Closed {
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for a person.
        message: String,
    },
}

/// A message type of the protocol: archived with rkyv, validated on the way
/// in.
pub trait Message:
    Archive + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>> + Sized
where
    Self::Archived: for<'a> rkyv::bytecheck::CheckBytes<HighValidator<'a, rancor::Error>>
        + Deserialize<Self, HighDeserializer<rancor::Error>>,
{
    /// The frame kind it travels in.
    const KIND: Kind;

    /// Append it as a frame for `request` to `out`, if its archive is at
    /// most `max` bytes.
    fn encode(&self, request: u64, max: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
        let bytes = rkyv::to_bytes::<rancor::Error>(self).map_err(|e| WireError::Encode {
            what: std::any::type_name::<Self>(),
            reason: e.to_string(),
        })?;
        Ok(encode(Self::KIND, request, &bytes, max, out)?)
    }

    /// The message in `frame`, validated and read in place (no copy: an
    /// ingest's events are read straight from the frame).
    fn access(frame: &Frame) -> Result<&Self::Archived, WireError> {
        Self::check_kind(frame)?;
        rkyv::access::<Self::Archived, rancor::Error>(&frame.payload).map_err(|e| {
            WireError::Invalid {
                what: std::any::type_name::<Self>(),
                reason: e.to_string(),
            }
        })
    }

    /// The frame is of this message's kind.
    fn check_kind(frame: &Frame) -> Result<(), WireError> {
        if frame.kind != Self::KIND {
            return Err(WireError::UnexpectedKind {
                expected: Self::KIND,
                got: frame.kind,
            });
        }
        Ok(())
    }

    /// The message in `frame`, validated.
    fn decode(frame: &Frame) -> Result<Self, WireError> {
        Self::check_kind(frame)?;
        rkyv::from_bytes::<Self, rancor::Error>(&frame.payload).map_err(|e| WireError::Invalid {
            what: std::any::type_name::<Self>(),
            reason: e.to_string(),
        })
    }
}

impl Message for Hello {
    const KIND: Kind = Kind::Hello;
}
impl Message for Welcome {
    const KIND: Kind = Kind::Welcome;
}
impl Message for Request {
    const KIND: Kind = Kind::Request;
}
impl Message for Response {
    const KIND: Kind = Kind::Response;
}
impl Message for Output {
    const KIND: Kind = Kind::Output;
}
